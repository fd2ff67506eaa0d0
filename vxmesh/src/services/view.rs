//! The JSON form of a service that `vxmesh service … --json` prints: every field always
//! present (null when unset), so programs can rely on the names.

use std::net::Ipv4Addr;

use ingress_lb::catalog::{BackendStatus, ServiceCatalog, ServiceError};
use ingress_lb::service::{
    Affinity, Backend, HealthSpec, Mode, PublishedPort, Service, ServicePort,
};
use overlay_core::catalog::Catalog;
use serde::Serialize;

/// A service as the CLI prints it (`service create/update/rm/ls --json`, and `service` in
/// `service inspect --json`).
///
/// JSON: `name`, `network`, `id` (the kernel's service id), `vip`, `ports` (`[{port,
/// target_port, proto}]`, proto `tcp`|`udp`), `backends` (`[{endpoint, id, weight, state}]`,
/// state `active`|`draining` as configured), `health` ([`HealthView`]), `affinity`
/// (`none`|`client-ip`), `maglev_table_size` (the size set by the user, or null: automatic),
/// `table_size` (the size in force: slots of the Maglev table), `publish` (`[{published,
/// port, proto}]`, the routing mesh's published ports), `mode` (`default`|`dsr`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceView {
    /// The service's name.
    pub name: String,
    /// The network of its VIP and backends.
    pub network: String,
    /// The kernel's service id.
    pub id: u32,
    /// The virtual IP, from the network's subnet.
    pub vip: Ipv4Addr,
    /// The VIP's ports and the backends' target ports.
    pub ports: Vec<ServicePort>,
    /// Every backend as configured.
    pub backends: Vec<Backend>,
    /// The health check.
    pub health: HealthView,
    /// Whether a client sticks to one backend.
    pub affinity: Affinity,
    /// The Maglev table size the user set; `None`: automatic.
    pub maglev_table_size: Option<u32>,
    /// Slots of the Maglev table; null only for a record with more backends than a table can
    /// hold (refused on write).
    pub table_size: Option<u32>,
    /// The routing mesh's published ports (on every host's underlay address).
    pub publish: Vec<PublishedPort>,
    /// How replies of the routing mesh go back: through the ingress host, or DSR.
    pub mode: Mode,
}

/// A health check as the CLI prints it.
///
/// JSON: `check` (`none`, `tcp` or `http:PATH`, the flag's form), `interval_ms`,
/// `timeout_ms` (milliseconds), `rise`, `fall` (consecutive results).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthView {
    /// `none`, `tcp` or `http:PATH`: the flag's form.
    pub check: String,
    /// Time between checks, ms.
    pub interval_ms: u32,
    /// How long one check may take, ms.
    pub timeout_ms: u32,
    /// Consecutive successes that make a down backend up.
    pub rise: u32,
    /// Consecutive failures that make an up backend down.
    pub fall: u32,
}

impl From<&HealthSpec> for HealthView {
    fn from(h: &HealthSpec) -> Self {
        HealthView {
            check: h.check.to_string(),
            interval_ms: h.interval_ms,
            timeout_ms: h.timeout_ms,
            rise: h.rise,
            fall: h.fall,
        }
    }
}

impl From<&Service> for ServiceView {
    fn from(s: &Service) -> Self {
        ServiceView {
            name: s.name.clone(),
            network: s.network.clone(),
            id: s.id,
            vip: s.vip,
            ports: s.ports.clone(),
            backends: s.backends.clone(),
            health: (&s.health).into(),
            affinity: s.affinity,
            maglev_table_size: s.maglev_table_size,
            table_size: s.table_size().ok(),
            publish: s.publish.clone(),
            mode: s.mode,
        }
    }
}

/// One service of `service ls`.
///
/// JSON: the fields of [`ServiceView`], and `backends_up` (backends taking new flows: up and
/// not draining, by the rules of [`BackendStatus`]), `orphaned` (true when the service's
/// network was removed: it gets no table and can only be removed).
#[derive(Debug, Clone, Serialize)]
pub struct ListedService {
    /// The service as configured.
    #[serde(flatten)]
    pub service: ServiceView,
    /// Backends taking new flows: up and not draining.
    pub backends_up: usize,
    /// True when the service's network was removed.
    pub orphaned: bool,
}

/// The word for a backend's status, as `service inspect` shows it: `up`, `draining`,
/// `down`, `unknown` (no health report yet), `node-down` (its node's agent heartbeat is
/// missing), `endpoint-gone` or `node-gone` (its node's agent lease expired).
pub fn status_word(s: &BackendStatus) -> &'static str {
    match s {
        BackendStatus::Up => "up",
        BackendStatus::Draining => "draining",
        BackendStatus::Down { .. } => "down",
        BackendStatus::Unknown => "unknown",
        BackendStatus::NodeDown => "node-down",
        BackendStatus::EndpointGone => "endpoint-gone",
        BackendStatus::NodeGone => "node-gone",
    }
}

/// Every service, sorted by name, or those of `network` only (which must exist), read at
/// one store revision. Errors: an invalid or unknown network, a store failure.
pub fn list(catalog: &Catalog, network: Option<&str>) -> Result<Vec<ListedService>, ServiceError> {
    if let Some(n) = network {
        catalog.network(n)?;
    }
    let snap = ServiceCatalog::of(catalog).snapshot()?;
    let live = snap.services.values().map(|s| (s, false));
    let orphans = snap.orphans.iter().map(|s| (s, true));
    let mut out: Vec<ListedService> = live
        .chain(orphans)
        .filter(|(s, _)| network.is_none_or(|n| s.network == n))
        .map(|(s, orphaned)| ListedService {
            service: s.into(),
            backends_up: snap
                .backends(s)
                .iter()
                .filter(|b| b.status == BackendStatus::Up)
                .count(),
            orphaned,
        })
        .collect();
    out.sort_by(|a, b| a.service.name.cmp(&b.service.name));
    Ok(out)
}
