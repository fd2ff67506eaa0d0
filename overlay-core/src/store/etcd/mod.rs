//! The store on an etcd v3 cluster, through the `etcd-client` crate (gRPC, tonic).
//!
//! # Bridging to the async client
//!
//! [`Store`] is synchronous, and its callers are both plain threads (the CLI, the CNI plugin)
//! and blocking sections inside tokio runtimes (the agent's `spawn_blocking` tasks, and a few
//! calls made straight from its async loop). `Runtime::block_on` panics when called from
//! inside a runtime, so the store owns a runtime of its own (one worker thread, "vxmesh-etcd")
//! that runs the client; each call spawns its future there and waits on a channel. That works
//! from any thread, keeps the gRPC connections alive between calls, and gives one place where
//! every operation gets its time limit ([`EtcdConfig::timeout`]; a watch gets it on top of the
//! time it waits): nothing blocks longer.
//!
//! # Semantics, mapped
//!
//! - Keys, values, create/mod revisions, versions and leases are etcd's own.
//! - [`Compare::Exists`]/[`Compare::Absent`]: the key's `version` is `> 0` / `= 0`;
//!   [`Compare::ModRevision`]: `mod_revision` equals. A transaction's operations are first made
//!   conflict-free ([`plan`]): etcd refuses a key put twice or put inside a deleted range.
//! - A prefix read is one range read `[prefix, prefix_end)` at one revision.
//! - [`Store::watch`] opens a watch on every key from `after + 1` and keeps the events under
//!   the prefix. Every revision has at least one event, so once the watch has delivered the
//!   revision the store had when it was made, it has caught up: an empty answer means
//!   "nothing under the prefix up to now", never "not caught up yet" (etcd 3.4 answers a
//!   progress request at once, before the history, so that cannot tell). The cost: history
//!   outside the prefix crosses the wire too (vxmesh watches its whole root). A compacted
//!   start revision is [`StoreError::Compacted`]: the caller reads everything again.
//! - Leases: TTLs are whole seconds (rounded up; etcd raises very short ones to its minimum,
//!   about 2 s with default member settings); keys on a lease are deleted by etcd's leader when
//!   it expires or is revoked.
//!
//! # Errors and retries
//!
//! An unreachable cluster, a lost leader or a timeout is an error with
//! [`StoreError::is_unavailable`] true. Reads, watches and lease keepalives are retried with
//! backoff until the time limit; a write transaction or a lease grant is retried only when the
//! request never reached a member (connection refused), so a write is never applied twice.

mod config;
pub mod members;
mod plan;

use std::future::Future;
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare as EtcdCompare, CompareOp, ConnectOptions, DeleteOptions,
    EventType, GetOptions, Identity, PutOptions, TlsOptions, Txn as EtcdTxn, TxnOp, WatchOptions,
};

pub use config::{parse_user, EtcdConfig, TlsFiles, DEFAULT_TIMEOUT, SCHEME};

use super::{
    prefix_end, Compare, Event, EventKind, KeyValue, LeaseId, Range, Revision, Store, StoreError,
    Txn, TxnOutcome,
};
use plan::{KeyRange, Plan};

/// The [`Store`] on etcd.
pub struct EtcdStore {
    config: EtcdConfig,
    client: Client,
    /// `Some` until dropped; shut down in the background so dropping the store inside another
    /// runtime does not panic.
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.config.endpoints)
            .finish()
    }
}

fn read_pem(field: &str, path: &std::path::Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| StoreError::Config {
        field: field.into(),
        value: path.display().to_string(),
        reason: format!("cannot be read: {e}"),
    })
}

