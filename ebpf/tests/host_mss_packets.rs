//! The MTU rule of the routing mesh's forward path (`mtu.h`, `mss.h`, `icmp.h`) under
//! BPF_PROG_TEST_RUN: a SYN to HOST:PUB leaves `vx_from_underlay` translated, with its MSS
//! option lowered to the MTU of the device it is delivered to - 40, and every other byte as
//! it was; a packet larger than that MTU comes back as ICMP fragmentation needed. Each test
//! asserts the verdict and the exact output frame (checksums verified by recomputation). The
//! delivery devices are real ones in a network namespace of the test's own (the program
//! reads their MTU): a local backend's veth and two network bridges, at the MTUs the agent
//! gives a plain network (underlay 1500 - 50) and an encrypted one (- 110).
mod common;

use std::net::Ipv4Addr;

use common::{netns::TestNs, *};
use etherparse::{
    icmpv4::DestUnreachableHeader, Icmpv4Header, Icmpv4Type, IpDscp, IpNumber, Ipv4Header,
    TcpHeader,
};
use vxmesh_ebpf::*;

const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PUB: u16 = 8080;
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
const NODE_MAC: [u8; 6] = [0x0a, 0x5e, 192, 0, 2, 1];
const SVC_ID: u32 = 4;
const PLAIN_MTU: u32 = 1450;
const ENCRYPTED_MTU: u32 = 1390;

/// A backend: id, address, MAC, the device it is delivered through, local or not.
struct Be {
    id: u32,
    ip: Ipv4Addr,
    mac: [u8; 6],
    dev: &'static str,
    local: bool,
}

/// Backend `id` at 10.0.NET.HOST (MAC 0a:58 + that address), delivered through `dev`.
const fn be(id: u32, net: u8, host: u8, dev: &'static str, local: bool) -> Be {
    Be {
        id,
        ip: Ipv4Addr::new(10, 0, net, host),
        mac: [0x0a, 0x58, 10, 0, net, host],
        dev,
        local,
    }
}

const LOCAL: Be = be(1, 1, 11, "ve-local", true);
const REMOTE: Be = be(2, 1, 12, "vb-plain", false);
const REMOTE_ENCRYPTED: Be = be(3, 2, 13, "vb-enc", false);

/// Options of a Linux SYN: MSS `mss`, SACK permitted, timestamps, NOP, window scale 7.
fn linux_syn_options(mss: u16) -> Vec<u8> {
    let m = mss.to_be_bytes();
    vec![
        2, 4, m[0], m[1], 4, 2, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 1, 3, 3, 7,
    ]
}

/// An Ethernet/IPv4/TCP frame with raw TCP `options` (a multiple of 4 bytes), valid
/// checksums, MAC_A -> MAC_B.
fn tcp(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    (syn, ack): (bool, bool),
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut t = TcpHeader::new(src.1, dst.1, 1000, 64240);
    t.syn = syn;
    t.ack = ack;
    if ack {
        t.acknowledgment_number = 2000;
    }
    t.set_options_raw(options).expect("options fit");
    t.checksum = t
        .calc_checksum_ipv4_raw(src.0.octets(), dst.0.octets(), payload)
        .unwrap();
    let mut l4 = Vec::new();
    t.write(&mut l4).unwrap();
    l4.extend_from_slice(payload);
    let mut ip = Ipv4Header::new(
        l4.len() as u16,
        64,
        IpNumber::TCP,
        src.0.octets(),
        dst.0.octets(),
    )
    .unwrap();
    ip.identification = 0x1234;
    ip.header_checksum = ip.calc_header_checksum();
    frame_of(&ip, &l4)
}

/// A datapath whose node is the ingress host of HOST:PUB (TCP and UDP), in a namespace that holds the
/// delivery devices: the veth of a local backend and the bridges of a plain and an encrypted
/// network, at the MTUs the agent gives them.
struct Ingress {
    ns: TestNs,
    node: Node,
}

