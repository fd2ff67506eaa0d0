//! The names the agent answers for, built from ingress-lb's service snapshot (one store
//! revision): each service's VIP and healthy backends, the networks and their gateways, and
//! which networks each local container is attached to.
//!
//! Names (Docker Swarm's convention), matched without regard to ASCII case:
//! - `NAME` and `NAME.NETWORK`: the VIP of service NAME (on network NETWORK);
//! - `tasks.NAME` and `tasks.NAME.NETWORK`: the addresses of its backends that are up, as the
//!   datapath sees them ([`BackendStatus::Up`]: endpoint present, node alive, health check
//!   passing, not draining).
//!
//! A service is visible only to a container attached to its network. Names that are
//! vxmesh's (a single label, a name ending in `.NETWORK` of any network in the store, or a
//! service's own name) are answered here, with NXDOMAIN when not visible; every other name goes
//! to the host's upstream resolvers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ingress_lb::catalog::{BackendStatus, ServiceSnapshot};
use overlay_core::store::Revision;

/// The prefix of the names of a service's backends (`tasks.NAME`), as in Docker Swarm.
pub const TASKS: &str = "tasks.";

/// What a name is, for the asking container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A vxmesh name that exists for the asker, with its IPv4 addresses (sorted; empty when a
    /// service has no backend up: the name exists, without addresses).
    Found(Vec<Ipv4Addr>),
    /// A vxmesh name that does not exist for the asker (no such service, or its network is
    /// not one the asker is attached to).
    NxDomain,
    /// Not a vxmesh name: for the upstream resolvers.
    Upstream,
}

/// One service, as DNS needs it.
#[derive(Debug, Clone)]
struct ServiceEntry {
    network: String,
    vip: Ipv4Addr,
    /// Addresses of its backends that are up, sorted.
    tasks: Vec<Ipv4Addr>,
}

/// The names at one store revision. Cheap to share (`Arc`); rebuilt on each store change.
#[derive(Debug, Clone, Default)]
pub struct NameView {
    /// The store revision it was read at.
    pub revision: Revision,
    /// Networks by name: their gateway (the address the agent answers DNS on).
    networks: BTreeMap<String, Ipv4Addr>,
    /// Lowercase network name → network name.
    network_names: BTreeMap<String, String>,
    /// Services by lowercase name (two services may differ only in case).
    services: BTreeMap<String, Vec<ServiceEntry>>,
    /// (network, address) → (node, CNI container id) of the endpoint that has it.
    endpoints: HashMap<(String, Ipv4Addr), (String, Option<String>)>,
    /// (node, CNI container id) → the networks that container is attached to.
    containers: HashMap<(String, String), BTreeSet<String>>,
}

impl NameView {
    /// The view of `snap`. Orphaned services (network removed) are left out.
    pub fn build(snap: &ServiceSnapshot) -> NameView {
        let mut view = NameView {
            revision: snap.revision,
            ..Default::default()
        };
        for n in snap.networks.values() {
            view.networks.insert(n.name.clone(), n.gateway);
            view.network_names
                .insert(n.name.to_ascii_lowercase(), n.name.clone());
        }
        for svc in snap.services.values() {
            let mut tasks: Vec<Ipv4Addr> = snap
                .backends(svc)
                .iter()
                .filter(|b| b.status == BackendStatus::Up)
                .filter_map(|b| b.endpoint.map(|e| e.ip))
                .collect();
            tasks.sort();
            tasks.dedup();
            view.services
                .entry(svc.name.to_ascii_lowercase())
                .or_default()
                .push(ServiceEntry {
                    network: svc.network.clone(),
                    vip: svc.vip,
                    tasks,
                });
        }
        for ((network, _), e) in &snap.endpoints {
            let container = e.cni.as_ref().map(|c| c.container_id.clone());
            if let Some(id) = &container {
                view.containers
                    .entry((e.node.clone(), id.clone()))
                    .or_default()
                    .insert(network.clone());
            }
            view.endpoints
                .insert((network.clone(), e.ip), (e.node.clone(), container));
        }
        view
    }