impl EtcdStore {
    /// Connects to the cluster. Without credentials nothing is sent yet (the client connects
    /// on first use, so a cluster that is down makes the first operation fail, not this);
    /// with credentials the client authenticates here.
    ///
    /// Errors: [`StoreError::Config`] for unreadable TLS files; [`StoreError::Etcd`] or
    /// [`StoreError::Timeout`] when authentication fails or gets no answer in time.
    pub fn connect(config: EtcdConfig) -> Result<EtcdStore, StoreError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.timeout.min(Duration::from_secs(2)))
            // etcd answers pings more often than every 5 s with GOAWAY (too_many_pings).
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(3));
        if let Some(tls) = &config.tls {
            let mut t = TlsOptions::new()
                .ca_certificate(Certificate::from_pem(read_pem("store-ca", &tls.ca)?));
            if let Some((cert, key)) = &tls.identity {
                t = t.identity(Identity::from_pem(
                    read_pem("store-cert", cert)?,
                    read_pem("store-key", key)?,
                ));
            }
            options = options.with_tls(t);
        }
        if let Some((user, password)) = &config.user {
            options = options
                .with_user(user.clone(), password.clone())
                .with_auto_token_refresh(true);
        }
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder
            .worker_threads(1)
            .thread_name("vxmesh-etcd")
            .enable_all();
        if let Some(ns) = &config.netns {
            // Every thread of the client's runtime (workers and blocking threads) enters the
            // namespace when it starts, so all its sockets are made there.
            let fd =
                std::fs::File::open(crate::netns::path(ns)).map_err(|e| StoreError::Config {
                    field: "store".into(),
                    value: config.url(),
                    reason: format!("network namespace {ns}: {e}"),
                })?;
            let fd = std::sync::Arc::new(fd);
            builder.on_thread_start(move || {
                if let Err(e) = nix::sched::setns(&*fd, nix::sched::CloneFlags::CLONE_NEWNET) {
                    tracing::error!("etcd client thread cannot enter its namespace: {e}");
                }
            });
        }
        let rt = builder.build().map_err(|e| StoreError::Etcd {
            endpoints: config.url(),
            op: "connect",
            message: format!("cannot start the client's runtime: {e}"),
            unavailable: false,
        })?;
        let urls = config.client_urls();
        let ep = config.url();
        let timeout = config.timeout;
        let client = run_on(&rt, &config.url(), "connect", timeout, async move {
            Client::connect(urls, Some(options))
                .await
                .map_err(|e| etcd_err(&ep, "connect", e))
        })?;
        Ok(EtcdStore {
            config,
            client,
            rt: Some(rt),
        })
    }

    /// The configuration this store was opened with.
    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    /// Runs one operation on the store's runtime, within `limit`.
    fn run<T, F>(&self, op: &'static str, limit: Duration, fut: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let rt = self.rt.as_ref().expect("runtime present until drop");
        run_on(rt, &self.config.url(), op, limit, fut)
    }

    /// The client, the endpoints (for errors) and the deadline of an operation starting now.
    fn parts(&self) -> (Client, String, Instant) {
        (
            self.client.clone(),
            self.config.url(),
            Instant::now() + self.config.timeout,
        )
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn run_on<T, F>(
    rt: &tokio::runtime::Runtime,
    endpoints: &str,
    op: &'static str,
    limit: Duration,
    fut: F,
) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, StoreError>> + Send + 'static,
{
    let timeout = || StoreError::Timeout {
        endpoints: endpoints.to_string(),
        op,
        after: limit,
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let r = tokio::time::timeout(limit, fut).await;
        let _ = tx.send(r);
    });
    match rx.recv() {
        Ok(Ok(r)) => r,
        Ok(Err(_)) | Err(_) => Err(timeout()),
    }
}

/// Whether an etcd error means "could not reach a working cluster" (try again later).
fn is_unavailable(e: &etcd_client::Error) -> bool {
    use tonic::Code;
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
        ),
        _ => false,
    }
}

/// Whether the request certainly never reached a member (so even a write may be sent again).
fn never_sent(e: &etcd_client::Error) -> bool {
    let text = message_of(e).to_ascii_lowercase();
    is_unavailable(e)
        && (text.contains("connection refused")
            || text.contains("error trying to connect")
            || text.contains("tcp connect error"))
}

fn etcd_err(endpoints: &str, op: &'static str, e: etcd_client::Error) -> StoreError {
    StoreError::Etcd {
        endpoints: endpoints.to_string(),
        op,
        message: message_of(&e),
        unavailable: is_unavailable(&e),
    }
}

fn message_of(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
        other => other.to_string(),
    }
}

/// Calls `f` until it succeeds, fails for good, or `deadline` would pass during the backoff.
/// `idempotent`: retry any unavailability; otherwise only requests that were never sent.
async fn retrying<T, F, Fut>(
    deadline: Instant,
    idempotent: bool,
    mut f: F,
) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let mut backoff = Duration::from_millis(25);
    loop {
        match f().await {
            Err(e)
                if (if idempotent {
                    is_unavailable(&e)
                } else {
                    never_sent(&e)
                }) && Instant::now() + backoff < deadline =>
            {
                tracing::debug!("etcd: {e}; trying again in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(400));
            }
            r => return r,
        }
    }
}

fn key_string(endpoints: &str, raw: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(raw.to_vec()).map_err(|_| StoreError::Corrupt {
        path: endpoints.to_string(),
        reason: "a key is not UTF-8".into(),
    })
}

