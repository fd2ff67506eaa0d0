//! A transaction's writes as etcd accepts them.
//!
//! etcd refuses a transaction that puts one key twice or puts a key inside a range it also
//! deletes ("duplicate key given in txn request", etcd's `checkIntervals`); the embedded store
//! applies a transaction's operations in order. The plan keeps the order's outcome: the last
//! put of a key wins, a put drops earlier puts of its key and is carved out of earlier delete
//! ranges, and a delete drops the earlier puts it covers. What remains is a set of puts and
//! disjoint-from-them delete ranges with the same final state.

use std::collections::BTreeMap;

use crate::store::{prefix_end, LeaseId, Op};

/// A key range `[start, end)`; `end` `None` means "every key from `start` on".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyRange {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    fn single(key: &[u8]) -> KeyRange {
        KeyRange {
            start: key.to_vec(),
            end: Some(successor(key)),
        }
    }

    fn prefix(prefix: &str) -> KeyRange {
        KeyRange {
            start: prefix.as_bytes().to_vec(),
            end: prefix_end(prefix),
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }

    /// True when the range is exactly one key.
    pub fn is_single(&self) -> bool {
        self.end.as_deref() == Some(successor(&self.start).as_slice())
    }

    /// The range without `key` (zero, one or two ranges).
    fn without(self, key: &[u8]) -> Vec<KeyRange> {
        if !self.contains(key) {
            return vec![self];
        }
        let mut out = Vec::new();
        if self.start.as_slice() < key {
            out.push(KeyRange {
                start: self.start,
                end: Some(key.to_vec()),
            });
        }
        let after = successor(key);
        if self.end.as_deref().is_none_or(|e| after.as_slice() < e) {
            out.push(KeyRange {
                start: after,
                end: self.end,
            });
        }
        out
    }
}

/// The smallest key after `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// The writes of one transaction, conflict-free.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub puts: BTreeMap<Vec<u8>, (Vec<u8>, Option<LeaseId>)>,
    pub deletes: Vec<KeyRange>,
}

impl Plan {
    pub fn of(ops: &[Op]) -> Plan {
        let mut plan = Plan::default();
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    let k = key.as_bytes();
                    plan.deletes = std::mem::take(&mut plan.deletes)
                        .into_iter()
                        .flat_map(|r| r.without(k))
                        .collect();
                    plan.puts.insert(k.to_vec(), (value.clone(), *lease));
                }
                Op::Delete(key) => plan.delete(KeyRange::single(key.as_bytes())),
                Op::DeletePrefix(prefix) => plan.delete(KeyRange::prefix(prefix)),
            }
        }
        plan
    }

    fn delete(&mut self, range: KeyRange) {
        self.puts.retain(|k, _| !range.contains(k));
        self.deletes.push(range);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: &str, end: Option<&str>) -> KeyRange {
        KeyRange {
            start: start.as_bytes().to_vec(),
            end: end.map(|e| e.as_bytes().to_vec()),
        }
    }

    #[test]
    fn last_put_wins_and_deletes_drop_puts() {
        let p = Plan::of(&[
            Op::put("/a", "1"),
            Op::put("/a", "2"),
            Op::put("/b", "1"),
            Op::Delete("/b".into()),
        ]);
        assert_eq!(p.puts.len(), 1);
        assert_eq!(p.puts[&b"/a".to_vec()].0, b"2");
        assert_eq!(p.deletes, [KeyRange::single(b"/b")]);
        assert!(p.deletes[0].is_single());
    }

    #[test]
    fn a_put_is_carved_out_of_an_earlier_delete_range() {
        let p = Plan::of(&[Op::DeletePrefix("/p/".into()), Op::put("/p/m", "x")]);
        assert_eq!(
            p.deletes,
            [r("/p/", Some("/p/m")), r("/p/m\0", Some("/p0"))]
        );
        assert!(p.deletes.iter().all(|d| !d.contains(b"/p/m")));
        let p = Plan::of(&[Op::DeletePrefix("".into()), Op::put("", "x")]);
        assert_eq!(p.deletes, [r("\0", None)]);
        let p = Plan::of(&[Op::Delete("/k".into()), Op::put("/k", "x")]);
        assert!(p.deletes.is_empty());
    }
}
