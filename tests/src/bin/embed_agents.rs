//! An embedder of the `vxmesh` library, as an orchestrator would be: its own multi-threaded
//! tokio runtime, three agents started through the library for three lab hosts, containers
//! attached and waited for with the library's waits. It reports each step as one JSON line on
//! stdout and waits for a line on stdin before the steps the test acts on. It installs no
//! signal handler: SIGTERM must end it (the library must not have taken the signal).
//!
//! `embed_agents STORE PREFIX HOST=NETNS… -- CONTAINER=HOST=NETNS…`

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

use serde_json::json;
use vxmesh::agent::{Agent, AgentConfig, AgentError, AgentHandle};
use vxmesh::lab::{AgentSite, InProcessLauncher, LabState};
use vxmesh::{Catalog, ContainerSpec, NetworkSpec};

const NETWORK: &str = "emb";
const WAIT: Duration = Duration::from_secs(90);

fn say(v: serde_json::Value) {
    println!("{v}");
}

/// Waits for the test's go-ahead (a line on stdin).
async fn go() {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).unwrap();
    })
    .await
    .unwrap();
}

/// The agent configuration the lab gives its in-process agents (its state directory, cgroup,
/// pin root and datapath for the host).
fn config(prefix: &str, node: &str) -> AgentConfig {
    let lab = LabState::load(prefix).unwrap();
    let host = lab.hosts.iter().find(|h| h.name == node).unwrap();
    InProcessLauncher::new().config(&AgentSite::of(prefix, &lab.store, host))
}

/// Waits on every handle, then through the store (the wait another process would use).
async fn applied(catalog: &Catalog, agents: &BTreeMap<String, AgentHandle>, what: &str) {
    let revision = catalog.store().revision().unwrap();
    for a in agents.values() {
        let s = a.applied(revision, WAIT).await.unwrap();
        assert!(s.errors.is_empty(), "{}: {:?}", a.node(), s.errors);
    }
    let nodes: Vec<String> = agents.keys().cloned().collect();
    let statuses = vxmesh::wait::wait_applied_async(catalog.clone(), nodes, revision, WAIT)
        .await
        .unwrap();
    say(json!({ "event": what, "revision": revision,
        "applied": statuses.iter().map(|(n, s)| (n.clone(), s.applied_revision)).collect::<BTreeMap<_, _>>() }));
}

