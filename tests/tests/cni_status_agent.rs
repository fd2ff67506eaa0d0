//! STATUS tells whether the host's agent is alive, not only whether its devices exist: the agent
//! keeps a heartbeat key on a store lease; a stopped agent removes it at once, a killed one
//! loses it when the lease expires.

use std::process::{Command, Stdio};
use std::time::Duration;

use vxmesh_tests::cni::{exec, netconf, CniEnv};
use vxmesh_tests::witness::links;
use vxmesh_tests::{vxmesh_bin, wait_until, Lab};

fn signal(pid: u32, sig: i32) {
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

fn status_code(lab: &Lab) -> (u64, String) {
    let out = exec(
        &lab.namespace("h1"),
        "STATUS",
        &CniEnv::default(),
        &netconf(lab, "net1", "h1"),
    );
    if out.stdout.is_empty() {
        (0, String::new())
    } else {
        (
            out.code(),
            out.json()["msg"].as_str().unwrap_or_default().to_string(),
        )
    }
}

fn start_agent(lab: &Lab) -> u32 {
    Command::new(vxmesh_bin())
        .arg("--store")
        .arg(&lab.state.store)
        .args(["agent", "--node", "h1", "--netns", &lab.namespace("h1")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
        .id()
}

#[test]
fn status_follows_the_agents_heartbeat() {
    let lab = Lab::up(1, 0, 1);
    let ns = lab.namespace("h1");
    assert!(
        wait_until(Duration::from_secs(10), || status_code(&lab).0 == 0),
        "{:?}",
        status_code(&lab)
    );

    // A clean stop: the heartbeat goes at once; the devices stay (limited: 51).
    signal(lab.host("h1").agent_pid.unwrap(), libc::SIGTERM);
    assert!(
        wait_until(Duration::from_secs(10), || status_code(&lab).0 != 0),
        "STATUS still succeeds after the agent stopped"
    );
    let (code, msg) = status_code(&lab);
    assert_eq!(code, 51, "{msg}");
    assert!(msg.contains("agent not running"), "{msg}");
    assert!(
        links(&ns).contains(&"vb-net1".to_string()),
        "the bridge should stay"
    );

    // A new agent: available again.
    let pid = start_agent(&lab);
    assert!(
        wait_until(Duration::from_secs(10), || status_code(&lab).0 == 0),
        "{:?}",
        status_code(&lab)
    );

    // Killed outright: unavailable once its lease expires (10 s).
    signal(pid, libc::SIGKILL);
    assert_eq!(
        status_code(&lab).0,
        0,
        "the lease outlives a kill for a while"
    );
    assert!(
        wait_until(Duration::from_secs(30), || status_code(&lab).0 == 51),
        "STATUS still succeeds long after the agent was killed: {:?}",
        status_code(&lab)
    );
}
