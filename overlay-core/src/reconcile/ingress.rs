//! The ingress filters that keep plain VXLAN out of encrypted networks.

use std::collections::BTreeSet;

use crate::model::{ENCRYPTED_VXLAN_PORT, INGRESS_FILTER_PREF};

use super::apply::{change, Change, Context, ReconcileError, Reconciler};

impl Reconciler {
    /// Encrypted networks' VXLAN port is open only to what comes out of the WireGuard
    /// interface: on every device in `guarded` (the underlay device and every overlay bridge,
    /// through which containers reach the host), an ingress filter drops IPv4 UDP to
    /// [`ENCRYPTED_VXLAN_PORT`]; on every other device, such a filter of ours is removed (and
    /// the `ingress` qdisc with it when nothing else is on it). `only`: look at this device only.
    ///
    /// Called with every device to guard before the networks are built, and with none after
    /// them when the host has no encrypted network.
    pub(super) async fn ingress_filters(
        &self,
        guarded: &BTreeSet<String>,
        only: Option<u32>,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let links = self.dp.links().await.ctx(|| "listing links".to_string())?;
        let qdiscs = self
            .dp
            .ingress_qdiscs()
            .await
            .ctx(|| "listing ingress qdiscs".to_string())?;
        let port = ENCRYPTED_VXLAN_PORT;
        let pref = INGRESS_FILTER_PREF;
        let what = format!("pref {pref} protocol ip bpf: drop udp dport {port}");
        for l in links.iter().filter(|l| only.is_none_or(|i| i == l.index)) {
            let name = &l.name;
            let ctx = |op: &str| format!("{op} on {name}");
            let want = guarded.contains(name);
            let Some(qdisc) = qdiscs.get(&l.index) else {
                if want {
                    self.dp
                        .add_ingress_qdisc(l.index)
                        .await
                        .ctx(|| ctx("adding the ingress qdisc"))?;
                    changes.push(change("add ingress qdisc", name));
                    self.dp
                        .add_udp_drop_filter(l.index, pref, port)
                        .await
                        .ctx(|| ctx("adding the ingress filter"))?;
                    changes.push(change("add ingress filter", format!("{name} {what}")));
                }
                continue;
            };
            let filters = self
                .dp
                .ingress_filters(l.index)
                .await
                .ctx(|| ctx("reading the ingress filters"))?;
            let ours: Vec<_> = filters.iter().filter(|f| f.pref == pref).collect();
            if want {
                let correct = matches!(ours.as_slice(), [f] if f.drops_udp_port == Some(port) && f.protocol == 0x0800);
                if correct {
                    continue;
                }
                if !ours.is_empty() {
                    self.dp
                        .delete_ingress_filters(l.index, pref)
                        .await
                        .ctx(|| ctx("replacing the ingress filter"))?;
                    changes.push(change(
                        "delete ingress filter (changed)",
                        format!("{name} pref {pref}"),
                    ));
                }
                self.dp
                    .add_udp_drop_filter(l.index, pref, port)
                    .await
                    .ctx(|| ctx("adding the ingress filter"))?;
                changes.push(change("add ingress filter", format!("{name} {what}")));
            } else if !ours.is_empty() && ours.iter().all(|f| f.drops_udp_port.is_some()) {
                self.dp
                    .delete_ingress_filters(l.index, pref)
                    .await
                    .ctx(|| ctx("removing the ingress filter"))?;
                changes.push(change(
                    "delete ingress filter",
                    format!("{name} pref {pref}"),
                ));
                if qdisc == "ingress" && filters.iter().all(|f| f.pref == pref) {
                    self.dp
                        .delete_ingress_qdisc(l.index)
                        .await
                        .ctx(|| ctx("removing the ingress qdisc"))?;
                    changes.push(change("delete ingress qdisc", name));
                }
            }
        }
        Ok(())
    }
}
