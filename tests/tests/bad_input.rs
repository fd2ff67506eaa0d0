//! Bad input on the command line: every class of argument (subnets, VNIs, names, MTUs, the
//! encryption flag, underlay addresses, endpoint addresses and MACs, unknown networks and
//! nodes, removals that need --force, the agent's node, the lab's parameters) is refused with
//! an error that names the field, exits non-zero, and changes nothing: not the store (every
//! key, and its revision) and not the kernel of a running lab (its agents keep reconciling).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use overlay_core::model::{HostAddress, HostReport};
use overlay_core::store::{KeyValue, Revision};
use overlay_core::{Catalog, SqliteStore, Store};
use vxmesh_tests::{run, run_ok, unique, vxmesh_bin, wait_until, witness, Lab};

/// One bad command and what its error must say.
struct Case {
    args: Vec<String>,
    /// Every one of these must appear in the error (stderr, and the JSON error with --json).
    expect: Vec<String>,
    /// Refused by the argument parser (clap) rather than by vxmesh's validation.
    parse: bool,
}

fn case(args: &[&str], expect: &[&str]) -> Case {
    Case {
        args: args.iter().map(|s| s.to_string()).collect(),
        expect: expect.iter().map(|s| s.to_string()).collect(),
        parse: false,
    }
}

/// A value clap itself cannot parse into the flag's type: its error names the flag.
fn parse_case(args: &[&str], expect: &[&str]) -> Case {
    Case {
        parse: true,
        ..case(args, expect)
    }
}

/// What the store holds, seen through the CLI and through the store itself.
#[derive(Debug, PartialEq, Eq)]
struct StoreState {
    networks: String,
    nodes: String,
    endpoints: String,
    revision: Revision,
    kvs: Vec<KeyValue>,
}

fn vxmesh_at(store: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--store", store.to_str().unwrap()];
    all.extend_from_slice(args);
    run(vxmesh_bin().to_str().unwrap(), &all)
}

fn vxmesh_ok_at(store: &Path, args: &[&str]) -> String {
    let mut all = vec!["--store", store.to_str().unwrap()];
    all.extend_from_slice(args);
    run_ok(vxmesh_bin().to_str().unwrap(), &all)
}

