//! The lab as a library for an embedder's own test lab: `vxmesh::lab::up_with` with the
//! in-process launcher (the agents are `Agent`s inside this test process) on a chosen underlay
//! subnet, beside a `vxmesh lab up --underlay` lab on another subnet; dropping the embedded lab
//! (also while a panic unwinds) stops its agents and leaves nothing behind; a bad underlay is
//! refused naming the field, with nothing made.

use std::net::Ipv4Addr;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use vxmesh::lab::{self, AgentLauncher, AgentSite, InProcessLauncher, LabAgent, LabError, LabSpec};
use vxmesh_tests::leftovers::leftovers;
use vxmesh_tests::{run, test_datapath, test_store, unique, vxmesh_bin, wait_until, Lab};

/// One agent per node name in a process (`Agent::spawn` refuses a second `h1` while one runs
/// here, whatever its store): the tests that embed agents take turns.
static EMBEDDING: Mutex<()> = Mutex::new(());

fn embedding() -> std::sync::MutexGuard<'static, ()> {
    EMBEDDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// A lab spec with a unique prefix on `underlay`, on the store and datapath the lab tests run
/// with.
fn spec(hosts: u32, containers_per_host: u32, underlay: &str) -> LabSpec {
    let mut spec = LabSpec::new(unique("ve"));
    spec.hosts = hosts;
    spec.containers_per_host = containers_per_host;
    spec.networks = 1;
    spec.underlay = underlay.parse().unwrap();
    spec.agent_bin = vxmesh_bin();
    spec.etcd = test_store() == "etcd";
    if let Some(d) = test_datapath() {
        spec.datapath = d.parse().unwrap();
    }
    spec
}

fn say(line: &str) {
    eprintln!("  {line}");
}

