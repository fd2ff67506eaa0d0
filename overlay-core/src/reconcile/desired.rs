//! What one host's kernel should hold, computed from a store snapshot. Pure: no kernel access.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use crate::catalog::Snapshot;
use crate::dataplane::FdbEntry;
use crate::mac::MacAddr;
use crate::model::{Endpoint, Network, Node};
use crate::reserved::Reserved;

/// The state of one network on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredNetwork {
    pub network: Network,
    /// Static FDB entries on the VXLAN device: per other node one all-zero (BUM) entry and
    /// one for its node MAC ([`MacAddr::for_node`], where the routing mesh sends replies back
    /// to their ingress node), and one unicast entry per remote endpoint toward its node.
    pub fdb: BTreeSet<FdbEntry>,
    /// Permanent ARP entries (on the bridge) and static bridge FDB entries (on the VXLAN port)
    /// for every remote endpoint.
    pub neighbours: BTreeMap<Ipv4Addr, MacAddr>,
    /// The endpoints on this host that vxmesh attached (their veths belong on the bridge).
    pub local_attached: Vec<Endpoint>,
    /// The VXLAN device's source address: the node's underlay address for a plain network, its
    /// WireGuard tunnel address for an encrypted one (`None` until the node has published one:
    /// an encrypted network is not built before its traffic can be encrypted).
    pub local: Option<Ipv4Addr>,
}

/// One WireGuard peer: another node with a published identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPeer {
    pub node: String,
    /// Base64 public key.
    pub public_key: String,
    pub endpoint: SocketAddrV4,
    pub tunnel_ip: Ipv4Addr,
}

/// This host's WireGuard interface and its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredWireguard {
    pub tunnel_ip: Ipv4Addr,
    pub port: u16,
    /// By node name.
    pub peers: BTreeMap<String, DesiredPeer>,
}

/// The state of a whole host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// `None` when this host is not (or no longer) a node: then nothing of vxmesh belongs here.
    pub node: Option<Node>,
    pub networks: BTreeMap<String, DesiredNetwork>,
    /// `Some` once this node has published its WireGuard identity.
    pub wireguard: Option<DesiredWireguard>,
    /// The lowest underlay MTU (bytes) the *other* nodes published; each network's MTU here is
    /// derived from the lower of this and this host's own underlay MTU, so that a full-size
    /// packet fits every host's underlay. `None` while no other node has published one.
    pub peer_underlay_mtu: Option<u32>,
    /// Networks in the store that this host does not build, and why: their subnet overlaps
    /// addresses the hosts use for themselves ([`crate::reserved`]). Their devices, if any, are
    /// removed like those of a removed network.
    pub refused: BTreeMap<String, String>,
    /// The endpoints of refused networks that live on this host, with the reason.
    pub refused_endpoints: Vec<(Endpoint, String)>,
}

