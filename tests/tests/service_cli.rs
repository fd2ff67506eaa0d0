//! `vxmesh service …` on a store of its own (no lab): create, ls, inspect, update and rm with
//! `--json`; bad input refused with the field named and the store unchanged; `network rm`
//! refusing while services use the network, and `--force`; `service inspect` on a machine
//! without the nodes' pins, and with a node's datapath loaded here (real counters moved by a
//! packet run through the tc program).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use vxmesh::services::HealthStatus;
use vxmesh::{open_catalog, ServiceCatalog};
use vxmesh_tests::store_cli::StoreCli;
use vxmesh_tests::unique;

/// A store with network `net1` (10.30.1.0/24), two nodes with names no other test uses (so
/// no pin directory of theirs exists on this machine) and endpoints c1 (.2, on the first
/// node), c2 (.3, second) and c3 (.4, first).
struct Fixture {
    cli: StoreCli,
    nodes: [String; 2],
}

impl Fixture {
    fn new() -> Fixture {
        let cli = StoreCli::new();
        let nodes = [unique("svn"), unique("svn")];
        cli.ok(&["network", "create", "net1", "--subnet", "10.30.1.0/24"]);
        cli.ok(&["node", "add", &nodes[0], "--underlay", "192.0.2.1"]);
        cli.ok(&["node", "add", &nodes[1], "--underlay", "192.0.2.2"]);
        for (name, node) in [("c1", &nodes[0]), ("c2", &nodes[1]), ("c3", &nodes[0])] {
            cli.ok(&[
                "endpoint",
                "add",
                "--network",
                "net1",
                "--node",
                node,
                "--name",
                name,
            ]);
        }
        Fixture { cli, nodes }
    }

    fn backend<'a>(inspect: &'a Value, endpoint: &str) -> &'a Value {
        inspect["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["endpoint"] == endpoint)
            .unwrap_or_else(|| panic!("no backend {endpoint} in {inspect:#}"))
    }
}

