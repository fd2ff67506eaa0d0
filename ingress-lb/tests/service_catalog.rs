//! The service catalog on the SQLite store: create/list/update/remove, VIPs from the network's
//! IPAM, bad input named with nothing changed, concurrent creates, health and the tables.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use ingress_lb::catalog::{
    BackendStatus, HealthStatus, ServiceCatalog, ServiceError, ServiceUpdate,
};
use ingress_lb::service::{
    BackendSpec, BackendState, HealthCheck, HealthSpec, Proto, PublishedPort, ServiceSpec,
    VipRequest,
};
use overlay_core::catalog::{Catalog, CatalogError, EndpointSpec, NetworkSpec};
use overlay_core::store::{SqliteStore, Store};

struct Lab {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    core: Catalog,
    svc: ServiceCatalog,
}

/// A store with network `web` (10.20.0.0/24), nodes h1 and h2 (agents alive) and endpoints
/// e1, e2 on h1 and e3 on h2 (10.20.0.2-4).
fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let core = Catalog::new(Arc::new(SqliteStore::open(&path).unwrap()));
    core.create_network(&NetworkSpec {
        name: "web".into(),
        subnet: "10.20.0.0/24".into(),
        ..Default::default()
    })
    .unwrap();
    for (node, ip) in [("h1", "192.0.2.1"), ("h2", "192.0.2.2")] {
        core.add_node(node, ip.parse().unwrap()).unwrap();
        core.announce_agent(node, Duration::from_secs(60)).unwrap();
    }
    for (id, node) in [("e1", "h1"), ("e2", "h1"), ("e3", "h2")] {
        core.add_endpoint(&EndpointSpec {
            network: "web".into(),
            node: node.into(),
            id: Some(id.into()),
            ..Default::default()
        })
        .unwrap();
    }
    let svc = ServiceCatalog::of(&core);
    Lab {
        _dir: dir,
        path,
        core,
        svc,
    }
}

fn spec(name: &str, backends: &[&str]) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        network: "web".into(),
        ports: vec!["80:8080".parse().unwrap()],
        backends: backends.iter().map(|b| BackendSpec::new(*b)).collect(),
        ..Default::default()
    }
}

fn field_of(e: ServiceError) -> &'static str {
    match e {
        ServiceError::Invalid(v) => v.field,
        other => panic!("expected a validation error, got {other}"),
    }
}

fn ipam_owner(store: &dyn Store, ip: Ipv4Addr) -> Option<String> {
    store
        .get(&format!("/vxmesh/v1/ipam/web/{ip}"))
        .unwrap()
        .map(|kv| String::from_utf8(kv.value).unwrap())
}

