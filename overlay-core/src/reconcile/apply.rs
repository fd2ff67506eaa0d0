//! Reading the kernel and changing only what differs from the desired state.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::Ipv4Net;

use crate::dataplane::{Dataplane, DataplaneError, Link};
use crate::model::{endpoint_key, EndpointStatus, Node};

use crate::wireguard::Uapi;

use super::desired::{Desired, DesiredNetwork, DesiredWireguard};

/// One change made to the kernel, for logs and for proving a second pass makes none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub action: &'static str,
    pub object: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action, self.object)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("node {node}: its underlay address {ip} is on no interface of this host")]
    NoUnderlay { node: String, ip: Ipv4Addr },
    #[error("{context}: {source}")]
    Dataplane {
        context: String,
        #[source]
        source: DataplaneError,
    },
    #[error("network {0}: encrypted, but this node has no WireGuard tunnel address yet")]
    NoTunnel(String),
    #[error(
        "network {0}: encrypted, but the ingress filter that keeps its VXLAN port closed to all \
         but WireGuard could not be checked or installed; not built"
    )]
    Unguarded(String),
    #[error("WireGuard interface {0}: {1}")]
    Wireguard(String, String),
    #[error("{context}: {source}")]
    Sysctl {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// What one pass did: every change made, and every error met (a failure on one network does
/// not stop the others).
#[derive(Debug, Default)]
pub struct Report {
    pub changes: Vec<Change>,
    pub errors: Vec<ReconcileError>,
    /// The state of every attachment of this host the desired state names, by
    /// [`crate::model::endpoint_key`]: the MTU both ends have, or why they could not be reached.
    pub endpoints: BTreeMap<String, EndpointStatus>,
}

impl Report {
    /// Marks every attachment of `d` with `problem` (its network could not be built).
    fn attachments_failed(&mut self, d: &DesiredNetwork, problem: &str) {
        for e in &d.local_attached {
            self.endpoints.insert(
                endpoint_key(&e.network, &e.id),
                EndpointStatus {
                    mtu: None,
                    problem: Some(problem.to_string()),
                },
            );
        }
    }
}

/// Applies desired state to the kernel of the network namespace its netlink socket was opened in.
pub struct Reconciler {
    pub(super) dp: Dataplane,
    pub(super) wireguard: Option<WireguardHandle>,
}

/// The WireGuard interface this host's agent runs, and its UAPI.
#[derive(Clone)]
pub struct WireguardHandle {
    pub ifname: String,
    pub uapi: Arc<Uapi>,
}

pub(super) trait Context<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ReconcileError>;
}

impl<T> Context<T> for Result<T, DataplaneError> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ReconcileError> {
        self.map_err(|source| ReconcileError::Dataplane {
            context: context(),
            source,
        })
    }
}

impl Reconciler {
    pub fn new(dp: Dataplane) -> Self {
        Reconciler {
            dp,
            wireguard: None,
        }
    }

    /// Also keep this WireGuard interface's address, MTU and peers in line with the store.
    pub fn with_wireguard(mut self, wg: WireguardHandle) -> Self {
        self.wireguard = Some(wg);
        self
    }

    /// No WireGuard interface any more (the agent stopped its device).
    pub fn without_wireguard(mut self) -> Self {
        self.wireguard = None;
        self
    }

    pub fn dataplane(&self) -> &Dataplane {
        &self.dp
    }

