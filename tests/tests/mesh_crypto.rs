//! Acceptance 4 of issue 9: a published port of an encrypted network. Three hosts, six nginx
//! replicas on an encrypted network behind one service published on 8080: new connections
//! from the lab's outside client through each host's published port are answered, by every
//! replica, each seeing the client's own address, in default mode and with `--mode dsr`;
//! tcpdump on every host's underlay device meanwhile sees nothing but WireGuard (UDP 51820)
//! between two hosts: no UDP 4789 or 4790, no request's marker and no HTTP at all (which it
//! does see on the client's own packets, where they are in clear). And publishing a port opens no way around the
//! encrypted network's ingress filter: plain VXLAN sent by the client to a host's UDP 4790
//! reaches no container (with the routing mesh's tcx program on the underlay device, the
//! filter only runs because the program passes what is not its own on with TCX_NEXT).

use std::collections::BTreeSet;

use vxmesh_tests::crypto::{self, arrives, inject, udp_dst_port};
use vxmesh_tests::mesh::{self, between_hosts, host_names, ipv4_ends};
use vxmesh_tests::services::{self, Nginx};
use vxmesh_tests::{pcap, Lab};

const REPLICAS: [&str; 6] = ["h1-c1", "h1-c2", "h2-c1", "h2-c2", "h3-c1", "h3-c2"];
const MARKER: &str = "VXMESH-MESH-MARKER-5c1e";
/// New connections through each host's published port, per mode.
const REQUESTS: usize = 60;

/// Requests through every host while every underlay device is captured; asserts what the
/// clients got and what the wire showed.
fn requests_show_only_wireguard_between_hosts(lab: &Lab, mode: &str) {
    let client = mesh::client_addr(lab);
    let caps = mesh::UnderlayCaptures::start(lab, "ip");
    let mut answered = BTreeSet::new();
    for h in host_names(lab) {
        let (count, addrs) = mesh::new_connections(lab, &h, 8080, MARKER, REQUESTS);
        for (replica, seen) in &addrs {
            assert_eq!(
                seen,
                &vec![client.to_string()],
                "{mode}: {replica} saw the client through {h}"
            );
        }
        eprintln!("{mode}, through {h}: {count:?}");
        answered.extend(count.into_keys());
    }
    let frames = caps.stop();
    let every: BTreeSet<String> = REPLICAS.iter().map(|r| r.to_string()).collect();
    assert_eq!(answered, every, "{mode}: every replica answered");

    let between = between_hosts(lab, &frames);
    let vxlan = between
        .iter()
        .filter(|f| matches!(udp_dst_port(f), Some(4789 | 4790)))
        .count();
    // The marker is in the requests; "HTTP/1.1" in requests and replies alike.
    let marked = between
        .iter()
        .filter(|f| pcap::contains(f, MARKER.as_bytes()) || pcap::contains(f, b"HTTP/1.1"))
        .count();
    let wireguard = between
        .iter()
        .filter(|f| udp_dst_port(f) == Some(51820))
        .count();
    let from_client_marked = frames
        .iter()
        .filter(|f| ipv4_ends(f).is_some_and(|(s, _)| s == client))
        .filter(|f| pcap::contains(f, MARKER.as_bytes()))
        .count();
    let to_client_http = frames
        .iter()
        .filter(|f| ipv4_ends(f).is_some_and(|(_, d)| d == client))
        .filter(|f| pcap::contains(f, b"HTTP/1.1 200"))
        .count();
    eprintln!(
        "{mode}: {} frames captured, {} between hosts ({wireguard} WireGuard, {vxlan} VXLAN, \
         {marked} with the marker or HTTP); {from_client_marked} from the client with the \
         marker, {to_client_http} HTTP replies to it",
        frames.len(),
        between.len()
    );
    assert!(
        from_client_marked >= REQUESTS && to_client_http >= REQUESTS,
        "{mode}: the capture should see the requests and replies where they are in clear"
    );
    assert_eq!(vxlan, 0, "{mode}: VXLAN in clear between hosts");
    assert_eq!(
        marked, 0,
        "{mode}: the marker crossed between hosts in clear"
    );
    assert_eq!(
        wireguard,
        between.len(),
        "{mode}: only WireGuard between hosts"
    );
    // Two thirds of the requests go to another host's replica, each several packets.
    assert!(
        wireguard >= REQUESTS * 2,
        "{mode}: the requests to remote replicas should cross as WireGuard ({wireguard})"
    );
}

#[test]
fn published_port_of_an_encrypted_network_crosses_between_hosts_only_in_wireguard() {
    let lab = crypto::lab_up(3, 2, 1, 1);
    let _servers: Vec<Nginx> = REPLICAS.iter().map(|b| Nginx::start(&lab, b, 80)).collect();
    services::create_published(&lab, "web", "80", "8080:80", &REPLICAS);
    assert!(
        mesh::wait_answered_everywhere(&lab, 8080),
        "published port not answered; agent log h1:\n{}",
        lab.agent_log("h1")
    );
    requests_show_only_wireguard_between_hosts(&lab, "default");
    services::set_mode(&lab, "web", "dsr");
    requests_show_only_wireguard_between_hosts(&lab, "dsr");

    // The encrypted network's ingress filter still runs on a host whose underlay device has
    // the routing mesh's program: plain VXLAN with its VNI to UDP 4790 gets nowhere.
    let h2 = lab.host("h2").address;
    let target = lab.container("h2-c1").clone();
    let vni = lab.network("net1").vni;
    let client = lab.namespace("client");
    assert!(
        !arrives(&lab, &target, "MESH-INJECTED", || inject(
            &client,
            h2,
            4790,
            vni,
            &target,
            "MESH-INJECTED"
        )),
        "plain VXLAN injected into the encrypted network through a host with a published port"
    );
}
