//! Links, addresses, routes through the netlink dataplane, checked with `ip` as witness.
//! Needs root. Everything happens in throwaway namespaces.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use overlay_core::dataplane::{DataplaneError, VxlanInfo, VxlanSpec};
use overlay_core::netns::NetnsGuard;
use overlay_core::MacAddr;

mod common;
use common::{in_ns, unique, witness};

#[test]
fn bridge_and_vxlan() {
    let ns = NetnsGuard::new(&unique("links")).unwrap();
    let (underlay, br, vx) = in_ns(&ns, |dp| async move {
        let (u0, _u1) = dp.create_veth("u0", "u1", 1500).await.unwrap();
        dp.add_address(u0.index, "192.0.2.1/24".parse().unwrap())
            .await
            .unwrap();
        dp.set_up(u0.index).await.unwrap();

        let found = dp
            .link_with_address(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
            .await
            .unwrap()
            .expect("underlay found by address");
        assert_eq!(found.index, u0.index);
        assert!(dp
            .link_with_address("192.0.2.99".parse().unwrap())
            .await
            .unwrap()
            .is_none());

        let br = dp.create_bridge("br0", 1450).await.unwrap();
        assert_eq!(br.kind.as_deref(), Some("bridge"));
        assert_eq!(br.mtu, 1450);
        let spec = VxlanSpec {
            name: "vx0".into(),
            vni: 4242,
            local: Ipv4Addr::new(192, 0, 2, 1),
            port: 4789,
            underlay_index: Some(u0.index),
            mtu: 1450,
            proxy: true,
        };
        let vx = dp.create_vxlan(&spec).await.unwrap();
        dp.set_master(vx.index, Some(br.index)).await.unwrap();
        dp.set_up(vx.index).await.unwrap();
        dp.set_up(br.index).await.unwrap();

        // Creating again says "exists".
        let again = dp.create_bridge("br0", 1450).await.unwrap_err();
        assert!(again.is_exists(), "{again}");
        let again = dp.create_vxlan(&spec).await.unwrap_err();
        assert!(again.is_exists(), "{again}");

        let vx = dp.link("vx0").await.unwrap().unwrap();
        let br = dp.link_by_index(br.index).await.unwrap().unwrap();
        (u0, br, vx)
    });

    assert_eq!(vx.kind.as_deref(), Some("vxlan"));
    assert_eq!(vx.master, Some(br.index));
    assert!(vx.up && br.up);
    assert_eq!(vx.mtu, 1450);
    assert_eq!(
        vx.vxlan,
        Some(VxlanInfo {
            vni: 4242,
            local: Some(Ipv4Addr::new(192, 0, 2, 1)),
            port: 4789,
            learning: false,
            proxy: true,
            underlay_index: Some(underlay.index),
        })
    );

    let out = witness(&["ip", "-n", ns.name(), "-d", "link", "show", "vx0"]);
    for want in [
        "vxlan id 4242",
        "local 192.0.2.1",
        "dev u0",
        "dstport 4789",
        "nolearning",
        "proxy",
        "udpcsum",
        "master br0",
        "mtu 1450",
    ] {
        assert!(out.contains(want), "missing '{want}' in:\n{out}");
    }
    let out = witness(&["ip", "-n", ns.name(), "-d", "link", "show", "br0"]);
    assert!(out.contains("bridge") && out.contains("mtu 1450"), "{out}");
}

#[test]
fn link_settings_addresses_routes_and_delete() {
    let ns = NetnsGuard::new(&unique("set")).unwrap();
    let mac: MacAddr = "0a:58:0a:0a:01:09".parse().unwrap();
    in_ns(&ns, move |dp| async move {
        let (a, b) = dp.create_veth("va", "vb", 1400).await.unwrap();
        assert_eq!(a.kind.as_deref(), Some("veth"));
        assert_eq!((a.mtu, b.mtu), (1400, 1400));
        assert!(!a.up);

        dp.set_mac(a.index, mac).await.unwrap();
        dp.set_mtu(a.index, 1300).await.unwrap();
        dp.rename(a.index, "vrenamed").await.unwrap();
        dp.set_up(a.index).await.unwrap();
        let a2 = dp.link("vrenamed").await.unwrap().unwrap();
        assert_eq!(
            (a2.index, a2.mac, a2.mtu, a2.up),
            (a.index, Some(mac), 1300, true)
        );
        assert!(dp.link("va").await.unwrap().is_none());
        let clash = dp.rename(b.index, "vrenamed").await.unwrap_err();
        assert!(clash.is_exists(), "{clash}");

        let net: IpNet = "10.20.0.2/24".parse().unwrap();
        dp.add_address(a.index, net).await.unwrap();
        dp.add_address(a.index, net).await.unwrap(); // idempotent
        assert_eq!(dp.addresses(a.index).await.unwrap(), vec![net]);

        assert_eq!(dp.default_route().await.unwrap(), None);
        let gw = Ipv4Addr::new(10, 20, 0, 1);
        dp.add_default_route(gw).await.unwrap();
        dp.add_default_route(gw).await.unwrap(); // same route again: fine
        assert_eq!(dp.default_route().await.unwrap(), Some(gw));
        let other = dp
            .add_default_route(Ipv4Addr::new(10, 20, 0, 3))
            .await
            .unwrap_err();
        assert!(other.is_exists(), "{other}");
    });
    let out = witness(&["ip", "-n", ns.name(), "-4", "addr", "show", "vrenamed"]);
    assert!(out.contains("inet 10.20.0.2/24"), "{out}");
    let out = witness(&["ip", "-n", ns.name(), "link", "show", "vrenamed"]);
    assert!(
        out.contains("link/ether 0a:58:0a:0a:01:09") && out.contains("mtu 1300"),
        "{out}"
    );
    let out = witness(&["ip", "-n", ns.name(), "route", "show", "default"]);
    assert!(out.contains("default via 10.20.0.1 dev vrenamed"), "{out}");

    in_ns(&ns, |dp| async move {
        let a = dp.link("vrenamed").await.unwrap().unwrap();
        let net: IpNet = "10.20.0.2/24".parse().unwrap();
        dp.delete_address(a.index, net).await.unwrap();
        dp.delete_address(a.index, net).await.unwrap(); // absent: fine
        assert!(dp.addresses(a.index).await.unwrap().is_empty());

        dp.delete_link(a.index).await.unwrap();
        dp.delete_link(a.index).await.unwrap(); // already gone: fine
        assert!(dp.link("vrenamed").await.unwrap().is_none());
        assert!(dp.link("vb").await.unwrap().is_none(), "peer goes with it");
        assert!(dp.link_by_index(a.index).await.unwrap().is_none());

        let err: DataplaneError = dp.set_up(a.index).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(err.to_string().contains(&a.index.to_string()), "{err}");
        let err = dp.link("this-name-is-too-long").await.unwrap_err();
        assert!(matches!(err, DataplaneError::Invalid { .. }), "{err}");
    });
    let out = witness(&["ip", "-n", ns.name(), "link", "show"]);
    assert!(!out.contains("vrenamed") && !out.contains("vb"), "{out}");
}

#[test]
fn move_to_netns_by_fd() {
    let a = NetnsGuard::new(&unique("mva")).unwrap();
    let b = NetnsGuard::new(&unique("mvb")).unwrap();
    let target = b.path().to_path_buf();
    in_ns(&a, move |dp| async move {
        let (_x, y) = dp.create_veth("mx", "my", 0).await.unwrap();
        dp.move_to_netns(y.index, &target).await.unwrap();
        assert!(dp.link("my").await.unwrap().is_none());
    });
    let out = witness(&["ip", "-n", b.name(), "link", "show", "my"]);
    assert!(out.contains("my@"), "{out}");
}

#[test]
fn a_vxlan_clash_names_the_device_that_holds_the_vni_or_the_port() {
    let ns = NetnsGuard::new(&unique("clash")).unwrap();
    in_ns(&ns, |dp| async move {
        let (u0, _u1) = dp.create_veth("u0", "u1", 1500).await.unwrap();
        dp.add_address(u0.index, "192.0.2.1/24".parse().unwrap())
            .await
            .unwrap();
        dp.set_up(u0.index).await.unwrap();
        let spec = |name: &str, vni: u32| VxlanSpec {
            name: name.into(),
            vni,
            local: Ipv4Addr::new(192, 0, 2, 1),
            port: 4789,
            underlay_index: Some(u0.index),
            mtu: 1450,
            proxy: false,
        };
        dp.create_vxlan(&spec("vx-old", 4096)).await.unwrap();
        // Another name, the same VNI and port: the kernel says EEXIST; the error names vx-old.
        let err = dp.create_vxlan(&spec("vx-new", 4096)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "create vxlan vx-new: VNI 4096 on UDP port 4789 is already held by device vx-old"
        );
        assert!(matches!(err, DataplaneError::VniTaken { .. }), "{err:?}");
        assert!(!err.is_exists(), "a VNI clash is not 'already exists'");
        assert!(dp.link("vx-new").await.unwrap().is_none());
        // The same name is still reported as such.
        let err = dp.create_vxlan(&spec("vx-old", 4097)).await.unwrap_err();
        assert!(err.is_exists(), "{err}");
        assert!(
            err.to_string().contains("link vx-old already exists"),
            "{err}"
        );
    });
    // A device vxmesh did not make, with other receive options, holds UDP port 4790.
    witness(&[
        "ip",
        "-n",
        ns.name(),
        "link",
        "add",
        "ext0",
        "type",
        "vxlan",
        "dstport",
        "4790",
        "external",
    ]);
    witness(&["ip", "-n", ns.name(), "link", "set", "ext0", "up"]);
    in_ns(&ns, |dp| async move {
        let vx = dp
            .create_vxlan(&VxlanSpec {
                name: "vx-enc".into(),
                vni: 5000,
                local: Ipv4Addr::new(192, 0, 2, 1),
                port: 4790,
                underlay_index: None,
                mtu: 1390,
                proxy: false,
            })
            .await
            .unwrap();
        let err = dp.set_up(vx.index).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "set up vx-enc: UDP port 4790 is already bound by VXLAN device(s) ext0 with other \
             receive options"
        );
    });
}

