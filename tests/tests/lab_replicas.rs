//! `vxmesh lab up --replicas N` (issue 9, "What a user gets"): the demo service published on
//! port 8080 of every host, its replicas (`vxmesh lab replica`) in the first network's
//! containers spread over the hosts. Through the CLI only: the lab is made with `lab up`,
//! looked at with `lab status --json`, reached with curl from the lab's outside client, and
//! `lab down` must leave no replica process, namespace, cgroup or pin.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use overlay_core::process::{Pidfd, ProcessIdentity};
use vxmesh_tests::services::{lab_exec_output, tally};
use vxmesh_tests::{run, unique, vxmesh_bin, Lab};

/// New connections through each host's published port.
const PER_HOST: usize = 300;

/// `demo.replicas` of `lab status --json`: (name, host, pid, start time, running).
fn replicas(lab: &Lab) -> Vec<(String, String, u32, u64, bool)> {
    let out = run(
        vxmesh_bin().to_str().unwrap(),
        &["--json", "lab", "status", "--prefix", lab.prefix()],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(v["demo"]["service"], "demo", "{v}");
    assert_eq!(v["demo"]["published"], 8080);
    v["demo"]["replicas"]
        .as_array()
        .expect("a list of replicas")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["host"].as_str().unwrap().to_string(),
                r["pid"].as_u64().unwrap() as u32,
                r["start_time"].as_u64().unwrap(),
                r["running"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Is the process `lab up` started (PID and start time) still running? (An exited one may
/// stay a zombie until whoever inherited it reaps it.)
fn alive(pid: u32, start_time: u64) -> bool {
    Pidfd::open_if(ProcessIdentity { pid, start_time }, |_| true)
        .ok()
        .flatten()
        .is_some_and(|p| !p.exited())
}

#[test]
fn replicas_answer_through_every_host_and_go_with_lab_down() {
    let lab = Lab::up_with(&[
        "--hosts",
        "3",
        "--containers-per-host",
        "2",
        "--networks",
        "1",
        "--replicas",
        "6",
    ]);
    let reps = replicas(&lab);
    let names: Vec<&str> = reps.iter().map(|r| r.0.as_str()).collect();
    // Round robin over the hosts: every host's first container, then every host's second.
    assert_eq!(
        names,
        ["h1-c1", "h2-c1", "h3-c1", "h1-c2", "h2-c2", "h3-c2"]
    );
    for (name, host, pid, _, running) in &reps {
        assert!(running, "replica {name} running");
        assert!(name.starts_with(&format!("{host}-")), "{name} on {host}");
        // The process lives in its container's network namespace and cgroup.
        let ns = std::fs::metadata(format!("/run/netns/{}", lab.namespace(name))).unwrap();
        let its = std::fs::metadata(format!("/proc/{pid}/ns/net")).unwrap();
        assert_eq!(
            (its.dev(), its.ino()),
            (ns.dev(), ns.ino()),
            "{name}'s netns"
        );
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(
            cg.contains(&format!("0::/vxmesh-lab-{}/{host}/{name}", lab.prefix())),
            "{name}'s cgroup: {cg}"
        );
    }

    // New connections through each host's published port: every replica answers, and every
    // one saw the client's own address.
    let mut total: BTreeMap<String, usize> = BTreeMap::new();
    for h in ["h1", "h2", "h3"] {
        let url = format!("http://{}:8080/[1-{PER_HOST}]", lab.host(h).address);
        let out = lab_exec_output(
            &lab,
            "client",
            true,
            &["curl", "-sS", "-m", "5", "-H", "Connection: close", &url],
        );
        let (count, addrs) = tally(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(
            count.values().sum::<usize>(),
            PER_HOST,
            "answers through {h}: {}\nagent log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            lab.agent_log(h)
        );
        assert_eq!(
            count.keys().map(String::as_str).collect::<Vec<_>>(),
            {
                let mut sorted = names.clone();
                sorted.sort();
                sorted
            },
            "every replica answers through {h}"
        );
        for (replica, seen) in &addrs {
            assert_eq!(
                seen,
                &vec![vxmesh_tests::mesh::client_addr(&lab).to_string()],
                "{replica} through {h}"
            );
        }
        eprintln!("through {h}: {count:?}");
        for (r, n) in count {
            *total.entry(r).or_default() += n;
        }
    }
    eprintln!("in all: {total:?}");

    // Keep-alive: 20 requests on one connection are answered on it (same replica, same
    // client port in every answer).
    let url = format!("http://{}:8080/[1-20]", lab.host("h2").address);
    let out = lab_exec_output(&lab, "client", true, &["curl", "-sS", "-m", "5", &url]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 20, "{text}");
    assert!(
        lines.iter().all(|l| *l == lines[0]),
        "one connection: {text}"
    );

    // `lab down` leaves no replica, namespace, cgroup, pin or state.
    let prefix = lab.prefix().to_string();
    let pin_root = lab.state.bpf_pin_root.clone().expect("a pin root");
    let cgroup = lab.state.cgroup.clone().expect("a cgroup");
    drop(lab);
    let left: Vec<&str> = reps
        .iter()
        .filter(|(_, _, pid, start, _)| alive(*pid, *start))
        .map(|r| r.0.as_str())
        .collect();
    assert!(left.is_empty(), "replicas left running: {left:?}");
    let namespaces: Vec<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect();
    assert!(namespaces.is_empty(), "namespaces left: {namespaces:?}");
    for dir in [
        pin_root,
        cgroup,
        std::path::PathBuf::from(format!("/run/vxmesh/lab/{prefix}")),
    ] {
        assert!(!dir.exists(), "{} left", dir.display());
    }
}

#[test]
fn bad_replica_counts_are_refused_and_change_nothing() {
    let prefix = unique("vtr");
    for (n, why) in [
        ("0", "between 1 and 64"),
        ("65", "between 1 and 64"),
        // 3 hosts × 2 containers on 2 networks: net1 has 3.
        ("4", "must not exceed the containers of net1 (3"),
    ] {
        let out = run(
            vxmesh_bin().to_str().unwrap(),
            &[
                "lab",
                "up",
                "--prefix",
                &prefix,
                "--hosts",
                "3",
                "--containers-per-host",
                "2",
                "--networks",
                "2",
                "--replicas",
                n,
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--replicas {n} accepted");
        assert!(
            err.contains(&format!("invalid replicas '{n}'")) && err.contains(why),
            "{err}"
        );
        assert!(!std::path::Path::new(&format!("/run/vxmesh/lab/{prefix}")).exists());
        assert!(!std::fs::read_dir("/run/netns")
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&prefix)));
    }
}
