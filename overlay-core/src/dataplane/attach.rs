//! Attaching a container's network namespace to a bridge with a veth pair (the path the CNI
//! plugin and the lab share), and detaching it again.

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};

use super::{validate_ifname, Dataplane, DataplaneError, DefaultRoute};
use crate::mac::MacAddr;
use crate::netns::{self, NetnsError, THREAD_SELF_NET};

/// What [`attach`] should build.
#[derive(Debug, Clone)]
pub struct AttachSpec {
    /// The namespace holding the bridge; `None` = the calling thread's namespace.
    pub host_netns: Option<PathBuf>,
    pub container_netns: PathBuf,
    pub bridge: String,
    pub host_ifname: String,
    pub container_ifname: String,
    /// The container's address with its prefix length.
    pub address: Ipv4Net,
    /// The network's gateway (inside `address`'s subnet); `None`: no default route at all.
    pub gateway: Option<Ipv4Addr>,
    /// Whether the default route via `gateway` is installed when the container namespace has
    /// one already (it may be attached to other networks, by vxmesh or another plugin).
    pub default_route: DefaultRoute,
    pub mac: MacAddr,
    pub mtu: u32,
}

/// What [`attach`] built.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attachment {
    pub host_ifname: String,
    pub host_index: u32,
    pub container_ifname: String,
    pub container_index: u32,
    pub mac: MacAddr,
    /// The gateway of the default route this attachment installed (`default via GATEWAY dev
    /// container_ifname`); `None` when it installed none (see `AttachSpec::default_route`).
    pub default_route: Option<Ipv4Addr>,
}

fn validate(spec: &AttachSpec) -> Result<(), DataplaneError> {
    validate_ifname(&spec.bridge)?;
    validate_ifname(&spec.host_ifname)?;
    validate_ifname(&spec.container_ifname)?;
    if !(68..=65535).contains(&spec.mtu) {
        return Err(DataplaneError::invalid(
            format_args!("mtu {}", spec.mtu),
            "must be 68..=65535",
        ));
    }
    if spec.mac.is_zero() || spec.mac.is_multicast() {
        return Err(DataplaneError::invalid(
            format_args!("mac {}", spec.mac),
            "must be a unicast, non-zero address",
        ));
    }
    if let Some(gw) = spec.gateway {
        if !spec.address.contains(&gw) || gw == spec.address.addr() {
            return Err(DataplaneError::invalid(
                format_args!("gateway {gw}"),
                format_args!("must be another address inside {}", spec.address.trunc()),
            ));
        }
    }
    Ok(())
}

