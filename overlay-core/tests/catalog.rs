//! The catalog's rules: validation names the field, conflicts are refused, errors change nothing.

use std::sync::Arc;

use overlay_core::catalog::{Catalog, CatalogError, EndpointSpec, NetworkSpec};
use overlay_core::store::SqliteStore;

fn catalog() -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("store.db")).unwrap();
    (dir, Catalog::new(Arc::new(store)))
}

fn net(name: &str, subnet: &str) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        subnet: subnet.into(),
        ..Default::default()
    }
}

fn ep(network: &str, node: &str) -> EndpointSpec {
    EndpointSpec {
        network: network.into(),
        node: node.into(),
        ..Default::default()
    }
}

fn field_of(e: CatalogError) -> &'static str {
    match e {
        CatalogError::Invalid(v) => v.field,
        other => panic!("expected a validation error, got {other}"),
    }
}

#[test]
fn networks_get_unique_vnis_and_a_gateway() {
    let (_d, c) = catalog();
    let a = c.create_network(&net("a", "10.1.0.0/24")).unwrap();
    let b = c.create_network(&net("b", "10.2.0.0/24")).unwrap();
    assert_eq!(a.vni, 4096);
    assert_eq!(b.vni, 4097);
    assert_eq!(a.gateway.to_string(), "10.1.0.1");
    let mut spec = net("c", "10.3.0.0/24");
    spec.vni = Some(4096);
    assert_eq!(field_of(c.create_network(&spec).unwrap_err()), "vni");
    spec.vni = Some(70_000);
    assert_eq!(c.create_network(&spec).unwrap().vni, 70_000);
    // After removal the VNI is free again.
    c.remove_network("a", false).unwrap();
    assert_eq!(
        c.create_network(&net("d", "10.4.0.0/24")).unwrap().vni,
        4096
    );
}

#[test]
fn bad_networks_change_nothing() {
    let (_d, c) = catalog();
    c.create_network(&net("a", "10.1.0.0/16")).unwrap();
    let before = c.store().revision().unwrap();
    assert_eq!(
        field_of(c.create_network(&net("b", "10.1.2.0/24")).unwrap_err()),
        "subnet"
    );
    assert_eq!(
        field_of(c.create_network(&net("b", "10.0.0.0/8")).unwrap_err()),
        "subnet"
    );
    assert_eq!(
        field_of(c.create_network(&net("b", "10.9.0.0/33")).unwrap_err()),
        "subnet"
    );
    assert_eq!(
        field_of(
            c.create_network(&net("waytoolongname", "10.9.0.0/24"))
                .unwrap_err()
        ),
        "network name"
    );
    let mut mtu = net("m", "10.9.0.0/24");
    mtu.mtu = Some(100);
    assert_eq!(field_of(c.create_network(&mtu).unwrap_err()), "mtu");
    assert!(matches!(
        c.create_network(&net("a", "10.9.0.0/24")),
        Err(CatalogError::Exists { .. })
    ));
    assert_eq!(c.store().revision().unwrap(), before);
}

#[test]
fn ipam_hands_out_reuses_and_runs_out() {
    let (_d, c) = catalog();
    c.create_network(&net("small", "10.5.0.0/29")).unwrap();
    c.add_node("h1", "192.0.2.1".parse().unwrap()).unwrap();
    let ips: Vec<String> = (0..5)
        .map(|_| c.add_endpoint(&ep("small", "h1")).unwrap().ip.to_string())
        .collect();
    assert_eq!(
        ips,
        ["10.5.0.2", "10.5.0.3", "10.5.0.4", "10.5.0.5", "10.5.0.6"]
    );
    let err = c.add_endpoint(&ep("small", "h1")).unwrap_err();
    assert!(matches!(err, CatalogError::Exhausted { .. }), "{err}");
    let victim = c
        .endpoints(Some("small"))
        .unwrap()
        .into_iter()
        .find(|e| e.ip.to_string() == "10.5.0.4")
        .unwrap();
    c.remove_endpoint("small", &victim.id).unwrap();
    assert_eq!(
        c.add_endpoint(&ep("small", "h1")).unwrap().ip.to_string(),
        "10.5.0.4"
    );
}

