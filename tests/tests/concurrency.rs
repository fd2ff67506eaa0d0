//! Address allocation under concurrency: several processes (each with several threads) add
//! endpoints to one SQLite store at once, or are killed in the middle of doing so, and the
//! store must still hand out every address once and stay consistent (every endpoint holds
//! exactly one IPAM key and every IPAM key belongs to the endpoint that holds the address).
//!
//! The allocating processes are `alloc_worker` (tests/src/bin/alloc_worker.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use overlay_core::{Catalog, SqliteStore, Store};
use rand::Rng;
use serde::Deserialize;
use vxmesh_tests::{run, run_ok, vxmesh_bin};

/// One line of `alloc_worker`'s output.
#[derive(Debug, Clone, Deserialize)]
struct Allocation {
    id: String,
    ok: bool,
    ip: Option<Ipv4Addr>,
    error: Option<String>,
}

/// One entry of `vxmesh endpoint ls --json`.
#[derive(Debug, Clone, Deserialize)]
struct ListedEndpoint {
    id: String,
    network: String,
    node: String,
    ip: Ipv4Addr,
    mac: String,
}

/// A temporary store with one network and one node.
struct Fixture {
    _dir: tempfile::TempDir,
    store: PathBuf,
    network: String,
    node: String,
    subnet: (Ipv4Addr, u8),
    gateway: Ipv4Addr,
}

impl Fixture {
    fn new(subnet: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("store.db");
        let fx = Fixture {
            store,
            network: "racenet".into(),
            node: "h1".into(),
            subnet: parse_cidr(subnet),
            gateway: Ipv4Addr::UNSPECIFIED,
            _dir: dir,
        };
        let created = fx.vxmesh_ok(&[
            "--json",
            "network",
            "create",
            &fx.network,
            "--subnet",
            subnet,
        ]);
        let v: serde_json::Value = serde_json::from_str(&created).expect("network create --json");
        let gateway = v["gateway"].as_str().expect("gateway").parse().unwrap();
        fx.vxmesh_ok(&["node", "add", &fx.node, "--underlay", "192.0.2.10"]);
        Fixture { gateway, ..fx }
    }

    fn vxmesh(&self, args: &[&str]) -> Output {
        let mut all = vec!["--store", self.store.to_str().unwrap()];
        all.extend_from_slice(args);
        run(vxmesh_bin().to_str().unwrap(), &all)
    }

    fn vxmesh_ok(&self, args: &[&str]) -> String {
        let mut all = vec!["--store", self.store.to_str().unwrap()];
        all.extend_from_slice(args);
        run_ok(vxmesh_bin().to_str().unwrap(), &all)
    }

    /// An `alloc_worker` process, started but waiting for `go` to exist (when given).
    fn worker(&self, count: usize, threads: usize, prefix: &str, go: Option<&Path>) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_alloc_worker"));
        cmd.arg(&self.store)
            .args([&self.network, &self.node])
            .args([count.to_string(), threads.to_string(), prefix.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(go) = go {
            cmd.env("ALLOC_WORKER_GO", go);
        }
        cmd.spawn().expect("start alloc_worker")
    }

    fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        let (net, len) = self.subnet;
        let mask = u32::MAX << (32 - u32::from(len));
        u32::from(ip) & mask == u32::from(net)
    }

    fn broadcast(&self) -> Ipv4Addr {
        let (net, len) = self.subnet;
        Ipv4Addr::from(u32::from(net) | (u32::MAX >> u32::from(len)))
    }

