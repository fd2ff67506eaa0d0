//! The store's key layout. Every key vxmesh writes is made here.

use std::net::Ipv4Addr;

pub const ROOT: &str = "/vxmesh/v1/";
pub const NETWORKS: &str = "/vxmesh/v1/networks/";
pub const NODES: &str = "/vxmesh/v1/nodes/";
pub const ENDPOINTS: &str = "/vxmesh/v1/endpoints/";
pub const IPAM: &str = "/vxmesh/v1/ipam/";
pub const VNIS: &str = "/vxmesh/v1/vnis/";
/// One key per running agent, attached to a lease the agent keeps alive: the node's liveness.
pub const AGENTS: &str = "/vxmesh/v1/agents/";
/// One key per node, written by its agent: what it publishes about its host (underlay MTU, host
/// addresses, the state of its attachments). Not on a lease: it outlives an agent restart.
pub const HOSTS: &str = "/vxmesh/v1/hosts/";
/// Written by every network create and remove and every node add, so that concurrent writes
/// that would overlap (two subnets, a subnet and an underlay address) conflict on it instead
/// of both succeeding.
pub const NETWORKS_GUARD: &str = "/vxmesh/v1/guards/networks";

pub fn network(name: &str) -> String {
    format!("{NETWORKS}{name}")
}

pub fn node(name: &str) -> String {
    format!("{NODES}{name}")
}

/// All endpoints of one network.
pub fn endpoints_of(network: &str) -> String {
    format!("{ENDPOINTS}{network}/")
}

pub fn endpoint(network: &str, id: &str) -> String {
    format!("{ENDPOINTS}{network}/{id}")
}

/// All address allocations of one network.
pub fn ipam_of(network: &str) -> String {
    format!("{IPAM}{network}/")
}

pub fn ipam(network: &str, ip: Ipv4Addr) -> String {
    format!("{IPAM}{network}/{ip}")
}

pub fn vni(vni: u32) -> String {
    format!("{VNIS}{vni}")
}

pub fn host(node: &str) -> String {
    format!("{HOSTS}{node}")
}

pub fn agent(node: &str) -> String {
    format!("{AGENTS}{node}")
}
