//! Typed watches on the embedded (SQLite) store, through the facade only: every write of the
//! catalogs shows up as the typed changes it made, in order, and a compacted history as a
//! resync. No kernel, no lab.

use std::sync::Arc;
use std::time::Duration;

use vxmesh::services::HealthStatus;
use vxmesh::watch::{Change, Op, Watcher};
use vxmesh::{
    BackendSpec, Catalog, EndpointSpec, NetworkSpec, ServiceCatalog, ServiceSpec, ServiceUpdate,
    SqliteStore,
};

const WAIT: Duration = Duration::from_secs(10);

fn catalog(dir: &tempfile::TempDir) -> Catalog {
    Catalog::new(Arc::new(
        SqliteStore::open(dir.path().join("store.db")).unwrap(),
    ))
}

/// `kind+ name` for a put, `kind- name` for a delete (health: `up`/`down`/`gone`).
fn short(c: &Change) -> String {
    let sign = |put: bool| if put { "+" } else { "-" };
    match c {
        Change::Network { name, op } => format!("network{} {name}", sign(op.value().is_some())),
        Change::Node { name, op } => format!("node{} {name}", sign(op.value().is_some())),
        Change::Endpoint { network, id, op } => {
            format!("endpoint{} {network}/{id}", sign(op.value().is_some()))
        }
        Change::Service { name, op } => format!("service{} {name}", sign(op.value().is_some())),
        Change::Backend {
            service,
            backend,
            op,
        } => format!("backend{} {service}/{backend}", sign(op.value().is_some())),
        Change::Health {
            service,
            backend,
            healthy,
            ..
        } => {
            let h = match healthy {
                Some(true) => "up",
                Some(false) => "down",
                None => "gone",
            };
            format!("health {service}/{backend} {h}")
        }
        Change::Host { node, op } => format!("host{} {node}", sign(op.value().is_some())),
        Change::Alive { node, alive } => format!("alive{} {node}", sign(*alive)),
        Change::Resync { .. } => "resync".into(),
        other => format!("{other:?}"),
    }
}

/// The next changes, as [`short`] strings: exactly `n` of them, waiting at most [`WAIT`].
fn next(w: &mut Watcher, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    while seen.len() < n && std::time::Instant::now() < deadline {
        seen.extend(
            w.next(Duration::from_millis(500))
                .unwrap()
                .iter()
                .map(short),
        );
    }
    seen
}

#[test]
fn catalog_writes_come_as_typed_changes_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let core = catalog(&dir);
    let services = ServiceCatalog::of(&core);
    let mut w = Watcher::from_now(&core).unwrap();
    let start = w.revision();

    let net = core
        .create_network(&NetworkSpec {
            name: "web".into(),
            subnet: "10.20.0.0/24".into(),
            ..Default::default()
        })
        .unwrap();
    let changes = w.next(WAIT).unwrap();
    assert_eq!(
        changes,
        vec![Change::Network {
            name: "web".into(),
            op: Op::Put(net)
        }]
    );
    assert!(w.revision() > start);

    core.add_node("h1", "192.0.2.1".parse().unwrap()).unwrap();
    core.announce_agent("h1", Duration::from_secs(60)).unwrap();
    for id in ["e1", "e2"] {
        core.add_endpoint(&EndpointSpec {
            network: "web".into(),
            node: "h1".into(),
            id: Some(id.into()),
            ..Default::default()
        })
        .unwrap();
    }
    assert_eq!(
        next(&mut w, 4),
        [
            "node+ h1",
            "alive+ h1",
            "endpoint+ web/e1",
            "endpoint+ web/e2"
        ]
    );

    let svc = services
        .create(&ServiceSpec {
            name: "api".into(),
            network: "web".into(),
            ports: vec!["80:8080".parse().unwrap()],
            backends: vec![BackendSpec::new("e1")],
            ..Default::default()
        })
        .unwrap();
    let changes = w.next(WAIT).unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(
        changes[0],
        Change::Service {
            name: "api".into(),
            op: Op::Put(svc.clone())
        }
    );
    assert_eq!(
        changes[1],
        Change::Backend {
            service: "api".into(),
            backend: "e1".into(),
            op: Op::Put(svc.backends[0].clone())
        }
    );

    // Only the backend that changed is reported, not the ones the watcher saw already.
    services
        .update("api", &[ServiceUpdate::AddBackend(BackendSpec::new("e2"))])
        .unwrap();
    assert_eq!(next(&mut w, 2), ["service+ api", "backend+ api/e2"]);

    services
        .report_health("api", "e1", "h1", HealthStatus::Down, "refused", None)
        .unwrap();
    let changes = w.next(WAIT).unwrap();
    match &changes[..] {
        [Change::Health {
            service,
            backend,
            op: Op::Put(rec),
            healthy: Some(false),
        }] => {
            assert_eq!((service.as_str(), backend.as_str()), ("api", "e1"));
            assert_eq!((rec.node.as_str(), rec.detail.as_str()), ("h1", "refused"));
        }
        other => panic!("expected e1's health, down: {other:?}"),
    }

    // Removing a backend removes its health record in the same transaction.
    services
        .update("api", &[ServiceUpdate::RemoveBackend("e1".into())])
        .unwrap();
    let mut got = next(&mut w, 3);
    got.sort();
    assert_eq!(
        got,
        ["backend- api/e1", "health api/e1 gone", "service+ api"]
    );

    services.remove("api").unwrap();
    assert_eq!(next(&mut w, 2), ["service- api", "backend- api/e2"]);

    core.remove_endpoint("web", "e2").unwrap();
    assert_eq!(next(&mut w, 1), ["endpoint- web/e2"]);

    // Nothing more: an empty list once the timeout passed.
    assert_eq!(w.next(Duration::from_millis(300)).unwrap(), vec![]);
}

