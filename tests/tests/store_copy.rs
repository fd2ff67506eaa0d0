//! Moving up (etcd issue, acceptance 5): a lab running on SQLite, with containers and a
//! service, is copied into etcd with `vxmesh store copy`; its agents, restarted one by one on
//! etcd, change nothing in the kernel (the reconcile test's witness: links, VXLAN, static FDB,
//! permanent neighbours, addresses, routes; and the services' backend maps).

use std::time::Duration;

use vxmesh::{HealthCheck, Proto};
use vxmesh_tests::etcd::{start_agent_on, EtcdNs};
use vxmesh_tests::services::{self, up_backends};
use vxmesh_tests::witness::settled_state;
use vxmesh_tests::{run, vxmesh_bin, Lab};

const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

#[test]
fn a_sqlite_lab_moves_to_etcd_and_the_kernel_does_not_change() {
    let lab = Lab::up_on(
        "sqlite",
        &[
            "--hosts",
            "3",
            "--containers-per-host",
            "2",
            "--networks",
            "2",
        ],
    );
    services::create(
        &lab,
        "web",
        "net1",
        &[(80, 80, Proto::Tcp)],
        &["h1-c1", "h2-c1", "h3-c1"],
        HealthCheck::None,
    );
    assert!(vxmesh_tests::wait_until(Duration::from_secs(60), || HOSTS
        .iter()
        .all(|h| up_backends(&lab, h) == 3)));
    let before: Vec<String> = HOSTS
        .iter()
        .map(|h| settled_state(&lab.namespace(h), Duration::from_secs(60)))
        .collect();

    let etcd = EtcdNs::start();
    let sqlite = format!("sqlite:{}", lab.state.store.display());
    let copy = |extra: &[&str]| {
        let mut args = vec!["store", "copy", "--from", &sqlite, "--to"];
        let url = etcd.url();
        args.push(&url);
        args.extend_from_slice(extra);
        run(vxmesh_bin().to_str().unwrap(), &args)
    };
    let out = copy(&[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in ["networks", "nodes", "endpoints", "ipam", "services"] {
        assert!(
            text.contains(&format!("{kind} ")),
            "{kind} not copied: {text}"
        );
    }
    // A second copy finds the destination full: refused, naming --force.
    let again = copy(&[]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && err.contains("--force"), "{err}");

    // The same state through etcd as through SQLite (the endpoints' attachment states come
    // with the host reports and the backends' with the heartbeats, which the agents publish
    // again on etcd: compared below).
    let on = |store: &str, args: &[&str]| {
        let mut all = vec!["--json", "--store", store];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&run(vxmesh_bin().to_str().unwrap(), &all).stdout).into_owned()
    };
    let store = lab.state.store.to_str().unwrap();
    let lists = [&["endpoint", "ls"][..], &["service", "ls"]];
    let before_lists: Vec<String> = lists.iter().map(|w| on(store, w)).collect();
    assert_eq!(
        on(store, &["network", "ls"]),
        on(&etcd.url(), &["network", "ls"])
    );

    // Each agent in turn: stopped (SIGTERM), started on etcd.
    let mut agents = Vec::new();
    for h in HOSTS {
        lab.signal_agent(h, libc::SIGTERM);
        assert!(lab.wait_agent_exit(h, Duration::from_secs(10)));
        agents.push(start_agent_on(&lab, h, &etcd.url()));
    }
    for (i, h) in HOSTS.iter().enumerate() {
        let after = settled_state(&lab.namespace(h), Duration::from_secs(60));
        assert_eq!(
            after,
            before[i],
            "{h}'s kernel changed:\n{}",
            lab.agent_log(h)
        );
        assert_eq!(up_backends(&lab, h), 3, "{h}'s backends");
    }
    for (what, before) in lists.iter().zip(&before_lists) {
        assert!(
            vxmesh_tests::wait_until(Duration::from_secs(30), || on(&etcd.url(), what) == *before),
            "{what:?}: {}",
            on(&etcd.url(), what)
        );
    }
    // Every agent runs on etcd now: its heartbeat is there.
    let nodes = on(&etcd.url(), &["node", "ls"]);
    let nodes: serde_json::Value = serde_json::from_str(&nodes).unwrap();
    let states: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["agent"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["up", "up", "up"]);
    assert!(lab.ping_within(
        "h1-c1",
        lab.container("h3-c1").address,
        Duration::from_secs(10)
    ));
    drop(lab); // lab down stops the agents started here too
    for mut a in agents {
        let _ = a.wait();
    }
}