impl Desired {
    pub fn compute(snapshot: &Snapshot, node_name: &str) -> Desired {
        let Some(me) = snapshot.nodes.get(node_name).cloned() else {
            return Desired {
                node: None,
                networks: BTreeMap::new(),
                wireguard: None,
                peer_underlay_mtu: None,
                refused: BTreeMap::new(),
                refused_endpoints: Vec::new(),
            };
        };
        // What this host may not route into an overlay: every node's underlay address, the
        // tunnel range, and the prefixes of this host's own addresses (as its agent read them).
        let mut reserved = Reserved::new().with_underlays(snapshot.nodes.values());
        if let Some(mine) = snapshot.hosts.get(node_name) {
            reserved = reserved.with_host(node_name, mine);
        }
        let refused: BTreeMap<String, String> = snapshot
            .networks
            .values()
            .filter_map(|n| {
                let e = reserved.check_subnet(n.subnet).err()?;
                Some((n.name.clone(), format!("not built on this host: {e}")))
            })
            .collect();
        let refused_endpoints = snapshot
            .endpoints
            .iter()
            .filter(|e| e.node == me.name && e.host_ifname.is_some())
            .filter_map(|e| Some((e.clone(), refused.get(&e.network)?.clone())))
            .collect();
        let peer_underlay_mtu = snapshot
            .hosts
            .iter()
            .filter(|(n, _)| **n != me.name && snapshot.nodes.contains_key(*n))
            .map(|(_, r)| r.underlay_mtu)
            .min();
        // A node's tunnel address, once it has a complete WireGuard identity.
        let tunnel = |n: &Node| {
            n.wireguard
                .as_ref()
                .filter(|w| w.is_complete())
                .and_then(|w| w.tunnel_ip)
        };
        let my_tunnel = tunnel(&me);
        let wireguard = my_tunnel.map(|tunnel_ip| DesiredWireguard {
            tunnel_ip,
            port: me.wireguard.as_ref().map(|w| w.port).unwrap_or_default(),
            peers: snapshot
                .nodes
                .values()
                .filter(|n| n.name != me.name && !snapshot.node_down(&n.name))
                .filter_map(|n| {
                    let w = n.wireguard.as_ref()?;
                    let peer = DesiredPeer {
                        node: n.name.clone(),
                        public_key: w.public_key.clone(),
                        endpoint: SocketAddrV4::new(n.underlay, w.port),
                        tunnel_ip: tunnel(n)?,
                    };
                    Some((n.name.clone(), peer))
                })
                .collect(),
        });
        // Where a network's VXLAN packets toward node `n` go: its underlay address, or for an
        // encrypted network its tunnel address (and nowhere if it has none: never in clear).
        let dst = |network: &Network, n: &Node| {
            if network.encrypted {
                tunnel(n)
            } else {
                Some(n.underlay)
            }
        };
        let networks = snapshot
            .networks
            .values()
            .filter(|n| !refused.contains_key(&n.name))
            .map(|network| {
                let mut fdb = BTreeSet::new();
                let mut neighbours = BTreeMap::new();
                let mut local_attached = Vec::new();
                // A node whose agent's lease expired gets nothing: no flood entry, no entries
                // for its endpoints (they come back with its agent).
                let live_other = |n: &&Node| n.name != me.name && !snapshot.node_down(&n.name);
                for other in snapshot.nodes.values().filter(live_other) {
                    if let Some(ip) = dst(network, other) {
                        for mac in [MacAddr::ZERO, MacAddr::for_node(other.underlay)] {
                            fdb.insert(FdbEntry {
                                mac,
                                dst: IpAddr::V4(ip),
                            });
                        }
                    }
                }
                for e in snapshot
                    .endpoints
                    .iter()
                    .filter(|e| e.network == network.name)
                {
                    if e.node == me.name {
                        if e.host_ifname.is_some() {
                            local_attached.push(e.clone());
                        }
                        continue;
                    }
                    // An endpoint whose node is unknown (or down) has nowhere to be sent.
                    let Some(ip) = snapshot
                        .nodes
                        .get(&e.node)
                        .filter(live_other)
                        .and_then(|n| dst(network, n))
                    else {
                        continue;
                    };
                    fdb.insert(FdbEntry {
                        mac: e.mac,
                        dst: IpAddr::V4(ip),
                    });
                    neighbours.insert(e.ip, e.mac);
                }
                let d = DesiredNetwork {
                    network: network.clone(),
                    fdb,
                    neighbours,
                    local_attached,
                    local: if network.encrypted {
                        my_tunnel
                    } else {
                        Some(me.underlay)
                    },
                };
                (network.name.clone(), d)
            })
            .collect();
        Desired {
            node: Some(me),
            networks,
            wireguard,
            peer_underlay_mtu,
            refused,
            refused_endpoints,
        }
    }

