//! Maglev consistent hashing: the lookup table that maps a flow's hash to a backend.
//!
//! Source: D. E. Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
//! Balancer", NSDI 2016, §3.4 (Pseudocode 1). Each backend gets a preference list, a
//! permutation of the table's `M` slots defined by
//!
//! ```text
//! offset = h1(name) mod M
//! skip   = h2(name) mod (M - 1) + 1
//! permutation[j] = (offset + j × skip) mod M
//! ```
//!
//! with `M` prime, so every `skip` is coprime with `M` and the list visits every slot. The
//! backends then take turns, each claiming its next preferred slot that is still empty, until
//! the table is full. Weights follow Katran's `MaglevHashV2` (facebookincubator/katran,
//! `katran/lib/MaglevHashV2.cpp`): a backend takes a turn each time its accumulated weight
//! reaches the largest weight, so with equal weights it is exactly the paper's round robin and
//! every backend owns ⌊M/N⌋ or ⌈M/N⌉ slots.
//!
//! What makes the table the same on every host: `h1`/`h2` are SipHash-2-4 with fixed keys
//! (never std's randomly seeded hasher) over the backend's stable *name* (not its position in
//! a list), and the backends take turns in the order of their names, whatever order they were
//! given in. The golden test below pins the hash, so two vxmesh versions agree on the table.

use std::hash::Hasher;

use siphasher::sip::SipHasher24;

/// Smallest number of table slots per backend the automatic size gives (the paper, §5.3:
/// "M ≫ N"; 100 keeps every backend's share within 1 % of even).
pub const SLOTS_PER_BACKEND: u32 = 100;

/// The automatic table sizes: entry `k` is the smallest prime ≥ 100 × 2^k (checked by a unit
/// test). A service with `n` backends gets the first entry ≥ 100 × n, so its size changes
/// only when the backend count crosses a power of two: resizing moves nearly every slot,
/// while a backend coming or going within one size moves about 1/n of them.
pub const TABLE_SIZES: [u32; 14] = [
    101, 211, 401, 809, 1601, 3203, 6421, 12809, 25601, 51203, 102407, 204803, 409609, 819229,
];

/// Most backends a table can be sized for automatically (100 × this fits the last size).
pub const MAX_BACKENDS: usize = 8192;

/// Largest table size accepted (the largest prime below 2^20): 4 MiB of `u32` backend ids.
pub const MAX_TABLE_SIZE: u32 = 1_048_573;

/// SipHash keys of `h1` (offset) and `h2` (skip). Fixed forever: changing them changes every
/// table, and hosts running different versions would disagree.
const H1_KEYS: (u64, u64) = (0x7678_6d65_7368_2d31, 0x6d61_676c_6576_2d68); // "vxmesh-1" "maglev-h"
const H2_KEYS: (u64, u64) = (0x7678_6d65_7368_2d32, 0x6d61_676c_6576_2d73); // "vxmesh-2" "maglev-s"

/// One backend as the table builder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend<'a> {
    /// What the table holds for this backend's slots: the kernel's backend map key.
    pub id: u32,
    /// The backend's stable identity, the input of both hashes (vxmesh uses the endpoint id).
    /// Must be unique within one table.
    pub name: &'a str,
    /// Relative share of the slots; 0 means draining: the backend owns no slot.
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaglevError {
    #[error("invalid maglev table size {0}: must be a prime between 2 and {MAX_TABLE_SIZE}")]
    BadSize(u32),
    #[error("maglev table size {size} is smaller than the {backends} backend(s) to place")]
    TooSmall { size: u32, backends: usize },
    #[error("backend name '{0}' appears twice")]
    DuplicateName(String),
    #[error("backend id {0} appears twice")]
    DuplicateId(u32),
    #[error("no backend with a weight above 0: nothing to put in the table")]
    NoActiveBackend,
    #[error("{0} backends: at most {MAX_BACKENDS} can be sized automatically")]
    TooManyBackends(usize),
}

/// The automatic table size for a service with `backends` configured backends: the smallest
/// entry of [`TABLE_SIZES`] that is ≥ 100 × `backends` (101 for 0 or 1).
///
/// Errors: [`MaglevError::TooManyBackends`] above [`MAX_BACKENDS`].
pub fn table_size_for(backends: usize) -> Result<u32, MaglevError> {
    let want = (backends.max(1) as u64) * u64::from(SLOTS_PER_BACKEND);
    TABLE_SIZES
        .iter()
        .copied()
        .find(|&m| u64::from(m) >= want)
        .ok_or(MaglevError::TooManyBackends(backends))
}

/// Checks a table size given explicitly: prime, ≤ [`MAX_TABLE_SIZE`], and at least the number
/// of backends (else some backend could get no slot).
pub fn check_size(size: u32, backends: usize) -> Result<(), MaglevError> {
    if !(2..=MAX_TABLE_SIZE).contains(&size) || !is_prime(size) {
        return Err(MaglevError::BadSize(size));
    }
    if (size as usize) < backends {
        return Err(MaglevError::TooSmall { size, backends });
    }
    Ok(())
}

