//! `cargo xtask demo`: a three-host lab, driven through the CLI, explained.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::lab::{bare_ip, Vxmesh};
use crate::util::{self, heading, say};

pub(crate) mod mesh;

const PREFIX: &str = "vxdemo";

pub fn demo() -> Result<()> {
    util::require_root("demo")?;
    crate::setup::setup()?;
    let vx = Vxmesh::build(PREFIX)?;

    say("The lab simulates machines with network namespaces: one namespace is the");
    say("underlay switch, each \"host\" is a namespace on it running a vxmesh agent,");
    say("and each \"container\" is a namespace wired into one host.");
    say("Three containers per host on two networks (c1 and c3 on net1, c2 on net2); the six");
    say("on net1 run the replicas of a service published on port 8080 of every host.");
    let lab = vx.up(&[
        "--hosts",
        "3",
        "--containers-per-host",
        "3",
        "--networks",
        "2",
        "--replicas",
        "6",
    ])?;
    let result = walk_through(&vx);
    match result {
        Ok(()) => {
            lab.finish()?;
            heading("demo finished: the lab is gone, nothing changed outside its namespaces");
            Ok(())
        }
        Err(e) => {
            drop(lab);
            Err(e)
        }
    }
}

fn walk_through(vx: &Vxmesh) -> Result<()> {
    heading("what the lab looks like (vxmesh lab status)");
    util::run(&mut vx.lab("status", std::iter::empty::<&str>()))?;
    let status = vx.status()?;
    heading("the same, read from `vxmesh lab status --json`");
    status.explain();
    status.check_agents()?;
    say("desired state lives in that store; each agent watches it and programs its");
    say("host's kernel: a VXLAN device per network plus static FDB/neighbour entries.");

    let (a, b) = status.cross_host_pair()?;
    let net = status.network(&a.network)?;
    let host_a = status.host(&a.host)?;
    let host_b = status.host(&b.host)?;
    let a_ip = bare_ip(&a.address);
    let b_ip = bare_ip(&b.address);

    heading(&format!(
        "same network, different hosts: {} ({a_ip}, on {}) -> {} ({b_ip}, on {})",
        a.name, a.host, b.name, b.host
    ));
    say(&format!(
        "both are on {} ({}, VNI {}); the packets travel {} {} -> {} {} inside VXLAN (UDP 4789)",
        net.name,
        net.subnet,
        net.vni,
        host_a.name,
        bare_ip(&host_a.address),
        host_b.name,
        bare_ip(&host_b.address)
    ));
    let waited = vx.wait_reachable(&a.name, b_ip, Duration::from_secs(20))?;
    if waited > Duration::from_secs(1) {
        say(&format!(
            "(the agents needed {:.1} s to program the kernel)",
            waited.as_secs_f64()
        ));
    }
    util::run(&mut vx.exec(&a.name, &["ping", "-c", "3", "-W", "1", b_ip]))?;

    match status
        .containers
        .iter()
        .filter(|c| c.network != a.network)
        .max_by_key(|c| c.host == b.host)
    {
        Some(other) => {
            let other_ip = bare_ip(&other.address);
            heading(&format!(
                "different network: {} ({a_ip}, {}) -> {} ({other_ip}, {}) must not answer",
                a.name, a.network, other.name, other.network
            ));
            say("networks are isolated: each has its own VNI and nothing routes between them.");
            let reached =
                util::run_ok(&mut vx.exec(&a.name, &["ping", "-c", "2", "-W", "1", other_ip]))?;
            if reached {
                bail!(
                    "isolation broken: {} reached {} on another network",
                    a.name,
                    other.name
                );
            }
            say("unreachable, as it should be (ping's failure above is the expected result)");
        }
        None => say("(only one network in this lab: skipping the isolation check)"),
    }

    heading(&format!(
        "on the wire: tcpdump on {}'s underlay interface while {} pings {}",
        host_a.name, a.name, b.name
    ));
    let captured = capture(
        &host_a.namespace,
        &host_a.interface,
        &["udp", "port", "4789"],
        4,
        || util::run(&mut vx.exec(&a.name, &["ping", "-c", "4", "-i", "0.2", "-W", "1", b_ip])),
    )?;
    if captured.is_empty() {
        bail!("tcpdump saw no VXLAN packet on {}", host_a.name);
    }
    for line in &captured {
        say(&format!("| {line}"));
    }
    if !captured.iter().any(|l| l.contains("VXLAN")) {
        bail!("tcpdump did not decode any VXLAN packet");
    }
    say("each packet is an outer UDP datagram between the hosts' underlay addresses to port 4789,");
    say(&format!(
        "carrying a VXLAN header with vni {} and, inside, the containers' own ICMP packet.",
        net.vni
    ));
    say(&format!(
        "watch it yourself during a lab: ip netns exec {} tcpdump -ni {} udp port 4789",
        host_a.namespace, host_a.interface
    ));
    mesh::walk_through(vx, &status)
}

/// Starts tcpdump (`filter`, at most `count` packets) on `iface` in namespace `host_ns`,
/// waits until it listens, runs `during`, and returns the decoded lines (waiting at most 5 s
/// for `count` packets).
pub(crate) fn capture(
    host_ns: &str,
    iface: &str,
    filter: &[&str],
    count: u32,
    during: impl FnOnce() -> Result<()>,
) -> Result<Vec<String>> {
    let count_s = count.to_string();
    let mut args = vec!["-l", "-n", "-i", iface, "-c", &count_s];
    args.extend_from_slice(filter);
    let mut tcpdump = util::in_netns(host_ns, "tcpdump", args);
    tcpdump
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut td = util::KillOnDrop::spawn(&mut tcpdump)?;

    // tcpdump says "listening on ..." on stderr once the capture is open.
    let stderr = td.child.stderr.take().context("tcpdump stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut listening = false;
    let mut errors = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        if line.contains("listening on") {
            listening = true;
            break;
        }
        errors.push(line);
    }
    if !listening {
        bail!("tcpdump did not start: {}", errors.join("; "));
    }

    let stdout = td.child.stdout.take().context("tcpdump stdout")?;
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });

    during()?;
    if util::wait_timeout(&mut td.child, Duration::from_secs(5))?.is_none() {
        say(&format!(
            "(tcpdump saw fewer than {count} packets in 5 s; showing what it saw)"
        ));
    }
    Ok(reader.join().unwrap_or_default())
}
