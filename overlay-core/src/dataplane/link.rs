//! Links: listing, creating bridges, VXLAN devices and veth pairs, and changing their settings.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use netlink_packet_route::link::{
    InfoData, InfoPortData, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan};

use super::error::{errno_of, nl};
use super::{validate_ifname, Dataplane, DataplaneError};
use crate::mac::MacAddr;
use crate::netns;

/// A network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `"vxlan"`, `"bridge"`, `"veth"`, ...; `None` for devices without a kind (lo, physical).
    pub kind: Option<String>,
    /// The index of the bridge this link is enslaved to.
    pub master: Option<u32>,
    pub mtu: u32,
    pub mac: Option<MacAddr>,
    /// The administrative IFF_UP flag.
    pub up: bool,
    pub vxlan: Option<VxlanInfo>,
    /// Bridge port settings, when the link is a port of a bridge.
    pub port: Option<super::BridgePort>,
    /// IFLA_LINK: for a veth, the index of its peer (in the namespace `link_netnsid` names).
    pub link_index: Option<u32>,
    /// IFLA_LINK_NETNSID: the id, in this namespace, of the namespace `link_index` lives in;
    /// `None` when it is this namespace.
    pub link_netnsid: Option<i32>,
}

/// What to create with [`Dataplane::create_vxlan`]. Always `nolearning`, UDP checksums on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    pub local: Ipv4Addr,
    /// UDP destination port (4789 for IANA VXLAN).
    pub port: u16,
    /// The underlay device (`dev` in `ip link add ... type vxlan`).
    pub underlay_index: Option<u32>,
    pub mtu: u32,
    /// Answer ARP requests from the neighbour table (ARP suppression).
    pub proxy: bool,
}

/// The VXLAN settings of an existing device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanInfo {
    pub vni: u32,
    pub local: Option<Ipv4Addr>,
    pub port: u16,
    pub learning: bool,
    pub proxy: bool,
    pub underlay_index: Option<u32>,
}

/// The largest VNI (24 bits).
const VNI_MAX: u32 = (1 << 24) - 1;

