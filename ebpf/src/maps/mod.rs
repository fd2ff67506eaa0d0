//! Typed handles to the node's maps, and the operations the service reconciler needs.
//!
//! Every write validates its input first and changes nothing when the input is bad. The
//! order that keeps the datapath consistent is: backends first ([`Maps::upsert_backend`]),
//! then the tables that name them ([`Maps::replace_maglev_table`]), then the frontend
//! ([`Maps::upsert_service`]); removal in the reverse order.

pub(crate) mod mesh;
pub mod types;

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use aya::maps::{
    Array, HashMap, HashOfMaps, IterableMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap,
    PerCpuValues,
};

use crate::{
    error::{Error, Result},
    pins::NodePins,
    sys,
};
use types::*;

/// `BPF_F_INNER_MAP` (include/uapi/linux/bpf.h): inner maps of one outer map may differ in
/// max_entries.
const BPF_F_INNER_MAP: u32 = 1 << 12;
/// `BPF_NOEXIST`.
const BPF_NOEXIST: u64 = 1;
/// Largest Maglev table accepted (slots). The paper's M is a prime well above 100 × the
/// backend count; 2^24 is far above any useful size.
pub const MAGLEV_MAX_SLOTS: usize = 1 << 24;

/// Map names, as in the objects and under `<node>/maps/`.
pub const MAP_NAMES: [&str; 16] = [
    "vx_svc",
    "vx_maglev",
    "vx_backend",
    "vx_be_stats",
    "vx_svc_stats",
    "vx_ct",
    "vx_affinity",
    "vx_sock_rev",
    "vx_frag",
    "vx_stats",
    "vx_vip",
    "vx_host",
    "vx_be_loc",
    "vx_mesh_node",
    "vx_mesh_be",
    "vx_mesh_flow",
];

/// Fill level of the connection table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtFill {
    /// Entries in `vx_ct` (both directions).
    pub entries: u64,
    /// Of those, original-direction entries: one per translated flow.
    pub flows: u64,
    /// `max_entries` of `vx_ct`: when `entries` reaches it, the LRU evicts the oldest.
    pub capacity: u32,
}

/// One service's Maglev table in the kernel ([`Maps::maglev_table_info`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevTableInfo {
    /// The table size M: slots holding backend ids.
    pub slots: u32,
    /// Kernel memory of the inner map (M + 1 slots of 4 bytes and the map's own structure),
    /// bytes, as the kernel reports it (`memlock`).
    pub memory_bytes: u64,
}

/// What [`Maps::purge_backend`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// `vx_ct` entries (both directions).
    pub conntrack: usize,
    /// `vx_affinity` entries.
    pub affinity: usize,
    /// `vx_sock_rev` entries.
    pub sock_rev: usize,
}

/// The node's maps, typed.
pub struct Maps {
    svc: HashMap<MapData, SvcKey, Svc>,
    maglev: HashOfMaps<MapData, u32, Array<MapData, u32>>,
    /// A second fd of `vx_maglev` for the batch commands (aya's HashOfMaps hides its own).
    maglev_fd: OwnedFd,
    backend: HashMap<MapData, u32, Backend>,
    be_stats: PerCpuHashMap<MapData, u32, BeStats>,
    svc_stats: PerCpuHashMap<MapData, u32, SvcStats>,
    ct: HashMap<MapData, CtKey, CtEntry>,
    affinity: HashMap<MapData, AffKey, AffEntry>,
    sock_rev: HashMap<MapData, u64, SockRev>,
    stats: PerCpuArray<MapData, u64>,
    vip: HashMap<MapData, u32, Vip>,
    host: Array<MapData, Host>,
    be_loc: HashMap<MapData, u32, BeLoc>,
    mesh_node: HashMap<MapData, MacKey, MeshNode>,
    mesh_be: HashMap<MapData, MeshBeKey, MeshBe>,
    mesh_flow: HashMap<MapData, CtKey, MeshFlow>,
}