    /// Checks that the store is consistent, through both the CLI and the store API, and
    /// returns the endpoints (id -> ip).
    ///
    /// - every endpoint has a distinct address, inside the subnet, neither the gateway nor the
    ///   network or broadcast address, and a distinct MAC;
    /// - the IPAM keys of the network are exactly the endpoints' addresses, each holding the
    ///   id of the endpoint that has it;
    /// - a full snapshot reads every record back without a problem.
    fn check_consistent(&self) -> BTreeMap<String, Ipv4Addr> {
        let listed: Vec<ListedEndpoint> = serde_json::from_str(&self.vxmesh_ok(&[
            "--json",
            "endpoint",
            "ls",
            "--network",
            &self.network,
        ]))
        .expect("endpoint ls --json parses");
        let all: Vec<ListedEndpoint> =
            serde_json::from_str(&self.vxmesh_ok(&["--json", "endpoint", "ls"]))
                .expect("endpoint ls --json parses");
        assert_eq!(
            listed.len(),
            all.len(),
            "endpoints outside {}: {all:?}",
            self.network
        );

        let mut by_id = BTreeMap::new();
        let mut by_ip: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
        let mut macs = BTreeSet::new();
        for e in &listed {
            assert_eq!(e.network, self.network);
            assert_eq!(e.node, self.node);
            assert!(self.in_subnet(e.ip), "{} outside the subnet: {e:?}", e.ip);
            assert_ne!(e.ip, self.gateway, "the gateway was handed out: {e:?}");
            assert_ne!(e.ip, self.subnet.0, "the network address was handed out");
            assert_ne!(
                e.ip,
                self.broadcast(),
                "the broadcast address was handed out"
            );
            if let Some(other) = by_ip.insert(e.ip, e.id.clone()) {
                panic!("{} handed out twice: to {other} and {}", e.ip, e.id);
            }
            assert!(macs.insert(e.mac.clone()), "MAC {} used twice", e.mac);
            assert!(
                by_id.insert(e.id.clone(), e.ip).is_none(),
                "id {} twice",
                e.id
            );
        }

        let store = SqliteStore::open(&self.store).expect("the store opens");
        let prefix = format!("/vxmesh/v1/ipam/{}/", self.network);
        let ipam: BTreeMap<Ipv4Addr, String> = store
            .range(&prefix)
            .expect("read the IPAM keys")
            .kvs
            .into_iter()
            .map(|kv| {
                let ip = kv.key[prefix.len()..]
                    .parse()
                    .unwrap_or_else(|_| panic!("IPAM key {} is not an address", kv.key));
                let owner = String::from_utf8(kv.value).expect("IPAM value is UTF-8");
                (ip, owner)
            })
            .collect();
        assert_eq!(
            ipam, by_ip,
            "IPAM keys (left) and endpoints' addresses (right) differ"
        );

        let snapshot = Catalog::new(Arc::new(store))
            .snapshot()
            .expect("a full snapshot reads");
        assert!(
            snapshot.problems.is_empty(),
            "bad records: {:?}",
            snapshot.problems
        );
        assert_eq!(snapshot.endpoints.len(), listed.len());
        by_id
    }
}

fn parse_cidr(s: &str) -> (Ipv4Addr, u8) {
    let (a, l) = s.split_once('/').expect("CIDR");
    (a.parse().unwrap(), l.parse().unwrap())
}

