//! CNI acceptance 1: the plugin driven exactly as a runtime drives it (environment variables,
//! the netconf on stdin, real network namespaces, the host side in a lab host's namespace)
//! through VERSION, STATUS, ADD, CHECK, DEL, DEL again and GC, with assertions on the JSON it
//! prints and on what `ip -n NETNS addr/route/link` shows.

use serde_json::{json, Value};
use vxmesh_tests::cni::{endpoints, exec, ip, CniEnv};
use vxmesh_tests::{run, run_ok, unique, Lab, TestNetns};

/// A 64-hex-digit container id, as Docker and containerd make them.
fn cid(tag: &str) -> String {
    let u = unique(tag);
    format!("{u}{}", "0123456789abcdef".repeat(4))[..64].to_string()
}

fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

fn record<'a>(eps: &'a [Value], container_id: &str, ifname: &str) -> Option<&'a Value> {
    eps.iter()
        .find(|e| e["cni"]["container_id"] == container_id && e["cni"]["ifname"] == ifname)
}

fn host_links(ns: &str) -> String {
    ip(ns, &["-o", "link", "show"])
}

#[test]
fn add_check_del_gc_status_like_a_runtime() {
    let lab = Lab::up(1, 1, 1);
    let host = lab.namespace("h1");
    let mut conf = netconf_with_dns(&lab);

    // VERSION reports exactly what the plugin supports.
    let v = exec(
        &host,
        "VERSION",
        &CniEnv::default(),
        &json!({"cniVersion": "1.1.0"}),
    );
    v.ok();
    assert_eq!(
        v.json(),
        json!({"cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]})
    );

    // STATUS: the agent runs, the network exists: ADD can succeed.
    let s = exec(&host, "STATUS", &CniEnv::default(), &conf);
    s.ok();
    assert_eq!(s.stdout, "", "STATUS prints nothing on success");

    // ADD.
    let c1 = TestNetns::new(&unique("cnl"));
    let id1 = cid("a");
    let env1 = CniEnv::new(&id1, &c1.0, "eth0");
    let add = exec(&host, "ADD", &env1, &conf);
    add.ok();
    let res = add.json();
    assert_eq!(res["cniVersion"], "1.1.0");
    let ifs = res["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 2, "{res}");
    let host_if = ifs[0]["name"].as_str().unwrap().to_string();
    assert!(host_if.starts_with("ve-"), "{res}");
    assert!(ifs[0].get("sandbox").is_none());
    assert_eq!(ifs[1]["name"], "eth0");
    assert_eq!(ifs[1]["sandbox"], format!("/run/netns/{}", c1.0));
    assert_eq!(ifs[1]["mtu"], 1450);
    let mac = ifs[1]["mac"].as_str().unwrap().to_string();
    let ips = res["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 1);
    assert_eq!(ips[0]["interface"], 1);
    assert_eq!(ips[0]["gateway"], "10.10.1.1");
    let address = ips[0]["address"].as_str().unwrap().to_string();
    assert!(
        address.starts_with("10.10.1.") && address.ends_with("/24"),
        "{address}"
    );
    let bare = address.split('/').next().unwrap().to_string();
    assert_eq!(
        res["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.10.1.1"}])
    );
    assert_eq!(res["dns"]["nameservers"], json!(["10.10.1.53"]));
    assert_eq!(res["dns"]["search"], json!(["svc.example"]));

    // What the kernel shows.
    let link = ip(&c1.0, &["link", "show", "eth0"]);
    assert!(
        link.contains(&mac) && link.contains("mtu 1450") && link.contains("UP"),
        "{link}"
    );
    let addr = ip(&c1.0, &["-4", "addr", "show", "eth0"]);
    assert!(addr.contains(&format!("inet {address}")), "{addr}");
    let route = ip(&c1.0, &["route", "show"]);
    assert!(route.contains("default via 10.10.1.1 dev eth0"), "{route}");
    let hl = ip(&host, &["link", "show", &host_if]);
    assert!(
        hl.contains("master vb-net1") && hl.contains("mtu 1450"),
        "{hl}"
    );
    // The store has the record, with the real ids.
    let eps = endpoints(&lab, "net1");
    let r = record(&eps, &id1, "eth0").expect("endpoint recorded");
    assert_eq!(r["ip"], bare.as_str());
    assert_eq!(r["node"], "h1");
    // It works: the gateway (the bridge) and the lab's container answer.
    assert!(run(
        "ip",
        &["netns", "exec", &c1.0, "ping", "-c1", "-W2", "10.10.1.1"]
    )
    .status
    .success());
    let lab_c = lab.container("h1-c1").address.to_string();
    assert!(run(
        "ip",
        &["netns", "exec", &c1.0, "ping", "-c1", "-W2", &lab_c]
    )
    .status
    .success());

    // CHECK against prevResult: all well.
    exec(&host, "CHECK", &env1, &with_prev(&conf, &res)).ok();
    // CHECK without prevResult is an invalid configuration.
    assert_eq!(exec(&host, "CHECK", &env1, &conf).code(), 7);
    // CHECK of an attachment the store does not know: unknown container.
    let other = CniEnv::new(&cid("nx"), &c1.0, "eth0");
    assert_eq!(
        exec(&host, "CHECK", &other, &with_prev(&conf, &res)).code(),
        3
    );
    // A prevResult that differs is named.
    let mut wrong = res.clone();
    wrong["ips"][0]["address"] = "10.10.1.250/24".into();
    let c = exec(&host, "CHECK", &env1, &with_prev(&conf, &wrong));
    assert_eq!(c.code(), 103);
    assert!(
        c.json()["msg"].as_str().unwrap().contains("10.10.1.250/24"),
        "{}",
        c.stdout
    );
    // So is a kernel that differs: remove the address (and with it the default route).
    run_ok("ip", &["-n", &c1.0, "addr", "del", &address, "dev", "eth0"]);
    let c = exec(&host, "CHECK", &env1, &with_prev(&conf, &res));
    assert_eq!(c.code(), 103);
    let msg = c.json()["msg"].as_str().unwrap().to_string();
    assert!(
        msg.contains(&address) && msg.contains("default route"),
        "{msg}"
    );
    run_ok("ip", &["-n", &c1.0, "addr", "add", &address, "dev", "eth0"]);
    run_ok(
        "ip",
        &["-n", &c1.0, "route", "add", "default", "via", "10.10.1.1"],
    );
    exec(&host, "CHECK", &env1, &with_prev(&conf, &res)).ok();

    // A second ADD of the same attachment is refused, and changes nothing.
    let before = endpoints(&lab, "net1").len();
    assert_eq!(exec(&host, "ADD", &env1, &conf).code(), 100);
    // Another container id whose CNI_IFNAME already exists in the netns: refused, nothing left.
    let dup = CniEnv::new(&cid("d"), &c1.0, "eth0");
    assert_eq!(exec(&host, "ADD", &dup, &conf).code(), 101);
    assert_eq!(endpoints(&lab, "net1").len(), before);

    // DEL (with prevResult), then DEL again.
    let d = exec(&host, "DEL", &env1, &with_prev(&conf, &res));
    d.ok();
    assert_eq!(d.stdout, "", "DEL prints nothing");
    assert!(!ip(&c1.0, &["-o", "link"]).contains("eth0"));
    assert!(!host_links(&host).contains(&host_if));
    assert!(record(&endpoints(&lab, "net1"), &id1, "eth0").is_none());
    exec(&host, "DEL", &env1, &conf).ok();
    // DEL of something the store never had, without prevResult.
    exec(
        &host,
        "DEL",
        &CniEnv::new(&cid("never"), &c1.0, "eth0"),
        &conf,
    )
    .ok();

    // DEL after the netns is gone (and without prevResult, and with no CNI_NETNS).
    let c2 = TestNetns::new(&unique("cnl"));
    let id2 = cid("b");
    let env2 = CniEnv::new(&id2, &c2.0, "eth0");
    let res2 = exec(&host, "ADD", &env2, &conf).ok().json();
    let host_if2 = res2["interfaces"][0]["name"].as_str().unwrap().to_string();
    drop(c2);
    exec(&host, "DEL", &env2, &conf).ok();
    assert!(!host_links(&host).contains(&host_if2));
    assert!(record(&endpoints(&lab, "net1"), &id2, "eth0").is_none());
    let mut no_netns = env2.clone();
    no_netns.netns = None;
    exec(&host, "DEL", &no_netns, &conf).ok();

    // GC: keeps the valid attachment, frees the other and a stale veth; never touches the
    // lab's own (non-CNI) endpoint.
    let c3 = TestNetns::new(&unique("cnl"));
    let c4 = TestNetns::new(&unique("cnl"));
    let (id3, id4) = (cid("c"), cid("e"));
    let env3 = CniEnv::new(&id3, &c3.0, "eth0");
    let env4 = CniEnv::new(&id4, &c4.0, "net0");
    let res3 = exec(&host, "ADD", &env3, &conf).ok().json();
    let res4 = exec(&host, "ADD", &env4, &conf).ok().json();
    let host_if4 = res4["interfaces"][0]["name"].as_str().unwrap().to_string();
    run_ok(
        "ip",
        &[
            "-n",
            &host,
            "link",
            "add",
            "ve-stale00001",
            "type",
            "veth",
            "peer",
            "name",
            "vxpstale1",
        ],
    );
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([
        {"containerID": id3, "ifname": "eth0"},
        {"containerID": "somebody-else", "ifname": "eth0"},
    ]);
    exec(&host, "GC", &CniEnv::default(), &gc).ok();
    let eps = endpoints(&lab, "net1");
    assert!(
        record(&eps, &id3, "eth0").is_some(),
        "GC removed a valid attachment"
    );
    assert!(
        record(&eps, &id4, "net0").is_none(),
        "GC left a stale record"
    );
    assert!(
        eps.iter().any(|e| e["id"] == "h1-c1"),
        "GC touched the lab's endpoint"
    );
    let links = host_links(&host);
    assert!(
        !links.contains(&host_if4) && !links.contains("ve-stale00001"),
        "{links}"
    );
    assert!(!ip(&c4.0, &["-o", "link"]).contains("net0"));
    exec(&host, "CHECK", &env3, &with_prev(&conf, &res3)).ok();
    // The freed address is handed out again, and only once.
    let freed = res4["ips"][0]["address"].clone();
    let c5 = TestNetns::new(&unique("cnl"));
    let env5 = CniEnv::new(&cid("f"), &c5.0, "eth0");
    let res5 = exec(&host, "ADD", &env5, &conf).ok().json();
    assert_eq!(res5["ips"][0]["address"], freed);
    assert_ne!(res5["ips"][0]["address"], res3["ips"][0]["address"]);
    for (env, res) in [(&env3, &res3), (&env5, &res5)] {
        exec(&host, "DEL", env, &with_prev(&conf, res)).ok();
    }

    // STATUS when ADD cannot succeed: a reason and 50 or 51.
    let mut missing = conf.clone();
    missing["network"] = "nosuchnet".into();
    let s = exec(&host, "STATUS", &CniEnv::default(), &missing);
    assert_eq!(s.code(), 50);
    assert!(
        s.json()["msg"].as_str().unwrap().contains("nosuchnet"),
        "{}",
        s.stdout
    );
    let mut nostore = conf.clone();
    nostore["store"] = "/nonexistent/vxmesh/store.db".into();
    let s = exec(&host, "STATUS", &CniEnv::default(), &nostore);
    assert!([50, 51].contains(&s.code()), "{}", s.stdout);
    assert!(
        s.json()["msg"]
            .as_str()
            .unwrap()
            .contains("store unreachable"),
        "{}",
        s.stdout
    );
    let bare_host = TestNetns::new(&unique("cnh"));
    let s = exec(&bare_host.0, "STATUS", &CniEnv::default(), &conf);
    assert_eq!(s.code(), 50);
    assert!(
        s.json()["msg"]
            .as_str()
            .unwrap()
            .contains("agent not running"),
        "{}",
        s.stdout
    );
    // ...and ADD on such a host fails with "try again", leaving nothing.
    let c6 = TestNetns::new(&unique("cnl"));
    let before = endpoints(&lab, "net1").len();
    assert_eq!(
        exec(
            &bare_host.0,
            "ADD",
            &CniEnv::new(&cid("g"), &c6.0, "eth0"),
            &conf
        )
        .code(),
        11
    );
    assert_eq!(endpoints(&lab, "net1").len(), before);
    conf["cniVersion"] = "1.0.0".into();
    assert_eq!(exec(&host, "STATUS", &CniEnv::default(), &conf).code(), 1);
}

fn netconf_with_dns(lab: &Lab) -> Value {
    let mut conf = vxmesh_tests::cni::netconf(lab, "net1", "h1");
    conf["dns"] = json!({"nameservers": ["10.10.1.53"], "search": ["svc.example"]});
    conf["someUnknownKey"] = json!({"kept": true});
    conf
}

#[test]
fn versions_and_requested_address_mac_mtu() {
    let lab = Lab::up(1, 0, 1);
    let host = lab.namespace("h1");
    // 0.4.0 results carry ips[].version and no mtu; 1.0.0 results neither.
    for version in ["0.4.0", "1.0.0"] {
        let mut conf = vxmesh_tests::cni::netconf(&lab, "net1", "h1");
        conf["cniVersion"] = version.into();
        let c = TestNetns::new(&unique("cnv"));
        let env = CniEnv::new(&cid("v"), &c.0, "eth0");
        let res = exec(&host, "ADD", &env, &conf).ok().json();
        assert_eq!(res["cniVersion"], version);
        assert!(res["interfaces"][1].get("mtu").is_none(), "{res}");
        if version == "0.4.0" {
            assert_eq!(res["ips"][0]["version"], "4");
        } else {
            assert!(res["ips"][0].get("version").is_none());
        }
        exec(&host, "CHECK", &env, &with_prev(&conf, &res)).ok();
        exec(&host, "DEL", &env, &with_prev(&conf, &res)).ok();
        assert_eq!(exec(&host, "GC", &CniEnv::default(), &conf).code(), 1);
    }

    // runtimeConfig ips and mac (capabilities), a lower MTU.
    let mut conf = vxmesh_tests::cni::netconf(&lab, "net1", "h1");
    conf["mtu"] = 1400.into();
    conf["runtimeConfig"] = json!({"ips": ["10.10.1.77/24"], "mac": "0a:58:00:00:00:77"});
    let c = TestNetns::new(&unique("cnv"));
    let env = CniEnv::new(&cid("r"), &c.0, "eth1");
    let res = exec(&host, "ADD", &env, &conf).ok().json();
    assert_eq!(res["ips"][0]["address"], "10.10.1.77/24");
    assert_eq!(res["interfaces"][1]["mac"], "0a:58:00:00:00:77");
    assert_eq!(res["interfaces"][1]["mtu"], 1400);
    let link = ip(&c.0, &["link", "show", "eth1"]);
    assert!(
        link.contains("0a:58:00:00:00:77") && link.contains("mtu 1400"),
        "{link}"
    );
    assert!(ip(&c.0, &["-4", "addr"]).contains("inet 10.10.1.77/24"));
    exec(&host, "CHECK", &env, &with_prev(&conf, &res)).ok();
    // The same address for another container: refused (never handed out twice).
    let c2 = TestNetns::new(&unique("cnv"));
    let env2 = CniEnv::new(&cid("r2"), &c2.0, "eth0");
    conf["runtimeConfig"]["mac"] = "0a:58:00:00:00:78".into();
    assert_eq!(exec(&host, "ADD", &env2, &conf).code(), 102);
    // An MTU above the network's: invalid configuration.
    conf["runtimeConfig"] = json!({});
    conf["mtu"] = 9000.into();
    assert_eq!(exec(&host, "ADD", &env2, &conf).code(), 7);
    assert!(!ip(&c2.0, &["-o", "link"]).contains("eth0"));
    // CNI_ARGS IP=
    conf.as_object_mut().unwrap().remove("mtu");
    let mut env3 = env2.clone();
    env3.args = Some("IgnoreUnknown=1;IP=10.10.1.88;K8S_POD_NAME=x".into());
    let res3 = exec(&host, "ADD", &env3, &conf).ok().json();
    assert_eq!(res3["ips"][0]["address"], "10.10.1.88/24");
    exec(&host, "DEL", &env3, &conf).ok();
    exec(&host, "DEL", &env, &conf).ok();
    assert!(endpoints(&lab, "net1").is_empty());
}
