//! The store's contract, one suite run against both backends: the embedded SQLite store and a
//! real 3-member etcd cluster (Debian's etcd-server, started by the fixture on free loopback
//! ports). Revisions, compare-and-swap conflicts, prefix reads, watches from a revision,
//! compaction, leases and their expiry, many writers at once.
//!
//! Each test is written once against `&Backend`; `backend_tests!` instantiates it in the
//! `sqlite` and `etcd` modules.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::etcd_cluster::EtcdCluster;
use overlay_core::store::{Compare, EventKind, Op, Revision, SqliteStore, Store, StoreError, Txn};

/// A store under test and the means to open more clients of it.
enum Backend {
    Sqlite(tempfile::TempDir),
    Etcd(EtcdCluster),
}

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    fn etcd() -> Backend {
        Backend::Etcd(EtcdCluster::start(3))
    }

    /// A new client (for SQLite, a new connection to the same file, as another process has).
    fn open(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(d) => {
                Arc::new(SqliteStore::open(d.path().join("sub/store.db")).unwrap())
            }
            Backend::Etcd(c) => Arc::new(c.open()),
        }
    }
}

/// Instantiates each named test for both backends.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&super::Backend::sqlite()) })*
        }
        mod etcd {
            $(#[test] fn $name() { super::$name(&super::Backend::etcd()) })*
        }
    };
}

backend_tests!(
    revisions_count_writes,
    compare_and_swap,
    transactions_apply_their_ops_in_order,
    prefix_reads_and_deletes,
    watch_from_a_revision,
    compaction_makes_old_watches_fail,
    leases_expire_and_take_their_keys,
    many_writers_lose_nothing,
);

fn put_on(s: &dyn Store, key: &str, lease: i64) -> Result<(), StoreError> {
    s.txn(&Txn {
        compares: vec![],
        ops: vec![Op::Put {
            key: key.into(),
            value: b"x".to_vec(),
            lease: Some(lease),
        }],
    })
    .map(|_| ())
}

fn keys(s: &dyn Store, prefix: &str) -> Vec<String> {
    s.range(prefix)
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect()
}

/// Waits until `f` holds, up to `limit` (the 2 cores are shared; never a fixed sleep).
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn revisions_count_writes(b: &Backend) {
    let s = b.open();
    let r0 = s.revision().unwrap();
    let r1 = s.put("/a/1", b"x").unwrap();
    let r2 = s.put("/a/1", b"y").unwrap();
    assert_eq!((r1, r2), (r0 + 1, r0 + 2));
    let kv = s.get("/a/1").unwrap().unwrap();
    assert_eq!(kv.value, b"y");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version, kv.lease),
        (r1, r2, 2, None)
    );
    // A delete of a missing key writes nothing and keeps the revision.
    assert_eq!(s.delete("/nope").unwrap(), r2);
    assert_eq!(s.revision().unwrap(), r2);
    assert!(s.get("/nope").unwrap().is_none());
}

fn compare_and_swap(b: &Backend) {
    let s = b.open();
    let create = Txn {
        compares: vec![Compare::Absent("/k".into())],
        ops: vec![Op::put("/k", "1")],
    };
    assert!(s.txn(&create).unwrap().succeeded);
    let before = s.revision().unwrap();
    let again = s.txn(&create).unwrap();
    assert!(!again.succeeded, "second create must fail");
    assert_eq!(again.revision, before, "a failed compare writes nothing");
    let rev = s.get("/k").unwrap().unwrap().mod_revision;
    let stale = Txn {
        compares: vec![Compare::ModRevision("/k".into(), rev - 1)],
        ops: vec![Op::put("/k", "2")],
    };
    assert!(!s.txn(&stale).unwrap().succeeded);
    assert_eq!(s.get("/k").unwrap().unwrap().value, b"1");
    // A compare on a missing key: ModRevision never holds, Exists neither.
    for c in [
        Compare::ModRevision("/missing".into(), rev),
        Compare::Exists("/missing".into()),
    ] {
        let t = Txn {
            compares: vec![c],
            ops: vec![Op::put("/k", "3")],
        };
        assert!(!s.txn(&t).unwrap().succeeded);
    }
    let fresh = Txn {
        compares: vec![
            Compare::ModRevision("/k".into(), rev),
            Compare::Exists("/k".into()),
            Compare::Absent("/j".into()),
        ],
        ops: vec![Op::put("/k", "2"), Op::put("/j", "3")],
    };
    let out = s.txn(&fresh).unwrap();
    assert!(out.succeeded);
    // Both writes of one transaction share one revision, the store's new one.
    assert_eq!(s.get("/k").unwrap().unwrap().mod_revision, out.revision);
    assert_eq!(s.get("/j").unwrap().unwrap().mod_revision, out.revision);
    assert_eq!(s.revision().unwrap(), out.revision);
    // Two clients race one compare-and-swap: exactly one wins.
    let other = b.open();
    let kv = s.get("/k").unwrap().unwrap();
    let bump = |v: &str| Txn {
        compares: vec![Compare::ModRevision("/k".into(), kv.mod_revision)],
        ops: vec![Op::put("/k", v)],
    };
    let won = [s.txn(&bump("a")).unwrap(), other.txn(&bump("b")).unwrap()];
    assert_eq!(won.iter().filter(|o| o.succeeded).count(), 1);
    assert_eq!(s.get("/k").unwrap().unwrap().value, b"a");
}