/// Trial division (at most 65,536 divisions for any `u32`).
pub fn is_prime(n: u32) -> bool {
    let n = u64::from(n);
    if n < 2 {
        return false;
    }
    let mut d = 2u64;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

fn sip(keys: (u64, u64), name: &str) -> u64 {
    let mut h = SipHasher24::new_with_keys(keys.0, keys.1);
    h.write(name.as_bytes());
    h.finish()
}

/// The paper's `(offset, skip)` of the backend named `name` in a table of `size` slots: its
/// preference list is `(offset + j × skip) mod size` for j = 0, 1, …
///
/// Two backends with the same `skip` walk the same cycle and contend for the same slots; that
/// is what makes the rare large disruptions (see the crate documentation).
pub fn permutation(name: &str, size: u32) -> (u32, u32) {
    let p = Preference::new(name, u64::from(size));
    (p.pos as u32, p.skip as u32)
}

/// A backend's preference list, walked one slot at a time (Pseudocode 1's `permutation`).
struct Preference {
    /// The slot `next` points at: (offset + next × skip) mod M.
    pos: u64,
    skip: u64,
}

impl Preference {
    fn new(name: &str, size: u64) -> Self {
        let offset = sip(H1_KEYS, name) % size;
        let skip = if size > 1 {
            sip(H2_KEYS, name) % (size - 1) + 1
        } else {
            1
        };
        Preference { pos: offset, skip }
    }

    fn advance(&mut self, size: u64) {
        self.pos += self.skip;
        if self.pos >= size {
            self.pos -= size;
        }
    }
}

/// Builds the lookup table of `size` slots: slot `i` holds the id of the backend that flows
/// hashing to `i` go to. The result depends only on the set of backends (names, ids,
/// weights) and `size`, not on the order of `backends`.
///
/// Errors: a bad `size` (not prime, out of range, fewer slots than weighted backends), a name
/// or id given twice, or no backend with a weight above 0.
pub fn table(backends: &[Backend<'_>], size: u32) -> Result<Vec<u32>, MaglevError> {
    if !(2..=MAX_TABLE_SIZE).contains(&size) || !is_prime(size) {
        return Err(MaglevError::BadSize(size));
    }
    let mut sorted: Vec<&Backend<'_>> = backends.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(b.name));
    for pair in sorted.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(MaglevError::DuplicateName(pair[0].name.to_string()));
        }
    }
    let mut ids: Vec<u32> = sorted.iter().map(|b| b.id).collect();
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|p| p[0] == p[1]) {
        return Err(MaglevError::DuplicateId(pair[0]));
    }
    sorted.retain(|b| b.weight > 0);
    if sorted.is_empty() {
        return Err(MaglevError::NoActiveBackend);
    }
    if sorted.len() > size as usize {
        return Err(MaglevError::TooSmall {
            size,
            backends: sorted.len(),
        });
    }
    Ok(populate(&sorted, size))
}

