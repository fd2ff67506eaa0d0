//! The routing mesh's part of a node's datapath state (issue 9): what `vx_from_underlay`,
//! `vx_from_overlay` and the reply half of `vx_from_lxc` read (see the ebpf crate's
//! `bpf/include/mesh.h`), computed from the store ([`DesiredMesh::compute`], pure) and
//! written by [`apply_mesh`] (differences only; a second pass changes nothing).
//!
//! Node MACs: every node names itself in the overlay with `0a:5e` + its underlay IPv4 octets
//! ([`node_mac`], overlay-core's `MacAddr::for_node`, which also gives every VXLAN device a
//! static FDB entry for it): locally administered and unicast (IEEE 802 bits of the first
//! octet), different from the `0a:58` endpoint MACs and from the bridges' shared gateway MAC,
//! and computed alike by every node without coordination. Its DSR frames carry its DSR MAC
//! (`0a:5f` + the octets, [`vxmesh_ebpf::dsr_mac`]) instead, so a backend's host knows that
//! their destination port is still the published one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use overlay_core::mac::MacAddr;
use vxmesh_ebpf::{
    dsr_mac, BeLoc, Host, Maps, MeshBe, MeshBeKey, Svc, SvcKey, BE_LOC_F_LOCAL, MESH_F_DSR,
    SVC_F_DSR, SVC_F_PUBLISHED,
};

use super::desired::{proto_number, DesiredFrontend};
use super::ids::kernel_id;
use super::maps::{change, err};
use super::{LbError, LbReport};
use crate::catalog::ServiceSnapshot;
use crate::service::Mode;

/// The MAC naming the node with underlay address `underlay` (`0a:5e:a:b:c:d`).
pub fn node_mac(underlay: Ipv4Addr) -> [u8; 6] {
    MacAddr::for_node(underlay).octets()
}

/// Where the underlay program delivers one kernel backend on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendPlace {
    /// A local backend's host-side veth, or a remote one's network bridge.
    pub ifname: String,
    pub mac: [u8; 6],
    pub local: bool,
}

/// A local backend of a published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedPort {
    /// The backend as the forward frames address it: (address, target port, protocol) in
    /// default mode, (address, published port, protocol) with DSR.
    pub key: MeshBeKey,
    /// The published port (host order).
    pub published: u16,
    /// The backend's target port (host order).
    pub target: u16,
    pub dsr: bool,
    /// Its network's VXLAN device.
    pub overlay_ifname: String,
}

/// The routing mesh's state of one node. Empty when no service of a carried network
/// publishes a port, or when the node is not in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredMesh {
    /// This node's underlay address, when it has published frontends.
    pub underlay: Option<Ipv4Addr>,
    /// HOST:PUB/proto frontends of this node (the kernel service of the published port).
    pub published: Vec<DesiredFrontend>,
    /// Every node's MAC and DSR MAC → its underlay address and `MESH_F_*` flags (DSR for
    /// the DSR MAC).
    pub nodes: BTreeMap<[u8; 6], (Ipv4Addr, u8)>,
    /// Kernel backend id → where it is delivered.
    pub places: BTreeMap<u32, BackendPlace>,
    /// Local backends of published ports, by their key.
    pub served: BTreeMap<MeshBeKey, ServedPort>,
    /// VXLAN devices of the networks with published ports (`vx_from_overlay` goes there).
    pub overlay_ifnames: BTreeSet<String>,
}

