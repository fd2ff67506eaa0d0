//! Two simulated hosts joined by a veth underlay, a VXLAN overlay (VNI 4242) between them
//! built with the dataplane only, a container on each: the containers ping each other.
//! Needs root. Everything happens in throwaway namespaces.

use std::net::{IpAddr, Ipv4Addr};

use overlay_core::dataplane::{attach, AttachSpec, FdbEntry, VxlanSpec};
use overlay_core::netns::NetnsGuard;
use overlay_core::MacAddr;

mod common;
use common::{in_ns, run, unique};

/// Bridge + VXLAN on the host whose underlay address is `local`, flooding to `remote`.
fn overlay_host(ns: &NetnsGuard, local: Ipv4Addr, remote: Ipv4Addr) {
    in_ns(ns, move |dp| async move {
        let underlay = dp
            .link_with_address(IpAddr::V4(local))
            .await
            .unwrap()
            .expect("underlay device");
        let br = dp.create_bridge("br0", 1450).await.unwrap();
        let vx = dp
            .create_vxlan(&VxlanSpec {
                name: "vx0".into(),
                vni: 4242,
                local,
                port: 4789,
                underlay_index: Some(underlay.index),
                mtu: underlay.mtu - 50,
                proxy: false,
            })
            .await
            .unwrap();
        dp.set_master(vx.index, Some(br.index)).await.unwrap();
        dp.set_up(vx.index).await.unwrap();
        dp.set_up(br.index).await.unwrap();
        dp.fdb_append(
            vx.index,
            &FdbEntry {
                mac: MacAddr::ZERO,
                dst: IpAddr::V4(remote),
            },
        )
        .await
        .unwrap();
    });
}

#[test]
fn containers_on_two_hosts_ping_over_vxlan() {
    let h1 = NetnsGuard::new(&unique("h1")).unwrap();
    let h2 = NetnsGuard::new(&unique("h2")).unwrap();
    let c1 = NetnsGuard::new(&unique("c1")).unwrap();
    let c2 = NetnsGuard::new(&unique("c2")).unwrap();
    let (ip1, ip2) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));

    // Underlay: a veth pair between the two hosts.
    let h2_path = h2.path().to_path_buf();
    in_ns(&h1, move |dp| async move {
        let (a, b) = dp.create_veth("ul0", "ul1", 1500).await.unwrap();
        dp.move_to_netns(b.index, &h2_path).await.unwrap();
        dp.add_address(a.index, "192.0.2.1/24".parse().unwrap())
            .await
            .unwrap();
        dp.set_up(a.index).await.unwrap();
    });
    in_ns(&h2, |dp| async move {
        let b = dp.link("ul1").await.unwrap().unwrap();
        dp.add_address(b.index, "192.0.2.2/24".parse().unwrap())
            .await
            .unwrap();
        dp.set_up(b.index).await.unwrap();
    });
    let (ok, out) = run(&[
        "ip",
        "netns",
        "exec",
        h1.name(),
        "ping",
        "-c1",
        "-W2",
        "192.0.2.2",
    ]);
    assert!(ok, "underlay: {out}");

    overlay_host(&h1, ip1, ip2);
    overlay_host(&h2, ip2, ip1);

    for (host, ctr, last, ifname) in [(&h1, &c1, 2u8, "vxh-o1"), (&h2, &c2, 3u8, "vxh-o2")] {
        let ip = Ipv4Addr::new(10, 10, 1, last);
        attach(&AttachSpec {
            host_netns: Some(host.path().to_path_buf()),
            container_netns: ctr.path().to_path_buf(),
            bridge: "br0".into(),
            host_ifname: ifname.into(),
            container_ifname: "eth0".into(),
            address: format!("{ip}/24").parse().unwrap(),
            gateway: None,
            default_route: Default::default(),
            mac: MacAddr::for_endpoint(ip),
            mtu: 1450,
        })
        .unwrap();
    }

    let out = run(&["bridge", "-n", h1.name(), "fdb", "show", "dev", "vx0"]).1;
    assert!(
        out.contains("00:00:00:00:00:00 dst 192.0.2.2 self permanent"),
        "{out}"
    );
    let out = run(&["ip", "-n", h1.name(), "-d", "link", "show", "vx0"]).1;
    assert!(
        out.contains("vxlan id 4242") && out.contains("mtu 1450"),
        "{out}"
    );

    // The first packet may race ARP; allow a couple of tries.
    let mut last = String::new();
    let ok = (0..3).any(|_| {
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
        last = out;
        ok
    });
    assert!(ok, "c1 -> c2 over VXLAN failed: {last}");
    let (ok, out) = run(&[
        "ip",
        "netns",
        "exec",
        c2.name(),
        "ping",
        "-c1",
        "-W2",
        "10.10.1.2",
    ]);
    assert!(ok, "c2 -> c1 over VXLAN failed: {out}");
}
