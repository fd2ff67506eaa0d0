//! Encryption acceptance 5: an encrypted network takes no VXLAN that did not come through
//! WireGuard. A machine plugged into the lab's underlay switch sends plain VXLAN packets with
//! the encrypted network's VNI straight to a host's underlay address, on UDP 4789 and on the
//! encrypted networks' port 4790; a container of a plain network on the same host sends them to
//! its gateway. None reaches the encrypted network's container, while the same crafted packet
//! with the plain network's VNI does reach the plain network (the packets are valid), and with
//! the agent's ingress filter removed by hand the encrypted one does too (the filter is what
//! stops it). The agent puts the filter back, its passes change nothing once settled, the
//! encrypted network still works, and removing the encrypted network removes the filters.

use std::net::Ipv4Addr;
use std::time::Duration;

use vxmesh_tests::crypto::{self, arrives, inject};
use vxmesh_tests::{run, run_ok, unique, wait_until, TestNetns};

const SETTLE: Duration = Duration::from_secs(30);
const ENCRYPTED_PORT: u16 = 4790;
fn filters(ns: &str, dev: &str) -> String {
    String::from_utf8_lossy(&run("tc", &["-n", ns, "filter", "show", "dev", dev, "ingress"]).stdout)
        .into_owned()
}

fn has_drop_filter(ns: &str, dev: &str) -> bool {
    let f = filters(ns, dev);
    f.contains("pref 4790 bpf") && f.contains("direct-action") && f.contains("21 0 1 4790,6 0 0 2,")
}

/// A way in: a name and a function that sends the crafted packets with a marker.
type Attack<'a> = (&'a str, &'a dyn Fn(&str));

fn set_stopped(pid: u32, stopped: bool) {
    let sig = if stopped {
        libc::SIGSTOP
    } else {
        libc::SIGCONT
    };
    assert_eq!(
        unsafe { libc::kill(pid as i32, sig) },
        0,
        "signal to agent {pid}"
    );
}

