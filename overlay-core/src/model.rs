//! The objects vxmesh keeps in its store: networks, nodes (hosts) and endpoints.
//!
//! They are stored as JSON; every field read back from the store is validated again
//! (`validate_*`), because another version of vxmesh may have written it.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;

/// The UDP port VXLAN uses (IANA, RFC 7348).
pub const VXLAN_PORT: u16 = 4789;
/// The UDP port of encrypted networks' VXLAN devices (between tunnel addresses, inside
/// WireGuard). A port of their own, so that the kernel's VXLAN socket that serves them can be
/// closed to everything that does not come out of the WireGuard interface: an ingress filter
/// drops UDP to this port on the underlay device and on every overlay bridge. (On 4789, a
/// plain VXLAN packet with an encrypted network's VNI sent to the underlay address would be
/// accepted: the kernel demultiplexes by port and VNI only.)
pub const ENCRYPTED_VXLAN_PORT: u16 = 4790;
/// The tc priority (`pref`) of vxmesh's ingress filters.
pub const INGRESS_FILTER_PREF: u16 = 4790;
/// The tc priority (`pref`) of vxmesh's isolation filters (`reconcile::isolation`): on each
/// overlay bridge, IPv4 to other networks is dropped; on the underlay device, IPv4 to any
/// network. They run before the encrypted-port filters.
pub const ISOLATION_FILTER_PREF: u16 = 4788;
/// Bytes VXLAN adds to each frame on an IPv4 underlay: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
pub const VXLAN_OVERHEAD: u32 = 50;
pub use crate::wireguard::WIREGUARD_OVERHEAD;

/// An overlay network: one L2 segment (one VNI) with one IPv4 subnet, spread over every host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub subnet: Ipv4Net,
    /// The first usable address of the subnet, held by the network's bridge on every host.
    pub gateway: Ipv4Addr,
    pub vni: u32,
    /// Explicit MTU; `None` means "underlay MTU − overhead", computed on each host.
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub encrypted: bool,
}

/// A host that takes part in the overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    /// The address other hosts send VXLAN packets to.
    pub underlay: Ipv4Addr,
    /// The node's WireGuard identity for encrypted networks, published by its agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<WireguardIdentity>,
}

/// What other hosts need to reach a node through WireGuard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireguardIdentity {
    /// Base64 of the 32-byte Curve25519 public key.
    pub public_key: String,
    /// UDP port WireGuard listens on, on the node's underlay address.
    pub port: u16,
    /// The node's address inside the WireGuard tunnels (from 100.88.0.0/16, allocated by the
    /// catalog, unique among nodes). Encrypted networks' VXLAN packets go between these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_ip: Option<Ipv4Addr>,
    /// Which implementation runs there (`userspace (boringtun 0.7)`, `kernel`, `external`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implementation: Option<String>,
    /// Set by `vxmesh node rotate-key`: the node's agent makes a new key pair, publishes its
    /// public key and clears this.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotate_requested: bool,
}

impl WireguardIdentity {
    /// Public key, tunnel address and port: everything a peer needs to configure this node.
    pub fn is_complete(&self) -> bool {
        self.tunnel_ip.is_some() && crate::validate::wireguard_key(&self.public_key).is_ok()
    }
}

/// An address on a network, living on a node: a container attached by vxmesh, or a machine
/// vxmesh does not manage (added with `vxmesh endpoint add`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Unique within its network.
    pub id: String,
    pub network: String,
    pub node: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// The host end of the veth pair when vxmesh attached it; `None` for external endpoints.
    #[serde(default)]
    pub host_ifname: Option<String>,
    /// The CNI attachment this endpoint belongs to (container id and interface name), when a
    /// container runtime made it through the CNI plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<CniAttachment>,
    /// The MTU asked for this attachment's veth pair (bytes; the CNI netconf's `mtu`), when
    /// lower than the network's was wanted. `None`: both ends follow the network's MTU on the
    /// node. Either way the agent keeps both ends at `min(this, the network's MTU)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// A CNI attachment: the runtime's container id and the interface name inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniAttachment {
    pub container_id: String,
    pub ifname: String,
}

impl Network {
    /// The bridge device that carries this network on a host.
    pub fn bridge_name(&self) -> String {
        bridge_name(&self.name)
    }

    /// The VXLAN device of this network on a host.
    pub fn vxlan_name(&self) -> String {
        vxlan_name(&self.name)
    }

    /// The gateway with the subnet's prefix length, as it sits on the bridge.
    pub fn gateway_net(&self) -> Ipv4Net {
        Ipv4Net::new(self.gateway, self.subnet.prefix_len()).expect("prefix from a valid subnet")
    }

    /// The MTU of this network on a host whose underlay device has `underlay_mtu`: VXLAN's
    /// overhead, and WireGuard's too when encrypted, so that nothing is fragmented.
    pub fn effective_mtu(&self, underlay_mtu: u32) -> u32 {
        let wg = if self.encrypted {
            WIREGUARD_OVERHEAD
        } else {
            0
        };
        let ceiling = underlay_mtu.saturating_sub(VXLAN_OVERHEAD + wg);
        match self.mtu {
            Some(m) => m.min(ceiling),
            None => ceiling,
        }
    }
}

