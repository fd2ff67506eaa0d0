//! `cargo xtask test`: set up, build everything, run every test.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::util::{self, heading};

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

/// The lab tests that run a second time with every lab on etcd.
const ON_ETCD_TOO: &[&str] = &["overlay_traffic", "reconcile", "cni_crosshost"];
/// The variable the lab fixture reads (tests/src/lib.rs `test_store`).
const ETCD_ENV: &str = "VXMESH_TEST_STORE";

/// The overlay tests that run a second time with the agents on the eBPF fast path
/// (`VXMESH_TEST_DATAPATH=ebpf`, read by the lab fixtures): traffic and isolation, interop
/// with iproute2, MTU, reconcile, CNI across hosts (issue 12).
const EBPF_RERUN: &[&str] = &[
    "overlay_traffic",
    "interop_iproute2",
    "mtu",
    "reconcile",
    "cni_crosshost",
];

/// Whether the arguments passed on choose packages or targets themselves (then the reruns,
/// which name their own, are left out).
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

/// Runs `cargo test ARGS --no-fail-fast PASSTHROUGH` (with `env` set), its output streamed
/// line by line and its `test result:` lines added to `totals`; true when it succeeded.
fn run_tests(
    args: &[&str],
    passthrough: &[String],
    env: Option<(&str, &str)>,
    totals: &mut Totals,
) -> Result<bool> {
    let mut cmd = util::cargo();
    cmd.arg("test")
        .args(args)
        .arg("--no-fail-fast")
        .args(passthrough);
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut out = std::io::stdout();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        totals.add(&line);
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    let status = child.wait().context("waiting for cargo test")?;
    Ok(status.success())
}

pub fn test(passthrough: &[String]) -> Result<()> {
    util::require_root("test")?;
    crate::setup::setup()?;

    heading("building the workspace (cargo build --workspace --all-targets)");
    util::run(util::cargo().args(["build", "--workspace", "--all-targets"]))?;

    // Issue 11: the facade's rustdoc builds without a warning (broken links included). Its
    // doc tests run with the workspace's tests below (`cargo test --workspace` runs them).
    heading("checking the facade's documentation (cargo doc --no-deps -p vxmesh, -D warnings)");
    let docs_ok = util::run(
        util::cargo()
            .args(["doc", "--no-deps", "-p", "vxmesh"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )
    .inspect_err(|e| eprintln!("{e:#}"))
    .is_ok();

    heading("running the tests (cargo test --workspace, doc tests included); they create network namespaces");
    let mut totals = Totals::default();
    let mut ok = run_tests(&["--workspace"], passthrough, None, &mut totals)? && docs_ok;

    if !selects_targets(passthrough) {
        // Acceptance 2 of the etcd issue: the same test bodies with every lab on etcd.
        heading(&format!(
            "running the overlay, reconcile and CNI cross-host tests again on etcd \
             ({ETCD_ENV}=etcd: each lab on a 3-member etcd cluster of its own)"
        ));
        let mut args = vec!["-p", "vxmesh-tests"];
        for t in ON_ETCD_TOO {
            args.extend(["--test", t]);
        }
        ok &= run_tests(&args, passthrough, Some((ETCD_ENV, "etcd")), &mut totals)?;

        // Issue 12: the overlay tests with the agents on the eBPF fast path.
        heading(
            "running the overlay tests again with the agents on the eBPF fast path \
             (VXMESH_TEST_DATAPATH=ebpf)",
        );
        let mut args = vec!["-p", "vxmesh-tests"];
        for t in EBPF_RERUN {
            args.extend(["--test", t]);
        }
        ok &= run_tests(
            &args,
            passthrough,
            Some(("VXMESH_TEST_DATAPATH", "ebpf")),
            &mut totals,
        )?;
    }

    heading("summary");
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if !docs_ok {
        println!("documentation: `cargo doc -p vxmesh` had warnings (see above)");
    }
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
    use super::{selects_targets, Totals};

    #[test]
    fn passthrough_that_names_targets_skips_the_reruns() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(!selects_targets(&a(&[])));
        assert!(!selects_targets(&a(&["--", "same_network"])));
        assert!(selects_targets(&a(&["-p", "overlay-core"])));
        assert!(selects_targets(&a(&["--test=mtu"])));
        assert!(!selects_targets(&a(&["--", "--test"])));
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
