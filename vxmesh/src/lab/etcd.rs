//! The lab's etcd: three members of Debian's `etcd` in a network namespace of the lab's own
//! (`PREFIX-etcd`, on its loopback), one data directory each under the lab's state directory.
//! Every client of the lab's store (the CLI, the agents, the CNI plugin) reaches them through
//! `?netns=PREFIX-etcd` in the store specification: the etcd client's threads enter that
//! namespace. `lab down` stops the members (only processes shown to be them) and deletes the
//! namespace with the others.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use overlay_core::dataplane::Dataplane;
use overlay_core::netns;
use overlay_core::process::{Pidfd, ProcessIdentity};
use overlay_core::store::etcd::members::{wait_ready, ClusterPlan, Member};
use overlay_core::store::{EtcdConfig, EtcdStore};
use serde::{Deserialize, Serialize};

use super::{state_dir, LabError};

/// The namespace suffix: `PREFIX-etcd`.
pub const NAMESPACE_SUFFIX: &str = "etcd";
/// Members' client ports on the namespace's loopback (peer port: client + 1).
const CLIENT_PORTS: [u16; 3] = [2379, 12379, 22379];

/// One member as `lab up` started it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabEtcdMember {
    /// The member's name.
    pub name: String,
    /// `127.0.0.1:PORT` inside the etcd namespace.
    pub client: String,
    /// The PID of its process, when it was started.
    pub pid: Option<u32>,
    /// Start time (clock ticks after boot): with the PID and the command line it proves a
    /// process is this member before anything signals it.
    pub start_time: Option<u64>,
    /// Filled by `lab status`: the process is there.
    #[serde(default)]
    pub running: bool,
}

/// The lab's etcd cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabEtcd {
    /// The network namespace the members run in (`PREFIX-etcd`).
    pub namespace: String,
    /// The three members.
    pub members: Vec<LabEtcdMember>,
}

/// The cluster token of a lab: members of two labs never join each other, and `lab down`
/// finds a lab's members by it.
fn token(prefix: &str) -> String {
    format!("vxmesh-lab-{prefix}")
}

fn plan(prefix: &str) -> ClusterPlan {
    let dir = state_dir(prefix).join("etcd");
    ClusterPlan {
        token: token(prefix),
        members: CLIENT_PORTS
            .iter()
            .enumerate()
            .map(|(i, &port)| Member {
                name: format!("m{}", i + 1),
                client: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
                peer: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port + 1),
                data_dir: dir.join(format!("m{}", i + 1)),
            })
            .collect(),
    }
}

/// Is `args` the command line of one of lab `prefix`'s etcd members?
pub fn is_member_of(args: &[String], prefix: &str) -> bool {
    let want = format!("--initial-cluster-token={}", token(prefix));
    args.first()
        .is_some_and(|a| Path::new(a).file_name() == Some("etcd".as_ref()))
        && args.contains(&want)
}

impl LabEtcd {
    /// The store specification every client of the lab uses.
    pub fn store_url(&self) -> String {
        let eps: Vec<&str> = self.members.iter().map(|m| m.client.as_str()).collect();
        format!("etcd://{}?netns={}", eps.join(","), self.namespace)
    }

    /// A pidfd on member `i`, when the process holding its PID is that member.
    pub fn member(&self, prefix: &str, i: usize) -> Option<Pidfd> {
        let m = &self.members[i];
        let expected = ProcessIdentity {
            pid: m.pid?,
            start_time: m.start_time.unwrap_or(0),
        };
        Pidfd::open_if(expected, |args| is_member_of(args, prefix))
            .ok()
            .flatten()
            .filter(|p| !p.exited())
    }