fn ip(args: &[&str]) -> String {
    let out = run("ip", args);
    assert!(out.status.success(), "ip {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pings(namespace: &str, to: Ipv4Addr) -> bool {
    let to = to.to_string();
    run(
        "ip",
        &[
            "netns", "exec", namespace, "ping", "-c", "1", "-W", "1", &to,
        ],
    )
    .status
    .success()
}

/// Threads of this process named after an agent of `nodes` (`agent-h1`: each agent's main
/// thread).
fn agent_threads(nodes: &[&str]) -> Vec<String> {
    let names: Vec<String> = nodes.iter().map(|n| format!("agent-{n}")).collect();
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .filter(|c| names.contains(c))
        .collect()
}

/// `vxmesh lab up --prefix PREFIX OPTIONS`.
fn cli_lab_up(prefix: &str, options: &[&str]) -> std::process::Output {
    let mut args = vec!["lab", "up", "--prefix", prefix];
    args.extend_from_slice(options);
    run(vxmesh_bin().to_str().unwrap(), &args)
}

/// `vxmesh lab status --json` of `prefix`, read by another process.
fn cli_status(prefix: &str) -> Value {
    let out = run(
        vxmesh_bin().to_str().unwrap(),
        &["--json", "lab", "status", "--prefix", prefix],
    );
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn embedded_lab_on_a_chosen_underlay_beside_a_cli_lab_on_another() {
    let _turn = embedding();
    let spec = spec(2, 1, "10.77.0.0/24");
    let prefix = spec.prefix.clone();
    let launcher = InProcessLauncher::new().with_config(|c| c.resync = Duration::from_secs(1));
    let lab = lab::up_with(&spec, &launcher, &say).expect("up_with");
    let state = lab.state().clone();
    assert_eq!(state.underlay_subnet.to_string(), "10.77.0.0/24");

    // The agents run in this process: their handles, their threads, no agent process.
    for h in &state.hosts {
        let agent = lab.agent(&h.name).expect("an agent per host");
        assert!(agent.is_running() && agent.process().is_none());
        let handle = agent.handle().expect("an in-process agent has a handle");
        assert!(
            handle.status().applied_revision > 0,
            "{:?}",
            handle.status()
        );
        assert!(h.agent_in_process && h.agent_pid.is_none(), "{h:?}");
    }
    assert_eq!(agent_threads(&["h1", "h2"]).len(), 2);
    assert!(
        !leftovers(&prefix).iter().any(|l| l.starts_with("process")),
        "{:?}",
        leftovers(&prefix)
    );
    let catalog = lab.catalog().unwrap();
    let revision = catalog.store().revision().unwrap();
    vxmesh::wait::wait_applied(&catalog, &["h1", "h2"], revision, Duration::from_secs(30))
        .expect("both in-process agents applied the lab");

    // Hosts on the chosen underlay, the VXLAN devices sending from it, h1's FDB pointing
    // at h2's underlay address.
    for (i, h) in state.hosts.iter().enumerate() {
        let want = Ipv4Addr::new(10, 77, 0, i as u8 + 1);
        assert_eq!(h.address, want);
        let addr = ip(&["-n", &h.namespace, "-o", "-4", "addr", "show", "eth0"]);
        assert!(addr.contains(&format!("inet {want}/24 ")), "{addr}");
        let vxlan = ip(&[
            "-n",
            &h.namespace,
            "-d",
            "-o",
            "link",
            "show",
            "type",
            "vxlan",
        ]);
        assert!(vxlan.contains(&format!("local {want} ")), "{vxlan}");
    }
    let client = state.client.as_ref().expect("the outside client");
    assert_eq!(client.address, Ipv4Addr::new(10, 77, 0, 250));
    // Containers on different hosts reach each other across the underlay.
    let (c1, c2) = (
        state.container("h1-c1").unwrap(),
        state.container("h2-c1").unwrap(),
    );
    assert!(
        wait_until(Duration::from_secs(30), || pings(&c1.namespace, c2.address)
            && pings(&c2.namespace, c1.address)),
        "h1-c1 and h2-c1 do not reach each other"
    );
    let fdb = String::from_utf8_lossy(
        &run("bridge", &["-n", &state.hosts[0].namespace, "fdb", "show"]).stdout,
    )
    .into_owned();
    assert!(fdb.contains("dst 10.77.0.2 "), "{fdb}");

    // Another lab at the same time, from the CLI with agent processes, on another underlay.
    {
        let other = Lab::up_with(&[
            "--hosts",
            "2",
            "--containers-per-host",
            "0",
            "--networks",
            "1",
            "--underlay",
            "10.88.0.0/24",
        ]);
        for (i, h) in other.state.hosts.iter().enumerate() {
            let want = Ipv4Addr::new(10, 88, 0, i as u8 + 1);
            assert_eq!(h.address, want);
            assert!(h.agent_running && h.agent_pid.is_some(), "{h:?}");
            let addr = ip(&["-n", &h.namespace, "-o", "-4", "addr", "show", "eth0"]);
            assert!(addr.contains(&format!("inet {want}/24 ")), "{addr}");
        }
        let client = other.state.client.as_ref().expect("the outside client");
        assert_eq!(client.address, Ipv4Addr::new(10, 88, 0, 250));
        let addr = ip(&["-n", &client.namespace, "-o", "-4", "addr", "show", "eth0"]);
        assert!(addr.contains("inet 10.88.0.250/24 "), "{addr}");
        assert!(other.ping_within(
            "client",
            Ipv4Addr::new(10, 88, 0, 2),
            Duration::from_secs(10)
        ));
        // Both labs work at once.
        assert!(pings(&c1.namespace, c2.address));
        let other_prefix = other.prefix().to_string();
        drop(other);
        assert_eq!(leftovers(&other_prefix), Vec::<String>::new());
    }

    // Other processes see the in-process agents through the store, and leave them alone.
    let status = cli_status(&prefix);
    for h in status["hosts"].as_array().unwrap() {
        assert_eq!(h["agent_running"], true, "{h}");
        assert_eq!(h["agent_in_process"], true, "{h}");
        assert!(h["agent_pid"].is_null(), "{h}");
    }
    let out = run(
        vxmesh_bin().to_str().unwrap(),
        &["lab", "stop-agent", "--prefix", &prefix, "h1"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("invalid host 'h1'"),
        "{err}"
    );
    assert!(lab.agent("h1").unwrap().is_running());

    // One agent stopped through the lab: gone from this process, and (its lease expired)
    // from what `lab status` shows.
    let mut lab = lab;
    assert!(lab.stop_agent("h2").unwrap());
    assert!(lab.agent("h2").is_none());
    assert!(agent_threads(&["h2"]).is_empty());
    assert!(
        wait_until(Duration::from_secs(30), || cli_status(&prefix)["hosts"][1]
            ["agent_running"]
            == false),
        "lab status still shows h2's agent running"
    );

    // Dropped: the other agent stops, and nothing of the lab is left.
    assert!(!leftovers(&prefix).is_empty());
    drop(lab);
    assert!(agent_threads(&["h1", "h2"]).is_empty());
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
}

/// The in-process launcher for every host but `fails`, whose launch panics (as an embedder's
/// launcher might).
struct PanicsOn {
    fails: &'static str,
    inner: InProcessLauncher,
}

impl AgentLauncher for PanicsOn {
    fn launch(&self, site: &AgentSite) -> Result<Box<dyn LabAgent>, LabError> {
        assert_ne!(
            site.node, self.fails,
            "the launcher fails on {}",
            self.fails
        );
        self.inner.launch(site)
    }
}

#[test]
fn a_panic_while_building_removes_the_lab_and_stops_its_agents() {
    let _turn = embedding();
    let spec = spec(2, 0, "10.77.0.0/24");
    let launcher = PanicsOn {
        fails: "h2",
        inner: InProcessLauncher::new(),
    };
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
        lab::up_with(&spec, &launcher, &say).map(|_| ())
    }));
    assert!(r.is_err(), "up_with should have panicked");
    // h1's agent had started: it is stopped, and the lab is gone.
    assert!(agent_threads(&["h1"]).is_empty());
    assert_eq!(leftovers(&spec.prefix), Vec::<String>::new());
}

