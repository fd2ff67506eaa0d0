//! The commands: ADD, DEL, CHECK, GC, STATUS, VERSION (one file each; VERSION is here).

use std::path::{Path, PathBuf};

use overlay_core::catalog::{Catalog, CatalogError};
use overlay_core::container::ContainerError;
use overlay_core::dataplane::{Dataplane, DataplaneError};
use overlay_core::model::CniAttachment;
use overlay_core::netns::{self, THREAD_SELF_NET};
use overlay_core::store::StoreSpec;
use serde_json::{json, Value};

use crate::conf::{self, NetConf, SUPPORTED_VERSIONS};
use crate::env::{self, Command, Env};
use crate::error::*;
use crate::ipam;

/// The endpoint id of a CNI attachment: `cni-` and 32 hex digits of a stable hash of the
/// container id and interface name (container ids may be 64 characters; endpoint ids may not
/// exceed 64). The real ids are recorded in `Endpoint::cni`.
pub fn endpoint_id(container_id: &str, ifname: &str) -> String {
    let fnv = |basis: u64| {
        let mut h = basis;
        for b in container_id.bytes().chain([0u8]).chain(ifname.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    format!(
        "cni-{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x6c62_272e_07bb_0142)
    )
}

/// Runs one call. `get` reads the environment; `stdin` is what the runtime wrote. Returns the
/// JSON to print on success (`None`: print nothing).
pub fn execute(get: &dyn Fn(&str) -> Option<String>, stdin: &[u8]) -> CniResult<Option<Value>> {
    let command = env::command(get)?;
    if command == Command::Version {
        return Ok(Some(version(stdin)));
    }
    let conf = conf::parse(stdin)?;
    let env = env::parse(get)?;
    if matches!(command, Command::Gc | Command::Status) && conf.cni_version != "1.1.0" {
        return Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!(
                "{command:?} needs cniVersion 1.1.0; the configuration has {}",
                conf.cni_version
            ),
        ));
    }
    let call = Call {
        node: node_name(&conf)?,
        conf,
        env,
        stdin,
    };
    match command {
        Command::Add => call.add().map(Some),
        Command::Del => call.del().map(|()| None),
        Command::Check => call.check().map(|()| None),
        Command::Gc => call.gc().map(|()| None),
        Command::Status => call.status().map(|()| None),
        Command::Version => unreachable!("handled above"),
    }
}

fn version(stdin: &[u8]) -> Value {
    json!({
        "cniVersion": conf::answer_version(stdin),
        "supportedVersions": SUPPORTED_VERSIONS,
    })
}

fn node_name(conf: &NetConf) -> CniResult<String> {
    if let Some(n) = &conf.node {
        return Ok(n.clone());
    }
    let host = nix::unistd::gethostname()
        .map_err(|e| CniError::new(IO_FAILURE, format!("cannot read the hostname: {e}")))?;
    let host = host.to_string_lossy().into_owned();
    overlay_core::validate::node_name(&host).map_err(|e| {
        CniError::new(
            INVALID_CONFIG,
            format!("field node is not set and the hostname cannot be a node name: {e}"),
        )
    })?;
    Ok(host)
}

fn catalog_err(e: CatalogError) -> CniError {
    match e {
        CatalogError::NotFound { kind, name } if kind == "network" || kind == "node" => {
            CniError::new(
                INVALID_CONFIG,
                format!("unknown {kind} '{name}' in the vxmesh store"),
            )
        }
        CatalogError::NotFound { .. } => CniError::new(UNKNOWN_CONTAINER, e.to_string()),
        CatalogError::Exists { .. } => CniError::new(ALREADY_ATTACHED, e.to_string()),
        CatalogError::Exhausted { .. } => CniError::new(ADDRESS_UNAVAILABLE, e.to_string()),
        CatalogError::Invalid(ref v)
            if v.to_string().starts_with("invalid ip")
                || v.to_string().starts_with("invalid mac") =>
        {
            CniError::new(ADDRESS_UNAVAILABLE, e.to_string())
        }
        CatalogError::Invalid(_) => CniError::new(INVALID_CONFIG, e.to_string()),
        CatalogError::InUse { .. } => CniError::new(INVALID_CONFIG, e.to_string()),
        CatalogError::Contended(_) => CniError::new(TRY_AGAIN, e.to_string()),
        // etcd unreachable, no leader, or no answer in time: the runtime may try again.
        CatalogError::Store(ref s) if s.is_unavailable() => CniError::new(TRY_AGAIN, e.to_string()),
        CatalogError::Corrupt { .. } | CatalogError::Store(_) => {
            CniError::new(IO_FAILURE, e.to_string())
        }
    }
}

