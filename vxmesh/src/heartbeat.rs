//! The agent's heartbeat: a key on a store lease, kept alive while the agent runs, so others
//! (the CNI plugin's STATUS, `node ls` later) can tell whether a node's agent is alive.

use std::time::Duration;

use overlay_core::catalog::Catalog;
use overlay_core::store::LeaseId;

/// The lease outlives a few missed keepalives, and expires soon after the agent dies.
pub const TTL: Duration = Duration::from_secs(10);
const EVERY: Duration = Duration::from_secs(2);

/// Reads the heartbeat's current lease; cheap to clone, usable from any thread.
#[derive(Clone, Debug)]
pub struct LeaseHandle(std::sync::Arc<std::sync::Mutex<Option<LeaseId>>>);

impl LeaseHandle {
    /// The current lease, if the agent has been announced.
    pub fn get(&self) -> Option<LeaseId> {
        *self.0.lock().unwrap()
    }
}

/// Announces the agent and keeps it alive until the returned handle is dropped or `stop`ped.
pub struct Heartbeat {
    catalog: Catalog,
    node: String,
    lease: std::sync::Arc<std::sync::Mutex<Option<LeaseId>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    /// Starts the heartbeat on the current tokio runtime.
    pub fn start(catalog: Catalog, node: String) -> Heartbeat {
        let lease = std::sync::Arc::new(std::sync::Mutex::new(None));
        let (c, l, name) = (catalog.clone(), lease.clone(), node.clone());
        let task = tokio::spawn(async move {
            loop {
                let (c2, n2, current) = (c.clone(), node.clone(), *l.lock().unwrap());
                let r = tokio::task::spawn_blocking(move || match current {
                    Some(id) => c2.keep_agent_alive(&n2, id, TTL),
                    None => c2.announce_agent(&n2, TTL),
                })
                .await
                .expect("heartbeat task panicked");
                match r {
                    Ok(id) => *l.lock().unwrap() = Some(id),
                    Err(e) => tracing::warn!("agent heartbeat: {e}"),
                }
                tokio::time::sleep(EVERY).await;
            }
        });
        Heartbeat {
            catalog,
            node: name,
            lease,
            task,
        }
    }

    /// The lease the heartbeat key lives on, once announced (`None` before the first write
    /// succeeded). Records written on it (health reports) go with the agent.
    pub fn lease(&self) -> LeaseHandle {
        LeaseHandle(self.lease.clone())
    }

    /// Stops the heartbeat and removes the agent's key at once; the lease (and the health
    /// reports on it) expires after [`TTL`].
    pub fn stop(self) {
        self.task.abort();
        if let Some(id) = *self.lease.lock().unwrap() {
            if let Err(e) = self.catalog.retire_agent(&self.node, id) {
                tracing::warn!("removing the agent's heartbeat: {e}");
            }
        }
    }
}
