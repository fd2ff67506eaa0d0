//! The service rules. Each check returns a [`ValidationError`] naming the field (the CLI flag's
//! name: `port`, `target-port`, `vip`, `backend`, `weight`, `health`, `health-interval`, …),
//! the value and what is wrong.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use overlay_core::model::Network;
use overlay_core::validate::{self as core, ValidationError};

use super::{
    Backend, HealthCheck, HealthSpec, PortSpec, Proto, PublishedPort, Service, ServicePort,
};
use crate::maglev;

/// Most ports a service may have.
pub const PORTS_MAX: usize = 64;
/// Largest backend weight.
pub const WEIGHT_MAX: u32 = 1000;
/// Health check interval bounds, ms.
pub const INTERVAL_MIN_MS: u32 = 100;
pub const INTERVAL_MAX_MS: u32 = 3_600_000;
/// Smallest health check timeout, ms (the largest is the interval).
pub const TIMEOUT_MIN_MS: u32 = 10;
/// Largest rise and fall thresholds.
pub const THRESHOLD_MAX: u32 = 10;
/// Longest HTTP health check path.
pub const PATH_MAX: usize = 1024;

fn renamed(e: ValidationError, field: &'static str) -> ValidationError {
    ValidationError { field, ..e }
}

/// Service names follow the endpoint-id rules: 1–64 letters, digits, `-`, `_`, `.`, starting
/// with a letter or digit.
pub fn service_name(name: &str) -> Result<(), ValidationError> {
    core::endpoint_id(name).map_err(|e| renamed(e, "service name"))
}

/// Checks the ports (1–65535, no port/protocol twice, at least one) and fills in the default
/// target port (the port itself).
pub fn ports(specs: &[PortSpec]) -> Result<Vec<ServicePort>, ValidationError> {
    if specs.is_empty() {
        return Err(ValidationError::new(
            "port",
            "",
            "a service needs at least one port",
        ));
    }
    if specs.len() > PORTS_MAX {
        return Err(ValidationError::new(
            "port",
            specs.len(),
            format!("at most {PORTS_MAX} ports are allowed"),
        ));
    }
    let mut out: Vec<ServicePort> = Vec::with_capacity(specs.len());
    for s in specs {
        let p = ServicePort {
            port: s.port,
            target_port: s.target_port.unwrap_or(s.port),
            proto: s.proto,
        };
        check_port(&p)?;
        if out.iter().any(|o| o.port == p.port && o.proto == p.proto) {
            return Err(ValidationError::new(
                "port",
                format!("{}/{}", p.port, p.proto),
                "is given twice",
            ));
        }
        out.push(p);
    }
    Ok(out)
}

fn check_port(p: &ServicePort) -> Result<(), ValidationError> {
    if p.port == 0 {
        return Err(ValidationError::new("port", 0, "must be 1-65535"));
    }
    if p.target_port == 0 {
        return Err(ValidationError::new("target-port", 0, "must be 1-65535"));
    }
    Ok(())
}

/// Interval, timeout, thresholds and path within bounds; a TCP or HTTP check needs a TCP port.
pub fn health(h: &HealthSpec, ports: &[ServicePort]) -> Result<(), ValidationError> {
    if !(INTERVAL_MIN_MS..=INTERVAL_MAX_MS).contains(&h.interval_ms) {
        return Err(ValidationError::new(
            "health-interval",
            format!("{}ms", h.interval_ms),
            format!("must be between {INTERVAL_MIN_MS}ms and {INTERVAL_MAX_MS}ms"),
        ));
    }
    if h.timeout_ms < TIMEOUT_MIN_MS || h.timeout_ms > h.interval_ms {
        return Err(ValidationError::new(
            "health-timeout",
            format!("{}ms", h.timeout_ms),
            format!(
                "must be between {TIMEOUT_MIN_MS}ms and the interval ({}ms)",
                h.interval_ms
            ),
        ));
    }
    for (field, v) in [("health-rise", h.rise), ("health-fall", h.fall)] {
        if !(1..=THRESHOLD_MAX).contains(&v) {
            return Err(ValidationError::new(
                field,
                v,
                format!("must be between 1 and {THRESHOLD_MAX}"),
            ));
        }
    }
    if let HealthCheck::Http { path } = &h.check {
        http_path(path)?;
    }
    if h.check != HealthCheck::None && !ports.iter().any(|p| p.proto == Proto::Tcp) {
        return Err(ValidationError::new(
            "health",
            &h.check,
            "checks a TCP port, and the service has only UDP ports",
        ));
    }
    Ok(())
}

