//! The store options every command takes, and `vxmesh store`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use vxmesh::{Catalog, StoreOptions, StoreSpec};

/// How to reach an etcd store (TLS, credentials, time limit), as etcdctl takes them
/// (`--cacert`, `--cert`, `--key`, `--user USER[:PASSWORD]`, `--password`).
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// etcd: PEM file of the CA that signed the members' certificates (turns TLS on).
    #[arg(long, global = true, env = "VXMESH_STORE_CA")]
    pub store_ca: Option<PathBuf>,
    /// etcd: PEM file of this client's certificate (with --store-key).
    #[arg(long, global = true, env = "VXMESH_STORE_CERT")]
    pub store_cert: Option<PathBuf>,
    /// etcd: PEM file of this client's private key.
    #[arg(long, global = true, env = "VXMESH_STORE_KEY")]
    pub store_key: Option<PathBuf>,
    /// etcd: USER or USER:PASSWORD (etcd's authentication).
    #[arg(long, global = true, env = "VXMESH_STORE_USER")]
    pub store_user: Option<String>,
    /// etcd: the password, when --store-user has none.
    #[arg(
        long,
        global = true,
        env = "VXMESH_STORE_PASSWORD",
        hide_env_values = true
    )]
    pub store_password: Option<String>,
    /// etcd: seconds each store operation may take before it fails (default 5).
    #[arg(long, global = true, env = "VXMESH_STORE_TIMEOUT")]
    pub store_timeout: Option<f64>,
}

impl StoreArgs {
    /// The store `store` (the `--store` value) names, with these options applied.
    pub fn spec(&self, store: &Path) -> Result<StoreSpec> {
        let text = store
            .to_str()
            .with_context(|| format!("invalid store '{}': not UTF-8", store.display()))?;
        let timeout = match self.store_timeout {
            None => None,
            Some(t) if t.is_finite() && t > 0.0 && t <= 3600.0 => Some(Duration::from_secs_f64(t)),
            Some(t) => {
                anyhow::bail!("invalid store-timeout '{t}': must be 0-3600 seconds, more than 0")
            }
        };
        let options = StoreOptions {
            ca: self.store_ca.clone(),
            cert: self.store_cert.clone(),
            key: self.store_key.clone(),
            user: self.store_user.clone(),
            password: self.store_password.clone(),
            timeout,
        };
        Ok(StoreSpec::parse(text)?.with_options(&options)?)
    }

    /// Opens the store and a catalog over it.
    pub fn catalog(&self, store: &Path) -> Result<Catalog> {
        let spec = self.spec(store)?;
        vxmesh::open_store_catalog(&spec).with_context(|| format!("opening the store {spec}"))
    }
}

/// `vxmesh store …`
#[derive(Debug, clap::Subcommand)]
pub enum StoreCmd {
    /// Copy vxmesh's state (networks, nodes, endpoints, addresses, services) from one store
    /// to another, e.g. a single machine's SQLite file into etcd. Agent heartbeats, health
    /// reports and host reports are not copied: the agents, restarted on the new store,
    /// write their own. Refuses a destination that holds vxmesh keys unless --force.
    Copy {
        /// The source: sqlite:PATH (or PATH) or etcd://HOST:PORT[,…].
        #[arg(long)]
        from: String,
        /// The destination, as --from.
        #[arg(long)]
        to: String,
        /// Replace what the destination holds under /vxmesh/v1/.
        #[arg(long)]
        force: bool,
    },
}

impl StoreArgs {
    /// A store named on the command line (`--from`, `--to`): the etcd options apply to an
    /// etcd store only.
    fn open_named(&self, field: &str, spec: &str) -> Result<std::sync::Arc<dyn vxmesh::Store>> {
        let parsed = StoreSpec::parse(spec).with_context(|| format!("--{field}"))?;
        let spec = if parsed.is_etcd() {
            self.spec(Path::new(spec))?
        } else {
            parsed
        };
        overlay_core::store::open(&spec).with_context(|| format!("opening the store {spec}"))
    }
}

pub fn run(cmd: StoreCmd, args: &StoreArgs, json: bool) -> Result<()> {
    match cmd {
        StoreCmd::Copy { from, to, force } => {
            let src = args.open_named("from", &from)?;
            let dst = args.open_named("to", &to)?;
            let fix = ingress_lb::catalog::ServiceCopyFix;
            let r = overlay_core::store::copy::copy(&*src, &*dst, force, Some(&fix))
                .with_context(|| format!("copying {from} to {to}"))?;
            if json {
                super::output::json(&serde_json::json!({
                    "from": from,
                    "to": to,
                    "keys": r.keys,
                    "by_kind": r.by_kind,
                    "replaced": r.replaced,
                    "source_revision": r.source_revision,
                }));
            } else {
                let kinds: Vec<String> =
                    r.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
                println!(
                    "copied {} key(s) from {from} (revision {}) to {to}{}: {}",
                    r.keys,
                    r.source_revision,
                    if r.replaced > 0 {
                        format!(", replacing {} key(s)", r.replaced)
                    } else {
                        String::new()
                    },
                    kinds.join(", ")
                );
            }
            Ok(())
        }
    }
}
