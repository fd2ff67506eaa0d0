//! `cargo xtask bench overlay`: iperf3 TCP throughput, side by side in one
//! run: host to host across the lab's underlay, container to container
//! across the vxmesh overlay (bridge datapath, then eBPF fast path: the same
//! lab, its agents restarted with `--datapath`), and the same topology built
//! by hand with iproute2; with the agents' CPU during each overlay transfer.
//! Prints figures and ratios against the goals; asserts nothing.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::bench_fast::{self, Datapath};
use crate::lab::{bare_ip, Vxmesh};
use crate::util::{self, heading, say};

const PREFIX: &str = "vxbench";

pub struct Options {
    pub seconds: u32,
    /// How many times each figure is measured (interleaved); the report gives medians.
    pub rounds: u32,
    /// Measure only the by-hand link (no vxmesh build, no lab); `bench lb`: only its part (a).
    pub no_lab: bool,
    /// `bench lb --only PART[,PART]`: measure only those parts (tc, http, delay, scale).
    pub only: Option<Vec<String>>,
    /// `--cpus LIST`: every iperf3 (client and server) runs on these CPUs (taskset -c).
    pub cpus: Option<String>,
}

pub fn parse(args: &[String]) -> Result<(String, Options)> {
    let mut opts = Options {
        seconds: 10,
        rounds: 3,
        no_lab: false,
        only: None,
        cpus: None,
    };
    let mut which = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a value")?;
                opts.seconds = parse_seconds(v)?;
            }
            s if s.starts_with("--seconds=") => {
                opts.seconds = parse_seconds(&s["--seconds=".len()..])?;
            }
            "--rounds" => {
                let v = it.next().context("--rounds needs a value")?;
                opts.rounds = parse_rounds(v)?;
            }
            s if s.starts_with("--rounds=") => {
                opts.rounds = parse_rounds(&s["--rounds=".len()..])?;
            }
            "--no-lab" => opts.no_lab = true,
            "--only" => {
                let v = it.next().context("--only needs a value")?;
                opts.only = Some(v.split(',').map(str::to_string).collect());
            }
            "--cpus" => {
                let v = it.next().context("--cpus needs a value")?;
                if v.is_empty()
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b == b',' || b == b'-')
                {
                    bail!("--cpus takes a CPU list like 0 or 0,1 or 0-1, not {v:?}");
                }
                opts.cpus = Some(v.clone());
            }
            s if s.starts_with('-') => bail!("unknown option {s:?} for `cargo xtask bench`"),
            s if which.is_none() => which = Some(s.to_string()),
            s => bail!("unexpected argument {s:?} for `cargo xtask bench`"),
        }
    }
    let which =
        which.context("which benchmark? available: overlay, crypto, cni, lb, mesh, control")?;
    Ok((which, opts))
}

fn parse_rounds(v: &str) -> Result<u32> {
    match v.parse::<u32>() {
        Ok(n) if (1..=20).contains(&n) => Ok(n),
        _ => bail!("--rounds must be a whole number from 1 to 20, not {v:?}"),
    }
}

fn parse_seconds(v: &str) -> Result<u32> {
    match v.parse::<u32>() {
        Ok(n) if (1..=3600).contains(&n) => Ok(n),
        _ => bail!("--seconds must be a whole number from 1 to 3600, not {v:?}"),
    }
}

pub fn bench(args: &[String]) -> Result<()> {
    let (which, opts) = parse(args)?;
    match which.as_str() {
        "overlay" => overlay(&opts),
        "cni" => crate::bench_cni::bench(&opts),
        "crypto" => crate::bench_crypto::crypto(&opts),
        "lb" => crate::bench_lb::bench(args, &opts),
        "mesh" => crate::bench_mesh::bench(&opts),
        "control" => crate::bench_control::bench(&opts),
        other => {
            bail!("unknown benchmark {other:?}; available: overlay, crypto, cni, lb, mesh, control")
        }
    }
}

