//! Witnesses of the eBPF fast path (`agent --datapath ebpf`): its pin directory and its
//! maps as bpftool dumps them (BTF-formatted JSON).

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::{run, Lab};

/// The fast path's pin directory of lab host `host`: `<pin root>/_fast-<host>`.
pub fn pin_dir(lab: &Lab, host: &str) -> PathBuf {
    lab.state
        .bpf_pin_root
        .as_ref()
        .expect("the lab has a BPF pin root")
        .join(format!("_fast-{host}"))
}

/// `bpftool -j map dump pinned` of fast-path map `map` (`vxf_port`, `vxf_l2`, `vxf_ep`) of
/// `host`: every entry as (key, value) JSON; empty when the map is not pinned.
pub fn entries(lab: &Lab, host: &str, map: &str) -> Vec<(serde_json::Value, serde_json::Value)> {
    let path = pin_dir(lab, host).join("maps").join(map);
    if !path.exists() {
        return Vec::new();
    }
    let out = run(
        "bpftool",
        &["-j", "map", "dump", "pinned", path.to_str().unwrap()],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bpftool map dump {map}: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["formatted"]["key"].clone(),
                        e["formatted"]["value"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The VNIs the fast path of `host` has entries for, over its three maps.
pub fn vnis(lab: &Lab, host: &str) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for (k, v) in entries(lab, host, "vxf_port") {
        out.extend(v["vni"].as_u64().or(k["vni"].as_u64()));
    }
    for map in ["vxf_l2", "vxf_ep"] {
        out.extend(
            entries(lab, host, map)
                .iter()
                .filter_map(|(k, _)| k["vni"].as_u64()),
        );
    }
    out
}
