//! Attaching container namespaces to a bridge, checked with `ip` as witness. Needs root.

use std::net::Ipv4Addr;

use overlay_core::dataplane::{attach, detach, AttachSpec, DataplaneError, DefaultRoute};
use overlay_core::netns::{self, NetnsGuard};
use overlay_core::MacAddr;

mod common;
use common::{in_ns, run, unique, witness};

fn link_names(ns: &NetnsGuard) -> Vec<String> {
    let mut v = in_ns(ns, |dp| async move {
        dp.links()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect::<Vec<_>>()
    });
    v.sort();
    v
}

/// A host namespace with bridge br0 (10.10.1.1/24, up).
fn host() -> NetnsGuard {
    let ns = NetnsGuard::new(&unique("host")).unwrap();
    add_bridge(&ns, "br0", "10.10.1.1/24");
    ns
}

/// Adds bridge `name` with address `cidr`, up, to `ns`.
fn add_bridge(ns: &NetnsGuard, name: &'static str, cidr: &'static str) {
    in_ns(ns, move |dp| async move {
        let br = dp.create_bridge(name, 1500).await.unwrap();
        dp.add_address(br.index, cidr.parse().unwrap())
            .await
            .unwrap();
        dp.set_up(br.index).await.unwrap();
    });
}

fn spec(host: &NetnsGuard, container: &NetnsGuard, host_ifname: &str, last: u8) -> AttachSpec {
    let ip = Ipv4Addr::new(10, 10, 1, last);
    AttachSpec {
        host_netns: Some(host.path().to_path_buf()),
        container_netns: container.path().to_path_buf(),
        bridge: "br0".into(),
        host_ifname: host_ifname.into(),
        container_ifname: "eth0".into(),
        address: format!("{ip}/24").parse().unwrap(),
        gateway: Some(Ipv4Addr::new(10, 10, 1, 1)),
        default_route: DefaultRoute::IfNone,
        mac: MacAddr::for_endpoint(ip),
        mtu: 1400,
    }
}

#[test]
fn attach_detach() {
    let h = host();
    let c = NetnsGuard::new(&unique("ctr")).unwrap();
    let s = spec(&h, &c, "vxh-a1", 2);
    let att = attach(&s).unwrap();
    assert_eq!(att.host_ifname, "vxh-a1");
    assert_eq!(att.container_ifname, "eth0");
    assert_eq!(att.mac.to_string(), "0a:58:0a:0a:01:02");
    let json = serde_json::to_value(&att).unwrap();
    assert_eq!(json["mac"], "0a:58:0a:0a:01:02");

    // Container side.
    let out = witness(&["ip", "-n", c.name(), "addr", "show", "eth0"]);
    for want in [
        "inet 10.10.1.2/24",
        "link/ether 0a:58:0a:0a:01:02",
        "mtu 1400",
        ",UP",
    ] {
        assert!(out.contains(want), "missing '{want}' in:\n{out}");
    }
    assert!(
        out.starts_with(&format!("{}: eth0@", att.container_index)),
        "{out}"
    );
    let out = witness(&["ip", "-n", c.name(), "route", "show", "default"]);
    assert!(out.contains("default via 10.10.1.1 dev eth0"), "{out}");
    let out = witness(&["ip", "-n", c.name(), "link", "show", "lo"]);
    assert!(out.contains(",UP"), "{out}");
    // No temporary name left anywhere.
    assert_eq!(link_names(&c), vec!["eth0".to_string(), "lo".to_string()]);

    // Host side.
    let out = witness(&["ip", "-n", h.name(), "link", "show", "vxh-a1"]);
    for want in ["master br0", "mtu 1400", ",UP"] {
        assert!(out.contains(want), "missing '{want}' in:\n{out}");
    }
    assert!(
        out.starts_with(&format!("{}: vxh-a1@", att.host_index)),
        "{out}"
    );

    // It works: the container reaches the bridge's address.
    let (ok, out) = run(&[
        "ip",
        "netns",
        "exec",
        c.name(),
        "ping",
        "-c1",
        "-W2",
        "10.10.1.1",
    ]);
    assert!(ok, "{out}");

    // Attaching again with the same container ifname fails and leaves nothing behind.
    let host_before = link_names(&h);
    let err = attach(&spec(&h, &c, "vxh-a2", 3)).unwrap_err();
    assert!(err.is_exists(), "{err}");
    assert_eq!(link_names(&h), host_before);
    assert_eq!(link_names(&c), vec!["eth0".to_string(), "lo".to_string()]);

    // Detach removes both ends and is idempotent.
    detach(Some(h.path()), "vxh-a1").unwrap();
    assert!(!link_names(&h).contains(&"vxh-a1".to_string()));
    assert_eq!(link_names(&c), vec!["lo".to_string()]);
    detach(Some(h.path()), "vxh-a1").unwrap();
    // ... even when the host namespace is gone.
    detach(Some(&netns::path(&unique("gone"))), "vxh-a1").unwrap();
    // It refuses to delete something that is not a veth.
    let err = detach(Some(h.path()), "br0").unwrap_err();
    assert!(matches!(err, DataplaneError::Invalid { .. }), "{err}");
    assert!(link_names(&h).contains(&"br0".to_string()));
}