fn store_state(store: &Path) -> StoreState {
    let s = SqliteStore::open(store).expect("open the store");
    let all = s.range("/").expect("read every key");
    StoreState {
        networks: vxmesh_ok_at(store, &["--json", "network", "ls"]),
        nodes: vxmesh_ok_at(store, &["--json", "node", "ls"]),
        endpoints: vxmesh_ok_at(store, &["--json", "endpoint", "ls"]),
        revision: s.revision().expect("store revision"),
        kvs: all.kvs,
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `case` against `store`, plain and with --json, and checks the refusal and that the
/// store is exactly `before` afterwards. Returns the problems found (empty when all is well).
fn check_case(store: &Path, before: &StoreState, case: &Case) -> Vec<String> {
    let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
    let mut problems = Vec::new();
    let mut problem = |p: String| problems.push(format!("vxmesh {args:?}: {p}"));

    let out = vxmesh_at(store, &args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    if out.status.success() {
        problem(format!("accepted (exit 0); stdout: {stdout}"));
    }
    if !stderr.starts_with("error: ") {
        problem(format!("stderr does not start with 'error: ': {stderr:?}"));
    }
    for e in &case.expect {
        if !stderr.contains(e.as_str()) {
            problem(format!("stderr does not name {e:?}: {stderr:?}"));
        }
    }
    if !stdout.is_empty() {
        problem(format!("printed on stdout although it failed: {stdout:?}"));
    }
    if store_state(store) != *before {
        problem("changed the store".into());
    }

    // The same with --json: a JSON error on stdout naming the field too. (Parse errors are
    // checked separately, in json_error_for_values_the_parser_refuses.)
    if !case.parse {
        let mut json_args = vec!["--json"];
        json_args.extend_from_slice(&args);
        let out = vxmesh_at(store, &json_args);
        let stdout = text(&out.stdout);
        if out.status.success() {
            problem(format!("accepted with --json; stdout: {stdout}"));
        }
        match serde_json::from_str::<serde_json::Value>(&stdout) {
            Ok(v) => match v.get("error").and_then(|e| e.as_str()) {
                Some(msg) => {
                    for e in &case.expect {
                        if !msg.contains(e.as_str()) {
                            problem(format!("--json error does not name {e:?}: {msg:?}"));
                        }
                    }
                    if v.as_object().map(|o| o.len()) != Some(1) {
                        problem(format!("--json error has other fields: {v}"));
                    }
                }
                None => problem(format!("--json stdout has no \"error\" string: {v}")),
            },
            Err(e) => problem(format!("--json stdout is not JSON ({e}): {stdout:?}")),
        }
        if !text(&out.stderr).starts_with("error: ") {
            problem(format!("--json stderr: {:?}", text(&out.stderr)));
        }
        if store_state(store) != *before {
            problem("changed the store (with --json)".into());
        }
    }
    problems
}

/// A store in a temporary directory, with two networks, a node and an endpoint.
struct Baseline {
    _dir: tempfile::TempDir,
    store: PathBuf,
}

impl Baseline {
    fn new() -> Baseline {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("store.db");
        for args in [
            &["network", "create", "a", "--subnet", "10.1.0.0/24"][..],
            &[
                "network",
                "create",
                "b",
                "--subnet",
                "10.5.0.0/24",
                "--vni",
                "5000",
                "--mtu",
                "1400",
            ],
            &["node", "add", "h1", "--underlay", "192.0.2.1"],
            &["node", "add", "h2", "--underlay", "192.0.2.2"],
            &[
                "endpoint",
                "add",
                "--network",
                "a",
                "--node",
                "h1",
                "--name",
                "e1",
            ],
        ] {
            vxmesh_ok_at(&store, args);
        }
        // What h1's agent publishes about its host: its underlay's prefix and another
        // interface's (written through the catalog, as the agent writes it).
        let catalog = Catalog::new(Arc::new(SqliteStore::open(&store).expect("open the store")));
        let address = |interface: &str, address: &str| HostAddress {
            interface: interface.into(),
            address: address.parse().unwrap(),
        };
        let report = HostReport {
            underlay_mtu: 1500,
            addresses: vec![
                address("docker0", "172.17.0.1/16"),
                address("eth0", "192.0.2.1/24"),
            ],
            ..Default::default()
        };
        assert!(catalog.publish_host_report("h1", &report).unwrap());
        drop(catalog);
        let b = Baseline { _dir: dir, store };
        // The baseline is what the cases below assume.
        let state = store_state(&b.store);
        assert!(
            state.networks.contains("\"vni\": 4096"),
            "{}",
            state.networks
        );
        assert!(
            state.endpoints.contains("\"ip\": \"10.1.0.2\""),
            "{}",
            state.endpoints
        );
        assert!(
            state.endpoints.contains("\"mac\": \"0a:58:0a:01:00:02\""),
            "{}",
            state.endpoints
        );
        b
    }
}

fn create(name: &str, subnet: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["network", "create", "--subnet", subnet]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    // After "--" so that names starting with '-' reach vxmesh's own validation.
    v.push("--".into());
    v.push(name.into());
    v
}

fn c(args: Vec<String>, expect: &[&str]) -> Case {
    Case {
        args,
        expect: expect.iter().map(|s| s.to_string()).collect(),
        parse: false,
    }
}

fn store_cases() -> Vec<Case> {
    let not_cidr = "is not an IPv4 CIDR";
    let prefix = "prefix must be between /8 and /29";
    let unicast = "must be a unicast range";
    let vni_range = "must be between 4096 and 16777215";
    let long13 = "abcdefghijklm";
    let long65 = "n".repeat(65);
    let only = "only letters, digits, '-', '_' and '.' are allowed";
    let start = "must start with a letter or digit";
    let mtu_range = "must be between 1280 and 9000";
    let unicast_underlay = "must be a unicast address reachable from the other hosts";
    let unicast_mac = "must be a unicast, non-zero address";
    let ep = |extra: &[&str]| {
        let mut v = vec!["endpoint", "add", "--network", "a", "--node", "h1"];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let node_add = |name: &str, underlay: &str| -> Vec<String> {
        ["node", "add", "--underlay", underlay, "--", name]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };

    vec![
        // --subnet: not a CIDR.
        c(
            create("n", "10.10.300.0/24", &[]),
            &["invalid subnet '10.10.300.0/24'", not_cidr],
        ),
        c(
            create("n", "bogus", &[]),
            &["invalid subnet 'bogus'", not_cidr],
        ),
        c(
            create("n", "10.2.0.0", &[]),
            &["invalid subnet '10.2.0.0'", not_cidr],
        ),
        c(create("n", "", &[]), &["invalid subnet ''", not_cidr]),
        c(create("n", "/33", &[]), &["invalid subnet '/33'", not_cidr]),
        c(
            create("n", "10.2.0.0/33", &[]),
            &["invalid subnet '10.2.0.0/33'", not_cidr],
        ),
        c(
            create("n", "10.2.0.0/-1", &[]),
            &["invalid subnet '10.2.0.0/-1'", not_cidr],
        ),
        // --subnet: host bits, prefix length, not unicast.
        c(
            create("n", "10.2.0.5/24", &[]),
            &["invalid subnet '10.2.0.5/24'", "host bits", "10.2.0.0/24"],
        ),
        c(
            create("n", "10.0.0.0/7", &[]),
            &["invalid subnet '10.0.0.0/7'", prefix],
        ),
        c(
            create("n", "10.2.0.0/30", &[]),
            &["invalid subnet '10.2.0.0/30'", prefix],
        ),
        c(
            create("n", "10.2.0.0/32", &[]),
            &["invalid subnet '10.2.0.0/32'", prefix],
        ),
        c(
            create("n", "127.0.0.0/8", &[]),
            &["invalid subnet '127.0.0.0/8'", unicast],
        ),
        c(
            create("n", "224.1.0.0/24", &[]),
            &["invalid subnet '224.1.0.0/24'", unicast],
        ),
        c(
            create("n", "169.254.0.0/16", &[]),
            &["invalid subnet '169.254.0.0/16'", unicast],
        ),
        c(
            create("n", "240.0.0.0/8", &[]),
            &["invalid subnet '240.0.0.0/8'", unicast],
        ),
        // --subnet: overlapping another network, wider, narrower or the same.
        c(
            create("n", "10.1.0.0/16", &[]),
            &[
                "invalid subnet '10.1.0.0/16'",
                "overlaps network a (10.1.0.0/24)",
            ],
        ),
        c(
            create("n", "10.1.0.128/25", &[]),
            &[
                "invalid subnet '10.1.0.128/25'",
                "overlaps network a (10.1.0.0/24)",
            ],
        ),
        c(
            create("n", "10.1.0.0/24", &[]),
            &["invalid subnet '10.1.0.0/24'", "overlaps network a"],
        ),
        c(
            create("n", "10.5.0.248/29", &[]),
            &[
                "invalid subnet '10.5.0.248/29'",
                "overlaps network b (10.5.0.0/24)",
            ],
        ),
        c(
            create("n", "10.0.0.0/8", &[]),
            &["invalid subnet '10.0.0.0/8'", "overlaps network"],
        ),
        // --subnet: overlapping what the hosts use for themselves (issue 7, fault 2): a node's
        // underlay address, the prefix of an address on a host's interface (as its agent
        // published it: the underlay's and another one's), the WireGuard tunnel range.
        c(
            create("n", "192.0.2.0/29", &[]),
            &[
                "invalid subnet '192.0.2.0/29'",
                "overlaps node h1's underlay address 192.0.2.1",
            ],
        ),
        c(
            create("n", "192.0.0.0/16", &[]),
            &[
                "invalid subnet '192.0.0.0/16'",
                "overlaps node h1's underlay address 192.0.2.1",
            ],
        ),
        c(
            create("n", "192.0.2.128/25", &[]),
            &[
                "invalid subnet '192.0.2.128/25'",
                "overlaps 192.0.2.0/24, the prefix of node h1's address 192.0.2.1/24 on eth0",
            ],
        ),
        c(
            create("n", "172.17.3.0/24", &[]),
            &[
                "invalid subnet '172.17.3.0/24'",
                "overlaps 172.17.0.0/16, the prefix of node h1's address 172.17.0.1/16 on docker0",
            ],
        ),
        c(
            create("n", "100.88.0.0/16", &[]),
            &[
                "invalid subnet '100.88.0.0/16'",
                "overlaps the WireGuard tunnel range 100.88.0.0/16",
            ],
        ),
        c(
            create("n", "100.88.200.0/24", &[]),
            &[
                "invalid subnet '100.88.200.0/24'",
                "overlaps the WireGuard tunnel range 100.88.0.0/16",
            ],
        ),
        c(
            create("n", "100.64.0.0/10", &[]),
            &[
                "invalid subnet '100.64.0.0/10'",
                "overlaps the WireGuard tunnel range 100.88.0.0/16",
            ],
        ),
        // --vni: out of range, not a number, taken.
        c(
            create("n", "10.2.0.0/24", &["--vni", "0"]),
            &["invalid vni '0'", vni_range],
        ),
        c(
            create("n", "10.2.0.0/24", &["--vni", "4095"]),
            &["invalid vni '4095'", vni_range],
        ),
        c(
            create("n", "10.2.0.0/24", &["--vni", "16777216"]),
            &["invalid vni '16777216'", vni_range],
        ),
        c(
            create("n", "10.2.0.0/24", &["--vni", "4096"]),
            &["invalid vni '4096'", "is taken by network a"],
        ),
        c(
            create("n", "10.2.0.0/24", &["--vni", "5000"]),
            &["invalid vni '5000'", "is taken by network b"],
        ),
        parse_case(
            &[
                "network",
                "create",
                "n",
                "--subnet",
                "10.2.0.0/24",
                "--vni",
                "abc",
            ],
            &["invalid value 'abc' for '--vni <VNI>'"],
        ),
        parse_case(
            &[
                "network",
                "create",
                "n",
                "--subnet",
                "10.2.0.0/24",
                "--vni=-1",
            ],
            &["invalid value '-1' for '--vni <VNI>'"],
        ),
        parse_case(
            &[
                "network",
                "create",
                "n",
                "--subnet",
                "10.2.0.0/24",
                "--vni",
                "99999999999",
            ],
            &["invalid value '99999999999' for '--vni <VNI>'"],
        ),
        // Network name: too long, bad characters, empty, bad first character, taken.
        c(
            create(long13, "10.2.0.0/24", &[]),
            &[
                "invalid network name 'abcdefghijklm'",
                "13 characters long; at most 12",
            ],
        ),
        c(
            create("a/b", "10.2.0.0/24", &[]),
            &["invalid network name 'a/b'", "contains '/'", only],
        ),
        c(
            create("a b", "10.2.0.0/24", &[]),
            &["invalid network name 'a b'", "contains ' '", only],
        ),
        c(
            create("a:b", "10.2.0.0/24", &[]),
            &["invalid network name 'a:b'", only],
        ),
        c(
            create("né", "10.2.0.0/24", &[]),
            &["invalid network name 'né'", only],
        ),
        c(
            create("", "10.2.0.0/24", &[]),
            &["invalid network name ''", "must not be empty"],
        ),
        c(
            create("-x", "10.2.0.0/24", &[]),
            &["invalid network name '-x'", start],
        ),
        c(
            create(".x", "10.2.0.0/24", &[]),
            &["invalid network name '.x'", start],
        ),
        c(
            create("a", "10.2.0.0/24", &[]),
            &["network 'a' already exists"],
        ),
        // --mtu
        c(
            create("n", "10.2.0.0/24", &["--mtu", "100"]),
            &["invalid mtu '100'", mtu_range],
        ),
        c(
            create("n", "10.2.0.0/24", &["--mtu", "1279"]),
            &["invalid mtu '1279'", mtu_range],
        ),
        c(
            create("n", "10.2.0.0/24", &["--mtu", "9001"]),
            &["invalid mtu '9001'", mtu_range],
        ),
        c(
            create("n", "10.2.0.0/24", &["--mtu", "0"]),
            &["invalid mtu '0'", mtu_range],
        ),
        parse_case(
            &[
                "network",
                "create",
                "n",
                "--subnet",
                "10.2.0.0/24",
                "--mtu",
                "abc",
            ],
            &["invalid value 'abc' for '--mtu <MTU>'"],
        ),
        // Unknown or invalid network for inspect and rm; rm with endpoints needs --force.
        case(&["network", "inspect", "nope"], &["unknown network 'nope'"]),
        case(
            &["network", "inspect", "a/b"],
            &["invalid network name 'a/b'"],
        ),
        case(
            &["network", "inspect", long13],
            &["invalid network name 'abcdefghijklm'"],
        ),
        case(&["network", "rm", "nope"], &["unknown network 'nope'"]),
        case(
            &["network", "rm", "--force", "nope"],
            &["unknown network 'nope'"],
        ),
        case(&["network", "rm", ""], &["invalid network name ''"]),
        case(
            &["network", "rm", "a"],
            &["network 'a' still has 1 endpoint(s) (e1)", "use --force"],
        ),
        // node add: --underlay not an address, not unicast, taken.
        parse_case(
            &["node", "add", "h3", "--underlay", "999.1.1.1"],
            &["invalid value '999.1.1.1' for '--underlay <UNDERLAY>'"],
        ),
        parse_case(
            &["node", "add", "h3", "--underlay", "192.0.2"],
            &["invalid value '192.0.2' for '--underlay <UNDERLAY>'"],
        ),
        parse_case(
            &["node", "add", "h3", "--underlay", "::1"],
            &["invalid value '::1' for '--underlay <UNDERLAY>'"],
        ),
        parse_case(
            &["node", "add", "h3", "--underlay", ""],
            &["invalid value '' for '--underlay <UNDERLAY>'"],
        ),
        c(
            node_add("h3", "127.0.0.1"),
            &["invalid underlay '127.0.0.1'", unicast_underlay],
        ),
        c(
            node_add("h3", "0.0.0.0"),
            &["invalid underlay '0.0.0.0'", unicast_underlay],
        ),
        c(
            node_add("h3", "224.0.0.1"),
            &["invalid underlay '224.0.0.1'", unicast_underlay],
        ),
        c(
            node_add("h3", "255.255.255.255"),
            &["invalid underlay '255.255.255.255'", unicast_underlay],
        ),
        c(
            node_add("h3", "192.0.2.1"),
            &[
                "invalid underlay '192.0.2.1'",
                "is already node h1's address",
            ],
        ),
        // --underlay inside a network's subnet or the tunnel range (issue 7, fault 2).
        c(
            node_add("h3", "10.1.0.9"),
            &[
                "invalid underlay '10.1.0.9'",
                "is inside network a's subnet 10.1.0.0/24",
            ],
        ),
        c(
            node_add("h3", "10.5.0.254"),
            &[
                "invalid underlay '10.5.0.254'",
                "is inside network b's subnet 10.5.0.0/24",
            ],
        ),
        c(
            node_add("h3", "100.88.0.7"),
            &[
                "invalid underlay '100.88.0.7'",
                "is inside the WireGuard tunnel range 100.88.0.0/16",
            ],
        ),
        // Node name: too long, bad characters, empty, taken.
        c(
            node_add(&long65, "192.0.2.9"),
            &["invalid node name 'nnnn", "65 characters long; at most 64"],
        ),
        c(
            node_add("a/b", "192.0.2.9"),
            &["invalid node name 'a/b'", only],
        ),
        c(
            node_add("a b", "192.0.2.9"),
            &["invalid node name 'a b'", only],
        ),
        c(
            node_add("", "192.0.2.9"),
            &["invalid node name ''", "must not be empty"],
        ),
        c(
            node_add("-x", "192.0.2.9"),
            &["invalid node name '-x'", start],
        ),
        c(node_add("h1", "192.0.2.9"), &["node 'h1' already exists"]),
        // node rm: unknown, invalid, with endpoints.
        case(&["node", "rm", "nope"], &["unknown node 'nope'"]),
        case(&["node", "rm", "--force", "nope"], &["unknown node 'nope'"]),
        case(&["node", "rm", "a b"], &["invalid node name 'a b'"]),
        case(
            &["node", "rm", "h1"],
            &["node 'h1' still has 1 endpoint(s) (e1)", "use --force"],
        ),
        // endpoint add: unknown or invalid network and node.
        case(
            &["endpoint", "add", "--network", "nope", "--node", "h1"],
            &["unknown network 'nope'"],
        ),
        case(
            &["endpoint", "add", "--network", "a", "--node", "nope"],
            &["unknown node 'nope'"],
        ),
        case(
            &["endpoint", "add", "--network", "a/b", "--node", "h1"],
            &["invalid network name 'a/b'"],
        ),
        case(
            &["endpoint", "add", "--network", long13, "--node", "h1"],
            &["invalid network name 'abcdefghijklm'", "at most 12"],
        ),
        case(
            &["endpoint", "add", "--network", "a", "--node", ""],
            &["invalid node name ''"],
        ),
        // endpoint add --ip: outside the subnet, gateway, network, broadcast, taken, unparsable.
        c(
            ep(&["--ip", "10.2.0.5"]),
            &[
                "invalid ip '10.2.0.5'",
                "is not in network a's subnet 10.1.0.0/24",
            ],
        ),
        c(
            ep(&["--ip", "10.5.0.7"]),
            &[
                "invalid ip '10.5.0.7'",
                "is not in network a's subnet 10.1.0.0/24",
            ],
        ),
        c(
            ep(&["--ip", "10.1.0.1"]),
            &["invalid ip '10.1.0.1'", "is the network's gateway"],
        ),
        c(
            ep(&["--ip", "10.1.0.0"]),
            &["invalid ip '10.1.0.0'", "network or broadcast"],
        ),
        c(
            ep(&["--ip", "10.1.0.255"]),
            &["invalid ip '10.1.0.255'", "network or broadcast"],
        ),
        c(
            ep(&["--ip", "10.1.0.2"]),
            &["invalid ip '10.1.0.2'", "already in use (by e1)"],
        ),
        parse_case(
            &[
                "endpoint",
                "add",
                "--network",
                "a",
                "--node",
                "h1",
                "--ip",
                "10.1.0.300",
            ],
            &["invalid value '10.1.0.300' for '--ip <IP>'"],
        ),
        parse_case(
            &[
                "endpoint",
                "add",
                "--network",
                "a",
                "--node",
                "h1",
                "--ip",
                "10.1.0",
            ],
            &["invalid value '10.1.0' for '--ip <IP>'"],
        ),
        // endpoint add --mac: unparsable, multicast, zero, broadcast, taken.
        parse_case(
            &[
                "endpoint",
                "add",
                "--network",
                "a",
                "--node",
                "h1",
                "--mac",
                "zz:00:00:00:00:00",
            ],
            &[
                "invalid value 'zz:00:00:00:00:00' for '--mac <MAC>'",
                "is not a MAC address",
            ],
        ),
        parse_case(
            &[
                "endpoint",
                "add",
                "--network",
                "a",
                "--node",
                "h1",
                "--mac",
                "0a:58:0a:01:00",
            ],
            &[
                "invalid value '0a:58:0a:01:00' for '--mac <MAC>'",
                "is not a MAC address",
            ],
        ),
        parse_case(
            &[
                "endpoint",
                "add",
                "--network",
                "a",
                "--node",
                "h1",
                "--mac",
                "0a:58:0a:01:00:09:01",
            ],
            &["for '--mac <MAC>'", "is not a MAC address"],
        ),
        c(
            ep(&["--mac", "01:00:5e:00:00:01"]),
            &["invalid mac '01:00:5e:00:00:01'", unicast_mac],
        ),
        c(
            ep(&["--mac", "00:00:00:00:00:00"]),
            &["invalid mac '00:00:00:00:00:00'", unicast_mac],
        ),
        c(
            ep(&["--mac", "ff:ff:ff:ff:ff:ff"]),
            &["invalid mac 'ff:ff:ff:ff:ff:ff'", unicast_mac],
        ),
        c(
            ep(&["--mac", "0a:58:0a:01:00:02"]),
            &[
                "invalid mac '0a:58:0a:01:00:02'",
                "is already used by endpoint e1",
            ],
        ),
        c(
            ep(&["--mac", "0a:5e:0a:63:00:01"]),
            &[
                "invalid mac '0a:5e:0a:63:00:01'",
                "is reserved for the nodes' MACs",
            ],
        ),
        // endpoint add --name: too long, bad characters, empty, bad first character, taken.
        c(
            ep(&["--name", &"e".repeat(65)]),
            &[
                "invalid endpoint name 'eeee",
                "65 characters long; at most 64",
            ],
        ),
        c(
            ep(&["--name", "a b"]),
            &["invalid endpoint name 'a b'", only],
        ),
        c(
            ep(&["--name", "a/b"]),
            &["invalid endpoint name 'a/b'", only],
        ),
        c(
            ep(&["--name", ""]),
            &["invalid endpoint name ''", "must not be empty"],
        ),
        c(ep(&["--name=-e"]), &["invalid endpoint name '-e'", start]),
        c(ep(&["--name", "e1"]), &["endpoint 'a/e1' already exists"]),
        // endpoint rm: unknown and invalid names.
        case(
            &["endpoint", "rm", "a", "nope"],
            &["unknown endpoint 'a/nope'"],
        ),
        case(&["endpoint", "rm", "b", "e1"], &["unknown endpoint 'b/e1'"]),
        case(&["endpoint", "rm", "nope", "e1"], &["unknown", "nope"]),
        case(
            &["endpoint", "rm", "a/b", "e1"],
            &["invalid network name 'a/b'"],
        ),
        case(&["endpoint", "rm", "a", ""], &["invalid endpoint name ''"]),
        case(
            &["endpoint", "rm", "a", "x/y"],
            &["invalid endpoint name 'x/y'"],
        ),
    ]
}

#[test]
fn bad_input_is_refused_naming_the_field_and_leaves_the_store_unchanged() {
    let base = Baseline::new();
    let before = store_state(&base.store);
    let cases = store_cases();
    let mut problems = Vec::new();
    for case in &cases {
        problems.extend(check_case(&base.store, &before, case));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in {} cases:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
    // Good input still works on the same store afterwards (the cases were refused for what
    // they asked, not because the store was broken).
    vxmesh_ok_at(
        &base.store,
        &["network", "create", "n", "--subnet", "10.2.0.0/24"],
    );
    vxmesh_ok_at(
        &base.store,
        &["node", "add", "h3", "--underlay", "192.0.2.3"],
    );
    vxmesh_ok_at(
        &base.store,
        &[
            "endpoint",
            "add",
            "--network",
            "n",
            "--node",
            "h3",
            "--ip",
            "10.2.0.5",
        ],
    );
}

/// `endpoint ls --network X` for a network that does not exist (or cannot exist) must say so,
/// not print an empty list as if the network had no endpoints.
#[test]
fn endpoint_ls_of_an_unknown_network_is_an_error() {
    let base = Baseline::new();
    let before = store_state(&base.store);
    let cases = [
        case(
            &["endpoint", "ls", "--network", "nope"],
            &["unknown network 'nope'"],
        ),
        case(
            &["endpoint", "ls", "--network", "a/b"],
            &["invalid network name 'a/b'"],
        ),
        case(
            &["endpoint", "ls", "--network", ""],
            &["invalid network name ''"],
        ),
    ];
    let problems: Vec<String> = cases
        .iter()
        .flat_map(|c| check_case(&base.store, &before, c))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// With --json, errors are JSON on stdout, including the values the argument parser itself
/// refuses (`--json` is documented as "Print machine-readable JSON instead of tables (errors
/// too)"), so that a program driving the CLI can always parse what it gets.
#[test]
fn json_error_for_values_the_parser_refuses() {
    let base = Baseline::new();
    let before = store_state(&base.store);
    let mut problems = Vec::new();
    for case in store_cases().into_iter().filter(|c| c.parse) {
        let mut args = vec!["--json"];
        args.extend(case.args.iter().map(String::as_str));
        let out = vxmesh_at(&base.store, &args);
        let stdout = text(&out.stdout);
        if out.status.success() {
            problems.push(format!("{args:?}: accepted"));
        }
        let msg = serde_json::from_str::<serde_json::Value>(&stdout)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_string));
        match msg {
            Some(msg) => {
                for e in &case.expect {
                    if !msg.contains(e.as_str()) {
                        problems.push(format!("{args:?}: JSON error does not name {e:?}: {msg}"));
                    }
                }
            }
            None => problems.push(format!(
                "{args:?}: no {{\"error\": ...}} JSON on stdout: {stdout:?} (stderr {:?})",
                text(&out.stderr)
            )),
        }
    }
    assert_eq!(store_state(&base.store), before, "the store changed");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Runs a command that must fail quickly; kills it (and fails) if it is still running after a
/// generous timeout.
fn run_must_exit(program: &Path, args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vxmesh");
    let start = Instant::now();
    let exited = wait_until(timeout, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
        let out = child.wait_with_output().expect("reap vxmesh");
        panic!(
            "vxmesh {args:?} still running after {:?}; stderr: {}",
            start.elapsed(),
            text(&out.stderr)
        );
    }
    child.wait_with_output().expect("collect output")
}

#[test]
fn agent_for_an_unknown_node_fails_fast_naming_it() {
    let base = Baseline::new();
    let before = store_state(&base.store);
    let bin = vxmesh_bin();
    let store = base.store.to_str().unwrap();
    for (args, expect) in [
        (
            vec!["--store", store, "agent", "--node", "nope"],
            vec!["unknown node 'nope'"],
        ),
        (
            vec!["--store", store, "--json", "agent", "--node", "nope"],
            vec!["unknown node 'nope'"],
        ),
        (
            vec!["--store", store, "agent", "--node", "a/b"],
            vec!["invalid node name 'a/b'"],
        ),
        (
            vec!["--store", store, "agent", "--node", "h1", "--resync", "0"],
            vec!["invalid resync '0'"],
        ),
        (
            vec!["--store", store, "agent", "--node", "h1", "--netns", "a/b"],
            vec!["invalid netns 'a/b'"],
        ),
        (
            vec![
                "--store", store, "agent", "--node", "h1", "--cgroup", "/tmp",
            ],
            vec!["invalid cgroup '/tmp'"],
        ),
        (
            vec![
                "--store", store, "agent", "--node", "h1", "--cgroup", "vxmesh-x",
            ],
            vec!["invalid cgroup 'vxmesh-x'"],
        ),
        (
            vec![
                "--store",
                store,
                "agent",
                "--node",
                "h1",
                "--bpf-pin-root",
                "pins",
            ],
            vec!["invalid bpf-pin-root 'pins'"],
        ),
        (
            vec![
                "--store",
                store,
                "agent",
                "--node",
                "h1",
                "--wg-datapath",
                "fast",
            ],
            vec!["invalid WireGuard datapath 'fast'", "batched or legacy"],
        ),
        (
            vec![
                "--store",
                store,
                "agent",
                "--node",
                "h1",
                "--datapath",
                "xdp",
            ],
            vec!["invalid datapath 'xdp'", "'bridge' or 'ebpf'"],
        ),
    ] {
        let out = run_must_exit(&bin, &args, Duration::from_secs(30));
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} exited 0: {stderr}");
        for e in &expect {
            assert!(
                stderr.contains(e),
                "{args:?}: stderr does not name {e:?}: {stderr}"
            );
        }
        if args.contains(&"--json") {
            let v: serde_json::Value =
                serde_json::from_str(&text(&out.stdout)).expect("--json error on stdout");
            assert!(
                v["error"].as_str().unwrap_or_default().contains(expect[0]),
                "{v}"
            );
        }
        assert_eq!(
            store_state(&base.store),
            before,
            "{args:?} changed the store"
        );
    }
}

/// `lab up` with bad parameters is refused before anything is built: no namespace, no state.
#[test]
fn lab_up_with_bad_parameters_builds_nothing() {
    let bin = vxmesh_bin();
    let prefix = unique("vb");
    for (args, expect) in [
        (vec!["--prefix", "a/b"], "invalid prefix 'a/b'"),
        (vec!["--prefix", ""], "invalid prefix ''"),
        (
            vec!["--prefix", &prefix, "--hosts", "0"],
            "invalid hosts '0'",
        ),
        (
            vec!["--prefix", &prefix, "--hosts", "51"],
            "invalid hosts '51'",
        ),
        (
            vec!["--prefix", &prefix, "--networks", "0"],
            "invalid networks '0'",
        ),
        (
            vec!["--prefix", &prefix, "--containers-per-host", "51"],
            "invalid containers-per-host '51'",
        ),
        (
            vec!["--prefix", &prefix, "--mtu", "100"],
            "invalid mtu '100'",
        ),
        (
            vec!["--prefix", &prefix, "--hosts", "x"],
            "invalid value 'x' for '--hosts <HOSTS>'",
        ),
        (
            vec!["--prefix", &prefix, "--datapath", "xdp"],
            "invalid datapath 'xdp'",
        ),
    ] {
        let mut all = vec!["lab", "up"];
        all.extend_from_slice(&args);
        let out = run_must_exit(&bin, &all, Duration::from_secs(60));
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{all:?} accepted");
        assert!(stderr.contains(expect), "{all:?}: {stderr}");
    }
    let netns_after = run_ok("ip", &["netns", "list"]);
    assert!(
        !netns_after.contains(&prefix),
        "namespaces left behind: {netns_after}"
    );
    let status = run(
        bin.to_str().unwrap(),
        &["lab", "status", "--prefix", &prefix],
    );
    assert!(!status.status.success(), "a lab {prefix} exists");
    assert!(
        text(&status.stderr).contains(&format!("lab '{prefix}' is not up")),
        "{}",
        text(&status.stderr)
    );
}

/// The kernel state of every member of a lab.
fn lab_kernel(lab: &Lab) -> Vec<(String, String)> {
    let mut members: Vec<String> = lab.state.hosts.iter().map(|h| h.name.clone()).collect();
    members.extend(lab.state.containers.iter().map(|c| c.name.clone()));
    members
        .into_iter()
        .map(|m| {
            let ns = lab.namespace(&m);
            (m, witness::kernel_state(&ns))
        })
        .collect()
}

fn first_difference(a: &[(String, String)], b: &[(String, String)]) -> String {
    for ((m, x), (_, y)) in a.iter().zip(b) {
        for (lx, ly) in x.lines().zip(y.lines()) {
            if lx != ly {
                return format!("{m}: before {lx:?}, after {ly:?}");
            }
        }
        if x != y {
            return format!("{m}: before\n{x}\nafter\n{y}");
        }
    }
    "member lists differ".into()
}

#[test]
fn bad_input_against_a_running_lab_changes_neither_store_nor_kernel() {
    let lab = Lab::up(2, 1, 1);
    let store = lab.state.store.clone();
    let net = lab.state.networks[0].clone();
    let h1 = lab.host("h1").clone();
    let c1 = lab.container("h1-c1").clone();
    let c2 = lab.container("h2-c1").clone();

    // Let the agents settle: two readings a resync apart agree (the kernel, and the store the
    // agents publish their host reports to).
    let mut kernel = lab_kernel(&lab);
    let mut published = store_state(&store);
    let settled = wait_until(Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_millis(2500));
        let now = (lab_kernel(&lab), store_state(&store));
        let same = now.0 == kernel && now.1 == published;
        (kernel, published) = now;
        same
    });
    assert!(settled, "the lab's kernel state never settled");
    let before = store_state(&store);

    let gateway = net.gateway.to_string();
    let taken = c2.address.to_string();
    let underlay = h1.address.to_string();
    let n = net.name.as_str();
    // An address inside the lab network's /24 that no endpoint has.
    let [a, b, c, _] = net.gateway.octets();
    let inside = std::net::Ipv4Addr::new(a, b, c, 200).to_string();
    let cases = vec![
        case(
            &["network", "create", "x", "--subnet", &net.subnet],
            &["invalid subnet", "overlaps network"],
        ),
        case(
            &[
                "network",
                "create",
                "x",
                "--subnet",
                "10.123.0.0/24",
                "--vni",
                &net.vni.to_string(),
            ],
            &["invalid vni", "is taken by network"],
        ),
        case(
            &[
                "network",
                "create",
                "x",
                "--subnet",
                "10.123.0.0/24",
                "--vni",
                "4095",
            ],
            &["invalid vni '4095'"],
        ),
        case(
            &[
                "network",
                "create",
                "abcdefghijklm",
                "--subnet",
                "10.123.0.0/24",
            ],
            &["invalid network name 'abcdefghijklm'"],
        ),
        case(
            &[
                "network",
                "create",
                "x",
                "--subnet",
                "10.123.0.0/24",
                "--mtu",
                "9001",
            ],
            &["invalid mtu '9001'"],
        ),
        case(
            &["network", "create", n, "--subnet", "10.123.0.0/24"],
            &["already exists"],
        ),
        case(&["network", "rm", n], &["use --force"]),
        case(&["network", "rm", "nope"], &["unknown network 'nope'"]),
        case(
            &["node", "rm", "h1"],
            &["node 'h1' still has", "use --force"],
        ),
        case(&["node", "rm", "nope"], &["unknown node 'nope'"]),
        case(
            &["node", "add", "h9", "--underlay", &underlay],
            &["invalid underlay", "is already node h1's address"],
        ),
        case(
            &["node", "add", "h9", "--underlay", "127.0.0.1"],
            &["invalid underlay"],
        ),
        // Addresses the hosts use for themselves (issue 7, fault 2): an underlay address, the
        // underlay's prefix as the agents published it, the tunnel range; and the other way
        // round, an underlay inside a network.
        case(
            &["network", "create", "x", "--subnet", "10.99.0.0/25"],
            &[
                "invalid subnet '10.99.0.0/25'",
                &format!("overlaps node h1's underlay address {underlay}"),
            ],
        ),
        case(
            &["network", "create", "x", "--subnet", "10.99.0.128/25"],
            &[
                "invalid subnet '10.99.0.128/25'",
                &format!(
                    "overlaps 10.99.0.0/24, the prefix of node h1's address {underlay}/24 on eth0"
                ),
            ],
        ),
        case(
            &["network", "create", "x", "--subnet", "100.88.0.0/24"],
            &[
                "invalid subnet '100.88.0.0/24'",
                "the WireGuard tunnel range",
            ],
        ),
        case(
            &["node", "add", "h9", "--underlay", &inside],
            &[
                &format!("invalid underlay '{inside}'"),
                &format!("is inside network {n}'s subnet {}", net.subnet),
            ],
        ),
        case(
            &["node", "add", "h1", "--underlay", "10.123.0.1"],
            &["node 'h1' already exists"],
        ),
        case(
            &[
                "endpoint",
                "add",
                "--network",
                n,
                "--node",
                "h1",
                "--ip",
                &gateway,
            ],
            &["invalid ip", "is the network's gateway"],
        ),
        case(
            &[
                "endpoint",
                "add",
                "--network",
                n,
                "--node",
                "h1",
                "--ip",
                &taken,
            ],
            &["invalid ip", "already in use"],
        ),
        case(
            &[
                "endpoint",
                "add",
                "--network",
                n,
                "--node",
                "h1",
                "--mac",
                &c1.mac,
            ],
            &["invalid mac", "is already used by endpoint"],
        ),
        case(
            &["endpoint", "add", "--network", n, "--node", "nope"],
            &["unknown node 'nope'"],
        ),
        case(
            &["endpoint", "add", "--network", "nope", "--node", "h1"],
            &["unknown network 'nope'"],
        ),
        case(
            &[
                "endpoint",
                "add",
                "--network",
                n,
                "--node",
                "h2",
                "--name",
                &c2.name,
            ],
            &["already exists"],
        ),
        case(&["endpoint", "rm", n, "nope"], &["unknown endpoint"]),
    ];
    let mut problems = Vec::new();
    for c in &cases {
        problems.extend(check_case(&store, &before, c));
    }

    // An agent for an unknown node, in a host's namespace, must stop before touching anything
    // (were it to run, it would remove everything vxmesh made there).
    let bin = vxmesh_bin();
    let ns = lab.namespace("h1");
    let out = run_must_exit(
        &bin,
        &[
            "--store",
            store.to_str().unwrap(),
            "agent",
            "--node",
            "nope",
            "--netns",
            &ns,
        ],
        Duration::from_secs(30),
    );
    if out.status.success() || !text(&out.stderr).contains("unknown node 'nope'") {
        problems.push(format!(
            "agent --node nope --netns {ns}: exit {}, stderr {:?}",
            out.status,
            text(&out.stderr)
        ));
    }
    // `lab up` on a prefix that is up is refused and leaves the lab alone.
    let out = run(
        bin.to_str().unwrap(),
        &["lab", "up", "--prefix", lab.prefix(), "--hosts", "1"],
    );
    if out.status.success() {
        problems.push(format!(
            "lab up on a lab that is up: accepted: {}",
            text(&out.stdout)
        ));
    }

    // Give the agents time for more than one resync pass, then compare.
    std::thread::sleep(Duration::from_secs(5));
    let after = lab_kernel(&lab);
    assert_eq!(store_state(&store), before, "the store changed");
    assert!(
        after == kernel,
        "the kernel changed: {}",
        first_difference(&kernel, &after)
    );
    // The agents are still alive (they reconciled through all of it).
    let status = lab.status();
    for h in &status.hosts {
        assert!(h.agent_running, "agent of {} stopped", h.name);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
