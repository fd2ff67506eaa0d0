//! The controller: deploys services as replicas over the hosts and keeps them as asked.
//!
//! Every change follows one order, so that a client of the published port never meets a
//! replica that is not ready or already gone:
//! - a new replica is attached and serving, every live host has applied its endpoint, then it
//!   becomes a backend; it counts once its node's agent reports it healthy and every live host
//!   has applied that ([`vxmesh::wait::wait_applied`]);
//! - an old replica is drained (no new connections), then removed from the backends, each
//!   applied by every live host, and only then is its server stopped.
//!
//! Host liveness comes from the store, as any process would see it: a host takes new
//! replicas while its agent's heartbeat is there; its replicas are moved once its liveness
//! (the agent's lease) has expired, which the reconciler learns from the store's typed watch
//! ([`vxmesh::watch::Watcher`], `Change::Alive`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::Duration;

use vxmesh::services::{status_word, PublishedPort};
use vxmesh::wait::wait_applied_async;
use vxmesh::watch::{Change, Watcher};
use vxmesh::{Catalog, HealthCheck, HealthSpec, PortSpec, Proto, ServiceCatalog, ServiceSpec};

mod lifecycle;

use crate::hosts::{HostSpec, Hosts};
use crate::placement::{place, surplus};
use crate::replica::Replica;
use crate::OrchestratorError;

/// A service to deploy: `deploy web --replicas 6 --publish 8080:80 --network front`.
#[derive(Debug, Clone)]
pub struct DeploySpec {
    /// The service's name (also its replicas' prefix: `web.1`, `web.2`, …).
    pub name: String,
    /// How many replicas to keep.
    pub replicas: usize,
    /// The network the replicas are attached to and the VIP is taken from (it must exist).
    pub network: String,
    /// The port the replicas listen on, also the service's port on its VIP.
    pub port: u16,
    /// Ports published on every host's underlay address (the routing mesh).
    pub publish: Vec<PublishedPort>,
    /// The version the replicas serve (what a rolling update changes; an image tag in Swarm).
    pub version: String,
    /// How each host checks its replicas.
    pub health: HealthSpec,
}

impl DeploySpec {
    /// `replicas` replicas of `name` on `network`, listening on port 80, version `v1`, with
    /// an HTTP check of `/` every 500 ms (timeout 250 ms, 2 to rise, 2 to fall).
    pub fn new(name: &str, replicas: usize, network: &str) -> DeploySpec {
        DeploySpec {
            name: name.into(),
            replicas,
            network: network.into(),
            port: 80,
            publish: Vec::new(),
            version: "v1".into(),
            health: HealthSpec {
                check: HealthCheck::Http { path: "/".into() },
                interval_ms: 500,
                timeout_ms: 250,
                rise: 2,
                fall: 2,
            },
        }
    }
}

/// Timeouts and the reconcile period.
#[derive(Debug, Clone)]
pub struct Options {
    /// Longest wait for every live host to apply a change.
    pub apply_timeout: Duration,
    /// Longest wait for a new replica's node to report it healthy.
    pub healthy_timeout: Duration,
    /// The background reconciler runs when a host's liveness ends, and at least this often.
    pub resync: Duration,
}

impl Default for Options {
    /// 30 s, 30 s, 2 s.
    fn default() -> Self {
        Options {
            apply_timeout: Duration::from_secs(30),
            healthy_timeout: Duration::from_secs(30),
            resync: Duration::from_secs(2),
        }
    }
}

/// One replica as [`Orchestrator::ps`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Its name (`web.3`).
    pub name: String,
    /// The version it serves.
    pub version: String,
    /// The host it runs on.
    pub node: String,
    /// Its address on the network.
    pub address: Ipv4Addr,
    /// Its backend's state in the store: `up`, `draining`, `down`, `unknown`, `node-down`, ….
    pub state: String,
    /// Its network namespace (`/run/netns/NAME`).
    pub netns: String,
}

/// A deployed service: what was asked and the replicas that run.
#[derive(Debug)]
struct Deployment {
    spec: DeploySpec,
    /// Oldest first.
    replicas: Vec<Replica>,
}

/// The orchestrator: the hosts' agents and the deployed services.
pub struct Orchestrator {
    catalog: Catalog,
    services: ServiceCatalog,
    hosts: Arc<Hosts>,
    options: Options,
    deployments: tokio::sync::Mutex<BTreeMap<String, Deployment>>,
    next_replica: AtomicU64,
}

