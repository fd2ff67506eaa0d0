//! The demo's routing-mesh part: the lab's demo service (`lab up --replicas`), reached from
//! the outside client through every host's published port, in default mode and with DSR.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::lab::{bare_ip, LabClient, LabDemo, LabStatus, Vxmesh};
use crate::util::{self, heading, say};

/// New connections through each host in the default-mode walk.
const PER_HOST: usize = 4;

/// One answer of a replica: `NAME CLIENT_ADDR CLIENT_PORT`.
pub(crate) struct Answer {
    pub replica: String,
    pub client: String,
    pub port: String,
}

/// Parses the replicas' answer lines (other lines are skipped).
pub(crate) fn answers(text: &str) -> Vec<Answer> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some(Answer {
                replica: w.next()?.to_string(),
                client: w.next()?.to_string(),
                port: w.next()?.to_string(),
            })
        })
        .collect()
}

/// `curl` from the lab's client to `http://host:port/`, `n` new connections
/// (`Connection: close`), printed as the command and its answers.
fn curl(vx: &Vxmesh, host: &str, port: u16, n: usize) -> Result<Vec<Answer>> {
    let url = format!("http://{host}:{port}/[1-{n}]");
    let mut c = vx.exec(
        "client",
        &["curl", "-sS", "-m", "2", "-H", "Connection: close", &url],
    );
    say(&format!("$ {}", util::display(&c)));
    let text = util::output(&mut c)?;
    Ok(answers(&text))
}

/// Checks that every answer came from a replica and saw the client's own address.
fn check(answers: &[Answer], demo: &LabDemo, client: &LabClient, n: usize) -> Result<()> {
    if answers.len() != n {
        bail!("{} answer(s) to {n} requests", answers.len());
    }
    let client_ip = bare_ip(&client.address);
    for a in answers {
        if !demo.replicas.iter().any(|r| r.name == a.replica) {
            bail!("{:?} is not a replica of {}", a.replica, demo.service);
        }
        if a.client != client_ip {
            bail!(
                "replica {} saw the client as {}, not {client_ip}: the mesh lost the client's \
                 address",
                a.replica,
                a.client
            );
        }
    }
    Ok(())
}

pub fn walk_through(vx: &Vxmesh, status: &LabStatus) -> Result<()> {
    let (demo, client) = status.mesh()?;
    heading(&format!(
        "the routing mesh: service {} on {}, its port {} published on port {} of every host",
        demo.service, demo.network, demo.port, demo.published
    ));
    say(&format!(
        "`lab up --replicas {}` started one HTTP replica (`vxmesh lab replica`) in each of",
        demo.replicas.len()
    ));
    let placed: Vec<String> = demo
        .replicas
        .iter()
        .map(|r| {
            format!(
                "{} ({}, {}:{})",
                r.name,
                r.host,
                bare_ip(&r.address),
                r.port
            )
        })
        .collect();
    say(&format!("  {}", placed.join(", ")));
    say(&format!(
        "and made the service over them; each answers with its name and the client address \
         and port it saw. The client {} ({}) is on the underlay switch, not a vxmesh host.",
        client.namespace,
        bare_ip(&client.address)
    ));
    util::run(&mut util::cmd(
        &vx.bin.to_string_lossy(),
        ["--store", &status.store, "service", "ls"],
    ))?;

    heading(&format!(
        "{PER_HOST} new connections from the client through each host's port {}",
        demo.published
    ));
    let mut seen = BTreeSet::new();
    for h in &status.hosts {
        let host = bare_ip(&h.address);
        let got = curl(vx, host, demo.published, PER_HOST)?;
        check(&got, demo, client, PER_HOST).with_context(|| format!("through {}", h.name))?;
        for a in &got {
            let on = demo
                .replicas
                .iter()
                .find(|r| r.name == a.replica)
                .map(|r| r.host.as_str())
                .unwrap_or("?");
            say(&format!(
                "| via {} ({host}:{}) -> replica {} on {on}, which saw the client as {}:{}",
                h.name, demo.published, a.replica, a.client, a.port
            ));
            seen.insert(a.replica.clone());
        }
    }
    say(&format!(
        "{} of the {} replicas answered these {} requests; every one saw {}, the client's own \
         address (Swarm's routing mesh puts an address of its own there: moby/moby#25526).",
        seen.len(),
        demo.replicas.len(),
        PER_HOST * status.hosts.len(),
        bare_ip(&client.address)
    ));
    say("each host's tc program (vx_from_underlay on eth0) picked a replica with the service's");
    say("Maglev table and sent the packet to it, on the same host or over VXLAN; replies come");
    say("back through the host the client addressed, which answers as HOST:8080.");

    dsr(vx, status, demo, client)
}

/// Switches the service to DSR and shows a replica's host answering the client itself.
fn dsr(vx: &Vxmesh, status: &LabStatus, demo: &LabDemo, client: &LabClient) -> Result<()> {
    let ingress = status.hosts.first().context("the lab has no host")?;
    let Some(other) = status
        .hosts
        .iter()
        .find(|h| h.name != ingress.name && demo.replicas.iter().any(|r| r.host == h.name))
    else {
        say("(no replica on a second host: skipping direct server return)");
        return Ok(());
    };
    heading(&format!(
        "direct server return: `service update {} --mode dsr`",
        demo.service
    ));
    util::run(&mut util::cmd(
        &vx.bin.to_string_lossy(),
        [
            "--store",
            &status.store,
            "service",
            "update",
            &demo.service,
            "--mode",
            "dsr",
        ],
    ))?;
    // The agents apply the change on their next pass: wait until every host's datapath
    // serves the port in DSR mode.
    let switching = Instant::now();
    while !crate::bench_mesh::mesh_in_mode(status, true)? {
        if switching.elapsed() > std::time::Duration::from_secs(20) {
            bail!("the hosts' datapaths did not switch to DSR within 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let ingress_ip = bare_ip(&ingress.address);
    say(&format!(
        "now a replica's host answers the client itself, from {ingress_ip}:{}, and the ingress \
         host {} carries only the forward direction. tcpdump on {}'s eth0 while the client \
         makes 30 new connections through {}:",
        demo.published, ingress.name, other.name, ingress.name
    ));
    let port = demo.published.to_string();
    let start = Instant::now();
    let mut answered = Vec::new();
    let lines = crate::demo::capture(
        &other.namespace,
        &other.interface,
        &[
            "tcp", "and", "src", "host", ingress_ip, "and", "src", "port", &port,
        ],
        4,
        || {
            answered = curl(vx, ingress_ip, demo.published, 30)?;
            Ok(())
        },
    )?;
    check(&answered, demo, client, 30)?;
    for l in &lines {
        say(&format!("| {l}"));
    }
    if lines.is_empty() {
        bail!(
            "{}'s eth0 sent nothing as {ingress_ip}:{} after {:.1} s: DSR replies missing",
            other.name,
            demo.published,
            start.elapsed().as_secs_f64()
        );
    }
    say(&format!(
        "{}'s own underlay device sent these replies with {ingress_ip}:{} as their source \
         (the client's connection is to {}); every one of the 30 answers saw {} again.",
        other.name,
        demo.published,
        ingress.name,
        bare_ip(&client.address)
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answer_lines() {
        let a = answers("h2-c1 10.99.0.250 41234\n\nbroken\nh1-c1 10.99.0.250 5\n");
        assert_eq!(a.len(), 2);
        assert_eq!(
            (
                a[0].replica.as_str(),
                a[0].client.as_str(),
                a[0].port.as_str()
            ),
            ("h2-c1", "10.99.0.250", "41234")
        );
    }
}