#[test]
fn attach_without_bridge_leaves_nothing() {
    let h = NetnsGuard::new(&unique("nobr")).unwrap();
    let c = NetnsGuard::new(&unique("ctr")).unwrap();
    let err = attach(&spec(&h, &c, "vxh-b1", 2)).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("br0"), "{err}");
    assert_eq!(link_names(&h), vec!["lo".to_string()]);
    assert_eq!(link_names(&c), vec!["lo".to_string()]);
}

#[test]
fn attach_failing_late_undoes_the_veth() {
    // "br0" is a veth, not a bridge: the pair is built, its container end addressed, and
    // only enslaving the host end fails.
    let h = NetnsGuard::new(&unique("nobr")).unwrap();
    witness(&[
        "ip",
        "-n",
        h.name(),
        "link",
        "add",
        "br0",
        "type",
        "veth",
        "peer",
        "name",
        "br0p",
    ]);
    let c = NetnsGuard::new(&unique("ctr")).unwrap();
    let host_before = link_names(&h);
    let ctr_before = link_names(&c);
    let err = attach(&spec(&h, &c, "vxh-c1", 2)).unwrap_err();
    assert!(err.to_string().contains("set master"), "{err}");
    assert_eq!(link_names(&h), host_before);
    assert_eq!(link_names(&c), ctr_before);
    assert_eq!(routes(&c), Vec::<String>::new());

    // Asked to replace the container's default route, it fails before touching it.
    let c = NetnsGuard::new(&unique("ctr")).unwrap();
    with_other_default_route(&c);
    let before = routes(&c);
    let mut s = spec(&h, &c, "vxh-c2", 2);
    s.default_route = DefaultRoute::Replace;
    attach(&s).unwrap_err();
    assert_eq!(routes(&c), before);
}

/// Gives `c` another plugin's interface d0 (10.99.0.2/24) and `default via 10.99.0.1 dev d0`.
fn with_other_default_route(c: &NetnsGuard) {
    in_ns(c, |dp| async move {
        let (d0, _) = dp.create_veth("d0", "d1", 0).await.unwrap();
        dp.add_address(d0.index, "10.99.0.2/24".parse().unwrap())
            .await
            .unwrap();
        dp.set_up(d0.index).await.unwrap();
        dp.add_default_route(Ipv4Addr::new(10, 99, 0, 1))
            .await
            .unwrap();
    });
}

