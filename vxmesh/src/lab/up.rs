//! `lab up`: build the switch, the hosts, their agents, the networks and the containers.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use overlay_core::container::{attach_container, ContainerSpec};
use overlay_core::dataplane::{Dataplane, DataplaneError};
use overlay_core::netns;
use overlay_core::process::ProcessIdentity;
use overlay_core::NetworkSpec;

use super::{
    check_prefix, state_dir, LabContainer, LabError, LabHost, LabNetwork, LabState, CONTAINER_IF,
    SWITCH_BRIDGE, UNDERLAY_IF,
};

/// What to build.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Names everything the lab makes (`PREFIX-h1`, `PREFIX-h1-c1`, ...); see
    /// [`super::check_prefix`].
    pub prefix: String,
    /// Simulated hosts, 1 to 50.
    pub hosts: u32,
    /// Containers on each host, 0 to 50, spread over the networks.
    pub containers_per_host: u32,
    /// Overlay networks (`net1`, `net2`, ...), 1 to 50.
    pub networks: u32,
    /// How many of the networks (net1, net2, … first) are encrypted with WireGuard.
    pub encrypted_networks: u32,
    /// MTU of the underlay links (the overlay gets 50 less).
    pub underlay_mtu: u32,
    /// The `vxmesh` binary each host's agent (and each demo replica) runs.
    pub agent_bin: PathBuf,
    /// `--replicas N`: the demo service published on port 8080 of every host, with N
    /// replicas in the first network's containers ([`super::demo`]); `None`: no service.
    pub replicas: Option<u32>,
    /// Keep the lab's state in a 3-member etcd cluster of its own instead of an SQLite file.
    pub etcd: bool,
    /// The datapath every host's agent runs (`agent --datapath`).
    pub datapath: crate::fast_plane::DatapathMode,
}

/// The underlay: host N gets 10.99.0.N/24.
const UNDERLAY: [u8; 3] = [10, 99, 0];

fn invalid(field: &'static str, value: impl ToString, reason: &str) -> LabError {
    LabError::Invalid {
        field,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn check(spec: &LabSpec) -> Result<(), LabError> {
    check_prefix(&spec.prefix)?;
    if !(1..=50).contains(&spec.hosts) {
        return Err(invalid("hosts", spec.hosts, "must be between 1 and 50"));
    }
    if spec.containers_per_host > 50 {
        return Err(invalid(
            "containers-per-host",
            spec.containers_per_host,
            "must be between 0 and 50",
        ));
    }
    if !(1..=50).contains(&spec.networks) {
        return Err(invalid(
            "networks",
            spec.networks,
            "must be between 1 and 50",
        ));
    }
    if spec.encrypted_networks > spec.networks {
        return Err(invalid(
            "encrypted-networks",
            spec.encrypted_networks,
            "must not exceed --networks",
        ));
    }
    if !(1280..=9000).contains(&spec.underlay_mtu) {
        return Err(invalid(
            "mtu",
            spec.underlay_mtu,
            "must be between 1280 and 9000",
        ));
    }
    if let Some(n) = spec.replicas {
        super::demo::check_replicas(n, spec.hosts, spec.containers_per_host, spec.networks)?;
    }
    Ok(())
}

/// Builds the lab. On any failure everything built so far is removed again.
pub fn up(spec: &LabSpec, progress: &dyn Fn(&str)) -> Result<LabState, LabError> {
    check(spec)?;
    if state_dir(&spec.prefix).join("state.json").exists()
        || netns::exists(&format!("{}-sw", spec.prefix))
    {
        return Err(LabError::AlreadyUp(spec.prefix.clone()));
    }
    match build(spec, progress) {
        Ok(state) => Ok(state),
        Err(e) => {
            progress(&format!("lab up failed ({e}); removing what was built"));
            if let Err(down) = super::down(&spec.prefix) {
                progress(&format!("cleanup after the failure: {down}"));
            }
            Err(e)
        }
    }
}

pub(super) fn ns_step<T: Send + 'static, Fut>(
    ns: &str,
    what: String,
    f: impl FnOnce() -> Fut + Send + 'static,
) -> Result<T, LabError>
where
    Fut: std::future::Future<Output = Result<T, DataplaneError>>,
{
    match netns::block_on_in(&netns::path(ns), f) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(LabError::step(what, e)),
        Err(e) => Err(LabError::step(what, e)),
    }
}

