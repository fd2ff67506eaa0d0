//! Helpers for the encryption tests: labs with encrypted networks, nodes' WireGuard identities
//! from the store, marker transfers, a wireguard-go peer in a namespace of its own plugged
//! into a lab's underlay switch, and plain VXLAN crafted to be injected into a network.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Deserialize;

use crate::capture::Capture;
use crate::{pcap, run, run_ok, unique, Container, Lab, TestNetns};

/// `vxmesh lab up` with the first `encrypted` of the `networks` encrypted.
pub fn lab_up(hosts: u32, containers_per_host: u32, networks: u32, encrypted: u32) -> Lab {
    lab_up_on(
        crate::test_store(),
        hosts,
        containers_per_host,
        networks,
        encrypted,
    )
}

/// [`lab_up`] on the store `store` names (`sqlite` or `etcd`).
pub fn lab_up_on(
    store: &str,
    hosts: u32,
    containers_per_host: u32,
    networks: u32,
    encrypted: u32,
) -> Lab {
    Lab::up_on(
        store,
        &[
            "--hosts",
            &hosts.to_string(),
            "--containers-per-host",
            &containers_per_host.to_string(),
            "--networks",
            &networks.to_string(),
            "--encrypted-networks",
            &encrypted.to_string(),
        ],
    )
}

#[derive(Debug, Clone, Deserialize)]
pub struct Identity {
    pub public_key: String,
    pub port: u16,
    pub tunnel_ip: Option<Ipv4Addr>,
    pub implementation: Option<String>,
    #[serde(default)]
    pub rotate_requested: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub underlay: Ipv4Addr,
    pub wireguard: Option<Identity>,
}

/// `vxmesh node ls --json` on the lab's store.
pub fn nodes(lab: &Lab) -> Vec<NodeRecord> {
    let out = lab.vxmesh(&["--json", "node", "ls"]);
    assert!(out.status.success(), "node ls failed");
    serde_json::from_slice(&out.stdout).expect("node ls --json parses")
}

pub fn identity(lab: &Lab, node: &str) -> Option<Identity> {
    nodes(lab).into_iter().find(|n| n.name == node)?.wireguard
}

/// The node's tunnel address, waiting for its agent to publish it.
pub fn tunnel_ip(lab: &Lab, node: &str) -> Ipv4Addr {
    let mut ip = None;
    crate::wait_until(Duration::from_secs(20), || {
        ip = identity(lab, node).and_then(|w| w.tunnel_ip);
        ip.is_some()
    });
    ip.unwrap_or_else(|| panic!("node {node} published no tunnel address"))
}

