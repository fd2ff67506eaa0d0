//! `cargo xtask bench overlay`: iperf3 TCP throughput, side by side in one
//! run: the lab's underlay, the vxmesh overlay, and a VXLAN link built by
//! hand with iproute2. Prints figures and ratios; asserts nothing.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::lab::{bare_ip, Vxmesh};
use crate::util::{self, heading, say};

const PREFIX: &str = "vxbench";

pub struct Options {
    pub seconds: u32,
    /// Measure only the by-hand link (no vxmesh build, no lab).
    pub no_lab: bool,
}

pub fn parse(args: &[String]) -> Result<(String, Options)> {
    let mut opts = Options {
        seconds: 10,
        no_lab: false,
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
            "--no-lab" => opts.no_lab = true,
            s if s.starts_with('-') => bail!("unknown option {s:?} for `cargo xtask bench`"),
            s if which.is_none() => which = Some(s.to_string()),
            s => bail!("unexpected argument {s:?} for `cargo xtask bench`"),
        }
    }
    let which = which.context("which benchmark? available: overlay")?;
    Ok((which, opts))
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
        other => bail!("unknown benchmark {other:?}; available: overlay"),
    }
}

#[derive(Default)]
struct Figures {
    lab_underlay: Option<f64>,
    lab_overlay: Option<f64>,
    hand_underlay: Option<f64>,
    hand_vxlan: Option<f64>,
}

fn overlay(opts: &Options) -> Result<()> {
    util::require_root("bench overlay")?;
    crate::setup::setup()?;
    let vx = if opts.no_lab {
        None
    } else {
        Some(Vxmesh::build(PREFIX)?)
    };
    remove_stale_namespaces();

    let mut figures = Figures::default();
    let hand = by_hand(opts, &mut figures);
    let lab = match &vx {
        Some(vx) => lab(vx, opts, &mut figures),
        None => Ok(()),
    };
    report(opts, &figures);
    hand.context("the by-hand VXLAN measurement failed")?;
    lab.context("the lab measurement failed")?;
    Ok(())
}

fn gbit(bps: f64) -> String {
    format!("{:6.2} Gbit/s", bps / 1e9)
}

fn report(opts: &Options, f: &Figures) {
    heading(&format!(
        "results: iperf3 TCP, {} s each, one run (noisy: compare only within a run)",
        opts.seconds
    ));
    let row = |label: &str, value: String| say(&format!("{label:<34}{value}"));
    if let Some(u) = f.lab_underlay {
        row("underlay host-to-host", gbit(u));
    }
    if let Some(o) = f.lab_overlay {
        let ratio = f
            .lab_underlay
            .map(|u| format!("  ({:.2} of underlay)", o / u))
            .unwrap_or_default();
        row("overlay container-to-container", gbit(o) + &ratio);
    }
    if let Some(u) = f.hand_underlay {
        row("veth by hand (underlay of below)", gbit(u));
    }
    if let Some(h) = f.hand_vxlan {
        let ratio = f
            .hand_underlay
            .map(|u| format!("  ({:.2} of its veth)", h / u))
            .unwrap_or_default();
        row("vxlan by hand (iproute2)", gbit(h) + &ratio);
    }
    if let (Some(o), Some(h)) = (f.lab_overlay, f.hand_vxlan) {
        row("overlay / by hand", format!("{:6.2}", o / h));
    }
}

// ---------------------------------------------------------------- the lab

