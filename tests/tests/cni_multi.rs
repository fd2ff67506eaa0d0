//! A container on several networks (issue 7, fault 3): a second, third... CNI attachment into a
//! namespace that already has interfaces and a default route, from vxmesh or from the reference
//! `bridge` plugin. Each attachment gets its address and subnet route; only one default route
//! is installed (the first network's unless `defaultRoute` says otherwise); the result lists
//! exactly the routes ADD made; CHECK checks those; DEL of one leaves the others intact.

use std::path::Path;

use serde_json::{json, Value};
use vxmesh_tests::cni::{exec, exec_raw, ip, netconf, CniEnv, CniOut, REFERENCE_PLUGINS};
use vxmesh_tests::{run, unique, Lab, TestNetns};

fn cid(tag: &str) -> String {
    format!("{}{}", unique(tag), "m".repeat(40))
}

/// A new container namespace and the environments of its `eth0` and `eth1` (one container id).
fn container(tag: &str) -> (TestNetns, CniEnv, CniEnv) {
    let c = TestNetns::new(&unique(tag));
    let id = cid(tag);
    let (e0, e1) = (
        CniEnv::new(&id, &c.0, "eth0"),
        CniEnv::new(&id, &c.0, "eth1"),
    );
    (c, e0, e1)
}

/// The `routes` of a result that installed the default route via `gw` and nothing else.
fn default_via(gw: &str) -> Value {
    json!([{"dst": "0.0.0.0/0", "gw": gw}])
}

fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

