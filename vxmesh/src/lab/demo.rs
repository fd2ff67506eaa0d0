//! `lab up --replicas N`: the routing mesh's demo service. N replicas (`vxmesh lab replica`,
//! an HTTP server answering with its name and the client address it saw) run in the first N
//! containers of the first network, taken round robin over the hosts (h1-c1, h2-c1, h3-c1,
//! h1-c3, …), each in its container's namespace and cgroup; the service `demo` balances
//! port [`DEMO_PORT`] over them and publishes it on [`DEMO_PORT`] of every host, so
//! `lab exec client -- curl http://HOST:8080/` goes through the mesh.
//!
//! Each replica's PID and start time are recorded in the lab's state; `lab down` stops a
//! replica only through a pidfd once the process is shown to be it (start time and a
//! `lab replica --name NAME` command line), and kills whatever is left in the containers'
//! cgroups.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ingress_lb::catalog::{HealthStatus, ServiceCatalog};
use ingress_lb::health::SocketSource;
use ingress_lb::service::{
    BackendSpec, HealthCheck, HealthSpec, Mode, PortSpec, Proto, PublishedPort, ServiceSpec,
};
use overlay_core::process::{Pidfd, ProcessIdentity};
use serde::{Deserialize, Serialize};

use super::{state_dir, LabContainer, LabError, LabState};

/// The demo service's name.
pub const DEMO_SERVICE: &str = "demo";
/// The replicas' port, and the port the service publishes on every host.
pub const DEMO_PORT: u16 = 8080;
/// The most replicas `--replicas` accepts (a lab is a demo on one machine; each replica is a
/// process and a backend).
pub const MAX_REPLICAS: u32 = 64;
/// How long `lab up` waits for the replicas to listen and for the mesh to answer.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// One replica of the demo service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabReplica {
    /// The name it answers with (its container's name).
    pub name: String,
    /// The container it runs in.
    pub container: String,
    /// The host of that container.
    pub host: String,
    /// Its container's address on the network.
    pub address: Ipv4Addr,
    /// The TCP port it listens on.
    pub port: u16,
    /// The PID of its process, when `lab up` started one.
    pub pid: Option<u32>,
    /// Start time (clock ticks after boot, /proc/PID/stat field 22) of the process `lab up`
    /// started: with the PID and the command line it proves a process is this replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// Filled by `lab status`.
    #[serde(default)]
    pub running: bool,
}

/// The demo service of a lab made with `--replicas`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabDemo {
    /// The service's name ([`DEMO_SERVICE`]).
    pub service: String,
    /// The network of its VIP and replicas.
    pub network: String,
    /// The service's port (= the replicas' port).
    pub port: u16,
    /// The port published on every host's underlay address.
    pub published: u16,
    /// Its replicas, one per container chosen.
    pub replicas: Vec<LabReplica>,
}

/// Is `args` the command line of the replica named `name`?
pub fn is_replica(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == "replica") && args.windows(2).any(|w| w[0] == "--name" && w[1] == name)
}

impl LabReplica {
    /// A pidfd on this replica's process, when the process now holding `pid` is the one `lab
    /// up` started (same start time, a `replica --name NAME` command line); `None` when it
    /// has exited or the PID now names another process.
    pub fn process(&self) -> Option<Pidfd> {
        let expected = ProcessIdentity {
            pid: self.pid?,
            start_time: self.start_time?,
        };
        Pidfd::open_if(expected, |args| is_replica(args, &self.name))
            .ok()
            .flatten()
            .filter(|p| !p.exited())
    }
}

/// How many containers `lab up` puts on the first network: containers go round robin over
/// the networks, so a host's containers 1, 1 + networks, 1 + 2 × networks, … are on it.
pub fn first_network_containers(hosts: u32, containers_per_host: u32, networks: u32) -> u32 {
    hosts * containers_per_host.div_ceil(networks.max(1))
}

