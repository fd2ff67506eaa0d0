//! Health records: each agent writes the state of the backends on its own node; every agent
//! reads all of them (through [`super::ServiceSnapshot`]) to build the same tables.

use std::time::{SystemTime, UNIX_EPOCH};

use overlay_core::store::{Compare, LeaseId, Op, Txn};
use overlay_core::validate as core_validate;
use serde::{Deserialize, Serialize};

use super::{encode, ServiceCatalog, ServiceError};
use crate::keys;
use crate::service::validate;

/// The result of a backend's health checks, as its node's agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Up,
    Down,
}

/// `/vxmesh/v1/health/SERVICE/ENDPOINT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    /// The node whose agent checked (the endpoint's node when it wrote).
    pub node: String,
    pub status: HealthStatus,
    /// Why, in a few words: the last check's result (`connection refused`, `HTTP 500`, …).
    #[serde(default)]
    pub detail: String,
    /// When the status was written, ms since the Unix epoch (for people; not compared).
    #[serde(default)]
    pub since_ms: u64,
}

impl ServiceCatalog {
    /// Records the health of `endpoint`, a backend of `service`, as checked by `node`'s agent.
    /// `lease`: the agent's heartbeat lease (`Catalog::announce_agent`), so the record goes
    /// with the agent; `None` keeps it until the backend or service is removed.
    ///
    /// Written only when the backend belongs to the service and its endpoint is on `node`
    /// (compared in the same transaction), so a late report cannot revive a removed backend's
    /// record. Writes nothing when status and detail are as stored.
    ///
    /// Errors: unknown service or backend, [`ServiceError::NotLocal`] when the endpoint is on
    /// another node, the service's network removed.
    pub fn report_health(
        &self,
        service: &str,
        endpoint: &str,
        node: &str,
        status: HealthStatus,
        detail: &str,
        lease: Option<LeaseId>,
    ) -> Result<(), ServiceError> {
        validate::service_name(service)?;
        validate::backend_name(endpoint)?;
        core_validate::node_name(node)?;
        let key = keys::service(service);
        let health_key = keys::health(service, endpoint);
        self.commit_with_retry(|| {
            let (kv, svc) = self.service_record(service)?;
            if svc.backend(endpoint).is_none() {
                return Err(ServiceError::NotFound {
                    kind: "backend",
                    name: format!("{service}/{endpoint}"),
                });
            }
            let (net_kv, network) = self.live_network(&svc)?;
            let (ep_cmp, ep) = self.backend_endpoint(&network, endpoint)?;
            if ep.node != node {
                return Err(ServiceError::NotLocal {
                    service: service.to_string(),
                    endpoint: endpoint.to_string(),
                    node: node.to_string(),
                    actual: ep.node,
                });
            }
            let current = self.read::<HealthRecord>(&health_key)?;
            let same = current.as_ref().is_some_and(|(kv, r)| {
                r.node == node && r.status == status && r.detail == detail && kv.lease == lease
            });
            let ops = if same {
                vec![]
            } else {
                let record = HealthRecord {
                    node: node.to_string(),
                    status,
                    detail: detail.to_string(),
                    since_ms: SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                };
                vec![Op::Put {
                    key: health_key.clone(),
                    value: encode(&record),
                    lease,
                }]
            };
            let txn = Txn {
                compares: vec![
                    Compare::ModRevision(key.clone(), kv.mod_revision),
                    Compare::ModRevision(net_kv.key.clone(), net_kv.mod_revision),
                    ep_cmp,
                ],
                ops,
            };
            Ok((txn, ()))
        })
    }
}
