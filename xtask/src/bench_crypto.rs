//! `cargo xtask bench crypto`: TCP throughput, in one run and interleaved, across vxmesh's
//! encrypted network with the batched WireGuard datapath (the default), across the same with
//! the legacy one (boringtun's own device, `VXMESH_WG_DATAPATH=legacy`, a second lab), across
//! the plain network of the first lab, and between two wireguard-go peers on the same machine
//! (configured with `ip` and `wg`); with the CPU the agents (and the wireguard-go processes)
//! used per Gbit/s, and each agent thread's share during the batched runs (where the
//! userspace datapath spends its time).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::bench::Options;
use crate::lab::{bare_ip, LabStatus, Vxmesh};
use crate::util::{self, heading, say};

const PREFIX: &str = "vxbcrypto";
/// The lab whose agents run the legacy datapath.
const LEGACY_PREFIX: &str = "vxbcryptl";

/// One measurement: throughput, retransmits, and the CPU (cores) of the processes that do
/// the encryption, if measured.
#[derive(Debug, Clone, Copy)]
struct Run {
    bps: f64,
    retransmits: Option<u64>,
    cores: Option<f64>,
}

impl Run {
    /// Cores per Gbit/s.
    fn cost(&self) -> Option<f64> {
        self.cores.map(|c| c / (self.bps / 1e9))
    }
}

/// The measurements of one figure over the rounds.
#[derive(Default)]
struct Figure(Vec<Run>);

impl Figure {
    fn median_bps(&self) -> f64 {
        median(self.0.iter().map(|r| r.bps))
    }

    fn retransmits(&self) -> Option<u64> {
        let mut v: Vec<u64> = self.0.iter().filter_map(|r| r.retransmits).collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied()
    }

    fn median_cost(&self) -> Option<f64> {
        let v: Vec<f64> = self.0.iter().filter_map(Run::cost).collect();
        (!v.is_empty()).then(|| median(v.into_iter()))
    }

    fn median_cores(&self) -> Option<f64> {
        let v: Vec<f64> = self.0.iter().filter_map(|r| r.cores).collect();
        (!v.is_empty()).then(|| median(v.into_iter()))
    }

