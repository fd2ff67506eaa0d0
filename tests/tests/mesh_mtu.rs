//! Issue 9, the MTU of the routing mesh's path: the lab's outside client (underlay MTU 1500,
//! so it assumes 1500-byte packets) moves 2 MB each way over new TCP connections through
//! every host's published port, to an encrypted network (MTU 1390: WireGuard and VXLAN add
//! 110 bytes) and to a plain one (1450: VXLAN adds 50), in default mode and with `--mode dsr`;
//! every transfer completes with every byte, through every host to backends of other hosts
//! too. tcpdump in the backends' containers shows the client's SYNs arriving with their MSS
//! clamped to the network's MTU - 40 (1350, 1410; the client sent 1460). UDP: a full-size
//! datagram (1500 bytes of IP) through every host gets an ICMP fragmentation-needed error
//! with the network's MTU back (tcpdump on the client), and the next one, which the client
//! then fragments to that size, is answered.

use std::collections::BTreeMap;

use vxmesh_tests::capture::Capture;
use vxmesh_tests::mesh::{client_addr, ipv4_ends, tcp_mss};
use vxmesh_tests::services::{self, lab_exec_output, udp_ask_with, SvcServer, UdpEcho};
use vxmesh_tests::{crypto, wait_until, Lab};

const SVC_CLIENT: &str = env!("CARGO_BIN_EXE_svc_client");
const BYTES: u64 = 2_000_000;
/// Transfers each way through each host, per network and mode.
const TRANSFERS: usize = 6;

