//! Receive side: merges consecutive decrypted TCP segments of one flow into one large frame
//! for the TAP queue (a GRO done in user space), so the kernel runs its receive path (UDP,
//! VXLAN, bridge, veth, TCP) once per 64 KiB instead of once per packet.
//!
//! Two shapes are merged: IPv4/TCP, and IPv4/UDP/VXLAN/Ethernet/IPv4/TCP to the encrypted
//! networks' VXLAN port (written as a tunnel GSO frame, Linux 6.17+, TAP only). The rules are
//! those of the kernel's own GRO (`tcp_gro_receive`, `inet_gro_receive`): same flow and
//! identical headers except lengths, identifications and checksums (so same ACK number,
//! window, TTL, TOS and TCP options); the next sequence number; the inner IPv4 identification
//! incremented by one; only ACK and PSH set (a PSH or a segment shorter than the first ends
//! the frame); no IP options, no fragments. Every merged segment's checksums (IPv4 headers,
//! TCP, outer UDP when not zero) are verified first: a merged frame is handed to the kernel as
//! checksummed (`VIRTIO_NET_HDR_F_NEEDS_CSUM`), so a segment that fails is not merged but
//! written alone, for the kernel to check and drop. Everything else is written as it came.
//! Order is kept within a flow; frames of different flows may pass each other.

use super::csum;
use super::vnet::{self, VnetHdr};

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
/// Ethernet header written before each packet on the TAP.
pub const ETH_LEN: usize = 14;
/// Where a packet starts in a frame buffer: the virtio-net header, then Ethernet.
const PKT: usize = vnet::LEN + ETH_LEN;
/// Flows merged at once; when a batch holds more, the oldest is written out first.
const MAX_GROUPS: usize = 8;
/// The largest IPv4 packet (its total length is 16 bits).
const MAX_IP_LEN: usize = 65535;

/// Identity of a TCP flow, tunnelled or not: the addresses and ports that GRO matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    /// Outer addresses and UDP ports, and the VXLAN header (zeros when not tunnelled).
    outer: [u8; 20],
    /// Addresses and TCP ports of the packet that carries TCP.
    inner: [u8; 12],
}

/// Offsets of a parsed packet and the values GRO looks at.
#[derive(Debug, Clone, Copy)]
struct Parsed {
    key: Key,
    tunnel: bool,
    /// The IPv4 header that carries TCP.
    ip: usize,
    tcp: usize,
    payload: usize,
    seq: u32,
    id: u16,
    flags: u8,
    /// Headers, lengths and checksums all fit a merge.
    mergeable: bool,
}

fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// An unfragmented IPv4 header at `at` carrying `proto`; its length in bytes.
fn ipv4(pkt: &[u8], at: usize, proto: u8) -> Option<usize> {
    let h = pkt.get(at..at + 20)?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let fragment = get16(h, 6) & 0x3fff != 0;
    (h[0] >> 4 == 4 && ihl >= 20 && !fragment && h[9] == proto).then_some(ihl)
}