impl Ingress {
    fn new() -> Self {
        let ns = TestNs::new("vxmesh-msspk");
        ns.ip(&[
            "link", "add", "ve-local", "type", "veth", "peer", "name", "eth0",
        ]);
        ns.ip(&["link", "add", "vb-plain", "type", "bridge"]);
        ns.ip(&["link", "add", "vb-enc", "type", "bridge"]);
        for (dev, mtu) in [
            ("ve-local", PLAIN_MTU),
            ("vb-plain", PLAIN_MTU),
            ("vb-enc", ENCRYPTED_MTU),
        ] {
            ns.ip(&["link", "set", dev, "mtu", &mtu.to_string(), "up"]);
        }
        let mut node = Node::load();
        let m = node.dp().maps_mut();
        m.set_host(Host::new(HOST, 1, NODE_MAC)).unwrap();
        for b in [LOCAL, REMOTE, REMOTE_ENCRYPTED] {
            m.upsert_backend(b.id, Backend::new(b.ip, 80, 0)).unwrap();
            m.upsert_be_loc(
                b.id,
                BeLoc {
                    ifindex: ns.ifindex(b.dev),
                    mac: b.mac,
                    flags: if b.local { BE_LOC_F_LOCAL } else { 0 },
                    pad: 0,
                },
            )
            .unwrap();
        }
        for proto in [IPPROTO_TCP, IPPROTO_UDP] {
            publish(m, HOST, PUB, proto, SVC_ID);
        }
        Self { ns, node }
    }

    /// Balances every new flow to backend `b`.
    fn to(&mut self, b: &Be) -> &mut Self {
        self.node
            .dp()
            .maps_mut()
            .replace_maglev_table(SVC_ID, &[b.id])
            .unwrap();
        self
    }

    /// Runs vx_from_underlay on `frame` inside the namespace.
    fn run(&mut self, frame: &[u8]) -> TcRun {
        let dp = self.node.dp();
        self.ns
            .run(|| dp.run_tc(PROG_FROM_UNDERLAY, frame).expect("test run"))
    }

    fn clamped(&mut self) -> u64 {
        self.node.dp().maps().stat(Stat::MssClamp).unwrap()
    }
}

/// Asserts that `frame` (client -> HOST:PUB, port `cport`) leaves redirected to backend `b`,
/// exactly as `want_options` and `payload` rebuilt for the backend make it (DNAT, backend
/// MAC, node MAC), with valid checksums.
fn assert_forwarded(
    t: &mut Ingress,
    frame: &[u8],
    b: &Be,
    (cport, flags): (u16, (bool, bool)),
    want_options: &[u8],
    payload: &[u8],
) {
    let out = t.run(frame);
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_checksums(&out.packet);
    let mut want = tcp((CLIENT, cport), (b.ip, 80), flags, want_options, payload);
    want[..6].copy_from_slice(&b.mac);
    want[6..12].copy_from_slice(&NODE_MAC);
    assert_eq!(out.packet, want);
}

const SYN: (bool, bool) = (true, false);

