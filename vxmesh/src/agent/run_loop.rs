//! The agent's passes: read a snapshot of the store, bring the kernel in line (overlay, services,
//! fast path), report, wait for the next change, until told to stop.

use overlay_core::catalog::Catalog;
use overlay_core::dataplane::Dataplane;
use overlay_core::keys;
use overlay_core::reconcile::{Desired, Reconciler, WireguardHandle};
use overlay_core::store::StoreError;
use tokio::sync::watch;

use super::handle::Stop;
use super::wireguard::Wireguard;
use super::{AgentConfig, AgentError, AgentStatus};

/// Resolves once the handle asked the agent to stop (or was dropped).
async fn stop_requested(stop: &mut watch::Receiver<Stop>) {
    let _ = stop.wait_for(|s| *s != Stop::Running).await;
}

pub(super) async fn run_loop(
    catalog: Catalog,
    config: AgentConfig,
    mut stop: watch::Receiver<Stop>,
    status: watch::Sender<AgentStatus>,
) -> Result<(), AgentError> {
    // The WireGuard interface is started when the store first holds an encrypted network, so
    // hosts with plain networks only run no TUN device and no crypto threads.
    let mut wg: Option<Wireguard> = None;
    // Whether a WireGuard interface left by a previous agent was looked for (first pass).
    let mut leftover_checked = false;
    let mut reconciler = Reconciler::new(Dataplane::connect()?);
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
    // Whether the store changed since the last pass (the first pass counts as one).
    let mut changed = true;
    let mut published_status: Option<(overlay_core::store::LeaseId, AgentStatus)> = None;
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
                status.send_modify(|s| s.store_outage = None);
                s
            }
            // Fail static: the kernel keeps the last state programmed; try again later.
            Err(overlay_core::CatalogError::Store(e)) => {
                let wait = outages.failed("reading the store", &e);
                status.send_modify(|s| s.store_outage = Some(e.to_string()));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = stop_requested(&mut stop) => break,
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
        // The status: through the handle after every pass; in the store after a pass that
        // followed a change (or when the errors or the lease changed), so that a resync pass
        // of every agent does not write to the store every few seconds.
        let errors: Vec<String> = report
            .errors
            .iter()
            .map(ToString::to_string)
            .chain(lb.errors.iter().map(ToString::to_string))
            .chain(fr.errors.iter().map(ToString::to_string))
            .collect();
        status.send_modify(|s| {
            s.applied_revision = snapshot.revision;
            s.passes = passes;
            s.errors = errors;
        });
        let lease = heartbeat.lease().get();
        let now = status.borrow().clone();
        if let Some(lease) = lease {
            let stale = published_status
                .as_ref()
                .is_none_or(|(l, p): &(_, AgentStatus)| *l != lease || p.errors != now.errors);
            if changed || stale {
                match crate::wait::publish_status(&catalog, &now, lease) {
                    Ok(()) => published_status = Some((lease, now)),
                    Err(e) => tracing::debug!("publishing the agent's status: {e}"),
                }
            }
        }
        // Wait for a change in the store (or the resync interval), or the stop.
        let store = catalog.store().clone();
        let (after, resync) = (snapshot.revision, config.resync);
        let wait = tokio::task::spawn_blocking(move || store.watch(keys::ROOT, after, resync));
        tokio::select! {
            r = wait => match r.expect("watch task panicked") {
                Ok(events) => changed = !events.is_empty(),
                // Compacted: the next pass reads everything again (a full resync, which
                // changes nothing in the kernel when nothing changed).
                Err(StoreError::Compacted { .. }) => changed = true,
                Err(e) => {
                    changed = true;
                    let wait = outages.failed("watching the store", &e);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop_requested(&mut stop) => break,
                    }
                }
            },
            _ = stop_requested(&mut stop) => break,
        }
    }
    if *stop.borrow() == Stop::Abort {
        heartbeat.abandon();
        tracing::info!(node = %config.node, "agent aborted; its keys left to the lease, kernel state left in place");
    } else {
        heartbeat.stop();
        tracing::info!(node = %config.node, "agent stopping; kernel state left in place");
    }
    Ok(())
}
