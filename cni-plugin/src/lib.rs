//! The vxmesh CNI plugin (`"type": "vxmesh"`), CNI specification 1.1.0.
//!
//! A container runtime executes the plugin with the CNI environment variables and the network
//! configuration on stdin. It implements VERSION, ADD, CHECK, DEL, GC and STATUS and accepts
//! configurations of versions 0.4.0, 1.0.0 and 1.1.0 (GC and STATUS: 1.1.0 only).
//!
//! # Network configuration
//!
//! ```json
//! {
//!   "cniVersion": "1.1.0", "name": "web", "type": "vxmesh",
//!   "network": "net1",              // the vxmesh network (required)
//!   "mtu": 1400,                    // default: the network's MTU on this host (the bridge's)
//!   "defaultRoute": "auto",         // "auto" (default), true or false: see below
//!   "ipam": {"type": "host-local", ...},  // default: vxmesh's own IPAM (the store)
//!   "dns": {"nameservers": ["10.0.0.53"]},
//!   "runtimeConfig": {"ips": ["10.10.1.7/24"], "mac": "0a:58:0a:0a:01:07"},
//!   "args": {"cni": {"ips": [...], "mac": "..."}},
//!   "store": "/var/lib/vxmesh/store.db",  // default
//!   "node": "h1"                    // default: the hostname
//! }
//! ```
//!
//! Unknown keys are accepted and passed on untouched (to a delegated IPAM plugin). CNI_ARGS
//! `IP=` and `MAC=` are honoured too (runtimeConfig, then args, then CNI_ARGS).
//!
//! # Several networks in one container
//!
//! A container may be attached to several networks (`CNI_IFNAME` `eth0`, `eth1`, ...), by
//! vxmesh or by other plugins, in any order. Every attachment gets its address and with it its
//! subnet route (`10.10.2.0/24 dev eth1`); the IPv4 default route (main table) follows
//! `defaultRoute`:
//!
//! - `"auto"` (or absent): `default via GATEWAY dev IFNAME` only when the container has no IPv4
//!   default route yet (from anyone, any metric). So the first network attached keeps the
//!   default route, and the container never has two.
//! - `true`: this network's gateway becomes the default route, replacing any IPv4 default route
//!   already there (another attachment's CHECK then reports its default route missing; DEL of
//!   this attachment does not bring it back). Of several `true` attachments the last one wins.
//! - `false`: never a default route, only the subnet route.
//!
//! The ADD result's `routes` lists exactly the routes ADD installed: the default route when it
//! installed one, else nothing (`[]`). CHECK checks the subnet route, and the default route via
//! the gateway on this interface only when prevResult lists it. DEL deletes the veth pair; the
//! kernel removes the routes through the container's interface with it, so DEL never removes a
//! default route another attachment made (even one via the same vxmesh gateway).
//!
//! # Error codes
//!
//! The spec's codes: 1 incompatible `cniVersion`; 2 unsupported field (an IPv6 or a second
//! address asked for, a fixed address together with a delegated IPAM); 3 unknown container
//! (CHECK of an attachment the store does not have); 4 invalid environment variables (missing
//! or malformed `CNI_*`, `CNI_NETNS` that does not exist); 5 I/O failure (the store); 6 cannot
//! decode stdin (not JSON, a field of the wrong type); 7 invalid network configuration
//! (missing or bad field, unknown network or node); 11 try again later (the network's bridge
//! is not on this host yet: the agent is not running; the store stayed contended); 50 / 51
//! (STATUS) not available / not available with limited connectivity.
//!
//! vxmesh's own codes:
//!
//! | code | meaning |
//! |---|---|
//! | 100 | an attachment for this CNI_CONTAINERID and CNI_IFNAME already exists (DEL it first) |
//! | 101 | CNI_IFNAME already exists in the container's network namespace |
//! | 102 | the address (or MAC) asked for cannot be used, or the network has no free address |
//! | 103 | CHECK found a difference (the message names each one) |
//! | 104 | a netlink operation failed while building or removing the veth pair |
//! | 105 | the delegated IPAM plugin could not be run or printed an unusable result |
//! | 106 | GC could not remove some stale attachments (all of them listed in `details`) |
//! | 199 | internal error (a bug caught before it could crash the plugin) |
//!
//! An error of the delegated IPAM plugin is passed on with its own code.

pub mod conf;
pub mod env;
pub mod error;
pub mod ipam;
pub mod plugin;

use std::io::{Read, Write};

pub use conf::{parse as parse_netconf, NetConf, SUPPORTED_VERSIONS};
pub use error::CniError;
pub use plugin::{endpoint_id, execute};

/// What one call prints and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub exit: i32,
}

/// Runs one call from an environment lookup and stdin, catching panics (a bug must still give
/// the runtime an error JSON, never a crash).
pub fn run_with(get: &dyn Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    let version = conf::answer_version(stdin);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute(get, stdin)));
    let result = match result {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(CniError::new(
                error::INTERNAL,
                format!("internal error: {what}"),
            ))
        }
    };
    match result {
        Ok(Some(v)) => Outcome {
            stdout: format!("{v}\n"),
            exit: 0,
        },
        Ok(None) => Outcome {
            stdout: String::new(),
            exit: 0,
        },
        Err(e) => Outcome {
            stdout: format!("{}\n", e.to_json(&version)),
            exit: 1,
        },
    }
}

/// The binary's main: reads the real environment and stdin, prints, returns the exit status.
pub fn main_entry() -> i32 {
    // Panics are reported as error JSON on stdout; keep their text off stdout.
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(std::io::stderr(), "vxmesh-cni: {info}");
    }));
    // Any CNI_* variable that is not UTF-8 is an environment error.
    let bad_env = std::env::vars_os().find_map(|(k, v)| {
        let k = k.to_str()?.to_string();
        (k.starts_with("CNI_") && v.to_str().is_none()).then_some(k)
    });
    let mut stdin = Vec::new();
    let read = std::io::stdin()
        .take(conf::MAX_INPUT as u64 + 1)
        .read_to_end(&mut stdin);
    let outcome = if let Some(k) = bad_env {
        let e = CniError::new(error::INVALID_ENV, format!("{k}: is not valid UTF-8"));
        Outcome {
            stdout: format!("{}\n", e.to_json(&conf::answer_version(&stdin))),
            exit: 1,
        }
    } else if let Err(e) = read {
        let e = CniError::new(error::IO_FAILURE, format!("cannot read stdin: {e}"));
        Outcome {
            stdout: format!("{}\n", e.to_json(conf::LATEST_VERSION)),
            exit: 1,
        }
    } else {
        run_with(&|k| std::env::var(k).ok(), &stdin)
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(outcome.stdout.as_bytes());
    let _ = out.flush();
    outcome.exit
}
