//! `vxmesh network …`

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;

use vxmesh::{Catalog, Network, NetworkSpec};

use super::output;

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create an overlay network (one VNI, one IPv4 subnet, on every host).
    Create(CreateArgs),
    /// List networks.
    Ls,
    /// Show a network and its endpoints.
    Inspect { name: String },
    /// Remove a network; every host's agent then removes its devices and entries. Refused
    /// while services or endpoints use it, unless --force.
    Rm {
        name: String,
        /// Also remove the network's services (and their VIPs) and endpoints (and free their
        /// addresses).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name: up to 12 letters, digits, '-', '_' or '.' (it becomes part of interface names).
    pub name: String,
    /// IPv4 subnet in CIDR form, /8 to /29; must not overlap another network's.
    #[arg(long)]
    pub subnet: String,
    /// VXLAN network identifier, 4096..16777215; the lowest free one when not given.
    #[arg(long, allow_negative_numbers = true)]
    pub vni: Option<u32>,
    /// MTU inside the network, 1280..9000; default: the underlay's MTU less 50.
    #[arg(long, allow_negative_numbers = true)]
    pub mtu: Option<u32>,
    /// Encrypt the network's traffic between hosts (not yet supported: refused).
    #[arg(long)]
    pub encrypted: bool,
}

#[derive(Serialize)]
struct Inspect<'a> {
    #[serde(flatten)]
    network: &'a Network,
    endpoints: &'a [super::endpoint::Listed<'a>],
}

/// `network rm --json`: the network's fields and the services `--force` removed with it.
#[derive(Serialize)]
struct Removed<'a> {
    #[serde(flatten)]
    network: &'a Network,
    removed_services: &'a [&'a str],
}

fn row(n: &Network) -> Vec<String> {
    vec![
        n.name.clone(),
        n.subnet.to_string(),
        n.gateway.to_string(),
        n.vni.to_string(),
        n.mtu.map_or("auto".into(), |m| m.to_string()),
        n.encrypted.to_string(),
    ]
}

const HEADER: [&str; 6] = ["NAME", "SUBNET", "GATEWAY", "VNI", "MTU", "ENCRYPTED"];

pub fn run(cmd: NetworkCmd, catalog: &Catalog, json: bool) -> Result<()> {
    match cmd {
        NetworkCmd::Create(a) => {
            let n = catalog.create_network(&NetworkSpec {
                name: a.name,
                subnet: a.subnet,
                vni: a.vni,
                mtu: a.mtu,
                encrypted: a.encrypted,
            })?;
            if json {
                output::json(&n);
            } else {
                println!("created network {} ({}, vni {})", n.name, n.subnet, n.vni);
            }
        }
        NetworkCmd::Ls => {
            let nets = catalog.networks()?;
            if json {
                output::json(&nets);
            } else {
                output::table(&HEADER, &nets.iter().map(row).collect::<Vec<_>>());
            }
        }
        NetworkCmd::Inspect { name } => {
            let network = catalog.network(&name)?;
            let endpoints = catalog.endpoints(Some(&name))?;
            let reports = catalog.host_reports()?;
            let endpoints = super::endpoint::listed(&endpoints, &reports);
            if json {
                output::json(&Inspect {
                    network: &network,
                    endpoints: &endpoints,
                });
            } else {
                output::table(&HEADER, &[row(&network)]);
                println!();
                super::endpoint::print_table(&endpoints);
            }
        }
        NetworkCmd::Rm { name, force } => {
            let (network, services) = vxmesh::remove_network(catalog, &name, force)?;
            let removed_services: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
            if json {
                output::json(&Removed {
                    network: &network,
                    removed_services: &removed_services,
                });
            } else if removed_services.is_empty() {
                println!("removed network {}", network.name);
            } else {
                println!(
                    "removed network {} and its services {}",
                    network.name,
                    removed_services.join(", ")
                );
            }
        }
    }
    Ok(())
}