/// The container's routes, one per line, as `ip -4 route show` prints them.
fn routes(c: &NetnsGuard) -> Vec<String> {
    witness(&["ip", "-n", c.name(), "-4", "route", "show"])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn attach_into_a_namespace_that_has_a_default_route() {
    // The host has two bridges: br0 10.10.1.1/24 and br1 10.10.2.1/24.
    let h = host();
    add_bridge(&h, "br1", "10.10.2.1/24");
    // The container is on another network already, with its default route (another
    // plugin's interface d0).
    let c = NetnsGuard::new(&unique("ctr")).unwrap();
    with_other_default_route(&c);
    let other_default = "default via 10.99.0.1 dev d0 ";

    // IfNone: attached, with its subnet route and no default route of its own.
    let mut s1 = spec(&h, &c, "vxh-g1", 2);
    s1.container_ifname = "eth1".into();
    let a1 = attach(&s1).unwrap();
    assert_eq!(a1.default_route, None);
    let r = routes(&c);
    assert!(r.iter().any(|l| l.starts_with(other_default)), "{r:?}");
    assert!(
        r.iter().any(|l| l.starts_with("10.10.1.0/24 dev eth1")),
        "{r:?}"
    );
    assert_eq!(r.iter().filter(|l| l.starts_with("default")).count(), 1);

    // Replace: the default route is now this attachment's, and the only one.
    let s2 = AttachSpec {
        bridge: "br1".into(),
        container_ifname: "eth2".into(),
        address: "10.10.2.2/24".parse().unwrap(),
        gateway: Some(Ipv4Addr::new(10, 10, 2, 1)),
        default_route: DefaultRoute::Replace,
        mac: MacAddr::for_endpoint(Ipv4Addr::new(10, 10, 2, 2)),
        ..spec(&h, &c, "vxh-g2", 2)
    };
    let a2 = attach(&s2).unwrap();
    assert_eq!(a2.default_route, Some(Ipv4Addr::new(10, 10, 2, 1)));
    let r = routes(&c);
    let defaults: Vec<&String> = r.iter().filter(|l| l.starts_with("default")).collect();
    assert_eq!(defaults.len(), 1, "{r:?}");
    assert!(
        defaults[0].starts_with("default via 10.10.2.1 dev eth2 "),
        "{r:?}"
    );

    // Detaching it takes its routes along and leaves the first attachment as it was.
    detach(Some(h.path()), "vxh-g2").unwrap();
    let r = routes(&c);
    assert!(!r.iter().any(|l| l.starts_with("default")), "{r:?}");
    assert!(
        r.iter().any(|l| l.starts_with("10.10.1.0/24 dev eth1")),
        "{r:?}"
    );
    let out = witness(&["ip", "-n", c.name(), "-4", "addr", "show", "eth1"]);
    assert!(out.contains("inet 10.10.1.2/24"), "{out}");

    // Never: no default route even in an empty namespace.
    let c2 = NetnsGuard::new(&unique("ctr")).unwrap();
    let mut s3 = spec(&h, &c2, "vxh-g3", 3);
    s3.default_route = DefaultRoute::Never;
    assert_eq!(attach(&s3).unwrap().default_route, None);
    let r = routes(&c2);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].starts_with("10.10.1.0/24 dev eth0"), "{r:?}");
    for ifname in ["vxh-g1", "vxh-g3"] {
        detach(Some(h.path()), ifname).unwrap();
    }
}

#[test]
fn attach_rejects_bad_input() {
    let h = host();
    let c = NetnsGuard::new(&unique("ctr")).unwrap();
    let mut s = spec(&h, &c, "vxh-d1", 2);
    s.gateway = Some(Ipv4Addr::new(10, 10, 2, 1));
    assert!(matches!(attach(&s), Err(DataplaneError::Invalid { .. })));
    let mut s = spec(&h, &c, "vxh-d1", 2);
    s.mac = MacAddr::ZERO;
    assert!(matches!(attach(&s), Err(DataplaneError::Invalid { .. })));
    let mut s = spec(&h, &c, "vxh-d1", 2);
    s.container_ifname = "much-too-long-ifname".into();
    assert!(matches!(attach(&s), Err(DataplaneError::Invalid { .. })));
    assert_eq!(link_names(&c), vec!["lo".to_string()]);
}

#[test]
fn attach_from_the_host_namespace_thread_and_inside_a_runtime() {
    let h = host();
    let c1 = NetnsGuard::new(&unique("ctr")).unwrap();
    let c2 = NetnsGuard::new(&unique("ctr")).unwrap();

    // host_netns: None means the calling thread's namespace.
    let mut s1 = spec(&h, &c1, "vxh-e1", 2);
    s1.host_netns = None;
    let att = netns::run_in(h.path(), move || attach(&s1))
        .unwrap()
        .unwrap();
    assert_eq!(att.host_ifname, "vxh-e1");
    let out = witness(&["ip", "-n", h.name(), "link", "show", "vxh-e1"]);
    assert!(out.contains("master br0"), "{out}");

    // From inside a tokio runtime (current-thread, in the host namespace).
    let s2 = spec(&h, &c2, "vxh-e2", 3);
    netns::block_on_in(h.path(), move || async move { attach(&s2) })
        .unwrap()
        .unwrap();
    let out = witness(&["ip", "-n", c2.name(), "addr", "show", "eth0"]);
    assert!(out.contains("inet 10.10.1.3/24"), "{out}");

    // The two containers reach each other over the bridge.
    let (ok, out) = run(&[
        "ip",
        "netns",
        "exec",
        c1.name(),
        "ping",
        "-c1",
        "-W2",
        "10.10.1.3",
    ]);
    assert!(ok, "{out}");

    netns::run_in(h.path(), || detach(None, "vxh-e1"))
        .unwrap()
        .unwrap();
    detach(Some(h.path()), "vxh-e2").unwrap();
    assert_eq!(link_names(&h), vec!["br0".to_string(), "lo".to_string()]);
}
