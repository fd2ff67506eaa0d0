//! Service discovery by name: each agent answers DNS for the containers on its node, on every
//! network's gateway address, port 53, UDP and TCP (hickory-server).
//!
//! - [`names`]: what a name is (a service's VIP, its healthy backends, NXDOMAIN, or not
//!   vxmesh's), from ingress-lb's service snapshot;
//! - [`handler`]: answers one listener's queries from the current view, forwarding the rest;
//! - [`listeners`]: one server per network gateway, following the store;
//! - [`upstream`]: the forwarder to the host's resolv.conf nameservers.
//!
//! The view follows the store: a task reads the snapshot again on every store change (the
//! store's watch) and at least every [`RESYNC`], and every query reads the view of that moment,
//! so answers follow the store within about a second and no cache outlives a change (the fault
//! of moby/moby#53141). While the store cannot be read, queries are answered from the last
//! view read (as the kernel datapath keeps forwarding with the last maps it was given), and the
//! first read that succeeds replaces it.
//!
//! The server runs on a thread of its own with its own runtime, so a long reconcile pass never
//! delays an answer. Its sockets are made in the network namespace of the thread that calls
//! [`DnsServer::start`] (the agent's: the host's).

pub mod handler;
pub mod listeners;
pub mod names;
pub mod upstream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ingress_lb::catalog::ServiceSnapshot;
use overlay_core::keys;
use overlay_core::store::{Store, StoreError};

use handler::Shared;
use listeners::Listeners;
use names::NameView;
use upstream::Upstream;

/// The DNS port (RFC 1035 §4.2).
pub const DNS_PORT: u16 = 53;
/// The longest the view goes without a fresh read of the store, even without a change seen
/// (keys of an expired lease vanish from reads without an event until someone writes).
pub const RESYNC: Duration = Duration::from_secs(1);
/// How long to wait before reading again after a failed read.
const RETRY: Duration = Duration::from_millis(250);

/// How the agent answers DNS.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// The port on the gateways: [`DNS_PORT`].
    pub port: u16,
    /// The host's resolv.conf, whose nameservers get the names that are not vxmesh's.
    pub resolv_conf: PathBuf,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            port: DNS_PORT,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

/// Errors starting the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The OS refused a thread or the runtime's I/O driver (resources exhausted).
    #[error("cannot start the DNS server's thread or runtime: {0}")]
    Start(#[from] std::io::Error),
}

/// The running DNS server of a node. Dropping it stops every listener and waits for its
/// thread (at most about a second).
pub struct DnsServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsServer {
    /// Starts answering DNS on the gateways of the networks in `store`, as they appear on this
    /// host. Errors: the thread or its runtime could not be made.
    pub fn start(store: Arc<dyn Store>, config: DnsConfig) -> Result<DnsServer, DnsError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("vxmesh-dns".into())
            .spawn({
                let span = tracing::Span::current();
                move || {
                    let _span = span.enter();
                    rt.block_on(serve(store, config, stopped));
                    // A store read may still be blocked (a locked database): do not wait for it.
                    rt.shutdown_timeout(Duration::from_secs(1));
                }
            })?;
        Ok(DnsServer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads the store, answers from what it read, and reads again on every change.
async fn serve(
    store: Arc<dyn Store>,
    config: DnsConfig,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let shared = Arc::new(Shared::new(
        NameView::default(),
        Upstream {
            resolv_conf: config.resolv_conf.clone(),
            port: DNS_PORT,
        },
    ));
    let mut listeners = Listeners::new(config.port);
    let mut failing = false;
    loop {
        let read = {
            let s = store.clone();
            tokio::task::spawn_blocking(move || ServiceSnapshot::read(s.as_ref()))
        };
        let revision = tokio::select! {
            r = read => match r {
                Ok(Ok(snap)) => {
                    if failing {
                        tracing::info!(revision = snap.revision, "DNS: reading the store again");
                        failing = false;
                    }
                    let view = NameView::build(&snap);
                    let gateways = view.gateways().clone();
                    shared.set_view(view);
                    listeners.sync(&gateways, &shared);
                    Some(snap.revision)
                }
                Ok(Err(e)) => {
                    if !failing {
                        tracing::warn!("DNS: cannot read the store (answering from the last view): {e}");
                        failing = true;
                    }
                    None
                }
                Err(e) => {
                    tracing::error!("DNS: the store read failed: {e}");
                    None
                }
            },
            _ = &mut stopped => break,
        };
        let Some(after) = revision else {
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => continue,
                _ = &mut stopped => break,
            }
        };
        let s = store.clone();
        let wait = tokio::task::spawn_blocking(move || s.watch(keys::ROOT, after, RESYNC));
        tokio::select! {
            r = wait => match r {
                Ok(Ok(_)) | Ok(Err(StoreError::Compacted { .. })) => {}
                Ok(Err(e)) => {
                    tracing::debug!("DNS: watching the store: {e}");
                    tokio::time::sleep(RETRY).await;
                }
                Err(e) => tracing::error!("DNS: the store watch failed: {e}"),
            },
            _ = &mut stopped => break,
        }
    }
    listeners.stop_all();
    tracing::info!("DNS stopped");
}