/// One iperf3 result.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measure {
    /// end.sum_received.bits_per_second
    pub(crate) bps: f64,
    /// end.sum_sent.retransmits
    pub(crate) retransmits: Option<u64>,
}

impl Measure {
    fn show(&self) -> String {
        match self.retransmits {
            Some(r) => format!("{}  ({r} retransmits)", gbit(self.bps)),
            None => gbit(self.bps),
        }
    }
}

/// Every round's measurement of each figure.
#[derive(Default)]
struct Figures {
    lab_underlay: Vec<Measure>,
    lab_overlay: Vec<Measure>,
    /// The overlay on the eBPF fast path (`agent --datapath ebpf`).
    lab_ebpf: Vec<Measure>,
    /// The agents' CPU (cores) during each overlay transfer: bridge, ebpf.
    cpu_bridge: Vec<f64>,
    cpu_ebpf: Vec<f64>,
    hand_underlay: Vec<Measure>,
    hand_vxlan: Vec<Measure>,
}

/// The median (by throughput) of a figure's rounds, with the lowest and highest throughput.
fn median(m: &[Measure]) -> Option<(Measure, f64, f64)> {
    let mut v = m.to_vec();
    v.sort_by(|a, b| a.bps.total_cmp(&b.bps));
    let mid = *v.get(v.len() / 2)?;
    Some((mid, v[0].bps, v[v.len() - 1].bps))
}

/// The acceptance goals: overlay / underlay (issue 12: on the eBPF fast path), and overlay
/// / by hand.
const GOAL_OF_UNDERLAY: f64 = 0.90;
const GOAL_OF_HAND: f64 = 1.00;

/// CPUs every iperf3 of this run is pinned to (`--cpus`), when set.
static IPERF_CPUS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `cmd` run through `taskset -c CPUS` when `--cpus` was given.
fn pinned(cmd: std::process::Command) -> std::process::Command {
    let Some(cpus) = IPERF_CPUS.get() else {
        return cmd;
    };
    let mut t = std::process::Command::new("taskset");
    t.args(["-c", cpus])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    t
}

fn overlay(opts: &Options) -> Result<()> {
    util::require_root("bench overlay")?;
    if let Some(cpus) = &opts.cpus {
        let _ = IPERF_CPUS.set(cpus.clone());
        say(&format!(
            "every iperf3 runs on CPU(s) {cpus} (taskset): with one CPU, sender, receiver and \
             every softirq share it, so the figures compare the paths' cost per byte"
        ));
    }
    crate::setup::setup()?;
    let vx = if opts.no_lab {
        None
    } else {
        Some(Vxmesh::build(PREFIX)?)
    };
    remove_stale_namespaces();

    say("Four TCP throughputs (iperf3, one stream, one after the other, same run):");
    say("  underlay: host to host across the lab's underlay switch (veth, bridge, veth);");
    say("  overlay:  container to container across the vxmesh overlay (veth, bridge, VXLAN,");
    say("            the same underlay, VXLAN, bridge, veth), MTU 1450, agents programming it;");
    say("  ebpf:     the same containers with the agents on --datapath ebpf (veth, tc redirect");
    say("            to VXLAN, the same underlay, VXLAN, tc redirect_peer into the container);");
    say("  by hand:  the same topology and MTUs built with iproute2, no vxmesh involved.");
    let mut figures = Figures::default();
    let result = (|| -> Result<()> {
        let hand = HandLink::create()?;
        hand.check()?;
        match &vx {
            Some(vx) => lab(vx, opts, &hand, &mut figures),
            None => (0..opts.rounds).try_for_each(|_| hand.measure(opts, &mut figures)),
        }
    })();
    report(opts, &figures);
    result
}

fn gbit(bps: f64) -> String {
    format!("{:6.2} Gbit/s", bps / 1e9)
}

fn verdict(ratio: f64, goal: f64) -> &'static str {
    if ratio >= goal {
        "met"
    } else {
        "NOT met"
    }
}

