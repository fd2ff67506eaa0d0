//! vxmesh's task runner: `cargo xtask setup | test | demo | bench overlay|crypto|cni|lb|mesh|control`.

mod bench;
mod bench_cni;
mod bench_control;
mod bench_crypto;
mod bench_fast;
mod bench_lb;
mod bench_mesh;
mod demo;
mod lab;
mod setup;
mod test;
mod util;

use std::process::ExitCode;

use anyhow::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  setup                  install the Debian packages vxmesh needs (root, apt-get)
  test [-- ARGS...]      setup, cargo build --workspace --all-targets,
                         cargo test --workspace ARGS... (root: tests create netns),
                         then the overlay tests again with VXMESH_TEST_DATAPATH=ebpf
                         e.g. cargo xtask test -- store -- --nocapture
  demo                   setup, build vxmesh, run a 3-host lab and explain it
  bench overlay [--seconds N] [--rounds R] [--no-lab] [--cpus LIST]
                         iperf3 TCP throughput: lab underlay, vxmesh overlay on the
                         bridge and the ebpf datapath (agents' CPU too) and a VXLAN
                         link built by hand (N s each, default 10); --no-lab
                         measures only the by-hand link; --cpus pins every iperf3
  bench crypto | cni     encrypted vs plain overlay vs wireguard-go; CNI ADD/DEL latency
  bench control          endpoint add -> programmed on every host, SQLite and etcd
  bench lb [--seconds N] [--rounds R] [--no-lab]
                         service load balancing: the tc program under
                         BPF_PROG_TEST_RUN with 1/1,000/10,000 services, HTTP via a VIP
                         vs direct vs nftables DNAT (wrk, N s per run), add-backend
                         delay, programming 10,000 services; --no-lab: the first only
  bench mesh [--seconds N] [--rounds R]
                         the routing mesh: wrk from the lab's outside client through
                         the mesh (default mode, DSR), nftables DNAT, haproxy, and one
                         server directly; keep-alive and Connection: close; CPU/request
  help                   this text

demo and bench build target/release/vxmesh; VXMESH_BIN=PATH uses another binary.
";

fn main() -> ExitCode {
    util::install_interrupt_handler();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            util::flush();
            eprintln!("\nxtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        print!("{USAGE}");
        bail!("no command given");
    };
    match command.as_str() {
        "setup" => {
            no_args("setup", rest)?;
            setup::setup()
        }
        "test" => {
            let passthrough = match rest.split_first() {
                None => &[][..],
                Some((dashes, after)) if dashes == "--" => after,
                Some(_) => bail!(
                    "`cargo xtask test` takes arguments for cargo test after `--`, \
                     e.g. `cargo xtask test -- FILTER`"
                ),
            };
            test::test(passthrough)
        }
        "demo" => {
            no_args("demo", rest)?;
            demo::demo()
        }
        "bench" => bench::bench(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            print!("{USAGE}");
            bail!("unknown command {other:?}")
        }
    }
}

fn no_args(command: &str, rest: &[String]) -> Result<()> {
    if let Some(extra) = rest.first() {
        bail!("`cargo xtask {command}` takes no arguments (got {extra:?})");
    }
    Ok(())
}
