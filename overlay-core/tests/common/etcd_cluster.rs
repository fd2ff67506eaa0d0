//! A real etcd cluster for tests: N members of Debian's `etcd` on loopback ports picked free,
//! one data directory each under a temporary directory; killed and removed on drop, even
//! when the test fails.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::process::{Child, Stdio};
use std::time::Duration;

use overlay_core::store::etcd::members::{wait_ready, ClusterPlan, Member};
use overlay_core::store::{EtcdConfig, EtcdStore};

pub struct EtcdCluster {
    pub plan: ClusterPlan,
    children: Vec<Option<Child>>,
    dir: tempfile::TempDir,
}

/// A loopback port nobody listens on now (the kernel's pick; released at once).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers (panics with the members' logs
    /// otherwise).
    pub fn start(n: usize) -> EtcdCluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let token = format!(
            "vxtest-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port()),
                peer: SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port()),
                data_dir: dir.path().join(format!("m{i}")),
            })
            .collect();
        let mut cluster = EtcdCluster {
            plan: ClusterPlan { token, members },
            children: (0..n).map(|_| None).collect(),
            dir,
        };
        for i in 0..n {
            cluster.start_member(i);
        }
        let store = cluster.open();
        if let Err(e) = wait_ready(&store, Duration::from_secs(30)) {
            panic!("etcd did not become ready: {e}\n{}", cluster.logs());
        }
        cluster
    }

    /// Starts member `i` (again, on its data directory).
    pub fn start_member(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "member {i} is running");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("m{i}.log")))
            .expect("member log");
        let child = self
            .plan
            .command(i)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd (is etcd-server installed? cargo xtask setup)");
        self.children[i] = Some(child);
    }

    /// SIGKILLs member `i` and reaps it.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The store configuration that reaches every member.
    pub fn config(&self) -> EtcdConfig {
        self.plan.config()
    }

    /// A new client of the cluster.
    pub fn open(&self) -> EtcdStore {
        EtcdStore::connect(self.config()).expect("connect to etcd")
    }

    /// Every member's log, for failure messages.
    pub fn logs(&self) -> String {
        (0..self.children.len())
            .map(|i| {
                let text = std::fs::read_to_string(self.dir.path().join(format!("m{i}.log")))
                    .unwrap_or_default();
                format!("--- m{i} ---\n{text}")
            })
            .collect()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill_member(i);
        }
    }
}
