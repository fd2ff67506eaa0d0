//! Acceptance 3 of issue 8: a UDP request/reply service (one server per host) answers through its
//! VIP from a container on every host, on the socket path (inside the lab's hooked cgroup:
//! sendmsg4 picks a backend, recvmsg4 shows the VIP as the reply's source) and on the packet
//! path (outside it: tc DNAT, and the reverse NAT writes the VIP into the reply).

use std::collections::BTreeSet;
use std::time::Duration;

use ingress_lb::service::{HealthCheck, Proto};
use vxmesh_tests::services::{self, lab_exec_output, UdpEcho};
use vxmesh_tests::{wait_until, Lab};

const BACKENDS: [&str; 3] = ["h1-c1", "h2-c1", "h3-c1"];
const CLIENTS: [&str; 3] = ["h1-c2", "h2-c2", "h3-c2"];

/// One request through `svc_client udp`: (source of the reply, reply), or what it printed.
fn ask(
    lab: &Lab,
    client: &str,
    outside_cgroup: bool,
    to: &str,
) -> Result<(String, String), String> {
    let out = lab_exec_output(
        lab,
        client,
        outside_cgroup,
        &[env!("CARGO_BIN_EXE_svc_client"), "udp", to, "query"],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let answer = text
        .lines()
        .find_map(|l| l.strip_prefix("from=")?.split_once(" reply="));
    match answer {
        Some((from, reply)) => Ok((from.to_string(), reply.to_string())),
        None => Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr))),
    }
}

#[test]
fn udp_requests_through_the_vip_are_answered_from_the_vip() {
    let lab = Lab::up(3, 2, 1);
    let _servers: Vec<UdpEcho> = BACKENDS
        .iter()
        .map(|b| UdpEcho::start(&lab, b, 5353, env!("CARGO_BIN_EXE_svc_client")))
        .collect();
    let svc = services::create(
        &lab,
        "dns",
        "net1",
        &[(53, 5353, Proto::Udp)],
        &BACKENDS,
        HealthCheck::None,
    );
    let vip = format!("{}:53", svc.vip);
    let ready = wait_until(Duration::from_secs(30), || {
        ["h1", "h2", "h3"]
            .iter()
            .all(|h| services::up_backends(&lab, h) == BACKENDS.len())
    });
    assert!(ready, "agent log h1:\n{}", lab.agent_log("h1"));

    for outside_cgroup in [false, true] {
        let mut answered_by = BTreeSet::new();
        for client in CLIENTS {
            // Each request is a new socket: balanced anew.
            for _ in 0..6 {
                let (from, reply) = ask(&lab, client, outside_cgroup, &vip)
                    .unwrap_or_else(|e| panic!("{client} (outside cgroup: {outside_cgroup}): {e}"));
                assert_eq!(from, vip, "{client}: the reply's source is the VIP");
                assert!(BACKENDS.contains(&reply.as_str()), "{reply}");
                answered_by.insert(reply);
            }
        }
        eprintln!("outside cgroup {outside_cgroup}: answered by {answered_by:?}");
        assert!(answered_by.len() > 1, "balanced: {answered_by:?}");
    }
}
