//! Reading the kernel and changing only what differs from the desired state.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};

use crate::dataplane::{
    BridgePort, Dataplane, DataplaneError, FdbEntry, Link, NeighEntry, VxlanSpec,
};
use crate::mac::MacAddr;
use crate::model::{self, Node, ENCRYPTED_VXLAN_PORT, INGRESS_FILTER_PREF, VXLAN_PORT};

use crate::wireguard::uapi::PeerConfig;
use crate::wireguard::{PublicKey, Uapi, PERSISTENT_KEEPALIVE, WIREGUARD_OVERHEAD};

use super::desired::{Desired, DesiredNetwork, DesiredWireguard};
use super::sysctl::{self, Family};

/// One change made to the kernel, for logs and for proving a second pass makes none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub action: &'static str,
    pub object: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action, self.object)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("node {node}: its underlay address {ip} is on no interface of this host")]
    NoUnderlay { node: String, ip: Ipv4Addr },
    #[error("{context}: {source}")]
    Dataplane {
        context: String,
        #[source]
        source: DataplaneError,
    },
    #[error("network {0}: encrypted, but this node has no WireGuard tunnel address yet")]
    NoTunnel(String),
    #[error(
        "network {0}: encrypted, but the ingress filter that keeps its VXLAN port closed to all \
         but WireGuard could not be checked or installed; not built"
    )]
    Unguarded(String),
    #[error("WireGuard interface {0}: {1}")]
    Wireguard(String, String),
    #[error("{context}: {source}")]
    Sysctl {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// What one pass did: every change made, and every error met (a failure on one network does
/// not stop the others).
#[derive(Debug, Default)]
pub struct Report {
    pub changes: Vec<Change>,
    pub errors: Vec<ReconcileError>,
}

/// Applies desired state to the kernel of the network namespace its netlink socket was opened in.
pub struct Reconciler {
    dp: Dataplane,
    wireguard: Option<WireguardHandle>,
}

/// The WireGuard interface this host's agent runs, and its UAPI.
#[derive(Clone)]
pub struct WireguardHandle {
    pub ifname: String,
    pub uapi: Arc<Uapi>,
}

trait Context<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ReconcileError>;
}

impl<T> Context<T> for Result<T, DataplaneError> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ReconcileError> {
        self.map_err(|source| ReconcileError::Dataplane {
            context: context(),
            source,
        })
    }
}

impl Reconciler {
    pub fn new(dp: Dataplane) -> Self {
        Reconciler {
            dp,
            wireguard: None,
        }
    }

    /// Also keep this WireGuard interface's address, MTU and peers in line with the store.
    pub fn with_wireguard(mut self, wg: WireguardHandle) -> Self {
        self.wireguard = Some(wg);
        self
    }

    pub fn dataplane(&self) -> &Dataplane {
        &self.dp
    }

