//! The WireGuard interface of encrypted networks: address, MTU and peers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};

use crate::dataplane::Link;

use crate::wireguard::uapi::PeerConfig;
use crate::wireguard::{PublicKey, PERSISTENT_KEEPALIVE, WIREGUARD_OVERHEAD};

use crate::reconcile::desired::DesiredWireguard;
use crate::reconcile::sysctl::Family;

use super::apply::{change, Change, Context, ReconcileError, Reconciler, WireguardHandle};

impl Reconciler {
    /// Deletes the WireGuard interface `ifname` over netlink, if it exists and is a TUN/TAP
    /// (link kind `tun`): the interface is persistent (see [`crate::wireguard::tundev`]), so
    /// nothing else removes it once no process holds it. Returns whether it deleted one. A
    /// device of that name of another kind is not vxmesh's and is left alone.
    pub async fn remove_wireguard_device(
        &self,
        ifname: &str,
        changes: &mut Vec<Change>,
    ) -> Result<bool, ReconcileError> {
        let deleted = self
            .dp
            .delete_tun(ifname)
            .await
            .ctx(|| format!("WireGuard interface {ifname}: deleting"))?;
        if !deleted {
            return Ok(false);
        }
        changes.push(change("delete link", ifname));
        Ok(true)
    }

    /// The WireGuard interface: tunnel address, MTU (underlay less WireGuard's overhead), up,
    /// and exactly the peers the store names (a key not in the store gets nothing through).
    pub(super) async fn wireguard(
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

    pub(super) async fn wireguard_peers(
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
        // Tunnel addresses of the peers being added: poked once they are configured.
        let added: Vec<std::net::Ipv4Addr> = ops
            .iter()
            .filter(|(add, _, _)| *add)
            .filter_map(|(_, cfg, _)| match cfg.allowed_ips.first() {
                Some(IpNet::V4(net)) => Some(net.addr()),
                _ => None,
            })
            .collect();
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
        if let Some(e) = done.1 {
            return Err(err(e));
        }
        poke(&added);
        Ok(())
    }
}

/// Sends one datagram to each new peer's tunnel address (the discard port), so the WireGuard
/// handshake starts now, from this side, instead of when traffic or the keepalive timer next
/// asks for it: a peer that was configured before this host knew its key (or that restarted)
/// would otherwise wait for its next retry. Best effort: failures only delay the handshake.
fn poke(peers: &[std::net::Ipv4Addr]) {
    if peers.is_empty() {
        return;
    }
    match std::net::UdpSocket::bind(("0.0.0.0", 0)) {
        Ok(sock) => {
            for ip in peers {
                if let Err(e) = sock.send_to(&[0], (*ip, 9)) {
                    tracing::debug!(peer = %ip, error = %e, "cannot poke the WireGuard peer");
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot open a socket to poke WireGuard peers"),
    }
}
