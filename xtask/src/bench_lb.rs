//! `cargo xtask bench lb`: the service load balancer, in one run, with figures side by side
//! and ratios against the goals of issue 8 (acceptance 7). Prints figures; asserts nothing
//! about a timing.
//!
//! - (a) [`tc`]: ns/packet of `vx_from_lxc` under BPF_PROG_TEST_RUN with 1, 1,000 and 10,000
//!   services × 10 backends, on three paths (established flow, no frontend, new flow), and the
//!   kernel memory of the Maglev tables, on datapaths of the bench's own (pin root
//!   `/sys/fs/bpf/vxbench-lb-PID`, removed at the end).
//! - (b) [`web`]: wrk from a lab container (in its cgroup, so the socket programs balance it)
//!   to a service VIP, to the same nginx backends by address, and through an nftables
//!   `numgen inc` DNAT VIP in the client's host namespace; keep-alive and `Connection:
//!   close`; interleaved rounds, medians, ratios.
//! - (c) [`delay`]: from `vxmesh service update --add-backend` returning to the first request
//!   the new backend logs; [`scale`]: 10,000 services × 10 backends written with the catalog
//!   to a 1-host lab's store until the agent's pinned maps hold them all, and the same from
//!   an empty datapath when the agent starts with them in the store.

mod delay;
pub(crate) mod nginx;
mod scale;
mod tc;
pub(crate) mod web;

use anyhow::{bail, Result};

use crate::bench::Options;
use crate::lab::Vxmesh;
use crate::util::{self, heading, say};

/// The lab of (b) and the add-backend delay: 3 hosts, 2 containers each, one network.
const WEB_PREFIX: &str = "vxblb";
/// The 1-host lab of the 10,000-service programming figure.
const SCALE_PREFIX: &str = "vxblbs";

/// Goals of acceptance 7.
pub(crate) const GOAL_NS_AT_10K: f64 = 100.0;
pub(crate) const GOAL_SIZE_RATIO: f64 = 1.10;
pub(crate) const GOAL_OF_DIRECT: f64 = 0.95;
pub(crate) const GOAL_OF_NFT: f64 = 1.00;
pub(crate) const GOAL_PROGRAM_S: f64 = 2.0;
pub(crate) const GOAL_ADD_BACKEND_MS: f64 = 50.0;

/// The parts, as `--only` names them.
const PARTS: [&str; 4] = ["tc", "http", "delay", "scale"];
/// Set in the release build this bench runs itself as.
const RELEASE_ENV: &str = "VXBENCH_LB_RELEASE";

/// `args`: the command line after `bench` (passed on to the release build).
pub fn bench(args: &[String], opts: &Options) -> Result<()> {
    util::require_root("bench lb")?;
    let parts: Vec<&str> = match &opts.only {
        None if opts.no_lab => vec!["tc"],
        None => PARTS.to_vec(),
        Some(list) => {
            for p in list {
                if !PARTS.contains(&p.as_str()) {
                    bail!("--only {p:?}: the parts are {}", PARTS.join(", "));
                }
            }
            PARTS
                .iter()
                .copied()
                .filter(|p| list.iter().any(|l| l == p))
                .collect()
        }
    };
    if cfg!(debug_assertions) && std::env::var_os(RELEASE_ENV).is_none() {
        // Writing 10,000 services with the catalog is part of a figure of (c): run the
        // whole bench from a release build, as a library user's program would be.
        heading("bench lb runs from a release build of xtask (cargo run --release -p xtask)");
        return util::run(
            util::cargo()
                .args(["run", "--release", "--quiet", "-p", "xtask", "--", "bench"])
                .args(args)
                .env(RELEASE_ENV, "1"),
        );
    }
    crate::setup::setup()?;
    heading(&format!(
        "bench lb: parts {}; {} round(s); wrk runs of {} s",
        parts.join(", "),
        opts.rounds,
        opts.seconds
    ));
    let mut report = Report::default();
    if parts.contains(&"tc") {
        let tc = tc::run(opts)?;
        tc::report(opts, &tc);
        report.tc = Some(tc);
    }
    if parts.contains(&"http") || parts.contains(&"delay") {
        let vx = Vxmesh::build(WEB_PREFIX)?;
        let (web, delay) = web::run(&vx, opts, parts.contains(&"http"), parts.contains(&"delay"))?;
        if let Some(w) = &web {
            web::report(opts, w);
        }
        if let Some(d) = &delay {
            delay::report(d);
        }
        report.web = web;
        report.delay = delay;
    }
    if parts.contains(&"scale") {
        let vx = Vxmesh::build(SCALE_PREFIX)?;
        let scale = scale::run(&vx, opts)?;
        scale::report(&scale);
        report.scale = Some(scale);
    }
    heading("bench lb: all results of this run (also printed above, part by part)");
    report.print(opts);
    Ok(())
}

#[derive(Default)]
struct Report {
    tc: Option<tc::TcFigures>,
    web: Option<web::WebFigures>,
    delay: Option<delay::DelayFigures>,
    scale: Option<scale::ScaleFigures>,
}

impl Report {
    fn print(&self, opts: &Options) {
        if let Some(f) = &self.tc {
            tc::report(opts, f);
        }
        if let Some(f) = &self.web {
            web::report(opts, f);
        }
        if let Some(f) = &self.delay {
            delay::report(f);
        }
        if let Some(f) = &self.scale {
            scale::report(f);
        }
    }
}

/// "met" or "NOT met" for a figure that should be at least `goal`.
pub(crate) fn at_least(value: f64, goal: f64) -> &'static str {
    if value >= goal {
        "met"
    } else {
        "NOT met"
    }
}

/// "met" or "NOT met" for a figure that should be at most `goal`.
pub(crate) fn at_most(value: f64, goal: f64) -> &'static str {
    if value <= goal {
        "met"
    } else {
        "NOT met"
    }
}

/// `1234567` → `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub(crate) fn row(label: &str, value: String) {
    say(&format!("{label:<46}{value}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_thousands_and_verdicts() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(at_least(0.95, GOAL_OF_DIRECT), "met");
        assert_eq!(at_least(0.94, GOAL_OF_DIRECT), "NOT met");
        assert_eq!(at_most(1.1, GOAL_SIZE_RATIO), "met");
        assert_eq!(at_most(1.11, GOAL_SIZE_RATIO), "NOT met");
    }
}
