//! Addresses vxmesh's hosts use for themselves, which no network's subnet may overlap: the
//! nodes' underlay addresses, the prefixes of the addresses on the hosts' own interfaces (as
//! their agents publish them, [`HostReport::addresses`]) and the WireGuard tunnel range.
//!
//! A network whose subnet overlaps one of them puts a route on its bridge that captures the
//! hosts' own traffic (a more specific one than the underlay's, or the same): the VXLAN
//! packets between hosts would be sent into the overlay and cross-host traffic would stop.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::model::{HostReport, Network, Node};
use crate::validate::ValidationError;

/// One range a network may not overlap, and what uses it (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedRange {
    pub net: Ipv4Net,
    /// `node h1's underlay address 10.99.0.1`, `the WireGuard tunnel range 100.88.0.0/16`, ...
    pub what: String,
}

/// The ranges the hosts use for themselves.
#[derive(Debug, Clone, Default)]
pub struct Reserved {
    ranges: Vec<ReservedRange>,
}

/// Whether two prefixes share an address (one contains the other's first address).
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl Reserved {
    /// The WireGuard tunnel range only.
    pub fn new() -> Reserved {
        let tunnel = crate::wireguard::tunnel_net();
        Reserved {
            ranges: vec![ReservedRange {
                net: tunnel,
                what: format!("the WireGuard tunnel range {tunnel}"),
            }],
        }
    }

    /// Adds each node's underlay address (as a /32).
    pub fn with_underlays<'a>(mut self, nodes: impl IntoIterator<Item = &'a Node>) -> Self {
        for n in nodes {
            self.ranges.push(ReservedRange {
                net: Ipv4Net::from(n.underlay),
                what: format!("node {}'s underlay address {}", n.name, n.underlay),
            });
        }
        self
    }

    /// Adds the prefix of every address `node`'s agent published.
    pub fn with_host(mut self, node: &str, report: &HostReport) -> Self {
        for a in &report.addresses {
            self.ranges.push(ReservedRange {
                net: a.address.trunc(),
                what: format!(
                    "{}, the prefix of node {node}'s address {} on {}",
                    a.address.trunc(),
                    a.address,
                    a.interface
                ),
            });
        }
        self
    }

    /// The first reserved range `subnet` overlaps, if any.
    pub fn conflict(&self, subnet: Ipv4Net) -> Option<&ReservedRange> {
        self.ranges.iter().find(|r| overlaps(r.net, subnet))
    }

    /// `Ok` when `subnet` overlaps nothing reserved; otherwise the error for field `subnet`.
    pub fn check_subnet(&self, subnet: Ipv4Net) -> Result<(), ValidationError> {
        match self.conflict(subnet) {
            Some(r) => Err(ValidationError::new(
                "subnet",
                subnet,
                format!("overlaps {}", r.what),
            )),
            None => Ok(()),
        }
    }
}

/// `Ok` when a node's underlay address lies outside every network's subnet and outside the
/// tunnel range; otherwise the error for field `underlay`.
pub fn check_underlay<'a>(
    ip: Ipv4Addr,
    networks: impl IntoIterator<Item = &'a Network>,
) -> Result<(), ValidationError> {
    let tunnel = crate::wireguard::tunnel_net();
    if tunnel.contains(&ip) {
        return Err(ValidationError::new(
            "underlay",
            ip,
            format!("is inside the WireGuard tunnel range {tunnel}"),
        ));
    }
    match networks.into_iter().find(|n| n.subnet.contains(&ip)) {
        Some(n) => Err(ValidationError::new(
            "underlay",
            ip,
            format!("is inside network {}'s subnet {}", n.name, n.subnet),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HostAddress;

    fn node(name: &str, ip: &str) -> Node {
        Node {
            name: name.into(),
            underlay: ip.parse().unwrap(),
            wireguard: None,
        }
    }

    #[test]
    fn underlays_host_prefixes_and_the_tunnel_range_are_reserved() {
        let report = HostReport {
            underlay_mtu: 1500,
            addresses: vec![HostAddress {
                interface: "eth0".into(),
                address: "10.99.0.1/24".parse().unwrap(),
            }],
            ..Default::default()
        };
        let r = Reserved::new()
            .with_underlays(&[node("h1", "10.99.0.1"), node("h2", "192.0.2.7")])
            .with_host("h1", &report);
        let err = |s: &str| r.check_subnet(s.parse().unwrap()).unwrap_err().to_string();
        assert_eq!(
            err("10.99.0.0/25"),
            "invalid subnet '10.99.0.0/25': overlaps node h1's underlay address 10.99.0.1"
        );
        assert_eq!(
            err("10.99.0.128/25"),
            "invalid subnet '10.99.0.128/25': overlaps 10.99.0.0/24, the prefix of node h1's \
             address 10.99.0.1/24 on eth0"
        );
        assert!(err("10.0.0.0/8").contains("overlaps node h1's underlay"));
        assert!(err("192.0.2.0/29").contains("node h2's underlay address 192.0.2.7"));
        assert!(err("100.88.7.0/24").contains("the WireGuard tunnel range 100.88.0.0/16"));
        assert!(err("100.64.0.0/10").contains("the WireGuard tunnel range"));
        assert!(r.check_subnet("10.10.1.0/24".parse().unwrap()).is_ok());
        assert!(r.check_subnet("192.0.2.8/29".parse().unwrap()).is_ok());
    }

    #[test]
    fn an_underlay_may_not_sit_in_a_network_or_the_tunnel_range() {
        let net = Network::for_tests("a", "10.1.0.0/24");
        let e = check_underlay("10.1.0.7".parse().unwrap(), [&net]).unwrap_err();
        assert_eq!(e.field, "underlay");
        assert!(e
            .to_string()
            .contains("is inside network a's subnet 10.1.0.0/24"));
        let e = check_underlay("100.88.0.9".parse().unwrap(), [&net]).unwrap_err();
        assert!(e.to_string().contains("tunnel range"), "{e}");
        assert!(check_underlay("10.1.1.7".parse().unwrap(), [&net]).is_ok());
    }
}
