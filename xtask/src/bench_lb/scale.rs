//! Part (c), first figure: programming 10,000 services × 10 backends, in a 1-host lab of its
//! own (one agent, nothing else running).
//!
//! - From an empty store: the network `scale` (10.32.0.0/16) and 10 endpoints on h1 (no
//!   veth: external endpoints) are written first; then, with the clock running, 10,000
//!   services (port 80 → 8080, the 10 endpoints as backends, VIP auto, no health check) are
//!   written with ingress-lb's catalog, one transaction each, as a library user would,
//!   while the agent follows the store. The clock stops when h1's pinned maps hold all of
//!   them: the last service's frontend and its Maglev table (the agent writes backends,
//!   then tables, then frontends in id order, so these come last), then checked in full
//!   (10,000 frontends, 10,000 tables, 100,000 backends that are up).
//! - From an empty datapath: the agent is stopped (SIGTERM), its pins are removed, and it is
//!   started again with the 10,000 services in the store (`lab start-agent`); the clock runs
//!   from the start command to the same condition. Once per round.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ingress_lb::catalog::ServiceCatalog;
use ingress_lb::service::{BackendSpec, PortSpec, Proto, ServiceSpec};
use overlay_core::catalog::{Catalog, EndpointSpec, NetworkSpec};
use overlay_core::store::SqliteStore;
use vxmesh_ebpf::{Maps, NodePins, SvcKey, BE_F_DRAINING, IPPROTO_TCP};

use super::{at_most, row, thousands, GOAL_PROGRAM_S};
use crate::bench::Options;
use crate::lab::{Vxmesh, ONE_EMPTY_HOST};
use crate::util::{self, heading, say};

pub const SERVICES: u32 = 10_000;
const BACKENDS: u32 = 10;
const NETWORK: &str = "scale";
const SUBNET: &str = "10.32.0.0/16";
const HOST: &str = "h1";
/// Longest wait for the maps to be complete.
const LIMIT: Duration = Duration::from_secs(900);

pub struct ScaleFigures {
    /// Seconds to write the services (catalog, one transaction each).
    write_s: f64,
    /// Seconds from the first write to the maps holding everything.
    stream_s: f64,
    /// Per round: seconds from `lab start-agent` to the maps holding everything.
    cold_s: Vec<f64>,
    counts: Counts,
    maglev_bytes: u64,
}

/// What h1's maps hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    frontends: usize,
    tables: usize,
    backends_up: usize,
}

impl Counts {
    fn complete(&self) -> bool {
        self.frontends == SERVICES as usize
            && self.tables == SERVICES as usize
            && self.backends_up == (SERVICES * BACKENDS) as usize
    }
}

fn count(maps: &Maps) -> Result<Counts> {
    Ok(Counts {
        frontends: maps.services()?.len(),
        tables: maps.maglev_ids()?.len(),
        backends_up: maps
            .backends()?
            .iter()
            .filter(|(_, b)| b.flags & BE_F_DRAINING == 0)
            .count(),
    })
}

