//! The agent's service half: loads the node's eBPF datapath when the store holds a service on
//! a network this node carries, keeps its programs attached (socket programs on the
//! `--cgroup`, tc programs on the host-side veths of local attachments) and its maps equal to
//! the store (ingress-lb's reconciler), health-checks the backends on this node and reports
//! their state on the agent's heartbeat lease. When the last service goes, every program,
//! map and pin it made is removed. On exit nothing is removed: the pinned links keep the
//! datapath forwarding, and the next agent takes it over.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use ingress_lb::catalog::{HealthStatus, ServiceCatalog, ServiceError};
use ingress_lb::health::{HealthRunner, SocketSource, State, Transition};
use ingress_lb::reconcile::{
    apply_maps, apply_mesh, AttachTargets, Attacher, Change, DesiredLb, LbReport,
};
use overlay_core::netns::ifindex;
use vxmesh_ebpf::{Datapath, DatapathConfig, NodePins};

use crate::heartbeat::LeaseHandle;

/// Where the service half attaches and pins.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The cgroup v2 directory the socket programs go on (`--cgroup`): on a real host the
    /// cgroup2 root, in the lab one the lab made. `None`: no socket programs (only the tc
    /// path balances).
    pub cgroup: Option<PathBuf>,
    /// Pin root: the node's pins go in `<pin_root>/<node>/`.
    pub pin_root: PathBuf,
    /// The network namespace the host-side veths are in (the agent's own).
    pub netns: PathBuf,
    /// Entries of the connection table (`vx_ct`, LRU; a translated flow takes two). Applies
    /// when the map is created: a pinned table keeps its size until the datapath is removed.
    pub conntrack_entries: u32,
}

/// A backend checked by this agent: (service, endpoint).
type Key = (String, String);

/// The service half of one agent.
pub struct ServicePlane {
    node: String,
    config: ServiceConfig,
    catalog: ServiceCatalog,
    dp: Option<Datapath>,
    attacher: Attacher,
    health: HealthRunner<Key>,
    problems: Vec<String>,
    /// Host-side veths the tc programs went on in the last pass.
    nat_veths: BTreeSet<String>,
}

impl ServicePlane {
    /// Starts the health reporting task on the current tokio runtime. Errors: called outside
    /// a runtime.
    pub fn start(
        node: String,
        config: ServiceConfig,
        catalog: ServiceCatalog,
        lease: LeaseHandle,
    ) -> Result<Self, String> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        // The agent lives in the host's network namespace: sockets made here reach the
        // backends through the host's bridges.
        let health = HealthRunner::new(SocketSource::current(), tx).map_err(|e| e.to_string())?;
        tokio::spawn(tracing::Instrument::in_current_span(report_health(
            catalog.clone(),
            node.clone(),
            lease,
            rx,
        )));
        Ok(ServicePlane {
            node,
            config,
            catalog,
            dp: None,
            attacher: Attacher::new(),
            health,
            problems: Vec::new(),
            nat_veths: BTreeSet::new(),
        })
    }

    /// One pass: reads the services, sets the health targets, and makes the datapath follow
    /// (load, attach, fill the maps; or remove it all when no service is left). `carried`:
    /// the networks this node builds.
    pub async fn pass(&mut self, carried: &BTreeSet<String>) -> LbReport {
        let mut report = LbReport::default();
        let snap = {
            let c = self.catalog.clone();
            match tokio::task::spawn_blocking(move || c.snapshot())
                .await
                .expect("service snapshot task panicked")
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("reading the services: {e}");
                    return report;
                }
            }
        };
        let targets = snap.health_targets(&self.node).into_iter().filter(|t| {
            snap.services
                .get(&t.key.0)
                .is_some_and(|s| carried.contains(&s.network))
        });
        self.health.set_targets(targets);
        let want = DesiredLb::compute(&snap, &self.node, |n| carried.contains(n));
        self.nat_veths = want.lxc_ifnames.clone();
        if want.problems != self.problems {
            for p in &want.problems {
                tracing::warn!(problem = %p, "service not programmed");
            }
            self.problems = want.problems.clone();
        }
        if want.is_empty() {
            self.remove_all(&mut report);
            return report;
        }
        if self.dp.is_none() {
            let mut config = DatapathConfig::new(&self.node);
            config.pin_root = self.config.pin_root.clone();
            config.conntrack_entries = self.config.conntrack_entries;
            match Datapath::load(config) {
                Ok(dp) => {
                    report.changes.push(Change {
                        action: "load datapath",
                        object: dp.pins().node_dir.display().to_string(),
                    });
                    self.dp = Some(dp);
                    self.attacher = Attacher::new();
                }
                Err(e) => {
                    report.errors.push(ingress_lb::reconcile::LbError::Map {
                        what: "loading the datapath".into(),
                        source: e,
                    });
                    return report;
                }
            }
        }
        let dp = self.dp.as_mut().expect("loaded above");
        let targets = AttachTargets {
            cgroup: self.config.cgroup.clone(),
            netns: self.config.netns.clone(),
            lxc: want
                .lxc_ifnames
                .iter()
                .filter_map(|name| Some((name.clone(), ifindex(name)?)))
                .collect(),
            underlay: want.mesh.underlay.and_then(interface_with),
            overlay: want
                .mesh
                .overlay_ifnames
                .iter()
                .filter_map(|name| Some((name.clone(), ifindex(name)?)))
                .collect(),
        };
        // Maps first: a veth attached next sees complete tables.
        report.extend(apply_maps(&want, dp.maps_mut()));
        report.extend(apply_mesh(
            &want.mesh,
            dp.maps_mut(),
            targets.underlay.as_ref().map(|u| u.1),
            ifindex,
        ));
        report.extend(self.attacher.apply(dp, &targets));
        report
    }

    /// The host-side veths whose tc programs (the services' NAT) the last pass wanted: a
    /// frame delivered to such a container must pass the veth's egress.
    pub fn nat_veths(&self) -> &BTreeSet<String> {
        &self.nat_veths
    }

    /// No service left: drop the datapath and remove every pin of this node (links first, so
    /// every program detaches; then programs and maps).
    fn remove_all(&mut self, report: &mut LbReport) {
        let had = self.dp.take().is_some();
        let Ok(pins) = NodePins::new(&self.config.pin_root, &self.node) else {
            return;
        };
        if !had && !pins.node_dir.exists() {
            return;
        }
        self.attacher = Attacher::new();
        match vxmesh_ebpf::teardown(&self.config.pin_root, &self.node) {
            Ok(removed) => report.changes.push(Change {
                action: "remove datapath",
                object: format!(
                    "{} ({} pins: links, programs, maps)",
                    pins.node_dir.display(),
                    removed.len()
                ),
            }),
            Err(e) => report.errors.push(ingress_lb::reconcile::LbError::Map {
                what: "removing the datapath".into(),
                source: e,
            }),
        }
    }
}