#[test]
fn a_veth_peer_is_read_and_changed_in_its_own_namespace() {
    let host = NetnsGuard::new(&unique("phost")).unwrap();
    let cont = NetnsGuard::new(&unique("pcont")).unwrap();
    let target = cont.path().to_path_buf();
    let mtus = |ns: &str| witness(&["ip", "-n", ns, "-o", "link", "show"]);
    let (host_end, host_before) = in_ns(&host, move |dp| async move {
        // Made first, so it has the index the container end gets in its own namespace: a
        // request that looked the peer's index up here would hit this one.
        let (decoy, _) = dp.create_veth("decoy0", "decoy1", 1500).await.unwrap();
        let h = dp
            .create_veth_into("ve-p", "eth0", 1450, &target, None)
            .await
            .unwrap();
        assert!(h.link_netnsid.is_some(), "{h:?}");
        let peer = dp.veth_peer(&h).await.unwrap().expect("peer");
        assert_eq!((peer.name.as_str(), peer.mtu), ("eth0", 1450));
        assert_eq!(Some(peer.index), h.link_index);
        let same_index = dp.link_by_index(peer.index).await.unwrap();
        assert!(
            same_index.is_some_and(|l| l.name.starts_with("decoy")),
            "the test needs the indexes to collide"
        );
        let fd: std::os::fd::OwnedFd = std::fs::File::open(&target).unwrap().into();
        assert_eq!(dp.netns_id(&fd).await.unwrap(), h.link_netnsid);
        (h, decoy)
    });
    let host_mtus = mtus(host.name());
    in_ns(&host, {
        let h = host_end.clone();
        move |dp| async move {
            dp.set_veth_peer_mtu(&h, 1350).await.unwrap();
            assert_eq!(dp.veth_peer(&h).await.unwrap().unwrap().mtu, 1350);
        }
    });
    assert!(
        witness(&["ip", "-n", cont.name(), "link", "show", "eth0"]).contains("mtu 1350"),
        "the container end did not change"
    );
    assert_eq!(mtus(host.name()), host_mtus, "the host namespace changed");
    assert_eq!(host_before.name, "decoy0");

    // A peer in the same namespace; and a peer that is gone.
    in_ns(&host, move |dp| async move {
        let (a, _) = dp.create_veth("pa", "pb", 1500).await.unwrap();
        assert_eq!(a.link_netnsid, None);
        dp.set_veth_peer_mtu(&a, 1300).await.unwrap();
        assert_eq!(dp.link("pb").await.unwrap().unwrap().mtu, 1300);
    });
    witness(&["ip", "-n", cont.name(), "link", "del", "eth0"]);
    in_ns(&host, move |dp| async move {
        assert!(
            dp.link("ve-p").await.unwrap().is_none(),
            "goes with its peer"
        );
        assert!(dp.veth_peer(&host_end).await.unwrap().is_none());
    });
}