fn build(spec: &LabSpec, progress: &dyn Fn(&str)) -> Result<LabState, LabError> {
    let dir = state_dir(&spec.prefix);
    std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
        context: format!("creating {}", dir.display()),
        source,
    })?;
    let etcd = if spec.etcd {
        let e = super::etcd::start(&spec.prefix)?;
        progress(&format!(
            "etcd: 3 members in namespace {} ({})",
            e.namespace,
            e.store_url()
        ));
        Some(e)
    } else {
        None
    };
    let store = match &etcd {
        Some(e) => PathBuf::from(e.store_url()),
        None => dir.join("store.db"),
    };
    let catalog =
        crate::open_catalog(&store).map_err(|e| LabError::step("opening the lab store", e))?;
    let mut state = LabState {
        prefix: spec.prefix.clone(),
        store: store.clone(),
        switch_namespace: format!("{}-sw", spec.prefix),
        underlay_subnet: format!("{}.{}.{}.0/24", UNDERLAY[0], UNDERLAY[1], UNDERLAY[2]),
        hosts: vec![],
        networks: vec![],
        containers: vec![],
        cgroup: Some(super::cgroup::lab_cgroup(&spec.prefix)),
        bpf_pin_root: Some(super::bpf::pin_root(&spec.prefix)),
        mounted_bpffs: false,
        client: None,
        demo: None,
        etcd,
    };
    state.save()?;

    // Where the agents attach and pin (see `cgroup` and `bpf`).
    let cg = super::cgroup::lab_cgroup(&spec.prefix);
    super::cgroup::create(&cg)?;
    state.mounted_bpffs = super::bpf::mount_if_missing(&spec.prefix)?;
    state.save()?;
    progress(&format!(
        "cgroup {} (a child per host: its agent's socket programs), BPF pins under {}{}",
        cg.display(),
        super::bpf::pin_root(&spec.prefix).display(),
        if state.mounted_bpffs {
            " (mounted bpffs)"
        } else {
            ""
        }
    ));

    // The underlay switch.
    let sw = state.switch_namespace.clone();
    netns::create(&sw).map_err(|e| LabError::step(format!("creating namespace {sw}"), e))?;
    let mtu = spec.underlay_mtu;
    ns_step(
        &sw,
        format!("creating bridge {SWITCH_BRIDGE} in {sw}"),
        move || async move {
            let dp = Dataplane::connect()?;
            let br = dp.create_bridge(SWITCH_BRIDGE, mtu).await?;
            dp.set_up(br.index).await
        },
    )?;
    progress(&format!(
        "underlay switch: bridge {SWITCH_BRIDGE} in namespace {sw}"
    ));

    // Hosts, each on a port of the switch.
    for i in 1..=spec.hosts {
        let host = format!("h{i}");
        let ns = format!("{}-{host}", spec.prefix);
        let address = Ipv4Addr::new(UNDERLAY[0], UNDERLAY[1], UNDERLAY[2], i as u8);
        netns::create(&ns).map_err(|e| LabError::step(format!("creating namespace {ns}"), e))?;
        super::cgroup::create(&super::cgroup::host_cgroup(&spec.prefix, &host))?;
        plug_host(&sw, &ns, &host, address, mtu)?;
        catalog
            .add_node(&host, address)
            .map_err(|e| LabError::step(format!("adding node {host}"), e))?;
        state.hosts.push(LabHost {
            name: host.clone(),
            namespace: ns.clone(),
            interface: UNDERLAY_IF.into(),
            address,
            agent_pid: None,
            agent_start_time: None,
            agent_running: false,
            datapath: spec.datapath,
        });
        state.save()?;
        progress(&format!(
            "host {host}: namespace {ns}, {UNDERLAY_IF} {address}/24"
        ));
    }

    // The outside client: on the switch, not a vxmesh host (no node, no agent).
    let client_ns = format!("{}-{}", spec.prefix, super::CLIENT);
    let client_addr = Ipv4Addr::new(
        UNDERLAY[0],
        UNDERLAY[1],
        UNDERLAY[2],
        super::CLIENT_HOST_OCTET,
    );
    netns::create(&client_ns)
        .map_err(|e| LabError::step(format!("creating namespace {client_ns}"), e))?;
    state.client = Some(super::LabClient {
        namespace: client_ns.clone(),
        address: client_addr,
    });
    state.save()?;
    plug_host(&sw, &client_ns, super::CLIENT, client_addr, mtu)?;
    progress(&format!(
        "client: namespace {client_ns}, {UNDERLAY_IF} {client_addr}/24 (not a vxmesh host)"
    ));

    for k in 1..=spec.networks {
        let name = format!("net{k}");
        let n = catalog
            .create_network(&NetworkSpec {
                name: name.clone(),
                subnet: format!("10.10.{k}.0/24"),
                encrypted: k <= spec.encrypted_networks,
                ..Default::default()
            })
            .map_err(|e| LabError::step(format!("creating network {name}"), e))?;
        state.networks.push(LabNetwork {
            name: n.name.clone(),
            subnet: n.subnet.to_string(),
            vni: n.vni,
            gateway: n.gateway,
            encrypted: n.encrypted,
        });
        progress(&format!(
            "network {}: {} vni {}{}",
            n.name,
            n.subnet,
            n.vni,
            if n.encrypted { " (encrypted)" } else { "" }
        ));
    }
    state.save()?;

    // One agent per host.
    for h in state.hosts.iter_mut() {
        let (pid, start_time) = spawn_agent(&spec.agent_bin, &spec.prefix, &store, h)?;
        h.agent_pid = Some(pid);
        h.agent_start_time = start_time;
        h.agent_running = true;
        progress(&format!(
            "host {}: agent running (pid {pid}, log {}/agent-{}.log)",
            h.name,
            dir.display(),
            h.name
        ));
    }
    state.save()?;
    wait_for_bridges(&state)?;

    // Containers, round robin over the networks.
    for h in state.hosts.clone() {
        for j in 1..=spec.containers_per_host {
            let name = format!("{}-c{j}", h.name);
            let ns = format!("{}-{name}", spec.prefix);
            let network = state.networks[((j - 1) % spec.networks) as usize]
                .name
                .clone();
            netns::create(&ns)
                .map_err(|e| LabError::step(format!("creating namespace {ns}"), e))?;
            super::cgroup::create(&super::cgroup::container_cgroup(
                &spec.prefix,
                &h.name,
                &name,
            ))?;
            let (endpoint, _) = attach_container(
                &catalog,
                &ContainerSpec {
                    network: network.clone(),
                    node: h.name.clone(),
                    id: name.clone(),
                    host_netns: Some(netns::path(&h.namespace)),
                    container_netns: netns::path(&ns),
                    ifname: CONTAINER_IF.into(),
                    ip: None,
                },
            )
            .map_err(|e| LabError::step(format!("attaching container {name}"), e))?;
            let gateway = state
                .networks
                .iter()
                .find(|n| n.name == network)
                .map(|n| n.gateway)
                .expect("the container's network is the lab's");
            super::resolv::write(&ns, &network, gateway)?;
            state.containers.push(LabContainer {
                name: name.clone(),
                host: h.name.clone(),
                namespace: ns.clone(),
                network: network.clone(),
                interface: CONTAINER_IF.into(),
                address: endpoint.ip,
                mac: endpoint.mac.to_string(),
            });
            state.save()?;
            progress(&format!(
                "container {name}: namespace {ns}, {network} {} {}",
                endpoint.ip, endpoint.mac
            ));
        }
    }
    wait_for_attachment_reports(&catalog, &state)?;
    if let Some(n) = spec.replicas {
        super::demo::start(&mut state, &spec.agent_bin, n, progress)?;
    }
    Ok(state)
}

