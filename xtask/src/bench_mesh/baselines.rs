//! What `bench mesh` compares the routing mesh with, all built by hand inside the ingress
//! host's network namespace (h1), in front of the same replicas:
//!
//! - [`nft_rules`]: what kube-proxy's nftables mode (and Swarm's iptables + IPVS) builds for a
//!   published port: a `nat` prerouting rule for HOST:PORT jumping to a service chain that
//!   picks an endpoint chain with `numgen random mod N vmap { … : goto ep-i }`, each endpoint
//!   chain `dnat to REPLICA:8080`, and a postrouting rule that SNATs what was DNATed to the
//!   host's address (kube-proxy's masquerade). The address is h1's underlay address: the
//!   lab's bridges all hold the network's gateway address (10.10.1.1), so masquerading to the
//!   bridge's address would send a remote replica's replies to its own host. Replies of
//!   remote replicas therefore return over the underlay (routed by their host), not VXLAN.
//! - [`Haproxy`]: haproxy (Debian's) in TCP mode, round robin over the replicas, its
//!   connections to them from h1's underlay address (for the same reason).
//! - [`DirectServer`]: the reference: one more replica server, in h1's namespace itself,
//!   reached by the client on h1's underlay address with nothing in between.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::bench_lb::nginx::listens;
use crate::util::{self, KillOnDrop};

/// The nftables table, made for each nftables run and deleted after it.
pub const NFT_TABLE: &str = "vxbench_mesh";

/// The ruleset: `host`:`port` → one of `replicas` (address, port) at random, SNAT to `host`.
pub fn nft_rules(host: &str, port: u16, replicas: &[(String, u16)], subnet: &str) -> String {
    let vmap: Vec<String> = (0..replicas.len())
        .map(|i| format!("{i} : goto ep-{i}"))
        .collect();
    let mut out = format!(
        "table ip {NFT_TABLE} {{\n\
         \x20 chain prerouting {{\n\
         \x20   type nat hook prerouting priority dstnat; policy accept;\n\
         \x20   ip daddr {host} tcp dport {port} jump svc-{port}\n\
         \x20 }}\n\
         \x20 chain svc-{port} {{\n\
         \x20   numgen random mod {} vmap {{ {} }}\n\
         \x20 }}\n",
        replicas.len(),
        vmap.join(", ")
    );
    for (i, (addr, p)) in replicas.iter().enumerate() {
        out.push_str(&format!(
            "  chain ep-{i} {{\n    meta l4proto tcp dnat to {addr}:{p}\n  }}\n"
        ));
    }
    out.push_str(&format!(
        "  chain postrouting {{\n\
         \x20   type nat hook postrouting priority srcnat; policy accept;\n\
         \x20   ct status dnat ip daddr {subnet} snat to {host}\n\
         \x20 }}\n}}\n"
    ));
    out
}

/// The haproxy configuration: TCP mode, round robin, `source` = `host`.
pub fn haproxy_config(dir: &Path, host: &str, port: u16, replicas: &[(String, u16)]) -> String {
    let mut out = format!(
        "global\n  maxconn 8000\n  pidfile {}/haproxy.pid\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  \
         timeout server 60s\n\
         frontend mesh\n  bind {host}:{port} backlog 4096\n  default_backend replicas\n\
         backend replicas\n  balance roundrobin\n  source {host}\n",
        dir.display()
    );
    for (i, (addr, p)) in replicas.iter().enumerate() {
        out.push_str(&format!("  server r{i} {addr}:{p}\n"));
    }
    out
}

/// haproxy in the foreground (`-db`) in `host_ns`, killed on drop.
pub struct Haproxy {
    _process: KillOnDrop,
}

impl Haproxy {
    pub fn start(host_ns: &str, dir: &Path, config: &str, port: u16) -> Result<Self> {
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config)?;
        let cfg = file.to_string_lossy().into_owned();
        util::run_quiet(&mut util::cmd("haproxy", ["-c", "-q", "-f", &cfg]))?;
        let mut c = util::in_netns(host_ns, "haproxy", ["-f", &cfg, "-db"]);
        c.stdin(Stdio::null()).stdout(Stdio::null());
        let mut p = KillOnDrop::spawn(&mut c)?;
        wait_listening(host_ns, port, &mut p, "haproxy")?;
        Ok(Haproxy { _process: p })
    }
}

/// A replica server (`vxmesh lab replica`) in `host_ns` itself on `port`, killed on drop.
pub struct DirectServer {
    _process: KillOnDrop,
    pub name: String,
}

impl DirectServer {
    pub fn start(vxmesh: &Path, host_ns: &str, name: &str, port: u16) -> Result<Self> {
        let port_s = port.to_string();
        let mut c = util::in_netns(
            host_ns,
            &vxmesh.to_string_lossy(),
            ["lab", "replica", "--name", name, "--port", &port_s],
        );
        c.stdin(Stdio::null()).stdout(Stdio::null());
        let mut p = KillOnDrop::spawn(&mut c)?;
        wait_listening(host_ns, port, &mut p, name)?;
        Ok(DirectServer {
            _process: p,
            name: name.to_string(),
        })
    }
}

fn wait_listening(ns: &str, port: u16, p: &mut KillOnDrop, what: &str) -> Result<()> {
    let start = Instant::now();
    while !listens(ns, port)? {
        if let Some(status) = p.child.try_wait()? {
            bail!("{what} in {ns} exited ({status})");
        }
        if start.elapsed() > Duration::from_secs(10) {
            bail!("{what} in {ns} does not listen on {port} after 10 s");
        }
        util::check_interrupted()?;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas() -> Vec<(String, u16)> {
        vec![("10.10.1.2".into(), 8080), ("10.10.1.4".into(), 8080)]
    }

    #[test]
    fn the_nft_rules_are_kube_proxy_shaped() {
        let r = nft_rules("10.99.0.1", 8081, &replicas(), "10.10.1.0/24");
        assert!(r.contains("ip daddr 10.99.0.1 tcp dport 8081 jump svc-8081"));
        assert!(r.contains("numgen random mod 2 vmap { 0 : goto ep-0, 1 : goto ep-1 }"));
        assert!(r.contains("chain ep-1 {\n    meta l4proto tcp dnat to 10.10.1.4:8080\n  }"));
        assert!(r.contains("ct status dnat ip daddr 10.10.1.0/24 snat to 10.99.0.1"));
    }

    #[test]
    fn the_haproxy_config_balances_over_every_replica_from_the_host() {
        let c = haproxy_config(Path::new("/tmp/x"), "10.99.0.1", 8082, &replicas());
        assert!(c.contains("bind 10.99.0.1:8082 backlog 4096"));
        assert!(c.contains("source 10.99.0.1\n"));
        assert!(c.contains("server r0 10.10.1.2:8080\n  server r1 10.10.1.4:8080\n"));
        assert!(c.contains("mode tcp"));
    }
}
