//! `lab up`: build the switch, the hosts, their agents, the networks and the containers.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use overlay_core::container::{attach_container, ContainerSpec};
use overlay_core::dataplane::{Dataplane, DataplaneError};
use overlay_core::netns;
use overlay_core::NetworkSpec;

use super::launcher::{AgentLauncher, AgentSite, LabAgent, ProcessLauncher};
use super::underlay;
use super::{
    check_prefix, state_dir, Lab, LabContainer, LabError, LabHost, LabNetwork, LabState,
    CONTAINER_IF, SWITCH_BRIDGE, UNDERLAY_IF,
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
    /// The `vxmesh` binary each demo replica runs, and each host's agent under [`up`]
    /// ([`ProcessLauncher`]).
    pub agent_bin: PathBuf,
    /// `--replicas N`: the demo service published on port 8080 of every host, with N
    /// replicas in the first network's containers ([`super::demo`]); `None`: no service.
    pub replicas: Option<u32>,
    /// Keep the lab's state in a 3-member etcd cluster of its own instead of an SQLite file.
    pub etcd: bool,
    /// The datapath every host's agent runs (`agent --datapath`).
    pub datapath: crate::fast_plane::DatapathMode,
    /// The underlay switch's subnet: host N gets its N-th address, the outside client its
    /// 250th (the last usable one in a subnet smaller than a /24); see [`underlay::check`] for
    /// what it may be. Labs on different switches may share a subnet or not.
    pub underlay: Ipv4Net,
}

impl LabSpec {
    /// What `vxmesh lab up --prefix PREFIX` builds by default: 3 hosts with 2 containers
    /// each, 2 networks (none encrypted), an MTU of 1500, underlay 10.99.0.0/24, the bridge
    /// datapath, SQLite, no demo; `vxmesh` from `PATH` as [`LabSpec::agent_bin`].
    pub fn new(prefix: impl Into<String>) -> LabSpec {
        LabSpec {
            prefix: prefix.into(),
            hosts: 3,
            containers_per_host: 2,
            networks: 2,
            encrypted_networks: 0,
            underlay_mtu: 1500,
            agent_bin: PathBuf::from("vxmesh"),
            replicas: None,
            etcd: false,
            datapath: crate::fast_plane::DatapathMode::Bridge,
            underlay: underlay::default_underlay(),
        }
    }
}

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
    underlay::check(spec.underlay, spec.hosts)?;
    if let Some(n) = spec.replicas {
        super::demo::check_replicas(n, spec.hosts, spec.containers_per_host, spec.networks)?;
    }
    Ok(())
}

/// Builds the lab with a `vxmesh agent` process per host ([`ProcessLauncher`] running
/// [`LabSpec::agent_bin`]) and leaves it up (`vxmesh lab up`); returns its state. On any
/// failure everything built so far is removed again.
///
/// Errors: as [`up_with`].
pub fn up(spec: &LabSpec, progress: &dyn Fn(&str)) -> Result<LabState, LabError> {
    let launcher = ProcessLauncher::new(&spec.agent_bin);
    let (state, _agents) = up_with(spec, &launcher, progress)?.into_parts();
    // Dropping the process agents leaves them running with the lab.
    Ok(state)
}

