//! `vxmesh service …`: the flags, and what each subcommand does with them. The text forms
//! become specs and updates in `service_args.rs`; tables are printed by `service_table.rs`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use vxmesh::services::{self, ServiceView};
use vxmesh::{Catalog, ServiceCatalog};

use super::{output, service_args, service_table};

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Create a service: a virtual IP (VIP) on a network, balanced over endpoints of that
    /// network.
    #[command(after_help = CREATE_EXAMPLES)]
    Create(CreateArgs),
    /// List services, with how many of their backends take new flows.
    Ls {
        /// Only this network's services.
        #[arg(long, value_name = "NET")]
        network: Option<String>,
    },
    /// Show a service: VIP, ports, each backend with its node, address, health state and
    /// weight, and the kernel's counters on this machine.
    Inspect(InspectArgs),
    /// Change a service's backends, health check, affinity or table size; every change given
    /// is made in one transaction, or none is. What is not given stays as it is.
    #[command(after_help = UPDATE_EXAMPLES)]
    Update(UpdateArgs),
    /// Remove a service and give its VIP back to the network.
    Rm {
        /// The service's name.
        name: String,
    },
}

const CREATE_EXAMPLES: &str = "Examples:
  vxmesh service create web --network net1 --port 80:8080 --backend c1 --backend c2:2 \\
      --health http:/healthz --health-interval 1s
  vxmesh service create dns --network net1 --port 53/udp --vip 10.10.1.53 --backend c3
  vxmesh service create demo --network net1 --port 80 --publish 8080:80 --mode dsr --backend c1";

const UPDATE_EXAMPLES: &str = "Examples:
  vxmesh service update web --add-backend c4 --drain-backend c1
  vxmesh service update web --health tcp --health-fall 3 --affinity client-ip
  vxmesh service update demo --unpublish 8080:80 --publish 9090:80 --mode default";

