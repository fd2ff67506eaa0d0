//! `vxmesh cni install` writes the plugin (as `vxmesh`, its netconf type) and a .conflist with
//! the reference portmap chained after it; a runtime using exactly those files attaches a
//! container and detaches it again.

use serde_json::{json, Value};
use vxmesh_tests::cni::{cni_bin, endpoints, ip, Chain, CniEnv, REFERENCE_PLUGINS};
use vxmesh_tests::{unique, Lab, TestNetns};

#[test]
fn install_writes_a_working_plugin_and_conflist() {
    let lab = Lab::up(1, 0, 1);
    let dir = tempfile::tempdir().unwrap();
    let (bin_dir, conf_dir) = (dir.path().join("bin"), dir.path().join("net.d"));
    let out = lab.vxmesh(&[
        "--json",
        "cni",
        "install",
        "--bin-dir",
        bin_dir.to_str().unwrap(),
        "--conf-dir",
        conf_dir.to_str().unwrap(),
        "--network",
        "net1",
        "--node",
        "h1",
        "--plugin",
        cni_bin().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plugin = bin_dir.join("vxmesh");
    assert_eq!(
        std::fs::read(&plugin).unwrap(),
        std::fs::read(cni_bin()).unwrap()
    );
    let conf_path = conf_dir.join("10-vxmesh-net1.conflist");
    let list: Value = serde_json::from_str(&std::fs::read_to_string(&conf_path).unwrap()).unwrap();
    assert_eq!(list["name"], "vxmesh-net1");
    assert_eq!(list["plugins"][0]["type"], "vxmesh");
    assert_eq!(list["plugins"][0]["network"], "net1");
    assert_eq!(list["plugins"][0]["node"], "h1");
    let portmap = std::path::Path::new(REFERENCE_PLUGINS)
        .join("portmap")
        .exists();
    if portmap {
        assert_eq!(list["plugins"][1]["type"], "portmap");
        // The reference plugins speak 1.0.0 at most: the list uses what all of them speak.
        assert_eq!(list["cniVersion"], "1.0.0");
    }

    // Use it as a runtime would.
    let chain = Chain::from_conflist(&list, &format!("{}:{REFERENCE_PLUGINS}", bin_dir.display()));
    let c = TestNetns::new(&unique("cni"));
    let env = CniEnv::new(&format!("{}inst", unique("c")), &c.0, "eth0");
    let runtime =
        json!({"portMappings": [{"hostPort": 18081, "containerPort": 80, "protocol": "tcp"}]});
    let res = chain
        .add(&lab.namespace("h1"), &env, &runtime)
        .unwrap_or_else(|o| panic!("{}", o.stdout));
    let address = res["ips"][0]["address"].as_str().unwrap();
    assert!(ip(&c.0, &["-4", "addr"]).contains(address));
    for out in chain.del(&lab.namespace("h1"), &env, &runtime, Some(&res)) {
        out.ok();
    }
    assert!(endpoints(&lab, "net1").is_empty());

    // An unknown network is refused and writes nothing.
    let out = lab.vxmesh(&[
        "cni",
        "install",
        "--bin-dir",
        dir.path().join("b2").to_str().unwrap(),
        "--conf-dir",
        dir.path().join("c2").to_str().unwrap(),
        "--network",
        "nosuch",
    ]);
    assert!(!out.status.success());
    assert!(!dir.path().join("c2").exists());
}
