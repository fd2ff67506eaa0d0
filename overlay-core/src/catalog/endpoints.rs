//! Endpoints and their addresses (IPAM).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::ipam;
use crate::keys;
use crate::mac::MacAddr;
use crate::model::{self, CniAttachment, Endpoint, Network, Node};
use crate::store::{Compare, Op, Txn};
use crate::validate::{self, ValidationError};

use super::{encode, Catalog, CatalogError};

/// What a caller asks for when adding an endpoint.
#[derive(Debug, Clone, Default)]
pub struct EndpointSpec {
    pub network: String,
    pub node: String,
    /// `None`: a generated id.
    pub id: Option<String>,
    /// `None`: the lowest free address of the subnet.
    pub ip: Option<Ipv4Addr>,
    /// `None`: derived from the address (`MacAddr::for_endpoint`).
    pub mac: Option<MacAddr>,
    /// Set when vxmesh itself creates the veth (`model::veth_name`); `None` for external endpoints.
    pub attach: bool,
    /// The CNI attachment, when the CNI plugin records the endpoint.
    pub cni: Option<CniAttachment>,
    /// An MTU lower than the network's asked for the veth pair ([`Endpoint::mtu`]).
    pub mtu: Option<u32>,
}

/// Endpoints per transaction in [`Catalog::add_endpoints`]: each takes three keys and three
/// compares (plus one per node and one for the network), and etcd allows 128 operations and
/// 128 compares per transaction by default.
const ENDPOINTS_PER_TXN: usize = 30;

impl Catalog {
    /// Allocates an address (or takes the one asked for) and records the endpoint, in one
    /// compare-and-swap transaction: an address is never handed out twice, even by several
    /// processes or hosts at once. On any error nothing is written.
    pub fn add_endpoint(&self, spec: &EndpointSpec) -> Result<Endpoint, CatalogError> {
        let mut added = self.add_endpoints(std::slice::from_ref(spec))?;
        Ok(added.pop().expect("one endpoint per spec"))
    }

    /// [`Catalog::add_endpoint`] for many endpoints (an orchestrator placing many containers
    /// at once): up to 30 consecutive specs of one network are read, allocated and written
    /// in one compare-and-swap transaction (the same checks as one at a time), so 1,000
    /// endpoints cost about 34 transactions instead of 1,000. Returns them in order.
    ///
    /// Errors: the first spec that cannot be added (bad input, unknown network or node,
    /// address or MAC taken, network full); the transactions before it are committed, its
    /// own and later ones are not.
    pub fn add_endpoints(&self, specs: &[EndpointSpec]) -> Result<Vec<Endpoint>, CatalogError> {
        for spec in specs {
            validate::network_name(&spec.network)?;
            validate::node_name(&spec.node)?;
            if let Some(id) = &spec.id {
                validate::endpoint_id(id)?;
            }
            if let Some(mac) = spec.mac {
                validate::endpoint_mac(mac)?;
            }
            if let Some(m) = spec.mtu {
                validate::attachment_mtu(m)?;
            }
        }
        let mut out = Vec::with_capacity(specs.len());
        let mut rest = specs;
        while let Some(first) = rest.first() {
            let n = rest
                .iter()
                .take(ENDPOINTS_PER_TXN)
                .take_while(|s| s.network == first.network)
                .count();
            let (chunk, later) = rest.split_at(n);
            out.extend(self.commit_with_retry(|| self.plan_endpoints(chunk))?);
            rest = later;
        }
        Ok(out)
    }

