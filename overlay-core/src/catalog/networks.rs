//! Creating, listing and removing networks.

use std::collections::BTreeSet;

use crate::keys;
use crate::model::Network;
use crate::reserved::Reserved;
use crate::store::{Compare, Op, Txn};
use crate::validate::{self, ValidationError};

use super::{encode, sample, Catalog, CatalogError};

/// What a user asks for when creating a network.
#[derive(Debug, Clone, Default)]
pub struct NetworkSpec {
    /// 1-12 characters: letters, digits, `-` (device names are built from it).
    pub name: String,
    /// CIDR text, validated here.
    pub subnet: String,
    /// `None`: the lowest free VNI from 4096 up.
    pub vni: Option<u32>,
    /// The network's MTU in bytes; `None`: the underlay's minus what vxmesh adds (VXLAN 50,
    /// and WireGuard 60 more when encrypted).
    pub mtu: Option<u32>,
    /// Carry the network's VXLAN frames between hosts inside WireGuard only.
    pub encrypted: bool,
}

impl Catalog {
    /// Validates `spec` against itself, every existing network and the addresses the hosts use
    /// for themselves (`Reserved`: underlay addresses, published host prefixes, the tunnel
    /// range), and stores the network. On any error nothing is written.
    pub fn create_network(&self, spec: &NetworkSpec) -> Result<Network, CatalogError> {
        validate::network_name(&spec.name)?;
        let subnet = validate::subnet(&spec.subnet)?;
        if let Some(v) = spec.vni {
            validate::vni(v)?;
        }
        if let Some(m) = spec.mtu {
            validate::mtu(m)?;
        }
        self.commit_with_retry(|| {
            let guard_cmp = self.read_guard(keys::NETWORKS_GUARD)?;
            let existing = self.networks()?;
            if existing.iter().any(|n| n.name == spec.name) {
                return Err(CatalogError::Exists {
                    kind: "network",
                    name: spec.name.clone(),
                });
            }
            if let Some(other) = existing.iter().find(|n| {
                n.subnet.contains(&subnet.network()) || subnet.contains(&n.subnet.network())
            }) {
                return Err(ValidationError::new(
                    "subnet",
                    subnet,
                    format!("overlaps network {} ({})", other.name, other.subnet),
                )
                .into());
            }
            // Nor may it take addresses the hosts use for themselves (node add and this share
            // the guard, so a node added meanwhile makes this attempt start again).
            let mut reserved = Reserved::new().with_underlays(&self.nodes()?);
            for (node, report) in self.host_reports()? {
                reserved = reserved.with_host(&node, &report);
            }
            reserved.check_subnet(subnet)?;
            let used: BTreeSet<u32> = existing.iter().map(|n| n.vni).collect();
            let vni = match spec.vni {
                Some(v) => {
                    if let Some(other) = existing.iter().find(|n| n.vni == v) {
                        return Err(ValidationError::new(
                            "vni",
                            v,
                            format!("is taken by network {}", other.name),
                        )
                        .into());
                    }
                    v
                }
                None => (validate::VNI_MIN..=validate::VNI_MAX)
                    .find(|v| !used.contains(v))
                    .ok_or_else(|| ValidationError::new("vni", "auto", "every VNI is taken"))?,
            };
            let network = Network {
                name: spec.name.clone(),
                gateway: subnet.hosts().next().expect("a /29 or wider has hosts"),
                subnet,
                vni,
                mtu: spec.mtu,
                encrypted: spec.encrypted,
            };
            let txn = Txn {
                compares: vec![
                    guard_cmp,
                    Compare::Absent(keys::network(&network.name)),
                    Compare::Absent(keys::vni(vni)),
                ],
                ops: vec![
                    Op::put(keys::network(&network.name), encode(&network)),
                    Op::put(keys::vni(vni), network.name.as_bytes()),
                    Op::put(keys::NETWORKS_GUARD, network.name.as_bytes()),
                ],
            };
            Ok((txn, network))
        })
    }

    pub fn networks(&self) -> Result<Vec<Network>, CatalogError> {
        Ok(self
            .list_decoded::<Network>(keys::NETWORKS)?
            .into_iter()
            .map(|(_, n)| n)
            .collect())
    }

    pub fn network(&self, name: &str) -> Result<Network, CatalogError> {
        validate::network_name(name)?;
        self.get_decoded(&keys::network(name))?
            .map(|(_, n)| n)
            .ok_or_else(|| CatalogError::NotFound {
                kind: "network",
                name: name.to_string(),
            })
    }

    /// Removes a network. With endpoints still on it, refuses unless `force`, which removes
    /// them (and their addresses) too. Agents then remove the network from every host.
    pub fn remove_network(&self, name: &str, force: bool) -> Result<Network, CatalogError> {
        validate::network_name(name)?;
        self.commit_with_retry(|| {
            let (kv, network) = self
                .get_decoded::<Network>(&keys::network(name))?
                .ok_or_else(|| CatalogError::NotFound {
                    kind: "network",
                    name: name.to_string(),
                })?;
            let endpoints = self.endpoints(Some(name))?;
            if !endpoints.is_empty() && !force {
                return Err(CatalogError::InUse {
                    kind: "network",
                    name: name.to_string(),
                    count: endpoints.len(),
                    sample: sample(endpoints.iter().map(|e| e.id.as_str())),
                });
            }
            let txn = Txn {
                compares: vec![Compare::ModRevision(kv.key.clone(), kv.mod_revision)],
                ops: vec![
                    Op::Delete(kv.key.clone()),
                    Op::Delete(keys::vni(network.vni)),
                    Op::DeletePrefix(keys::endpoints_of(name)),
                    Op::DeletePrefix(keys::ipam_of(name)),
                    Op::DeletePrefix(keys::macs_of(name)),
                    Op::put(keys::NETWORKS_GUARD, name.as_bytes()),
                ],
            };
            Ok((txn, network))
        })
    }
}
