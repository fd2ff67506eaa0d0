//! Acceptance 4 of issue 8, first half: a backend whose server stops is taken out of every
//! host's Maglev table by the health checks of its own node's agent, after which a loop of new
//! connections sees no more failures; started again, it serves again.

use std::time::{Duration, Instant};

use ingress_lb::catalog::HealthStatus;
use ingress_lb::service::{HealthCheck, Proto};
use vxmesh_tests::services::{self, Nginx};
use vxmesh_tests::{wait_until, Lab};

const BACKENDS: [&str; 3] = ["h1-c1", "h2-c1", "h3-c1"];
const HOSTS: [&str; 3] = ["h1", "h2", "h3"];
const CLIENT: &str = "h1-c2";
/// The backend that fails.
const VICTIM: usize = 1;

fn up_everywhere(lab: &Lab, n: usize) -> bool {
    HOSTS.iter().all(|h| services::up_backends(lab, h) == n)
}

fn secs(t: Instant, since: Instant) -> f64 {
    t.saturating_duration_since(since).as_secs_f64()
}

#[test]
fn a_stopped_backend_leaves_the_tables_and_serves_again_once_healthy() {
    let lab = Lab::up(3, 2, 1);
    let mut servers: Vec<Nginx> = BACKENDS
        .iter()
        .map(|b| Nginx::start(&lab, b, 8080))
        .collect();
    // Default checks: HTTP GET every 1 s, down after 2 failures, up after 2 successes.
    let svc = services::create(
        &lab,
        "web",
        "net1",
        &[(80, 8080, Proto::Tcp)],
        &BACKENDS,
        HealthCheck::Http { path: "/".into() },
    );
    assert!(
        wait_until(Duration::from_secs(30), || up_everywhere(&lab, 3)),
        "agent log h2:\n{}",
        lab.agent_log("h2")
    );

    // New connections, 20 a second, for up to 25 s.
    let url = format!("http://{}/[1-500]", svc.vip);
    let lp = services::curl_loop(&lab, CLIENT, false, "20/s", "code=%{http_code}\n", &url);
    let answered = |after: Instant, what: &str| {
        lp.so_far()
            .iter()
            .filter(|(t, l)| *t > after && l.starts_with(what))
            .count()
    };
    let start = Instant::now();
    assert!(wait_until(Duration::from_secs(10), || answered(
        start, "code=200"
    ) >= 20));

    let victim = BACKENDS[VICTIM];
    let t0 = Instant::now();
    servers[VICTIM].stop();
    assert!(wait_until(Duration::from_secs(15), || {
        services::health(&lab, "web", victim) == Some(HealthStatus::Down)
    }));
    let t_reported = Instant::now();
    assert!(wait_until(Duration::from_secs(15), || up_everywhere(
        &lab, 2
    )));
    let t_out = Instant::now();
    // Two more seconds of new connections with the backend out.
    assert!(wait_until(Duration::from_secs(10), || answered(
        t_out, "code="
    ) >= 40));

    let t_restart = Instant::now();
    servers[VICTIM].restart();
    assert!(wait_until(Duration::from_secs(15), || up_everywhere(
        &lab, 3
    )));
    let t_back = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || answered(t_back, victim) >= 3),
        "{victim} answers again once healthy"
    );
    let lines = lp.so_far();
    drop(lp);

    let failures: Vec<Instant> = lines
        .iter()
        .filter(|(_, l)| l.starts_with("code=") && l != "code=200")
        .map(|(t, _)| *t)
        .collect();
    let last_failure = failures.iter().max().copied();
    eprintln!(
        "stopped {victim} at 0 s: reported down at {:.2} s, out of every table at {:.2} s, \
         {} failed connections, the last at {:.2} s; restarted at {:.2} s, back in every table \
         at {:.2} s",
        secs(t_reported, t0),
        secs(t_out, t0),
        failures.len(),
        last_failure.map_or(0.0, |t| secs(t, t0)),
        secs(t_restart, t0),
        secs(t_back, t0),
    );
    // Failures happen only between the stop and the tables' update (plus the connections in
    // flight at that moment), and none while the backend is out.
    assert!(
        failures.iter().all(|t| *t > t0),
        "no failure before the stop"
    );
    assert!(
        failures
            .iter()
            .all(|t| *t < t_out + Duration::from_millis(500)),
        "no failure once the tables left {victim} out"
    );
    let served_while_out = lines
        .iter()
        .filter(|(t, _)| *t > t_out + Duration::from_millis(500) && *t < t_restart)
        .filter(|(_, l)| l.starts_with(victim))
        .count();
    assert_eq!(served_while_out, 0, "{victim} got no connection while out");
}
