//! Issue 9, DSR with one target port published under two ports (`--publish 8080:80
//! --publish 9090:80 --mode dsr`): the backend's host answers each flow with the published
//! port its client addressed as the source. New connections from the lab's outside client to
//! both ports of both hosts are all answered (a SYN-ACK from the other port would be refused
//! by the client's TCP), by the replica on the ingress host (translated there) and by the one
//! on the other host (DSR).

use std::collections::BTreeMap;
use std::time::Duration;

use vxmesh_tests::services::{self, lab_exec_output, tally, Nginx};
use vxmesh_tests::{wait_until, Lab};

const REPLICAS: [&str; 2] = ["h1-c1", "h2-c1"];
const CONNECTIONS: usize = 40;

#[test]
fn one_target_port_published_twice_answers_from_each_published_port_in_dsr() {
    let lab = Lab::up(2, 1, 1);
    let _servers: Vec<Nginx> = REPLICAS.iter().map(|r| Nginx::start(&lab, r, 80)).collect();
    services::create_published_with(
        &lab,
        "web",
        "80",
        "8080:80",
        &REPLICAS,
        &["--publish", "9090:80", "--mode", "dsr"],
    );
    let urls: Vec<String> = ["h1", "h2"]
        .iter()
        .flat_map(|h| {
            let a = lab.host(h).address;
            [format!("http://{a}:8080/"), format!("http://{a}:9090/")]
        })
        .collect();
    // Programmed everywhere once one request through each host and port is answered.
    let first = |u: &String| {
        lab_exec_output(&lab, "client", true, &["curl", "-sS", "-m", "2", u])
            .status
            .success()
    };
    let ready = wait_until(Duration::from_secs(30), || urls.iter().all(first));
    assert!(ready, "agent log h2:\n{}", lab.agent_log("h2"));

    for url in &urls {
        let out = services::curl_close(&lab, "client", true, &format!("{url}[1-{CONNECTIONS}]"));
        let (count, _): (BTreeMap<String, usize>, _) = tally(&String::from_utf8_lossy(&out.stdout));
        eprintln!("{url}: {count:?}");
        assert_eq!(
            count.values().sum::<usize>(),
            CONNECTIONS,
            "{url}: {}\nagent log h2:\n{}",
            String::from_utf8_lossy(&out.stderr),
            lab.agent_log("h2")
        );
        assert_eq!(
            count.keys().collect::<Vec<_>>(),
            REPLICAS.iter().collect::<Vec<_>>(),
            "{url}: both replicas answered (the local one and, by DSR, the remote one)"
        );
    }
}