#[test]
fn a_watcher_from_an_old_revision_reports_every_backend_once() {
    let dir = tempfile::tempdir().unwrap();
    let core = catalog(&dir);
    core.create_network(&NetworkSpec {
        name: "web".into(),
        subnet: "10.20.0.0/24".into(),
        ..Default::default()
    })
    .unwrap();
    core.add_node("h1", "192.0.2.1".parse().unwrap()).unwrap();
    let mut w = Watcher::new(&core, core.store().revision().unwrap());
    for id in ["e1", "e2"] {
        core.add_endpoint(&EndpointSpec {
            network: "web".into(),
            node: "h1".into(),
            id: Some(id.into()),
            ..Default::default()
        })
        .unwrap();
    }
    ServiceCatalog::of(&core)
        .create(&ServiceSpec {
            name: "api".into(),
            network: "web".into(),
            ports: vec!["80:8080".parse().unwrap()],
            backends: vec![BackendSpec::new("e1"), BackendSpec::new("e2")],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        next(&mut w, 5),
        [
            "endpoint+ web/e1",
            "endpoint+ web/e2",
            "service+ api",
            "backend+ api/e1",
            "backend+ api/e2"
        ]
    );
}

#[test]
fn compacted_history_is_a_resync_then_the_watch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let core = catalog(&dir);
    let mut w = Watcher::new(&core, 0);
    core.add_node("h1", "192.0.2.1".parse().unwrap()).unwrap();
    core.add_node("h2", "192.0.2.2".parse().unwrap()).unwrap();
    let now = core.store().revision().unwrap();
    core.store().compact(now).unwrap();

    let changes = w.next(WAIT).unwrap();
    assert_eq!(changes, vec![Change::Resync { revision: now }]);
    assert_eq!(w.revision(), now);

    core.remove_node("h1", false).unwrap();
    assert_eq!(next(&mut w, 1), ["node- h1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_async_waits_on_the_blocking_pool() {
    let dir = tempfile::tempdir().unwrap();
    let core = catalog(&dir);
    let mut w = Watcher::from_now(&core).unwrap();
    let writer = {
        let core = core.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(200));
            core.add_node("h1", "192.0.2.1".parse().unwrap()).unwrap()
        })
    };
    let changes = w.next_async(WAIT).await.unwrap();
    let node = writer.await.unwrap();
    assert_eq!(
        changes,
        vec![Change::Node {
            name: "h1".into(),
            op: Op::Put(node)
        }]
    );
}
