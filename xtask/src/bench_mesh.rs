//! `cargo xtask bench mesh` (issue 9, acceptance 6): requests/s with wrk from the lab's
//! outside client through the routing mesh, in default mode and with DSR, against the same
//! replicas behind an nftables DNAT + SNAT mesh and behind haproxy, both built by hand on the
//! ingress host, and one server reached directly (the reference); keep-alive and
//! `Connection: close`; the machine's CPU time per request around each run. Interleaved
//! rounds, medians, ratios against the goals. Prints figures; asserts nothing.
//!
//! The lab: `lab up --hosts 3 --containers-per-host 2 --networks 1 --replicas 6` (release
//! vxmesh): six replicas (`vxmesh lab replica`, one thread each) in h1-c1 … h3-c2, service
//! `demo` published on port 8080 of every host. The ingress host is h1 (10.99.0.1); every
//! target is an address of h1, each on its own port (see [`Target`]).

mod baselines;
mod cpu;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bench::Options;
use crate::bench_lb::nginx::{wrk, WrkRun};
use crate::bench_lb::row;
use crate::bench_lb::web::{
    schedule, set_port_range, syn_retrans, wrk_args, Measured, Mode, NftTable, RunsByTarget,
    Summary, TempDir,
};
use crate::demo::mesh::answers;
use crate::lab::{bare_ip, LabStatus, Vxmesh};
use crate::util::{self, heading, say};

use baselines::{DirectServer, Haproxy};
use cpu::CpuTimes;

const PREFIX: &str = "vxbmesh";
/// The client: the lab's outside namespace (`lab exec client`).
const CLIENT: &str = "client";
const THREADS: usize = 2;
const CONNECTIONS: usize = 64;
/// The replica answering the direct runs, in h1's own namespace.
const DIRECT_NAME: &str = "direct-h1";

/// Goals of acceptance 6.
const GOAL_OF_NFT: f64 = 1.0;
const GOAL_OF_HAPROXY: f64 = 2.0;
const GOAL_DSR_OF_DEFAULT: f64 = 1.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Mesh,
    MeshDsr,
    Nft,
    Haproxy,
    Direct,
}

impl Target {
    const ALL: [Target; 5] = [
        Target::Mesh,
        Target::MeshDsr,
        Target::Nft,
        Target::Haproxy,
        Target::Direct,
    ];

    /// The port of h1's underlay address the client connects to.
    fn port(self) -> u16 {
        match self {
            Target::Mesh | Target::MeshDsr => 8080,
            Target::Nft => 8081,
            Target::Haproxy => 8082,
            Target::Direct => 8083,
        }
    }

    /// The client's ephemeral ports in this target's runs. A replica keeps TIME_WAIT for
    /// each connection it closed; nftables (SNAT keeps the client's port) and haproxy (h1's
    /// own ports, [`HAPROXY_PORTS`]) both reach the replicas from h1's address, and a SYN
    /// reusing another's 4-tuple would carry timestamps from another clock, fail PAWS and
    /// wait for a 1 s retransmit (`bench lb` met it): the ranges are disjoint.
    fn ports(self) -> &'static str {
        match self {
            Target::Nft => "35000 49999",
            _ => "20000 34999",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Target::Mesh => "vxmesh mesh, default mode",
            Target::MeshDsr => "vxmesh mesh, DSR",
            Target::Nft => "nftables DNAT + SNAT (h1)",
            Target::Haproxy => "haproxy, TCP mode (h1)",
            Target::Direct => "direct: one server in h1 (reference)",
        }
    }
}

/// h1's ephemeral ports (haproxy's connections to the replicas).
const HAPROXY_PORTS: &str = "50000 64999";

/// One wrk run and what was counted around it.
#[derive(Debug, Clone, Copy)]
struct Run {
    wrk: WrkRun,
    syn_retrans: u64,
    /// The machine's busy CPU time per request, µs.
    cpu_us: f64,
    /// The machine's busy share during the run, 0–1.
    busy: f64,
}

impl Measured for Run {
    fn measured(&self) -> (&WrkRun, u64) {
        (&self.wrk, self.syn_retrans)
    }
}

