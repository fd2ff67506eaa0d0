//! What one host's kernel should hold, computed from a store snapshot. Pure: no kernel access.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use crate::catalog::Snapshot;
use crate::dataplane::FdbEntry;
use crate::mac::MacAddr;
use crate::model::{Endpoint, Network, Node};

/// The state of one network on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredNetwork {
    pub network: Network,
    /// Static FDB entries on the VXLAN device: one all-zero (BUM) entry per other node, and
    /// one unicast entry per remote endpoint toward its node.
    pub fdb: BTreeSet<FdbEntry>,
    /// Permanent ARP entries (on the bridge) and static bridge FDB entries (on the VXLAN port)
    /// for every remote endpoint.
    pub neighbours: BTreeMap<Ipv4Addr, MacAddr>,
    /// The endpoints on this host that vxmesh attached (their veths belong on the bridge).
    pub local_attached: Vec<Endpoint>,
}

/// The state of a whole host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// `None` when this host is not (or no longer) a node: then nothing of vxmesh belongs here.
    pub node: Option<Node>,
    pub networks: BTreeMap<String, DesiredNetwork>,
}

impl Desired {
    pub fn compute(snapshot: &Snapshot, node_name: &str) -> Desired {
        let Some(me) = snapshot.nodes.get(node_name).cloned() else {
            return Desired {
                node: None,
                networks: BTreeMap::new(),
            };
        };
        let networks = snapshot
            .networks
            .values()
            .map(|network| {
                let mut fdb = BTreeSet::new();
                let mut neighbours = BTreeMap::new();
                let mut local_attached = Vec::new();
                for other in snapshot.nodes.values().filter(|n| n.name != me.name) {
                    fdb.insert(FdbEntry {
                        mac: MacAddr::ZERO,
                        dst: IpAddr::V4(other.underlay),
                    });
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
                    // An endpoint whose node is unknown has nowhere to be sent.
                    let Some(node) = snapshot.nodes.get(&e.node) else {
                        continue;
                    };
                    fdb.insert(FdbEntry {
                        mac: e.mac,
                        dst: IpAddr::V4(node.underlay),
                    });
                    neighbours.insert(e.ip, e.mac);
                }
                let d = DesiredNetwork {
                    network: network.clone(),
                    fdb,
                    neighbours,
                    local_attached,
                };
                (network.name.clone(), d)
            })
            .collect();
        Desired {
            node: Some(me),
            networks,
        }
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
            });
        }
        s
    }

    #[test]
    fn bum_to_every_other_node_unicast_only_to_the_owner() {
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
                "0a:58:0a:01:00:03 192.0.2.2"
            ]
        );
        assert_eq!(a.neighbours.len(), 1);
        assert_eq!(a.local_attached.len(), 1);
        assert_eq!(a.local_attached[0].id, "c1");
    }

    #[test]
    fn a_host_that_is_no_node_wants_nothing() {
        let d = Desired::compute(&snapshot(), "h9");
        assert!(d.node.is_none());
        assert!(d.networks.is_empty());
    }
}