#[test]
fn a_syns_mss_is_clamped_to_the_mtu_of_the_device_it_is_delivered_to() {
    let mut t = Ingress::new();
    // Remote backend of a plain network: 1450 - 40; of an encrypted one: 1390 - 40; a local
    // backend's veth: 1450 - 40.
    for (port, b, mss) in [
        (40000, &REMOTE, 1410),
        (40001, &REMOTE_ENCRYPTED, 1350),
        (40002, &LOCAL, 1410),
    ] {
        let syn = tcp(
            (CLIENT, port),
            (HOST, PUB),
            SYN,
            &linux_syn_options(1460),
            &[],
        );
        t.to(b);
        assert_forwarded(&mut t, &syn, b, (port, SYN), &linux_syn_options(mss), &[]);
    }
    assert_eq!(t.clamped(), 3);

    // The MTU is read from the device at each packet: the agent's next MTU counts at once.
    t.ns.ip(&["link", "set", "vb-plain", "mtu", "1300"]);
    let syn = tcp(
        (CLIENT, 40003),
        (HOST, PUB),
        SYN,
        &linux_syn_options(1460),
        &[],
    );
    t.to(&REMOTE);
    assert_forwarded(
        &mut t,
        &syn,
        &REMOTE,
        (40003, SYN),
        &linux_syn_options(1260),
        &[],
    );
    // A SYN-ACK carries the option too (RFC 9293 3.7.1): clamped alike.
    let synack = tcp(
        (CLIENT, 40004),
        (HOST, PUB),
        (true, true),
        &linux_syn_options(8960),
        &[],
    );
    assert_forwarded(
        &mut t,
        &synack,
        &REMOTE,
        (40004, (true, true)),
        &linux_syn_options(1260),
        &[],
    );
    assert_eq!(t.clamped(), 5);
}

#[test]
fn an_mss_at_an_odd_offset_is_clamped_with_a_valid_checksum() {
    // NOP, MSS 65495 (loopback's), NOP NOP NOP: the value's bytes straddle two checksum words.
    let mut t = Ingress::new();
    t.to(&REMOTE);
    let opts = |mss: u16| {
        let m = mss.to_be_bytes();
        vec![1, 2, 4, m[0], m[1], 1, 1, 1]
    };
    let syn = tcp((CLIENT, 41000), (HOST, PUB), SYN, &opts(65495), &[]);
    assert_forwarded(&mut t, &syn, &REMOTE, (41000, SYN), &opts(1410), &[]);
    assert_eq!(t.clamped(), 1);
}

#[test]
fn a_syn_whose_mss_fits_or_that_has_none_is_only_translated() {
    let mut t = Ingress::new();
    t.to(&REMOTE);
    let no_mss = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0];
    for (port, opts) in [
        (42000, linux_syn_options(1200)),
        (42001, linux_syn_options(1410)),
        (42002, no_mss.to_vec()),
        (42003, vec![]),
    ] {
        let syn = tcp((CLIENT, port), (HOST, PUB), SYN, &opts, &[]);
        assert_forwarded(&mut t, &syn, &REMOTE, (port, SYN), &opts, &[]);
    }
    assert_eq!(t.clamped(), 0);
}

#[test]
fn packets_that_are_not_syns_keep_their_options() {
    // An ACK with data, and one carrying an (out of place) MSS option: only a SYN's counts.
    let mut t = Ingress::new();
    t.to(&REMOTE);
    let ack = (false, true);
    let data = vec![0x42u8; 1000];
    for (port, opts, payload) in [
        (
            43000,
            vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            data.as_slice(),
        ),
        (43001, linux_syn_options(1460), &[][..]),
    ] {
        let frame = tcp((CLIENT, port), (HOST, PUB), ack, &opts, payload);
        assert_forwarded(&mut t, &frame, &REMOTE, (port, ack), &opts, payload);
    }
    assert_eq!(t.clamped(), 0);
}

#[test]
fn malformed_options_before_the_mss_are_left_alone() {
    // An option of length 0 (would never end), and EOL before the MSS option.
    let mut t = Ingress::new();
    t.to(&REMOTE);
    for (port, opts) in [
        (44000, vec![8, 0, 2, 4, 0x05, 0xb4, 0, 0]),
        (44001, vec![0, 0, 0, 0, 2, 4, 0x05, 0xb4]),
        (44002, vec![2, 3, 0x05, 0xb4]),
    ] {
        let syn = tcp((CLIENT, port), (HOST, PUB), SYN, &opts, &[]);
        assert_forwarded(&mut t, &syn, &REMOTE, (port, SYN), &opts, &[]);
    }
    assert_eq!(t.clamped(), 0);
}

