//! Validation of every value that comes from outside: CLI flags, CNI input, store contents.
//!
//! Each error names the field, the value and what is wrong with it.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::mac::MacAddr;
use crate::model::{Endpoint, HostReport, Network, Node};

/// Longest network name: the device prefixes (`vb-`, `vx-`) plus the name fit in 15 bytes.
pub const NAME_MAX: usize = 12;
/// Longest node name and endpoint id.
pub const ID_MAX: usize = 64;
/// VNIs below this are left to hand-made VXLAN links; vxmesh picks from here up.
pub const VNI_MIN: u32 = 4096;
/// The largest 24-bit VNI.
pub const VNI_MAX: u32 = 16_777_215;
/// Smallest MTU a network may ask for (IPv4's minimum datagram size is 576; 1280 keeps IPv6 possible).
pub const MTU_MIN: u32 = 1280;
/// Largest MTU a network may ask for (jumbo frames).
pub const MTU_MAX: u32 = 9000;
/// Widest subnet a network may have (/8) and narrowest (/29: gateway and at least four hosts).
pub const PREFIX_MIN: u8 = 8;
pub const PREFIX_MAX: u8 = 29;

/// A bad value, with the field it was given for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} '{value}': {reason}")]
pub struct ValidationError {
    pub field: &'static str,
    pub value: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        ValidationError {
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

fn check_chars(field: &'static str, s: &str, max: usize) -> Result<(), ValidationError> {
    if s.is_empty() {
        return Err(ValidationError::new(field, s, "must not be empty"));
    }
    if s.len() > max {
        return Err(ValidationError::new(
            field,
            s,
            format!("is {} characters long; at most {max} are allowed", s.len()),
        ));
    }
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(ValidationError::new(
            field,
            s,
            "must start with a letter or digit",
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(ValidationError::new(
            field,
            s,
            format!("contains '{c}'; only letters, digits, '-', '_' and '.' are allowed"),
        ));
    }
    Ok(())
}

/// A network name becomes part of interface names (`vb-NAME`, `vx-NAME`).
pub fn network_name(name: &str) -> Result<(), ValidationError> {
    check_chars("network name", name, NAME_MAX)
}

pub fn node_name(name: &str) -> Result<(), ValidationError> {
    check_chars("node name", name, ID_MAX)
}

pub fn endpoint_id(id: &str) -> Result<(), ValidationError> {
    check_chars("endpoint name", id, ID_MAX)
}

/// Parses and checks a subnet: the network address itself (no host bits), a prefix between
/// /8 and /29, and not a loopback, multicast, link-local or broadcast range.
pub fn subnet(text: &str) -> Result<Ipv4Net, ValidationError> {
    let net: Ipv4Net = text.parse().map_err(|_| {
        ValidationError::new("subnet", text, "is not an IPv4 CIDR like 10.10.1.0/24")
    })?;
    check_subnet(&net)?;
    Ok(net)
}

fn check_subnet(net: &Ipv4Net) -> Result<(), ValidationError> {
    let text = net.to_string();
    if net.network() != net.addr() {
        return Err(ValidationError::new(
            "subnet",
            &text,
            format!("has host bits set; did you mean {}?", net.trunc()),
        ));
    }
    if net.prefix_len() < PREFIX_MIN || net.prefix_len() > PREFIX_MAX {
        return Err(ValidationError::new(
            "subnet",
            &text,
            format!("prefix must be between /{PREFIX_MIN} and /{PREFIX_MAX}"),
        ));
    }
    let a = net.addr();
    if a.is_loopback()
        || a.is_multicast()
        || a.is_link_local()
        || a.is_unspecified()
        || a.octets()[0] >= 240
    {
        return Err(ValidationError::new(
            "subnet",
            &text,
            "must be a unicast range (not loopback, link-local, multicast or reserved)",
        ));
    }
    Ok(())
}

pub fn vni(vni: u32) -> Result<(), ValidationError> {
    if !(VNI_MIN..=VNI_MAX).contains(&vni) {
        return Err(ValidationError::new(
            "vni",
            vni,
            format!("must be between {VNI_MIN} and {VNI_MAX}"),
        ));
    }
    Ok(())
}

pub fn mtu(mtu: u32) -> Result<(), ValidationError> {
    if !(MTU_MIN..=MTU_MAX).contains(&mtu) {
        return Err(ValidationError::new(
            "mtu",
            mtu,
            format!("must be between {MTU_MIN} and {MTU_MAX}"),
        ));
    }
    Ok(())
}

/// An underlay address must be a unicast address another host can send to.
pub fn underlay(ip: Ipv4Addr) -> Result<(), ValidationError> {
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback() {
        return Err(ValidationError::new(
            "underlay",
            ip,
            "must be a unicast address reachable from the other hosts",
        ));
    }
    Ok(())
}

pub fn endpoint_mac(mac: MacAddr) -> Result<(), ValidationError> {
    if mac.is_zero() || mac.is_multicast() {
        return Err(ValidationError::new(
            "mac",
            mac,
            "must be a unicast, non-zero address",
        ));
    }
    if mac.is_node_space() {
        return Err(ValidationError::new(
            "mac",
            mac,
            "is reserved for the nodes' MACs (0a:5e:… and 0a:5f:…, the routing mesh's)",
        ));
    }
    Ok(())
}

/// An endpoint address must be a host address of the network's subnet, not its gateway.
pub fn endpoint_ip(network: &Network, ip: Ipv4Addr) -> Result<(), ValidationError> {
    if !network.subnet.contains(&ip) {
        return Err(ValidationError::new(
            "ip",
            ip,
            format!(
                "is not in network {}'s subnet {}",
                network.name, network.subnet
            ),
        ));
    }
    if ip == network.subnet.network() || ip == network.subnet.broadcast() {
        return Err(ValidationError::new(
            "ip",
            ip,
            "is the subnet's network or broadcast address",
        ));
    }
    if ip == network.gateway {
        return Err(ValidationError::new("ip", ip, "is the network's gateway"));
    }
    Ok(())
}

/// Checks a network read back from the store.
pub fn stored_network(n: &Network) -> Result<(), ValidationError> {
    network_name(&n.name)?;
    check_subnet(&n.subnet)?;
    vni(n.vni)?;
    if let Some(m) = n.mtu {
        mtu(m)?;
    }
    if !n.subnet.contains(&n.gateway) {
        return Err(ValidationError::new(
            "gateway",
            n.gateway,
            "is outside the subnet",
        ));
    }
    Ok(())
}

/// A WireGuard public key: 32 bytes in base64.
pub fn wireguard_key(text: &str) -> Result<(), ValidationError> {
    crate::wireguard::PublicKey::from_base64(text)
        .map(|_| ())
        .map_err(|_| {
            ValidationError::new(
                "public-key",
                text,
                "must be a WireGuard public key: 32 bytes in base64 (44 characters, as `wg pubkey` prints)",
            )
        })
}

/// A WireGuard listen port.
pub fn wireguard_port(port: u16) -> Result<(), ValidationError> {
    if port == 0 {
        return Err(ValidationError::new("port", port, "must be 1-65535"));
    }
    Ok(())
}

/// Checks a node read back from the store.
pub fn stored_node(n: &Node) -> Result<(), ValidationError> {
    node_name(&n.name)?;
    underlay(n.underlay)?;
    if let Some(wg) = &n.wireguard {
        wireguard_key(&wg.public_key)?;
        wireguard_port(wg.port)?;
        if let Some(ip) = wg.tunnel_ip {
            if !crate::wireguard::tunnel_net().contains(&ip) {
                return Err(ValidationError::new(
                    "tunnel-ip",
                    ip,
                    format!("is outside {}", crate::wireguard::tunnel_net()),
                ));
            }
        }
    }
    Ok(())
}

/// The range of MTUs a Linux interface can have (bytes): ETH_MIN_MTU (68) to IP_MAX_MTU.
pub const LINK_MTU: std::ops::RangeInclusive<u32> = 68..=65535;

/// An MTU a Linux interface can have.
fn link_mtu(field: &'static str, mtu: u32) -> Result<(), ValidationError> {
    if LINK_MTU.contains(&mtu) {
        return Ok(());
    }
    Err(ValidationError::new(
        field,
        mtu,
        format!("must be {}..={}", LINK_MTU.start(), LINK_MTU.end()),
    ))
}

/// The MTU asked for an attachment's veth pair.
pub fn attachment_mtu(mtu: u32) -> Result<(), ValidationError> {
    link_mtu("mtu", mtu)
}

/// Checks what a node's agent published about its host, read back from the store.
pub fn stored_host_report(r: &HostReport) -> Result<(), ValidationError> {
    link_mtu("underlay_mtu", r.underlay_mtu)?;
    for s in r.endpoints.values() {
        if let Some(m) = s.mtu {
            link_mtu("mtu", m)?;
        }
    }
    Ok(())
}

/// Checks an endpoint read back from the store against its network.
pub fn stored_endpoint(e: &Endpoint, network: &Network) -> Result<(), ValidationError> {
    endpoint_id(&e.id)?;
    node_name(&e.node)?;
    endpoint_mac(e.mac)?;
    if let Some(m) = e.mtu {
        attachment_mtu(m)?;
    }
    endpoint_ip(network, e.ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(network_name("net1").is_ok());
        assert!(network_name("a.b-c_d").is_ok());
        let e = network_name("averyverylongname").unwrap_err();
        assert_eq!(e.field, "network name");
        assert!(e.to_string().contains("at most 12"), "{e}");
        assert!(network_name("").is_err());
        assert!(network_name("-x").is_err());
        assert!(network_name("a/b").unwrap_err().to_string().contains("'/'"));
        assert!(network_name("a b").is_err());
    }

    #[test]
    fn subnets() {
        assert_eq!(subnet("10.10.1.0/24").unwrap().to_string(), "10.10.1.0/24");
        assert!(subnet("10.10.1.5/24")
            .unwrap_err()
            .to_string()
            .contains("10.10.1.0/24"));
        assert!(subnet("10.10.1.0/30").is_err());
        assert!(subnet("10.0.0.0/7").is_err());
        assert!(subnet("127.0.0.0/8").is_err());
        assert!(subnet("224.0.0.0/24").is_err());
        assert!(subnet("bogus")
            .unwrap_err()
            .to_string()
            .starts_with("invalid subnet 'bogus'"));
        assert!(subnet("10.10.1.0").is_err());
    }

    #[test]
    fn vni_and_mtu_ranges() {
        assert!(vni(4096).is_ok());
        assert!(vni(16_777_215).is_ok());
        assert!(vni(4095).is_err());
        assert!(vni(16_777_216).unwrap_err().to_string().contains("vni"));
        assert!(mtu(1279).is_err());
        assert!(mtu(1500).is_ok());
        assert!(mtu(9001).is_err());
    }

    #[test]
    fn endpoint_addresses() {
        let n = Network {
            name: "n".into(),
            subnet: "10.0.0.0/24".parse().unwrap(),
            gateway: "10.0.0.1".parse().unwrap(),
            vni: 4096,
            mtu: None,
            encrypted: false,
        };
        assert!(endpoint_ip(&n, "10.0.0.2".parse().unwrap()).is_ok());
        assert!(endpoint_ip(&n, "10.0.0.1".parse().unwrap()).is_err());
        assert!(endpoint_ip(&n, "10.0.0.0".parse().unwrap()).is_err());
        assert!(endpoint_ip(&n, "10.0.0.255".parse().unwrap()).is_err());
        assert!(endpoint_ip(&n, "10.0.1.2".parse().unwrap()).is_err());
        assert!(endpoint_mac(MacAddr::ZERO).is_err());
        assert!(endpoint_mac("01:00:5e:00:00:01".parse().unwrap()).is_err());
        let node = MacAddr::for_node("10.99.0.1".parse().unwrap());
        assert!(endpoint_mac(node).is_err());
        assert!(endpoint_mac("0a:5f:0a:63:00:01".parse().unwrap()).is_err());
        assert!(endpoint_mac("0a:5d:0a:63:00:01".parse().unwrap()).is_ok());
        assert!(endpoint_mac(MacAddr::for_endpoint("10.0.0.2".parse().unwrap())).is_ok());
    }
}
