//! The agent's heartbeat: two keys on a store lease, kept alive while the agent runs, so others
//! can tell whether a node's agent runs (the CNI plugin's STATUS, service backends: the
//! heartbeat key, gone at once on a clean stop) and whether the node is alive (every other
//! host's entries toward it: the liveness key, gone only when the lease expires).

use std::time::Duration;

use overlay_core::catalog::Catalog;
use overlay_core::store::LeaseId;

/// The lease's default TTL: the node is taken out of every other host this long after its
/// agent died (its keepalives are sent three times per TTL, so a few may be lost).
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);

/// How often the lease is kept alive: three times per TTL, at most every 2 s.
fn every(ttl: Duration) -> Duration {
    (ttl / 3).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

/// Reads the heartbeat's current lease; cheap to clone, usable from any thread.
#[derive(Clone, Debug)]
pub struct LeaseHandle(std::sync::Arc<std::sync::Mutex<Option<LeaseId>>>);

impl LeaseHandle {
    /// The current lease, if the agent has been announced.
    pub fn get(&self) -> Option<LeaseId> {
        *self.0.lock().unwrap()
    }
}

/// Announces the agent and keeps it alive until `stop`ped.
pub struct Heartbeat {
    catalog: Catalog,
    node: String,
    lease: std::sync::Arc<std::sync::Mutex<Option<LeaseId>>>,
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: std::thread::JoinHandle<()>,
}

impl Heartbeat {
    /// Starts the heartbeat with a lease of `ttl`, on a thread of its own: a pass of the
    /// agent that keeps its runtime busy never delays a keepalive (the lease is short). While
    /// the store is unreachable it keeps trying every `ttl / 3`; a lease that expired
    /// meanwhile is replaced by a new one (the node rejoins with no manual step).
    pub fn start(catalog: Catalog, node: String, ttl: Duration) -> Heartbeat {
        let lease = std::sync::Arc::new(std::sync::Mutex::new(None));
        let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let (c, l, n, st) = (catalog.clone(), lease.clone(), node.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("vxmesh-heartbeat".into())
            .spawn({
                // The agent's span (its node's name on every line).
                let span = tracing::Span::current();
                move || span.in_scope(|| beat(&c, &n, ttl, &l, &st))
            })
            .expect("start the heartbeat thread");
        Heartbeat {
            catalog,
            node,
            lease,
            stop,
            thread,
        }
    }

    /// The lease the heartbeat key lives on, once announced (`None` before the first write
    /// succeeded). Records written on it (health reports) go with the agent.
    pub fn lease(&self) -> LeaseHandle {
        LeaseHandle(self.lease.clone())
    }

    /// Stops the heartbeat (after the store call in flight, if any) and removes the agent's
    /// key at once; the lease (the node's liveness key and the health reports on it) expires
    /// after its TTL.
    pub fn stop(self) {
        let (catalog, node, lease) = self.halt();
        if let Some(id) = lease {
            if let Err(e) = catalog.retire_agent(&node, id) {
                tracing::warn!("removing the agent's heartbeat: {e}");
            }
        }
    }

    /// Stops the keepalives and leaves every key in place, as a crash would: the agent key,
    /// the node's liveness and the health reports go when the lease expires.
    pub fn abandon(self) {
        self.halt();
    }

    /// Stops the thread (after the store call in flight, if any); returns what `stop` needs
    /// to retire the key: the catalog, the node and the lease last used.
    fn halt(self) -> (Catalog, String, Option<LeaseId>) {
        *self.stop.0.lock().unwrap() = true;
        self.stop.1.notify_all();
        let _ = self.thread.join();
        let lease = *self.lease.lock().unwrap();
        (self.catalog, self.node, lease)
    }
}

/// The heartbeat thread: announce, then keep alive every `ttl / 3`, until told to stop.
fn beat(
    catalog: &Catalog,
    node: &str,
    ttl: Duration,
    lease: &std::sync::Mutex<Option<LeaseId>>,
    stop: &(std::sync::Mutex<bool>, std::sync::Condvar),
) {
    let mut failing = false;
    loop {
        let current = *lease.lock().unwrap();
        let r = match current {
            Some(id) => catalog.keep_agent_alive(node, id, ttl),
            None => catalog.announce_agent(node, ttl),
        };
        match r {
            Ok(id) => {
                if failing || current != Some(id) {
                    tracing::info!(lease = id, ttl = ?ttl, "agent heartbeat on the store");
                }
                failing = false;
                *lease.lock().unwrap() = Some(id);
            }
            Err(e) => {
                failing = true;
                tracing::warn!("agent heartbeat: {e}; trying again in {:?}", every(ttl));
            }
        }
        let stopped = stop.0.lock().unwrap();
        let (stopped, _) = stop
            .1
            .wait_timeout_while(stopped, every(ttl), |s| !*s)
            .unwrap();
        if *stopped {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalives_three_times_per_ttl() {
        assert_eq!(
            every(DEFAULT_TTL),
            Duration::from_millis(1666) + Duration::from_nanos(666_666)
        );
        assert_eq!(every(Duration::from_secs(60)), Duration::from_secs(2));
        assert_eq!(every(Duration::from_millis(90)), Duration::from_millis(100));
    }
}
