//! `cargo xtask test`: set up, build everything, run every test.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::util::{self, heading, say};

/// Totals over every `test result:` line cargo test printed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Adds a line like `test result: ok. 6 passed; 0 failed; 1 ignored; 0 measured; ...`.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// The overlay tests that run a second time with the agents on the eBPF fast path
/// (`VXMESH_TEST_DATAPATH=ebpf`, read by the lab fixtures): traffic and isolation, interop
/// with iproute2, MTU, reconcile, CNI across hosts (issue 12).
const EBPF_RERUN: [&str; 5] = [
    "overlay_traffic",
    "interop_iproute2",
    "mtu",
    "reconcile",
    "cni_crosshost",
];

/// Runs `cargo test ARGS` with `env` set, its output going to our stdout line by line as it
/// comes; adds its `test result:` lines to `totals`. Returns whether cargo succeeded.
fn cargo_test(args: &[String], env: &[(&str, &str)], totals: &mut Totals) -> Result<bool> {
    let mut cmd = util::cargo();
    cmd.arg("test").args(args).stdout(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().context("running cargo test")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut out = std::io::stdout();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        totals.add(&line);
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    Ok(child.wait().context("waiting for cargo test")?.success())
}

/// Whether the arguments passed on choose packages or targets themselves (then the rerun of
/// the overlay tests, which names its own, is left out).
fn selects_targets(passthrough: &[String]) -> bool {
    passthrough.iter().take_while(|a| *a != "--").any(|a| {
        [
            "-p",
            "--package",
            "--test",
            "--lib",
            "--bin",
            "--doc",
            "--exclude",
        ]
        .iter()
        .any(|o| a == o || a.starts_with(&format!("{o}=")))
    })
}

pub fn test(passthrough: &[String]) -> Result<()> {
    util::require_root("test")?;
    crate::setup::setup()?;

    heading("building the workspace (cargo build --workspace --all-targets)");
    util::run(util::cargo().args(["build", "--workspace", "--all-targets"]))?;

    heading("running the tests (cargo test --workspace); they create network namespaces");
    // The closing `test result:` lines are added up for one summary line at the end.
    let mut totals = Totals::default();
    let mut args: Vec<String> = vec!["--workspace".into(), "--no-fail-fast".into()];
    args.extend_from_slice(passthrough);
    let mut ok = cargo_test(&args, &[], &mut totals)?;

    if selects_targets(passthrough) {
        say("the arguments choose their own targets: the overlay tests are not run again on ebpf");
    } else {
        heading(&format!(
            "the overlay tests again on the eBPF fast path (VXMESH_TEST_DATAPATH=ebpf): {}",
            EBPF_RERUN.join(", ")
        ));
        let mut args: Vec<String> =
            vec!["-p".into(), "vxmesh-tests".into(), "--no-fail-fast".into()];
        for t in EBPF_RERUN {
            args.extend(["--test".to_string(), t.to_string()]);
        }
        args.extend_from_slice(passthrough);
        ok &= cargo_test(&args, &[("VXMESH_TEST_DATAPATH", "ebpf")], &mut totals)?;
    }
    heading("summary");
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if !ok || totals.failed > 0 {
        bail!("tests failed");
    }
    if totals.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn knows_when_the_arguments_choose_targets() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(!super::selects_targets(&a(&[
            "overlay",
            "--",
            "--nocapture"
        ])));
        assert!(super::selects_targets(&a(&["-p", "vxmesh-ebpf"])));
        assert!(super::selects_targets(&a(&["--test=mtu"])));
        assert!(!super::selects_targets(&a(&["--", "--test-threads", "1"])));
    }

    #[test]
    fn adds_up_result_lines() {
        let mut t = Totals::default();
        t.add("test result: ok. 6 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.05s");
        t.add("test result: FAILED. 2 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out");
        t.add("running 4 tests");
        assert_eq!(
            t,
            Totals {
                passed: 8,
                failed: 3,
                ignored: 1
            }
        );
    }
}