/// `ip -n NS -4 route show`, one route a line, spaces normalised.
fn routes(ns: &str) -> Vec<String> {
    ip(ns, &["-4", "route", "show"])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The default routes of NS as `via GW dev IF` (metric and protocol left out).
fn defaults(ns: &str) -> Vec<String> {
    routes(ns)
        .iter()
        .filter(|l| l.starts_with("default "))
        .map(|l| l.split(' ').skip(1).take(4).collect::<Vec<_>>().join(" "))
        .collect()
}

fn has_subnet_route(ns: &str, subnet: &str, dev: &str) -> bool {
    routes(ns)
        .iter()
        .any(|l| l.starts_with(&format!("{subnet} dev {dev} ")))
}

fn ping(ns: &str, to: &str) -> bool {
    run("ip", &["netns", "exec", ns, "ping", "-c1", "-W2", to])
        .status
        .success()
}

fn address(res: &Value) -> String {
    res["ips"][0]["address"].as_str().unwrap().to_string()
}

fn has_address(ns: &str, ifname: &str, address: &str) -> bool {
    ip(ns, &["-4", "addr", "show", ifname]).contains(&format!("inet {address} "))
}

#[test]
fn two_vxmesh_networks_in_one_container() {
    // h1-c1 on net1 (10.10.1.0/24), h1-c2 on net2 (10.10.2.0/24): the peers.
    let lab = Lab::up(1, 2, 2);
    let host = lab.namespace("h1");
    let (n1, n2) = (netconf(&lab, "net1", "h1"), netconf(&lab, "net2", "h1"));
    let peer1 = lab.container("h1-c1").address.to_string();
    let peer2 = lab.container("h1-c2").address.to_string();

    let (c, e0, e1) = container("cmu");
    let r0 = exec(&host, "ADD", &e0, &n1).ok().json();
    assert_eq!(r0["routes"], default_via("10.10.1.1"));
    // The second attachment: no "File exists", no default route of its own.
    let r1 = exec(&host, "ADD", &e1, &n2).ok().json();
    assert_eq!(r1["routes"], json!([]), "{r1}");
    assert_eq!(r1["ips"][0]["gateway"], "10.10.2.1");
    assert_eq!(defaults(&c.0), vec!["via 10.10.1.1 dev eth0"]);
    assert!(has_subnet_route(&c.0, "10.10.1.0/24", "eth0"));
    assert!(
        has_subnet_route(&c.0, "10.10.2.0/24", "eth1"),
        "{:?}",
        routes(&c.0)
    );
    // Both interfaces work: gateways and the peers on each network.
    for to in ["10.10.1.1", "10.10.2.1", &peer1, &peer2] {
        assert!(ping(&c.0, to), "cannot reach {to}: {:?}", routes(&c.0));
    }
    // CHECK on both: no false failure on the one without the default route.
    exec(&host, "CHECK", &e0, &with_prev(&n1, &r0)).ok();
    exec(&host, "CHECK", &e1, &with_prev(&n2, &r1)).ok();

    // DEL of the first (the default route's owner) leaves the second as it was.
    exec(&host, "DEL", &e0, &with_prev(&n1, &r0)).ok();
    assert!(has_address(&c.0, "eth1", &address(&r1)));
    assert!(has_subnet_route(&c.0, "10.10.2.0/24", "eth1"));
    assert!(defaults(&c.0).is_empty(), "{:?}", routes(&c.0));
    exec(&host, "CHECK", &e1, &with_prev(&n2, &r1)).ok();
    assert!(ping(&c.0, &peer2));
    // Attached again, net1 takes the default route (there is none now).
    let r0 = exec(&host, "ADD", &e0, &n1).ok().json();
    assert_eq!(r0["routes"][0]["gw"], "10.10.1.1");
    assert_eq!(defaults(&c.0), vec!["via 10.10.1.1 dev eth0"]);
    // DEL of the second leaves the first, its default route included.
    exec(&host, "DEL", &e1, &with_prev(&n2, &r1)).ok();
    assert_eq!(defaults(&c.0), vec!["via 10.10.1.1 dev eth0"]);
    assert!(has_address(&c.0, "eth0", &address(&r0)));
    exec(&host, "CHECK", &e0, &with_prev(&n1, &r0)).ok();
    assert!(ping(&c.0, &peer1));

    // A default route via the same vxmesh gateway on another interface (the same network
    // twice): DEL of the attachment that did not make it leaves it.
    let e2 = CniEnv::new(e0.container_id.as_deref().unwrap(), &c.0, "eth2");
    let r2 = exec(&host, "ADD", &e2, &n1).ok().json();
    assert_eq!(r2["routes"], json!([]));
    exec(&host, "CHECK", &e2, &with_prev(&n1, &r2)).ok();
    exec(&host, "DEL", &e2, &with_prev(&n1, &r2)).ok();
    assert_eq!(defaults(&c.0), vec!["via 10.10.1.1 dev eth0"]);
    exec(&host, "CHECK", &e0, &with_prev(&n1, &r0)).ok();
    exec(&host, "DEL", &e0, &with_prev(&n1, &r0)).ok();
    assert!(routes(&c.0).is_empty(), "{:?}", routes(&c.0));
}

#[test]
fn default_route_option() {
    let lab = Lab::up(1, 0, 2);
    let host = lab.namespace("h1");
    let (n1, n2) = (netconf(&lab, "net1", "h1"), netconf(&lab, "net2", "h1"));

    // true: the second network takes the default route; the container keeps exactly one.
    let (c, e0, e1) = container("cmo");
    let r0 = exec(&host, "ADD", &e0, &n1).ok().json();
    let n2_true = default_route_true(&n2);
    let r1 = exec(&host, "ADD", &e1, &n2_true).ok().json();
    assert_eq!(r1["routes"], default_via("10.10.2.1"));
    assert_eq!(defaults(&c.0), vec!["via 10.10.2.1 dev eth1"]);
    assert!(has_subnet_route(&c.0, "10.10.1.0/24", "eth0"));
    exec(&host, "CHECK", &e1, &with_prev(&n2_true, &r1)).ok();
    // eth0's default route is gone (replaced): its CHECK says so.
    exec(&host, "CHECK", &e0, &with_prev(&n1, &r0))
        .fails_with(103, "default route: expected via 10.10.1.1 dev eth0");
    // Order does not matter: net2 first, then net1 ("auto") leaves net2's default route.
    let (d, d0, d1) = container("cmo");
    exec(&host, "ADD", &d1, &n2_true).ok();
    let rd0 = exec(&host, "ADD", &d0, &n1).ok().json();
    assert_eq!(rd0["routes"], json!([]));
    assert_eq!(defaults(&d.0), vec!["via 10.10.2.1 dev eth1"]);

    // false: no default route, even in an empty namespace; the subnet route is there.
    let e = TestNetns::new(&unique("cmo"));
    let ee = CniEnv::new(&cid("f"), &e.0, "eth0");
    let mut n1_false = n1.clone();
    n1_false["defaultRoute"] = false.into();
    let rf = exec(&host, "ADD", &ee, &n1_false).ok().json();
    assert_eq!(rf["routes"], json!([]));
    assert!(defaults(&e.0).is_empty(), "{:?}", routes(&e.0));
    assert!(has_subnet_route(&e.0, "10.10.1.0/24", "eth0"));
    assert!(ping(&e.0, "10.10.1.1"));
    exec(&host, "CHECK", &ee, &with_prev(&n1_false, &rf)).ok();
    // CHECK holds the netconf to it: "true" with a result that has no default route differs.
    exec(
        &host,
        "CHECK",
        &ee,
        &with_prev(&default_route_true(&n1), &rf),
    )
    .fails_with(103, "although defaultRoute is true");

    // A bad value is refused, naming the field, and attaches nothing.
    let f = TestNetns::new(&unique("cmo"));
    let ef = CniEnv::new(&cid("b"), &f.0, "eth0");
    let mut bad = n1.clone();
    bad["defaultRoute"] = "yes".into();
    exec(&host, "ADD", &ef, &bad).fails_with(7, "field defaultRoute: 'yes'");
    bad["defaultRoute"] = 1.into();
    exec(&host, "ADD", &ef, &bad).fails_with(6, "field defaultRoute");
    assert!(!ip(&f.0, &["-o", "link"]).contains("eth0"));

    for (env, conf) in [
        (&e0, &n1),
        (&e1, &n2_true),
        (&d0, &n1),
        (&d1, &n2_true),
        (&ee, &n1_false),
    ] {
        exec(&host, "DEL", env, conf).ok();
    }
}

/// `conf` with `"defaultRoute": true`.
fn default_route_true(conf: &Value) -> Value {
    let mut c = conf.clone();
    c["defaultRoute"] = true.into();
    c
}

/// A reference `bridge` + `host-local` netconf making the container's default route
/// (`isDefaultGateway`), with its addresses kept in `data_dir`.
fn bridge_conf(bridge: &str, data_dir: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "refnet",
        "type": "bridge",
        "bridge": bridge,
        "isGateway": true,
        "isDefaultGateway": true,
        "ipMasq": false,
        "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": data_dir},
    })
}

