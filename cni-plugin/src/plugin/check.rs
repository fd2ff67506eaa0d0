//! CHECK: compare interface, address, routes, MAC and the store record with prevResult.
//!
//! Routes: the interface's subnet route must be there; the default route via the network's
//! gateway on this interface must be there exactly when prevResult lists it (ADD installs it
//! only when the container had no default route, or when `defaultRoute` is `true`).

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use overlay_core::catalog::CatalogError;
use overlay_core::container;
use overlay_core::dataplane::{DefaultRoute, Link, Route4};
use serde_json::Value;

use crate::error::*;
use crate::ipam;

use super::*;

impl Call<'_> {
    pub(super) fn check(&self) -> CniResult<()> {
        let prev = self.conf.prev_result.as_ref().ok_or_else(|| {
            CniError::new(
                INVALID_CONFIG,
                "field prevResult is missing; CHECK needs it",
            )
        })?;
        let catalog = self.catalog()?;
        let network = catalog.network(&self.conf.network).map_err(catalog_err)?;
        let id = self.id();
        let ep = match catalog.endpoint(&network.name, &id) {
            Ok(ep) if ep.cni.as_ref() == Some(&self.attachment()) => ep,
            Ok(_) | Err(CatalogError::NotFound { .. }) => {
                return Err(CniError::new(
                    UNKNOWN_CONTAINER,
                    format!(
                        "the store has no attachment of container {} interface {} on network {}",
                        self.container_id(),
                        self.ifname(),
                        network.name
                    ),
                ))
            }
            Err(e) => return Err(catalog_err(e)),
        };
        let mut diffs: Vec<String> = Vec::new();
        if ep.node != self.node {
            diffs.push(format!(
                "store: the endpoint is on node {}, not {}",
                ep.node, self.node
            ));
        }
        let address = Ipv4Net::new(ep.ip, network.subnet.prefix_len()).expect("valid prefix");
        let bridge_mtu = container::network_mtu(&None, &network).map_err(container_err)?;
        let mtu = self.conf.mtu.unwrap_or(bridge_mtu);

        // The container's side.
        let netns_path = self.env.netns.clone().expect("CHECK has CNI_NETNS");
        let ifname = self.ifname().to_string();
        let (link, addrs, routes) = in_netns(&netns_path, move |dp| async move {
            let link = dp.link(&ifname).await?;
            let addrs = match &link {
                Some(l) => dp.addresses(l.index).await?,
                None => vec![],
            };
            Ok((link, addrs, dp.routes_v4().await?))
        })?;
        match &link {
            None => diffs.push(format!(
                "interface {} is missing in {}",
                self.ifname(),
                netns_path.display()
            )),
            Some(l) => {
                if l.mac != Some(ep.mac) {
                    diffs.push(format!(
                        "interface {}: mac is {}, the store says {}",
                        l.name,
                        l.mac.map(|m| m.to_string()).unwrap_or_default(),
                        ep.mac
                    ));
                }
                if l.mtu != mtu {
                    diffs.push(format!(
                        "interface {}: mtu is {}, expected {mtu}",
                        l.name, l.mtu
                    ));
                }
                if !l.up {
                    diffs.push(format!("interface {} is down", l.name));
                }
                if !addrs.contains(&IpNet::V4(address)) {
                    diffs.push(format!(
                        "interface {}: address {address} is missing (has {})",
                        l.name,
                        list(addrs.iter())
                    ));
                }
            }
        }
        let prev_default = prev_has_default_via(prev, network.gateway);
        if let Some(l) = &link {
            diffs.extend(route_diffs(
                l,
                &routes,
                address,
                network.gateway,
                prev_default,
            ));
        }

        // The host's side.
        let host_ifname = ep.host_ifname.clone().unwrap_or_default();
        let bridge = network.bridge_name();
        let (h, br): (Option<Link>, Option<Link>) = {
            let (h, b) = (host_ifname.clone(), bridge.clone());
            in_netns(&host_ns(), move |dp| async move {
                Ok((dp.link(&h).await?, dp.link(&b).await?))
            })?
        };
        match (&h, &br) {
            (None, _) => diffs.push(format!("host interface {host_ifname} is missing")),
            (Some(h), br) => {
                if h.kind.as_deref() != Some("veth") {
                    diffs.push(format!("host interface {host_ifname} is not a veth"));
                }
                if br.is_none() || h.master != br.as_ref().map(|b| b.index) {
                    diffs.push(format!(
                        "host interface {host_ifname} is not a port of bridge {bridge}"
                    ));
                }
                if !h.up {
                    diffs.push(format!("host interface {host_ifname} is down"));
                }
            }
        }

        // prevResult against the store and the kernel.
        let prev_ips: Vec<&str> = prev
            .get("ips")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|i| i.get("address").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        if !prev_ips
            .iter()
            .any(|a| a.parse::<Ipv4Net>().ok() == Some(address))
        {
            diffs.push(format!(
                "prevResult: ips are [{}], the attachment has {address}",
                prev_ips.join(", ")
            ));
        }
        let prev_if = prev
            .get("interfaces")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter().find(|i| {
                    i.get("name").and_then(Value::as_str) == Some(self.ifname())
                        && i.get("sandbox")
                            .and_then(Value::as_str)
                            .is_some_and(|s| !s.is_empty())
                })
            });
        match prev_if {
            None => diffs.push(format!(
                "prevResult: no interface {} with a sandbox",
                self.ifname()
            )),
            Some(i) => {
                let mac = i.get("mac").and_then(Value::as_str).unwrap_or("");
                if mac.parse::<overlay_core::MacAddr>().ok() != Some(ep.mac) {
                    diffs.push(format!(
                        "prevResult: interface {} mac is '{mac}', the attachment has {}",
                        self.ifname(),
                        ep.mac
                    ));
                }
            }
        }
        match (self.conf.default_route, prev_default) {
            (DefaultRoute::Replace, false) => diffs.push(format!(
                "prevResult: no route 0.0.0.0/0 via {} although defaultRoute is true",
                network.gateway
            )),
            (DefaultRoute::Never, true) => diffs.push(format!(
                "prevResult: a route 0.0.0.0/0 via {} although defaultRoute is false",
                network.gateway
            )),
            _ => {}
        }
        if let Some(plugin) = &self.conf.ipam_type {
            if let Err(e) = ipam::exec(plugin, &self.env, "CHECK", None, None, self.stdin) {
                diffs.push(e.msg);
            }
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(CniError::new(
                CHECK_FAILED,
                format!("CHECK {}: {}", self.ifname(), diffs.join("; ")),
            )
            .with_details(diffs.join("\n")))
        }
    }
}

