//! `vxmesh lab …`

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use vxmesh::lab::{self, LabSpec, LabState};

use super::output;

#[derive(Debug, Subcommand)]
pub enum LabCmd {
    /// Build simulated hosts (namespaces on an underlay switch), each running an agent, with
    /// networks and containers on them. The lab has its own store (see `lab status`).
    Up(UpArgs),
    /// Show the lab's hosts, networks and containers.
    Status(PrefixArg),
    /// Run a command in a lab host's or container's network namespace.
    Exec(ExecArgs),
    /// Start a host's agent again (after it was stopped or killed), as `lab up` started it.
    StartAgent(StartAgentArgs),
    /// Stop a host's agent (SIGTERM); what it made in the kernel stays.
    StopAgent(StopAgentArgs),
    /// Start a member of the lab's etcd cluster again (after it was stopped or killed).
    StartEtcd(StartEtcdArgs),
    /// Remove everything the lab made (agents, replicas, namespaces, cgroups, BPF pins,
    /// state). Idempotent.
    Down(PrefixArg),
    /// The demo service's HTTP server (`lab up --replicas` runs one in each replica's
    /// container): answers every request with `NAME CLIENT_ADDR CLIENT_PORT`.
    #[command(hide = true)]
    Replica(ReplicaArgs),
}

