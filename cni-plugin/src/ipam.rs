//! Delegated IPAM: runs `CNI_PATH/<ipam.type>` with the same environment and stdin, as the
//! specification says, and reads the address from its result.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use ipnet::Ipv4Net;
use serde_json::Value;

use crate::conf::Dns;
use crate::env::Env;
use crate::error::*;

/// What the IPAM plugin handed out.
#[derive(Debug, Clone)]
pub struct IpamResult {
    pub address: Ipv4Net,
    pub dns: Option<Dns>,
}

/// Finds the plugin in CNI_PATH.
pub fn find(plugin: &str, path: &[PathBuf]) -> CniResult<PathBuf> {
    if path.is_empty() {
        return Err(CniError::new(
            INVALID_ENV,
            format!("CNI_PATH: is not set, so the ipam plugin '{plugin}' cannot be found"),
        ));
    }
    path.iter()
        .map(|d| d.join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                IPAM_FAILED,
                format!(
                    "ipam plugin '{plugin}' not found in CNI_PATH ({})",
                    path.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                ),
            )
        })
}

/// Runs the IPAM plugin for `command` (ADD, DEL, CHECK). `container_id` and `ifname` override
/// the caller's (GC deletes attachments other than the current one). Returns its stdout.
pub fn exec(
    plugin: &str,
    env: &Env,
    command: &str,
    container_id: Option<&str>,
    ifname: Option<&str>,
    stdin: &[u8],
) -> CniResult<Value> {
    let bin = find(plugin, &env.path)?;
    let mut p = Process::new(&bin);
    p.env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let set = |p: &mut Process, k: &str, v: Option<&str>| match v {
        Some(v) => {
            p.env(k, v);
        }
        None => {
            p.env_remove(k);
        }
    };
    set(
        &mut p,
        "CNI_CONTAINERID",
        container_id.or(env.container_id.as_deref()),
    );
    set(&mut p, "CNI_IFNAME", ifname.or(env.ifname.as_deref()));
    let netns = if container_id.is_some() {
        None
    } else {
        env.netns.as_deref().and_then(Path::to_str)
    };
    set(&mut p, "CNI_NETNS", netns);
    set(&mut p, "CNI_ARGS", env.args.as_deref());
    let joined = std::env::join_paths(&env.path).ok();
    match joined {
        Some(j) => {
            p.env("CNI_PATH", j);
        }
        None => {
            p.env_remove("CNI_PATH");
        }
    }
    let mut child = p.spawn().map_err(|e| {
        CniError::new(
            IPAM_FAILED,
            format!("cannot run ipam plugin {}: {e}", bin.display()),
        )
    })?;
    if let Some(mut input) = child.stdin.take() {
        // A plugin that exits without reading gives EPIPE: its exit status tells the story.
        let _ = input.write_all(stdin);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::new(IPAM_FAILED, format!("ipam plugin {}: {e}", bin.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // Pass the delegate's own error on, as the spec asks.
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            if let Some(code) = v.get("code").and_then(Value::as_u64) {
                let msg = v.get("msg").and_then(Value::as_str).unwrap_or("");
                let details = v.get("details").and_then(Value::as_str).unwrap_or("");
                return Err(CniError::new(
                    u32::try_from(code).unwrap_or(IPAM_FAILED),
                    format!("ipam plugin {plugin} ({command}): {msg}"),
                )
                .with_details(details));
            }
        }
        return Err(CniError::new(
            IPAM_FAILED,
            format!(
                "ipam plugin {plugin} ({command}) failed ({}) and printed {:?}",
                out.status,
                text.chars().take(300).collect::<String>()
            ),
        ));
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| {
        CniError::new(
            IPAM_FAILED,
            format!("ipam plugin {plugin} ({command}) printed something that is not JSON: {e}"),
        )
    })
}

/// The first IPv4 address of an IPAM result (any version 0.4.0 to 1.1.0).
pub fn parse_result(plugin: &str, v: &Value) -> CniResult<IpamResult> {
    let bad = |why: &str| CniError::new(IPAM_FAILED, format!("ipam plugin {plugin}: {why}"));
    let ips = v
        .get("ips")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("its result has no ips"))?;
    let address = ips
        .iter()
        .filter_map(|ip| ip.get("address").and_then(Value::as_str))
        .find_map(|a| a.parse::<Ipv4Net>().ok())
        .ok_or_else(|| bad("its result has no IPv4 address"))?;
    let dns = v.get("dns").and_then(|d| {
        let list = |k: &str| -> Vec<String> {
            d.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let dns = Dns {
            nameservers: list("nameservers"),
            domain: d.get("domain").and_then(Value::as_str).map(String::from),
            search: list("search"),
            options: list("options"),
        };
        (!dns.is_empty()).then_some(dns)
    });
    Ok(IpamResult { address, dns })
}

/// An address the IPAM plugin gave must be a host address of the network.
pub fn check_in_subnet(address: Ipv4Addr, network: &overlay_core::Network) -> CniResult<()> {
    overlay_core::validate::endpoint_ip(network, address).map_err(|e| {
        CniError::new(
            ADDRESS_UNAVAILABLE,
            format!("the ipam plugin's address cannot be used: {e}"),
        )
    })
}