fn transactions_apply_their_ops_in_order(b: &Backend) {
    // etcd refuses a key put twice or put inside a range deleted by the same transaction; the
    // store gives the outcome of the operations in order on both backends.
    let s = b.open();
    for k in ["/t/a", "/t/b", "/t/c", "/u"] {
        s.put(k, b"old").unwrap();
    }
    let out = s
        .txn(&Txn {
            compares: vec![Compare::Exists("/t/a".into())],
            ops: vec![
                Op::put("/t/x", "1"),
                Op::DeletePrefix("/t/".into()),
                Op::put("/t/b", "new"),
                Op::put("/t/b", "newer"),
                Op::put("/u", "gone"),
                Op::Delete("/u".into()),
            ],
        })
        .unwrap();
    assert!(out.succeeded);
    assert_eq!(keys(&*s, "/"), ["/t/b"]);
    let kv = s.get("/t/b").unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.mod_revision),
        (&b"newer"[..], out.revision)
    );
}

fn prefix_reads_and_deletes(b: &Backend) {
    let s = b.open();
    for k in ["/p/a", "/p/b", "/p0", "/q/a", "/p/c/d", "/p"] {
        s.put(k, k.as_bytes()).unwrap();
    }
    let r = s.range("/p/").unwrap();
    assert_eq!(
        r.kvs.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
        ["/p/a", "/p/b", "/p/c/d"]
    );
    assert_eq!(r.kvs[0].value, b"/p/a");
    assert_eq!(r.revision, s.revision().unwrap());
    assert_eq!(keys(&*s, "").len(), 6, "the empty prefix is every key");
    s.txn(&Txn {
        compares: vec![],
        ops: vec![Op::DeletePrefix("/p/".into())],
    })
    .unwrap();
    assert!(s.range("/p/").unwrap().kvs.is_empty());
    assert_eq!(keys(&*s, "/"), ["/p", "/p0", "/q/a"]);
}