/// Runs `f` on a runtime inside the namespace of `fd` (a dup of it, so `fd` stays usable).
fn in_ns<F, Fut, T>(fd: &OwnedFd, path: &Path, f: F) -> Result<T, DataplaneError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, DataplaneError>>,
    T: Send + 'static,
{
    let dup = fd.try_clone().map_err(|source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    netns::block_on_in_fd(dup, path, f)?
}

/// Creates a veth pair, puts one end into the container namespace (named, addressed, up, so
/// with its subnet route; with a default route as `AttachSpec::default_route` says) and
/// enslaves the other to the bridge. Routes and addresses the namespace already has (other
/// attachments, other plugins) are left as they are, except that [`DefaultRoute::Replace`]
/// replaces the default route. Blocking: it runs its own threads and
/// runtimes, so it can be called from a plain thread or from inside a tokio runtime. On failure
/// part way it deletes the veth pair again.
pub fn attach(spec: &AttachSpec) -> Result<Attachment, DataplaneError> {
    validate(spec)?;
    let host_path: PathBuf = spec
        .host_netns
        .clone()
        .unwrap_or_else(|| PathBuf::from(THREAD_SELF_NET));
    // Opened here, on the caller's thread, so "the calling thread's namespace" holds.
    let host_fd = netns::open(&host_path)?;
    let container_fd = netns::open(&spec.container_netns)?;
    let cpath = spec.container_netns.clone();

    // 1. The container must not have the interface yet.
    let cname = spec.container_ifname.clone();
    let taken = in_ns(&container_fd, &cpath, move || async move {
        let dp = Dataplane::connect()?;
        Ok(dp.link(&cname).await?.is_some())
    })?;
    if taken {
        return Err(DataplaneError::LinkExists {
            op: "attach",
            link: format!("{} in {}", spec.container_ifname, cpath.display()),
        });
    }

    // 2. Host side: the bridge must exist; create the pair with the container end born in the
    //    container namespace, already named, with its MAC and MTU.
    let host_index = {
        let (bridge, host_ifname, cname, mtu, mac) = (
            spec.bridge.clone(),
            spec.host_ifname.clone(),
            spec.container_ifname.clone(),
            spec.mtu,
            spec.mac,
        );
        let target = cpath.clone();
        in_ns(&host_fd, &host_path, move || async move {
            let dp = Dataplane::connect()?;
            if dp.link(&bridge).await?.is_none() {
                return Err(DataplaneError::LinkNotFound {
                    op: "attach",
                    link: format!("bridge {bridge}"),
                });
            }
            let host = dp
                .create_veth_into(&host_ifname, &cname, mtu, &target, Some(mac))
                .await?;
            Ok(host.index)
        })?
    };

    let undo = |e: DataplaneError| -> DataplaneError {
        let host_ifname = spec.host_ifname.clone();
        let cleanup = in_ns(&host_fd, &host_path, move || async move {
            Dataplane::connect()?.delete_link(host_index).await
        });
        match cleanup {
            Ok(()) => tracing::debug!(link = %host_ifname, "attach failed; removed the veth pair"),
            Err(ce) => {
                tracing::warn!(link = %host_ifname, error = %ce, "attach failed; cannot remove the veth pair")
            }
        }
        e
    };

    // 3. Container side: up, address (and so the subnet route).
    let container_index = {
        let (name, address) = (spec.container_ifname.clone(), spec.address);
        in_ns(&container_fd, &cpath, move || async move {
            let dp = Dataplane::connect()?;
            let link = dp
                .link(&name)
                .await?
                .ok_or_else(|| DataplaneError::LinkNotFound {
                    op: "attach",
                    link: format!("{name} (veth peer)"),
                })?;
            dp.set_up(link.index).await?;
            if let Some(lo) = dp.link("lo").await? {
                dp.set_up(lo.index).await?;
            }
            dp.add_address(link.index, IpNet::V4(address)).await?;
            Ok(link.index)
        })
        .map_err(undo)?
    };

    // 4. Host side: enslave and bring up.
    {
        let (bridge, mtu) = (spec.bridge.clone(), spec.mtu);
        in_ns(&host_fd, &host_path, move || async move {
            let dp = Dataplane::connect()?;
            let br = dp
                .link(&bridge)
                .await?
                .ok_or_else(|| DataplaneError::LinkNotFound {
                    op: "attach",
                    link: format!("bridge {bridge}"),
                })?;
            dp.set_mtu(host_index, mtu).await?;
            dp.set_master(host_index, Some(br.index)).await?;
            dp.set_up(host_index).await
        })
        .map_err(undo)?;
    }

    // 5. Container side: the default route, last, so that nothing can fail after it replaced
    //    another one (install_default_route puts those back when it fails itself).
    let default_route = match spec.gateway {
        Some(gw) => {
            let policy = spec.default_route;
            in_ns(&container_fd, &cpath, move || async move {
                Dataplane::connect()?
                    .install_default_route(gw, container_index, policy)
                    .await
            })
            .map_err(undo)?
            .then_some(gw)
        }
        None => None,
    };

    tracing::info!(
        host = %spec.host_ifname,
        container = %spec.container_ifname,
        netns = %cpath.display(),
        bridge = %spec.bridge,
        address = %spec.address,
        default_route = ?default_route,
        "attached container"
    );
    Ok(Attachment {
        host_ifname: spec.host_ifname.clone(),
        host_index,
        container_ifname: spec.container_ifname.clone(),
        container_index,
        mac: spec.mac,
        default_route,
    })
}

/// Deletes the host end of an attachment (its peer goes with it). Ok when it is absent or when
/// the host namespace is gone. Refuses to delete a link that is not a veth.
pub fn detach(host_netns: Option<&Path>, host_ifname: &str) -> Result<(), DataplaneError> {
    validate_ifname(host_ifname)?;
    let path = host_netns.unwrap_or(Path::new(THREAD_SELF_NET));
    let fd = match netns::open(path) {
        Ok(fd) => fd,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let name = host_ifname.to_string();
    in_ns(&fd, path, move || async move {
        let dp = Dataplane::connect()?;
        let Some(link) = dp.link(&name).await? else {
            return Ok(());
        };
        if link.kind.as_deref() != Some("veth") {
            return Err(DataplaneError::invalid(
                format_args!("detach of {name}"),
                format_args!(
                    "it is a {} device, not a veth",
                    link.kind.as_deref().unwrap_or("plain")
                ),
            ));
        }
        dp.delete_link(link.index).await?;
        tracing::info!(link = %name, "detached");
        Ok(())
    })
}