fn kv_of(endpoints: &str, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    Ok(KeyValue {
        key: key_string(endpoints, kv.key())?,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision() as Revision,
        mod_revision: kv.mod_revision() as Revision,
        version: kv.version() as u64,
        lease: (kv.lease() != 0).then_some(kv.lease()),
    })
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> Revision {
    h.map(|h| h.revision()).unwrap_or(0).max(0) as Revision
}

/// The key and range options that select every key under `prefix`.
fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    match prefix_end(prefix) {
        Some(end) if !prefix.is_empty() => (prefix.as_bytes().to_vec(), end),
        // Every key: etcd's "\0" .. "\0" (from the smallest key to the end).
        _ => (vec![0], vec![0]),
    }
}

fn compare(c: &Compare) -> EtcdCompare {
    match c {
        Compare::Exists(k) => EtcdCompare::version(k.as_bytes(), CompareOp::Greater, 0),
        Compare::Absent(k) => EtcdCompare::version(k.as_bytes(), CompareOp::Equal, 0),
        Compare::ModRevision(k, rev) => {
            EtcdCompare::mod_revision(k.as_bytes(), CompareOp::Equal, *rev as i64)
        }
    }
}

fn delete_op(r: &KeyRange) -> TxnOp {
    if r.is_single() {
        return TxnOp::delete(r.start.clone(), None);
    }
    let end = r.end.clone().unwrap_or_else(|| vec![0]);
    let start = if r.start.is_empty() {
        vec![0]
    } else {
        r.start.clone()
    };
    TxnOp::delete(start, Some(DeleteOptions::new().with_range(end)))
}