fn bridge(host: &str, command: &str, env: &CniEnv, conf: &Value) -> CniOut {
    let mut env = env.clone();
    env.path = Some(REFERENCE_PLUGINS.into());
    exec_raw(
        host,
        &Path::new(REFERENCE_PLUGINS).join("bridge"),
        Some(command),
        &env,
        conf.to_string().as_bytes(),
    )
}

#[test]
fn vxmesh_after_the_reference_bridge_plugin() {
    assert!(
        Path::new(REFERENCE_PLUGINS).join("bridge").exists(),
        "containernetworking-plugins missing"
    );
    let lab = Lab::up(1, 1, 1);
    let host = lab.namespace("h1");
    let peer = lab.container("h1-c1").address.to_string();
    let data = tempfile::tempdir().unwrap();
    let br = bridge_conf(&unique("cbr"), data.path());
    let vx = netconf(&lab, "net1", "h1");

    // Both orders of DEL: bridge first, then vxmesh first.
    for bridge_first in [true, false] {
        let (c, e0, e1) = container("cmb");
        let rb = bridge(&host, "ADD", &e0, &br).ok().json();
        assert_eq!(defaults(&c.0), vec!["via 10.77.0.1 dev eth0"]);
        let rv = exec(&host, "ADD", &e1, &vx).ok().json();
        assert_eq!(rv["routes"], json!([]), "{rv}");
        assert_eq!(defaults(&c.0), vec!["via 10.77.0.1 dev eth0"]);
        assert!(has_subnet_route(&c.0, "10.10.1.0/24", "eth1"));
        for to in ["10.77.0.1", "10.10.1.1", &peer] {
            assert!(ping(&c.0, to), "cannot reach {to}: {:?}", routes(&c.0));
        }
        exec(&host, "CHECK", &e1, &with_prev(&vx, &rv)).ok();
        bridge(&host, "CHECK", &e0, &with_prev(&br, &rb)).ok();

        if bridge_first {
            bridge(&host, "DEL", &e0, &with_prev(&br, &rb)).ok();
            assert!(has_address(&c.0, "eth1", &address(&rv)));
            assert!(has_subnet_route(&c.0, "10.10.1.0/24", "eth1"));
            exec(&host, "CHECK", &e1, &with_prev(&vx, &rv)).ok();
            assert!(ping(&c.0, &peer));
            exec(&host, "DEL", &e1, &with_prev(&vx, &rv)).ok();
        } else {
            exec(&host, "DEL", &e1, &with_prev(&vx, &rv)).ok();
            assert_eq!(defaults(&c.0), vec!["via 10.77.0.1 dev eth0"]);
            assert!(has_address(&c.0, "eth0", &address(&rb)));
            bridge(&host, "CHECK", &e0, &with_prev(&br, &rb)).ok();
            assert!(ping(&c.0, "10.77.0.1"));
            bridge(&host, "DEL", &e0, &with_prev(&br, &rb)).ok();
        }
        assert!(routes(&c.0).is_empty(), "{:?}", routes(&c.0));
    }

    // "defaultRoute": true replaces the bridge plugin's default route.
    let (c, e0, e1) = container("cmb");
    let rb = bridge(&host, "ADD", &e0, &br).ok().json();
    let vx_true = default_route_true(&vx);
    let rv = exec(&host, "ADD", &e1, &vx_true).ok().json();
    assert_eq!(rv["routes"], default_via("10.10.1.1"));
    assert_eq!(defaults(&c.0), vec!["via 10.10.1.1 dev eth1"]);
    exec(&host, "CHECK", &e1, &with_prev(&vx_true, &rv)).ok();
    exec(&host, "DEL", &e1, &with_prev(&vx_true, &rv)).ok();
    bridge(&host, "DEL", &e0, &with_prev(&br, &rb)).ok();
}