fn parse(pkt: &[u8], vxlan_port: Option<u16>) -> Option<Parsed> {
    let mut key = Key {
        outer: [0; 20],
        inner: [0; 12],
    };
    let outer_ihl;
    let (tunnel, ip) = if let Some(ihl) = ipv4(pkt, 0, PROTO_TCP) {
        outer_ihl = ihl;
        (false, 0)
    } else {
        let port = vxlan_port?;
        outer_ihl = ipv4(pkt, 0, PROTO_UDP)?;
        let udp = outer_ihl;
        let vx = udp + 8;
        let inner = vx + 8 + ETH_LEN;
        if pkt.len() < inner || get16(pkt, udp + 2) != port {
            return None;
        }
        // VXLAN (RFC 7348 §5): flags 0x08 (valid VNI), reserved bits zero; inner IPv4.
        let vxlan_ok = pkt[vx] == 0x08 && pkt[vx + 1..vx + 4] == [0, 0, 0] && pkt[vx + 7] == 0;
        if !vxlan_ok || get16(pkt, vx + 8 + 12) != 0x0800 {
            return None;
        }
        key.outer[..8].copy_from_slice(&pkt[12..20]);
        key.outer[8..12].copy_from_slice(&pkt[udp..udp + 4]);
        key.outer[12..20].copy_from_slice(&pkt[vx..vx + 8]);
        (true, inner)
    };
    let ihl = if tunnel {
        ipv4(pkt, ip, PROTO_TCP)?
    } else {
        outer_ihl
    };
    let tcp = ip + ihl;
    let doff = usize::from(*pkt.get(tcp + 12)? >> 4) * 4;
    let payload = tcp + doff;
    if doff < 20 || payload > pkt.len() {
        return None;
    }
    key.inner[..8].copy_from_slice(&pkt[ip + 12..ip + 20]);
    key.inner[8..].copy_from_slice(&pkt[tcp..tcp + 4]);
    let flags = pkt[tcp + 13];
    let mut p = Parsed {
        key,
        tunnel,
        ip,
        tcp,
        payload,
        seq: u32::from_be_bytes([pkt[tcp + 4], pkt[tcp + 5], pkt[tcp + 6], pkt[tcp + 7]]),
        id: get16(pkt, ip + 4),
        flags,
        mergeable: false,
    };
    p.mergeable = flags & !TCP_PSH == TCP_ACK
        && payload < pkt.len()
        && outer_ihl == 20
        && ihl == 20
        && lengths_and_checksums_ok(pkt, &p);
    Some(p)
}

fn lengths_and_checksums_ok(pkt: &[u8], p: &Parsed) -> bool {
    let len = pkt.len();
    if usize::from(get16(pkt, 2)) != len || usize::from(get16(pkt, p.ip + 2)) != len - p.ip {
        return false;
    }
    if !csum::ipv4_header_ok(pkt, 20) || !csum::ipv4_header_ok(&pkt[p.ip..], 20) {
        return false;
    }
    let tcp_pseudo = csum::pseudo_v4(
        &pkt[p.ip + 12..p.ip + 16],
        &pkt[p.ip + 16..p.ip + 20],
        PROTO_TCP,
        len - p.tcp,
    );
    if csum::fold(csum::add(tcp_pseudo, &pkt[p.tcp..])) != 0xffff {
        return false;
    }
    if p.tunnel {
        let udp = 20;
        if usize::from(get16(pkt, udp + 4)) != len - udp {
            return false;
        }
        if get16(pkt, udp + 6) != 0 {
            // The TCP segment, valid, sums to the complement of its pseudo-header.
            let pseudo = csum::pseudo_v4(&pkt[12..16], &pkt[16..20], PROTO_UDP, len - udp);
            let sum = csum::add(pseudo, &pkt[udp..p.tcp]) + u64::from(!csum::fold(tcp_pseudo));
            if csum::fold(sum) != 0xffff {
                return false;
            }
        }
    }
    true
}

/// Whether two parsed packets' headers agree on everything GRO requires to be equal.
fn same_headers(a: &[u8], b: &[u8], p: &Parsed) -> bool {
    let (ip, t) = (p.ip, p.tcp);
    let eq = |r: std::ops::Range<usize>| a[r.clone()] == b[r];
    // Skipped: total lengths, identifications, header checksums, UDP length and checksum,
    // TCP sequence number, flags and checksum.
    let outer = !p.tunnel || (eq(0..2) && eq(6..10) && eq(12..24) && eq(28..ip));
    outer
        && eq(ip..ip + 2)
        && eq(ip + 6..ip + 10)
        && eq(ip + 12..ip + 20)
        && eq(t..t + 4)
        && eq(t + 8..t + 13)
        && eq(t + 14..t + 16)
        && eq(t + 18..p.payload)
}

/// One flow's frame being built: the first segment's headers and every payload so far.
struct Group {
    key: Key,
    first: Parsed,
    /// [virtio-net header][Ethernet][packet: headers, payloads].
    buf: Vec<u8>,
    /// Payload bytes of the first segment: every segment but the last has as many.
    mss: usize,
    count: usize,
    next_seq: u32,
    next_id: u16,
    closed: bool,
}

impl Group {
    fn packet(&self) -> &[u8] {
        &self.buf[PKT..]
    }

