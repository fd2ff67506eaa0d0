//! Part (b): HTTP through a service VIP against the same backends reached directly and
//! through an nftables DNAT VIP, in a 3-host lab (release vxmesh), keep-alive and one
//! connection per request; then (c)'s add-backend delay in the same lab.
//!
//! The lab: `lab up --hosts 3 --containers-per-host 2 --networks 1`. Backends: nginx in
//! h2-c1, h2-c2, h3-c1, h3-c2; client: wrk in h1-c1, run with `lab exec` (in the container's
//! cgroup, which the agents' socket programs are attached above). One wrk process per run,
//! `-t4 -c64` (4 threads, 16 connections each) in every mode:
//!
//! - VIP: `vxmesh service create web --port 80 --backend …` (the four), wrk to VIP:80; each
//!   connect() is balanced by the socket program (Maglev), then goes straight to a backend.
//! - direct: the same wrk with a Lua `setup()` that gives thread i backend i's address
//!   (`thread.addr`), so the same connections spread evenly over the same backends with no
//!   balancer at all (one wrk per backend would split the CPU differently; an nginx upstream
//!   would add a proxy).
//! - nftables: what kube-proxy's nftables mode builds, by hand: in the client's host
//!   namespace (h1), a `nat` prerouting chain `ip daddr 10.96.0.10 tcp dport 80 dnat to numgen
//!   inc mod 4 map { 0 : backend0, … }`, with the client routing 10.96.0.0/24 via its
//!   gateway (h1's bridge). Replies are bridged back to the client through h1's bridge, where
//!   netfilter sees them (bridge-nf-call-iptables is 1 in every new namespace) and undoes the
//!   DNAT. The table exists only during the nftables runs, so conntrack is not running in h1
//!   during the others.
//!
//! Each target uses its own range of client ports ([`Target::ports`]), and the client's SYN
//! retransmits are counted per run.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::delay::{self, DelayFigures};
use super::nginx::{wrk, Nginx, WrkRun, WEB_PORT};
use super::{at_least, row, GOAL_OF_DIRECT, GOAL_OF_NFT};
use crate::bench::Options;
use crate::lab::{bare_ip, LabStatus, Vxmesh};
use crate::util::{self, heading, say};

pub const CLIENT: &str = "h1-c1";
pub const BACKENDS: [&str; 4] = ["h2-c1", "h2-c2", "h3-c1", "h3-c2"];
const CONNECTIONS: usize = 64;
/// The nftables VIP (outside the network's subnet, like a Kubernetes ClusterIP).
const NFT_VIP: &str = "10.96.0.10";
const NFT_TABLE: &str = "vxbench_lb";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    KeepAlive,
    Close,
}

impl Mode {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keep-alive requests/s",
            Mode::Close => "new connections/s (Connection: close)",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Vip,
    Direct,
    Nft,
}

impl Target {
    const ALL: [Target; 3] = [Target::Vip, Target::Direct, Target::Nft];

    /// The client's ephemeral ports in this target's runs (`ip_local_port_range`): a
    /// backend keeps TIME_WAIT for each closed connection (it closes first), and a SYN of
    /// another target with the same 4-tuple carries timestamps from another offset (Linux
    /// derives it from the destination address: the nftables VIP's differs from the
    /// backend's), fails PAWS and waits a 1 s SYN retransmit. Disjoint ranges keep the
    /// targets from meeting each other's TIME_WAITs.
    fn ports(self) -> &'static str {
        match self {
            Target::Vip => "20000 34999",
            Target::Direct => "35000 49999",
            Target::Nft => "50000 64999",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Target::Vip => "VIP (vxmesh eBPF, socket path)",
            Target::Direct => "direct (thread i -> backend i)",
            Target::Nft => "nftables numgen DNAT VIP (h1)",
        }
    }
}

pub struct WebFigures {
    runs: RunsByTarget<Target, Run>,
    seconds: u32,
}

/// A run measured by wrk.
pub(crate) trait Measured {
    /// wrk's summary of the run and the SYNs the client sent again meanwhile.
    fn measured(&self) -> (&WrkRun, u64);