/// The interface (name, index) of this thread's network namespace that holds IPv4 address
/// `addr`: the host's underlay device. Read with getifaddrs(3).
pub(crate) fn interface_with(addr: std::net::Ipv4Addr) -> Option<(String, u32)> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills list with a linked list freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr of family sa_family.
        if i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: an AF_INET address is a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        if std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)) == addr {
            // SAFETY: ifa_name is a NUL-terminated interface name.
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
                .to_string_lossy()
                .into_owned();
            found = ifindex(&name).map(|i| (name, i));
            break;
        }
    }
    // SAFETY: list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// Writes each health transition to the store on the heartbeat's lease (so the reports go
/// with the agent), and writes them all again when the lease changes (the heartbeat had to
/// announce the agent anew). A report about a backend or service that is gone is dropped.
async fn report_health(
    catalog: ServiceCatalog,
    node: String,
    lease: LeaseHandle,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Transition<Key>>,
) {
    let mut states: HashMap<Key, (HealthStatus, String)> = HashMap::new();
    let mut pending: BTreeSet<Key> = BTreeSet::new();
    let mut written_on = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            t = rx.recv() => {
                let Some(t) = t else { return };
                let status = match t.state {
                    State::Up => HealthStatus::Up,
                    State::Down => HealthStatus::Down,
                    State::Unknown => continue,
                };
                states.insert(t.key.clone(), (status, t.detail));
                pending.insert(t.key);
            }
            _ = tick.tick() => {}
        }
        let Some(id) = lease.get() else { continue };
        if written_on != Some(id) {
            pending.extend(states.keys().cloned());
            written_on = Some(id);
        }
        for key in std::mem::take(&mut pending) {
            let Some((status, detail)) = states.get(&key).cloned() else {
                continue;
            };
            let (c, n, k) = (catalog.clone(), node.clone(), key.clone());
            let r = tokio::task::spawn_blocking(move || {
                c.report_health(&k.0, &k.1, &n, status, &detail, Some(id))
            })
            .await
            .expect("health report task panicked");
            match r {
                Ok(()) => {
                    tracing::debug!(service = %key.0, endpoint = %key.1, ?status, "reported health")
                }
                // The store is busy or unreachable: try again.
                Err(e @ (ServiceError::Store(_) | ServiceError::Contended(_))) => {
                    tracing::warn!(service = %key.0, endpoint = %key.1, "reporting health: {e}");
                    pending.insert(key);
                }
                // The backend, its service or its network is gone, or moved to another node.
                Err(e) => {
                    tracing::debug!(service = %key.0, endpoint = %key.1, "not reporting health: {e}");
                    states.remove(&key);
                }
            }
        }
    }
}
