//! Issue 11, acceptance 4: the example orchestrator (`examples/orchestrator`), driven as a
//! library from this process, on a lab of 3 hosts made with `vxmesh lab up`: it takes over the
//! three hosts' agents (they run in this process, through `Agent::spawn`); h3 is killed with
//! `crash_host` (its replicas' servers killed, its agent aborted: the agent's heartbeat and
//! liveness stay in the store until its lease expires, as when a machine dies). A client on the lab's outside machine sends HTTP requests, each on a new
//! connection, to h1's published port 8080 all along:
//! - deploy 6 replicas (2 per host), a rolling update of all 6 (never fewer than 6 backends
//!   up, never more than 7), scale 6 → 3 → 6: not one request fails;
//! - h3 dies (its replicas' servers and its agent killed): the orchestrator puts 2 new
//!   replicas on h1 and h2 once h3's liveness has expired; requests fail only between the
//!   crash and the moment the 6 replicas are healthy again on h1 and h2 and both hosts have
//!   applied that (the failures are counted and printed), and none after.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vxmesh::services::BackendStatus;
use vxmesh::{Catalog, NetworkSpec, ServiceCatalog};
use vxmesh_orchestrator::{DeploySpec, HostSpec, Options, Orchestrator, ReplicaStatus};
use vxmesh_tests::http_loop::{Outcome, RequestLoop};
use vxmesh_tests::{run_ok, Lab};

const EVERY: Duration = Duration::from_millis(50);
const TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn deploy_update_scale_and_a_dead_host_keep_the_published_port_answering() {
    let lab = Lab::up(3, 0, 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(scenario(&lab));
}

async fn scenario(lab: &Lab) {
    let catalog = vxmesh::open_catalog(&lab.state.store).expect("the lab's store");
    catalog
        .create_network(&NetworkSpec {
            name: "front".into(),
            subnet: "10.20.0.0/24".into(),
            ..NetworkSpec::default()
        })
        .unwrap();
    let hosts = HostSpec::take_over_lab(lab.prefix(), &[]).expect("take over the agents");
    let orch = Orchestrator::start(catalog.clone(), hosts, Options::default())
        .await
        .expect("agents started");
    // The lab's agent processes are gone: the agents run in this process now.
    for h in lab.status().hosts {
        assert!(
            h.agent_pid.is_none() || !h.agent_running,
            "{} has an agent process",
            h.name
        );
    }
    let _reconciler = orch.spawn_reconciler();

    // More replicas than the /24 can hold: refused before anything is made.
    let too_many = orch.deploy(DeploySpec::new("big", 300, "front")).await;
    let err = too_many.expect_err("300 replicas on a /24").to_string();
    assert!(
        err.starts_with("invalid replicas '300': network front has room for"),
        "{err}"
    );
    assert!(
        ServiceCatalog::of(&catalog).get("big").is_err(),
        "nothing made"
    );
    assert!(
        catalog.endpoints(Some("front")).unwrap().is_empty(),
        "nothing made"
    );

    let mut web = DeploySpec::new("web", 6, "front");
    web.publish = vec!["8080:80".parse().unwrap()];
    orch.deploy(web).await.expect("deploy");
    spread(&orch, &["h1", "h2", "h3"], 2, "v1").await;

    // Zero failures through a rolling update and scale 6 -> 3 -> 6.
    let to = SocketAddr::new(lab.host("h1").address.into(), 8080);
    let client = lab.namespace("client");
    let lp = RequestLoop::start(&client, to, EVERY, TIMEOUT);
    answered_after(&lp, Instant::now(), 20, 6).await;
    let (updated, up) = counting_up(
        &catalog,
        orch.update("web", "v2", Duration::from_millis(500)),
    )
    .await;
    updated.expect("rolling update");
    // One at a time, the new one up before the old one leaves: never fewer than 6 up, never
    // more than 7.
    assert!(
        up.iter().all(|n| (6..=7).contains(n)),
        "up during the update: {up:?}"
    );
    spread(&orch, &["h1", "h2", "h3"], 2, "v2").await;
    let (scaled, up) = counting_up(&catalog, orch.scale("web", 3)).await;
    scaled.expect("scale to 3");
    assert!(
        up.iter().all(|n| (3..=6).contains(n)),
        "up scaling down: {up:?}"
    );
    spread(&orch, &["h1", "h2", "h3"], 1, "v2").await;
    let (scaled, up) = counting_up(&catalog, orch.scale("web", 6)).await;
    scaled.expect("scale to 6");
    assert!(
        up.iter().all(|n| (3..=6).contains(n)),
        "up scaling up: {up:?}"
    );
    spread(&orch, &["h1", "h2", "h3"], 2, "v2").await;
    answered_after(&lp, Instant::now(), 20, 6).await;
    let outcomes = lp.stop();
    let failed = failures(&outcomes);
    let versions: BTreeSet<&str> = answers(&outcomes)
        .filter_map(|a| a.split_whitespace().next()?.split_once('/'))
        .map(|(_, v)| v)
        .collect();
    eprintln!(
        "update and scale: {} requests, {} failed, versions seen {versions:?}",
        outcomes.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "requests failed: {failed:?}");
    assert_eq!(versions, BTreeSet::from(["v1", "v2"]));

    // h3 dies: its replicas are replaced on h1 and h2.
    let lp = RequestLoop::start(&client, to, EVERY, TIMEOUT);
    answered_after(&lp, Instant::now(), 20, 6).await;
    let doomed: Vec<String> = orch
        .ps("web")
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.node == "h3")
        .map(|r| r.netns)
        .collect();
    assert_eq!(doomed.len(), 2);
    let crash = Instant::now();
    orch.crash_host("h3").await.expect("crash h3");
    assert!(
        catalog.agent_alive("h3").unwrap(),
        "a crashed agent's heartbeat stays until its lease expires"
    );
    // The servers are dead: nothing listens in their namespaces any more.
    for ns in &doomed {
        let listening = run_ok("ip", &["netns", "exec", ns, "ss", "-Hltn", "sport = :80"]);
        assert_eq!(listening.trim(), "", "{ns} still listens");
    }
    let healed = spread(&orch, &["h1", "h2"], 3, "v2").await;
    let revision = catalog.store().revision().unwrap();
    vxmesh::wait::wait_applied_async(
        catalog.clone(),
        vec!["h1".into(), "h2".into()],
        revision,
        Duration::from_secs(30),
    )
    .await
    .expect("h1 and h2 applied");
    let settled = Instant::now();
    answered_after(&lp, settled, 60, 6).await;
    let outcomes = lp.stop();
    let failed = failures(&outcomes);
    let before = failed.iter().filter(|o| o.start < crash).count();
    let after = failed.iter().filter(|o| o.start >= settled).count();
    let last = failed
        .iter()
        .map(|o| o.start.duration_since(crash))
        .max()
        .unwrap_or_default();
    eprintln!(
        "dead host: {} requests, {} failed between the crash and {:.1} s after it (the last \
         started {:.2} s after it), {} requests after",
        outcomes.len(),
        failed.len(),
        settled.duration_since(crash).as_secs_f64(),
        last.as_secs_f64(),
        outcomes.iter().filter(|o| o.start >= settled).count()
    );
    let reasons: BTreeSet<&str> = failed
        .iter()
        .filter_map(|o| o.result.as_ref().err())
        .map(|e| e.split(" after").next().unwrap_or(e))
        .collect();
    eprintln!("dead host: the failures were {reasons:?}");
    assert_eq!(before, 0, "failures before the crash: {failed:?}");
    assert_eq!(after, 0, "failures once healed: {failed:?}");
    // The replicas h3 had are gone from the store and from the machine.
    for r in &healed {
        assert!(catalog.endpoint("front", &r.name).unwrap().node != "h3");
    }
    let h3_endpoints: Vec<String> = catalog
        .endpoints(Some("front"))
        .unwrap()
        .into_iter()
        .filter(|e| e.node == "h3")
        .map(|e| e.id)
        .collect();
    assert!(
        h3_endpoints.is_empty(),
        "h3 endpoints left: {h3_endpoints:?}"
    );
    orch.stop_agents().await;
}

