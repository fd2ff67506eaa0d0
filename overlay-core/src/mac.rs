//! Ethernet MAC addresses: parsing, printing, and the deterministic MACs vxmesh gives endpoints.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

/// Why a string is not a MAC address.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{0}' is not a MAC address (expected six hex octets like 0a:58:0a:0a:01:02)")]
pub struct MacParseError(pub String);

impl MacAddr {
    /// The all-zero address: in a VXLAN FDB it is the default destination for BUM traffic.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The MAC vxmesh gives an endpoint with this address: locally administered, unicast,
    /// `0a:58` followed by the IPv4 octets (the convention Kubernetes bridge plugins use).
    pub fn for_endpoint(ip: Ipv4Addr) -> MacAddr {
        let o = ip.octets();
        MacAddr([0x0a, 0x58, o[0], o[1], o[2], o[3]])
    }

    /// The MAC naming the node with underlay address `underlay` in the overlay: `0a:5e`
    /// followed by the IPv4 octets (locally administered, unicast, outside the endpoints'
    /// `0a:58`/`0a:5a` spaces). The routing mesh sends a flow's replies back to its ingress
    /// node with this MAC as their destination; every VXLAN device has a static FDB entry for
    /// each other node's, so they are never flooded.
    pub fn for_node(underlay: Ipv4Addr) -> MacAddr {
        let o = underlay.octets();
        MacAddr([0x0a, 0x5e, o[0], o[1], o[2], o[3]])
    }

    /// Whether the MAC lies in the node-MAC space (`0a:5e:…`, and `0a:5f:…`, which the
    /// routing mesh's DSR frames carry): no endpoint may have one, or the FDB would hold two
    /// entries for one MAC.
    pub fn is_node_space(&self) -> bool {
        self.0[0] == 0x0a && self.0[1] & !1 == 0x5e
    }

    /// The MAC for an endpoint with this address when earlier choices are taken: attempt 0 is
    /// [`MacAddr::for_endpoint`]; attempt n > 0 is `0a:5a` followed by 32 bits of a stable
    /// hash (FNV-1a) of the address and n, outside the `0a:58` space that addresses derive
    /// into, so an alternative never takes the MAC another address would derive.
    pub fn for_endpoint_attempt(ip: Ipv4Addr, attempt: u32) -> MacAddr {
        if attempt == 0 {
            return MacAddr::for_endpoint(ip);
        }
        let mut h: u32 = 0x811c_9dc5;
        for b in ip.octets().into_iter().chain(attempt.to_be_bytes()) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        let o = h.to_be_bytes();
        MacAddr([0x0a, 0x5a, o[0], o[1], o[2], o[3]])
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// Multicast (group) bit set: never a valid endpoint address.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(o: [u8; 6]) -> Self {
        MacAddr(o)
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let m: MacAddr = "0A:58:0a:0a:01:02".parse().unwrap();
        assert_eq!(m.to_string(), "0a:58:0a:0a:01:02");
        assert_eq!("0a-58-0a-0a-01-02".parse::<MacAddr>().unwrap(), m);
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "",
            "0a:58:0a:0a:01",
            "0a:58:0a:0a:01:02:03",
            "zz:58:0a:0a:01:02",
            "a:58:0a:0a:01:02",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoint_mac_is_local_unicast() {
        let m = MacAddr::for_endpoint(Ipv4Addr::new(10, 10, 1, 2));
        assert_eq!(m.to_string(), "0a:58:0a:0a:01:02");
        assert!(!m.is_multicast());
        assert_eq!(m.0[0] & 2, 2);
    }
}