    /// One reconcile pass.
    ///
    /// `claimed` reads the store again and returns the host-side veth names this host's
    /// endpoints own (`None` when the store cannot be read). Unclaimed vxmesh veths are deleted
    /// only if a read made *after* the links were listed does not claim them: an attach
    /// records its endpoint before it creates the veth, so an attach in flight is never undone.
    pub async fn apply(
        &self,
        desired: &Desired,
        claimed: &(dyn Fn() -> Option<BTreeSet<String>> + Sync),
    ) -> Report {
        let mut report = Report::default();
        let mut keep: BTreeSet<String> = BTreeSet::new();
        // Where encrypted networks' VXLAN port must be closed (empty: nowhere, remove ours).
        let mut guarded: BTreeSet<String> = BTreeSet::new();
        let encrypted = desired.networks.values().any(|d| d.network.encrypted);
        if let Some(node) = &desired.node {
            match self.underlay(node).await {
                Ok(underlay) => {
                    // Closed before any encrypted VXLAN socket is opened; an encrypted network
                    // is not built (or changed) while its port cannot be closed.
                    let mut guard_ok = true;
                    if encrypted {
                        guarded.insert(underlay.name.clone());
                        guarded.extend(desired.networks.values().map(|d| d.network.bridge_name()));
                        if let Err(e) = self
                            .ingress_filters(&guarded, None, &mut report.changes)
                            .await
                        {
                            report.errors.push(e);
                            guard_ok = false;
                        }
                    }
                    if let (Some(want), Some(wg)) = (&desired.wireguard, &self.wireguard) {
                        if let Err(e) = self
                            .wireguard(wg, want, &underlay, &mut report.changes)
                            .await
                        {
                            report.errors.push(e);
                        }
                    }
                    for d in desired.networks.values() {
                        keep.insert(d.network.bridge_name());
                        keep.insert(d.network.vxlan_name());
                        keep.extend(
                            d.local_attached
                                .iter()
                                .filter_map(|e| e.host_ifname.clone()),
                        );
                        if d.network.encrypted && !guard_ok {
                            report
                                .errors
                                .push(ReconcileError::Unguarded(d.network.name.clone()));
                            continue;
                        }
                        if let Err(e) = self
                            .network(node, &underlay, d, encrypted, &mut report.changes)
                            .await
                        {
                            report.errors.push(e);
                        }
                    }
                }
                Err(e) => {
                    // Without the underlay nothing can be built, but nothing is torn down
                    // either: the address may be coming back.
                    report.errors.push(e);
                    return report;
                }
            }
        }
        if desired.node.is_none() {
            // No longer a node: no peer of ours is let in any more.
            if let Some(wg) = &self.wireguard {
                let none = DesiredWireguard {
                    tunnel_ip: Ipv4Addr::UNSPECIFIED,
                    port: 0,
                    peers: BTreeMap::new(),
                };
                if let Err(e) = self.wireguard_peers(wg, &none, &mut report.changes).await {
                    report.errors.push(e);
                }
            }
        }
        if let Err(e) = self.remove_stale(&keep, claimed, &mut report.changes).await {
            report.errors.push(e);
        }
        if guarded.is_empty() {
            // No encrypted network here (any more): remove the filters.
            if let Err(e) = self
                .ingress_filters(&guarded, None, &mut report.changes)
                .await
            {
                report.errors.push(e);
            }
        }
        report
    }

    /// Encrypted networks' VXLAN port is open only to what comes out of the WireGuard
    /// interface: on every device in `guarded` (the underlay device and every overlay bridge,
    /// through which containers reach the host), an ingress filter drops IPv4 UDP to
    /// [`ENCRYPTED_VXLAN_PORT`]; on every other device, such a filter of ours is removed (and
    /// the `ingress` qdisc with it when nothing else is on it). `only`: look at this device only.
    ///
    /// Called with every device to guard before the networks are built, and with none after
    /// them when the host has no encrypted network.
    async fn ingress_filters(
        &self,
        guarded: &BTreeSet<String>,
        only: Option<u32>,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let links = self.dp.links().await.ctx(|| "listing links".to_string())?;
        let qdiscs = self
            .dp
            .ingress_qdiscs()
            .await
            .ctx(|| "listing ingress qdiscs".to_string())?;
        let port = ENCRYPTED_VXLAN_PORT;
        let pref = INGRESS_FILTER_PREF;
        let what = format!("pref {pref} protocol ip bpf: drop udp dport {port}");
        for l in links.iter().filter(|l| only.is_none_or(|i| i == l.index)) {
            let name = &l.name;
            let ctx = |op: &str| format!("{op} on {name}");
            let want = guarded.contains(name);
            let Some(qdisc) = qdiscs.get(&l.index) else {
                if want {
                    self.dp
                        .add_ingress_qdisc(l.index)
                        .await
                        .ctx(|| ctx("adding the ingress qdisc"))?;
                    changes.push(change("add ingress qdisc", name));
                    self.dp
                        .add_udp_drop_filter(l.index, pref, port)
                        .await
                        .ctx(|| ctx("adding the ingress filter"))?;
                    changes.push(change("add ingress filter", format!("{name} {what}")));
                }
                continue;
            };
            let filters = self
                .dp
                .ingress_filters(l.index)
                .await
                .ctx(|| ctx("reading the ingress filters"))?;
            let ours: Vec<_> = filters.iter().filter(|f| f.pref == pref).collect();
            if want {
                let correct = matches!(ours.as_slice(), [f] if f.drops_udp_port == Some(port) && f.protocol == 0x0800);
                if correct {
                    continue;
                }
                if !ours.is_empty() {
                    self.dp
                        .delete_ingress_filters(l.index, pref)
                        .await
                        .ctx(|| ctx("replacing the ingress filter"))?;
                    changes.push(change(
                        "delete ingress filter (changed)",
                        format!("{name} pref {pref}"),
                    ));
                }
                self.dp
                    .add_udp_drop_filter(l.index, pref, port)
                    .await
                    .ctx(|| ctx("adding the ingress filter"))?;
                changes.push(change("add ingress filter", format!("{name} {what}")));
            } else if !ours.is_empty() && ours.iter().all(|f| f.drops_udp_port.is_some()) {
                self.dp
                    .delete_ingress_filters(l.index, pref)
                    .await
                    .ctx(|| ctx("removing the ingress filter"))?;
                changes.push(change(
                    "delete ingress filter",
                    format!("{name} pref {pref}"),
                ));
                if qdisc == "ingress" && filters.iter().all(|f| f.pref == pref) {
                    self.dp
                        .delete_ingress_qdisc(l.index)
                        .await
                        .ctx(|| ctx("removing the ingress qdisc"))?;
                    changes.push(change("delete ingress qdisc", name));
                }
            }
        }
        Ok(())
    }