/// The lab is up when every host's agent has taken its containers in hand: each container's
/// endpoint has a status in its node's host report (so `endpoint ls` shows a settled lab).
fn wait_for_attachment_reports(
    catalog: &overlay_core::Catalog,
    state: &LabState,
) -> Result<(), LabError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let snap = catalog
            .snapshot()
            .map_err(|e| LabError::step("reading the store", e))?;
        let missing: Vec<&str> = state
            .containers
            .iter()
            .filter(|c| {
                let key = overlay_core::model::endpoint_key(&c.network, &c.name);
                snap.hosts
                    .get(&c.host)
                    .is_none_or(|r| !r.endpoints.contains_key(&key))
            })
            .map(|c| c.name.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LabError::step(
                "waiting for the agents",
                format!(
                    "no agent reported the attachment of {} (see the agent logs in {})",
                    missing.join(", "),
                    state_dir(&state.prefix).display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A veth from the switch to the host: `hN` on the switch's bridge, `eth0` in the host.
fn plug_host(sw: &str, ns: &str, host: &str, address: Ipv4Addr, mtu: u32) -> Result<(), LabError> {
    let (port, target) = (host.to_string(), netns::path(ns));
    let what = format!("plugging {host} into the switch");
    // The host end is born inside the host namespace, already named `eth0`.
    ns_step(sw, what.clone(), move || async move {
        let dp = Dataplane::connect()?;
        let p = dp
            .create_veth_into(&port, UNDERLAY_IF, mtu, &target, None)
            .await?;
        let br = dp
            .link(SWITCH_BRIDGE)
            .await?
            .ok_or_else(|| DataplaneError::LinkNotFound {
                op: "lab up",
                link: SWITCH_BRIDGE.into(),
            })?;
        dp.set_master(p.index, Some(br.index)).await?;
        dp.set_up(p.index).await
    })?;
    ns_step(ns, what, move || async move {
        let dp = Dataplane::connect()?;
        let l = dp
            .link(UNDERLAY_IF)
            .await?
            .ok_or_else(|| DataplaneError::LinkNotFound {
                op: "lab up",
                link: UNDERLAY_IF.into(),
            })?;
        let net = Ipv4Net::new(address, 24).expect("/24 is valid");
        dp.add_address(l.index, IpNet::V4(net)).await?;
        dp.set_up(l.index).await
    })
}

/// Starts the agent of host `h` (`agent_bin`: the vxmesh binary), logging to
/// `agent-HOST.log` in the lab's state directory (appended: a restarted agent's log follows
/// the last one's); returns its PID and start time (clock ticks after boot; `None` if it
/// exited before it could be read).
pub(super) fn spawn_agent(
    agent_bin: &Path,
    prefix: &str,
    store: &Path,
    h: &LabHost,
) -> Result<(u32, Option<u64>), LabError> {
    let (log, err) = log_files(&state_dir(prefix).join(format!("agent-{}.log", h.name)))?;
    let child = Command::new(agent_bin)
        .arg("--store")
        .arg(store)
        .args(["agent", "--node", &h.name, "--netns", &h.namespace])
        .arg("--state-dir")
        .arg(super::host_state_dir(prefix, &h.name))
        .arg("--cgroup")
        .arg(super::cgroup::host_cgroup(prefix, &h.name))
        .arg("--bpf-pin-root")
        .arg(super::bpf::pin_root(prefix))
        .arg("--datapath")
        .arg(h.datapath.to_string())
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        // Its own process group: a Ctrl-C meant for `lab up` does not stop the lab's agents.
        .process_group(0)
        .spawn()
        .map_err(|source| LabError::Io {
            context: format!("starting the agent of {} ({})", h.name, agent_bin.display()),
            source,
        })?;
    let start_time = ProcessIdentity::of(child.id()).ok().map(|i| i.start_time);
    Ok((child.id(), start_time))
}

/// A lab process's log `path`, opened for appending (made when missing), twice: for its
/// stdout and its stderr.
pub(super) fn log_files(path: &Path) -> Result<(File, File), LabError> {
    let io = |what: &str| {
        let context = format!("{what} {}", path.display());
        move |source| LabError::Io { context, source }
    };
    let log = File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io("creating"))?;
    let err = log.try_clone().map_err(io("opening"))?;
    Ok((log, err))
}

/// Containers can be attached once the agents have made the networks' bridges.
fn wait_for_bridges(state: &LabState) -> Result<(), LabError> {
    let bridges: Vec<String> = state
        .networks
        .iter()
        .map(|n| overlay_core::model::bridge_name(&n.name))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for h in &state.hosts {
        loop {
            let want = bridges.clone();
            let ready = ns_step(
                &h.namespace,
                format!("reading links of {}", h.name),
                move || async move {
                    let dp = Dataplane::connect()?;
                    let links = dp.links().await?;
                    Ok(want
                        .iter()
                        .all(|b| links.iter().any(|l| &l.name == b && l.up)))
                },
            )?;
            if ready {
                break;
            }
            if Instant::now() > deadline || !h.agent_alive() {
                return Err(LabError::step(
                    format!("waiting for the agent of {}", h.name),
                    format!(
                        "its networks' bridges did not appear; see {}/agent-{}.log",
                        state_dir(&state.prefix).display(),
                        h.name
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}
