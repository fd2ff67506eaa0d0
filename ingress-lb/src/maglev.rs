//! Maglev-style consistent hashing: the lookup table that maps a flow's hash to a backend.
//!
//! The kernel takes slot `hash(5-tuple) mod M` of a service's table of `M` backend ids; this
//! module computes that table in user space. It keeps the shape of Maglev (D. E. Eisenbud et
//! al., "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016, §3.4): a
//! fixed-size table, one pseudo-random preference list (a permutation of the `M` slots) per
//! backend, backends taking turns in a fixed order. It changes two rules of the paper's
//! Pseudocode 1, so it is *not* the paper's table (a host running the paper's algorithm would
//! build a different one):
//!
//! 1. **Turns are lockstep.** On each turn a backend looks at the next slot of its list and
//!    takes it if it is empty; if it is taken, the turn is spent (the paper walks on until it
//!    finds an empty slot). So slot `s` goes to the backend whose list reaches `s` in the
//!    earliest turn, ties by name: rendezvous (highest-random-weight) hashing with the list
//!    positions as the random weights. Rendezvous hashing is what keeps disruption minimal:
//!    removing a backend hands its slots to the next backend on *their* lists and leaves every
//!    other slot where it was. The paper's rule ties each backend's claims to everyone
//!    else's turns, and one backend fewer reshuffles the whole table: measured 1.84 % of the
//!    slots moved beyond the removed backend's own share on average for N = 2..64, worst 14.4 %.
//! 2. **A backend stops at its share.** Rendezvous hashing alone gives a backend ±10 % of its
//!    share at 100 slots per backend; here a backend drops out of the turns once it owns
//!    ⌈M·w/W⌉ slots (its weight `w` of the total `W`), and once the `M − Σ⌊M·w/W⌋` remainder
//!    slots have gone to the first backends to reach their ceiling, everyone else stops at
//!    ⌊M·w/W⌋. Every backend ends with ⌊M·w/W⌋ or ⌈M·w/W⌉ slots (for equal weights ⌊M/N⌋ or
//!    ⌈M/N⌉). This cap is the only place where the table departs from rendezvous hashing, and
//!    the only source of moves beyond the minimum: a removed backend's slots do not land
//!    evenly on the others (their next choices are random), so the caps spill some slots on.
//!
//! The preference list is a keyed pseudo-random permutation of `0..M` (three rounds of
//! xor-key, multiply by an odd key, xor-shift on `ceil(log2 M)` bits, cycle-walked into
//! `0..M`), not the paper's `offset + j × skip`: two backends with the same or related `skip`
//! walk the same cycle, which made the paper's worst cases. Weights follow Katran's
//! `MaglevHashV2` (facebookincubator/katran, `katran/lib/MaglevHashV2.cpp`): a backend gets a
//! turn each time its accumulated weight reaches the largest weight, so visit `k` (from 0) of
//! backend `b` falls in turn `ceil((k + 1) × max_weight / weight_b)`; with equal weights every
//! backend has one turn per round.
//!
//! # Disruption and table size
//!
//! The spill shrinks like 1/√M, so few backends need more slots than the paper's 100 each:
//! [`table_size_for`] gives at least [`MIN_TABLE_SIZE`] (16,381) slots and at least 100 per
//! backend. The excess is the share of slots that moved beyond the minimum (1/N when one of N
//! backends is removed, 1/(N+1) when one is added); the bound is 1 %. Removing one, with
//! random backend names (adding one gives similar figures; for this table at the automatic
//! sizes mean 0.56 %, p99 0.77 %, worst 0.90 % up to 200 backends, 0.35, 0.60, 0.67 % above):
//!
//! | construction                                 | M          | N         | mean   | p99    | worst  |
//! |----------------------------------------------|------------|-----------|--------|--------|--------|
//! | the paper's Pseudocode 1                     | ≈ 100 N    | 2..=64    | 1.84 % | 3.30 % | 14.4 % |
//! | the paper, two backends never share a `skip` | ≈ 100 N    | 2..=64    | 1.89 % | 3.14 % | 27.6 % |
//! | the paper's turns, random permutations       | ≈ 100 N    | 2..=64    | 1.85 % | 2.86 % | 3.45 % |
//! | stable matching on rendezvous scores         | ≈ 100 N    | 2..=64    | 1.15 % | 2.62 % | 3.43 % |
//! | this table                                   | ≈ 100 N    | 2..=64    | 0.99 % | 1.85 % | 2.21 % |
//! | this table                                   | 4,099      | 2..=40    | 0.85 % | 1.36 % | 1.54 % |
//! | this table                                   | 8,191      | 2..=40    | 0.61 % | 0.94 % | 1.18 % |
//! | this table, [`table_size_for`]               | 16,381     | 2..=200   | 0.55 % | 0.77 % | 0.87 % |
//! | this table, [`table_size_for`]               | 32,749 + … | 201..=1000| 0.36 % | 0.63 % | 0.66 % |
//!
//! "≈ 100 N" is the previous size list (101, 211, 401, 809, 1,601, … slots), 20 random sets
//! per N (the paper's 14.4 % worst case is from 200 sets per N; 20 gave 8.9 %). The last two
//! rows are `measure_disruption` in `tests/maglev_props.rs` (20 sets per N up to 200, 4 per N
//! from 201 in steps of 7); the others come from a standalone harness of the same algorithms
//! on random 64-bit keys, not kept in the repository. Giving a removed backend's slots to the
//! others evenly needs those slots' next choices to be even, and with hashed preferences they
//! are only even on average: the excess of every rendezvous-based construction tried (stable
//! matching, a min-cost assignment, this race) stays near that unevenness, about 1 % at
//! 100 slots per backend, so no construction tried met the bound at the paper's sizes.
//!
//! Memory and time: a table is `M` × 4 bytes. 10,000 services × 10 backends take 10,000 ×
//! 16,381 × 4 B = 655 MB of table data (at 100 slots per backend, 1,601-slot tables, 64 MB).
//! Building one table of 10 backends takes 0.56 ms in a release build on the 2-core test
//! machine (10,000 of them: 5.6 s on one core; the paper's at 1,601 slots: 34 µs), 1,000
//! backends (131,071 slots) 10 ms, 204 ms in a debug build. A service that must stay smaller
//! can set its size explicitly (any prime ≥ its backends) and gets the excess measured above
//! for that `M`.
//!
//! # The same table on every host
//!
//! The table depends only on the set of backends (names, ids, weights) and `M`: the
//! permutation keys are SipHash-2-4 with fixed keys (never std's randomly seeded hasher) of the
//! backend's stable *name* (not its position in a list), turns within a round go in the order
//! of the names whatever order the backends were given in, and no state is kept between two
//! builds. The golden test below pins all of it, so two vxmesh versions agree on the table.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::Hasher;