struct Figures {
    runs: RunsByTarget<Target, Run>,
    /// The client address the backends reported, per target.
    seen_as: BTreeMap<Target, String>,
    seconds: u32,
    rounds: u32,
}

pub fn bench(opts: &Options) -> Result<()> {
    util::require_root("bench mesh")?;
    crate::setup::setup()?;
    let vx = Vxmesh::build(PREFIX)?;
    heading(&format!(
        "bench mesh: {} round(s) of wrk -t{THREADS} -c{CONNECTIONS} runs of {} s from the lab's \
         outside client",
        opts.rounds, opts.seconds
    ));
    let lab = [
        "--hosts",
        "3",
        "--containers-per-host",
        "2",
        "--networks",
        "1",
        "--replicas",
        "6",
    ];
    let figures = vx.with_lab(&lab, || in_lab(&vx, opts))?;
    report(&figures);
    Ok(())
}

/// What every run needs.
struct Bench<'a> {
    vx: &'a Vxmesh,
    status: &'a LabStatus,
    h1: String,
    h1_ns: String,
    client_ns: String,
    nft_rules: String,
    dir: TempDir,
    dsr: bool,
    seconds: u32,
}

fn in_lab(vx: &Vxmesh, opts: &Options) -> Result<Figures> {
    let status = vx.status()?;
    status.check_agents()?;
    let (demo, client) = status.mesh()?;
    let ingress = status.host("h1")?;
    let h1 = bare_ip(&ingress.address).to_string();
    let subnet = status.network(&demo.network)?.subnet.clone();
    let replicas: Vec<(String, u16)> = demo
        .replicas
        .iter()
        .map(|r| (bare_ip(&r.address).to_string(), r.port))
        .collect();
    let names: Vec<&str> = demo.replicas.iter().map(|r| r.name.as_str()).collect();
    let dir = TempDir::tagged("mesh")?;
    let mut b = Bench {
        vx,
        status: &status,
        h1: h1.clone(),
        h1_ns: ingress.namespace.clone(),
        client_ns: client.namespace.clone(),
        nft_rules: baselines::nft_rules(&h1, Target::Nft.port(), &replicas, &subnet),
        dsr: false,
        seconds: opts.seconds,
        dir,
    };
    say(&format!(
        "replicas: {}; client {} ({}); ingress host h1 ({h1}), every target on an address \
         of h1:",
        demo.replicas
            .iter()
            .map(|r| format!("{} {}", r.name, bare_ip(&r.address)))
            .collect::<Vec<_>>()
            .join(", "),
        client.namespace,
        bare_ip(&client.address)
    ));
    for t in Target::ALL {
        say(&format!("  {h1}:{}  {}", t.port(), t.label()));
    }

    // haproxy's connections to the replicas use h1's ports, away from the client's.
    set_port_range(&b.h1_ns, HAPROXY_PORTS)?;
    // Through haproxy (TCP mode) the response reaches wrk before the FIN, so wrk closes
    // first and its namespace keeps a TIME_WAIT per connection: without reuse, later runs
    // find the port range full of them and wrk's connect() spends its time searching
    // (measured: 800 instead of 2,200 new connections/s in the run after another). Reusing
    // them (RFC 7323 timestamps make it safe) is what a load generator is set up with.
    util::run_quiet(&mut util::in_netns(
        &b.client_ns,
        "sysctl",
        ["-q", "-w", "net.ipv4.tcp_tw_reuse=1"],
    ))?;
    let _haproxy = Haproxy::start(
        &b.h1_ns,
        &b.dir.0,
        &baselines::haproxy_config(&b.dir.0, &h1, Target::Haproxy.port(), &replicas),
        Target::Haproxy.port(),
    )?;
    let direct = DirectServer::start(&vx.bin, &b.h1_ns, DIRECT_NAME, Target::Direct.port())?;
    say(&format!(
        "haproxy (TCP mode, round robin, its default threads) on {h1}:{}; {} (vxmesh lab \
         replica) in {}'s own namespace on {h1}:{}",
        Target::Haproxy.port(),
        direct.name,
        b.h1_ns,
        Target::Direct.port()
    ));

    let mut figures = Figures {
        runs: RunsByTarget::new(),
        seen_as: BTreeMap::new(),
        seconds: opts.seconds,
        rounds: opts.rounds,
    };
    // Every target answers, from every replica, before anything is measured; and what each
    // replica saw as the client's address.
    for t in Target::ALL {
        let want: Vec<&str> = if t == Target::Direct {
            vec![DIRECT_NAME]
        } else {
            names.clone()
        };
        let (took, seen) = b.with_target(t, |b| b.wait_answers(t, &want))?;
        say(&format!(
            "{:<38} every server answered after {:.2} s; they saw the client as {seen}",
            t.label(),
            took.as_secs_f64()
        ));
        figures.seen_as.insert(t, seen);
    }

    for slot in schedule(opts.rounds, &Target::ALL) {
        let (mode, t) = (slot.mode, slot.target);
        if slot.starts_round {
            say(&format!("round {} of {}", slot.round + 1, opts.rounds));
        }
        let r = b.with_target(t, |b| b.measure(mode, t))?;
        say(&format!(
            "  {:<38} {:<38} {:>8.0}  ({} requests, {} errors, {} SYN retransmits, \
             {:.1} µs CPU/request, machine {:.0}% busy)",
            t.label(),
            mode.label(),
            r.wrk.rps,
            r.wrk.requests,
            r.wrk.errors + r.wrk.bad_status,
            r.syn_retrans,
            r.cpu_us,
            r.busy * 100.0
        ));
        figures.runs.push(mode, t, r);
    }
    Ok(figures)
}