fn report(opts: &Options, f: &Figures) {
    heading(&format!(
        "results: iperf3 TCP, 1 stream, {} s each, {} interleaved round(s), medians \
         (noisy: compare only within a run)",
        opts.seconds, opts.rounds
    ));
    let row = |label: &str, value: String| say(&format!("{label:<52}{value}"));
    let show = |label: &str, m: &[Measure]| -> Option<Measure> {
        let (mid, lo, hi) = median(m)?;
        let range = if m.len() > 1 {
            format!("  [{:.2}..{:.2}]", lo / 1e9, hi / 1e9)
        } else {
            String::new()
        };
        row(label, format!("{}{range}", mid.show()));
        Some(mid)
    };
    let lab_underlay = show(
        "underlay  host -> host (lab, veth+bridge+veth)",
        &f.lab_underlay,
    );
    let lab_overlay = show(
        "overlay   container -> container (vxmesh, bridge)",
        &f.lab_overlay,
    );
    let lab_ebpf = show(
        "ebpf      container -> container (vxmesh, ebpf)",
        &f.lab_ebpf,
    );
    let hand_vxlan = show(
        "by hand   container -> container (iproute2 VXLAN)",
        &f.hand_vxlan,
    );
    let hand_underlay = show("(by hand  host -> host, its underlay)", &f.hand_underlay);
    if let (Some(e), Some(u)) = (lab_ebpf, lab_underlay) {
        let r = e.bps / u.bps;
        row(
            "ebpf / underlay",
            format!(
                "{r:6.2}   goal >= {GOAL_OF_UNDERLAY:.2}: {}",
                verdict(r, GOAL_OF_UNDERLAY)
            ),
        );
    }
    if let (Some(o), Some(u)) = (lab_overlay, lab_underlay) {
        row(
            "overlay (bridge) / underlay",
            format!("{:6.2}", o.bps / u.bps),
        );
    }
    if let (Some(e), Some(o)) = (lab_ebpf, lab_overlay) {
        row("ebpf / overlay (bridge)", format!("{:6.2}", e.bps / o.bps));
    }
    for (label, cpu, m) in [
        ("agents' CPU, bridge datapath", &f.cpu_bridge, lab_overlay),
        ("agents' CPU, ebpf datapath", &f.cpu_ebpf, lab_ebpf),
    ] {
        if let (Some(m), false) = (m, cpu.is_empty()) {
            let mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
            row(label, bench_fast::show_cpu(mean, m.bps));
        }
    }
    if let (Some(o), Some(h)) = (lab_overlay, hand_vxlan) {
        let r = o.bps / h.bps;
        row(
            "overlay / by hand",
            format!(
                "{r:6.2}   goal >= {GOAL_OF_HAND:.2}: {}",
                verdict(r, GOAL_OF_HAND)
            ),
        );
    }
    if lab_overlay.is_none() {
        if let (Some(h), Some(u)) = (hand_vxlan, hand_underlay) {
            row("by hand / its underlay", format!("{:6.2}", h.bps / u.bps));
        }
    }
}

// ---------------------------------------------------------------- the lab

