//! Isolation between networks, and between the underlay and the overlay, by ingress filters
//! rather than by forwarding being off.
//!
//! A host forwards for its networks (forwarding on the underlay device and on every overlay
//! bridge), so that traffic a container runtime publishes on a host port (the reference
//! `portmap` plugin's DNAT) is routed into the network from other hosts and from outside, and
//! its replies are routed back out. Networks stay isolated by one filter per device, not per
//! container or port: on each overlay bridge's ingress, IPv4 to every other network's subnet
//! is dropped (a container cannot be routed into another network through its host), and on
//! the underlay device's ingress, IPv4 to any network's subnet is dropped (no machine on the
//! underlay can route into a network through a host; a published port is addressed to the
//! host, and tc ingress runs before netfilter's DNAT). A device is forwarding only while its
//! filter is in place.

use ipnet::Ipv4Net;

use crate::dataplane::Link;
use crate::model::ISOLATION_FILTER_PREF;

use super::apply::{change, Change, Context, ReconcileError, Reconciler};
use super::sysctl::Family;

impl Reconciler {
    /// Makes `link`'s ingress hold exactly one isolation filter dropping IPv4 to `blocked`
    /// (merged into as few prefixes as cover the same addresses), then turns IPv4 forwarding on
    /// for it. When the filter cannot be put in place, a bridge's forwarding is turned off
    /// (never left open) and the error is returned; the underlay device's is left as it was.
    pub(super) async fn isolation(
        &self,
        link: &Link,
        blocked: &[Ipv4Net],
        is_bridge: bool,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let prefixes = Ipv4Net::aggregate(&blocked.to_vec());
        match self.isolation_filter(link, &prefixes, changes).await {
            Ok(()) => self.sysctl(Family::V4, &link.name, "forwarding", "1", changes),
            Err(e) => {
                if is_bridge {
                    self.sysctl(Family::V4, &link.name, "forwarding", "0", changes)?;
                }
                Err(e)
            }
        }
    }

    async fn isolation_filter(
        &self,
        link: &Link,
        prefixes: &[Ipv4Net],
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let name = &link.name;
        let ctx = |op: &str| format!("{op} on {name}");
        let pref = ISOLATION_FILTER_PREF;
        if self.ingress_qdisc(link).await?.is_none() {
            // clsact rather than ingress: the same ingress hook, and the encrypted-port filters
            // (which add an `ingress` qdisc only where there is none) leave it in place.
            self.dp
                .add_clsact_qdisc(link.index)
                .await
                .ctx(|| ctx("adding the clsact qdisc"))?;
            changes.push(change("add clsact qdisc", name));
        }
        let filters = self
            .dp
            .ingress_filters(link.index)
            .await
            .ctx(|| ctx("reading the ingress filters"))?;
        let ours: Vec<_> = filters.iter().filter(|f| f.pref == pref).collect();
        if matches!(ours.as_slice(), [f] if f.drops_exactly(prefixes)) {
            return Ok(());
        }
        if !ours.is_empty() {
            self.dp
                .delete_ingress_filters(link.index, pref)
                .await
                .ctx(|| ctx("replacing the isolation filter"))?;
        }
        self.dp
            .add_prefix_drop_filter(link.index, pref, prefixes)
            .await
            .ctx(|| ctx("adding the isolation filter"))?;
        let list: Vec<String> = prefixes.iter().map(|p| p.to_string()).collect();
        changes.push(change(
            if ours.is_empty() {
                "add ingress isolation filter"
            } else {
                "replace ingress isolation filter"
            },
            format!("{name} pref {pref}: drop ip dst [{}]", list.join(" ")),
        ));
        Ok(())
    }

    /// Removes the isolation filter from `link` (the underlay device of a host that has no
    /// network any more), and its `clsact` (or `ingress`) qdisc when no other filter is on it.
    /// Forwarding is left as it is.
    pub(super) async fn remove_isolation(
        &self,
        link: &Link,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let name = &link.name;
        let ctx = |op: &str| format!("{op} on {name}");
        let pref = ISOLATION_FILTER_PREF;
        let Some(qdisc) = self.ingress_qdisc(link).await? else {
            return Ok(());
        };
        let filters = self
            .dp
            .ingress_filters(link.index)
            .await
            .ctx(|| ctx("reading the ingress filters"))?;
        if !filters.iter().any(|f| f.pref == pref) {
            return Ok(());
        }
        self.dp
            .delete_ingress_filters(link.index, pref)
            .await
            .ctx(|| ctx("removing the isolation filter"))?;
        changes.push(change(
            "delete ingress isolation filter",
            format!("{name} pref {pref}"),
        ));
        let others_on_ingress = filters.iter().any(|f| f.pref != pref);
        let on_egress = match qdisc.as_str() {
            "clsact" => !self
                .dp
                .egress_filters(link.index)
                .await
                .ctx(|| ctx("reading the egress filters"))?
                .is_empty(),
            _ => false,
        };
        if (qdisc == "ingress" || qdisc == "clsact") && !others_on_ingress && !on_egress {
            self.dp
                .delete_ingress_qdisc(link.index)
                .await
                .ctx(|| ctx("removing the qdisc"))?;
            changes.push(change("delete qdisc", format!("{name} {qdisc}")));
        }
        Ok(())
    }

    /// The kind of `link`'s ingress-hook qdisc (`ingress` or `clsact`), if it has one.
    async fn ingress_qdisc(&self, link: &Link) -> Result<Option<String>, ReconcileError> {
        let mut qdiscs = self
            .dp
            .ingress_qdiscs()
            .await
            .ctx(|| format!("listing ingress qdiscs on {}", link.name))?;
        Ok(qdiscs.remove(&link.index))
    }
}
