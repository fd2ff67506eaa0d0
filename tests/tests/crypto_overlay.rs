//! Encryption acceptance 1: a lab of three hosts with one encrypted and one plain network.
//! Containers reach each other on both; on the underlay, the encrypted network's transfer of a
//! known marker shows no UDP 4789 packet and no marker (only WireGuard on UDP 51820), while the
//! plain network's transfer is ordinary VXLAN with the marker in clear.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use vxmesh_tests::capture::Capture;
use vxmesh_tests::crypto::{self, udp_dst_port};
use vxmesh_tests::{pcap, run_ok};

const SETTLE: Duration = Duration::from_secs(30);

#[test]
fn encrypted_network_shows_only_wireguard_on_the_underlay_plain_stays_vxlan() {
    let lab = crypto::lab_up(3, 2, 2, 1);
    // net1 (h*-c1) is encrypted, net2 (h*-c2) plain.
    assert!(lab.state.networks.iter().any(|n| n.name == "net1"));
    let c = |n: &str| lab.container(n).clone();
    for (from, to) in [
        ("h1-c1", "h2-c1"),
        ("h1-c1", "h3-c1"),
        ("h3-c1", "h2-c1"),
        ("h1-c2", "h3-c2"),
        ("h2-c2", "h1-c2"),
    ] {
        assert!(
            lab.ping_within(from, c(to).address, SETTLE),
            "{from} cannot ping {to} ({})\n--- h1 agent:\n{}\n--- h2 agent:\n{}",
            c(to).address,
            lab.agent_log("h1"),
            lab.agent_log("h2")
        );
    }
    // Different networks stay apart.
    assert!(!lab.ping("h1-c1", c("h2-c2").address));

    // Every host runs the userspace implementation, with its key file at mode 0600.
    for n in crypto::nodes(&lab) {
        let w = n.wireguard.expect("identity published");
        assert_eq!(w.port, 51820);
        assert!(w.tunnel_ip.is_some());
        assert!(w.implementation.unwrap().contains("userspace"));
        let key = format!("/run/vxmesh/lab/{}/{}/wireguard.key", lab.prefix(), n.name);
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    // The table says which implementation runs.
    let table = String::from_utf8(lab.vxmesh(&["node", "ls"]).stdout).unwrap();
    assert!(table.contains("userspace (boringtun"), "{table}");

    // MTUs: WireGuard interface = underlay - 60, encrypted network = that - 50, plain = 1450.
    let h1 = lab.namespace("h1");
    let mtu = |dev: &str| {
        let out = run_ok("ip", &["-n", &h1, "-o", "link", "show", dev]);
        out.split(" mtu ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(mtu("wg-vx"), "1440");
    assert_eq!(mtu("vx-net1"), "1390");
    assert_eq!(mtu("vb-net1"), "1390");
    assert_eq!(mtu("vx-net2"), "1450");

    // Encrypted: h1-c1 -> h3-c1, 400 kB of a marker, captured on h1's underlay interface.
    let marker = "VXMESH-SECRET-MARKER-7f3a";
    let mut sink = crypto::sink(&lab, "h3-c1", 7101);
    let mut cap = Capture::start(&h1, "eth0", "udp");
    assert!(crypto::send_marker(
        &lab,
        "h1-c1",
        c("h3-c1").address,
        7101,
        marker,
        400_000
    ));
    let frames = cap.stop();
    let _ = sink.wait();
    // The plain network may chatter meanwhile (ARP probes); none of net1's VNI may appear.
    let vni1 = lab.network("net1").vni;
    let vxlan = frames
        .iter()
        .filter(|f| udp_dst_port(f) == Some(4789))
        .filter(|f| pcap::vxlan(f, 4789).is_none_or(|v| v.vni == vni1))
        .count();
    let wg = frames
        .iter()
        .filter(|f| udp_dst_port(f) == Some(51820))
        .count();
    let with_marker = frames
        .iter()
        .filter(|f| pcap::contains(f, marker.as_bytes()))
        .count();
    eprintln!("encrypted transfer: {} frames, {wg} to 51820, {vxlan} to 4789, {with_marker} with the marker", frames.len());
    assert_eq!(
        vxlan, 0,
        "VXLAN in clear on the underlay for an encrypted network"
    );
    assert_eq!(with_marker, 0, "the marker crossed the underlay in clear");
    assert!(
        wg > 20,
        "expected the transfer as WireGuard packets, saw {wg}"
    );

    // Plain: h1-c2 -> h3-c2, the same marker: VXLAN with net2's VNI, marker visible.
    let vni2 = lab.network("net2").vni;
    let mut sink = crypto::sink(&lab, "h3-c2", 7102);
    let mut cap = Capture::start(&h1, "eth0", "udp");
    assert!(crypto::send_marker(
        &lab,
        "h1-c2",
        c("h3-c2").address,
        7102,
        marker,
        400_000
    ));
    let frames = cap.stop();
    let _ = sink.wait();
    let vx: Vec<_> = frames.iter().filter_map(|f| pcap::vxlan(f, 4789)).collect();
    let with_marker = frames
        .iter()
        .filter(|f| pcap::contains(f, marker.as_bytes()))
        .count();
    eprintln!(
        "plain transfer: {} frames, {} VXLAN, {with_marker} with the marker",
        frames.len(),
        vx.len()
    );
    assert!(
        vx.len() > 20,
        "expected the transfer as VXLAN, saw {}",
        vx.len()
    );
    assert!(vx.iter().all(|v| v.vni == vni2));
    assert!(
        with_marker > 0,
        "the plain network's payload should be visible"
    );
}