/// The health-check flags of `create` (defaults applied) and `update` (unset ones kept).
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// How each backend's node checks it: `none` (a backend is in while its endpoint exists
    /// and its node's agent is alive), `tcp` (a TCP connect to the first TCP port's target
    /// port) or `http:PATH` (an HTTP/1.1 GET of PATH there answering 200-399).
    /// [create default: none]
    #[arg(long, value_name = "none|tcp|http:PATH")]
    pub health: Option<String>,
    /// Time between two checks of a backend: a number with a unit, ms, s or m (`500ms`,
    /// `1s`, `1.5s`), 100ms to 60m. [create default: 1s]
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Longest a check may take (the connect, and for http the response head), ms, s or m;
    /// 10ms up to the interval. [create default: 500ms, or the interval when shorter]
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Consecutive successful checks that bring a down backend up, 1-10. [create default: 2]
    #[arg(long, visible_alias = "rise", value_name = "N")]
    pub health_rise: Option<String>,
    /// Consecutive failed checks that take an up backend down, 1-10. [create default: 2]
    #[arg(long, visible_alias = "fall", value_name = "N")]
    pub health_fall: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The service's name: 1-64 letters, digits, '-', '_' or '.', unique among services.
    pub name: String,
    /// The network the VIP is taken from and the backends belong to.
    #[arg(long, value_name = "NET")]
    pub network: String,
    /// A port the VIP serves, `PORT[:TARGET][/tcp|/udp]`: connections to VIP:PORT go to a
    /// backend's TARGET (default: PORT), protocol tcp unless /udp. Repeat for more ports (at
    /// least one, at most 64).
    #[arg(long, value_name = "PORT[:TARGET][/tcp|/udp]")]
    pub port: Vec<String>,
    /// The VIP: an unused host address of the network's subnet, or `auto` for the lowest
    /// free one. Reserved in the network's IPAM, so no endpoint gets it. [default: auto]
    #[arg(long, value_name = "IP|auto")]
    pub vip: Option<String>,
    /// A backend: an endpoint of the network (`vxmesh endpoint ls`), with an optional
    /// relative weight 1-1000 (default 1). Repeat for more; a service may start with none.
    #[arg(long, value_name = "ENDPOINT[:WEIGHT]")]
    pub backend: Vec<String>,
    #[command(flatten)]
    pub health: HealthArgs,
    /// Session affinity: `none` (each connection balanced on its 5-tuple) or `client-ip`
    /// (every connection of one client address to the same backend). [default: none]
    #[arg(long, value_name = "none|client-ip")]
    pub affinity: Option<String>,
    /// Slots of the service's Maglev table: a prime at least the number of backends, up to
    /// 1048573. Default: the smallest of vxmesh's primes at least 100 x the backends
    /// (16381 slots, 4 bytes each, for up to 163 backends), so changing health never resizes it.
    #[arg(long, visible_alias = "table-size", value_name = "N")]
    pub maglev_table_size: Option<String>,
    /// Publish PORT of the service on every host's underlay address as PUB (routing mesh).
    #[arg(long, value_name = "PUB:PORT[/tcp|/udp]")]
    pub publish: Vec<String>,
    /// How routing-mesh replies return: through the ingress host, or straight from the
    /// backend's host (direct server return).
    #[arg(long, value_name = "default|dsr")]
    pub mode: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The service's name.
    pub name: String,
    /// Add a backend (an endpoint of the service's network), optionally with a weight
    /// 1-1000 (default 1). Repeatable.
    #[arg(long, value_name = "ENDPOINT[:WEIGHT]")]
    pub add_backend: Vec<String>,
    /// Remove a backend: no flow goes to it any more, established ones included. Repeatable.
    #[arg(long, value_name = "ENDPOINT")]
    pub rm_backend: Vec<String>,
    /// Drain a backend: no new flows go to it, established ones stay. Repeatable.
    #[arg(long, value_name = "ENDPOINT")]
    pub drain_backend: Vec<String>,
    /// Take a drained backend back: it gets new flows again. Repeatable.
    #[arg(long, value_name = "ENDPOINT")]
    pub undrain_backend: Vec<String>,
    /// Set a backend's relative weight, 1-1000. Repeatable.
    #[arg(long, value_name = "ENDPOINT:WEIGHT")]
    pub set_weight: Vec<String>,
    #[command(flatten)]
    pub health: HealthArgs,
    /// Session affinity: `none` or `client-ip`.
    #[arg(long, value_name = "none|client-ip")]
    pub affinity: Option<String>,
    /// Slots of the Maglev table: a prime at least the number of backends, or `auto` for the
    /// default (the smallest of vxmesh's primes at least 100 x the backends).
    #[arg(long, visible_alias = "table-size", value_name = "N|auto")]
    pub maglev_table_size: Option<String>,
    #[arg(long, value_name = "PUB:PORT[/tcp|/udp]")]
    pub publish: Vec<String>,
    #[arg(long, value_name = "PUB:PORT[/tcp|/udp]")]
    pub unpublish: Vec<String>,
    #[arg(long, value_name = "default|dsr")]
    pub mode: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The service's name.
    pub name: String,
    /// Where the nodes' BPF pins are: counters are read from `DIR/NODE/maps` for every node
    /// whose directory exists on this machine (read only: nothing is loaded or changed).
    #[arg(long, value_name = "DIR", env = "VXMESH_PIN_ROOT", default_value = vxmesh::DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,
}

fn print_changed(verb: &str, svc: &ServiceView, json: bool) {
    if json {
        output::json(svc);
    } else {
        let ports: Vec<String> = svc.ports.iter().map(|p| p.to_string()).collect();
        let published: Vec<String> = svc.publish.iter().map(|p| p.to_string()).collect();
        let mesh = if published.is_empty() {
            String::new()
        } else {
            format!(", published {} ({} mode)", published.join(", "), svc.mode)
        };
        println!(
            "{verb} service {} (vip {}, ports {}{mesh}, {} backend(s))",
            svc.name,
            svc.vip,
            ports.join(", "),
            svc.backends.len()
        );
    }
}

pub fn run(cmd: ServiceCmd, catalog: &Catalog, json: bool) -> Result<()> {
    let services = ServiceCatalog::of(catalog);
    match cmd {
        ServiceCmd::Create(a) => {
            let spec = service_args::create_spec(a)?;
            let svc = services.create(&spec)?;
            print_changed("created", &(&svc).into(), json);
        }
        ServiceCmd::Ls { network } => {
            let list = services::list(catalog, network.as_deref())?;
            if json {
                output::json(&list);
            } else {
                service_table::print_list(&list);
            }
        }
        ServiceCmd::Inspect(a) => {
            let seen = services::inspect(catalog, &a.name, &a.pin_root)?;
            if json {
                output::json(&seen);
            } else {
                service_table::print_inspection(&seen);
            }
        }
        ServiceCmd::Update(a) => {
            let name = a.name.clone();
            let changes = service_args::updates(a)?;
            let svc = services.update(&name, &changes)?;
            print_changed("updated", &(&svc).into(), json);
        }
        ServiceCmd::Rm { name } => {
            let svc = services.remove(&name)?;
            print_changed("removed", &(&svc).into(), json);
        }
    }
    Ok(())
}
