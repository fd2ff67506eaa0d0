//! Attaching a container to a network: the one code path the CNI plugin and the lab share.
//!
//! The endpoint is recorded in the store first (that allocates its address, and tells the
//! agents on other hosts about it), then the veth is built; if building fails the record is
//! removed again, so a failure leaves nothing behind.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

use crate::catalog::{Catalog, CatalogError, EndpointSpec};
use crate::dataplane::{self, AttachSpec, Attachment, Dataplane, DataplaneError, DefaultRoute};
use crate::mac::MacAddr;
use crate::model::{CniAttachment, Endpoint, Network};
use crate::netns::{self, NetnsError};

/// A container to attach.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// The network to attach to (it must exist in the store, and its bridge on the host: wait
    /// until the host's agent has applied the network before attaching).
    pub network: String,
    /// The node (host) the container runs on.
    pub node: String,
    /// The endpoint id: unique within the network (a container id, or a lab name).
    pub id: String,
    /// The host's network namespace, where the network's bridge is (`/run/netns/NAME`);
    /// `None` for the calling thread's, which in a program started on a real host is the root
    /// namespace: give the path when the host is a namespace.
    pub host_netns: Option<PathBuf>,
    /// The container's network namespace (`/run/netns/NAME`, `/proc/PID/ns/net`), where the
    /// veth's container end goes.
    pub container_netns: PathBuf,
    /// The interface name inside the container.
    pub ifname: String,
    /// A fixed address; `None` to allocate one.
    pub ip: Option<Ipv4Addr>,
}

/// Why a container could not be attached or detached. Nothing is left behind on error.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The store: unknown network or node, no free address, an address or id taken, the
    /// store unreachable.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The kernel refused building the veth (or the container namespace cannot be opened or
    /// entered: `DataplaneError::Netns`).
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    /// The host namespace cannot be opened or entered.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The host's agent has not built the network's bridge yet: wait until it has applied the
    /// network (`vxmesh::wait::wait_applied`, `AgentHandle::applied`).
    #[error("network {network}: bridge {bridge} does not exist on this host yet; is `vxmesh agent` running here?")]
    NoBridge {
        /// The network.
        network: String,
        /// The bridge's name on the host.
        bridge: String,
    },
    /// The MTU asked for is outside 68 and the network's MTU on this host.
    #[error("mtu {mtu}: must be 68..={bridge} (the MTU of network {network} on this host)")]
    Mtu {
        /// The MTU asked for, in bytes.
        mtu: u32,
        /// The network's MTU on this host (its bridge's), in bytes.
        bridge: u32,
        /// The network.
        network: String,
    },
}

/// The MTU network `network` has on this host (its bridge's, as the agent set it), or
/// [`ContainerError::NoBridge`] when the agent has not built the bridge.
pub fn network_mtu(host_netns: &Option<PathBuf>, network: &Network) -> Result<u32, ContainerError> {
    bridge_mtu(host_netns, network)
}

fn host_path(spec_host: &Option<PathBuf>) -> PathBuf {
    spec_host
        .clone()
        .unwrap_or_else(|| PathBuf::from(netns::THREAD_SELF_NET))
}

/// The MTU the network has on this host: its bridge's, as the agent set it.
fn bridge_mtu(host: &Option<PathBuf>, network: &Network) -> Result<u32, ContainerError> {
    let bridge = network.bridge_name();
    let name = bridge.clone();
    let link = netns::block_on_in(&host_path(host), move || async move {
        Dataplane::connect()?.link(&name).await
    })??;
    link.map(|l| l.mtu).ok_or_else(|| ContainerError::NoBridge {
        network: network.name.clone(),
        bridge,
    })
}