impl Bench<'_> {
    /// Runs `f` with target `t` in place: the service's mode for the mesh targets, the
    /// nftables table (only while its runs last, so conntrack's hooks are in h1 only then).
    fn with_target<T>(&mut self, t: Target, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        match t {
            Target::Mesh => self.set_dsr(false)?,
            Target::MeshDsr => self.set_dsr(true)?,
            _ => {}
        }
        let _nft = match t {
            Target::Nft => Some(NftTable::load(
                &self.h1_ns,
                &self.dir.0,
                baselines::NFT_TABLE,
                &self.nft_rules,
            )?),
            _ => None,
        };
        f(self)
    }

    /// `vxmesh service update demo --mode dsr|default`, then waits until every host's
    /// datapath serves the published port in that mode (its pinned `vx_mesh_be` entries).
    fn set_dsr(&mut self, dsr: bool) -> Result<()> {
        if self.dsr == dsr {
            return Ok(());
        }
        let mode = if dsr { "dsr" } else { "default" };
        crate::bench_lb::web::service(
            self.vx,
            &self.status.store,
            &["update", "demo", "--mode", mode],
        )?;
        let start = Instant::now();
        while !self.datapath_in_mode(dsr)? {
            if start.elapsed() > Duration::from_secs(20) {
                bail!("the hosts' datapaths did not switch to mode {mode} within 20 s");
            }
            util::check_interrupted()?;
            std::thread::sleep(Duration::from_millis(20));
        }
        self.dsr = dsr;
        Ok(())
    }

    /// Whether every host with replicas serves the demo's port in DSR mode (`dsr`) or not.
    fn datapath_in_mode(&self, dsr: bool) -> Result<bool> {
        mesh_in_mode(self.status, dsr)
    }

    fn url(&self, t: Target) -> String {
        format!("http://{}:{}/", self.h1, t.port())
    }

    /// New connections to target `t` until every server of `want` has answered (at most
    /// 30 s); the time it took and the client address(es) they reported.
    fn wait_answers(&self, t: Target, want: &[&str]) -> Result<(Duration, String)> {
        let start = Instant::now();
        let mut seen = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        let url = format!("{}[1-20]", self.url(t));
        loop {
            let out = util::capture(&mut self.vx.exec(
                CLIENT,
                &["curl", "-s", "-m", "1", "-H", "Connection: close", &url],
            ))?;
            for a in answers(&String::from_utf8_lossy(&out.stdout)) {
                if want.contains(&a.replica.as_str()) {
                    seen.insert(a.replica);
                    addrs.insert(a.client);
                }
            }
            if seen.len() == want.len() {
                let addrs: Vec<String> = addrs.into_iter().collect();
                return Ok((start.elapsed(), addrs.join(", ")));
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!(
                    "{}: after 30 s only {seen:?} answered of {want:?}",
                    self.url(t)
                );
            }
            util::check_interrupted()?;
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn measure(&self, mode: Mode, t: Target) -> Result<Run> {
        let mut args = wrk_args(THREADS, CONNECTIONS, self.seconds, mode);
        args.push(self.url(t));
        set_port_range(&self.client_ns, t.ports())?;
        let syn_before = syn_retrans(&self.client_ns)?;
        let before = CpuTimes::now()?;
        let w = wrk(self.vx, CLIENT, &args)?;
        let after = CpuTimes::now()?;
        Ok(Run {
            wrk: w,
            syn_retrans: syn_retrans(&self.client_ns)? - syn_before,
            cpu_us: cpu::us_per_request(before, after, w.requests),
            busy: cpu::busy_share(before, after),
        })
    }
}

fn report(f: &Figures) {
    heading(&format!(
        "bench mesh results: wrk -t{THREADS} -c{CONNECTIONS} from the lab's outside client to \
         h1 (10.99.0.1), 6 replicas on 3 hosts, {} s per run, median of {} interleaved \
         round(s) [lowest..highest]",
        f.seconds, f.rounds
    ));
    say("CPU/request: busy CPU time of the whole machine (/proc/stat is machine-wide: it");
    say("counts the client's wrk, every lab host's kernel, the replicas, haproxy, and whatever");
    say("else ran meanwhile) divided by the requests of the run; not the ingress host's alone.");
    for mode in [Mode::KeepAlive, Mode::Close] {
        say(&format!("{}:", mode.label()));
        for t in Target::ALL {
            let (Some(runs), Some(sum)) = (f.runs.get(mode, t), f.runs.summary(mode, t)) else {
                continue;
            };
            let cpu: Vec<f64> = runs.iter().map(|r| r.cpu_us).collect();
            let cpu = util::median(&cpu).unwrap_or_default();
            let Summary {
                mid,
                lo,
                hi,
                errors,
                syn,
            } = sum;
            row(
                &format!("  {}", t.label()),
                format!(
                    "{mid:>9.0} req/s [{lo:.0}..{hi:.0}]  {cpu:6.1} µs CPU/request  \
                     ({errors} errors, {syn} SYN retransmits; backends saw {})",
                    f.seen_as.get(&t).map(String::as_str).unwrap_or("?")
                ),
            );
        }
        for (a, b, goal, name) in [
            (
                Target::Mesh,
                Target::Nft,
                Some(GOAL_OF_NFT),
                "mesh default / nftables",
            ),
            (
                Target::Mesh,
                Target::Haproxy,
                Some(GOAL_OF_HAPROXY),
                "mesh default / haproxy",
            ),
            (
                Target::MeshDsr,
                Target::Mesh,
                Some(GOAL_DSR_OF_DEFAULT),
                "mesh DSR / mesh default",
            ),
            (Target::Mesh, Target::Direct, None, "mesh default / direct"),
            (Target::MeshDsr, Target::Nft, None, "mesh DSR / nftables"),
        ] {
            if let Some(line) = f.runs.ratio_line(mode, a, b, goal) {
                row(&format!("  {name}"), line);
            }
        }
    }
}

/// Whether every lab host with replicas serves the demo's published port in DSR mode (`dsr`)
/// or in default mode: read from its pinned `vx_mesh_be` entries.
pub(crate) fn mesh_in_mode(status: &LabStatus, dsr: bool) -> Result<bool> {
    let root = status
        .bpf_pin_root
        .as_ref()
        .context("the lab status gives no BPF pin root")?;
    let (demo, _) = status.mesh()?;
    let hosts: BTreeSet<&str> = demo.replicas.iter().map(|r| r.host.as_str()).collect();
    for h in hosts {
        let pins = vxmesh_ebpf::NodePins::new(root, h)?;
        let maps = vxmesh_ebpf::Maps::open_pinned(&pins)?;
        let entries: Vec<_> = maps
            .mesh_bes()?
            .into_iter()
            .filter(|(_, v)| u16::from_be(v.pub_port) == demo.published)
            .collect();
        if entries.is_empty()
            || entries
                .iter()
                .any(|(_, v)| (v.flags & vxmesh_ebpf::MESH_F_DSR != 0) != dsr)
        {
            return Ok(false);
        }
    }
    Ok(true)
}
