//! Acceptance 6 of issue 8: removing the last service, and `lab down`, leave no BPF program,
//! map, link or pin of vxmesh's behind, and `lab down` no cgroup or mount of the lab's. The
//! kernel objects are identified while they exist (bpftool on the pins, and the Maglev inner
//! tables through the outer map) and looked up again afterwards; other tests may load their
//! own vx_ objects meanwhile, so only these are counted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ingress_lb::service::{HealthCheck, Proto};
use vxmesh_tests::services::{self, pinned_objects, tree, vx_objects, wait_gone, Obj};
use vxmesh_tests::{run, wait_until, Lab};

const HOSTS: [&str; 2] = ["h1", "h2"];

/// Mount lines that are the lab's (its prefix) or bpffs.
fn mounts(prefix: &str) -> BTreeSet<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(prefix) || l.contains(" - bpf "))
        .map(|l| {
            l.split_whitespace()
                .skip(3)
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Programs attached to the lab's hosts' cgroups, as `bpftool cgroup show` lists them.
fn cgroup_programs(cg: &Path) -> String {
    HOSTS
        .iter()
        .map(|h| {
            let dir = cg.join(h);
            String::from_utf8_lossy(
                &run("bpftool", &["cgroup", "show", dir.to_str().unwrap()]).stdout,
            )
            .into_owned()
        })
        .collect()
}

fn wait_programmed(lab: &Lab, root: &Path) -> BTreeSet<Obj> {
    assert!(
        wait_until(Duration::from_secs(30), || HOSTS.iter().all(|h| {
            // Socket programs on the cgroup, tc programs on both local veths; two backends
            // for each of two ports.
            tree(&root.join(h).join("links")).len() == 5 + 2 * 2
                && services::up_backends(lab, h) == 2 * 2
        })),
        "agent log h1:\n{}",
        lab.agent_log("h1")
    );
    HOSTS
        .iter()
        .flat_map(|h| pinned_objects(&root.join(h)))
        .collect()
}

#[test]
fn removing_the_last_service_and_lab_down_leave_nothing_behind() {
    let before = vx_objects();
    let lab = Lab::up(2, 2, 1);
    let prefix = lab.prefix().to_string();
    let mounts_before: BTreeSet<String> = mounts(&prefix)
        .into_iter()
        .filter(|m| !m.contains(&prefix))
        .collect();
    let cg = lab.state.cgroup.clone().expect("the lab made a cgroup");
    let root: PathBuf = lab.state.bpf_pin_root.clone().expect("pin root");
    let containers: BTreeSet<PathBuf> = lab
        .state
        .containers
        .iter()
        .map(|c| cg.join(&c.host).join(&c.name))
        .collect();
    assert!(containers.iter().all(|c| c.join("cgroup.procs").exists()));
    assert!(!root.exists(), "no service yet: nothing pinned");

    let create = || {
        services::create(
            &lab,
            "web",
            "net1",
            &[(80, 8080, Proto::Tcp), (53, 53, Proto::Udp)],
            &["h1-c1", "h2-c1"],
            HealthCheck::None,
        )
    };
    create();
    let objs = wait_programmed(&lab, &root);
    eprintln!(
        "programmed: {} objects pinned or held by the lab's datapaths; vx_ objects now: {:?}",
        objs.len(),
        vx_objects()
            .iter()
            .map(|(k, v)| (*k, v.len()))
            .collect::<Vec<_>>()
    );
    // Each host's socket programs on its own cgroup, once.
    assert_eq!(
        cgroup_programs(&cg).matches("vx_connect4").count(),
        HOSTS.len()
    );

    // The last service goes: every agent removes everything it made.
    services::catalog(&lab).remove("web").unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || !root.exists()),
        "pins left: {:?}",
        tree(&root)
    );
    let left = wait_gone(&objs);
    assert!(left.is_empty(), "objects left after service rm: {left:?}");
    assert!(
        !cgroup_programs(&cg).contains("vx_"),
        "{}",
        cgroup_programs(&cg)
    );

    // Again, and then lab down with the service still there.
    create();
    let objs = wait_programmed(&lab, &root);
    drop(lab);
    assert!(!root.exists(), "pins left by lab down: {:?}", tree(&root));
    // The kernel drops a pinned object's reference an RCU grace period after its pin is
    // unlinked (bpffs frees inodes through RCU): give it a moment.
    let left = wait_gone(&objs);
    assert!(left.is_empty(), "objects left by lab down: {left:?}");
    assert!(!cg.exists(), "cgroups left by lab down: {:?}", tree(&cg));
    let mounts_after = mounts(&prefix);
    assert_eq!(mounts_after, mounts_before, "mounts of the lab or bpffs");
    let after = vx_objects();
    eprintln!(
        "vx_ objects before the lab: {:?}, after lab down: {:?}",
        before
            .iter()
            .map(|(k, v)| (*k, v.len()))
            .collect::<Vec<_>>(),
        after.iter().map(|(k, v)| (*k, v.len())).collect::<Vec<_>>()
    );
}
