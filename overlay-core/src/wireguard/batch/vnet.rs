//! The virtio-net header that precedes every frame on a TUN/TAP queue opened with
//! `IFF_VNET_HDR` (virtio spec 1.2 §5.1.6, `struct virtio_net_hdr_v1_hash_tunnel` of Linux
//! 6.17+ `include/uapi/linux/virtio_net.h`): how the kernel hands over a large (GSO) frame
//! and which checksum it left for the reader to complete, and how a writer hands the kernel
//! one. Multi-byte fields are little-endian (a TUN/TAP speaks virtio 1.0 byte order unless
//! told otherwise with `TUNSETVNETBE`, which is never used here).

/// Bytes of the full header: 10 (`virtio_net_hdr`) + 2 (`num_buffers`) + 8 (hash report) +
/// 4 (tunnel offsets). The queue is told this size with `TUNSETVNETHDRSZ`; a kernel that
/// knows the tunnel fields reads and writes them, an older one leaves them zero.
pub const LEN: usize = 24;

/// `flags`: the checksum from `csum_start` to the end is left to complete (stored at
/// `csum_start + csum_offset`; that field already holds the pseudo-header sum).
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was verified.
pub const F_DATA_VALID: u8 = 2;
/// `flags`: the outer UDP header of a tunnel GSO frame carries a checksum (Linux 6.17).
pub const F_UDP_TUNNEL_CSUM: u8 = 8;

/// `gso_type`: not a GSO frame.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: IPv4 TCP segmentation (TSO).
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: IPv6 TCP segmentation.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation (USO).
pub const GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the segments are inside a UDP tunnel over IPv4 (Linux 6.17).
pub const GSO_UDP_TUNNEL_IPV4: u8 = 0x20;
/// `gso_type` bit: the segments are inside a UDP tunnel over IPv6 (Linux 6.17).
pub const GSO_UDP_TUNNEL_IPV6: u8 = 0x40;
/// `gso_type` bit: TCP with ECN (CWR on the first segment only).
pub const GSO_ECN: u8 = 0x80;

/// One virtio-net header. Offsets count from the first byte of the frame that follows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Bytes of headers before the first segment's payload (a hint: readers here do not
    /// rely on it, they parse the headers).
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS for TCP).
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    /// Tunnel GSO: offset of the outer transport (UDP) header.
    pub outer_th: u16,
    /// Tunnel GSO: offset of the inner network (IP) header.
    pub inner_nh: u16,
}

impl VnetHdr {
    /// Reads a header from the first [`LEN`] bytes of `b`; `None` if `b` is shorter.
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b = b.get(..LEN)?;
        let u16le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16le(2),
            gso_size: u16le(4),
            csum_start: u16le(6),
            csum_offset: u16le(8),
            outer_th: u16le(20),
            inner_nh: u16le(22),
        })
    }

    /// Writes the header into the first [`LEN`] bytes of `b` (zeros where this type has no
    /// field: `num_buffers` and the hash report). Panics if `b` is shorter.
    pub fn write(&self, b: &mut [u8]) {
        let b = &mut b[..LEN];
        b.fill(0);
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[20..22].copy_from_slice(&self.outer_th.to_le_bytes());
        b[22..24].copy_from_slice(&self.inner_nh.to_le_bytes());
    }

    /// The same header for the frame with its first `n` bytes removed (an Ethernet header
    /// stripped); `None` if an offset in use pointed into them.
    pub fn strip(&self, n: u16) -> Option<VnetHdr> {
        let sub = |v: u16, used: bool| if used { v.checked_sub(n) } else { Some(v) };
        let csum = self.flags & F_NEEDS_CSUM != 0;
        let tunnel = self.gso_type & (GSO_UDP_TUNNEL_IPV4 | GSO_UDP_TUNNEL_IPV6) != 0;
        Some(VnetHdr {
            hdr_len: self.hdr_len.saturating_sub(n),
            csum_start: sub(self.csum_start, csum)?,
            outer_th: sub(self.outer_th, tunnel)?,
            inner_nh: sub(self.inner_nh, tunnel)?,
            ..*self
        })
    }

    /// Whether the frame is a GSO frame (holds several segments' worth of payload).
    pub fn is_gso(&self) -> bool {
        self.gso_type != GSO_NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM | F_UDP_TUNNEL_CSUM,
            gso_type: GSO_TCPV4 | GSO_UDP_TUNNEL_IPV4,
            hdr_len: 0x0102,
            gso_size: 1338,
            csum_start: 84,
            csum_offset: 16,
            outer_th: 34,
            inner_nh: 64,
        };
        let mut b = [0xffu8; LEN];
        h.write(&mut b);
        assert_eq!(b[0], 9);
        assert_eq!(b[1], 0x21);
        assert_eq!(&b[2..4], &[0x02, 0x01], "little-endian");
        assert_eq!(&b[10..20], &[0; 10], "num_buffers and hash report zeroed");
        assert_eq!(VnetHdr::parse(&b), Some(h));
        assert_eq!(VnetHdr::parse(&b[..LEN - 1]), None);
        let s = h.strip(14).unwrap();
        assert_eq!((s.csum_start, s.outer_th, s.inner_nh), (70, 20, 50));
        assert_eq!(s.gso_size, 1338);
        let bad = VnetHdr {
            csum_start: 10,
            ..h
        };
        assert_eq!(bad.strip(14), None);
    }
}
