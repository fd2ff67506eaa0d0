//! `lab down`: stop the agents, delete every namespace of the lab, remove its state. Works from
//! what exists (processes, namespaces), not only from the state file, so it also cleans up after
//! a failed or interrupted `lab up`.

use std::time::Duration;

use overlay_core::netns;
use overlay_core::process::{self, Pidfd, ProcessIdentity};

use super::{check_prefix, is_agent_of, state_dir, LabError, LabState};

/// Is `name` one of this lab's namespaces: `P-sw`, `P-client`, `P-hN` or `P-hN-cM`?
fn is_lab_namespace(prefix: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    if rest == "sw" || rest == super::CLIENT || rest == super::etcd::NAMESPACE_SUFFIX {
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

/// Is `name` one of this lab's hosts' namespaces (`P-hN`)?
fn is_host_namespace(prefix: &str, name: &str) -> bool {
    is_lab_namespace(prefix, name)
        && name[prefix.len() + 1..]
            .strip_prefix('h')
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
}

/// Agents of this lab, each as a pidfd opened only after the process was shown to be the
/// agent: from the state file (PID, start time and an `agent --netns P-hN` command line), and
/// any other `vxmesh agent --netns P-hN` process found in /proc (one left by a failed
/// `lab up`). A PID that now names another process is never included.
fn agents(prefix: &str) -> Vec<Pidfd> {
    let found: Vec<Pidfd> = LabState::load(prefix)
        .map(|s| s.hosts.iter().filter_map(|h| h.agent()).collect())
        .unwrap_or_default();
    with_matching_processes(found, |args| {
        args.windows(2).any(|w| {
            w[0] == "--netns" && is_lab_namespace(prefix, &w[1]) && is_agent_of(args, &w[1])
        })
    })
}

/// `found`, plus a pidfd on every other process in /proc whose command line `matches`
/// (opened only after the check, so a PID that names another process by then is left out).
pub(super) fn with_matching_processes(
    mut found: Vec<Pidfd>,
    matches: impl Fn(&[String]) -> bool,
) -> Vec<Pidfd> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if found.iter().any(|p| p.pid() == pid) {
            continue;
        }
        let Ok(identity) = ProcessIdentity::of(pid) else {
            continue;
        };
        if let Ok(Some(p)) = Pidfd::open_if(identity, &matches) {
            found.push(p);
        }
    }
    found
}

/// Removes the lab. Returns what it removed; every step is tried even when one fails, and the
/// errors are reported together.
pub fn down(prefix: &str) -> Result<Vec<String>, LabError> {
    check_prefix(prefix)?;
    let mut done = Vec::new();
    let mut errors = Vec::new();

    let agents = agents(prefix);
    for e in process::terminate_all(&agents, Duration::from_secs(5)) {
        errors.push(format!("stopping an agent: {e}"));
    }
    for p in &agents {
        done.push(format!("stopped agent {}", p.pid()));
    }
    let state = LabState::load(prefix).ok();
    let mounted_bpffs = state.as_ref().is_some_and(|s| s.mounted_bpffs);

    // The demo's replicas, each proven to be the process `lab up` started; anything else
    // left in the containers' cgroups goes with `cgroup.kill` below.
    let (names, replicas): (Vec<String>, Vec<Pidfd>) = state
        .iter()
        .flat_map(|s| s.demo.iter())
        .flat_map(|d| d.replicas.iter())
        .filter_map(|r| Some((r.name.clone(), r.process()?)))
        .unzip();
    for e in process::terminate_all(&replicas, Duration::from_secs(5)) {
        errors.push(format!("stopping a replica: {e}"));
    }
    for (name, p) in names.iter().zip(&replicas) {
        done.push(format!("stopped replica {name} (pid {})", p.pid()));
    }
    // The lab's etcd members, after the agents (their clients).
    let recorded = state.as_ref().and_then(|s| s.etcd.clone());
    let members = super::etcd::members(prefix, recorded.as_ref());
    for e in process::terminate_all(&members, Duration::from_secs(5)) {
        errors.push(format!("stopping an etcd member: {e}"));
    }
    for p in &members {
        done.push(format!("stopped etcd member {}", p.pid()));
    }

    // Processes left in the containers' cgroups (servers started with `lab exec`) and the
    // cgroups; the agents' BPF pins (every program, map and link goes with them).
    for (what, r) in [
        ("cgroups", super::cgroup::remove_all(prefix)),
        ("BPF pins", super::bpf::teardown(prefix)),
    ] {
        match r {
            Ok(d) => done.extend(d),
            Err(e) => errors.push(format!("removing the lab's {what}: {e}")),
        }
    }
    if mounted_bpffs {
        match super::bpf::unmount_if_empty() {
            Ok(true) => done.push(format!("unmounted bpffs at {}", vxmesh_ebpf::BPFFS)),
            Ok(false) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }

    match netns::list() {
        Ok(names) => {
            // The agents' WireGuard interfaces are persistent (they outlive the agents just
            // stopped): deleted explicitly, before their hosts' namespaces.
            for name in names.iter().filter(|n| is_host_namespace(prefix, n)) {
                let ifname = overlay_core::wireguard::DEFAULT_IFNAME;
                let deleted = super::up::ns_step(name, format!("in {name}"), move || async move {
                    overlay_core::dataplane::Dataplane::connect()?
                        .delete_tun(ifname)
                        .await
                });
                match deleted {
                    Ok(true) => done.push(format!("deleted {ifname} in {name}")),
                    Ok(false) => {}
                    Err(e) => errors.push(format!("deleting {ifname}: {e}")),
                }
            }
            for name in names.iter().filter(|n| is_lab_namespace(prefix, n)) {
                match netns::delete(name) {
                    Ok(()) => done.push(format!("deleted namespace {name}")),
                    Err(e) => errors.push(format!("deleting namespace {name}: {e}")),
                }
            }
        }
        Err(e) => errors.push(format!("listing namespaces: {e}")),
    }

    // The containers' resolv.conf files (/etc/netns/P-hN-cM/).
    match super::resolv::remove_all(|n| is_lab_namespace(prefix, n)) {
        Ok(d) => done.extend(d),
        Err(e) => errors.push(e.to_string()),
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
    use super::{is_host_namespace, is_lab_namespace};

    #[test]
    fn matches_only_this_labs_namespaces() {
        for yes in [
            "vx-sw",
            "vx-client",
            "vx-etcd",
            "vx-h1",
            "vx-h12",
            "vx-h1-c3",
        ] {
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

    #[test]
    fn host_namespaces_are_the_hosts_only() {
        for yes in ["vx-h1", "vx-h12"] {
            assert!(is_host_namespace("vx", yes), "{yes}");
        }
        for no in ["vx-sw", "vx-client", "vx-h1-c3", "vx-h", "vx2-h1", "other"] {
            assert!(!is_host_namespace("vx", no), "{no}");
        }
    }
}
