//! Issue 11, DNS (acceptance 1 and 2): every agent answers DNS for its node's containers on each
//! network's gateway. Witnessed from inside lab containers by glibc (`getent hosts`, through the
//! container's resolv.conf as `ip netns exec` and `vxmesh lab exec` bind it) and by dig (flags,
//! response codes, TTLs, TCP, truncation).
//!
//! Bounds of the issue (1 s after a store change; health interval + 1 s after a failed check)
//! are waited for with [`LOAD_ALLOWANCE`] on top, for the shared 2-core machine; the times
//! measured are printed (`--nocapture`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ingress_lb::service::{BackendSpec, HealthCheck, HealthSpec, PortSpec, Proto, ServiceSpec};
use rand::Rng;
use serde_json::json;
use vxmesh_tests::cni::{exec as cni_exec, netconf, CniEnv};
use vxmesh_tests::services::{self, lab_exec_output, Nginx};
use vxmesh_tests::{unique, wait_until, Lab, TestNetns};

/// What the shared machine may add to a bound of the issue (the witnesses' own process starts
/// included).
const LOAD_ALLOWANCE: Duration = Duration::from_secs(2);
/// The bound for answers to follow the store.
const FOLLOW: Duration = Duration::from_secs(1);

/// One lab at a time: four labs built at once on two shared cores starved the agents (a
/// datapath load held an agent's runtime for 14 s, past its heartbeat lease).
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_lab() -> std::sync::MutexGuard<'static, ()> {
    ONE_LAB.lock().unwrap_or_else(|p| p.into_inner())
}

/// Addresses `getent hosts NAME` prints in `member` (glibc through the container's
/// resolv.conf), sorted; `None` when the name is not found. Through `ip netns exec`, or through
/// `vxmesh lab exec` when `lab_exec`.
fn getent(lab: &Lab, member: &str, name: &str, lab_exec: bool) -> Option<Vec<Ipv4Addr>> {
    let out = if lab_exec {
        lab_exec_output(lab, member, false, &["getent", "hosts", name])
    } else {
        lab.exec(member, &["getent", "hosts", name])
    };
    if !out.status.success() {
        return None;
    }
    let mut addrs: Vec<Ipv4Addr> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    addrs.sort();
    Some(addrs)
}

/// What dig saw.
#[derive(Debug)]
struct Dig {
    /// `NOERROR`, `NXDOMAIN`, …; empty when no answer came.
    status: String,
    flags: Vec<String>,
    /// (TTL, address) of each A record of the answer section.
    answers: Vec<(u32, Ipv4Addr)>,
    text: String,
}

impl Dig {
    fn addrs(&self) -> Vec<Ipv4Addr> {
        let mut a: Vec<Ipv4Addr> = self.answers.iter().map(|x| x.1).collect();
        a.sort();
        a
    }
}

/// `dig ARGS` in `member` (the nameserver from the container's resolv.conf), one try of at most
/// 3 s.
fn dig(lab: &Lab, member: &str, args: &[&str]) -> Dig {
    let mut all = vec!["dig", "+tries=1", "+time=3"];
    all.extend_from_slice(args);
    let out = lab.exec(member, &all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut d = Dig {
        status: String::new(),
        flags: vec![],
        answers: vec![],
        text: text.clone(),
    };
    for line in text.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            d.status = rest.split(',').next().unwrap_or("").to_string();
        } else if let Some(rest) = line.strip_prefix(";; flags: ") {
            let flags = rest.split(';').next().unwrap_or("");
            d.flags = flags.split_whitespace().map(str::to_string).collect();
        } else if !line.starts_with(';') {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() == 5 && f[2] == "IN" && f[3] == "A" {
                if let (Ok(ttl), Ok(ip)) = (f[1].parse(), f[4].parse()) {
                    d.answers.push((ttl, ip));
                }
            }
        }
    }
    d
}

fn sorted(mut v: Vec<Ipv4Addr>) -> Vec<Ipv4Addr> {
    v.sort();
    v
}