#[cfg(test)]
impl Network {
    /// A plain network on `subnet` (a valid CIDR), VNI 4096, gateway the first host address.
    pub(crate) fn for_tests(name: &str, subnet: &str) -> Network {
        let subnet: Ipv4Net = subnet.parse().expect("a valid CIDR");
        Network {
            name: name.into(),
            gateway: subnet.hosts().next().expect("a subnet with hosts"),
            subnet,
            vni: 4096,
            mtu: None,
            encrypted: false,
        }
    }
}

/// Prefix of every bridge vxmesh makes; followed by the network name.
pub const BRIDGE_PREFIX: &str = "vb-";
/// Prefix of every VXLAN device vxmesh makes; followed by the network name.
pub const VXLAN_PREFIX: &str = "vx-";
/// Prefix of the host end of every veth vxmesh makes.
pub const VETH_PREFIX: &str = "ve-";

pub fn bridge_name(network: &str) -> String {
    format!("{BRIDGE_PREFIX}{network}")
}

pub fn vxlan_name(network: &str) -> String {
    format!("{VXLAN_PREFIX}{network}")
}

/// The host-side veth name for an endpoint: `ve-` and 10 hex digits of a stable hash of
/// network and id, so it fits the 15-byte interface name limit and is the same on every call.
pub fn veth_name(network: &str, id: &str) -> String {
    // FNV-1a, 64 bit: stable across versions and platforms (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in network.bytes().chain([0u8]).chain(id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{VETH_PREFIX}{:010x}", h & 0xff_ffff_ffff)
}

impl Endpoint {
    pub fn ip_addr(&self) -> IpAddr {
        IpAddr::V4(self.ip)
    }

    /// The MTU both ends of this endpoint's veth pair should have on a node where its network
    /// has `network_mtu`: the network's, or the lower one the attachment asked for.
    pub fn attachment_mtu(&self, network_mtu: u32) -> u32 {
        self.mtu.map_or(network_mtu, |m| m.min(network_mtu))
    }
}

/// What a node's agent publishes about its host (`/vxmesh/v1/hosts/NODE`), rewritten only when
/// it changes: what the other hosts and the catalog need to know of this one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostReport {
    /// The MTU of the node's underlay device (bytes), as the agent last read it. Every host
    /// derives each network's MTU from the lowest of these, so that a full-size packet fits
    /// every host's underlay.
    pub underlay_mtu: u32,
    /// The IPv4 addresses (with their prefix length) on the host's interfaces, other than
    /// vxmesh's own devices and loopback: no network may overlap their prefixes.
    #[serde(default)]
    pub addresses: Vec<HostAddress>,
    /// The state of every attachment of this node the agent manages, by `NETWORK/ID`.
    #[serde(default)]
    pub endpoints: std::collections::BTreeMap<String, EndpointStatus>,
    /// The agent's last spell without the store (it kept the kernel as it was and retried),
    /// published once the store answered again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_outage: Option<StoreOutage>,
}

/// A time the agent could not reach the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreOutage {
    /// When the first store operation failed (milliseconds since the Unix epoch).
    pub began_ms: u64,
    /// When the store answered again (milliseconds since the Unix epoch).
    pub ended_ms: u64,
    /// The last error the agent saw.
    pub error: String,
}

/// An address on one of a host's own interfaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostAddress {
    pub interface: String,
    /// The address with its prefix length, as on the interface (`10.99.0.1/24`).
    pub address: Ipv4Net,
}

/// How an attachment (the veth pair of an endpoint on this node) stands, as its agent saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStatus {
    /// The MTU both ends have (bytes), once the agent has put them in line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Why the agent cannot reach or set the attachment (`None`: both ends are in line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl EndpointStatus {
    /// `ok (mtu N)` or `unreachable: WHY`, as `vxmesh endpoint ls` shows it.
    pub fn summary(&self) -> String {
        match (&self.problem, self.mtu) {
            (Some(p), _) => format!("unreachable: {p}"),
            (None, Some(m)) => format!("ok (mtu {m})"),
            (None, None) => "ok".into(),
        }
    }
}

/// The key of an endpoint in [`HostReport::endpoints`].
pub fn endpoint_key(network: &str, id: &str) -> String {
    format!("{network}/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_fit_the_kernel_limit() {
        let long = "a".repeat(crate::validate::NAME_MAX);
        assert!(bridge_name(&long).len() <= 15);
        assert!(vxlan_name(&long).len() <= 15);
        assert_eq!(veth_name("net1", "h1-c1").len(), 13);
        assert_eq!(veth_name("net1", "h1-c1"), veth_name("net1", "h1-c1"));
        assert_ne!(veth_name("net1", "h1-c1"), veth_name("net1", "h1-c2"));
    }

    #[test]
    fn mtu_is_underlay_less_overhead_unless_lower_is_asked() {
        let mut n = Network {
            name: "n".into(),
            subnet: "10.0.0.0/24".parse().unwrap(),
            gateway: "10.0.0.1".parse().unwrap(),
            vni: 4096,
            mtu: None,
            encrypted: false,
        };
        assert_eq!(n.effective_mtu(1500), 1450);
        assert_eq!(n.effective_mtu(9000), 8950);
        n.mtu = Some(1400);
        assert_eq!(n.effective_mtu(1500), 1400);
        n.mtu = Some(9000);
        assert_eq!(n.effective_mtu(1500), 1450);
        n.encrypted = true;
        assert_eq!(n.effective_mtu(1500), 1390);
        n.mtu = None;
        assert_eq!(n.effective_mtu(9000), 8890);
    }
}