fn watch_from_a_revision(b: &Backend) {
    let s = b.open();
    let base = s.revision().unwrap();
    let start = s.put("/w/a", b"1").unwrap();
    s.put("/other", b"1").unwrap();
    s.delete("/w/a").unwrap();
    let ev = s.watch("/w/", base, Duration::ZERO).unwrap();
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!((ev[0].kind, ev[0].revision), (EventKind::Put, start));
    assert_eq!(ev[0].value.as_deref(), Some(&b"1"[..]));
    assert_eq!(
        (ev[1].kind, ev[1].value.as_ref()),
        (EventKind::Delete, None)
    );
    assert_eq!(s.watch("/w/", start, Duration::ZERO).unwrap().len(), 1);
    // History under other prefixes only: an empty answer, at once.
    let now = s.revision().unwrap();
    let t = Instant::now();
    assert!(s.watch("/none/", base, Duration::ZERO).unwrap().is_empty());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // A waiting watch wakes up for a write from another client.
    let writer = {
        let s = b.open();
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
    // Nothing new: an empty answer after the timeout, not before.
    let last = s.revision().unwrap();
    let t = Instant::now();
    assert!(s
        .watch("/w/", last, Duration::from_millis(300))
        .unwrap()
        .is_empty());
    assert!(t.elapsed() >= Duration::from_millis(300));
}

fn compaction_makes_old_watches_fail(b: &Backend) {
    let s = b.open();
    let base = s.revision().unwrap();
    let mut last: Revision = base;
    for i in 0..5 {
        last = s.put("/c/k", i.to_string().as_bytes()).unwrap();
    }
    s.compact(last).unwrap();
    match s.watch("/c/", base, Duration::ZERO) {
        Err(StoreError::Compacted { requested, .. }) => assert_eq!(requested, base),
        other => panic!("expected Compacted, got {other:?}"),
    }
    // The state is all there; a watch from the compaction point on works.
    assert_eq!(s.get("/c/k").unwrap().unwrap().value, b"4");
    let next = s.put("/c/k", b"5").unwrap();
    let ev = s.watch("/c/", last, Duration::ZERO).unwrap();
    assert_eq!(ev.iter().map(|e| e.revision).collect::<Vec<_>>(), [next]);
    // Compacting again at or below the point is no error.
    s.compact(last).unwrap();
}

fn leases_expire_and_take_their_keys(b: &Backend) {
    let s = b.open();
    // etcd raises short TTLs to its minimum (about 2 s here); the store asks for 1 s.
    let lease = s.lease_grant(Duration::from_secs(1)).unwrap();
    put_on(&*s, "/l/a", lease).unwrap();
    s.lease_keepalive(lease).unwrap();
    let kv = s.get("/l/a").unwrap().unwrap();
    assert_eq!(kv.lease, Some(lease));
    let before = s.revision().unwrap();
    let granted = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || s.get("/l/a").unwrap().is_none()),
        "the key outlived its lease"
    );
    assert!(granted.elapsed() >= Duration::from_millis(900));
    assert!(s.range("/l/").unwrap().kvs.is_empty());
    // The expiry is a delete event for watchers (the embedded store writes it with the next
    // write; etcd's leader at once).
    s.put("/tick", b"").unwrap();
    let ev = s.watch("/l/", before, Duration::from_secs(5)).unwrap();
    assert_eq!(
        ev.iter()
            .map(|e| (e.kind, e.key.as_str()))
            .collect::<Vec<_>>(),
        [(EventKind::Delete, "/l/a")]
    );
    assert!(matches!(
        s.lease_keepalive(lease),
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(matches!(
        put_on(&*s, "/l/b", lease),
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(s.get("/l/b").unwrap().is_none());
    // A live lease kept alive keeps its key; revoking it takes the key at once.
    let l2 = s.lease_grant(Duration::from_secs(3)).unwrap();
    put_on(&*s, "/l/c", l2).unwrap();
    let kept = Instant::now();
    while kept.elapsed() < Duration::from_secs(5) {
        s.lease_keepalive(l2).unwrap();
        assert!(
            s.get("/l/c").unwrap().is_some(),
            "a kept-alive key vanished"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    s.lease_revoke(l2).unwrap();
    assert!(s.get("/l/c").unwrap().is_none());
    s.lease_revoke(l2).unwrap();
}

fn many_writers_lose_nothing(b: &Backend) {
    // Several clients (as several processes or hosts) race read-modify-write on one counter
    // and each create keys under a shared prefix guarded by Absent.
    let s = b.open();
    s.put("/n", b"0").unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = b.open();
            std::thread::spawn(move || {
                let mut done = 0;
                let mut conflicts = 0;
                while done < 25 {
                    let kv = s.get("/n").unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                    let out = s
                        .txn(&Txn {
                            compares: vec![
                                Compare::ModRevision("/n".into(), kv.mod_revision),
                                Compare::Absent(format!("/slots/{n}")),
                            ],
                            ops: vec![
                                Op::put("/n", (n + 1).to_string()),
                                Op::put(format!("/slots/{n}"), format!("{t}")),
                            ],
                        })
                        .unwrap();
                    if out.succeeded {
                        done += 1;
                    } else {
                        conflicts += 1;
                    }
                }
                conflicts
            })
        })
        .collect();
    let conflicts: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(s.get("/n").unwrap().unwrap().value, b"100");
    let slots = s.range("/slots/").unwrap().kvs;
    assert_eq!(slots.len(), 100, "every value handed out once");
    eprintln!("{conflicts} compare-and-swap conflicts among 4 writers");
}

/// etcd only: with every member down, an operation fails within its time limit, as
/// "unavailable"; with the members back, the same client works again and watches resume.
#[test]
fn etcd_unreachable_fails_in_time_and_recovers() {
    let mut c = EtcdCluster::start(3);
    let mut config = c.config();
    config.timeout = Duration::from_secs(2);
    let s = overlay_core::store::EtcdStore::connect(config).unwrap();
    s.put("/a", b"1").unwrap();
    for i in 0..3 {
        c.kill_member(i);
    }
    for op in ["get", "txn", "watch", "lease"] {
        let t = Instant::now();
        let r = match op {
            "get" => s.get("/a").map(|_| ()),
            "txn" => s.put("/a", b"2").map(|_| ()),
            "watch" => s.watch("/", 0, Duration::from_millis(100)).map(|_| ()),
            _ => s.lease_grant(Duration::from_secs(5)).map(|_| ()),
        };
        let e = r.expect_err(op);
        assert!(e.is_unavailable(), "{op}: {e}");
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "{op}: {:?}",
            t.elapsed()
        );
    }
    for i in 0..3 {
        c.start_member(i);
    }
    overlay_core::store::etcd::members::wait_ready(&s, Duration::from_secs(30)).unwrap();
    assert_eq!(s.get("/a").unwrap().unwrap().value, b"1");
    // A watch resumes from the last revision it saw before the outage.
    let seen = s.revision().unwrap();
    let next = s.put("/a", b"2").unwrap();
    let ev = s.watch("/", seen, Duration::from_secs(5)).unwrap();
    assert_eq!(ev.iter().map(|e| e.revision).collect::<Vec<_>>(), [next]);
}

/// etcd only: TLS (the members' CA, a client certificate) and user/password, as etcd's own
/// clients take them: a member run with `--client-cert-auth` and authentication on.
#[test]
fn etcd_with_tls_and_a_password() {
    use overlay_core::store::{StoreOptions, StoreSpec};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        p("ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                &p("ca.key"),
                "-out",
                &p("ca.pem"),
                "-days",
                "1",
                "-subj",
                "/CN=vxtest-ca",
            ],
        ]
        .concat(),
    );
    for name in ["server", "client"] {
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    &p(&format!("{name}.key")),
                    "-out",
                    &p(&format!("{name}.csr")),
                    "-subj",
                    &format!("/CN=vx{name}"),
                ],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p(&format!("{name}.csr")),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &p("ext"),
            "-out",
            &p(&format!("{name}.pem")),
        ]);
    }
    let port = |_: ()| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (client, peer) = (port(()), port(()));
    let url = format!("https://127.0.0.1:{client}");
    let log = std::fs::File::create(p("etcd.log")).unwrap();
    let mut member = Command::new("etcd")
        .args(["--name", "m0", "--data-dir", &p("data")])
        .arg(format!("--listen-client-urls={url}"))
        .arg(format!("--advertise-client-urls={url}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .arg(format!("--initial-cluster=m0=http://127.0.0.1:{peer}"))
        .args([
            "--cert-file",
            &p("server.pem"),
            "--key-file",
            &p("server.key"),
        ])
        .args(["--trusted-ca-file", &p("ca.pem"), "--client-cert-auth"])
        .args(["--logger=zap", "--log-outputs=stderr", "--log-level=warn"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _kill = Kill(&mut member);
    // etcdctl, the witness and the admin: a root user with a password, then auth on.
    let etcdctl = |args: &[&str]| {
        Command::new("etcdctl")
            .args([
                "--endpoints",
                &url,
                "--cacert",
                &p("ca.pem"),
                "--cert",
                &p("client.pem"),
                "--key",
                &p("client.key"),
            ])
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(30), || etcdctl(&["endpoint", "health"])
            .status
            .success()),
        "{}",
        std::fs::read_to_string(p("etcd.log")).unwrap()
    );
    for args in [
        &["user", "add", "root:s3cret"][..],
        &["user", "grant-role", "root", "root"],
        &["auth", "enable"],
    ] {
        let out = etcdctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let spec = |o: StoreOptions| {
        StoreSpec::parse(&format!("etcd://127.0.0.1:{client}"))
            .unwrap()
            .with_options(&StoreOptions {
                timeout: Some(Duration::from_secs(3)),
                ..o
            })
            .unwrap()
    };
    let full = StoreOptions {
        ca: Some(p("ca.pem").into()),
        cert: Some(p("client.pem").into()),
        key: Some(p("client.key").into()),
        user: Some("root".into()),
        password: Some("s3cret".into()),
        timeout: None,
    };
    let s = overlay_core::store::open(&spec(full.clone())).unwrap();
    s.put("/tls/a", b"1").unwrap();
    assert_eq!(s.get("/tls/a").unwrap().unwrap().value, b"1");
    // etcdctl sees the write (as root).
    let got = etcdctl(&[
        "--user",
        "root:s3cret",
        "get",
        "/tls/a",
        "--print-value-only",
    ]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "1");
    // A wrong password, no client certificate, or no TLS: refused with an error.
    let wrong = overlay_core::store::open(&spec(StoreOptions {
        password: Some("nope".into()),
        ..full.clone()
    }));
    let e = wrong
        .err()
        .expect("a wrong password is refused")
        .to_string();
    assert!(
        e.contains("authentication failed") || e.contains("invalid"),
        "{e}"
    );
    let no_cert = overlay_core::store::open(&spec(StoreOptions {
        cert: None,
        key: None,
        ..full.clone()
    }))
    .and_then(|s| s.get("/tls/a"));
    assert!(no_cert.is_err(), "{no_cert:?}");
    let plain =
        overlay_core::store::open(&spec(StoreOptions::default())).and_then(|s| s.get("/tls/a"));
    assert!(plain.is_err(), "{plain:?}");
}