/// Whether prevResult lists a default route via `gateway` (the one ADD installed).
fn prev_has_default_via(prev: &Value, gateway: Ipv4Addr) -> bool {
    prev.get("routes")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter().any(|r| {
                r.get("dst").and_then(Value::as_str) == Some("0.0.0.0/0")
                    && r.get("gw")
                        .and_then(Value::as_str)
                        .and_then(|g| g.parse::<Ipv4Addr>().ok())
                        == Some(gateway)
            })
        })
}

/// The differences between the container's routes and what ADD made on interface `link`: its
/// subnet route always, the default route via `gateway` on it when `want_default`.
fn route_diffs(
    link: &Link,
    routes: &[Route4],
    address: Ipv4Net,
    gateway: Ipv4Addr,
    want_default: bool,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let subnet = address.trunc();
    if !routes
        .iter()
        .any(|r| r.dst == subnet && r.oif == Some(link.index))
    {
        diffs.push(format!("route {subnet} dev {} is missing", link.name));
    }
    let defaults: Vec<&Route4> = routes.iter().filter(|r| r.is_default()).collect();
    let ours = defaults
        .iter()
        .any(|r| r.gateway == Some(gateway) && r.oif == Some(link.index));
    if want_default && !ours {
        let now = defaults.iter().map(|r| match r.gateway {
            Some(g) => format!("via {g}"),
            None => "one without gateway".into(),
        });
        diffs.push(format!(
            "default route: expected via {gateway} dev {}, the container has {}",
            link.name,
            list(now)
        ));
    }
    diffs
}