    /// One reconcile pass.
    ///
    /// `claimed` reads the store again and returns the host-side veth names this host's
    /// endpoints own (`None` when the store cannot be read). Unclaimed vxmesh veths are deleted
    /// only if a read made *after* the links were listed does not claim them: an attach
    /// records its endpoint before it creates the veth, so an attach in flight is never undone.
    pub async fn apply(
        &self,
        desired: &Desired,
        claimed: &(dyn Fn() -> Option<BTreeSet<String>> + Sync),
    ) -> Report {
        let mut report = Report::default();
        for (e, why) in &desired.refused_endpoints {
            report.endpoints.insert(
                endpoint_key(&e.network, &e.id),
                EndpointStatus {
                    mtu: None,
                    problem: Some(format!("network {} is {why}", e.network)),
                },
            );
        }
        // Every device the desired state names. Whatever else vxmesh made here goes first, so a
        // stale device never blocks a new one in the same pass (a VNI on its port, a name, a
        // subnet route).
        let mut keep: BTreeSet<String> = BTreeSet::new();
        for d in desired.networks.values() {
            keep.insert(d.network.bridge_name());
            keep.insert(d.network.vxlan_name());
            keep.extend(
                d.local_attached
                    .iter()
                    .filter_map(|e| e.host_ifname.clone()),
            );
        }
        // Where encrypted networks' VXLAN port must be closed (empty: nowhere, remove ours).
        let mut guarded: BTreeSet<String> = BTreeSet::new();
        let encrypted = desired.networks.values().any(|d| d.network.encrypted);
        if let Some(node) = &desired.node {
            let underlay = match self.underlay(node).await {
                Ok(underlay) => underlay,
                Err(e) => {
                    // Without the underlay nothing can be built, but nothing is torn down
                    // either: the address may be coming back.
                    for d in desired.networks.values() {
                        report.attachments_failed(d, &format!("not built on this host: {e}"));
                    }
                    report.errors.push(e);
                    return report;
                }
            };
            if let Err(e) = self.remove_stale(&keep, claimed, &mut report.changes).await {
                report.errors.push(e);
            }
            // The underlay device forwards for the networks (published ports), behind a filter
            // that keeps the underlay out of every network's subnet.
            let subnets: Vec<Ipv4Net> = desired
                .networks
                .values()
                .map(|d| d.network.subnet)
                .collect();
            let isolation = if subnets.is_empty() {
                self.remove_isolation(&underlay, &mut report.changes).await
            } else {
                self.isolation(&underlay, &subnets, false, &mut report.changes)
                    .await
            };
            if let Err(e) = isolation {
                report.errors.push(e);
            }
            // Closed before any encrypted VXLAN socket is opened; an encrypted network is not
            // built (or changed) while its port cannot be closed.
            let mut guard_ok = true;
            if encrypted {
                guarded.insert(underlay.name.clone());
                guarded.extend(desired.networks.values().map(|d| d.network.bridge_name()));
                if let Err(e) = self
                    .ingress_filters(&guarded, None, &mut report.changes)
                    .await
                {
                    report.errors.push(e);
                    guard_ok = false;
                }
            }
            if let (Some(want), Some(wg)) = (&desired.wireguard, &self.wireguard) {
                if let Err(e) = self
                    .wireguard(wg, want, &underlay, &mut report.changes)
                    .await
                {
                    report.errors.push(e);
                }
            }
            for d in desired.networks.values() {
                let mtu = desired.network_mtu(&d.network, underlay.mtu);
                let res = if d.network.encrypted && !guard_ok {
                    Err(ReconcileError::Unguarded(d.network.name.clone()))
                } else {
                    let others: Vec<Ipv4Net> = subnets
                        .iter()
                        .copied()
                        .filter(|s| *s != d.network.subnet)
                        .collect();
                    self.network(node, &underlay, d, mtu, encrypted, &others, &mut report)
                        .await
                };
                if let Err(e) = res {
                    report.attachments_failed(d, &format!("its network is not built: {e}"));
                    report.errors.push(e);
                }
            }
        } else {
            // No longer a node: no peer of ours is let in any more.
            if let Some(wg) = &self.wireguard {
                let none = DesiredWireguard {
                    tunnel_ip: Ipv4Addr::UNSPECIFIED,
                    port: 0,
                    peers: BTreeMap::new(),
                };
                if let Err(e) = self.wireguard_peers(wg, &none, &mut report.changes).await {
                    report.errors.push(e);
                }
            }
            if let Err(e) = self.remove_stale(&keep, claimed, &mut report.changes).await {
                report.errors.push(e);
            }
        }
        if guarded.is_empty() {
            // No encrypted network here (any more): remove the filters.
            if let Err(e) = self
                .ingress_filters(&guarded, None, &mut report.changes)
                .await
            {
                report.errors.push(e);
            }
        }
        report
    }

    pub(super) async fn underlay(&self, node: &Node) -> Result<Link, ReconcileError> {
        self.dp
            .link_with_address(IpAddr::V4(node.underlay))
            .await
            .ctx(|| format!("finding the underlay device of {}", node.underlay))?
            .ok_or_else(|| ReconcileError::NoUnderlay {
                node: node.name.clone(),
                ip: node.underlay,
            })
    }

    #[allow(clippy::too_many_arguments)]
    async fn network(
        &self,
        node: &Node,
        underlay: &Link,
        d: &DesiredNetwork,
        mtu: u32,
        guard: bool,
        other_subnets: &[Ipv4Net],
        report: &mut Report,
    ) -> Result<(), ReconcileError> {
        let net = &d.network;
        let changes = &mut report.changes;
        let local = d
            .local
            .ok_or_else(|| ReconcileError::NoTunnel(net.name.clone()))?;
        let made = changes.len();
        let bridge = self.bridge(net, mtu, changes).await?;
        // Isolated from the other networks before it forwards anything.
        self.isolation(&bridge, other_subnets, true, changes)
            .await?;
        if guard && changes[made..].iter().any(|c| c.action == "create bridge") {
            // A new bridge is guarded before anything is attached to it.
            let only = BTreeSet::from([bridge.name.clone()]);
            self.ingress_filters(&only, Some(bridge.index), changes)
                .await?;
        }
        let vxlan = self
            .vxlan(node, local, underlay, net, mtu, &bridge, changes)
            .await?;
        self.fdb(&vxlan, &d.fdb, changes).await?;
        self.bridge_fdb(&vxlan, &d.neighbours, changes).await?;
        self.neighbours(&bridge, &d.neighbours, changes).await?;
        for e in &d.local_attached {
            let status = self.attachment(e, &bridge, mtu, changes).await;
            report
                .endpoints
                .insert(endpoint_key(&e.network, &e.id), status);
        }
        Ok(())
    }
}

pub(super) fn change(action: &'static str, object: impl ToString) -> Change {
    Change {
        action,
        object: object.to_string(),
    }
}
