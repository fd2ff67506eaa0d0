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
    /// List nodes.
    Ls,
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
                    .map(|n| vec![n.name.clone(), n.underlay.to_string()])
                    .collect();
                output::table(&["NAME", "UNDERLAY"], &rows);
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
