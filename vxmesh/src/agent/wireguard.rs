//! The agent's WireGuard interface: started when the store first holds an encrypted network,
//! its key kept in the state directory, its identity published to the store.

use overlay_core::catalog::Catalog;
use overlay_core::reconcile::Reconciler;
use overlay_core::wireguard::{self, PrivateKey, WireguardDevice};

use super::{AgentConfig, AgentError, WireguardConfig};

/// The running WireGuard interface and the key it uses.
pub(super) struct Wireguard {
    pub(super) device: WireguardDevice,
    key: PrivateKey,
    config: WireguardConfig,
}

impl Wireguard {
    /// Starts the node's WireGuard interface: attaches to the persistent one a previous agent
    /// left (same index, addresses and routes; established connections carry on after a new
    /// handshake), or creates it.
    pub(super) async fn start(
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
    pub(super) fn sync_identity(
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