impl Store for EtcdStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let (c, ep, deadline) = self.parts();
        let key = key.to_string();
        self.run("get", self.config.timeout, async move {
            let r = retrying(deadline, true, || {
                let mut kv = c.kv_client();
                let key = key.clone();
                async move { kv.get(key, None).await }
            })
            .await
            .map_err(|e| etcd_err(&ep, "get", e))?;
            r.kvs().first().map(|kv| kv_of(&ep, kv)).transpose()
        })
    }

    fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        let (c, ep, deadline) = self.parts();
        let (key, end) = prefix_range(prefix);
        self.run("range", self.config.timeout, async move {
            let r = retrying(deadline, true, || {
                let mut kv = c.kv_client();
                let (key, end) = (key.clone(), end.clone());
                async move { kv.get(key, Some(GetOptions::new().with_range(end))).await }
            })
            .await
            .map_err(|e| etcd_err(&ep, "range", e))?;
            let kvs = r
                .kvs()
                .iter()
                .map(|kv| kv_of(&ep, kv))
                .collect::<Result<_, _>>()?;
            Ok(Range {
                kvs,
                revision: header_revision(r.header()),
            })
        })
    }

    fn txn(&self, txn: &Txn) -> Result<TxnOutcome, StoreError> {
        let (c, ep, deadline) = self.parts();
        let plan = Plan::of(&txn.ops);
        let leases: Vec<LeaseId> = plan.puts.values().filter_map(|(_, l)| *l).collect();
        let mut ops: Vec<TxnOp> = plan.deletes.iter().map(delete_op).collect();
        ops.extend(plan.puts.into_iter().map(|(k, (v, lease))| {
            TxnOp::put(k, v, lease.map(|l| PutOptions::new().with_lease(l)))
        }));
        let compares: Vec<EtcdCompare> = txn.compares.iter().map(compare).collect();
        self.run("txn", self.config.timeout, async move {
            let r = retrying(deadline, false, || {
                let mut kv = c.kv_client();
                let t = EtcdTxn::new().when(compares.clone()).and_then(ops.clone());
                async move { kv.txn(t).await }
            })
            .await;
            match r {
                Ok(r) => Ok(TxnOutcome {
                    succeeded: r.succeeded(),
                    revision: header_revision(r.header()),
                }),
                Err(e) if message_of(&e).contains("requested lease not found") => Err(
                    StoreError::LeaseNotFound(leases.first().copied().unwrap_or_default()),
                ),
                Err(e) => Err(etcd_err(&ep, "txn", e)),
            }
        })
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        let (c, ep, deadline) = self.parts();
        self.run("revision", self.config.timeout, async move {
            let r = retrying(deadline, true, || {
                let mut kv = c.kv_client();
                async move {
                    kv.get(vec![0], Some(GetOptions::new().with_count_only()))
                        .await
                }
            })
            .await
            .map_err(|e| etcd_err(&ep, "revision", e))?;
            Ok(header_revision(r.header()))
        })
    }

    fn watch(
        &self,
        prefix: &str,
        after: Revision,
        timeout: Duration,
    ) -> Result<Vec<Event>, StoreError> {
        let (c, ep, deadline) = self.parts();
        let prefix = prefix.as_bytes().to_vec();
        let op_timeout = self.config.timeout;
        self.run("watch", op_timeout + timeout, async move {
            let start = after as i64 + 1;
            // Every key, filtered here: see the module's notes on catching up.
            let mut stream = retrying(deadline, true, || {
                let mut w = c.watch_client();
                let opts = WatchOptions::new()
                    .with_all_keys()
                    .with_start_revision(start);
                async move { w.watch(vec![0], Some(opts)).await }
            })
            .await
            .map_err(|e| etcd_err(&ep, "watch", e))?;
            let wait_until = tokio::time::Instant::now() + timeout;
            let catch_up_until = tokio::time::Instant::now() + op_timeout;
            // The store's revision when the watch was made; history up to it is replayed
            // first, and every revision has at least one event.
            let mut now: Option<Revision> = None;
            let mut seen: Revision = after;
            let mut out = Vec::new();
            loop {
                let caught_up = now.is_some_and(|n| seen >= n);
                if caught_up && !out.is_empty() {
                    return Ok(out);
                }
                let until = if caught_up {
                    wait_until
                } else {
                    catch_up_until
                };
                let msg = match tokio::time::timeout_at(until, stream.message()).await {
                    Err(_) if caught_up => return Ok(out),
                    Err(_) => {
                        return Err(StoreError::Timeout {
                            endpoints: ep,
                            op: "watch",
                            after: op_timeout,
                        })
                    }
                    Ok(m) => m.map_err(|e| etcd_err(&ep, "watch", e))?,
                };
                let Some(resp) = msg else {
                    return Err(StoreError::Etcd {
                        endpoints: ep,
                        op: "watch",
                        message: "the watch stream closed".into(),
                        unavailable: true,
                    });
                };
                if resp.compact_revision() > 0 {
                    return Err(StoreError::Compacted {
                        requested: after,
                        compacted: (resp.compact_revision() as Revision).saturating_sub(1),
                    });
                }
                if resp.canceled() {
                    return Err(StoreError::Etcd {
                        endpoints: ep,
                        op: "watch",
                        message: format!("canceled by etcd: {}", resp.cancel_reason()),
                        unavailable: true,
                    });
                }
                if resp.created() {
                    now = Some(header_revision(resp.header()));
                }
                for e in resp.events() {
                    let Some(kv) = e.kv() else { continue };
                    seen = seen.max(kv.mod_revision() as Revision);
                    if !kv.key().starts_with(&prefix) {
                        continue;
                    }
                    let put = matches!(e.event_type(), EventType::Put);
                    out.push(Event {
                        kind: if put {
                            EventKind::Put
                        } else {
                            EventKind::Delete
                        },
                        key: key_string(&ep, kv.key())?,
                        value: put.then(|| kv.value().to_vec()),
                        revision: kv.mod_revision() as Revision,
                    });
                }
                if caught_up && !out.is_empty() {
                    return Ok(out);
                }
            }
        })
    }

    fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let (c, ep, deadline) = self.parts();
        let secs = ttl.as_secs() as i64 + i64::from(ttl.subsec_nanos() > 0);
        self.run("lease grant", self.config.timeout, async move {
            let r = retrying(deadline, false, || {
                let mut l = c.lease_client();
                async move { l.grant(secs.max(1), None).await }
            })
            .await
            .map_err(|e| etcd_err(&ep, "lease grant", e))?;
            Ok(r.id())
        })
    }

    fn lease_keepalive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let (c, ep, deadline) = self.parts();
        self.run("lease keepalive", self.config.timeout, async move {
            let r = retrying(deadline, true, || {
                let mut l = c.lease_client();
                async move { l.keep_alive(lease).await }
            })
            .await;
            match r {
                Ok(_) => Ok(()),
                Err(etcd_client::Error::LeaseKeepAliveError(m)) if m.contains("not found") => {
                    Err(StoreError::LeaseNotFound(lease))
                }
                Err(e) => Err(etcd_err(&ep, "lease keepalive", e)),
            }
        })
    }

    fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        let (c, ep, deadline) = self.parts();
        self.run("lease revoke", self.config.timeout, async move {
            let r = retrying(deadline, true, || {
                let mut l = c.lease_client();
                async move { l.revoke(lease).await }
            })
            .await;
            match r {
                Ok(_) => Ok(()),
                Err(e) if message_of(&e).contains("requested lease not found") => Ok(()),
                Err(e) => Err(etcd_err(&ep, "lease revoke", e)),
            }
        })
    }

    fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let (c, ep, deadline) = self.parts();
        self.run("compact", self.config.timeout, async move {
            let r = retrying(deadline, true, || {
                let mut kv = c.kv_client();
                async move { kv.compact(revision as i64, None).await }
            })
            .await;
            match r {
                Ok(_) => Ok(()),
                Err(e) if message_of(&e).contains("required revision has been compacted") => Ok(()),
                Err(e) => Err(etcd_err(&ep, "compact", e)),
            }
        })
    }
}
