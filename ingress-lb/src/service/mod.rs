//! The service model: a virtual IP on a network, its ports, its backends (endpoints of that
//! network), how they are health-checked, and (for the routing mesh) its published ports.
//!
//! Stored as JSON under `/vxmesh/v1/services/NAME` ([`crate::keys`]); every field read back
//! from the store is validated again ([`validate::stored_service`]), since another vxmesh
//! version may have written it. [`ServiceSpec`] is what a user asks for; the catalog turns it
//! into a [`Service`].

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

mod parse;
pub mod validate;

pub use parse::parse_duration_ms;

/// A service as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Unique among services; letters, digits, `-`, `_`, `.`, at most 64 characters.
    pub name: String,
    /// The network the VIP and every backend belong to.
    pub network: String,
    /// The create revision of the network's key when the service was made. A network removed
    /// and created again under the same name is another network: the service does not follow
    /// it (its VIP reservation went with the old one).
    pub network_revision: u64,
    /// Small unique number (1, 2, …; the lowest free one), for the kernel's per-service maps.
    pub id: u32,
    /// The virtual IP: reserved in the network's IPAM, so no endpoint can get it.
    pub vip: Ipv4Addr,
    pub ports: Vec<ServicePort>,
    pub backends: Vec<Backend>,
    pub health: HealthSpec,
    #[serde(default)]
    pub affinity: Affinity,
    /// Maglev table size set by the user; `None`: [`crate::maglev::table_size_for`] the number
    /// of backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev_table_size: Option<u32>,
    /// Ports published on every host (the routing mesh; issue 9).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<PublishedPort>,
    /// How replies of routing-mesh flows return (issue 9).
    #[serde(default)]
    pub mode: Mode,
}

/// L4 protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// VIP:`port`/`proto` is forwarded to backend:`target_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    pub port: u16,
    pub target_port: u16,
    pub proto: Proto,
}

impl fmt::Display for ServicePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.port, self.target_port, self.proto)
    }
}

/// One backend: an endpoint of the service's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// The endpoint's id in the service's network; also the backend's stable identity in the
    /// Maglev hashes.
    pub endpoint: String,
    /// Unique among all backends of all services and never reused (a store-wide counter): the
    /// kernel's backend map key. Not reusing it keeps an established flow in the connection
    /// table from landing on another backend that got a freed id.
    pub id: u32,
    /// Relative share of new flows, 1..=[`validate::WEIGHT_MAX`].
    pub weight: u32,
    #[serde(default)]
    pub state: BackendState,
}

/// Whether a backend takes new flows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    #[default]
    Active,
    /// No new flows (weight 0 in the Maglev table); established ones stay.
    Draining,
}

/// How each agent checks the backends on its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSpec {
    pub check: HealthCheck,
    /// Time between the starts of two checks of one backend, ms.
    pub interval_ms: u32,
    /// Longest a check may take (connect, and for HTTP the response head), ms; ≤ interval.
    pub timeout_ms: u32,
    /// Consecutive successes that bring a down backend up.
    pub rise: u32,
    /// Consecutive failures that take an up backend down.
    pub fall: u32,
}

impl Default for HealthSpec {
    /// No check; 1 s interval, 500 ms timeout, rise 2, fall 2 when one is set.
    fn default() -> Self {
        HealthSpec {
            check: HealthCheck::None,
            interval_ms: 1000,
            timeout_ms: 500,
            rise: 2,
            fall: 2,
        }
    }
}

/// The kind of health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum HealthCheck {
    /// No check: a backend is in while its endpoint exists and its node's agent is alive.
    None,
    /// A TCP connect to the backend's address and the first port's target port succeeds.
    Tcp,
    /// An HTTP/1.1 GET of `path` on the first TCP port's target port answers 200–399 (the
    /// success range of Kubernetes' httpGet probe).
    Http { path: String },
}

impl fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthCheck::None => f.write_str("none"),
            HealthCheck::Tcp => f.write_str("tcp"),
            HealthCheck::Http { path } => write!(f, "http:{path}"),
        }
    }
}

/// Session affinity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Affinity {
    /// Each connection is balanced on its 5-tuple.
    #[default]
    None,
    /// Every connection of one client address goes to the same backend (the hash covers the
    /// source address only).
    ClientIp,
}

/// A port published on every host's underlay address (routing mesh, issue 9): `published`/
/// `proto` on a host is forwarded like the service's port `port`/`proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    pub published: u16,
    /// One of the service's ports (`ServicePort::port`) with the same protocol.
    pub port: u16,
    pub proto: Proto,
}

impl fmt::Display for PublishedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.published, self.port, self.proto)
    }
}

/// How routing-mesh replies return (issue 9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Replies return through the ingress host, which reverses the translation.
    #[default]
    Default,
    /// Direct server return: the backend's host answers the client itself.
    Dsr,
}

/// A port as a user gives it: `target_port` defaults to `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    pub port: u16,
    pub target_port: Option<u16>,
    pub proto: Proto,
}

/// The VIP a user asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VipRequest {
    /// The lowest free address of the network (the endpoints' IPAM).
    #[default]
    Auto,
    Ip(Ipv4Addr),
}

/// A backend as a user gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    pub endpoint: String,
    /// `None`: 1.
    pub weight: Option<u32>,
}

impl BackendSpec {
    pub fn new(endpoint: impl Into<String>) -> Self {
        BackendSpec {
            endpoint: endpoint.into(),
            weight: None,
        }
    }
}

/// What a user asks for when creating a service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub network: String,
    pub vip: VipRequest,
    pub ports: Vec<PortSpec>,
    pub backends: Vec<BackendSpec>,
    pub health: HealthSpec,
    pub affinity: Affinity,
    pub maglev_table_size: Option<u32>,
    pub publish: Vec<PublishedPort>,
    pub mode: Mode,
}

impl Service {
    /// The Maglev table size in force: the user's, or the automatic one for the number of
    /// configured backends (draining and unhealthy ones included, so that health changes
    /// never resize the table).
    pub fn table_size(&self) -> Result<u32, crate::maglev::MaglevError> {
        match self.maglev_table_size {
            Some(m) => Ok(m),
            None => crate::maglev::table_size_for(self.backends.len()),
        }
    }

    pub fn backend(&self, endpoint: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.endpoint == endpoint)
    }

    /// The port health checks go to: the first TCP port's target port, or the first port's
    /// target port when the service has only UDP ports (a TCP check of a UDP-only service is
    /// refused by validation).
    pub fn health_port(&self) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.proto == Proto::Tcp)
            .or(self.ports.first())
            .map(|p| p.target_port)
    }
}
