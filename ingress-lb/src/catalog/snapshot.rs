//! Everything a host needs to program services, read at one store revision: services,
//! networks, endpoints, health records and which agents are alive; and from it, each service's
//! backend states and Maglev table.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;

use overlay_core::keys as core_keys;
use overlay_core::model::{Endpoint, Network, Node};
use overlay_core::store::{KeyValue, Revision, Store};
use overlay_core::validate as core_validate;

use super::health::{HealthRecord, HealthStatus};
use super::{decode, ServiceError};
use crate::health::Target;
use crate::keys;
use crate::maglev;
use crate::service::{validate, Backend, BackendState, HealthCheck, Service};

/// Services and what decides their backends, at one revision. Records that fail to decode or
/// validate are left out and listed in `problems` (one bad record never stops a host).
#[derive(Debug, Clone, Default)]
pub struct ServiceSnapshot {
    pub revision: Revision,
    /// Services whose network exists and is the one they were made on, by name.
    pub services: BTreeMap<String, Service>,
    /// Services whose network was removed (see `ServiceCatalog::remove_network`).
    pub orphans: Vec<Service>,
    pub networks: BTreeMap<String, Network>,
    /// Endpoints by (network, id).
    pub endpoints: BTreeMap<(String, String), Endpoint>,
    /// Health records by (service, endpoint).
    pub health: BTreeMap<(String, String), HealthRecord>,
    /// Nodes whose agent heartbeat key is present (the store hides keys of expired leases).
    pub live_agents: BTreeSet<String>,
    /// Nodes whose agent's lease is alive (`/vxmesh/v1/alive/NODE`: kept through a clean
    /// stop until the lease expires).
    pub alive: BTreeSet<String>,
    /// Nodes whose agent published a host report (an agent ran there once).
    pub reported: BTreeSet<String>,
    /// Nodes by name (their underlay addresses: the routing mesh's published frontends).
    pub nodes: BTreeMap<String, Node>,
    pub problems: Vec<String>,
}

/// Where a backend stands, in the order the rules are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendStatus {
    /// Its endpoint is not in the store (removed): out.
    EndpointGone,
    /// Its node's agent lease expired (the agent died or stayed stopped longer than the
    /// lease): out of the backend map, like a removed one, until the agent is back.
    NodeGone,
    /// Its node's agent heartbeat is missing or expired: out.
    NodeDown,
    /// A check is configured and no report from the endpoint's node yet: out (as Envoy does
    /// with hosts that have not passed their first check).
    Unknown,
    /// Its node's agent reports it failing: out.
    Down { detail: String },
    /// Healthy and draining: in the backend map, no slot in the table (weight 0).
    Draining,
    /// Healthy and active: in the table with its weight.
    Up,
}

/// One backend of a service with what the snapshot knows of it.
#[derive(Debug, Clone)]
pub struct BackendView<'a> {
    pub backend: &'a Backend,
    pub endpoint: Option<&'a Endpoint>,
    pub health: Option<&'a HealthRecord>,
    pub status: BackendStatus,
}

impl BackendView<'_> {
    /// Healthy (up or draining): it belongs in the kernel's backend map.
    pub fn is_healthy(&self) -> bool {
        matches!(self.status, BackendStatus::Up | BackendStatus::Draining)
    }

    /// Its weight in the Maglev table: the backend's weight when up, 0 otherwise.
    pub fn table_weight(&self) -> u32 {
        match self.status {
            BackendStatus::Up => self.backend.weight,
            _ => 0,
        }
    }
}

impl ServiceSnapshot {
    /// Reads the whole vxmesh tree in one range (one revision) and decodes what services need.
    pub fn read(store: &dyn Store) -> Result<Self, ServiceError> {
        let range = store.range(core_keys::ROOT)?;
        let mut snap = ServiceSnapshot {
            revision: range.revision,
            ..Default::default()
        };
        let mut net_revisions = BTreeMap::new();
        let (mut endpoints, mut services) = (Vec::new(), Vec::new());
        for kv in &range.kvs {
            let key = kv.key.as_str();
            if key.starts_with(core_keys::NETWORKS) {
                if let Some(n) = snap.decoded::<Network>(kv, core_validate::stored_network) {
                    net_revisions.insert(n.name.clone(), kv.create_revision);
                    snap.networks.insert(n.name.clone(), n);
                }
            } else if key.starts_with(core_keys::ENDPOINTS) {
                endpoints.extend(snap.decoded::<Endpoint>(kv, |_| Ok(())));
            } else if key
                .strip_prefix(core_keys::NODES)
                .is_some_and(|rest| !rest.contains('/'))
            {
                if let Some(n) = snap.decoded::<Node>(kv, |_| Ok(())) {
                    snap.nodes.insert(n.name.clone(), n);
                }
            } else if let Some(node) = key.strip_prefix(core_keys::AGENTS) {
                snap.live_agents.insert(node.to_string());
            } else if let Some(node) = key.strip_prefix(core_keys::ALIVE) {
                snap.alive.insert(node.to_string());
            } else if let Some(node) = key.strip_prefix(core_keys::HOSTS) {
                snap.reported.insert(node.to_string());
            } else if key.starts_with(keys::SERVICES) {
                services.extend(snap.decoded::<Service>(kv, |_| Ok(())).map(|s| (kv, s)));
            } else if let Some(rest) = key.strip_prefix(keys::HEALTH) {
                let Some((service, endpoint)) = rest.split_once('/') else {
                    continue;
                };
                if let Some(r) =
                    snap.decoded::<HealthRecord>(kv, |r| core_validate::node_name(&r.node))
                {
                    snap.health
                        .insert((service.to_string(), endpoint.to_string()), r);
                }
            }
        }
        for e in endpoints {
            match snap.networks.get(&e.network) {
                Some(n) => match core_validate::stored_endpoint(&e, n) {
                    Ok(()) => {
                        snap.endpoints.insert((e.network.clone(), e.id.clone()), e);
                    }
                    Err(err) => snap
                        .problems
                        .push(format!("endpoint {}/{}: {err}", e.network, e.id)),
                },
                None => snap.problems.push(format!(
                    "endpoint {} names unknown network '{}'",
                    e.id, e.network
                )),
            }
        }
        for (kv, s) in services {
            match (snap.networks.get(&s.network), net_revisions.get(&s.network)) {
                (Some(n), Some(&rev)) if rev == s.network_revision => {
                    match validate::stored_service(&s, n) {
                        Ok(()) => {
                            snap.services.insert(s.name.clone(), s);
                        }
                        Err(e) => snap
                            .problems
                            .push(format!("bad record in the store at {}: {e}", kv.key)),
                    }
                }
                _ => {
                    snap.problems.push(format!(
                        "service {}: its network '{}' was removed",
                        s.name, s.network
                    ));
                    snap.orphans.push(s);
                }
            }
        }
        Ok(snap)
    }