    /// Starts member `i` (a new cluster's member, or again on its data directory).
    pub fn start_member(&mut self, prefix: &str, i: usize) -> Result<(), LabError> {
        let plan = plan(prefix);
        let m = &plan.members[i];
        std::fs::create_dir_all(&m.data_dir).map_err(|source| LabError::Io {
            context: format!("creating {}", m.data_dir.display()),
            source,
        })?;
        let log_path = state_dir(prefix).join(format!("etcd-{}.log", m.name));
        let io = |what: &str, source| LabError::Io {
            context: format!("{what} {}", log_path.display()),
            source,
        };
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io("creating", e))?;
        let err = log.try_clone().map_err(|e| io("opening", e))?;
        let ns_path = netns::path(&self.namespace);
        let ns = File::open(&ns_path).map_err(|source| LabError::Io {
            context: format!("opening {}", ns_path.display()),
            source,
        })?;
        let mut cmd = plan.command(i);
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            // Its own process group: a Ctrl-C meant for `lab up` does not stop it.
            .process_group(0);
        let fd = ns.as_raw_fd();
        // SAFETY: between fork and exec the child only calls setns(2), which is
        // async-signal-safe, on a descriptor the parent keeps open until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| LabError::Io {
            context: format!(
                "starting etcd member {} (is etcd-server installed?)",
                m.name
            ),
            source,
        })?;
        drop(ns);
        let member = &mut self.members[i];
        member.pid = Some(child.id());
        member.start_time = ProcessIdentity::of(child.id()).ok().map(|i| i.start_time);
        member.running = true;
        Ok(())
    }
}

/// The lab's cluster before any member runs.
fn not_started(prefix: &str, namespace: String) -> LabEtcd {
    LabEtcd {
        namespace,
        members: plan(prefix)
            .members
            .iter()
            .map(|m| LabEtcdMember {
                name: m.name.clone(),
                client: m.client.to_string(),
                pid: None,
                start_time: None,
                running: false,
            })
            .collect(),
    }
}

/// Makes the namespace, starts three members and waits until the cluster answers.
pub fn start(prefix: &str) -> Result<LabEtcd, LabError> {
    let namespace = format!("{prefix}-{NAMESPACE_SUFFIX}");
    netns::create(&namespace)
        .map_err(|e| LabError::step(format!("creating namespace {namespace}"), e))?;
    netns::block_on_in(&netns::path(&namespace), || async {
        let dp = Dataplane::connect()?;
        let lo = dp
            .links()
            .await?
            .into_iter()
            .find(|l| l.name == "lo")
            .map(|l| l.index);
        match lo {
            Some(index) => dp.set_up(index).await,
            None => Ok(()),
        }
    })
    .map_err(|e| LabError::step(format!("bringing up lo in {namespace}"), e))?
    .map_err(|e| LabError::step(format!("bringing up lo in {namespace}"), e))?;
    let mut etcd = not_started(prefix, namespace);
    for i in 0..etcd.members.len() {
        etcd.start_member(prefix, i)?;
    }
    let config = EtcdConfig::parse(&etcd.store_url())
        .map_err(|e| LabError::step("the lab's etcd store", e))?;
    let store = EtcdStore::connect(config)
        .map_err(|e| LabError::step("connecting to the lab's etcd", e))?;
    wait_ready(&store, Duration::from_secs(30)).map_err(|e| {
        LabError::step(
            "waiting for the lab's etcd",
            format!("{e}; see {}/etcd-m*.log", state_dir(prefix).display()),
        )
    })?;
    Ok(etcd)
}

/// This lab's members: from the state (PID, start time, command line) and any other process
/// with the lab's cluster token (left by a failed `lab up`).
pub fn members(prefix: &str, recorded: Option<&LabEtcd>) -> Vec<Pidfd> {
    let found = recorded
        .map(|e| {
            (0..e.members.len())
                .filter_map(|i| e.member(prefix, i))
                .collect()
        })
        .unwrap_or_default();
    super::down::with_matching_processes(found, |args| is_member_of(args, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_this_labs_members() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_member_of(
            &args(&["/usr/bin/etcd", "--initial-cluster-token=vxmesh-lab-vx"]),
            "vx"
        ));
        assert!(!is_member_of(
            &args(&["etcd", "--initial-cluster-token=vxmesh-lab-vx2"]),
            "vx"
        ));
        assert!(!is_member_of(
            &args(&["sh", "--initial-cluster-token=vxmesh-lab-vx"]),
            "vx"
        ));
    }

    #[test]
    fn the_store_url_names_the_namespace() {
        let e = not_started("vx", "vx-etcd".into());
        assert_eq!(
            e.store_url(),
            "etcd://127.0.0.1:2379,127.0.0.1:12379,127.0.0.1:22379?netns=vx-etcd"
        );
    }
}
