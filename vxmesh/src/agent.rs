//! The per-host agent: watches the store and reconciles this host's kernel to it.

use std::path::PathBuf;
use std::time::Duration;

use overlay_core::catalog::Catalog;
use overlay_core::dataplane::Dataplane;
use overlay_core::keys;
use overlay_core::reconcile::{Desired, Reconciler, WireguardHandle};
use overlay_core::store::StoreError;
use overlay_core::wireguard::{self, Datapath, PrivateKey, WireguardDevice};

/// The node's WireGuard interface, for encrypted networks.
#[derive(Debug, Clone)]
pub struct WireguardConfig {
    /// Interface name (`wg-vx`).
    pub ifname: String,
    /// UDP port on the underlay.
    pub port: u16,
    /// Worker threads of the userspace implementation (per direction for the batched one).
    pub threads: usize,
    /// Which userspace datapath runs the interface.
    pub datapath: Datapath,
}

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: String,
    /// A full pass runs at least this often even without store changes, so that anything
    /// changed by hand in the kernel is put back.
    pub resync: Duration,
    /// Where the agent keeps this host's private key (mode 0700 directory, 0600 file).
    pub state_dir: PathBuf,
    /// `None`: no WireGuard interface (encrypted networks cannot be built on this node).
    pub wireguard: Option<WireguardConfig>,
    /// Services: the cgroup of the socket programs, the pin root, the veths' namespace.
    pub services: crate::service_plane::ServiceConfig,
    /// DNS for service names on every network's gateway; `None`: no DNS server.
    pub dns: Option<crate::dns::DnsConfig>,
    /// TTL of the agent's store lease: this long after the agent died, every other host
    /// removes this node's entries, WireGuard peer and service backends.
    pub lease_ttl: Duration,
    /// The datapath between containers and VXLAN devices (`--datapath`); the eBPF fast path
    /// pins under the services' pin root and attaches in their namespace.
    pub datapath: crate::fast_plane::DatapathMode,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Catalog(#[from] overlay_core::CatalogError),
    #[error(transparent)]
    Dataplane(#[from] overlay_core::dataplane::DataplaneError),
    #[error("cannot start the agent's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("WireGuard: {0}")]
    Wireguard(String),
    #[error("services: {0}")]
    Services(String),
}

/// Runs until SIGINT or SIGTERM. The kernel state is left in place on exit (the WireGuard
/// interface included: it is persistent), so a restarted agent finds everything as it should
/// be and changes nothing.
pub fn run(catalog: Catalog, config: AgentConfig) -> Result<(), AgentError> {
    // Fail early and clearly on a node the store does not know; wait for a store that is not
    // reachable yet.
    let mut outages = crate::store_outage::Outages::default();
    loop {
        match catalog.node(&config.node) {
            Ok(_) => break,
            Err(overlay_core::CatalogError::Store(e)) if e.is_unavailable() => {
                std::thread::sleep(outages.failed("reading this node", &e));
            }
            Err(e) => return Err(e.into()),
        }
    }
    outages.ok();
    // The passes run on this thread (block_on); the health reports and the checks are tasks
    // on two workers of their own, so a long pass (loading the datapath took 14 s on a loaded
    // machine) cannot hold them up. Every thread is made from this one and starts in its
    // network namespace.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_loop(catalog, config))
}

/// The running WireGuard interface and the key it uses.
struct Wireguard {
    device: WireguardDevice,
    key: PrivateKey,
    config: WireguardConfig,
}

impl Wireguard {
    /// Starts the node's WireGuard interface: attaches to the persistent one a previous agent
    /// left (same index, addresses and routes; established connections carry on after a new
    /// handshake), or creates it.
    async fn start(
        config: &AgentConfig,
        wg: &WireguardConfig,
        reconciler: &Reconciler,
    ) -> Result<Wireguard, AgentError> {
        let werr = |e: &dyn std::fmt::Display| AgentError::Wireguard(e.to_string());
        let (key, made) = PrivateKey::load_or_generate(&config.state_dir).map_err(|e| werr(&e))?;
        tracing::info!(
            public_key = %key.public(),
            file = %PrivateKey::path(&config.state_dir).display(),
            "{} WireGuard key",
            if made { "generated a new" } else { "loaded the" }
        );
        if wireguard::kernel_module_present() {
            tracing::warn!(
                "the WireGuard kernel module is present, but this agent drives only the \
                 userspace implementation"
            );
        }
        let device = match WireguardDevice::start(&wg.ifname, wg.threads, wg.datapath) {
            Ok(d) => d,
            // A TUN/TAP the datapath cannot attach to (the other datapath's, left by an agent
            // run with other flags): replaced by a new one.
            // (TUNSETIFF's EINVAL, reported as `InvalidInput`.)
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                let mut changes = Vec::new();
                let removed = reconciler
                    .remove_wireguard_device(&wg.ifname, &mut changes)
                    .await
                    .map_err(|e| werr(&e))?;
                if !removed {
                    return Err(werr(&e));
                }
                tracing::warn!(
                    interface = %wg.ifname,
                    error = %e,
                    "replaced a WireGuard interface this datapath cannot attach to"
                );
                WireguardDevice::start(&wg.ifname, wg.threads, wg.datapath).map_err(|e| werr(&e))?
            }
            Err(e) => return Err(werr(&e)),
        };
        let uapi = device.uapi();
        uapi.set_private_key(&key).map_err(|e| werr(&e))?;
        uapi.set_listen_port(wg.port).map_err(|e| werr(&e))?;
        tracing::info!(
            interface = %wg.ifname,
            port = wg.port,
            implementation = device.implementation(),
            "WireGuard interface up ({})",
            if device.reattached() {
                "re-attached to the interface a previous agent left"
            } else {
                "created"
            }
        );
        Ok(Wireguard {
            device,
            key,
            config: wg.clone(),
        })
    }

    /// Publishes this node's public key and port unless the store already has them; acts on a
    /// key rotation request. Returns true if it wrote to the store.
    fn sync_identity(
        &mut self,
        catalog: &Catalog,
        node: &overlay_core::Node,
        state_dir: &std::path::Path,
    ) -> Result<bool, AgentError> {
        let werr = |e: &dyn std::fmt::Display| AgentError::Wireguard(e.to_string());
        let published = node.wireguard.as_ref();
        if published.is_some_and(|w| w.rotate_requested) {
            let new = PrivateKey::generate();
            new.save(state_dir).map_err(|e| werr(&e))?;
            self.device
                .uapi()
                .set_private_key(&new)
                .map_err(|e| werr(&e))?;
            tracing::info!(old = %self.key.public(), new = %new.public(), "rotated the WireGuard key");
            self.key = new;
        }
        let public = self.key.public().to_base64();
        let current = published.is_some_and(|w| {
            w.public_key == public
                && w.port == self.config.port
                && w.tunnel_ip.is_some()
                && !w.rotate_requested
                && w.implementation.as_deref() == Some(self.device.implementation())
        });
        if current {
            return Ok(false);
        }
        let n = catalog.set_wireguard(
            &node.name,
            &public,
            self.config.port,
            self.device.implementation(),
        )?;
        tracing::info!(
            public_key = %public,
            port = self.config.port,
            tunnel_ip = ?n.wireguard.as_ref().and_then(|w| w.tunnel_ip),
            "published this node's WireGuard identity"
        );
        Ok(true)
    }
}

