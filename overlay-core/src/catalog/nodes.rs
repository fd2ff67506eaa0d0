//! Adding, listing and removing nodes (hosts).

use std::net::Ipv4Addr;

use crate::keys;
use crate::model::Node;
use crate::store::{Compare, Op, Txn};
use crate::validate::{self, ValidationError};

use super::{encode, sample, Catalog, CatalogError};

impl Catalog {
    pub fn add_node(&self, name: &str, underlay: Ipv4Addr) -> Result<Node, CatalogError> {
        validate::node_name(name)?;
        validate::underlay(underlay)?;
        let node = Node {
            name: name.to_string(),
            underlay,
            wireguard: None,
        };
        self.commit_with_retry(|| {
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
            let txn = Txn {
                compares: vec![Compare::Absent(keys::node(name))],
                ops: vec![Op::put(keys::node(name), encode(&node))],
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
            let (kv, node) = self
                .get_decoded::<Node>(&keys::node(name))?
                .ok_or_else(|| CatalogError::NotFound {
                    kind: "node",
                    name: name.to_string(),
                })?;
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
            let mut ops = vec![Op::Delete(kv.key.clone())];
            for e in &on_node {
                ops.push(Op::Delete(keys::endpoint(&e.network, &e.id)));
                ops.push(Op::Delete(keys::ipam(&e.network, e.ip)));
            }
            let txn = Txn {
                compares: vec![Compare::ModRevision(kv.key.clone(), kv.mod_revision)],
                ops,
            };
            Ok((txn, node))
        })
    }
}
