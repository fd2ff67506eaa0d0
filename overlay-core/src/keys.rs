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
/// One key per node whose agent runs, on the same lease as its `AGENTS` key, but left in
/// place by a clean stop: it goes only when the lease expires (the agent died, or stayed
/// stopped longer than the lease). A node with a host report and no such key is down: the
/// other hosts remove its entries, WireGuard peer and service backends.
pub const ALIVE: &str = "/vxmesh/v1/alive/";
/// One key per node, written by its agent: what it publishes about its host (underlay MTU, host
/// addresses, the state of its attachments). Not on a lease: it outlives an agent restart.
pub const HOSTS: &str = "/vxmesh/v1/hosts/";
/// Written by every network create and remove and every node add, so that concurrent writes
/// that would overlap (two subnets, a subnet and an underlay address) conflict on it instead
/// of both succeeding.
pub const NETWORKS_GUARD: &str = "/vxmesh/v1/guards/networks";
/// Written by every change of a node's WireGuard identity, so that two nodes publishing at once
/// cannot both take the same free tunnel address or publish the same key. Read before the nodes.
pub const WIREGUARD_GUARD: &str = "/vxmesh/v1/guards/wireguard";
/// One key per endpoint MAC address in use, per network: its claim, so that two endpoints
/// added at once cannot both get the same MAC.
pub const MACS: &str = "/vxmesh/v1/macs/";

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

/// All MAC claims of one network.
pub fn macs_of(network: &str) -> String {
    format!("{MACS}{network}/")
}

/// The claim of one MAC address on a network (`MacAddr`'s text form, lowercase).
pub fn mac(network: &str, mac: crate::mac::MacAddr) -> String {
    format!("{MACS}{network}/{mac}")
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

pub fn alive(node: &str) -> String {
    format!("{ALIVE}{node}")
}

/// Outside [`ROOT`], so that the agents' own status reports do not wake the watchers of the
/// desired state (every agent, the DNS servers, the service planes): one key per running agent,
/// on its lease, holding what it has applied (the store revision of its last pass) and the
/// errors of that pass.
pub const STATUS: &str = "/vxmesh/status/v1/";

/// The status report of `node`'s agent.
pub fn agent_status(node: &str) -> String {
    format!("{STATUS}{node}")
}
