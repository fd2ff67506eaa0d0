//! Acceptance 2 of issue 8: a TCP service over six real HTTP servers (nginx) spread over three
//! hosts. New connections from a container on every host (inside the lab's hooked cgroup) are
//! answered by every backend in near-even shares, and each backend sees the client's own
//! address; a process outside the cgroup reaches the VIP through the packet path (tc on its
//! veth), whose replies carry the VIP as their source on the wire.

use std::collections::BTreeMap;
use std::time::Duration;

use ingress_lb::service::{HealthCheck, Proto};
use overlay_core::model::veth_name;
use vxmesh_tests::capture::Capture;
use vxmesh_tests::services::{self, lab_exec_output, tally, Nginx};
use vxmesh_tests::{wait_until, Lab};

const BACKENDS: [&str; 6] = ["h1-c1", "h1-c2", "h2-c1", "h2-c2", "h3-c1", "h3-c2"];
const CLIENTS: [&str; 3] = ["h1-c3", "h2-c3", "h3-c3"];
/// New connections from each client.
const CONNECTIONS: usize = 600;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn vip_balances_new_connections_over_every_backend_and_keeps_the_client_address() {
    let lab = Lab::up(3, 3, 1);
    let _servers: Vec<Nginx> = BACKENDS
        .iter()
        .map(|b| Nginx::start(&lab, b, 8080))
        .collect();
    let svc = services::create(
        &lab,
        "web",
        "net1",
        &[(80, 8080, Proto::Tcp)],
        &BACKENDS,
        HealthCheck::Http { path: "/".into() },
    );
    let vip = svc.vip;
    // Every host's datapath holds the six backends as up (their health reported by their own
    // node's agent), as bpftool reads the pinned maps.
    let ready = wait_until(Duration::from_secs(30), || {
        ["h1", "h2", "h3"]
            .iter()
            .all(|h| services::up_backends(&lab, h) == BACKENDS.len())
    });
    assert!(
        ready,
        "backends not up on every host; agent log h1:\n{}",
        lab.agent_log("h1")
    );

    // 600 new connections (Connection: close) from each client at once, in its cgroup.
    let url = format!("http://{vip}/[1-{CONNECTIONS}]");
    let answers: Vec<(String, String)> = std::thread::scope(|s| {
        let jobs: Vec<_> = CLIENTS
            .iter()
            .map(|c| {
                let (lab, url) = (&lab, &url);
                s.spawn(move || {
                    let out = lab_exec_output(
                        lab,
                        c,
                        false,
                        &["curl", "-sS", "-H", "Connection: close", url.as_str()],
                    );
                    (c.to_string(), stdout(&out))
                })
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    let mut total: BTreeMap<String, usize> = BTreeMap::new();
    for (client, text) in &answers {
        let (count, addrs) = tally(text);
        let answered: usize = count.values().sum();
        assert_eq!(answered, CONNECTIONS, "{client}: answers\n{text}");
        assert_eq!(
            count.keys().collect::<Vec<_>>(),
            BACKENDS.iter().collect::<Vec<_>>(),
            "{client} reached every backend"
        );
        let me = lab.container(client).address.to_string();
        for (backend, seen) in &addrs {
            assert_eq!(
                seen,
                &vec![me.clone()],
                "{backend} saw {client}'s own address"
            );
        }
        eprintln!("{client}: {count:?}");
        for (b, n) in count {
            *total.entry(b).or_default() += n;
        }
    }
    let even = (CONNECTIONS * CLIENTS.len()) as f64 / BACKENDS.len() as f64;
    eprintln!(
        "shares of {} connections: {total:?} (even: {even})",
        CONNECTIONS * 3
    );
    for (b, n) in &total {
        let dev = (*n as f64 - even) / even;
        assert!(
            dev.abs() <= 0.25,
            "{b}: {n} answers, {:+.1}% of even",
            dev * 100.0
        );
    }

    // The packet path: a process outside the hooked cgroup. tcpdump on the client's host-side
    // veth sees its packets before the DNAT (ingress) and the replies after the reverse NAT
    // (egress): the VIP on both, never a backend's address or port.
    let client = lab.container("h1-c3");
    let veth = veth_name(&client.network, &client.name);
    let mut cap = Capture::start(&lab.namespace("h1"), &veth, "tcp");
    let mut seen = BTreeMap::new();
    for _ in 0..30 {
        let out = lab_exec_output(
            &lab,
            "h1-c3",
            true,
            &[
                "curl",
                "-sS",
                "-m",
                "5",
                "-H",
                "Connection: close",
                &format!("http://{vip}/"),
            ],
        );
        assert!(
            out.status.success(),
            "tc path: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (count, addrs) = tally(&stdout(&out));
        for (b, a) in addrs {
            assert_eq!(a, vec![client.address.to_string()], "{b} saw the client");
        }
        for b in count.keys() {
            *seen.entry(b.clone()).or_insert(0) += 1;
        }
    }
    let frames = cap.stop();
    let decoded = cap.decoded();
    eprintln!("captured {} frames on {veth}", frames.len());
    eprintln!("tc path answered by {seen:?}");
    assert!(seen.len() > 1, "the packet path balances: {seen:?}");
    let replies = format!("IP {vip}.80 > {}.", client.address);
    assert!(
        decoded.contains(&replies),
        "replies from the VIP:\n{decoded}"
    );
    assert!(
        !decoded.contains(".8080"),
        "no backend port on the client's veth:\n{decoded}"
    );
    for b in BACKENDS {
        let ip = lab.container(b).address;
        assert!(
            !decoded.contains(&format!("IP {ip}.")),
            "no reply from backend {b} ({ip}) reaches the client unchanged:\n{decoded}"
        );
    }
}