    /// Every network in the store with its gateway.
    pub fn gateways(&self) -> &BTreeMap<String, Ipv4Addr> {
        &self.networks
    }

    /// The networks a query that reached `network`'s gateway from `src` may see: that network,
    /// and every other network the same container is attached to (its endpoints made by the
    /// CNI plugin with the same container id, on the same node).
    pub fn visible_networks(&self, network: &str, src: Ipv4Addr) -> BTreeSet<String> {
        let mut out = BTreeSet::from([network.to_string()]);
        if let Some((node, Some(id))) = self.endpoints.get(&(network.to_string(), src)) {
            if let Some(nets) = self.containers.get(&(node.clone(), id.clone())) {
                out.extend(nets.iter().cloned());
            }
        }
        out
    }

    /// What `name` (lowercase, dot-separated labels, no trailing dot; see [`dotted`]) is for
    /// a container that sees `visible` networks.
    pub fn resolve(&self, name: &str, visible: &BTreeSet<String>) -> Answer {
        if name.is_empty() {
            return Answer::Upstream;
        }
        if let Some(addrs) = self.lookup(name, visible, |s| vec![s.vip]) {
            return Answer::Found(addrs);
        }
        if let Some(rest) = name.strip_prefix(TASKS) {
            if let Some(addrs) = self.lookup(rest, visible, |s| s.tasks.clone()) {
                return Answer::Found(addrs);
            }
        }
        if self.is_ours(name) {
            Answer::NxDomain
        } else {
            Answer::Upstream
        }
    }

    /// `NAME` or `NAME.NETWORK` among the services on `visible` networks: the addresses `pick`
    /// gives for each match (sorted, no repeats); `None` when nothing matches.
    fn lookup(
        &self,
        name: &str,
        visible: &BTreeSet<String>,
        pick: impl Fn(&ServiceEntry) -> Vec<Ipv4Addr>,
    ) -> Option<Vec<Ipv4Addr>> {
        let mut found: Option<Vec<Ipv4Addr>> = None;
        let mut take = |s: &ServiceEntry| found.get_or_insert_with(Vec::new).extend(pick(s));
        for s in self.services.get(name).into_iter().flatten() {
            if visible.contains(&s.network) {
                take(s);
            }
        }
        for (lower, network) in &self.network_names {
            let Some(service) = name
                .strip_suffix(lower.as_str())
                .and_then(|n| n.strip_suffix('.'))
            else {
                continue;
            };
            if !visible.contains(network) {
                continue;
            }
            for s in self.services.get(service).into_iter().flatten() {
                if &s.network == network {
                    take(s);
                }
            }
        }
        found.map(|mut v| {
            v.sort();
            v.dedup();
            v
        })
    }

    /// Is `name` in vxmesh's name space (answered here, never forwarded)? A single label
    /// (container and service names are never public DNS names), a name under a network of
    /// the store (`….NETWORK`), or a service's own name (service names may hold dots); each
    /// also with `tasks.` before it.
    fn is_ours(&self, name: &str) -> bool {
        [Some(name), name.strip_prefix(TASKS)]
            .into_iter()
            .flatten()
            .any(|n| {
                !n.contains('.')
                    || self.services.contains_key(n)
                    || self.network_names.keys().any(|net| {
                        n.strip_suffix(net.as_str())
                            .is_some_and(|s| s.ends_with('.'))
                    })
            })
    }
}

