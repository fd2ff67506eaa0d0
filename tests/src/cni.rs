//! Driving the vxmesh CNI plugin (and the reference plugins) the way a container runtime does:
//! environment variables, the network configuration on stdin, a real network namespace, and the
//! plugin's host side inside a lab host's namespace (`nsenter --net=`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{run, Lab};

/// Where Debian's containernetworking-plugins live.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// The `vxmesh-cni` binary of this workspace (built on demand when missing).
pub fn cni_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("vxmesh-cni");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "vxmesh-cni", "--bin", "vxmesh-cni"])
            .status()
            .expect("run cargo build")
            .success();
        assert!(ok && bin.exists(), "cannot build {}", bin.display());
    }
    bin
}

/// A CNI_PATH holding the plugin as `vxmesh` (its netconf type) and the reference plugins.
pub struct PluginDir {
    pub dir: tempfile::TempDir,
}

impl PluginDir {
    pub fn new() -> PluginDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::symlink(cni_bin(), dir.path().join("vxmesh")).expect("symlink");
        PluginDir { dir }
    }

    /// `DIR:/usr/lib/cni`
    pub fn cni_path(&self) -> String {
        format!("{}:{REFERENCE_PLUGINS}", self.dir.path().display())
    }
}

impl Default for PluginDir {
    fn default() -> Self {
        Self::new()
    }
}

