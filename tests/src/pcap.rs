//! A small reader for classic pcap files (what `tcpdump -w` writes) and a VXLAN decoder, so
//! tests can check captured packets field by field.

use std::net::Ipv4Addr;

/// The frames of a pcap file with Ethernet link type.
pub fn frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    assert!(
        bytes.len() >= 24,
        "pcap file too short: {} bytes",
        bytes.len()
    );
    let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        m => panic!("not a pcap file (magic {m:#x})"),
    };
    let u32_at = |b: &[u8], i: usize| {
        let a: [u8; 4] = b[i..i + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let linktype = u32_at(bytes, 20);
    assert_eq!(linktype, 1, "expected Ethernet captures");
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= bytes.len() {
        let caplen = u32_at(bytes, i + 8) as usize;
        let start = i + 16;
        if start + caplen > bytes.len() {
            break; // a record cut short by the capture's end
        }
        out.push(bytes[start..start + caplen].to_vec());
        i = start + caplen;
    }
    out
}

/// A VXLAN packet seen on the underlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub dst_port: u16,
    pub vni: u32,
    pub inner_dst: [u8; 6],
    pub inner_src: [u8; 6],
    /// The inner Ethernet frame.
    pub inner: Vec<u8>,
}

impl Vxlan {
    /// Broadcast, multicast or unknown-unicast class traffic is recognised by its group bit.
    pub fn inner_is_multicast(&self) -> bool {
        self.inner_dst[0] & 1 == 1
    }
}

/// Decodes an Ethernet/IPv4/UDP frame carrying VXLAN (flags with the I bit) to `port`.
pub fn vxlan(frame: &[u8], port: u16) -> Option<Vxlan> {
    if frame.len() < 14 || u16::from_be_bytes([frame[12], frame[13]]) != 0x0800 {
        return None;
    }
    let ip = &frame[14..];
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let udp = ip.get(ihl..)?;
    if udp.len() < 8 + 8 + 14 {
        return None;
    }
    let dst_port = u16::from_be_bytes([udp[2], udp[3]]);
    if dst_port != port {
        return None;
    }
    let vx = &udp[8..16];
    if vx[0] & 0x08 == 0 {
        return None;
    }
    let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
    let inner = udp[16..].to_vec();
    Some(Vxlan {
        src,
        dst,
        dst_port,
        vni,
        inner_dst: inner[0..6].try_into().unwrap(),
        inner_src: inner[6..12].try_into().unwrap(),
        inner,
    })
}

/// Does `needle` occur anywhere in `hay`?
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
