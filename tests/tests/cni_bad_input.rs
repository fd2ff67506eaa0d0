//! CNI acceptance 6: bad input, table-driven. Malformed JSON, wrong types, missing fields,
//! unsupported versions, bad environment values and random bytes each get the spec's error
//! JSON with the right code and a non-zero exit, and change nothing (store, host links, the
//! container's links). The parser's fuzz target is cni-plugin/tests/netconf_fuzz.rs.

use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use vxmesh_tests::cni::{cni_bin, endpoints, exec_raw, ip, netconf, CniEnv};
use vxmesh_tests::{unique, Lab, TestNetns};

struct Case {
    what: &'static str,
    command: Option<&'static str>,
    env: Box<dyn Fn(&mut CniEnv)>,
    stdin: Vec<u8>,
    code: u64,
}

fn snapshot(lab: &Lab, host: &str, ctr: &str) -> (Vec<Value>, String, String) {
    (
        endpoints(lab, "net1"),
        ip(host, &["-o", "link"]),
        ip(ctr, &["-o", "link"]),
    )
}

#[test]
fn every_bad_input_gets_its_code_and_changes_nothing() {
    let lab = Lab::up(1, 1, 1);
    let host = lab.namespace("h1");
    let ctr = TestNetns::new(&unique("cnb"));
    let good = netconf(&lab, "net1", "h1");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c.to_string().into_bytes()
    };
    let none = || -> Box<dyn Fn(&mut CniEnv)> { Box::new(|_| {}) };
    let mut random = Vec::new();
    for seed in 0..5u64 {
        let bytes: Vec<u8> = (0..64 + seed * 50)
            .map(|i| ((i * 2_654_435_761 + seed * 97) >> 3) as u8)
            .collect();
        random.push(bytes);
    }
    let mut cases: Vec<Case> = vec![
        // Malformed JSON and random bytes: 6.
        Case {
            what: "not JSON",
            command: Some("ADD"),
            env: none(),
            stdin: b"{\"cniVersion\": ".to_vec(),
            code: 6,
        },
        Case {
            what: "empty stdin",
            command: Some("ADD"),
            env: none(),
            stdin: vec![],
            code: 6,
        },
        Case {
            what: "a JSON array",
            command: Some("ADD"),
            env: none(),
            stdin: b"[1,2,3]".to_vec(),
            code: 6,
        },
        Case {
            what: "a JSON string",
            command: Some("DEL"),
            env: none(),
            stdin: b"\"vxmesh\"".to_vec(),
            code: 6,
        },
        Case {
            what: "trailing garbage",
            command: Some("ADD"),
            env: none(),
            stdin: [good.to_string().as_bytes(), b"}}"].concat(),
            code: 6,
        },
        // Wrong types: 6.
        Case {
            what: "cniVersion a number",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["cniVersion"] = json!(1.1)),
            code: 6,
        },
        Case {
            what: "network a number",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["network"] = json!(5)),
            code: 6,
        },
        Case {
            what: "mtu a string",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["mtu"] = json!("1400")),
            code: 6,
        },
        Case {
            what: "dns an array",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["dns"] = json!([])),
            code: 6,
        },
        Case {
            what: "dns.nameservers a string",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["dns"] = json!({"nameservers": "8.8.8.8"})),
            code: 6,
        },
        Case {
            what: "runtimeConfig.ips a string",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["runtimeConfig"] = json!({"ips": "10.10.1.9"})),
            code: 6,
        },
        Case {
            what: "ipam a string",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["ipam"] = json!("host-local")),
            code: 6,
        },
        Case {
            what: "prevResult a string",
            command: Some("CHECK"),
            env: none(),
            stdin: with(&|c| c["prevResult"] = json!("x")),
            code: 6,
        },
        Case {
            what: "valid-attachments an object",
            command: Some("GC"),
            env: none(),
            stdin: with(&|c| c["cni.dev/valid-attachments"] = json!({})),
            code: 6,
        },
        // Missing fields and bad values: 7.
        Case {
            what: "no network",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| {
                c.as_object_mut().unwrap().remove("network");
            }),
            code: 7,
        },
        Case {
            what: "no name",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| {
                c.as_object_mut().unwrap().remove("name");
            }),
            code: 7,
        },
        Case {
            what: "no type",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| {
                c.as_object_mut().unwrap().remove("type");
            }),
            code: 7,
        },
        Case {
            what: "no cniVersion",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| {
                c.as_object_mut().unwrap().remove("cniVersion");
            }),
            code: 7,
        },
        Case {
            what: "another plugin's type",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["type"] = json!("bridge")),
            code: 7,
        },
        Case {
            what: "bad network name",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["network"] = json!("a/b")),
            code: 7,
        },
        Case {
            what: "unknown network",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["network"] = json!("nosuchnet")),
            code: 7,
        },
        Case {
            what: "unknown node",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["node"] = json!("ghost")),
            code: 7,
        },
        Case {
            what: "mtu too small",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["mtu"] = json!(20)),
            code: 7,
        },
        Case {
            what: "negative mtu",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["mtu"] = json!(-1500)),
            code: 7,
        },
        Case {
            what: "bad mac",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["runtimeConfig"] = json!({"mac": "zz:zz"})),
            code: 7,
        },
        Case {
            what: "multicast mac",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["runtimeConfig"] = json!({"mac": "01:00:5e:00:00:01"})),
            code: 7,
        },
        Case {
            what: "bad ip",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["runtimeConfig"] = json!({"ips": ["10.10.1.999"]})),
            code: 7,
        },
        Case {
            what: "ipam type a path",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["ipam"] = json!({"type": "../../bin/sh"})),
            code: 7,
        },
        Case {
            what: "GC without valid-attachments",
            command: Some("GC"),
            env: none(),
            stdin: good.to_string().into_bytes(),
            code: 7,
        },
        Case {
            what: "CHECK without prevResult",
            command: Some("CHECK"),
            env: none(),
            stdin: good.to_string().into_bytes(),
            code: 7,
        },
        // Unsupported versions: 1.
        Case {
            what: "cniVersion 0.3.1",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["cniVersion"] = json!("0.3.1")),
            code: 1,
        },
        Case {
            what: "cniVersion 2.0.0",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["cniVersion"] = json!("2.0.0")),
            code: 1,
        },
        Case {
            what: "cniVersion garbage",
            command: Some("DEL"),
            env: none(),
            stdin: with(&|c| c["cniVersion"] = json!("latest")),
            code: 1,
        },
        Case {
            what: "GC with 1.0.0",
            command: Some("GC"),
            env: none(),
            stdin: with(&|c| {
                c["cniVersion"] = json!("1.0.0");
                c["cni.dev/valid-attachments"] = json!([]);
            }),
            code: 1,
        },
        // Unsupported fields: 2.
        Case {
            what: "an IPv6 address",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["runtimeConfig"] = json!({"ips": ["fd00::5/64"]})),
            code: 2,
        },
        Case {
            what: "two addresses",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["runtimeConfig"] = json!({"ips": ["10.10.1.5", "10.10.1.6"]})),
            code: 2,
        },
        // An address that cannot be had: 102.
        Case {
            what: "ip outside the subnet",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["runtimeConfig"] = json!({"ips": ["10.77.0.5/24"]})),
            code: 102,
        },
        Case {
            what: "ip = gateway",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["runtimeConfig"] = json!({"ips": ["10.10.1.1"]})),
            code: 102,
        },
        // Bad environment: 4.
        Case {
            what: "no CNI_COMMAND",
            command: None,
            env: none(),
            stdin: good.to_string().into_bytes(),
            code: 4,
        },
        Case {
            what: "unknown CNI_COMMAND",
            command: Some("FROB"),
            env: none(),
            stdin: good.to_string().into_bytes(),
            code: 4,
        },
        Case {
            what: "lower-case CNI_COMMAND",
            command: Some("add"),
            env: none(),
            stdin: good.to_string().into_bytes(),
            code: 4,
        },
        Case {
            what: "no CNI_CONTAINERID",
            command: Some("ADD"),
            env: Box::new(|e| e.container_id = None),
            stdin: good.to_string().into_bytes(),
            code: 4,
        },
        Case {
            what: "bad CNI_CONTAINERID",
            command: Some("ADD"),
            env: Box::new(|e| e.container_id = Some("-bad id".into())),
            stdin: good.to_string().into_bytes(),
            code: 4,
        },
        Case {
            what: "no CNI_IFNAME",
            command: Some("ADD"),
            env: Box::new(|e| e.ifname = None),
            stdin: good.to_string().into_bytes(),
            code: 4,
        },
        Case {
            what: "CNI_IFNAME too long",
            command: Some("ADD"),
            env: Box::new(|e| e.ifname = Some("averyverylongifname".into())),
            stdin: good.to_string().into_bytes(),
            code: 4,
        },
        Case {
            what: "CNI_IFNAME with '/'",
            command: Some("DEL"),
            env: Box::new(|e| e.ifname = Some("eth/0".into())),
            stdin: good.to_string().into_bytes(),
            code: 4,
        },
        Case {
            what: "no CNI_NETNS",
            command: Some("ADD"),
            env: Box::new(|e| e.netns = None),
            stdin: good.to_string().into_bytes(),
            code: 4,
        },
        Case {
            what: "relative CNI_NETNS",
            command: Some("ADD"),
            env: Box::new(|e| e.netns = Some("run/netns/x".into())),
            stdin: good.to_string().into_bytes(),
            code: 4,
        },
        Case {
            what: "CNI_NETNS that does not exist",
            command: Some("ADD"),
            env: Box::new(|e| e.netns = Some("/run/netns/no-such-ns-vxmesh".into())),
            stdin: good.to_string().into_bytes(),
            code: 4,
        },
        Case {
            what: "malformed CNI_ARGS",
            command: Some("ADD"),
            env: Box::new(|e| e.args = Some("IP;x".into())),
            stdin: good.to_string().into_bytes(),
            code: 4,
        },
        Case {
            what: "CNI_ARGS IP not an address",
            command: Some("ADD"),
            env: Box::new(|e| e.args = Some("IP=ten".into())),
            stdin: good.to_string().into_bytes(),
            code: 4,
        },
        Case {
            what: "delegated ipam without CNI_PATH",
            command: Some("ADD"),
            env: none(),
            stdin: with(&|c| c["ipam"] = json!({"type": "host-local"})),
            code: 4,
        },
    ];
    for (i, r) in random.into_iter().enumerate() {
        cases.push(Case {
            what: [
                "random bytes 0",
                "random bytes 1",
                "random bytes 2",
                "random bytes 3",
                "random bytes 4",
            ][i],
            command: Some(["ADD", "DEL", "CHECK", "GC", "STATUS"][i]),
            env: none(),
            stdin: r,
            code: 6,
        });
    }

    let before = snapshot(&lab, &host, &ctr.0);
    let mut failures = Vec::new();
    for case in &cases {
        let mut env = CniEnv::new(&format!("{}bad", unique("c")), &ctr.0, "eth0");
        (case.env)(&mut env);
        let out = exec_raw(&host, &cni_bin(), case.command, &env, &case.stdin);
        let parsed: Option<Value> = serde_json::from_str(&out.stdout).ok();
        let ok = out.exit != 0
            && parsed.as_ref().is_some_and(|v| {
                v["code"].as_u64() == Some(case.code)
                    && v["msg"].as_str().is_some_and(|m| !m.is_empty())
                    && v["cniVersion"].is_string()
            });
        if !ok {
            failures.push(format!(
                "{}: expected code {}, got exit {} stdout {:?} stderr {:?}",
                case.what, case.code, out.exit, out.stdout, out.stderr
            ));
        }
        if out.stderr.contains("panicked") {
            failures.push(format!(
                "{}: the plugin panicked: {}",
                case.what, out.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(
        snapshot(&lab, &host, &ctr.0),
        before,
        "bad input changed something"
    );

    // A CNI_* variable that is not UTF-8.
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{host}"))
        .arg(cni_bin())
        .env_clear()
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "abc")
        .env("CNI_NETNS", format!("/run/netns/{}", ctr.0))
        .env("CNI_IFNAME", std::ffi::OsStr::from_bytes(b"eth\xff"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!out.status.success());
    assert_eq!(v["code"], 4, "{v}");
    assert_eq!(snapshot(&lab, &host, &ctr.0), before);
}
