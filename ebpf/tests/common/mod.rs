//! Shared by the ebpf crate's tests: unique names, a node that tears itself down, packets
//! built with etherparse, and checksum checks by recomputation.
#![allow(dead_code)]

pub mod netns;

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use etherparse::{
    EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header, Ipv4Options, TcpHeader,
    UdpHeader,
};
use vxmesh_ebpf::{teardown, Datapath, DatapathConfig, Maps, Svc, SvcKey, SVC_F_PUBLISHED};

/// A name no other test (in this or another process) uses: prefix-pid-counter.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A loaded node under a pin root of its own; removes every pin on drop.
pub struct Node {
    pub dp: Option<Datapath>,
    pub root: PathBuf,
    pub name: String,
}

impl Node {
    pub fn load() -> Self {
        Self::load_with(|_| {})
    }
    pub fn load_with(tune: impl FnOnce(&mut DatapathConfig)) -> Self {
        let name = unique("t");
        let root = PathBuf::from(format!("/sys/fs/bpf/vxmesh-test-{}", unique("root")));
        let mut config = DatapathConfig::new(&name);
        config.pin_root = root.clone();
        config.conntrack_entries = 4096;
        config.max_services = 1024;
        config.max_backends = 1024;
        tune(&mut config);
        let dp = Datapath::load(config).expect("load datapath");
        Self {
            dp: Some(dp),
            root,
            name,
        }
    }
    pub fn dp(&mut self) -> &mut Datapath {
        self.dp.as_mut().expect("loaded")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.dp.take());
        if let Err(e) = teardown(&self.root, &self.name) {
            eprintln!("teardown of {}: {e}", self.name);
        }
    }
}

/// Publishes `host:port/proto` as a routing-mesh frontend of service `svc_id` (no affinity).
pub fn publish(m: &mut Maps, host: Ipv4Addr, port: u16, proto: u8, svc_id: u32) {
    m.upsert_service(
        SvcKey::new(host, port, proto),
        Svc {
            id: svc_id,
            flags: SVC_F_PUBLISHED,
            affinity_timeout_s: 0,
        },
    )
    .unwrap();
}

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];

/// L4 of a test packet.
#[derive(Clone, Copy, Debug)]
pub enum L4 {
    /// TCP with these flags.
    Tcp { syn: bool, ack: bool },
    /// UDP; `zero_csum` sends checksum 0 ("none", RFC 768).
    Udp { zero_csum: bool },
}

/// Everything a test packet is made of.
#[derive(Clone, Debug)]
pub struct Spec {
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
    pub l4: L4,
    pub payload: Vec<u8>,
    pub ip_id: u16,
    pub options: Vec<u8>,
}

impl Spec {
    pub fn tcp_syn(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Self {
        Self {
            src,
            sport,
            dst,
            dport,
            l4: L4::Tcp {
                syn: true,
                ack: false,
            },
            payload: Vec::new(),
            ip_id: 0x1234,
            options: Vec::new(),
        }
    }
    pub fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Self {
        Self {
            src,
            sport,
            dst,
            dport,
            l4: L4::Udp { zero_csum: false },
            payload: payload.to_vec(),
            ip_id: 0x4321,
            options: Vec::new(),
        }
    }
    /// The same packet with source and destination changed.
    pub fn with(&self, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Self {
        Self {
            src: src.0,
            sport: src.1,
            dst: dst.0,
            dport: dst.1,
            ..self.clone()
        }
    }

    /// The L4 header and payload (with a correct checksum, or 0 for a UDP zero_csum).
    pub fn l4_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.l4 {
            L4::Tcp { syn, ack } => {
                let mut t = TcpHeader::new(self.sport, self.dport, 1000, 64240);
                t.syn = syn;
                t.ack = ack;
                if ack {
                    t.acknowledgment_number = 2000;
                }
                t.checksum = t
                    .calc_checksum_ipv4_raw(self.src.octets(), self.dst.octets(), &self.payload)
                    .unwrap();
                t.write(&mut out).unwrap();
            }
            L4::Udp { zero_csum } => {
                let mut u = UdpHeader::with_ipv4_checksum(
                    self.sport,
                    self.dport,
                    &self.ip_header(0),
                    &self.payload,
                )
                .unwrap();
                if zero_csum {
                    u.checksum = 0;
                }
                u.write(&mut out).unwrap();
            }
        }
        out.extend_from_slice(&self.payload);
        out
    }

    fn ip_header(&self, payload_len: usize) -> Ipv4Header {
        let proto = match self.l4 {
            L4::Tcp { .. } => IpNumber::TCP,
            L4::Udp { .. } => IpNumber::UDP,
        };
        let mut ip = Ipv4Header::new(
            payload_len as u16,
            64,
            proto,
            self.src.octets(),
            self.dst.octets(),
        )
        .unwrap();
        ip.identification = self.ip_id;
        ip.dont_fragment = false;
        ip.options = Ipv4Options::try_from(&self.options[..]).unwrap();
        ip.set_payload_len(payload_len).unwrap();
        ip.header_checksum = ip.calc_header_checksum();
        ip
    }

    /// The whole Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        let l4 = self.l4_bytes();
        frame_of(&self.ip_header(l4.len()), &l4)
    }