#[derive(Debug, Args)]
pub struct ReplicaArgs {
    /// The name every answer starts with.
    #[arg(long)]
    pub name: String,
    /// TCP port to listen on (every IPv4 address of the current network namespace).
    #[arg(long, default_value_t = lab::demo::DEMO_PORT)]
    pub port: u16,
    /// Runtime threads (1: a single-threaded server, like one nginx worker).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

#[derive(Debug, Args)]
pub struct StartAgentArgs {
    #[command(flatten)]
    pub prefix: PrefixArg,
    /// The host (h1).
    pub host: String,
    /// Run this datapath from now on (`bridge` or `ebpf`) instead of the host's last one.
    #[arg(long)]
    pub datapath: Option<vxmesh::fast_plane::DatapathMode>,
}

#[derive(Debug, Args)]
pub struct StopAgentArgs {
    #[command(flatten)]
    pub prefix: PrefixArg,
    /// The host (h1).
    pub host: String,
}

#[derive(Debug, Args)]
pub struct StartEtcdArgs {
    #[command(flatten)]
    pub prefix: PrefixArg,
    /// The member (m1, m2, m3).
    pub member: String,
}

#[derive(Debug, Args)]
pub struct PrefixArg {
    /// Name of the lab; every namespace it makes starts with it.
    #[arg(long, default_value = "vxlab")]
    pub prefix: String,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub prefix: PrefixArg,
    /// Number of hosts (h1…hN).
    #[arg(long, default_value_t = 3)]
    pub hosts: u32,
    /// Containers on each host (h1-c1…), spread round robin over the networks.
    #[arg(long, default_value_t = 2)]
    pub containers_per_host: u32,
    /// Number of networks (net1…, subnets 10.10.1.0/24…).
    #[arg(long, default_value_t = 2)]
    pub networks: u32,
    /// How many of the networks (net1… first) are encrypted with WireGuard.
    #[arg(long, default_value_t = 0)]
    pub encrypted_networks: u32,
    /// MTU of the underlay links.
    #[arg(long, default_value_t = 1500)]
    pub mtu: u32,
    /// Also run the routing mesh's demo: service `demo`, published on port 8080 of every
    /// host, with N replicas (HTTP servers answering with their name and the client address
    /// they saw) in the first N containers of net1, spread round robin over the hosts. Try
    /// `lab exec client -- curl http://10.99.0.1:8080/`. 1 to 64, and at most net1's
    /// containers: hosts × ⌈containers-per-host / networks⌉ (e.g. `--hosts 3
    /// --containers-per-host 2 --networks 1 --replicas 6`).
    #[arg(long, value_name = "N")]
    pub replicas: Option<u32>,
    /// The datapath of every host's agent (`agent --datapath`): `bridge` or `ebpf`.
    #[arg(long, default_value = "bridge")]
    pub datapath: vxmesh::fast_plane::DatapathMode,
    /// The underlay switch's subnet: host N gets its N-th address, the outside client its
    /// 250th (or its last in a subnet smaller than a /24). A private range (RFC 1918) outside
    /// 10.10.0.0/16 (the lab's networks).
    #[arg(long, value_name = "CIDR", default_value = "10.99.0.0/24")]
    pub underlay: ipnet::Ipv4Net,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub prefix: PrefixArg,
    /// A host (h1) or container (h1-c1).
    pub member: String,
    /// Run a container's command outside the container's cgroup: its sockets are not
    /// balanced at connect()/sendmsg(), so traffic to a service VIP takes the packet path (tc
    /// on the container's veth). Without it a container's command runs in its cgroup.
    #[arg(long)]
    pub outside_cgroup: bool,
    /// The command, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// A lab process as `lab status` shows it.
fn process_word(pid: Option<u32>, running: bool) -> String {
    match (pid, running) {
        (Some(p), true) => format!("running (pid {p})"),
        (Some(p), false) => format!("NOT RUNNING (was pid {p})"),
        (None, _) => "not started".into(),
    }
}

fn print_state(s: &LabState) {
    println!("lab {} (store {})", s.prefix, s.store.display());
    println!(
        "underlay switch: namespace {}, subnet {}",
        s.switch_namespace, s.underlay_subnet
    );
    if let Some(c) = &s.client {
        println!(
            "client: namespace {}, {} (lab exec client -- …)",
            c.namespace, c.address
        );
    }
    if let Some(e) = &s.etcd {
        let members: Vec<String> = e
            .members
            .iter()
            .map(|m| match (m.pid, m.running) {
                (Some(p), true) => format!("{} {} running (pid {p})", m.name, m.client),
                _ => format!("{} {} NOT RUNNING", m.name, m.client),
            })
            .collect();
        println!("etcd: namespace {}: {}", e.namespace, members.join(", "));
    }
    if let (Some(cg), Some(pins)) = (&s.cgroup, &s.bpf_pin_root) {
        println!(
            "cgroups: {}/HOST/CONTAINER; BPF pins: {}/HOST",
            cg.display(),
            pins.display()
        );
    }
    println!();
    let hosts: Vec<_> = s
        .hosts
        .iter()
        .map(|h| {
            vec![
                h.name.clone(),
                h.namespace.clone(),
                format!("{} {}", h.interface, h.address),
                match (h.agent_in_process, h.agent_running) {
                    (true, true) => "running in the embedding process".into(),
                    (true, false) => "NOT RUNNING (was in the embedding process)".into(),
                    (false, _) => process_word(h.agent_pid, h.agent_running),
                },
                h.datapath.to_string(),
            ]
        })
        .collect();
    output::table(
        &["HOST", "NAMESPACE", "UNDERLAY", "AGENT", "DATAPATH"],
        &hosts,
    );
    println!();
    let nets: Vec<_> = s
        .networks
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.subnet.clone(),
                n.gateway.to_string(),
                n.vni.to_string(),
                if n.encrypted { "wireguard" } else { "-" }.to_string(),
            ]
        })
        .collect();
    output::table(&["NETWORK", "SUBNET", "GATEWAY", "VNI", "ENCRYPTED"], &nets);
    println!();
    let cs: Vec<_> = s
        .containers
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.host.clone(),
                c.namespace.clone(),
                c.network.clone(),
                format!("{} {}", c.interface, c.address),
                c.mac.clone(),
            ]
        })
        .collect();
    output::table(
        &[
            "CONTAINER",
            "HOST",
            "NAMESPACE",
            "NETWORK",
            "ADDRESS",
            "MAC",
        ],
        &cs,
    );
    if let Some(d) = &s.demo {
        print_demo(s, d);
    }
}

fn print_demo(s: &LabState, d: &lab::LabDemo) {
    println!();
    println!(
        "service {} on {}: port {} published on port {} of every host ({} replicas)",
        d.service,
        d.network,
        d.port,
        d.published,
        d.replicas.len()
    );
    let rows: Vec<_> = d
        .replicas
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.host.clone(),
                format!("{}:{}", r.address, r.port),
                process_word(r.pid, r.running),
            ]
        })
        .collect();
    output::table(&["REPLICA", "HOST", "ADDRESS", "PROCESS"], &rows);
    if let Some(h) = s.hosts.first() {
        println!(
            "try: vxmesh lab exec --prefix {} client -- curl http://{}:{}/",
            s.prefix, h.address, d.published
        );
    }
}