    async fn underlay(&self, node: &Node) -> Result<Link, ReconcileError> {
        self.dp
            .link_with_address(IpAddr::V4(node.underlay))
            .await
            .ctx(|| format!("finding the underlay device of {}", node.underlay))?
            .ok_or_else(|| ReconcileError::NoUnderlay {
                node: node.name.clone(),
                ip: node.underlay,
            })
    }

    async fn network(
        &self,
        node: &Node,
        underlay: &Link,
        d: &DesiredNetwork,
        guard: bool,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let net = &d.network;
        let mtu = net.effective_mtu(underlay.mtu);
        let local = d
            .local
            .ok_or_else(|| ReconcileError::NoTunnel(net.name.clone()))?;
        let made = changes.len();
        let bridge = self.bridge(net, mtu, changes).await?;
        if guard && changes[made..].iter().any(|c| c.action == "create bridge") {
            // A new bridge is guarded before anything is attached to it.
            let only = BTreeSet::from([bridge.name.clone()]);
            self.ingress_filters(&only, Some(bridge.index), changes)
                .await?;
        }
        let vxlan = self
            .vxlan(node, local, underlay, net, mtu, &bridge, changes)
            .await?;
        self.fdb(&vxlan, &d.fdb, changes).await?;
        self.bridge_fdb(&vxlan, &d.neighbours, changes).await?;
        self.neighbours(&bridge, &d.neighbours, changes).await?;
        for e in &d.local_attached {
            let Some(name) = &e.host_ifname else { continue };
            // A veth whose bridge was recreated has lost its master: put it back.
            if let Some(link) = self.dp.link(name).await.ctx(|| format!("reading {name}"))? {
                self.ensure_port(&link, &bridge, mtu, changes).await?;
            }
        }
        Ok(())
    }

