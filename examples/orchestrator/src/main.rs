//! `vxmesh-orchestrator --lab PREFIX`: takes over the hosts of a vxmesh lab (runs their agents
//! in this process), then reads commands from stdin, one per line (see `cli.rs`), while its
//! reconciler keeps every service at its count. Runs until SIGINT or SIGTERM.

mod cli;

use anyhow::{Context, Result};
use clap::Parser;
use vxmesh_orchestrator::{HostSpec, Options, Orchestrator};

/// Deploys, scales and updates services over a vxmesh lab's hosts.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The lab (`vxmesh lab up --prefix PREFIX`); its agents are stopped and run here instead.
    #[arg(long, value_name = "PREFIX", default_value = "vxlab")]
    lab: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let lab = vxmesh::lab::LabState::load(&args.lab)?;
    let catalog = vxmesh::open_catalog(&lab.store).context("opening the lab's store")?;
    let hosts = HostSpec::take_over_lab(&args.lab, &[])?;
    let orch = Orchestrator::start(catalog, hosts, Options::default()).await?;
    let _reconciler = orch.spawn_reconciler();
    eprintln!("ready: deploy, scale, update, ps (one per line; --help after any)");

    // stdin is read on a thread of its own: a blocking read must not keep the process alive
    // after a signal.
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            // At the end of input the services keep running until a signal.
            Some(line) = lines.recv() => {
                if line.trim().is_empty() {
                    continue;
                }
                match cli::Line::try_parse_from(line.split_whitespace()) {
                    Ok(l) => {
                        if let Err(e) = cli::run(&orch, l.command).await {
                            eprintln!("error: {e:#}");
                        }
                    }
                    Err(e) => eprintln!("{e}"),
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    orch.stop_agents().await;
    Ok(())
}
