//! Address management: which address of a subnet to hand out next.
//!
//! The allocations themselves are keys in the store (`keys::ipam`), created with a
//! compare-and-swap so two hosts can never take the same address; this module only chooses.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The lowest host address of `subnet` that is neither the gateway nor in `taken`.
pub fn first_free(
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    taken: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    subnet
        .hosts()
        .find(|ip| *ip != gateway && !taken.contains(ip))
}

/// How many addresses of `subnet` endpoints can have (hosts less the gateway).
pub fn capacity(subnet: Ipv4Net) -> u64 {
    let hosts = match subnet.prefix_len() {
        32 => 1,
        31 => 2,
        p => (1u64 << (32 - p)) - 2,
    };
    hosts.saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_gateway_and_taken() {
        let net: Ipv4Net = "10.0.0.0/29".parse().unwrap();
        let gw = "10.0.0.1".parse().unwrap();
        let mut taken = BTreeSet::new();
        assert_eq!(
            first_free(net, gw, &taken),
            Some("10.0.0.2".parse().unwrap())
        );
        taken.insert("10.0.0.2".parse().unwrap());
        taken.insert("10.0.0.4".parse().unwrap());
        assert_eq!(
            first_free(net, gw, &taken),
            Some("10.0.0.3".parse().unwrap())
        );
        for i in 3..=6 {
            taken.insert(Ipv4Addr::new(10, 0, 0, i));
        }
        assert_eq!(first_free(net, gw, &taken), None);
        assert_eq!(capacity(net), 5);
    }
}
