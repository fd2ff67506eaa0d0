//! Acceptance 3: a host configured only with iproute2 (plain kernel VXLAN with the network's
//! VNI, FDB entries toward the lab hosts, its own address), registered with `vxmesh node add`
//! and `vxmesh endpoint add`, exchanges traffic with vxmesh-managed containers: vxmesh speaks
//! plain RFC 7348 VXLAN.

use std::time::Duration;

use vxmesh_tests::{run_ok, unique, wait_until, Lab, TestNetns};

#[test]
fn a_host_built_by_hand_with_iproute2_joins_the_overlay() {
    let lab = Lab::up(3, 1, 1);
    let net1 = lab.network("net1").clone();
    let sw = lab.state.switch_namespace.clone();
    let ext = TestNetns::new(&unique("vtext"));
    let ns = ext.0.as_str();
    let port = unique("x");
    let (underlay, overlay_ip, mac) = ("10.99.0.200", "10.10.1.200", "02:00:00:aa:bb:cc");

    // Plug the hand-made host into the lab's underlay switch.
    run_ok(
        "ip",
        &[
            "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ],
    );
    run_ok(
        "ip",
        &["-n", &sw, "link", "set", &port, "master", "sw0", "up"],
    );
    run_ok(
        "ip",
        &[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{underlay}/24"),
            "dev",
            "eth0",
        ],
    );
    run_ok("ip", &["-n", ns, "link", "set", "eth0", "up"]);
    // Plain kernel VXLAN, configured by hand.
    let vni = net1.vni.to_string();
    run_ok(
        "ip",
        &[
            "-n",
            ns,
            "link",
            "add",
            "vxlan0",
            "address",
            mac,
            "mtu",
            "1450",
            "type",
            "vxlan",
            "id",
            &vni,
            "dstport",
            "4789",
            "local",
            underlay,
            "dev",
            "eth0",
            "nolearning",
        ],
    );
    for h in &lab.state.hosts {
        let dst = h.address.to_string();
        run_ok(
            "bridge",
            &[
                "-n",
                ns,
                "fdb",
                "append",
                "00:00:00:00:00:00",
                "dev",
                "vxlan0",
                "dst",
                &dst,
            ],
        );
    }
    run_ok(
        "ip",
        &[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{overlay_ip}/24"),
            "dev",
            "vxlan0",
        ],
    );
    run_ok("ip", &["-n", ns, "link", "set", "vxlan0", "up"]);

    // Tell vxmesh about it.
    let ok = |args: &[&str]| {
        let out = lab.vxmesh(args);
        assert!(
            out.status.success(),
            "vxmesh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(&["node", "add", "ext", "--underlay", underlay]);
    ok(&[
        "endpoint",
        "add",
        "--network",
        "net1",
        "--node",
        "ext",
        "--ip",
        overlay_ip,
        "--mac",
        mac,
        "--name",
        "by-hand",
    ]);

    // Every lab host learns the entry toward the hand-made host.
    for h in &lab.state.hosts {
        let nsname = h.namespace.clone();
        assert!(
            wait_until(Duration::from_secs(10), || {
                vxmesh_tests::witness::vxlan_fdb(&nsname, "vx-net1")
                    .iter()
                    .any(|l| l.starts_with(mac) && l.contains(&format!("dst {underlay}")))
            }),
            "{} has no FDB entry {mac} -> {underlay}",
            h.name
        );
    }

    // Traffic both ways, with containers on every lab host.
    for c in lab.state.containers.clone() {
        assert!(
            lab.ping_within(
                &c.name,
                overlay_ip.parse().unwrap(),
                Duration::from_secs(10)
            ),
            "{} cannot reach the hand-made host",
            c.name
        );
        let out = vxmesh_tests::run(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                &c.address.to_string(),
            ],
        );
        assert!(
            out.status.success(),
            "the hand-made host cannot reach {}",
            c.name
        );
    }

    // Removing the node removes every entry toward it.
    ok(&["node", "rm", "ext", "--force"]);
    for h in &lab.state.hosts {
        let nsname = h.namespace.clone();
        assert!(
            wait_until(Duration::from_secs(10), || {
                !vxmesh_tests::witness::vxlan_fdb(&nsname, "vx-net1")
                    .iter()
                    .any(|l| l.contains(&format!("dst {underlay}")))
            }),
            "{} still has FDB entries toward the removed node",
            h.name
        );
    }
}