/// Waits (generously) for a worker and parses its lines (each must be a complete JSON object).
fn collect(child: Child) -> (std::process::ExitStatus, Vec<Allocation>, String) {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(out) => out.expect("wait for alloc_worker"),
        Err(_) => {
            // SAFETY: kill(2) on our own child's pid; it is not reaped yet, so not reused.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("alloc_worker {pid} still running after 300 s");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines = parse_lines(&stdout, false);
    (out.status, lines, stderr)
}

/// Parses worker output. A killed worker may have been cut in the middle of its last line,
/// which is then ignored when `killed`.
fn parse_lines(stdout: &str, killed: bool) -> Vec<Allocation> {
    let complete = if killed {
        match stdout.rfind('\n') {
            Some(i) => &stdout[..=i],
            None => "",
        }
    } else {
        stdout
    };
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad worker line {l:?}: {e}")))
        .collect()
}

#[test]
fn fifty_parallel_allocations_from_three_processes_get_fifty_distinct_addresses() {
    let fx = Fixture::new("10.77.0.0/24");
    let go = fx.store.with_file_name("go");
    let counts = [17, 17, 16];
    let children: Vec<Child> = counts
        .iter()
        .enumerate()
        .map(|(p, &n)| fx.worker(n, 4, &format!("p{p}"), Some(&go)))
        .collect();
    // Release all three processes (twelve threads) at once.
    std::fs::write(&go, b"go").unwrap();

    let mut allocations = Vec::new();
    for (p, child) in children.into_iter().enumerate() {
        let (status, lines, stderr) = collect(child);
        assert!(
            status.success(),
            "worker {p} failed ({status}): {lines:?} {stderr}"
        );
        assert_eq!(lines.len(), counts[p], "worker {p} printed {lines:?}");
        allocations.extend(lines);
    }
    assert_eq!(allocations.len(), 50);
    for a in &allocations {
        assert!(a.ok, "allocation failed: {a:?}");
    }
    let ips: BTreeSet<Ipv4Addr> = allocations.iter().map(|a| a.ip.unwrap()).collect();
    assert_eq!(ips.len(), 50, "duplicate addresses: {allocations:?}");
    for ip in &ips {
        assert!(fx.in_subnet(*ip), "{ip} is outside 10.77.0.0/24");
        assert_ne!(*ip, fx.gateway, "the gateway was handed out");
    }
    // IPAM hands out the lowest free address and nothing was freed: .2 to .51, no holes.
    let expected: BTreeSet<Ipv4Addr> = (2..=51).map(|i| Ipv4Addr::new(10, 77, 0, i)).collect();
    assert_eq!(ips, expected, "addresses are not the 50 lowest free ones");

    let stored = fx.check_consistent();
    assert_eq!(stored.len(), 50, "the store holds {stored:?}");
    for a in &allocations {
        assert_eq!(
            stored.get(&a.id),
            a.ip.as_ref(),
            "{} was reported with {:?} but the store says {:?}",
            a.id,
            a.ip,
            stored.get(&a.id)
        );
    }
}

#[test]
fn workers_killed_mid_allocation_leave_a_consistent_store() {
    // A /16 so that the workers never run out of addresses, however fast they are.
    let fx = Fixture::new("10.78.0.0/16");
    let mut rng = rand::rng();
    let mut reported: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    for round in 0..10 {
        let child = fx.worker(100_000, 4, &format!("r{round}"), None);
        let ms = rng.random_range(20..=200);
        std::thread::sleep(Duration::from_millis(ms));
        let mut child = child;
        child.kill().expect("SIGKILL the worker"); // std's kill is SIGKILL
        let out = child.wait_with_output().expect("reap the worker");
        assert!(
            !out.status.success(),
            "round {round}: the worker finished 100000 allocations in {ms} ms?"
        );
        let lines = parse_lines(&String::from_utf8_lossy(&out.stdout), true);
        eprintln!(
            "round {round}: killed after {ms} ms, {} allocations reported",
            lines.len()
        );
        for a in lines {
            // Nothing else competes for the /16: every allocation that ended succeeded.
            assert!(a.ok, "round {round}: allocation failed: {a:?}");
            reported.insert(a.id, a.ip.unwrap());
        }
        // After every kill the store opens, reads, and is consistent.
        let stored = fx.check_consistent();
        // A reported allocation was committed, and a commit survives the kill of its writer.
        for (id, ip) in &reported {
            assert_eq!(
                stored.get(id),
                Some(ip),
                "round {round}: {id} was reported at {ip} but is not in the store"
            );
        }
    }

    // The store still works: more allocations succeed (a worker that finishes), and the
    // CLI can add and remove endpoints.
    let before = fx.check_consistent();
    let (status, lines, stderr) = collect(fx.worker(12, 3, "after", None));
    assert!(status.success(), "{lines:?} {stderr}");
    assert!(lines.iter().all(|a| a.ok), "{lines:?}");
    fx.vxmesh_ok(&[
        "endpoint",
        "add",
        "--network",
        &fx.network,
        "--node",
        &fx.node,
        "--name",
        "cli-ep",
    ]);
    let after = fx.check_consistent();
    assert_eq!(after.len(), before.len() + 13);
    fx.vxmesh_ok(&["endpoint", "rm", &fx.network, "cli-ep"]);
    assert_eq!(fx.check_consistent().len(), before.len() + 12);
}

#[test]
fn a_small_network_hands_out_each_address_once_then_reports_exhaustion() {
    // A /29: eight addresses less network, broadcast and gateway: five for endpoints.
    let fx = Fixture::new("10.79.0.0/29");
    let go = fx.store.with_file_name("go");
    let counts = [4, 3, 3];
    let children: Vec<Child> = counts
        .iter()
        .enumerate()
        .map(|(p, &n)| fx.worker(n, 2, &format!("s{p}"), Some(&go)))
        .collect();
    std::fs::write(&go, b"go").unwrap();

    let mut allocations = Vec::new();
    for (p, child) in children.into_iter().enumerate() {
        let (status, lines, stderr) = collect(child);
        assert!(
            status.code() == Some(0) || status.code() == Some(1),
            "worker {p} crashed ({status}): {stderr}"
        );
        assert_eq!(lines.len(), counts[p], "worker {p} printed {lines:?}");
        assert_eq!(
            status.success(),
            lines.iter().all(|a| a.ok),
            "worker {p}: exit status {status} does not match {lines:?}"
        );
        allocations.extend(lines);
    }
    let (won, lost): (Vec<_>, Vec<_>) = allocations.iter().partition(|a| a.ok);
    assert_eq!(won.len(), 5, "successes: {won:?}");
    assert_eq!(lost.len(), 5, "failures: {lost:?}");
    for a in &lost {
        let e = a.error.as_deref().unwrap_or_default();
        assert!(
            e.contains("network 'racenet' has no free address")
                && e.contains("all 5 addresses of 10.79.0.0/29"),
            "not the exhaustion error: {a:?}"
        );
    }
    let ips: BTreeSet<Ipv4Addr> = won.iter().map(|a| a.ip.unwrap()).collect();
    let expected: BTreeSet<Ipv4Addr> = (2..=6).map(|i| Ipv4Addr::new(10, 79, 0, i)).collect();
    assert_eq!(ips, expected, "duplicates or wrong addresses: {won:?}");

    let stored = fx.check_consistent();
    assert_eq!(stored.len(), 5);
    for a in &won {
        assert_eq!(stored.get(&a.id), a.ip.as_ref());
    }

    // The CLI reports the same exhaustion, and changes nothing.
    let out = fx.vxmesh(&[
        "endpoint",
        "add",
        "--network",
        &fx.network,
        "--node",
        &fx.node,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: network 'racenet' has no free address"),
        "{stderr}"
    );
    assert_eq!(fx.check_consistent(), stored);
}

/// Every allocation vxmesh makes, raced by many writers released together: values that must be
/// unique are unique in the store afterwards, whatever the interleaving (a guard read after
/// the data it protects once let two agents take the same tunnel address).
mod races {
    use std::collections::BTreeSet;
    use std::process::Command;
    use std::sync::{Arc, Barrier};

    use overlay_core::{Catalog, SqliteStore};
    use vxmesh_tests::race::RaceOp;

    const THREADS: u32 = 24;
    const PROCESSES: u32 = 12;

    fn catalog(dir: &tempfile::TempDir) -> Catalog {
        Catalog::new(Arc::new(
            SqliteStore::open(dir.path().join("store.db")).expect("open store"),
        ))
    }

    /// `THREADS` threads in this process, released by a barrier.
    fn race_threads(op: RaceOp) -> (Catalog, Vec<Result<String, String>>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(&dir);
        op.prepare(&c, THREADS);
        let barrier = Arc::new(Barrier::new(THREADS as usize));
        let handles: Vec<_> = (0..THREADS)
            .map(|n| {
                // One store handle per thread, as separate callers would have.
                let c = catalog(&dir);
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    op.run(&c, n)
                })
            })
            .collect();
        let results = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (c, results, dir)
    }

    /// `PROCESSES` `race_worker` processes, released by a file.
    fn race_processes(op: RaceOp) -> (Catalog, Vec<Result<String, String>>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(&dir);
        op.prepare(&c, PROCESSES);
        let store = dir.path().join("store.db");
        let go = dir.path().join("go");
        let children: Vec<_> = (0..PROCESSES)
            .map(|n| {
                Command::new(env!("CARGO_BIN_EXE_race_worker"))
                    .args([
                        store.to_str().unwrap(),
                        op.name(),
                        &n.to_string(),
                        go.to_str().unwrap(),
                    ])
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("start race_worker")
            })
            .collect();
        // Let every worker open the store and wait on the file, then release them together.
        std::thread::sleep(std::time::Duration::from_millis(500));
        std::fs::write(&go, b"go").unwrap();
        let results = children
            .into_iter()
            .map(|child| {
                let out = child.wait_with_output().unwrap();
                assert!(out.status.success(), "race_worker failed: {out:?}");
                let v: serde_json::Value =
                    serde_json::from_slice(&out.stdout).expect("race_worker's JSON line");
                if v["ok"] == true {
                    Ok(v["value"].as_str().unwrap().to_string())
                } else {
                    Err(v["error"].as_str().unwrap().to_string())
                }
            })
            .collect();
        (c, results, dir)
    }

    /// Every writer succeeded and got its own value.
    fn all_distinct(op: RaceOp, results: &[Result<String, String>]) -> BTreeSet<String> {
        let values: Vec<&String> = results
            .iter()
            .map(|r| r.as_ref().unwrap_or_else(|e| panic!("{}: {e}", op.name())))
            .collect();
        let set: BTreeSet<String> = values.iter().map(|v| v.to_string()).collect();
        assert_eq!(set.len(), values.len(), "{}: {values:?}", op.name());
        set
    }

    /// Exactly one writer won; every other was refused naming `field`.
    fn one_winner(op: RaceOp, results: &[Result<String, String>], field: &str) {
        let won: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
        assert_eq!(won.len(), 1, "{}: {results:?}", op.name());
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(e.contains(field), "{}: {e}", op.name());
        }
    }

    fn check(op: RaceOp, c: &Catalog, results: &[Result<String, String>]) {
        let snap = c.snapshot().unwrap();
        match op {
            RaceOp::Tunnel => {
                let got = all_distinct(op, results);
                let stored: BTreeSet<String> = snap
                    .nodes
                    .values()
                    .filter_map(|n| n.wireguard.as_ref()?.tunnel_ip)
                    .map(|ip| ip.to_string())
                    .collect();
                assert_eq!(stored, got, "tunnel addresses in the store");
            }
            RaceOp::Vni => {
                let got = all_distinct(op, results);
                let stored: BTreeSet<String> =
                    snap.networks.values().map(|n| n.vni.to_string()).collect();
                assert_eq!(stored, got, "VNIs in the store");
            }
            RaceOp::Subnet => {
                one_winner(op, results, "overlaps network");
                assert_eq!(snap.networks.len(), 1);
            }
            RaceOp::Underlay => {
                one_winner(op, results, "underlay");
                assert_eq!(snap.nodes.len(), 1);
            }
            RaceOp::Mac => {
                one_winner(op, results, "mac");
                assert_eq!(snap.endpoints.len(), 1);
            }
        }
    }

    const OPS: [RaceOp; 5] = [
        RaceOp::Tunnel,
        RaceOp::Vni,
        RaceOp::Subnet,
        RaceOp::Underlay,
        RaceOp::Mac,
    ];

    #[test]
    fn threads_released_together_never_share_an_allocation() {
        for op in OPS {
            // A few rounds: interleavings differ from one to the next.
            for _ in 0..3 {
                let (c, results, _dir) = race_threads(op);
                check(op, &c, &results);
            }
        }
    }

    #[test]
    fn processes_released_together_never_share_an_allocation() {
        for op in OPS {
            let (c, results, _dir) = race_processes(op);
            check(op, &c, &results);
        }
    }
}
