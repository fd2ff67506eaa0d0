//! Typed watches: what changed in the store, as networks, nodes, endpoints, services,
//! backends and their health, instead of raw keys.
//!
//! A [`Watcher`] follows the store from a revision with the store's own watch
//! ([`Store::watch`] on the whole vxmesh prefix) and decodes each event by its key (the layout
//! of `overlay_core::keys` and `ingress_lb::keys`):
//!
//! | key | change |
//! |---|---|
//! | `/vxmesh/v1/networks/NAME` | [`Change::Network`] |
//! | `/vxmesh/v1/nodes/NAME` | [`Change::Node`] |
//! | `/vxmesh/v1/endpoints/NETWORK/ID` | [`Change::Endpoint`] |
//! | `/vxmesh/v1/services/NAME` | [`Change::Service`], then a [`Change::Backend`] per backend added, changed or removed |
//! | `/vxmesh/v1/health/SERVICE/ENDPOINT` | [`Change::Health`] |
//! | `/vxmesh/v1/hosts/NODE` | [`Change::Host`] |
//! | `/vxmesh/v1/alive/NODE` | [`Change::Alive`] |
//!
//! Other keys (address and MAC claims, guards, ids, agents' leases) are bookkeeping and are
//! skipped. Changes come oldest first, in the order of the store's revisions. When the store
//! has compacted the history the watcher needs, it answers one [`Change::Resync`]: read the
//! state again ([`Catalog::snapshot`], [`crate::ServiceCatalog::snapshot`]) and carry on with the
//! same watcher, which goes on from that revision.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use vxmesh::watch::{Change, Op, Watcher};
//! use vxmesh::{Catalog, NetworkSpec, SqliteStore};
//!
//! # fn main() -> vxmesh::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let catalog = Catalog::new(std::sync::Arc::new(SqliteStore::open(&dir.path().join("s.db"))?));
//! let mut watcher = Watcher::from_now(&catalog)?;
//! catalog.create_network(&NetworkSpec {
//!     name: "front".into(),
//!     subnet: "10.20.0.0/24".into(),
//!     ..Default::default()
//! })?;
//! let changes = watcher.next(Duration::from_secs(5))?;
//! assert!(matches!(
//!     &changes[..],
//!     [Change::Network { name, op: Op::Put(net) }] if name == "front" && net.vni > 0
//! ));
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ingress_lb::keys as lb_keys;
use overlay_core::keys;
use overlay_core::store::{Event, EventKind, Range, Revision, Store, StoreError};
use serde::de::DeserializeOwned;

use crate::services::{HealthRecord, HealthStatus, Service, ServiceBackend};
use crate::{Catalog, Endpoint, HostReport, Network, Node};

/// What happened to one object: its new value, or its removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<T> {
    /// Created or changed: the object's value now (a `Put` may repeat an unchanged value).
    Put(T),
    /// Removed.
    Deleted,
}

impl<T> Op<T> {
    /// The new value of a `Put`, `None` for `Deleted`.
    pub fn value(&self) -> Option<&T> {
        match self {
            Op::Put(v) => Some(v),
            Op::Deleted => None,
        }
    }
}

/// One change in the store, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A network was created, changed or removed.
    Network {
        /// The network's name.
        name: String,
        /// Its record.
        op: Op<Network>,
    },
    /// A node was added, changed (its WireGuard identity) or removed.
    Node {
        /// The node's name.
        name: String,
        /// Its record.
        op: Op<Node>,
    },
    /// An endpoint was added, changed or removed.
    Endpoint {
        /// The endpoint's network.
        network: String,
        /// The endpoint's id within the network.
        id: String,
        /// Its record.
        op: Op<Endpoint>,
    },
    /// A service was created, updated or removed. Followed by a [`Change::Backend`] for each
    /// of its backends that differs from what this watcher saw before.
    Service {
        /// The service's name.
        name: String,
        /// Its record (with every backend).
        op: Op<Service>,
    },
    /// A backend of a service was added, changed (weight, state) or removed, or went with its
    /// service. Derived from the service's record: the backends of a service this watcher has
    /// not seen before (see [`Watcher::new`]) are all reported as `Put`.
    Backend {
        /// The service's name.
        service: String,
        /// The backend's endpoint id (in the service's network).
        backend: String,
        /// The backend as configured.
        op: Op<ServiceBackend>,
    },
    /// The health of a backend, as its node's agent checked it, was written or removed (the
    /// backend, its service or its agent's lease went).
    Health {
        /// The service's name.
        service: String,
        /// The backend's endpoint id.
        backend: String,
        /// The health record.
        op: Op<HealthRecord>,
        /// `Some(true)` when the record says up, `Some(false)` down, `None` when it was
        /// removed (no known health: the backend counts as up again once it has none).
        healthy: Option<bool>,
    },
    /// What a node's agent published about its host (underlay MTU, addresses, the state of
    /// its attachments) changed.
    Host {
        /// The node's name.
        node: String,
        /// The host report.
        op: Op<HostReport>,
    },
    /// A node's agent became live (its lease was granted) or its lease ended. A lease that
    /// expires is seen when the store deletes its keys: at once with etcd, at the next write
    /// with the embedded store.
    Alive {
        /// The node's name.
        node: String,
        /// True when the agent's lease is now live.
        alive: bool,
    },
    /// A record under a known prefix that does not decode (written by another version, or by
    /// hand); the watch goes on.
    Invalid {
        /// The store key.
        key: String,
        /// Why it was not understood.
        reason: String,
    },
    /// The store no longer holds the history since the watcher's revision (it was
    /// compacted): changes were missed. Read the whole state again; the watcher goes on from
    /// `revision`.
    Resync {
        /// The revision the watcher now follows from.
        revision: Revision,
    },
}