/// `lab up --store sqlite|etcd` (the global `--store`; left at its default: SQLite).
fn lab_store_is_etcd(store: &std::path::Path) -> Result<bool> {
    match store.to_str() {
        Some("etcd") => Ok(true),
        Some("sqlite") | Some(vxmesh::DEFAULT_STORE) => Ok(false),
        _ => anyhow::bail!(
            "invalid store '{}': `lab up` takes --store sqlite (default) or --store etcd (the lab \
             keeps its own store)",
            store.display()
        ),
    }
}

pub fn run(cmd: LabCmd, store: &std::path::Path, json: bool) -> Result<i32> {
    match cmd {
        LabCmd::Up(a) => {
            let spec = LabSpec {
                etcd: lab_store_is_etcd(store)?,
                prefix: a.prefix.prefix,
                hosts: a.hosts,
                containers_per_host: a.containers_per_host,
                networks: a.networks,
                encrypted_networks: a.encrypted_networks,
                underlay_mtu: a.mtu,
                agent_bin: std::env::current_exe().context("finding the vxmesh binary")?,
                replicas: a.replicas,
                datapath: a.datapath,
                underlay: a.underlay,
            };
            let quiet = json;
            let state = lab::up(&spec, &|line| {
                if !quiet {
                    eprintln!("  {line}");
                }
            })?;
            if json {
                output::json(&state);
                return Ok(0);
            }
            println!();
            print_state(&state);
            let h1 = &state.hosts[0];
            println!("\nWatch the overlay on the underlay, decoded as VXLAN:");
            println!(
                "  ip netns exec {} tcpdump -ni {} udp port 4789",
                h1.namespace, h1.interface
            );
            if let Some(c) = state.containers.first() {
                println!("Run a command in a container or host:");
                println!(
                    "  vxmesh lab exec --prefix {} {} -- ping {}",
                    state.prefix, c.name, state.networks[0].gateway
                );
            }
            println!(
                "Use the lab's store:  vxmesh --store '{}' network ls",
                state.store.display()
            );
            println!(
                "Tear it down:         vxmesh lab down --prefix {}",
                state.prefix
            );
        }
        LabCmd::Status(p) => {
            let state = lab::status(&p.prefix)?;
            if json {
                output::json(&state);
            } else {
                print_state(&state);
            }
        }
        LabCmd::Exec(a) => {
            return Ok(lab::exec(
                &a.prefix.prefix,
                &a.member,
                &a.command,
                a.outside_cgroup,
            )?)
        }
        LabCmd::StartAgent(a) => {
            let bin = std::env::current_exe().context("finding the vxmesh binary")?;
            let h = lab::start_agent(&a.prefix.prefix, &a.host, &bin, a.datapath)?;
            if json {
                output::json(&h);
            } else {
                println!(
                    "host {}: agent running (pid {})",
                    h.name,
                    h.agent_pid.unwrap_or_default()
                );
            }
        }
        LabCmd::Replica(a) => {
            lab::replica::serve(&lab::replica::ReplicaSpec {
                name: a.name,
                port: a.port,
                threads: a.threads,
            })?;
        }
        LabCmd::StartEtcd(a) => {
            let m = lab::start_etcd_member(&a.prefix.prefix, &a.member)?;
            if json {
                output::json(&m);
            } else {
                println!(
                    "etcd member {}: running (pid {})",
                    m.name,
                    m.pid.unwrap_or_default()
                );
            }
        }
        LabCmd::StopAgent(a) => {
            let stopped = lab::stop_agent(&a.prefix.prefix, &a.host)?;
            if json {
                output::json(&serde_json::json!({ "host": a.host, "stopped": stopped }));
            } else if stopped {
                println!("host {}: agent stopped", a.host);
            } else {
                println!("host {}: no agent was running", a.host);
            }
        }
        LabCmd::Down(p) => {
            let done = lab::down(&p.prefix)?;
            if json {
                output::json(&done);
            } else if done.is_empty() {
                println!("lab {}: nothing to remove", p.prefix);
            } else {
                for d in done {
                    println!("{d}");
                }
            }
        }
    }
    Ok(0)
}
