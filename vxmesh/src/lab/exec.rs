//! `lab exec`: run a command inside a lab host's or container's network namespace (only the
//! network namespace changes, like `nsenter --net`; /sys and cgroups stay as they are).

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sched::CloneFlags;

use super::LabError;

/// Runs `argv` in `member`'s namespace, waits for it and returns its exit code.
pub fn exec(prefix: &str, member: &str, argv: &[String]) -> Result<i32, LabError> {
    let state = super::status(prefix)?;
    let ns = state
        .namespace_of(member)
        .ok_or_else(|| LabError::UnknownMember(member.to_string()))?;
    let Some((program, args)) = argv.split_first() else {
        return Err(LabError::Invalid {
            field: "command",
            value: String::new(),
            reason: "give the command after `--`".into(),
        });
    };
    let path = overlay_core::netns::path(ns);
    let file = std::fs::File::open(&path).map_err(|source| LabError::Io {
        context: format!("opening {}", path.display()),
        source,
    })?;
    let fd = file.as_raw_fd();
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: between fork and exec only the async-signal-safe setns(2) runs.
    unsafe {
        cmd.pre_exec(move || {
            let f = std::os::fd::BorrowedFd::borrow_raw(fd);
            nix::sched::setns(f, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
        });
    }
    let status = cmd.status().map_err(|source| LabError::Io {
        context: format!("running {program} in {ns}"),
        source,
    })?;
    drop(state);
    drop(file);
    Ok(status.code().unwrap_or(128 + 9))
}
