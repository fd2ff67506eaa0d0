//! Issue 9, the routing mesh's replies in default mode: the backend's host sends them back to
//! their ingress node with that node's MAC (`0a:5e` + its underlay address) as destination,
//! and every VXLAN device holds a static FDB entry for each other node's MAC, so the reply
//! goes to that node only instead of being flooded to every peer. Witnesses: `bridge fdb
//! show` in every host namespace (the node-MAC entries are there while a published service
//! exists, and the entries of a removed node go), and tcpdump on the underlay of the ingress
//! host and of a third host while requests run.

use std::net::Ipv4Addr;
use std::time::Duration;

use vxmesh_tests::capture::Capture;
use vxmesh_tests::services::{self, lab_exec_output, tally, Nginx};
use vxmesh_tests::witness::vxlan_fdb;
use vxmesh_tests::{wait_until, Lab};

const HOSTS: [&str; 3] = ["h1", "h2", "h3"];
const REQUESTS: usize = 30;

/// `0a:5e:…` of the node with underlay address `a`, as `bridge fdb` prints it.
fn node_mac(a: Ipv4Addr) -> String {
    let o = a.octets();
    format!("0a:5e:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// The frames of a capture on an underlay device that are VXLAN (outer Ethernet, IPv4
/// without options, UDP, VXLAN header: the inner frame starts at byte 50) with inner
/// destination MAC `mac`.
fn vxlan_to(frames: &[Vec<u8>], mac: &str) -> usize {
    frames
        .iter()
        .filter(|f| f.len() >= 56)
        .filter(|f| {
            let inner: Vec<String> = f[50..56].iter().map(|b| format!("{b:02x}")).collect();
            inner.join(":") == mac
        })
        .count()
}

/// Whether `host`'s vx-net1 has the static entry `MAC dst ADDR` of node `other`.
fn has_node_entry(lab: &Lab, host: &str, other: &str) -> bool {
    let a = lab.host(other).address;
    let want = format!("{} dst {a} self permanent", node_mac(a));
    vxlan_fdb(&lab.namespace(host), "vx-net1")
        .iter()
        .any(|l| l.contains(&want))
}

#[test]
fn replies_reach_their_ingress_node_only_through_static_node_mac_entries() {
    let lab = Lab::up(3, 1, 1);
    // The only replica is on h2; the client goes through h1; h3 has no part in the flows.
    let _server = Nginx::start(&lab, "h2-c1", 80);
    services::create_published(&lab, "web", "80", "8080:80", &["h2-c1"]);
    let h1 = lab.host("h1").address;
    let url = format!("http://{h1}:8080/");
    assert!(
        wait_until(Duration::from_secs(30), || lab_exec_output(
            &lab,
            "client",
            true,
            &["curl", "-sS", "-m", "2", &url]
        )
        .status
        .success()),
        "h1:8080 not answered; agent log h1:\n{}",
        lab.agent_log("h1")
    );

    let h1_mac = node_mac(h1);
    let mut at_h1 = Capture::start(&lab.namespace("h1"), "eth0", "udp port 4789");
    let mut at_h3 = Capture::start(&lab.namespace("h3"), "eth0", "udp port 4789");
    let out = services::curl_close(&lab, "client", true, &format!("{url}[1-{REQUESTS}]"));
    let (count, _) = tally(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(count.get("h2-c1"), Some(&REQUESTS), "{out:?}");
    let (to_h1, to_h3) = (
        vxlan_to(&at_h1.stop(), &h1_mac),
        vxlan_to(&at_h3.stop(), &h1_mac),
    );
    eprintln!(
        "VXLAN frames to h1's node MAC {h1_mac}: {to_h1} reached h1's eth0, {to_h3} reached h3's"
    );
    assert!(to_h1 > 0, "the replies come back to h1 over the overlay");
    assert_eq!(to_h3, 0, "no reply is flooded to h3:\n{}", at_h3.decoded());

    // Every host has an entry for every other node's MAC toward its underlay address.
    for h in HOSTS {
        for other in HOSTS.iter().filter(|o| **o != h) {
            assert!(
                has_node_entry(&lab, h, other),
                "{h}: no node-MAC entry for {other}: {:?}",
                vxlan_fdb(&lab.namespace(h), "vx-net1")
            );
        }
    }

    // h3 leaves: h1 and h2 drop its entry, and keep each other's.
    let out = lab.vxmesh(&["node", "rm", "h3", "--force"]);
    assert!(out.status.success(), "{out:?}");
    for (h, other) in [("h1", "h2"), ("h2", "h1")] {
        assert!(
            wait_until(Duration::from_secs(10), || !has_node_entry(&lab, h, "h3")),
            "{h} still has h3's node-MAC entry: {:?}",
            vxlan_fdb(&lab.namespace(h), "vx-net1")
        );
        assert!(has_node_entry(&lab, h, other));
    }
}