    /// Requests per second.
    fn rps(&self) -> f64 {
        self.measured().0.rps
    }
}

impl Measured for Run {
    fn measured(&self) -> (&WrkRun, u64) {
        (&self.wrk, self.syn_retrans)
    }
}

/// One target's runs in one mode, as a report shows them.
pub(crate) struct Summary {
    /// Median, lowest and highest requests/s.
    pub mid: f64,
    pub lo: f64,
    pub hi: f64,
    /// Errors and SYN retransmits over the runs.
    pub errors: u64,
    pub syn: u64,
}

/// Every run of an HTTP bench by (mode, target), in round order.
pub(crate) struct RunsByTarget<T, R>(pub BTreeMap<(Mode, T), Vec<R>>);

impl<T: Ord + Copy, R: Measured> RunsByTarget<T, R> {
    pub(crate) fn new() -> Self {
        RunsByTarget(BTreeMap::new())
    }

    pub(crate) fn get(&self, mode: Mode, target: T) -> Option<&Vec<R>> {
        self.0.get(&(mode, target))
    }

    pub(crate) fn push(&mut self, mode: Mode, target: T, run: R) {
        self.0.entry((mode, target)).or_default().push(run);
    }

    /// The median requests/s of `target`'s runs in `mode`.
    pub(crate) fn median(&self, mode: Mode, target: T) -> Option<f64> {
        let v: Vec<f64> = self.get(mode, target)?.iter().map(R::rps).collect();
        util::median(&v)
    }

    /// The summary of `target`'s runs in `mode`.
    pub(crate) fn summary(&self, mode: Mode, target: T) -> Option<Summary> {
        let runs = self.get(mode, target)?;
        let v: Vec<f64> = runs.iter().map(R::rps).collect();
        let (mid, lo, hi) = util::median_range(&v)?;
        Some(Summary {
            mid,
            lo,
            hi,
            errors: runs
                .iter()
                .map(|r| r.measured().0.errors + r.measured().0.bad_status)
                .sum(),
            syn: runs.iter().map(|r| r.measured().1).sum(),
        })
    }

    /// The ratio of the medians `a` / `b` in `mode`, its verdict against `goal` (at least),
    /// and the ratio round by round, as one report line (None when either has no runs).
    pub(crate) fn ratio_line(&self, mode: Mode, a: T, b: T, goal: Option<f64>) -> Option<String> {
        let r = self.median(mode, a)? / self.median(mode, b)?;
        let verdict = match goal {
            Some(g) => format!("goal >= {g:.2}: {}", at_least(r, g)),
            None => "(no goal)".to_string(),
        };
        let rounds: Vec<String> = self
            .per_round(mode, a, b)
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect();
        Some(format!(
            "{r:9.2}  {verdict}   (round by round: {})",
            rounds.join(", ")
        ))
    }