fn lab(vx: &Vxmesh, opts: &Options, f: &mut Figures) -> Result<()> {
    let guard = vx.up(&[
        "--hosts",
        "2",
        "--containers-per-host",
        "1",
        "--networks",
        "1",
    ])?;
    let result = (|| -> Result<()> {
        let status = vx.status()?;
        status.check_agents()?;
        let (a, b) = status.cross_host_pair()?;
        let host_a = status.host(&a.host)?;
        let host_b = status.host(&b.host)?;
        vx.wait_reachable(&a.name, bare_ip(&b.address), Duration::from_secs(20))?;

        heading(&format!(
            "underlay: {} ({}) -> {} ({})",
            host_a.name,
            bare_ip(&host_a.address),
            host_b.name,
            bare_ip(&host_b.address)
        ));
        let bps = iperf(
            &host_b.namespace,
            &host_a.namespace,
            bare_ip(&host_b.address),
            opts.seconds,
        )?;
        say(&gbit(bps));
        f.lab_underlay = Some(bps);

        heading(&format!(
            "overlay: {} ({}) -> {} ({}) on {}",
            a.name,
            bare_ip(&a.address),
            b.name,
            bare_ip(&b.address),
            a.network
        ));
        let bps = iperf(
            &b.namespace,
            &a.namespace,
            bare_ip(&b.address),
            opts.seconds,
        )?;
        say(&gbit(bps));
        f.lab_overlay = Some(bps);
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

const HAND_UNDERLAY: [&str; 2] = ["10.201.0.1", "10.201.0.2"];
const HAND_OVERLAY: [&str; 2] = ["192.168.201.1", "192.168.201.2"];

/// Two fresh namespaces joined by a veth pair, with a VXLAN device (VNI 42)
/// on each side; deleted on drop.
struct HandLink {
    ns: [String; 2],
}

impl HandLink {
    fn create() -> Result<Self> {
        let pid = std::process::id();
        let link = HandLink {
            ns: [format!("vxbench-{pid}-a"), format!("vxbench-{pid}-b")],
        };
        heading(&format!(
            "building a VXLAN link by hand with iproute2 in {} and {}",
            link.ns[0], link.ns[1]
        ));
        for ns in &link.ns {
            util::run(&mut util::cmd("ip", ["netns", "add", ns]))?;
        }
        let [a, b] = &link.ns;
        util::run(&mut util::cmd(
            "ip",
            [
                "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b,
            ],
        ))?;
        for (i, ns) in link.ns.iter().enumerate() {
            let local = HAND_UNDERLAY[i];
            let remote = HAND_UNDERLAY[1 - i];
            let ip = |args: &[&str]| {
                util::run(&mut util::cmd("ip", ["-n", ns.as_str()].iter().chain(args)))
            };
            ip(&["link", "set", "lo", "up"])?;
            ip(&["addr", "add", &format!("{local}/24"), "dev", "eth0"])?;
            ip(&["link", "set", "eth0", "up"])?;
            ip(&[
                "link",
                "add",
                "vxlan0",
                "type",
                "vxlan",
                "id",
                "42",
                "dstport",
                "4789",
                "local",
                local,
                "nolearning",
            ])?;
            ip(&["link", "set", "vxlan0", "mtu", "1450"])?;
            util::run(&mut util::in_netns(
                ns,
                "bridge",
                [
                    "fdb",
                    "append",
                    "00:00:00:00:00:00",
                    "dev",
                    "vxlan0",
                    "dst",
                    remote,
                ],
            ))?;
            ip(&[
                "addr",
                "add",
                &format!("{}/24", HAND_OVERLAY[i]),
                "dev",
                "vxlan0",
            ])?;
            ip(&["link", "set", "vxlan0", "up"])?;
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
        say(&format!("deleted {} and {}", self.ns[0], self.ns[1]));
    }
}

fn by_hand(opts: &Options, f: &mut Figures) -> Result<()> {
    let link = HandLink::create()?;
    let [a, b] = &link.ns;
    // The first ping also resolves ARP through the flood entry.
    let mut ping = util::in_netns(
        a,
        "ping",
        ["-c", "3", "-i", "0.2", "-W", "1", HAND_OVERLAY[1]],
    );
    util::run_quiet(&mut ping).context("the by-hand VXLAN link does not carry ping")?;

    heading(&format!(
        "veth by hand: {} -> {}",
        HAND_UNDERLAY[0], HAND_UNDERLAY[1]
    ));
    let bps = iperf(b, a, HAND_UNDERLAY[1], opts.seconds)?;
    say(&gbit(bps));
    f.hand_underlay = Some(bps);

    heading(&format!(
        "vxlan by hand: {} -> {} (VNI 42, MTU 1450)",
        HAND_OVERLAY[0], HAND_OVERLAY[1]
    ));
    let bps = iperf(b, a, HAND_OVERLAY[1], opts.seconds)?;
    say(&gbit(bps));
    f.hand_vxlan = Some(bps);
    Ok(())
}

/// Namespaces `vxbench-<pid>-a|b` whose xtask is gone (killed hard).
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("vxbench-") else {
            continue;
        };
        let Some((pid, side)) = rest.split_once('-') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if (side == "a" || side == "b")
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
/// `server_ip`; returns sum_received bits per second.
fn iperf(server_ns: &str, client_ns: &str, server_ip: &str, seconds: u32) -> Result<f64> {
    let mut server = util::in_netns(server_ns, "iperf3", ["-s", "-1", "-B", server_ip]);
    server.stdin(Stdio::null()).stdout(Stdio::null());
    let _server = util::KillOnDrop::spawn(&mut server)?;

    let secs = seconds.to_string();
    let mut client = util::in_netns(client_ns, "iperf3", ["-c", server_ip, "-t", &secs, "-J"]);
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
        return json
            .pointer("/end/sum_received/bits_per_second")
            .and_then(|v| v.as_f64())
            .with_context(|| {
                format!("iperf3 JSON has no end.sum_received.bits_per_second: {stdout}")
            });
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
    }
}
