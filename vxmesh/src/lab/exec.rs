//! `lab exec`: run a command inside a lab host's or container's network namespace (only the
//! network namespace changes, like `nsenter --net`; /sys stays as it is). A container's
//! command runs in the container's cgroup (so its sockets are balanced by the socket
//! programs), unless asked to run outside it (then only the packet path sees its traffic),
//! and sees the container's resolv.conf (its network's gateway: the agent's DNS) as
//! /etc/resolv.conf, in a mount namespace of its own.

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sched::CloneFlags;

use super::LabError;

/// Runs `argv` in `member`'s namespace (and, for a container unless `outside_cgroup`, in
/// its cgroup), waits for it and returns its exit code.
pub fn exec(
    prefix: &str,
    member: &str,
    argv: &[String],
    outside_cgroup: bool,
) -> Result<i32, LabError> {
    let state = super::status(prefix)?;
    let Some((program, args)) = argv.split_first() else {
        return Err(LabError::Invalid {
            field: "command",
            value: String::new(),
            reason: "give the command after `--`".into(),
        });
    };
    let mut cmd = command_in(&state, member, program, outside_cgroup)?;
    cmd.args(args);
    let status = cmd.status().map_err(|source| LabError::Io {
        context: format!("running {program} in {member}"),
        source,
    })?;
    Ok(status.code().unwrap_or(128 + 9))
}

/// A command that runs `program` in lab member `member`'s network namespace and, for a
/// container unless `outside_cgroup`, in the container's cgroup (both entered between fork
/// and exec; the command holds the open namespace and `cgroup.procs` until it is dropped).
/// Errors: an unknown member, a namespace or cgroup that cannot be opened.
pub(super) fn command_in(
    state: &super::LabState,
    member: &str,
    program: &str,
    outside_cgroup: bool,
) -> Result<Command, LabError> {
    let prefix = state.prefix.as_str();
    let ns = state
        .namespace_of(member)
        .ok_or_else(|| LabError::UnknownMember(member.to_string()))?;
    let path = overlay_core::netns::path(ns);
    let file = std::fs::File::open(&path).map_err(|source| LabError::Io {
        context: format!("opening {}", path.display()),
        source,
    })?;
    // The container's cgroup, opened here; the child joins it before exec.
    let procs = match state.container(member) {
        Some(c) if !outside_cgroup => {
            let cg = super::cgroup::container_cgroup(prefix, &c.host, &c.name);
            if !cg.exists() {
                return Err(LabError::step(
                    format!("running in {member}'s cgroup"),
                    format!(
                        "{} does not exist (lab made by an older vxmesh?); use --outside-cgroup",
                        cg.display()
                    ),
                ));
            }
            Some(super::cgroup::open_procs(&cg)?)
        }
        _ => None,
    };
    // A container's resolv.conf (its gateway) over /etc/resolv.conf, as `ip netns exec` does.
    let resolv = state
        .container(member)
        .and_then(|c| super::resolv::Bind::for_namespace(&c.namespace));
    let mut cmd = Command::new(program);
    // SAFETY: between fork and exec only system calls run (write(2), setns(2), and for a
    // container unshare(2) and mount(2)), on memory made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(p) = &procs {
                super::cgroup::join_self(p)?;
            }
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            if let Some(b) = &resolv {
                b.apply()?;
            }
            Ok(())
        });
    }
    Ok(cmd)
}