impl Link {
    pub(crate) fn from_message(msg: &LinkMessage) -> Link {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            master: None,
            mtu: 0,
            mac: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            vxlan: None,
            port: None,
            link_index: None,
            link_netnsid: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => link.name = name.clone(),
                LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
                LinkAttribute::Controller(master) if *master != 0 => link.master = Some(*master),
                LinkAttribute::Link(index) if *index != 0 => link.link_index = Some(*index),
                LinkAttribute::LinkNetNsId(id) if *id >= 0 => link.link_netnsid = Some(*id),
                LinkAttribute::Address(bytes) => {
                    if let Ok(octets) = <[u8; 6]>::try_from(bytes.as_slice()) {
                        link.mac = Some(MacAddr(octets));
                    }
                }
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(kind) => link.kind = Some(kind.to_string()),
                            LinkInfo::Data(InfoData::Vxlan(data)) => {
                                link.vxlan = Some(VxlanInfo::from_attributes(data))
                            }
                            LinkInfo::PortData(InfoPortData::BridgePort(data)) => {
                                link.port = Some(super::BridgePort::from_attributes(data))
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

impl VxlanInfo {
    fn from_attributes(data: &[InfoVxlan]) -> VxlanInfo {
        let mut info = VxlanInfo {
            vni: 0,
            local: None,
            port: 0,
            learning: false,
            proxy: false,
            underlay_index: None,
        };
        for attr in data {
            match attr {
                InfoVxlan::Id(vni) => info.vni = *vni,
                InfoVxlan::Local(ip) => info.local = Some(*ip).filter(|ip| !ip.is_unspecified()),
                InfoVxlan::Port(port) => info.port = *port,
                InfoVxlan::Learning(on) => info.learning = *on,
                InfoVxlan::Proxy(on) => info.proxy = *on,
                InfoVxlan::Link(index) if *index != 0 => info.underlay_index = Some(*index),
                _ => {}
            }
        }
        info
    }
}

fn is_enodev(e: &rtnetlink::Error) -> bool {
    errno_of(e) == Some(libc::ENODEV)
}

impl Dataplane {
    /// All links of the namespace.
    pub async fn links(&self) -> Result<Vec<Link>, DataplaneError> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl("list links", "all"))?;
        Ok(msgs.iter().map(Link::from_message).collect())
    }

    /// The link with that name, if any.
    pub async fn link(&self, name: &str) -> Result<Option<Link>, DataplaneError> {
        validate_ifname(name)?;
        let res: Result<Vec<LinkMessage>, _> = self
            .handle
            .link()
            .get()
            .match_name(name)
            .execute()
            .try_collect()
            .await;
        match res {
            Ok(msgs) => Ok(msgs.first().map(Link::from_message)),
            Err(e) if is_enodev(&e) => Ok(None),
            Err(e) => Err(nl("get link", name)(e)),
        }
    }

    /// The link with that index, if any.
    pub async fn link_by_index(&self, index: u32) -> Result<Option<Link>, DataplaneError> {
        let res: Result<Vec<LinkMessage>, _> = self
            .handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_collect()
            .await;
        match res {
            Ok(msgs) => Ok(msgs.first().map(Link::from_message)),
            Err(e) if is_enodev(&e) => Ok(None),
            Err(e) => Err(nl("get link", format_args!("index {index}"))(e)),
        }
    }

    /// The device that holds `ip` as one of its addresses (the underlay device for a local
    /// VTEP address).
    pub async fn link_with_address(&self, ip: IpAddr) -> Result<Option<Link>, DataplaneError> {
        match self.address_owner(ip).await? {
            Some(index) => self.link_by_index(index).await,
            None => Ok(None),
        }
    }

    async fn add_link(
        &self,
        op: &'static str,
        name: &str,
        msg: LinkMessage,
    ) -> Result<Link, DataplaneError> {
        match self.handle.link().add(msg).execute().await {
            Ok(()) => {}
            Err(e) if errno_of(&e) == Some(libc::EEXIST) => {
                return Err(DataplaneError::LinkExists {
                    op,
                    link: name.to_string(),
                })
            }
            Err(e) => return Err(nl(op, name)(e)),
        }
        let link = self
            .link(name)
            .await?
            .ok_or_else(|| DataplaneError::Unexpected {
                op,
                target: name.to_string(),
                detail: "created but not found afterwards".into(),
            })?;
        tracing::debug!(link = name, index = link.index, kind = ?link.kind, "created link");
        Ok(link)
    }

    /// Creates a Linux bridge (down). `mtu` 0 keeps the kernel's default.
    pub async fn create_bridge(&self, name: &str, mtu: u32) -> Result<Link, DataplaneError> {
        validate_ifname(name)?;
        let mut builder = LinkBridge::new(name);
        if mtu != 0 {
            builder = builder.mtu(mtu);
        }
        self.add_link("create bridge", name, builder.build()).await
    }

    /// Creates a VXLAN device (down): VNI, local address, destination port, optional underlay
    /// device, `nolearning`, UDP checksums on, and optionally `proxy`. `mtu` 0 keeps the
    /// kernel's default (underlay MTU − 50).
    pub async fn create_vxlan(&self, spec: &VxlanSpec) -> Result<Link, DataplaneError> {
        validate_ifname(&spec.name)?;
        if spec.vni == 0 || spec.vni > VNI_MAX {
            return Err(DataplaneError::invalid(
                format_args!("VNI {} for {}", spec.vni, spec.name),
                "must be 1..=16777215",
            ));
        }
        if spec.port == 0 {
            return Err(DataplaneError::invalid(
                format_args!("VXLAN port for {}", spec.name),
                "must not be 0",
            ));
        }
        let mut builder = LinkVxlan::new(&spec.name, spec.vni)
            .port(spec.port)
            .local(spec.local)
            .learning(false)
            .proxy(spec.proxy)
            .udp_csum(true);
        if let Some(dev) = spec.underlay_index {
            builder = builder.dev(dev);
        }
        if spec.mtu != 0 {
            builder = builder.mtu(spec.mtu);
        }
        match self
            .add_link("create vxlan", &spec.name, builder.build())
            .await
        {
            // EEXIST also means "another device has this VNI on this port" (the kernel keys
            // VXLAN devices by VNI and port, not by local address): name that device.
            Err(DataplaneError::LinkExists { .. }) if self.link(&spec.name).await?.is_none() => {
                Err(self.vni_clash(spec).await)
            }
            res => res,
        }
    }

    /// The error for a VXLAN device that could not be created although its name is free: the
    /// device already holding its VNI on its port, by name.
    async fn vni_clash(&self, spec: &VxlanSpec) -> DataplaneError {
        let holder = self.links().await.ok().and_then(|links| {
            links.into_iter().find(|l| {
                l.vxlan
                    .as_ref()
                    .is_some_and(|v| v.vni == spec.vni && v.port == spec.port)
            })
        });
        DataplaneError::VniTaken {
            link: spec.name.clone(),
            vni: spec.vni,
            port: spec.port,
            holder: holder.map_or_else(|| "a device gone since".into(), |l| l.name),
        }
    }

    /// Creates a veth pair (both ends down) with the same MTU on both ends (0: default).
    pub async fn create_veth(
        &self,
        name: &str,
        peer: &str,
        mtu: u32,
    ) -> Result<(Link, Link), DataplaneError> {
        validate_ifname(name)?;
        validate_ifname(peer)?;
        let mut peer_builder = LinkUnspec::new_with_name(peer);
        let mut builder = LinkVeth::new(name, peer);
        if mtu != 0 {
            peer_builder = peer_builder.mtu(mtu);
            builder = builder.mtu(mtu);
        }
        let msg = builder
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_builder.build())))
            .build();
        let first = self.add_link("create veth", name, msg).await?;
        let second = match self.link(peer).await? {
            Some(l) => l,
            None => {
                let _ = self.delete_link(first.index).await;
                return Err(DataplaneError::Unexpected {
                    op: "create veth",
                    target: format!("{name} peer {peer}"),
                    detail: "peer not found after creation".into(),
                });
            }
        };
        Ok((first, second))
    }

    /// Creates a veth pair whose peer is born inside another network namespace (IFLA_NET_NS_FD
    /// on the peer), named `peer` there, with `peer_mac`. One request instead of create + move
    /// (moving a link between namespaces costs a grace period: ~20 ms here). Returns this end.
    pub async fn create_veth_into(
        &self,
        name: &str,
        peer: &str,
        mtu: u32,
        peer_netns: &Path,
        peer_mac: Option<MacAddr>,
    ) -> Result<Link, DataplaneError> {
        validate_ifname(name)?;
        validate_ifname(peer)?;
        let fd = netns::open(peer_netns)?;
        let mut peer_builder = LinkUnspec::new_with_name(peer).setns_by_fd(fd.as_raw_fd());
        let mut builder = LinkVeth::new(name, peer);
        if mtu != 0 {
            peer_builder = peer_builder.mtu(mtu);
            builder = builder.mtu(mtu);
        }
        if let Some(mac) = peer_mac {
            peer_builder = peer_builder.address(mac.octets().to_vec());
        }
        let msg = builder
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_builder.build())))
            .build();
        let res = self.add_link("create veth", name, msg).await;
        drop(fd);
        res
    }

    async fn set_link(
        &self,
        op: &'static str,
        index: u32,
        msg: LinkMessage,
    ) -> Result<(), DataplaneError> {
        match self.handle.link().set(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_enodev(&e) => Err(DataplaneError::LinkNotFound {
                op,
                link: format!("index {index}"),
            }),
            Err(e) => Err(nl(op, format_args!("index {index}"))(e)),
        }
    }

    /// Enslaves the link to a bridge (`Some(master)`) or frees it (`None`).
    pub async fn set_master(&self, index: u32, master: Option<u32>) -> Result<(), DataplaneError> {
        let builder = LinkUnspec::new_with_index(index);
        let msg = match master {
            Some(m) => builder.controller(m).build(),
            None => builder.nocontroller().build(),
        };
        self.set_link("set master", index, msg).await
    }

    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<(), DataplaneError> {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.set_link("set mtu", index, msg).await
    }

    /// Sets the administrative up flag. A VXLAN device whose UDP port another socket holds
    /// (EADDRINUSE: a VXLAN device with other receive options, such as `external` or `gbp`, or
    /// a process) gets [`DataplaneError::PortTaken`] naming the VXLAN devices up on that port.
    pub async fn set_up(&self, index: u32) -> Result<(), DataplaneError> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        match self.set_link("set up", index, msg).await {
            Err(e) if e.errno() == Some(libc::EADDRINUSE) => Err(self.port_clash(index, e).await),
            res => res,
        }
    }

    /// The error for a VXLAN device that cannot come up because its UDP port is taken.
    async fn port_clash(&self, index: u32, e: DataplaneError) -> DataplaneError {
        let Ok(links) = self.links().await else {
            return e;
        };
        let Some((me, port)) = links
            .iter()
            .find(|l| l.index == index)
            .and_then(|l| Some((l.name.clone(), l.vxlan.as_ref()?.port)))
        else {
            return e;
        };
        let others: Vec<String> = links
            .iter()
            .filter(|l| {
                l.index != index && l.up && l.vxlan.as_ref().is_some_and(|v| v.port == port)
            })
            .map(|l| l.name.clone())
            .collect();
        DataplaneError::PortTaken {
            link: me,
            port,
            holders: if others.is_empty() {
                "a socket of another program".into()
            } else {
                format!(
                    "VXLAN device(s) {} with other receive options",
                    others.join(", ")
                )
            },
        }
    }

    pub async fn set_mac(&self, index: u32, mac: MacAddr) -> Result<(), DataplaneError> {
        let msg = LinkUnspec::new_with_index(index)
            .address(mac.octets().to_vec())
            .build();
        self.set_link("set mac", index, msg).await
    }

    /// Renames a link (the kernel wants it down).
    pub async fn rename(&self, index: u32, name: &str) -> Result<(), DataplaneError> {
        validate_ifname(name)?;
        let msg = LinkUnspec::new_with_index(index).name(name).build();
        match self.handle.link().set(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::EEXIST) => Err(DataplaneError::LinkExists {
                op: "rename",
                link: name.to_string(),
            }),
            Err(e) if is_enodev(&e) => Err(DataplaneError::LinkNotFound {
                op: "rename",
                link: format!("index {index}"),
            }),
            Err(e) => Err(nl("rename", format_args!("index {index} to {name}"))(e)),
        }
    }

    /// Moves a link into the network namespace at `netns` (by file descriptor). Its index in
    /// the target namespace may differ: look it up by name there.
    pub async fn move_to_netns(&self, index: u32, netns: &Path) -> Result<(), DataplaneError> {
        let fd = netns::open(netns)?;
        let msg = LinkMessageBuilder::<LinkUnspec>::new()
            .index(index)
            .setns_by_fd(fd.as_raw_fd())
            .build();
        let res = self.set_link("move to netns", index, msg).await;
        drop(fd);
        res.map_err(|e| match e {
            DataplaneError::Netlink { op, target, source } => DataplaneError::Netlink {
                op,
                target: format!("{target} to {}", netns.display()),
                source,
            },
            e => e,
        })
    }

    /// Deletes a link. Ok if it is already gone.
    pub async fn delete_link(&self, index: u32) -> Result<(), DataplaneError> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => {
                tracing::debug!(index, "deleted link");
                Ok(())
            }
            Err(e) if is_enodev(&e) => Ok(()),
            Err(e) => Err(nl("delete link", format_args!("index {index}"))(e)),
        }
    }

    /// Deletes the TUN/TAP interface `name` (link kind `tun`), if there is one: such an
    /// interface made persistent (`TUNSETPERSIST`) stays until deleted. Returns whether it
    /// deleted one; a link of that name of another kind is left alone (Ok(false)).
    pub async fn delete_tun(&self, name: &str) -> Result<bool, DataplaneError> {
        match self.link(name).await? {
            Some(l) if l.kind.as_deref() == Some("tun") => {
                self.delete_link(l.index).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