#[test]
fn create_ls_inspect_update_rm_round_trip() {
    let f = Fixture::new();
    let cli = &f.cli;
    let web = cli.json(&[
        "service",
        "create",
        "web",
        "--network",
        "net1",
        "--port",
        "80:8080",
        "--port",
        "53/udp",
        "--backend",
        "c1",
        "--backend",
        "c2:2",
        "--health",
        "http:/healthz",
        "--health-interval",
        "2s",
        "--rise",
        "3",
        "--fall",
        "4",
        "--affinity",
        "client-ip",
    ]);
    // The VIP: the lowest free address of the subnet, after the gateway (.1) and the
    // endpoints (.2-.4): never an endpoint's address.
    assert_eq!(
        web,
        json!({
            "name": "web", "network": "net1", "id": 1, "vip": "10.30.1.5",
            "ports": [
                {"port": 80, "target_port": 8080, "proto": "tcp"},
                {"port": 53, "target_port": 53, "proto": "udp"}
            ],
            "backends": [
                {"endpoint": "c1", "id": 1, "weight": 1, "state": "active"},
                {"endpoint": "c2", "id": 2, "weight": 2, "state": "active"}
            ],
            "health": {"check": "http:/healthz", "interval_ms": 2000, "timeout_ms": 500,
                       "rise": 3, "fall": 4},
            "affinity": "client-ip", "maglev_table_size": null, "table_size": 16381,
            "publish": [], "mode": "default"
        })
    );
    let dns = cli.json(&[
        "service",
        "create",
        "dns",
        "--network",
        "net1",
        "--port",
        "53/udp",
        "--vip",
        "10.30.1.53",
        "--health-interval",
        "200ms",
        "--table-size",
        "101",
    ]);
    assert_eq!(dns["vip"], "10.30.1.53");
    assert_eq!(dns["id"], 2);
    assert_eq!(dns["backends"], json!([]));
    // Timeout defaults to the interval when that is shorter than 500 ms.
    assert_eq!(
        dns["health"],
        json!({"check": "none", "interval_ms": 200, "timeout_ms": 200, "rise": 2, "fall": 2})
    );
    assert_eq!(
        (&dns["maglev_table_size"], &dns["table_size"]),
        (&json!(101), &json!(101))
    );
    // An endpoint made now skips the VIP.
    let c4 = cli.json(&[
        "endpoint",
        "add",
        "--network",
        "net1",
        "--node",
        &f.nodes[1],
        "--name",
        "c4",
    ]);
    assert_eq!(c4["ip"], "10.30.1.6");

    let ls = cli.json(&["service", "ls"]);
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dns", "web"]);
    assert_eq!(ls[1]["vip"], "10.30.1.5");
    assert_eq!(ls[1]["backends_up"], 0, "no agent is alive: {ls:#}");
    assert_eq!(ls[1]["orphaned"], false);
    assert_eq!(cli.json(&["service", "ls", "--network", "net1"]), ls);
    let table = cli.ok(&["service", "ls"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("web   net1     10.30.1.5   80:8080/tcp,53:53/udp  0/2 up"),
        "{table}"
    );

    // Health as the store has it: the first node's agent is alive and reports c1 up; the
    // second node's agent is alive and reports c2 down.
    let catalog = open_catalog(&cli.path).unwrap();
    let services = ServiceCatalog::of(&catalog);
    let leases: Vec<_> = f
        .nodes
        .iter()
        .map(|n| catalog.announce_agent(n, Duration::from_secs(600)).unwrap())
        .collect();
    services
        .report_health("web", "c1", &f.nodes[0], HealthStatus::Up, "HTTP 200", None)
        .unwrap();
    services
        .report_health(
            "web",
            "c2",
            &f.nodes[1],
            HealthStatus::Down,
            "connection refused",
            None,
        )
        .unwrap();
    let seen = cli.json(&["service", "inspect", "web"]);
    assert_eq!(seen["service"], web);
    assert_eq!(seen["orphaned"], false);
    let c1 = Fixture::backend(&seen, "c1");
    assert_eq!(
        (&c1["node"], &c1["ip"], &c1["status"], &c1["table_slots"]),
        (
            &json!(f.nodes[0]),
            &json!("10.30.1.2"),
            &json!("up"),
            &json!(16381)
        )
    );
    assert_eq!(c1["health"]["detail"], "HTTP 200");
    let c2 = Fixture::backend(&seen, "c2");
    assert_eq!(
        (&c2["status"], &c2["table_slots"], &c2["health"]["status"]),
        (&json!("down"), &json!(0), &json!("down"))
    );
    assert_eq!(c2["health"]["detail"], "connection refused");
    let text = cli.ok(&["service", "inspect", "web"]);
    assert!(text.contains("vip       10.30.1.5"), "{text}");
    assert!(text.contains("down (connection refused)"), "{text}");

    // Several changes, one transaction: one revision.
    let before = cli.state().revision;
    let updated = cli.json(&[
        "service",
        "update",
        "web",
        "--add-backend",
        "c3:5",
        "--drain-backend",
        "c1",
        "--health-timeout",
        "1s",
        "--affinity",
        "none",
    ]);
    assert_eq!(cli.state().revision, before + 1);
    assert_eq!(
        updated["backends"],
        json!([
            {"endpoint": "c1", "id": 1, "weight": 1, "state": "draining"},
            {"endpoint": "c2", "id": 2, "weight": 2, "state": "active"},
            {"endpoint": "c3", "id": 3, "weight": 5, "state": "active"}
        ])
    );
    // Health parts not given are kept.
    assert_eq!(
        updated["health"],
        json!({"check": "http:/healthz", "interval_ms": 2000, "timeout_ms": 1000,
               "rise": 3, "fall": 4})
    );
    assert_eq!(updated["affinity"], "none");
    assert_eq!(
        updated["table_size"], 16381,
        "3 backends: the smallest automatic size"
    );
    let seen = cli.json(&["service", "inspect", "web"]);
    let c1 = Fixture::backend(&seen, "c1");
    assert_eq!(
        (&c1["status"], &c1["table_slots"]),
        (&json!("draining"), &json!(0))
    );
    // c3 has no report yet: out until its node's agent checks it.
    assert_eq!(Fixture::backend(&seen, "c3")["status"], "unknown");

    let updated = cli.json(&[
        "service",
        "update",
        "web",
        "--rm-backend",
        "c2",
        "--undrain-backend",
        "c1",
        "--set-weight",
        "c3:7",
        "--health",
        "tcp",
        "--maglev-table-size",
        "307",
    ]);
    assert_eq!(
        updated["backends"],
        json!([
            {"endpoint": "c1", "id": 1, "weight": 1, "state": "active"},
            {"endpoint": "c3", "id": 3, "weight": 7, "state": "active"}
        ])
    );
    assert_eq!(updated["health"]["check"], "tcp");
    assert_eq!(
        (&updated["maglev_table_size"], &updated["table_size"]),
        (&json!(307), &json!(307))
    );
    // The removed backend's health record went with it.
    assert!(cli.keys("/vxmesh/v1/health/web/c2").is_empty());
    let auto = cli.json(&["service", "update", "web", "--table-size", "auto"]);
    assert_eq!(
        (&auto["maglev_table_size"], &auto["table_size"]),
        (&json!(null), &json!(16381))
    );

    // rm gives the VIP back: the next endpoint gets it.
    let removed = cli.json(&["service", "rm", "web"]);
    assert_eq!(removed["vip"], "10.30.1.5");
    let ipam = cli.keys("/vxmesh/v1/ipam/net1/");
    assert!(!ipam.contains(&"/vxmesh/v1/ipam/net1/10.30.1.5".to_string()));
    assert!(ipam.contains(&"/vxmesh/v1/ipam/net1/10.30.1.53".to_string()));
    assert!(cli.keys("/vxmesh/v1/health/web/").is_empty());
    let c5 = cli.json(&[
        "endpoint",
        "add",
        "--network",
        "net1",
        "--node",
        &f.nodes[0],
        "--name",
        "c5",
    ]);
    assert_eq!(c5["ip"], "10.30.1.5");
    assert_eq!(
        cli.ok(&["service", "rm", "dns"]).trim(),
        "removed service dns (vip 10.30.1.53, ports 53:53/udp, 0 backend(s))"
    );
    assert_eq!(cli.json(&["service", "ls"]), json!([]));
    assert!(cli.keys("/vxmesh/v1/services/").is_empty());
    assert!(cli.keys("/vxmesh/v1/service-ids/").is_empty());
    for lease in leases {
        catalog.store().lease_revoke(lease).unwrap();
    }
}

/// One refused command: its arguments and what its error must say.
struct Bad {
    args: Vec<String>,
    expect: Vec<&'static str>,
}

fn bad(args: &[&str], expect: &[&'static str]) -> Bad {
    Bad {
        args: args.iter().map(|s| s.to_string()).collect(),
        expect: expect.to_vec(),
    }
}

/// `service create` with `web2` on `net1` and port 80, plus `extra`.
fn create(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["service", "create", "--network", "net1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if !extra.contains(&"--port") {
        v.extend(["--port".to_string(), "80".to_string()]);
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    if !extra.contains(&"--") {
        v.push("web2".into());
    }
    v
}

fn create_bad(extra: &[&str], expect: &[&'static str]) -> Bad {
    Bad {
        args: create(extra),
        expect: expect.to_vec(),
    }
}

fn update_bad(extra: &[&str], expect: &[&'static str]) -> Bad {
    let mut args = vec!["service", "update", "web"];
    args.extend_from_slice(extra);
    bad(&args, expect)
}

fn bad_cases() -> Vec<Bad> {
    let not_endpoint = "is not an endpoint of network net1";
    vec![
        // --port
        create_bad(
            &["--port", "80/sctp"],
            &["invalid port '80/sctp'", "unknown protocol 'sctp'"],
        ),
        create_bad(&["--port", "0"], &["invalid port '0'", "1-65535"]),
        create_bad(&["--port", "70000"], &["invalid port '70000'"]),
        create_bad(&["--port", "80:0"], &["invalid target-port '80:0'"]),
        create_bad(&["--port", "80:"], &["invalid target-port '80:'"]),
        bad(
            &["service", "create", "web2", "--network", "net1"],
            &["invalid port ''", "at least one port"],
        ),
        create_bad(
            &["--port", "80", "--port", "80:81"],
            &["invalid port '80/tcp'", "is given twice"],
        ),
        // --vip
        create_bad(&["--vip", "10.30.1"], &["invalid vip '10.30.1'", "'auto'"]),
        create_bad(&["--vip", "10.31.0.5"], &["invalid vip '10.31.0.5'"]),
        create_bad(&["--vip", "10.30.1.1"], &["invalid vip '10.30.1.1'"]),
        create_bad(&["--vip", "10.30.1.255"], &["invalid vip '10.30.1.255'"]),
        create_bad(
            &["--vip", "10.30.1.2"],
            &["invalid vip '10.30.1.2'", "already in use (by c1)"],
        ),
        create_bad(
            &["--vip", "10.30.1.5"],
            &["invalid vip '10.30.1.5'", "already in use (by service:web)"],
        ),
        // --backend
        create_bad(
            &["--backend", "nope"],
            &["invalid backend 'nope'", not_endpoint],
        ),
        create_bad(
            &["--backend", "c1:0"],
            &["invalid weight '0'", "between 1 and 1000"],
        ),
        create_bad(&["--backend", "c1:x"], &["invalid weight 'c1:x'"]),
        create_bad(&["--backend", "c1:1001"], &["invalid weight '1001'"]),
        create_bad(
            &["--backend", "c1", "--backend", "c1:2"],
            &["invalid backend 'c1'", "is given twice"],
        ),
        create_bad(&["--backend", "c 1"], &["invalid backend 'c 1'"]),
        // health
        create_bad(
            &["--health", "udp"],
            &["invalid health 'udp'", "none, tcp or http:PATH"],
        ),
        create_bad(
            &["--health", "http:healthz"],
            &["invalid health 'http:healthz'", "must start with '/'"],
        ),
        create_bad(
            &["--port", "53/udp", "--health", "tcp"],
            &["invalid health 'tcp'", "only UDP ports"],
        ),
        create_bad(
            &["--health-interval", "1"],
            &["invalid health-interval '1'"],
        ),
        create_bad(
            &["--health-interval", "50ms"],
            &[
                "invalid health-interval '50ms'",
                "between 100ms and 3600000ms",
            ],
        ),
        create_bad(
            &["--health-timeout", "2s"],
            &["invalid health-timeout '2000ms'", "the interval (1000ms)"],
        ),
        create_bad(
            &["--rise", "0"],
            &["invalid health-rise '0'", "between 1 and 10"],
        ),
        create_bad(&["--health-fall", "11"], &["invalid health-fall '11'"]),
        create_bad(&["--rise", "x"], &["invalid health-rise 'x'"]),
        // --affinity, --table-size
        create_bad(&["--affinity", "sticky"], &["invalid affinity 'sticky'"]),
        create_bad(
            &["--table-size", "100"],
            &["invalid maglev-table-size '100'"],
        ),
        create_bad(
            &["--maglev-table-size", "big"],
            &["invalid maglev-table-size 'big'"],
        ),
        create_bad(
            &["--table-size", "1048583"],
            &["invalid maglev-table-size '1048583'"],
        ),
        // name and network
        create_bad(&["--", "-x"], &["invalid service name '-x'"]),
        create_bad(&["--", "a/b"], &["invalid service name 'a/b'"]),
        create_bad(&["--", "web"], &["service 'web' already exists"]),
        bad(
            &[
                "service",
                "create",
                "web2",
                "--network",
                "nonet",
                "--port",
                "80",
            ],
            &["unknown network 'nonet'"],
        ),
        bad(
            &[
                "service",
                "create",
                "web2",
                "--network",
                "n/1",
                "--port",
                "80",
            ],
            &["invalid network name 'n/1'"],
        ),
        // update: one bad change among good ones changes nothing.
        bad(
            &["service", "update", "nope", "--drain-backend", "c1"],
            &["unknown service 'nope'"],
        ),
        update_bad(
            &["--add-backend", "c1"],
            &["invalid backend 'c1'", "already a backend of service web"],
        ),
        update_bad(
            &["--add-backend", "c3", "--add-backend", "nope"],
            &["invalid backend 'nope'", not_endpoint],
        ),
        update_bad(
            &[
                "--add-backend",
                "c3",
                "--set-weight",
                "c1:3",
                "--drain-backend",
                "c4",
            ],
            &["invalid backend 'c4'", "is not a backend of service web"],
        ),
        update_bad(
            &["--rm-backend", "c3", "--affinity", "client-ip"],
            &["invalid backend 'c3'", "is not a backend of service web"],
        ),
        update_bad(
            &["--drain-backend", "c1", "--undrain-backend", "c1"],
            &["invalid undrain-backend 'c1'", "--drain-backend"],
        ),
        update_bad(&["--set-weight", "c1"], &["invalid set-weight 'c1'"]),
        update_bad(&["--set-weight", "c1:2000"], &["invalid weight '2000'"]),
        update_bad(
            &["--add-backend", "c3", "--health-interval", "200ms"],
            &["invalid health-timeout '500ms'", "the interval (200ms)"],
        ),
        update_bad(&["--table-size", "1"], &["invalid maglev-table-size '1'"]),
        update_bad(&["--health", "http:/a b"], &["invalid health 'http:/a b'"]),
        update_bad(&[], &["nothing to change in service web"]),
        // rm, inspect, ls, network rm
        bad(&["service", "rm", "nope"], &["unknown service 'nope'"]),
        bad(
            &["service", "rm", "--", "-x"],
            &["invalid service name '-x'"],
        ),
        bad(&["service", "inspect", "nope"], &["unknown service 'nope'"]),
        bad(
            &["service", "ls", "--network", "nonet"],
            &["unknown network 'nonet'"],
        ),
        bad(
            &["network", "rm", "net1"],
            &["network 'net1' still has 1 service(s) (web)", "--force"],
        ),
        // --publish, --unpublish, --mode (web publishes 8080:80)
        create_bad(
            &["--publish", "8080:80"],
            &[
                "invalid publish",
                "8080/tcp is already published by service web",
            ],
        ),
        create_bad(
            &["--publish", "0:80"],
            &["invalid publish '0:80'", "1-65535"],
        ),
        create_bad(&["--publish", "70000:80"], &["invalid publish '70000:80'"]),
        create_bad(
            &["--publish", "9090"],
            &["invalid publish '9090'", "PUBLISHED:PORT"],
        ),
        create_bad(
            &["--publish", "9090:81"],
            &["invalid publish", "port 81 is not a port of the service"],
        ),
        create_bad(
            &["--publish", "9090:80/udp"],
            &["invalid publish", "protocol mismatch"],
        ),
        create_bad(
            &["--publish", "9090:80", "--publish", "9090:80"],
            &["invalid publish", "9090/tcp is published twice"],
        ),
        create_bad(
            &["--mode", "fast"],
            &["invalid mode 'fast'", "default or dsr"],
        ),
        update_bad(
            &["--unpublish", "9999:80"],
            &["invalid publish", "is not published by service web"],
        ),
        update_bad(
            &["--publish", "8080:80"],
            &["invalid publish", "8080/tcp is published twice"],
        ),
        update_bad(&["--mode", "x"], &["invalid mode 'x'"]),
    ]
}

/// Runs `case` plain and with --json: refused, the error names the field, and the store is
/// exactly as it was. Returns what went wrong.
fn check(cli: &StoreCli, case: &Bad) -> Vec<String> {
    let before = cli.state();
    let mut problems = Vec::new();
    for json in [false, true] {
        let mut args: Vec<&str> = if json { vec!["--json"] } else { vec![] };
        args.extend(case.args.iter().map(String::as_str));
        let out = cli.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let message = if json {
            serde_json::from_str::<Value>(&stdout)
                .ok()
                .and_then(|v| v["error"].as_str().map(String::from))
                .unwrap_or_else(|| format!("<no JSON error on stdout: {stdout:?}>"))
        } else {
            stderr.to_string()
        };
        if out.status.success() {
            problems.push(format!("{args:?}: accepted: {stdout}"));
        }
        if !stderr.starts_with("error: ") {
            problems.push(format!("{args:?}: stderr {stderr:?}"));
        }
        if !json && !stdout.is_empty() {
            problems.push(format!("{args:?}: printed {stdout:?}"));
        }
        for e in &case.expect {
            if !message.contains(e) {
                problems.push(format!("{args:?}: error does not say {e:?}: {message:?}"));
            }
        }
        if cli.state() != before {
            problems.push(format!("{args:?}: changed the store"));
        }
    }
    problems
}

/// `[{published, port, proto}]` of `(published, port, proto)`s.
fn published(list: &[(u16, u16, &str)]) -> Value {
    list.iter()
        .map(|(p, port, proto)| json!({"published": p, "port": port, "proto": proto}))
        .collect()
}

#[test]
fn published_ports_and_mode_round_trip() {
    let f = Fixture::new();
    let cli = &f.cli;
    let mesh = |v: &Value| (v["publish"].clone(), v["mode"].clone());
    let create = "service create demo --network net1 --port 80 --port 53/udp --backend c1 \
                  --publish 8080:80 --publish 5353:53/udp --mode dsr";
    let demo = cli.json(&create.split_whitespace().collect::<Vec<_>>());
    assert_eq!(
        mesh(&demo),
        (
            published(&[(8080, 80, "tcp"), (5353, 53, "udp")]),
            json!("dsr")
        )
    );
    let update = "service update demo --unpublish 5353:53/udp --publish 9090:80 --mode default";
    let demo = cli.json(&update.split_whitespace().collect::<Vec<_>>());
    assert_eq!(
        mesh(&demo),
        (
            published(&[(8080, 80, "tcp"), (9090, 80, "tcp")]),
            json!("default")
        )
    );
    let seen = cli.json(&["service", "inspect", "demo"]);
    assert_eq!(mesh(&seen["service"]), mesh(&demo));
    // The unpublished port is free again; removing the service frees its ports.
    let dns = "service create dns --network net1 --port 53/udp --publish 5353:53/udp";
    cli.ok(&dns.split_whitespace().collect::<Vec<_>>());
    cli.ok(&["service", "rm", "demo"]);
    let web = "service create web --network net1 --port 80 --publish 8080:80";
    cli.ok(&web.split_whitespace().collect::<Vec<_>>());
}

#[test]
fn bad_input_is_named_and_changes_nothing() {
    let f = Fixture::new();
    f.cli.ok(&[
        "service",
        "create",
        "web",
        "--network",
        "net1",
        "--port",
        "80",
        "--backend",
        "c1",
        "--backend",
        "c2",
        "--publish",
        "8080:80",
    ]);
    let cases = bad_cases();
    assert!(cases.len() >= 25);
    let problems: Vec<String> = cases.iter().flat_map(|c| check(&f.cli, c)).collect();
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The cases did not break the service either.
    let web = f.cli.json(&["service", "inspect", "web"]);
    assert_eq!(web["service"]["backends"].as_array().unwrap().len(), 2);
}

#[test]
fn network_rm_refuses_while_services_use_it_and_force_removes_them() {
    let f = Fixture::new();
    let cli = &f.cli;
    for (name, port) in [("web", "80"), ("dns", "53/udp")] {
        cli.ok(&[
            "service",
            "create",
            name,
            "--network",
            "net1",
            "--port",
            port,
            "--backend",
            "c1",
        ]);
    }
    cli.ok(&["network", "create", "net2", "--subnet", "10.30.2.0/24"]);

    let before = cli.state();
    let out = cli.run(&["network", "rm", "net1", "--json"]);
    assert!(!out.status.success());
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        err["error"],
        "network 'net1' still has 2 service(s) (dns, web); remove them first or use --force"
    );
    assert_eq!(
        cli.state(),
        before,
        "a refused network rm changed the store"
    );

    let removed = cli.json(&["network", "rm", "net1", "--force"]);
    assert_eq!(removed["name"], "net1");
    assert_eq!(removed["removed_services"], json!(["dns", "web"]));
    assert_eq!(cli.json(&["service", "ls"]), json!([]));
    for prefix in [
        "/vxmesh/v1/services/",
        "/vxmesh/v1/service-ids/",
        "/vxmesh/v1/ipam/net1/",
        "/vxmesh/v1/endpoints/net1/",
        "/vxmesh/v1/dependents/networks/net1/",
    ] {
        assert_eq!(cli.keys(prefix), Vec::<String>::new(), "{prefix}");
    }
    // A network without services goes as before, and says it removed none.
    let removed = cli.json(&["network", "rm", "net2"]);
    assert_eq!(removed["removed_services"], json!([]));
    assert_eq!(cli.ok(&["network", "ls"]).lines().count(), 1);
}

#[test]
fn inspect_without_pins_here_says_not_on_this_host() {
    let f = Fixture::new();
    let cli = &f.cli;
    cli.ok(&[
        "service",
        "create",
        "web",
        "--network",
        "net1",
        "--port",
        "80",
        "--backend",
        "c1",
    ]);
    // The default pin root: no node of this store has pins on this machine.
    let seen = cli.json(&["service", "inspect", "web"]);
    let nodes = seen["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    for n in nodes {
        assert_eq!(n["on_this_host"], false, "{n}");
        for field in ["error", "conntrack", "maglev", "no_backend_drops"] {
            assert_eq!(n[field], Value::Null, "{field}: {n}");
        }
        let dir = format!(
            "{}/{}",
            vxmesh::DEFAULT_PIN_ROOT,
            n["node"].as_str().unwrap()
        );
        assert_eq!(n["pin_dir"], dir);
    }
    assert_eq!(Fixture::backend(&seen, "c1")["counters"], json!([]));
    let text = cli.ok(&["service", "inspect", "web"]);
    for node in &f.nodes {
        assert!(
            text.lines()
                .any(|l| l.starts_with(node.as_str()) && l.contains("not on this host")),
            "{text}"
        );
    }
    // A node whose directory is there but holds no maps: shown as unreadable, not a failure.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join(&f.nodes[0])).unwrap();
    let root_arg = root.path().to_str().unwrap();
    let seen = cli.json(&["service", "inspect", "web", "--pin-root", root_arg]);
    let first = &seen["nodes"][0];
    assert_eq!(first["node"], f.nodes[0].as_str());
    assert_eq!(first["on_this_host"], true);
    assert!(
        first["error"].as_str().unwrap().contains("vx_maglev"),
        "{first}"
    );
    assert_eq!(seen["nodes"][1]["on_this_host"], false);
    let text = cli.ok(&["service", "inspect", "web", "--pin-root", root_arg]);
    assert!(text.contains("unreadable: "), "{text}");
}

/// A node's datapath loaded under a pin root of this test's own; its pins are removed on
/// drop, even when the test fails.
struct LoadedNode {
    dp: Option<vxmesh_ebpf::Datapath>,
    root: PathBuf,
    node: String,
}

impl LoadedNode {
    fn load(node: &str) -> LoadedNode {
        let root = PathBuf::from(format!("/sys/fs/bpf/vxmesh-test-{}", unique("svcli")));
        let mut config = vxmesh_ebpf::DatapathConfig::new(node);
        config.pin_root = root.clone();
        config.conntrack_entries = 4096;
        config.max_services = 64;
        config.max_backends = 64;
        config.affinity_entries = 64;
        config.sock_rev_entries = 64;
        config.frag_entries = 64;
        let mut guard = LoadedNode {
            dp: None,
            root,
            node: node.to_string(),
        };
        guard.dp = Some(vxmesh_ebpf::Datapath::load(config).expect("load the datapath"));
        guard
    }

    fn dp(&mut self) -> &mut vxmesh_ebpf::Datapath {
        self.dp.as_mut().expect("loaded")
    }
}

impl Drop for LoadedNode {
    fn drop(&mut self) {
        drop(self.dp.take());
        if let Err(e) = vxmesh_ebpf::teardown(&self.root, &self.node) {
            eprintln!("teardown of {}: {e}", self.root.display());
        }
    }
}

/// An Ethernet frame with a TCP SYN from `src`:`sport` to `dst`:`dport`.
fn tcp_syn(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(sport, dport, 1000, 64240)
        .syn();
    let mut frame = Vec::with_capacity(builder.size(0));
    builder.write(&mut frame, &[]).expect("build the frame");
    frame
}

fn ip(v: &Value) -> Ipv4Addr {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn inspect_shows_the_counters_of_a_datapath_loaded_here() {
    let f = Fixture::new();
    let cli = &f.cli;
    let node = &f.nodes[0];
    let web = cli.json(&[
        "service",
        "create",
        "web",
        "--network",
        "net1",
        "--port",
        "80:8080",
        "--backend",
        "c1",
        "--backend",
        "c3",
    ]);
    // The kernel keys the service's first port and the backend on it by their kernel ids.
    use ingress_lb::reconcile::ids::kernel_id;
    let svc_id = kernel_id(web["id"].as_u64().unwrap() as u32, 0).unwrap();
    let vip = ip(&web["vip"]);
    let table_size = web["table_size"].as_u64().unwrap() as usize;
    let c1 = &web["backends"][0];
    let c1_id = kernel_id(c1["id"].as_u64().unwrap() as u32, 0).unwrap();
    assert_eq!(c1["endpoint"], "c1");

    // Program the node's maps by hand with the kernel ids of the catalog's (what the agent does):
    // every slot to c1, so the packet's backend is known.
    let mut loaded = LoadedNode::load(node);
    let c1_ip = Ipv4Addr::new(10, 30, 1, 2);
    let maps = loaded.dp().maps_mut();
    maps.upsert_backend(c1_id, vxmesh_ebpf::Backend::new(c1_ip, 8080, 0))
        .unwrap();
    maps.replace_maglev_table(svc_id, &vec![c1_id; table_size])
        .unwrap();
    maps.upsert_service(
        vxmesh_ebpf::SvcKey::new(vip, 80, vxmesh_ebpf::IPPROTO_TCP),
        vxmesh_ebpf::Svc {
            id: svc_id,
            flags: 0,
            affinity_timeout_s: 0,
        },
    )
    .unwrap();
    let client = Ipv4Addr::new(10, 30, 1, 4);
    let frame = tcp_syn(client, 40000, vip, 80);
    let run = loaded
        .dp()
        .run_tc(vxmesh_ebpf::PROG_FROM_LXC, &frame)
        .unwrap();
    assert_eq!(run.verdict, vxmesh_ebpf::TC_ACT_OK);
    let ipv4 = etherparse::SlicedPacket::from_ethernet(&run.packet)
        .unwrap()
        .net
        .unwrap();
    let etherparse::NetSlice::Ipv4(ipv4) = ipv4 else {
        panic!("not IPv4")
    };
    assert_eq!(ipv4.header().destination_addr(), c1_ip, "translated to c1");

    let root = loaded.root.to_str().unwrap().to_string();
    let seen = cli.json(&["service", "inspect", "web", "--pin-root", &root]);
    let here = seen["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == node.as_str())
        .expect("the loaded node");
    assert_eq!(here["on_this_host"], true);
    assert_eq!(here["error"], Value::Null, "{here}");
    assert_eq!(
        here["conntrack"],
        json!({"entries": 2, "flows": 1, "capacity": 4096,
               "fill_percent": 2.0 * 100.0 / 4096.0})
    );
    assert_eq!(here["maglev"]["slots"], table_size);
    assert!(
        here["maglev"]["memory_bytes"].as_u64().unwrap() >= 4 * table_size as u64,
        "{here}"
    );
    assert_eq!(here["no_backend_drops"], 0);
    assert_eq!(
        Fixture::backend(&seen, "c1")["counters"],
        json!([{"node": node, "programmed": true, "packets": 1,
                "bytes": frame.len(), "connections": 1}])
    );
    // c3 is not in this kernel's maps: shown, with nothing counted.
    assert_eq!(
        Fixture::backend(&seen, "c3")["counters"],
        json!([{"node": node, "programmed": false, "packets": 0, "bytes": 0,
                "connections": 0}])
    );
    let text = cli.ok(&["service", "inspect", "web", "--pin-root", &root]);
    assert!(text.contains("2/4096 entries (0.0 %), 1 flows"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("c1") && l.contains(node.as_str()) && l.contains(" yes ")),
        "{text}"
    );
}