#[test]
fn endpoints_are_checked() {
    let (_d, c) = catalog();
    c.create_network(&net("a", "10.1.0.0/24")).unwrap();
    c.add_node("h1", "192.0.2.1".parse().unwrap()).unwrap();
    let before = c.store().revision().unwrap();
    assert!(matches!(
        c.add_endpoint(&ep("nope", "h1")),
        Err(CatalogError::NotFound {
            kind: "network",
            ..
        })
    ));
    assert!(matches!(
        c.add_endpoint(&ep("a", "nope")),
        Err(CatalogError::NotFound { kind: "node", .. })
    ));
    let mut outside = ep("a", "h1");
    outside.ip = Some("10.2.0.5".parse().unwrap());
    assert_eq!(field_of(c.add_endpoint(&outside).unwrap_err()), "ip");
    let mut gw = ep("a", "h1");
    gw.ip = Some("10.1.0.1".parse().unwrap());
    assert_eq!(field_of(c.add_endpoint(&gw).unwrap_err()), "ip");
    let mut mcast = ep("a", "h1");
    mcast.mac = Some("01:00:5e:00:00:01".parse().unwrap());
    assert_eq!(field_of(c.add_endpoint(&mcast).unwrap_err()), "mac");
    assert_eq!(c.store().revision().unwrap(), before);

    let mut fixed = ep("a", "h1");
    fixed.ip = Some("10.1.0.50".parse().unwrap());
    fixed.id = Some("x".into());
    let e = c.add_endpoint(&fixed).unwrap();
    assert_eq!(e.mac.to_string(), "0a:58:0a:01:00:32");
    fixed.id = Some("y".into());
    assert_eq!(field_of(c.add_endpoint(&fixed).unwrap_err()), "ip");
    // Node and network removal refuse while endpoints remain, unless forced.
    assert!(matches!(
        c.remove_node("h1", false),
        Err(CatalogError::InUse { .. })
    ));
    assert!(matches!(
        c.remove_network("a", false),
        Err(CatalogError::InUse { .. })
    ));
    c.remove_node("h1", true).unwrap();
    assert!(c.endpoints(None).unwrap().is_empty());
    assert!(c.store().range("/vxmesh/v1/ipam/").unwrap().kvs.is_empty());
}

#[test]
fn underlay_addresses_are_unique() {
    let (_d, c) = catalog();
    c.add_node("h1", "192.0.2.1".parse().unwrap()).unwrap();
    assert_eq!(
        field_of(c.add_node("h2", "192.0.2.1".parse().unwrap()).unwrap_err()),
        "underlay"
    );
    assert_eq!(
        field_of(c.add_node("h2", "127.0.0.1".parse().unwrap()).unwrap_err()),
        "underlay"
    );
    assert_eq!(
        field_of(
            c.add_node("bad name", "192.0.2.2".parse().unwrap())
                .unwrap_err()
        ),
        "node name"
    );
}