    /// Decodes and checks one record; a failure goes to `problems`.
    fn decoded<T: serde::de::DeserializeOwned>(
        &mut self,
        kv: &KeyValue,
        check: impl FnOnce(&T) -> Result<(), core_validate::ValidationError>,
    ) -> Option<T> {
        let result = decode::<T>(kv).and_then(|v| {
            check(&v).map_err(|e| ServiceError::Corrupt {
                key: kv.key.clone(),
                reason: e.to_string(),
            })?;
            Ok(v)
        });
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.problems.push(e.to_string());
                None
            }
        }
    }

    /// Every backend of `svc` with its status (rules in [`BackendStatus`] order).
    pub fn backends<'a>(&'a self, svc: &'a Service) -> Vec<BackendView<'a>> {
        svc.backends
            .iter()
            .map(|b| {
                let endpoint = self
                    .endpoints
                    .get(&(svc.network.clone(), b.endpoint.clone()));
                let health = self.health.get(&(svc.name.clone(), b.endpoint.clone()));
                let status = self.status(svc, b, endpoint, health);
                BackendView {
                    backend: b,
                    endpoint,
                    health,
                    status,
                }
            })
            .collect()
    }

    fn status(
        &self,
        svc: &Service,
        b: &Backend,
        endpoint: Option<&Endpoint>,
        health: Option<&HealthRecord>,
    ) -> BackendStatus {
        let Some(ep) = endpoint else {
            return BackendStatus::EndpointGone;
        };
        if self.reported.contains(&ep.node) && !self.alive.contains(&ep.node) {
            return BackendStatus::NodeGone;
        }
        if !self.live_agents.contains(&ep.node) {
            return BackendStatus::NodeDown;
        }
        if svc.health.check != HealthCheck::None {
            // A record from another node (the endpoint moved) says nothing about it now.
            match health.filter(|r| r.node == ep.node) {
                None => return BackendStatus::Unknown,
                Some(r) if r.status == HealthStatus::Down => {
                    return BackendStatus::Down {
                        detail: r.detail.clone(),
                    }
                }
                Some(_) => {}
            }
        }
        match b.state {
            BackendState::Draining => BackendStatus::Draining,
            BackendState::Active => BackendStatus::Up,
        }
    }

    /// What `node`'s agent must check: every backend on `node` (endpoint present) of every
    /// service with a check, at the endpoint's address and [`Service::health_port`], keyed by
    /// (service, endpoint). Feed it to [`crate::health::HealthRunner::set_targets`].
    pub fn health_targets(&self, node: &str) -> Vec<Target<(String, String)>> {
        let mut out = Vec::new();
        for svc in self.services.values() {
            let Some(port) = svc.health_port() else {
                continue;
            };
            if svc.health.check == HealthCheck::None {
                continue;
            }
            for b in &svc.backends {
                let key = (svc.network.clone(), b.endpoint.clone());
                if let Some(ep) = self.endpoints.get(&key).filter(|e| e.node == node) {
                    out.push(Target {
                        key: (svc.name.clone(), b.endpoint.clone()),
                        addr: SocketAddrV4::new(ep.ip, port),
                        spec: svc.health.clone(),
                    });
                }
            }
        }
        out
    }

    /// The healthy backends of `svc` (up or draining): those the kernel's backend map holds.
    pub fn healthy_backends<'a>(&'a self, svc: &'a Service) -> Vec<BackendView<'a>> {
        self.backends(svc)
            .into_iter()
            .filter(BackendView::is_healthy)
            .collect()
    }

    /// The Maglev table of `svc`: [`Service::table_size`] slots of backend ids, built from its
    /// healthy backends (draining ones with weight 0). `None` when no backend is up: new flows
    /// have nowhere to go. The same snapshot gives the same table on every host.
    pub fn table(&self, svc: &Service) -> Result<Option<Vec<u32>>, ServiceError> {
        let healthy = self.healthy_backends(svc);
        let input: Vec<maglev::Backend<'_>> = healthy
            .iter()
            .map(|v| maglev::Backend {
                id: v.backend.id,
                name: &v.backend.endpoint,
                weight: v.table_weight(),
            })
            .collect();
        match maglev::table(&input, svc.table_size()?) {
            Ok(t) => Ok(Some(t)),
            Err(maglev::MaglevError::NoActiveBackend) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