#[test]
fn plain_vxlan_cannot_be_injected_into_an_encrypted_network() {
    let lab = crypto::lab_up(2, 2, 2, 1);
    // net1 (h*-c1) is encrypted, net2 (h*-c2) plain.
    let c = |n: &str| lab.container(n).clone();
    let (h1c1, h2c1, h2c2) = (c("h1-c1"), c("h2-c1"), c("h2-c2"));
    assert!(
        lab.ping_within("h1-c1", h2c1.address, SETTLE),
        "the encrypted network does not work"
    );
    assert!(
        lab.ping_within("h1-c2", h2c2.address, SETTLE),
        "the plain network does not work"
    );
    let h2 = lab.host("h2").clone();
    let ns2 = h2.namespace.as_str();
    let (vni1, vni2) = (lab.network("net1").vni, lab.network("net2").vni);
    let gw2 = lab.network("net2").gateway;

    // The encrypted network's VXLAN device has a port of its own; the plain one keeps 4789.
    let vx = |dev: &str| run_ok("ip", &["-n", ns2, "-d", "link", "show", dev]);
    assert!(vx("vx-net1").contains("dstport 4790"), "{}", vx("vx-net1"));
    assert!(vx("vx-net2").contains("dstport 4789"), "{}", vx("vx-net2"));

    // The filter, on the underlay device and every overlay bridge of every host; not on wg-vx.
    for host in ["h1", "h2"] {
        let ns = lab.namespace(host);
        for dev in ["eth0", "vb-net1", "vb-net2"] {
            assert!(
                wait_until(SETTLE, || has_drop_filter(&ns, dev)),
                "no drop filter on {host} {dev}:\n{}",
                filters(&ns, dev)
            );
        }
        assert!(!filters(&ns, "wg-vx").contains("4790"));
    }
    eprintln!("h2 eth0 ingress:\n{}", filters(ns2, "eth0"));

    // Settled passes change nothing: the agent logs every change it makes.
    let ingress_changes = || {
        lab.agent_log("h2")
            .lines()
            .filter(|l| l.contains("ingress"))
            .count()
    };
    let before = ingress_changes();
    assert!(before >= 4, "{}", lab.agent_log("h2"));
    std::thread::sleep(Duration::from_secs(5)); // two resync passes at least
    assert_eq!(before, ingress_changes(), "{}", lab.agent_log("h2"));

    // The attacker: a machine on the underlay switch.
    let attacker = TestNetns::new(&unique("atk"));
    let atk = attacker.0.as_str();
    let sw = &lab.state.switch_namespace;
    let swport = unique("sp");
    run_ok(
        "ip",
        &[
            "-n", sw, "link", "add", &swport, "type", "veth", "peer", "name", "eth0", "netns", atk,
        ],
    );
    run_ok(
        "ip",
        &["-n", sw, "link", "set", &swport, "master", "sw0", "up"],
    );
    let o = h2.address.octets();
    let atk_ip = Ipv4Addr::new(o[0], o[1], o[2], 250);
    run_ok(
        "ip",
        &[
            "-n",
            atk,
            "addr",
            "add",
            &format!("{atk_ip}/24"),
            "dev",
            "eth0",
        ],
    );
    run_ok("ip", &["-n", atk, "link", "set", "eth0", "up"]);
    assert!(
        wait_until(Duration::from_secs(10), || run(
            "ip",
            &[
                "netns",
                "exec",
                atk,
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                &h2.address.to_string()
            ]
        )
        .status
        .success()),
        "the attacker cannot reach h2's underlay address"
    );

    // Teeth: the crafted packet is valid VXLAN, accepted for the plain network.
    assert!(
        arrives(&lab, &h2c2, "PLAIN-4789", || inject(
            atk,
            h2.address,
            4789,
            vni2,
            &h2c2,
            "PLAIN-4789"
        )),
        "the crafted VXLAN packet did not reach the plain network: the test proves nothing"
    );

    // The attack: the encrypted network's VNI, from the underlay, on both ports, and from a
    // container of the plain network to its gateway on the same host.
    let attacks: [Attack; 3] = [
        ("underlay 4789", &|m| {
            inject(atk, h2.address, 4789, vni1, &h2c1, m)
        }),
        ("underlay 4790", &|m| {
            inject(atk, h2.address, ENCRYPTED_PORT, vni1, &h2c1, m)
        }),
        ("container 4790", &|m| {
            inject(&h2c2.namespace, gw2, ENCRYPTED_PORT, vni1, &h2c1, m)
        }),
    ];
    for (i, (what, send)) in attacks.iter().enumerate() {
        let marker = format!("INJECTED-{i}");
        assert!(
            !arrives(&lab, &h2c1, &marker, || send(&marker)),
            "plain VXLAN injected into the encrypted network ({what})"
        );
    }

    // Teeth for the filter: with the agent held and the filters deleted by hand, the same
    // packets on 4790 do get in.
    let pid = h2.agent_pid.expect("agent pid");
    set_stopped(pid, true);
    for dev in ["eth0", "vb-net2"] {
        run_ok(
            "tc",
            &[
                "-n", ns2, "filter", "del", "dev", dev, "ingress", "pref", "4790",
            ],
        );
    }
    let open: Vec<bool> = attacks[1..]
        .iter()
        .enumerate()
        .map(|(i, (_, send))| {
            let marker = format!("UNFILTERED-{i}");
            arrives(&lab, &h2c1, &marker, || send(&marker))
        })
        .collect();
    set_stopped(pid, false);
    assert_eq!(
        open,
        [true, true],
        "without the filter the injection on 4790 should get in (underlay, container)"
    );
    // The agent puts them back, and they work again.
    for dev in ["eth0", "vb-net2"] {
        assert!(
            wait_until(Duration::from_secs(10), || has_drop_filter(ns2, dev)),
            "the agent did not put the filter on {dev} back"
        );
    }
    for (i, (what, send)) in attacks.iter().enumerate() {
        let marker = format!("AGAIN-{i}");
        assert!(
            !arrives(&lab, &h2c1, &marker, || send(&marker)),
            "plain VXLAN injected into the encrypted network after the filter came back ({what})"
        );
    }

    // The encrypted network still works, both ways.
    assert!(lab.ping("h1-c1", h2c1.address));
    assert!(lab.ping("h2-c1", h1c1.address));

    // Without encrypted networks, the filters (and the ingress qdiscs vxmesh added) go.
    let out = lab.vxmesh(&["network", "rm", "--force", "net1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for host in ["h1", "h2"] {
        let ns = lab.namespace(host);
        assert!(
            wait_until(SETTLE, || !filters(&ns, "eth0").contains("4790")
                && !filters(&ns, "vb-net2").contains("4790")),
            "{host} kept the filters after the last encrypted network went"
        );
        let qdiscs = run_ok("tc", &["-n", &ns, "qdisc", "show", "dev", "eth0"]);
        assert!(!qdiscs.contains("ingress"), "{host}: {qdiscs}");
    }
    assert!(lab.ping("h1-c2", h2c2.address));
}
