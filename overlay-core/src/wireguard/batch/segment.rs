//! Transmit side: turns one frame read from the TAP queue (possibly a GSO frame of up to 64 KiB)
//! into the IP packets WireGuard encrypts one by one, each no larger than the segment size the
//! kernel asked for, with every length, sequence number, identification and checksum right.
//!
//! Two GSO shapes are handled, the ones the queue is offered (`TUN_F_TSO4`,
//! `TUN_F_UDP_TUNNEL_GSO[_CSUM]`):
//! - IPv4/TCP;
//! - IPv4/UDP/VXLAN/Ethernet/IPv4/TCP, the encrypted networks' traffic: a container's large
//!   TCP segment encapsulated whole by the VXLAN device.
//!
//! The rules are the kernel's own software segmentation (`tcp_gso_segment`,
//! `inet_gso_segment`, `__skb_udp_tunnel_segment` in Linux): payload cut at `gso_size`, the
//! last segment shorter; TCP sequence number advanced by the payload before it; FIN and PSH
//! only on the last segment, CWR only on the first; IPv4 identification incremented per
//! segment (outer and inner); total lengths, UDP length and every checksum rewritten.
//! Checksums are computed in full (RFC 1071) over each segment, except the outer UDP one,
//! which uses local checksum offload (the inner TCP segment, checksum included, sums to the
//! complement of its pseudo-header; Linux `lco_csum`), so no payload byte is summed twice.

use super::csum;
use super::vnet::{self, VnetHdr};

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Why a frame could not be segmented (the frame is dropped and counted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("frame of {len} bytes too short for its headers")]
    Truncated { len: usize },
    #[error("unsupported GSO type {0:#04x}")]
    GsoType(u8),
    #[error("GSO frame with segment size 0")]
    ZeroSegmentSize,
    #[error("GSO frame is not IPv4")]
    NotIpv4,
    #[error("GSO frame has {what} where {expected} was expected")]
    Header {
        what: &'static str,
        expected: &'static str,
    },
    #[error("checksum offsets {start}+{offset} outside a frame of {len} bytes")]
    ChecksumOffsets {
        start: usize,
        offset: usize,
        len: usize,
    },
    #[error("segment of {need} bytes does not fit the {have}-byte buffer")]
    Scratch { need: usize, have: usize },
}

/// Where the headers of a GSO frame are (offsets into the IP packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// The outer UDP header and the inner IPv4 header of a tunnel frame.
    tunnel: Option<(usize, usize)>,
    /// The IPv4 header that carries the TCP segment (the inner one in a tunnel).
    ip: usize,
    tcp: usize,
    payload: usize,
}

fn ihl(pkt: &[u8], at: usize) -> Result<usize, SegmentError> {
    let b = *pkt
        .get(at)
        .ok_or(SegmentError::Truncated { len: pkt.len() })?;
    if b >> 4 != 4 {
        return Err(SegmentError::NotIpv4);
    }
    let n = usize::from(b & 0x0f) * 4;
    if n < 20 {
        return Err(SegmentError::Header {
            what: "an IPv4 header shorter than 20 bytes",
            expected: "a valid IPv4 header",
        });
    }
    Ok(n)
}