/// Builds the lab, starting each host's agent with `launcher`, and returns it with those
/// agents; `progress` gets a line per step. Dropping the [`Lab`] (or [`Lab::down`]) stops the
/// agents and removes everything; on any failure, or a panic, during the build everything
/// built so far is removed again. Blocking: from inside a tokio runtime call it on a blocking
/// thread (`spawn_blocking`).
///
/// Errors: [`LabError::Invalid`] naming the bad field of `spec`, with nothing made;
/// [`LabError::AlreadyUp`] when a lab with this prefix exists (it is left alone); any step's
/// error otherwise.
pub fn up_with(
    spec: &LabSpec,
    launcher: &dyn AgentLauncher,
    progress: &dyn Fn(&str),
) -> Result<Lab, LabError> {
    check(spec)?;
    if state_dir(&spec.prefix).join("state.json").exists()
        || netns::exists(&format!("{}-sw", spec.prefix))
    {
        return Err(LabError::AlreadyUp(spec.prefix.clone()));
    }
    let mut lab = Lab::building(LabState {
        prefix: spec.prefix.clone(),
        store: PathBuf::new(),
        switch_namespace: format!("{}-sw", spec.prefix),
        underlay_subnet: spec.underlay,
        hosts: vec![],
        networks: vec![],
        containers: vec![],
        cgroup: Some(super::cgroup::lab_cgroup(&spec.prefix)),
        bpf_pin_root: Some(super::bpf::pin_root(&spec.prefix)),
        mounted_bpffs: false,
        client: None,
        demo: None,
        etcd: None,
    });
    let (state, agents) = lab.parts_mut();
    match build(spec, launcher, state, agents, progress) {
        Ok(()) => Ok(lab),
        Err(e) => {
            progress(&format!("lab up failed ({e}); removing what was built"));
            if let Err(down) = lab.down() {
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

fn build(
    spec: &LabSpec,
    launcher: &dyn AgentLauncher,
    state: &mut LabState,
    agents: &mut Vec<Box<dyn LabAgent>>,
    progress: &dyn Fn(&str),
) -> Result<(), LabError> {
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
    state.store = store.clone();
    state.etcd = etcd;
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
        "underlay switch: bridge {SWITCH_BRIDGE} in namespace {sw}, subnet {}",
        spec.underlay
    ));

    // Hosts, each on a port of the switch.
    let prefix_len = spec.underlay.prefix_len();
    for i in 1..=spec.hosts {
        let host = format!("h{i}");
        let ns = format!("{}-{host}", spec.prefix);
        let address = Ipv4Net::new(underlay::host_address(spec.underlay, i), prefix_len)
            .expect("the underlay's prefix length is valid");
        netns::create(&ns).map_err(|e| LabError::step(format!("creating namespace {ns}"), e))?;
        super::cgroup::create(&super::cgroup::host_cgroup(&spec.prefix, &host))?;
        plug_host(&sw, &ns, &host, address, mtu)?;
        let address = address.addr();
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
            agent_in_process: false,
        });
        state.save()?;
        progress(&format!(
            "host {host}: namespace {ns}, {UNDERLAY_IF} {address}/{prefix_len}"
        ));
    }

    // The outside client: on the switch, not a vxmesh host (no node, no agent).
    let client_ns = format!("{}-{}", spec.prefix, super::CLIENT);
    let client_addr = Ipv4Net::new(underlay::client_address(spec.underlay), prefix_len)
        .expect("the underlay's prefix length is valid");
    netns::create(&client_ns)
        .map_err(|e| LabError::step(format!("creating namespace {client_ns}"), e))?;
    state.client = Some(super::LabClient {
        namespace: client_ns.clone(),
        address: client_addr.addr(),
    });
    state.save()?;
    plug_host(&sw, &client_ns, super::CLIENT, client_addr, mtu)?;
    progress(&format!(
        "client: namespace {client_ns}, {UNDERLAY_IF} {client_addr} (not a vxmesh host)"
    ));

    for k in 1..=spec.networks {
        let name = format!("net{k}");
        let n = catalog
            .create_network(&NetworkSpec {
                name: name.clone(),
                subnet: underlay::network_subnet(k),
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
    for i in 0..state.hosts.len() {
        let site = AgentSite::of(&spec.prefix, &store, &state.hosts[i]);
        let agent = launcher.launch(&site)?;
        let h = &mut state.hosts[i];
        record_agent(h, agent.as_ref());
        agents.push(agent);
        state.save()?;
        progress(&match state.hosts[i].agent_pid {
            Some(pid) => format!(
                "host {}: agent running (pid {pid}, log {})",
                site.node,
                site.log.display()
            ),
            None => format!("host {}: agent running in this process", site.node),
        });
    }
    wait_for_bridges(state, agents)?;

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
    wait_for_attachment_reports(&catalog, state)?;
    if let Some(n) = spec.replicas {
        super::demo::start(state, &spec.agent_bin, n, progress)?;
    }
    Ok(())
}

/// Records in `h` (for `state.json`) the agent just started for it.
pub(super) fn record_agent(h: &mut LabHost, agent: &dyn LabAgent) {
    let process = agent.process();
    h.agent_pid = process.map(|p| p.pid);
    // 0: it could not be read.
    h.agent_start_time = process.map(|p| p.start_time).filter(|&t| t != 0);
    h.agent_in_process = process.is_none();
    h.agent_running = true;
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

/// A veth from the switch to the host: `hN` on the switch's bridge, `eth0` in the host with
/// `address` (an address and the underlay's prefix length).
fn plug_host(sw: &str, ns: &str, host: &str, address: Ipv4Net, mtu: u32) -> Result<(), LabError> {
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
        dp.add_address(l.index, IpNet::V4(address)).await?;
        dp.set_up(l.index).await
    })
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
fn wait_for_bridges(state: &LabState, agents: &[Box<dyn LabAgent>]) -> Result<(), LabError> {
    let bridges: Vec<String> = state
        .networks
        .iter()
        .map(|n| overlay_core::model::bridge_name(&n.name))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for h in &state.hosts {
        let agent = agents.iter().find(|a| a.node() == h.name);
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
            if Instant::now() > deadline || !agent.is_some_and(|a| a.is_running()) {
                let log = match agent.and_then(|a| a.process()) {
                    Some(_) => format!(
                        "see {}/agent-{}.log",
                        state_dir(&state.prefix).display(),
                        h.name
                    ),
                    None => "see this process's log".into(),
                };
                return Err(LabError::step(
                    format!("waiting for the agent of {}", h.name),
                    format!("its networks' bridges did not appear; {log}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}
