//! `vxmesh endpoint …`

use std::net::Ipv4Addr;

use anyhow::Result;
use clap::{Args, Subcommand};

use vxmesh::{Catalog, Endpoint, EndpointSpec, MacAddr};

use super::output;

#[derive(Debug, Subcommand)]
pub enum EndpointCmd {
    /// Record an endpoint on a host vxmesh does not manage, so every agent sends its traffic
    /// there (its MAC and IP, reached through the node's underlay address).
    Add(AddArgs),
    /// List endpoints.
    Ls {
        /// Only this network's.
        #[arg(long)]
        network: Option<String>,
    },
    /// Remove an endpoint and free its address.
    Rm { network: String, name: String },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[arg(long)]
    pub network: String,
    /// The node the endpoint lives on.
    #[arg(long)]
    pub node: String,
    /// Its address in the network's subnet; the lowest free one when not given.
    #[arg(long)]
    pub ip: Option<Ipv4Addr>,
    /// Its MAC; derived from the address (0a:58:…) when not given.
    #[arg(long)]
    pub mac: Option<MacAddr>,
    /// Its name, unique in the network; generated when not given.
    #[arg(long)]
    pub name: Option<String>,
}

pub fn print_table(endpoints: &[Endpoint]) {
    let rows: Vec<_> = endpoints
        .iter()
        .map(|e| {
            vec![
                e.network.clone(),
                e.id.clone(),
                e.node.clone(),
                e.ip.to_string(),
                e.mac.to_string(),
                e.host_ifname.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    output::table(&["NETWORK", "NAME", "NODE", "IP", "MAC", "VETH"], &rows);
}

pub fn run(cmd: EndpointCmd, catalog: &Catalog, json: bool) -> Result<()> {
    match cmd {
        EndpointCmd::Add(a) => {
            let e = catalog.add_endpoint(&EndpointSpec {
                network: a.network,
                node: a.node,
                id: a.name,
                ip: a.ip,
                mac: a.mac,
                attach: false,
                cni: None,
            })?;
            if json {
                output::json(&e);
            } else {
                println!(
                    "added endpoint {}/{} ({} {}) on {}",
                    e.network, e.id, e.ip, e.mac, e.node
                );
            }
        }
        EndpointCmd::Ls { network } => {
            if let Some(n) = &network {
                catalog.network(n)?;
            }
            let list = catalog.endpoints(network.as_deref())?;
            if json {
                output::json(&list);
            } else {
                print_table(&list);
            }
        }
        EndpointCmd::Rm { network, name } => {
            catalog.network(&network)?;
            let e = catalog.remove_endpoint(&network, &name)?;
            if json {
                output::json(&e);
            } else {
                println!("removed endpoint {}/{}", e.network, e.id);
            }
        }
    }
    Ok(())
}