/// Checks `--replicas`: 1 to [`MAX_REPLICAS`], and no more than the first network's
/// containers (one replica per container).
pub fn check_replicas(
    replicas: u32,
    hosts: u32,
    containers_per_host: u32,
    networks: u32,
) -> Result<(), LabError> {
    let invalid = |reason: String| LabError::Invalid {
        field: "replicas",
        value: replicas.to_string(),
        reason,
    };
    if !(1..=MAX_REPLICAS).contains(&replicas) {
        return Err(invalid(format!("must be between 1 and {MAX_REPLICAS}")));
    }
    let room = first_network_containers(hosts, containers_per_host, networks);
    if replicas > room {
        return Err(invalid(format!(
            "must not exceed the containers of net1 ({room}: {hosts} host(s) × {} of \
             --containers-per-host {containers_per_host} over --networks {networks}); raise \
             --containers-per-host or lower --networks",
            containers_per_host.div_ceil(networks.max(1))
        )));
    }
    Ok(())
}

/// The containers of `network` in round-robin order over the hosts: every host's first one,
/// then every host's second one, …
pub fn placement<'a>(state: &'a LabState, network: &str) -> Vec<&'a LabContainer> {
    let per_host: Vec<Vec<&LabContainer>> = state
        .hosts
        .iter()
        .map(|h| {
            state
                .containers
                .iter()
                .filter(|c| c.host == h.name && c.network == network)
                .collect()
        })
        .collect();
    let rounds = per_host.iter().map(Vec::len).max().unwrap_or(0);
    (0..rounds)
        .flat_map(|i| per_host.iter().filter_map(move |cs| cs.get(i).copied()))
        .collect()
}

/// Starts `replicas` replicas (`bin`: the vxmesh binary), creates the demo service over them
/// and waits until every replica is reported up and a request through every host's
/// published port is answered. The state is saved after each replica starts, so `lab down`
/// finds every one even when this fails part way.
pub fn start(
    state: &mut LabState,
    bin: &Path,
    replicas: u32,
    progress: &dyn Fn(&str),
) -> Result<(), LabError> {
    let network = state
        .networks
        .first()
        .map(|n| n.name.clone())
        .ok_or_else(|| LabError::step("starting the replicas", "the lab has no network"))?;
    let chosen: Vec<LabContainer> = placement(state, &network)
        .into_iter()
        .take(replicas as usize)
        .cloned()
        .collect();
    if chosen.len() < replicas as usize {
        return Err(LabError::step(
            "starting the replicas",
            format!("{network} has only {} containers", chosen.len()),
        ));
    }
    state.demo = Some(LabDemo {
        service: DEMO_SERVICE.into(),
        network: network.clone(),
        port: DEMO_PORT,
        published: DEMO_PORT,
        replicas: Vec::new(),
    });
    for c in &chosen {
        let (pid, start_time) = spawn(state, bin, c)?;
        let r = LabReplica {
            name: c.name.clone(),
            container: c.name.clone(),
            host: c.host.clone(),
            address: c.address,
            port: DEMO_PORT,
            pid: Some(pid),
            start_time,
            running: true,
        };
        state
            .demo
            .as_mut()
            .expect("set above")
            .replicas
            .push(r.clone());
        state.save()?;
        progress(&format!(
            "replica {} on {}: {}:{DEMO_PORT} (pid {pid})",
            r.name, r.host, r.address
        ));
    }
    let deadline = Instant::now() + READY_WITHIN;
    for r in &state.demo.as_ref().expect("set above").replicas {
        wait_listening(state, r, deadline)?;
    }

    let catalog = crate::open_catalog(&state.store)
        .map_err(|e| LabError::step("opening the lab store", e))?;
    let services = ServiceCatalog::of(&catalog);
    let svc = services
        .create(&ServiceSpec {
            name: DEMO_SERVICE.into(),
            network: network.clone(),
            ports: vec![PortSpec {
                port: DEMO_PORT,
                target_port: Some(DEMO_PORT),
                proto: Proto::Tcp,
            }],
            backends: chosen.iter().map(|c| BackendSpec::new(&c.name)).collect(),
            health: HealthSpec {
                check: HealthCheck::Http { path: "/".into() },
                ..HealthSpec::default()
            },
            publish: vec![PublishedPort {
                published: DEMO_PORT,
                port: DEMO_PORT,
                proto: Proto::Tcp,
            }],
            mode: Mode::Default,
            ..ServiceSpec::default()
        })
        .map_err(|e| LabError::step(format!("creating service {DEMO_SERVICE}"), e))?;
    progress(&format!(
        "service {DEMO_SERVICE}: VIP {}:{DEMO_PORT} on {network}, published on port \
         {DEMO_PORT} of every host, {} replicas (health check http:/)",
        svc.vip,
        chosen.len()
    ));
    wait_mesh(state, &services, deadline)?;
    progress(&format!(
        "every replica is up and every host's port {DEMO_PORT} answers the client"
    ));
    Ok(())
}