impl Orchestrator {
    /// Starts the agents of the hosts (in this process; see [`HostSpec::agent`]) and waits
    /// until every host's agent has applied the store as it is now. Call it on a tokio
    /// runtime.
    ///
    /// Errors: an agent cannot start ([`OrchestratorError::Agent`]), or does not apply the
    /// store within [`Options::apply_timeout`] ([`OrchestratorError::Wait`]).
    pub async fn start(
        catalog: Catalog,
        hosts: Vec<HostSpec>,
        options: Options,
    ) -> Result<Arc<Orchestrator>, OrchestratorError> {
        let c = catalog.clone();
        let hosts = tokio::task::spawn_blocking(move || Hosts::start(&c, hosts))
            .await
            .map_err(|e| OrchestratorError::Io(std::io::Error::other(e)))??;
        let revision = catalog.store().revision()?;
        wait_applied_async(
            catalog.clone(),
            hosts.names(),
            revision,
            options.apply_timeout,
        )
        .await?;
        Ok(Arc::new(Orchestrator {
            services: ServiceCatalog::of(&catalog),
            catalog,
            hosts: Arc::new(hosts),
            options,
            deployments: Default::default(),
            next_replica: AtomicU64::new(1),
        }))
    }

    /// The hosts and their agents.
    pub fn hosts(&self) -> &Hosts {
        &self.hosts
    }

    /// Creates the service (no backends yet, the health check and published ports of
    /// `spec`) and starts its replicas one by one, each placed on the live host with the
    /// fewest. Returns once all are healthy everywhere. A deployment that failed half way is
    /// kept: the reconciler keeps trying to reach the count.
    ///
    /// Errors: [`OrchestratorError::Exists`], an unknown network or a refused spec
    /// ([`OrchestratorError::Catalog`], [`OrchestratorError::Service`]), and those of
    /// starting a replica (see [`Orchestrator::scale`]).
    pub async fn deploy(&self, spec: DeploySpec) -> Result<(), OrchestratorError> {
        let mut deployments = self.deployments.lock().await;
        if deployments.contains_key(&spec.name) {
            return Err(OrchestratorError::Exists(spec.name));
        }
        self.check_room(&spec.network, 0, spec.replicas)?;
        self.services.create(&ServiceSpec {
            name: spec.name.clone(),
            network: spec.network.clone(),
            ports: vec![PortSpec {
                port: spec.port,
                target_port: Some(spec.port),
                proto: Proto::Tcp,
            }],
            publish: spec.publish.clone(),
            health: spec.health.clone(),
            ..ServiceSpec::default()
        })?;
        // Every host has the network's bridge and the service before a replica comes.
        self.applied_everywhere(self.catalog.store().revision()?)
            .await?;
        let target = spec.replicas;
        let dep = deployments.entry(spec.name.clone()).or_insert(Deployment {
            spec,
            replicas: Vec::new(),
        });
        self.grow(dep, target).await
    }

    /// Sets the number of replicas of `service`: new ones are started one by one (each
    /// healthy everywhere before the next), surplus ones drained and removed one by one.
    ///
    /// Errors: [`OrchestratorError::Unknown`]; [`OrchestratorError::NoLiveHost`];
    /// [`OrchestratorError::NotHealthy`] when a new replica does not become healthy in
    /// [`Options::healthy_timeout`] (it is removed again); store, netlink or wait errors.
    pub async fn scale(&self, service: &str, replicas: usize) -> Result<(), OrchestratorError> {
        let mut deployments = self.deployments.lock().await;
        let dep = deployment(&mut deployments, service)?;
        self.check_room(&dep.spec.network, dep.replicas.len(), replicas)?;
        dep.spec.replicas = replicas;
        if dep.replicas.len() < replicas {
            self.grow(dep, replicas).await
        } else {
            self.shrink(dep, replicas).await
        }
    }