    fn show(&self, who: &str) -> String {
        let mut s = format!("{:>6.0} Mbit/s", self.median_bps() / 1e6);
        if let Some(r) = self.retransmits() {
            s += &format!(" ({r:>5} retransmits)");
        }
        if let (Some(c), Some(k)) = (self.median_cores(), self.median_cost()) {
            s += &format!("  {who} {c:.2} core, {k:.2} core per Gbit/s");
        }
        s
    }
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The WireGuard implementation each node of a lab reports (`vxmesh node ls --json`).
fn implementations(vx: &Vxmesh, status: &LabStatus) -> Result<Vec<String>> {
    let json = util::output(&mut util::cmd(
        vx.bin.to_str().context("binary path")?,
        ["--store", &status.store, "--json", "node", "ls"],
    ))?;
    let nodes: Vec<serde_json::Value> = serde_json::from_str(&json)?;
    Ok(nodes
        .iter()
        .map(|n| {
            format!(
                "{}: {}",
                n["name"].as_str().unwrap_or("?"),
                n["wireguard"]["implementation"].as_str().unwrap_or("none")
            )
        })
        .collect())
}

fn agents(status: &LabStatus) -> Vec<(String, u32)> {
    status
        .hosts
        .iter()
        .filter_map(|h| Some((h.name.clone(), h.agent_pid?)))
        .collect()
}

pub fn crypto(opts: &Options) -> Result<()> {
    util::require_root("bench crypto")?;
    let vx = Vxmesh::build(PREFIX)?;
    let legacy = vx.with_env(LEGACY_PREFIX, &[("VXMESH_WG_DATAPATH", "legacy")]);
    let wg = WgGoPair::create()?;
    // net1 (h*-c1) encrypted, net2 (h*-c2) plain; the legacy lab: net1 encrypted only.
    let args = |cph: u32, nets: u32| {
        format!("--hosts 2 --containers-per-host {cph} --networks {nets} --encrypted-networks 1")
    };
    let (a, b) = (args(2, 2), args(1, 1));
    let guard = vx.up(&a.split_whitespace().collect::<Vec<_>>())?;
    let legacy_guard = legacy.up(&b.split_whitespace().collect::<Vec<_>>())?;
    let (mut batched, mut old, mut plain, mut wgo) = (
        Figure::default(),
        Figure::default(),
        Figure::default(),
        Figure::default(),
    );
    let mut threads: BTreeMap<String, f64> = BTreeMap::new();
    let result = (|| -> Result<()> {
        let status = vx.status()?;
        status.check_agents()?;
        let lstatus = legacy.status()?;
        lstatus.check_agents()?;
        let find = |st: &LabStatus, name: &str| {
            st.containers
                .iter()
                .find(|c| c.name == name)
                .cloned()
                .with_context(|| format!("no container {name} in lab {}", st.prefix))
        };
        let (e1, e2, p1, p2) = (
            find(&status, "h1-c1")?,
            find(&status, "h2-c1")?,
            find(&status, "h1-c2")?,
            find(&status, "h2-c2")?,
        );
        let (l1, l2) = (find(&lstatus, "h1-c1")?, find(&lstatus, "h2-c1")?);
        vx.wait_reachable(&e1.name, bare_ip(&e2.address), Duration::from_secs(30))?;
        vx.wait_reachable(&p1.name, bare_ip(&p2.address), Duration::from_secs(30))?;
        legacy.wait_reachable(&l1.name, bare_ip(&l2.address), Duration::from_secs(30))?;
        let imps = implementations(&vx, &status)?;
        let limps = implementations(&legacy, &lstatus)?;
        say(&format!(
            "lab {PREFIX}: {}; lab {LEGACY_PREFIX}: {}",
            imps.join(", "),
            limps.join(", ")
        ));
        if !imps.iter().all(|i| i.contains("batched"))
            || limps.iter().any(|i| i.contains("batched"))
        {
            bail!("the labs do not run the datapaths compared: {imps:?} / {limps:?}");
        }
        let (vx_agents, legacy_agents) = (agents(&status), agents(&lstatus));
        let wg_pids = wg.pids();
        let secs = opts.seconds;
        for round in 1..=opts.rounds {
            say(&format!("round {round} of {}", opts.rounds));
            heading(&format!(
                "encrypted network {}, batched datapath: {} -> {}",
                e1.network, e1.name, e2.name
            ));
            let (r, per_thread) =
                measure(&e2.namespace, &e1.namespace, &e2.address, secs, &vx_agents)?;
            for (k, v) in per_thread {
                *threads.entry(k).or_default() += v;
            }
            batched.0.push(r);
            heading(&format!(
                "encrypted network, legacy datapath (lab {LEGACY_PREFIX}): {} -> {}",
                l1.name, l2.name
            ));
            old.0.push(
                measure(
                    &l2.namespace,
                    &l1.namespace,
                    &l2.address,
                    secs,
                    &legacy_agents,
                )?
                .0,
            );
            heading(&format!(
                "plain network {}: {} -> {}",
                p1.network, p1.name, p2.name
            ));
            plain
                .0
                .push(measure(&p2.namespace, &p1.namespace, &p2.address, secs, &[])?.0);
            heading("wireguard-go <-> wireguard-go (same topology: namespaces over veth)");
            wgo.0
                .push(measure(&wg.ns[1], &wg.ns[0], WG_TUNNEL[1], secs, &wg_pids)?.0);
        }
        Ok(())
    })();
    if let Err(e) = result {
        drop(legacy_guard);
        drop(guard);
        return Err(e);
    }
    let finished = legacy_guard.finish().and(guard.finish());
    drop(wg);
    report(opts, &batched, &old, &plain, &wgo, threads);
    finished
}

fn report(
    opts: &Options,
    batched: &Figure,
    old: &Figure,
    plain: &Figure,
    wgo: &Figure,
    threads: BTreeMap<String, f64>,
) {
    heading(&format!(
        "bench crypto: TCP, one stream, {} s x {} rounds, medians",
        opts.seconds, opts.rounds
    ));
    println!(
        "encrypted, batched datapath (vxmesh default)  {}",
        batched.show("agents")
    );
    println!(
        "encrypted, legacy datapath (boringtun device) {}",
        old.show("agents")
    );
    println!(
        "wireguard-go <-> wireguard-go                 {}",
        wgo.show("wireguard-go")
    );
    println!(
        "plain overlay (vxmesh VXLAN)                  {}",
        plain.show("agents")
    );
    let (b, o, p, w) = (
        batched.median_bps(),
        old.median_bps(),
        plain.median_bps(),
        wgo.median_bps(),
    );
    println!(
        "batched / legacy: {:.2} (goal >= 3.00); batched / plain: {:.2} (goal >= 0.25); \
         batched / wireguard-go: {:.2}; legacy / plain: {:.2}",
        b / o,
        b / p,
        b / w,
        o / p
    );
    let rounds: Vec<String> = batched
        .0
        .iter()
        .zip(&old.0)
        .zip(&plain.0)
        .map(|((b, o), p)| format!("{:.2} / {:.2}", b.bps / o.bps, b.bps / p.bps))
        .collect();
    println!(
        "round by round, batched / legacy and batched / plain: {}",
        rounds.join(", ")
    );
    println!(
        "CPU per Gbit/s (cores busy / Gbit/s, the sending and receiving agents or wireguard-go \
         processes together, kernel work in their system calls included):"
    );
    for (name, f) in [("batched", batched), ("legacy", old), ("wireguard-go", wgo)] {
        if let Some(k) = f.median_cost() {
            println!("  {name:<13} {k:.2}");
        }
    }
    println!("agent threads during the batched runs (CPU share of one core, mean):");
    let mut rows: Vec<_> = threads.into_iter().collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (k, v) in rows.iter().filter(|(_, v)| *v >= 0.01) {
        let per_round = v / f64::from(opts.rounds);
        println!("  {k:<40} {:>5.1} %", per_round * 100.0);
    }
}

fn show(r: &Run) -> String {
    let mut s = match r.retransmits {
        Some(n) => format!("{:.0} Mbit/s ({n} retransmits)", r.bps / 1e6),
        None => format!("{:.0} Mbit/s", r.bps / 1e6),
    };
    if let (Some(c), Some(k)) = (r.cores, r.cost()) {
        s += &format!(", {c:.2} core busy, {k:.2} core per Gbit/s");
    }
    s
}

/// CPU seconds used so far by every thread of the given processes, by "host/thread-name tid".
fn thread_cpu(procs: &[(String, u32)]) -> BTreeMap<String, f64> {
    let tick = 100.0; // USER_HZ on Linux
    let mut out = BTreeMap::new();
    for (host, pid) in procs {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in dir.flatten() {
            let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
                continue;
            };
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let name = head.split_once('(').map_or("", |x| x.1);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let (u, s) = (
                f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0),
                f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0),
            );
            let key = format!(
                "{host} agent {name} (tid {})",
                t.file_name().to_string_lossy()
            );
            out.insert(key, (u + s) / tick);
        }
    }
    out
}