/// A published service of the test: its network's MTU, published port and backends.
struct Published {
    name: &'static str,
    network: &'static str,
    mtu: u16,
    port: u16,
    backends: [&'static str; 3],
}

const SERVICES: [Published; 2] = [
    Published {
        name: "enc",
        network: "net1",
        mtu: 1390,
        port: 9001,
        backends: ["h1-c1", "h2-c1", "h3-c1"],
    },
    Published {
        name: "plain",
        network: "net2",
        mtu: 1450,
        port: 9002,
        backends: ["h1-c2", "h2-c2", "h3-c2"],
    },
];

/// One bulk transfer from the client to `host`'s port `port`: (the backend that served it,
/// the bytes that arrived), or what went wrong.
fn transfer(lab: &Lab, host: &str, port: u16, dir: &str) -> Result<(String, u64), String> {
    let to = format!("{}:{port}", lab.host(host).address);
    let out = lab_exec_output(
        lab,
        "client",
        true,
        &[SVC_CLIENT, "bulk", &to, dir, &BYTES.to_string()],
    );
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match text.split_once(' ') {
        Some((name, n)) if out.status.success() => Ok((name.to_string(), n.parse().unwrap())),
        _ => Err(format!("{dir} through {host}:{port}: {text}")),
    }
}

/// Every transfer through every host completes whole, and each host's reach a backend of
/// another host.
fn transfers_complete(lab: &Lab, s: &Published, mode: &str) {
    for h in ["h1", "h2", "h3"] {
        let mut served: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..TRANSFERS {
            for dir in ["down", "up"] {
                let (name, got) = transfer(lab, h, s.port, dir)
                    .unwrap_or_else(|e| panic!("{mode}, {}: {e}", s.name));
                assert_eq!(
                    got, BYTES,
                    "{mode}, {}: {dir} through {h} from {name}",
                    s.name
                );
                assert!(s.backends.contains(&name.as_str()), "{name}");
                *served.entry(name).or_default() += 1;
            }
        }
        eprintln!("{mode}, {} through {h}: {served:?}", s.name);
        assert!(
            served.keys().any(|b| !b.starts_with(&format!("{h}-"))),
            "{mode}, {}: no transfer through {h} reached another host's backend",
            s.name
        );
    }
}

/// ICMP fragmentation needed (type 3 code 4) in an Ethernet/IPv4 frame: (its source, the
/// next-hop MTU).
fn frag_needed(frame: &[u8]) -> Option<(std::net::Ipv4Addr, u16)> {
    let (src, _) = ipv4_ends(frame)?;
    let icmp = frame.get(14 + usize::from(frame[14] & 0x0f) * 4..)?;
    (frame[23] == 1 && icmp.get(..2)? == [3, 4])
        .then(|| (src, u16::from_be_bytes([icmp[6], icmp[7]])))
}

/// A full-size UDP datagram through every host to service `s` (its UDP port, `s.port` +
/// 100): the first comes back as ICMP fragmentation needed with the network's MTU, the next
/// is answered. Networks in decreasing MTU order (the client keeps one path MTU per host).
fn full_size_udp_learns_the_path_mtu(lab: &Lab, s: &Published) {
    let payload = "u".repeat(1500 - 20 - 8);
    for h in ["h1", "h2", "h3"] {
        let host = lab.host(h).address;
        let to = format!("{host}:{}", s.port + 100);
        let mut cap = Capture::start(&lab.namespace("client"), "eth0", "icmp");
        let first = udp_ask_with(lab, "client", true, &to, SVC_CLIENT, &payload);
        let errors: Vec<_> = cap.stop().iter().filter_map(|f| frag_needed(f)).collect();
        eprintln!(
            "{} through {h}: first datagram {first:?}, ICMP {errors:?}",
            s.name
        );
        assert_eq!(
            errors,
            [(host, s.mtu)],
            "{}: one fragmentation-needed error from {h} with the network's MTU",
            s.name
        );
        let (from, reply) = udp_ask_with(lab, "client", true, &to, SVC_CLIENT, &payload)
            .unwrap_or_else(|e| panic!("{}: the fragmented datagram through {h}: {e}", s.name));
        assert_eq!(from, to);
        assert!(s.backends.contains(&reply.as_str()), "{reply}");
    }
}

#[test]
fn full_size_packets_through_every_host_fit_plain_and_encrypted_networks() {
    let lab = crypto::lab_up(3, 2, 2, 1);
    // net1 (h*-c1) is encrypted, net2 (h*-c2) plain.
    let _servers: Vec<SvcServer> = SERVICES
        .iter()
        .flat_map(|s| s.backends)
        .map(|b| SvcServer::start(&lab, b, SVC_CLIENT, "bulk-serve", 9000, "-ltn"))
        .collect();
    for s in &SERVICES {
        services::create_published_on(
            &lab,
            s.network,
            s.name,
            "9000",
            &format!("{}:9000", s.port),
            &s.backends,
            &[],
        );
        let ready = wait_until(std::time::Duration::from_secs(30), || {
            ["h1", "h2", "h3"]
                .iter()
                .all(|h| transfer(&lab, h, s.port, "down").is_ok())
        });
        assert!(
            ready,
            "{} not answered; h1:\n{}",
            s.name,
            lab.agent_log("h1")
        );
    }

    // Default mode, with every backend's container watching the SYNs that reach it.
    let client = client_addr(&lab);
    let mut syns: Vec<(u16, Capture)> = SERVICES
        .iter()
        .flat_map(|s| s.backends.map(|b| (s.mtu, b)))
        .map(|(mtu, b)| {
            let filter = format!("tcp[tcpflags] == tcp-syn and src host {client}");
            (mtu, Capture::start(&lab.namespace(b), "eth0", &filter))
        })
        .collect();
    for s in &SERVICES {
        transfers_complete(&lab, s, "default");
    }
    for (mtu, cap) in &mut syns {
        let frames = cap.stop();
        let mss: Vec<Option<u16>> = frames.iter().map(|f| tcp_mss(f)).collect();
        eprintln!("network MTU {mtu}: the backend saw SYNs with MSS {mss:?}");
        assert!(!frames.is_empty(), "no SYN reached a backend");
        assert!(frames.iter().all(|f| ipv4_ends(f).is_some()));
        assert!(
            mss.iter().all(|m| *m == Some(*mtu - 40)),
            "SYNs should arrive with MSS {} (MTU {mtu} - 40): {mss:?}",
            *mtu - 40
        );
    }

    for s in &SERVICES {
        services::set_mode(&lab, s.name, "dsr");
        transfers_complete(&lab, s, "dsr");
    }

    // UDP on port + 100 of each service's network, the plain one (larger MTU) first.
    let _echo: Vec<UdpEcho> = SERVICES
        .iter()
        .flat_map(|s| s.backends)
        .map(|b| UdpEcho::start(&lab, b, 5353, SVC_CLIENT))
        .collect();
    for s in SERVICES.iter().rev() {
        let name = format!("{}-udp", s.name);
        let publish = format!("{}:5353/udp", s.port + 100);
        services::create_published_on(
            &lab,
            s.network,
            &name,
            "5353/udp",
            &publish,
            &s.backends,
            &[],
        );
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    for s in SERVICES.iter().rev() {
        full_size_udp_learns_the_path_mtu(&lab, s);
    }
}