impl DesiredMesh {
    /// The mesh of node `node`: for every service whose network `carried` and whose ports
    /// are in `frontends` (the kernel services already computed, by id), its published
    /// ports on this node's underlay address, and every backend in `backends` (kernel ids).
    pub fn compute(
        snap: &ServiceSnapshot,
        node: &str,
        carried: impl Fn(&str) -> bool,
        frontends: &BTreeMap<u32, DesiredFrontend>,
        backends: &BTreeSet<u32>,
    ) -> Self {
        let mut out = DesiredMesh::default();
        let Some(me) = snap.nodes.get(node) else {
            return out;
        };
        for svc in snap.services.values().filter(|s| carried(&s.network)) {
            let Some(network) = snap.networks.get(&svc.network) else {
                continue;
            };
            let views = snap.backends(svc);
            for p in &svc.publish {
                let Some(i) = svc
                    .ports
                    .iter()
                    .position(|sp| sp.port == p.port && sp.proto == p.proto)
                else {
                    continue;
                };
                let Some(front) = kernel_id(svc.id, i).and_then(|sid| frontends.get(&sid)) else {
                    continue;
                };
                let proto = proto_number(p.proto);
                let dsr = svc.mode == Mode::Dsr;
                let mode_flag = if dsr { SVC_F_DSR } else { 0 };
                out.published.push(DesiredFrontend {
                    key: SvcKey::new(me.underlay, p.published, proto),
                    svc: Svc {
                        flags: front.svc.flags | SVC_F_PUBLISHED | mode_flag,
                        ..front.svc
                    },
                    label: format!(
                        "{} {}:{}/{} (published)",
                        svc.name, me.underlay, p.published, p.proto
                    ),
                });
                out.overlay_ifnames.insert(network.vxlan_name());
                let target = svc.ports[i].target_port;
                for v in &views {
                    let Some(ep) = v.endpoint else { continue };
                    let Some(bid) = kernel_id(v.backend.id, i).filter(|b| backends.contains(b))
                    else {
                        continue;
                    };
                    let local = ep.node == node;
                    let ifname = if local {
                        ep.host_ifname.clone()
                    } else {
                        Some(network.bridge_name())
                    };
                    if let Some(ifname) = ifname {
                        out.places.insert(
                            bid,
                            BackendPlace {
                                ifname,
                                mac: ep.mac.octets(),
                                local,
                            },
                        );
                    }
                    if local {
                        // Default mode: one entry per target port (the ingress node turns
                        // the replies back per flow); DSR: one per published port.
                        let key = if dsr {
                            MeshBeKey::new(ep.ip, p.published, proto, MESH_F_DSR)
                        } else {
                            MeshBeKey::new(ep.ip, target, proto, 0)
                        };
                        out.served.insert(
                            key,
                            ServedPort {
                                key,
                                published: p.published,
                                target,
                                dsr,
                                overlay_ifname: network.vxlan_name(),
                            },
                        );
                    }
                }
            }
        }
        if out.published.is_empty() {
            return DesiredMesh::default();
        }
        out.underlay = Some(me.underlay);
        out.nodes = snap
            .nodes
            .values()
            .flat_map(|n| {
                let mac = node_mac(n.underlay);
                [
                    (mac, (n.underlay, 0)),
                    (dsr_mac(mac), (n.underlay, MESH_F_DSR)),
                ]
            })
            .collect();
        out
    }
}

