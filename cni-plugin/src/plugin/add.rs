//! ADD: record the endpoint (allocating or delegating its address), build the veth, print the result.

use ipnet::Ipv4Net;
use overlay_core::catalog::CatalogError;
use overlay_core::container::{self, AttachOptions, ContainerError, ContainerSpec};
use overlay_core::model::{Endpoint, Network};
use serde_json::{json, Value};

use crate::conf;
use crate::error::*;
use crate::ipam;

use super::*;

impl Call<'_> {
    pub(super) fn add(&self) -> CniResult<Value> {
        let catalog = self.catalog()?;
        let network = catalog.network(&self.conf.network).map_err(catalog_err)?;
        catalog.node(&self.node).map_err(catalog_err)?;
        let id = self.id();
        match catalog.endpoint(&network.name, &id) {
            Ok(_) => {
                return Err(CniError::new(
                    ALREADY_ATTACHED,
                    format!(
                    "container {} interface {} is already attached to network {} (DEL it first)",
                    self.container_id(),
                    self.ifname(),
                    network.name
                ),
                ))
            }
            Err(CatalogError::NotFound { .. }) => {}
            Err(e) => return Err(catalog_err(e)),
        }
        // The bridge (the agent) must be there, and the MTU fit it.
        let bridge_mtu = container::network_mtu(&None, &network).map_err(container_err)?;
        if let Some(m) = self.conf.mtu {
            if m > bridge_mtu {
                return Err(CniError::new(
                    INVALID_CONFIG,
                    format!(
                        "field mtu: {m} is larger than network {}'s MTU on this host ({bridge_mtu})",
                        network.name
                    ),
                ));
            }
        }
        // The interface must not exist yet in the container (checked before anything is taken).
        let netns_path = self.env.netns.clone().expect("ADD has CNI_NETNS");
        let ifname = self.ifname().to_string();
        let exists = in_netns(&netns_path, move |dp| async move {
            Ok(dp.link(&ifname).await?.is_some())
        })?;
        if exists {
            return Err(CniError::new(
                IFNAME_EXISTS,
                format!(
                    "interface {} already exists in {}",
                    self.ifname(),
                    netns_path.display()
                ),
            ));
        }

        let mut dns = self.conf.dns.clone();
        let ip = match &self.conf.ipam_type {
            Some(plugin) => {
                let out = ipam::exec(plugin, &self.env, "ADD", None, None, self.stdin)?;
                let r = ipam::parse_result(plugin, &out).and_then(|r| {
                    ipam::check_in_subnet(r.address.addr(), &network)?;
                    Ok(r)
                });
                match r {
                    Ok(r) => {
                        if dns.is_none() {
                            dns = r.dns;
                        }
                        Some(r.address.addr())
                    }
                    Err(e) => {
                        let _ = self.ipam_del(None, None);
                        return Err(e);
                    }
                }
            }
            None => self.conf.requested_ip.or(self.env.arg_ip),
        };
        let spec = ContainerSpec {
            network: network.name.clone(),
            node: self.node.clone(),
            id,
            host_netns: None,
            container_netns: netns_path.clone(),
            ifname: self.ifname().to_string(),
            ip,
        };
        let options = AttachOptions {
            mac: self.conf.requested_mac.or(self.env.arg_mac),
            mtu: self.conf.mtu,
            cni: Some(self.attachment()),
            default_route: self.conf.default_route,
        };
        let mut attempt = 0;
        let attached = loop {
            match container::attach_container_with(&catalog, &spec, &options) {
                Err(ContainerError::Catalog(CatalogError::Contended(_))) if attempt < 5 => {
                    attempt += 1;
                }
                other => break other,
            }
        };
        let (endpoint, attachment) = match attached {
            Ok(a) => a,
            Err(e) => {
                let err = container_err(e);
                if let Err(undo) = self.ipam_del(None, None) {
                    return Err(CniError {
                        details: format!(
                            "{}; releasing the ipam address also failed: {undo}",
                            err.details
                        ),
                        ..err
                    });
                }
                return Err(err);
            }
        };
        let mtu = self.conf.mtu.unwrap_or(bridge_mtu);
        let host_ifname = attachment.host_ifname.clone();
        let host_mac = in_netns(&host_ns(), move |dp| async move {
            Ok(dp.link(&host_ifname).await?.and_then(|l| l.mac))
        })
        .ok()
        .flatten();
        let routes = attachment.default_route.into_iter().collect::<Vec<_>>();
        Ok(self.result(&network, &endpoint, host_mac, mtu, &routes, dns.as_ref()))
    }

    /// The ADD result. `default_via`: the gateways of the default routes ADD installed (none
    /// when the container had one already, or the netconf said `"defaultRoute": false`); the
    /// result lists exactly those (CNI spec 1.1.0, "Success": routes the attachment created).
    /// The interface's subnet route is the kernel's, implied by `ips[].address`.
    pub(super) fn result(
        &self,
        network: &Network,
        endpoint: &Endpoint,
        host_mac: Option<overlay_core::MacAddr>,
        mtu: u32,
        default_via: &[std::net::Ipv4Addr],
        dns: Option<&conf::Dns>,
    ) -> Value {
        let v11 = self.conf.cni_version == "1.1.0";
        let v04 = self.conf.cni_version == "0.4.0";
        let mut host = json!({ "name": endpoint.host_ifname.clone().unwrap_or_default() });
        if let Some(m) = host_mac {
            host["mac"] = m.to_string().into();
        }
        let mut cont = json!({
            "name": self.ifname(),
            "mac": endpoint.mac.to_string(),
            "sandbox": self.env.netns.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
        });
        if v11 {
            host["mtu"] = mtu.into();
            cont["mtu"] = mtu.into();
        }
        let address = Ipv4Net::new(endpoint.ip, network.subnet.prefix_len())
            .expect("prefix of a valid subnet");
        let mut ip = json!({
            "address": address.to_string(),
            "gateway": network.gateway.to_string(),
            "interface": 1,
        });
        if v04 {
            ip["version"] = "4".into();
        }
        let mut out = json!({
            "cniVersion": self.conf.cni_version,
            "interfaces": [host, cont],
            "ips": [ip],
            "routes": default_via
                .iter()
                .map(|gw| json!({ "dst": "0.0.0.0/0", "gw": gw.to_string() }))
                .collect::<Vec<_>>(),
        });
        out["dns"] = result_dns(dns, network).to_json();
        out
    }
}

