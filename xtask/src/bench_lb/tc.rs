//! Part (a): `vx_from_lxc` under BPF_PROG_TEST_RUN (`Datapath::bench_tc`, the kernel's own
//! per-run time) with 1, 1,000 and 10,000 services × 10 backends, each size on a datapath of
//! its own under the bench's pin root, measured in interleaved rounds.
//!
//! A test run repeats the program on one skb without restoring it between runs, so a packet
//! the program translates is, from the second run on, addressed to its backend. Each path is
//! therefore built so that the packet stays what it is meant to be, and the kernel's own
//! counters (`vx_stats`) over the timed runs say which path every run took:
//!
//! - floor: an IPv6 frame, which the program passes at once: what a run costs before the
//!   program does anything (the test-run loop, the program's entry and its first check);
//! - established flow: a TCP segment of a flow in the connection table, to a service whose
//!   10 backends all have the VIP's own address and port, so the DNAT writes what is there
//!   and every run does the whole translation of an established flow (frontend lookup,
//!   connection-table hit, backend lookup, L3/L4 checksum updates, counters);
//! - no frontend: the same segment to a port of the VIP that has no frontend: the frontend
//!   lookup misses and the packet passes (what every non-service packet pays);
//! - new flow: a ring of [`RING`] services where service i's backends are service i+1's
//!   VIP:port, and a connection table of [`CT_ENTRIES`] entries, so each run translates a
//!   flow the table no longer holds (evicted by the LRU before the packet comes round again):
//!   frontend lookup, connection-table miss, Maglev lookup, two connection-table inserts with
//!   eviction, DNAT. It needs more than [`RING`] services: not measured at 1.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use etherparse::PacketBuilder;
use ingress_lb::maglev;
use vxmesh_ebpf::{
    Backend, Datapath, DatapathConfig, Stat, Svc, SvcKey, BPFFS, IPPROTO_TCP, PROG_FROM_LXC,
    TC_ACT_OK,
};

use super::{at_most, row, thousands, GOAL_NS_AT_10K, GOAL_SIZE_RATIO};
use crate::bench::Options;
use crate::util::{self, heading, say};

/// Services programmed in each datapath.
pub const SIZES: [u32; 3] = [1, 1_000, 10_000];
/// Backends per service.
pub const BACKENDS: u32 = 10;
/// Runs per BPF_PROG_TEST_RUN call (each call has a fixed cost of milliseconds).
pub const REPEAT: u32 = 2_000_000;
/// Services in the new-flow ring.
const RING: u32 = 900;
/// Connection-table entries of the bench's datapaths: 2 × [`RING`] inserts per turn of the
/// ring is 7 × this, so a flow is (nearly always: the LRU is approximate, and `vx_stats`
/// says how often) evicted before its packet comes back.
const CT_ENTRIES: u32 = 256;
/// Pin roots `/sys/fs/bpf/vxbench-lb-PID`.
const ROOT_PREFIX: &str = "vxbench-lb-";

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 63, 0, 2);
/// Service s has VIP 10.64.0.1 + s.
const VIP_BASE: u32 = u32::from_be_bytes([10, 64, 0, 1]);
/// Ordinary backends: 10.80.0.1 + (s × 10 + b), port 8080.
const BACKEND_BASE: u32 = u32::from_be_bytes([10, 80, 0, 1]);
const PORT: u16 = 80;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathKind {
    NotIp,
    Established,
    NoFrontend,
    NewFlow,
}

impl PathKind {
    const ALL: [PathKind; 4] = [
        PathKind::NotIp,
        PathKind::Established,
        PathKind::NoFrontend,
        PathKind::NewFlow,
    ];

    fn label(self) -> &'static str {
        match self {
            PathKind::NotIp => "not IPv4 (returns at once: the harness and program entry)",
            PathKind::Established => "established flow (conntrack hit, DNAT)",
            PathKind::NoFrontend => "no frontend (VIP, other port: lookup miss)",
            PathKind::NewFlow => "new flow (Maglev pick, conntrack insert)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            PathKind::NotIp => "floor",
            PathKind::Established => "established",
            PathKind::NoFrontend => "no frontend",
            PathKind::NewFlow => "new flow",
        }
    }
}