/// Waits up to `bound` + [`LOAD_ALLOWANCE`] for `f`; returns how long it took (panics with
/// `what` when it never held).
fn within(bound: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    assert!(
        wait_until(bound + LOAD_ALLOWANCE, &mut f),
        "{what}: not within {bound:?} (+ allowance)"
    );
    let took = t0.elapsed();
    eprintln!(
        "{what}: {:.0} ms (bound {} ms)",
        took.as_secs_f64() * 1e3,
        bound.as_millis()
    );
    took
}

fn service_spec(name: &str, network: &str, backends: &[&str], health: HealthSpec) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        network: network.into(),
        ports: vec![PortSpec {
            port: 80,
            target_port: Some(8080),
            proto: Proto::Tcp,
        }],
        backends: backends.iter().map(|b| BackendSpec::new(*b)).collect(),
        health,
        ..ServiceSpec::default()
    }
}

/// Acceptance 1: from a container on each host, `NAME`, `NAME.NETWORK` and `tasks.NAME` give
/// the VIP and the healthy backends; a container on another network gets NXDOMAIN; a backend
/// whose check fails leaves `tasks.NAME`; a new service resolves and a removed one is NXDOMAIN,
/// each within the bounds; other names go upstream and get an answer, never a hang.
#[test]
fn names_resolve_per_network_on_every_host_and_follow_the_store() {
    let _one = one_lab();
    let lab = Lab::up(2, 2, 2);
    // h1-c1, h2-c1 on net1 (the backends); h1-c2, h2-c2 on net2.
    let clients = ["h1-c1", "h2-c1"];
    let others = ["h1-c2", "h2-c2"];
    let mut servers: Vec<Nginx> = clients
        .iter()
        .map(|c| Nginx::start(&lab, c, 8080))
        .collect();
    let catalog = services::catalog(&lab);
    let health = HealthSpec {
        check: HealthCheck::Tcp,
        interval_ms: 1000,
        timeout_ms: 500,
        rise: 1,
        fall: 1,
    };
    let web = catalog
        .create(&service_spec("web", "net1", &clients, health.clone()))
        .expect("create web");
    let vip = web.vip;
    let backends = sorted(clients.iter().map(|c| lab.container(c).address).collect());
    assert!(
        wait_until(Duration::from_secs(60), || {
            getent(&lab, "h1-c1", "tasks.web", false).as_ref() == Some(&backends)
        }),
        "tasks.web never gave both backends; agent log h1:\n{}",
        lab.agent_log("h1")
    );

    for c in clients {
        let via_lab_exec = c == "h1-c1";
        for name in ["web", "web.net1", "WEB.Net1"] {
            assert_eq!(
                getent(&lab, c, name, via_lab_exec),
                Some(vec![vip]),
                "{c}: {name}"
            );
        }
        for name in ["tasks.web", "tasks.web.net1"] {
            assert_eq!(
                getent(&lab, c, name, via_lab_exec),
                Some(backends.clone()),
                "{c}: {name}"
            );
        }
        // dig: authoritative, TTL 0, over UDP and TCP.
        let d = dig(&lab, c, &["web"]);
        assert_eq!(d.status, "NOERROR", "{}", d.text);
        assert!(d.flags.contains(&"aa".to_string()), "{}", d.text);
        assert_eq!(d.answers, vec![(0, vip)], "{}", d.text);
        let d = dig(&lab, c, &["+tcp", "tasks.web.net1"]);
        assert_eq!(
            (d.status.as_str(), d.addrs()),
            ("NOERROR", backends.clone()),
            "{}",
            d.text
        );
        // A name that exists, another type: no data, not NXDOMAIN.
        let d = dig(&lab, c, &["web", "AAAA"]);
        assert_eq!(
            (d.status.as_str(), d.answers.len()),
            ("NOERROR", 0),
            "{}",
            d.text
        );
    }
    for c in others {
        for name in ["web", "web.net1", "tasks.web", "tasks.web.net1"] {
            let d = dig(&lab, c, &[name]);
            assert_eq!(d.status, "NXDOMAIN", "{c}: {name}: {}", d.text);
            assert_eq!(getent(&lab, c, name, false), None, "{c}: {name}");
        }
    }

    // A backend whose check fails leaves tasks.web on every host.
    servers[1].stop();
    let only_h1 = vec![lab.container("h1-c1").address];
    let interval = Duration::from_millis(u64::from(health.interval_ms));
    within(
        interval + FOLLOW,
        "tasks.web without the failed backend",
        || {
            getent(&lab, "h1-c1", "tasks.web", false).as_ref() == Some(&only_h1)
                && dig(&lab, "h2-c1", &["tasks.web"]).addrs() == only_h1
        },
    );
    assert_eq!(getent(&lab, "h2-c1", "web", false), Some(vec![vip]));
    servers[1].restart();
    assert!(wait_until(Duration::from_secs(15), || {
        getent(&lab, "h2-c1", "tasks.web", false).as_ref() == Some(&backends)
    }));

    // A new service resolves, on its own network only.
    let api = catalog
        .create(&service_spec(
            "api",
            "net2",
            &["h1-c2"],
            HealthSpec::default(),
        ))
        .expect("create api");
    within(FOLLOW, "a new service resolves", || {
        others
            .iter()
            .all(|c| getent(&lab, c, "api.net2", false) == Some(vec![api.vip]))
    });
    assert_eq!(dig(&lab, "h1-c1", &["api"]).status, "NXDOMAIN");

    // service rm: NXDOMAIN on every host.
    catalog.remove("web").expect("remove web");
    within(FOLLOW, "a removed service is NXDOMAIN", || {
        clients.iter().all(|c| {
            ["web", "tasks.web"]
                .iter()
                .all(|n| dig(&lab, c, &[n]).status == "NXDOMAIN")
        })
    });

    // Not a vxmesh name: forwarded to the lab host's resolv.conf nameservers (the machine's),
    // which a lab host cannot reach: SERVFAIL at once (REFUSED if none is configured), never a
    // timeout. The lab hosts have no route out, so nothing leaves the lab.
    let host_has_nameservers = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().next() == Some("nameserver"));
    let d = dig(&lab, "h1-c1", &["example.com"]);
    let want = if host_has_nameservers {
        "SERVFAIL"
    } else {
        "REFUSED"
    };
    assert_eq!(d.status, want, "{}", d.text);
    assert!(!d.flags.contains(&"aa".to_string()), "{}", d.text);
}