/// One iperf3 measurement (the overlay bench's runner) to `server` (an address, a prefix
/// length allowed), with the CPU `procs` used meanwhile (cores: in all, and by thread) unless
/// none are given.
fn measure(
    server_ns: &str,
    client_ns: &str,
    server: &str,
    seconds: u32,
    procs: &[(String, u32)],
) -> Result<(Run, BTreeMap<String, f64>)> {
    let before = thread_cpu(procs);
    let m = crate::bench::iperf(server_ns, client_ns, bare_ip(server), seconds)?;
    let per_thread: BTreeMap<String, f64> = thread_cpu(procs)
        .into_iter()
        .map(|(k, v)| {
            let d = (v - before.get(&k).copied().unwrap_or(0.0)) / f64::from(seconds);
            (k, d)
        })
        .collect();
    let r = Run {
        bps: m.bps,
        retransmits: m.retransmits,
        cores: (!procs.is_empty()).then(|| per_thread.values().sum()),
    };
    say(&show(&r));
    Ok((r, per_thread))
}

const WG_UNDERLAY: [&str; 2] = ["10.202.0.1", "10.202.0.2"];
const WG_TUNNEL: [&str; 2] = ["10.203.0.1", "10.203.0.2"];

/// Two namespaces joined by a veth (MTU 1500), each with a wireguard-go interface (MTU 1440),
/// peers of each other. Interface names carry the pid: wireguard-go's control sockets share
/// /var/run/wireguard across namespaces.
struct WgGoPair {
    ns: [String; 2],
    ifs: [String; 2],
}