/// Attaches container `name` (namespace `netns`) on `node` (host namespace `host_ns`); returns
/// its address.
async fn attach(catalog: &Catalog, name: &str, node: &str, host_ns: &str, netns: &str) -> String {
    let spec = ContainerSpec {
        network: NETWORK.into(),
        node: node.into(),
        id: name.into(),
        host_netns: Some(vxmesh::netns::path(host_ns)),
        container_netns: vxmesh::netns::path(netns),
        ifname: "eth0".into(),
        ip: None,
    };
    let c = catalog.clone();
    let (endpoint, _) = tokio::task::spawn_blocking(move || vxmesh::attach_container(&c, &spec))
        .await
        .unwrap()
        .unwrap();
    endpoint.ip.to_string()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // The embedder's own log: the agents' lines carry their node in the `agent` span.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (store, prefix) = (&args[0], &args[1]);
    let split = args.iter().position(|a| a == "--").unwrap();
    let hosts: Vec<(String, String)> = args[2..split]
        .iter()
        .map(|h| {
            let (n, ns) = h.split_once('=').unwrap();
            (n.to_string(), ns.to_string())
        })
        .collect();
    let containers: Vec<(String, String, String)> = args[split + 1..]
        .iter()
        .map(|c| {
            let mut p = c.splitn(3, '=');
            let n = p.next().unwrap().to_string();
            (
                n,
                p.next().unwrap().to_string(),
                p.next().unwrap().to_string(),
            )
        })
        .collect();
    let catalog = vxmesh::open_catalog(std::path::Path::new(store)).unwrap();
    let host_ns: BTreeMap<String, String> = hosts.iter().cloned().collect();

    // Three agents, started from inside this runtime.
    let mut agents = BTreeMap::new();
    for (node, _) in &hosts {
        let a = Agent::spawn(catalog.clone(), config(prefix, node)).unwrap();
        agents.insert(node.clone(), a);
    }
    say(json!({ "event": "started", "nodes": agents.keys().collect::<Vec<_>>() }));

    // A second agent for a live node.
    let n1 = &hosts[0].0;
    match Agent::spawn(catalog.clone(), config(prefix, n1)) {
        Err(e @ AgentError::AlreadyRunning { .. }) => {
            say(json!({ "event": "refused", "error": e.to_string() }))
        }
        other => panic!("a second agent for {n1}: {other:?}"),
    }

    catalog
        .create_network(&NetworkSpec {
            name: NETWORK.into(),
            subnet: "10.70.0.0/24".into(),
            vni: None,
            mtu: None,
            encrypted: false,
        })
        .unwrap();
    applied(&catalog, &agents, "network-applied").await;

    // Containers on every host; the test pings between them as soon as this says applied.
    let mut ips = BTreeMap::new();
    let (last, first) = containers.split_last().unwrap();
    for (name, node, ns) in first {
        ips.insert(
            name.clone(),
            attach(&catalog, name, node, &host_ns[node], ns).await,
        );
    }
    applied(&catalog, &agents, "attached").await;
    say(json!({ "event": "containers", "ips": ips }));
    go().await;

    // One agent stopped through its handle; the other two keep reconciling.
    let (name, node, ns) = last;
    let stopped = hosts.last().unwrap().0.clone();
    agents.remove(&stopped).unwrap().stop().unwrap();
    ips.insert(
        name.clone(),
        attach(&catalog, name, node, &host_ns[node], ns).await,
    );
    applied(&catalog, &agents, "applied-without-stopped").await;
    let revision = catalog.store().revision().unwrap();
    let short = vxmesh::wait::wait_applied(&catalog, &[&stopped], revision, Duration::from_secs(1));
    let key_left = catalog.agent_alive(&stopped).unwrap();
    say(
        json!({ "event": "stopped", "node": stopped, "ips": ips, "agent_key_left": key_left,
        "wait_for_stopped": short.err().map(|e| e.to_string()) }),
    );
    go().await;

    // A reconcile error injected by the test in the second host (its underlay address
    // removed): reported by the handle and in the store.
    let faulty = &agents[&hosts[1].0];
    say(json!({ "event": "ready-for-fault", "node": faulty.node() }));
    let mut rx = faulty.subscribe();
    let seen = tokio::time::timeout(WAIT, rx.wait_for(|s| !s.errors.is_empty()))
        .await
        .expect("the injected error reported in time")
        .unwrap()
        .clone();
    // The store gets the status just after the handle does.
    let mut in_store = None;
    for _ in 0..600 {
        let s = vxmesh::wait::agent_statuses(&catalog).unwrap()[faulty.node()].clone();
        if !s.errors.is_empty() {
            in_store = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let in_store = in_store.expect("the error published in the store within 30 s");
    say(json!({ "event": "error-seen", "handle": seen.errors, "store": in_store.errors }));
    go().await;
    tokio::time::timeout(WAIT, rx.wait_for(|s| s.errors.is_empty()))
        .await
        .expect("the error cleared in time")
        .unwrap();
    say(json!({ "event": "error-cleared" }));

    // h2's agent ended as a crash would: its heartbeat stays until the lease expires.
    let aborted = hosts[1].0.clone();
    agents.remove(&aborted).unwrap().abort().unwrap();
    let key_left = catalog.agent_alive(&aborted).unwrap();
    say(json!({ "event": "aborted", "node": aborted, "agent_key_left": key_left }));

    // Nothing more to do: SIGTERM (the default action) must end the process.
    say(json!({ "event": "idle", "running": agents.keys().collect::<Vec<_>>() }));
    std::future::pending::<()>().await;
}
