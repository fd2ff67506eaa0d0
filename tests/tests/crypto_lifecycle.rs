//! Encryption acceptance 3 (second half) and 4: a key rotation keeps a long TCP transfer alive;
//! after an agent restart the tunnels come back with the same key (and the same, persistent,
//! WireGuard interface); removing a node removes its peer on the other hosts (its traffic no
//! longer gets in), its entries everywhere and its own WireGuard interface.

use std::process::{Command, Stdio};
use std::time::Duration;

use vxmesh_tests::crypto;
use vxmesh_tests::{run, vxmesh_bin, wait_until, witness};

const SETTLE: Duration = Duration::from_secs(30);

#[test]
fn key_rotation_keeps_a_long_transfer_alive() {
    let lab = crypto::lab_up(2, 1, 1, 1);
    let to = lab.container("h2-c1").address;
    assert!(lab.ping_within("h1-c1", to, SETTLE));
    let server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.namespace("h2-c1"),
            "iperf3",
            "-s",
            "-1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3");
    std::thread::sleep(Duration::from_millis(500));
    let client = Command::new("ip")
        .args(["netns", "exec", &lab.namespace("h1-c1")])
        .args(["iperf3", "-c", &to.to_string(), "-t", "16", "-i", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("iperf3");
    let before = [
        crypto::identity(&lab, "h1").unwrap().public_key,
        crypto::identity(&lab, "h2").unwrap().public_key,
    ];
    std::thread::sleep(Duration::from_secs(4));
    assert!(lab.vxmesh(&["node", "rotate-key", "h1"]).status.success());
    std::thread::sleep(Duration::from_secs(4));
    assert!(lab.vxmesh(&["node", "rotate-key", "h2"]).status.success());
    let out = client.wait_with_output().unwrap();
    let mut server = server;
    let _ = server.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the transfer broke during the key rotations"
    );
    // Both keys changed and no rotation is pending.
    for (node, old) in ["h1", "h2"].iter().zip(before) {
        let w = crypto::identity(&lab, node).unwrap();
        assert_ne!(w.public_key, old, "{node}'s key did not change");
        assert!(!w.rotate_requested);
    }
    // The last intervals carried data: the transfer resumed after the second rotation.
    let last = text
        .lines()
        .rfind(|l| {
            l.contains("sec")
                && l.contains("Bytes")
                && !l.contains("sender")
                && !l.contains("receiver")
        })
        .unwrap_or("")
        .to_string();
    assert!(
        !last.contains(" 0.00 Bytes"),
        "transfer stalled for good: {last}"
    );
    assert!(lab.ping_within("h2-c1", lab.container("h1-c1").address, SETTLE));
}

#[test]
fn restart_brings_tunnels_back_and_removing_a_node_removes_its_peer() {
    let lab = crypto::lab_up(3, 1, 1, 1);
    let (c1, c2) = (
        lab.container("h1-c1").address,
        lab.container("h2-c1").address,
    );
    assert!(
        lab.ping_within("h1-c1", c2, SETTLE),
        "no encrypted path h1-c1 -> h2-c1\n--- h1 agent:\n{}\n--- h2 agent:\n{}",
        lab.agent_log("h1"),
        lab.agent_log("h2")
    );
    let key = crypto::identity(&lab, "h2").unwrap().public_key;
    let index = crypto::wg_index(&lab, "h2").expect("h2 has a WireGuard interface");

    // Restart h2's agent (its WireGuard interface is persistent: it stays, same index).
    let pid = lab.host("h2").agent_pid.unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert!(wait_until(
        Duration::from_secs(10),
        || !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z"))
    ));
    assert_eq!(
        crypto::wg_index(&lab, "h2"),
        Some(index),
        "the WireGuard interface did not outlive its agent"
    );
    let store = lab.state.store.to_str().unwrap().to_string();
    let state_dir = format!("/run/vxmesh/lab/{}/h2", lab.prefix());
    let mut agent = Command::new(vxmesh_bin())
        .args(["--store", &store, "agent", "--node", "h2", "--netns"])
        .arg(lab.namespace("h2"))
        .args(["--state-dir", &state_dir])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let back = lab.ping_within("h1-c1", c2, Duration::from_secs(60))
        && lab.ping_within("h2-c1", c1, SETTLE);
    let same_key = crypto::identity(&lab, "h2").unwrap().public_key == key;
    // h3 <-> h1 over the tunnel, before h3 is removed.
    let h1_tunnel = crypto::tunnel_ip(&lab, "h1");
    let h3_tunnel = crypto::tunnel_ip(&lab, "h3");
    let h3_reached = lab.ping_within("h3", h1_tunnel, SETTLE);

    let removed = lab
        .vxmesh(&["node", "rm", "h3", "--force"])
        .status
        .success();
    let fdb_gone = ["h1", "h2"].iter().all(|h| {
        wait_until(SETTLE, || {
            !witness::vxlan_fdb(&lab.namespace(h), "vx-net1")
                .iter()
                .any(|l| l.contains(&format!("dst {h3_tunnel} ")))
        })
    });
    // h3's traffic no longer gets into h1: h1 dropped the peer (and its sessions).
    std::thread::sleep(Duration::from_secs(3));
    let h3_locked_out = (0..5).all(|_| !lab.ping("h3", h1_tunnel));
    // The removed node's agent deleted its persistent WireGuard interface.
    let h3_wg_gone = wait_until(SETTLE, || crypto::wg_index(&lab, "h3").is_none());
    let h1_h2_ok = lab.ping_within("h1-c1", c2, SETTLE);
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = run("true", &[]);

    assert!(
        back,
        "the tunnels did not come back after h2's agent restarted"
    );
    assert!(same_key, "the restarted agent published a different key");
    assert!(
        h3_reached,
        "h3 could not reach h1's tunnel address before its removal"
    );
    assert!(removed);
    assert!(fdb_gone, "FDB entries toward the removed node remain");
    assert!(h3_locked_out, "the removed node still gets through to h1");
    assert!(h3_wg_gone, "the removed node's WireGuard interface remains");
    assert!(h1_h2_ok);
}
