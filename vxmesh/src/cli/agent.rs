//! `vxmesh agent`

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use vxmesh::agent::{self, AgentConfig};
use vxmesh::Catalog;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// This host's node name (added with `vxmesh node add`).
    #[arg(long)]
    pub node: String,
    /// Run inside this named network namespace (/run/netns/NAME) instead of the current one.
    #[arg(long)]
    pub netns: Option<String>,
    /// Seconds between full passes when the store does not change (repairs changes made by hand).
    #[arg(long, default_value_t = 2.0)]
    pub resync: f64,
}

/// Enters the namespace before any thread is started, so every thread of the agent lives there.
pub fn enter_netns(args: &AgentArgs) -> Result<()> {
    if let Some(ns) = &args.netns {
        if ns.is_empty() || ns.contains('/') || ns.starts_with('.') {
            anyhow::bail!("invalid netns '{ns}': must be a name under /run/netns");
        }
        let path = overlay_core::netns::path(ns);
        overlay_core::netns::enter(&path).with_context(|| format!("--netns {ns}"))?;
    }
    Ok(())
}

pub fn run(args: AgentArgs, catalog: Catalog) -> Result<()> {
    if !(args.resync.is_finite() && args.resync > 0.0) {
        anyhow::bail!(
            "invalid resync '{}': must be a positive number of seconds",
            args.resync
        );
    }
    agent::run(
        catalog,
        AgentConfig {
            node: args.node.clone(),
            resync: Duration::from_secs_f64(args.resync),
        },
    )
    .with_context(|| format!("agent for node {}", args.node))
}