    /// `a` / `b` in each round (the two runs of a round are minutes apart at most, so these
    /// see the machine's load drift less than the ratio of medians).
    pub(crate) fn per_round(&self, mode: Mode, a: T, b: T) -> Vec<f64> {
        match (self.get(mode, a), self.get(mode, b)) {
            (Some(x), Some(y)) => x.iter().zip(y).map(|(x, y)| x.rps() / y.rps()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Files of the bench (nginx configurations and logs, the Lua script), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        Self::tagged("lb")
    }

    /// `$TMPDIR/vxbench-TAG-PID`, emptied first.
    pub(crate) fn tagged(tag: &str) -> Result<Self> {
        let p = std::env::temp_dir().join(format!("vxbench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `vxmesh --store STORE --json service ARGS…`, its JSON answer.
pub fn service(vx: &Vxmesh, store: &str, args: &[&str]) -> Result<serde_json::Value> {
    let mut c = util::cmd(
        &vx.bin.to_string_lossy(),
        ["--store", store, "--json", "service"],
    );
    c.args(args);
    util::say(&format!("$ {}", util::display(&c)));
    let out = util::output(&mut c)?;
    serde_json::from_str(&out).with_context(|| format!("parsing `vxmesh service` JSON: {out}"))
}

/// The VIP in a service's JSON.
pub fn vip_of(json: &serde_json::Value) -> Result<Ipv4Addr> {
    json.get("vip")
        .and_then(|v| v.as_str())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no vip in {json}"))
}

/// `curl` from `client` to `url` until every name in `want` has answered (at most 30 s).
pub fn wait_answers(vx: &Vxmesh, client: &str, url: &str, want: &[&str]) -> Result<Duration> {
    let start = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let out = util::capture(&mut vx.exec(client, &["curl", "-s", "-m", "1", url]))?;
        let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if want.contains(&body.as_str()) {
            seen.insert(body.clone());
        }
        if seen.len() == want.len() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "{url} from {client}: after 30 s only {seen:?} answered of {want:?} \
                 (last answer {body:?})"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An nftables table loaded into a lab namespace from a ruleset file, deleted on drop.
pub(crate) struct NftTable<'a> {
    host_ns: &'a str,
    table: &'static str,
}

impl<'a> NftTable<'a> {
    /// Writes `rules` (which define `table ip TABLE`) to `dir/TABLE.nft` and loads them into
    /// `host_ns` with `nft -f`.
    pub(crate) fn load(
        host_ns: &'a str,
        dir: &Path,
        table: &'static str,
        rules: &str,
    ) -> Result<Self> {
        let file = dir.join(format!("{table}.nft"));
        std::fs::write(&file, rules)?;
        util::run_quiet(&mut util::in_netns(
            host_ns,
            "nft",
            ["-f", &file.to_string_lossy()],
        ))?;
        Ok(NftTable { host_ns, table })
    }
}

impl Drop for NftTable<'_> {
    fn drop(&mut self) {
        let _ = util::capture(&mut util::in_netns(
            self.host_ns,
            "nft",
            ["delete", "table", "ip", self.table],
        ));
    }
}

/// The nftables DNAT VIP in h1, removed on drop.
fn nft_vip<'a>(host_ns: &'a str, dir: &Path, backends: &[String]) -> Result<NftTable<'a>> {
    let map: Vec<String> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{i} : {b}"))
        .collect();
    let rules = format!(
        "table ip {NFT_TABLE} {{\n  chain prerouting {{\n    \
         type nat hook prerouting priority dstnat; policy accept;\n    \
         ip daddr {NFT_VIP} tcp dport {WEB_PORT} dnat to numgen inc mod {} map {{ {} }}\n  \
         }}\n}}\n",
        backends.len(),
        map.join(", ")
    );
    NftTable::load(host_ns, dir, NFT_TABLE, &rules)
}

/// wrk's options for one run: `threads`, `connections`, `seconds`, a 5 s timeout, and
/// `Connection: close` in that mode.
pub(crate) fn wrk_args(
    threads: usize,
    connections: usize,
    seconds: u32,
    mode: Mode,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "-t".into(),
        threads.to_string(),
        "-c".into(),
        connections.to_string(),
        "-d".into(),
        format!("{seconds}s"),
        "--timeout".into(),
        "5s".into(),
    ];
    if mode == Mode::Close {
        args.extend(["-H".into(), "Connection: close".into()]);
    }
    args
}

/// Sets the ephemeral port range (`"LOW HIGH"`) of network namespace `ns`.
pub(crate) fn set_port_range(ns: &str, range: &str) -> Result<()> {
    util::run_quiet(&mut util::in_netns(
        ns,
        "sysctl",
        ["-q", "-w", &format!("net.ipv4.ip_local_port_range={range}")],
    ))
}

/// Part (b) when `http`, then the add-backend delay when `delay`, in one lab.
pub fn run(
    vx: &Vxmesh,
    opts: &Options,
    http: bool,
    delay: bool,
) -> Result<(Option<WebFigures>, Option<DelayFigures>)> {
    heading("(b) HTTP through a VIP, directly, and through nftables, in a 3-host lab");
    vx.with_lab(
        &[
            "--hosts",
            "3",
            "--containers-per-host",
            "2",
            "--networks",
            "1",
        ],
        || in_lab(vx, opts, http, delay),
    )
}

fn in_lab(
    vx: &Vxmesh,
    opts: &Options,
    http: bool,
    delay: bool,
) -> Result<(Option<WebFigures>, Option<DelayFigures>)> {
    let status = vx.status()?;
    status.check_agents()?;
    let tmp = TempDir::new()?;
    let client = status.container(CLIENT)?;
    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for name in BACKENDS {
        let c = status.container(name)?;
        vx.wait_reachable(CLIENT, bare_ip(&c.address), Duration::from_secs(30))?;
        servers.push(Nginx::start(vx, name, &c.namespace, &tmp.0.join(name))?);
        addrs.push(bare_ip(&c.address).to_string());
    }
    say(&format!(
        "nginx (one process) answering with its name in {}; client wrk in {CLIENT} ({})",
        BACKENDS.join(", "),
        bare_ip(&client.address)
    ));

    let figures = if http {
        Some(http_rounds(vx, opts, &status, &addrs, &tmp)?)
    } else {
        None
    };
    let backends: Vec<(&str, &Nginx)> = BACKENDS.iter().copied().zip(servers.iter()).collect();
    let delay = if delay {
        Some(delay::run(vx, &status, opts, &backends)?)
    } else {
        None
    };
    drop(servers);
    Ok((figures, delay))
}

/// The service `web`, the nftables VIP, and the interleaved wrk rounds.
fn http_rounds(
    vx: &Vxmesh,
    opts: &Options,
    status: &LabStatus,
    addrs: &[String],
    tmp: &TempDir,
) -> Result<WebFigures> {
    let client = status.container(CLIENT)?;
    let mut args = vec!["create", "web", "--network", &client.network];
    let port = WEB_PORT.to_string();
    args.extend(["--port", &port]);
    for b in BACKENDS {
        args.extend(["--backend", b]);
    }
    let vip = vip_of(&service(vx, &status.store, &args)?)?;
    let took = wait_answers(vx, CLIENT, &format!("http://{vip}/"), &BACKENDS)?;
    say(&format!(
        "service web: VIP {vip}:{WEB_PORT}; every backend answered through it after {:.2} s",
        took.as_secs_f64()
    ));

    let gateway = status
        .network(&client.network)?
        .gateway
        .clone()
        .context("the lab status gives no gateway")?;
    let host_ns = &status.host(&client.host)?.namespace;
    util::run_quiet(&mut util::cmd(
        "ip",
        [
            "-n",
            &client.namespace,
            "route",
            "replace",
            &format!("{NFT_VIP}/32"),
            "via",
            &gateway,
        ],
    ))?;
    {
        let _nft = nft_vip(host_ns, &tmp.0, addrs)?;
        wait_answers(vx, CLIENT, &format!("http://{NFT_VIP}/"), &BACKENDS)?;
        say(&format!(
            "nftables VIP {NFT_VIP}:{WEB_PORT} in {host_ns} (numgen inc mod {}) answers from \
             every backend; table {NFT_TABLE} is made for each nftables run and deleted after",
            addrs.len()
        ));
    }

    let script = tmp.0.join("direct.lua");
    std::fs::write(&script, direct_script(addrs))?;
    let setup = Setup {
        vx,
        seconds: opts.seconds,
        vip,
        addrs,
        script,
        host_ns,
        client_ns: &client.namespace,
        dir: &tmp.0,
    };
    let mut figures = WebFigures {
        runs: RunsByTarget::new(),
        seconds: opts.seconds,
    };
    for slot in schedule(opts.rounds, &Target::ALL) {
        let (mode, target) = (slot.mode, slot.target);
        if slot.starts_round {
            say(&format!("(b) round {} of {}", slot.round + 1, opts.rounds));
        }
        let r = setup.measure(mode, target)?;
        say(&format!(
            "  {:<32} {:<38} {:>8.0}  ({} requests, {} socket errors, {} non-2xx, \
             {} SYN retransmits)",
            target.label(),
            mode.label(),
            r.wrk.rps,
            r.wrk.requests,
            r.wrk.errors,
            r.wrk.bad_status,
            r.syn_retrans
        ));
        figures.runs.push(mode, target, r);
    }

    Ok(figures)
}

/// One run of [`schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot<T> {
    /// From 0.
    pub round: u32,
    /// The first run of its round.
    pub starts_round: bool,
    pub mode: Mode,
    pub target: T,
}

/// The interleaved order of the HTTP runs: in each round both modes (keep-alive first in
/// even rounds, `Connection: close` first in odd ones), and in each mode every target once,
/// the order rotated by one target each round, so no target always runs first or after the
/// same one.
pub(crate) fn schedule<T: Copy>(rounds: u32, targets: &[T]) -> Vec<Slot<T>> {
    let mut out = Vec::new();
    for round in 0..rounds {
        let modes = if round % 2 == 0 {
            [Mode::KeepAlive, Mode::Close]
        } else {
            [Mode::Close, Mode::KeepAlive]
        };
        for mode in modes {
            for k in 0..targets.len() {
                out.push(Slot {
                    round,
                    starts_round: out.len() % (2 * targets.len()) == 0,
                    mode,
                    target: targets[(k + round as usize) % targets.len()],
                });
            }
        }
    }
    out
}

/// Thread i of wrk connects to backend i (wrk 4's `thread.addr`).
fn direct_script(addrs: &[String]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "-- vxmesh bench lb: the direct baseline, thread i -> backend i\n\
         local addrs = {{ {} }}\n\
         local n = 0\n\
         function setup(thread)\n  \
           n = n + 1\n  \
           thread.addr = wrk.lookup(addrs[(n - 1) % #addrs + 1], \"{WEB_PORT}\")[1]\n\
         end\n",
        list.join(", ")
    )
}