    fn accepts(&self, pkt: &[u8], p: &Parsed) -> bool {
        let len = pkt.len() - p.payload;
        !self.closed
            && p.mergeable
            && p.tunnel == self.first.tunnel
            && p.payload == self.first.payload
            && p.seq == self.next_seq
            && p.id == self.next_id
            && len <= self.mss
            && self.buf.len() - PKT + len <= MAX_IP_LEN
            && same_headers(self.packet(), pkt, p)
    }

    fn append(&mut self, pkt: &[u8], p: &Parsed) {
        let len = pkt.len() - p.payload;
        self.buf.extend_from_slice(&pkt[p.payload..]);
        self.count += 1;
        self.next_seq = self.next_seq.wrapping_add(len as u32);
        self.next_id = self.next_id.wrapping_add(1);
        if p.flags & TCP_PSH != 0 {
            let at = PKT + self.first.tcp + 13;
            self.buf[at] |= TCP_PSH;
            self.closed = true;
        }
        if len < self.mss {
            self.closed = true;
        }
    }

    /// Rewrites lengths and checksums for the merged frame and fills in its virtio header.
    fn seal(&mut self) {
        let f = self.first;
        let pkt = &mut self.buf[PKT..];
        let len = pkt.len();
        put16(pkt, 2, len as u16);
        csum::set_ipv4_header(pkt, 20);
        if f.tunnel {
            put16(pkt, 20 + 4, (len - 20) as u16);
            put16(pkt, 20 + 6, 0);
            put16(pkt, f.ip + 2, (len - f.ip) as u16);
            csum::set_ipv4_header(&mut pkt[f.ip..], 20);
        }
        // A partial checksum: the field holds the pseudo-header sum of the whole segment.
        let pseudo = csum::pseudo_v4(
            &pkt[f.ip + 12..f.ip + 16],
            &pkt[f.ip + 16..f.ip + 20],
            PROTO_TCP,
            len - f.tcp,
        );
        put16(pkt, f.tcp + 16, csum::fold(pseudo));
        let e = ETH_LEN as u16;
        let hdr = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: vnet::GSO_TCPV4
                | if f.tunnel {
                    vnet::GSO_UDP_TUNNEL_IPV4
                } else {
                    0
                },
            hdr_len: e + f.payload as u16,
            gso_size: self.mss as u16,
            csum_start: e + f.tcp as u16,
            csum_offset: 16,
            outer_th: if f.tunnel { e + 20 } else { 0 },
            inner_nh: if f.tunnel { e + f.ip as u16 } else { 0 },
        };
        hdr.write(&mut self.buf);
    }
}

/// Merges decrypted packets into frames for the TAP queue; see the module documentation.
/// Frames go to a sink as a list of byte slices (an iovec: one `writev`), each starting
/// with the virtio-net header.
pub struct Coalescer {
    /// VXLAN port whose TCP is merged as tunnel GSO; `None` when the kernel takes no tunnel
    /// GSO frames (then only plain IPv4/TCP is merged).
    vxlan_port: Option<u16>,
    /// Virtio-net header (all zero: nothing to offload) and Ethernet header for IPv4 and
    /// IPv6 packets written alone.
    head_v4: [u8; PKT],
    head_v6: [u8; PKT],
    groups: Vec<Group>,
    spare: Vec<Vec<u8>>,
    /// Segments merged into frames of two or more (a measure of what batching achieved).
    pub merged: u64,
    /// Frames written.
    pub frames: u64,
}

impl Coalescer {
    /// `dst`/`src`: Ethernet addresses of the frames written (dst must be the TAP's own).
    pub fn new(dst: [u8; 6], src: [u8; 6], vxlan_port: Option<u16>) -> Coalescer {
        let head = |ethertype: u16| {
            let mut h = [0u8; PKT];
            h[vnet::LEN..vnet::LEN + 6].copy_from_slice(&dst);
            h[vnet::LEN + 6..vnet::LEN + 12].copy_from_slice(&src);
            h[vnet::LEN + 12..PKT].copy_from_slice(&ethertype.to_be_bytes());
            h
        };
        Coalescer {
            vxlan_port,
            head_v4: head(0x0800),
            head_v6: head(0x86dd),
            groups: Vec::with_capacity(MAX_GROUPS),
            spare: Vec::new(),
            merged: 0,
            frames: 0,
        }
    }

