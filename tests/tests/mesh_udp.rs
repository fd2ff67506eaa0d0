//! Acceptance 3 of issue 9: a UDP request/reply service through the routing mesh. One server
//! per host behind a service published as 5353/udp; requests from the lab's outside client
//! to each host's underlay address are answered with HOST:5353 as the reply's source, in
//! default mode and with `--mode dsr`.

use std::collections::BTreeSet;
use std::time::Duration;

use vxmesh_tests::services::{self, udp_ask, UdpEcho};
use vxmesh_tests::Lab;

const BACKENDS: [&str; 3] = ["h1-c1", "h2-c1", "h3-c1"];

fn ask_every_host(lab: &Lab) {
    let mut answered_by = BTreeSet::new();
    for h in ["h1", "h2", "h3"] {
        let to = format!("{}:5353", lab.host(h).address);
        // Each request is a new socket (a new source port): balanced anew.
        for _ in 0..6 {
            let (from, reply) = udp_ask(lab, "client", true, &to, env!("CARGO_BIN_EXE_svc_client"))
                .unwrap_or_else(|e| panic!("through {h}: {e}\nagent log:\n{}", lab.agent_log(h)));
            assert_eq!(from, to, "the reply's source is {h}'s published port");
            assert!(BACKENDS.contains(&reply.as_str()), "{reply}");
            answered_by.insert(reply);
        }
    }
    eprintln!("answered by {answered_by:?}");
    assert!(answered_by.len() > 1, "balanced: {answered_by:?}");
}

#[test]
fn udp_through_each_hosts_published_port_is_answered_from_it() {
    let lab = Lab::up(3, 1, 1);
    let _servers: Vec<UdpEcho> = BACKENDS
        .iter()
        .map(|b| UdpEcho::start(&lab, b, 5353, env!("CARGO_BIN_EXE_svc_client")))
        .collect();
    services::create_published(&lab, "dns", "53:5353/udp", "5353:53/udp", &BACKENDS);
    std::thread::sleep(Duration::from_secs(1));
    ask_every_host(&lab);

    services::set_mode(&lab, "dns", "dsr");
    ask_every_host(&lab);
}