use siphasher::sip::SipHasher24;

/// Slots per backend the automatic size gives at least (the paper, §5.3: "M ≫ N").
pub const SLOTS_PER_BACKEND: u32 = 100;

/// Fewest slots the automatic size gives (the first entry of [`TABLE_SIZES`]): below it the
/// balancing spill exceeds 1 % of the flows for some sets of 10 to 160 backends (measured; see
/// the module documentation).
pub const MIN_TABLE_SIZE: u32 = 16_381;

/// The automatic table sizes: the largest primes below 2^k for k = 14..=20 (checked by a unit
/// test; just below a power of two, so the preference lists' cycle walking almost never
/// repeats). A service with `n` backends gets the first entry ≥ 100 × n, so its size changes
/// only when the backend count crosses 163, 327, 655, 1310, …: resizing moves nearly every
/// slot, while a backend coming or going within one size moves about 1/n of them.
pub const TABLE_SIZES: [u32; 7] = [
    MIN_TABLE_SIZE,
    32_749,
    65_521,
    131_071,
    262_139,
    524_287,
    MAX_TABLE_SIZE,
];

/// Most backends a table can be sized for automatically (100 × this fits the last size).
pub const MAX_BACKENDS: usize = 8192;

/// Largest table size accepted (the largest prime below 2^20): 4 MiB of `u32` backend ids.
pub const MAX_TABLE_SIZE: u32 = 1_048_573;

/// SipHash keys of the backend name → permutation seed. Fixed forever: changing them changes
/// every table, and hosts running different versions would disagree.
const NAME_KEYS: (u64, u64) = (0x7678_6d65_7368_2d31, 0x6d61_676c_6576_2d68); // "vxmesh-1" "maglev-h"