/// One wrk run and what the client's kernel counted meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub wrk: WrkRun,
    /// SYNs the client sent again (`TcpExt: TCPSynRetrans` of its namespace).
    pub syn_retrans: u64,
}

/// What every run needs.
struct Setup<'a> {
    vx: &'a Vxmesh,
    seconds: u32,
    vip: Ipv4Addr,
    addrs: &'a [String],
    script: PathBuf,
    host_ns: &'a str,
    client_ns: &'a str,
    dir: &'a Path,
}

impl Setup<'_> {
    fn measure(&self, mode: Mode, target: Target) -> Result<Run> {
        let mut args = wrk_args(self.addrs.len(), CONNECTIONS, self.seconds, mode);
        let _nft = match target {
            Target::Vip => {
                args.push(format!("http://{}:{WEB_PORT}/", self.vip));
                None
            }
            Target::Direct => {
                args.extend(["-s".into(), self.script.to_string_lossy().into_owned()]);
                args.push(format!("http://{}:{WEB_PORT}/", self.addrs[0]));
                None
            }
            Target::Nft => {
                args.push(format!("http://{NFT_VIP}:{WEB_PORT}/"));
                Some(nft_vip(self.host_ns, self.dir, self.addrs)?)
            }
        };
        set_port_range(self.client_ns, target.ports())?;
        let before = syn_retrans(self.client_ns)?;
        let wrk = wrk(self.vx, CLIENT, &args)?;
        Ok(Run {
            wrk,
            syn_retrans: syn_retrans(self.client_ns)? - before,
        })
    }
}

