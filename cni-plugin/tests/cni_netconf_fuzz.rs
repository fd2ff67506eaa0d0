//! Fuzzing the netconf and environment parsers with proptest (bounded cases, part of the normal
//! test suite): they never panic, and every rejection carries one of the spec's codes for bad
//! input.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use vxmesh_cni::env;
use vxmesh_cni::error::*;

const INPUT_CODES: &[u32] = &[
    INCOMPATIBLE_VERSION,
    UNSUPPORTED_FIELD,
    DECODE,
    INVALID_CONFIG,
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
        prop_oneof![
            Just("1.1.0"),
            Just("1.0.0"),
            Just("0.4.0"),
            Just("0.3.1"),
            Just("vxmesh"),
            Just("net1"),
            Just("10.10.1.7/24"),
            Just("fd00::1/64"),
            Just("0a:58:0a:0a:01:07"),
            Just("host-local"),
            Just("../x"),
            Just(""),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop_oneof![
            Just("cniVersion"),
            Just("name"),
            Just("type"),
            Just("network"),
            Just("mtu"),
            Just("ipam"),
            Just("dns"),
            Just("runtimeConfig"),
            Just("args"),
            Just("store"),
            Just("node"),
            Just("prevResult"),
            Just("cni.dev/valid-attachments"),
            Just("ips"),
            Just("mac"),
            Just("cni"),
            Just("nameservers"),
            Just("containerID"),
            Just("ifname"),
        ]
        .prop_map(String::from),
        "[a-zA-Z]{1,8}",
    ]
}

/// A netconf that is valid except for what proptest changes in it.
fn mutated_netconf() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map(key(), json_value(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(changes, drop_required)| {
            let mut m: Map<String, Value> = json!({
                "cniVersion": "1.1.0", "name": "n", "type": "vxmesh", "network": "net1",
                "store": "/nonexistent/store.db", "node": "h1",
            })
            .as_object()
            .unwrap()
            .clone();
            for (k, v) in changes {
                if drop_required && v.is_null() {
                    m.remove(&k);
                } else {
                    m.insert(k, v);
                }
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = vxmesh_cni::parse_netconf(&bytes) {
            prop_assert!(INPUT_CODES.contains(&e.code), "code {} for {:?}", e.code, e);
            prop_assert!(!e.msg.is_empty());
        }
    }

    #[test]
    fn random_json_never_panics(v in json_value()) {
        if let Err(e) = vxmesh_cni::parse_netconf(v.to_string().as_bytes()) {
            prop_assert!(INPUT_CODES.contains(&e.code), "code {} for {v}", e.code);
        }
    }

    #[test]
    fn mutated_netconf_never_panics(v in mutated_netconf()) {
        match vxmesh_cni::parse_netconf(v.to_string().as_bytes()) {
            Ok(c) => {
                // What parses is what was given.
                prop_assert_eq!(Some(c.cni_version.as_str()), v["cniVersion"].as_str());
                prop_assert_eq!(Some(c.network.as_str()), v["network"].as_str());
                let reparsed: Value = serde_json::from_str(&v.to_string()).unwrap();
                prop_assert_eq!(c.raw, reparsed);
            }
            Err(e) => prop_assert!(INPUT_CODES.contains(&e.code), "code {} for {v}", e.code),
        }
    }

    #[test]
    fn random_environment_never_panics(
        vars in prop::collection::btree_map(
            prop_oneof![
                Just("CNI_COMMAND"), Just("CNI_CONTAINERID"), Just("CNI_NETNS"),
                Just("CNI_IFNAME"), Just("CNI_ARGS"), Just("CNI_PATH"),
            ],
            prop_oneof![
                ".{0,40}",
                prop_oneof![Just("ADD"), Just("DEL"), Just("CHECK"), Just("GC"), Just("STATUS"), Just("VERSION")]
                    .prop_map(String::from),
            ],
            0..6,
        )
    ) {
        let get = |k: &str| vars.get(k).cloned();
        if let Err(e) = env::parse(&get) {
            prop_assert_eq!(e.code, INVALID_ENV, "{:?}", e);
        }
    }
}

#[test]
fn version_needs_no_valid_input() {
    let out = vxmesh_cni::run_with(
        &|k| (k == "CNI_COMMAND").then(|| "VERSION".into()),
        b"\xff\x00",
    );
    assert_eq!(out.exit, 0);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));
}

#[test]
fn endpoint_ids_are_valid_unique_and_stable() {
    let long = "a".repeat(64);
    let a = vxmesh_cni::endpoint_id(&long, "eth0");
    assert_eq!(a, vxmesh_cni::endpoint_id(&long, "eth0"));
    assert_ne!(a, vxmesh_cni::endpoint_id(&long, "eth1"));
    assert_ne!(a, vxmesh_cni::endpoint_id(&"a".repeat(63), "aeth0"));
    assert!(a.len() <= overlay_core::validate::ID_MAX);
    overlay_core::validate::endpoint_id(&a).unwrap();
}
