//! `vxmesh cni install` writes the plugin (as `vxmesh`, its netconf type) and a .conflist with
//! the reference portmap chained after it; a runtime using exactly those files attaches a
//! container and detaches it again.

use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};
use vxmesh_tests::cni::{cni_bin, endpoints, ip, Chain, CniEnv, REFERENCE_PLUGINS};
use vxmesh_tests::{unique, Lab, TestNetns};

#[test]
fn install_writes_a_working_plugin_and_conflist() {
    let lab = Lab::up(1, 0, 1);
    let dir = tempfile::tempdir().unwrap();
    let (bin_dir, conf_dir) = (dir.path().join("bin"), dir.path().join("net.d"));
    let out = install(&lab, dir.path(), &["--node", "h1"]);
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

/// `vxmesh --json cni install --network net1` into DIR/bin and DIR/net.d, with `extra` options.
fn install(lab: &Lab, dir: &Path, extra: &[&str]) -> Output {
    let (bin_dir, conf_dir) = (dir.join("bin"), dir.join("net.d"));
    let plugin = cni_bin();
    let mut args = vec![
        "--json",
        "cni",
        "install",
        "--bin-dir",
        bin_dir.to_str().unwrap(),
        "--conf-dir",
        conf_dir.to_str().unwrap(),
        "--network",
        "net1",
        "--plugin",
        plugin.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    lab.vxmesh(&args)
}

/// The conflist `install` wrote into DIR.
fn conflist(dir: &Path) -> Value {
    let path = dir.join("net.d").join("10-vxmesh-net1.conflist");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Issue 7, fault 5: the conflist's version is one every plugin of the chain speaks and the
/// runtimes accept (podman 4.3 refuses 1.1.0), the same with or without portmap;
/// `--cni-version` chooses it and is refused, naming the value, when a plugin does not speak it.
#[test]
fn conflist_version_with_and_without_portmap_and_asked() {
    assert!(
        Path::new(REFERENCE_PLUGINS).join("portmap").exists(),
        "containernetworking-plugins missing"
    );
    let lab = Lab::up(1, 0, 1);
    let ok = |extra: &[&str]| -> Value {
        let dir = tempfile::tempdir().unwrap();
        let out = install(&lab, dir.path(), extra);
        assert!(
            out.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        conflist(dir.path())
    };
    let types = |list: &Value| -> Vec<String> {
        list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap().to_string())
            .collect()
    };
    let with = ok(&[]);
    assert_eq!(with["cniVersion"], "1.0.0");
    assert_eq!(types(&with), ["vxmesh", "portmap"]);
    let without = ok(&["--no-portmap"]);
    assert_eq!(without["cniVersion"], "1.0.0");
    assert_eq!(types(&without), ["vxmesh"]);
    assert_eq!(ok(&["--cni-version", "0.4.0"])["cniVersion"], "0.4.0");
    assert_eq!(
        ok(&["--no-portmap", "--cni-version", "1.1.0"])["cniVersion"],
        "1.1.0"
    );

    // Refused, naming the value and who does not speak it; nothing written, nothing changed.
    let dir = tempfile::tempdir().unwrap();
    assert!(install(&lab, dir.path(), &[]).status.success());
    let before = std::fs::read(dir.path().join("net.d/10-vxmesh-net1.conflist")).unwrap();
    for (asked, who) in [("1.1.0", "portmap"), ("0.3.1", "vxmesh"), ("2", "vxmesh")] {
        for target in [dir.path(), &dir.path().join("fresh")] {
            let out = install(&lab, target, &["--cni-version", asked]);
            assert!(!out.status.success(), "--cni-version {asked} accepted");
            let err = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(&format!("invalid --cni-version '{asked}'")) && err.contains(who),
                "{err}"
            );
        }
        assert!(!dir.path().join("fresh").exists());
        assert_eq!(
            std::fs::read(dir.path().join("net.d/10-vxmesh-net1.conflist")).unwrap(),
            before
        );
    }
}
