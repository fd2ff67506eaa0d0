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

pub fn test(passthrough: &[String]) -> Result<()> {
    util::require_root("test")?;
    crate::setup::setup()?;

    heading("building the workspace (cargo build --workspace --all-targets)");
    util::run(util::cargo().args(["build", "--workspace", "--all-targets"]))?;

    heading("running the tests (cargo test --workspace); they create network namespaces");
    // The harness's output goes to our stdout line by line as it comes, and the closing
    // `test result:` lines are added up for one summary line at the end.
    let mut child = util::cargo()
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(passthrough)
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let mut totals = Totals::default();
    let stdout = child.stdout.take().expect("piped stdout");
    let mut out = std::io::stdout();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        totals.add(&line);
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    let status = child.wait().context("waiting for cargo test")?;
    heading("summary");
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if !status.success() || totals.failed > 0 {
        bail!("tests failed ({status})");
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
