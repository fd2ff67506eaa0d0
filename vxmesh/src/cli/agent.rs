//! `vxmesh agent`

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use vxmesh::agent::{self, Agent, AgentConfig, AgentError, HostNetns};
use vxmesh::Catalog;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// This host's node name (added with `vxmesh node add`).
    #[arg(long)]
    pub node: String,
    /// Run inside this named network namespace (/run/netns/NAME) instead of the current one.
    #[arg(long)]
    pub netns: Option<String>,
    /// Seconds between full passes when the store does not change (repairs changes made by hand).
    #[arg(long, default_value_t = 2.0)]
    pub resync: f64,
    /// Where the agent keeps this host's WireGuard private key (default /var/lib/vxmesh/NODE).
    #[arg(long)]
    pub state_dir: Option<std::path::PathBuf>,
    /// Name of the WireGuard interface for encrypted networks.
    #[arg(long, default_value = overlay_core::wireguard::DEFAULT_IFNAME)]
    pub wg_interface: String,
    /// UDP port WireGuard listens on (published to the other nodes).
    #[arg(long, default_value_t = overlay_core::wireguard::DEFAULT_PORT)]
    pub wg_port: u16,
    /// Worker threads of the userspace WireGuard implementation: per direction (send, receive)
    /// for the batched datapath, in all for the legacy one. One is the default: with two, the
    /// legacy workers contend on boringtun's device lock and throughput fell from ~570 to
    /// ~330 Mbit/s in the lab (2 cores, two agents).
    #[arg(long, env = "VXMESH_WG_THREADS", default_value_t = 1)]
    pub wg_threads: usize,
    /// The userspace WireGuard datapath: `batched` (a TAP with offloads, segmentation and
    /// coalescing around boringtun's protocol, UDP GSO/GRO) or `legacy` (boringtun's own
    /// device, one packet per system call).
    #[arg(long, env = "VXMESH_WG_DATAPATH", default_value = "batched")]
    pub wg_datapath: overlay_core::wireguard::Datapath,
    /// Run without a WireGuard interface (encrypted networks are then not built here).
    #[arg(long)]
    pub no_wireguard: bool,
    /// The cgroup v2 directory whose processes get services balanced at connect()/sendmsg()
    /// (the socket programs are attached to it and to nothing else). On a real host: the
    /// cgroup2 root (e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified); the lab gives one it made
    /// under /sys/fs/cgroup/unified/vxmesh-lab-PREFIX. Without it only the packet path (tc
    /// on the containers' veths) balances.
    #[arg(long)]
    pub cgroup: Option<std::path::PathBuf>,
    /// Where this node's BPF programs, maps and links are pinned: `<root>/<node>/` (bpffs
    /// is mounted at /sys/fs/bpf when missing).
    #[arg(long, default_value = vxmesh_ebpf::DEFAULT_PIN_ROOT)]
    pub bpf_pin_root: std::path::PathBuf,
    /// Seconds of the agent's store lease: this long after the agent died (or stopped for
    /// longer), every other host removes this node's entries, WireGuard peer and service
    /// backends. A clean stop keeps them until then, so a restart disturbs nothing.
    #[arg(long, default_value_t = vxmesh::heartbeat::DEFAULT_TTL.as_secs_f64())]
    pub lease_ttl: f64,
    /// Entries of the services' connection table (an LRU; a flow translated by the packet path
    /// takes two). Applies when the datapath is first loaded on this node.
    #[arg(long, default_value_t = 262_144)]
    pub conntrack_entries: u32,
    /// Do not answer DNS for service names on the networks' gateways (port 53).
    #[arg(long)]
    pub no_dns: bool,
    /// The resolv.conf whose nameservers get the names that are not vxmesh's.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub dns_resolv_conf: std::path::PathBuf,
    /// How frames go between the containers and the VXLAN devices: `bridge` (each network's
    /// Linux bridge) or `ebpf` (tc programs straight to the VXLAN device and into the
    /// container, the bridge underneath for the rest; pinned under `--bpf-pin-root`).
    /// Switching keeps established connections.
    #[arg(long, default_value = "bridge")]
    pub datapath: vxmesh::fast_plane::DatapathMode,
}

