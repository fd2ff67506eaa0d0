//! The Internet checksum (RFC 1071): a ones' complement sum of 16-bit big-endian words, folded
//! and complemented. Sums are kept unfolded in a `u64` so that pieces can be added up before
//! one fold; a piece must start at an even offset of the checksummed region (RFC 1071 §2(B)).

/// Adds the bytes of `data` to `acc` as 16-bit big-endian words (a trailing odd byte is the
/// high half of a last word, as if padded with a zero byte). Returns the unfolded sum.
pub fn add(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (v >> 32) + (v & 0xffff_ffff);
    }
    let mut rest = chunks.remainder();
    while rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [last] = rest {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds an unfolded sum to 16 bits (ones' complement addition of its 16-bit parts).
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field's value for a region whose unfolded sum (pseudo-header included, the
/// field itself counted as zero) is `acc`.
pub fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// The IPv4 pseudo-header of TCP and UDP (RFC 793 §3.1, RFC 768): addresses, protocol and
/// the transport length in bytes, as an unfolded sum.
pub fn pseudo_v4(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u64 {
    add(add(u64::from(proto) + len as u64, src), dst)
}

/// Writes the header checksum of the IPv4 header at `ip[..ihl]` (RFC 791 §3.1).
pub fn set_ipv4_header(ip: &mut [u8], ihl: usize) {
    ip[10] = 0;
    ip[11] = 0;
    let c = finish(add(0, &ip[..ihl]));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Whether the IPv4 header at `ip[..ihl]` has a valid checksum.
pub fn ipv4_header_ok(ip: &[u8], ihl: usize) -> bool {
    fold(add(0, &ip[..ihl])) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add(0, &data)), 0xddf2);
        assert_eq!(finish(add(0, &data)), !0xddf2);
    }

    #[test]
    fn pieces_at_even_offsets_add_up_and_odd_tails_pad() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        let whole = fold(add(0, &data));
        let split = fold(add(add(0, &data[..64]), &data[64..]));
        assert_eq!(whole, split);
        let mut padded = data.clone();
        padded.push(0);
        assert_eq!(whole, fold(add(0, &padded)));
    }

    #[test]
    fn ipv4_header_checksum_matches_etherparse() {
        let h = etherparse::Ipv4Header::new(
            100,
            64,
            etherparse::IpNumber::TCP,
            [10, 1, 2, 3],
            [10, 4, 5, 6],
        )
        .unwrap();
        let mut bytes = h.to_bytes().to_vec();
        bytes[10] = 0xab;
        set_ipv4_header(&mut bytes, 20);
        assert_eq!(
            u16::from_be_bytes([bytes[10], bytes[11]]),
            h.calc_header_checksum()
        );
        assert!(ipv4_header_ok(&bytes, 20));
        bytes[8] ^= 1;
        assert!(!ipv4_header_ok(&bytes, 20));
    }
}