fn typed<T>(name: &'static str, map: Map) -> Result<T>
where
    T: TryFrom<Map, Error = MapError>,
{
    T::try_from(map).map_err(|e| Error::map(name, "open", e))
}

fn errno(e: &MapError) -> Option<i32> {
    match e {
        MapError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => None,
    }
}

fn nr_cpus() -> Result<usize> {
    aya::util::nr_cpus().map_err(|(path, e)| Error::sys("read possible CPUs", path, e))
}

impl Maps {
    /// Takes the maps out of a loaded object (`take` returns the map of that name); the maps
    /// are pinned under `pins.maps`.
    pub(crate) fn from_maps(
        pins: &NodePins,
        mut take: impl FnMut(&'static str) -> Result<Map>,
    ) -> Result<Self> {
        let maglev_pin = pins.maps.join("vx_maglev");
        Ok(Self {
            maglev_fd: sys::obj_get(&maglev_pin)
                .map_err(|e| Error::sys("BPF_OBJ_GET", maglev_pin.display(), e))?,
            svc: typed("vx_svc", take("vx_svc")?)?,
            maglev: typed("vx_maglev", take("vx_maglev")?)?,
            backend: typed("vx_backend", take("vx_backend")?)?,
            be_stats: typed("vx_be_stats", take("vx_be_stats")?)?,
            svc_stats: typed("vx_svc_stats", take("vx_svc_stats")?)?,
            ct: typed("vx_ct", take("vx_ct")?)?,
            affinity: typed("vx_affinity", take("vx_affinity")?)?,
            sock_rev: typed("vx_sock_rev", take("vx_sock_rev")?)?,
            stats: typed("vx_stats", take("vx_stats")?)?,
            vip: typed("vx_vip", take("vx_vip")?)?,
            host: typed("vx_host", take("vx_host")?)?,
            be_loc: typed("vx_be_loc", take("vx_be_loc")?)?,
            mesh_node: typed("vx_mesh_node", take("vx_mesh_node")?)?,
            mesh_be: typed("vx_mesh_be", take("vx_mesh_be")?)?,
            mesh_flow: typed("vx_mesh_flow", take("vx_mesh_flow")?)?,
        })
    }

    /// Opens the maps pinned for a node (no program is loaded): for readers such as
    /// `service inspect`, or a writer while the agent is down.
    ///
    /// Errors: [`Error::Map`] naming the map that is not pinned or not of the right shape.
    pub fn open_pinned(pins: &NodePins) -> Result<Self> {
        Self::from_maps(pins, |name| {
            let data = MapData::from_pin(pins.maps.join(name))
                .map_err(|e| Error::map(name, "open pin", e))?;
            Map::from_map_data(data).map_err(|e| Error::map(name, "open pin", e))
        })
    }

    /// Adds or replaces frontend `key` → `svc`, and makes its (zeroed) counters if missing.
    ///
    /// Errors: [`Error::Invalid`] for `svc.id` 0, a protocol other than TCP/UDP, or a
    /// non-zero pad; [`Error::Map`] when the map is full.
    pub fn upsert_service(&mut self, key: SvcKey, svc: Svc) -> Result<()> {
        if svc.id == 0 {
            return Err(Error::invalid("service id", "0 is reserved (no service)"));
        }
        if key.proto != IPPROTO_TCP && key.proto != IPPROTO_UDP {
            return Err(Error::invalid(
                "service protocol",
                format!("{} is neither TCP (6) nor UDP (17)", key.proto),
            ));
        }
        if key.pad != 0 {
            return Err(Error::invalid("service key pad", "must be 0"));
        }
        let known = SVC_F_AFFINITY | SVC_F_PUBLISHED | SVC_F_DSR;
        if svc.flags & !known != 0 {
            return Err(Error::invalid(
                "service flags",
                format!("unknown bits {:#x}", svc.flags & !known),
            ));
        }
        let zero = PerCpuValues::try_from(vec![SvcStats::default(); nr_cpus()?])
            .map_err(|e| Error::sys("build per-CPU values", "vx_svc_stats", e))?;
        match self.svc_stats.insert(svc.id, zero, BPF_NOEXIST) {
            Err(e) if errno(&e) != Some(libc::EEXIST) => {
                return Err(Error::map("vx_svc_stats", "insert", e))
            }
            _ => {}
        }
        self.svc
            .insert(key, svc, 0)
            .map_err(|e| Error::map("vx_svc", "insert", e))
    }

    /// Removes frontend `key`, its Maglev table and counters. Returns the service it named,
    /// or None when there was none. Connection-table entries of its flows stay until the
    /// LRU evicts them (they are no longer matched: the frontend lookup comes first).
    pub fn delete_service(&mut self, key: SvcKey) -> Result<Option<Svc>> {
        let svc = match self.svc.get(&key, 0) {
            Ok(s) => s,
            Err(MapError::KeyNotFound) => return Ok(None),
            Err(e) => return Err(Error::map("vx_svc", "get", e)),
        };
        ignore_missing(self.svc.remove(&key)).map_err(|e| Error::map("vx_svc", "remove", e))?;
        self.clear_maglev_table(svc.id)?;
        ignore_missing(self.svc_stats.remove(&svc.id))
            .map_err(|e| Error::map("vx_svc_stats", "remove", e))?;
        Ok(Some(svc))
    }

    /// The service of frontend `key`, if any.
    pub fn service(&self, key: &SvcKey) -> Result<Option<Svc>> {
        match self.svc.get(key, 0) {
            Ok(s) => Ok(Some(s)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(Error::map("vx_svc", "get", e)),
        }
    }

    /// Replaces service `svc_id`'s Maglev table with `table` (slot i → backend id, as
    /// ingress-lb computed it; its length is the table size M, a prime by the Maglev paper's
    /// rule) in one update of `vx_maglev`: a packet sees the whole old table or the whole
    /// new one. An empty `table` removes the table: the service has no backend. Costs one
    /// RCU grace period (the kernel waits for running programs after a map-of-maps update,
    /// milliseconds): program many services with [`Maps::replace_maglev_tables`].
    ///
    /// Errors: [`Error::Invalid`] for `svc_id` 0, a backend id 0, or more than
    /// [`MAGLEV_MAX_SLOTS`] slots; [`Error::Map`]/[`Error::Sys`] when the kernel refuses.
    pub fn replace_maglev_table(&mut self, svc_id: u32, table: &[u32]) -> Result<()> {
        self.replace_maglev_tables(&[(svc_id, table)])
    }

    /// Replaces the Maglev tables of many services at once: each table is swapped
    /// atomically as in [`Maps::replace_maglev_table`], and all the swaps go in one
    /// BPF_MAP_UPDATE_BATCH (one RCU grace period for the lot; removals of empty tables in
    /// one BPF_MAP_DELETE_BATCH). Everything is validated before anything changes.
    pub fn replace_maglev_tables(&mut self, tables: &[(u32, &[u32])]) -> Result<()> {
        for (svc_id, table) in tables {
            validate_table(*svc_id, table)?;
        }
        let mut inners = Vec::new();
        let (mut keys, mut fds, mut cleared) = (Vec::new(), Vec::new(), Vec::new());
        for &(svc_id, table) in tables {
            if table.is_empty() {
                cleared.push(svc_id);
                continue;
            }
            let inner = new_table(table)?;
            keys.push(svc_id);
            fds.push(inner.map().fd().as_fd().as_raw_fd() as u32);
            inners.push(inner);
        }
        let outer = self.maglev_fd.as_fd();
        sys::update_batch_u32(outer, &keys, &fds)
            .map_err(|e| Error::sys("BPF_MAP_UPDATE_BATCH", "vx_maglev", e))?;
        // The kernel holds the tables now; our fds go with `inners`.
        drop(inners);
        let present: Vec<u32> = cleared
            .into_iter()
            .filter(|id| self.maglev.get(id, 0).is_ok())
            .collect();
        sys::delete_batch_u32(outer, &present)
            .map_err(|e| Error::sys("BPF_MAP_DELETE_BATCH", "vx_maglev", e))
    }

    /// Removes service `svc_id`'s Maglev table (no backend: its packets are dropped and
    /// counted, its connects refused). Not an error when there is none.
    pub fn clear_maglev_table(&mut self, svc_id: u32) -> Result<()> {
        ignore_missing(self.maglev.remove(&svc_id))
            .map(drop)
            .map_err(|e| Error::map("vx_maglev", "remove", e))
    }

    /// Service `svc_id`'s Maglev table as the kernel holds it (slot i → backend id), or None.
    /// Reads the whole table in one BPF_MAP_LOOKUP_BATCH.
    pub fn maglev_table(&self, svc_id: u32) -> Result<Option<Vec<u32>>> {
        let Some(inner) = self.inner_table(svc_id)? else {
            return Ok(None);
        };
        let m = table_slot(&inner, MAGLEV_SIZE_SLOT)?;
        let mut all = sys::array_lookup_all_u32(inner.map().fd().as_fd(), m + 1)
            .map_err(|e| Error::sys("BPF_MAP_LOOKUP_BATCH", "vx_maglev inner table", e))?;
        all.remove(0);
        Ok(Some(all))
    }

    /// Ids of the services that have a Maglev table.
    pub fn maglev_ids(&self) -> Result<Vec<u32>> {
        self.maglev
            .keys()
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::map("vx_maglev", "keys", e))
    }

    /// Every frontend and its service.
    pub fn services(&self) -> Result<Vec<(SvcKey, Svc)>> {
        self.svc
            .iter()
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::map("vx_svc", "iterate", e))
    }

    /// Every backend by id.
    pub fn backends(&self) -> Result<Vec<(u32, Backend)>> {
        self.backend
            .iter()
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::map("vx_backend", "iterate", e))
    }

    /// Adds or replaces VIP `addr`: the packet path answers ARP requests for it with
    /// `vip.mac` (see `bpf/include/arp.h`).
    ///
    /// Errors: [`Error::Invalid`] for address 0.0.0.0 or non-zero flags; [`Error::Map`] when
    /// the map is full.
    pub fn upsert_vip(&mut self, addr: Ipv4Addr, vip: Vip) -> Result<()> {
        if addr.is_unspecified() {
            return Err(Error::invalid("vip", "0.0.0.0 is not an address"));
        }
        if vip.flags != 0 {
            return Err(Error::invalid("vip flags", "must be 0"));
        }
        self.vip
            .insert(u32::from_ne_bytes(addr.octets()), vip, 0)
            .map_err(|e| Error::map("vx_vip", "insert", e))
    }

    /// Removes VIP `addr` (its ARP requests go unanswered again). Returns whether it was there.
    pub fn delete_vip(&mut self, addr: Ipv4Addr) -> Result<bool> {
        ignore_missing(self.vip.remove(&u32::from_ne_bytes(addr.octets())))
            .map_err(|e| Error::map("vx_vip", "remove", e))
    }

    /// Every VIP the packet path answers ARP for.
    pub fn vips(&self) -> Result<Vec<(Ipv4Addr, Vip)>> {
        self.vip
            .iter()
            .map(|r| r.map(|(k, v)| (Ipv4Addr::from(k.to_ne_bytes()), v)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::map("vx_vip", "iterate", e))
    }

    /// Service `svc_id`'s inner table, or None when it has none.
    fn inner_table(&self, svc_id: u32) -> Result<Option<Array<MapData, u32>>> {
        match self.maglev.get(&svc_id, 0) {
            Ok(a) => Ok(Some(a)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(Error::map("vx_maglev", "get", e)),
        }
    }

    /// Kernel memory the Maglev tables take, in bytes: the sum of `memlock` that the kernel
    /// reports (/proc/self/fdinfo) for every inner table. Opens each table once.
    pub fn maglev_memory_bytes(&self) -> Result<u64> {
        let ids: Vec<u32> = self.maglev.keys().filter_map(|k| k.ok()).collect();
        let mut total = 0;
        for id in ids {
            let inner = match self.maglev.get(&id, 0) {
                Ok(a) => a,
                Err(MapError::KeyNotFound) => continue,
                Err(e) => return Err(Error::map("vx_maglev", "get", e)),
            };
            total += memlock(inner.map())?;
        }
        Ok(total)
    }

    /// Service `svc_id`'s Maglev table as the kernel holds it, without reading its slots:
    /// its size M (slot 0) and the kernel memory it takes (the `memlock` bytes of the inner
    /// map, /proc/self/fdinfo). None when the service has no table (no backend).
    pub fn maglev_table_info(&self, svc_id: u32) -> Result<Option<MaglevTableInfo>> {
        let Some(inner) = self.inner_table(svc_id)? else {
            return Ok(None);
        };
        Ok(Some(MaglevTableInfo {
            slots: table_slot(&inner, MAGLEV_SIZE_SLOT)?,
            memory_bytes: memlock(inner.map())?,
        }))
    }

    /// Adds or replaces backend `id`, and makes its (zeroed) counters if missing.
    ///
    /// Errors: [`Error::Invalid`] for id 0, unknown flags or a non-zero pad.
    pub fn upsert_backend(&mut self, id: u32, backend: Backend) -> Result<()> {
        if id == 0 {
            return Err(Error::invalid("backend id", "0 is reserved (no backend)"));
        }
        if backend.flags & !BE_F_DRAINING != 0 {
            return Err(Error::invalid(
                "backend flags",
                format!("unknown bits {:#x}", backend.flags & !BE_F_DRAINING),
            ));
        }
        if backend.pad != 0 {
            return Err(Error::invalid("backend pad", "must be 0"));
        }
        let zero = PerCpuValues::try_from(vec![BeStats::default(); nr_cpus()?])
            .map_err(|e| Error::sys("build per-CPU values", "vx_be_stats", e))?;
        match self.be_stats.insert(id, zero, BPF_NOEXIST) {
            Err(e) if errno(&e) != Some(libc::EEXIST) => {
                return Err(Error::map("vx_be_stats", "insert", e))
            }
            _ => {}
        }
        self.backend
            .insert(id, backend, 0)
            .map_err(|e| Error::map("vx_backend", "insert", e))
    }

    /// Removes backend `id` and its counters. Flows still on it are picked again on their
    /// next packet (the packet path checks the backend exists); [`Maps::purge_backend`]
    /// also forgets them at once. Returns whether it existed.
    pub fn delete_backend(&mut self, id: u32) -> Result<bool> {
        let existed = ignore_missing(self.backend.remove(&id))
            .map_err(|e| Error::map("vx_backend", "remove", e))?;
        ignore_missing(self.be_stats.remove(&id))
            .map_err(|e| Error::map("vx_be_stats", "remove", e))?;
        Ok(existed)
    }

    /// Backend `id`, if present.
    pub fn backend(&self, id: u32) -> Result<Option<Backend>> {
        match self.backend.get(&id, 0) {
            Ok(b) => Ok(Some(b)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(Error::map("vx_backend", "get", e)),
        }
    }

    /// Backend `id`'s counters summed over CPUs (zero when it has none).
    pub fn backend_stats(&self, id: u32) -> Result<BeStats> {
        match self.be_stats.get(&id, 0) {
            Ok(v) => Ok(v.iter().fold(BeStats::default(), |a, s| BeStats {
                packets: a.packets + s.packets,
                bytes: a.bytes + s.bytes,
                conns: a.conns + s.conns,
            })),
            Err(MapError::KeyNotFound) => Ok(BeStats::default()),
            Err(e) => Err(Error::map("vx_be_stats", "get", e)),
        }
    }

    /// Service `svc_id`'s counters summed over CPUs (zero when it has none).
    pub fn service_stats(&self, svc_id: u32) -> Result<SvcStats> {
        match self.svc_stats.get(&svc_id, 0) {
            Ok(v) => Ok(SvcStats {
                no_backend: v.iter().map(|s| s.no_backend).sum(),
            }),
            Err(MapError::KeyNotFound) => Ok(SvcStats::default()),
            Err(e) => Err(Error::map("vx_svc_stats", "get", e)),
        }
    }

    /// Global counter `stat` summed over CPUs.
    pub fn stat(&self, stat: Stat) -> Result<u64> {
        self.stats
            .get(&(stat as u32), 0)
            .map(|v| v.iter().sum())
            .map_err(|e| Error::map("vx_stats", "get", e))
    }

    /// The connection table's fill level, by walking its keys (one syscall per entry: about
    /// a second per million entries).
    pub fn conntrack_fill(&self) -> Result<CtFill> {
        let capacity = self
            .ct
            .map()
            .info()
            .map_err(|e| Error::map("vx_ct", "info", e))?
            .max_entries();
        let (mut entries, mut flows) = (0, 0);
        for k in self.ct.keys() {
            // An entry evicted between two steps of the walk ends it early: that is a
            // count, not an error.
            let Ok(k) = k else { break };
            entries += 1;
            if k.dir == CT_DIR_FWD {
                flows += 1;
            }
        }
        Ok(CtFill {
            entries,
            flows,
            capacity,
        })
    }

    /// The connection-table entry of `key`, if any.
    pub fn conntrack(&self, key: &CtKey) -> Result<Option<CtEntry>> {
        match self.ct.get(key, 0) {
            Ok(e) => Ok(Some(e)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(Error::map("vx_ct", "get", e)),
        }
    }

    /// Entries in `vx_sock_rev` (one per live socket that used a frontend; sock_release
    /// removes them). Walks the keys.
    pub fn sock_rev_entries(&self) -> usize {
        self.sock_rev.keys().take_while(|k| k.is_ok()).count()
    }

    /// Forgets every flow, affinity pick and socket entry on backend `id` (the way IPVS
    /// should have dropped stale UDP entries, moby/moby#36878): their next packet or
    /// datagram is balanced anew. Walks the tables.
    pub fn purge_backend(&mut self, id: u32) -> Result<Purged> {
        Ok(Purged {
            conntrack: remove_where(&mut self.ct, "vx_ct", |v| v.backend_id == id)?,
            affinity: remove_where(&mut self.affinity, "vx_affinity", |v| v.backend_id == id)?,
            sock_rev: remove_where(&mut self.sock_rev, "vx_sock_rev", |v| v.backend_id == id)?,
        })
    }

    /// Kernel id of map `name` (one of [`MAP_NAMES`] this handle holds), e.g. to show that a
    /// reload reused it.
    pub fn map_id(&self, name: &str) -> Result<u32> {
        let data: &MapData = match name {
            "vx_svc" => self.svc.map(),
            "vx_backend" => self.backend.map(),
            "vx_ct" => self.ct.map(),
            "vx_affinity" => self.affinity.map(),
            "vx_sock_rev" => self.sock_rev.map(),
            _ => {
                return Err(Error::invalid(
                    "map name",
                    format!("{name:?} has no id lookup"),
                ))
            }
        };
        data.info()
            .map(|i| i.id())
            .map_err(|e| Error::map("vx_*", "info", e))
    }
}

fn validate_table(svc_id: u32, table: &[u32]) -> Result<()> {
    if svc_id == 0 {
        return Err(Error::invalid("service id", "0 is reserved (no service)"));
    }
    if table.len() > MAGLEV_MAX_SLOTS {
        return Err(Error::invalid(
            "maglev table",
            format!(
                "service {svc_id}: {} slots, at most {MAGLEV_MAX_SLOTS}",
                table.len()
            ),
        ));
    }
    if let Some(slot) = table.iter().position(|&id| id == 0) {
        return Err(Error::invalid(
            "maglev table",
            format!("service {svc_id}: slot {slot} holds backend id 0 (reserved: no backend)"),
        ));
    }
    Ok(())
}

/// Slot `i` of an inner table (0: the size M).
fn table_slot(inner: &Array<MapData, u32>, i: u32) -> Result<u32> {
    inner
        .get(&i, 0)
        .map_err(|e| Error::map("vx_maglev", "read inner table", e))
}

/// A new inner table: slot 0 = M, slots 1..=M = `table`, written in one batch.
fn new_table(table: &[u32]) -> Result<Array<MapData, u32>> {
    let slots = table.len() as u32 + 1;
    let inner = Array::<MapData, u32>::create(slots, BPF_F_INNER_MAP)
        .map_err(|e| Error::map("vx_maglev", "create inner table", e))?;
    let mut values = Vec::with_capacity(slots as usize);
    values.push(table.len() as u32);
    values.extend_from_slice(table);
    sys::array_update_all_u32(inner.map().fd().as_fd(), &values)
        .map_err(|e| Error::sys("BPF_MAP_UPDATE_BATCH", "vx_maglev inner table", e))?;
    Ok(inner)
}

/// The `memlock:` bytes the kernel reports for an open map.
fn memlock(map: &MapData) -> Result<u64> {
    let path = format!("/proc/self/fdinfo/{}", map.fd().as_fd().as_raw_fd());
    let text = std::fs::read_to_string(&path).map_err(|e| Error::sys("read", &path, e))?;
    text.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            Error::sys(
                "parse memlock",
                &path,
                std::io::ErrorKind::InvalidData.into(),
            )
        })
}

/// Removes every entry of `map` whose value matches; returns how many it removed.
fn remove_where<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    name: &'static str,
    matches: impl Fn(&V) -> bool,
) -> Result<usize> {
    let keys: Vec<K> = map
        .iter()
        .filter_map(|r| r.ok())
        .filter(|(_, v)| matches(v))
        .map(|(k, _)| k)
        .collect();
    let mut n = 0;
    for k in &keys {
        if ignore_missing(map.remove(k)).map_err(|e| Error::map(name, "remove", e))? {
            n += 1;
        }
    }
    Ok(n)
}

/// Ok(true) when removed, Ok(false) when it was not there.
pub(crate) fn ignore_missing(r: Result<(), MapError>) -> Result<bool, MapError> {
    match r {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}