impl WgGoPair {
    fn create() -> Result<Self> {
        let pid = std::process::id();
        let pair = WgGoPair {
            ns: [format!("vxbwg-{pid}-a"), format!("vxbwg-{pid}-b")],
            ifs: [format!("wgb{pid}a"), format!("wgb{pid}b")],
        };
        heading("two wireguard-go peers (namespaces over a veth, configured with ip and wg)");
        let ip = |args: &[&str]| util::run(&mut util::cmd("ip", args));
        for ns in &pair.ns {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "-n",
            &pair.ns[0],
            "link",
            "add",
            "eth0",
            "mtu",
            "1500",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "mtu",
            "1500",
            "netns",
            &pair.ns[1],
        ])?;
        let mut keys = vec![];
        let dir = std::env::temp_dir().join(format!("vxbwg-{pid}"));
        std::fs::create_dir_all(&dir)?;
        for i in 0..2 {
            let (ns, ifn) = (&pair.ns[i], &pair.ifs[i]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", WG_UNDERLAY[i]),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            util::run(&mut util::in_netns(ns, "wireguard-go", [ifn.as_str()]))?;
            let private = util::output(&mut util::cmd("wg", ["genkey"]))?;
            let file = dir.join(format!("key{i}"));
            std::fs::write(&file, private.trim())?;
            let public = {
                use std::io::Write;
                let mut c = std::process::Command::new("wg")
                    .arg("pubkey")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()?;
                c.stdin.take().unwrap().write_all(private.as_bytes())?;
                String::from_utf8(c.wait_with_output()?.stdout)?
                    .trim()
                    .to_string()
            };
            util::run(&mut util::in_netns(
                ns,
                "wg",
                [
                    "set",
                    ifn,
                    "private-key",
                    file.to_str().unwrap(),
                    "listen-port",
                    "51820",
                ],
            ))?;
            keys.push(public);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", WG_TUNNEL[i]),
                "dev",
                ifn,
            ])?;
            ip(&["-n", ns, "link", "set", ifn, "mtu", "1440", "up"])?;
        }
        for i in 0..2 {
            let j = 1 - i;
            util::run(&mut util::in_netns(
                &pair.ns[i],
                "wg",
                [
                    "set",
                    &pair.ifs[i],
                    "peer",
                    &keys[j],
                    "endpoint",
                    &format!("{}:51820", WG_UNDERLAY[j]),
                    "allowed-ips",
                    &format!("{}/32", WG_TUNNEL[j]),
                ],
            ))?;
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(pair)
    }
}

impl WgGoPair {
    /// The wireguard-go processes serving the two interfaces (found by their command line).
    fn pids(&self) -> Vec<(String, u32)> {
        let mut out = vec![];
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return out;
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            let is_wg = args.first().is_some_and(|a| a.ends_with(b"wireguard-go"));
            for ifn in &self.ifs {
                if is_wg && args.contains(&ifn.as_bytes()) {
                    out.push((ifn.clone(), pid));
                }
            }
        }
        out
    }
}

impl Drop for WgGoPair {
    fn drop(&mut self) {
        for (ns, ifn) in self.ns.iter().zip(&self.ifs) {
            let _ = util::run_quiet(&mut util::cmd("ip", ["-n", ns, "link", "del", ifn]));
            let _ = util::run_quiet(&mut util::cmd("ip", ["netns", "del", ns]));
        }
    }
}
