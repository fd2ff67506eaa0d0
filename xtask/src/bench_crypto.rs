//! `cargo xtask bench crypto`: TCP throughput, in one run and interleaved, across vxmesh's
//! encrypted network, across its plain network (same 2-host lab), and between two wireguard-go
//! peers on the same machine (configured with `ip` and `wg`), plus the CPU each thread of the
//! sending and receiving agents used during the encrypted runs (where the userspace datapath
//! spends its time).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::bench::Options;
use crate::lab::{bare_ip, Vxmesh};
use crate::util::{self, heading, say};

const PREFIX: &str = "vxbcrypto";

pub fn crypto(opts: &Options) -> Result<()> {
    util::require_root("bench crypto")?;
    let vx = Vxmesh::build(PREFIX)?;
    let wg = WgGoPair::create()?;
    let guard = vx.up(&[
        "--hosts",
        "2",
        "--containers-per-host",
        "2",
        "--networks",
        "2",
        "--encrypted-networks",
        "1",
    ])?;
    let mut enc = vec![];
    let mut plain = vec![];
    let mut wgo = vec![];
    let mut threads: BTreeMap<String, f64> = BTreeMap::new();
    let result = (|| -> Result<()> {
        let status = vx.status()?;
        status.check_agents()?;
        let find = |name: &str| {
            status
                .containers
                .iter()
                .find(|c| c.name == name)
                .with_context(|| format!("no container {name}"))
        };
        let (e1, e2, p1, p2) = (
            find("h1-c1")?,
            find("h2-c1")?,
            find("h1-c2")?,
            find("h2-c2")?,
        );
        vx.wait_reachable(&e1.name, bare_ip(&e2.address), Duration::from_secs(30))?;
        vx.wait_reachable(&p1.name, bare_ip(&p2.address), Duration::from_secs(30))?;
        let agents: Vec<(String, u32)> = status
            .hosts
            .iter()
            .filter_map(|h| Some((h.name.clone(), h.agent_pid?)))
            .collect();
        for round in 1..=opts.rounds {
            say(&format!("round {round} of {}", opts.rounds));
            heading(&format!(
                "encrypted network {}: {} -> {}",
                e1.network, e1.name, e2.name
            ));
            let before = thread_cpu(&agents);
            let r = iperf(
                &e2.namespace,
                &e1.namespace,
                bare_ip(&e2.address),
                opts.seconds,
            )?;
            let after = thread_cpu(&agents);
            for (k, v) in &after {
                let d = v - before.get(k).copied().unwrap_or(0.0);
                *threads.entry(k.clone()).or_default() += d / f64::from(opts.seconds);
            }
            say(&show(r));
            enc.push(r);
            heading(&format!(
                "plain network {}: {} -> {}",
                p1.network, p1.name, p2.name
            ));
            let r = iperf(
                &p2.namespace,
                &p1.namespace,
                bare_ip(&p2.address),
                opts.seconds,
            )?;
            say(&show(r));
            plain.push(r);
            heading("wireguard-go <-> wireguard-go (same topology: namespaces over veth)");
            let r = iperf(&wg.ns[1], &wg.ns[0], WG_TUNNEL[1], opts.seconds)?;
            say(&show(r));
            wgo.push(r);
        }
        Ok(())
    })();
    let finished = match result {
        Ok(()) => guard.finish(),
        Err(e) => {
            drop(guard);
            return Err(e);
        }
    };
    drop(wg);
    heading(&format!(
        "bench crypto: TCP, one stream, {} s x {} rounds, medians",
        opts.seconds, opts.rounds
    ));
    let (e, p, w) = (median(&enc), median(&plain), median(&wgo));
    println!("encrypted overlay (vxmesh, boringtun)  {}", show(e));
    println!("plain overlay (vxmesh VXLAN)           {}", show(p));
    println!("wireguard-go <-> wireguard-go          {}", show(w));
    println!(
        "encrypted / wireguard-go: {:.2} (goal >= 1.00); encrypted / plain: {:.2}",
        e.0 / w.0,
        e.0 / p.0
    );
    println!("agent threads during the encrypted runs (CPU share of one core, mean):");
    let mut rows: Vec<_> = threads.into_iter().collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (k, v) in rows.iter().filter(|(_, v)| *v >= 0.01) {
        let per_round = v / f64::from(opts.rounds);
        println!("  {k:<40} {:>5.1} %", per_round * 100.0);
    }
    finished
}

fn show(m: (f64, Option<u64>)) -> String {
    match m.1 {
        Some(r) => format!("{:.0} Mbit/s ({r} retransmits)", m.0 / 1e6),
        None => format!("{:.0} Mbit/s", m.0 / 1e6),
    }
}

fn median(v: &[(f64, Option<u64>)]) -> (f64, Option<u64>) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.0.total_cmp(&b.0));
    s.get(s.len() / 2).copied().unwrap_or((0.0, None))
}

/// CPU seconds used so far by every thread of the given processes, by "host/thread-name tid".
fn thread_cpu(agents: &[(String, u32)]) -> BTreeMap<String, f64> {
    let tick = 100.0; // USER_HZ on Linux
    let mut out = BTreeMap::new();
    for (host, pid) in agents {
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

/// One iperf3 measurement (the overlay bench's runner): throughput and retransmits.
fn iperf(
    server_ns: &str,
    client_ns: &str,
    server_ip: &str,
    seconds: u32,
) -> Result<(f64, Option<u64>)> {
    let m = crate::bench::iperf(server_ns, client_ns, server_ip, seconds)?;
    Ok((m.bps, m.retransmits))
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

impl Drop for WgGoPair {
    fn drop(&mut self) {
        for (ns, ifn) in self.ns.iter().zip(&self.ifs) {
            let _ = util::run_quiet(&mut util::cmd("ip", ["-n", ns, "link", "del", ifn]));
            let _ = util::run_quiet(&mut util::cmd("ip", ["netns", "del", ns]));
        }
    }
}
