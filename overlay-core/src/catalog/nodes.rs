//! Adding, listing and removing nodes (hosts).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::keys;
use crate::model::{Node, WireguardIdentity};
use crate::reserved;
use crate::store::{Compare, Op, Txn};
use crate::validate::{self, ValidationError};

use super::{encode, sample, Catalog, CatalogError};

impl Catalog {
    /// Adds a node. Its underlay address must be unused by other nodes and lie outside every
    /// network's subnet and the WireGuard tunnel range (field `underlay`). Nothing is written
    /// on error.
    pub fn add_node(&self, name: &str, underlay: Ipv4Addr) -> Result<Node, CatalogError> {
        validate::node_name(name)?;
        validate::underlay(underlay)?;
        let node = Node {
            name: name.to_string(),
            underlay,
            wireguard: None,
        };
        self.commit_with_retry(|| {
            // The guard is read before the nodes and networks it guards and written with the
            // node: a node (same underlay) or network (a subnet over the underlay) added
            // meanwhile makes this attempt start again.
            let guard_cmp = self.read_guard(keys::NETWORKS_GUARD)?;
            let nodes = self.nodes()?;
            if nodes.iter().any(|n| n.name == name) {
                return Err(CatalogError::Exists {
                    kind: "node",
                    name: name.to_string(),
                });
            }
            if let Some(other) = nodes.iter().find(|n| n.underlay == underlay) {
                return Err(ValidationError::new(
                    "underlay",
                    underlay,
                    format!("is already node {}'s address", other.name),
                )
                .into());
            }
            reserved::check_underlay(underlay, &self.networks()?)?;
            let txn = Txn {
                compares: vec![guard_cmp, Compare::Absent(keys::node(name))],
                ops: vec![
                    Op::put(keys::node(name), encode(&node)),
                    Op::put(keys::NETWORKS_GUARD, name.as_bytes()),
                ],
            };
            Ok((txn, node.clone()))
        })
    }

    pub fn nodes(&self) -> Result<Vec<Node>, CatalogError> {
        Ok(self
            .list_decoded::<Node>(keys::NODES)?
            .into_iter()
            .map(|(_, n)| n)
            .collect())
    }

    pub fn node(&self, name: &str) -> Result<Node, CatalogError> {
        validate::node_name(name)?;
        self.get_decoded(&keys::node(name))?
            .map(|(_, n)| n)
            .ok_or_else(|| CatalogError::NotFound {
                kind: "node",
                name: name.to_string(),
            })
    }

    /// Removes a node. With endpoints still on it, refuses unless `force`, which removes them
    /// and frees their addresses. Agents on the other hosts then drop every entry toward it.
    pub fn remove_node(&self, name: &str, force: bool) -> Result<Node, CatalogError> {
        validate::node_name(name)?;
        self.commit_with_retry(|| {
            let (kv, node) = self.node_record(name)?;
            let on_node: Vec<_> = self
                .endpoints(None)?
                .into_iter()
                .filter(|e| e.node == name)
                .collect();
            if !on_node.is_empty() && !force {
                return Err(CatalogError::InUse {
                    kind: "node",
                    name: name.to_string(),
                    count: on_node.len(),
                    sample: sample(on_node.iter().map(|e| e.id.as_str())),
                });
            }
            let mut ops = vec![Op::Delete(kv.key.clone()), Op::Delete(keys::host(name))];
            for e in &on_node {
                ops.push(Op::Delete(keys::endpoint(&e.network, &e.id)));
                ops.push(Op::Delete(keys::ipam(&e.network, e.ip)));
                ops.push(Op::Delete(keys::mac(&e.network, e.mac)));
            }
            let txn = Txn {
                compares: vec![Compare::ModRevision(kv.key.clone(), kv.mod_revision)],
                ops,
            };
            Ok((txn, node))
        })
    }
}

impl Catalog {
    /// Publishes (or replaces) a node's WireGuard public key and port. The node keeps its tunnel
    /// address, or gets the lowest free one of [`crate::wireguard::tunnel_net`]. A pending key
    /// rotation request is cleared when the key changes.
    pub fn set_wireguard(
        &self,
        name: &str,
        public_key: &str,
        port: u16,
        implementation: &str,
    ) -> Result<Node, CatalogError> {
        validate::node_name(name)?;
        validate::wireguard_key(public_key)?;
        validate::wireguard_port(port)?;
        self.commit_with_retry(|| {
            // The guard first: a tunnel address or key published after this read makes the
            // transaction fail and this attempt start again from fresh data.
            let guard_cmp = self.read_guard(keys::WIREGUARD_GUARD)?;
            let (kv, mut node) = self.node_record(name)?;
            let others = self.nodes()?;
            if let Some(other) = others.iter().find(|n| {
                n.name != name
                    && n.wireguard
                        .as_ref()
                        .is_some_and(|w| w.public_key == public_key)
            }) {
                return Err(ValidationError::new(
                    "public-key",
                    public_key,
                    format!("is already node {}'s key", other.name),
                )
                .into());
            }
            let old = node.wireguard.clone();
            let tunnel_ip = match old.as_ref().and_then(|w| w.tunnel_ip) {
                Some(ip) => ip,
                None => {
                    let used: BTreeSet<Ipv4Addr> = others
                        .iter()
                        .filter_map(|n| n.wireguard.as_ref()?.tunnel_ip)
                        .collect();
                    crate::wireguard::tunnel_net()
                        .hosts()
                        .find(|ip| !used.contains(ip))
                        .ok_or_else(|| {
                            ValidationError::new(
                                "tunnel-ip",
                                "auto",
                                "every tunnel address is taken",
                            )
                        })?
                }
            };
            let key_changed = old.as_ref().is_none_or(|w| w.public_key != public_key);
            node.wireguard = Some(WireguardIdentity {
                public_key: public_key.to_string(),
                port,
                tunnel_ip: Some(tunnel_ip),
                implementation: Some(implementation.to_string()),
                rotate_requested: !key_changed && old.is_some_and(|w| w.rotate_requested),
            });
            let txn = Txn {
                compares: vec![
                    Compare::ModRevision(kv.key.clone(), kv.mod_revision),
                    guard_cmp,
                ],
                ops: vec![
                    Op::put(kv.key.clone(), encode(&node)),
                    Op::put(keys::WIREGUARD_GUARD, node.name.as_bytes()),
                ],
            };
            Ok((txn, node.clone()))
        })
    }

    /// Asks the node's agent to replace its WireGuard key pair (`vxmesh node rotate-key`).
    pub fn request_key_rotation(&self, name: &str) -> Result<Node, CatalogError> {
        validate::node_name(name)?;
        self.commit_with_retry(|| {
            let (kv, mut node) = self.node_record(name)?;
            let Some(wg) = node.wireguard.as_mut() else {
                return Err(ValidationError::new(
                    "node",
                    name,
                    "has no WireGuard key yet (its agent publishes one when it starts)",
                )
                .into());
            };
            wg.rotate_requested = true;
            let txn = Txn {
                compares: vec![Compare::ModRevision(kv.key.clone(), kv.mod_revision)],
                ops: vec![Op::put(kv.key.clone(), encode(&node))],
            };
            Ok((txn, node.clone()))
        })
    }
}

impl Catalog {
    /// A node's record with its revisions, or `NotFound`.
    pub(super) fn node_record(
        &self,
        name: &str,
    ) -> Result<(crate::store::KeyValue, Node), CatalogError> {
        self.get_decoded::<Node>(&keys::node(name))?
            .ok_or_else(|| CatalogError::NotFound {
                kind: "node",
                name: name.to_string(),
            })
    }
}