#[test]
fn snapshot_skips_bad_records() {
    let (_d, c) = catalog();
    c.create_network(&net("a", "10.1.0.0/24")).unwrap();
    c.store()
        .put("/vxmesh/v1/networks/evil", b"{not json")
        .unwrap();
    c.store()
        .put(
            "/vxmesh/v1/networks/b",
            br#"{"name":"b","subnet":"10.2.0.0/24","gateway":"10.2.0.1","vni":5}"#,
        )
        .unwrap();
    let snap = c.snapshot().unwrap();
    assert_eq!(snap.networks.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(snap.problems.len(), 2, "{:?}", snap.problems);
}

/// Field report: a MAC chosen by hand (the one vxmesh would derive for another address) must
/// not block automatic assignment; only an explicit request for a MAC in use is refused.
#[test]
fn a_chosen_mac_never_blocks_automatic_assignment() {
    use overlay_core::mac::MacAddr;
    let (_d, c) = catalog();
    let network = c.create_network(&net("m", "10.60.0.0/24")).unwrap();
    c.add_node("n1", "192.0.2.1".parse().unwrap()).unwrap();
    // g takes .9 with the MAC .5 would derive; h takes .2's derived MAC by hand too.
    let mut g = ep("m", "n1");
    g.id = Some("g".into());
    g.ip = Some("10.60.0.9".parse().unwrap());
    g.mac = Some("0a:58:0a:3c:00:05".parse().unwrap());
    c.add_endpoint(&g).unwrap();
    let mut h = ep("m", "n1");
    h.id = Some("h".into());
    h.ip = Some("10.60.0.20".parse().unwrap());
    h.mac = Some("0a:58:0a:3c:00:02".parse().unwrap());
    c.add_endpoint(&h).unwrap();
    // Automatic assignment: .2 to .8 all succeed, .2 and .5 with other MACs than derived.
    let mut macs = std::collections::BTreeSet::from([g.mac.unwrap(), h.mac.unwrap()]);
    for n in 2..=8u8 {
        let e = c.add_endpoint(&ep("m", "n1")).unwrap();
        assert_eq!(e.ip, std::net::Ipv4Addr::new(10, 60, 0, n));
        if n == 2 || n == 5 {
            assert_ne!(e.mac, MacAddr::for_endpoint(e.ip), "{}", e.ip);
        } else {
            assert_eq!(e.mac, MacAddr::for_endpoint(e.ip), "{}", e.ip);
        }
        assert!(macs.insert(e.mac), "MAC {} handed out twice", e.mac);
        assert_ne!(e.mac, MacAddr::for_endpoint(network.gateway));
    }
    // An explicit request for a MAC in use is refused, naming the field and the owner, and
    // changes nothing; so is the gateway's MAC.
    let before = c.snapshot().unwrap().revision;
    for (mac, owner) in [
        ("0a:58:0a:3c:00:05", "endpoint g"),
        ("0a:58:0a:3c:00:01", "the gateway"),
    ] {
        let mut x = ep("m", "n1");
        x.mac = Some(mac.parse().unwrap());
        let err = c.add_endpoint(&x).unwrap_err().to_string();
        assert!(err.contains("mac") && err.contains(owner), "{err}");
    }
    assert_eq!(c.snapshot().unwrap().revision, before);
    // A removed endpoint's MAC is free again for an explicit request.
    c.remove_endpoint("m", "g").unwrap();
    let mut again = ep("m", "n1");
    again.mac = Some("0a:58:0a:3c:00:05".parse().unwrap());
    assert_eq!(c.add_endpoint(&again).unwrap().mac, again.mac.unwrap());
}

#[test]
fn host_reports_are_written_on_change_only_and_go_with_their_node() {
    use overlay_core::model::{HostAddress, HostReport};
    let (_d, c) = catalog();
    c.add_node("h1", "192.0.2.1".parse().unwrap()).unwrap();
    let mut report = HostReport {
        underlay_mtu: 1500,
        addresses: vec![HostAddress {
            interface: "eth0".into(),
            address: "192.0.2.1/24".parse().unwrap(),
        }],
        ..Default::default()
    };
    assert!(c.publish_host_report("h1", &report).unwrap());
    let rev = c.store().revision().unwrap();
    assert!(!c.publish_host_report("h1", &report).unwrap());
    assert_eq!(
        c.store().revision().unwrap(),
        rev,
        "an unchanged report was written"
    );
    report.underlay_mtu = 1400;
    assert!(c.publish_host_report("h1", &report).unwrap());
    assert_eq!(c.snapshot().unwrap().hosts["h1"].underlay_mtu, 1400);
    // Its prefix is the hosts' own now: no network over it.
    let e = c
        .create_network(&net("n", "192.0.2.128/25"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the prefix of node h1's address 192.0.2.1/24 on eth0"),
        "{e}"
    );
    // A bad report is refused naming the field; an unknown node's too.
    report.underlay_mtu = 20;
    assert_eq!(
        field_of(c.publish_host_report("h1", &report).unwrap_err()),
        "underlay_mtu"
    );
    report.underlay_mtu = 1500;
    assert!(matches!(
        c.publish_host_report("nope", &report),
        Err(CatalogError::NotFound { .. })
    ));
    c.remove_node("h1", false).unwrap();
    assert!(c.host_reports().unwrap().is_empty());
    assert!(c.snapshot().unwrap().hosts.is_empty());
}

/// A network and a node whose underlay lies inside it, created at the same moment by two
/// writers (two store handles, as two processes): never both, whichever comes first.
#[test]
fn a_subnet_and_an_underlay_inside_it_never_both_win() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let open = || Catalog::new(Arc::new(SqliteStore::open(&path).unwrap()));
        let (a, b) = (open(), open());
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let nb = barrier.clone();
        let node = std::thread::spawn(move || {
            nb.wait();
            b.add_node("h1", "10.50.0.5".parse().unwrap()).is_ok()
        });
        barrier.wait();
        let network = a.create_network(&net("n", "10.50.0.0/24")).is_ok();
        let node = node.join().unwrap();
        assert!(
            network != node,
            "round {round}: network created {network}, node added {node}"
        );
    }
}

