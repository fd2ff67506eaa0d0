//! CPU time around a run, from /proc/stat's `cpu` line. /proc/stat is machine-wide: network
//! namespaces have no CPU accounting of their own, so the figure covers the client (wrk),
//! every lab host's kernel work, the replicas, haproxy and anything else running on the
//! machine meanwhile.

use anyhow::{bail, Context, Result};

/// The `cpu` line of /proc/stat, in clock ticks (USER_HZ).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice + system + irq + softirq + steal.
    pub busy: u64,
    /// busy + idle + iowait.
    pub total: u64,
}

impl CpuTimes {
    pub fn now() -> Result<CpuTimes> {
        parse(&std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?)
    }
}

/// Parses /proc/stat's first line: `cpu user nice system idle iowait irq softirq steal …`
/// (guest time is already inside user; proc(5)).
pub fn parse(stat: &str) -> Result<CpuTimes> {
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat has no cpu line")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().context("a /proc/stat field"))
        .collect::<Result<_>>()?;
    if v.len() < 8 {
        bail!("/proc/stat cpu line too short: {line}");
    }
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    Ok(CpuTimes {
        busy,
        total: busy + v[3] + v[4],
    })
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, USER_HZ).
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Busy CPU time between `before` and `after` per request, µs.
pub fn us_per_request(before: CpuTimes, after: CpuTimes, requests: u64) -> f64 {
    if requests == 0 {
        return 0.0;
    }
    after.busy.saturating_sub(before.busy) as f64 * 1e6 / ticks_per_second() / requests as f64
}

/// Busy share of the machine's CPU time between `before` and `after`, 0–1.
pub fn busy_share(before: CpuTimes, after: CpuTimes) -> f64 {
    let total = after.total.saturating_sub(before.total);
    if total == 0 {
        return 0.0;
    }
    after.busy.saturating_sub(before.busy) as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cpu_line() {
        let stat = "cpu  100 5 50 1000 20 3 7 1 0 0\ncpu0 50 2 25 500 10 1 3 0 0 0\n";
        let t = parse(stat).unwrap();
        assert_eq!(t.busy, 100 + 5 + 50 + 3 + 7 + 1);
        assert_eq!(t.total, t.busy + 1000 + 20);
        assert!(parse("intr 1 2 3\n").is_err());
        let later = CpuTimes {
            busy: t.busy + 200,
            total: t.total + 400,
        };
        assert_eq!(busy_share(t, later), 0.5);
        let us = us_per_request(t, later, 1000);
        assert!((us - 200.0 * 1e6 / ticks_per_second() / 1000.0).abs() < 1e-9);
    }
}