    /// Takes one decrypted IP packet; writes through `sink` whatever must go before it (a
    /// frame of its flow that it cannot join, the oldest frame when too many flows are open)
    /// and the packet itself when it is not merged.
    pub fn push(&mut self, pkt: &[u8], sink: &mut impl FnMut(&[&[u8]])) {
        let Some(p) = parse(pkt, self.vxlan_port) else {
            self.write_alone(pkt, sink);
            return;
        };
        if let Some(i) = self.groups.iter().position(|g| g.key == p.key) {
            if self.groups[i].accepts(pkt, &p) {
                self.groups[i].append(pkt, &p);
                return;
            }
            let g = self.groups.remove(i);
            self.emit(g, sink);
        }
        if !p.mergeable {
            self.write_alone(pkt, sink);
            return;
        }
        if self.groups.len() == MAX_GROUPS {
            let g = self.groups.remove(0);
            self.emit(g, sink);
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(&self.head_v4);
        buf.extend_from_slice(pkt);
        let mss = pkt.len() - p.payload;
        self.groups.push(Group {
            key: p.key,
            first: p,
            buf,
            mss,
            count: 1,
            next_seq: p.seq.wrapping_add(mss as u32),
            next_id: p.id.wrapping_add(1),
            closed: p.flags & TCP_PSH != 0,
        });
    }

    /// Writes every frame still being built, oldest first (at the end of a receive batch).
    pub fn flush(&mut self, sink: &mut impl FnMut(&[&[u8]])) {
        let groups: Vec<Group> = self.groups.drain(..).collect();
        for g in groups {
            self.emit(g, sink);
        }
    }

    fn write_alone(&mut self, pkt: &[u8], sink: &mut impl FnMut(&[&[u8]])) {
        let head = if pkt.first().is_some_and(|b| b >> 4 == 6) {
            &self.head_v6
        } else {
            &self.head_v4
        };
        self.frames += 1;
        sink(&[head, pkt]);
    }

    fn emit(&mut self, mut g: Group, sink: &mut impl FnMut(&[&[u8]])) {
        if g.count > 1 {
            g.seal();
            self.merged += g.count as u64;
        }
        self.frames += 1;
        sink(&[&g.buf]);
        self.spare.push(g.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::super::segment::{self, tests::*};
    use super::*;

    const MAC_TAP: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_SRC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// What the TAP would receive: each frame's virtio header, Ethernet header and packet.
    #[derive(Debug)]
    struct Written {
        hdr: VnetHdr,
        eth: Vec<u8>,
        pkt: Vec<u8>,
    }

    fn run(packets: &[Vec<u8>], tunnel: bool) -> (Vec<Written>, Coalescer) {
        let mut c = Coalescer::new(MAC_TAP, MAC_SRC, tunnel.then_some(4790));
        let mut out = Vec::new();
        let mut sink = |iov: &[&[u8]]| {
            let frame: Vec<u8> = iov.concat();
            out.push(Written {
                hdr: VnetHdr::parse(&frame).unwrap(),
                eth: frame[vnet::LEN..PKT].to_vec(),
                pkt: frame[PKT..].to_vec(),
            });
        };
        for p in packets {
            c.push(p, &mut sink);
        }
        c.flush(&mut sink);
        (out, c)
    }

    fn data(n: usize, seed: usize) -> Vec<u8> {
        (0..n).map(|i| ((i + seed) * 13 % 256) as u8).collect()
    }

    /// `n` consecutive segments of one flow in VXLAN (payload `mss`, the last `last`
    /// bytes), the last with PSH when `psh`.
    fn flow(seq: u32, id: u16, n: usize, mss: usize, last: usize, psh: bool) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let len = if i + 1 == n { last } else { mss };
                let tcp = inner_tcp(
                    seq.wrapping_add((i * mss) as u32),
                    id.wrapping_add(i as u16),
                    &data(len, i * mss),
                    |mut t| {
                        t.psh = psh && i + 1 == n;
                        t
                    },
                );
                vxlan(&tcp, 500 + i as u16, true)
            })
            .collect()
    }

