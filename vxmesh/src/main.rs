//! The `vxmesh` binary: CLI, agent and lab.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

mod cli;

use cli::{Cli, Command};

fn init_logging(agent: bool) {
    let default = if agent { "info" } else { "warn" };
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // hickory-server logs every DNS request at info: keep the agent's log for its own lines
    // unless RUST_LOG asks for hickory's.
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("hickory")) {
        for quiet in [
            "hickory_server=warn",
            "hickory_net=warn",
            "hickory_proto=warn",
        ] {
            filter = filter.add_directive(quiet.parse().expect("a valid directive"));
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let json = cli.json;
    let open = || cli.store_args.catalog(&cli.store);
    match cli.command {
        Command::Lab(cmd) => cli::lab::run(cmd, &cli.store, json),
        Command::Store(cmd) => {
            cli::store::run(cmd, &cli.store_args, json)?;
            Ok(0)
        }
        Command::Cni(cmd) => {
            cli::cni::run(cmd, &cli.store, json)?;
            Ok(0)
        }
        Command::Agent(args) => {
            // Before any thread exists, so the whole agent lives in that namespace.
            cli::agent::enter_netns(&args)?;
            let catalog = open()?;
            cli::agent::run(args, catalog)?;
            Ok(0)
        }
        Command::Network(cmd) => {
            cli::network::run(cmd, &open()?, json)?;
            Ok(0)
        }
        Command::Node(cmd) => {
            cli::node::run(cmd, &open()?, json)?;
            Ok(0)
        }
        Command::Endpoint(cmd) => {
            cli::endpoint::run(cmd, &open()?, json)?;
            Ok(0)
        }
        Command::Service(cmd) => {
            cli::service::run(*cmd, &open()?, json)?;
            Ok(0)
        }
    }
}

/// A reader that stops early (`vxmesh lab status | head -1`) closes the pipe: Rust ignores
/// SIGPIPE, so `println!` then panics with EPIPE. That ends the program quietly with the status a
/// shell gives a process SIGPIPE killed (128 + 13), instead of a panic message. (SIGPIPE itself
/// stays ignored, so a reset store connection is an error to handle, never a silent death.)
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(128 + libc::SIGPIPE);
        }
        default(info);
    }));
}

/// The error and its causes, "outer: inner: …", leaving out a cause whose text the message
/// already ends with (library errors often carry their source in their own message too).
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.is_empty() {
            text = c;
        } else if !text.ends_with(&c) {
            text = format!("{text}: {c}");
        }
    }
    text
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Programs that asked for JSON get their error as JSON too; help and version
            // requests are not errors.
            let wants_json = std::env::args()
                .skip(1)
                .take_while(|a| a != "--")
                .any(|a| a == "--json");
            if wants_json && e.use_stderr() {
                let msg = e.kind().to_string();
                let detail = e.to_string();
                let first = detail
                    .lines()
                    .next()
                    .unwrap_or(&msg)
                    .trim_start_matches("error: ");
                println!("{}", serde_json::json!({ "error": first }));
            }
            e.exit();
        }
    };
    init_logging(matches!(cli.command, Command::Agent(_)));
    let json = cli.json;
    match run(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let msg = error_text(&e);
            if json {
                println!("{}", serde_json::json!({ "error": msg }));
            }
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
