//! Acceptance 2 of issue 9 (the routing mesh), as far as it goes: six nginx replicas over
//! three hosts behind one service published on 8080; new connections from the lab's outside
//! client (a namespace on the underlay switch, not a vxmesh host) to each host's underlay
//! address are answered by every replica, and every replica reports the client's own
//! address; the same with `--mode dsr`.

use std::collections::BTreeMap;
use std::time::Duration;

use vxmesh_tests::capture::Capture;
use vxmesh_tests::services::{self, lab_exec_output, tally, Nginx};
use vxmesh_tests::{wait_until, Lab};

const REPLICAS: [&str; 6] = ["h1-c1", "h1-c2", "h2-c1", "h2-c2", "h3-c1", "h3-c2"];
/// New connections to each host's published port.
const CONNECTIONS: usize = 600;

fn through_each_host(lab: &Lab) -> BTreeMap<String, usize> {
    let mut total: BTreeMap<String, usize> = BTreeMap::new();
    for h in ["h1", "h2", "h3"] {
        let host = lab.host(h).address;
        let url = format!("http://{host}:8080/[1-{CONNECTIONS}]");
        let out = lab_exec_output(
            lab,
            "client",
            true,
            &["curl", "-sS", "-m", "5", "-H", "Connection: close", &url],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (count, addrs) = tally(&text);
        let answered: usize = count.values().sum();
        assert_eq!(
            answered,
            CONNECTIONS,
            "through {h}: {}\nagent log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            lab.agent_log(h)
        );
        assert_eq!(
            count.keys().collect::<Vec<_>>(),
            REPLICAS.iter().collect::<Vec<_>>(),
            "through {h}: every replica answered"
        );
        for (replica, seen) in &addrs {
            assert_eq!(
                seen,
                &vec![vxmesh_tests::mesh::client_addr(lab).to_string()],
                "{replica} saw the client"
            );
        }
        eprintln!("through {h}: {count:?}");
        for (b, n) in count {
            *total.entry(b).or_default() += n;
        }
    }
    total
}

fn assert_even(total: &BTreeMap<String, usize>) {
    let even = (CONNECTIONS * 3) as f64 / REPLICAS.len() as f64;
    for (b, n) in total {
        let dev = (*n as f64 - even) / even;
        assert!(
            dev.abs() <= 0.25,
            "{b}: {n} answers, {:+.1}% of even",
            dev * 100.0
        );
    }
}

/// 60 new connections through h1's published port while tcpdump watches: replies to the
/// client that reach h1 over the overlay (decapsulated, on its VXLAN device), and TCP from
/// h1's address:8080 that leaves h2's underlay device (DSR replies of h2's replicas).
fn witnessed_through_h1(lab: &Lab) -> (usize, usize) {
    let mut back_to_h1 = Capture::start(
        &lab.namespace("h1"),
        "vx-net1",
        &format!("tcp and dst host {}", vxmesh_tests::mesh::client_addr(lab)),
    );
    let mut from_h2 = Capture::start(
        &lab.namespace("h2"),
        "eth0",
        &format!(
            "tcp and src host {} and src port 8080",
            lab.host("h1").address
        ),
    );
    let url = format!("http://{}:8080/[1-60]", lab.host("h1").address);
    let out = lab_exec_output(
        lab,
        "client",
        true,
        &["curl", "-sS", "-m", "5", "-H", "Connection: close", &url],
    );
    let (count, _) = tally(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(count.values().sum::<usize>(), 60);
    (back_to_h1.stop().len(), from_h2.stop().len())
}

#[test]
fn published_port_on_every_host_reaches_every_replica_with_the_client_address() {
    let lab = Lab::up(3, 2, 1);
    let _servers: Vec<Nginx> = REPLICAS.iter().map(|b| Nginx::start(&lab, b, 80)).collect();
    services::create_published(&lab, "demo", "80", "8080:80", &REPLICAS);
    // The mesh is programmed on every host (frontends, places, attachments) when a request
    // through each host's published port is answered.
    let mesh_ready = wait_until(Duration::from_secs(30), || {
        ["h1", "h2", "h3"].iter().all(|h| {
            let url = format!("http://{}:8080/", lab.host(h).address);
            lab_exec_output(&lab, "client", true, &["curl", "-sS", "-m", "2", &url])
                .status
                .success()
        })
    });
    assert!(
        mesh_ready,
        "published port not answered; agent log h1:\n{}",
        lab.agent_log("h1")
    );
    assert_even(&through_each_host(&lab));
    let (back, direct) = witnessed_through_h1(&lab);
    eprintln!("default mode: {back} replies back to h1 over the overlay, {direct} direct from h2");
    assert!(
        back > 0,
        "default mode: replies return through the ingress host"
    );
    assert_eq!(direct, 0, "default mode: h2 never answers as h1");

    services::set_mode(&lab, "demo", "dsr");
    assert_even(&through_each_host(&lab));
    let (back, direct) = witnessed_through_h1(&lab);
    eprintln!("DSR: {back} replies back to h1 over the overlay, {direct} direct from h2");
    assert_eq!(
        back, 0,
        "DSR: the ingress host carries only the forward direction"
    );
    assert!(direct > 0, "DSR: h2 answers the client itself as h1:8080");
}