#[test]
fn a_heartbeat_whose_lease_went_announces_the_agent_again() {
    let (_d, c) = catalog();
    let ttl = std::time::Duration::from_secs(60);
    let h1 = c.announce_agent("h1", ttl).unwrap();
    // h1's lease goes (an outage longer than its TTL), and h2's agent is announced meanwhile:
    // a store may give h2 the id h1 had.
    c.store().lease_revoke(h1).unwrap();
    assert!(!c.agent_alive("h1").unwrap());
    let h2 = c.announce_agent("h2", ttl).unwrap();
    eprintln!("h1's lease {h1:?}, h2's {h2:?}");
    let again = c.keep_agent_alive("h1", h1, ttl).unwrap();
    assert!(c.agent_alive("h1").unwrap(), "h1 announced again");
    assert_ne!(again, h2, "h1 has a lease of its own");
    assert!(c.agent_alive("h2").unwrap());
    // A clean stop of h1 leaves h2 alone.
    c.retire_agent("h1", again).unwrap();
    assert!(!c.agent_alive("h1").unwrap() && c.agent_alive("h2").unwrap());
}

#[test]
fn endpoints_added_in_bulk_get_distinct_addresses_and_the_same_checks() {
    let (_d, c) = catalog();
    c.create_network(&net("big", "10.40.0.0/22")).unwrap();
    c.create_network(&net("small", "10.41.0.0/29")).unwrap();
    c.add_node("h1", "192.0.2.1".parse().unwrap()).unwrap();
    c.add_node("h2", "192.0.2.2".parse().unwrap()).unwrap();
    let mut specs: Vec<EndpointSpec> = (0..100)
        .map(|i| EndpointSpec {
            id: Some(format!("e{i}")),
            ..ep("big", if i % 2 == 0 { "h1" } else { "h2" })
        })
        .collect();
    specs.push(ep("small", "h1"));
    let rev = c.store().revision().unwrap();
    let added = c.add_endpoints(&specs).unwrap();
    assert_eq!(added.len(), 101);
    assert_eq!(added[7].id, "e7");
    // 100 endpoints of one network in 4 transactions (30 each at most), then the other's.
    assert_eq!(c.store().revision().unwrap(), rev + 5);
    let ips: std::collections::BTreeSet<_> = added.iter().map(|e| e.ip).collect();
    let macs: std::collections::BTreeSet<_> = added.iter().map(|e| e.mac).collect();
    assert_eq!((ips.len(), macs.len()), (101, 101));
    assert_eq!(added[0].ip.to_string(), "10.40.0.2");
    assert_eq!(added[99].ip.to_string(), "10.40.0.101");
    assert_eq!(c.endpoints(Some("big")).unwrap().len(), 100);
    // A taken id, an id twice in one call, or a full network: refused, nothing of that
    // transaction written.
    let again = c.add_endpoints(&[EndpointSpec {
        id: Some("e3".into()),
        ..ep("big", "h1")
    }]);
    assert!(
        matches!(again, Err(CatalogError::Exists { .. })),
        "{again:?}"
    );
    let twice = c.add_endpoints(&[
        EndpointSpec {
            id: Some("x".into()),
            ..ep("big", "h1")
        },
        EndpointSpec {
            id: Some("x".into()),
            ..ep("big", "h2")
        },
    ]);
    assert!(
        matches!(twice, Err(CatalogError::Exists { .. })),
        "{twice:?}"
    );
    let full = c.add_endpoints(&vec![ep("small", "h2"); 6]);
    assert!(
        matches!(full, Err(CatalogError::Exhausted { .. })),
        "{full:?}"
    );
    assert_eq!(c.endpoints(Some("small")).unwrap().len(), 1);
    assert_eq!(c.endpoints(Some("big")).unwrap().len(), 100);
}