/// A query name as [`NameView::resolve`] takes it: its labels in ASCII lowercase joined by
/// dots, without the root. `None` when a label holds a byte that no vxmesh name has (only
/// letters, digits, `-` and `_` are: a dot inside a label, or any other byte, cannot match):
/// such a name is not vxmesh's.
pub fn dotted<'a>(labels: impl Iterator<Item = &'a [u8]>) -> Option<String> {
    let mut out = String::new();
    for label in labels {
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return None;
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingress_lb::catalog::{HealthRecord, HealthStatus};
    use ingress_lb::service::{Backend, BackendState, HealthCheck, HealthSpec, Service};
    use overlay_core::model::{CniAttachment, Endpoint, Network};

    fn net(name: &str, subnet: &str, gateway: &str) -> Network {
        Network {
            name: name.into(),
            subnet: subnet.parse().unwrap(),
            gateway: gateway.parse().unwrap(),
            vni: 4096,
            mtu: None,
            encrypted: false,
        }
    }

    fn ep(network: &str, id: &str, node: &str, ip: &str, container: Option<&str>) -> Endpoint {
        Endpoint {
            id: id.into(),
            network: network.into(),
            node: node.into(),
            ip: ip.parse().unwrap(),
            mac: "0a:58:00:00:00:01".parse().unwrap(),
            host_ifname: None,
            cni: container.map(|c| CniAttachment {
                container_id: c.into(),
                ifname: "eth0".into(),
            }),
            mtu: None,
        }
    }

    fn svc(name: &str, network: &str, vip: &str, backends: &[(&str, BackendState)]) -> Service {
        Service {
            name: name.into(),
            network: network.into(),
            vip: vip.parse().unwrap(),
            backends: backends
                .iter()
                .enumerate()
                .map(|(i, (e, state))| Backend {
                    endpoint: (*e).into(),
                    id: i as u32 + 1,
                    weight: 1,
                    state: *state,
                })
                .collect(),
            health: HealthSpec {
                check: HealthCheck::Tcp,
                ..HealthSpec::default()
            },
            network_revision: 1,
            id: 1,
            ports: vec![],
            affinity: Default::default(),
            maglev_table_size: None,
            publish: vec![],
            mode: Default::default(),
        }
    }

    /// net1 (h1-c1 up, h2-c1 down, h1-c3 draining, c9 gone), net2, and a container on both.
    fn snapshot() -> ServiceSnapshot {
        let mut s = ServiceSnapshot {
            revision: 7,
            ..Default::default()
        };
        for n in [
            net("net1", "10.10.1.0/24", "10.10.1.1"),
            net("net2", "10.10.2.0/24", "10.10.2.1"),
        ] {
            s.networks.insert(n.name.clone(), n);
        }
        for e in [
            ep("net1", "h1-c1", "h1", "10.10.1.2", None),
            ep("net1", "h2-c1", "h2", "10.10.1.3", None),
            ep("net1", "h1-c3", "h1", "10.10.1.4", None),
            ep("net2", "h1-c2", "h1", "10.10.2.2", None),
            ep("net1", "multi-a", "h1", "10.10.1.9", Some("ctr")),
            ep("net2", "multi-b", "h1", "10.10.2.9", Some("ctr")),
        ] {
            s.endpoints.insert((e.network.clone(), e.id.clone()), e);
        }
        s.live_agents = ["h1".to_string(), "h2".to_string()].into();
        use BackendState::*;
        let web = svc(
            "web",
            "net1",
            "10.10.1.100",
            &[
                ("h1-c1", Active),
                ("h2-c1", Active),
                ("h1-c3", Draining),
                ("c9", Active),
            ],
        );
        let api = svc("Api.v2", "net2", "10.10.2.100", &[("h1-c2", Active)]);
        for (service, endpoint, node, status) in [
            ("web", "h1-c1", "h1", HealthStatus::Up),
            ("web", "h2-c1", "h2", HealthStatus::Down),
            ("web", "h1-c3", "h1", HealthStatus::Up),
            ("Api.v2", "h1-c2", "h1", HealthStatus::Up),
        ] {
            s.health.insert(
                (service.into(), endpoint.into()),
                HealthRecord {
                    node: node.into(),
                    status,
                    detail: String::new(),
                    since_ms: 0,
                },
            );
        }
        for v in [web, api] {
            s.services.insert(v.name.clone(), v);
        }
        s
    }

    fn on(nets: &[&str]) -> BTreeSet<String> {
        nets.iter().map(|n| n.to_string()).collect()
    }

    fn found(ips: &[&str]) -> Answer {
        Answer::Found(ips.iter().map(|i| i.parse().unwrap()).collect())
    }

    #[test]
    fn vip_and_tasks_on_the_network() {
        let v = NameView::build(&snapshot());
        let net1 = on(&["net1"]);
        assert_eq!(v.resolve("web", &net1), found(&["10.10.1.100"]));
        assert_eq!(v.resolve("web.net1", &net1), found(&["10.10.1.100"]));
        // Only the backend that is up: not the one down, draining, or whose endpoint is gone.
        assert_eq!(v.resolve("tasks.web", &net1), found(&["10.10.1.2"]));
        assert_eq!(v.resolve("tasks.web.net1", &net1), found(&["10.10.1.2"]));
        assert_eq!(v.revision, 7);
    }

    #[test]
    fn other_networks_get_nxdomain_never_upstream() {
        let v = NameView::build(&snapshot());
        let net2 = on(&["net2"]);
        for name in [
            "web",
            "web.net1",
            "tasks.web",
            "tasks.web.net1",
            "web.net2",
            "nope",
        ] {
            assert_eq!(v.resolve(name, &net2), Answer::NxDomain, "{name}");
        }
        assert_eq!(
            v.resolve("web.net1", &on(&["net1"])),
            found(&["10.10.1.100"])
        );
        assert_eq!(v.resolve("web.net2", &on(&["net1"])), Answer::NxDomain);
    }

    #[test]
    fn names_with_dots_and_case() {
        let v = NameView::build(&snapshot());
        let net2 = on(&["net2"]);
        assert_eq!(v.resolve("api.v2", &net2), found(&["10.10.2.100"]));
        assert_eq!(v.resolve("api.v2.net2", &net2), found(&["10.10.2.100"]));
        assert_eq!(v.resolve("tasks.api.v2", &net2), found(&["10.10.2.2"]));
        assert_eq!(v.resolve("api.v2", &on(&["net1"])), Answer::NxDomain);
        assert_eq!(
            dotted([&b"WeB"[..], b"Net1"].into_iter()).as_deref(),
            Some("web.net1")
        );
        assert_eq!(dotted([&b"a.b"[..]].into_iter()), None);
        assert_eq!(dotted(std::iter::empty()).as_deref(), Some(""));
    }

    #[test]
    fn other_names_go_upstream() {
        let v = NameView::build(&snapshot());
        let net1 = on(&["net1"]);
        for name in ["example.com", "tasks.example.com", "web.example", ""] {
            assert_eq!(v.resolve(name, &net1), Answer::Upstream, "{name}");
        }
        assert_eq!(v.resolve("anything.net2", &net1), Answer::NxDomain);
        assert_eq!(v.resolve("tasks", &net1), Answer::NxDomain);
    }

    #[test]
    fn a_container_on_two_networks_sees_both() {
        let v = NameView::build(&snapshot());
        let both = v.visible_networks("net1", "10.10.1.9".parse().unwrap());
        assert_eq!(both, on(&["net1", "net2"]));
        assert_eq!(v.resolve("api.v2", &both), found(&["10.10.2.100"]));
        assert_eq!(v.resolve("web", &both), found(&["10.10.1.100"]));
        // Without a container id, or from an unknown address: only the listener's network.
        assert_eq!(
            v.visible_networks("net1", "10.10.1.2".parse().unwrap()),
            on(&["net1"])
        );
        assert_eq!(
            v.visible_networks("net2", "10.10.2.77".parse().unwrap()),
            on(&["net2"])
        );
    }

    #[test]
    fn a_service_without_backends_up_has_a_name_and_no_address() {
        let mut s = snapshot();
        s.live_agents.clear();
        let v = NameView::build(&s);
        assert_eq!(
            v.resolve("tasks.web", &on(&["net1"])),
            Answer::Found(vec![])
        );
        assert_eq!(v.resolve("web", &on(&["net1"])), found(&["10.10.1.100"]));
    }
}