    /// The datagram cut into two IP fragments at byte `at` of the L4 part (a multiple of 8).
    pub fn fragments(&self, at: usize) -> (Vec<u8>, Vec<u8>) {
        assert_eq!(at % 8, 0);
        let l4 = self.l4_bytes();
        let mut first = self.ip_header(at);
        first.more_fragments = true;
        first.header_checksum = first.calc_header_checksum();
        let mut later = self.ip_header(l4.len() - at);
        later.fragment_offset = IpFragOffset::try_new((at / 8) as u16).unwrap();
        later.header_checksum = later.calc_header_checksum();
        (frame_of(&first, &l4[..at]), frame_of(&later, &l4[at..]))
    }
}

pub fn frame_of(ip: &Ipv4Header, rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Ethernet2Header {
        source: MAC_A,
        destination: MAC_B,
        ether_type: EtherType::IPV4,
    }
    .write(&mut out)
    .unwrap();
    ip.write(&mut out).unwrap();
    out.extend_from_slice(rest);
    out
}

/// Ones' complement sum over `data` (RFC 1071), folded, not inverted.
fn csum_fold(mut sum: u32, data: &[u8]) -> u32 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// Asserts, by recomputing them from the bytes, that a frame's IPv4 header checksum and
/// (for a whole datagram) its TCP/UDP checksum are valid. Returns the parsed IP header.
pub fn assert_checksums(frame: &[u8]) -> Ipv4Header {
    let (ip, rest) = Ipv4Header::from_slice(&frame[14..]).expect("IPv4 header");
    let hl = ip.header_len();
    assert_eq!(
        csum_fold(0, &frame[14..14 + hl]),
        0xffff,
        "IP header checksum invalid"
    );
    let whole = !ip.more_fragments && ip.fragment_offset.value() == 0;
    if whole {
        let l4 = &rest[..(ip.total_len as usize - hl)];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&ip.source);
        pseudo.extend_from_slice(&ip.destination);
        pseudo.extend_from_slice(&[0, ip.protocol.0]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        let udp_none = ip.protocol == IpNumber::UDP && l4[6] == 0 && l4[7] == 0;
        if !udp_none {
            assert_eq!(
                csum_fold(csum_fold(0, &pseudo), l4),
                0xffff,
                "L4 checksum invalid"
            );
        }
    }
    ip
}

/// The datapath's flow hash (`vx_hash_tuple` in maglev.h), replicated to predict a pick.
pub fn flow_hash(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, proto: u8) -> u32 {
    fn mix(mut h: u32) -> u32 {
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^= h >> 16;
        h
    }
    // Addresses and ports as the program loads them: network-order bytes read as a
    // little-endian integer.
    let s = u32::from_ne_bytes(src.octets());
    let d = u32::from_ne_bytes(dst.octets());
    let sp = u32::from(sport.to_be());
    let dp = u32::from(dport.to_be());
    let mut h = 0x9e37_79b9u32;
    h = mix(h ^ s);
    h = mix(h ^ d);
    h = mix(h ^ ((sp << 16) | dp));
    mix(h ^ u32::from(proto))
}

/// An Ethernet ARP frame (RFC 826) for Ethernet/IPv4, built with etherparse: `op` 1
/// request, 2 reply; `eth` is (destination, source).
pub fn arp_frame(
    eth: ([u8; 6], [u8; 6]),
    op: u16,
    sender: ([u8; 6], Ipv4Addr),
    target: ([u8; 6], Ipv4Addr),
) -> Vec<u8> {
    let mut f = Vec::new();
    Ethernet2Header {
        destination: eth.0,
        source: eth.1,
        ether_type: EtherType::ARP,
    }
    .write(&mut f)
    .unwrap();
    let arp = etherparse::ArpEthIpv4Packet {
        operation: etherparse::ArpOperation(op),
        sender_mac: sender.0,
        sender_ipv4: sender.1.octets(),
        target_mac: target.0,
        target_ipv4: target.1.octets(),
    };
    f.extend_from_slice(&arp.to_bytes());
    f
}