/// Pseudocode 1 with Katran's weighted turns. `backends` are sorted by name, all weighted.
fn populate(backends: &[&Backend<'_>], size: u32) -> Vec<u32> {
    const EMPTY: u32 = u32::MAX;
    let m = u64::from(size);
    let mut prefs: Vec<Preference> = backends
        .iter()
        .map(|b| Preference::new(b.name, m))
        .collect();
    let max_weight = backends
        .iter()
        .map(|b| u64::from(b.weight))
        .max()
        .unwrap_or(1);
    let mut credit = vec![0u64; backends.len()];
    // Slot → index into `backends`; indices fit u32 since there are at most `size` ≤ 2^20.
    let mut slots = vec![EMPTY; size as usize];
    let mut filled = 0usize;
    'rounds: loop {
        for (i, pref) in prefs.iter_mut().enumerate() {
            credit[i] += u64::from(backends[i].weight);
            if credit[i] < max_weight {
                continue;
            }
            credit[i] -= max_weight;
            while slots[pref.pos as usize] != EMPTY {
                pref.advance(m);
            }
            slots[pref.pos as usize] = i as u32;
            pref.advance(m);
            filled += 1;
            if filled == slots.len() {
                break 'rounds;
            }
        }
    }
    slots.into_iter().map(|i| backends[i as usize].id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smallest_prime_at_least(mut n: u32) -> u32 {
        while !is_prime(n) {
            n += 1;
        }
        n
    }

    #[test]
    fn size_list_is_the_smallest_primes_above_100_times_powers_of_two() {
        for (k, &m) in TABLE_SIZES.iter().enumerate() {
            assert_eq!(m, smallest_prime_at_least(100 << k), "entry {k}");
        }
        assert!(is_prime(MAX_TABLE_SIZE));
        assert_eq!(smallest_prime_at_least(MAX_TABLE_SIZE + 1), 1_048_583);
        assert!(u64::from(*TABLE_SIZES.last().unwrap()) >= 100 * MAX_BACKENDS as u64);
    }

    #[test]
    fn automatic_size() {
        assert_eq!(table_size_for(0), Ok(101));
        assert_eq!(table_size_for(1), Ok(101));
        assert_eq!(table_size_for(2), Ok(211));
        assert_eq!(table_size_for(3), Ok(401));
        assert_eq!(table_size_for(10), Ok(1601));
        assert_eq!(table_size_for(1000), Ok(102_407));
        assert_eq!(table_size_for(MAX_BACKENDS), Ok(819_229));
        assert_eq!(
            table_size_for(MAX_BACKENDS + 1),
            Err(MaglevError::TooManyBackends(MAX_BACKENDS + 1))
        );
        for n in 1..=MAX_BACKENDS {
            assert!(table_size_for(n).unwrap() >= 100 * n as u32);
        }
    }

    #[test]
    fn explicit_size_checks() {
        assert!(check_size(65_537, 10).is_ok());
        assert_eq!(check_size(65_536, 10), Err(MaglevError::BadSize(65_536)));
        assert_eq!(check_size(1, 0), Err(MaglevError::BadSize(1)));
        assert_eq!(
            check_size(1_048_583, 1),
            Err(MaglevError::BadSize(1_048_583))
        );
        assert_eq!(
            check_size(7, 8),
            Err(MaglevError::TooSmall {
                size: 7,
                backends: 8
            })
        );
    }

    #[test]
    fn bad_inputs() {
        let b = |id, name, weight| Backend { id, name, weight };
        assert_eq!(
            table(&[b(1, "a", 1), b(2, "a", 1)], 101),
            Err(MaglevError::DuplicateName("a".into()))
        );
        assert_eq!(
            table(&[b(1, "a", 1), b(1, "b", 1)], 101),
            Err(MaglevError::DuplicateId(1))
        );
        assert_eq!(
            table(&[b(1, "a", 0)], 101),
            Err(MaglevError::NoActiveBackend)
        );
        assert_eq!(table(&[], 101), Err(MaglevError::NoActiveBackend));
        assert_eq!(table(&[b(1, "a", 1)], 100), Err(MaglevError::BadSize(100)));
        assert_eq!(
            table(&[b(1, "a", 1), b(2, "b", 1), b(3, "c", 1)], 2),
            Err(MaglevError::TooSmall {
                size: 2,
                backends: 3
            })
        );
    }

    #[test]
    fn weights_share_slots_and_zero_drains() {
        let backends = [
            Backend {
                id: 10,
                name: "a",
                weight: 3,
            },
            Backend {
                id: 20,
                name: "b",
                weight: 1,
            },
            Backend {
                id: 30,
                name: "c",
                weight: 0,
            },
        ];
        let t = table(&backends, 401).unwrap();
        let count = |id| t.iter().filter(|&&x| x == id).count();
        assert_eq!(count(30), 0);
        assert_eq!(count(10) + count(20), 401);
        // 3:1 → 300.75 : 100.25
        assert!((300..=301).contains(&count(10)), "{}", count(10));
    }

    /// Pins the SipHash keys and the algorithm: a change here changes every host's tables, so
    /// hosts running different vxmesh versions would send one flow to different backends. The
    /// expected values come from an independent implementation (SipHash-2-4 checked against
    /// the SipHash paper's test vector, and Pseudocode 1 written out in Python).
    #[test]
    fn golden_tables() {
        let backends = [
            Backend {
                id: 1,
                name: "web-1",
                weight: 1,
            },
            Backend {
                id: 2,
                name: "web-2",
                weight: 1,
            },
            Backend {
                id: 3,
                name: "web-3",
                weight: 1,
            },
        ];
        assert_eq!(
            table(&backends, 13).unwrap(),
            [2, 1, 3, 2, 3, 1, 1, 3, 3, 1, 2, 2, 1]
        );
        let names: Vec<String> = (0..10).map(|i| format!("ep-{i}")).collect();
        let ten: Vec<Backend<'_>> = names
            .iter()
            .enumerate()
            .map(|(i, name)| Backend {
                id: 100 + i as u32,
                name,
                weight: 1,
            })
            .collect();
        let t = table(&ten, 1601).unwrap();
        assert_eq!(
            t[..16],
            [100, 101, 109, 100, 107, 100, 103, 109, 101, 107, 104, 105, 106, 102, 103, 108]
        );
        let weighted_sum: u64 = t
            .iter()
            .enumerate()
            .map(|(i, &x)| i as u64 * u64::from(x))
            .sum();
        assert_eq!(weighted_sum, 133_855_933);
    }
}
