//! `vxmesh endpoint …`

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;

use overlay_core::model::{endpoint_key, EndpointStatus, HostReport};
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

/// An endpoint as `endpoint ls` shows it: the record, and the state its node's agent
/// published for its attachment (`None` for an endpoint vxmesh did not attach, or one its
/// agent has not reported yet).
#[derive(Debug, Serialize)]
pub struct Listed<'a> {
    #[serde(flatten)]
    pub endpoint: &'a Endpoint,
    pub status: Option<&'a EndpointStatus>,
}

/// Joins endpoints with the states their agents published.
pub fn listed<'a>(
    endpoints: &'a [Endpoint],
    reports: &'a BTreeMap<String, HostReport>,
) -> Vec<Listed<'a>> {
    endpoints
        .iter()
        .map(|e| Listed {
            endpoint: e,
            status: reports
                .get(&e.node)
                .and_then(|r| r.endpoints.get(&endpoint_key(&e.network, &e.id))),
        })
        .collect()
}

pub fn print_table(endpoints: &[Listed<'_>]) {
    let rows: Vec<_> = endpoints
        .iter()
        .map(|l| {
            let e = l.endpoint;
            let status = match (l.status, &e.host_ifname) {
                (Some(s), _) => s.summary(),
                (None, Some(_)) => "not reported yet".into(),
                (None, None) => "-".into(),
            };
            vec![
                e.network.clone(),
                e.id.clone(),
                e.node.clone(),
                e.ip.to_string(),
                e.mac.to_string(),
                e.host_ifname.clone().unwrap_or_else(|| "-".into()),
                status,
            ]
        })
        .collect();
    output::table(
        &["NETWORK", "NAME", "NODE", "IP", "MAC", "VETH", "STATUS"],
        &rows,
    );
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
                mtu: None,
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
            let reports = catalog.host_reports()?;
            let list = listed(&list, &reports);
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