/// Enters the namespace before any thread is started, so every thread of the agent lives there.
pub fn enter_netns(args: &AgentArgs) -> Result<()> {
    if let Some(ns) = &args.netns {
        if ns.is_empty() || ns.contains('/') || ns.starts_with('.') {
            anyhow::bail!("invalid netns '{ns}': must be a name under /run/netns");
        }
        let path = overlay_core::netns::path(ns);
        overlay_core::netns::enter(&path).with_context(|| format!("--netns {ns}"))?;
    }
    Ok(())
}

pub fn run(args: AgentArgs, catalog: Catalog) -> Result<()> {
    if !(args.resync.is_finite() && args.resync > 0.0) {
        anyhow::bail!(
            "invalid resync '{}': must be a positive number of seconds",
            args.resync
        );
    }
    if !(args.lease_ttl.is_finite() && (1.0..=3600.0).contains(&args.lease_ttl)) {
        anyhow::bail!(
            "invalid lease-ttl '{}': must be 1-3600 seconds",
            args.lease_ttl
        );
    }
    if args.wg_port == 0 {
        anyhow::bail!("invalid wg-port '0': must be 1-65535");
    }
    if args.wg_interface.is_empty()
        || args.wg_interface.len() > 15
        || args.wg_interface.contains('/')
    {
        anyhow::bail!(
            "invalid wg-interface '{}': must be 1-15 characters, no '/'",
            args.wg_interface
        );
    }
    if let Some(cg) = &args.cgroup {
        if !cg.is_absolute() || !cg.join("cgroup.procs").exists() {
            anyhow::bail!(
                "invalid cgroup '{}': must be the absolute path of a cgroup v2 directory",
                cg.display()
            );
        }
    }
    if !args.bpf_pin_root.is_absolute() {
        anyhow::bail!(
            "invalid bpf-pin-root '{}': must be an absolute path",
            args.bpf_pin_root.display()
        );
    }
    if !(1..=1 << 26).contains(&args.conntrack_entries) {
        anyhow::bail!(
            "invalid conntrack-entries '{}': must be 1-67108864",
            args.conntrack_entries
        );
    }
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| std::path::Path::new("/var/lib/vxmesh").join(&args.node));
    let config = AgentConfig {
        node: args.node.clone(),
        // `enter_netns` has moved the whole process into `--netns` before any thread started.
        netns: HostNetns::Current,
        resync: Duration::from_secs_f64(args.resync),
        state_dir,
        wireguard: (!args.no_wireguard).then(|| agent::WireguardConfig {
            ifname: args.wg_interface.clone(),
            port: args.wg_port,
            threads: args.wg_threads,
            datapath: args.wg_datapath,
        }),
        services: vxmesh::service_plane::ServiceConfig {
            cgroup: args.cgroup.clone(),
            pin_root: args.bpf_pin_root.clone(),
            // Set by the agent to the host's namespace.
            netns: Default::default(),
            conntrack_entries: args.conntrack_entries,
        },
        dns: (!args.no_dns).then(|| vxmesh::dns::DnsConfig {
            resolv_conf: args.dns_resolv_conf.clone(),
            ..Default::default()
        }),
        lease_ttl: Duration::from_secs_f64(args.lease_ttl),
        datapath: args.datapath,
    };
    // The library installs no signal handler: this binary stops its agent on SIGINT/SIGTERM.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_until_signal(catalog, config))
        .with_context(|| format!("agent for node {}", args.node))
}

/// Starts the agent (waiting for a store that cannot be reached yet), then runs it until
/// SIGINT or SIGTERM, or until it fails.
async fn run_until_signal(catalog: Catalog, config: AgentConfig) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut outages = vxmesh::store_outage::Outages::default();
    let handle = loop {
        match Agent::spawn(catalog.clone(), config.clone()) {
            Ok(h) => break h,
            Err(AgentError::Catalog(vxmesh::CatalogError::Store(e))) if e.is_unavailable() => {
                let wait = outages.failed("reading this node", &e);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = term.recv() => return Ok(()),
                    _ = int.recv() => return Ok(()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    outages.ok();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = handle.ended() => {}
    }
    tokio::task::spawn_blocking(move || handle.stop()).await??;
    Ok(())
}
