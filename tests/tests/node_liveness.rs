//! Node liveness on the agents' store leases, on both stores: when a host's agent dies
//! (SIGKILL), every other host removes its FDB and neighbour entries, its WireGuard peer and
//! its service backends once the agent's lease (5 s) has expired, within the lease's TTL + 3 s
//! of the kill; the dead host's own kernel is left as it was (fail static); started again, the
//! agent rejoins with no manual step and everything comes back.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use vxmesh::{HealthCheck, Proto};
use vxmesh_tests::services::{self, up_backends};
use vxmesh_tests::witness::vxlan_fdb;
use vxmesh_tests::{run, wait_until, Lab};

/// The agents' default lease TTL (`vxmesh agent --lease-ttl`).
const TTL: Duration = Duration::from_secs(5);

/// What `host` holds toward h2: static VXLAN FDB entries to h2's underlay address on the
/// plain network's device (broadcast, h2-c2's MAC, h2's node MAC), a permanent neighbour for h2-c2, and the up backends of `web`.
fn toward_h2(lab: &Lab, host: &str, h2: Ipv4Addr, c2: Ipv4Addr) -> (usize, bool, usize) {
    let ns = lab.namespace(host);
    let dst = format!(" dst {h2} ");
    let fdb = vxlan_fdb(&ns, "vx-net2")
        .iter()
        .filter(|l| l.contains(&dst))
        .count();
    let neigh = run(
        "ip",
        &[
            "-n",
            &ns,
            "neigh",
            "show",
            "nud",
            "permanent",
            "dev",
            "vb-net2",
        ],
    );
    let neigh = String::from_utf8_lossy(&neigh.stdout)
        .lines()
        .any(|l| l.starts_with(&format!("{c2} ")));
    (fdb, neigh, up_backends(lab, host))
}

fn a_dead_hosts_entries_vanish_and_come_back(store: &str) {
    // net1 encrypted (WireGuard peers), net2 plain; c1 of each host on net1, c2 on net2.
    let mut lab = vxmesh_tests::crypto::lab_up_on(store, 3, 2, 2, 1);
    let h2 = lab.host("h2").address;
    let c2 = lab.container("h2-c2").address;
    services::create(
        &lab,
        "web",
        "net2",
        &[(80, 80, Proto::Tcp)],
        &["h1-c2", "h2-c2", "h3-c2"],
        HealthCheck::None,
    );
    let everything = |lab: &Lab| {
        ["h1", "h3"]
            .iter()
            .all(|h| toward_h2(lab, h, h2, c2) == (3, true, 3))
    };
    assert!(
        wait_until(Duration::from_secs(60), || everything(&lab)),
        "before: {:?} {:?}\n{}",
        toward_h2(&lab, "h1", h2, c2),
        toward_h2(&lab, "h3", h2, c2),
        lab.agent_log("h1")
    );
    assert!(lab.ping_within(
        "h1-c1",
        lab.container("h2-c1").address,
        Duration::from_secs(20)
    ));
    let h2_own = vxlan_fdb(&lab.namespace("h2"), "vx-net2");

    lab.signal_agent("h2", libc::SIGKILL);
    let killed = Instant::now();
    assert!(lab.wait_agent_exit("h2", Duration::from_secs(10)));
    let gone = |lab: &Lab| {
        ["h1", "h3"]
            .iter()
            .all(|h| toward_h2(lab, h, h2, c2) == (0, false, 2))
    };
    // The lease expires at most TTL after the agent's last keepalive, before the kill.
    let limit = TTL + Duration::from_secs(3);
    let vanished = wait_until(limit + Duration::from_secs(20), || gone(&lab));
    let took = killed.elapsed();
    eprintln!("{store}: h2's entries gone from h1 and h3 {took:.1?} after the kill");
    assert!(
        vanished && took <= limit,
        "{store}: after {took:?}: h1 {:?}, h3 {:?} (fdb to h2, neighbour, up backends)\n{}",
        toward_h2(&lab, "h1", h2, c2),
        toward_h2(&lab, "h3", h2, c2),
        lab.agent_log("h1")
    );
    for h in ["h1", "h3"] {
        let log = lab.agent_log(h);
        assert!(
            log.contains("remove wireguard peer"),
            "{h}'s agent did not remove h2's WireGuard peer:\n{log}"
        );
    }
    // h2's own kernel is as its agent left it.
    assert_eq!(vxlan_fdb(&lab.namespace("h2"), "vx-net2"), h2_own);

    // Started again: it rejoins with no manual step.
    lab.start_agent("h2");
    assert!(
        wait_until(Duration::from_secs(30), || everything(&lab)),
        "{store}: h2 did not rejoin: h1 {:?}\n{}",
        toward_h2(&lab, "h1", h2, c2),
        lab.agent_log("h1")
    );
    assert!(lab.ping_within("h1-c2", c2, Duration::from_secs(20)));
    assert!(lab.ping_within(
        "h3-c1",
        lab.container("h2-c1").address,
        Duration::from_secs(20)
    ));
}

#[test]
fn on_sqlite() {
    a_dead_hosts_entries_vanish_and_come_back("sqlite");
}

#[test]
fn on_etcd() {
    a_dead_hosts_entries_vanish_and_come_back("etcd");
}
