//! A real runtime: podman 4.3 (Debian, CNI backend) on lab host h1 runs a container on two
//! vxmesh networks, with the conflists `vxmesh cni install` wrote (one with portmap chained, one
//! without). Issue 7, faults 3 and 5: the second attachment succeeds, the container has both
//! interfaces and one default route, and reaches containers on h2 over each network; podman
//! accepts both conflists; `podman rm` (CNI DEL) removes the attachments.

use std::time::Duration;

use serde_json::Value;
use vxmesh_tests::cni::{cni_bin, endpoints, ip};
use vxmesh_tests::podman::Podman;
use vxmesh_tests::{run, unique, wait_until, Lab};

/// `nsenter --net=/proc/PID/ns/net ARGS` (the container's network namespace, from outside).
fn in_container(pid: u32, args: &[&str]) -> std::process::Output {
    let mut all = vec![format!("--net=/proc/{pid}/ns/net")];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    run("nsenter", &all)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn podman_runs_a_container_on_two_vxmesh_networks() {
    // h1-c1/h2-c1 on net1, h1-c2/h2-c2 on net2.
    let lab = Lab::up(2, 2, 2);
    let podman = Podman::new(&lab, "h1");
    for (network, extra) in [("net1", None), ("net2", Some("--no-portmap"))] {
        let mut args = vec![
            "--json",
            "cni",
            "install",
            "--network",
            network,
            "--node",
            "h1",
        ];
        let (bin, conf, plugin) = (podman.bin_dir(), podman.conf_dir(), cni_bin());
        args.extend([
            "--bin-dir",
            bin.to_str().unwrap(),
            "--conf-dir",
            conf.to_str().unwrap(),
            "--plugin",
            plugin.to_str().unwrap(),
        ]);
        args.extend(extra);
        let out = lab.vxmesh(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Value = serde_json::from_str(
            &std::fs::read_to_string(conf.join(format!("10-vxmesh-{network}.conflist"))).unwrap(),
        )
        .unwrap();
        assert_eq!(list["cniVersion"], "1.0.0", "{list}");
    }

    let name = unique("pc");
    let rootfs = podman.rootfs();
    let out = podman.run(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "vxmesh-net1,vxmesh-net2",
        "--cgroup-parent",
        &podman.cgroup_parent,
        "--rootfs",
        rootfs.to_str().unwrap(),
        "/bin/sleep",
        "600",
    ]);
    assert!(
        out.status.success(),
        "podman run: {}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = podman.pid(&name);

    // Both interfaces, each with its network's address and subnet route.
    let addrs = stdout(&in_container(pid, &["ip", "-4", "-o", "addr", "show"]));
    let routes = stdout(&in_container(pid, &["ip", "-4", "route", "show"]));
    let mut devs = Vec::new();
    for (net, prefix) in [("net1", "10.10.1."), ("net2", "10.10.2.")] {
        let line = addrs
            .lines()
            .find(|l| l.contains(&format!("inet {prefix}")))
            .unwrap_or_else(|| panic!("no {net} address in the container:\n{addrs}"));
        let dev = line.split_whitespace().nth(1).unwrap().to_string();
        assert!(
            routes
                .lines()
                .any(|r| r.starts_with(&format!("{prefix}0/24 dev {dev} "))),
            "no subnet route of {net} on {dev}:\n{routes}"
        );
        devs.push((dev, format!("{prefix}1")));
    }
    assert_ne!(devs[0].0, devs[1].0);
    // One default route: via the gateway of the network on its device.
    let defaults: Vec<&str> = routes
        .lines()
        .filter(|r| r.starts_with("default "))
        .collect();
    assert_eq!(defaults.len(), 1, "{routes}");
    assert!(
        devs.iter()
            .any(|(dev, gw)| defaults[0].starts_with(&format!("default via {gw} dev {dev} "))),
        "{routes}"
    );

    // It reaches the containers on h2 over each network.
    for peer in ["h2-c1", "h2-c2"] {
        let to = lab.container(peer).address.to_string();
        assert!(
            wait_until(Duration::from_secs(20), || in_container(
                pid,
                &["ping", "-c1", "-W1", &to]
            )
            .status
            .success()),
            "the podman container cannot reach {peer} ({to}):\n{routes}"
        );
    }
    let ours = |net: &str| -> Vec<Value> {
        endpoints(&lab, net)
            .into_iter()
            .filter(|e| !e["cni"].is_null())
            .collect()
    };
    let (e1, e2) = (ours("net1"), ours("net2"));
    assert_eq!((e1.len(), e2.len()), (1, 1), "{e1:?} {e2:?}");
    let veths: Vec<String> = [&e1[0], &e2[0]]
        .iter()
        .map(|e| e["host_ifname"].as_str().unwrap_or_default().to_string())
        .collect();
    let h1_links = ip(&lab.namespace("h1"), &["-o", "link"]);
    for v in &veths {
        assert!(
            !v.is_empty() && h1_links.contains(v.as_str()),
            "{v}: {h1_links}"
        );
    }

    // podman rm: CNI DEL of both attachments.
    let out = podman.run(&["rm", "--force", "--time", "0", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ours("net1").is_empty() && ours("net2").is_empty());
    let h1_links = ip(&lab.namespace("h1"), &["-o", "link"]);
    for v in &veths {
        assert!(!h1_links.contains(v.as_str()), "{v} left on h1: {h1_links}");
    }
}