    /// The MTU (bytes) of a network on this host, whose own underlay device has `underlay_mtu`:
    /// derived from the lowest underlay MTU of all nodes that published one, this one included.
    pub fn network_mtu(&self, network: &Network, underlay_mtu: u32) -> u32 {
        network.effective_mtu(
            self.peer_underlay_mtu
                .map_or(underlay_mtu, |p| p.min(underlay_mtu)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::default();
        for (name, ip) in [
            ("h1", "192.0.2.1"),
            ("h2", "192.0.2.2"),
            ("h3", "192.0.2.3"),
        ] {
            s.nodes.insert(
                name.into(),
                Node {
                    name: name.into(),
                    underlay: ip.parse().unwrap(),
                    wireguard: None,
                },
            );
        }
        s.networks.insert(
            "a".into(),
            Network {
                name: "a".into(),
                subnet: "10.1.0.0/24".parse().unwrap(),
                gateway: "10.1.0.1".parse().unwrap(),
                vni: 4096,
                mtu: None,
                encrypted: false,
            },
        );
        for (id, node, ip) in [
            ("c1", "h1", "10.1.0.2"),
            ("c2", "h2", "10.1.0.3"),
            ("x", "gone", "10.1.0.9"),
        ] {
            let ip: Ipv4Addr = ip.parse().unwrap();
            s.endpoints.push(Endpoint {
                id: id.into(),
                network: "a".into(),
                node: node.into(),
                ip,
                mac: MacAddr::for_endpoint(ip),
                host_ifname: Some(format!("ve-{id}")),
                cni: None,
                mtu: None,
            });
        }
        s
    }

    #[test]
    fn bum_and_node_macs_to_every_other_node_unicast_only_to_the_owner() {
        let d = Desired::compute(&snapshot(), "h1");
        let a = &d.networks["a"];
        let text: Vec<String> = a
            .fdb
            .iter()
            .map(|f| format!("{} {}", f.mac, f.dst))
            .collect();
        assert_eq!(
            text,
            [
                "00:00:00:00:00:00 192.0.2.2",
                "00:00:00:00:00:00 192.0.2.3",
                "0a:58:0a:01:00:03 192.0.2.2",
                "0a:5e:c0:00:02:02 192.0.2.2",
                "0a:5e:c0:00:02:03 192.0.2.3"
            ]
        );
        assert_eq!(a.neighbours.len(), 1);
        assert_eq!(a.local_attached.len(), 1);
        assert_eq!(a.local_attached[0].id, "c1");
    }

    fn identity(key_byte: u8, ip: &str) -> Option<crate::model::WireguardIdentity> {
        use base64::Engine;
        Some(crate::model::WireguardIdentity {
            public_key: base64::engine::general_purpose::STANDARD.encode([key_byte; 32]),
            port: 51820,
            tunnel_ip: Some(ip.parse().unwrap()),
            implementation: None,
            rotate_requested: false,
        })
    }

    #[test]
    fn encrypted_networks_go_between_tunnel_addresses_and_never_in_clear() {
        let mut s = snapshot();
        s.networks.get_mut("a").unwrap().encrypted = true;
        // h3 has no WireGuard identity: nothing of the encrypted network goes to it.
        s.nodes.get_mut("h1").unwrap().wireguard = identity(1, "100.88.0.1");
        s.nodes.get_mut("h2").unwrap().wireguard = identity(2, "100.88.0.2");
        let d = Desired::compute(&s, "h1");
        let a = &d.networks["a"];
        assert_eq!(a.local, Some("100.88.0.1".parse().unwrap()));
        let dsts: BTreeSet<String> = a.fdb.iter().map(|f| f.dst.to_string()).collect();
        assert_eq!(dsts, BTreeSet::from(["100.88.0.2".to_string()]));
        let wg = d.wireguard.unwrap();
        assert_eq!(wg.tunnel_ip.to_string(), "100.88.0.1");
        assert_eq!(wg.peers.len(), 1);
        assert_eq!(wg.peers["h2"].endpoint.to_string(), "192.0.2.2:51820");
        // Without its own identity the node cannot send encrypted: no local address.
        let d3 = Desired::compute(&s, "h3");
        assert_eq!(d3.networks["a"].local, None);
        assert!(d3.wireguard.is_none());
    }

    fn report(mtu: u32, addresses: &[(&str, &str)]) -> crate::model::HostReport {
        crate::model::HostReport {
            underlay_mtu: mtu,
            addresses: addresses
                .iter()
                .map(|(i, a)| crate::model::HostAddress {
                    interface: i.to_string(),
                    address: a.parse().unwrap(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_network_mtu_fits_the_lowest_underlay_of_all_nodes() {
        let mut s = snapshot();
        let d = Desired::compute(&s, "h1");
        // Nobody published: this host's own underlay decides.
        assert_eq!(d.peer_underlay_mtu, None);
        assert_eq!(d.network_mtu(&d.networks["a"].network, 1500), 1450);
        s.hosts.insert("h1".into(), report(1200, &[]));
        s.hosts.insert("h2".into(), report(1400, &[]));
        s.hosts.insert("h3".into(), report(9000, &[]));
        // A report of a node that is not in the store any more counts for nothing.
        s.hosts.insert("gone".into(), report(1300, &[]));
        let d = Desired::compute(&s, "h1");
        // h1's own published value is not used: the agent reads its own underlay live.
        assert_eq!(d.peer_underlay_mtu, Some(1400));
        let mut net = d.networks["a"].network.clone();
        assert_eq!(d.network_mtu(&net, 1500), 1350);
        assert_eq!(d.network_mtu(&net, 1380), 1330);
        net.encrypted = true;
        assert_eq!(d.network_mtu(&net, 1500), 1290);
        net.mtu = Some(1280);
        assert_eq!(d.network_mtu(&net, 1500), 1280);
        assert_eq!(Desired::compute(&s, "h2").peer_underlay_mtu, Some(1200));
    }

    #[test]
    fn a_network_overlapping_what_the_hosts_use_is_refused_here() {
        let mut s = snapshot();
        for n in [
            Network::for_tests("under", "192.0.2.0/30"),
            Network::for_tests("tun", "100.88.1.0/24"),
            Network::for_tests("dock", "172.17.0.0/24"),
        ] {
            s.networks.insert(n.name.clone(), n);
        }
        s.hosts.insert(
            "h1".into(),
            report(
                1500,
                &[("eth0", "192.0.2.1/24"), ("docker0", "172.17.0.1/16")],
            ),
        );
        s.endpoints.push(Endpoint {
            id: "d1".into(),
            network: "dock".into(),
            node: "h1".into(),
            ip: "172.17.0.5".parse().unwrap(),
            mac: MacAddr::for_endpoint("172.17.0.5".parse().unwrap()),
            host_ifname: Some("ve-d1".into()),
            cni: None,
            mtu: None,
        });
        let d = Desired::compute(&s, "h1");
        let refused: Vec<&str> = d.refused.keys().map(String::as_str).collect();
        assert_eq!(refused, ["dock", "tun", "under"]);
        assert!(d.refused["under"].contains("overlaps node h1's underlay address 192.0.2.1"));
        assert!(d.refused["tun"].contains("the WireGuard tunnel range"));
        assert!(d.refused["dock"].contains("address 172.17.0.1/16 on docker0"));
        assert_eq!(d.networks.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(d.refused_endpoints.len(), 1);
        assert_eq!(d.refused_endpoints[0].0.id, "d1");
        // Another host's own prefixes do not stop this one; underlays and the tunnel range do.
        let d2 = Desired::compute(&s, "h2");
        assert!(d2.networks.contains_key("dock"));
        assert!(d2.refused.contains_key("under") && d2.refused.contains_key("tun"));
    }

    #[test]
    fn a_node_whose_lease_expired_gets_no_entries_and_no_peer() {
        let mut s = snapshot();
        s.networks.get_mut("a").unwrap().encrypted = true;
        for (n, k, ip) in [
            ("h1", 1, "100.88.0.1"),
            ("h2", 2, "100.88.0.2"),
            ("h3", 3, "100.88.0.3"),
        ] {
            s.nodes.get_mut(n).unwrap().wireguard = identity(k, ip);
            // Every agent ran once (published a report); h1 and h3 are alive, h2's lease expired.
            s.hosts.insert(n.into(), report(1500, &[]));
        }
        s.alive.extend(["h1".to_string(), "h3".to_string()]);
        let d = Desired::compute(&s, "h1");
        let dsts: Vec<String> = d.networks["a"]
            .fdb
            .iter()
            .map(|f| f.dst.to_string())
            .collect();
        assert_eq!(
            dsts,
            ["100.88.0.3", "100.88.0.3"],
            "nothing toward h2, not even its endpoint or node MAC: h3's broadcast and node MAC"
        );
        assert!(d.networks["a"].neighbours.is_empty());
        assert_eq!(
            d.wireguard.unwrap().peers.keys().collect::<Vec<_>>(),
            ["h3"]
        );
        // Its agent is back: everything returns. A node no agent ever ran on is never down.
        s.alive.insert("h2".into());
        s.hosts.remove("h3");
        s.alive.remove("h3");
        let d = Desired::compute(&s, "h1");
        // Broadcast and node MAC toward h2 and h3, and h2's endpoint.
        assert_eq!(d.networks["a"].fdb.len(), 5);
        assert_eq!(d.networks["a"].neighbours.len(), 1);
        assert_eq!(d.wireguard.unwrap().peers.len(), 2);
    }

    #[test]
    fn a_host_that_is_no_node_wants_nothing() {
        let d = Desired::compute(&snapshot(), "h9");
        assert!(d.node.is_none());
        assert!(d.networks.is_empty());
    }
}