/// The result's `dns` (CNI spec 1.1.0, "Success": `dns.nameservers` in priority order): the
/// netconf's (or the delegated IPAM's) when it names nameservers; otherwise the network's
/// gateway, where the node's agent answers DNS for service names and forwards the rest, with
/// whatever domain, search and options the netconf gave.
fn result_dns(given: Option<&conf::Dns>, network: &Network) -> conf::Dns {
    let mut dns = given.cloned().unwrap_or_default();
    if dns.nameservers.is_empty() {
        dns.nameservers = vec![network.gateway.to_string()];
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> Network {
        Network {
            name: "web".into(),
            subnet: "10.20.0.0/24".parse().unwrap(),
            gateway: "10.20.0.1".parse().unwrap(),
            vni: 4096,
            mtu: None,
            encrypted: false,
        }
    }

    #[test]
    fn the_gateway_is_the_nameserver_unless_the_netconf_names_one() {
        let net = network();
        assert_eq!(
            result_dns(None, &net).to_json(),
            json!({"nameservers": ["10.20.0.1"]})
        );
        let search_only = conf::Dns {
            search: vec!["svc.example".into()],
            ..Default::default()
        };
        assert_eq!(
            result_dns(Some(&search_only), &net).to_json(),
            json!({"nameservers": ["10.20.0.1"], "search": ["svc.example"]})
        );
        let given = conf::Dns {
            nameservers: vec!["10.0.0.53".into()],
            ..Default::default()
        };
        assert_eq!(
            result_dns(Some(&given), &net).to_json(),
            json!({"nameservers": ["10.0.0.53"]})
        );
    }
}