/// What the kernel counted over the timed runs of one path (`vx_stats` deltas).
#[derive(Default, Clone, Copy)]
struct Counted {
    runs: u64,
    translated: u64,
    new_flows: u64,
}

/// The figures of one size.
pub struct SizeFigures {
    pub services: u32,
    /// Kernel memory of the Maglev tables (`memlock` of the inner maps), bytes.
    pub maglev_bytes: u64,
    /// Slots of each table.
    pub slots: usize,
    /// ns/packet of each round, by path.
    ns: BTreeMap<PathKind, Vec<f64>>,
    counted: BTreeMap<PathKind, Counted>,
}

impl SizeFigures {
    fn median(&self, p: PathKind) -> Option<f64> {
        util::median(self.ns.get(&p)?)
    }
}

pub struct TcFigures {
    pub sizes: Vec<SizeFigures>,
}

fn vip(s: u32) -> Ipv4Addr {
    Ipv4Addr::from(VIP_BASE + s)
}

/// A TCP segment CLIENT:sport → dst:dport with 10 bytes of payload (a 64-byte frame).
fn segment(sport: u16, dst: Ipv4Addr, dport: u16) -> Result<Vec<u8>> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(CLIENT.octets(), dst.octets(), 64)
        .tcp(sport, dport, 1000, 64240)
        .ack(1)
        .psh();
    let payload = b"GET / HTTP";
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload)
        .context("building a test frame")?;
    Ok(out)
}

/// An IPv6 frame (the program passes it untouched at once).
fn not_ip() -> Result<Vec<u8>> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6([0xfd; 16], [0xfe; 16], 64)
        .udp(40000, 80);
    let payload = [0u8; 2];
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, &payload)
        .context("building a test frame")?;
    Ok(out)
}

/// The destination address and port of a frame written by [`segment`].
fn destination(frame: &[u8]) -> Option<(Ipv4Addr, u16)> {
    let ip = frame.get(14..34)?;
    let tcp = frame.get(34..38)?;
    Some((
        Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        u16::from_be_bytes([tcp[2], tcp[3]]),
    ))
}

/// The datapaths of the bench, under a pin root of its own; on drop (also after a failure
/// or Ctrl-C) every pin goes, the root directory too, and bpffs is unmounted again when
/// this bench mounted it and nothing else is pinned there.
struct Scratch {
    root: PathBuf,
    nodes: Vec<String>,
    dps: Vec<Datapath>,
    bpffs_was_mounted: bool,
}

impl Scratch {
    fn new() -> Self {
        remove_stale_roots();
        Scratch {
            root: Path::new(BPFFS).join(format!("{ROOT_PREFIX}{}", std::process::id())),
            nodes: Vec::new(),
            dps: Vec::new(),
            bpffs_was_mounted: vxmesh_ebpf::pins::is_bpffs(Path::new(BPFFS)),
        }
    }