fn dataplane_err(e: DataplaneError) -> CniError {
    match e {
        DataplaneError::LinkExists { .. } => CniError::new(IFNAME_EXISTS, e.to_string()),
        _ => CniError::new(DATAPLANE, e.to_string()),
    }
}

fn netns_err(e: netns::NetnsError) -> CniError {
    if e.is_not_found() {
        CniError::new(INVALID_ENV, format!("CNI_NETNS: {e}"))
    } else {
        CniError::new(DATAPLANE, e.to_string())
    }
}

fn container_err(e: ContainerError) -> CniError {
    match e {
        ContainerError::Catalog(c) => catalog_err(c),
        ContainerError::Dataplane(d) => dataplane_err(d),
        ContainerError::Netns(n) => netns_err(n),
        e @ ContainerError::NoBridge { .. } => CniError::new(TRY_AGAIN, e.to_string()),
        e @ ContainerError::Mtu { .. } => CniError::new(INVALID_CONFIG, format!("field {e}")),
    }
}

/// Runs `f` with a netlink connection inside the namespace at `path`.
fn in_netns<T, F, Fut>(path: &Path, f: F) -> CniResult<T>
where
    F: FnOnce(Dataplane) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, DataplaneError>>,
    T: Send + 'static,
{
    netns::block_on_in(path, move || async move { f(Dataplane::connect()?).await })
        .map_err(netns_err)?
        .map_err(dataplane_err)
}

fn host_ns() -> PathBuf {
    PathBuf::from(THREAD_SELF_NET)
}

mod add;
mod check;
mod del;
mod gc;
mod status;

struct Call<'a> {
    conf: NetConf,
    env: Env,
    node: String,
    stdin: &'a [u8],
}

impl Call<'_> {
    fn container_id(&self) -> &str {
        self.env.container_id.as_deref().unwrap_or_default()
    }

    fn ifname(&self) -> &str {
        self.env.ifname.as_deref().unwrap_or_default()
    }

    fn id(&self) -> String {
        endpoint_id(self.container_id(), self.ifname())
    }

    fn attachment(&self) -> CniAttachment {
        CniAttachment {
            container_id: self.container_id().to_string(),
            ifname: self.ifname().to_string(),
        }
    }

    /// Opens the store; `None` when it is an SQLite file that does not exist.
    fn open_store(&self) -> CniResult<Option<Catalog>> {
        if let StoreSpec::Sqlite(path) = &self.conf.store {
            if !path.exists() {
                return Ok(None);
            }
        }
        let store = overlay_core::store::open(&self.conf.store).map_err(|e| {
            let code = if e.is_unavailable() {
                TRY_AGAIN
            } else {
                IO_FAILURE
            };
            CniError::new(code, format!("cannot open the vxmesh store: {e}"))
        })?;
        Ok(Some(Catalog::new(store)))
    }

    fn catalog(&self) -> CniResult<Catalog> {
        self.open_store()?.ok_or_else(|| {
            CniError::new(
                IO_FAILURE,
                format!(
                    "the vxmesh store {} does not exist (set \"store\" in the configuration)",
                    self.conf.store
                ),
            )
        })
    }

    fn ipam_del(&self, container_id: Option<&str>, ifname: Option<&str>) -> CniResult<()> {
        if let Some(plugin) = &self.conf.ipam_type {
            ipam::exec(plugin, &self.env, "DEL", container_id, ifname, self.stdin)?;
        }
        Ok(())
    }
}

fn list<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = items.map(|i| i.to_string()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
