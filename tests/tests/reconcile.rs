//! Acceptance 4: reconcile is idempotent and self-healing. A restarted agent changes nothing in
//! the kernel; a device or FDB entry deleted by hand comes back within seconds; `network rm`
//! and `node rm` remove everything they made on every host.

use std::process::{Command, Stdio};
use std::time::Duration;

use vxmesh_tests::witness::{kernel_state, links, settled_state, vxlan_fdb};
use vxmesh_tests::{run_ok, vxmesh_bin, wait_until, Lab};

const HEAL: Duration = Duration::from_secs(10);

fn stop(pid: u32) {
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    assert!(
        wait_until(Duration::from_secs(10), || !std::path::Path::new(&format!(
            "/proc/{pid}/cmdline"
        ))
        .exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))),
        "agent {pid} did not stop"
    );
}

#[test]
fn a_restarted_agent_changes_nothing() {
    let lab = Lab::up(2, 1, 2);
    let h1 = lab.host("h1").clone();
    assert!(lab.ping_within("h1-c1", lab.container("h2-c1").address, HEAL));
    let before = settled_state(&h1.namespace, Duration::from_secs(20));

    stop(h1.agent_pid.expect("agent pid"));
    // A new agent for the same node, as after a restart, logging every change it makes.
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut agent = Command::new(vxmesh_bin())
        .arg("--store")
        .arg(&lab.state.store)
        .args([
            "agent",
            "--node",
            "h1",
            "--netns",
            &h1.namespace,
            "--resync",
            "0.5",
        ])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    // Let it make several full passes.
    let passed = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(log.path())
            .unwrap_or_default()
            .matches("reconciled")
            .count()
            >= 3
    });
    let after = kernel_state(&h1.namespace);
    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    unsafe {
        libc::kill(agent.id() as i32, libc::SIGTERM);
    }
    let _ = agent.wait();
    assert!(passed, "the restarted agent made no passes:\n{text}");
    assert_eq!(before, after, "the restarted agent changed the kernel");
    assert!(
        text.lines()
            .filter(|l| l.contains("reconciled"))
            .all(|l| l.contains("changes=0")),
        "the restarted agent reported changes:\n{text}"
    );
    // And the overlay still works.
    assert!(lab.ping("h1-c1", lab.container("h2-c1").address));
}