/// The ICMP fragmentation-needed error for `frame` (as the client sent it) with next-hop MTU
/// `mtu`: from HOST to the client, MACs swapped, quoting its IP header and 8 bytes.
fn frag_needed(frame: &[u8], mtu: u16) -> Vec<u8> {
    let (orig, _) = Ipv4Header::from_slice(&frame[14..]).unwrap();
    let quote = &frame[14..14 + orig.header_len() + 8];
    let icmp = Icmpv4Header::with_checksum(
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: mtu,
        }),
        quote,
    );
    let mut ip = Ipv4Header::new(
        (icmp.header_len() + quote.len()) as u16,
        64,
        IpNumber::ICMP,
        orig.destination,
        orig.source,
    )
    .unwrap();
    ip.dscp = IpDscp::try_new(0xc0 >> 2).unwrap();
    ip.dont_fragment = false;
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = frame[6..12].to_vec();
    out.extend_from_slice(&frame[..6]);
    out.extend_from_slice(&frame[12..14]);
    ip.write(&mut out).unwrap();
    icmp.write(&mut out).unwrap();
    out.extend_from_slice(quote);
    out
}

fn frag_needed_count(t: &mut Ingress) -> u64 {
    t.node.dp().maps().stat(Stat::FragNeeded).unwrap()
}

/// A UDP datagram from the client to HOST:PUB whose IP packet is `len` bytes long.
fn udp_of_len(sport: u16, len: usize, options: &[u8]) -> Spec {
    let mut d = Spec::udp(
        CLIENT,
        sport,
        HOST,
        PUB,
        &vec![0x5a; len - 20 - options.len() - 8],
    );
    d.options = options.to_vec();
    d
}

#[test]
fn a_packet_larger_than_its_path_comes_back_as_icmp_fragmentation_needed() {
    let mut t = Ingress::new();
    // A full-size UDP datagram (1500 bytes, the client's underlay MTU), to a remote backend
    // of a plain network (1450) and of an encrypted one (1390); one with IP options (the
    // quote takes the whole header); a TCP segment of 1500 bytes (a flow the clamp missed).
    let big_tcp = tcp(
        (CLIENT, 45003),
        (HOST, PUB),
        (false, true),
        &[],
        &[0x42; 1460],
    );
    for (b, frame, mtu) in [
        (&REMOTE, udp_of_len(45000, 1500, &[]).frame(), PLAIN_MTU),
        (
            &REMOTE_ENCRYPTED,
            udp_of_len(45001, 1500, &[]).frame(),
            ENCRYPTED_MTU,
        ),
        (
            &LOCAL,
            udp_of_len(45002, 1451, &[1, 1, 1, 0]).frame(),
            PLAIN_MTU,
        ),
        (&REMOTE, big_tcp, PLAIN_MTU),
    ] {
        t.to(b);
        let out = t.run(&frame);
        assert_eq!(out.verdict, TC_ACT_REDIRECT, "sent back");
        // Exactly the error etherparse builds (its IP and ICMP checksums computed whole).
        assert_eq!(out.packet, frag_needed(&frame, mtu as u16));
    }
    assert_eq!(frag_needed_count(&mut t), 4);
}

#[test]
fn a_packet_that_just_fits_its_path_is_delivered() {
    // 1450 bytes of IP through the plain network's bridge (1450): delivered, translated.
    let mut t = Ingress::new();
    t.to(&REMOTE);
    let d = udp_of_len(46000, PLAIN_MTU as usize, &[]);
    let out = t.run(&d.frame());
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    let mut want = d.with((CLIENT, 46000), (REMOTE.ip, 80)).frame();
    want[..6].copy_from_slice(&REMOTE.mac);
    want[6..12].copy_from_slice(&NODE_MAC);
    assert_eq!(out.packet, want);
    assert_eq!(frag_needed_count(&mut t), 0);
}