    /// Rolling update of `service` to `version`: each replica not at `version` is replaced,
    /// one at a time, by a new one on the same host (or the emptiest live one); the old one is
    /// drained and removed only once the new one is healthy everywhere, and the next starts
    /// `delay` later. The reconciler waits while an update runs.
    ///
    /// Errors: as [`Orchestrator::scale`]; a failed step stops the update (replicas already
    /// replaced stay at the new version).
    pub async fn update(
        &self,
        service: &str,
        version: &str,
        delay: Duration,
    ) -> Result<(), OrchestratorError> {
        let mut deployments = self.deployments.lock().await;
        let dep = deployment(&mut deployments, service)?;
        dep.spec.version = version.to_string();
        let old: Vec<String> = dep
            .replicas
            .iter()
            .filter(|r| r.spec.version != version)
            .map(|r| r.spec.name.clone())
            .collect();
        for (n, name) in old.iter().enumerate() {
            if n > 0 {
                tokio::time::sleep(delay).await;
            }
            let Some(i) = dep.replicas.iter().position(|r| &r.spec.name == name) else {
                continue;
            };
            let snap = self.snapshot()?;
            let live = self.running(&snap);
            let node = if live.contains(&dep.replicas[i].spec.node) {
                dep.replicas[i].spec.node.clone()
            } else {
                self.place(dep, &live)?
            };
            self.start_replica(dep, &node).await?;
            let old = dep.replicas.remove(i);
            self.drain_and_remove(service, old).await?;
            tracing::info!(service, replica = %name, version, "replaced");
        }
        Ok(())
    }

    /// One pass of the reconciler: the replicas of hosts whose liveness has expired are
    /// forgotten (their backends removed) and every service is brought back to its count on
    /// the live hosts.
    ///
    /// Errors: those of [`Orchestrator::scale`]; the next pass tries again.
    pub async fn reconcile(&self) -> Result<(), OrchestratorError> {
        let mut deployments = self.deployments.lock().await;
        let snap = self.snapshot()?;
        for dep in deployments.values_mut() {
            let (gone, kept): (Vec<Replica>, Vec<Replica>) = std::mem::take(&mut dep.replicas)
                .into_iter()
                .partition(|r| !snap.alive.contains(&r.spec.node));
            dep.replicas = kept;
            for r in gone {
                tracing::warn!(service = %dep.spec.name, replica = %r.spec.name, node = %r.spec.node,
                    "host is gone (agent lease expired): replacing its replica");
                self.forget(&dep.spec.name, r).await;
            }
            let target = dep.spec.replicas;
            if dep.replicas.len() < target {
                self.grow(dep, target).await?;
            }
        }
        Ok(())
    }

    /// Runs [`Orchestrator::reconcile`] whenever the store's typed watch reports that a host's
    /// liveness ended, and at least every [`Options::resync`], until the orchestrator is
    /// dropped (or the task aborted); errors are logged.
    pub fn spawn_reconciler(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me: Weak<Orchestrator> = Arc::downgrade(self);
        let (catalog, resync) = (self.catalog.clone(), self.options.resync);
        tokio::spawn(async move {
            let mut watcher = Watcher::from_now(&catalog).ok();
            loop {
                match watcher.as_mut() {
                    Some(w) => {
                        if let Err(e) = host_gone_within(w, resync).await {
                            tracing::warn!("watching the store: {e}");
                            watcher = None;
                        }
                    }
                    None => {
                        tokio::time::sleep(resync).await;
                        watcher = Watcher::from_now(&catalog).ok();
                    }
                }
                let Some(o) = me.upgrade() else { return };
                if let Err(e) = o.reconcile().await {
                    tracing::warn!("reconcile: {e}");
                }
            }
        })
    }