/// A valid query for `name` (type A, class IN, RD), as the fuzzing starts from it.
fn query_bytes(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Random datagrams, and mutations of a valid query: flipped bytes, cut short, absurd section
/// counts, a name that points at itself.
fn fuzz_datagram(rng: &mut impl Rng, valid: &[u8]) -> Vec<u8> {
    match rng.random_range(0..5) {
        0 => {
            let mut b = vec![0u8; rng.random_range(0..700)];
            rng.fill_bytes(&mut b);
            b
        }
        1 => {
            let mut b = valid.to_vec();
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            b
        }
        2 => valid[..rng.random_range(0..valid.len())].to_vec(),
        3 => {
            let mut b = valid.to_vec();
            b[4..12].fill(0xff);
            b
        }
        _ => {
            // QNAME = a compression pointer to itself (offset 12).
            let mut b = valid[..12].to_vec();
            b.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
            b
        }
    }
}

/// What a fuzzing round saw.
struct Fuzzed {
    /// Answers that came back to the datagrams (FORMERR and the like): they reached the server.
    replies: usize,
    /// TCP connections the server accepted.
    accepted: usize,
    /// Silent connections left open, for the caller to check answers while they are held.
    held: Vec<TcpStream>,
}

/// Sends fuzzed queries to `gateway`:53 from inside `netns`: `datagrams` over UDP, and
/// `connections` TCP connections carrying garbage (random bytes, lengths longer than what
/// follows, a valid length with a fuzzed message); `idle` more connections are opened and left
/// silent.
fn fuzz(
    netns: &str,
    gateway: Ipv4Addr,
    datagrams: usize,
    connections: usize,
    idle: usize,
) -> Fuzzed {
    let path = overlay_core::netns::path(netns);
    overlay_core::netns::run_in(&path, move || {
        let mut rng = rand::rng();
        let server = SocketAddr::from((gateway, 53));
        let valid = query_bytes(7, "web");
        let udp = UdpSocket::bind("0.0.0.0:0").expect("UDP socket");
        udp.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let mut replies = 0;
        let mut buf = [0u8; 4096];
        for i in 0..datagrams {
            let _ = udp.send_to(&fuzz_datagram(&mut rng, &valid), server);
            // Now and then, collect what came back (the socket buffer holds only so much).
            if i % 50 == 49 {
                udp.set_nonblocking(true).expect("nonblocking");
                while udp.recv(&mut buf).is_ok() {
                    replies += 1;
                }
                udp.set_nonblocking(false).expect("blocking");
            }
        }
        while udp.recv(&mut buf).is_ok() {
            replies += 1;
        }
        let mut accepted = 0;
        for _ in 0..connections {
            let Ok(mut s) = TcpStream::connect_timeout(&server, Duration::from_secs(2)) else {
                continue;
            };
            accepted += 1;
            let body = fuzz_datagram(&mut rng, &valid);
            let len: u16 = match rng.random_range(0..3) {
                0 => rng.random(),
                1 => body.len() as u16 + rng.random_range(1..100),
                _ => body.len() as u16,
            };
            let _ = s.write_all(&len.to_be_bytes());
            let _ = s.write_all(&body);
        }
        let held = (0..idle)
            .filter_map(|_| TcpStream::connect_timeout(&server, Duration::from_secs(2)).ok())
            .collect();
        Fuzzed {
            replies,
            accepted,
            held,
        }
    })
    .expect("enter the container's namespace")
}

/// Acceptance 1, the rest: an answer too big for UDP is truncated and comes whole over TCP;
/// fuzzed queries over UDP and TCP never crash the agent or stop it answering. The CNI result
/// names the gateway as nameserver, and a container given that resolv.conf resolves.
#[test]
fn big_answers_truncate_then_tcp_and_fuzz_never_stops_the_agent() {
    let _one = one_lab();
    let lab = Lab::up(1, 1, 1);
    // 80 backends (endpoints without containers): 80 A records, 1,300 bytes, more than 512
    // (no EDNS) and than 1,232 (the EDNS size the agent offers).
    let names: Vec<String> = (1..=80).map(|i| format!("e{i}")).collect();
    let core = vxmesh::open_catalog(&lab.state.store).expect("open the lab's store");
    for n in &names {
        core.add_endpoint(&vxmesh::EndpointSpec {
            network: "net1".into(),
            node: "h1".into(),
            id: Some(n.clone()),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("endpoint {n}: {e}"));
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let big = services::create(
        &lab,
        "big",
        "net1",
        &[(80, 80, Proto::Tcp)],
        &refs,
        HealthCheck::None,
    );
    let c = "h1-c1";
    assert!(wait_until(Duration::from_secs(30), || dig(
        &lab,
        c,
        &["+tcp", "tasks.big"]
    )
    .answers
    .len()
        == 80));

    let d = dig(&lab, c, &["+ignore", "+noedns", "tasks.big"]);
    assert!(d.flags.contains(&"tc".to_string()), "{}", d.text);
    assert!(!d.answers.is_empty() && d.answers.len() < 80, "{}", d.text);
    let d = dig(&lab, c, &["+ignore", "tasks.big"]);
    assert!(d.flags.contains(&"tc".to_string()), "EDNS 1232: {}", d.text);
    let d = dig(&lab, c, &["+noedns", "tasks.big"]);
    assert!(
        d.text.contains("Truncated, retrying in TCP mode"),
        "{}",
        d.text
    );
    assert_eq!(d.answers.len(), 80, "{}", d.text);
    assert!(!d.flags.contains(&"tc".to_string()), "{}", d.text);
    // glibc retries over TCP by itself.
    assert_eq!(
        getent(&lab, c, "tasks.big", false).map(|a| a.len()),
        Some(80)
    );

    // Fuzz.
    let before = lab.status().hosts[0].agent_pid;
    let gateway = lab.network("net1").gateway;
    let round = fuzz(&lab.namespace(c), gateway, 3000, 200, 20);
    eprintln!(
        "fuzz: {} replies to 3000 datagrams, {} of 200 connections accepted, {} held",
        round.replies,
        round.accepted,
        round.held.len()
    );
    assert!(round.replies > 0 && round.accepted > 0 && !round.held.is_empty());
    // Answers go on while silent TCP connections are held, over UDP and TCP.
    assert_eq!(dig(&lab, c, &["big"]).addrs(), vec![big.vip]);
    assert_eq!(dig(&lab, c, &["+tcp", "big"]).addrs(), vec![big.vip]);
    drop(round);
    let round = fuzz(&lab.namespace(c), gateway, 3000, 200, 0);
    assert!(round.replies > 0 && round.accepted > 0);
    assert_eq!(getent(&lab, c, "big", true), Some(vec![big.vip]));
    assert_eq!(dig(&lab, c, &["+tcp", "tasks.big"]).answers.len(), 80);
    let after = lab.status();
    assert!(
        after.hosts[0].agent_running,
        "the agent died: {}",
        lab.agent_log("h1")
    );
    assert_eq!(after.hosts[0].agent_pid, before, "the agent was replaced");
    assert!(
        !lab.agent_log("h1").contains("panicked"),
        "{}",
        lab.agent_log("h1")
    );

    // The CNI result carries the gateway as nameserver; a runtime writes it as the
    // container's resolv.conf, and the container resolves the service.
    let ns = TestNetns::new(&unique("dnc"));
    let id = format!("{}{}", unique("dns"), "0".repeat(40));
    let env = CniEnv::new(&id, &ns.0, "eth0");
    let conf = netconf(&lab, "net1", "h1");
    let add = cni_exec(&lab.namespace("h1"), "ADD", &env, &conf);
    add.ok();
    let result = add.json();
    assert_eq!(result["dns"], json!({"nameservers": [gateway.to_string()]}));
    let resolv = ResolvConf::write(&ns.0, &format!("nameserver {gateway}\n"));
    let out = vxmesh_tests::run(
        "ip",
        &["netns", "exec", &ns.0, "getent", "hosts", "tasks.big"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 80);
    drop(resolv);
    cni_exec(&lab.namespace("h1"), "DEL", &env, &conf).ok();
}

/// A namespace's `/etc/netns/NS/resolv.conf` written as a runtime would, removed on drop.
struct ResolvConf(std::path::PathBuf);

impl ResolvConf {
    fn write(netns: &str, text: &str) -> ResolvConf {
        let dir = std::path::Path::new("/etc/netns").join(netns);
        std::fs::create_dir_all(&dir).expect("mkdir /etc/netns/NS");
        std::fs::write(dir.join("resolv.conf"), text).expect("write resolv.conf");
        ResolvConf(dir)
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Holds the lab's store unreachable (`store_lock`) while it lives.
struct StoreOutage(std::process::Child);

impl StoreOutage {
    fn start(lab: &Lab, seconds: u32) -> StoreOutage {
        let bin = vxmesh_tests::vxmesh_bin().with_file_name("store_lock");
        let mut child = Command::new(&bin)
            .arg(&lab.state.store)
            .arg(seconds.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (cargo build -p vxmesh-tests --bins)",
                    bin.display()
                )
            });
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read store_lock");
        assert_eq!(line.trim(), "locked");
        StoreOutage(child)
    }

    fn wait(mut self) {
        let mut rest = String::new();
        let _ = self
            .0
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut rest);
        assert!(self.0.wait().expect("wait store_lock").success());
        assert_eq!(rest.trim(), "released");
    }
}

/// Acceptance 2: after the agent is killed and started again, and after the store was
/// unreachable for a few seconds, answers resume and follow the store (nothing stale).
#[test]
fn answers_resume_after_agent_restart_and_store_outage() {
    let _one = one_lab();
    let mut lab = Lab::up(2, 1, 1);
    let clients = ["h1-c1", "h2-c1"];
    let catalog = services::catalog(&lab);
    let web = catalog
        .create(&service_spec(
            "web",
            "net1",
            &clients,
            HealthSpec::default(),
        ))
        .expect("create web");
    assert!(wait_until(Duration::from_secs(30), || {
        clients
            .iter()
            .all(|c| dig(&lab, c, &["web"]).addrs() == vec![web.vip])
    }));

    // The agent of h1 is killed: nothing answers on h1's gateway.
    lab.signal_agent("h1", libc::SIGKILL);
    assert!(lab.wait_agent_exit("h1", Duration::from_secs(10)));
    let d = dig(&lab, "h1-c1", &["+time=1", "web"]);
    assert_eq!(d.status, "", "an answer with h1's agent dead: {}", d.text);
    // The store changes meanwhile.
    catalog.remove("web").expect("remove web");
    let web2 = catalog
        .create(&service_spec(
            "web2",
            "net1",
            &clients,
            HealthSpec::default(),
        ))
        .expect("create web2");
    lab.start_agent("h1");
    let both = sorted(clients.iter().map(|c| lab.container(c).address).collect());
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || {
            dig(&lab, "h1-c1", &["web"]).status == "NXDOMAIN"
                && dig(&lab, "h1-c1", &["web2"]).addrs() == vec![web2.vip]
                && dig(&lab, "h1-c1", &["tasks.web2"]).addrs() == both
        }),
        "after the restart: {}",
        lab.agent_log("h1")
    );
    eprintln!(
        "answers after the restart: {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );

    // The store unreachable for 4 s (less than the agents' heartbeat lease, 10 s): the agents
    // answer from what they last read, without a hang...
    let outage = StoreOutage::start(&lab, 4);
    for c in clients {
        let d = dig(&lab, c, &["web2"]);
        assert_eq!(
            (d.status.as_str(), d.addrs()),
            ("NOERROR", vec![web2.vip]),
            "{}",
            d.text
        );
    }
    outage.wait();
    // ...and follow the store again at once after it.
    catalog.remove("web2").expect("remove web2");
    within(FOLLOW, "NXDOMAIN after the outage", || {
        clients
            .iter()
            .all(|c| dig(&lab, c, &["web2"]).status == "NXDOMAIN")
    });
    let web3 = catalog
        .create(&service_spec(
            "web3",
            "net1",
            &clients,
            HealthSpec::default(),
        ))
        .expect("create web3");
    within(FOLLOW, "a new service after the outage", || {
        clients
            .iter()
            .all(|c| dig(&lab, c, &["web3"]).addrs() == vec![web3.vip])
    });
}

/// The local addresses of the sockets on port 53 in `host`'s namespace (`ss`), UDP and TCP.
fn dns_sockets(lab: &Lab, host: &str) -> Vec<String> {
    let out = vxmesh_tests::run(
        "ss",
        &[
            "-N",
            &lab.namespace(host),
            "-H",
            "-ltun",
            "sport",
            "=",
            ":53",
        ],
    );
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            Some(format!(
                "{} {}",
                l.split_whitespace().next()?,
                l.split_whitespace().nth(4)?
            ))
        })
        .collect();
    v.sort();
    v
}

