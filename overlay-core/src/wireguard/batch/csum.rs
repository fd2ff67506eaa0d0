//! The Internet checksum (RFC 1071): a ones' complement sum of 16-bit big-endian words, folded
//! and complemented. Sums are kept unfolded in a `u64` so that pieces can be added up before
//! one fold; a piece must start at an even offset of the checksummed region (RFC 1071 §2(B)).

/// Adds the bytes of `data` to `acc` as 16-bit big-endian words (a trailing odd byte is the
/// high half of a last word, as if padded with a zero byte). Returns the unfolded sum.
///
/// The bulk is summed as native-endian 32-bit words in eight independent 64-bit lanes (which
/// the compiler turns into vector adds), folded, and byte-swapped on little-endian machines
/// (RFC 1071 §2(B): the sum is byte-order independent up to a swap); the tail word by word.
pub fn add(acc: u64, data: &[u8]) -> u64 {
    let mut lanes = [0u64; 8];
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        for (l, w) in lanes.iter_mut().zip(b.chunks_exact(4)) {
            *l += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
    }
    let native = fold(lanes.iter().fold(0u64, |a, l| a + fold(*l) as u64));
    let bulk = if cfg!(target_endian = "little") {
        native.swap_bytes()
    } else {
        native
    };
    add_scalar(acc + u64::from(bulk), blocks.remainder())
}

/// [`add`] one 16-bit word at a time (the tail, and the reference in tests).
fn add_scalar(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
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
    fn the_vector_sum_equals_the_word_by_word_sum() {
        let data: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for len in [0, 1, 2, 31, 32, 33, 63, 64, 65, 1000, 1441, 65535, 70_000] {
            for start in [0, 2, 6] {
                let d = &data[start..len.max(start)];
                assert_eq!(
                    fold(add(7, d)),
                    fold(add_scalar(7, d)),
                    "len {len} start {start}"
                );
            }
        }
        // Worst case for the lanes: all ones.
        let ones = vec![0xffu8; 65536];
        assert_eq!(fold(add(0, &ones)), fold(add_scalar(0, &ones)));
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
