//! `cargo xtask bench control`: the control plane on both stores in one run (etcd issue,
//! acceptance 6). For each store, a 3-host lab (no containers) on it:
//!
//! - (a) the delay from `endpoint add` returning (the catalog call the CLI makes, in this
//!   process) to the endpoint's entries being programmed on every other host: the later of
//!   its static VXLAN FDB entry (`bridge monitor fdb`) and its permanent neighbour (`ip
//!   monitor neigh`) on each of the two other hosts, timestamped as the monitors print them;
//!   200 adds one after another, round robin over the hosts; p50 and p99;
//! - (b) 1,000 endpoints added in bulk (`Catalog::add_endpoints`: 30 per transaction, round
//!   robin over the hosts) to a /22 network: the time from the call to every host holding
//!   the entries of every endpoint of the other hosts.
//!
//! Prints figures and the goals (p99 ≤ 100 ms on SQLite, ≤ 250 ms on etcd; 1,000 endpoints
//! ≤ 5 s); asserts nothing about a timing.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use overlay_core::catalog::{Catalog, EndpointSpec, NetworkSpec};
use overlay_core::store::StoreSpec;

use crate::bench::Options;
use crate::bench_cni::percentile;
use crate::bench_lb::{at_most, row};
use crate::lab::Vxmesh;
use crate::util::{self, heading, say};

const HOSTS: [&str; 3] = ["h1", "h2", "h3"];
const ADDS: usize = 200;
const BULK: usize = 1000;
const BULK_NETWORK: &str = "bulk";
const BULK_SUBNET: &str = "10.20.0.0/22";
/// Longest wait for one endpoint to be programmed everywhere.
const ONE_LIMIT: Duration = Duration::from_secs(20);
/// Longest wait for the bulk to converge.
const BULK_LIMIT: Duration = Duration::from_secs(300);

const GOAL_P99_SQLITE_MS: f64 = 100.0;
const GOAL_P99_ETCD_MS: f64 = 250.0;
const GOAL_BULK_S: f64 = 5.0;

/// When each host first showed each MAC: its FDB entry and its neighbour entry.
type Seen = Arc<Mutex<HashMap<(String, String), (Option<Instant>, Option<Instant>)>>>;

/// `bridge monitor fdb` and `ip monitor neigh` in every host's namespace, their lines
/// timestamped as they arrive.
struct Monitors {
    children: Vec<Child>,
    seen: Seen,
}

