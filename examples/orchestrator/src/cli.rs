//! The commands the binary reads, one per line on stdin (`deploy web --replicas 6 --publish
//! 8080:80 --network front`), and what each does with the [`Orchestrator`].

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use vxmesh::services::{parse_duration_ms, PublishedPort};
use vxmesh_orchestrator::{DeploySpec, Orchestrator};

/// One command line.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
pub struct Line {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Deploy a service: its replicas over the hosts, a backend each, health-checked over HTTP.
    Deploy {
        /// The service's name.
        name: String,
        /// How many replicas to keep.
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// Publish the service's PORT on every host's address as PUB (routing mesh).
        #[arg(long, value_name = "PUB:PORT")]
        publish: Vec<PublishedPort>,
        /// The network (it must exist: `vxmesh network create`).
        #[arg(long)]
        network: String,
        /// The port the replicas listen on.
        #[arg(long, default_value_t = 80)]
        port: u16,
        /// The version the replicas serve.
        #[arg(long, default_value = "v1")]
        version: String,
    },
    /// Set the number of replicas.
    Scale {
        /// The service.
        name: String,
        /// The new count.
        replicas: usize,
    },
    /// Rolling update: replace the replicas one at a time with ones serving VERSION.
    Update {
        /// The service.
        name: String,
        /// The new version.
        #[arg(long)]
        version: String,
        /// Pause between two replacements (`500ms`, `1s`, …).
        #[arg(long, default_value = "1s")]
        delay: String,
    },
    /// List a service's replicas: name, version, host, address, backend state.
    Ps {
        /// The service.
        name: String,
    },
}

/// Runs one command and prints what it did.
pub async fn run(orch: &Orchestrator, command: Command) -> Result<()> {
    match command {
        Command::Deploy {
            name,
            replicas,
            publish,
            network,
            port,
            version,
        } => {
            let mut spec = DeploySpec::new(&name, replicas, &network);
            spec.publish = publish;
            spec.port = port;
            spec.version = version;
            orch.deploy(spec).await?;
            println!("deployed {name}: {replicas} replica(s)");
        }
        Command::Scale { name, replicas } => {
            orch.scale(&name, replicas).await?;
            println!("scaled {name} to {replicas}");
        }
        Command::Update {
            name,
            version,
            delay,
        } => {
            let ms = parse_duration_ms("delay", &delay)?;
            orch.update(&name, &version, Duration::from_millis(ms.into()))
                .await
                .with_context(|| format!("updating {name}"))?;
            println!("updated {name} to {version}");
        }
        Command::Ps { name } => {
            println!(
                "{:<12} {:<8} {:<8} {:<15} STATE",
                "NAME", "VERSION", "NODE", "ADDRESS"
            );
            for r in orch.ps(&name).await? {
                println!(
                    "{:<12} {:<8} {:<8} {:<15} {}",
                    r.name, r.version, r.node, r.address, r.state
                );
            }
        }
    }
    Ok(())
}