/// The index of `host`'s WireGuard interface `wg-vx` (`ip -o link show`), `None` if it has none.
pub fn wg_index(lab: &Lab, host: &str) -> Option<u32> {
    let out = run(
        "ip",
        &["-n", &lab.namespace(host), "-o", "link", "show", "wg-vx"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(": ").next()?.trim().parse().ok()
}

/// A TCP server (`nc -l`) in `member` that discards what it receives.
pub fn sink(lab: &Lab, member: &str, port: u16) -> Child {
    let child = Command::new("ip")
        .args(["netns", "exec", &lab.namespace(member)])
        .args(["nc", "-l", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nc (netcat-openbsd)");
    std::thread::sleep(Duration::from_millis(300));
    child
}

/// Sends `bytes` bytes of `marker` repeated, over TCP from `member` to `ip:port`; true if sent.
pub fn send_marker(
    lab: &Lab,
    member: &str,
    ip: Ipv4Addr,
    port: u16,
    marker: &str,
    bytes: usize,
) -> bool {
    let script = format!("yes '{marker}' | head -c {bytes} | nc -N -w 5 {ip} {port}");
    Command::new("ip")
        .args(["netns", "exec", &lab.namespace(member), "sh", "-c", &script])
        .stdin(Stdio::null())
        .status()
        .expect("sh")
        .success()
}

/// UDP destination port of an Ethernet/IPv4/UDP frame.
pub fn udp_dst_port(frame: &[u8]) -> Option<u16> {
    if frame.len() < 14 + 20 + 8 || u16::from_be_bytes([frame[12], frame[13]]) != 0x0800 {
        return None;
    }
    let ip = &frame[14..];
    if ip[0] >> 4 != 4 || ip[9] != 17 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let udp = ip.get(ihl..ihl + 8)?;
    Some(u16::from_be_bytes([udp[2], udp[3]]))
}

/// A WireGuard peer run by wireguard-go in a namespace of its own, plugged into a lab's switch
/// with an underlay address, configured with `ip` and `wg` only.
pub struct WgGoPeer {
    pub netns: TestNetns,
    pub ifname: String,
    pub underlay: Ipv4Addr,
    pub public_key: String,
    key_dir: tempfile::TempDir,
}

impl WgGoPeer {
    /// Namespace, veth into the lab's switch (`eth0` with `underlay`/24), and a wireguard-go
    /// interface with a fresh key listening on `port`.
    pub fn start(lab: &Lab, underlay: Ipv4Addr, port: u16) -> WgGoPeer {
        let ns = unique("wgp");
        let netns = TestNetns::new(&ns);
        let sw = &lab.state.switch_namespace;
        let swport = unique("sp");
        run_ok(
            "ip",
            &[
                "-n", sw, "link", "add", &swport, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ],
        );
        run_ok(
            "ip",
            &["-n", sw, "link", "set", &swport, "master", "sw0", "up"],
        );
        run_ok(
            "ip",
            &[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{underlay}/24"),
                "dev",
                "eth0",
            ],
        );
        run_ok("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
        run_ok("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        // Unique across namespaces: wireguard-go's socket is /var/run/wireguard/<ifname>.sock.
        let ifname = unique("wgo");
        run_ok("ip", &["netns", "exec", &ns, "wireguard-go", &ifname]);
        let key_dir = tempfile::tempdir().unwrap();
        let private = run_ok("wg", &["genkey"]);
        let key_file = key_dir.path().join("key");
        std::fs::write(&key_file, &private).unwrap();
        let public_key = {
            use std::io::Write;
            let mut c = Command::new("wg")
                .arg("pubkey")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin
                .take()
                .unwrap()
                .write_all(private.as_bytes())
                .unwrap();
            String::from_utf8(c.wait_with_output().unwrap().stdout)
                .unwrap()
                .trim()
                .to_string()
        };
        run_ok(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "wg",
                "set",
                &ifname,
                "private-key",
                key_file.to_str().unwrap(),
                "listen-port",
                &port.to_string(),
            ],
        );
        WgGoPeer {
            netns,
            ifname,
            underlay,
            public_key,
            key_dir,
        }
    }

    pub fn ns(&self) -> &str {
        &self.netns.0
    }

    /// `wg set IF peer KEY endpoint EP allowed-ips IPS`.
    pub fn add_peer(&self, public_key: &str, endpoint: &str, allowed_ips: &str) {
        run_ok(
            "ip",
            &[
                "netns",
                "exec",
                self.ns(),
                "wg",
                "set",
                &self.ifname,
                "peer",
                public_key,
                "endpoint",
                endpoint,
                "allowed-ips",
                allowed_ips,
            ],
        );
    }

    /// The tunnel address on the interface, MTU as vxmesh uses, up.
    pub fn address(&self, tunnel: Ipv4Addr) {
        run_ok(
            "ip",
            &[
                "-n",
                self.ns(),
                "addr",
                "add",
                &format!("{tunnel}/16"),
                "dev",
                &self.ifname,
            ],
        );
        run_ok(
            "ip",
            &[
                "-n",
                self.ns(),
                "link",
                "set",
                &self.ifname,
                "mtu",
                "1440",
                "up",
            ],
        );
    }

    /// `wg show IF latest-handshakes`: seconds since the epoch of the last handshake per peer.
    pub fn latest_handshakes(&self) -> Vec<u64> {
        run_ok(
            "ip",
            &[
                "netns",
                "exec",
                self.ns(),
                "wg",
                "show",
                &self.ifname,
                "latest-handshakes",
            ],
        )
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
    }

    pub fn ping(&self, ip: Ipv4Addr) -> bool {
        run(
            "ip",
            &[
                "netns",
                "exec",
                self.ns(),
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                &ip.to_string(),
            ],
        )
        .status
        .success()
    }
}

impl Drop for WgGoPeer {
    fn drop(&mut self) {
        // Deleting the interface stops wireguard-go and removes its control socket.
        let _ = run("ip", &["-n", self.ns(), "link", "del", &self.ifname]);
        let _ = &self.key_dir;
    }
}

/// The inner UDP port the crafted frames are addressed to, in the target container.
pub const INNER_PORT: u16 = 7777;

/// A python script that sends, from inside `netns`, 5 plain VXLAN packets to `dst:port` with `vni`, each carrying an
/// Ethernet/IPv4/UDP frame to `target` (its MAC and address, port 7777) whose payload is `marker`.
pub const INJECT: &str = r#"
import socket, struct, sys
dst, port, vni, dmac, dip, sip, marker = sys.argv[1:8]
payload = marker.encode()
udp = struct.pack('!HHHH', 40000, 7777, 8 + len(payload), 0) + payload
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(sip), socket.inet_aton(dip))
s = sum(struct.unpack('!10H', ip)); s = (s >> 16) + (s & 0xffff); s += s >> 16
ip = ip[:10] + struct.pack('!H', ~s & 0xffff) + ip[12:]
frame = bytes.fromhex(dmac.replace(':', '')) + bytes.fromhex('0a580afe0001') + b'\x08\x00' + ip + udp
vxlan = struct.pack('!II', 0x08000000, int(vni) << 8)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5):
    sock.sendto(vxlan + frame, (dst, int(port)))
"#;

pub fn inject(netns: &str, dst: Ipv4Addr, port: u16, vni: u32, target: &Container, marker: &str) {
    let o = target.address.octets();
    let spoofed = Ipv4Addr::new(o[0], o[1], o[2], 250).to_string();
    run_ok(
        "ip",
        &[
            "netns",
            "exec",
            netns,
            "python3",
            "-c",
            INJECT,
            &dst.to_string(),
            &port.to_string(),
            &vni.to_string(),
            &target.mac,
            &target.address.to_string(),
            &spoofed,
            marker,
        ],
    );
}

/// Runs `send` while capturing in `target`'s namespace; true if any frame with `marker` arrived.
pub fn arrives(lab: &Lab, target: &Container, marker: &str, send: impl FnOnce()) -> bool {
    let mut cap = Capture::start(
        &lab.namespace(&target.name),
        &target.interface,
        &format!("udp port {INNER_PORT}"),
    );
    send();
    // tcpdump gets packets from the kernel a block at a time, at the latest after 1 s.
    std::thread::sleep(Duration::from_millis(1500));
    let frames = cap.stop();
    eprintln!("{marker}: {} frames in {}", frames.len(), target.name);
    frames.iter().any(|f| pcap::contains(f, marker.as_bytes()))
}
