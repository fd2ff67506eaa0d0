//! CNI acceptance 4: two containers attached by the plugin on two lab hosts reach each other
//! across the overlay with no other step (the agents learn the endpoints from the store).

use std::time::Duration;

use vxmesh_tests::cni::{exec, ip, netconf, CniEnv};
use vxmesh_tests::{run, unique, wait_until, Lab, TestNetns};

#[test]
fn containers_added_on_two_hosts_reach_each_other() {
    let lab = Lab::up(2, 0, 1);
    let (a, b) = (
        TestNetns::new(&unique("cxa")),
        TestNetns::new(&unique("cxb")),
    );
    let env_a = CniEnv::new(&format!("{}a", unique("ctr")), &a.0, "eth0");
    let env_b = CniEnv::new(&format!("{}b", unique("ctr")), &b.0, "eth0");
    let res_a = exec(
        &lab.namespace("h1"),
        "ADD",
        &env_a,
        &netconf(&lab, "net1", "h1"),
    )
    .ok()
    .json();
    let res_b = exec(
        &lab.namespace("h2"),
        "ADD",
        &env_b,
        &netconf(&lab, "net1", "h2"),
    )
    .ok()
    .json();
    let ip_of = |r: &serde_json::Value| {
        r["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    let (ip_a, ip_b) = (ip_of(&res_a), ip_of(&res_b));
    assert_ne!(ip_a, ip_b);
    let ping = |ns: &str, to: &str| {
        run("ip", &["netns", "exec", ns, "ping", "-c1", "-W1", to])
            .status
            .success()
    };
    assert!(
        wait_until(Duration::from_secs(20), || ping(&a.0, &ip_b)),
        "{ip_a} on h1 cannot reach {ip_b} on h2"
    );
    assert!(ping(&b.0, &ip_a), "{ip_b} on h2 cannot reach {ip_a} on h1");
    // h1's agent learned the endpoint from the store: a permanent neighbour entry on h1.
    let learned = || {
        ip(&lab.namespace("h1"), &["neigh", "show", "nud", "permanent"])
            .split_whitespace()
            .any(|w| w == ip_b)
    };
    assert!(
        wait_until(Duration::from_secs(20), learned),
        "h1 has no permanent neighbour entry for {ip_b}"
    );

    // DEL on h2: h1's agent forgets it.
    exec(
        &lab.namespace("h2"),
        "DEL",
        &env_b,
        &netconf(&lab, "net1", "h2"),
    )
    .ok();
    assert!(!ip(&b.0, &["-o", "link"]).contains("eth0"));
    assert!(wait_until(Duration::from_secs(20), || { !learned() }));
    exec(
        &lab.namespace("h1"),
        "DEL",
        &env_a,
        &netconf(&lab, "net1", "h1"),
    )
    .ok();
}