/// Waits until h1's pinned maps hold the whole set (the last frontend and its table first,
/// then the counts), polling every 2 ms; returns the time since `start` when it saw them,
/// and the counts.
fn wait_complete(pins: &NodePins, last: SvcKey, start: Instant) -> Result<(f64, Counts)> {
    let mut maps: Option<Maps> = None;
    loop {
        util::check_interrupted()?;
        if start.elapsed() > LIMIT {
            let c = maps.as_ref().map(count).transpose()?;
            bail!("h1's maps are not complete after {LIMIT:?}: {c:?}");
        }
        if maps.is_none() && pins.maps.join("vx_vip").exists() {
            // The agent may be pinning its maps right now: try again until all open.
            maps = Maps::open_pinned(pins).ok();
        }
        if let Some(m) = &maps {
            let seen = match m.service(&last)? {
                Some(svc) => m.maglev_table_info(svc.id)?.is_some_and(|t| t.slots > 0),
                None => false,
            };
            if seen {
                let at = start.elapsed().as_secs_f64();
                let c = count(m)?;
                if c.complete() {
                    return Ok((at, c));
                }
                say(&format!(
                    "  at {at:.2} s the last service is there but not everything yet: {c:?}"
                ));
                // Counting takes a while: go on with the counts alone.
                loop {
                    util::check_interrupted()?;
                    let c = count(m)?;
                    if c.complete() {
                        return Ok((start.elapsed().as_secs_f64(), c));
                    }
                    if start.elapsed() > LIMIT {
                        bail!("h1's maps are not complete after {LIMIT:?}: {c:?}");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn run(vx: &Vxmesh, opts: &Options) -> Result<ScaleFigures> {
    heading(&format!(
        "(c) programming {} services x {BACKENDS} backends, in a 1-host lab",
        thousands(u64::from(SERVICES))
    ));
    let guard = vx.up(&ONE_EMPTY_HOST)?;
    match in_lab(vx, opts) {
        Ok(f) => {
            guard.finish()?;
            Ok(f)
        }
        Err(e) => {
            drop(guard);
            Err(e)
        }
    }
}

fn in_lab(vx: &Vxmesh, opts: &Options) -> Result<ScaleFigures> {
    let status = vx.status()?;
    status.check_agents()?;
    let pin_root: PathBuf = status
        .bpf_pin_root
        .clone()
        .context("lab status gives no bpf_pin_root (a vxmesh without the services datapath?)")?;
    let pins = NodePins::new(&pin_root, HOST)?;
    let catalog = Catalog::new(Arc::new(
        SqliteStore::open(&status.store).with_context(|| format!("opening {}", status.store))?,
    ));
    catalog.create_network(&NetworkSpec {
        name: NETWORK.into(),
        subnet: SUBNET.into(),
        ..Default::default()
    })?;
    let mut endpoints = Vec::new();
    for j in 0..BACKENDS {
        let ep = catalog.add_endpoint(&EndpointSpec {
            network: NETWORK.into(),
            node: HOST.into(),
            id: Some(format!("ext{j}")),
            ..Default::default()
        })?;
        endpoints.push(ep.id);
    }
    say(&format!(
        "network {NETWORK} ({SUBNET}) with {BACKENDS} external endpoints on {HOST} ({}); \
         store {}",
        endpoints.join(", "),
        status.store
    ));
    if pins.node_dir.exists() {
        bail!(
            "{} exists before any service: not an empty datapath",
            pins.node_dir.display()
        );
    }

    let services = ServiceCatalog::of(&catalog);
    let spec = |i: u32| ServiceSpec {
        name: format!("s{i:05}"),
        network: NETWORK.into(),
        ports: vec![PortSpec {
            port: 80,
            target_port: Some(8080),
            proto: Proto::Tcp,
        }],
        backends: endpoints.iter().map(BackendSpec::new).collect(),
        ..Default::default()
    };
    say(&format!(
        "writing {} services with ingress_lb::catalog::ServiceCatalog::create (one \
         transaction each) while {HOST}'s agent follows the store",
        thousands(u64::from(SERVICES))
    ));
    let start = Instant::now();
    let mut last_vip = Ipv4Addr::UNSPECIFIED;
    for i in 0..SERVICES {
        if i % 500 == 0 {
            util::check_interrupted()?;
        }
        last_vip = services.create(&spec(i))?.vip;
        if (i + 1) % 1000 == 0 {
            say(&format!(
                "  {} written at {:.1} s",
                thousands(u64::from(i + 1)),
                start.elapsed().as_secs_f64()
            ));
        }
    }
    let write_s = start.elapsed().as_secs_f64();
    let last = SvcKey::new(last_vip, 80, IPPROTO_TCP);
    let (stream_s, counts) = wait_complete(&pins, last, start)?;
    say(&format!(
        "  {HOST}'s maps hold them all {stream_s:.2} s after the first write \
         ({:.2} s after the last): {} frontends, {} tables, {} backends up",
        stream_s - write_s,
        thousands(counts.frontends as u64),
        thousands(counts.tables as u64),
        thousands(counts.backends_up as u64)
    ));
    let maglev_bytes = Maps::open_pinned(&pins)?.maglev_memory_bytes()?;

    let mut cold_s = Vec::new();
    for round in 1..=opts.rounds {
        say(&format!(
            "  from an empty datapath, round {round} of {}: stopping {HOST}'s agent, removing \
             its pins, starting it again",
            opts.rounds
        ));
        stop_agent(vx, HOST)?;
        let removed = vxmesh_ebpf::teardown(&pin_root, HOST)?;
        say(&format!(
            "    removed {} pins under {}",
            removed.len(),
            pins.node_dir.display()
        ));
        let start = Instant::now();
        util::run_quiet(&mut vx.lab("start-agent", [HOST]))?;
        let (s, c) = wait_complete(&pins, last, start)?;
        say(&format!(
            "    complete after {s:.2} s: {} frontends, {} tables, {} backends up",
            thousands(c.frontends as u64),
            thousands(c.tables as u64),
            thousands(c.backends_up as u64)
        ));
        cold_s.push(s);
    }
    Ok(ScaleFigures {
        write_s,
        stream_s,
        cold_s,
        counts,
        maglev_bytes,
    })
}

/// Stops `host`'s agent with SIGTERM (SIGKILL after 15 s), once its command line shows it
/// is this lab's agent of that host.
fn stop_agent(vx: &Vxmesh, host: &str) -> Result<()> {
    let status = vx.status()?;
    let h = status.host(host)?;
    let pid = h.agent_pid.context("no agent pid in the lab status")?;
    let args = util::cmdline(pid).with_context(|| format!("agent pid {pid} is gone"))?;
    let is_it = args.iter().any(|a| a == "agent")
        && args
            .windows(2)
            .any(|w| w[0] == "--netns" && w[1] == h.namespace);
    if !is_it {
        bail!("pid {pid} is not {host}'s agent: {args:?}");
    }
    util::signal(pid, libc::SIGTERM);
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        if start.elapsed() > Duration::from_secs(15) {
            util::signal(pid, libc::SIGKILL);
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("{host}'s agent (pid {pid}) does not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

pub fn report(f: &ScaleFigures) {
    heading(&format!(
        "(c) results: programming {} services x {BACKENDS} backends (1-host lab, one agent)",
        thousands(u64::from(SERVICES))
    ));
    row(
        "  from an empty store: first write -> maps full",
        format!(
            "{:7.2} s   goal <= {GOAL_PROGRAM_S:.0} s: {}",
            f.stream_s,
            at_most(f.stream_s, GOAL_PROGRAM_S)
        ),
    );
    row(
        "    of which writing the store (catalog)",
        format!("{:7.2} s", f.write_s),
    );
    row(
        "    after the last write",
        format!("{:7.2} s", f.stream_s - f.write_s),
    );
    if let Some((c, lo, hi)) = util::median_range(&f.cold_s) {
        row(
            "  from an empty datapath: agent start -> full",
            format!(
                "{c:7.2} s   [{lo:.2}..{hi:.2}]  goal <= {GOAL_PROGRAM_S:.0} s: {}",
                at_most(c, GOAL_PROGRAM_S)
            ),
        );
    }
    row(
        "  maps when full",
        format!(
            "{} frontends, {} Maglev tables ({} B of kernel memory), {} backends",
            thousands(f.counts.frontends as u64),
            thousands(f.counts.tables as u64),
            thousands(f.maglev_bytes),
            thousands(f.counts.backends_up as u64)
        ),
    );
}