/// `TcpExt: TCPSynRetrans` in network namespace `ns`.
pub(crate) fn syn_retrans(ns: &str) -> Result<u64> {
    let text = util::output(&mut util::in_netns(ns, "cat", ["/proc/net/netstat"]))?;
    parse_netstat(&text, "TcpExt:", "TCPSynRetrans")
        .with_context(|| format!("no TcpExt TCPSynRetrans in {ns}'s /proc/net/netstat"))
}

/// A counter of /proc/net/netstat: a line of names after `prefix`, then a line of values.
fn parse_netstat(text: &str, prefix: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with(prefix));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let i = names.split_whitespace().position(|n| n == name);
        if let Some(i) = i {
            return values.split_whitespace().nth(i)?.parse().ok();
        }
    }
    None
}

pub fn report(opts: &Options, f: &WebFigures) {
    heading(&format!(
        "(b) results: wrk -t{} -c{CONNECTIONS} from {CLIENT} (in its cgroup) to nginx in {}, \
         {} s per run, median of {} round(s)",
        BACKENDS.len(),
        BACKENDS.join(", "),
        f.seconds,
        opts.rounds
    ));
    for mode in [Mode::KeepAlive, Mode::Close] {
        say(&format!("{}:", mode.label()));
        for t in Target::ALL {
            let Some(Summary {
                mid,
                lo,
                hi,
                errors,
                syn,
            }) = f.runs.summary(mode, t)
            else {
                continue;
            };
            row(
                &format!("  {}", t.label()),
                format!(
                    "{mid:>9.0}  [{lo:.0}..{hi:.0}]  ({errors} errors, {syn} SYN retransmits \
                     over the runs)"
                ),
            );
        }
        for (other, goal, name) in [
            (Target::Direct, GOAL_OF_DIRECT, "VIP / direct"),
            (Target::Nft, GOAL_OF_NFT, "VIP / nftables"),
        ] {
            if let Some(line) = f.runs.ratio_line(mode, Target::Vip, other, Some(goal)) {
                row(&format!("  {name}"), line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_counter_of_proc_net_netstat() {
        let text = "TcpExt: SyncookiesSent TCPSynRetrans TWRecycled\nTcpExt: 0 818 3\n\
                    IpExt: InNoRoutes TCPSynRetrans\nIpExt: 5 6\n";
        assert_eq!(parse_netstat(text, "TcpExt:", "TCPSynRetrans"), Some(818));
        assert_eq!(parse_netstat(text, "IpExt:", "InNoRoutes"), Some(5));
        assert_eq!(parse_netstat(text, "TcpExt:", "Nope"), None);
    }

    #[test]
    fn the_schedule_interleaves_modes_and_rotates_targets() {
        let s = schedule(2, &['a', 'b', 'c']);
        let order: Vec<(u32, bool, Mode, char)> = s
            .iter()
            .map(|x| (x.round, x.starts_round, x.mode, x.target))
            .collect();
        use Mode::{Close as C, KeepAlive as K};
        assert_eq!(
            order,
            [
                (0, true, K, 'a'),
                (0, false, K, 'b'),
                (0, false, K, 'c'),
                (0, false, C, 'a'),
                (0, false, C, 'b'),
                (0, false, C, 'c'),
                (1, true, C, 'b'),
                (1, false, C, 'c'),
                (1, false, C, 'a'),
                (1, false, K, 'b'),
                (1, false, K, 'c'),
                (1, false, K, 'a'),
            ]
        );
    }

    #[test]
    fn summaries_and_ratios_of_runs() {
        let run = |rps: f64, errors: u64| Run {
            wrk: WrkRun {
                rps,
                requests: 1,
                errors,
                bad_status: 1,
            },
            syn_retrans: 2,
        };
        let mut runs = RunsByTarget::new();
        for (a, b) in [(100.0, 50.0), (300.0, 100.0), (200.0, 200.0)] {
            runs.push(Mode::KeepAlive, 'a', run(a, 0));
            runs.push(Mode::KeepAlive, 'b', run(b, 1));
        }
        let s = runs.summary(Mode::KeepAlive, 'b').unwrap();
        assert_eq!(
            (s.mid, s.lo, s.hi, s.errors, s.syn),
            (100.0, 50.0, 200.0, 6, 6)
        );
        assert_eq!(runs.per_round(Mode::KeepAlive, 'a', 'b'), [2.0, 3.0, 1.0]);
        assert_eq!(
            runs.ratio_line(Mode::KeepAlive, 'a', 'b', Some(2.5))
                .unwrap(),
            "     2.00  goal >= 2.50: NOT met   (round by round: 2.00, 3.00, 1.00)"
        );
        assert!(runs.ratio_line(Mode::Close, 'a', 'b', None).is_none());
    }

    #[test]
    fn the_direct_script_gives_each_thread_one_backend() {
        let s = direct_script(&["10.10.1.3".into(), "10.10.1.4".into()]);
        assert!(s.contains("local addrs = { \"10.10.1.3\", \"10.10.1.4\" }"));
        assert!(s.contains("thread.addr = wrk.lookup(addrs[(n - 1) % #addrs + 1], \"80\")[1]"));
    }
}
