//! The per-host agent: watches the store and reconciles this host's kernel to it.

use std::time::Duration;

use overlay_core::catalog::Catalog;
use overlay_core::dataplane::Dataplane;
use overlay_core::keys;
use overlay_core::reconcile::{Desired, Reconciler};
use overlay_core::store::StoreError;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: String,
    /// A full pass runs at least this often even without store changes, so that anything
    /// changed by hand in the kernel is put back.
    pub resync: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Catalog(#[from] overlay_core::CatalogError),
    #[error(transparent)]
    Dataplane(#[from] overlay_core::dataplane::DataplaneError),
    #[error("cannot start the agent's runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Runs until SIGINT or SIGTERM. The kernel state is left in place on exit, so a restarted
/// agent finds everything as it should be and changes nothing.
pub fn run(catalog: Catalog, config: AgentConfig) -> Result<(), AgentError> {
    // Fail early and clearly on a node the store does not know.
    catalog.node(&config.node)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_loop(catalog, config))
}

async fn run_loop(catalog: Catalog, config: AgentConfig) -> Result<(), AgentError> {
    let reconciler = Reconciler::new(Dataplane::connect()?);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tracing::info!(node = %config.node, "agent started");
    let mut passes: u64 = 0;
    loop {
        let snapshot = {
            let c = catalog.clone();
            tokio::task::spawn_blocking(move || c.snapshot())
                .await
                .expect("snapshot task panicked")?
        };
        for p in &snapshot.problems {
            tracing::warn!(problem = %p, "skipping a bad record in the store");
        }
        let desired = Desired::compute(&snapshot, &config.node);
        if desired.node.is_none() {
            tracing::warn!(node = %config.node, "this node is not in the store: removing everything vxmesh made here");
        }
        let claimed = || {
            catalog.endpoints(None).ok().map(|eps| {
                eps.into_iter()
                    .filter(|e| e.node == config.node)
                    .filter_map(|e| e.host_ifname)
                    .collect()
            })
        };
        let report = reconciler.apply(&desired, &claimed).await;
        passes += 1;
        for c in &report.changes {
            tracing::info!(revision = snapshot.revision, "{c}");
        }
        for e in &report.errors {
            tracing::error!(revision = snapshot.revision, "{e}");
        }
        tracing::debug!(
            pass = passes,
            revision = snapshot.revision,
            changes = report.changes.len(),
            errors = report.errors.len(),
            "reconciled"
        );
        // Wait for a change in the store (or the resync interval), or a signal.
        let store = catalog.store().clone();
        let (after, resync) = (snapshot.revision, config.resync);
        let wait = tokio::task::spawn_blocking(move || store.watch(keys::ROOT, after, resync));
        tokio::select! {
            r = wait => match r.expect("watch task panicked") {
                Ok(_) | Err(StoreError::Compacted { .. }) => {}
                Err(e) => {
                    tracing::error!("watching the store: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    tracing::info!(node = %config.node, "agent stopping; kernel state left in place");
    Ok(())
}
