//! Acceptance 4: reconcile is idempotent and self-healing. A restarted agent changes nothing in
//! the kernel; a device or FDB entry deleted by hand comes back within seconds; `network rm`
//! and `node rm` remove everything they made on every host.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use overlay_core::keys;
use overlay_core::model::Network;
use overlay_core::store::{Op, Txn};
use vxmesh_tests::fast;
use vxmesh_tests::witness::{kernel_state, links, settled_state, vxlan_fdb};
use vxmesh_tests::{run_ok, vxmesh_bin, wait_until, Host, Lab};

const HEAL: Duration = Duration::from_secs(10);
/// Static FDB entries of vx-net1 on h1 of a 2-host lab with one container per host: h2's
/// all-zero (BUM) entry, its container's MAC, and h2's node MAC (`0a:5e` + its underlay
/// address, where routing-mesh replies go back to h2), each toward h2.
const FDB_ENTRIES: usize = 3;

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

/// An agent started by a test (in place of the lab's), logging at debug level to a file;
/// stopped on drop.
struct Agent {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Agent {
    fn start(lab: &Lab, host: &Host) -> Agent {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(vxmesh_bin())
            .arg("--store")
            .arg(&lab.state.store)
            .args([
                "agent",
                "--node",
                &host.name,
                "--netns",
                &host.namespace,
                "--resync",
                "0.5",
            ])
            .args(
                lab.state
                    .bpf_pin_root
                    .iter()
                    .flat_map(|p| [std::ffi::OsStr::new("--bpf-pin-root"), p.as_os_str()]),
            )
            .args(vxmesh_tests::datapath_args())
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        Agent { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

#[test]
fn a_restarted_agent_changes_nothing() {
    let lab = Lab::up(2, 1, 2);
    let h1 = lab.host("h1").clone();
    assert!(lab.ping_within("h1-c1", lab.container("h2-c1").address, HEAL));
    let before = settled_state(&h1.namespace, Duration::from_secs(20));

    stop(h1.agent_pid.expect("agent pid"));
    // A new agent for the same node, as after a restart, logging every change it makes.
    let agent = Agent::start(&lab, &h1);
    // Let it make several full passes.
    let passed = wait_until(Duration::from_secs(20), || {
        agent.log().matches("reconciled").count() >= 3
    });
    let after = kernel_state(&h1.namespace);
    let text = agent.log();
    drop(agent);
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
    // Traffic flows as soon as the BUM entry exists; wait for the unicast entry, h2's node-MAC
    // entry and the neighbour too before taking the reference picture.
    let h2_node_mac = {
        let o = h2.address.octets();
        format!("0a:5e:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
    };
    let fdb_complete = || {
        let fdb = vxlan_fdb(ns, "vx-net1");
        fdb.len() == FDB_ENTRIES && fdb.iter().any(|l| l.starts_with(&h2_node_mac))
    };
    assert!(wait_until(HEAL, || fdb_complete()
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
        wait_until(HEAL, fdb_complete),
        "vx-net1 and its FDB did not come back: {:?}",
        vxlan_fdb(ns, "vx-net1")
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
    // (Traffic alone does not show it: on the eBPF datapath it does not need the bridge.)
    run_ok("ip", &["-n", ns, "link", "del", "vb-net1"]);
    let ports = || {
        let out = vxmesh_tests::run("ip", &["-n", ns, "-o", "link", "show", "master", "vb-net1"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut bridge_ports = String::new();
    assert!(
        wait_until(HEAL, || {
            bridge_ports = ports();
            bridge_ports.lines().count() == 2
        }),
        "vb-net1 should hold vx-net1 and the veth:\n{bridge_ports}"
    );
    assert!(
        lab.ping_within("h1-c1", peer, HEAL),
        "no traffic after vb-net1 came back"
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
    // On the eBPF datapath, the fast path's maps hold both networks on every host.
    let ebpf = vxmesh_tests::test_datapath().as_deref() == Some("ebpf");
    let (vni1, vni2) = (
        u64::from(lab.network("net1").vni),
        u64::from(lab.network("net2").vni),
    );
    if ebpf {
        for h in &lab.state.hosts {
            assert!(
                wait_until(HEAL, || fast::vnis(&lab, &h.name) == [vni1, vni2].into()),
                "{}: fast path maps hold VNIs {:?}",
                h.name,
                fast::vnis(&lab, &h.name)
            );
        }
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
        if ebpf {
            assert!(
                wait_until(HEAL, || fast::vnis(&lab, &h.name) == [vni1].into()),
                "{} still has net2 in its fast path maps: VNIs {:?}",
                h.name,
                fast::vnis(&lab, &h.name)
            );
        }
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
    assert!(
        wait_until(HEAL, || !fast::pin_dir(&lab, "h3").exists()),
        "h3's fast path is still pinned"
    );
    assert!(lab.ping_within("h1-c1", lab.container("h2-c1").address, HEAL));
}

/// Writes a network record straight into the lab's store, as an older version of vxmesh or a
/// hand would, bypassing the catalog's checks.
fn write_raw_network(lab: &Lab, name: &str, subnet: &str, gateway: &str, vni: u32) {
    let store = lab.store();
    let net = Network {
        name: name.into(),
        subnet: subnet.parse().unwrap(),
        gateway: gateway.parse().unwrap(),
        vni,
        mtu: None,
        encrypted: false,
    };
    let txn = Txn {
        compares: vec![],
        ops: vec![Op::put(
            keys::network(name),
            serde_json::to_vec(&net).unwrap(),
        )],
    };
    assert!(store.txn(&txn).unwrap().succeeded);
}

/// Issue 7, fault 2: a network over addresses the hosts use for themselves is not built (its
/// route would take the hosts' own traffic into the overlay); each agent says why once, and
/// the other networks keep working. The rule holds from the hosts' side too: a host that gets
/// an address inside a network stops building that network (and only that host), and builds
/// it again when the address goes.
#[test]
fn a_network_over_the_hosts_own_addresses_is_refused_not_built() {
    let lab = Lab::up(2, 1, 1);
    let (c1, c2) = (
        lab.container("h1-c1").address,
        lab.container("h2-c1").address,
    );
    assert!(lab.ping_within("h1-c1", c2, HEAL));
    let h1 = lab.host("h1").address;
    // One over the underlay addresses, one over the underlay's prefix only.
    write_raw_network(&lab, "under", "10.99.0.0/25", "10.99.0.1", 4200);
    write_raw_network(&lab, "prefix", "10.99.0.128/25", "10.99.0.129", 4201);
    let why = |h: &Host| {
        [
            format!(
                "network under is not built on this host: invalid subnet '10.99.0.0/25': \
                 overlaps node h1's underlay address {h1}"
            ),
            format!(
                "network prefix is not built on this host: invalid subnet '10.99.0.128/25': \
                 overlaps 10.99.0.0/24, the prefix of node {}'s address {}/24 on eth0",
                h.name, h.address
            ),
        ]
    };
    for h in &lab.state.hosts {
        assert!(
            wait_until(HEAL, || why(h)
                .iter()
                .all(|w| lab.agent_log(&h.name).contains(w))),
            "{} did not log why:\n{}",
            h.name,
            lab.agent_log(&h.name)
        );
    }
    // Several passes later: said once, nothing built, no route over the underlay.
    std::thread::sleep(Duration::from_secs(5));
    for h in &lab.state.hosts {
        let log = lab.agent_log(&h.name);
        for w in why(h) {
            assert_eq!(log.matches(&w).count(), 1, "{}: {w}\n{log}", h.name);
        }
        let l = links(&h.namespace);
        assert!(
            !l.iter()
                .any(|n| n.ends_with("-under") || n.ends_with("-prefix")),
            "{}: {l:?}",
            h.name
        );
        let routes = run_ok("ip", &["-n", &h.namespace, "route", "show"]);
        assert!(!routes.contains("10.99.0.0/25") && !routes.contains("10.99.0.128/25"));
    }
    assert!(lab.ping("h1-c1", c2) && lab.ping("h2-c1", c1));

    // h2 gets an address inside net1 on another interface: it publishes it and stops building
    // net1 (saying why); h1 keeps net1.
    let h2 = lab.host("h2").clone();
    let ns = h2.namespace.as_str();
    run_ok(
        "ip",
        &[
            "-n", ns, "link", "add", "hx0", "type", "veth", "peer", "name", "hx1",
        ],
    );
    run_ok(
        "ip",
        &["-n", ns, "addr", "add", "10.10.1.250/24", "dev", "hx0"],
    );
    let refused = "network net1 is not built on this host: invalid subnet '10.10.1.0/24': \
                   overlaps 10.10.1.0/24, the prefix of node h2's address 10.10.1.250/24 on hx0";
    assert!(
        wait_until(HEAL, || lab.agent_log("h2").contains(refused)
            && !links(ns).iter().any(|n| n == "vb-net1")),
        "h2 still builds net1: {:?}\n{}",
        links(ns),
        lab.agent_log("h2")
    );
    let table = || String::from_utf8_lossy(&lab.vxmesh(&["endpoint", "ls"]).stdout).into_owned();
    assert!(
        wait_until(HEAL, || table().lines().any(
            |l| l.contains("h2-c1") && l.contains("unreachable: network net1 is not built")
        )),
        "{}",
        table()
    );
    assert!(links(&lab.host("h1").namespace)
        .iter()
        .any(|n| n == "vb-net1"));
    let out = lab.vxmesh(&["network", "create", "x", "--subnet", "10.10.1.0/25"]);
    assert!(!out.status.success());
    // The address goes: h2 builds net1 again and traffic flows.
    run_ok("ip", &["-n", ns, "link", "del", "hx0"]);
    assert!(
        lab.ping_within("h1-c1", c2, HEAL),
        "net1 did not come back on h2:\n{}",
        lab.agent_log("h2")
    );
    assert!(lab
        .agent_log("h2")
        .contains("network net1 is no longer refused on this host"));
}

/// Issue 7, fault 8: a network removed while its host's agent was down, its VNI reused by a new
/// network. The restarted agent's first pass removes the stale device before making the new one
/// (no error, no misleading "already exists"); where a device vxmesh did not make holds a VNI,
/// the error names it.
#[test]
fn a_stale_device_holding_the_vni_goes_before_the_new_one_is_made() {
    let lab = Lab::up(2, 1, 1);
    let h1 = lab.host("h1").clone();
    let ns = h1.namespace.as_str();
    assert!(lab.ping_within("h1-c1", lab.container("h2-c1").address, HEAL));
    stop(h1.agent_pid.expect("agent pid"));
    for args in [
        &["network", "rm", "net1", "--force"][..],
        &["network", "create", "net9", "--subnet", "10.10.9.0/24"],
    ] {
        let out = lab.vxmesh(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let inspect =
        String::from_utf8_lossy(&lab.vxmesh(&["network", "inspect", "net9"]).stdout).into_owned();
    assert!(
        inspect.contains("4096"),
        "net9 should reuse VNI 4096: {inspect}"
    );
    assert!(run_ok("ip", &["-n", ns, "-d", "link", "show", "vx-net1"]).contains("vxlan id 4096"));

    let agent = Agent::start(&lab, &h1);
    assert!(
        wait_until(HEAL, || agent.log().contains("reconciled")),
        "{}",
        agent.log()
    );
    let log = agent.log();
    let first = log.lines().find(|l| l.contains("reconciled")).unwrap();
    assert!(
        first.contains("pass=1") && first.contains("errors=0"),
        "{log}"
    );
    assert!(!log.contains(" ERROR "), "{log}");
    let at = |what: &str| {
        log.find(what)
            .unwrap_or_else(|| panic!("no {what:?} in:\n{log}"))
    };
    assert!(
        at("delete link vx-net1") < at("create vxlan vx-net9 vni 4096"),
        "{log}"
    );
    // h1's order is read from its log above; the other hosts' agents ran on meanwhile and get
    // there on their own time.
    for h in &lab.state.hosts {
        let detail = || {
            std::process::Command::new("ip")
                .args(["-n", &h.namespace, "-d", "link", "show", "vx-net9"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        assert!(
            wait_until(HEAL, || detail().contains("vxlan id 4096")
                && !links(&h.namespace).iter().any(|n| n.ends_with("-net1"))),
            "{}: {} {:?}",
            h.name,
            detail(),
            links(&h.namespace)
        );
    }

    // A device vxmesh did not make holds the VNI a new network asks for: the error names it,
    // and the device is left alone.
    run_ok(
        "ip",
        &[
            "-n", ns, "link", "add", "hold0", "type", "vxlan", "id", "4097", "dstport", "4789",
        ],
    );
    let out = lab.vxmesh(&[
        "network",
        "create",
        "net8",
        "--subnet",
        "10.10.8.0/24",
        "--vni",
        "4097",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_until(HEAL, || agent.log().contains(
            "VNI 4097 on UDP port 4789 is already held by device hold0"
        )),
        "{}",
        agent.log()
    );
    assert!(!agent.log().contains("link vx-net8 already exists"));
    assert!(links(ns).iter().any(|n| n == "hold0"));
    assert!(wait_until(HEAL, || links(&lab.host("h2").namespace)
        .iter()
        .any(|n| n == "vx-net8")));
    run_ok("ip", &["-n", ns, "link", "del", "hold0"]);
    assert!(
        wait_until(HEAL, || links(ns).iter().any(|n| n == "vx-net8")),
        "{}",
        agent.log()
    );
}
