//! `vxmesh node …`

use std::net::Ipv4Addr;

use anyhow::Result;
use clap::Subcommand;

use overlay_core::model::StoreOutage;
use vxmesh::Catalog;

use super::output;

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Add a host to the overlay.
    Add {
        /// Name the host's agent runs with (`vxmesh agent --node NAME`).
        name: String,
        /// The IPv4 address other hosts send this host's VXLAN traffic to.
        #[arg(long)]
        underlay: Ipv4Addr,
    },
    /// List nodes, with their WireGuard identity and implementation.
    Ls,
    /// Replace a node's WireGuard key pair: its agent makes a new one, publishes the public
    /// key, and every other agent updates its peer (connections stall for one handshake).
    RotateKey { name: String },
    /// Register the WireGuard identity of a node that runs no vxmesh agent (another WireGuard
    /// implementation configured by hand); it gets a tunnel address (shown by `node ls`).
    Wireguard {
        name: String,
        /// Its public key, base64 (`wg pubkey`).
        #[arg(long)]
        public_key: String,
        /// Its WireGuard UDP port on its underlay address.
        #[arg(long, default_value_t = overlay_core::wireguard::DEFAULT_PORT)]
        port: u16,
    },
    /// Remove a host; the other hosts' agents drop every entry toward it.
    Rm {
        name: String,
        /// Also remove the node's endpoints (and free their addresses).
        #[arg(long)]
        force: bool,
    },
}

pub fn run(cmd: NodeCmd, catalog: &Catalog, json: bool) -> Result<()> {
    match cmd {
        NodeCmd::Add { name, underlay } => {
            let n = catalog.add_node(&name, underlay)?;
            if json {
                output::json(&n);
            } else {
                println!("added node {} (underlay {})", n.name, n.underlay);
            }
        }
        NodeCmd::Ls => {
            let nodes = catalog.nodes()?;
            let snap = catalog.snapshot()?;
            let agents: Vec<String> = nodes
                .iter()
                .map(|n| agent_state(catalog, &snap, &n.name))
                .collect::<Result<_>>()?;
            let outages: Vec<Option<&StoreOutage>> = nodes
                .iter()
                .map(|n| {
                    snap.hosts
                        .get(&n.name)
                        .and_then(|h| h.store_outage.as_ref())
                })
                .collect();
            // What each running agent reports: the revision it applied, its last errors.
            let statuses = vxmesh::wait::agent_statuses(catalog)?;
            if json {
                let rows: Vec<serde_json::Value> = nodes
                    .iter()
                    .zip(&agents)
                    .zip(&outages)
                    .map(|((n, a), o)| {
                        let mut v = serde_json::to_value(n).expect("a node serializes");
                        v["agent"] = a.clone().into();
                        v["agent_status"] =
                            serde_json::to_value(statuses.get(&n.name)).expect("serializes");
                        v["store_outage"] = serde_json::to_value(o).expect("serializes");
                        v
                    })
                    .collect();
                output::json(&rows);
            } else {
                let rows: Vec<_> = nodes
                    .iter()
                    .zip(&agents)
                    .zip(&outages)
                    .map(|((n, agent), outage)| {
                        let wg = n.wireguard.as_ref();
                        vec![
                            n.name.clone(),
                            n.underlay.to_string(),
                            agent.clone(),
                            statuses
                                .get(&n.name)
                                .map_or("-".into(), |s| match s.errors.len() {
                                    0 => s.applied_revision.to_string(),
                                    e => format!("{} ({e} errors)", s.applied_revision),
                                }),
                            outage.map_or("-".into(), describe_outage),
                            wg.and_then(|w| w.tunnel_ip)
                                .map_or("-".into(), |ip| ip.to_string()),
                            wg.map_or("-".into(), |w| w.port.to_string()),
                            wg.map_or("-".into(), |w| {
                                let mut k = w.public_key.clone();
                                if w.rotate_requested {
                                    k += " (rotating)";
                                }
                                k
                            }),
                            wg.and_then(|w| w.implementation.clone())
                                .unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "NAME",
                        "UNDERLAY",
                        "AGENT",
                        "APPLIED",
                        "LAST STORE OUTAGE",
                        "TUNNEL",
                        "WG PORT",
                        "PUBLIC KEY",
                        "WIREGUARD",
                    ],
                    &rows,
                );
            }
        }
        NodeCmd::RotateKey { name } => {
            let n = catalog.request_key_rotation(&name)?;
            if json {
                output::json(&n);
            } else {
                println!("asked node {}'s agent to rotate its WireGuard key", n.name);
            }
        }
        NodeCmd::Wireguard {
            name,
            public_key,
            port,
        } => {
            let n = catalog.set_wireguard(&name, &public_key, port, "external")?;
            if json {
                output::json(&n);
            } else {
                let ip = n.wireguard.as_ref().and_then(|w| w.tunnel_ip);
                println!(
                    "node {}: WireGuard key {public_key} port {port}, tunnel address {}",
                    n.name,
                    ip.map_or("-".into(), |ip| ip.to_string())
                );
            }
        }
        NodeCmd::Rm { name, force } => {
            let n = catalog.remove_node(&name, force)?;
            if json {
                output::json(&n);
            } else {
                println!("removed node {}", n.name);
            }
        }
    }
    Ok(())
}

/// `up` (heartbeat present), `stopped` (a clean stop; the node's lease has not expired yet,
/// the other hosts keep its entries), `down` (its lease expired: the other hosts removed its
/// entries), `-` (no vxmesh agent ever reported from it).
fn agent_state(catalog: &Catalog, snap: &vxmesh::Snapshot, node: &str) -> Result<String> {
    Ok(if catalog.agent_alive(node)? {
        "up".into()
    } else if snap.node_down(node) {
        "down".into()
    } else if snap.alive.contains(node) {
        "stopped".into()
    } else {
        "-".into()
    })
}

/// `20.3s, ended 2026-12-01T04:50:01Z (…)`: how long the agent was without the store, when.
fn describe_outage(o: &StoreOutage) -> String {
    let secs = o.ended_ms.saturating_sub(o.began_ms) as f64 / 1000.0;
    let ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() as u64).saturating_sub(o.ended_ms) / 1000)
        .unwrap_or(0);
    format!("{secs:.1}s, ended {ago}s ago ({})", o.error)
}
