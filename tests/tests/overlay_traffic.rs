//! Acceptance 1 and 2: containers on different hosts of one network reach each other (ping and
//! TCP); containers of different networks do not; on the underlay the traffic is VXLAN with the
//! network's VNI on UDP 4789 between the hosts' underlay addresses, and a host that is not part
//! of a conversation sees none of it beyond BUM traffic.

use std::process::{Command, Stdio};
use std::time::Duration;

use vxmesh_tests::capture::Capture;
use vxmesh_tests::{pcap, Lab};

const SETTLE: Duration = Duration::from_secs(20);

#[test]
fn same_network_reaches_across_hosts_other_network_does_not() {
    let lab = Lab::up(3, 2, 2);
    // h1-c1, h2-c1, h3-c1 are on net1; h1-c2, h2-c2, h3-c2 on net2.
    let c = |n: &str| lab.container(n).clone();
    for (from, to) in [
        ("h1-c1", "h2-c1"),
        ("h1-c1", "h3-c1"),
        ("h2-c2", "h3-c2"),
        ("h3-c2", "h1-c2"),
    ] {
        assert_eq!(c(from).network, c(to).network);
        assert!(
            lab.ping_within(from, c(to).address, SETTLE),
            "{from} cannot ping {to} ({})",
            c(to).address
        );
    }

    // A TCP exchange: a server in h3-c1 answers one line to a client in h1-c1.
    let server_ns = lab.namespace("h3-c1");
    let mut server = Command::new("ip")
        .args(["netns", "exec", &server_ns, "nc", "-l", "-N", "-p", "7000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("nc (netcat-openbsd)");
    {
        use std::io::Write;
        let mut stdin = server.stdin.take().unwrap();
        stdin.write_all(b"hello from h3-c1\n").unwrap();
    }
    let target = c("h3-c1").address.to_string();
    let mut reply = String::new();
    let ok = vxmesh_tests::wait_until(SETTLE, || {
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.namespace("h1-c1")])
            .args([
                "sh",
                "-c",
                &format!("echo hello from h1-c1 | nc -N -w 3 {target} 7000"),
            ])
            .output()
            .unwrap();
        reply = String::from_utf8_lossy(&out.stdout).into_owned();
        reply.contains("hello from h3-c1")
    });
    let served = server.wait_with_output().unwrap();
    assert!(ok, "no TCP reply from h3-c1, got {reply:?}");
    assert!(
        String::from_utf8_lossy(&served.stdout).contains("hello from h1-c1"),
        "the server did not receive the client's line"
    );

    // Different networks: no path, in either direction.
    for (from, to) in [("h1-c1", "h2-c2"), ("h1-c1", "h1-c2"), ("h2-c2", "h3-c1")] {
        assert_ne!(c(from).network, c(to).network);
        assert!(
            !lab.ping(from, c(to).address),
            "{from} reached {to} on another network"
        );
    }
}

#[test]
fn underlay_carries_vxlan_with_the_vni_and_only_to_the_owner() {
    let lab = Lab::up(3, 1, 1);
    let net1 = lab.network("net1").clone();
    let (h1, h2, h3) = (
        lab.host("h1").clone(),
        lab.host("h2").clone(),
        lab.host("h3").clone(),
    );
    let dst = lab.container("h2-c1").address;
    assert!(
        lab.ping_within("h1-c1", dst, SETTLE),
        "h1-c1 cannot reach h2-c1"
    );

    // Forget the neighbour, so the container has to ask again: the question must be answered
    // on h1 by the bridge, not flooded over the underlay.
    assert!(lab
        .exec("h1-c1", &["ip", "neigh", "flush", "all"])
        .status
        .success());
    // Capture on h1's underlay interface, and on the switch port that leads to h3.
    let mut at_h1 = Capture::start(&h1.namespace, &h1.interface, "udp");
    let mut to_h3 = Capture::start(&lab.state.switch_namespace, &h3.name, "udp");
    let marker = "vxmesh-marker-5f2a";
    let pattern: String = marker.bytes().map(|b| format!("{b:02x}")).collect();
    let out = lab.exec(
        "h1-c1",
        &[
            "ping",
            "-c",
            "5",
            "-i",
            "0.2",
            "-p",
            &pattern[..32],
            &dst.to_string(),
        ],
    );
    assert!(out.status.success(), "ping during capture failed");
    let h1_frames = at_h1.stop();
    let h3_frames = to_h3.stop();

    // tcpdump itself decodes VXLAN with the network's VNI on port 4789.
    let text = at_h1.decoded();
    let (from, to) = (
        format!("IP {}.", h1.address),
        format!(" > {}.4789: VXLAN", h2.address),
    );
    assert!(
        text.lines().any(|l| l.contains(&from)
            && l.contains(&to)
            && l.contains(&format!("vni {}", net1.vni))),
        "tcpdump did not decode VXLAN vni {} from {} to {}:4789:\n{text}",
        net1.vni,
        h1.address,
        h2.address
    );
    // And frame by frame: the echo requests are VXLAN, VNI of net1, h1 -> h2, with the payload.
    let requests: Vec<_> = h1_frames
        .iter()
        .filter_map(|f| pcap::vxlan(f, 4789))
        .filter(|v| pcap::contains(&v.inner, &marker.as_bytes()[..16]))
        .collect();
    assert!(
        requests.len() >= 5,
        "expected the 5 echo requests (and replies) as VXLAN, saw {}",
        requests.len()
    );
    for v in &requests {
        assert_eq!(v.vni, net1.vni);
        assert!(
            (v.src == h1.address && v.dst == h2.address)
                || (v.src == h2.address && v.dst == h1.address),
            "VXLAN between {} and {}",
            v.src,
            v.dst
        );
    }
    let arp_for_dst = h1_frames
        .iter()
        .filter_map(|f| pcap::vxlan(f, 4789))
        .filter(|v| v.inner.len() >= 42 && v.inner[12..14] == [0x08, 0x06])
        .filter(|v| v.inner[38..42] == dst.octets())
        .count();
    assert_eq!(
        arp_for_dst, 0,
        "ARP for {dst} crossed the underlay instead of being answered locally"
    );
    // h3 has an endpoint on net1 too, but the conversation is not its business: nothing but BUM
    // traffic of net1 may reach it.
    let leaked: Vec<_> = h3_frames
        .iter()
        .filter_map(|f| pcap::vxlan(f, 4789))
        .filter(|v| !v.inner_is_multicast())
        .collect();
    assert!(
        leaked.is_empty(),
        "unicast overlay traffic reached h3: {leaked:?}"
    );
    assert!(
        !h3_frames
            .iter()
            .any(|f| pcap::contains(f, &marker.as_bytes()[..16])),
        "the payload reached h3"
    );
}