/// Brings the lab up, measures its underlay and overlay, then the by-hand
/// link while the lab is still up (so both see the same machine), and takes
/// the lab down.
fn lab(vx: &Vxmesh, opts: &Options, hand: &HandLink, f: &mut Figures) -> Result<()> {
    let guard = vx.up(&[
        "--hosts",
        "2",
        "--containers-per-host",
        "1",
        "--networks",
        "1",
    ])?;
    let result = (|| -> Result<()> {
        let first = vx.status()?;
        first.check_agents()?;
        let (a, b) = first.cross_host_pair()?;
        let host_a = first.host(&a.host)?;
        let host_b = first.host(&b.host)?;
        let (mut status, mut current) = (first.clone(), Datapath::Bridge);
        vx.wait_reachable(&a.name, bare_ip(&b.address), Duration::from_secs(20))?;

        for round in 1..=opts.rounds {
            say(&format!("round {round} of {}", opts.rounds));
            heading(&format!(
                "underlay: host {} ({}) -> host {} ({})",
                host_a.name,
                bare_ip(&host_a.address),
                host_b.name,
                bare_ip(&host_b.address)
            ));
            let r = iperf(
                &host_b.namespace,
                &host_a.namespace,
                bare_ip(&host_b.address),
                opts.seconds,
            )?;
            say(&r.show());
            f.lab_underlay.push(r);

            // One switch a round: odd rounds bridge then ebpf, even rounds the reverse.
            let order = if round % 2 == 1 {
                [Datapath::Bridge, Datapath::Ebpf]
            } else {
                [Datapath::Ebpf, Datapath::Bridge]
            };
            for datapath in order {
                if datapath != current {
                    status = bench_fast::switch(vx, &status, datapath)?;
                    current = datapath;
                }
                heading(&format!(
                    "overlay ({}): container {} ({}) -> container {} ({}) on {}",
                    datapath.name(),
                    a.name,
                    bare_ip(&a.address),
                    b.name,
                    bare_ip(&b.address),
                    a.network
                ));
                let (r, cpu) = bench_fast::with_agent_cpu(&status, || {
                    iperf(
                        &b.namespace,
                        &a.namespace,
                        bare_ip(&b.address),
                        opts.seconds,
                    )
                })?;
                say(&format!(
                    "{}; agents {}",
                    r.show(),
                    bench_fast::show_cpu(cpu, r.bps)
                ));
                match datapath {
                    Datapath::Bridge => {
                        f.lab_overlay.push(r);
                        f.cpu_bridge.push(cpu);
                    }
                    Datapath::Ebpf => {
                        f.lab_ebpf.push(r);
                        f.cpu_ebpf.push(cpu);
                    }
                }
            }

            hand.measure(opts, f)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => guard.finish(),
        Err(e) => {
            drop(guard);
            Err(e)
        }
    }
}

// ------------------------------------------------------------ by hand

/// The by-hand link's underlay (the hosts' `eth0`) and overlay (the containers' `eth0`).
const HAND_UNDERLAY: [&str; 2] = ["10.201.0.1", "10.201.0.2"];
const HAND_OVERLAY: [&str; 2] = ["192.168.201.1", "192.168.201.2"];
/// Same MTUs as the lab: underlay 1500, overlay 1500 - 50.
const HAND_UNDERLAY_MTU: &str = "1500";
const HAND_OVERLAY_MTU: &str = "1450";
/// Namespaces of the by-hand topology: `vxbhand-<pid>-<role>`.
const HAND_PREFIX: &str = "vxbhand-";
const HAND_ROLES: [&str; 5] = ["sw", "h1", "h2", "c1", "c2"];

/// The lab's topology rebuilt with iproute2, so that only who programs the
/// kernel differs: a switch namespace with a bridge `sw0`, two host
/// namespaces on it (veth `eth0`, MTU 1500), in each host a bridge `br0`
/// with a VXLAN device (VNI 42, dstport 4789, `local`, `dev eth0`,
/// `nolearning`, `udpcsum` — the flags vxmesh sets) and a veth to a
/// container namespace (`eth0`, MTU 1450), and one all-zero FDB entry to
/// the other host. Deleted on drop.
struct HandLink {
    ns: Vec<String>,
}

impl HandLink {
    fn ns(&self, role: &str) -> &str {
        let i = HAND_ROLES
            .iter()
            .position(|r| *r == role)
            .expect("a role of HAND_ROLES");
        &self.ns[i]
    }

    fn create() -> Result<Self> {
        let pid = std::process::id();
        let mut link = HandLink { ns: Vec::new() };
        heading(&format!(
            "building the lab's topology by hand with iproute2 (namespaces {HAND_PREFIX}{pid}-*)"
        ));
        for role in HAND_ROLES {
            let ns = format!("{HAND_PREFIX}{pid}-{role}");
            util::run_quiet(&mut util::cmd("ip", ["netns", "add", &ns]))?;
            link.ns.push(ns);
        }
        let sw = link.ns("sw").to_string();
        let ip = |ns: &str, args: &[&str]| -> Result<()> {
            let mut c = util::cmd("ip", ["-n", ns].iter().chain(args));
            say(&format!("$ {}", util::display(&c)));
            util::run_quiet(&mut c)
        };
        ip(
            &sw,
            &[
                "link",
                "add",
                "sw0",
                "mtu",
                HAND_UNDERLAY_MTU,
                "type",
                "bridge",
            ],
        )?;
        ip(&sw, &["link", "set", "sw0", "up"])?;
        for i in 0..2 {
            let (h, c) = (link.ns(["h1", "h2"][i]), link.ns(["c1", "c2"][i]));
            let port = ["h1", "h2"][i];
            let (local, remote) = (HAND_UNDERLAY[i], HAND_UNDERLAY[1 - i]);
            // The host on the switch.
            ip(
                &sw,
                &[
                    "link",
                    "add",
                    port,
                    "mtu",
                    HAND_UNDERLAY_MTU,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "mtu",
                    HAND_UNDERLAY_MTU,
                    "netns",
                    h,
                ],
            )?;
            ip(&sw, &["link", "set", port, "master", "sw0", "up"])?;
            ip(h, &["link", "set", "lo", "up"])?;
            ip(h, &["addr", "add", &format!("{local}/24"), "dev", "eth0"])?;
            ip(h, &["link", "set", "eth0", "up"])?;
            // The host's bridge and VXLAN device.
            ip(
                h,
                &[
                    "link",
                    "add",
                    "br0",
                    "mtu",
                    HAND_OVERLAY_MTU,
                    "type",
                    "bridge",
                ],
            )?;
            ip(h, &["link", "set", "br0", "up"])?;
            ip(
                h,
                &[
                    "link",
                    "add",
                    "vx0",
                    "mtu",
                    HAND_OVERLAY_MTU,
                    "type",
                    "vxlan",
                    "id",
                    "42",
                    "dstport",
                    "4789",
                    "local",
                    local,
                    "dev",
                    "eth0",
                    "nolearning",
                    "udpcsum",
                ],
            )?;
            ip(h, &["link", "set", "vx0", "master", "br0", "up"])?;
            let mut fdb = util::in_netns(
                h,
                "bridge",
                [
                    "fdb",
                    "append",
                    "00:00:00:00:00:00",
                    "dev",
                    "vx0",
                    "dst",
                    remote,
                ],
            );
            say(&format!("$ {}", util::display(&fdb)));
            util::run_quiet(&mut fdb)?;
            // The container, on the host's bridge.
            ip(
                h,
                &[
                    "link",
                    "add",
                    "ve0",
                    "mtu",
                    HAND_OVERLAY_MTU,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "mtu",
                    HAND_OVERLAY_MTU,
                    "netns",
                    c,
                ],
            )?;
            ip(h, &["link", "set", "ve0", "master", "br0", "up"])?;
            ip(c, &["link", "set", "lo", "up"])?;
            ip(
                c,
                &[
                    "addr",
                    "add",
                    &format!("{}/24", HAND_OVERLAY[i]),
                    "dev",
                    "eth0",
                ],
            )?;
            ip(c, &["link", "set", "eth0", "up"])?;
        }
        Ok(link)
    }
}

impl Drop for HandLink {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        if !self.ns.is_empty() {
            say(&format!("deleted {}", self.ns.join(", ")));
        }
    }
}

impl HandLink {
    /// The first ping also resolves ARP through the flood entry.
    fn check(&self) -> Result<()> {
        let mut ping = util::in_netns(
            self.ns("c1"),
            "ping",
            ["-c", "3", "-i", "0.2", "-W", "1", HAND_OVERLAY[1]],
        );
        util::run_quiet(&mut ping).context("the by-hand VXLAN link does not carry ping")
    }

    fn measure(&self, opts: &Options, f: &mut Figures) -> Result<()> {
        heading(&format!(
            "by hand, VXLAN: container {} -> container {} (VNI 42, MTU {HAND_OVERLAY_MTU})",
            HAND_OVERLAY[0], HAND_OVERLAY[1]
        ));
        let r = iperf(self.ns("c2"), self.ns("c1"), HAND_OVERLAY[1], opts.seconds)?;
        say(&r.show());
        f.hand_vxlan.push(r);

        heading(&format!(
            "by hand, underlay: host {} -> host {}",
            HAND_UNDERLAY[0], HAND_UNDERLAY[1]
        ));
        let r = iperf(self.ns("h2"), self.ns("h1"), HAND_UNDERLAY[1], opts.seconds)?;
        say(&r.show());
        f.hand_underlay.push(r);
        Ok(())
    }
}

/// Namespaces `vxbhand-<pid>-*` whose xtask is gone (killed hard).
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(HAND_PREFIX) else {
            continue;
        };
        let Some((pid, role)) = rest.split_once('-') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if HAND_ROLES.contains(&role)
            && pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            say(&format!("removing {name}, left by an earlier run"));
            let _ = util::run_quiet(&mut util::cmd("ip", ["netns", "del", &name]));
        }
    }
}