fn layout(hdr: &VnetHdr, pkt: &[u8]) -> Result<Layout, SegmentError> {
    let short = SegmentError::Truncated { len: pkt.len() };
    let outer = ihl(pkt, 0)?;
    let tunnel = hdr.gso_type & vnet::GSO_UDP_TUNNEL_IPV4 != 0;
    let (tunnel, ip) = if tunnel {
        if pkt.get(9) != Some(&PROTO_UDP) {
            return Err(SegmentError::Header {
                what: "an outer protocol other than UDP",
                expected: "UDP",
            });
        }
        let inner = usize::from(hdr.inner_nh);
        if inner < outer + 8 {
            return Err(SegmentError::Header {
                what: "an inner header offset inside the outer UDP header",
                expected: "the inner IPv4 header after the UDP header",
            });
        }
        (Some((outer, inner)), inner)
    } else {
        (None, 0)
    };
    let tcp = ip + ihl(pkt, ip)?;
    if pkt.get(ip + 9) != Some(&PROTO_TCP) {
        return Err(SegmentError::Header {
            what: "a protocol other than TCP",
            expected: "TCP",
        });
    }
    if hdr.flags & vnet::F_NEEDS_CSUM != 0 && usize::from(hdr.csum_start) != tcp {
        return Err(SegmentError::Header {
            what: "a checksum start other than the TCP header",
            expected: "the TCP header",
        });
    }
    let doff = usize::from(*pkt.get(tcp + 12).ok_or(short.clone())? >> 4) * 4;
    if doff < 20 {
        return Err(SegmentError::Header {
            what: "a TCP header shorter than 20 bytes",
            expected: "a valid TCP header",
        });
    }
    let payload = tcp + doff;
    if payload > pkt.len() {
        return Err(short);
    }
    Ok(Layout {
        tunnel,
        ip,
        tcp,
        payload,
    })
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Completes a checksum left partial (`VIRTIO_NET_HDR_F_NEEDS_CSUM`): sums `pkt[start..]`
/// (the field already holds the pseudo-header sum) and stores the result at `start + offset`
/// (a result of 0 is sent as 0xffff, as Linux `skb_checksum_help` does: for UDP, 0 would mean
/// "no checksum").
pub fn complete_checksum(pkt: &mut [u8], start: usize, offset: usize) -> Result<(), SegmentError> {
    if start + offset + 2 > pkt.len() {
        return Err(SegmentError::ChecksumOffsets {
            start,
            offset,
            len: pkt.len(),
        });
    }
    let c = csum::finish(csum::add(0, &pkt[start..]));
    put16(pkt, start + offset, if c == 0 { 0xffff } else { c });
    Ok(())
}

/// Splits the IP packet `pkt` (a frame read from the TAP queue without its Ethernet header,
/// described by `hdr` with offsets relative to `pkt`) into the packets to encrypt, calling
/// `emit` with each in order; returns how many. A frame that is not GSO is passed on whole
/// after its partial checksum (if any) is completed. Each segment is built in `scratch`,
/// which must hold the largest segment (headers + `gso_size`).
pub fn segment(
    hdr: &VnetHdr,
    pkt: &mut [u8],
    scratch: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, SegmentError> {
    // A frame cut short (by a read buffer smaller than the frame) is not sent in part.
    if let Some(b) = pkt.get(..4) {
        let total = usize::from(get16(b, 2));
        if b[0] >> 4 == 4 && total > pkt.len() {
            return Err(SegmentError::Truncated { len: pkt.len() });
        }
    }
    if !hdr.is_gso() {
        if hdr.flags & vnet::F_NEEDS_CSUM != 0 {
            complete_checksum(
                pkt,
                usize::from(hdr.csum_start),
                usize::from(hdr.csum_offset),
            )?;
        }
        emit(pkt);
        return Ok(1);
    }
    let kind = hdr.gso_type & !(vnet::GSO_ECN | vnet::GSO_UDP_TUNNEL_IPV4);
    if kind != vnet::GSO_TCPV4 || hdr.gso_type & vnet::GSO_UDP_TUNNEL_IPV6 != 0 {
        return Err(SegmentError::GsoType(hdr.gso_type));
    }
    let mss = usize::from(hdr.gso_size);
    if mss == 0 {
        return Err(SegmentError::ZeroSegmentSize);
    }
    let l = layout(hdr, pkt)?;
    let head = l.payload;
    let payload_len = pkt.len() - head;
    let count = payload_len.div_ceil(mss).max(1);
    let largest = head + payload_len.min(mss);
    if largest > scratch.len() {
        return Err(SegmentError::Scratch {
            need: largest,
            have: scratch.len(),
        });
    }
    let outer_ihl = usize::from(pkt[0] & 0x0f) * 4;
    let inner_ihl = l.tcp - l.ip;
    let outer_id = get16(pkt, 4);
    let inner_id = get16(pkt, l.ip + 4);
    let seq = u32::from_be_bytes([
        pkt[l.tcp + 4],
        pkt[l.tcp + 5],
        pkt[l.tcp + 6],
        pkt[l.tcp + 7],
    ]);
    let flags = pkt[l.tcp + 13];
    // Outer UDP checksum of a tunnel frame: kept when the kernel asked for one.
    let udp_csum = hdr.flags & vnet::F_UDP_TUNNEL_CSUM != 0;
    scratch[..head].copy_from_slice(&pkt[..head]);
    for i in 0..count {
        let from = head + i * mss;
        let to = (from + mss).min(pkt.len());
        let len = head + (to - from);
        let s = &mut scratch[..len];
        s[head..].copy_from_slice(&pkt[from..to]);
        // The IPv4 header that carries TCP (the only one, or the inner one).
        put16(s, l.ip + 2, (len - l.ip) as u16);
        put16(s, l.ip + 4, inner_id.wrapping_add(i as u16));
        csum::set_ipv4_header(&mut s[l.ip..], inner_ihl);
        // TCP.
        let t = l.tcp;
        s[t + 4..t + 8].copy_from_slice(&seq.wrapping_add((i * mss) as u32).to_be_bytes());
        let mut f = flags;
        if i > 0 {
            f &= !TCP_CWR;
        }
        if i + 1 < count {
            f &= !(TCP_FIN | TCP_PSH);
        }
        s[t + 13] = f;
        put16(s, t + 16, 0);
        let tcp_pseudo = csum::pseudo_v4(
            &s[l.ip + 12..l.ip + 16],
            &s[l.ip + 16..l.ip + 20],
            PROTO_TCP,
            len - t,
        );
        let c = csum::finish(csum::add(tcp_pseudo, &s[t..]));
        put16(s, t + 16, c);
        if let Some((udp, _)) = l.tunnel {
            put16(s, 2, len as u16);
            put16(s, 4, outer_id.wrapping_add(i as u16));
            csum::set_ipv4_header(s, outer_ihl);
            put16(s, udp + 4, (len - udp) as u16);
            put16(s, udp + 6, 0);
            if udp_csum {
                let pseudo = csum::pseudo_v4(&s[12..16], &s[16..20], PROTO_UDP, len - udp);
                let sum = if (t - udp) % 2 == 0 {
                    // The TCP segment with its checksum sums to !fold(tcp_pseudo).
                    csum::add(pseudo, &s[udp..t]) + u64::from(!csum::fold(tcp_pseudo))
                } else {
                    csum::add(pseudo, &s[udp..])
                };
                let c = csum::finish(sum);
                put16(s, udp + 6, if c == 0 { 0xffff } else { c });
            }
        }
        emit(s);
    }
    Ok(count)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use etherparse::{Ethernet2Header, IpNumber, Ipv4Header, PacketBuilder, TcpHeader, UdpHeader};

    pub const OUTER_SRC: [u8; 4] = [100, 88, 0, 1];
    pub const OUTER_DST: [u8; 4] = [100, 88, 0, 2];
    pub const INNER_SRC: [u8; 4] = [10, 10, 1, 2];
    pub const INNER_DST: [u8; 4] = [10, 10, 1, 3];
    pub const VNI: u32 = 4096;

    /// A TCP segment as the container's stack makes it: IPv4 (id, DF) / TCP with the
    /// timestamp option, `payload`, flags from `f`.
    pub fn inner_tcp(
        seq: u32,
        id: u16,
        payload: &[u8],
        f: impl FnOnce(TcpHeader) -> TcpHeader,
    ) -> Vec<u8> {
        let mut ip = Ipv4Header::new(0, 64, IpNumber::TCP, INNER_SRC, INNER_DST).unwrap();
        ip.identification = id;
        ip.dont_fragment = true;
        let mut tcp = TcpHeader::new(40000, 5201, seq, 502);
        tcp.ack = true;
        tcp.acknowledgment_number = 77;
        tcp.set_options(&[etherparse::TcpOptionElement::Timestamp(1000, 2000)])
            .unwrap();
        let tcp = f(tcp);
        let mut out = Vec::new();
        PacketBuilder::ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .tcp_header(tcp)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    /// `inner` (an IPv4 packet) inside VXLAN (VNI 4096, inner Ethernet) inside IPv4/UDP to
    /// port 4790, with a full UDP checksum when `udp_csum`.
    pub fn vxlan(inner: &[u8], outer_id: u16, udp_csum: bool) -> Vec<u8> {
        let mut body = vec![0x08, 0, 0, 0];
        body.extend_from_slice(&(VNI << 8).to_be_bytes());
        let eth = Ethernet2Header {
            source: [0x0a, 0x58, 10, 10, 1, 2],
            destination: [0x0a, 0x58, 10, 10, 1, 3],
            ether_type: etherparse::EtherType::IPV4,
        };
        body.extend_from_slice(&eth.to_bytes());
        body.extend_from_slice(inner);
        let mut ip = Ipv4Header::new(0, 64, IpNumber::UDP, OUTER_SRC, OUTER_DST).unwrap();
        ip.identification = outer_id;
        let mut out = Vec::new();
        PacketBuilder::ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .udp(51000, 4790)
            .write(&mut out, &body)
            .unwrap();
        if !udp_csum {
            out[26] = 0;
            out[27] = 0;
        }
        out
    }

    /// Offsets in a VXLAN packet built by [`vxlan`] (20 + 8 + 8 + 14).
    pub const INNER_NH: usize = 50;

    /// Checks every checksum and length of an IPv4/TCP packet (at `ip`), and of the outer
    /// IPv4/UDP of a VXLAN packet when `ip > 0`; returns the TCP header and payload.
    pub fn check_packet(pkt: &[u8], ip: usize) -> (TcpHeader, Vec<u8>) {
        if ip > 0 {
            let (outer, rest) = Ipv4Header::from_slice(pkt).unwrap();
            assert_eq!(usize::from(outer.total_len), pkt.len());
            assert_eq!(outer.header_checksum, outer.calc_header_checksum());
            let (udp, body) = UdpHeader::from_slice(rest).unwrap();
            assert_eq!(usize::from(udp.length), rest.len());
            if udp.checksum != 0 {
                assert_eq!(
                    udp.checksum,
                    udp.calc_checksum_ipv4(&outer, body).unwrap(),
                    "outer UDP checksum"
                );
            }
        }
        let (inner, rest) = Ipv4Header::from_slice(&pkt[ip..]).unwrap();
        assert_eq!(usize::from(inner.total_len), pkt.len() - ip);
        assert_eq!(inner.header_checksum, inner.calc_header_checksum());
        let (tcp, payload) = TcpHeader::from_slice(rest).unwrap();
        assert_eq!(
            tcp.checksum,
            tcp.calc_checksum_ipv4(&inner, payload).unwrap(),
            "TCP checksum"
        );
        (tcp, payload.to_vec())
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn collect(hdr: &VnetHdr, pkt: &mut [u8]) -> Result<Vec<Vec<u8>>, SegmentError> {
        let mut out = Vec::new();
        let mut scratch = vec![0u8; 9000];
        let n = segment(hdr, pkt, &mut scratch, |s| out.push(s.to_vec()))?;
        assert_eq!(n, out.len());
        Ok(out)
    }

    fn tunnel_hdr(mss: u16, csum: bool) -> VnetHdr {
        VnetHdr {
            flags: vnet::F_NEEDS_CSUM | if csum { vnet::F_UDP_TUNNEL_CSUM } else { 0 },
            gso_type: vnet::GSO_TCPV4 | vnet::GSO_UDP_TUNNEL_IPV4,
            hdr_len: (INNER_NH + 20 + 32) as u16,
            gso_size: mss,
            csum_start: (INNER_NH + 20) as u16,
            csum_offset: 16,
            outer_th: 20,
            inner_nh: INNER_NH as u16,
        }
    }

    #[test]
    fn tunnel_gso_frame_becomes_segments_with_every_field_right() {
        let mss = 1338;
        let data = payload(5 * mss + 123);
        let big = inner_tcp(0xffff_f000, 0xfffe, &data, |t| {
            let mut t = t;
            t.psh = true;
            t.fin = true;
            t.cwr = true;
            t
        });
        let mut frame = vxlan(&big, 0xfffd, true);
        let segs = collect(&tunnel_hdr(mss as u16, true), &mut frame).unwrap();
        assert_eq!(segs.len(), 6);
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let last = i == 5;
            assert_eq!(s.len(), INNER_NH + 52 + if last { 123 } else { mss });
            let (tcp, p) = check_packet(s, INNER_NH);
            let outer = Ipv4Header::from_slice(s).unwrap().0;
            let inner = Ipv4Header::from_slice(&s[INNER_NH..]).unwrap().0;
            assert_eq!(outer.identification, 0xfffdu16.wrapping_add(i as u16));
            assert_eq!(inner.identification, 0xfffeu16.wrapping_add(i as u16));
            assert!(inner.dont_fragment);
            assert_eq!(
                tcp.sequence_number,
                0xffff_f000u32.wrapping_add((i * mss) as u32),
                "sequence numbers wrap"
            );
            assert_eq!(tcp.acknowledgment_number, 77);
            assert_eq!(tcp.psh, last, "PSH on the last segment only");
            assert_eq!(tcp.fin, last, "FIN on the last segment only");
            assert_eq!(tcp.cwr, i == 0, "CWR on the first segment only");
            assert!(tcp.ack);
            assert_eq!(
                tcp.options_iterator().next().unwrap().unwrap(),
                etherparse::TcpOptionElement::Timestamp(1000, 2000)
            );
            // VXLAN header and inner Ethernet copied.
            assert_eq!(s[28..50], frame[28..50]);
            joined.extend_from_slice(&p);
        }
        assert_eq!(joined, data, "payload intact and in order");
    }

    #[test]
    fn tunnel_without_outer_checksum_keeps_it_zero() {
        let data = payload(3000);
        let big = inner_tcp(1, 1, &data, |t| t);
        let mut frame = vxlan(&big, 1, false);
        let segs = collect(&tunnel_hdr(1000, false), &mut frame).unwrap();
        assert_eq!(segs.len(), 3);
        for s in &segs {
            assert_eq!(&s[26..28], &[0, 0]);
            check_packet(s, INNER_NH);
        }
    }

    #[test]
    fn plain_tcp_gso_frame_becomes_segments() {
        let data = payload(4000);
        let mut big = inner_tcp(7, 9, &data, |mut t| {
            t.psh = true;
            t
        });
        let hdr = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: vnet::GSO_TCPV4,
            hdr_len: 52,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: 16,
            ..Default::default()
        };
        let segs = collect(&hdr, &mut big).unwrap();
        assert_eq!(segs.len(), 3);
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let (tcp, p) = check_packet(s, 0);
            assert_eq!(tcp.sequence_number, 7 + (i * 1448) as u32);
            assert_eq!(tcp.psh, i == 2);
            joined.extend_from_slice(&p);
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn exact_multiple_of_the_segment_size_has_no_empty_tail() {
        let data = payload(3 * 1000);
        let big = inner_tcp(1, 1, &data, |t| t);
        let mut frame = vxlan(&big, 1, true);
        let segs = collect(&tunnel_hdr(1000, true), &mut frame).unwrap();
        assert_eq!(segs.len(), 3);
        assert!(segs.iter().all(|s| s.len() == INNER_NH + 52 + 1000));
    }

    #[test]
    fn gso_frame_with_one_segment_of_payload_is_fixed_up_whole() {
        let data = payload(500);
        let big = inner_tcp(1, 1, &data, |t| t);
        let mut frame = vxlan(&big, 1, true);
        // A wrong length and checksum as a partial-checksum frame carries them.
        frame[INNER_NH + 20 + 16] = 0x12;
        let segs = collect(&tunnel_hdr(1338, true), &mut frame).unwrap();
        assert_eq!(segs.len(), 1);
        check_packet(&segs[0], INNER_NH);
    }

    #[test]
    fn partial_checksum_of_a_single_packet_is_completed() {
        // TCP: the field holds the pseudo-header sum, as the kernel leaves it.
        let data = payload(777);
        let mut pkt = inner_tcp(5, 5, &data, |t| t);
        let pseudo = csum::pseudo_v4(&INNER_SRC, &INNER_DST, 6, pkt.len() - 20);
        put16(&mut pkt, 36, csum::fold(pseudo));
        let hdr = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 16,
            ..Default::default()
        };
        let segs = collect(&hdr, &mut pkt).unwrap();
        check_packet(&segs[0], 0);
        // Outer UDP of a VXLAN packet (the inner packet complete).
        let mut pkt = vxlan(&inner_tcp(5, 5, &data, |t| t), 3, true);
        let len = pkt.len() - 20;
        put16(
            &mut pkt,
            26,
            csum::fold(csum::pseudo_v4(&OUTER_SRC, &OUTER_DST, 17, len)),
        );
        let hdr = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 6,
            ..Default::default()
        };
        let segs = collect(&hdr, &mut pkt).unwrap();
        check_packet(&segs[0], INNER_NH);
        // Offsets outside the packet are refused.
        let hdr = VnetHdr {
            csum_start: 2000,
            ..hdr
        };
        assert!(matches!(
            collect(&hdr, &mut pkt),
            Err(SegmentError::ChecksumOffsets { .. })
        ));
    }

    #[test]
    fn bad_frames_are_refused_not_sent() {
        let big = inner_tcp(1, 1, &payload(3000), |t| t);
        let mut frame = vxlan(&big, 1, true);
        let mut h = tunnel_hdr(1000, true);
        h.gso_size = 0;
        assert_eq!(collect(&h, &mut frame), Err(SegmentError::ZeroSegmentSize));
        let mut h = tunnel_hdr(1000, true);
        h.gso_type = vnet::GSO_UDP_L4 | vnet::GSO_UDP_TUNNEL_IPV4;
        assert!(matches!(
            collect(&h, &mut frame),
            Err(SegmentError::GsoType(_))
        ));
        let mut h = tunnel_hdr(1000, true);
        h.inner_nh = 24;
        assert!(matches!(
            collect(&h, &mut frame),
            Err(SegmentError::Header { .. })
        ));
        let h = tunnel_hdr(1000, true);
        assert!(collect(&h, &mut frame[..60].to_vec()).is_err());
        // Cut short: its IPv4 total length says more.
        let n = frame.len() - 100;
        assert_eq!(
            collect(&h, &mut frame[..n].to_vec()),
            Err(SegmentError::Truncated { len: n })
        );
        let plain = VnetHdr::default();
        assert!(collect(&plain, &mut frame[..n].to_vec()).is_err());
        let mut v6 = frame.clone();
        v6[0] = 0x60;
        assert_eq!(collect(&h, &mut v6), Err(SegmentError::NotIpv4));
        let mut small = vec![0u8; 100];
        assert!(matches!(
            segment(&h, &mut frame, &mut small, |_| {}),
            Err(SegmentError::Scratch { .. })
        ));
    }
}
