//! `lab down`: stop the agents, delete every namespace of the lab, remove its state. Works from
//! what exists (processes, namespaces), not only from the state file, so it also cleans up after
//! a failed or interrupted `lab up`.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use overlay_core::netns;

use super::{check_prefix, process_running, state_dir, LabError, LabState};

/// Is `name` one of this lab's namespaces: `P-sw`, `P-hN` or `P-hN-cM`?
fn is_lab_namespace(prefix: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    if rest == "sw" {
        return true;
    }
    let Some(rest) = rest.strip_prefix('h') else {
        return false;
    };
    let (host, container) = match rest.split_once("-c") {
        Some((h, c)) => (h, Some(c)),
        None => (rest, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(host) && container.is_none_or(digits)
}

/// Agents of this lab: from the state file, and any `vxmesh agent --netns P-hN` process found.
fn agent_pids(prefix: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = LabState::load(prefix)
        .map(|s| s.hosts.iter().filter_map(|h| h.agent_pid).collect())
        .unwrap_or_default();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_agent = args.iter().any(|a| *a == b"agent");
            let in_lab = args.windows(2).any(|w| {
                w[0] == b"--netns"
                    && std::str::from_utf8(w[1]).is_ok_and(|ns| is_lab_namespace(prefix, ns))
            });
            if is_agent && in_lab && !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Removes the lab. Returns what it removed; every step is tried even when one fails, and the
/// errors are reported together.
pub fn down(prefix: &str) -> Result<Vec<String>, LabError> {
    check_prefix(prefix)?;
    let mut done = Vec::new();
    let mut errors = Vec::new();

    let pids: Vec<u32> = agent_pids(prefix)
        .into_iter()
        .filter(|p| process_running(*p))
        .collect();
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| process_running(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in &pids {
        if process_running(*pid) {
            if let Err(e) = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL) {
                errors.push(format!("killing agent {pid}: {e}"));
            }
        }
        done.push(format!("stopped agent {pid}"));
    }

    match netns::list() {
        Ok(names) => {
            for name in names.iter().filter(|n| is_lab_namespace(prefix, n)) {
                match netns::delete(name) {
                    Ok(()) => done.push(format!("deleted namespace {name}")),
                    Err(e) => errors.push(format!("deleting namespace {name}: {e}")),
                }
            }
        }
        Err(e) => errors.push(format!("listing namespaces: {e}")),
    }

    let dir = state_dir(prefix);
    if dir.exists() {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => done.push(format!("removed {}", dir.display())),
            Err(e) => errors.push(format!("removing {}: {e}", dir.display())),
        }
    }
    if errors.is_empty() {
        Ok(done)
    } else {
        Err(LabError::Teardown(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::is_lab_namespace;

    #[test]
    fn matches_only_this_labs_namespaces() {
        for yes in ["vx-sw", "vx-h1", "vx-h12", "vx-h1-c3"] {
            assert!(is_lab_namespace("vx", yes), "{yes}");
        }
        for no in [
            "vx",
            "vx-",
            "vx-h",
            "vx-hx",
            "vx-h1-c",
            "vx2-h1",
            "vx-h1-c1x",
            "vx-h1x-h1",
            "other",
        ] {
            assert!(!is_lab_namespace("vx", no), "{no}");
        }
    }
}
