//! `vxmesh node …`

use std::net::Ipv4Addr;

use anyhow::Result;
use clap::Subcommand;

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
            if json {
                output::json(&nodes);
            } else {
                let rows: Vec<_> = nodes
                    .iter()
                    .map(|n| {
                        let wg = n.wireguard.as_ref();
                        vec![
                            n.name.clone(),
                            n.underlay.to_string(),
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
