//! Static entries: the VXLAN device's FDB, the bridge's static FDB and permanent neighbours.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use crate::dataplane::{FdbEntry, Link, NeighEntry};
use crate::mac::MacAddr;

use super::apply::{change, Change, Context, ReconcileError, Reconciler};

impl Reconciler {
    /// Static entries in the bridge's FDB: every remote endpoint's MAC lives behind the VXLAN port.
    pub(super) async fn bridge_fdb(
        &self,
        vxlan: &Link,
        remote: &BTreeMap<Ipv4Addr, MacAddr>,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let dev = &vxlan.name;
        let want: BTreeSet<MacAddr> = remote.values().copied().collect();
        let have: BTreeSet<MacAddr> = self
            .dp
            .bridge_fdb_static(vxlan.index)
            .await
            .ctx(|| format!("reading the bridge FDB on {dev}"))?
            .into_iter()
            .collect();
        for mac in have.difference(&want) {
            self.dp
                .bridge_fdb_delete_static(vxlan.index, *mac)
                .await
                .ctx(|| format!("deleting bridge FDB entry {mac} on {dev}"))?;
            changes.push(change(
                "delete bridge fdb",
                format!("{mac} dev {dev} master static"),
            ));
        }
        for mac in want.difference(&have) {
            self.dp
                .bridge_fdb_add_static(vxlan.index, *mac)
                .await
                .ctx(|| format!("adding bridge FDB entry {mac} on {dev}"))?;
            changes.push(change(
                "add bridge fdb",
                format!("{mac} dev {dev} master static"),
            ));
        }
        Ok(())
    }

    pub(super) async fn fdb(
        &self,
        vxlan: &Link,
        want: &BTreeSet<FdbEntry>,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let dev = &vxlan.name;
        let have: BTreeSet<FdbEntry> = self
            .dp
            .fdb_entries(vxlan.index)
            .await
            .ctx(|| format!("reading the FDB of {dev}"))?
            .into_iter()
            .collect();
        for e in have.difference(want) {
            self.dp
                .fdb_delete(vxlan.index, e)
                .await
                .ctx(|| format!("deleting FDB entry {} dst {} on {dev}", e.mac, e.dst))?;
            changes.push(change(
                "delete fdb",
                format!("{} dst {} dev {dev}", e.mac, e.dst),
            ));
        }
        for e in want.difference(&have) {
            self.dp
                .fdb_append(vxlan.index, e)
                .await
                .ctx(|| format!("adding FDB entry {} dst {} on {dev}", e.mac, e.dst))?;
            changes.push(change(
                "add fdb",
                format!("{} dst {} dev {dev}", e.mac, e.dst),
            ));
        }
        Ok(())
    }

    /// Permanent ARP entries on the bridge for every remote endpoint: the host uses them, and
    /// the bridge answers the containers' ARP requests from them.
    pub(super) async fn neighbours(
        &self,
        link: &Link,
        want: &BTreeMap<Ipv4Addr, MacAddr>,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let dev = &link.name;
        let have = self
            .dp
            .neighbours(link.index)
            .await
            .ctx(|| format!("reading neighbours of {dev}"))?;
        let mut correct = BTreeSet::new();
        for n in &have {
            let IpAddr::V4(ip) = n.ip else { continue };
            match want.get(&ip) {
                Some(mac) if *mac == n.mac && n.permanent => {
                    correct.insert(ip);
                }
                Some(_) => {} // replaced below
                None if n.permanent => {
                    self.dp
                        .neigh_delete(link.index, n.ip)
                        .await
                        .ctx(|| format!("deleting neighbour {ip} on {dev}"))?;
                    changes.push(change("delete neighbour", format!("{ip} dev {dev}")));
                }
                None => {}
            }
        }
        for (ip, mac) in want.iter().filter(|(ip, _)| !correct.contains(*ip)) {
            let entry = NeighEntry {
                ip: IpAddr::V4(*ip),
                mac: *mac,
                permanent: true,
            };
            self.dp
                .neigh_replace(link.index, &entry)
                .await
                .ctx(|| format!("setting neighbour {ip} on {dev}"))?;
            changes.push(change(
                "set neighbour",
                format!("{ip} lladdr {mac} dev {dev}"),
            ));
        }
        Ok(())
    }
}