#[test]
fn create_list_update_remove() {
    let l = lab();
    let s = l.svc.create(&spec("api", &["e1", "e3"])).unwrap();
    assert_eq!(
        s.vip,
        Ipv4Addr::new(10, 20, 0, 5),
        "the lowest address no endpoint holds"
    );
    assert_eq!(s.id, 1);
    assert_eq!(s.ports[0].target_port, 8080);
    assert_eq!(s.ports[0].proto, Proto::Tcp);
    assert_eq!(s.backends.iter().map(|b| b.id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        ipam_owner(l.svc.store().as_ref(), s.vip).as_deref(),
        Some("service:api")
    );
    let t = l.svc.create(&spec("db", &[])).unwrap();
    assert_eq!((t.id, t.vip), (2, Ipv4Addr::new(10, 20, 0, 6)));
    assert_eq!(
        l.svc
            .list()
            .unwrap()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["api", "db"]
    );
    assert_eq!(l.svc.get("api").unwrap(), s);

    let u = l
        .svc
        .update(
            "api",
            &[
                ServiceUpdate::AddBackend(BackendSpec {
                    endpoint: "e2".into(),
                    weight: Some(3),
                }),
                ServiceUpdate::DrainBackend("e1".into()),
                ServiceUpdate::SetHealth(HealthSpec {
                    check: HealthCheck::Http {
                        path: "/healthz".into(),
                    },
                    ..Default::default()
                }),
            ],
        )
        .unwrap();
    let e2 = u.backend("e2").unwrap();
    assert_eq!(
        (e2.id, e2.weight),
        (3, 3),
        "ids are never reused, counter at 3"
    );
    assert_eq!(u.backend("e1").unwrap().state, BackendState::Draining);
    assert_eq!(l.svc.get("api").unwrap(), u);
    // No change: nothing written.
    let rev = l.svc.store().revision().unwrap();
    l.svc
        .update("api", &[ServiceUpdate::DrainBackend("e1".into())])
        .unwrap();
    assert_eq!(l.svc.store().revision().unwrap(), rev);

    let u = l
        .svc
        .update("api", &[ServiceUpdate::RemoveBackend("e3".into())])
        .unwrap();
    assert!(u.backend("e3").is_none());
    // A removed backend's id is not handed out again.
    let u = l
        .svc
        .update("api", &[ServiceUpdate::AddBackend(BackendSpec::new("e3"))])
        .unwrap();
    assert_eq!(u.backend("e3").unwrap().id, 4);

    let removed = l.svc.remove("api").unwrap();
    assert_eq!(removed.name, "api");
    assert!(matches!(
        l.svc.get("api"),
        Err(ServiceError::NotFound { .. })
    ));
    assert_eq!(
        ipam_owner(l.svc.store().as_ref(), s.vip),
        None,
        "VIP released"
    );
    l.svc.remove("db").unwrap();
    // Nothing of the services is left but the backend id counter.
    let left: Vec<String> = l
        .svc
        .store()
        .range("/vxmesh/v1/")
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .filter(|k| {
            ![
                "/vxmesh/v1/networks/",
                "/vxmesh/v1/nodes/",
                "/vxmesh/v1/endpoints/",
                "/vxmesh/v1/ipam/",
                "/vxmesh/v1/macs/",
                "/vxmesh/v1/hosts/",
                "/vxmesh/v1/vnis/",
                "/vxmesh/v1/agents/",
                "/vxmesh/v1/alive/",
                "/vxmesh/v1/guards/",
            ]
            .iter()
            .any(|p| k.starts_with(p))
        })
        .collect();
    assert_eq!(left, ["/vxmesh/v1/service-backend-ids"]);
    // The VIP is free again: the next endpoint gets it.
    let e = l
        .core
        .add_endpoint(&EndpointSpec {
            network: "web".into(),
            node: "h1".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(e.ip, s.vip);
}

#[test]
fn vips_and_endpoint_addresses_never_collide() {
    let l = lab();
    let mut vips = BTreeSet::new();
    for i in 0..5 {
        vips.insert(l.svc.create(&spec(&format!("s{i}"), &["e1"])).unwrap().vip);
        let e = l
            .core
            .add_endpoint(&EndpointSpec {
                network: "web".into(),
                node: "h1".into(),
                ..Default::default()
            })
            .unwrap();
        assert!(!vips.contains(&e.ip), "endpoint got VIP {}", e.ip);
    }
    assert_eq!(vips.len(), 5);
    let vip = *vips.iter().next().unwrap();
    // An endpoint cannot ask for a VIP, and a service cannot ask for an endpoint's address.
    let err = l
        .core
        .add_endpoint(&EndpointSpec {
            network: "web".into(),
            node: "h1".into(),
            ip: Some(vip),
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        matches!(&err, CatalogError::Invalid(v) if v.field == "ip"),
        "{err}"
    );
    let mut s = spec("x", &[]);
    s.vip = VipRequest::Ip(Ipv4Addr::new(10, 20, 0, 2));
    let err = l.svc.create(&s).unwrap_err();
    assert!(err.to_string().contains("by e1"), "{err}");
    assert_eq!(field_of(err), "vip");
    s.vip = VipRequest::Ip(vip);
    assert_eq!(field_of(l.svc.create(&s).unwrap_err()), "vip");
    s.vip = VipRequest::Ip(Ipv4Addr::new(10, 20, 0, 200));
    assert_eq!(l.svc.create(&s).unwrap().vip, Ipv4Addr::new(10, 20, 0, 200));
}

#[test]
fn concurrent_creates_get_distinct_vips() {
    let l = lab();
    const THREADS: usize = 12;
    let barrier = Arc::new(Barrier::new(THREADS * 2));
    let mut handles = Vec::new();
    for i in 0..THREADS {
        // Each thread opens the store itself, as separate processes would.
        let (path, gate) = (l.path.clone(), barrier.clone());
        handles.push(std::thread::spawn(move || {
            let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
            let svc = ServiceCatalog::new(store);
            gate.wait();
            svc.create(&spec(&format!("svc{i}"), &["e1", "e2"]))
                .unwrap()
                .vip
        }));
        let (path, gate) = (l.path.clone(), barrier.clone());
        handles.push(std::thread::spawn(move || {
            let core = Catalog::new(Arc::new(SqliteStore::open(&path).unwrap()));
            gate.wait();
            core.add_endpoint(&EndpointSpec {
                network: "web".into(),
                node: "h2".into(),
                ..Default::default()
            })
            .unwrap()
            .ip
        }));
    }
    let got: Vec<Ipv4Addr> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let distinct: BTreeSet<_> = got.iter().collect();
    assert_eq!(
        distinct.len(),
        got.len(),
        "an address was handed out twice: {got:?}"
    );
    let services = l.svc.list().unwrap();
    assert_eq!(services.len(), THREADS);
    let ids: BTreeSet<u32> = services.iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), THREADS, "service ids are unique");
    let backend_ids: BTreeSet<u32> = services
        .iter()
        .flat_map(|s| s.backends.iter().map(|b| b.id))
        .collect();
    assert_eq!(backend_ids.len(), THREADS * 2, "backend ids are unique");
    for s in &services {
        assert_eq!(
            ipam_owner(l.svc.store().as_ref(), s.vip),
            Some(format!("service:{}", s.name))
        );
    }
}

/// Each row: a bad input, the field its error must name; the store must not change.
#[test]
fn bad_input_is_named_and_changes_nothing() {
    let l = lab();
    l.svc.create(&spec("taken", &["e1"])).unwrap();
    l.svc
        .update(
            "taken",
            &[ServiceUpdate::Publish(PublishedPort {
                published: 8080,
                port: 80,
                proto: Proto::Tcp,
            })],
        )
        .unwrap();
    type Edit = fn(&mut ServiceSpec);
    let rows: Vec<(&str, Edit, &str)> = vec![
        ("empty name", |s| s.name = String::new(), "service name"),
        ("name with /", |s| s.name = "a/b".into(), "service name"),
        ("name too long", |s| s.name = "x".repeat(65), "service name"),
        (
            "bad network name",
            |s| s.network = "bad net".into(),
            "network name",
        ),
        ("no port", |s| s.ports.clear(), "port"),
        ("port 0", |s| s.ports[0].port = 0, "port"),
        (
            "target 0",
            |s| s.ports[0].target_port = Some(0),
            "target-port",
        ),
        (
            "same port twice",
            |s| s.ports.push("80/tcp".parse().unwrap()),
            "port",
        ),
        (
            "unknown backend",
            |s| s.backends.push(BackendSpec::new("nope")),
            "backend",
        ),
        (
            "backend twice",
            |s| s.backends.push(BackendSpec::new("e1")),
            "backend",
        ),
        ("weight 0", |s| s.backends[0].weight = Some(0), "weight"),
        (
            "weight too big",
            |s| s.backends[0].weight = Some(1001),
            "weight",
        ),
        (
            "interval too short",
            |s| s.health.interval_ms = 10,
            "health-interval",
        ),
        (
            "timeout over interval",
            |s| s.health.timeout_ms = 5000,
            "health-timeout",
        ),
        ("rise 0", |s| s.health.rise = 0, "health-rise"),
        ("fall 11", |s| s.health.fall = 11, "health-fall"),
        (
            "http path without /",
            |s| {
                s.health.check = HealthCheck::Http {
                    path: "healthz".into(),
                }
            },
            "health",
        ),
        (
            "tcp check on a udp-only service",
            |s| {
                s.ports = vec!["53/udp".parse().unwrap()];
                s.health.check = HealthCheck::Tcp;
            },
            "health",
        ),
        (
            "vip outside the subnet",
            |s| s.vip = VipRequest::Ip([10, 21, 0, 5].into()),
            "vip",
        ),
        (
            "vip = gateway",
            |s| s.vip = VipRequest::Ip([10, 20, 0, 1].into()),
            "vip",
        ),
        (
            "vip = network address",
            |s| s.vip = VipRequest::Ip([10, 20, 0, 0].into()),
            "vip",
        ),
        (
            "vip = broadcast",
            |s| s.vip = VipRequest::Ip([10, 20, 0, 255].into()),
            "vip",
        ),
        (
            "vip = an endpoint's",
            |s| s.vip = VipRequest::Ip([10, 20, 0, 3].into()),
            "vip",
        ),
        (
            "table size not prime",
            |s| s.maglev_table_size = Some(1000),
            "maglev-table-size",
        ),
        (
            "table size too big",
            |s| s.maglev_table_size = Some(2_000_003),
            "maglev-table-size",
        ),
        (
            "table smaller than the backends",
            |s| {
                s.backends.push(BackendSpec::new("e2"));
                s.backends.push(BackendSpec::new("e3"));
                s.maglev_table_size = Some(2);
            },
            "maglev-table-size",
        ),
        (
            "publish port 0",
            |s| {
                s.publish.push(PublishedPort {
                    published: 0,
                    port: 80,
                    proto: Proto::Tcp,
                })
            },
            "publish",
        ),
        (
            "publish a port the service lacks",
            |s| {
                s.publish.push(PublishedPort {
                    published: 9000,
                    port: 81,
                    proto: Proto::Tcp,
                })
            },
            "publish",
        ),
        (
            "publish with the wrong protocol",
            |s| {
                s.publish.push(PublishedPort {
                    published: 9000,
                    port: 80,
                    proto: Proto::Udp,
                })
            },
            "publish",
        ),
        (
            "publish twice",
            |s| {
                let p = PublishedPort {
                    published: 9000,
                    port: 80,
                    proto: Proto::Tcp,
                };
                s.publish = vec![p, p];
            },
            "publish",
        ),
        (
            "publish a port another service holds",
            |s| {
                s.publish.push(PublishedPort {
                    published: 8080,
                    port: 80,
                    proto: Proto::Tcp,
                })
            },
            "publish",
        ),
    ];
    let before = l.svc.store().revision().unwrap();
    for (what, edit, field) in rows {
        let mut s = spec("fresh", &["e1"]);
        edit(&mut s);
        let err = l.svc.create(&s).unwrap_err();
        let msg = err.to_string();
        assert_eq!(field_of(err), field, "{what}: {msg}");
        assert_eq!(
            l.svc.store().revision().unwrap(),
            before,
            "{what} changed the store"
        );
    }
    assert!(matches!(
        l.svc.create(&spec("taken", &[])),
        Err(ServiceError::Exists { .. })
    ));
    let mut other_net = spec("x", &[]);
    other_net.network = "nope".into();
    assert!(matches!(
        l.svc.create(&other_net),
        Err(ServiceError::NotFound {
            kind: "network",
            ..
        })
    ));

    // Updates: the same rules, and the whole list or nothing.
    let updates: Vec<(&str, Vec<ServiceUpdate>, &str)> = vec![
        (
            "add an unknown backend",
            vec![ServiceUpdate::AddBackend(BackendSpec::new("nope"))],
            "backend",
        ),
        (
            "add a backend twice",
            vec![ServiceUpdate::AddBackend(BackendSpec::new("e1"))],
            "backend",
        ),
        (
            "remove a non-backend",
            vec![ServiceUpdate::RemoveBackend("e2".into())],
            "backend",
        ),
        (
            "drain a non-backend",
            vec![ServiceUpdate::DrainBackend("e3".into())],
            "backend",
        ),
        (
            "weight 0",
            vec![ServiceUpdate::SetWeight {
                endpoint: "e1".into(),
                weight: 0,
            }],
            "weight",
        ),
        (
            "good change then a bad one",
            vec![
                ServiceUpdate::AddBackend(BackendSpec::new("e2")),
                ServiceUpdate::SetHealth(HealthSpec {
                    rise: 0,
                    ..Default::default()
                }),
            ],
            "health-rise",
        ),
        (
            "table size too small",
            vec![ServiceUpdate::SetTableSize(Some(1))],
            "maglev-table-size",
        ),
        (
            "publish the same port twice",
            vec![ServiceUpdate::Publish(PublishedPort {
                published: 8080,
                port: 80,
                proto: Proto::Tcp,
            })],
            "publish",
        ),
        (
            "unpublish what is not published",
            vec![ServiceUpdate::Unpublish(PublishedPort {
                published: 1,
                port: 80,
                proto: Proto::Tcp,
            })],
            "publish",
        ),
    ];
    let before = l.svc.store().revision().unwrap();
    for (what, changes, field) in updates {
        let err = l.svc.update("taken", &changes).unwrap_err();
        let msg = err.to_string();
        assert_eq!(field_of(err), field, "{what}: {msg}");
        assert_eq!(
            l.svc.store().revision().unwrap(),
            before,
            "{what} changed the store"
        );
    }
    assert!(matches!(
        l.svc.update("nope", &[]),
        Err(ServiceError::NotFound { .. })
    ));
    assert!(matches!(
        l.svc.remove("nope"),
        Err(ServiceError::NotFound { .. })
    ));
    assert_eq!(l.svc.store().revision().unwrap(), before);
}

#[test]
fn published_ports_are_claimed_and_released() {
    let l = lab();
    let p = PublishedPort {
        published: 8080,
        port: 80,
        proto: Proto::Tcp,
    };
    let mut a = spec("a", &[]);
    a.publish.push(p);
    l.svc.create(&a).unwrap();
    let mut b = spec("b", &[]);
    b.publish.push(p);
    assert_eq!(field_of(l.svc.create(&b).unwrap_err()), "publish");
    // The same number over UDP is another port.
    b.ports.push("80/udp".parse().unwrap());
    b.publish = vec![PublishedPort {
        proto: Proto::Udp,
        ..p
    }];
    l.svc.create(&b).unwrap();
    l.svc.update("a", &[ServiceUpdate::Unpublish(p)]).unwrap();
    l.svc.update("b", &[ServiceUpdate::Publish(p)]).unwrap();
    l.svc.remove("b").unwrap();
    l.svc.update("a", &[ServiceUpdate::Publish(p)]).unwrap();
    // Publish and unpublish in one update: no claim is left behind.
    let q = PublishedPort {
        published: 9090,
        ..p
    };
    l.svc
        .update(
            "a",
            &[ServiceUpdate::Publish(q), ServiceUpdate::Unpublish(q)],
        )
        .unwrap();
    assert!(l
        .svc
        .store()
        .get("/vxmesh/v1/published/tcp/9090")
        .unwrap()
        .is_none());
    assert_eq!(
        l.svc
            .store()
            .get("/vxmesh/v1/published/tcp/8080")
            .unwrap()
            .unwrap()
            .value,
        b"a"
    );
}

#[test]
fn health_decides_the_table() {
    let l = lab();
    let mut s = spec("api", &["e1", "e2", "e3"]);
    s.health.check = HealthCheck::Tcp;
    let svc = l.svc.create(&s).unwrap();
    let id = |e: &str| svc.backend(e).unwrap().id;
    let statuses = |l: &Lab| {
        let snap = l.svc.snapshot().unwrap();
        let svc = &snap.services["api"];
        snap.backends(svc)
            .into_iter()
            .map(|v| (v.backend.endpoint.clone(), v.status))
            .collect::<Vec<_>>()
    };
    // No report yet: out; no table.
    assert!(statuses(&l)
        .iter()
        .all(|(_, s)| *s == BackendStatus::Unknown));
    let snap = l.svc.snapshot().unwrap();
    assert_eq!(snap.table(&snap.services["api"]).unwrap(), None);

    // Each node's agent checks its own backends, at the endpoint address and target port.
    let snap = l.svc.snapshot().unwrap();
    let targets = snap.health_targets("h1");
    assert_eq!(
        targets
            .iter()
            .map(|t| (t.key.1.as_str(), t.addr.to_string()))
            .collect::<Vec<_>>(),
        [
            ("e1", "10.20.0.2:8080".to_string()),
            ("e2", "10.20.0.3:8080".to_string())
        ]
    );
    assert_eq!(targets[0].key.0, "api");
    assert_eq!(snap.health_targets("h2").len(), 1);
    // Only the endpoint's own node may report.
    let err = l
        .svc
        .report_health("api", "e3", "h1", HealthStatus::Up, "", None)
        .unwrap_err();
    assert!(matches!(err, ServiceError::NotLocal { .. }), "{err}");
    for (e, node) in [("e1", "h1"), ("e2", "h1"), ("e3", "h2")] {
        l.svc
            .report_health("api", e, node, HealthStatus::Up, "connected", None)
            .unwrap();
    }
    let snap = l.svc.snapshot().unwrap();
    let table = snap.table(&snap.services["api"]).unwrap().unwrap();
    assert_eq!(
        table.len(),
        ingress_lb::maglev::table_size_for(3).unwrap() as usize,
        "automatic size for 3 backends"
    );
    let all: BTreeSet<u32> = table.iter().copied().collect();
    assert_eq!(all, [id("e1"), id("e2"), id("e3")].into());

    // A failing backend, a draining one, an agent gone: each leaves the table.
    l.svc
        .report_health(
            "api",
            "e2",
            "h1",
            HealthStatus::Down,
            "connection refused",
            None,
        )
        .unwrap();
    let snap = l.svc.snapshot().unwrap();
    let t = snap.table(&snap.services["api"]).unwrap().unwrap();
    assert!(!t.contains(&id("e2")));
    assert_eq!(
        statuses(&l)[1].1,
        BackendStatus::Down {
            detail: "connection refused".into()
        }
    );
    l.svc
        .update("api", &[ServiceUpdate::DrainBackend("e1".into())])
        .unwrap();
    let snap = l.svc.snapshot().unwrap();
    let t = snap.table(&snap.services["api"]).unwrap().unwrap();
    assert!(t.iter().all(|&b| b == id("e3")));
    assert_eq!(
        snap.healthy_backends(&snap.services["api"]).len(),
        2,
        "e1 draining stays in the map"
    );

    // h2's agent stops: e3 is out, nothing is up.
    let lease = l
        .core
        .announce_agent("h2", Duration::from_secs(60))
        .unwrap();
    l.core.retire_agent("h2", lease).unwrap();
    assert_eq!(statuses(&l)[2].1, BackendStatus::NodeDown);
    let snap = l.svc.snapshot().unwrap();
    assert_eq!(snap.table(&snap.services["api"]).unwrap(), None);
    // Its lease expires as well (an agent ran on h2: it published a host report): e3 leaves
    // the backend map; before that, a clean stop keeps it there, draining.
    let report = overlay_core::model::HostReport {
        underlay_mtu: 1500,
        ..Default::default()
    };
    l.core.publish_host_report("h2", &report).unwrap();
    assert_eq!(statuses(&l)[2].1, BackendStatus::NodeDown);
    l.core.store().lease_revoke(lease).unwrap();
    assert_eq!(statuses(&l)[2].1, BackendStatus::NodeGone);
    let snap = l.svc.snapshot().unwrap();
    assert_eq!(snap.healthy_backends(&snap.services["api"]).len(), 1);

    // An endpoint removed: its backend is out, whatever its last report said.
    l.core.remove_endpoint("web", "e1").unwrap();
    assert_eq!(statuses(&l)[0].1, BackendStatus::EndpointGone);
    // Removing a backend removes its health record.
    l.svc
        .update("api", &[ServiceUpdate::RemoveBackend("e2".into())])
        .unwrap();
    assert!(l
        .svc
        .store()
        .get("/vxmesh/v1/health/api/e2")
        .unwrap()
        .is_none());
}

#[test]
fn same_snapshot_same_table_on_every_host() {
    let l = lab();
    let svc = l.svc.create(&spec("api", &["e3", "e1", "e2"])).unwrap();
    // Two "hosts" read the store through their own handles.
    let host = || {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&l.path).unwrap());
        let snap = ServiceCatalog::new(store).snapshot().unwrap();
        snap.table(&snap.services["api"]).unwrap().unwrap()
    };
    let (a, b) = (host(), host());
    assert_eq!(a, b);
    // And the table is Maglev's for these backends whatever their order in the record.
    let names = ["e1", "e2", "e3"];
    let input: Vec<ingress_lb::maglev::Backend<'_>> = names
        .iter()
        .map(|n| ingress_lb::maglev::Backend {
            id: svc.backend(n).unwrap().id,
            name: n,
            weight: 1,
        })
        .collect();
    assert_eq!(
        a,
        ingress_lb::maglev::table(&input, ingress_lb::maglev::table_size_for(3).unwrap()).unwrap()
    );
}

