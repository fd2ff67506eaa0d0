//! Shared helpers for the integration tests: the `vxmesh` binary, lab fixtures that tear
//! themselves down, outside witnesses (`ip`, `bridge`, tcpdump) and a small pcap reader.
//!
//! Every test runs as root and touches only namespaces it (or the lab) created, named with a
//! unique prefix, and removed on drop even when the test fails.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

pub mod capture;
pub mod cni;
pub mod crypto;
pub mod etcd;
pub mod fast;
pub mod http_loop;
pub mod leftovers;
pub mod mesh;
pub mod pcap;
pub mod podman;
pub mod race;
pub mod services;
pub mod store_cli;
pub mod witness;

/// The `vxmesh` binary of this workspace (built on demand when missing).
pub fn vxmesh_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/vxmesh
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("vxmesh");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "vxmesh", "--bin", "vxmesh"])
            .status()
            .expect("run cargo build")
            .success();
        assert!(ok && bin.exists(), "cannot build {}", bin.display());
    }
    bin
}

/// The agents' datapath the lab tests run with: `VXMESH_TEST_DATAPATH` (`bridge` or `ebpf`;
/// `cargo xtask test` runs the overlay tests once more with `ebpf`), or None for the agent's
/// default. Panics on another value, so a typo never silently tests the default.
pub fn test_datapath() -> Option<String> {
    let d = std::env::var("VXMESH_TEST_DATAPATH").ok()?;
    assert!(
        d == "bridge" || d == "ebpf",
        "VXMESH_TEST_DATAPATH={d:?}: must be bridge or ebpf"
    );
    Some(d)
}

/// The `--datapath` arguments of [`test_datapath`] for an agent a test starts itself.
pub fn datapath_args() -> Vec<String> {
    test_datapath()
        .map(|d| vec!["--datapath".to_string(), d])
        .unwrap_or_default()
}