// ------------------------------------------------------------ iperf3

/// iperf3 server (one test) in `server_ns`, client in `client_ns` to
/// `server_ip`; returns sum_received bits per second and the retransmits.
pub(crate) fn iperf(
    server_ns: &str,
    client_ns: &str,
    server_ip: &str,
    seconds: u32,
) -> Result<Measure> {
    let mut server = pinned(util::in_netns(
        server_ns,
        "iperf3",
        ["-s", "-1", "-B", server_ip],
    ));
    server.stdin(Stdio::null()).stdout(Stdio::null());
    let _server = util::KillOnDrop::spawn(&mut server)?;

    let secs = seconds.to_string();
    let mut client = pinned(util::in_netns(
        client_ns,
        "iperf3",
        ["-c", server_ip, "-t", &secs, "-J"],
    ));
    say(&format!("$ {}", util::display(&client)));
    // The server needs a moment to listen; a refused connection is retried.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let out = util::capture(&mut client)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json: serde_json::Value = match serde_json::from_str(&stdout) {
            Ok(v) => v,
            Err(e) => bail!(
                "iperf3 printed no JSON ({e}): {}{}",
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        };
        if let Some(err) = json.get("error").and_then(|e| e.as_str()) {
            if attempts < 30 && (err.contains("refused") || err.contains("unable to connect")) {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            bail!("iperf3 to {server_ip}: {err}");
        }
        let bps = json
            .pointer("/end/sum_received/bits_per_second")
            .and_then(|v| v.as_f64())
            .with_context(|| {
                format!("iperf3 JSON has no end.sum_received.bits_per_second: {stdout}")
            })?;
        let retransmits = json
            .pointer("/end/sum_sent/retransmits")
            .and_then(|v| v.as_u64());
        return Ok(Measure { bps, retransmits });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_options() {
        let (which, o) = parse(&args(&["overlay"])).unwrap();
        assert_eq!(
            (which.as_str(), o.seconds, o.no_lab),
            ("overlay", 10, false)
        );
        let (_, o) = parse(&args(&["overlay", "--seconds", "3", "--no-lab"])).unwrap();
        assert_eq!((o.seconds, o.no_lab), (3, true));
        let (_, o) = parse(&args(&["--seconds=5", "overlay"])).unwrap();
        assert_eq!(o.seconds, 5);
        assert!(parse(&args(&["overlay", "--seconds", "0"])).is_err());
        assert!(parse(&args(&["overlay", "--seconds"])).is_err());
        assert!(parse(&args(&["overlay", "--fast"])).is_err());
        assert!(parse(&args(&[])).is_err());
        let (_, o) = parse(&args(&["overlay", "--cpus", "0"])).unwrap();
        assert_eq!(o.cpus.as_deref(), Some("0"));
        assert!(parse(&args(&["overlay", "--cpus", "a"])).is_err());
    }
}