    /// One attempt at adding `specs` (all of one network): the transaction and the endpoints
    /// it records.
    fn plan_endpoints(&self, specs: &[EndpointSpec]) -> Result<(Txn, Vec<Endpoint>), CatalogError> {
        let network_name = &specs[0].network;
        let (net_kv, network) = self
            .get_decoded::<Network>(&keys::network(network_name))?
            .ok_or_else(|| CatalogError::NotFound {
                kind: "network",
                name: network_name.clone(),
            })?;
        let existing = self.endpoints(Some(network_name))?;
        let allocations = self.store.range(&keys::ipam_of(network_name))?;
        let mut taken: BTreeSet<Ipv4Addr> = allocations
            .kvs
            .iter()
            .filter_map(|kv| kv.key.rsplit('/').next()?.parse().ok())
            .collect();
        // MACs in use: every endpoint's (records written by older versions have no claim
        // key), every claim, and the gateway's, which the bridge holds on every host.
        let mut macs_taken: BTreeSet<MacAddr> = self
            .store
            .range(&keys::macs_of(network_name))?
            .kvs
            .iter()
            .filter_map(|kv| kv.key.rsplit('/').next()?.parse().ok())
            .collect();
        macs_taken.extend(existing.iter().map(|e| e.mac));
        macs_taken.insert(MacAddr::for_endpoint(network.gateway));
        let mut ids: BTreeSet<String> = existing.iter().map(|e| e.id.clone()).collect();
        let mut txn = Txn {
            compares: vec![Compare::ModRevision(
                net_kv.key.clone(),
                net_kv.mod_revision,
            )],
            ops: vec![],
        };
        let mut nodes = BTreeSet::new();
        let mut endpoints = Vec::with_capacity(specs.len());
        for spec in specs {
            if nodes.insert(spec.node.clone()) {
                let (node_kv, _) = self
                    .get_decoded::<Node>(&keys::node(&spec.node))?
                    .ok_or_else(|| CatalogError::NotFound {
                        kind: "node",
                        name: spec.node.clone(),
                    })?;
                txn.compares.push(Compare::ModRevision(
                    node_kv.key.clone(),
                    node_kv.mod_revision,
                ));
            }
            // A generated id is drawn again on every attempt, so one that happens to be
            // taken is never an error: only an id the caller chose can be "already there".
            let id = match &spec.id {
                Some(id) => id.clone(),
                None => format!("ep-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff),
            };
            // (A generated id that is taken fails the transaction's `Absent` compare below.)
            if spec.id.is_some() && ids.contains(&id) {
                return Err(CatalogError::Exists {
                    kind: "endpoint",
                    name: format!("{}/{id}", spec.network),
                });
            }
            ids.insert(id.clone());
            let ip =
                match spec.ip {
                    Some(ip) => {
                        validate::endpoint_ip(&network, ip)?;
                        if taken.contains(&ip) {
                            let owner = existing.iter().find(|e| e.ip == ip).map(|e| e.id.as_str());
                            return Err(ValidationError::new(
                                "ip",
                                ip,
                                format!(
                                    "is already in use (by {})",
                                    owner.unwrap_or("an allocation")
                                ),
                            )
                            .into());
                        }
                        ip
                    }
                    None => ipam::first_free(network.subnet, network.gateway, &taken).ok_or_else(
                        || CatalogError::Exhausted {
                            network: network.name.clone(),
                            subnet: network.subnet.to_string(),
                            capacity: ipam::capacity(network.subnet),
                        },
                    )?,
                };
            taken.insert(ip);
            let mac = match spec.mac {
                Some(mac) => {
                    if macs_taken.contains(&mac) {
                        let owner = match existing.iter().find(|e| e.mac == mac) {
                            Some(e) => format!("endpoint {}", e.id),
                            None if mac == MacAddr::for_endpoint(network.gateway) => {
                                format!("the gateway of network {}", network.name)
                            }
                            None => "another endpoint".to_string(),
                        };
                        return Err(ValidationError::new(
                            "mac",
                            mac,
                            format!("is already used by {owner}"),
                        )
                        .into());
                    }
                    mac
                }
                // Derived from the address; when a caller took that MAC for another
                // endpoint, the next free one of the address's alternatives (never an error).
                None => (0..)
                    .map(|attempt| MacAddr::for_endpoint_attempt(ip, attempt))
                    .find(|m| !macs_taken.contains(m))
                    .expect("2^32 alternatives cannot all be taken"),
            };
            macs_taken.insert(mac);
            let endpoint = Endpoint {
                id: id.clone(),
                network: spec.network.clone(),
                node: spec.node.clone(),
                ip,
                mac,
                host_ifname: spec.attach.then(|| model::veth_name(&spec.network, &id)),
                cni: spec.cni.clone(),
                mtu: spec.mtu,
            };
            let key = keys::endpoint(&spec.network, &id);
            txn.compares.extend([
                Compare::Absent(key.clone()),
                Compare::Absent(keys::ipam(&spec.network, ip)),
                Compare::Absent(keys::mac(&spec.network, mac)),
            ]);
            txn.ops.extend([
                Op::put(key, encode(&endpoint)),
                Op::put(keys::ipam(&spec.network, ip), id.as_bytes()),
                Op::put(keys::mac(&spec.network, mac), id.as_bytes()),
            ]);
            endpoints.push(endpoint);
        }
        Ok((txn, endpoints))
    }

    /// Endpoints of one network, or of all networks.
    pub fn endpoints(&self, network: Option<&str>) -> Result<Vec<Endpoint>, CatalogError> {
        let prefix = match network {
            Some(n) => keys::endpoints_of(n),
            None => keys::ENDPOINTS.to_string(),
        };
        Ok(self
            .list_decoded::<Endpoint>(&prefix)?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    pub fn endpoint(&self, network: &str, id: &str) -> Result<Endpoint, CatalogError> {
        validate::network_name(network)?;
        validate::endpoint_id(id)?;
        self.get_decoded(&keys::endpoint(network, id))?
            .map(|(_, e)| e)
            .ok_or_else(|| CatalogError::NotFound {
                kind: "endpoint",
                name: format!("{network}/{id}"),
            })
    }

    /// Removes an endpoint and frees its address.
    pub fn remove_endpoint(&self, network: &str, id: &str) -> Result<Endpoint, CatalogError> {
        validate::network_name(network)?;
        validate::endpoint_id(id)?;
        self.commit_with_retry(|| {
            let (kv, endpoint) = self
                .get_decoded::<Endpoint>(&keys::endpoint(network, id))?
                .ok_or_else(|| CatalogError::NotFound {
                    kind: "endpoint",
                    name: format!("{network}/{id}"),
                })?;
            let txn = Txn {
                compares: vec![Compare::ModRevision(kv.key.clone(), kv.mod_revision)],
                ops: vec![
                    Op::Delete(kv.key.clone()),
                    Op::Delete(keys::ipam(network, endpoint.ip)),
                    Op::Delete(keys::mac(network, endpoint.mac)),
                ],
            };
            Ok((txn, endpoint))
        })
    }
}