    async fn bridge(
        &self,
        net: &model::Network,
        mtu: u32,
        changes: &mut Vec<Change>,
    ) -> Result<Link, ReconcileError> {
        let name = net.bridge_name();
        let ctx = |what: &str| format!("network {}: {what} bridge {name}", net.name);
        let mut link = match self.dp.link(&name).await.ctx(|| ctx("reading"))? {
            Some(l) if l.kind.as_deref() == Some("bridge") => l,
            other => {
                if let Some(l) = other {
                    self.dp
                        .delete_link(l.index)
                        .await
                        .ctx(|| ctx("replacing"))?;
                    changes.push(change("delete link (wrong kind)", &name));
                }
                let l = self
                    .dp
                    .create_bridge(&name, mtu)
                    .await
                    .ctx(|| ctx("creating"))?;
                changes.push(change("create bridge", &name));
                l
            }
        };
        // A fixed MAC: otherwise the bridge takes its ports' and the gateway's MAC changes
        // under the containers' ARP caches whenever a port comes or goes.
        let mac = MacAddr::for_endpoint(net.gateway);
        if link.mac != Some(mac) {
            self.dp
                .set_mac(link.index, mac)
                .await
                .ctx(|| ctx("setting the MAC of"))?;
            changes.push(change("set mac", format!("{name} {mac}")));
        }
        if link.mtu != mtu {
            self.dp
                .set_mtu(link.index, mtu)
                .await
                .ctx(|| ctx("setting the MTU of"))?;
            changes.push(change("set mtu", format!("{name} {mtu}")));
            link.mtu = mtu;
        }
        let want = IpNet::V4(net.gateway_net());
        let have = self
            .dp
            .addresses(link.index)
            .await
            .ctx(|| ctx("reading addresses of"))?;
        for a in have
            .iter()
            .filter(|a| matches!(a, IpNet::V4(_)) && **a != want)
        {
            self.dp
                .delete_address(link.index, *a)
                .await
                .ctx(|| ctx("removing an address of"))?;
            changes.push(change("delete address", format!("{name} {a}")));
        }
        if !have.contains(&want) {
            self.dp
                .add_address(link.index, want)
                .await
                .ctx(|| ctx("adding the gateway to"))?;
            changes.push(change("add address", format!("{name} {want}")));
        }
        // Networks are isolated: nothing that arrives on an overlay bridge is routed elsewhere.
        self.sysctl(Family::V4, &name, "forwarding", "0", changes)?;
        // Networks are IPv4: no IPv6 link-local chatter from the host onto the overlay.
        self.sysctl(Family::V6, &name, "disable_ipv6", "1", changes)?;
        if !link.up {
            self.dp
                .set_up(link.index)
                .await
                .ctx(|| ctx("bringing up"))?;
            changes.push(change("set up", &name));
        }
        Ok(link)
    }

    #[allow(clippy::too_many_arguments)]
    async fn vxlan(
        &self,
        _node: &Node,
        local: Ipv4Addr,
        underlay: &Link,
        net: &model::Network,
        mtu: u32,
        bridge: &Link,
        changes: &mut Vec<Change>,
    ) -> Result<Link, ReconcileError> {
        let name = net.vxlan_name();
        let ctx = |what: &str| format!("network {}: {what} vxlan {name}", net.name);
        let spec = VxlanSpec {
            name: name.clone(),
            vni: net.vni,
            local,
            // Encrypted networks have a port of their own, closed to all but WireGuard.
            port: if net.encrypted {
                ENCRYPTED_VXLAN_PORT
            } else {
                VXLAN_PORT
            },
            // An encrypted network's packets are routed into the WireGuard interface by their
            // destination (a tunnel address); binding to that interface would get the VXLAN
            // device deleted with it whenever the agent (which owns the TUN) restarts.
            underlay_index: (!net.encrypted).then_some(underlay.index),
            mtu,
            // ARP for remote endpoints is answered by the bridge (neighbour suppression on the
            // port), not by the VXLAN device: its proxy mode would also swallow ARP replies to
            // hosts that ask across the overlay.
            proxy: false,
        };
        let current = self.dp.link(&name).await.ctx(|| ctx("reading"))?;
        let matches = |l: &Link| {
            l.vxlan.as_ref().is_some_and(|v| {
                v.vni == spec.vni
                    && v.local == Some(spec.local)
                    && v.port == spec.port
                    && !v.learning
                    && !v.proxy
                    && v.underlay_index == spec.underlay_index
            })
        };
        let link = match current {
            Some(l) if matches(&l) => l,
            other => {
                if let Some(l) = other {
                    self.dp
                        .delete_link(l.index)
                        .await
                        .ctx(|| ctx("replacing"))?;
                    changes.push(change("delete link (changed)", &name));
                }
                let l = self.dp.create_vxlan(&spec).await.ctx(|| ctx("creating"))?;
                changes.push(change(
                    "create vxlan",
                    format!("{name} vni {} local {local} dstport {}", net.vni, spec.port),
                ));
                l
            }
        };
        self.ensure_port(&link, bridge, mtu, changes).await?;
        self.sysctl(Family::V6, &name, "disable_ipv6", "1", changes)?;
        // The bridge neither learns behind the VXLAN port (its entries are static, from the
        // store) nor floods ARP for known endpoints into it.
        let port = BridgePort {
            learning: false,
            neigh_suppress: true,
        };
        if link.port != Some(port) {
            self.dp
                .set_bridge_port(link.index, port)
                .await
                .ctx(|| ctx("setting bridge port flags of"))?;
            changes.push(change(
                "set bridge port",
                format!("{name} learning off neigh_suppress on"),
            ));
        }
        Ok(link)
    }