    /// Loads node `name`'s datapath (all programs through the verifier, maps pinned).
    fn load(&mut self, name: &str) -> Result<&mut Datapath> {
        let mut config = DatapathConfig::new(name);
        config.pin_root = self.root.clone();
        config.conntrack_entries = CT_ENTRIES;
        self.nodes.push(name.to_string());
        let dp = Datapath::load(config)
            .with_context(|| format!("loading a datapath under {}", self.root.display()))?;
        self.dps.push(dp);
        Ok(self.dps.last_mut().expect("just pushed"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.dps.clear();
        for node in &self.nodes {
            if let Err(e) = vxmesh_ebpf::teardown(&self.root, node) {
                eprintln!("warning: removing the pins of {node}: {e}");
            }
        }
        let _ = std::fs::remove_dir(&self.root);
        let gone = !self.root.exists();
        let unmounted = !self.bpffs_was_mounted && unmount_bpffs_if_empty();
        say(&format!(
            "(a) removed the bench's datapaths and pins under {}{}{}",
            self.root.display(),
            if gone { "" } else { " (NOT removed)" },
            if unmounted {
                "; unmounted the bpffs this bench mounted"
            } else {
                ""
            }
        ));
    }
}

/// Unmounts /sys/fs/bpf when it is a bpffs with nothing in it. Returns whether it did.
fn unmount_bpffs_if_empty() -> bool {
    let bpffs = Path::new(BPFFS);
    if !vxmesh_ebpf::pins::is_bpffs(bpffs)
        || std::fs::read_dir(bpffs).map_or(true, |mut d| d.next().is_some())
    {
        return false;
    }
    let c = std::ffi::CString::new(BPFFS).expect("no NUL");
    // SAFETY: c is a valid C string.
    unsafe { libc::umount(c.as_ptr()) == 0 }
}

/// Pin roots `/sys/fs/bpf/vxbench-lb-PID` whose bench is gone (killed hard).
fn remove_stale_roots() {
    let Ok(entries) = std::fs::read_dir(BPFFS) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(ROOT_PREFIX)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        say(&format!(
            "removing {}, left by an earlier run",
            e.path().display()
        ));
        if let Ok(nodes) = std::fs::read_dir(e.path()) {
            for n in nodes.flatten() {
                let _ = vxmesh_ebpf::teardown(&e.path(), &n.file_name().to_string_lossy());
            }
        }
        let _ = std::fs::remove_dir(e.path());
    }
}

/// Writes `services` services × [`BACKENDS`] backends. Service `services - 1` is the
/// established-flow target (backends = its own VIP:80); with more than [`RING`] services,
/// services 0..RING form the new-flow ring (backends of s = VIP of s+1 mod RING, port 80);
/// the others have backends 10.80.x.y:8080. Every table is the Maglev table (ingress-lb) of
/// 10 backends named b0..b9, each service's ids in place of the names' (the slots depend
/// only on the names), size [`maglev::table_size_for`] 10.
fn program(dp: &mut Datapath, services: u32) -> Result<usize> {
    let m = maglev::table_size_for(BACKENDS as usize)?;
    let names: Vec<String> = (0..BACKENDS).map(|b| format!("b{b}")).collect();
    let pattern = maglev::table(
        &names
            .iter()
            .enumerate()
            .map(|(i, name)| maglev::Backend {
                id: i as u32,
                name,
                weight: 1,
            })
            .collect::<Vec<_>>(),
        m,
    )?;
    let target = services - 1;
    let ring = if services > RING { RING } else { 0 };
    let maps = dp.maps_mut();
    let ids = |s: u32| (0..BACKENDS).map(move |b| 1 + s * BACKENDS + b);
    for chunk in (0..services).collect::<Vec<_>>().chunks(1000) {
        util::check_interrupted()?;
        for &s in chunk {
            for (b, id) in ids(s).enumerate() {
                let backend = if s == target {
                    Backend::new(vip(s), PORT, 0)
                } else if s < ring {
                    Backend::new(vip((s + 1) % ring), PORT, 0)
                } else {
                    Backend::new(
                        Ipv4Addr::from(BACKEND_BASE + s * BACKENDS + b as u32),
                        8080,
                        0,
                    )
                };
                maps.upsert_backend(id, backend)?;
            }
        }
        let tables: Vec<(u32, Vec<u32>)> = chunk
            .iter()
            .map(|&s| {
                (
                    s + 1,
                    pattern.iter().map(|&i| 1 + s * BACKENDS + i).collect(),
                )
            })
            .collect();
        let refs: Vec<(u32, &[u32])> = tables.iter().map(|(id, t)| (*id, &t[..])).collect();
        maps.replace_maglev_tables(&refs)?;
        for &s in chunk {
            maps.upsert_service(
                SvcKey::new(vip(s), PORT, IPPROTO_TCP),
                Svc {
                    id: s + 1,
                    flags: 0,
                    affinity_timeout_s: 0,
                },
            )?;
        }
    }
    Ok(m as usize)
}

/// The frames of each path for a datapath of `services` services (None: not measurable).
fn frames(services: u32) -> Result<BTreeMap<PathKind, Option<Vec<u8>>>> {
    let target = vip(services - 1);
    Ok(BTreeMap::from([
        (PathKind::NotIp, Some(not_ip()?)),
        (PathKind::Established, Some(segment(40000, target, PORT)?)),
        (
            PathKind::NoFrontend,
            Some(segment(40000, target, PORT + 1)?),
        ),
        (
            PathKind::NewFlow,
            if services > RING {
                Some(segment(40001, vip(0), PORT)?)
            } else {
                None
            },
        ),
    ]))
}

/// One run outside the timing: the verdict and where the packet went, to show each path
/// does what it is meant to (and to make the established flow's connection-table entry).
fn check_path(dp: &Datapath, p: PathKind, frame: &[u8], services: u32) -> Result<String> {
    let out = dp.run_tc(PROG_FROM_LXC, frame)?;
    if out.verdict != TC_ACT_OK {
        bail!(
            "{}: verdict {} (expected TC_ACT_OK)",
            p.short(),
            out.verdict
        );
    }
    if p == PathKind::NotIp {
        if out.packet != frame {
            bail!("floor: the program changed an IPv6 frame");
        }
        return Ok("verdict TC_ACT_OK, IPv6 frame untouched".into());
    }
    let (before, after) = (destination(frame), destination(&out.packet));
    let expected = match p {
        PathKind::NotIp | PathKind::Established | PathKind::NoFrontend => before,
        PathKind::NewFlow => Some((vip(1 % services.min(RING)), PORT)),
    };
    if after != expected {
        bail!(
            "{}: the program sent {before:?} to {after:?}, expected {expected:?}",
            p.short()
        );
    }
    let (a, port) = after.expect("checked");
    Ok(format!("verdict TC_ACT_OK, packet to {a}:{port}"))
}

fn counters(dp: &Datapath) -> Result<(u64, u64)> {
    let m = dp.maps();
    Ok((m.stat(Stat::FwdNat)?, m.stat(Stat::CtNew)?))
}

/// Loads and programs the three datapaths, then measures every path of every size once per
/// round, sizes and paths interleaved.
pub fn run(opts: &Options) -> Result<TcFigures> {
    heading(&format!(
        "(a) the tc program {PROG_FROM_LXC} under BPF_PROG_TEST_RUN, repeat {} per call",
        thousands(u64::from(REPEAT))
    ));
    let mut scratch = Scratch::new();
    let mut sizes = Vec::new();
    let mut all_frames = Vec::new();
    for &services in &SIZES {
        let node = format!("s{services}");
        say(&format!(
            "loading a datapath (node {node}, pin root {}, connection table {CT_ENTRIES} entries) \
             and writing {} services x {BACKENDS} backends",
            scratch.root.display(),
            thousands(u64::from(services))
        ));
        let dp = scratch.load(&node)?;
        let t = Instant::now();
        let slots = program(dp, services)?;
        let programmed = t.elapsed();
        let maglev_bytes = dp.maps().maglev_memory_bytes()?;
        say(&format!(
            "  written in {:.2} s; Maglev tables: {} x {slots} slots, {} bytes of kernel memory",
            programmed.as_secs_f64(),
            thousands(u64::from(services)),
            thousands(maglev_bytes)
        ));
        let f = frames(services)?;
        for (p, frame) in &f {
            match frame {
                Some(frame) => say(&format!(
                    "  {:<12} one run first: {}",
                    p.short(),
                    check_path(dp, *p, frame, services)?
                )),
                None => say(&format!(
                    "  {:<12} not measured: the ring needs more than {RING} services",
                    p.short()
                )),
            }
        }
        all_frames.push(f);
        sizes.push(SizeFigures {
            services,
            maglev_bytes,
            slots,
            ns: BTreeMap::new(),
            counted: BTreeMap::new(),
        });
    }
    for round in 1..=opts.rounds {
        say(&format!("(a) round {round} of {}", opts.rounds));
        for (i, fig) in sizes.iter_mut().enumerate() {
            let dp = &scratch.dps[i];
            let mut line = format!("  {:>6} services:", thousands(u64::from(fig.services)));
            for p in PathKind::ALL {
                let Some(frame) = &all_frames[i][&p] else {
                    continue;
                };
                util::check_interrupted()?;
                let (nat0, new0) = counters(dp)?;
                let ns = dp.bench_tc(PROG_FROM_LXC, frame, REPEAT)?;
                let (nat1, new1) = counters(dp)?;
                let c = fig.counted.entry(p).or_default();
                c.runs += u64::from(REPEAT);
                c.translated += nat1 - nat0;
                c.new_flows += new1 - new0;
                fig.ns.entry(p).or_default().push(ns);
                line.push_str(&format!("  {} {ns:.1} ns", p.short()));
            }
            say(&line);
        }
    }
    say("(a) what the kernel counted over the timed runs (vx_stats):");
    for fig in &sizes {
        for (p, c) in &fig.counted {
            say(&format!(
                "  {:>6} services, {:<12} {:>6.2} % of runs translated, {:>6.2} % made a new flow",
                thousands(u64::from(fig.services)),
                p.short(),
                100.0 * c.translated as f64 / c.runs as f64,
                100.0 * c.new_flows as f64 / c.runs as f64
            ));
        }
    }
    drop(scratch);
    Ok(TcFigures { sizes })
}

pub fn report(opts: &Options, f: &TcFigures) {
    heading(&format!(
        "(a) results: ns/packet of {PROG_FROM_LXC} under BPF_PROG_TEST_RUN (the kernel's time per \
         run, repeat {}), median of {} round(s); 10 backends per service",
        thousands(u64::from(REPEAT)),
        opts.rounds
    ));
    let cell = |v: Option<f64>| v.map_or("     n/a".to_string(), |v| format!("{v:8.1}"));
    say(&format!(
        "{:<10}{:>8}{:>14}{:>14}{:>11}   {}",
        "services",
        "floor",
        "established",
        "no frontend",
        "new flow",
        "Maglev tables (kernel memory)"
    ));
    for s in &f.sizes {
        say(&format!(
            "{:<10}{:>8}{:>14}{:>14}{:>11}   {} B ({} x {} slots)",
            thousands(u64::from(s.services)),
            cell(s.median(PathKind::NotIp)),
            cell(s.median(PathKind::Established)),
            cell(s.median(PathKind::NoFrontend)),
            cell(s.median(PathKind::NewFlow)),
            thousands(s.maglev_bytes),
            thousands(u64::from(s.services)),
            s.slots
        ));
    }
    for p in PathKind::ALL {
        say(&format!("  {}: {}", p.short(), p.label()));
    }
    let (Some(one), Some(big)) = (f.sizes.first(), f.sizes.last()) else {
        return;
    };
    for p in PathKind::ALL.into_iter().skip(1) {
        let Some(b) = big.median(p) else { continue };
        row(
            &format!("{} at 10,000 services", p.short()),
            format!(
                "{b:6.1} ns/packet   goal < {GOAL_NS_AT_10K:.0}: {}",
                if b < GOAL_NS_AT_10K { "met" } else { "NOT met" }
            ),
        );
        if let Some(a) = one.median(p) {
            let r = b / a;
            row(
                &format!("{} 10,000 / 1", p.short()),
                format!(
                    "{r:6.2}              goal <= {GOAL_SIZE_RATIO:.2}: {}",
                    at_most(r, GOAL_SIZE_RATIO)
                ),
            );
        } else if let Some(mid) = f.sizes.get(1).and_then(|s| s.median(p)) {
            row(
                &format!("{} 10,000 / 1,000", p.short()),
                format!("{:6.2}   (not measurable at 1 service)", b / mid),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_64_bytes_and_addressed_as_the_paths_need() {
        let f = frames(10_000).unwrap();
        let est = f[&PathKind::Established].as_ref().unwrap();
        assert_eq!(est.len(), 64);
        assert_eq!(destination(est), Some((Ipv4Addr::new(10, 64, 39, 16), 80)));
        let miss = f[&PathKind::NoFrontend].as_ref().unwrap();
        assert_eq!(destination(miss), Some((Ipv4Addr::new(10, 64, 39, 16), 81)));
        let new = f[&PathKind::NewFlow].as_ref().unwrap();
        assert_eq!(destination(new), Some((Ipv4Addr::new(10, 64, 0, 1), 80)));
        assert!(frames(1).unwrap()[&PathKind::NewFlow].is_none());
    }
}
