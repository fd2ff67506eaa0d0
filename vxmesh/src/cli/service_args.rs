//! The text of `vxmesh service create/update` flags turned into a [`ServiceSpec`] or a list
//! of [`ServiceUpdate`]s. Every error names the flag (`invalid port '80/sctp': …`); nothing
//! is written before all of them parse.

use std::str::FromStr;

use anyhow::{bail, Result};
use vxmesh::services::{validate, HealthChange, HealthSpec, ValidationError};
use vxmesh::services::{Mode, PublishedPort};
use vxmesh::{Affinity, BackendSpec, PortSpec, ServiceSpec, ServiceUpdate, VipRequest};

use super::service::{CreateArgs, HealthArgs, UpdateArgs};

/// Each text parsed as `T` (its `FromStr` names the field).
fn each<T: FromStr<Err = ValidationError>>(texts: &[String]) -> Result<Vec<T>, ValidationError> {
    texts.iter().map(|t| t.parse()).collect()
}

fn opt<T: FromStr<Err = ValidationError>>(
    text: &Option<String>,
) -> Result<Option<T>, ValidationError> {
    text.as_deref().map(str::parse).transpose()
}

fn count(field: &'static str, text: &Option<String>) -> Result<Option<u32>, ValidationError> {
    text.as_deref()
        .map(|t| {
            t.parse::<u32>()
                .map_err(|_| ValidationError::new(field, t, "must be a whole number 1-10"))
        })
        .transpose()
}

fn duration(field: &'static str, text: &Option<String>) -> Result<Option<u32>, ValidationError> {
    text.as_deref()
        .map(|t| vxmesh::services::parse_duration_ms(field, t))
        .transpose()
}

/// `N` or `auto` (`None`: the automatic size).
fn table_size(text: &str) -> Result<Option<u32>, ValidationError> {
    if text == "auto" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        ValidationError::new(
            "maglev-table-size",
            text,
            "must be a prime number or 'auto'",
        )
    })
}

/// The health flags given, as a change to a stored check.
fn health_change(h: &HealthArgs) -> Result<HealthChange, ValidationError> {
    Ok(HealthChange {
        check: opt(&h.health)?,
        interval_ms: duration("health-interval", &h.health_interval)?,
        timeout_ms: duration("health-timeout", &h.health_timeout)?,
        rise: count("health-rise", &h.health_rise)?,
        fall: count("health-fall", &h.health_fall)?,
    })
}

/// What `service create` asks for. Health defaults: no check, 1 s interval, timeout 500 ms
/// or the interval when shorter, rise and fall 2.
pub fn create_spec(a: CreateArgs) -> Result<ServiceSpec, ValidationError> {
    let mut change = health_change(&a.health)?;
    let defaults = HealthSpec::default();
    if change.timeout_ms.is_none() {
        let interval = change.interval_ms.unwrap_or(defaults.interval_ms);
        change.timeout_ms = Some(defaults.timeout_ms.min(interval));
    }
    Ok(ServiceSpec {
        name: a.name,
        network: a.network,
        vip: opt::<VipRequest>(&a.vip)?.unwrap_or_default(),
        ports: each::<PortSpec>(&a.port)?,
        backends: each::<BackendSpec>(&a.backend)?,
        health: change.apply(&defaults),
        affinity: opt(&a.affinity)?.unwrap_or_default(),
        maglev_table_size: a
            .maglev_table_size
            .as_deref()
            .map(table_size)
            .transpose()?
            .flatten(),
        publish: each::<PublishedPort>(&a.publish)?,
        mode: opt::<Mode>(&a.mode)?.unwrap_or_default(),
    })
}

/// `ENDPOINT:WEIGHT` of `--set-weight`.
fn weight_change(text: &str) -> Result<ServiceUpdate, ValidationError> {
    let spec: BackendSpec = text.parse()?;
    let weight = spec.weight.ok_or_else(|| {
        ValidationError::new("set-weight", text, "must be ENDPOINT:WEIGHT, e.g. c1:3")
    })?;
    Ok(ServiceUpdate::SetWeight {
        endpoint: spec.endpoint,
        weight,
    })
}

/// What `service update` asks for, in this order: removals, additions, drains, undrains,
/// weights, health, affinity, table size, unpublished then published ports, mode (so `--rm-backend X --add-backend X` re-adds X
/// with a new id). A backend both drained and undrained is refused.
pub fn updates(a: UpdateArgs) -> Result<Vec<ServiceUpdate>> {
    let backend = |e: &String| {
        validate::backend_name(e)?;
        Ok::<_, ValidationError>(e.clone())
    };
    if let Some(e) = a
        .undrain_backend
        .iter()
        .find(|e| a.drain_backend.contains(e))
    {
        return Err(
            ValidationError::new("undrain-backend", e, "is also given to --drain-backend").into(),
        );
    }
    let mut out = Vec::new();
    for e in &a.rm_backend {
        out.push(ServiceUpdate::RemoveBackend(backend(e)?));
    }
    for b in each::<BackendSpec>(&a.add_backend)? {
        out.push(ServiceUpdate::AddBackend(b));
    }
    for e in &a.drain_backend {
        out.push(ServiceUpdate::DrainBackend(backend(e)?));
    }
    for e in &a.undrain_backend {
        out.push(ServiceUpdate::ActivateBackend(backend(e)?));
    }
    for w in &a.set_weight {
        out.push(weight_change(w)?);
    }
    let health = health_change(&a.health)?;
    if health != HealthChange::default() {
        out.push(ServiceUpdate::ChangeHealth(health));
    }
    if let Some(aff) = opt::<Affinity>(&a.affinity)? {
        out.push(ServiceUpdate::SetAffinity(aff));
    }
    if let Some(m) = &a.maglev_table_size {
        out.push(ServiceUpdate::SetTableSize(table_size(m)?));
    }
    for p in each::<PublishedPort>(&a.unpublish)? {
        out.push(ServiceUpdate::Unpublish(p));
    }
    for p in each::<PublishedPort>(&a.publish)? {
        out.push(ServiceUpdate::Publish(p));
    }
    if let Some(m) = opt::<Mode>(&a.mode)? {
        out.push(ServiceUpdate::SetMode(m));
    }
    if out.is_empty() {
        bail!(
            "nothing to change in service {}: give at least one of --add-backend, --rm-backend, \
             --drain-backend, --undrain-backend, --set-weight, --health*, --affinity, \
             --maglev-table-size, --publish, --unpublish, --mode",
            a.name
        );
    }
    Ok(out)
}