    /// The WireGuard interface: tunnel address, MTU (underlay less WireGuard's overhead), up,
    /// and exactly the peers the store names (a key not in the store gets nothing through).
    async fn wireguard(
        &self,
        wg: &WireguardHandle,
        want: &DesiredWireguard,
        underlay: &Link,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let name = &wg.ifname;
        let ctx = |what: &str| format!("WireGuard interface {name}: {what}");
        let link = self
            .dp
            .link(name)
            .await
            .ctx(|| ctx("reading"))?
            .ok_or_else(|| ReconcileError::Wireguard(name.clone(), "missing".into()))?;
        let mtu = underlay.mtu.saturating_sub(WIREGUARD_OVERHEAD);
        if link.mtu != mtu {
            self.dp
                .set_mtu(link.index, mtu)
                .await
                .ctx(|| ctx("setting the MTU"))?;
            changes.push(change("set mtu", format!("{name} {mtu}")));
        }
        let addr = IpNet::V4(
            Ipv4Net::new(want.tunnel_ip, crate::wireguard::tunnel_net().prefix_len())
                .expect("valid prefix"),
        );
        let have = self
            .dp
            .addresses(link.index)
            .await
            .ctx(|| ctx("reading addresses"))?;
        for a in have
            .iter()
            .filter(|a| matches!(a, IpNet::V4(_)) && **a != addr)
        {
            self.dp
                .delete_address(link.index, *a)
                .await
                .ctx(|| ctx("removing an address"))?;
            changes.push(change("delete address", format!("{name} {a}")));
        }
        if !have.contains(&addr) {
            self.dp
                .add_address(link.index, addr)
                .await
                .ctx(|| ctx("adding the tunnel address"))?;
            changes.push(change("add address", format!("{name} {addr}")));
        }
        self.sysctl(Family::V6, name, "disable_ipv6", "1", changes)?;
        if !link.up {
            self.dp
                .set_up(link.index)
                .await
                .ctx(|| ctx("bringing up"))?;
            changes.push(change("set up", name));
        }
        self.wireguard_peers(wg, want, changes).await
    }

