//! `service inspect`: one service, its backends as the store sees them, and the counters of
//! the kernel datapath of every node whose pins are on this machine.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ingress_lb::catalog::{HealthRecord, ServiceCatalog, ServiceError};
use ingress_lb::reconcile::ids::kernel_id;
use ingress_lb::service::{BackendState, Service};
use overlay_core::catalog::Catalog;
use serde::Serialize;
use vxmesh_ebpf::{Maps, NodePins};

use super::view::{status_word, ServiceView};

/// What `service inspect` shows.
///
/// JSON: `service` ([`ServiceView`]), `orphaned` (its network was removed), `revision` (the
/// store revision it was read at), `backends` ([`BackendInspection`] each), `nodes`
/// ([`NodeInspection`] for every node in the store, sorted by name).
#[derive(Debug, Clone, Serialize)]
pub struct ServiceInspection {
    /// The service as configured.
    pub service: ServiceView,
    /// True when the service's network was removed: it has no table and can only be
    /// removed.
    pub orphaned: bool,
    /// The store revision everything was read at.
    pub revision: u64,
    /// Every backend, in the service's order.
    pub backends: Vec<BackendInspection>,
    /// Every node of the store, sorted by name, with what its kernel holds when its pins
    /// are on this machine.
    pub nodes: Vec<NodeInspection>,
}

/// One backend: its configuration, where it is, its state by the store, and its counters in
/// each kernel on this machine.
///
/// JSON: `endpoint`, `id` (the kernel's backend id), `weight`, `state` (`active`|`draining`,
/// as configured), `node` and `ip` (its endpoint's; null when the endpoint is gone), `status`
/// ([`status_word`]: `up`, `draining`, `down`, `unknown`, `node-down`, `endpoint-gone`),
/// `health` (the last report of its node's agent, `{node, status: up|down, detail,
/// since_ms}` with `since_ms` in ms since the Unix epoch; null when none), `table_slots`
/// (its slots in the Maglev table the store's state gives; 0 when out or draining),
/// `counters` ([`BackendCounters`] per node on this machine).
#[derive(Debug, Clone, Serialize)]
pub struct BackendInspection {
    /// The backend's endpoint id (in the service's network).
    pub endpoint: String,
    /// The kernel's backend id (unique over all services, never reused).
    pub id: u32,
    /// Relative share of new flows.
    pub weight: u32,
    /// As configured: active, or draining (no new flows).
    pub state: BackendState,
    /// The node of its endpoint; `None` when the endpoint is gone.
    pub node: Option<String>,
    /// The address of its endpoint; `None` when the endpoint is gone.
    pub ip: Option<Ipv4Addr>,
    /// [`status_word`] of its status by the store.
    pub status: &'static str,
    /// The last health report of its node's agent; `None` when there is none.
    pub health: Option<HealthRecord>,
    /// Its slots in the Maglev table the store's state gives (0 when out or draining).
    pub table_slots: u32,
    /// Its counters in each kernel whose pins are on this machine.
    pub counters: Vec<BackendCounters>,
}

/// One backend's counters in one node's kernel (`vx_be_stats`, summed over CPUs), counted
/// by that node's datapath since the backend was put in its maps.
///
/// JSON: `node`, `programmed` (the backend is in that node's backend map), `packets`
/// (packets the tc programs translated to it, and UDP datagrams the socket hooks sent to
/// it), `bytes` (frame length of the packets the tc programs translated, bytes; the socket
/// path counts none: its packets never pass a translation), `connections` (new flows of the
/// tc path, and connect()s and first sendmsg()s of sockets the socket hooks sent to it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackendCounters {
    /// The node whose kernel counted.
    pub node: String,
    /// The backend is in that node's backend map.
    pub programmed: bool,
    /// Packets the tc programs translated to it, and UDP datagrams the socket hooks sent
    /// to it.
    pub packets: u64,
    /// Frame bytes of the packets the tc programs translated (the socket path counts
    /// none).
    pub bytes: u64,
    /// New flows of the tc path, and connects and first sendmsgs of sockets the socket
    /// hooks sent to it.
    pub connections: u64,
}

/// One node of the store and what its kernel holds for the service, when the node's pins
/// are on this machine.
///
/// JSON: `node`, `pin_dir` (`<pin root>/<node>`), `on_this_host` (the pin directory exists
/// here; when false every field below is null), `error` (the pins exist but could not be
/// read; null otherwise), `conntrack` ([`ConntrackFill`], the node's whole table),
/// `maglev` ([`KernelTable`] of this service; null when the kernel has no table for it:
/// no backend up, or not programmed yet), `no_backend_drops` (packets and connects to the
/// service refused for want of a backend).
#[derive(Debug, Clone, Serialize)]
pub struct NodeInspection {
    /// The node's name.
    pub node: String,
    /// Its pin directory: `<pin root>/<node>`.
    pub pin_dir: PathBuf,
    /// The pin directory exists here; when false every field below is `None`.
    pub on_this_host: bool,
    /// Why the pins that exist could not be read; `None` when they could.
    pub error: Option<String>,
    /// The fill of the node's whole connection table.
    pub conntrack: Option<ConntrackFill>,
    /// This service's Maglev table in that kernel; `None` when there is none (no backend
    /// up, or not programmed yet).
    pub maglev: Option<KernelTable>,
    /// Packets and connects to the service refused for want of a backend.
    pub no_backend_drops: Option<u64>,
}

