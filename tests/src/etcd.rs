//! A 3-member etcd cluster of a test's own, in a network namespace of its own (reached with
//! `?netns=` like the lab's), and helpers for a lab that runs on etcd.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use overlay_core::store::etcd::members::{wait_ready, ClusterPlan, Member};
use overlay_core::store::{EtcdConfig, EtcdStore};

use crate::{run, run_ok, unique, Lab, TestNetns};

/// Three members on the loopback of a namespace of their own; killed, and their data removed,
/// on drop.
pub struct EtcdNs {
    children: Vec<Child>,
    pub ns: TestNetns,
    dir: tempfile::TempDir,
}

impl EtcdNs {
    pub fn start() -> EtcdNs {
        let ns = TestNetns::new(&unique("etcd"));
        run_ok("ip", &["-n", &ns.0, "link", "set", "lo", "up"]);
        let dir = tempfile::tempdir().unwrap();
        let plan = ClusterPlan {
            token: ns.0.clone(),
            members: [2379u16, 12379, 22379]
                .iter()
                .enumerate()
                .map(|(i, &p)| Member {
                    name: format!("m{i}"),
                    client: SocketAddrV4::new(Ipv4Addr::LOCALHOST, p),
                    peer: SocketAddrV4::new(Ipv4Addr::LOCALHOST, p + 1),
                    data_dir: dir.path().join(format!("m{i}")),
                })
                .collect(),
        };
        let children = (0..plan.members.len())
            .map(|i| {
                let etcd = plan.command(i);
                let log = std::fs::File::create(dir.path().join(format!("m{i}.log"))).unwrap();
                Command::new("nsenter")
                    .arg(format!("--net=/run/netns/{}", ns.0))
                    .arg(etcd.get_program())
                    .args(etcd.get_args())
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .expect("start etcd")
            })
            .collect();
        let cluster = EtcdNs { children, ns, dir };
        let store = EtcdStore::connect(EtcdConfig::parse(&cluster.url()).unwrap()).unwrap();
        if let Err(e) = wait_ready(&store, Duration::from_secs(30)) {
            let logs: String = (0..3)
                .map(|i| {
                    std::fs::read_to_string(cluster.dir.path().join(format!("m{i}.log")))
                        .unwrap_or_default()
                })
                .collect();
            panic!("etcd did not become ready: {e}\n{logs}");
        }
        cluster
    }

    /// The store specification that reaches the members from any namespace.
    pub fn url(&self) -> String {
        format!(
            "etcd://127.0.0.1:2379,127.0.0.1:12379,127.0.0.1:22379?netns={}",
            self.ns.0
        )
    }
}

impl Drop for EtcdNs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts host `host`'s agent on the store `store` (as `lab up` starts agents, but on another
/// store), logging to the lab's agent log. `lab down` stops it like the lab's own.
pub fn start_agent_on(lab: &Lab, host: &str, store: &str) -> Child {
    let h = lab.host(host);
    let dir = vxmesh::lab::state_dir(lab.prefix());
    let log = std::fs::File::options()
        .append(true)
        .create(true)
        .open(dir.join(format!("agent-{host}.log")))
        .unwrap();
    Command::new(crate::vxmesh_bin())
        .args([
            "--store",
            store,
            "agent",
            "--node",
            host,
            "--netns",
            &h.namespace,
        ])
        .arg("--state-dir")
        .arg(dir.join(host))
        .arg("--cgroup")
        .arg(lab.state.cgroup.as_ref().unwrap().join(host))
        .arg("--bpf-pin-root")
        .arg(lab.state.bpf_pin_root.as_ref().unwrap())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start the agent")
}

/// The lab's etcd member that is the leader now (`etcdctl endpoint status` in the members'
/// namespace), as its index in the lab's state.
pub fn leader(lab: &Lab) -> Option<usize> {
    let etcd = lab.state.etcd.as_ref()?;
    let endpoints: Vec<&str> = etcd.members.iter().map(|m| m.client.as_str()).collect();
    let out = run(
        "ip",
        &[
            "netns",
            "exec",
            &etcd.namespace,
            "etcdctl",
            "--endpoints",
            &endpoints.join(","),
            "endpoint",
            "status",
            "-w",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()?.iter().find_map(|s| {
        let leader = s["Status"]["leader"].as_u64()?;
        let me = s["Status"]["header"]["member_id"].as_u64()?;
        let ep = s["Endpoint"].as_str()?;
        (leader == me).then(|| endpoints.iter().position(|e| *e == ep))?
    })
}

/// SIGKILLs member `i` of the lab's etcd, through a pidfd once the process is shown to be it.
pub fn kill_member(lab: &Lab, i: usize) {
    let etcd = lab.state.etcd.as_ref().expect("the lab runs on etcd");
    let p = etcd
        .member(lab.prefix(), i)
        .unwrap_or_else(|| panic!("etcd member {i} is not running"));
    p.signal(libc::SIGKILL).expect("kill the member");
    assert!(
        p.wait_exit(Duration::from_secs(10)),
        "member {i} did not exit"
    );
}

/// Starts member `name` of the lab's etcd again (`vxmesh lab start-etcd`).
pub fn start_member(lab: &mut Lab, name: &str) {
    run_ok(
        crate::vxmesh_bin().to_str().unwrap(),
        &["lab", "start-etcd", "--prefix", lab.prefix(), name],
    );
    lab.state = lab.status();
}
