//! Acceptance 4 of issue 8, second half: one keep-alive HTTP connection, sending a request
//! every 100 ms, survives adding and removing other backends, the draining of its own backend,
//! and restarts of the agents (SIGTERM, then SIGKILL) with requests flowing meanwhile. Two
//! such connections: one balanced by the socket programs (inside the lab's cgroup), one by the
//! packet path (outside it: its connection-table entry must survive all of this, the agent
//! restart included, since the maps are pinned and reused).

use std::time::{Duration, Instant};

use ingress_lb::catalog::ServiceUpdate;
use ingress_lb::service::{BackendSpec, HealthCheck, Proto};
use vxmesh_tests::services::{self, lab_exec, lab_exec_output, Lines, Nginx};
use vxmesh_tests::{wait_until, Lab};

const BACKENDS: [&str; 3] = ["h1-c1", "h2-c1", "h3-c1"];
/// Added, then removed again.
const OTHER: &str = "h3-c2";
const HOSTS: [&str; 3] = ["h1", "h2", "h3"];
/// The socket-path client (in its cgroup) and the packet-path client (outside it).
const CLIENTS: [(&str, bool); 2] = [("h1-c2", false), ("h2-c2", true)];

fn up_everywhere(lab: &Lab, n: usize) -> bool {
    HOSTS.iter().all(|h| services::up_backends(lab, h) == n)
}

/// The backend a keep-alive client's answers come from: `ok MS NAME ADDR PORT` → NAME PORT.
fn conn_of(line: &str) -> Option<(String, String)> {
    let w: Vec<&str> = line.split_whitespace().collect();
    match w[..] {
        ["ok", _, name, _, port] => Some((name.to_string(), port.to_string())),
        _ => None,
    }
}

fn loads(lab: &Lab, host: &str) -> usize {
    lab.agent_log(host).matches("load datapath").count()
}

#[test]
fn a_keepalive_connection_survives_backend_changes_draining_and_agent_restarts() {
    let mut lab = Lab::up(3, 2, 1);
    let _servers: Vec<Nginx> = BACKENDS
        .iter()
        .chain([&OTHER])
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
    let catalog = services::catalog(&lab);
    assert!(wait_until(Duration::from_secs(30), || up_everywhere(
        &lab, 3
    )));

    let stop = tempfile::tempdir().unwrap();
    let stop_file = stop.path().join("stop");
    let vip = format!("{}:80", svc.vip);
    let clients: Vec<Lines> = CLIENTS
        .iter()
        .map(|(c, outside)| {
            Lines::spawn(lab_exec(
                &lab,
                c,
                *outside,
                &[
                    env!("CARGO_BIN_EXE_svc_client"),
                    "keepalive",
                    &vip,
                    "1200",
                    "100",
                    stop_file.to_str().unwrap(),
                ],
            ))
        })
        .collect();
    let first = |l: &Lines| l.so_far().iter().find_map(|(_, line)| conn_of(line));
    assert!(wait_until(Duration::from_secs(10), || clients
        .iter()
        .all(|c| first(c).is_some())));
    let own: Vec<String> = clients.iter().map(|c| first(c).unwrap().0).collect();
    eprintln!("connections on {own:?}");

    // Another backend comes and goes.
    let t_changes = Instant::now();
    catalog
        .update("web", &[ServiceUpdate::AddBackend(BackendSpec::new(OTHER))])
        .unwrap();
    assert!(wait_until(Duration::from_secs(15), || up_everywhere(
        &lab, 4
    )));
    catalog
        .update("web", &[ServiceUpdate::RemoveBackend(OTHER.into())])
        .unwrap();
    assert!(wait_until(Duration::from_secs(15), || up_everywhere(
        &lab, 3
    )));

    // Their own backends drain: no new flows, the established ones stay.
    let mut drained = own.clone();
    drained.sort();
    drained.dedup();
    let updates: Vec<ServiceUpdate> = drained
        .iter()
        .map(|b| ServiceUpdate::DrainBackend(b.clone()))
        .collect();
    catalog.update("web", &updates).unwrap();
    assert!(wait_until(Duration::from_secs(15), || up_everywhere(
        &lab,
        3 - drained.len()
    )));

    // The agents of the clients' hosts restart: SIGTERM, then SIGKILL. While each is down,
    // the pinned datapath keeps forwarding: new connections are answered too.
    for host in ["h1", "h2"] {
        for signal in [libc::SIGTERM, libc::SIGKILL] {
            let before = loads(&lab, host);
            lab.signal_agent(host, signal);
            assert!(lab.wait_agent_exit(host, Duration::from_secs(10)));
            let client = if host == "h1" { "h1-c2" } else { "h2-c2" };
            let out = lab_exec_output(
                &lab,
                client,
                false,
                &[
                    "curl",
                    "-sS",
                    "-m",
                    "3",
                    "-H",
                    "Connection: close",
                    &format!("http://{vip}/[1-5]"),
                ],
            );
            assert!(
                out.status.success(),
                "{client}: new connections while {host}'s agent is down: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            lab.start_agent(host);
            assert!(
                wait_until(Duration::from_secs(15), || loads(&lab, host) > before),
                "{host}'s agent took the datapath over:\n{}",
                lab.agent_log(host)
            );
        }
    }
    // A few more requests on the connections after the last restart.
    let t_last = Instant::now();
    assert!(wait_until(Duration::from_secs(10), || clients.iter().all(
        |c| c.so_far().iter().filter(|(t, _)| *t > t_last).count() >= 10
    )));
    std::fs::write(&stop_file, "").unwrap();

    for ((client, outside), lines) in CLIENTS.iter().zip(clients) {
        let (code, lines) = lines.wait();
        let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        let answers: Vec<(String, String)> = text.iter().filter_map(|l| conn_of(l)).collect();
        let count = |f: &dyn Fn(&Instant) -> bool| lines.iter().filter(|(t, _)| f(t)).count();
        eprintln!(
            "{client} (outside cgroup: {outside}): {} answers over {:.1} s ({} before the \
             changes, {} after the last restart), from {:?}; {}",
            answers.len(),
            lines
                .last()
                .unwrap()
                .0
                .duration_since(lines[0].0)
                .as_secs_f64(),
            count(&|t| *t < t_changes),
            count(&|t| *t > t_last),
            answers.first(),
            text[0]
        );
        assert_eq!(
            code,
            Some(0),
            "{client}: the connection failed: {:?}",
            text.last()
        );
        // The connection carried requests from before the first change to after the last.
        assert!(count(&|t| *t < t_changes) > 0 && count(&|t| *t > t_last) >= 10);
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "{client}: every answer on one connection to one backend: {:?}",
            answers.iter().find(|a| **a != answers[0])
        );
        assert_eq!(
            text[0],
            format!("peer={vip}"),
            "getpeername() shows the VIP"
        );
    }
}