/// What one plugin call did.
#[derive(Debug, Clone)]
pub struct CniOut {
    pub exit: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CniOut {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("plugin stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// The error code of an error JSON (panics when the call succeeded).
    pub fn code(&self) -> u64 {
        assert_ne!(self.exit, 0, "expected an error, got {}", self.stdout);
        let v = self.json();
        assert!(v["msg"].is_string(), "error JSON has no msg: {v}");
        v["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("error JSON has no code: {v}"))
    }

    /// Asserts an error JSON with `code` whose `msg` contains `text`.
    pub fn fails_with(&self, code: u64, text: &str) {
        assert_eq!(self.code(), code, "{}", self.stdout);
        let msg = self.json()["msg"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(text), "'{text}' not in: {msg}");
    }

    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.exit, 0,
            "plugin failed: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// The environment of one call (CNI_COMMAND aside).
#[derive(Debug, Clone, Default)]
pub struct CniEnv {
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    pub args: Option<String>,
    pub path: Option<String>,
    /// Extra variables, or overrides (set a value to "" to pass an empty one).
    pub extra: Vec<(String, String)>,
}

impl CniEnv {
    pub fn new(container_id: &str, netns_name: &str, ifname: &str) -> CniEnv {
        CniEnv {
            container_id: Some(container_id.into()),
            netns: Some(format!("/run/netns/{netns_name}")),
            ifname: Some(ifname.into()),
            args: None,
            path: None,
            extra: vec![],
        }
    }

    pub fn with_path(mut self, path: &str) -> Self {
        self.path = Some(path.into());
        self
    }
}

/// Runs `plugin` with CNI_COMMAND=`command`, `env` and `stdin`, in the network namespace
/// `host_ns` (a lab host) as a runtime on that host would.
pub fn exec_raw(
    host_ns: &str,
    plugin: &Path,
    command: Option<&str>,
    env: &CniEnv,
    stdin: &[u8],
) -> CniOut {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{host_ns}"))
        .arg("--")
        .arg(plugin)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cmd) = command {
        c.env("CNI_COMMAND", cmd);
    }
    for (k, v) in [
        ("CNI_CONTAINERID", &env.container_id),
        ("CNI_NETNS", &env.netns),
        ("CNI_IFNAME", &env.ifname),
        ("CNI_ARGS", &env.args),
        ("CNI_PATH", &env.path),
    ] {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    for (k, v) in &env.extra {
        c.env(k, v);
    }
    let start = Instant::now();
    let mut child = c.spawn().expect("run the plugin");
    {
        let mut input = child.stdin.take().unwrap();
        let _ = input.write_all(stdin);
    }
    let out = child.wait_with_output().expect("wait for the plugin");
    CniOut {
        exit: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// Runs the vxmesh plugin.
pub fn exec(host_ns: &str, command: &str, env: &CniEnv, conf: &Value) -> CniOut {
    exec_raw(
        host_ns,
        &cni_bin(),
        Some(command),
        env,
        conf.to_string().as_bytes(),
    )
}

/// A vxmesh netconf for a lab network on a lab host.
pub fn netconf(lab: &Lab, network: &str, node: &str) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": format!("vx-{network}"),
        "type": "vxmesh",
        "network": network,
        "node": node,
        "store": lab.state.store,
    })
}

/// `ip -n NS ARGS...` stdout (empty when it fails, e.g. the namespace is gone).
pub fn ip(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    String::from_utf8_lossy(&run("ip", &all).stdout).into_owned()
}

/// A runtime's view of a conflist: runs ADD through every plugin in order, passing each one's
/// result to the next as prevResult, and DEL in reverse order, as libcni does.
pub struct Chain {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Value>,
    pub cni_path: String,
}

impl Chain {
    pub fn from_conflist(list: &Value, cni_path: &str) -> Chain {
        Chain {
            name: list["name"].as_str().unwrap().to_string(),
            cni_version: list["cniVersion"].as_str().unwrap().to_string(),
            plugins: list["plugins"].as_array().unwrap().clone(),
            cni_path: cni_path.to_string(),
        }
    }

    /// The netconf a runtime gives plugin `i`: cniVersion and name injected, runtimeConfig
    /// filtered by the plugin's capabilities, prevResult when there is one.
    fn conf_for(&self, i: usize, runtime: &Value, prev: Option<&Value>) -> Value {
        let mut conf = self.plugins[i].clone();
        conf["cniVersion"] = self.cni_version.clone().into();
        conf["name"] = self.name.clone().into();
        let mut rc = serde_json::Map::new();
        if let Some(caps) = conf.get("capabilities").and_then(Value::as_object) {
            for (cap, on) in caps {
                if on.as_bool() == Some(true) {
                    if let Some(v) = runtime.get(cap) {
                        rc.insert(cap.clone(), v.clone());
                    }
                }
            }
        }
        if !rc.is_empty() {
            conf["runtimeConfig"] = Value::Object(rc);
        }
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        conf
    }

    fn env(&self, env: &CniEnv) -> CniEnv {
        let mut e = env.clone();
        e.path = Some(self.cni_path.clone());
        e
    }

    fn plugin_path(&self, i: usize) -> PathBuf {
        let ty = self.plugins[i]["type"].as_str().unwrap();
        self.cni_path
            .split(':')
            .map(|d| Path::new(d).join(ty))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("plugin {ty} not in {}", self.cni_path))
    }

    /// ADD through the chain; returns the final result, or the first failure.
    pub fn add(&self, host_ns: &str, env: &CniEnv, runtime: &Value) -> Result<Value, CniOut> {
        let mut prev: Option<Value> = None;
        for i in 0..self.plugins.len() {
            let conf = self.conf_for(i, runtime, prev.as_ref());
            let out = exec_raw(
                host_ns,
                &self.plugin_path(i),
                Some("ADD"),
                &self.env(env),
                conf.to_string().as_bytes(),
            );
            if out.exit != 0 {
                return Err(out);
            }
            prev = Some(out.json());
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL through the chain in reverse, with the cached result as prevResult.
    pub fn del(
        &self,
        host_ns: &str,
        env: &CniEnv,
        runtime: &Value,
        cached: Option<&Value>,
    ) -> Vec<CniOut> {
        (0..self.plugins.len())
            .rev()
            .map(|i| {
                let conf = self.conf_for(i, runtime, cached);
                exec_raw(
                    host_ns,
                    &self.plugin_path(i),
                    Some("DEL"),
                    &self.env(env),
                    conf.to_string().as_bytes(),
                )
            })
            .collect()
    }

    /// CHECK through the chain with the cached result as prevResult.
    pub fn check(
        &self,
        host_ns: &str,
        env: &CniEnv,
        runtime: &Value,
        cached: &Value,
    ) -> Vec<CniOut> {
        (0..self.plugins.len())
            .map(|i| {
                let conf = self.conf_for(i, runtime, Some(cached));
                exec_raw(
                    host_ns,
                    &self.plugin_path(i),
                    Some("CHECK"),
                    &self.env(env),
                    conf.to_string().as_bytes(),
                )
            })
            .collect()
    }
}

/// The store's endpoints of a network as `vxmesh endpoint ls --json` shows them.
pub fn endpoints(lab: &Lab, network: &str) -> Vec<Value> {
    let out = lab.vxmesh(&["--json", "endpoint", "ls", "--network", network]);
    assert!(
        out.status.success(),
        "endpoint ls: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("endpoint ls --json");
    match v {
        Value::Array(a) => a,
        other => other
            .get("endpoints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    }
}