    async fn wireguard_peers(
        &self,
        wg: &WireguardHandle,
        want: &DesiredWireguard,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let name = wg.ifname.clone();
        let err = |e: std::io::Error| ReconcileError::Wireguard(name.clone(), e.to_string());
        let uapi = Arc::clone(&wg.uapi);
        let dev = tokio::task::spawn_blocking(move || uapi.get())
            .await
            .expect("uapi task")
            .map_err(err)?;
        let mut wanted: BTreeMap<PublicKey, (PeerConfig, &str)> = BTreeMap::new();
        for p in want.peers.values() {
            let Ok(key) = PublicKey::from_base64(&p.public_key) else {
                continue;
            };
            let cfg = PeerConfig {
                public_key: key,
                endpoint: SocketAddr::V4(p.endpoint),
                allowed_ips: vec![IpNet::V4(Ipv4Net::new(p.tunnel_ip, 32).expect("/32"))],
                persistent_keepalive: Some(PERSISTENT_KEEPALIVE),
            };
            wanted.insert(key, (cfg, p.node.as_str()));
        }
        let mut ops: Vec<(bool, PeerConfig, String)> = Vec::new();
        let mut kept = BTreeSet::new();
        for p in &dev.peers {
            let same = wanted.get(&p.public_key).is_some_and(|(cfg, _)| {
                let mut ips = p.allowed_ips.clone();
                ips.sort();
                ips == cfg.allowed_ips && p.endpoint == Some(cfg.endpoint)
            });
            if same {
                kept.insert(p.public_key);
            } else {
                // Removed, or changed: boringtun cannot change a peer in place.
                let cfg = PeerConfig {
                    public_key: p.public_key,
                    endpoint: p.endpoint.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                    allowed_ips: vec![],
                    persistent_keepalive: None,
                };
                ops.push((false, cfg, format!("{name} peer {}", p.public_key)));
            }
        }
        for (key, (cfg, node)) in &wanted {
            if !kept.contains(key) {
                ops.push((
                    true,
                    cfg.clone(),
                    format!(
                        "{name} peer {key} ({node}) endpoint {} allowed-ips {}",
                        cfg.endpoint, cfg.allowed_ips[0]
                    ),
                ));
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        let uapi = Arc::clone(&wg.uapi);
        let done = tokio::task::spawn_blocking(move || {
            let mut done = Vec::new();
            for (add, cfg, text) in ops {
                let r = if add {
                    uapi.add_peer(&cfg)
                } else {
                    uapi.remove_peer(&cfg.public_key)
                };
                match r {
                    Ok(()) => done.push(change(
                        if add {
                            "add wireguard peer"
                        } else {
                            "remove wireguard peer"
                        },
                        text,
                    )),
                    Err(e) => return (done, Some(e)),
                }
            }
            (done, None)
        })
        .await
        .expect("uapi task");
        changes.extend(done.0);
        match done.1 {
            Some(e) => Err(err(e)),
            None => Ok(()),
        }
    }

    /// Static entries in the bridge's FDB: every remote endpoint's MAC lives behind the VXLAN port.
    async fn bridge_fdb(
        &self,
        vxlan: &Link,
        remote: &BTreeMap<Ipv4Addr, MacAddr>,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let dev = &vxlan.name;
        let want: BTreeSet<MacAddr> = remote.values().copied().collect();
        let have: BTreeSet<MacAddr> = self
            .dp
            .bridge_fdb_static(vxlan.index)
            .await
            .ctx(|| format!("reading the bridge FDB on {dev}"))?
            .into_iter()
            .collect();
        for mac in have.difference(&want) {
            self.dp
                .bridge_fdb_delete_static(vxlan.index, *mac)
                .await
                .ctx(|| format!("deleting bridge FDB entry {mac} on {dev}"))?;
            changes.push(change(
                "delete bridge fdb",
                format!("{mac} dev {dev} master static"),
            ));
        }
        for mac in want.difference(&have) {
            self.dp
                .bridge_fdb_add_static(vxlan.index, *mac)
                .await
                .ctx(|| format!("adding bridge FDB entry {mac} on {dev}"))?;
            changes.push(change(
                "add bridge fdb",
                format!("{mac} dev {dev} master static"),
            ));
        }
        Ok(())
    }

    fn sysctl(
        &self,
        family: Family,
        ifname: &str,
        key: &str,
        value: &str,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        match sysctl::ensure(family, ifname, key, value) {
            Ok(true) => {
                changes.push(change("set sysctl", format!("{ifname} {key}={value}")));
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(source) => Err(ReconcileError::Sysctl {
                context: format!("setting {key}={value} on {ifname}"),
                source,
            }),
        }
    }

    /// `link` is a port of `bridge`, with the network's MTU, and up.
    async fn ensure_port(
        &self,
        link: &Link,
        bridge: &Link,
        mtu: u32,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let name = &link.name;
        if link.mtu != mtu {
            self.dp
                .set_mtu(link.index, mtu)
                .await
                .ctx(|| format!("setting the MTU of {name}"))?;
            changes.push(change("set mtu", format!("{name} {mtu}")));
        }
        if link.master != Some(bridge.index) {
            self.dp
                .set_master(link.index, Some(bridge.index))
                .await
                .ctx(|| format!("attaching {name} to {}", bridge.name))?;
            changes.push(change("set master", format!("{name} {}", bridge.name)));
        }
        if !link.up {
            self.dp
                .set_up(link.index)
                .await
                .ctx(|| format!("bringing up {name}"))?;
            changes.push(change("set up", name));
        }
        Ok(())
    }

    async fn fdb(
        &self,
        vxlan: &Link,
        want: &BTreeSet<FdbEntry>,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let dev = &vxlan.name;
        let have: BTreeSet<FdbEntry> = self
            .dp
            .fdb_entries(vxlan.index)
            .await
            .ctx(|| format!("reading the FDB of {dev}"))?
            .into_iter()
            .collect();
        for e in have.difference(want) {
            self.dp
                .fdb_delete(vxlan.index, e)
                .await
                .ctx(|| format!("deleting FDB entry {} dst {} on {dev}", e.mac, e.dst))?;
            changes.push(change(
                "delete fdb",
                format!("{} dst {} dev {dev}", e.mac, e.dst),
            ));
        }
        for e in want.difference(&have) {
            self.dp
                .fdb_append(vxlan.index, e)
                .await
                .ctx(|| format!("adding FDB entry {} dst {} on {dev}", e.mac, e.dst))?;
            changes.push(change(
                "add fdb",
                format!("{} dst {} dev {dev}", e.mac, e.dst),
            ));
        }
        Ok(())
    }

    /// Permanent ARP entries on the bridge for every remote endpoint: the host uses them, and
    /// the bridge answers the containers' ARP requests from them.
    async fn neighbours(
        &self,
        link: &Link,
        want: &BTreeMap<Ipv4Addr, MacAddr>,
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let dev = &link.name;
        let have = self
            .dp
            .neighbours(link.index)
            .await
            .ctx(|| format!("reading neighbours of {dev}"))?;
        let mut correct = BTreeSet::new();
        for n in &have {
            let IpAddr::V4(ip) = n.ip else { continue };
            match want.get(&ip) {
                Some(mac) if *mac == n.mac && n.permanent => {
                    correct.insert(ip);
                }
                Some(_) => {} // replaced below
                None if n.permanent => {
                    self.dp
                        .neigh_delete(link.index, n.ip)
                        .await
                        .ctx(|| format!("deleting neighbour {ip} on {dev}"))?;
                    changes.push(change("delete neighbour", format!("{ip} dev {dev}")));
                }
                None => {}
            }
        }
        for (ip, mac) in want.iter().filter(|(ip, _)| !correct.contains(*ip)) {
            let entry = NeighEntry {
                ip: IpAddr::V4(*ip),
                mac: *mac,
                permanent: true,
            };
            self.dp
                .neigh_replace(link.index, &entry)
                .await
                .ctx(|| format!("setting neighbour {ip} on {dev}"))?;
            changes.push(change(
                "set neighbour",
                format!("{ip} lladdr {mac} dev {dev}"),
            ));
        }
        Ok(())
    }

    /// Deletes every device vxmesh made (by its name prefix and kind) that `keep` does not hold.
    async fn remove_stale(
        &self,
        keep: &BTreeSet<String>,
        claimed: &(dyn Fn() -> Option<BTreeSet<String>> + Sync),
        changes: &mut Vec<Change>,
    ) -> Result<(), ReconcileError> {
        let links = self.dp.links().await.ctx(|| "listing links".to_string())?;
        let ours = |l: &Link| {
            let kind = l.kind.as_deref();
            (l.name.starts_with(model::VXLAN_PREFIX) && kind == Some("vxlan"))
                || (l.name.starts_with(model::BRIDGE_PREFIX) && kind == Some("bridge"))
                || (l.name.starts_with(model::VETH_PREFIX) && kind == Some("veth"))
        };
        // VXLAN devices first, then veths, then bridges: ports go before their bridge.
        let order = |l: &Link| match l.kind.as_deref() {
            Some("vxlan") => 0,
            Some("veth") => 1,
            _ => 2,
        };
        let mut stale: Vec<&Link> = links
            .iter()
            .filter(|l| ours(l) && !keep.contains(&l.name))
            .collect();
        if stale.iter().any(|l| l.kind.as_deref() == Some("veth")) {
            let fresh = claimed();
            stale.retain(|l| {
                l.kind.as_deref() != Some("veth")
                    || fresh
                        .as_ref()
                        .is_some_and(|claims| !claims.contains(&l.name))
            });
        }
        stale.sort_by_key(|l| order(l));
        for l in stale {
            self.dp
                .delete_link(l.index)
                .await
                .ctx(|| format!("deleting {}", l.name))?;
            changes.push(change("delete link", &l.name));
        }
        Ok(())
    }
}

fn change(action: &'static str, object: impl ToString) -> Change {
    Change {
        action,
        object: object.to_string(),
    }
}
