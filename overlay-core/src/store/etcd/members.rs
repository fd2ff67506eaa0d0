//! Running a small etcd cluster on this machine: the command line of each member (Debian's
//! `etcd` from the etcd-server package), for the store tests' fixture and the lab.
//!
//! The members are plain processes; whoever starts them owns them (the test fixture kills
//! them on drop, the lab records and stops them).

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{EtcdConfig, DEFAULT_TIMEOUT};
use crate::store::{Store, StoreError};

/// The etcd server binary.
pub const ETCD_BIN: &str = "etcd";

/// One member: its name, client and peer addresses, and data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub client: SocketAddrV4,
    pub peer: SocketAddrV4,
    pub data_dir: PathBuf,
}

/// A cluster to start: its members and its token (unique per cluster, so members of two
/// clusters never join each other).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPlan {
    pub token: String,
    pub members: Vec<Member>,
}

impl ClusterPlan {
    /// The `etcd` command line of member `i` (a new cluster: `--initial-cluster-state new`;
    /// a member restarted on its data directory ignores the initial flags).
    pub fn command(&self, i: usize) -> Command {
        let m = &self.members[i];
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect();
        let mut c = Command::new(ETCD_BIN);
        c.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .arg(format!("--listen-client-urls=http://{}", m.client))
            .arg(format!("--advertise-client-urls=http://{}", m.client))
            .arg(format!("--listen-peer-urls=http://{}", m.peer))
            .arg(format!("--initial-advertise-peer-urls=http://{}", m.peer))
            .arg(format!("--initial-cluster={}", initial.join(",")))
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg("--initial-cluster-state=new")
            .args(["--logger=zap", "--log-outputs=stderr", "--log-level=warn"]);
        c
    }

    /// The store configuration that reaches every member.
    pub fn config(&self) -> EtcdConfig {
        EtcdConfig {
            endpoints: self.members.iter().map(|m| m.client.to_string()).collect(),
            tls: None,
            user: None,
            netns: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Waits until `store` answers a read (the cluster has a leader), up to `limit`; returns the
/// last error otherwise.
pub fn wait_ready(store: &dyn Store, limit: Duration) -> Result<Duration, StoreError> {
    let start = Instant::now();
    loop {
        match store.revision() {
            Ok(_) => return Ok(start.elapsed()),
            Err(e) if start.elapsed() >= limit => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
