//! The overlay's MTU is the underlay's less the 50 bytes VXLAN adds (or a network's lower
//! `--mtu`), on every device of the path, so a full-size packet crosses without fragmenting
//! and a larger one is refused instead of being fragmented on the underlay.

use std::time::Duration;

use vxmesh_tests::{crypto, run, run_ok, wait_until, Lab};

fn mtu_of(netns: &str, dev: &str) -> u32 {
    let out = run_ok("ip", &["-n", netns, "-o", "link", "show", dev]);
    let mut words = out.split_whitespace();
    words.find(|w| *w == "mtu");
    words
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no mtu in {out}"))
}

/// A ping of exactly `size` bytes of IP packet with Don't Fragment set: whether it was
/// answered, and what ping printed.
fn df_ping_out(lab: &Lab, from: &str, to: &str, size: u32) -> (bool, String) {
    let payload = (size - 28).to_string();
    let out = lab.exec(
        from,
        &["ping", "-c", "1", "-W", "1", "-M", "do", "-s", &payload, to],
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn df_ping(lab: &Lab, from: &str, to: &str, size: u32) -> bool {
    df_ping_out(lab, from, to, size).0
}

#[test]
fn overlay_mtu_is_underlay_less_fifty_end_to_end() {
    let lab = Lab::up_with(&[
        "--hosts",
        "2",
        "--containers-per-host",
        "1",
        "--networks",
        "1",
        "--mtu",
        "1400",
    ]);
    let (h1, c1, c2) = (
        lab.namespace("h1"),
        lab.namespace("h1-c1"),
        lab.container("h2-c1").clone(),
    );
    assert_eq!(mtu_of(&h1, "eth0"), 1400);
    for dev in ["vx-net1", "vb-net1"] {
        assert_eq!(mtu_of(&h1, dev), 1350, "{dev}");
    }
    assert_eq!(mtu_of(&c1, "eth0"), 1350, "container eth0");
    let to = c2.address.to_string();
    assert!(wait_until(Duration::from_secs(20), || lab.ping("h1-c1", c2.address)));
    assert!(
        df_ping(&lab, "h1-c1", &to, 1350),
        "a full-size packet did not cross"
    );
    assert!(
        !df_ping(&lab, "h1-c1", &to, 1351),
        "a packet larger than the MTU left the container"
    );

    // A network that asks for less gets less, on every host.
    let out = lab.vxmesh(&[
        "network",
        "create",
        "small",
        "--subnet",
        "10.30.0.0/24",
        "--mtu",
        "1300",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for h in ["h1", "h2"] {
        let ns = lab.namespace(h);
        assert!(
            wait_until(Duration::from_secs(10), || {
                vxmesh_tests::witness::links(&ns).contains(&"vx-small".to_string())
                    && mtu_of(&ns, "vx-small") == 1300
                    && mtu_of(&ns, "vb-small") == 1300
            }),
            "{h}: vx-small/vb-small should have MTU 1300"
        );
    }
}

/// Every device of the path with the MTU it should have, and what it has: the bridge, the
/// VXLAN device and every bridge port (the veths' host ends) of each network on each host, and
/// each container's `eth0`. Returns the differences.
fn mtu_differences(lab: &Lab, want: &[(&str, u32)]) -> Vec<String> {
    let mut diffs = Vec::new();
    for (net, mtu) in want {
        for h in &lab.state.hosts {
            let ns = &h.namespace;
            let ports = run(
                "ip",
                &[
                    "-n",
                    ns,
                    "-o",
                    "link",
                    "show",
                    "master",
                    &format!("vb-{net}"),
                ],
            );
            let ports = String::from_utf8_lossy(&ports.stdout).into_owned();
            let mut devs: Vec<String> = vec![format!("vb-{net}"), format!("vx-{net}")];
            devs.extend(
                ports
                    .lines()
                    .filter_map(|l| l.split(": ").nth(1))
                    .map(|d| d.split('@').next().unwrap_or(d).to_string()),
            );
            for dev in devs {
                let have = run("ip", &["-n", ns, "-o", "link", "show", &dev]);
                let text = String::from_utf8_lossy(&have.stdout).into_owned();
                if !text.contains(&format!(" mtu {mtu} ")) {
                    diffs.push(format!("{}: {dev} wants {mtu}: {}", h.name, text.trim()));
                }
            }
        }
        for c in lab.state.containers.iter().filter(|c| c.network == *net) {
            let have = mtu_of(&c.namespace, &c.interface);
            if have != *mtu {
                diffs.push(format!("{} {}: {have}, wants {mtu}", c.name, c.interface));
            }
        }
    }
    diffs
}

/// Sets a lab host's underlay MTU: its device and its port on the underlay switch.
fn set_underlay_mtu(lab: &Lab, host: &str, mtu: u32) {
    let mtu = mtu.to_string();
    run_ok(
        "ip",
        &[
            "-n",
            &lab.namespace(host),
            "link",
            "set",
            "eth0",
            "mtu",
            &mtu,
        ],
    );
    run_ok(
        "ip",
        &[
            "-n",
            &lab.state.switch_namespace,
            "link",
            "set",
            host,
            "mtu",
            &mtu,
        ],
    );
}

/// Fault 1 of issue 7: lowering one host's underlay MTU moved that host's bridge, VXLAN device
/// and host veth ends, but neither the containers' ends (a full-size packet to the gateway was
/// dropped silently) nor the other hosts (whose full-size packets the lower host's switch port
/// dropped). Every network's MTU now fits every host's underlay, on every device of the path,
/// the container's end included, for plain and encrypted networks; and an attachment the agent
/// cannot reach is reported.
#[test]
fn one_lower_underlay_lowers_every_attachment_on_every_host() {
    // net1 (h*-c1) is encrypted, net2 (h*-c2) plain.
    let lab = crypto::lab_up(2, 2, 2, 1);
    let addr = |c: &str| lab.container(c).address.to_string();
    let logs = || {
        format!(
            "--- h1:\n{}\n--- h2:\n{}",
            lab.agent_log("h1"),
            lab.agent_log("h2")
        )
    };
    for (from, to) in [("h1-c1", "h2-c1"), ("h1-c2", "h2-c2")] {
        assert!(
            lab.ping_within(from, lab.container(to).address, Duration::from_secs(30)),
            "{from} cannot reach {to}\n{}",
            logs()
        );
    }
    let settled = |want: &[(&str, u32)]| {
        let ok = wait_until(Duration::from_secs(20), || {
            mtu_differences(&lab, want).is_empty()
        });
        assert!(ok, "{:#?}\n{}", mtu_differences(&lab, want), logs());
    };
    settled(&[("net2", 1450), ("net1", 1390)]);

    set_underlay_mtu(&lab, "h2", 1400);
    // Plain: 1400 - 50 on both hosts; encrypted: 1400 - 50 - 60.
    settled(&[("net2", 1350), ("net1", 1290)]);
    let gateway = lab.network("net2").gateway.to_string();
    for (from, to, mtu) in [
        ("h1-c2", addr("h2-c2"), 1350),
        ("h2-c2", addr("h1-c2"), 1350),
        ("h1-c2", gateway.clone(), 1350),
        ("h2-c2", gateway, 1350),
        ("h1-c1", addr("h2-c1"), 1290),
        ("h2-c1", addr("h1-c1"), 1290),
    ] {
        let (ok, out) = df_ping_out(&lab, from, &to, mtu);
        assert!(
            ok,
            "{from} -> {to}: a {mtu}-byte packet did not cross: {out}"
        );
        // One byte more is refused by the sender with an error, not lost on the way.
        let (ok, out) = df_ping_out(&lab, from, &to, mtu + 1);
        assert!(
            !ok && out.contains("message too long"),
            "{from} -> {to}: a {}-byte packet was not refused at the sender: {out}",
            mtu + 1
        );
    }

    // Back up: every attachment follows again.
    set_underlay_mtu(&lab, "h2", 1500);
    settled(&[("net2", 1450), ("net1", 1390)]);

    // An attachment the agent cannot reach any more (its veth is gone) is reported.
    let h1c2 = lab
        .vxmesh(&["--json", "endpoint", "ls", "--network", "net2"])
        .stdout;
    let list: serde_json::Value = serde_json::from_slice(&h1c2).unwrap();
    let entry = |list: &serde_json::Value, id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no endpoint {id} in {list}"))
    };
    assert_eq!(entry(&list, "h1-c2")["status"]["mtu"], 1450, "{list}");
    let veth = entry(&list, "h1-c2")["host_ifname"]
        .as_str()
        .unwrap()
        .to_string();
    run_ok("ip", &["-n", &lab.namespace("h1"), "link", "del", &veth]);
    let missing = format!("unreachable: its host end {veth} is missing");
    let reported = wait_until(Duration::from_secs(10), || {
        let table = String::from_utf8_lossy(&lab.vxmesh(&["endpoint", "ls"]).stdout).into_owned();
        table
            .lines()
            .any(|l| l.contains("h1-c2") && l.contains(&missing))
    });
    let table = String::from_utf8_lossy(&lab.vxmesh(&["endpoint", "ls"]).stdout).into_owned();
    assert!(reported, "{table}\n{}", logs());
    assert!(
        table
            .lines()
            .filter(|l| l.contains("h2-c2") || l.contains("h1-c1"))
            .all(|l| l.contains("ok (mtu ")),
        "{table}"
    );
    let list: serde_json::Value = serde_json::from_slice(
        &lab.vxmesh(&["--json", "endpoint", "ls", "--network", "net2"])
            .stdout,
    )
    .unwrap();
    let problem = entry(&list, "h1-c2")["status"]["problem"].clone();
    assert!(
        problem.as_str().is_some_and(|p| p.contains(&veth)),
        "{list}"
    );
    assert!(
        lab.agent_log("h1")
            .contains(&format!("endpoint net2/h1-c2: cannot bring its attachment in line: its host end {veth} is missing")),
        "{}",
        logs()
    );
}
