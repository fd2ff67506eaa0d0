//! The lab's underlay subnet ([`super::LabSpec::underlay`]): the addresses its hosts and its
//! outside client take on the underlay switch. Host N is the subnet's N-th address
//! (10.99.0.N in the default 10.99.0.0/24); the client is its 250th (10.99.0.250), or the
//! last usable address of a subnet smaller than a /24.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::LabError;

/// Where the client sits in a subnet of a /24 or more: 10.99.0.250 in the default underlay
/// (the hosts take .1 up to .50).
const CLIENT_OFFSET: u64 = 250;

/// The underlay `vxmesh lab up` uses unless `--underlay` names another: 10.99.0.0/24.
pub fn default_underlay() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 99, 0, 0), 24).expect("/24 is a valid prefix")
}

/// Where the lab's networks are (net K is 10.10.K.0/24), which the underlay may not overlap:
/// a network's subnet may not overlap its hosts' underlay prefix
/// ([`overlay_core::reserved`]).
pub fn lab_networks() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 10, 0, 0), 16).expect("/16 is a valid prefix")
}

/// The subnet of lab network number `k` (1-based): 10.10.K.0/24.
pub fn network_subnet(k: u32) -> String {
    format!("10.10.{k}.0/24")
}

/// Addresses in `underlay`, network and broadcast addresses included (2^(32 - prefix)).
fn size(underlay: Ipv4Net) -> u64 {
    1u64 << (32 - u32::from(underlay.prefix_len()))
}

/// The address `offset` places after the subnet's network address.
fn nth(underlay: Ipv4Net, offset: u64) -> Ipv4Addr {
    Ipv4Addr::from((u64::from(u32::from(underlay.network())) + offset) as u32)
}

/// The client's offset in `underlay`: 250, or the last usable address of a smaller subnet.
fn client_offset(underlay: Ipv4Net) -> u64 {
    CLIENT_OFFSET.min(size(underlay).saturating_sub(2))
}

/// Host number `n`'s (1-based) underlay address: the subnet's `n`-th address.
pub fn host_address(underlay: Ipv4Net, n: u32) -> Ipv4Addr {
    nth(underlay, u64::from(n))
}

/// The outside client's underlay address ([`super::CLIENT`]).
pub fn client_address(underlay: Ipv4Net) -> Ipv4Addr {
    nth(underlay, client_offset(underlay))
}

/// Checks that `underlay` can be the underlay of a lab of `hosts` hosts: a subnet (no host
/// bits set) inside a private range (RFC 1918 section 3: the lab's addresses must not stand
/// for real ones its hosts might need), outside the lab's networks ([`lab_networks`]), with
/// room for every host below the client ([`client_address`]).
///
/// Errors: [`LabError::Invalid`] naming field `underlay`.
pub fn check(underlay: Ipv4Net, hosts: u32) -> Result<(), LabError> {
    let invalid = |reason: String| LabError::Invalid {
        field: "underlay",
        value: underlay.to_string(),
        reason,
    };
    if underlay != underlay.trunc() {
        return Err(invalid(format!(
            "has host bits set: the subnet is {}",
            underlay.trunc()
        )));
    }
    if !(underlay.network().is_private() && underlay.broadcast().is_private()) {
        return Err(invalid(
            "must lie inside a private range (RFC 1918: 10.0.0.0/8, 172.16.0.0/12, \
             192.168.0.0/16)"
                .into(),
        ));
    }
    let networks = lab_networks();
    if overlay_core::reserved::overlaps(underlay, networks) {
        return Err(invalid(format!(
            "overlaps {networks}, where the lab's networks are (net1 {}, net2 {}, …)",
            network_subnet(1),
            network_subnet(2)
        )));
    }
    let room = client_offset(underlay).saturating_sub(1);
    if u64::from(hosts) > room {
        return Err(invalid(format!(
            "has room for {room} host(s) below the client's address, not {hosts}: a /{} holds \
             {} usable addresses (hosts from the first, the client at {})",
            underlay.prefix_len(),
            size(underlay).saturating_sub(2),
            client_address(underlay)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn reason(s: &str, hosts: u32) -> String {
        match check(net(s), hosts) {
            Err(LabError::Invalid { field, reason, .. }) => {
                assert_eq!(field, "underlay");
                reason
            }
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn the_default_keeps_the_addresses_it_always_had() {
        let u = default_underlay();
        assert_eq!(u.to_string(), "10.99.0.0/24");
        assert_eq!(host_address(u, 1), Ipv4Addr::new(10, 99, 0, 1));
        assert_eq!(host_address(u, 50), Ipv4Addr::new(10, 99, 0, 50));
        assert_eq!(client_address(u), Ipv4Addr::new(10, 99, 0, 250));
        check(u, 50).unwrap();
    }

    #[test]
    fn addresses_follow_the_chosen_subnet() {
        let u = net("172.20.4.0/22");
        assert_eq!(host_address(u, 3), Ipv4Addr::new(172, 20, 4, 3));
        assert_eq!(client_address(u), Ipv4Addr::new(172, 20, 4, 250));
        // A /28 has 14 usable addresses: the client takes the last, hosts 1 to 13 fit.
        let small = net("192.168.7.16/28");
        assert_eq!(client_address(small), Ipv4Addr::new(192, 168, 7, 30));
        assert_eq!(host_address(small, 13), Ipv4Addr::new(192, 168, 7, 29));
        check(small, 13).unwrap();
        assert!(reason("192.168.7.16/28", 14).contains("room for 13 host(s)"));
    }

    #[test]
    fn refuses_what_cannot_be_the_labs_underlay() {
        assert!(reason("10.77.0.5/24", 2).contains("the subnet is 10.77.0.0/24"));
        assert!(reason("8.8.8.0/24", 2).contains("private range"));
        assert!(reason("100.88.0.0/24", 2).contains("private range"));
        assert!(reason("0.0.0.0/0", 2).contains("private range"));
        assert!(reason("10.0.0.0/8", 2).contains("overlaps 10.10.0.0/16"));
        assert!(reason("10.10.3.0/24", 2).contains("overlaps 10.10.0.0/16"));
        assert!(reason("10.77.0.0/30", 2).contains("room for 1 host(s)"));
        assert!(reason("10.77.0.0/31", 1).contains("room for 0 host(s)"));
        assert!(reason("10.77.0.0/32", 1).contains("room for 0 host(s)"));
        check(net("10.77.0.0/29"), 5).unwrap();
        check(net("10.11.0.0/16"), 50).unwrap();
    }
}