/// A name no other test (or test process) uses: `<tag><pid><n>`, short enough for namespace
/// and interface names.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}{}{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command and returns its output (never panics on a non-zero exit).
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a command and returns its stdout; panics with its stderr when it fails.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` until it returns true or `timeout` passes; returns whether it did.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Host {
    pub name: String,
    pub namespace: String,
    pub interface: String,
    pub address: Ipv4Addr,
    pub agent_pid: Option<u32>,
    pub agent_running: bool,
    /// The datapath its agent runs (`bridge`, `ebpf`).
    #[serde(default)]
    pub datapath: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Net {
    pub name: String,
    pub subnet: String,
    pub vni: u32,
    pub gateway: Ipv4Addr,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Container {
    pub name: String,
    pub host: String,
    pub namespace: String,
    pub network: String,
    pub interface: String,
    pub address: Ipv4Addr,
    pub mac: String,
}

/// What `vxmesh lab status --json` reports.
#[derive(Debug, Clone, Deserialize)]
pub struct LabState {
    pub prefix: String,
    pub store: PathBuf,
    pub switch_namespace: String,
    pub hosts: Vec<Host>,
    pub networks: Vec<Net>,
    pub containers: Vec<Container>,
    /// The lab's cgroup (the agents' `--cgroup`), when the lab made one.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    /// The agents' BPF pin root.
    #[serde(default)]
    pub bpf_pin_root: Option<PathBuf>,
    /// The lab's etcd cluster, when it runs on etcd.
    #[serde(default)]
    pub etcd: Option<vxmesh::lab::etcd::LabEtcd>,
    /// The outside client on the underlay switch (`lab exec client`).
    #[serde(default)]
    pub client: Option<vxmesh::lab::LabClient>,
}

/// The store the lab tests run on: `VXMESH_TEST_STORE=etcd` runs every lab on a 3-member
/// etcd cluster of its own (`lab up --store etcd`), unset or `sqlite` on SQLite. The same test
/// bodies run on both (`cargo xtask test` runs the overlay, reconcile and CNI cross-host tests
/// a second time with it set).
pub fn test_store() -> &'static str {
    match std::env::var("VXMESH_TEST_STORE").as_deref() {
        Ok("etcd") => "etcd",
        Ok("") | Ok("sqlite") | Err(_) => "sqlite",
        Ok(other) => panic!("VXMESH_TEST_STORE={other}: expected etcd or sqlite"),
    }
}

/// A lab built with `vxmesh lab up`, removed with `vxmesh lab down` on drop.
pub struct Lab {
    pub state: LabState,
}

impl Lab {
    pub fn up(hosts: u32, containers_per_host: u32, networks: u32) -> Lab {
        Lab::up_with(&[
            "--hosts",
            &hosts.to_string(),
            "--containers-per-host",
            &containers_per_host.to_string(),
            "--networks",
            &networks.to_string(),
        ])
    }

    /// `vxmesh lab up` with these options and a unique prefix, on the store [`test_store`]
    /// names, with the agents' datapath of [`test_datapath`] unless the options name one.
    pub fn up_with(options: &[&str]) -> Lab {
        Lab::up_on(test_store(), options)
    }

    /// `vxmesh --store STORE lab up` (`sqlite` or `etcd`) with these options and a unique
    /// prefix.
    pub fn up_on(store: &str, options: &[&str]) -> Lab {
        let prefix = unique("vt");
        let bin = vxmesh_bin();
        let datapath = match test_datapath() {
            Some(d) if !options.contains(&"--datapath") => vec!["--datapath".to_string(), d],
            _ => vec![],
        };
        let out = Command::new(&bin)
            .args(["--json", "--store", store, "lab", "up", "--prefix", &prefix])
            .args(options)
            .args(&datapath)
            .stdin(Stdio::null())
            .output()
            .expect("run vxmesh lab up");
        if !out.status.success() {
            let _ = Command::new(&bin)
                .args(["lab", "down", "--prefix", &prefix])
                .output();
            panic!(
                "lab up failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let lab = Lab {
            state: LabState {
                prefix: prefix.clone(),
                store: PathBuf::new(),
                switch_namespace: String::new(),
                hosts: vec![],
                networks: vec![],
                containers: vec![],
                cgroup: None,
                bpf_pin_root: None,
                etcd: None,
                client: None,
            },
        };
        // From here on, drop tears the lab down.
        let state = lab.status();
        let mut lab = lab;
        lab.state = state;
        lab
    }

    pub fn prefix(&self) -> &str {
        &self.state.prefix
    }

    pub fn status(&self) -> LabState {
        let out = run_ok(
            vxmesh_bin().to_str().unwrap(),
            &["--json", "lab", "status", "--prefix", &self.state.prefix],
        );
        serde_json::from_str(&out).expect("lab status --json parses")
    }

    pub fn host(&self, name: &str) -> &Host {
        self.state
            .hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    pub fn container(&self, name: &str) -> &Container {
        self.state
            .containers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no container {name}"))
    }

    pub fn network(&self, name: &str) -> &Net {
        self.state
            .networks
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no network {name}"))
    }

    /// The log of a host's agent (for failure messages).
    pub fn agent_log(&self, host: &str) -> String {
        let dir = vxmesh::lab::state_dir(&self.state.prefix);
        std::fs::read_to_string(dir.join(format!("agent-{host}.log"))).unwrap_or_default()
    }

    /// A client of the lab's store (SQLite file or etcd cluster).
    pub fn store(&self) -> std::sync::Arc<dyn overlay_core::Store> {
        let spec = self.state.store.to_str().expect("a UTF-8 store");
        overlay_core::store::open(&overlay_core::store::StoreSpec::parse(spec).unwrap())
            .expect("open the lab's store")
    }

    /// Runs `vxmesh --store <lab store> ARGS`.
    pub fn vxmesh(&self, args: &[&str]) -> Output {
        let store = self.state.store.to_str().unwrap();
        let mut all = vec!["--store", store];
        all.extend_from_slice(args);
        run(vxmesh_bin().to_str().unwrap(), &all)
    }

    /// Runs a command inside a lab member's namespace (`ip netns exec`).
    pub fn exec(&self, member: &str, args: &[&str]) -> Output {
        let ns = self.namespace(member);
        let mut all = vec!["netns", "exec", ns.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    pub fn namespace(&self, member: &str) -> String {
        format!("{}-{member}", self.state.prefix)
    }

    /// One ping from a member to an address; true if answered.
    pub fn ping(&self, member: &str, ip: Ipv4Addr) -> bool {
        self.exec(member, &["ping", "-c", "1", "-W", "1", &ip.to_string()])
            .status
            .success()
    }

    /// Pings until answered or `timeout` passes.
    pub fn ping_within(&self, member: &str, ip: Ipv4Addr, timeout: Duration) -> bool {
        wait_until(timeout, || self.ping(member, ip))
    }
}

impl Lab {
    /// Sends `signal` to host `host`'s agent, through a pidfd and only once the process is
    /// shown to be that agent (an `agent` command line for the host's namespace): a dead
    /// agent's PID may name another process by now. Panics when the agent is not running.
    pub fn signal_agent(&self, host: &str, signal: i32) {
        use overlay_core::process::{Pidfd, ProcessIdentity};
        let h = self.host(host);
        let pid = h.agent_pid.expect("the lab recorded the agent's pid");
        let identity = ProcessIdentity::of(pid).expect("the agent is running");
        let ns = h.namespace.clone();
        let pidfd = Pidfd::open_if(identity, |args| {
            args.iter().any(|a| a == "agent")
                && args.windows(2).any(|w| w[0] == "--netns" && w[1] == ns)
        })
        .expect("reading the agent's process")
        .unwrap_or_else(|| panic!("pid {pid} is not the agent of {host}"));
        pidfd.signal(signal).expect("signal the agent");
    }

    /// Waits until host `host`'s agent has exited (after a signal); true if it did.
    pub fn wait_agent_exit(&self, host: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.status()
                .hosts
                .iter()
                .any(|h| h.name == host && !h.agent_running)
        })
    }

    /// Starts host `host`'s agent again (`vxmesh lab start-agent`) and refreshes the state, so
    /// [`Lab::signal_agent`] reaches the new process.
    pub fn start_agent(&mut self, host: &str) {
        run_ok(
            vxmesh_bin().to_str().unwrap(),
            &["lab", "start-agent", "--prefix", &self.state.prefix, host],
        );
        self.state = self.status();
    }

    /// Stops host `host`'s agent (SIGTERM, waiting for it to exit) and starts it again with
    /// `--datapath datapath` (`lab start-agent --datapath`).
    pub fn restart_agent_with(&mut self, host: &str, datapath: &str) {
        self.signal_agent(host, libc::SIGTERM);
        assert!(
            self.wait_agent_exit(host, Duration::from_secs(20)),
            "the agent of {host} did not stop"
        );
        run_ok(
            vxmesh_bin().to_str().unwrap(),
            &[
                "lab",
                "start-agent",
                "--prefix",
                &self.state.prefix,
                "--datapath",
                datapath,
                host,
            ],
        );
        self.state = self.status();
    }

    /// A machine on the lab's underlay switch that is not a vxmesh host: a namespace with
    /// `eth0` at `x.y.z.<last_octet>/24` of the underlay subnet (removed on drop).
    pub fn outside_machine(&self, last_octet: u8) -> (TestNetns, Ipv4Addr) {
        let ns = TestNetns::new(&unique("out"));
        let sw = &self.state.switch_namespace;
        let port = unique("op");
        run_ok(
            "ip",
            &[
                "-n", sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns.0,
            ],
        );
        run_ok(
            "ip",
            &["-n", sw, "link", "set", &port, "master", "sw0", "up"],
        );
        let o = self.state.hosts[0].address.octets();
        let addr = Ipv4Addr::new(o[0], o[1], o[2], last_octet);
        run_ok(
            "ip",
            &[
                "-n",
                &ns.0,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ],
        );
        run_ok("ip", &["-n", &ns.0, "link", "set", "eth0", "up"]);
        (ns, addr)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = run(
            vxmesh_bin().to_str().unwrap(),
            &["lab", "down", "--prefix", &self.state.prefix],
        );
        if !out.status.success() {
            eprintln!(
                "lab down {} failed: {}",
                self.state.prefix,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A network namespace made by `ip netns add` for a test, deleted on drop.
pub struct TestNetns(pub String);

impl TestNetns {
    pub fn new(name: &str) -> TestNetns {
        run_ok("ip", &["netns", "add", name]);
        TestNetns(name.to_string())
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        kill_processes_in(&self.0);
        let _ = run("ip", &["netns", "del", &self.0]);
    }
}

/// SIGKILLs every process inside network namespace `name` (servers a test started there), each
/// through a pidfd and only once its own /proc entry shows it is in that namespace.
pub fn kill_processes_in(name: &str) {
    use overlay_core::process::Pidfd;
    use std::os::unix::fs::MetadataExt;
    let Ok(target) = std::fs::metadata(format!("/run/netns/{name}")) else {
        return;
    };
    let out = run("ip", &["netns", "pids", name]);
    for pid in String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
    {
        let Ok(pidfd) = Pidfd::open(pid) else {
            continue;
        };
        let inside = std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .is_ok_and(|m| m.ino() == target.ino() && m.dev() == target.dev());
        if inside {
            let _ = pidfd.signal(libc::SIGKILL);
        }
    }
}