impl Monitors {
    fn start(vx: &Vxmesh) -> Result<Monitors> {
        let status = vx.status()?;
        let seen: Seen = Arc::default();
        let mut children = Vec::new();
        for h in &status.hosts {
            for (neigh, program, args) in [
                (false, "bridge", ["monitor", "fdb"]),
                (true, "ip", ["monitor", "neigh"]),
            ] {
                let mut child = Command::new(program)
                    .args(["-n", &h.namespace])
                    .args(args)
                    .stdout(Stdio::piped())
                    .stdin(Stdio::null())
                    .spawn()
                    .with_context(|| format!("starting {program} monitor in {}", h.namespace))?;
                let out = child.stdout.take().expect("piped");
                let (seen, host) = (seen.clone(), h.name.clone());
                std::thread::spawn(move || {
                    for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                        let at = Instant::now();
                        if let Some(mac) = programmed_mac(&line, neigh) {
                            let mut s = seen.lock().unwrap();
                            let e = s.entry((host.clone(), mac)).or_default();
                            let slot = if neigh { &mut e.1 } else { &mut e.0 };
                            slot.get_or_insert(at);
                        }
                    }
                });
                children.push(child);
            }
        }
        Ok(Monitors { children, seen })
    }

    /// When `mac` was programmed on every host of `hosts` (both entries), if it was.
    fn programmed(&self, mac: &str, hosts: &[&str]) -> Option<Instant> {
        let s = self.seen.lock().unwrap();
        hosts
            .iter()
            .map(|h| match s.get(&(h.to_string(), mac.to_string())) {
                Some((Some(f), Some(n))) => Some(*f.max(n)),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }
}

impl Drop for Monitors {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The MAC of a line that adds a static VXLAN FDB entry (`MAC dev vx-… dst IP self
/// permanent`) or a permanent neighbour (`IP dev vb-… lladdr MAC PERMANENT`).
fn programmed_mac(line: &str, neigh: bool) -> Option<String> {
    if line.starts_with("Deleted") {
        return None;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    if neigh {
        let i = words.iter().position(|w| *w == "lladdr")?;
        words
            .contains(&"PERMANENT")
            .then(|| words[i + 1].to_string())
    } else {
        (words.contains(&"self") && words.contains(&"dst") && words.get(2)?.starts_with("vx-"))
            .then(|| words[0].to_string())
    }
}

/// The other hosts of endpoint `i` (placed on `HOSTS[i % 3]`).
fn others(i: usize) -> Vec<&'static str> {
    HOSTS
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != i % HOSTS.len())
        .map(|(_, h)| *h)
        .collect()
}

struct StoreFigures {
    delays: Vec<Duration>,
    bulk_written: Duration,
    bulk_converged: Duration,
}

fn add(catalog: &Catalog, network: &str, i: usize, prefix: &str) -> Result<String> {
    let e = catalog
        .add_endpoint(&EndpointSpec {
            network: network.into(),
            node: HOSTS[i % HOSTS.len()].into(),
            id: Some(format!("{prefix}{i}")),
            ..Default::default()
        })
        .with_context(|| format!("adding endpoint {prefix}{i}"))?;
    Ok(e.mac.to_string())
}

fn measure(vx: &Vxmesh, store: &str) -> Result<StoreFigures> {
    let status = vx.status()?;
    let spec = StoreSpec::parse(&status.store)?;
    let catalog = Catalog::new(overlay_core::store::open(&spec)?);
    let monitors = Monitors::start(vx)?;
    std::thread::sleep(Duration::from_millis(300));

    heading(&format!(
        "{store}: {ADDS} endpoint adds, each until programmed on the other hosts"
    ));
    let mut delays = Vec::new();
    for i in 0..ADDS {
        util::check_interrupted()?;
        let mac = add(&catalog, "net1", i, "d")?;
        let returned = Instant::now();
        let hosts = others(i);
        let at = loop {
            if let Some(at) = monitors.programmed(&mac, &hosts) {
                break at;
            }
            if returned.elapsed() > ONE_LIMIT {
                bail!("{store}: endpoint d{i} ({mac}) not programmed on {hosts:?} after {ONE_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        // Programmed before the call returned (the watch beat the reply): no delay.
        delays.push(at.saturating_duration_since(returned));
    }

    heading(&format!(
        "{store}: {BULK} endpoints added in bulk to {BULK_NETWORK} ({BULK_SUBNET})"
    ));
    catalog.create_network(&NetworkSpec {
        name: BULK_NETWORK.into(),
        subnet: BULK_SUBNET.into(),
        ..Default::default()
    })?;
    let device = format!("vx-{BULK_NETWORK}");
    let ready = Instant::now();
    while !status.hosts.iter().all(|h| {
        util::capture(Command::new("ip").args(["-n", &h.namespace, "link", "show", &device]))
            .is_ok_and(|o| o.status.success())
    }) {
        if ready.elapsed() > ONE_LIMIT {
            bail!("{store}: {device} did not appear on every host");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let specs: Vec<EndpointSpec> = (0..BULK)
        .map(|i| EndpointSpec {
            network: BULK_NETWORK.into(),
            node: HOSTS[i % HOSTS.len()].into(),
            id: Some(format!("b{i}")),
            ..Default::default()
        })
        .collect();
    let start = Instant::now();
    let macs: Vec<String> = catalog
        .add_endpoints(&specs)
        .context("adding the bulk")?
        .iter()
        .map(|e| e.mac.to_string())
        .collect();
    let bulk_written = start.elapsed();
    say(&format!(
        "{store}: written in {:.2} s",
        bulk_written.as_secs_f64()
    ));
    let converged = loop {
        util::check_interrupted()?;
        let last = macs
            .iter()
            .enumerate()
            .map(|(i, m)| monitors.programmed(m, &others(i)))
            .collect::<Option<Vec<_>>>();
        if let Some(times) = last {
            break times.into_iter().max().unwrap_or(start);
        }
        if start.elapsed() > BULK_LIMIT {
            bail!("{store}: {BULK} endpoints not converged after {BULK_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The monitors' word checked against the kernel: every host holds them all.
    for h in &status.hosts {
        let out = util::output(Command::new("bridge").args([
            "-n",
            &h.namespace,
            "fdb",
            "show",
            "dev",
            &device,
        ]))?;
        let n = out
            .lines()
            .filter(|l| {
                // Endpoint entries only: not the broadcast entries, nor the other nodes'
                // MACs (0a:5e:…, 0a:5f:…: the routing mesh's, one per node).
                l.contains(" dst ")
                    && l.contains(" self")
                    && l.split_whitespace()
                        .next()
                        .and_then(|m| m.parse::<overlay_core::mac::MacAddr>().ok())
                        .is_some_and(|m| !m.is_zero() && !m.is_node_space())
            })
            .count();
        let want = BULK - (0..BULK).filter(|i| HOSTS[i % 3] == h.name).count();
        if n != want {
            bail!(
                "{store}: {} holds {n} FDB entries on {device}, want {want}",
                h.name
            );
        }
    }
    Ok(StoreFigures {
        delays,
        bulk_written,
        bulk_converged: converged.saturating_duration_since(start),
    })
}

/// Set in the release build this bench runs itself as.
const RELEASE_ENV: &str = "VXBENCH_CONTROL_RELEASE";

pub fn bench(opts: &Options) -> Result<()> {
    util::require_root("bench control")?;
    let _ = opts;
    if cfg!(debug_assertions) && std::env::var_os(RELEASE_ENV).is_none() {
        // The adds are made by this process (the catalog, as a library user's program
        // would): run from a release build, like the agents.
        heading("bench control runs from a release build of xtask (cargo run --release -p xtask)");
        return util::run(
            util::cargo()
                .args([
                    "run",
                    "--release",
                    "--quiet",
                    "-p",
                    "xtask",
                    "--",
                    "bench",
                    "control",
                ])
                .env(RELEASE_ENV, "1"),
        );
    }
    crate::setup::setup()?;
    let mut figures = Vec::new();
    for store in ["sqlite", "etcd"] {
        let vx = Vxmesh::build(&format!("vxbctl-{}", &store[..1]))?;
        let lab = vx.up(&[
            "--store",
            store,
            "--hosts",
            "3",
            "--containers-per-host",
            "0",
            "--networks",
            "1",
        ])?;
        let f = measure(&vx, store);
        lab.finish()?;
        figures.push((store, f?));
    }
    heading("bench control: from `endpoint add` returning to the entry on every other host (200 adds), 1,000 endpoints in bulk on 3 hosts");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (store, f) in &figures {
        let mut sorted = f.delays.clone();
        sorted.sort();
        let (p50, p99) = (percentile(&sorted, 0.5), percentile(&sorted, 0.99));
        let goal = if *store == "etcd" {
            GOAL_P99_ETCD_MS
        } else {
            GOAL_P99_SQLITE_MS
        };
        row(
            &format!("{store}: add -> programmed, p50 / p99 / max"),
            format!(
                "{:7.1} / {:7.1} / {:7.1} ms   (goal p99 <= {goal} ms: {})",
                ms(p50),
                ms(p99),
                ms(*sorted.last().unwrap()),
                at_most(ms(p99), goal)
            ),
        );
        row(
            &format!("{store}: {BULK} endpoints written / converged"),
            format!(
                "{:7.2} / {:7.2} s   (goal converged <= {GOAL_BULK_S} s: {})",
                f.bulk_written.as_secs_f64(),
                f.bulk_converged.as_secs_f64(),
                at_most(f.bulk_converged.as_secs_f64(), GOAL_BULK_S)
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_monitors_lines() {
        assert_eq!(
            programmed_mac(
                "0a:58:0a:0a:01:05 dev vx-net1 dst 10.99.0.2 self permanent",
                false
            ),
            Some("0a:58:0a:0a:01:05".into())
        );
        assert_eq!(
            programmed_mac("0a:58:0a:0a:01:05 dev vx-net1 master vb-net1 static", false),
            None
        );
        assert_eq!(
            programmed_mac(
                "10.10.1.5 dev vb-net1 lladdr 0a:58:0a:0a:01:05 PERMANENT",
                true
            ),
            Some("0a:58:0a:0a:01:05".into())
        );
        assert_eq!(
            programmed_mac(
                "Deleted 10.10.1.5 dev vb-net1 lladdr 0a:58:0a:0a:01:05 PERMANENT",
                true
            ),
            None
        );
        assert_eq!(others(4), ["h1", "h3"]);
    }
}
