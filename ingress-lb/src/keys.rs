//! Where services live in the store, next to overlay-core's keys (`overlay_core::keys`). Every
//! key ingress-lb writes is made here.
//!
//! ```text
//! /vxmesh/v1/services/NAME                       the Service (JSON)
//! /vxmesh/v1/service-ids/ID                      NAME: claims the service's small id
//! /vxmesh/v1/service-backend-ids                 the next backend id (a counter, never reused)
//! /vxmesh/v1/published/PROTO/PORT                NAME: claims a published port on every host
//! /vxmesh/v1/health/NAME/ENDPOINT                HealthRecord, written by the backend's node's agent
//! /vxmesh/v1/dependents/networks/NET/services/NAME   the service's key: NET has this service
//! /vxmesh/v1/guards/dependents/NET               written with every change under the above
//! /vxmesh/v1/ipam/NET/VIP                        "service:NAME" (overlay-core's IPAM key)
//! ```

use std::net::Ipv4Addr;

use crate::service::Proto;

pub const SERVICES: &str = "/vxmesh/v1/services/";
pub const SERVICE_IDS: &str = "/vxmesh/v1/service-ids/";
/// The next backend id to hand out; absent means 1.
pub const BACKEND_IDS: &str = "/vxmesh/v1/service-backend-ids";
pub const PUBLISHED: &str = "/vxmesh/v1/published/";
pub const HEALTH: &str = "/vxmesh/v1/health/";
/// Objects that depend on a network, so that removing the network can find them without
/// knowing what they are (see the crate documentation: "Removing a network").
pub const NETWORK_DEPENDENTS: &str = "/vxmesh/v1/dependents/networks/";

pub fn service(name: &str) -> String {
    format!("{SERVICES}{name}")
}

pub fn service_id(id: u32) -> String {
    format!("{SERVICE_IDS}{id}")
}

pub fn published(proto: Proto, port: u16) -> String {
    format!("{PUBLISHED}{proto}/{port}")
}

/// Health records of every backend of one service.
pub fn health_of(service: &str) -> String {
    format!("{HEALTH}{service}/")
}

pub fn health(service: &str, endpoint: &str) -> String {
    format!("{HEALTH}{service}/{endpoint}")
}

/// Everything that depends on one network.
pub fn dependents_of(network: &str) -> String {
    format!("{NETWORK_DEPENDENTS}{network}/")
}

pub fn network_dependent(network: &str, service: &str) -> String {
    format!("{NETWORK_DEPENDENTS}{network}/services/{service}")
}

/// Written (unconditionally) by every transaction that adds or removes a dependent of
/// `network`, so that a network removal that read it first and compares it sees a dependent
/// added after its read (a compare cannot say "this prefix is still empty").
pub fn network_dependents_guard(network: &str) -> String {
    format!("/vxmesh/v1/guards/dependents/{network}")
}

/// The value of a VIP's IPAM key (endpoints' IPAM keys hold the endpoint id, which cannot
/// contain ':').
pub fn vip_owner(service: &str) -> String {
    format!("service:{service}")
}

/// overlay-core's IPAM key of `ip` in `network`.
pub fn ipam(network: &str, ip: Ipv4Addr) -> String {
    overlay_core::keys::ipam(network, ip)
}