#[test]
fn what_is_deleted_by_hand_comes_back() {
    let lab = Lab::up(2, 1, 1);
    let (h1, h2) = (lab.host("h1").clone(), lab.host("h2").clone());
    let peer = lab.container("h2-c1").address;
    assert!(lab.ping_within("h1-c1", peer, HEAL));
    let ns = h1.namespace.as_str();
    // Traffic flows as soon as the BUM entry exists; wait for the unicast entry and the
    // neighbour too before taking the reference picture.
    assert!(wait_until(HEAL, || vxlan_fdb(ns, "vx-net1").len() == 2
        && run_ok(
            "ip",
            &["-n", ns, "neigh", "show", "nud", "permanent"]
        )
        .contains(&peer.to_string())));
    let healthy = kernel_state(ns);

    // An FDB entry.
    let entry = vxlan_fdb(ns, "vx-net1")
        .into_iter()
        .find(|l| l.starts_with("00:00:00:00:00:00"))
        .expect("a BUM entry");
    run_ok(
        "bridge",
        &[
            "-n",
            ns,
            "fdb",
            "del",
            "00:00:00:00:00:00",
            "dev",
            "vx-net1",
            "dst",
            &h2.address.to_string(),
            "self",
        ],
    );
    // (No check that it is gone: the agent's next pass may already have put it back.)
    assert!(
        wait_until(HEAL, || vxlan_fdb(ns, "vx-net1").contains(&entry)),
        "FDB entry {entry} did not come back"
    );

    // The VXLAN device.
    run_ok("ip", &["-n", ns, "link", "del", "vx-net1"]);
    assert!(
        wait_until(HEAL, || vxlan_fdb(ns, "vx-net1").len() == 2),
        "vx-net1 and its FDB did not come back"
    );
    let detail = run_ok("ip", &["-n", ns, "-d", "link", "show", "vx-net1"]);
    assert!(
        detail.contains("vxlan id 4096")
            && detail.contains("dstport 4789")
            && detail.contains("nolearning"),
        "{detail}"
    );
    assert!(
        lab.ping_within("h1-c1", peer, HEAL),
        "no traffic after vx-net1 came back"
    );

    // The bridge itself: its ports (VXLAN and the container's veth) must be put back on it.
    run_ok("ip", &["-n", ns, "link", "del", "vb-net1"]);
    assert!(
        lab.ping_within("h1-c1", peer, HEAL),
        "no traffic after vb-net1 came back"
    );
    let bridge_ports = run_ok("ip", &["-n", ns, "-o", "link", "show", "master", "vb-net1"]);
    assert_eq!(
        bridge_ports.lines().count(),
        2,
        "vb-net1 should hold vx-net1 and the veth:\n{bridge_ports}"
    );

    // A permanent neighbour entry.
    run_ok(
        "ip",
        &[
            "-n",
            ns,
            "neigh",
            "del",
            &peer.to_string(),
            "dev",
            "vb-net1",
        ],
    );
    assert!(
        wait_until(HEAL, || run_ok(
            "ip",
            &["-n", ns, "neigh", "show", "nud", "permanent"]
        )
        .contains(&peer.to_string())),
        "the neighbour entry for {peer} did not come back"
    );

    // Everything is as it was, except the indexes of the recreated devices.
    let strip = |s: &str| -> String {
        s.lines()
            .map(|l| l.split_once(": ").map_or(l, |(_, rest)| rest))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let healed = kernel_state(ns);
    let masters = |s: &str| s.lines().filter(|l| l.contains("master vb-net1")).count();
    assert_eq!(
        masters(&healthy),
        masters(&healed),
        "bridge ports differ:\n{healthy}\n---\n{healed}"
    );
    assert_eq!(
        strip(&healthy)
            .lines()
            .filter(|l| l.contains(" dst "))
            .count(),
        strip(&healed)
            .lines()
            .filter(|l| l.contains(" dst "))
            .count(),
        "FDB differs:\n{healthy}\n---\n{healed}\n--- agent log:\n{}",
        lab.agent_log("h1")
    );
}

#[test]
fn removing_a_network_or_node_removes_every_trace() {
    let lab = Lab::up(3, 2, 2);
    for h in &lab.state.hosts {
        let ns = h.namespace.clone();
        assert!(wait_until(HEAL, || {
            let l = links(&ns);
            l.iter().any(|n| n == "vx-net2")
                && l.iter().filter(|n| n.starts_with("ve-")).count() == 2
        }));
    }
    // Without --force a network with endpoints is refused, and nothing changes.
    let out = lab.vxmesh(&["network", "rm", "net2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));

    let out = lab.vxmesh(&["network", "rm", "net2", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for h in &lab.state.hosts {
        let ns = h.namespace.clone();
        assert!(
            wait_until(HEAL, || {
                let l = links(&ns);
                !l.iter().any(|n| n.ends_with("-net2"))
                    && l.iter().filter(|n| n.starts_with("ve-")).count() == 1
            }),
            "{} still has net2's devices or veths: {:?}",
            h.name,
            links(&ns)
        );
        let state = kernel_state(&ns);
        assert!(
            !state.contains("10.10.2."),
            "{} still has net2 addresses, routes or neighbours:\n{state}",
            h.name
        );
    }
    // net1 still works.
    assert!(lab.ping_within("h1-c1", lab.container("h3-c1").address, HEAL));

    // Removing h3: the others drop every entry toward it, and h3 is emptied.
    let h3 = lab.host("h3").clone();
    let out = lab.vxmesh(&["node", "rm", "h3", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for h in ["h1", "h2"] {
        let ns = lab.host(h).namespace.clone();
        assert!(
            wait_until(HEAL, || !vxlan_fdb(&ns, "vx-net1")
                .iter()
                .any(|l| l.contains(&format!("dst {}", h3.address)))),
            "{h} still has FDB entries toward h3"
        );
        let c3 = lab.container("h3-c1").address.to_string();
        assert!(
            wait_until(HEAL, || !run_ok(
                "ip",
                &["-n", &ns, "neigh", "show", "nud", "permanent"]
            )
            .contains(&c3)),
            "{h} still has a neighbour entry for h3-c1"
        );
    }
    assert!(
        wait_until(HEAL, || !links(&h3.namespace)
            .iter()
            .any(|n| n.starts_with("vx-")
                || n.starts_with("vb-")
                || n.starts_with("ve-"))),
        "h3 still has vxmesh devices: {:?}",
        links(&h3.namespace)
    );
    assert!(lab.ping_within("h1-c1", lab.container("h2-c1").address, HEAL));
}
