//! The caller's side of a running agent: its status, a wait for a revision, and its stop.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use overlay_core::catalog::Catalog;
use tokio::sync::watch;

use super::claim::Claim;
use super::{AgentConfig, AgentError};

/// What an agent reports about itself: through its [`AgentHandle`], and in the store (read
/// with [`crate::wait::agent_statuses`], waited on with [`crate::wait::wait_applied`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentStatus {
    /// The node.
    pub node: String,
    /// The store revision of the snapshot its last pass reconciled (0: no pass yet). Every
    /// change up to this revision is in the kernel, except what [`errors`](Self::errors) names.
    pub applied_revision: u64,
    /// Passes run since the agent started.
    pub passes: u64,
    /// The errors of the last pass, one line each (empty: the kernel is as the store says);
    /// once the agent has ended on an error, that error.
    pub errors: Vec<String>,
    /// The store error of the current spell without the store (`None`: reachable).
    pub store_outage: Option<String>,
    /// False once the agent has ended.
    pub running: bool,
}

impl AgentStatus {
    pub(super) fn starting(node: &str) -> AgentStatus {
        AgentStatus {
            node: node.to_string(),
            applied_revision: 0,
            passes: 0,
            errors: Vec::new(),
            store_outage: None,
            running: true,
        }
    }
}

/// A running agent, owned by its caller. Dropping the handle stops the agent (as
/// [`stop`](Self::stop) does, ignoring its result). `Send + Sync`.
pub struct AgentHandle {
    node: String,
    catalog: Catalog,
    stop: watch::Sender<Stop>,
    status: watch::Receiver<AgentStatus>,
    thread: Option<std::thread::JoinHandle<Result<(), AgentError>>>,
}

/// What the handle asks of the agent's loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// Keep going.
    Running,
    /// Stop and remove the heartbeat key (the node's liveness stays until the lease expires).
    Clean,
    /// Stop and leave every key to the lease, as a crash would.
    Abort,
}

/// Starts the agent's thread, which enters the namespace and runs the passes.
pub(super) fn start(
    catalog: Catalog,
    config: AgentConfig,
    claim: Claim,
    netns: OwnedFd,
    netns_path: PathBuf,
) -> Result<AgentHandle, AgentError> {
    let node = config.node.clone();
    let (stop_tx, stop_rx) = watch::channel(Stop::Running);
    let (status_tx, status_rx) = watch::channel(AgentStatus::starting(&node));
    let span = tracing::info_span!("agent", node = %node);
    let c = catalog.clone();
    let thread = std::thread::Builder::new()
        .name(format!("agent-{node}").chars().take(15).collect())
        .spawn(move || {
            let _claim = claim;
            let _span = span.enter();
            let r = run(c, config, &netns, netns_path, stop_rx, status_tx.clone());
            if let Err(e) = &r {
                tracing::error!("agent failed: {e}");
            }
            // The namespace stays reachable through `netns` until here.
            drop(netns);
            status_tx.send_modify(|s| {
                s.running = false;
                if let Err(e) = &r {
                    s.errors = vec![format!("the agent ended: {e}")];
                }
            });
            r
        })?;
    Ok(AgentHandle {
        node,
        catalog,
        stop: stop_tx,
        status: status_rx,
        thread: Some(thread),
    })
}

/// The agent's thread: into the host's namespace, then the passes on a runtime made here, so
/// that every thread the agent starts is made from this one and starts in that namespace.
fn run(
    catalog: Catalog,
    config: AgentConfig,
    netns: &OwnedFd,
    netns_path: PathBuf,
    stop: watch::Receiver<Stop>,
    status: watch::Sender<AgentStatus>,
) -> Result<(), AgentError> {
    nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
        AgentError::Netns {
            path: netns_path,
            source: e.into(),
        }
    })?;
    // The passes run on this thread (block_on); the health reports and the checks are tasks
    // on two workers of their own, so a long pass (loading the datapath took 14 s on a loaded
    // machine) cannot hold them up.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("agent-worker")
        .enable_all()
        .build()?;
    rt.block_on(super::run_loop::run_loop(catalog, config, stop, status))
}

impl AgentHandle {
    /// The node this agent runs for.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Its status now.
    pub fn status(&self) -> AgentStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every new status (after each pass, and when the agent ends).
    pub fn subscribe(&self) -> watch::Receiver<AgentStatus> {
        self.status.clone()
    }

    /// True until the agent has ended (stopped, or failed).
    pub fn is_running(&self) -> bool {
        self.status.borrow().running
    }

    /// Waits until the agent has applied `revision` (a store revision read after the caller's
    /// write, e.g. `catalog.store().revision()?`): a pass reconciled a snapshot at or after it,
    /// or nothing the agent follows changed between the revision it applied and `revision`.
    /// Returns the status then (its `errors` say what could not be applied).
    ///
    /// Errors: [`AgentError::NotApplied`] after `timeout`; [`AgentError::Stopped`] when the
    /// agent ended first.
    pub async fn applied(
        &self,
        revision: u64,
        timeout: Duration,
    ) -> Result<AgentStatus, AgentError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.status.clone();
        loop {
            let s = rx.borrow_and_update().clone();
            if s.applied_revision >= revision {
                return Ok(s);
            }
            if !s.running {
                return Err(AgentError::Stopped(self.node.clone()));
            }
            if s.passes > 0
                && crate::wait::unchanged_between(&self.catalog, s.applied_revision, revision).await
            {
                return Ok(s);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(AgentError::Stopped(self.node.clone())),
                Err(_) => {
                    return Err(AgentError::NotApplied {
                        node: self.node.clone(),
                        revision,
                        applied: s.applied_revision,
                        waited: timeout,
                    })
                }
            }
        }
    }

    /// Waits (async) until the agent has ended on its own (a fatal error) or was stopped.
    pub async fn ended(&self) {
        let mut rx = self.status.clone();
        let _ = rx.wait_for(|s| !s.running).await;
    }

    /// Stops the agent after its current pass and waits for its threads (normally well under
    /// a second; blocking: from async code call it in `spawn_blocking`). The kernel state is
    /// left in place, the WireGuard interface included; the node's liveness stays in the store
    /// until its lease expires, so an agent started again within the lease's TTL disturbs
    /// nothing. Returns the error the agent ended with, if it failed on its own.
    pub fn stop(mut self) -> Result<(), AgentError> {
        self.stop_and_join(Stop::Clean)
    }

    /// Ends the agent as a crash would (for tests of host failure, and for a caller that is
    /// going down hard): its threads stop, but its heartbeat key, its node's liveness and its
    /// health reports stay in the store until the lease expires ([`AgentConfig::lease_ttl`]),
    /// so the other hosts keep this node's entries and backends until then, exactly as after a
    /// SIGKILL of `vxmesh agent`. The kernel state stays, as with [`stop`](Self::stop).
    pub fn abort(mut self) -> Result<(), AgentError> {
        self.stop_and_join(Stop::Abort)
    }

    fn stop_and_join(&mut self, how: Stop) -> Result<(), AgentError> {
        let _ = self.stop.send(how);
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(AgentError::Panicked(self.node.clone()))),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("node", &self.node)
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join(Stop::Clean) {
            tracing::warn!(node = %self.node, "agent ended with: {e}");
        }
    }
}
