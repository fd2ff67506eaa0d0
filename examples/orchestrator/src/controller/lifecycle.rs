//! How one replica joins a service and leaves it, in the order the controller's module doc
//! gives, and the waits in between.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vxmesh::services::{BackendStatus, ServiceSnapshot};
use vxmesh::wait::{wait_applied_async, WaitError};
use vxmesh::{netns, BackendSpec, ServiceUpdate};

use super::{Deployment, Orchestrator};
use crate::replica::{Replica, ReplicaSpec};
use crate::OrchestratorError;

impl Orchestrator {
    /// Starts a replica of `dep` on `node` and admits it (see the module doc); on failure it
    /// is removed again.
    pub(super) async fn start_replica(
        &self,
        dep: &mut Deployment,
        node: &str,
    ) -> Result<(), OrchestratorError> {
        let host = self.hosts.get(node).expect("placement picks managed hosts");
        let (name, ns) = self.next_names(&dep.spec.name, &host.netns_prefix);
        let spec = ReplicaSpec {
            name,
            version: dep.spec.version.clone(),
            network: dep.spec.network.clone(),
            node: node.to_string(),
            host_netns: host.netns_path(),
            netns: ns,
            port: dep.spec.port,
        };
        let replica = Replica::start(&self.catalog, spec).await?;
        match self.admit(&dep.spec.name, &replica).await {
            Ok(()) => {
                tracing::info!(service = %dep.spec.name, replica = %replica.spec.name, node, "replica up");
                dep.replicas.push(replica);
                Ok(())
            }
            Err(e) => {
                self.forget(&dep.spec.name, replica).await;
                Err(e)
            }
        }
    }

    /// Makes a serving replica a backend of `service`: once every live host knows its
    /// endpoint; returns once it is healthy and every live host has applied that.
    async fn admit(&self, service: &str, replica: &Replica) -> Result<(), OrchestratorError> {
        let name = &replica.spec.name;
        self.applied_everywhere(self.catalog.store().revision()?)
            .await?;
        self.services.update(
            service,
            &[ServiceUpdate::AddBackend(BackendSpec::new(name))],
        )?;
        let deadline = Instant::now() + self.options.healthy_timeout;
        let healthy_at = loop {
            let snap = self.snapshot()?;
            let status = backend_status(&snap, service, name);
            if status == Some(BackendStatus::Up) {
                break snap.revision;
            }
            if Instant::now() >= deadline {
                return Err(OrchestratorError::NotHealthy {
                    replica: name.clone(),
                    waited: self.options.healthy_timeout,
                    status: format!("{status:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.applied_everywhere(healthy_at).await
    }

    /// Takes a replica out of `service` without breaking a connection, then removes it.
    pub(super) async fn drain_and_remove(
        &self,
        service: &str,
        replica: Replica,
    ) -> Result<(), OrchestratorError> {
        let name = replica.spec.name.clone();
        // No new connections (established ones stay) ...
        self.services
            .update(service, &[ServiceUpdate::DrainBackend(name.clone())])?;
        self.applied_everywhere(self.catalog.store().revision()?)
            .await?;
        // ... then out of every host's backend map, and only then the server stops.
        self.services
            .update(service, &[ServiceUpdate::RemoveBackend(name)])?;
        self.applied_everywhere(self.catalog.store().revision()?)
            .await?;
        replica.remove(&self.catalog).await
    }

    /// Removes a replica that gets no traffic any more (a dead host's, or one that never
    /// became healthy) without waiting for anything; errors are logged.
    pub(super) async fn forget(&self, service: &str, replica: Replica) {
        let name = replica.spec.name.clone();
        if let Err(e) = self
            .services
            .update(service, &[ServiceUpdate::RemoveBackend(name.clone())])
        {
            tracing::debug!(replica = %name, "removing the backend: {e}");
        }
        if let Err(e) = replica.remove(&self.catalog).await {
            tracing::warn!(replica = %name, "removing the replica: {e}");
        }
    }

    /// Waits until every host whose agent runs has applied `revision`. The set of hosts is
    /// read again every 2 s, so a host that dies meanwhile does not hold the wait up.
    pub(super) async fn applied_everywhere(&self, revision: u64) -> Result<(), OrchestratorError> {
        let deadline = Instant::now() + self.options.apply_timeout;
        loop {
            let nodes = self.running(&self.snapshot()?);
            let r = wait_applied_async(
                self.catalog.clone(),
                nodes,
                revision,
                Duration::from_secs(2),
            )
            .await;
            match r {
                Ok(statuses) => {
                    for (node, s) in statuses.iter().filter(|(_, s)| !s.errors.is_empty()) {
                        tracing::warn!(node, errors = ?s.errors, "host applied with errors");
                    }
                    return Ok(());
                }
                Err(WaitError::Timeout { .. }) if Instant::now() < deadline => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The managed hosts whose agent's heartbeat is in `snap`, by name.
    pub(super) fn running(&self, snap: &ServiceSnapshot) -> Vec<String> {
        self.hosts
            .names()
            .into_iter()
            .filter(|h| snap.live_agents.contains(h))
            .collect()
    }

    pub(super) fn snapshot(&self) -> Result<ServiceSnapshot, OrchestratorError> {
        Ok(self.services.snapshot()?)
    }

    /// A replica name (`SERVICE.N`) and a namespace name (`PREFIXN`) not in use yet.
    fn next_names(&self, service: &str, netns_prefix: &str) -> (String, String) {
        loop {
            let n = self.next_replica.fetch_add(1, Ordering::Relaxed);
            let ns = format!("{netns_prefix}{n}");
            if !netns::exists(&ns) {
                return (format!("{service}.{n}"), ns);
            }
        }
    }
}

/// The status of backend `endpoint` of `service` in `snap` (`None`: no such backend).
fn backend_status(snap: &ServiceSnapshot, service: &str, endpoint: &str) -> Option<BackendStatus> {
    let svc = snap.services.get(service)?;
    snap.backends(svc)
        .into_iter()
        .find(|b| b.backend.endpoint == endpoint)
        .map(|b| b.status)
}