/// Follows the store from a revision and hands out typed [`Change`]s.
///
/// The watcher remembers each service's last value it saw, to tell which backends changed.
/// Created with [`Watcher::from_now`] it reads them first, so only real changes are reported;
/// created with [`Watcher::new`] from an older revision it starts without them, and reports
/// every backend of a service as `Put` the first time it sees the service.
pub struct Watcher {
    store: Arc<dyn Store>,
    after: Revision,
    services: BTreeMap<String, Service>,
}

/// What one call of the store's watch brought.
enum Fetched {
    Events(Vec<Event>),
    /// The history was compacted: the services as they are now, and the revision read at.
    Compacted(Range),
}

impl Watcher {
    /// Watches the changes made after `after` (a revision from [`Store::revision`],
    /// [`crate::Snapshot::revision`], or 0 for the whole history the store still keeps).
    pub fn new(catalog: &Catalog, after: Revision) -> Watcher {
        Watcher {
            store: catalog.store().clone(),
            after,
            services: BTreeMap::new(),
        }
    }

    /// Watches the changes made from now on. Errors: the store cannot be read.
    pub fn from_now(catalog: &Catalog) -> Result<Watcher, crate::Error> {
        let mut w = Watcher::new(catalog, 0);
        w.reseed(w.store.range(lb_keys::SERVICES)?);
        Ok(w)
    }

    /// The revision the watcher has seen up to: the next call reports changes after it.
    pub fn revision(&self) -> Revision {
        self.after
    }