    /// Segments a merged frame again, as the kernel would, and returns the segments.
    fn resegment(w: &Written) -> Vec<Vec<u8>> {
        let h = w.hdr.strip(ETH_LEN as u16).unwrap();
        let mut pkt = w.pkt.clone();
        // The kernel finishes the partial checksum; so does segment() for each segment.
        let mut out = Vec::new();
        let mut scratch = vec![0u8; 9000];
        segment::segment(&h, &mut pkt, &mut scratch, |s| out.push(s.to_vec())).unwrap();
        out
    }

    #[test]
    fn consecutive_tunnel_segments_become_one_gso_frame() {
        let pkts = flow(0xffff_fff0, 0xfffe, 5, 1338, 700, true);
        let (out, c) = run(&pkts, true);
        assert_eq!(out.len(), 1, "{out:?}");
        let w = &out[0];
        assert_eq!(w.eth[..6], MAC_TAP);
        assert_eq!(&w.eth[12..], &[0x08, 0x00]);
        assert_eq!(
            w.hdr,
            VnetHdr {
                flags: vnet::F_NEEDS_CSUM,
                gso_type: vnet::GSO_TCPV4 | vnet::GSO_UDP_TUNNEL_IPV4,
                hdr_len: (ETH_LEN + INNER_NH + 52) as u16,
                gso_size: 1338,
                csum_start: (ETH_LEN + INNER_NH + 20) as u16,
                csum_offset: 16,
                outer_th: (ETH_LEN + 20) as u16,
                inner_nh: (ETH_LEN + INNER_NH) as u16,
            }
        );
        assert_eq!(w.pkt.len(), INNER_NH + 52 + 4 * 1338 + 700);
        // Lengths and header checksums of the merged frame.
        let (outer, _) = etherparse::Ipv4Header::from_slice(&w.pkt).unwrap();
        assert_eq!(usize::from(outer.total_len), w.pkt.len());
        assert_eq!(outer.header_checksum, outer.calc_header_checksum());
        let (inner, _) = etherparse::Ipv4Header::from_slice(&w.pkt[INNER_NH..]).unwrap();
        assert_eq!(usize::from(inner.total_len), w.pkt.len() - INNER_NH);
        assert_eq!(inner.header_checksum, inner.calc_header_checksum());
        assert_eq!(get16(&w.pkt, 26), 0, "outer UDP checksum left out");
        // The TCP checksum field holds the pseudo-header sum of the whole segment.
        let tcp_len = w.pkt.len() - INNER_NH - 20;
        let pseudo = csum::fold(csum::pseudo_v4(&INNER_SRC, &INNER_DST, 6, tcp_len));
        assert_eq!(get16(&w.pkt, INNER_NH + 20 + 16), pseudo);
        // PSH of the last segment kept; segmenting again gives back the original packets
        // (outer identifications aside: the merged frame keeps the first's).
        let (tcp, _) = etherparse::TcpHeader::from_slice(&w.pkt[INNER_NH + 20..]).unwrap();
        assert!(tcp.psh);
        let again = resegment(w);
        assert_eq!(again.len(), pkts.len());
        for (i, (a, b)) in again.iter().zip(&pkts).enumerate() {
            assert_eq!(a[INNER_NH..], b[INNER_NH..], "segment {i}: inner packet");
            // The outer UDP checksum is the only difference: the merged frame has none.
            assert_eq!(
                a[..26],
                b[..26],
                "segment {i}: outer IPv4, UDP ports and length"
            );
            assert_eq!(a[28..INNER_NH], b[28..INNER_NH], "segment {i}: VXLAN");
            check_packet(a, INNER_NH);
        }
        assert_eq!((c.merged, c.frames), (5, 1));
    }

