//! `cargo xtask test`: set up, build everything, run every test.

use anyhow::Result;

use crate::util::{self, heading};

pub fn test(passthrough: &[String]) -> Result<()> {
    util::require_root("test")?;
    crate::setup::setup()?;

    heading("building the workspace (cargo build --workspace --all-targets)");
    util::run(util::cargo().args(["build", "--workspace", "--all-targets"]))?;

    heading("running the tests (cargo test --workspace); they create network namespaces");
    // Inherited stdio: the test harness's own output, including the closing
    // `test result:` lines, goes straight to our stdout.
    util::run(
        util::cargo()
            .args(["test", "--workspace"])
            .args(passthrough),
    )?;
    heading("all tests passed");
    Ok(())
}