    /// Waits up to `timeout` for changes and returns them, oldest first; an empty list when
    /// none came in time. Blocks the calling thread (use [`Watcher::next_async`] on a tokio
    /// runtime).
    ///
    /// Errors: the store cannot be read ([`crate::Error::Store`]); the watcher stays where it
    /// was, so calling again retries.
    pub fn next(&mut self, timeout: Duration) -> Result<Vec<Change>, crate::Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let fetched = fetch(self.store.as_ref(), self.after, left)?;
            let changes = self.absorb(fetched);
            if !changes.is_empty() || Instant::now() >= deadline {
                return Ok(changes);
            }
        }
    }

    /// [`Watcher::next`] for async callers: the store's blocking watch runs on tokio's
    /// blocking pool, so the caller's runtime keeps running. Must be called inside a tokio
    /// runtime. A dropped future leaves that blocking call to end by itself (within
    /// `timeout`); nothing is lost, the next call starts from the same revision.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn run(catalog: vxmesh::Catalog) -> vxmesh::Result<()> {
    /// use std::time::Duration;
    /// let mut watcher = vxmesh::watch::Watcher::from_now(&catalog)?;
    /// loop {
    ///     for change in watcher.next_async(Duration::from_secs(30)).await? {
    ///         println!("{change:?}");
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn next_async(&mut self, timeout: Duration) -> Result<Vec<Change>, crate::Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (store, after) = (self.store.clone(), self.after);
            let fetched = tokio::task::spawn_blocking(move || fetch(store.as_ref(), after, left))
                .await
                .expect("the store watch task panicked")?;
            let changes = self.absorb(fetched);
            if !changes.is_empty() || Instant::now() >= deadline {
                return Ok(changes);
            }
        }
    }

    /// Decodes what the store brought and moves the watcher past it.
    fn absorb(&mut self, fetched: Fetched) -> Vec<Change> {
        match fetched {
            Fetched::Compacted(range) => {
                let revision = range.revision;
                self.reseed(range);
                vec![Change::Resync { revision }]
            }
            Fetched::Events(events) => {
                let mut out = Vec::new();
                for e in events {
                    self.after = self.after.max(e.revision);
                    self.decode(&e, &mut out);
                }
                out
            }
        }
    }

    /// Starts again from `range` (the services, read at `range.revision`).
    fn reseed(&mut self, range: Range) {
        self.after = range.revision;
        self.services = range
            .kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Service>(&kv.value).ok())
            .map(|s| (s.name.clone(), s))
            .collect();
    }

    fn decode(&mut self, e: &Event, out: &mut Vec<Change>) {
        let key = e.key.as_str();
        if let Some(name) = key.strip_prefix(keys::NETWORKS) {
            push(out, e, |op| Change::Network {
                name: name.into(),
                op,
            });
        } else if let Some(name) = key.strip_prefix(keys::NODES) {
            push(out, e, |op| Change::Node {
                name: name.into(),
                op,
            });
        } else if let Some(rest) = key.strip_prefix(keys::ENDPOINTS) {
            if let Some((network, id)) = rest.split_once('/') {
                push(out, e, |op| Change::Endpoint {
                    network: network.into(),
                    id: id.into(),
                    op,
                });
            }
        } else if let Some(name) = key.strip_prefix(lb_keys::SERVICES) {
            self.service(name, e, out);
        } else if let Some(rest) = key.strip_prefix(lb_keys::HEALTH) {
            if let Some((service, backend)) = rest.split_once('/') {
                push(out, e, |op: Op<HealthRecord>| Change::Health {
                    service: service.into(),
                    backend: backend.into(),
                    healthy: op.value().map(|r| r.status == HealthStatus::Up),
                    op,
                });
            }
        } else if let Some(node) = key.strip_prefix(keys::HOSTS) {
            push(out, e, |op| Change::Host {
                node: node.into(),
                op,
            });
        } else if let Some(node) = key.strip_prefix(keys::ALIVE) {
            out.push(Change::Alive {
                node: node.into(),
                alive: e.kind == EventKind::Put,
            });
        }
    }

    /// A service's record changed: the service, then its backends that differ from the last
    /// value seen.
    fn service(&mut self, name: &str, e: &Event, out: &mut Vec<Change>) {
        let op = match decoded::<Service>(e) {
            Ok(op) => op,
            Err(reason) => {
                out.push(invalid(e, reason));
                return;
            }
        };
        let before = match &op {
            Op::Put(s) => self.services.insert(name.to_string(), s.clone()),
            Op::Deleted => self.services.remove(name),
        };
        let old = before.map(|s| s.backends).unwrap_or_default();
        let new = op.value().map(|s| s.backends.clone()).unwrap_or_default();
        out.push(Change::Service {
            name: name.into(),
            op,
        });
        let backend = |b: &str, op| Change::Backend {
            service: name.into(),
            backend: b.into(),
            op,
        };
        for b in &new {
            if old.iter().all(|o| o != b) {
                out.push(backend(&b.endpoint, Op::Put(b.clone())));
            }
        }
        for o in &old {
            if new.iter().all(|b| b.endpoint != o.endpoint) {
                out.push(backend(&o.endpoint, Op::Deleted));
            }
        }
    }
}

/// One call of the store's watch on the vxmesh prefix; after a compaction, the services as
/// they are now (for the backends' diff).
fn fetch(store: &dyn Store, after: Revision, timeout: Duration) -> Result<Fetched, StoreError> {
    match store.watch(keys::ROOT, after, timeout) {
        Ok(events) => Ok(Fetched::Events(events)),
        Err(StoreError::Compacted { .. }) => {
            Ok(Fetched::Compacted(store.range(lb_keys::SERVICES)?))
        }
        Err(e) => Err(e),
    }
}

/// The event's value decoded as `T` for a put; the decoding error's text otherwise.
fn decoded<T: DeserializeOwned>(e: &Event) -> Result<Op<T>, String> {
    match (&e.kind, &e.value) {
        (EventKind::Delete, _) => Ok(Op::Deleted),
        (EventKind::Put, Some(v)) => serde_json::from_slice(v)
            .map(Op::Put)
            .map_err(|err| err.to_string()),
        (EventKind::Put, None) => Err("a put without a value".into()),
    }
}

fn invalid(e: &Event, reason: String) -> Change {
    Change::Invalid {
        key: e.key.clone(),
        reason,
    }
}

/// Pushes `make(op)` for the event decoded as `T`, or [`Change::Invalid`].
fn push<T: DeserializeOwned>(out: &mut Vec<Change>, e: &Event, make: impl FnOnce(Op<T>) -> Change) {
    out.push(match decoded(e) {
        Ok(op) => make(op),
        Err(reason) => invalid(e, reason),
    });
}
