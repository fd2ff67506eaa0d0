//! The embedded store's contract: revisions, compare-and-swap, prefix reads, watches, leases.

use std::sync::Arc;
use std::time::Duration;

use overlay_core::store::{Compare, EventKind, Op, SqliteStore, Store, StoreError, Txn};

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("sub/store.db")).unwrap();
    (dir, store)
}

#[test]
fn revisions_count_writes() {
    let (_d, s) = open();
    assert_eq!(s.revision().unwrap(), 0);
    let r1 = s.put("/a/1", b"x").unwrap();
    let r2 = s.put("/a/1", b"y").unwrap();
    assert_eq!((r1, r2), (1, 2));
    let kv = s.get("/a/1").unwrap().unwrap();
    assert_eq!(kv.value, b"y");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 2, 2));
    // A delete of a missing key writes nothing and keeps the revision.
    assert_eq!(s.delete("/nope").unwrap(), 2);
}

#[test]
fn compare_and_swap() {
    let (_d, s) = open();
    let create = Txn {
        compares: vec![Compare::Absent("/k".into())],
        ops: vec![Op::put("/k", "1")],
    };
    assert!(s.txn(&create).unwrap().succeeded);
    assert!(
        !s.txn(&create).unwrap().succeeded,
        "second create must fail"
    );
    let rev = s.get("/k").unwrap().unwrap().mod_revision;
    let stale = Txn {
        compares: vec![Compare::ModRevision("/k".into(), rev - 1)],
        ops: vec![Op::put("/k", "2")],
    };
    let out = s.txn(&stale).unwrap();
    assert!(!out.succeeded);
    assert_eq!(s.get("/k").unwrap().unwrap().value, b"1");
    let fresh = Txn {
        compares: vec![
            Compare::ModRevision("/k".into(), rev),
            Compare::Exists("/k".into()),
        ],
        ops: vec![Op::put("/k", "2"), Op::put("/j", "3")],
    };
    let out = s.txn(&fresh).unwrap();
    assert!(out.succeeded);
    // Both writes of one transaction share one revision.
    assert_eq!(s.get("/k").unwrap().unwrap().mod_revision, out.revision);
    assert_eq!(s.get("/j").unwrap().unwrap().mod_revision, out.revision);
}

#[test]
fn prefix_reads_and_deletes() {
    let (_d, s) = open();
    for k in ["/p/a", "/p/b", "/p0", "/q/a", "/p/c/d"] {
        s.put(k, k.as_bytes()).unwrap();
    }
    let keys: Vec<_> = s
        .range("/p/")
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, ["/p/a", "/p/b", "/p/c/d"]);
    s.txn(&Txn {
        compares: vec![],
        ops: vec![Op::DeletePrefix("/p/".into())],
    })
    .unwrap();
    assert!(s.range("/p/").unwrap().kvs.is_empty());
    assert_eq!(s.range("/").unwrap().kvs.len(), 2);
}

#[test]
fn watch_from_a_revision() {
    let (_d, s) = open();
    let s = Arc::new(s);
    let start = s.put("/w/a", b"1").unwrap();
    s.put("/other", b"1").unwrap();
    s.delete("/w/a").unwrap();
    let ev = s.watch("/w/", 0, Duration::ZERO).unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].kind, EventKind::Put);
    assert_eq!(ev[1].kind, EventKind::Delete);
    assert!(s.watch("/w/", start, Duration::ZERO).unwrap().len() == 1);
    // A waiting watch wakes up for a write from another thread.
    let now = s.revision().unwrap();
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            s.put("/w/b", b"2").unwrap();
        })
    };
    let ev = s.watch("/w/", now, Duration::from_secs(10)).unwrap();
    writer.join().unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].key, "/w/b");
    assert_eq!(ev[0].value.as_deref(), Some(&b"2"[..]));
    // Nothing new: an empty answer after the timeout.
    let last = s.revision().unwrap();
    assert!(s
        .watch("/w/", last, Duration::from_millis(100))
        .unwrap()
        .is_empty());
}

#[test]
fn leases_expire_and_take_their_keys() {
    let (_d, s) = open();
    let lease = s.lease_grant(Duration::from_millis(300)).unwrap();
    s.txn(&Txn {
        compares: vec![],
        ops: vec![Op::Put {
            key: "/l/a".into(),
            value: b"x".to_vec(),
            lease: Some(lease),
        }],
    })
    .unwrap();
    s.lease_keepalive(lease).unwrap();
    assert!(s.get("/l/a").unwrap().is_some());
    std::thread::sleep(Duration::from_millis(500));
    // Reads stop seeing the key as soon as its lease has expired, before any write purges it.
    assert!(s.get("/l/a").unwrap().is_none());
    assert!(s.range("/l/").unwrap().kvs.is_empty());
    s.put("/tick", b"").unwrap(); // any write deletes the keys of expired leases
    assert!(s.get("/l/a").unwrap().is_none());
    assert!(matches!(
        s.lease_keepalive(lease),
        Err(StoreError::LeaseNotFound(_))
    ));
    let bad = s.txn(&Txn {
        compares: vec![],
        ops: vec![Op::Put {
            key: "/l/b".into(),
            value: vec![],
            lease: Some(lease),
        }],
    });
    assert!(matches!(bad, Err(StoreError::LeaseNotFound(_))));
    let l2 = s.lease_grant(Duration::from_secs(60)).unwrap();
    s.txn(&Txn {
        compares: vec![],
        ops: vec![Op::Put {
            key: "/l/c".into(),
            value: vec![],
            lease: Some(l2),
        }],
    })
    .unwrap();
    s.lease_revoke(l2).unwrap();
    assert!(s.get("/l/c").unwrap().is_none());
}

#[test]
fn concurrent_increments_lose_nothing() {
    // Several connections (as several processes would have) race a read-modify-write counter.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    SqliteStore::open(&path).unwrap().put("/n", b"0").unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let s = SqliteStore::open(&path).unwrap();
                let mut done = 0;
                while done < 25 {
                    let kv = s.get("/n").unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                    let out = s
                        .txn(&Txn {
                            compares: vec![Compare::ModRevision("/n".into(), kv.mod_revision)],
                            ops: vec![Op::put("/n", (n + 1).to_string())],
                        })
                        .unwrap();
                    if out.succeeded {
                        done += 1;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.get("/n").unwrap().unwrap().value, b"100");
}