    #[test]
    fn plain_tcp_segments_merge_too() {
        let pkts: Vec<Vec<u8>> = (0..3)
            .map(|i| inner_tcp(100 + i * 1000, 7 + i as u16, &data(1000, i as usize), |t| t))
            .collect();
        let (out, _) = run(&pkts, false);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].hdr.gso_type, vnet::GSO_TCPV4);
        assert_eq!(out[0].hdr.csum_start, (ETH_LEN + 20) as u16);
        assert_eq!((out[0].hdr.outer_th, out[0].hdr.inner_nh), (0, 0));
        let again = resegment(&out[0]);
        assert_eq!(again, pkts);
    }

    #[test]
    fn without_tunnel_gso_vxlan_packets_are_written_one_by_one() {
        let pkts = flow(1, 1, 4, 1000, 1000, false);
        let (out, _) = run(&pkts, false);
        assert_eq!(out.len(), 4);
        for (w, p) in out.iter().zip(&pkts) {
            assert_eq!(w.hdr, VnetHdr::default());
            assert_eq!(&w.pkt, p);
        }
    }

    #[test]
    fn a_gap_in_sequence_numbers_starts_a_new_frame() {
        let mut pkts = flow(1000, 1, 3, 1000, 1000, false);
        // The third segment's sequence number skips 1 byte (and its checksum follows).
        pkts[2] = vxlan(&inner_tcp(3001, 3, &data(1000, 2000), |t| t), 502, true);
        let (out, _) = run(&pkts, true);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].hdr.gso_size, 1000);
        assert_eq!(out[0].pkt.len(), INNER_NH + 52 + 2000);
        assert_eq!(
            out[1].hdr,
            VnetHdr::default(),
            "a frame of one is written as is"
        );
        assert_eq!(out[1].pkt, pkts[2]);
    }

    #[test]
    fn what_gro_refuses_to_merge_is_not_merged() {
        let base =
            |seq: u32, id: u16, f: &dyn Fn(etherparse::TcpHeader) -> etherparse::TcpHeader| {
                vxlan(&inner_tcp(seq, id, &data(1000, 0), f), 1, true)
            };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "another ACK number",
                base(1001, 2, &|mut t| {
                    t.acknowledgment_number = 78;
                    t
                }),
            ),
            (
                "another window",
                base(1001, 2, &|mut t| {
                    t.window_size = 1;
                    t
                }),
            ),
            (
                "FIN",
                base(1001, 2, &|mut t| {
                    t.fin = true;
                    t
                }),
            ),
            (
                "URG",
                base(1001, 2, &|mut t| {
                    t.urg = true;
                    t
                }),
            ),
            (
                "other options",
                base(1001, 2, &|mut t| {
                    t.set_options(&[etherparse::TcpOptionElement::Timestamp(1001, 2000)])
                        .unwrap();
                    t
                }),
            ),
            ("an identification out of step", base(1001, 9, &|t| t)),
        ];
        for (what, second) in cases {
            let first = base(1, 1, &|t| t);
            let (out, c) = run(&[first.clone(), second.clone()], true);
            assert_eq!(out.len(), 2, "{what}: merged");
            assert_eq!(c.merged, 0, "{what}");
            assert_eq!(
                (&out[0].pkt, &out[1].pkt),
                (&first, &second),
                "{what}: order"
            );
        }
    }

    #[test]
    fn a_bad_checksum_is_never_merged() {
        let mut pkts = flow(1, 1, 3, 1000, 1000, false);
        // Flip a payload byte of the second segment: its TCP checksum no longer matches.
        let n = pkts[1].len();
        pkts[1][n - 10] ^= 0x40;
        let (out, _) = run(&pkts, true);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|w| w.hdr == VnetHdr::default()));
        assert_eq!(
            out[1].pkt, pkts[1],
            "the damaged segment reaches the kernel as it is"
        );
        // Same with a wrong outer UDP checksum (the inner one intact).
        let mut pkts = flow(1, 1, 3, 1000, 1000, false);
        pkts[1][27] ^= 1;
        let (out, _) = run(&pkts, true);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn psh_or_a_short_segment_ends_a_frame() {
        let mut pkts = flow(1, 1, 3, 1000, 1000, true);
        pkts.extend(flow(3001, 4, 2, 1000, 1000, false));
        let (out, _) = run(&pkts, true);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].pkt.len(), INNER_NH + 52 + 3000);
        assert_eq!(out[1].pkt.len(), INNER_NH + 52 + 2000);
        // A short segment in the middle ends the frame too; the next starts a new one.
        let mut pkts = flow(1, 1, 2, 1000, 400, false);
        pkts.extend(flow(1401, 3, 2, 1000, 1000, false));
        let (out, _) = run(&pkts, true);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].pkt.len(), INNER_NH + 52 + 1400);
        let again = resegment(&out[0]);
        assert_eq!(again.len(), 2);
        assert_eq!(
            again[1].len(),
            INNER_NH + 52 + 400,
            "the last short segment"
        );
    }

    #[test]
    fn interleaved_flows_merge_separately_and_keep_their_order() {
        let a = flow(1, 1, 4, 1000, 1000, false);
        let b: Vec<Vec<u8>> = (0..4)
            .map(|i| {
                let t = inner_tcp(50_000 + i * 1000, 90 + i as u16, &data(1000, 7), |t| t);
                // Another source port: another flow (checksum recomputed by rebuilding).
                let (ip, rest) = etherparse::Ipv4Header::from_slice(&t).unwrap();
                let (mut tcp, payload) = etherparse::TcpHeader::from_slice(rest).unwrap();
                tcp.source_port = 40001;
                tcp.checksum = tcp.calc_checksum_ipv4(&ip, payload).unwrap();
                let mut b = t[..20].to_vec();
                b.extend_from_slice(&tcp.to_bytes());
                b.extend_from_slice(payload);
                vxlan(&b, 700, true)
            })
            .collect();
        let mixed: Vec<Vec<u8>> = a
            .iter()
            .zip(&b)
            .flat_map(|(x, y)| [x.clone(), y.clone()])
            .collect();
        let (out, c) = run(&mixed, true);
        assert_eq!(out.len(), 2);
        assert_eq!(c.merged, 8);
        assert_eq!(
            resegment(&out[0])[..]
                .iter()
                .map(|s| s[INNER_NH..].to_vec())
                .collect::<Vec<_>>(),
            a.iter().map(|s| s[INNER_NH..].to_vec()).collect::<Vec<_>>()
        );
        assert_eq!(resegment(&out[1]).len(), 4);
    }

    #[test]
    fn other_traffic_passes_untouched_and_flushes_nothing_it_should_not() {
        let tcp = flow(1, 1, 2, 1000, 1000, false);
        let udp = {
            let mut out = Vec::new();
            etherparse::PacketBuilder::ipv4(INNER_SRC, INNER_DST, 64)
                .udp(5000, 6000)
                .write(&mut out, b"datagram")
                .unwrap();
            vxlan(&out, 9, true)
        };
        let ping = {
            let mut out = Vec::new();
            etherparse::PacketBuilder::ipv4(OUTER_SRC, OUTER_DST, 64)
                .icmpv4_echo_request(1, 1)
                .write(&mut out, b"ping")
                .unwrap();
            out
        };
        let v6 = {
            let mut out = Vec::new();
            etherparse::PacketBuilder::ipv6([1; 16], [2; 16], 64)
                .udp(1, 2)
                .write(&mut out, b"six")
                .unwrap();
            out
        };
        let pkts = vec![
            tcp[0].clone(),
            udp.clone(),
            ping.clone(),
            v6.clone(),
            tcp[1].clone(),
        ];
        let (out, _) = run(&pkts, true);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].pkt, udp);
        assert_eq!(out[1].pkt, ping);
        assert_eq!(out[2].pkt, v6);
        assert_eq!(&out[2].eth[12..], &[0x86, 0xdd]);
        assert_eq!(
            out[3].pkt.len(),
            INNER_NH + 52 + 2000,
            "the TCP flow merged across them"
        );
    }

    #[test]
    fn a_frame_never_exceeds_the_ipv4_limit() {
        let pkts = flow(1, 1, 60, 1338, 1338, false);
        let (out, c) = run(&pkts, true);
        assert!(out.len() >= 2);
        assert!(out.iter().all(|w| w.pkt.len() <= MAX_IP_LEN));
        assert_eq!(c.merged, 60);
        let total: usize = out.iter().map(|w| resegment(w).len()).sum();
        assert_eq!(total, 60);
    }
}
