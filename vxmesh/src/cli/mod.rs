//! The `vxmesh` command line: one file per subcommand.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod agent;
pub mod cni;
pub mod cni_version;
pub mod endpoint;
pub mod lab;
pub mod network;
pub mod node;
pub mod output;
pub mod service;
mod service_args;
mod service_table;
pub mod store;

/// vxmesh: VXLAN overlay networks between Linux hosts.
///
/// Desired state (networks, nodes, endpoints) is written to a store; `vxmesh agent` on every
/// host makes the kernel follow it. `vxmesh lab` builds simulated hosts on this machine.
#[derive(Debug, Parser)]
#[command(name = "vxmesh", version, propagate_version = true)]
pub struct Cli {
    /// The store: an SQLite database file shared by every vxmesh process on this machine
    /// (PATH or sqlite:PATH), or an etcd cluster: etcd://HOST:PORT[,HOST:PORT…]. For
    /// `lab up` only `sqlite` (the default: a file in the lab's directory) or `etcd` (a
    /// 3-member cluster of the lab's own).
    #[arg(long, global = true, env = "VXMESH_STORE", default_value = vxmesh::DEFAULT_STORE)]
    pub store: PathBuf,
    #[command(flatten)]
    pub store_args: store::StoreArgs,
    /// Print machine-readable JSON instead of tables (errors too).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, inspect and remove overlay networks.
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// Add, list and remove nodes (the hosts of the overlay).
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// Add, list and remove endpoints on hosts vxmesh does not manage.
    #[command(subcommand)]
    Endpoint(endpoint::EndpointCmd),
    /// Create, list, inspect, update and remove services (virtual IPs balanced over
    /// endpoints).
    #[command(subcommand)]
    Service(Box<service::ServiceCmd>),
    /// Run the per-host reconciler: make this host's kernel match the store.
    Agent(agent::AgentArgs),
    /// Simulated hosts on this machine, each in its own network namespace.
    #[command(subcommand)]
    Lab(lab::LabCmd),
    /// Install the CNI plugin for container runtimes.
    #[command(subcommand)]
    Cni(cni::CniCmd),
    /// Work on stores as a whole (copy one into another).
    #[command(subcommand)]
    Store(store::StoreCmd),
}
