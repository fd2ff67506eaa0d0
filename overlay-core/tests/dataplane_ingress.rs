//! tc ingress drop filters through the netlink dataplane, checked with `tc` as witness, and
//! what they drop checked with real packets. Needs root. Everything happens in throwaway
//! namespaces.

use std::net::UdpSocket;
use std::time::Duration;

use overlay_core::netns::{self, NetnsGuard};

mod common;
use common::{in_ns, unique, witness};

const PREF: u16 = 4790;

#[test]
fn udp_drop_filter_add_read_back_drop_and_remove() {
    let a = NetnsGuard::new(&unique("ingA")).unwrap();
    let b = NetnsGuard::new(&unique("ingB")).unwrap();
    // a:eth0 192.0.2.1 <-> b:eth0 192.0.2.2, the filter on b's eth0.
    witness(&[
        "ip",
        "-n",
        a.name(),
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        b.name(),
    ]);
    for (ns, ip) in [(&a, "192.0.2.1/24"), (&b, "192.0.2.2/24")] {
        witness(&["ip", "-n", ns.name(), "addr", "add", ip, "dev", "eth0"]);
        witness(&["ip", "-n", ns.name(), "link", "set", "eth0", "up"]);
    }
    let index = in_ns(&b, |dp| async move {
        let eth0 = dp.link("eth0").await.unwrap().unwrap();
        assert!(!dp.ingress_qdiscs().await.unwrap().contains_key(&eth0.index));
        assert!(dp.ingress_filters(eth0.index).await.unwrap().is_empty());
        dp.add_ingress_qdisc(eth0.index).await.unwrap();
        dp.add_udp_drop_filter(eth0.index, PREF, 4790)
            .await
            .unwrap();
        let again = dp
            .add_udp_drop_filter(eth0.index, PREF, 4790)
            .await
            .unwrap_err();
        assert!(again.is_exists(), "{again}");
        assert_eq!(
            dp.ingress_qdiscs()
                .await
                .unwrap()
                .get(&eth0.index)
                .map(String::as_str),
            Some("ingress")
        );
        let f = dp.ingress_filters(eth0.index).await.unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].pref, f[0].protocol), (PREF, 0x0800));
        assert_eq!(f[0].kind, "bpf");
        assert_eq!(f[0].drops_udp_port, Some(4790));
        eth0.index
    });
    let shown = witness(&[
        "tc",
        "-n",
        b.name(),
        "filter",
        "show",
        "dev",
        "eth0",
        "ingress",
    ]);
    for want in [
        "filter protocol ip pref 4790 bpf",
        "direct-action",
        "bytecode '11,40 0 0 12,21 0 8 2048,48 0 0 23,21 0 6 17,40 0 0 20,69 4 0 8191,\
         177 0 0 14,72 0 0 16,21 0 1 4790,6 0 0 2,6 0 0 4294967295'",
    ] {
        assert!(shown.contains(want), "missing '{want}' in:\n{shown}");
    }

    // What it drops: UDP to 4790; UDP to 4789 passes.
    let received = |port: u16| {
        let sock = netns::block_on_in(b.path(), move || async move {
            UdpSocket::bind(("0.0.0.0", port)).unwrap()
        })
        .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        netns::block_on_in(a.path(), move || async move {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            for _ in 0..3 {
                s.send_to(b"x", ("192.0.2.2", port)).unwrap();
            }
        })
        .unwrap();
        sock.recv(&mut [0u8; 16]).is_ok()
    };
    assert!(received(4789), "UDP 4789 should pass");
    assert!(!received(4790), "UDP 4790 should be dropped");

    // A filter made by tc with another port reads back as such; a different one as foreign.
    witness(&[
        "tc", "-n", b.name(), "filter", "add", "dev", "eth0", "ingress", "pref", "7", "protocol",
        "ip", "bpf", "bytecode",
        "11,40 0 0 12,21 0 8 2048,48 0 0 23,21 0 6 17,40 0 0 20,69 4 0 8191,177 0 0 14,72 0 0 16,21 0 1 53,6 0 0 2,6 0 0 4294967295",
        "da",
    ]);
    witness(&[
        "tc",
        "-n",
        b.name(),
        "filter",
        "add",
        "dev",
        "eth0",
        "ingress",
        "pref",
        "8",
        "protocol",
        "ip",
        "bpf",
        "bytecode",
        "1,6 0 0 4294967295",
        "da",
    ]);
    in_ns(&b, move |dp| async move {
        let mut f = dp.ingress_filters(index).await.unwrap();
        f.sort_by_key(|f| f.pref);
        let got: Vec<_> = f.iter().map(|f| (f.pref, f.drops_udp_port)).collect();
        assert_eq!(got, [(7, Some(53)), (8, None), (PREF, Some(4790))]);
        dp.delete_ingress_filters(index, PREF).await.unwrap();
        let f = dp.ingress_filters(index).await.unwrap();
        assert!(f.iter().all(|f| f.pref != PREF), "{f:?}");
        dp.delete_ingress_qdisc(index).await.unwrap();
        assert!(!dp.ingress_qdiscs().await.unwrap().contains_key(&index));
    });
    assert!(
        received(4790),
        "UDP 4790 should pass once the filter is gone"
    );
    let qdiscs = witness(&["tc", "-n", b.name(), "qdisc", "show", "dev", "eth0"]);
    assert!(!qdiscs.contains("ingress"), "{qdiscs}");
}