async fn run_loop(catalog: Catalog, config: AgentConfig) -> Result<(), AgentError> {
    // The WireGuard interface is started when the store first holds an encrypted network, so
    // hosts with plain networks only run no TUN device and no crypto threads.
    let mut wg: Option<Wireguard> = None;
    // Whether a WireGuard interface left by a previous agent was looked for (first pass).
    let mut leftover_checked = false;
    let mut reconciler = Reconciler::new(Dataplane::connect()?);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tracing::info!(node = %config.node, "agent started");
    let heartbeat =
        crate::heartbeat::Heartbeat::start(catalog.clone(), config.node.clone(), config.lease_ttl);
    // Stops (its listeners closed) when dropped, as the agent returns.
    let _dns = config.dns.clone().and_then(|c| {
        crate::dns::DnsServer::start(catalog.store().clone(), c)
            .map_err(|e| tracing::error!("{e}"))
            .ok()
    });
    let mut services = crate::service_plane::ServicePlane::start(
        config.node.clone(),
        config.services.clone(),
        ingress_lb::catalog::ServiceCatalog::of(&catalog),
        heartbeat.lease(),
    )
    .map_err(AgentError::Services)?;
    let mut fast = crate::fast_plane::FastPlane::new(
        config.node.clone(),
        crate::fast_plane::FastConfig {
            mode: config.datapath,
            pin_root: config.services.pin_root.clone(),
            netns: config.services.netns.clone(),
        },
    );
    tracing::info!(datapath = %config.datapath, "datapath");
    let mut passes: u64 = 0;
    let mut seen = crate::agent_log::Seen::default();
    let mut outages = crate::store_outage::Outages::default();
    loop {
        let snapshot = {
            let c = catalog.clone();
            tokio::task::spawn_blocking(move || c.snapshot())
                .await
                .expect("snapshot task panicked")
        };
        let snapshot = match snapshot {
            Ok(s) => {
                outages.ok();
                s
            }
            // Fail static: the kernel keeps the last state programmed; try again later.
            Err(overlay_core::CatalogError::Store(e)) => {
                let wait = outages.failed("reading the store", &e);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = tokio::signal::ctrl_c() => break,
                    _ = term.recv() => break,
                }
            }
            Err(e) => return Err(e.into()),
        };
        for p in &snapshot.problems {
            tracing::warn!(problem = %p, "skipping a bad record in the store");
        }
        // The interface is persistent: it is deleted here, explicitly, when this node no longer
        // needs it (no encrypted network in the store, or the node removed), and one left by a
        // previous agent that is no longer needed is deleted at the first pass.
        if let Some(c) = &config.wireguard {
            let needed = snapshot.nodes.contains_key(&config.node)
                && snapshot.networks.values().any(|n| n.encrypted);
            if needed && wg.is_none() {
                let w = Wireguard::start(&config, c, &reconciler).await?;
                reconciler = reconciler.with_wireguard(WireguardHandle {
                    ifname: w.device.ifname().to_string(),
                    uapi: w.device.uapi(),
                });
                wg = Some(w);
            } else if !needed && (wg.is_some() || !leftover_checked) {
                // Stops the workers and closes the queues first.
                wg = None;
                reconciler = reconciler.without_wireguard();
                let mut changes = Vec::new();
                match reconciler
                    .remove_wireguard_device(&c.ifname, &mut changes)
                    .await
                {
                    Ok(_) => {
                        for ch in &changes {
                            tracing::info!(revision = snapshot.revision, "{ch}");
                        }
                    }
                    Err(e) => tracing::error!("{e}"),
                }
            }
            leftover_checked = true;
        }
        if let (Some(w), Some(me)) = (wg.as_mut(), snapshot.nodes.get(&config.node)) {
            match w.sync_identity(&catalog, me, &config.state_dir) {
                // The store changed: reconcile from a fresh snapshot.
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::error!("{e}"),
            }
        }
        // This host as it is now (underlay MTU, own addresses): used at once for this pass,
        // and published below with the attachments' states when anything differs.
        let mut snapshot = snapshot;
        let published = snapshot.hosts.get(&config.node).cloned();
        let live = match snapshot.nodes.get(&config.node) {
            Some(me) => match reconciler.host_report(me).await {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::debug!("cannot read this host's MTU and addresses: {e}");
                    None
                }
            },
            None => None,
        };
        if let Some(r) = &live {
            snapshot.hosts.insert(config.node.clone(), r.clone());
        }
        let desired = Desired::compute(&snapshot, &config.node);
        if desired.node.is_none() {
            tracing::warn!(node = %config.node, "this node is not in the store: removing everything vxmesh made here");
        }
        seen.refused(&desired.refused);
        let claimed = || {
            catalog.endpoints(None).ok().map(|eps| {
                eps.into_iter()
                    .filter(|e| e.node == config.node)
                    .filter_map(|e| e.host_ifname)
                    .collect()
            })
        };
        let report = reconciler.apply(&desired, &claimed).await;
        passes += 1;
        for c in &report.changes {
            tracing::info!(revision = snapshot.revision, "{c}");
        }
        for e in &report.errors {
            tracing::error!(revision = snapshot.revision, "{e}");
        }
        seen.endpoints(&report.endpoints);
        // Services, on the networks this host builds.
        let carried = desired.networks.keys().cloned().collect();
        let lb = services.pass(&carried).await;
        for c in &lb.changes {
            tracing::info!(revision = snapshot.revision, "{c}");
        }
        for e in &lb.errors {
            tracing::error!(revision = snapshot.revision, "{e}");
        }
        // The fast path (or, in bridge mode, its removal), once the devices are built.
        let fr = fast.pass(&desired, services.nat_veths());
        for c in &fr.changes {
            tracing::info!(revision = snapshot.revision, "{c}");
        }
        for e in &fr.errors {
            tracing::error!(revision = snapshot.revision, "{e}");
        }
        if let Some(mut r) = live {
            r.endpoints = report.endpoints;
            r.store_outage = outages.last.clone();
            if published.as_ref() != Some(&r) {
                match catalog.publish_host_report(&config.node, &r) {
                    Ok(_) => tracing::debug!(
                        underlay_mtu = r.underlay_mtu,
                        addresses = r.addresses.len(),
                        endpoints = r.endpoints.len(),
                        "published this host's report"
                    ),
                    Err(e) => tracing::error!("publishing this host's report: {e}"),
                }
            }
        }
        tracing::debug!(
            pass = passes,
            revision = snapshot.revision,
            changes = report.changes.len() + lb.changes.len() + fr.changes.len(),
            errors = report.errors.len() + lb.errors.len() + fr.errors.len(),
            "reconciled"
        );
        // Wait for a change in the store (or the resync interval), or a signal.
        let store = catalog.store().clone();
        let (after, resync) = (snapshot.revision, config.resync);
        let wait = tokio::task::spawn_blocking(move || store.watch(keys::ROOT, after, resync));
        tokio::select! {
            r = wait => match r.expect("watch task panicked") {
                // Compacted: the next pass reads everything again (a full resync, which
                // changes nothing in the kernel when nothing changed).
                Ok(_) | Err(StoreError::Compacted { .. }) => {}
                Err(e) => {
                    let wait = outages.failed("watching the store", &e);
                    tokio::time::sleep(wait).await;
                }
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    heartbeat.stop();
    tracing::info!(node = %config.node, "agent stopping; kernel state left in place");
    Ok(())
}