/// Optional settings of an attachment beyond [`ContainerSpec`] (what the CNI plugin asks for).
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    /// A fixed MAC for the container end; `None`: derived from the address.
    pub mac: Option<MacAddr>,
    /// The MTU of the veth pair; `None`: the bridge's (the network's MTU on this host). It may
    /// not exceed the bridge's.
    pub mtu: Option<u32>,
    /// The CNI attachment to record with the endpoint.
    pub cni: Option<CniAttachment>,
    /// Whether the container gets a default route via the network's gateway when it has one
    /// already (default: only when it has none, so a second network adds its subnet route
    /// only).
    pub default_route: DefaultRoute,
}

/// Records the endpoint, then builds its veth into the container. Undoes the record on failure.
/// Blocking (netlink on threads of its own, in the two namespaces).
///
/// The network must already be built on the host (its agent has applied it), or the call
/// fails with [`ContainerError::NoBridge`]; the other hosts learn the endpoint from the store
/// (wait for them to apply the revision after this call before relying on it).
///
/// Errors: [`ContainerError::Catalog`] (unknown network or node, a taken address or id, no free
/// address, store unreachable), [`ContainerError::NoBridge`], [`ContainerError::Netns`] (host
/// namespace), [`ContainerError::Dataplane`] (the container namespace, the kernel).
pub fn attach_container(
    catalog: &Catalog,
    spec: &ContainerSpec,
) -> Result<(Endpoint, Attachment), ContainerError> {
    attach_container_with(catalog, spec, &AttachOptions::default())
}

/// [`attach_container`] with a fixed MAC, MTU, default-route policy or CNI attachment.
pub fn attach_container_with(
    catalog: &Catalog,
    spec: &ContainerSpec,
    options: &AttachOptions,
) -> Result<(Endpoint, Attachment), ContainerError> {
    let network = catalog.network(&spec.network)?;
    let bridge = bridge_mtu(&spec.host_netns, &network)?;
    let mtu = match options.mtu {
        Some(m) if m > bridge || m < 68 => {
            return Err(ContainerError::Mtu {
                mtu: m,
                bridge,
                network: network.name.clone(),
            })
        }
        Some(m) => m,
        None => bridge,
    };
    let endpoint = catalog.add_endpoint(&EndpointSpec {
        network: spec.network.clone(),
        node: spec.node.clone(),
        id: Some(spec.id.clone()),
        ip: spec.ip,
        mac: options.mac,
        attach: true,
        cni: options.cni.clone(),
        mtu: options.mtu.filter(|m| *m < bridge),
    })?;
    let attach = AttachSpec {
        host_netns: spec.host_netns.clone(),
        container_netns: spec.container_netns.clone(),
        bridge: network.bridge_name(),
        host_ifname: endpoint
            .host_ifname
            .clone()
            .expect("attach endpoints have a veth"),
        container_ifname: spec.ifname.clone(),
        address: Ipv4Net::new(endpoint.ip, network.subnet.prefix_len())
            .expect("prefix from a valid subnet"),
        gateway: Some(network.gateway),
        default_route: options.default_route,
        mac: endpoint.mac,
        mtu,
    };
    match dataplane::attach(&attach) {
        Ok(a) => Ok((endpoint, a)),
        Err(e) => {
            if let Err(undo) = catalog.remove_endpoint(&endpoint.network, &endpoint.id) {
                tracing::warn!(endpoint = %endpoint.id, error = %undo, "attach failed; cannot remove the endpoint record");
            }
            Err(e.into())
        }
    }
}

/// Removes the container's veth and its endpoint record. Succeeds when either is already gone.
pub fn detach_container(
    catalog: &Catalog,
    host_netns: Option<PathBuf>,
    network: &str,
    id: &str,
) -> Result<(), ContainerError> {
    let endpoint = match catalog.endpoint(network, id) {
        Ok(e) => e,
        Err(CatalogError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if let Some(ifname) = &endpoint.host_ifname {
        dataplane::detach(host_netns.as_deref(), ifname)?;
    }
    match catalog.remove_endpoint(network, id) {
        Ok(_) | Err(CatalogError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
