//! FDB and neighbour entries on a VXLAN device, checked with `bridge fdb` and `ip neigh`.
//! Needs root. Everything happens in a throwaway namespace.

use std::net::{IpAddr, Ipv4Addr};

use overlay_core::dataplane::{FdbEntry, NeighEntry, VxlanSpec};
use overlay_core::netns::NetnsGuard;
use overlay_core::MacAddr;

mod common;
use common::{in_ns, unique, witness};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn fdb_lines(ns: &NetnsGuard) -> Vec<String> {
    witness(&["bridge", "-n", ns.name(), "fdb", "show", "dev", "vx0"])
        .lines()
        .filter(|l| l.contains(" dst "))
        .map(str::to_string)
        .collect()
}

/// A namespace with an underlay veth (192.0.2.1/24) and a VXLAN device vx0 (VNI 4242) on a
/// bridge br0; returns vx0's index.
fn host_with_vxlan(ns: &NetnsGuard) -> u32 {
    in_ns(ns, |dp| async move {
        let (u0, _) = dp.create_veth("u0", "u1", 1500).await.unwrap();
        dp.add_address(u0.index, "192.0.2.1/24".parse().unwrap())
            .await
            .unwrap();
        dp.set_up(u0.index).await.unwrap();
        let br = dp.create_bridge("br0", 1450).await.unwrap();
        let vx = dp
            .create_vxlan(&VxlanSpec {
                name: "vx0".into(),
                vni: 4242,
                local: Ipv4Addr::new(192, 0, 2, 1),
                port: 4789,
                underlay_index: Some(u0.index),
                mtu: 1450,
                proxy: true,
            })
            .await
            .unwrap();
        dp.set_master(vx.index, Some(br.index)).await.unwrap();
        dp.set_up(vx.index).await.unwrap();
        dp.set_up(br.index).await.unwrap();
        vx.index
    })
}

#[test]
fn fdb_append_list_delete() {
    let ns = NetnsGuard::new(&unique("fdb")).unwrap();
    let vx = host_with_vxlan(&ns);
    let unicast: MacAddr = "0a:58:0a:0a:01:05".parse().unwrap();
    let flood2 = FdbEntry {
        mac: MacAddr::ZERO,
        dst: ip("192.0.2.2"),
    };
    let flood3 = FdbEntry {
        mac: MacAddr::ZERO,
        dst: ip("192.0.2.3"),
    };
    let uni = FdbEntry {
        mac: unicast,
        dst: ip("192.0.2.2"),
    };

    let listed = in_ns(&ns, move |dp| async move {
        for e in [flood2, flood3, uni] {
            dp.fdb_append(vx, &e).await.unwrap();
        }
        // Appending again changes nothing.
        dp.fdb_append(vx, &flood2).await.unwrap();
        dp.fdb_append(vx, &uni).await.unwrap();
        dp.fdb_entries(vx).await.unwrap()
    });
    let mut want = vec![flood2, flood3, uni];
    want.sort();
    assert_eq!(listed, want);

    let lines = fdb_lines(&ns);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for want in [
        "00:00:00:00:00:00 dst 192.0.2.2 self permanent",
        "00:00:00:00:00:00 dst 192.0.2.3 self permanent",
        "0a:58:0a:0a:01:05 dst 192.0.2.2 self permanent",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(want)),
            "missing '{want}' in {lines:#?}"
        );
    }
    // Nothing landed in the bridge's own FDB with a dst.
    let br = witness(&["bridge", "-n", ns.name(), "fdb", "show", "br", "br0"]);
    assert!(!br.contains("0a:58:0a:0a:01:05 dev vx0 master"), "{br}");

    let listed = in_ns(&ns, move |dp| async move {
        dp.fdb_delete(vx, &flood3).await.unwrap();
        dp.fdb_delete(vx, &flood3).await.unwrap(); // absent: fine
                                                   // A unicast MAC that moves to another host: its one destination is replaced.
        let moved = FdbEntry {
            mac: unicast,
            dst: ip("192.0.2.3"),
        };
        dp.fdb_append(vx, &moved).await.unwrap();
        dp.fdb_delete(vx, &uni).await.unwrap(); // the old pair is gone already: fine
        dp.fdb_entries(vx).await.unwrap()
    });
    assert_eq!(
        listed,
        vec![
            flood2,
            FdbEntry {
                mac: unicast,
                dst: ip("192.0.2.3")
            }
        ]
    );
    let lines = fdb_lines(&ns);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines
        .iter()
        .any(|l| l.contains("00:00:00:00:00:00 dst 192.0.2.2 self permanent")));
    assert!(lines
        .iter()
        .any(|l| l.contains("0a:58:0a:0a:01:05 dst 192.0.2.3 self permanent")));
    assert!(!lines
        .iter()
        .any(|l| l.contains("192.0.2.3") && l.starts_with("00:00")));

    // Deleting the last destination of the flood entry removes it.
    in_ns(&ns, move |dp| async move {
        dp.fdb_delete(vx, &flood2).await.unwrap();
        assert_eq!(dp.fdb_entries(vx).await.unwrap().len(), 1);
    });
    assert_eq!(fdb_lines(&ns).len(), 1);
}