/// One backend as the table builder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend<'a> {
    /// What the table holds for this backend's slots: the kernel's backend map key.
    pub id: u32,
    /// The backend's stable identity, the input of its permutation (vxmesh uses the endpoint
    /// id). Must be unique within one table.
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
/// entry of [`TABLE_SIZES`] that is ≥ 100 × `backends` ([`MIN_TABLE_SIZE`] up to 163).
///
/// Errors: [`MaglevError::TooManyBackends`] above [`MAX_BACKENDS`].
pub fn table_size_for(backends: usize) -> Result<u32, MaglevError> {
    if backends > MAX_BACKENDS {
        return Err(MaglevError::TooManyBackends(backends));
    }
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

/// SplitMix64's output function (Steele, Lea, Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014): derives the permutation's round keys from the name's seed.
fn splitmix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A backend's preference list: a keyed pseudo-random permutation of the slots `0..size`.
struct Permutation {
    size: u64,
    /// ceil(log2 size) bits: the permutation below is a bijection of `0..2^bits`.
    mask: u64,
    shift: u32,
    /// Per round: the xor key and the odd multiplier.
    rounds: [(u64, u64); 3],
}

impl Permutation {
    fn new(name: &str, size: u32) -> Self {
        let mut h = SipHasher24::new_with_keys(NAME_KEYS.0, NAME_KEYS.1);
        h.write(name.as_bytes());
        let seed = h.finish();
        let key = |i: u64| splitmix64(seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        let bits = (u32::BITS - (size - 1).leading_zeros()).max(1);
        Permutation {
            size: u64::from(size),
            mask: (1u64 << bits) - 1,
            shift: bits / 2 + 1,
            rounds: [
                (key(1), key(2) | 1),
                (key(3), key(4) | 1),
                (key(5), key(6) | 1),
            ],
        }
    }

    /// One pass over `0..2^bits`: each step (xor, multiply by an odd number modulo 2^bits,
    /// xor with a right shift) is a bijection, so the pass is one.
    #[inline]
    fn pass(&self, mut x: u64) -> u64 {
        for (xor, mul) in self.rounds {
            x = (x ^ xor) & self.mask;
            x = x.wrapping_mul(mul) & self.mask;
            x ^= x >> self.shift;
        }
        x
    }

    /// Slot number `j` (< size) of the list. Cycle walking (Black and Rogaway, "Ciphers with
    /// arbitrary finite domains", 2002) keeps a bijection of `0..size`; 2^bits < 2 × size, so
    /// it takes fewer than 2 passes on average.
    #[inline]
    fn slot(&self, j: u32) -> usize {
        let mut x = self.pass(u64::from(j));
        while x >= self.size {
            x = self.pass(x);
        }
        x as usize
    }
}

/// Builds the lookup table of `size` slots: slot `i` holds the id of the backend that flows
/// hashing to `i` go to. The result depends only on the set of backends (names, ids,
/// weights) and `size`, not on the order of `backends`. Every backend of weight `w` owns
/// ⌊size·w/W⌋ or ⌈size·w/W⌉ slots, `W` the total weight.
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

/// The turn in which visit `visit` (from 0) of a backend of weight `weight` falls:
/// ceil((visit + 1) × max_weight / weight); visits ≤ 2^20, weights < 2^32: no overflow.
fn turn(visit: u32, weight: u32, max_weight: u32) -> u64 {
    ((u64::from(visit) + 1) * u64::from(max_weight)).div_ceil(u64::from(weight))
}

/// One backend in the race.
struct Racer {
    list: Permutation,
    /// Slots of `list` looked at so far.
    visits: u32,
    owned: u32,
    /// ⌊M·w/W⌋ and ⌈M·w/W⌉.
    floor: u32,
    ceil: u32,
}

/// The table being filled: the lockstep race with shares (module documentation) over
/// `backends`, sorted by name, all weighted, at most `size` of them.
struct Race<'b> {
    backends: &'b [&'b Backend<'b>],
    racers: Vec<Racer>,
    /// Slot → position of its backend in `backends` (valid where `taken`).
    owner: Vec<u32>,
    /// One bit per slot (a small array that stays in the cache; `owner` is only written).
    taken: Vec<u64>,
    /// Slots left once everyone has its floor: the first backends to reach their ceiling keep
    /// one each (`at_ceiling` of them so far), then every ceiling drops to the floor.
    extras: u32,
    at_ceiling: u32,
    empty: u32,
}

impl<'b> Race<'b> {
    fn new(backends: &'b [&'b Backend<'b>], size: u32) -> Self {
        let m = u64::from(size);
        // M·w < 2^52 and W < 2^52: no overflow.
        let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
        let racers: Vec<Racer> = backends
            .iter()
            .map(|b| {
                let share = m * u64::from(b.weight);
                Racer {
                    list: Permutation::new(b.name, size),
                    visits: 0,
                    owned: 0,
                    floor: (share / total) as u32,
                    ceil: share.div_ceil(total) as u32,
                }
            })
            .collect();
        Race {
            backends,
            extras: size - racers.iter().map(|r| r.floor).sum::<u32>(),
            racers,
            owner: vec![0; size as usize],
            taken: vec![0; (size as usize).div_ceil(64)],
            at_ceiling: 0,
            empty: size,
        }
    }

    /// Whether backend `b` still races: it owns less than its share.
    #[inline]
    fn racing(&self, b: usize) -> bool {
        let r = &self.racers[b];
        let share = if self.at_ceiling < self.extras {
            r.ceil
        } else {
            r.floor
        };
        r.owned < share
    }

    /// One turn of racing backend `b`: it looks at the next slot of its list and takes it if
    /// it is empty. A backend short of its share has met a taken slot on every visit so far,
    /// so it never runs past its list: after `size` visits every slot would be taken.
    #[inline]
    fn turn(&mut self, b: usize) {
        let r = &mut self.racers[b];
        let slot = r.list.slot(r.visits);
        r.visits += 1;
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        if self.taken[word] & bit == 0 {
            self.taken[word] |= bit;
            self.owner[slot] = b as u32;
            r.owned += 1;
            self.empty -= 1;
            if r.owned > r.floor {
                self.at_ceiling += 1;
            }
        }
    }

    /// Equal weights: every racing backend has one turn per round, in name order.
    fn rounds(mut self) -> Vec<u32> {
        let mut racing: Vec<usize> = (0..self.backends.len()).collect();
        while self.empty > 0 {
            for &b in &racing {
                if self.empty > 0 && self.racing(b) {
                    self.turn(b);
                }
            }
            racing.retain(|&b| self.racing(b));
        }
        self.finish()
    }

    /// Any weights: turns in the order of [`turn`], ties in name order.
    fn weighted(mut self) -> Vec<u32> {
        let max_weight = self.backends.iter().map(|b| b.weight).max().unwrap_or(1);
        let weight = |b: usize| self.backends[b].weight;
        let mut turns: BinaryHeap<Reverse<(u64, usize)>> = (0..self.backends.len())
            .map(|b| Reverse((turn(0, weight(b), max_weight), b)))
            .collect();
        while self.empty > 0 {
            // The shares add up to `size`: a backend short of its share is always waiting.
            let Some(Reverse((_, b))) = turns.pop() else {
                unreachable!("shares add up to the table size")
            };
            if self.racing(b) {
                self.turn(b);
                let visits = self.racers[b].visits;
                turns.push(Reverse((turn(visits, weight(b), max_weight), b)));
            }
        }
        self.finish()
    }

    fn finish(self) -> Vec<u32> {
        self.owner
            .into_iter()
            .map(|b| self.backends[b as usize].id)
            .collect()
    }
}

/// Fills the table; `backends` are sorted by name, all weighted, at most `size` of them.
fn populate(backends: &[&Backend<'_>], size: u32) -> Vec<u32> {
    let race = Race::new(backends, size);
    if backends.windows(2).all(|p| p[0].weight == p[1].weight) {
        race.rounds()
    } else {
        race.weighted()
    }
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
    fn size_list_is_the_largest_primes_below_powers_of_two() {
        let largest_prime_below = |n: u32| (2..n).rev().find(|&p| is_prime(p)).unwrap();
        for (k, &m) in TABLE_SIZES.iter().enumerate() {
            assert_eq!(m, largest_prime_below(1 << (k + 14)), "entry {k}");
        }
        assert_eq!(TABLE_SIZES[0], MIN_TABLE_SIZE);
        assert_eq!(smallest_prime_at_least(MAX_TABLE_SIZE + 1), 1_048_583);
        assert!(u64::from(*TABLE_SIZES.last().unwrap()) >= 100 * MAX_BACKENDS as u64);
    }

    #[test]
    fn automatic_size() {
        assert_eq!(table_size_for(0), Ok(16_381));
        assert_eq!(table_size_for(1), Ok(16_381));
        assert_eq!(table_size_for(10), Ok(16_381));
        assert_eq!(table_size_for(163), Ok(16_381));
        assert_eq!(table_size_for(164), Ok(32_749));
        assert_eq!(table_size_for(1000), Ok(131_071));
        assert_eq!(table_size_for(MAX_BACKENDS), Ok(1_048_573));
        assert_eq!(
            table_size_for(MAX_BACKENDS + 1),
            Err(MaglevError::TooManyBackends(MAX_BACKENDS + 1))
        );
        for n in 1..=MAX_BACKENDS {
            assert!(table_size_for(n).unwrap() >= 100 * n as u32);
        }
    }

    #[test]
    fn every_preference_list_is_a_permutation_of_the_slots() {
        for size in [2u32, 3, 13, 101, 1601, 16_411, MIN_TABLE_SIZE] {
            for name in ["a", "web-1", "ep-0123456789abcdef"] {
                let p = Permutation::new(name, size);
                let mut seen = vec![false; size as usize];
                for j in 0..size {
                    let s = p.slot(j);
                    assert!(!seen[s], "{name} M={size}: slot {s} twice");
                    seen[s] = true;
                }
            }
        }
    }

    #[test]
    fn rounds_are_the_weighted_schedule_with_equal_weights() {
        let names: Vec<String> = (0..40).map(|i| format!("backend-{i}")).collect();
        for weight in [1, 7] {
            let set: Vec<Backend<'_>> = names
                .iter()
                .enumerate()
                .map(|(i, name)| Backend {
                    id: i as u32,
                    name,
                    weight,
                })
                .collect();
            let refs: Vec<&Backend<'_>> = set.iter().collect();
            let size = 4099;
            assert_eq!(
                Race::new(&refs, size).rounds(),
                Race::new(&refs, size).weighted()
            );
        }
    }

    #[test]
    fn turns_follow_katrans_weight_credit() {
        // Equal weights: one visit per round.
        assert_eq!(
            (0..4).map(|k| turn(k, 5, 5)).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        // Weight 2 of 3: visits in turns 2, 3, 5, 6 (credit 2, 4→1, 3→0, 2, 4→1, …).
        assert_eq!(
            (0..4).map(|k| turn(k, 2, 3)).collect::<Vec<_>>(),
            [2, 3, 5, 6]
        );
        // Extremes do not overflow.
        assert_eq!(
            turn(MAX_TABLE_SIZE, 1, u32::MAX),
            1_048_574 * u64::from(u32::MAX)
        );
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

    fn weighted_sum(t: &[u32]) -> u64 {
        t.iter()
            .enumerate()
            .map(|(i, &x)| i as u64 * u64::from(x))
            .sum()
    }

    /// Pins the SipHash keys and the algorithm: a change here changes every host's tables, so
    /// hosts running different vxmesh versions would send one flow to different backends. The
    /// expected values come from an independent implementation (SipHash-2-4 checked against
    /// the SipHash paper's test vector, and the permutation and the race written out in
    /// Python from the module documentation).
    #[test]
    fn golden_tables() {
        let b = |id, name, weight| Backend { id, name, weight };
        let three = [b(1, "web-1", 1), b(2, "web-2", 1), b(3, "web-3", 1)];
        assert_eq!(
            table(&three, 13).unwrap(),
            [3, 2, 1, 3, 1, 2, 2, 3, 2, 1, 1, 1, 3]
        );
        let names: Vec<String> = (0..10).map(|i| format!("ep-{i}")).collect();
        let ten: Vec<Backend<'_>> = names
            .iter()
            .enumerate()
            .map(|(i, name)| b(100 + i as u32, name, 1))
            .collect();
        let t = table(&ten, MIN_TABLE_SIZE).unwrap();
        assert_eq!(
            t[..16],
            [104, 108, 108, 102, 103, 100, 100, 109, 103, 102, 102, 104, 106, 105, 107, 105]
        );
        assert_eq!(weighted_sum(&t), 14_019_498_853);
        // Weights 3:1:2 over 101 slots: shares 50.5, 16.8, 33.7 → 51, 16, 34.
        let weighted = [b(1, "a", 3), b(2, "b", 1), b(3, "c", 2)];
        let t = table(&weighted, 101).unwrap();
        assert_eq!(
            t[..20],
            [1, 2, 1, 1, 2, 1, 3, 3, 1, 3, 2, 3, 2, 3, 2, 1, 1, 2, 1, 1]
        );
        assert_eq!(weighted_sum(&t), 9234);
    }
}
