//! Driving the lab through the `vxmesh` CLI, and the shape of
//! `vxmesh lab status --json` (kept here: xtask does not depend on vxmesh).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::util::{self, heading, say};

#[derive(Debug, Clone, Deserialize)]
pub struct LabStatus {
    pub prefix: String,
    #[serde(default)]
    pub store: String,
    #[serde(default)]
    pub switch_namespace: String,
    #[serde(default)]
    pub hosts: Vec<LabHost>,
    #[serde(default)]
    pub networks: Vec<LabNetwork>,
    #[serde(default)]
    pub containers: Vec<LabContainer>,
    /// Where the agents pin their BPF objects, one directory per host (labs since the
    /// services datapath).
    #[serde(default)]
    pub bpf_pin_root: Option<PathBuf>,
    /// The outside client on the underlay switch (`lab exec client`).
    #[serde(default)]
    pub client: Option<LabClient>,
    /// The routing mesh's demo service (`lab up --replicas N`).
    #[serde(default)]
    pub demo: Option<LabDemo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LabClient {
    pub namespace: String,
    pub address: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LabDemo {
    pub service: String,
    pub network: String,
    pub port: u16,
    pub published: u16,
    pub replicas: Vec<LabReplica>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LabReplica {
    pub name: String,
    pub host: String,
    pub address: String,
    pub port: u16,
    #[serde(default)]
    pub running: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LabHost {
    pub name: String,
    pub namespace: String,
    #[serde(default = "eth0")]
    pub interface: String,
    pub address: String,
    #[serde(default)]
    pub agent_pid: Option<u32>,
    #[serde(default)]
    pub agent_running: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LabNetwork {
    pub name: String,
    pub subnet: String,
    pub vni: u32,
    #[serde(default)]
    pub gateway: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LabContainer {
    pub name: String,
    pub host: String,
    pub namespace: String,
    pub network: String,
    #[serde(default = "eth0")]
    pub interface: String,
    pub address: String,
    #[serde(default)]
    pub mac: String,
}

fn eth0() -> String {
    "eth0".to_string()
}

/// `lab up` arguments of a lab with one host, no container and one network.
pub const ONE_EMPTY_HOST: [&str; 6] = [
    "--hosts",
    "1",
    "--containers-per-host",
    "0",
    "--networks",
    "1",
];

/// "10.10.1.2/24" -> "10.10.1.2"; "10.10.1.2" stays.
pub fn bare_ip(address: &str) -> &str {
    address.split('/').next().unwrap_or(address)
}

impl LabStatus {
    pub fn host(&self, name: &str) -> Result<&LabHost> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .with_context(|| format!("lab status names no host {name:?}"))
    }

    pub fn network(&self, name: &str) -> Result<&LabNetwork> {
        self.networks
            .iter()
            .find(|n| n.name == name)
            .with_context(|| format!("lab status names no network {name:?}"))
    }

    pub fn container(&self, name: &str) -> Result<&LabContainer> {
        self.containers
            .iter()
            .find(|c| c.name == name)
            .with_context(|| format!("lab status names no container {name:?}"))
    }

    /// Two containers of the same network on different hosts, the first on
    /// the first host when possible.
    pub fn cross_host_pair(&self) -> Result<(&LabContainer, &LabContainer)> {
        let first_host = self.hosts.first().map(|h| h.name.as_str());
        let mut candidates: Vec<&LabContainer> = self.containers.iter().collect();
        candidates.sort_by_key(|c| Some(c.host.as_str()) != first_host);
        for a in &candidates {
            if let Some(b) = self
                .containers
                .iter()
                .find(|b| b.network == a.network && b.host != a.host)
            {
                return Ok((a, b));
            }
        }
        bail!("the lab has no two containers of one network on different hosts")
    }

    /// What the JSON says, in sentences.
    pub fn explain(&self) {
        say(&format!(
            "lab {}: underlay switch namespace {}, store {}",
            self.prefix, self.switch_namespace, self.store
        ));
        for h in &self.hosts {
            let agent = match (h.agent_running, h.agent_pid) {
                (true, Some(pid)) => format!("agent pid {pid}"),
                (true, None) => "agent running".to_string(),
                (false, _) => "agent NOT running".to_string(),
            };
            say(&format!(
                "  host {:<4} namespace {:<14} {} {:<12} {agent}",
                h.name, h.namespace, h.interface, h.address
            ));
        }
        for n in &self.networks {
            let gateway = n.gateway.as_deref().unwrap_or("-");
            say(&format!(
                "  network {:<5} subnet {:<15} vni {:<6} gateway {gateway}",
                n.name, n.subnet, n.vni
            ));
        }
        for c in &self.containers {
            say(&format!(
                "  container {:<6} on {:<3} {:<5} {} {:<12} mac {}",
                c.name, c.host, c.network, c.interface, c.address, c.mac
            ));
        }
    }

    /// The demo service and the outside client of a lab made with `--replicas`.
    pub fn mesh(&self) -> Result<(&LabDemo, &LabClient)> {
        let demo = self
            .demo
            .as_ref()
            .context("lab status shows no demo service (lab up --replicas N)")?;
        let client = self
            .client
            .as_ref()
            .context("lab status shows no outside client")?;
        let stopped: Vec<&str> = demo
            .replicas
            .iter()
            .filter(|r| !r.running)
            .map(|r| r.name.as_str())
            .collect();
        if !stopped.is_empty() {
            bail!("replica(s) not running: {}", stopped.join(", "));
        }
        Ok((demo, client))
    }

    pub fn check_agents(&self) -> Result<()> {
        let dead: Vec<&str> = self
            .hosts
            .iter()
            .filter(|h| !h.agent_running)
            .map(|h| h.name.as_str())
            .collect();
        if !dead.is_empty() {
            bail!("the agent is not running on {}", dead.join(", "));
        }
        Ok(())
    }
}

/// The `vxmesh` binary and a lab prefix.
pub struct Vxmesh {
    pub bin: PathBuf,
    pub prefix: String,
    /// Added to the environment of every `vxmesh lab` command (and so of the agents that
    /// `lab up` starts).
    env: Vec<(String, String)>,
}

impl Vxmesh {
    /// `cargo build --release -p vxmesh`, then target/release/vxmesh;
    /// `VXMESH_BIN=PATH` uses that binary instead and builds nothing.
    pub fn build(prefix: &str) -> Result<Self> {
        if let Some(bin) = std::env::var_os("VXMESH_BIN") {
            let bin = PathBuf::from(bin);
            heading(&format!(
                "using the vxmesh CLI at {} (VXMESH_BIN)",
                bin.display()
            ));
            return Ok(Self {
                bin,
                prefix: prefix.to_string(),
                env: vec![],
            });
        }
        heading("building the vxmesh CLI (cargo build --release -p vxmesh)");
        util::run(util::cargo().args(["build", "--release", "-p", "vxmesh"]))?;
        let bin = util::target_dir().join("release").join("vxmesh");
        if !bin.is_file() {
            bail!("{} was not built", bin.display());
        }
        Ok(Self {
            bin,
            prefix: prefix.to_string(),
            env: vec![],
        })
    }

    /// Another lab (`prefix`) run by the same binary, whose `lab` commands get `env` on top
    /// of this process's environment (e.g. an agent option such as `VXMESH_WG_DATAPATH`).
    pub fn with_env(&self, prefix: &str, env: &[(&str, &str)]) -> Vxmesh {
        Vxmesh {
            bin: self.bin.clone(),
            prefix: prefix.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// `vxmesh lab SUB ARGS... --prefix P`
    pub fn lab<I, S>(&self, sub: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = Command::new(&self.bin);
        c.args(["lab", sub, "--prefix", &self.prefix])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// `vxmesh lab exec --prefix P WHO -- CMD...`
    pub fn exec(&self, who: &str, cmd: &[&str]) -> Command {
        let mut c = self.lab("exec", [who, "--"]);
        c.args(cmd);
        c
    }

    pub fn down(&self) -> Result<()> {
        util::run(&mut self.lab("down", std::iter::empty::<&str>()))
    }

    pub fn status(&self) -> Result<LabStatus> {
        let json = util::output(&mut self.lab("status", ["--json"]))?;
        let status: LabStatus = serde_json::from_str(&json)
            .with_context(|| format!("cannot parse `vxmesh lab status --json`: {json}"))?;
        if status.prefix != self.prefix {
            bail!(
                "`vxmesh lab status --prefix {}` answered for prefix {:?}",
                self.prefix,
                status.prefix
            );
        }
        Ok(status)
    }

    /// Clean up an earlier run, then `lab up`; the guard takes it down again.
    pub fn up(&self, args: &[&str]) -> Result<LabGuard<'_>> {
        heading(&format!(
            "removing what an earlier run may have left (vxmesh lab down --prefix {})",
            self.prefix
        ));
        self.down()?;
        let guard = LabGuard {
            vx: self,
            done: false,
        };
        heading(&format!("starting the lab (prefix {})", self.prefix));
        util::run(&mut self.lab("up", args))?;
        Ok(guard)
    }

    /// `up(args)`, then `f`; the lab is taken down afterwards, whether `f` succeeded or not.
    pub fn with_lab<T>(&self, args: &[&str], f: impl FnOnce() -> Result<T>) -> Result<T> {
        let guard = self.up(args)?;
        match f() {
            Ok(v) => {
                guard.finish()?;
                Ok(v)
            }
            Err(e) => {
                drop(guard);
                Err(e)
            }
        }
    }

    /// Ping `to` from container `from` until it answers (the agents
    /// reconcile asynchronously), at most `limit`.
    pub fn wait_reachable(&self, from: &str, to: &str, limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let out = util::capture(&mut self.exec(from, &["ping", "-c", "1", "-W", "1", to]))?;
            if out.status.success() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!(
                    "{from} cannot reach {to} after {:?}: {}{}",
                    limit,
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// Runs `vxmesh lab down` when dropped unless `finish` already did.
pub struct LabGuard<'a> {
    vx: &'a Vxmesh,
    done: bool,
}

impl LabGuard<'_> {
    pub fn finish(mut self) -> Result<()> {
        self.done = true;
        heading(&format!("taking the lab down (prefix {})", self.vx.prefix));
        self.vx.down()
    }
}

impl Drop for LabGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        heading(&format!(
            "taking the lab down after a failure (prefix {})",
            self.vx.prefix
        ));
        // Not through util::run: it refuses to start anything after Ctrl-C.
        let mut c = self.vx.lab("down", std::iter::empty::<&str>());
        say(&format!("$ {}", util::display(&c)));
        match c.status() {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!("warning: `{}` failed ({s})", util::display(&c)),
            Err(e) => eprintln!("warning: cannot run `{}`: {e}", util::display(&c)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the CLI contract, plus a second host and containers.
    const STATUS: &str = r#"{"prefix":"vxlab","store":"/run/vxmesh/lab/vxlab/store.db",
      "switch_namespace":"vxlab-sw",
      "hosts":[{"name":"h1","namespace":"vxlab-h1","interface":"eth0","address":"10.99.0.1","agent_pid":123,"agent_running":true},
               {"name":"h2","namespace":"vxlab-h2","interface":"eth0","address":"10.99.0.2","agent_pid":124,"agent_running":true}],
      "networks":[{"name":"net1","subnet":"10.10.1.0/24","vni":4096,"gateway":"10.10.1.1"},
                  {"name":"net2","subnet":"10.10.2.0/24","vni":4097,"gateway":"10.10.2.1"}],
      "containers":[
        {"name":"h1-c1","host":"h1","namespace":"vxlab-h1-c1","network":"net1","interface":"eth0","address":"10.10.1.2","mac":"0a:58:0a:0a:01:02"},
        {"name":"h1-c2","host":"h1","namespace":"vxlab-h1-c2","network":"net2","interface":"eth0","address":"10.10.2.2","mac":"0a:58:0a:0a:02:02"},
        {"name":"h2-c1","host":"h2","namespace":"vxlab-h2-c1","network":"net1","interface":"eth0","address":"10.10.1.3","mac":"0a:58:0a:0a:01:03"},
        {"name":"h2-c2","host":"h2","namespace":"vxlab-h2-c2","network":"net2","interface":"eth0","address":"10.10.2.3/24","mac":"0a:58:0a:0a:02:03"}]}"#;

    #[test]
    fn parses_the_contract_shape() {
        let s: LabStatus = serde_json::from_str(STATUS).unwrap();
        assert_eq!(s.prefix, "vxlab");
        assert_eq!(s.hosts[0].agent_pid, Some(123));
        assert_eq!(s.network("net2").unwrap().vni, 4097);
        assert!(s.check_agents().is_ok());
        let (a, b) = s.cross_host_pair().unwrap();
        assert_eq!((a.name.as_str(), b.name.as_str()), ("h1-c1", "h2-c1"));
        assert_eq!(bare_ip(&s.containers[3].address), "10.10.2.3");
    }

    #[test]
    fn tolerates_missing_optional_fields() {
        let s: LabStatus = serde_json::from_str(
            r#"{"prefix":"p","hosts":[{"name":"h1","namespace":"p-h1","address":"10.99.0.1"}]}"#,
        )
        .unwrap();
        assert_eq!(s.hosts[0].interface, "eth0");
        assert!(s.check_agents().is_err());
        assert!(s.cross_host_pair().is_err());
    }
}