/// Starts the replica of container `c` in its namespace and cgroup, in a process group of
/// its own (a Ctrl-C meant for `lab up` does not reach it), logging to
/// `replica-NAME.log` in the lab's state directory. Returns its PID and start time.
fn spawn(state: &LabState, bin: &Path, c: &LabContainer) -> Result<(u32, Option<u64>), LabError> {
    let (log, err) =
        super::up::log_files(&state_dir(&state.prefix).join(format!("replica-{}.log", c.name)))?;
    let mut cmd = super::exec::command_in(state, &c.name, &bin.to_string_lossy(), false)?;
    cmd.args(["lab", "replica", "--name", &c.name, "--port"])
        .arg(DEMO_PORT.to_string())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0);
    let child = cmd.spawn().map_err(|source| LabError::Io {
        context: format!("starting the replica of {} ({})", c.name, bin.display()),
        source,
    })?;
    let start_time = ProcessIdentity::of(child.id()).ok().map(|i| i.start_time);
    Ok((child.id(), start_time))
}

/// Waits until replica `r`'s process, inside its container's namespace, listens on its port
/// (read from /proc/PID/net/tcp once /proc/PID/ns/net is the container's namespace).
fn wait_listening(state: &LabState, r: &LabReplica, deadline: Instant) -> Result<(), LabError> {
    let ns = state
        .namespace_of(&r.container)
        .ok_or_else(|| LabError::UnknownMember(r.container.clone()))?;
    let ns_meta =
        std::fs::metadata(overlay_core::netns::path(ns)).map_err(|source| LabError::Io {
            context: format!("reading namespace {ns}"),
            source,
        })?;
    let pid = r.pid.unwrap_or_default();
    loop {
        let inside = std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .is_ok_and(|m| m.ino() == ns_meta.ino() && m.dev() == ns_meta.dev());
        if inside
            && std::fs::read_to_string(format!("/proc/{pid}/net/tcp"))
                .is_ok_and(|t| listens_on(&t, r.port))
        {
            return Ok(());
        }
        if r.process().is_none() || Instant::now() > deadline {
            let log = state_dir(&state.prefix).join(format!("replica-{}.log", r.name));
            return Err(LabError::step(
                format!("starting replica {}", r.name),
                format!(
                    "it does not listen on port {} ({}): {}",
                    r.port,
                    if r.process().is_none() {
                        "it exited"
                    } else {
                        "timed out"
                    },
                    std::fs::read_to_string(&log).unwrap_or_default().trim()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether /proc/net/tcp text `table` has a socket listening (state 0A) on `port`.
fn listens_on(table: &str, port: u16) -> bool {
    let want = format!(":{port:04X}");
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
    })
}

/// Waits until every replica's health report is up and a GET through every host's
/// published port, from the lab's outside client, is answered.
fn wait_mesh(
    state: &LabState,
    services: &ServiceCatalog,
    deadline: Instant,
) -> Result<(), LabError> {
    let demo = state.demo.as_ref().expect("the demo was started");
    let client = state
        .client
        .as_ref()
        .ok_or_else(|| LabError::step("checking the mesh", "the lab has no client"))?;
    let sockets = SocketSource::netns(&overlay_core::netns::path(&client.namespace))
        .map_err(|e| LabError::step("opening the client's namespace", e))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| LabError::Io {
            context: "starting a runtime".into(),
            source,
        })?;
    let check = HealthCheck::Http { path: "/".into() };
    loop {
        let snap = services
            .snapshot()
            .map_err(|e| LabError::step("reading the store", e))?;
        let not_up: Vec<&str> = demo
            .replicas
            .iter()
            .filter(|r| {
                snap.health
                    .get(&(demo.service.clone(), r.container.clone()))
                    .is_none_or(|h| h.status != HealthStatus::Up)
            })
            .map(|r| r.name.as_str())
            .collect();
        let mut silent = Vec::new();
        if not_up.is_empty() {
            for h in &state.hosts {
                let addr = SocketAddrV4::new(h.address, demo.published);
                let r = rt.block_on(ingress_lb::health::check(
                    &sockets,
                    addr,
                    &check,
                    Duration::from_secs(1),
                ));
                if !r.ok {
                    silent.push(format!("{addr} ({})", r.detail));
                }
            }
            if silent.is_empty() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(LabError::step(
                format!("waiting for service {}", demo.service),
                if not_up.is_empty() {
                    format!(
                        "no answer through {} (see the agent logs in {})",
                        silent.join(", "),
                        state_dir(&state.prefix).display()
                    )
                } else {
                    format!("replica(s) not reported up: {}", not_up.join(", "))
                },
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_first_networks_containers() {
        assert_eq!(first_network_containers(3, 2, 2), 3);
        assert_eq!(first_network_containers(3, 2, 1), 6);
        assert_eq!(first_network_containers(3, 3, 2), 6);
        assert_eq!(first_network_containers(2, 0, 1), 0);
    }

    #[test]
    fn refuses_bad_replica_counts_naming_the_field() {
        for (n, hosts, cph, nets) in [(0, 3, 2, 1), (65, 50, 50, 1), (4, 3, 2, 2)] {
            let e = check_replicas(n, hosts, cph, nets).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid replicas '{n}'")), "{e}");
        }
        assert!(check_replicas(6, 3, 2, 1).is_ok());
        assert!(check_replicas(3, 3, 2, 2).is_ok());
    }

    #[test]
    fn places_replicas_round_robin_over_the_hosts() {
        let c = |name: &str, host: &str, net: &str| {
            serde_json::json!({"name": name, "host": host, "namespace": name, "network": net,
                "interface": "eth0", "address": "10.10.1.2", "mac": "0a:58:0a:0a:01:02"})
        };
        let h = |name: &str| {
            serde_json::json!({"name": name, "namespace": name, "interface": "eth0",
                "address": "10.99.0.1", "agent_pid": null})
        };
        let state: LabState = serde_json::from_value(serde_json::json!({
            "prefix": "p", "store": "/x", "switch_namespace": "p-sw",
            "underlay_subnet": "10.99.0.0/24", "hosts": [h("h1"), h("h2")], "networks": [],
            "containers": [c("h1-c1", "h1", "net1"), c("h1-c2", "h1", "net2"),
                c("h1-c3", "h1", "net1"), c("h2-c1", "h2", "net1"), c("h2-c2", "h2", "net2")]
        }))
        .unwrap();
        let names: Vec<&str> = placement(&state, "net1")
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["h1-c1", "h2-c1", "h1-c3"]);
    }

    #[test]
    fn reads_listening_sockets_of_proc_net_tcp() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt\n\
                 \x20  0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000\n\
                 \x20  1: 0201010A:0050 FA00630A:A0B2 01 00000000:00000000 00:00000000 00000000\n";
        assert!(listens_on(t, 8080));
        assert!(!listens_on(t, 80), "established, not listening");
        assert!(!listens_on(t, 9090));
    }

    #[test]
    fn recognises_a_replicas_command_line() {
        let args: Vec<String> = [
            "vxmesh", "lab", "replica", "--name", "h1-c1", "--port", "80",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert!(is_replica(&args, "h1-c1"));
        assert!(!is_replica(&args, "h2-c1"));
        assert!(!is_replica(&args[..2], "h1-c1"));
    }
}
