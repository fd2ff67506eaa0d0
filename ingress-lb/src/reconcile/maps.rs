//! Applies a [`DesiredLb`] to a node's datapath maps: reads what the maps hold and changes
//! only the differences, in the order that keeps every packet's lookups consistent
//! (`vxmesh_ebpf::maps`): frontends that go are removed first; then backends are written,
//! then tables (all that changed in one batch, each swapped whole), then frontends and
//! VIPs; backends that go are removed last, and the flows of a backend removed from its
//! service are purged (moby/moby#36878: no stale entry keeps sending to it).

use std::collections::{BTreeMap, BTreeSet};

use overlay_core::reconcile::Change;
use vxmesh_ebpf::{Maps, Vip};

use super::desired::DesiredLb;
use super::{LbError, LbReport};

/// One change for the report, in the overlay reconciler's form.
pub(super) fn change(action: &'static str, object: impl Into<String>) -> Change {
    Change {
        action,
        object: object.into(),
    }
}

/// A map operation on `what` that failed.
pub(super) fn err(what: impl Into<String>, e: vxmesh_ebpf::Error) -> LbError {
    LbError::Map {
        what: what.into(),
        source: e,
    }
}

/// Makes `maps` hold `want`. A second call with the same `want` changes nothing. Every
/// step is tried; failures are reported with what they were about.
pub fn apply_maps(want: &DesiredLb, maps: &mut Maps) -> LbReport {
    let mut r = LbReport::default();
    let (services, backends, vips, tables) = match (
        maps.services(),
        maps.backends(),
        maps.vips(),
        maps.maglev_ids(),
    ) {
        (Ok(s), Ok(b), Ok(v), Ok(t)) => (s, b, v, t),
        (s, b, v, t) => {
            for e in [s.err(), b.err(), v.err(), t.err()].into_iter().flatten() {
                r.errors.push(err("reading the datapath maps", e));
            }
            return r;
        }
    };
    let backends: BTreeMap<u32, _> = backends.into_iter().collect();
    let fronts = || want.frontends.values().chain(want.mesh.published.iter());
    let wanted_keys: BTreeSet<_> = fronts().map(|f| key_tuple(f.key)).collect();

    // 1. Frontends that go (with their tables and counters).
    let mut gone = BTreeSet::new();
    for (key, svc) in &services {
        if !wanted_keys.contains(&key_tuple(*key)) {
            let label = format!(
                "{}:{}/{} (id {})",
                key.ip(),
                key.port(),
                proto_name(key.proto),
                svc.id
            );
            match maps.delete_service(*key) {
                Ok(_) => {
                    gone.insert(svc.id);
                    r.changes.push(change("delete service", label))
                }
                Err(e) => r.errors.push(err(format!("deleting service {label}"), e)),
            }
        }
    }
    // 2. Backends, new or changed.
    for (id, b) in &want.backends {
        if backends.get(id) == Some(&b.backend) {
            continue;
        }
        let action = if backends.contains_key(id) {
            "update backend"
        } else {
            "add backend"
        };
        let label = format!("{} (id {id}{})", b.label, draining(b.backend.flags));
        match maps.upsert_backend(*id, b.backend) {
            Ok(()) => r.changes.push(change(action, label)),
            Err(e) => r.errors.push(err(format!("writing backend {label}"), e)),
        }
    }
    // 3. Tables: those that differ, in one batch; tables of no frontend removed.
    let mut swaps: Vec<(u32, &[u32])> = Vec::new();
    let mut labels = Vec::new();
    for (id, t) in &want.tables {
        let have = match maps.maglev_table(*id) {
            Ok(h) => h,
            Err(e) => {
                r.errors
                    .push(err(format!("reading the table of {}", t.label), e));
                continue;
            }
        };
        let same = match &have {
            Some(h) => *h == t.slots,
            None => t.slots.is_empty(),
        };
        if !same {
            swaps.push((*id, &t.slots));
            labels.push(if t.slots.is_empty() {
                change("clear table", format!("{} (no backend up)", t.label))
            } else {
                change(
                    "swap table",
                    format!(
                        "{} ({} slots, {} backends)",
                        t.label,
                        t.slots.len(),
                        t.backends
                    ),
                )
            });
        }
    }
    for id in tables
        .iter()
        .filter(|id| !want.tables.contains_key(id) && !gone.contains(id))
    {
        swaps.push((*id, &[]));
        labels.push(change("delete table", format!("id {id}")));
    }
    if !swaps.is_empty() {
        match maps.replace_maglev_tables(&swaps) {
            Ok(()) => r.changes.extend(labels),
            Err(e) => r.errors.push(err("swapping Maglev tables", e)),
        }
    }
    // 4. Frontends, new or changed.
    let have: BTreeMap<_, _> = services.iter().map(|(k, s)| (key_tuple(*k), *s)).collect();
    for f in fronts() {
        if have.get(&key_tuple(f.key)) == Some(&f.svc) {
            continue;
        }
        let action = if have.contains_key(&key_tuple(f.key)) {
            "update service"
        } else {
            "add service"
        };
        let label = format!("{} (id {})", f.label, f.svc.id);
        match maps.upsert_service(f.key, f.svc) {
            Ok(()) => r.changes.push(change(action, label)),
            Err(e) => r.errors.push(err(format!("writing service {label}"), e)),
        }
    }
    // 5. VIPs answered on the packet path.
    let have: BTreeMap<_, _> = vips.into_iter().collect();
    for (ip, mac) in &want.vips {
        if have.get(ip).map(|v| v.mac) == Some(*mac) {
            continue;
        }
        match maps.upsert_vip(*ip, Vip::new(*mac)) {
            Ok(()) => r.changes.push(change("add vip", ip.to_string())),
            Err(e) => r.errors.push(err(format!("writing VIP {ip}"), e)),
        }
    }
    for ip in have.keys().filter(|ip| !want.vips.contains_key(ip)) {
        match maps.delete_vip(*ip) {
            Ok(_) => r.changes.push(change("delete vip", ip.to_string())),
            Err(e) => r.errors.push(err(format!("deleting VIP {ip}"), e)),
        }
    }
    // 6. Backends that go; the flows of removed ones are forgotten.
    for (id, b) in backends
        .iter()
        .filter(|(id, _)| !want.backends.contains_key(id))
    {
        let label = format!("{}:{} (id {id})", b.ip(), b.port());
        if let Err(e) = maps.delete_backend(*id) {
            r.errors.push(err(format!("deleting backend {label}"), e));
            continue;
        }
        if want.configured.contains(id) {
            r.changes.push(change("delete backend (down)", label));
            continue;
        }
        match maps.purge_backend(*id) {
            Ok(p) => r.changes.push(change(
                "delete backend",
                format!(
                    "{label}, purged {} conntrack, {} affinity, {} socket entries",
                    p.conntrack, p.affinity, p.sock_rev
                ),
            )),
            Err(e) => r.errors.push(err(format!("purging backend {label}"), e)),
        }
    }
    r
}

fn key_tuple(k: vxmesh_ebpf::SvcKey) -> (u32, u16, u8) {
    (k.addr, k.port, k.proto)
}

fn proto_name(proto: u8) -> String {
    match proto {
        vxmesh_ebpf::IPPROTO_TCP => "tcp".into(),
        vxmesh_ebpf::IPPROTO_UDP => "udp".into(),
        p => p.to_string(),
    }
}

fn draining(flags: u8) -> &'static str {
    if flags & vxmesh_ebpf::BE_F_DRAINING != 0 {
        ", no new flows"
    } else {
        ""
    }
}