/// A node's connection table (`vx_ct`, LRU: when full the oldest entries go).
///
/// JSON: `entries` (both directions of every flow), `flows` (translated flows), `capacity`
/// (entries it holds), `fill_percent` (entries / capacity × 100).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConntrackFill {
    /// Entries in use: both directions of every flow.
    pub entries: u64,
    /// Translated flows.
    pub flows: u64,
    /// Entries the table holds.
    pub capacity: u32,
    /// `entries / capacity × 100`.
    pub fill_percent: f64,
}

/// A service's Maglev table in one node's kernel.
///
/// JSON: `slots` (the table size M in the kernel), `memory_bytes` (kernel memory of the
/// table, bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelTable {
    /// The table size M in the kernel (slots).
    pub slots: u32,
    /// Kernel memory of the table, bytes.
    pub memory_bytes: u64,
}

/// Service `name` with its backends' states (store) and the kernel counters of every node
/// of the store whose pin directory (`pin_root/NODE`, [`crate::DEFAULT_PIN_ROOT`] on a real
/// host) exists on this machine. Reads only: loads no program, mounts nothing, changes no map.
/// A node whose pins are absent is shown as not on this host; one whose maps cannot be read
/// carries the reason in [`NodeInspection::error`]; neither is an error.
///
/// Errors: an invalid or unknown service name, a store failure.
pub fn inspect(
    catalog: &Catalog,
    name: &str,
    pin_root: &Path,
) -> Result<ServiceInspection, ServiceError> {
    let services = ServiceCatalog::of(catalog);
    let svc = services.get(name)?;
    let snap = services.snapshot()?;
    let orphaned = !snap.services.contains_key(name);
    let table = if orphaned { None } else { snap.table(&svc)? };
    let mut slots: BTreeMap<u32, u32> = BTreeMap::new();
    for id in table.iter().flatten() {
        *slots.entry(*id).or_default() += 1;
    }
    let mut nodes = Vec::new();
    let mut counters: BTreeMap<u32, Vec<BackendCounters>> = BTreeMap::new();
    for node in catalog.nodes()? {
        let (view, per_backend) = read_node(pin_root, &node.name, &svc);
        for (id, c) in per_backend {
            counters.entry(id).or_default().push(c);
        }
        nodes.push(view);
    }
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    let backends = snap
        .backends(&svc)
        .into_iter()
        .map(|v| BackendInspection {
            endpoint: v.backend.endpoint.clone(),
            id: v.backend.id,
            weight: v.backend.weight,
            state: v.backend.state,
            node: v.endpoint.map(|e| e.node.clone()),
            ip: v.endpoint.map(|e| e.ip),
            status: status_word(&v.status),
            health: v.health.cloned(),
            table_slots: slots.get(&v.backend.id).copied().unwrap_or(0),
            counters: counters.remove(&v.backend.id).unwrap_or_default(),
        })
        .collect();
    Ok(ServiceInspection {
        service: (&svc).into(),
        orphaned,
        revision: snap.revision,
        backends,
        nodes,
    })
}

/// What one node's kernel holds for `svc`, and its backends' counters (by backend id).
fn read_node(
    pin_root: &Path,
    node: &str,
    svc: &Service,
) -> (NodeInspection, Vec<(u32, BackendCounters)>) {
    let mut view = NodeInspection {
        node: node.to_string(),
        pin_dir: pin_root.join(node),
        on_this_host: false,
        error: None,
        conntrack: None,
        maglev: None,
        no_backend_drops: None,
    };
    // A node name the pin layout refuses cannot have pins.
    let Ok(pins) = NodePins::new(pin_root, node) else {
        return (view, Vec::new());
    };
    if !pins.node_dir.is_dir() {
        return (view, Vec::new());
    }
    view.on_this_host = true;
    match read_maps(&pins, svc, &mut view) {
        Ok(counters) => (view, counters),
        Err(e) => {
            view.error = Some(e.to_string());
            (view, Vec::new())
        }
    }
}

fn read_maps(
    pins: &NodePins,
    svc: &Service,
    view: &mut NodeInspection,
) -> vxmesh_ebpf::Result<Vec<(u32, BackendCounters)>> {
    let maps = Maps::open_pinned(pins)?;
    let ct = maps.conntrack_fill()?;
    view.conntrack = Some(ConntrackFill {
        entries: ct.entries,
        flows: ct.flows,
        capacity: ct.capacity,
        fill_percent: if ct.capacity == 0 {
            0.0
        } else {
            ct.entries as f64 * 100.0 / f64::from(ct.capacity)
        },
    });
    // The kernel holds one service per port and one backend per (backend, port), under the
    // ids `ingress_lb::reconcile::ids::kernel_id` derives: sum them over the ports.
    let port_ids = |store_id: u32| (0..svc.ports.len()).filter_map(move |i| kernel_id(store_id, i));
    let mut table: Option<KernelTable> = None;
    let mut drops = 0;
    for kid in port_ids(svc.id) {
        if let Some(t) = maps.maglev_table_info(kid)? {
            let total = table.get_or_insert(KernelTable {
                slots: t.slots,
                memory_bytes: 0,
            });
            total.memory_bytes += t.memory_bytes;
        }
        drops += maps.service_stats(kid)?.no_backend;
    }
    view.maglev = table;
    view.no_backend_drops = Some(drops);
    svc.backends
        .iter()
        .map(|b| {
            let mut c = BackendCounters {
                node: view.node.clone(),
                ..Default::default()
            };
            for kid in port_ids(b.id) {
                let s = maps.backend_stats(kid)?;
                c.programmed |= maps.backend(kid)?.is_some();
                c.packets += s.packets;
                c.bytes += s.bytes;
                c.connections += s.conns;
            }
            Ok((b.id, c))
        })
        .collect()
}