#[test]
fn network_removal_with_services() {
    let l = lab();
    l.svc.create(&spec("api", &["e1"])).unwrap();
    l.svc.create(&spec("db", &[])).unwrap();
    let before = l.svc.store().revision().unwrap();
    let err = l.svc.remove_network(&l.core, "web", false).unwrap_err();
    assert!(
        matches!(&err, ServiceError::NetworkHasServices { count: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("api, db"), "{err}");
    assert_eq!(l.svc.store().revision().unwrap(), before);
    let (net, removed) = l.svc.remove_network(&l.core, "web", true).unwrap();
    assert_eq!(net.name, "web");
    assert_eq!(removed.len(), 2);
    assert!(l.svc.list().unwrap().is_empty());
    assert!(l
        .svc
        .store()
        .range("/vxmesh/v1/dependents/")
        .unwrap()
        .kvs
        .is_empty());
}

/// overlay-core's `network rm --force` alone (not through ingress-lb) leaves the services: they
/// become orphans, which never follow a new network of the same name and can be removed
/// without touching the new network's addresses.
#[test]
fn orphans_do_not_follow_a_new_network_of_the_same_name() {
    let l = lab();
    let svc = l.svc.create(&spec("api", &["e1"])).unwrap();
    l.core.remove_network("web", true).unwrap();
    l.core
        .create_network(&NetworkSpec {
            name: "web".into(),
            subnet: "10.20.0.0/24".into(),
            ..Default::default()
        })
        .unwrap();
    // The new network's endpoints may take the old VIP.
    let mut ep = EndpointSpec {
        network: "web".into(),
        node: "h1".into(),
        ip: Some(svc.vip),
        id: Some("e1".into()),
        ..Default::default()
    };
    ep.attach = false;
    l.core.add_endpoint(&ep).unwrap();
    let snap = l.svc.snapshot().unwrap();
    assert!(snap.services.is_empty());
    assert_eq!(snap.orphans.len(), 1);
    assert!(matches!(
        l.svc
            .update("api", &[ServiceUpdate::DrainBackend("e1".into())]),
        Err(ServiceError::Orphaned { .. })
    ));
    l.svc.remove("api").unwrap();
    assert_eq!(
        ipam_owner(l.svc.store().as_ref(), svc.vip).as_deref(),
        Some("e1"),
        "the endpoint keeps its address"
    );
}

#[test]
fn records_read_back_are_validated() {
    let l = lab();
    let good = l.svc.create(&spec("api", &["e1"])).unwrap();
    let mut bad = good.clone();
    bad.name = "evil".into();
    bad.ports[0].port = 0;
    let store = l.svc.store();
    store
        .put(
            "/vxmesh/v1/services/evil",
            &serde_json::to_vec(&bad).unwrap(),
        )
        .unwrap();
    store.put("/vxmesh/v1/services/junk", b"{not json").unwrap();
    store
        .put(
            "/vxmesh/v1/health/api/e1",
            br#"{"node":"bad node","status":"up"}"#,
        )
        .unwrap();
    let snap = l.svc.snapshot().unwrap();
    assert_eq!(snap.services.keys().collect::<Vec<_>>(), ["api"]);
    assert!(snap.health.is_empty());
    assert_eq!(snap.problems.len(), 3, "{:?}", snap.problems);
    assert!(
        snap.problems.iter().any(|p| p.contains("invalid port '0'")),
        "{:?}",
        snap.problems
    );
}

#[test]
fn services_survive_a_store_copy_and_orphans_stay_orphans() {
    use ingress_lb::catalog::ServiceCopyFix;
    use overlay_core::store::copy::copy;
    let l = lab();
    l.svc.create(&spec("api", &["e1", "e3"])).unwrap();
    // An orphan: its network removed and made again under the same name.
    l.svc.create(&spec("old", &["e2"])).unwrap();
    let mut orphan: ingress_lb::service::Service = serde_json::from_slice(
        &l.core
            .store()
            .get("/vxmesh/v1/services/old")
            .unwrap()
            .unwrap()
            .value,
    )
    .unwrap();
    orphan.network_revision += 1_000;
    l.core
        .store()
        .put(
            "/vxmesh/v1/services/old",
            &serde_json::to_vec(&orphan).unwrap(),
        )
        .unwrap();
    // Revisions differ in the destination: a few writes there first.
    let dst_dir = tempfile::tempdir().unwrap();
    let dst: Arc<dyn Store> = Arc::new(SqliteStore::open(dst_dir.path().join("b.db")).unwrap());
    for i in 0..7 {
        dst.put("/elsewhere", i.to_string().as_bytes()).unwrap();
    }
    copy(&**l.core.store(), &*dst, false, Some(&ServiceCopyFix)).unwrap();
    let b = ServiceCatalog::new(dst.clone());
    assert_eq!(b.list().unwrap().len(), 2);
    let snap = b.snapshot().unwrap();
    assert_eq!(snap.services.keys().collect::<Vec<_>>(), ["api"]);
    assert_eq!(snap.orphans.len(), 1);
    assert_eq!(snap.orphans[0].name, "old");
}