#[test]
fn a_bad_underlay_is_refused_naming_the_field_with_nothing_made() {
    for (underlay, hosts, says) in [
        ("8.8.8.0/24", "2", "private range"),
        (
            "10.88.0.1/24",
            "2",
            "host bits set: the subnet is 10.88.0.0/24",
        ),
        ("10.10.0.0/24", "2", "overlaps 10.10.0.0/16"),
        ("10.88.0.0/30", "3", "room for 1 host(s)"),
        (
            "10.88.0.0/33",
            "2",
            "invalid value '10.88.0.0/33' for '--underlay <CIDR>'",
        ),
        (
            "10.88.0",
            "2",
            "invalid value '10.88.0' for '--underlay <CIDR>'",
        ),
    ] {
        let prefix = unique("vb");
        let out = cli_lab_up(&prefix, &["--hosts", hosts, "--underlay", underlay]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{underlay}: {err}");
        assert!(err.contains(says), "{underlay}: {err}");
        if !says.starts_with("invalid value") {
            assert!(
                err.contains(&format!("invalid underlay '{underlay}'")),
                "{underlay}: {err}"
            );
        }
        assert_eq!(leftovers(&prefix), Vec::<String>::new(), "{underlay}");
    }
    // Through the library: the same error, before anything is made.
    let spec = spec(3, 0, "192.168.5.0/30");
    match lab::up_with(&spec, &InProcessLauncher::new(), &say) {
        Err(LabError::Invalid { field, value, .. }) => {
            assert_eq!((field, value.as_str()), ("underlay", "192.168.5.0/30"));
        }
        other => panic!("expected an invalid underlay: {other:?}"),
    }
    assert_eq!(leftovers(&spec.prefix), Vec::<String>::new());
}