fn http_path(path: &str) -> Result<(), ValidationError> {
    let bad = |why: &str| Err(ValidationError::new("health", format!("http:{path}"), why));
    if !path.starts_with('/') {
        return bad("the path must start with '/'");
    }
    if path.len() > PATH_MAX {
        return bad("the path is longer than 1024 characters");
    }
    if path.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return bad("the path may hold only visible ASCII characters (no spaces)");
    }
    Ok(())
}

pub fn weight(w: u32) -> Result<(), ValidationError> {
    if !(1..=WEIGHT_MAX).contains(&w) {
        return Err(ValidationError::new(
            "weight",
            w,
            format!("must be between 1 and {WEIGHT_MAX} (drain a backend instead of weight 0)"),
        ));
    }
    Ok(())
}

/// A backend names an endpoint (endpoint-id rules).
pub fn backend_name(endpoint: &str) -> Result<(), ValidationError> {
    core::endpoint_id(endpoint).map_err(|e| renamed(e, "backend"))
}

/// Backend names valid and unique, weights in range, at most [`maglev::MAX_BACKENDS`].
pub fn backends<'a>(
    list: impl IntoIterator<Item = (&'a str, u32)>,
) -> Result<usize, ValidationError> {
    let mut seen = BTreeSet::new();
    for (endpoint, w) in list {
        backend_name(endpoint)?;
        weight(w)?;
        if !seen.insert(endpoint) {
            return Err(ValidationError::new("backend", endpoint, "is given twice"));
        }
    }
    if seen.len() > maglev::MAX_BACKENDS {
        return Err(ValidationError::new(
            "backend",
            seen.len(),
            format!("at most {} backends are allowed", maglev::MAX_BACKENDS),
        ));
    }
    Ok(seen.len())
}

/// A VIP must be a host address of the network: in its subnet, not the network, broadcast or
/// gateway address. (That no endpoint has it is the IPAM's job.)
pub fn vip(network: &Network, ip: Ipv4Addr) -> Result<(), ValidationError> {
    core::endpoint_ip(network, ip).map_err(|e| renamed(e, "vip"))
}

/// An explicit Maglev table size: prime, ≥ the backends, ≤ [`maglev::MAX_TABLE_SIZE`].
pub fn table_size(size: u32, backends: usize) -> Result<(), ValidationError> {
    maglev::check_size(size, backends)
        .map_err(|e| ValidationError::new("maglev-table-size", size, e.to_string()))
}

/// Published ports: 1–65535, each a port of the service with the same protocol, no
/// published port/protocol twice.
pub fn publish(list: &[PublishedPort], ports: &[ServicePort]) -> Result<(), ValidationError> {
    let mut seen = BTreeSet::new();
    for p in list {
        if p.published == 0 {
            return Err(ValidationError::new("publish", p, "must be 1-65535"));
        }
        match ports.iter().find(|s| s.port == p.port) {
            None => {
                return Err(ValidationError::new(
                    "publish",
                    p,
                    format!("port {} is not a port of the service", p.port),
                ))
            }
            Some(_) if !ports.iter().any(|s| s.port == p.port && s.proto == p.proto) => {
                return Err(ValidationError::new(
                    "publish",
                    p,
                    format!(
                        "protocol mismatch: the service's port {} is not {}",
                        p.port, p.proto
                    ),
                ))
            }
            Some(_) => {}
        }
        if !seen.insert((p.published, p.proto)) {
            return Err(ValidationError::new(
                "publish",
                p,
                format!("{}/{} is published twice", p.published, p.proto),
            ));
        }
    }
    Ok(())
}

/// Checks a service read back from the store, against its network.
pub fn stored_service(s: &Service, network: &Network) -> Result<(), ValidationError> {
    service_name(&s.name)?;
    if s.network != network.name {
        return Err(ValidationError::new(
            "network",
            &s.network,
            format!("does not match network {}", network.name),
        ));
    }
    if s.id == 0 {
        return Err(ValidationError::new("id", 0, "must be 1 or more"));
    }
    vip(network, s.vip)?;
    let specs: Vec<PortSpec> = s
        .ports
        .iter()
        .map(|p| PortSpec {
            port: p.port,
            target_port: Some(p.target_port),
            proto: p.proto,
        })
        .collect();
    ports(&specs)?;
    health(&s.health, &s.ports)?;
    let n = backends(s.backends.iter().map(|b| (b.endpoint.as_str(), b.weight)))?;
    backend_ids(&s.backends)?;
    if let Some(m) = s.maglev_table_size {
        table_size(m, n)?;
    }
    publish(&s.publish, &s.ports)
}

fn backend_ids(list: &[Backend]) -> Result<(), ValidationError> {
    let mut seen = BTreeSet::new();
    for b in list {
        if b.id == 0 || !seen.insert(b.id) {
            return Err(ValidationError::new(
                "backend id",
                b.id,
                format!("of backend {} is 0 or used twice", b.endpoint),
            ));
        }
    }
    Ok(())
}
