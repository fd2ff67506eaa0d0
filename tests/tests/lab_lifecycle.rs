//! The lab's life cycle: `lab up` builds what `lab status --json` describes, `lab exec` runs in
//! a member's namespace, and `lab down` leaves no namespace, process, mount or state behind,
//! also after a `lab up` that failed half way.

use std::process::Command;

use vxmesh_tests::leftovers::leftovers;
use vxmesh_tests::{run, unique, vxmesh_bin, Lab, TestNetns};

fn vxmesh(args: &[&str]) -> std::process::Output {
    run(vxmesh_bin().to_str().unwrap(), args)
}

#[test]
fn up_status_exec_down_leaves_nothing() {
    let lab = Lab::up(2, 2, 2);
    let s = &lab.state;
    assert_eq!(s.hosts.len(), 2);
    assert_eq!(s.networks.len(), 2);
    assert_eq!(s.containers.len(), 4);
    for h in &s.hosts {
        assert!(h.agent_running, "agent of {} not running", h.name);
        assert_eq!(h.namespace, format!("{}-{}", s.prefix, h.name));
        // The namespace holds the underlay interface with the reported address.
        let addr = String::from_utf8_lossy(
            &lab.exec(&h.name, &["ip", "-o", "-4", "addr", "show", &h.interface])
                .stdout,
        )
        .into_owned();
        assert!(addr.contains(&format!("{}/24", h.address)), "{addr}");
    }
    // Round robin: h1-c1 on net1, h1-c2 on net2; each container has the reported address and MAC.
    assert_eq!(lab.container("h1-c1").network, "net1");
    assert_eq!(lab.container("h1-c2").network, "net2");
    for c in &s.containers {
        let link = String::from_utf8_lossy(
            &lab.exec(&c.name, &["ip", "-o", "link", "show", &c.interface])
                .stdout,
        )
        .into_owned();
        assert!(
            link.contains(&c.mac),
            "{} should have MAC {}: {link}",
            c.name,
            c.mac
        );
        let addr = String::from_utf8_lossy(&lab.exec(&c.name, &["ip", "-o", "-4", "addr"]).stdout)
            .into_owned();
        assert!(addr.contains(&c.address.to_string()), "{addr}");
    }
    // `lab exec` runs in the member's namespace and passes the exit code on.
    let out = vxmesh(&[
        "lab",
        "exec",
        "--prefix",
        lab.prefix(),
        "h1-c1",
        "--",
        "ip",
        "-o",
        "link",
        "show",
        "eth0",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&lab.container("h1-c1").mac));
    let out = vxmesh(&[
        "lab",
        "exec",
        "--prefix",
        lab.prefix(),
        "h1",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    // A container's command sees the container's resolv.conf (its network's gateway: the
    // agent's DNS); a host's sees the machine's.
    for c in &s.containers {
        let out = vxmesh(&[
            "lab",
            "exec",
            "--prefix",
            lab.prefix(),
            &c.name,
            "--",
            "cat",
            "/etc/resolv.conf",
        ]);
        let gateway = lab.network(&c.network).gateway;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.contains(&format!("nameserver {gateway}\n")),
            "{}: {text}",
            c.name
        );
    }
    let out = vxmesh(&[
        "lab",
        "exec",
        "--prefix",
        lab.prefix(),
        "h1",
        "--",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
    );
    // A container's command runs in the container's cgroup (under its host's, under the
    // lab's), unless asked not to; a host's never does.
    let cgroup_of = |member: &str, outside: &[&str]| {
        let mut args = vec!["lab", "exec", "--prefix", lab.prefix()];
        args.extend_from_slice(outside);
        args.extend_from_slice(&[member, "--", "cat", "/proc/self/cgroup"]);
        let out = vxmesh(&args);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            .expect("a cgroup v2 line")
    };
    let lab_cg = format!("/vxmesh-lab-{}", lab.prefix());
    assert_eq!(cgroup_of("h1-c1", &[]), format!("{lab_cg}/h1/h1-c1"));
    assert_eq!(cgroup_of("h2-c2", &[]), format!("{lab_cg}/h2/h2-c2"));
    assert!(!cgroup_of("h1-c1", &["--outside-cgroup"]).starts_with(&lab_cg));
    assert!(!cgroup_of("h1", &[]).starts_with(&lab_cg));
    // A process left running in a container's cgroup goes with `lab down`.
    let mut sleeper = Command::new(vxmesh_bin())
        .args([
            "lab",
            "exec",
            "--prefix",
            lab.prefix(),
            "h1-c2",
            "--",
            "sleep",
            "600",
        ])
        .spawn()
        .unwrap();
    let procs = format!("/sys/fs/cgroup/unified{lab_cg}/h1/h1-c2/cgroup.procs");
    assert!(vxmesh_tests::wait_until(
        std::time::Duration::from_secs(5),
        || !std::fs::read_to_string(&procs)
            .unwrap_or_default()
            .trim()
            .is_empty()
    ));
    let out = vxmesh(&["lab", "exec", "--prefix", lab.prefix(), "h9", "--", "true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("h9"));

    // A second `up` with the same prefix is refused and breaks nothing.
    let out = vxmesh(&["lab", "up", "--prefix", lab.prefix()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already up"));
    assert!(lab.status().hosts.iter().all(|h| h.agent_running));

    let prefix = lab.prefix().to_string();
    assert!(!leftovers(&prefix).is_empty());
    drop(lab);
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    // `lab exec` returns once its command was killed.
    assert!(!sleeper.wait().unwrap().success());
    // Down again: nothing to do, still a success.
    let out = vxmesh(&["lab", "down", "--prefix", &prefix]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to remove"));
}

#[test]
fn a_failed_up_cleans_up_after_itself() {
    let prefix = unique("vtf");
    // A namespace in the way of the second host's first container makes `up` fail late, after
    // the switch, the hosts, the agents and some containers exist.
    let blocker = TestNetns::new(&format!("{prefix}-h2-c1"));
    let out = Command::new(vxmesh_bin())
        .args([
            "lab",
            "up",
            "--prefix",
            &prefix,
            "--hosts",
            "2",
            "--containers-per-host",
            "1",
            "--networks",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "lab up should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{prefix}-h2-c1")), "{err}");
    std::mem::forget(blocker); // the failed up removed it along with the rest
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
}

/// Field report: `lab down` signalled the PID recorded in its state file after checking only
/// that some process had it. After the agent died and its PID was reused, an unrelated
/// process would be killed. Here the state file is made to point at unrelated processes (as
/// PID reuse would): a plain `sleep`, and a shell whose command line even mentions
/// `agent --netns` of another lab; with and without the recorded start time (older state
/// files have none). `lab down` must remove the lab and leave every one of them running.
#[test]
fn down_never_signals_a_process_that_took_a_dead_agents_pid() {
    use overlay_core::process::{Pidfd, ProcessIdentity};
    let bystander = |which: usize| match which {
        0 => Command::new("sleep").arg("300").spawn().unwrap(),
        _ => Command::new("sh")
            .args(["-c", "sleep 300; true", "agent", "--netns", "otherlab-h1"])
            .spawn()
            .unwrap(),
    };
    for (keep_start_time, which) in [(true, 0), (true, 1), (false, 0), (false, 1)] {
        let lab = Lab::up(1, 0, 1);
        let prefix = lab.prefix().to_string();
        let agent = lab.state.hosts[0].agent_pid.expect("agent pid");
        let mut b = bystander(which);
        // The agent dies (proven to be it before the signal) ...
        let me = ProcessIdentity::of(agent).unwrap();
        let pidfd = Pidfd::open_if(me, |a| a.iter().any(|x| x == "agent")).unwrap();
        let pidfd = pidfd.expect("the agent is the process lab status names");
        pidfd.signal(libc::SIGKILL).unwrap();
        assert!(pidfd.wait_exit(std::time::Duration::from_secs(5)));
        // ... and its PID now names an unrelated process.
        let path = format!("/run/vxmesh/lab/{prefix}/state.json");
        let mut state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        state["hosts"][0]["agent_pid"] = b.id().into();
        if !keep_start_time {
            state["hosts"][0]
                .as_object_mut()
                .unwrap()
                .remove("agent_start_time");
        }
        std::fs::write(&path, state.to_string()).unwrap();
        assert!(
            !lab.status().hosts[0].agent_running,
            "lab status calls pid {} the agent",
            b.id()
        );
        drop(lab); // lab down
        assert_eq!(leftovers(&prefix), Vec::<String>::new());
        let survived = b.try_wait().unwrap().is_none();
        let _ = b.kill();
        let _ = b.wait();
        assert!(
            survived,
            "lab down signalled unrelated process {which} (start time recorded: {keep_start_time})"
        );
    }
}
