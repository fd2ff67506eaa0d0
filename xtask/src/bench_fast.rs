//! `cargo xtask bench overlay`'s second datapath: switching the lab's agents between the
//! bridge datapath and the eBPF fast path (`lab stop-agent`, `lab start-agent --datapath`),
//! and the agents' CPU time during a transfer (utime + stime of every agent, from
//! /proc/PID/stat, clock ticks).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bench::Measure;
use crate::lab::{LabStatus, Vxmesh};
use crate::util::{self, heading, say};

/// The two datapaths a lab host's agent runs (`agent --datapath`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datapath {
    Bridge,
    Ebpf,
}

impl Datapath {
    pub fn name(self) -> &'static str {
        match self {
            Datapath::Bridge => "bridge",
            Datapath::Ebpf => "ebpf",
        }
    }
}

/// Whether host `host`'s fast path is attached (`_fast-HOST/links` holds at least `links`
/// link pins) under the lab's pin root; for `links == 0`, whether it is gone.
fn fast_links(status: &LabStatus, host: &str) -> usize {
    let Some(root) = &status.bpf_pin_root else {
        return 0;
    };
    std::fs::read_dir(root.join(format!("_fast-{host}")).join("links"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Restarts every host's agent with `datapath` and waits until the fast path is attached
/// on every host (ebpf: a link on the container's veth and one on the VXLAN device) or
/// gone (bridge). Returns the lab's status with the new agents.
pub fn switch(vx: &Vxmesh, status: &LabStatus, datapath: Datapath) -> Result<LabStatus> {
    heading(&format!(
        "switching every host's agent to --datapath {}",
        datapath.name()
    ));
    for h in &status.hosts {
        util::run(&mut vx.lab("stop-agent", [h.name.as_str()]))?;
        util::run(&mut vx.lab(
            "start-agent",
            ["--datapath", datapath.name(), h.name.as_str()],
        ))?;
    }
    let status = vx.status()?;
    status.check_agents()?;
    let start = Instant::now();
    loop {
        let ready = status.hosts.iter().all(|h| match datapath {
            Datapath::Ebpf => fast_links(&status, &h.name) >= 2,
            Datapath::Bridge => !status
                .bpf_pin_root
                .as_deref()
                .unwrap_or(Path::new("/nonexistent"))
                .join(format!("_fast-{}", h.name))
                .exists(),
        });
        if ready {
            say(&format!(
                "every agent runs --datapath {} ({:.1} s)",
                datapath.name(),
                start.elapsed().as_secs_f64()
            ));
            return Ok(status);
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "the agents did not switch to --datapath {} within 30 s (see the agent logs)",
                datapath.name()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// utime + stime of process `pid`, in clock ticks (proc(5), fields 14 and 15).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat field {n}"))
    };
    Ok(field(14)? + field(15)?)
}

/// Every agent's CPU ticks, summed.
fn agents_ticks(status: &LabStatus) -> Result<u64> {
    status
        .hosts
        .iter()
        .filter_map(|h| h.agent_pid)
        .map(cpu_ticks)
        .sum()
}

/// Runs `f` (a transfer) and returns its result with the CPU the agents used meanwhile, in
/// cores (1.0: one core the whole time).
pub fn with_agent_cpu(
    status: &LabStatus,
    f: impl FnOnce() -> Result<Measure>,
) -> Result<(Measure, f64)> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let before = agents_ticks(status)?;
    let start = Instant::now();
    let m = f()?;
    let wall = start.elapsed().as_secs_f64();
    let used = agents_ticks(status)?.saturating_sub(before) as f64 / hz;
    Ok((m, used / wall.max(1e-9)))
}

/// "0.4 % of a core, 0.03 % per Gbit/s" for `cores` at throughput `bps`.
pub fn show_cpu(cores: f64, bps: f64) -> String {
    format!(
        "{:.2} % of a core, {:.3} % per Gbit/s",
        cores * 100.0,
        cores * 100.0 / (bps / 1e9).max(1e-9)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu_time() {
        let a = cpu_ticks(std::process::id()).unwrap();
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_ticks(std::process::id()).unwrap() >= a);
        assert!(show_cpu(0.5, 10e9).starts_with("50.00 % of a core, 5.000 % per Gbit/s"));
    }
}
