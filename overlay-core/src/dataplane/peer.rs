//! The other end of a veth, wherever it lives.
//!
//! The kernel reports, for a veth, its peer's index and the id this namespace gives the
//! peer's namespace (IFLA_LINK, IFLA_LINK_NETNSID). Reading the peer is one RTM_GETLINK with
//! IFLA_TARGET_NETNSID (Linux 4.15+). Changing it cannot be done that way: on RTM_SETLINK and
//! RTM_NEWLINK, IFLA_TARGET_NETNSID names the namespace to *move* the device (looked up by index
//! in the caller's namespace) into, so the request would move an unrelated device of the host
//! (seen on Linux 6.18: it tried to move the host's `eth0`). So the peer's namespace is found
//! by its id instead: the namespaces under `/run/netns` (ip netns, podman, CRI runtimes), then
//! those of every process, each asked for its id with RTM_GETNSID; only the one whose id
//! matches is entered. No recorded path is needed (endpoints made by any version are reached)
//! and a stale one can never lead into the wrong namespace.

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::error::{errno_of, nl};
use super::{Dataplane, DataplaneError, Link};
use crate::netns;

impl Dataplane {
    /// The peer of the veth `host` (as the kernel reports it now, in its own namespace), or
    /// `None` when `host` names no peer or the peer is gone. Errors when the kernel refuses
    /// the request (e.g. an id that names no namespace any more).
    pub async fn veth_peer(&self, host: &Link) -> Result<Option<Link>, DataplaneError> {
        let Some(index) = host.link_index else {
            return Ok(None);
        };
        let mut req = self.handle.link().get().match_index(index);
        if let Some(id) = host.link_netnsid {
            req.message_mut()
                .attributes
                .push(LinkAttribute::IfNetnsId(id));
        }
        let res: Result<Vec<LinkMessage>, _> = req.execute().try_collect().await;
        match res {
            Ok(msgs) => Ok(msgs.first().map(Link::from_message)),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(nl("get veth peer", peer_target(host))(e)),
        }
    }

    /// The id this namespace gives the namespace open at `fd` (RTM_GETNSID with NETNSA_FD),
    /// or `None` when it has given it none.
    pub async fn netns_id(&self, fd: &OwnedFd) -> Result<Option<i32>, DataplaneError> {
        let mut msg = NsidMessage::default();
        msg.attributes
            .push(NsidAttribute::Fd(fd.as_raw_fd() as u32));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNsId(msg));
        req.header.flags = NLM_F_REQUEST;
        let mut handle = self.handle.clone();
        let mut response = handle.request(req).map_err(nl("get nsid", "fd"))?;
        while let Some(reply) = response.next().await {
            match reply.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(m)) => {
                    return Ok(m.attributes.iter().find_map(|a| match a {
                        NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                        _ => None,
                    }))
                }
                NetlinkPayload::Error(err) if err.code.is_some() => {
                    return Err(nl("get nsid", "fd")(rtnetlink::Error::NetlinkError(err)))
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Sets the MTU (bytes) of the peer of the veth `host`, in whatever namespace it lives
    /// (found as the module documentation says). Errors name the peer; a namespace that cannot
    /// be found is [`DataplaneError::Unexpected`].
    pub async fn set_veth_peer_mtu(&self, host: &Link, mtu: u32) -> Result<(), DataplaneError> {
        let index = host
            .link_index
            .ok_or_else(|| DataplaneError::LinkNotFound {
                op: "set peer mtu",
                link: format!("peer of {}", host.name),
            })?;
        let Some(id) = host.link_netnsid else {
            // The peer is in this namespace.
            return self.set_mtu(index, mtu).await;
        };
        let Some((fd, path)) = self.find_netns(id).await? else {
            return Err(DataplaneError::Unexpected {
                op: "set peer mtu",
                target: peer_target(host),
                detail: format!(
                    "no namespace with id {id} under {} or among the processes' namespaces",
                    netns::NETNS_RUN_DIR
                ),
            });
        };
        let target = peer_target(host);
        let run = move || {
            netns::block_on_in_fd(fd, &path, move || async move {
                let dp = Dataplane::connect()?;
                dp.set_mtu(index, mtu).await
            })
        };
        match tokio::task::spawn_blocking(run).await {
            Ok(res) => res?.map_err(|e| match e {
                DataplaneError::LinkNotFound { op, .. } => {
                    DataplaneError::LinkNotFound { op, link: target }
                }
                e => e,
            }),
            Err(join) => Err(DataplaneError::Unexpected {
                op: "set peer mtu",
                target,
                detail: join.to_string(),
            }),
        }
    }

    /// An open namespace whose id here is `id`, and its path: the named namespaces first, then
    /// every process's (each namespace asked once).
    async fn find_netns(&self, id: i32) -> Result<Option<(OwnedFd, PathBuf)>, DataplaneError> {
        let mut seen: BTreeSet<(u64, u64)> = BTreeSet::new();
        for path in netns_candidates() {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            let Ok(fd) = netns::open(&path) else {
                continue;
            };
            if self.netns_id(&fd).await? == Some(id) {
                return Ok(Some((fd, path)));
            }
        }
        Ok(None)
    }
}

/// `/run/netns/*`, then `/proc/PID/ns/net` of every process.
fn netns_candidates() -> impl Iterator<Item = PathBuf> {
    let entries = |dir: &Path| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
    };
    let named = entries(Path::new(netns::NETNS_RUN_DIR));
    let procs = entries(Path::new("/proc"))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|p| p.join("ns/net"));
    named.chain(procs)
}

/// `peer of ve-x (index 2 in namespace id 3)` for messages.
fn peer_target(host: &Link) -> String {
    let index = host.link_index.unwrap_or_default();
    match host.link_netnsid {
        Some(id) => format!("peer of {} (index {index} in namespace id {id})", host.name),
        None => format!("peer of {} (index {index})", host.name),
    }
}