/// Writes `want` into the mesh maps (`vx_host`, `vx_mesh_node`, `vx_be_loc`, `vx_mesh_be`;
/// the published frontends go with the other frontends in `apply_maps`), changing only
/// what differs and removing what is no longer wanted. `underlay_ifindex`: this host's
/// underlay device; `ifindex`: an interface's index by name on this host (a name that does
/// not resolve leaves its entry out, reported as an error).
pub fn apply_mesh(
    want: &DesiredMesh,
    maps: &mut Maps,
    underlay_ifindex: Option<u32>,
    ifindex: impl Fn(&str) -> Option<u32>,
) -> LbReport {
    let mut r = LbReport::default();
    if let (Some(addr), Some(idx)) = (want.underlay, underlay_ifindex) {
        let host = Host::new(addr, idx, node_mac(addr));
        if maps.host().ok() != Some(host) {
            match maps.set_host(host) {
                Ok(()) => r
                    .changes
                    .push(change("set mesh host", format!("{addr} ifindex {idx}"))),
                Err(e) => r.errors.push(err("writing the mesh host", e)),
            }
        }
    }
    // Ingress nodes by MAC.
    match maps.mesh_nodes() {
        Ok(have) => {
            let have: BTreeMap<_, _> = have.into_iter().map(|(m, a, f)| (m, (a, f))).collect();
            for (mac, (addr, flags)) in &want.nodes {
                if have.get(mac) != Some(&(*addr, *flags)) {
                    match maps.upsert_mesh_node(*mac, *addr, *flags) {
                        Ok(()) => r.changes.push(change("add mesh node", format!("{addr}"))),
                        Err(e) => r.errors.push(err(format!("writing mesh node {addr}"), e)),
                    }
                }
            }
            for (mac, (addr, _)) in have.iter().filter(|(m, _)| !want.nodes.contains_key(*m)) {
                match maps.delete_mesh_node(*mac) {
                    Ok(_) => r
                        .changes
                        .push(change("delete mesh node", format!("{addr}"))),
                    Err(e) => r.errors.push(err(format!("deleting mesh node {addr}"), e)),
                }
            }
        }
        Err(e) => r.errors.push(err("reading the mesh nodes", e)),
    }
    // Backend places.
    match maps.be_locs() {
        Ok(have) => {
            let have: BTreeMap<_, _> = have.into_iter().collect();
            for (id, p) in &want.places {
                let Some(idx) = ifindex(&p.ifname) else {
                    r.errors.push(LbError::Interface {
                        what: format!("placing backend {id}"),
                        name: p.ifname.clone(),
                    });
                    continue;
                };
                let loc = BeLoc {
                    ifindex: idx,
                    mac: p.mac,
                    flags: if p.local { BE_LOC_F_LOCAL } else { 0 },
                    pad: 0,
                };
                if have.get(id) != Some(&loc) {
                    match maps.upsert_be_loc(*id, loc) {
                        Ok(()) => r
                            .changes
                            .push(change("place backend", format!("id {id} via {}", p.ifname))),
                        Err(e) => r.errors.push(err(format!("placing backend {id}"), e)),
                    }
                }
            }
            for id in have.keys().filter(|id| !want.places.contains_key(id)) {
                match maps.delete_be_loc(*id) {
                    Ok(_) => r
                        .changes
                        .push(change("unplace backend", format!("id {id}"))),
                    Err(e) => r.errors.push(err(format!("unplacing backend {id}"), e)),
                }
            }
        }
        Err(e) => r.errors.push(err("reading the backend places", e)),
    }
    // Local backends of published ports.
    match maps.mesh_bes() {
        Ok(have) => {
            let have: BTreeMap<_, _> = have.into_iter().collect();
            for (t, s) in &want.served {
                let Some(idx) = ifindex(&s.overlay_ifname) else {
                    continue;
                };
                let be = MeshBe {
                    pub_port: s.published.to_be(),
                    target_port: s.target.to_be(),
                    flags: if s.dsr { MESH_F_DSR } else { 0 },
                    pad: [0; 3],
                    overlay_ifindex: idx,
                };
                let label = format!(
                    "{}:{} as {}{}",
                    s.key.ip(),
                    s.target,
                    s.published,
                    if s.dsr { " (dsr)" } else { "" }
                );
                if have.get(t) != Some(&be) {
                    match maps.upsert_mesh_be(s.key, be) {
                        Ok(()) => r.changes.push(change("serve published port", label)),
                        Err(e) => r.errors.push(err(format!("writing {label}"), e)),
                    }
                }
            }
            for k in have.keys().filter(|t| !want.served.contains_key(*t)) {
                match maps.delete_mesh_be(*k) {
                    Ok(_) => r.changes.push(change(
                        "unserve published port",
                        format!("{}:{}", k.ip(), k.port()),
                    )),
                    Err(e) => r.errors.push(err("deleting a published backend", e)),
                }
            }
        }
        Err(e) => r.errors.push(err("reading the published backends", e)),
    }
    r
}
