//! Checks a set of targets forever, each on its own interval, and reports state changes.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::net::SocketAddrV4;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::{probe, HealthError, SocketSource, State, Tracker};
use crate::service::HealthSpec;

/// One backend to check: `key` is the caller's name for it (the agent uses (service,
/// endpoint)), `addr` the backend's address and health port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<K> {
    pub key: K,
    pub addr: SocketAddrV4,
    pub spec: HealthSpec,
}

/// A target whose state changed (the first result of a new target is reported too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition<K> {
    pub key: K,
    pub state: State,
    /// The result of the check that made the change (`connected`, `HTTP 500`, …).
    pub detail: String,
}

struct Running {
    addr: SocketAddrV4,
    spec: HealthSpec,
    task: JoinHandle<()>,
}

/// Runs the checks of a changing set of targets on a tokio runtime; each target gets a task
/// that checks it every `interval_ms` (the first check at once) and sends a [`Transition`]
/// when its [`Tracker`] changes state. Dropping the runner stops every check.
pub struct HealthRunner<K> {
    runtime: Handle,
    sockets: SocketSource,
    events: mpsc::UnboundedSender<Transition<K>>,
    running: HashMap<K, Running>,
}

impl<K> HealthRunner<K>
where
    K: Clone + Eq + Hash + Debug + Send + Sync + 'static,
{
    /// A runner on the current tokio runtime that makes its sockets with `sockets` and sends
    /// transitions to `events`. Errors: called outside a tokio runtime.
    pub fn new(
        sockets: SocketSource,
        events: mpsc::UnboundedSender<Transition<K>>,
    ) -> Result<Self, HealthError> {
        let runtime = Handle::try_current().map_err(|_| HealthError::NoRuntime)?;
        Ok(HealthRunner {
            runtime,
            sockets,
            events,
            running: HashMap::new(),
        })
    }

    /// Makes the checked set exactly `targets`: starts the new ones, stops those not listed,
    /// and restarts (from state unknown) those whose address or check changed. Targets that
    /// stay as they were keep their state and schedule.
    pub fn set_targets(&mut self, targets: impl IntoIterator<Item = Target<K>>) {
        let mut wanted: HashMap<K, Target<K>> =
            targets.into_iter().map(|t| (t.key.clone(), t)).collect();
        self.running.retain(|key, run| {
            let keep = wanted
                .get(key)
                .is_some_and(|t| t.addr == run.addr && t.spec == run.spec);
            if keep {
                wanted.remove(key);
            } else {
                run.task.abort();
            }
            keep
        });
        for (key, t) in wanted {
            let task =
                self.runtime
                    .spawn(watch(t.clone(), self.sockets.clone(), self.events.clone()));
            self.running.insert(
                key,
                Running {
                    addr: t.addr,
                    spec: t.spec,
                    task,
                },
            );
        }
    }

    /// How many targets are being checked.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }
}

impl<K> Drop for HealthRunner<K> {
    fn drop(&mut self) {
        for run in self.running.values() {
            run.task.abort();
        }
    }
}

async fn watch<K: Clone + Debug>(
    target: Target<K>,
    sockets: SocketSource,
    events: mpsc::UnboundedSender<Transition<K>>,
) {
    let spec = &target.spec;
    let mut tracker = Tracker::new(spec.rise, spec.fall);
    let timeout = Duration::from_millis(u64::from(spec.timeout_ms));
    let mut ticks =
        tokio::time::interval(Duration::from_millis(u64::from(spec.interval_ms.max(1))));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result = probe::check(&sockets, target.addr, &spec.check, timeout).await;
        tracing::trace!(target_key = ?target.key, addr = %target.addr, ok = result.ok, detail = %result.detail, "health check");
        if let Some(state) = tracker.observe(result.ok) {
            tracing::info!(target_key = ?target.key, addr = %target.addr, ?state, detail = %result.detail, "health changed");
            let sent = events.send(Transition {
                key: target.key.clone(),
                state,
                detail: result.detail,
            });
            if sent.is_err() {
                return; // nobody listens any more
            }
        }
    }
}
