//! The ingress reconciler against a real datapath (loaded under a pin root of the test's own):
//! a pass programs frontends, backends, tables and VIPs from the store; a second pass changes
//! nothing; draining keeps a backend's flows; removing a backend deletes it and purges its
//! flows (moby/moby#36878); a backend reported down leaves the backend map without a purge;
//! removing the service leaves the maps empty. Runs as root (bpffs, BPF).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ingress_lb::catalog::{HealthStatus, ServiceCatalog, ServiceUpdate};
use ingress_lb::reconcile::{apply_maps, ids::kernel_id, DesiredLb, LbReport};
use ingress_lb::service::{BackendSpec, HealthCheck, HealthSpec, ServiceSpec};
use overlay_core::catalog::{Catalog, EndpointSpec, NetworkSpec};
use overlay_core::store::SqliteStore;
use vxmesh_ebpf::{Datapath, DatapathConfig, BE_F_DRAINING, PROG_FROM_LXC, TC_ACT_OK};

/// A store (network web 10.20.0.0/24, nodes h1 and h2 with live agents, endpoints e1 and e2
/// on h1 and e3 on h2) and a datapath loaded for node h1 under a pin root of its own.
struct Fixture {
    _dir: tempfile::TempDir,
    svc: ServiceCatalog,
    dp: Option<Datapath>,
    root: PathBuf,
    node: String,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let core = Catalog::new(Arc::new(
            SqliteStore::open(dir.path().join("store.db")).unwrap(),
        ));
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
        let node = format!("rt{}", std::process::id());
        let root = PathBuf::from(format!(
            "/sys/fs/bpf/vxmesh-test-reconcile-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let mut config = DatapathConfig::new(&node);
        config.pin_root = root.clone();
        config.conntrack_entries = 4096;
        config.max_services = 1024;
        config.max_backends = 1024;
        config.affinity_entries = 1024;
        config.sock_rev_entries = 1024;
        config.frag_entries = 1024;
        let dp = Datapath::load(config).expect("load the datapath");
        Fixture {
            _dir: dir,
            svc: ServiceCatalog::of(&core),
            dp: Some(dp),
            root,
            node,
        }
    }

    fn dp(&mut self) -> &mut Datapath {
        self.dp.as_mut().unwrap()
    }

    fn desired(&self) -> DesiredLb {
        let snap = self.svc.snapshot().unwrap();
        let d = DesiredLb::compute(&snap, "h1", |_| true);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        d
    }

    fn pass(&mut self) -> LbReport {
        let want = self.desired();
        let r = apply_maps(&want, self.dp().maps_mut());
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        r
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        drop(self.dp.take());
        let _ = vxmesh_ebpf::teardown(&self.root, &self.node);
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn actions(r: &LbReport) -> Vec<String> {
    r.changes.iter().map(|c| c.to_string()).collect()
}

/// A TCP SYN from 10.20.0.200:`sport` to `dst`:80 as an Ethernet frame (the program does not
/// check checksums; it rewrites them incrementally).
fn syn(dst: Ipv4Addr, sport: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&[10, 20, 0, 200]);
    ip.extend_from_slice(&dst.octets());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&80u16.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

/// Backend ids (port 0 of the service) the connection table's flows are on.
fn flow_backends(dp: &Datapath, vip: Ipv4Addr, sports: std::ops::Range<u16>) -> Vec<u32> {
    sports
        .filter_map(|p| {
            let k = vxmesh_ebpf::CtKey::new(
                Ipv4Addr::new(10, 20, 0, 200),
                p,
                vip,
                80,
                vxmesh_ebpf::IPPROTO_TCP,
                vxmesh_ebpf::CT_DIR_FWD,
            );
            dp.maps().conntrack(&k).unwrap().map(|e| e.backend_id)
        })
        .collect()
}

#[test]
fn passes_program_the_store_change_only_differences_and_purge_removed_backends() {
    let mut f = Fixture::new();
    let created = f
        .svc
        .create(&ServiceSpec {
            name: "api".into(),
            network: "web".into(),
            ports: vec!["80:8080".parse().unwrap(), "53:5353/udp".parse().unwrap()],
            backends: ["e1", "e2", "e3"].map(BackendSpec::new).to_vec(),
            ..Default::default()
        })
        .unwrap();
    let vip = created.vip;
    let id = |endpoint: &str, port: usize| {
        kernel_id(created.backend(endpoint).unwrap().id, port).unwrap()
    };

    let first = f.pass();
    assert!(!first.changes.is_empty());
    eprintln!("first pass: {:#?}", actions(&first));
    let maps = f.dp().maps();
    assert_eq!(maps.services().unwrap().len(), 2, "one frontend per port");
    let backends = maps.backends().unwrap();
    assert_eq!(backends.len(), 6, "one kernel backend per backend and port");
    let e3 = maps.backend(id("e3", 0)).unwrap().unwrap();
    assert_eq!((e3.port(), e3.flags), (8080, 0));
    assert_eq!(maps.backend(id("e3", 1)).unwrap().unwrap().port(), 5353);
    let table = maps
        .maglev_table(kernel_id(created.id, 0).unwrap())
        .unwrap()
        .unwrap();
    let in_table: BTreeSet<u32> = table.iter().copied().collect();
    assert_eq!(in_table, ["e1", "e2", "e3"].map(|e| id(e, 0)).into());
    let (vips, mac) = (maps.vips().unwrap(), [0x0a, 0x58, 10, 20, 0, 1]);
    assert_eq!(
        vips,
        vec![(vip, vxmesh_ebpf::Vip::new(mac))],
        "ARP answered with the gateway MAC"
    );

    assert_eq!(
        actions(&f.pass()),
        Vec::<String>::new(),
        "a second pass changes nothing"
    );

    // Flows over every backend, through the tc program.
    for p in 40000..40060 {
        let out = f.dp().run_tc(PROG_FROM_LXC, &syn(vip, p)).unwrap();
        assert_eq!(out.verdict, TC_ACT_OK);
    }
    let on = |f: &Fixture, e: &str| {
        flow_backends(f.dp.as_ref().unwrap(), vip, 40000..40060)
            .into_iter()
            .filter(|b| *b == id(e, 0))
            .count()
    };
    let (on_e1, on_e3) = (on(&f, "e1"), on(&f, "e3"));
    assert!(on_e1 > 0 && on_e3 > 0);

    // Draining e1: flagged, out of the table, its flows stay.
    f.svc
        .update("api", &[ServiceUpdate::DrainBackend("e1".into())])
        .unwrap();
    let r = f.pass();
    eprintln!("drain: {:#?}", actions(&r));
    let e1 = f.dp().maps().backend(id("e1", 0)).unwrap().unwrap();
    assert_eq!(e1.flags, BE_F_DRAINING);
    assert!(!f
        .dp()
        .maps()
        .maglev_table(kernel_id(created.id, 0).unwrap())
        .unwrap()
        .unwrap()
        .contains(&id("e1", 0)));
    assert_eq!(on(&f, "e1"), on_e1, "a draining backend keeps its flows");

    // Removing e3: deleted and its flows purged at once; the others' flows stay.
    f.svc
        .update("api", &[ServiceUpdate::RemoveBackend("e3".into())])
        .unwrap();
    let r = f.pass();
    eprintln!("remove: {:#?}", actions(&r));
    assert!(f.dp().maps().backend(id("e3", 0)).unwrap().is_none());
    assert_eq!(on(&f, "e3"), 0, "the removed backend's flows are purged");
    assert_eq!(on(&f, "e1"), on_e1);
    // Both directions of each flow.
    let purged = format!("purged {} conntrack", 2 * on_e3);
    assert!(
        actions(&r)
            .iter()
            .any(|a| a.starts_with("delete backend") && a.contains(&purged)),
        "{:?}",
        actions(&r)
    );
    assert_eq!(actions(&f.pass()), Vec::<String>::new());

    // The service goes: nothing of it is left in the maps.
    f.svc.remove("api").unwrap();
    let r = f.pass();
    eprintln!("remove service: {:#?}", actions(&r));
    let maps = f.dp().maps();
    assert!(maps.services().unwrap().is_empty());
    assert!(maps.backends().unwrap().is_empty());
    assert!(maps.maglev_ids().unwrap().is_empty());
    assert!(maps.vips().unwrap().is_empty());
    assert_eq!(actions(&f.pass()), Vec::<String>::new());
}

#[test]
fn a_backend_reported_down_leaves_the_map_without_a_purge_and_unchecked_ones_wait() {
    let f = Fixture::new();
    let created = f
        .svc
        .create(&ServiceSpec {
            name: "api".into(),
            network: "web".into(),
            ports: vec!["80:8080".parse().unwrap()],
            backends: ["e1", "e2", "e3"].map(BackendSpec::new).to_vec(),
            health: HealthSpec {
                check: HealthCheck::Tcp,
                ..HealthSpec::default()
            },
            ..Default::default()
        })
        .unwrap();
    f.svc
        .report_health("api", "e1", "h1", HealthStatus::Up, "connected", None)
        .unwrap();
    f.svc
        .report_health("api", "e2", "h1", HealthStatus::Down, "refused", None)
        .unwrap();
    // e3: no report from h2 yet.
    let d = f.desired();
    let id = |e: &str| kernel_id(created.backend(e).unwrap().id, 0).unwrap();
    assert_eq!(d.backends[&id("e1")].backend.flags, 0);
    assert!(!d.backends.contains_key(&id("e2")), "down: out of the map");
    assert_eq!(
        d.backends[&id("e3")].backend.flags,
        BE_F_DRAINING,
        "not checked yet: in the map, no new flows"
    );
    let table = &d.tables[&kernel_id(created.id, 0).unwrap()];
    assert_eq!(table.backends, 1);
    assert!(table.slots.iter().all(|s| *s == id("e1")));
    assert!(
        d.configured.contains(&id("e2")),
        "still configured: leaving the map purges nothing"
    );
    // A node that does not carry the network programs nothing of it.
    let snap = f.svc.snapshot().unwrap();
    assert!(DesiredLb::compute(&snap, "h1", |_| false).is_empty());
}

#[test]
fn published_ports_program_the_mesh_maps_and_go_with_the_unpublish() {
    use ingress_lb::reconcile::{apply_mesh, node_mac};
    use ingress_lb::service::{Mode, PublishedPort};
    use vxmesh_ebpf::{
        dsr_mac, SvcKey, BE_LOC_F_LOCAL, IPPROTO_TCP, MESH_F_DSR, SVC_F_DSR, SVC_F_PUBLISHED,
    };

    let mut f = Fixture::new();
    let created = f
        .svc
        .create(&ServiceSpec {
            name: "mesh".into(),
            network: "web".into(),
            ports: vec!["80:8080".parse().unwrap()],
            backends: ["e1", "e3"].map(BackendSpec::new).to_vec(),
            publish: vec!["9080:80".parse().unwrap()],
            mode: Mode::Dsr,
            ..Default::default()
        })
        .unwrap();
    let sid = kernel_id(created.id, 0).unwrap();
    let bid = |e: &str| kernel_id(created.backend(e).unwrap().id, 0).unwrap();
    // Interfaces by name: the remote backend's bridge and the VXLAN device get made-up
    // indexes (nothing is attached here); e1 has no host-side veth in this store.
    let ifindex = |name: &str| match name {
        "vb-web" => Some(40),
        "vx-web" => Some(50),
        _ => None,
    };
    let mesh_pass = |f: &mut Fixture| {
        let want = f.desired();
        let mut r = apply_maps(&want, f.dp().maps_mut());
        r.extend(apply_mesh(&want.mesh, f.dp().maps_mut(), Some(5), ifindex));
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        (want, r)
    };
    let (want, first) = mesh_pass(&mut f);
    eprintln!("first pass: {:#?}", actions(&first));
    assert_eq!(
        want.mesh.overlay_ifnames,
        ["vx-web".to_string()].into(),
        "vx_from_overlay goes on the network's VXLAN device"
    );
    let maps = f.dp().maps();
    let h1 = Ipv4Addr::new(192, 0, 2, 1);
    let published = maps
        .service(&SvcKey::new(h1, 9080, IPPROTO_TCP))
        .unwrap()
        .expect("HOST:PUB frontend");
    assert_eq!(
        (published.id, published.flags),
        (sid, SVC_F_PUBLISHED | SVC_F_DSR)
    );
    let host = maps.host().unwrap();
    assert_eq!(
        (host.addr, host.ifindex, host.mac),
        (u32::from_ne_bytes(h1.octets()), 5, node_mac(h1))
    );
    assert_eq!(node_mac(h1), [0x0a, 0x5e, 192, 0, 2, 1]);
    let mut nodes = maps.mesh_nodes().unwrap();
    nodes.sort();
    let h2 = Ipv4Addr::new(192, 0, 2, 2);
    // Each node by its node MAC and by its DSR MAC (0a:5f:…).
    assert_eq!(dsr_mac(node_mac(h1)), [0x0a, 0x5f, 192, 0, 2, 1]);
    assert_eq!(
        nodes,
        vec![
            (node_mac(h1), h1, 0),
            (node_mac(h2), h2, 0),
            (dsr_mac(node_mac(h1)), h1, MESH_F_DSR),
            (dsr_mac(node_mac(h2)), h2, MESH_F_DSR),
        ]
    );
    // e3 (on h2) is reached through the bridge with its MAC; e1 (local, no veth) is not placed.
    let e3 = maps
        .be_loc(bid("e3"))
        .unwrap()
        .expect("remote backend placed");
    assert_eq!((e3.ifindex, e3.flags & BE_LOC_F_LOCAL), (40, 0));
    assert_eq!(maps.be_loc(bid("e1")).unwrap(), None);
    // e1 is this node's backend of the published port (DSR: its replies leave from here;
    // keyed by the published port, which DSR frames still carry).
    let bes = maps.mesh_bes().unwrap();
    assert_eq!(bes.len(), 1, "{bes:?}");
    let (key, be) = bes[0];
    assert_eq!(
        (key.port(), key.proto, key.flags),
        (9080, IPPROTO_TCP, MESH_F_DSR)
    );
    assert_eq!(
        (
            u16::from_be(be.pub_port),
            u16::from_be(be.target_port),
            be.flags,
            be.overlay_ifindex
        ),
        (9080, 8080, MESH_F_DSR, 50)
    );
    assert!(
        actions(&mesh_pass(&mut f).1).is_empty(),
        "a second pass changes nothing"
    );

    // The same port published a second time: DSR needs one entry per published port (the
    // replies of each flow leave from the port its client addressed); default mode one per
    // target port (the ingress node turns the replies back per flow).
    f.svc
        .update(
            "mesh",
            &[ServiceUpdate::Publish(
                "9081:80".parse::<PublishedPort>().unwrap(),
            )],
        )
        .unwrap();
    mesh_pass(&mut f);
    let mut ports: Vec<(u16, u16, u16)> = f
        .dp()
        .maps()
        .mesh_bes()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.port(),
                u16::from_be(v.pub_port),
                u16::from_be(v.target_port),
            )
        })
        .collect();
    ports.sort();
    assert_eq!(ports, [(9080, 9080, 8080), (9081, 9081, 8080)]);
    f.svc
        .update("mesh", &[ServiceUpdate::SetMode(Mode::Default)])
        .unwrap();
    mesh_pass(&mut f);
    let bes = f.dp().maps().mesh_bes().unwrap();
    assert_eq!(bes.len(), 1, "{bes:?}");
    assert_eq!((bes[0].0.port(), bes[0].0.flags), (8080, 0));
    let published = f
        .dp()
        .maps()
        .service(&SvcKey::new(h1, 9081, IPPROTO_TCP))
        .unwrap()
        .expect("second frontend");
    assert_eq!(
        published.flags, SVC_F_PUBLISHED,
        "default mode: no DSR flag"
    );
    f.svc
        .update(
            "mesh",
            &[ServiceUpdate::Unpublish(
                "9081:80".parse::<PublishedPort>().unwrap(),
            )],
        )
        .unwrap();

    // Unpublished: the frontend and every mesh entry go; the VIP frontend stays.
    f.svc
        .update(
            "mesh",
            &[ServiceUpdate::Unpublish(
                "9080:80".parse::<PublishedPort>().unwrap(),
            )],
        )
        .unwrap();
    let (want, _) = mesh_pass(&mut f);
    assert!(want.mesh.overlay_ifnames.is_empty());
    let maps = f.dp().maps();
    assert_eq!(
        maps.service(&SvcKey::new(h1, 9080, IPPROTO_TCP)).unwrap(),
        None
    );
    assert_eq!(maps.services().unwrap().len(), 1);
    assert!(maps.mesh_nodes().unwrap().is_empty());
    assert!(maps.be_locs().unwrap().is_empty());
    assert!(maps.mesh_bes().unwrap().is_empty());
}