/// The listener set follows the networks: a new network's gateway answers on every host, and
/// its sockets go with the network.
#[test]
fn listeners_follow_the_networks() {
    let _one = one_lab();
    let lab = Lab::up(2, 1, 1);
    let gw = lab.network("net1").gateway;
    let want = |gw: Ipv4Addr| vec![format!("tcp {gw}:53"), format!("udp {gw}:53")];
    for h in ["h1", "h2"] {
        assert!(
            wait_until(Duration::from_secs(10), || dns_sockets(&lab, h) == want(gw)),
            "{h}: {:?}",
            dns_sockets(&lab, h)
        );
    }
    let out = lab.vxmesh(&["network", "create", "extra", "--subnet", "10.10.50.0/24"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let extra: Ipv4Addr = "10.10.50.1".parse().unwrap();
    let mut both = [want(gw), want(extra)].concat();
    both.sort();
    for h in ["h1", "h2"] {
        assert!(
            wait_until(Duration::from_secs(10), || dns_sockets(&lab, h) == both),
            "{h}: {:?}",
            dns_sockets(&lab, h)
        );
        // It answers (from the host itself: its own network, so NXDOMAIN for a service name).
        let d = lab.exec(h, &["dig", "+tries=1", "+time=3", "@10.10.50.1", "nothing"]);
        assert!(String::from_utf8_lossy(&d.stdout).contains("status: NXDOMAIN"));
    }
    let out = lab.vxmesh(&["network", "rm", "extra"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for h in ["h1", "h2"] {
        assert!(
            wait_until(Duration::from_secs(10), || dns_sockets(&lab, h) == want(gw)),
            "{h}: {:?}",
            dns_sockets(&lab, h)
        );
    }
}