#[test]
fn neighbours_replace_and_delete() {
    let ns = NetnsGuard::new(&unique("neigh")).unwrap();
    let vx = host_with_vxlan(&ns);
    let mac: MacAddr = "0a:58:0a:0a:01:05".parse().unwrap();
    let mac2: MacAddr = "0a:58:0a:0a:01:06".parse().unwrap();
    let entry = NeighEntry {
        ip: ip("10.10.1.5"),
        mac,
        permanent: true,
    };
    let listed = in_ns(&ns, move |dp| async move {
        dp.neigh_replace(vx, &entry).await.unwrap();
        dp.neigh_replace(vx, &entry).await.unwrap();
        dp.neighbours(vx).await.unwrap()
    });
    assert_eq!(listed, vec![entry]);
    let out = witness(&["ip", "-n", ns.name(), "neigh", "show", "dev", "vx0"]);
    assert!(
        out.contains("10.10.1.5 lladdr 0a:58:0a:0a:01:05 PERMANENT"),
        "{out}"
    );

    let listed = in_ns(&ns, move |dp| async move {
        dp.neigh_replace(vx, &NeighEntry { mac: mac2, ..entry })
            .await
            .unwrap();
        dp.neighbours(vx).await.unwrap()
    });
    assert_eq!(listed, vec![NeighEntry { mac: mac2, ..entry }]);

    in_ns(&ns, move |dp| async move {
        dp.neigh_delete(vx, entry.ip).await.unwrap();
        dp.neigh_delete(vx, entry.ip).await.unwrap(); // absent: fine
        assert!(dp.neighbours(vx).await.unwrap().is_empty());
    });
    let out = witness(&["ip", "-n", ns.name(), "neigh", "show", "dev", "vx0"]);
    assert!(!out.contains("10.10.1.5"), "{out}");
}

#[test]
fn bridge_port_flags_and_static_bridge_entries() {
    use overlay_core::dataplane::BridgePort;
    let ns = NetnsGuard::new(&unique("brport")).unwrap();
    let vx = host_with_vxlan(&ns);
    let mac: MacAddr = "0a:58:0a:0a:01:07".parse().unwrap();
    let (port, statics) = in_ns(&ns, move |dp| async move {
        let want = BridgePort {
            learning: false,
            neigh_suppress: true,
        };
        dp.set_bridge_port(vx, want).await.unwrap();
        dp.bridge_fdb_add_static(vx, mac).await.unwrap();
        dp.bridge_fdb_add_static(vx, mac).await.unwrap(); // idempotent
        let port = dp.link_by_index(vx).await.unwrap().unwrap().port;
        (port, dp.bridge_fdb_static(vx).await.unwrap())
    });
    assert_eq!(
        port,
        Some(BridgePort {
            learning: false,
            neigh_suppress: true
        })
    );
    assert_eq!(statics, vec![mac]);
    let detail = witness(&["ip", "-n", ns.name(), "-d", "link", "show", "vx0"]);
    assert!(detail.contains("neigh_suppress on"), "{detail}");
    assert!(detail.contains(" learning off"), "{detail}");
    let fdb = witness(&["bridge", "-n", ns.name(), "fdb", "show", "dev", "vx0"]);
    assert!(
        fdb.lines().any(|l| l.starts_with("0a:58:0a:0a:01:07")
            && l.contains("master br0")
            && l.contains("static")),
        "{fdb}"
    );
    // The port's own (self) VXLAN entries are not reported as bridge entries.
    let statics = in_ns(&ns, move |dp| async move {
        dp.fdb_append(
            vx,
            &FdbEntry {
                mac: "0a:58:0a:0a:01:08".parse().unwrap(),
                dst: ip("192.0.2.9"),
            },
        )
        .await
        .unwrap();
        dp.bridge_fdb_delete_static(vx, mac).await.unwrap();
        dp.bridge_fdb_delete_static(vx, mac).await.unwrap(); // absent: still Ok
        dp.bridge_fdb_static(vx).await.unwrap()
    });
    assert!(statics.is_empty(), "{statics:?}");
    assert!(!witness(&["bridge", "-n", ns.name(), "fdb", "show", "dev", "vx0"]).contains("static"));
}
