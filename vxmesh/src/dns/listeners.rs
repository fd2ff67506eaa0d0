//! The listener set: one DNS server (UDP and TCP, port 53) on the gateway address of every
//! network this host carries, following the store: a listener starts once the network's
//! bridge holds its gateway (the overlay reconciler puts it there) and stops when the network
//! leaves the store.
//!
//! The listener a query arrives on names the asking container's network (a container reaches
//! only its own networks' gateways: the bridges' isolation filters drop IPv4 to another
//! network's subnet).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use tokio::task::JoinHandle;

use super::handler::{NetworkHandler, Shared};

/// How long a TCP connection may stay without a complete query before it is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(5);
/// Answers queued per TCP connection.
const TCP_QUEUE: usize = 16;

/// Why a listener did not start.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NotStarted {
    /// The network's bridge does not hold the gateway (yet): the overlay reconciler has not
    /// built it, or the network is not built on this host. Normal for a moment.
    NoGateway(String),
    /// The gateway is there but a socket could not be bound (port 53 taken by another server,
    /// for one): needs someone's attention.
    Bind(String),
}

/// One network's running server.
struct Running {
    gateway: Ipv4Addr,
    /// Owns the server: aborting it drops the server, which ends every task it spawned and
    /// closes its sockets.
    task: JoinHandle<()>,
}

/// The listeners of this host, by network.
pub struct Listeners {
    port: u16,
    running: BTreeMap<String, Running>,
    /// The last reason a network's listener could not start (logged when it changes).
    failed: BTreeMap<String, NotStarted>,
}

impl Listeners {
    /// No listener yet; they will answer on `port` (53).
    pub fn new(port: u16) -> Listeners {
        Listeners {
            port,
            running: BTreeMap::new(),
            failed: BTreeMap::new(),
        }
    }

    /// The networks answered now, with their gateways.
    pub fn answering(&self) -> BTreeMap<String, Ipv4Addr> {
        self.running
            .iter()
            .map(|(n, r)| (n.clone(), r.gateway))
            .collect()
    }

    /// Makes the listeners follow `gateways` (network → gateway): stops those of networks gone
    /// (or whose gateway changed, or whose server ended), starts the missing ones whose bridge
    /// holds the gateway on this host. A listener that cannot start is tried again on the next
    /// call. Must run on a tokio runtime (the servers' tasks are spawned on it).
    pub fn sync(&mut self, gateways: &BTreeMap<String, Ipv4Addr>, shared: &Arc<Shared>) {
        let port = self.port;
        self.running.retain(|network, r| {
            let keep = gateways.get(network) == Some(&r.gateway) && !r.task.is_finished();
            if !keep {
                r.task.abort();
                tracing::info!(%network, gateway = %r.gateway, port, "stopped answering DNS");
            }
            keep
        });
        self.failed.retain(|n, _| gateways.contains_key(n));
        for (network, &gateway) in gateways {
            if self.running.contains_key(network) {
                continue;
            }
            match self.start(network, gateway, shared) {
                Ok(r) => {
                    tracing::info!(%network, %gateway, port, "answering DNS (UDP and TCP)");
                    self.failed.remove(network);
                    self.running.insert(network.clone(), r);
                }
                Err(why) => {
                    if self.failed.get(network) != Some(&why) {
                        match &why {
                            NotStarted::NoGateway(w) => {
                                tracing::debug!(%network, %gateway, port, "not answering DNS yet: {w}")
                            }
                            NotStarted::Bind(w) => {
                                tracing::warn!(%network, %gateway, port, "cannot answer DNS: {w}")
                            }
                        }
                        self.failed.insert(network.clone(), why);
                    }
                }
            }
        }
    }

    /// Stops every listener.
    pub fn stop_all(&mut self) {
        for (_, r) in std::mem::take(&mut self.running) {
            r.task.abort();
        }
    }

    fn start(
        &self,
        network: &str,
        gateway: Ipv4Addr,
        shared: &Arc<Shared>,
    ) -> Result<Running, NotStarted> {
        // Only where this network's bridge holds the gateway: never on an address that some
        // other interface of the host has (a network refused here for overlapping it).
        let addr = SocketAddr::from((gateway, self.port));
        let bridge = overlay_core::model::bridge_name(network);
        match crate::service_plane::interface_with(gateway) {
            Some((name, _)) if name == bridge => {}
            Some((name, _)) => {
                return Err(NotStarted::NoGateway(format!(
                    "{gateway} is on {name}, not {bridge}"
                )))
            }
            None => {
                return Err(NotStarted::NoGateway(format!(
                    "no interface holds {gateway}"
                )))
            }
        }
        let bind = |what: &str, e: std::io::Error| NotStarted::Bind(format!("{what} {addr}: {e}"));
        let udp = std::net::UdpSocket::bind(addr).map_err(|e| bind("UDP", e))?;
        // std's bind sets SO_REUSEADDR on TCP listeners: a restarted agent binds again while
        // the last one's connections are in TIME_WAIT.
        let tcp = std::net::TcpListener::bind(addr).map_err(|e| bind("TCP", e))?;
        for r in [udp.set_nonblocking(true), tcp.set_nonblocking(true)] {
            r.map_err(|e| bind("", e))?;
        }
        let udp = tokio::net::UdpSocket::from_std(udp).map_err(|e| bind("UDP", e))?;
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|e| bind("TCP", e))?;
        let mut server = Server::new(NetworkHandler {
            network: network.to_string(),
            shared: shared.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE, TCP_QUEUE);
        let net = network.to_string();
        let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
            if let Err(e) = server.block_until_done().await {
                tracing::warn!(network = %net, %addr, "DNS server ended: {e}");
            }
        }));
        Ok(Running { gateway, task })
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop_all();
    }
}