    /// The replicas of `service`, oldest first, with their backend state in the store.
    ///
    /// Errors: [`OrchestratorError::Unknown`], the store.
    pub async fn ps(&self, service: &str) -> Result<Vec<ReplicaStatus>, OrchestratorError> {
        let deployments = self.deployments.lock().await;
        let dep = deployments
            .get(service)
            .ok_or_else(|| OrchestratorError::Unknown(service.into()))?;
        let snap = self.snapshot()?;
        let states: BTreeMap<&str, &'static str> = snap
            .services
            .get(service)
            .map(|svc| {
                snap.backends(svc)
                    .into_iter()
                    .map(|b| (b.backend.endpoint.as_str(), status_word(&b.status)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(dep
            .replicas
            .iter()
            .map(|r| ReplicaStatus {
                name: r.spec.name.clone(),
                version: r.spec.version.clone(),
                node: r.spec.node.clone(),
                address: r.address,
                state: states
                    .get(r.spec.name.as_str())
                    .unwrap_or(&"absent")
                    .to_string(),
                netns: r.spec.netns.clone(),
            })
            .collect())
    }

    /// Simulates a host's power cut, for tests and demos: kills the servers of its replicas,
    /// then ends its agent as a crash would if this process runs it (`AgentHandle::abort`; an
    /// agent run elsewhere is the caller's to kill), without draining or removing anything from
    /// the store. Its heartbeat and liveness stay until its lease expires, as when a machine
    /// dies; then the other hosts take its backends out and the reconciler replaces its
    /// replicas.
    pub async fn crash_host(&self, node: &str) -> Result<(), OrchestratorError> {
        for dep in self.deployments.lock().await.values() {
            for r in dep.replicas.iter().filter(|r| r.spec.node == node) {
                r.stop_server();
            }
        }
        let hosts = self.hosts.clone();
        let n = node.to_string();
        tokio::task::spawn_blocking(move || hosts.abort_agent(&n))
            .await
            .map_err(|e| OrchestratorError::Io(std::io::Error::other(e)))??;
        Ok(())
    }

    /// Stops every agent (blocking for up to a second each). Replicas, services and kernel
    /// state stay.
    pub async fn stop_agents(&self) {
        let hosts = self.hosts.clone();
        let _ = tokio::task::spawn_blocking(move || hosts.stop_all()).await;
    }

    // ---- count and placement (a replica joins and leaves in lifecycle.rs) ----

    /// Refuses to grow from `have` to `want` replicas when the network's subnet cannot hold
    /// them (and one more, for a rolling update): checked before anything is made, so an
    /// impossible count leaves nothing half built.
    fn check_room(&self, network: &str, have: usize, want: usize) -> Result<(), OrchestratorError> {
        let net = self.catalog.network(network)?;
        // The subnet's addresses, less the network and broadcast addresses and the gateway.
        let size = 1usize << (32 - net.subnet.prefix_len());
        let used = self.catalog.endpoints(Some(network))?.len();
        let free = size.saturating_sub(3).saturating_sub(used);
        let room = free.saturating_sub(1);
        if want > have && want - have > room {
            return Err(OrchestratorError::NoRoom {
                network: network.to_string(),
                wanted: want,
                room,
                free,
            });
        }
        Ok(())
    }

    /// Starts replicas until `dep` has `target`.
    async fn grow(&self, dep: &mut Deployment, target: usize) -> Result<(), OrchestratorError> {
        while dep.replicas.len() < target {
            let live = self.running(&self.snapshot()?);
            let node = self.place(dep, &live)?;
            self.start_replica(dep, &node).await?;
        }
        Ok(())
    }

    /// Drains and removes replicas until `dep` has `target`.
    async fn shrink(&self, dep: &mut Deployment, target: usize) -> Result<(), OrchestratorError> {
        let nodes: Vec<&str> = dep.replicas.iter().map(|r| r.spec.node.as_str()).collect();
        let mut victims = surplus(&nodes, dep.replicas.len().saturating_sub(target));
        victims.sort_unstable_by(|a, b| b.cmp(a));
        let removed: Vec<Replica> = victims
            .into_iter()
            .map(|i| dep.replicas.remove(i))
            .collect();
        for r in removed {
            self.drain_and_remove(&dep.spec.name, r).await?;
        }
        Ok(())
    }

    /// The host for a new replica of `dep` among `live`.
    fn place(&self, dep: &Deployment, live: &[String]) -> Result<String, OrchestratorError> {
        let current: Vec<&str> = dep.replicas.iter().map(|r| r.spec.node.as_str()).collect();
        place(live, &current)
            .map(str::to_string)
            .ok_or_else(|| OrchestratorError::NoLiveHost(dep.spec.name.clone()))
    }
}

/// Returns when `watcher` reports a host's liveness ending (or changes it missed), or after
/// `timeout`.
async fn host_gone_within(watcher: &mut Watcher, timeout: Duration) -> vxmesh::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let changes = watcher.next_async(left).await?;
        let gone = |c: &Change| {
            matches!(
                c,
                Change::Alive { alive: false, .. } | Change::Resync { .. }
            )
        };
        if changes.iter().any(gone) {
            return Ok(());
        }
    }
}

fn deployment<'a>(
    deployments: &'a mut BTreeMap<String, Deployment>,
    service: &str,
) -> Result<&'a mut Deployment, OrchestratorError> {
    deployments
        .get_mut(service)
        .ok_or_else(|| OrchestratorError::Unknown(service.into()))
}