/// Waits (up to 90 s) until `ps web` shows `per_host` replicas at `version` on each of `hosts`
/// and nowhere else, every one `up` in the store; returns them.
async fn spread(
    orch: &Orchestrator,
    hosts: &[&str],
    per_host: usize,
    version: &str,
) -> Vec<ReplicaStatus> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ps = orch.ps("web").await.unwrap();
        let ok = ps.len() == hosts.len() * per_host
            && hosts
                .iter()
                .all(|h| ps.iter().filter(|r| r.node == *h).count() == per_host)
            && ps.iter().all(|r| r.state == "up" && r.version == version);
        if ok {
            return ps;
        }
        assert!(
            Instant::now() < deadline,
            "want {per_host} replicas at {version} on each of {hosts:?}, have {ps:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (up to 60 s) until the loop has `n` answers to requests started after `since`, from
/// `replicas` distinct replicas.
async fn answered_after(lp: &RequestLoop, since: Instant, n: usize, replicas: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let so_far = lp.so_far();
        let later: Vec<&str> = so_far
            .iter()
            .filter(|o| o.start >= since)
            .filter_map(|o| o.result.as_deref().ok())
            .collect();
        let names: BTreeSet<&str> = later
            .iter()
            .filter_map(|a| a.split_whitespace().next())
            .collect();
        if later.len() >= n && names.len() >= replicas {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} answers from {names:?} after the mark (want {n} from {replicas}); last: {:?}",
            later.len(),
            so_far.last()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `work`, and meanwhile reads every 100 ms how many backends of `web` the store says
/// are up; returns its output and the counts seen.
async fn counting_up<T>(
    catalog: &Catalog,
    work: impl std::future::Future<Output = T>,
) -> (T, BTreeSet<usize>) {
    let services = ServiceCatalog::of(catalog);
    let mut seen = BTreeSet::new();
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return (out, seen),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                let snap = services.snapshot().unwrap();
                let up = snap
                    .backends(&snap.services["web"])
                    .iter()
                    .filter(|b| b.status == BackendStatus::Up)
                    .count();
                seen.insert(up);
            }
        }
    }
}

fn failures(outcomes: &[Outcome]) -> Vec<&Outcome> {
    outcomes.iter().filter(|o| o.result.is_err()).collect()
}

fn answers(outcomes: &[Outcome]) -> impl Iterator<Item = &str> {
    outcomes.iter().filter_map(|o| o.result.as_deref().ok())
}
