//! What one node's datapath maps should hold, computed from a [`ServiceSnapshot`]. Pure: no
//! kernel access.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use overlay_core::MacAddr;
use vxmesh_ebpf::{Backend as KBackend, Svc, SvcKey, BE_F_DRAINING, SVC_F_AFFINITY};

use super::ids::kernel_id;
use super::mesh::DesiredMesh;
use crate::catalog::{BackendStatus, ServiceSnapshot};
use crate::service::{Affinity, Proto, Service, ServicePort};

/// One frontend (VIP:port/proto) and the kernel service it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredFrontend {
    pub key: SvcKey,
    pub svc: Svc,
    /// `web 10.10.1.100:80/tcp`, for the reports.
    pub label: String,
}

/// One kernel backend (a backend of a service, for one of its ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredBackend {
    pub backend: KBackend,
    /// `web/h1-c1 10.10.1.2:8080`.
    pub label: String,
}

/// The Maglev table of one kernel service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredTable {
    /// Slot i → kernel backend id; empty: no backend is up (the service's new flows are
    /// dropped, its connects refused).
    pub slots: Vec<u32>,
    /// Backends with slots.
    pub backends: usize,
    /// `web 80/tcp`.
    pub label: String,
}

/// The datapath state of one node: every service of a network the node carries, on every
/// one of its ports.
///
/// Backends in the backend map: those whose endpoint exists and that are not reported down:
/// up (no flag), draining, not checked yet, or on a node whose agent heartbeat is missing
/// (these three flagged draining: no table slot, affinity picks ignored). So established
/// flows keep a draining backend, and survive an agent restart (its heartbeat and health
/// reports vanish for a moment); a backend reported down leaves the map, so its flows are
/// balanced anew on their next packet (a dead server's UDP flows do not stick to it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredLb {
    /// By kernel service id.
    pub frontends: BTreeMap<u32, DesiredFrontend>,
    /// By kernel backend id.
    pub backends: BTreeMap<u32, DesiredBackend>,
    /// By kernel service id: one per frontend.
    pub tables: BTreeMap<u32, DesiredTable>,
    /// VIP → the MAC ARP replies give (its network's gateway MAC).
    pub vips: BTreeMap<Ipv4Addr, [u8; 6]>,
    /// Kernel ids of every backend still configured in a programmed service with its
    /// endpoint present, whether in the map or not: a backend that leaves the map and is
    /// not among these was removed, and its flows are purged.
    pub configured: BTreeSet<u32>,
    /// Host-side veth names of this node's attachments on networks with a service: where
    /// the tc programs go.
    pub lxc_ifnames: BTreeSet<String>,
    /// Services left out, and why.
    pub problems: Vec<String>,
    /// The routing mesh (published ports).
    pub mesh: DesiredMesh,
}

pub(super) fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => vxmesh_ebpf::IPPROTO_TCP,
        Proto::Udp => vxmesh_ebpf::IPPROTO_UDP,
    }
}

impl DesiredLb {
    /// The state of node `node` from `snap`: the services whose network `carried(network)`
    /// says this node builds (the overlay reconciler's networks).
    pub fn compute(snap: &ServiceSnapshot, node: &str, carried: impl Fn(&str) -> bool) -> Self {
        let mut out = DesiredLb::default();
        let mut networks = BTreeSet::new();
        for svc in snap.services.values().filter(|s| carried(&s.network)) {
            match out.service(snap, svc) {
                Ok(()) => {
                    networks.insert(svc.network.as_str());
                }
                Err(problem) => out
                    .problems
                    .push(format!("service {}: {problem}", svc.name)),
            }
        }
        out.lxc_ifnames = snap
            .endpoints
            .values()
            .filter(|e| e.node == node && networks.contains(e.network.as_str()))
            .filter_map(|e| e.host_ifname.clone())
            .collect();
        let backends = out.backends.keys().copied().collect();
        out.mesh = DesiredMesh::compute(snap, node, &carried, &out.frontends, &backends);
        out
    }

    /// True when the node has no service to program: the datapath is not needed.
    pub fn is_empty(&self) -> bool {
        self.frontends.is_empty()
    }

    /// Adds every port of `svc`; on an error adds nothing.
    fn service(&mut self, snap: &ServiceSnapshot, svc: &Service) -> Result<(), String> {
        let network = snap
            .networks
            .get(&svc.network)
            .ok_or_else(|| format!("network '{}' is not in the store", svc.network))?;
        let table = snap.table(svc).map_err(|e| e.to_string())?;
        let views = snap.backends(svc);
        let mut add = DesiredLb::default();
        for (i, port) in svc.ports.iter().enumerate() {
            let kid = |id: u32| {
                kernel_id(id, i).ok_or_else(|| {
                    format!("id {id} is beyond the kernel ids' range (at most 2^26 - 1)")
                })
            };
            let sid = kid(svc.id)?;
            let label = format!("{} {}:{}/{}", svc.name, svc.vip, port.port, port.proto);
            add.frontends.insert(
                sid,
                DesiredFrontend {
                    key: SvcKey::new(svc.vip, port.port, proto_number(port.proto)),
                    svc: Svc {
                        id: sid,
                        flags: match svc.affinity {
                            Affinity::ClientIp => SVC_F_AFFINITY,
                            Affinity::None => 0,
                        },
                        affinity_timeout_s: 0,
                    },
                    label,
                },
            );
            for v in &views {
                let Some(ep) = v.endpoint else { continue };
                let bid = kid(v.backend.id)?;
                add.configured.insert(bid);
                let flags = match v.status {
                    BackendStatus::Up => 0,
                    BackendStatus::Draining | BackendStatus::Unknown | BackendStatus::NodeDown => {
                        BE_F_DRAINING
                    }
                    BackendStatus::Down { .. }
                    | BackendStatus::EndpointGone
                    | BackendStatus::NodeGone => continue,
                };
                add.backends.insert(
                    bid,
                    DesiredBackend {
                        backend: KBackend::new(ep.ip, port.target_port, flags),
                        label: backend_label(svc, &v.backend.endpoint, ep.ip, port),
                    },
                );
            }
            let slots = match &table {
                Some(t) => t.iter().map(|&id| kid(id)).collect::<Result<Vec<_>, _>>()?,
                None => Vec::new(),
            };
            let backends = slots.iter().collect::<BTreeSet<_>>().len();
            add.tables.insert(
                sid,
                DesiredTable {
                    slots,
                    backends,
                    label: format!("{} {}/{}", svc.name, port.port, port.proto),
                },
            );
        }
        add.vips
            .insert(svc.vip, MacAddr::for_endpoint(network.gateway).octets());
        // `extend`, not `append`: `BTreeMap::append` rebuilds the whole map when both sides
        // hold entries, which made a pass over 10,000 services quadratic (77 s measured).
        self.frontends.extend(std::mem::take(&mut add.frontends));
        self.backends.extend(std::mem::take(&mut add.backends));
        self.tables.extend(std::mem::take(&mut add.tables));
        self.vips.extend(std::mem::take(&mut add.vips));
        self.configured.extend(std::mem::take(&mut add.configured));
        Ok(())
    }
}

fn backend_label(svc: &Service, endpoint: &str, ip: Ipv4Addr, port: &ServicePort) -> String {
    format!("{}/{} {}:{}", svc.name, endpoint, ip, port.target_port)
}
