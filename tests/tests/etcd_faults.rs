//! The lab on a 3-member etcd under faults (etcd issue, acceptance 3 and 4): the leader
//! SIGKILLed during a burst of 200 endpoint adds, and every member stopped for 20 s.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vxmesh_tests::cni::{exec, netconf, CniEnv};
use vxmesh_tests::etcd::{kill_member, leader, start_member};
use vxmesh_tests::witness::vxlan_fdb;
use vxmesh_tests::{unique, vxmesh_bin, wait_until, Lab, TestNetns};

/// `vxmesh --json --store <lab store> ARGS`: (success, stdout, stderr).
fn vx(store: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(vxmesh_bin())
        .args(["--json", "--store", store])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run vxmesh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `vxmesh endpoint add --network net1 --node NODE --name NAME`.
fn add_endpoint(store: &str, node: &str, name: &str) -> (bool, String, String) {
    vx(
        store,
        &[
            "endpoint",
            "add",
            "--network",
            "net1",
            "--node",
            node,
            "--name",
            name,
        ],
    )
}

/// The endpoints in the store: (name, ip, mac, node).
fn endpoints(store: &str) -> Vec<(String, String, String, String)> {
    let (ok, out, err) = vx(store, &["endpoint", "ls"]);
    assert!(ok, "endpoint ls: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (s("id"), s("ip"), s("mac"), s("node"))
        })
        .collect()
}

/// The MACs in `host`'s static VXLAN FDB of net1, one line each (duplicates kept).
/// The endpoint MACs in `host`'s VXLAN FDB: neither the broadcast entries nor the other
/// nodes' MACs (`0a:5e:…`, `0a:5f:…`, the routing mesh's, one per node).
fn fdb_macs(lab: &Lab, host: &str) -> Vec<String> {
    vxlan_fdb(&lab.namespace(host), "vx-net1")
        .iter()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|m| {
            m.parse::<overlay_core::mac::MacAddr>()
                .is_ok_and(|m| !m.is_zero() && !m.is_node_space())
        })
        .collect()
}

#[test]
fn leader_killed_during_200_endpoint_adds() {
    let lab = Lab::up_on(
        "etcd",
        &[
            "--hosts",
            "3",
            "--containers-per-host",
            "0",
            "--networks",
            "1",
        ],
    );
    let store = lab.state.store.to_str().unwrap().to_string();
    let leader_before = leader(&lab).expect("a leader");
    let done = Arc::new(AtomicUsize::new(0));
    let adds = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            (0..200)
                .map(|i| {
                    let node = format!("h{}", 1 + i % 3);
                    let name = format!("e{i}");
                    let t = Instant::now();
                    let r = add_endpoint(&store, &node, &name);
                    done.fetch_add(1, Ordering::SeqCst);
                    (name, r, t.elapsed())
                })
                .collect::<Vec<_>>()
        })
    };
    assert!(wait_until(Duration::from_secs(120), || done
        .load(Ordering::SeqCst)
        >= 50));
    kill_member(&lab, leader_before);
    let killed_at = done.load(Ordering::SeqCst);
    let results = adds.join().unwrap();
    let ok: Vec<&String> = results.iter().filter(|r| r.1 .0).map(|r| &r.0).collect();
    let failed: Vec<_> = results.iter().filter(|r| !r.1 .0).collect();
    let slowest = results.iter().map(|r| r.2).max().unwrap();
    eprintln!(
        "leader m{} killed after {killed_at} adds: {} succeeded, {} failed, slowest {slowest:.1?}",
        leader_before + 1,
        ok.len(),
        failed.len()
    );
    // Each failure says what went wrong, naming the store.
    for (name, (_, out, err), _) in &failed {
        assert!(
            err.starts_with("error: ") && (err.contains("store") || err.contains("etcd")),
            "{name}: unclear error: {out}{err}"
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON error");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{name}: {out}"
        );
    }
    assert!(ok.len() >= 150, "too few adds succeeded: {}", ok.len());
    // Every add that succeeded is in the store, once; no address or MAC twice.
    let eps = endpoints(&store);
    let names: BTreeSet<&String> = eps.iter().map(|e| &e.0).collect();
    for n in &ok {
        assert!(
            names.contains(n),
            "{n} returned success but is not in the store"
        );
    }
    let ips: BTreeSet<&String> = eps.iter().map(|e| &e.1).collect();
    let macs: BTreeSet<&String> = eps.iter().map(|e| &e.2).collect();
    assert_eq!(
        (names.len(), ips.len(), macs.len()),
        (eps.len(), eps.len(), eps.len()),
        "duplicates in the store"
    );
    // Every host programs every endpoint of the other hosts, once.
    for host in ["h1", "h2", "h3"] {
        let want: BTreeSet<String> = eps
            .iter()
            .filter(|e| e.3 != host)
            .map(|e| e.2.clone())
            .collect();
        assert!(
            wait_until(Duration::from_secs(60), || {
                let have = fdb_macs(&lab, host);
                have.len() == want.len() && have.iter().cloned().collect::<BTreeSet<_>>() == want
            }),
            "{host}: FDB has {} entries, want {}\n{}",
            fdb_macs(&lab, host).len(),
            want.len(),
            lab.agent_log(host)
        );
    }
}

/// `ping -c N` output → (transmitted, received).
fn ping_counts(out: &str) -> (u32, u32) {
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary: {out}"));
    let n: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

#[test]
fn all_members_stopped_for_20_seconds() {
    let mut lab = Lab::up_on(
        "etcd",
        &[
            "--hosts",
            "3",
            "--containers-per-host",
            "1",
            "--networks",
            "1",
        ],
    );
    let store = lab.state.store.to_str().unwrap().to_string();
    let target = lab.container("h2-c1").address.to_string();
    assert!(lab.ping_within(
        "h1-c1",
        lab.container("h2-c1").address,
        Duration::from_secs(20)
    ));
    let agents: Vec<Option<u32>> = lab.state.hosts.iter().map(|h| h.agent_pid).collect();
    // A ping through the outage: 5 per second for 32 s.
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.namespace("h1-c1"),
            "ping",
            "-i",
            "0.2",
            "-c",
            "160",
            "-W",
            "1",
        ])
        .arg(&target)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..3 {
        kill_member(&lab, i);
    }
    let down = Instant::now();

    // CNI ADD answers "try again" (11) within its time limit instead of hanging.
    let c = TestNetns::new(&unique("cxo"));
    let env = CniEnv::new(&unique("ctr"), &c.0, "eth0");
    let t = Instant::now();
    let out = exec(
        &lab.namespace("h3"),
        "ADD",
        &env,
        &netconf(&lab, "net1", "h3"),
    );
    let took = t.elapsed();
    eprintln!(
        "CNI ADD with etcd down: code {} after {took:.1?}",
        out.code()
    );
    assert_eq!(out.code(), 11, "{:?}", out.json());
    assert!(took < Duration::from_secs(10), "CNI ADD took {took:?}");
    // The CLI fails clearly too.
    let (ok, _, err) = vx(&store, &["network", "ls"]);
    assert!(!ok && err.contains("store"), "{err}");

    std::thread::sleep(Duration::from_secs(20).saturating_sub(down.elapsed()));
    for m in ["m1", "m2", "m3"] {
        start_member(&mut lab, m);
    }
    let out = ping.wait_with_output().unwrap();
    let (sent, got) = ping_counts(&String::from_utf8_lossy(&out.stdout));
    eprintln!("ping through the outage: {got}/{sent} answered");
    assert!(
        got * 100 >= sent * 98,
        "the overlay stopped forwarding: {got}/{sent}"
    );

    // The same agents carry on: an endpoint added now reaches every other host, each agent
    // reports the spell without the store, and CNI ADD works again.
    let now: Vec<Option<u32>> = lab.status().hosts.iter().map(|h| h.agent_pid).collect();
    assert_eq!(now, agents, "an agent was restarted");
    assert!(lab.status().hosts.iter().all(|h| h.agent_running));
    assert!(
        wait_until(Duration::from_secs(30), || add_endpoint(
            &store, "h2", "after"
        )
        .0),
        "the store did not come back"
    );
    let mac = endpoints(&store)
        .into_iter()
        .find(|e| e.0 == "after")
        .unwrap()
        .2;
    for host in ["h1", "h3"] {
        assert!(
            wait_until(Duration::from_secs(30), || fdb_macs(&lab, host)
                .contains(&mac)),
            "{host} did not converge after the outage:\n{}",
            lab.agent_log(host)
        );
    }
    assert!(
        wait_until(Duration::from_secs(30), || {
            let (_, out, _) = vx(&store, &["node", "ls"]);
            serde_json::from_str::<serde_json::Value>(&out).is_ok_and(|v| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .all(|n| n["agent"] == "up" && n["store_outage"]["ended_ms"].as_u64().is_some())
            })
        }),
        "node ls: {}",
        vx(&store, &["node", "ls"]).1
    );
    for h in ["h1", "h2", "h3"] {
        assert!(
            lab.agent_log(h).contains("store reachable again after"),
            "{h}'s log says nothing of the outage"
        );
    }
    let c2 = TestNetns::new(&unique("cxp"));
    let env = CniEnv::new(&unique("ctr"), &c2.0, "eth0");
    exec(
        &lab.namespace("h3"),
        "ADD",
        &env,
        &netconf(&lab, "net1", "h3"),
    )
    .ok();
}
