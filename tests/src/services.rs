//! Services in a lab: made through ingress-lb's catalog on the lab's store (the way a library
//! user makes them), real servers in the containers (nginx answering with its name and the
//! client address it saw; a small UDP request/reply server), clients run with `vxmesh lab exec` in a container's
//! cgroup or outside it, and the kernel's BPF objects as bpftool lists them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ingress_lb::catalog::{HealthStatus, ServiceCatalog};
use ingress_lb::service::{
    BackendSpec, HealthCheck, HealthSpec, PortSpec, Proto, Service, ServiceSpec,
};

use crate::{run, vxmesh_bin, wait_until, Lab};

/// The service catalog on the lab's store.
pub fn catalog(lab: &Lab) -> ServiceCatalog {
    ServiceCatalog::new(lab.store())
}

/// Creates service `name` on `network`: `ports` as (port, target port, protocol), the
/// containers `backends`, and `check` with the default interval (1 s), timeout and
/// thresholds.
pub fn create(
    lab: &Lab,
    name: &str,
    network: &str,
    ports: &[(u16, u16, Proto)],
    backends: &[&str],
    check: HealthCheck,
) -> Service {
    catalog(lab)
        .create(&ServiceSpec {
            name: name.into(),
            network: network.into(),
            ports: ports
                .iter()
                .map(|&(port, target, proto)| PortSpec {
                    port,
                    target_port: Some(target),
                    proto,
                })
                .collect(),
            backends: backends.iter().map(|b| BackendSpec::new(*b)).collect(),
            health: HealthSpec {
                check,
                ..HealthSpec::default()
            },
            ..ServiceSpec::default()
        })
        .unwrap_or_else(|e| panic!("create service {name}: {e}"))
}

/// `vxmesh lab exec [--outside-cgroup] MEMBER -- ARGS` as a command to run or spawn.
pub fn lab_exec(lab: &Lab, member: &str, outside_cgroup: bool, args: &[&str]) -> Command {
    let mut c = Command::new(vxmesh_bin());
    c.args(["lab", "exec", "--prefix", lab.prefix()]);
    if outside_cgroup {
        c.arg("--outside-cgroup");
    }
    c.arg(member).arg("--").args(args).stdin(Stdio::null());
    c
}

/// Runs `lab_exec` to the end.
pub fn lab_exec_output(lab: &Lab, member: &str, outside_cgroup: bool, args: &[&str]) -> Output {
    lab_exec(lab, member, outside_cgroup, args)
        .output()
        .expect("run vxmesh lab exec")
}

/// `curl -sS -m 5 -H 'Connection: close' URL` run by `lab_exec` in `member`: one new
/// connection per request (`URL` may be a curl glob such as `http://a:8080/[1-600]`).
pub fn curl_close(lab: &Lab, member: &str, outside_cgroup: bool, url: &str) -> Output {
    lab_exec_output(
        lab,
        member,
        outside_cgroup,
        &["curl", "-sS", "-m", "5", "-H", "Connection: close", url],
    )
}

/// A loop of new connections (`curl -sS -m 2 -H 'Connection: close' --rate RATE -w WRITE
/// URL`, `URL` a curl glob) run by `lab_exec` in `member`, its lines read as they come.
pub fn curl_loop(
    lab: &Lab,
    member: &str,
    outside_cgroup: bool,
    rate: &str,
    write: &str,
    url: &str,
) -> Lines {
    Lines::spawn(lab_exec(
        lab,
        member,
        outside_cgroup,
        &[
            "curl",
            "-sS",
            "-m",
            "2",
            "-H",
            "Connection: close",
            "--rate",
            rate,
            "-w",
            write,
            url,
        ],
    ))
}

/// An HTTP server in a lab container: nginx (single process, config in a temp directory)
/// answering every request on `port` with `NAME CLIENT_ADDR CLIENT_PORT\n`, and
/// `/files/NAME` with the files put there by [`Nginx::put_file`] at 256 KiB/s per connection
/// (nginx's `limit_rate`: long downloads); every answer has the header `X-Replica: NAME`.
/// Stopped on drop.
pub struct Nginx {
    pub name: String,
    netns: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Nginx {
    /// Starts nginx in `lab`'s container `container`; returns once it listens.
    pub fn start(lab: &Lab, container: &str, port: u16) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 100000;\n  keepalive_timeout 300s;\n\
             client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
             server {{ listen {port} reuseport; add_header X-Replica {container} always;\n\
             location / {{ default_type text/plain; \
             return 200 \"{container} $remote_addr $remote_port\\n\"; }}\n\
             location /files/ {{ alias {d}/files/; limit_rate 256k; }} }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
        let mut n = Nginx {
            name: container.to_string(),
            netns: lab.namespace(container),
            port,
            dir,
            child: None,
        };
        n.restart();
        n
    }

    /// Serves `bytes` bytes (a repeating pattern) as `/files/NAME`.
    pub fn put_file(&self, name: &str, bytes: usize) {
        let dir = self.dir.path().join("files");
        std::fs::create_dir_all(&dir).expect("files dir");
        let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.join(name), data).expect("write the file");
    }

    /// Starts it again after [`Nginx::stop`] (or at first).
    pub fn restart(&mut self) {
        self.stop();
        let conf = self.dir.path().join("nginx.conf");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "nginx", "-c"])
            .arg(&conf)
            .arg("-p")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (install it with cargo xtask setup)");
        self.child = Some(child);
        let listening = wait_until(Duration::from_secs(10), || {
            listens(&self.netns, "-ltn", self.port)
        });
        assert!(
            listening,
            "nginx in {} did not listen: {}",
            self.netns,
            std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
        );
    }

    /// Stops the server (its port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether something in `netns` listens on `port` (`ss -N NETNS FLAGS sport = :PORT`).
fn listens(netns: &str, flags: &str, port: u16) -> bool {
    let out = run(
        "ss",
        &["-N", netns, "-H", flags, "sport", "=", &format!(":{port}")],
    );
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// A server of the svc_client binary in a lab container (`svc_client MODE PORT NAME`, NAME
/// being the container's), started once it listens on PORT. Stopped on drop.
pub struct SvcServer {
    child: Child,
}

impl SvcServer {
    /// `server`: the svc_client binary (`env!("CARGO_BIN_EXE_svc_client")` in a test);
    /// `listen`: the `ss` flags that show it listening (`-lun`, `-ltn`).
    pub fn start(
        lab: &Lab,
        container: &str,
        server: &str,
        mode: &str,
        port: u16,
        listen: &str,
    ) -> SvcServer {
        let netns = lab.namespace(container);
        let child = Command::new("ip")
            .args(["netns", "exec", &netns, server, mode])
            .arg(port.to_string())
            .arg(container)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start svc_client");
        assert!(
            wait_until(Duration::from_secs(10), || listens(&netns, listen, port)),
            "svc_client {mode} in {netns} did not listen"
        );
        SvcServer { child }
    }
}

impl Drop for SvcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP request/reply server in a lab container: `svc_client udp-serve`, answering each
/// datagram on `port` with the container's name. Stopped on drop. (socat's `fork` mode loses
/// datagrams that arrive while a child still holds the socket.)
pub struct UdpEcho {
    _server: SvcServer,
}

impl UdpEcho {
    /// `server`: the svc_client binary (`env!("CARGO_BIN_EXE_svc_client")` in a test).
    pub fn start(lab: &Lab, container: &str, port: u16, server: &str) -> UdpEcho {
        UdpEcho {
            _server: SvcServer::start(lab, container, server, "udp-serve", port, "-lun"),
        }
    }
}

/// `vxmesh service create NAME --network net1 --port PORT --publish PUBLISH` over `backends`
/// (CLI, the lab's store), then waits until every host's datapath holds them all.
pub fn create_published(lab: &Lab, name: &str, port: &str, publish: &str, backends: &[&str]) {
    create_published_on(lab, "net1", name, port, publish, backends, &[]);
}

/// [`create_published`] with more options for `service create` (`--mode dsr`, a second
/// `--publish`, health checks, ...).
pub fn create_published_with(
    lab: &Lab,
    name: &str,
    port: &str,
    publish: &str,
    backends: &[&str],
    options: &[&str],
) {
    create_published_on(lab, "net1", name, port, publish, backends, options);
}

/// [`create_published_with`] on network `network`; waits until every host's datapath holds
/// `backends` more up than before (other services' backends count too).
pub fn create_published_on(
    lab: &Lab,
    network: &str,
    name: &str,
    port: &str,
    publish: &str,
    backends: &[&str],
    options: &[&str],
) {
    let before: Vec<usize> = lab
        .state
        .hosts
        .iter()
        .map(|h| up_backends(lab, &h.name))
        .collect();
    let mut args = vec![
        "service",
        "create",
        name,
        "--network",
        network,
        "--port",
        port,
        "--publish",
        publish,
    ];
    for b in backends {
        args.extend(["--backend", b]);
    }
    args.extend_from_slice(options);
    let out = lab.vxmesh(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready = wait_until(Duration::from_secs(30), || {
        lab.state
            .hosts
            .iter()
            .zip(&before)
            .all(|(h, b)| up_backends(lab, &h.name) == b + backends.len())
    });
    assert!(
        ready,
        "backends not programmed; agent log h1:\n{}",
        lab.agent_log("h1")
    );
}

/// `vxmesh service update NAME --mode MODE`, then 3 s for every agent to follow.
pub fn set_mode(lab: &Lab, name: &str, mode: &str) {
    let out = lab.vxmesh(&["service", "update", name, "--mode", mode]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_secs(3));
}

/// One request through `svc_client udp` (`client_bin`) from lab member `client` to `to`
/// (ADDR:PORT): (the source of the reply as recvfrom() saw it, the reply), or what it
/// printed.
pub fn udp_ask(
    lab: &Lab,
    client: &str,
    outside_cgroup: bool,
    to: &str,
    client_bin: &str,
) -> Result<(String, String), String> {
    udp_ask_with(lab, client, outside_cgroup, to, client_bin, "query")
}

/// [`udp_ask`] with the datagram `payload`.
pub fn udp_ask_with(
    lab: &Lab,
    client: &str,
    outside_cgroup: bool,
    to: &str,
    client_bin: &str,
    payload: &str,
) -> Result<(String, String), String> {
    let out = lab_exec_output(
        lab,
        client,
        outside_cgroup,
        &[client_bin, "udp", to, payload],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let answer = text
        .lines()
        .find_map(|l| l.strip_prefix("from=")?.split_once(" reply="));
    match answer {
        Some((from, reply)) => Ok((from.to_string(), reply.to_string())),
        None => Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr))),
    }
}

/// `NAME ADDR PORT` lines of the backends' answers, counted by NAME, and every client
/// address seen by NAME.
pub fn tally(lines: &str) -> (BTreeMap<String, usize>, BTreeMap<String, Vec<String>>) {
    let (mut count, mut addrs) = (BTreeMap::new(), BTreeMap::<String, Vec<String>>::new());
    for l in lines.lines() {
        let mut w = l.split_whitespace();
        if let (Some(name), Some(addr)) = (w.next(), w.next()) {
            *count.entry(name.to_string()).or_insert(0) += 1;
            let seen = addrs.entry(name.to_string()).or_default();
            if !seen.iter().any(|a| a == addr) {
                seen.push(addr.to_string());
            }
        }
    }
    (count, addrs)
}

/// vxmesh's BPF objects the kernel holds now, as bpftool lists them: `prog` and `map` lines
/// whose name starts with `vx_` (other tests may load their own at the same time), and
/// `link` lines whose program is one of those programs.
pub fn vx_objects() -> BTreeMap<&'static str, Vec<String>> {
    let listing = |kind: &str| {
        let out = run("bpftool", &[kind, "show"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                l.split(": ")
                    .next()
                    .is_some_and(|id| id.parse::<u32>().is_ok())
            })
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let word_after = |l: &str, key: &str| {
        l.split_whitespace()
            .skip_while(|w| *w != key)
            .nth(1)
            .map(str::to_string)
    };
    let ours = |l: &String| word_after(l, "name").is_some_and(|n| n.starts_with("vx_"));
    let progs: Vec<String> = listing("prog").into_iter().filter(ours).collect();
    let ids: Vec<String> = progs
        .iter()
        .filter_map(|l| l.split(':').next().map(str::to_string))
        .collect();
    let links = listing("link")
        .into_iter()
        .filter(|l| word_after(l, "prog").is_some_and(|p| ids.contains(&p)))
        .collect();
    BTreeMap::from([
        ("prog", progs),
        ("map", listing("map").into_iter().filter(ours).collect()),
        ("link", links),
    ])
}

/// A kernel object: (kind, id).
pub type Obj = (&'static str, u64);

/// `bpftool -j ARGS`, parsed (Null when it printed nothing parsable).
pub fn bpftool_json(args: &[&str]) -> serde_json::Value {
    let out = run("bpftool", &[&["-j"], args].concat());
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Every object pinned under a node's pin directory `dir` (programs, maps, links), and the
/// Maglev tables inside `vx_maglev`, as (kind, id).
pub fn pinned_objects(dir: &Path) -> BTreeSet<Obj> {
    let mut out = BTreeSet::new();
    for (sub, kind) in [("progs", "prog"), ("maps", "map"), ("links", "link")] {
        for pin in tree(&dir.join(sub)) {
            let v = bpftool_json(&[kind, "show", "pinned", pin.to_str().unwrap()]);
            let id = v["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{kind} {}", pin.display()));
            out.insert((kind, id));
        }
    }
    let tables = bpftool_json(&[
        "map",
        "dump",
        "pinned",
        dir.join("maps/vx_maglev").to_str().unwrap(),
    ]);
    for e in tables.as_array().into_iter().flatten() {
        let b: Vec<u8> = e["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| u8::from_str_radix(x.as_str().unwrap().trim_start_matches("0x"), 16).unwrap())
            .collect();
        out.insert(("map", u32::from_le_bytes(b[..4].try_into().unwrap()) as u64));
    }
    out
}

/// Waits up to 5 s for the kernel to drop every object of `objs` (it frees a pinned object
/// an RCU grace period after its pin is unlinked); returns those it still holds.
pub fn wait_gone(objs: &BTreeSet<Obj>) -> Vec<Obj> {
    wait_until(Duration::from_secs(5), || still_there(objs).is_empty());
    still_there(objs)
}

/// The objects of `objs` the kernel still holds (`bpftool KIND show id ID` succeeds).
pub fn still_there(objs: &BTreeSet<Obj>) -> Vec<Obj> {
    objs.iter()
        .filter(|(kind, id)| {
            run("bpftool", &[kind, "show", "id", &id.to_string()])
                .status
                .success()
        })
        .copied()
        .collect()
}

/// Entries of the pinned `vx_backend` map of `host` in `lab` whose flags are 0 (up: in the
/// tables), read with bpftool (`map dump pinned … -j`, raw bytes: flags at offset 6).
pub fn up_backends(lab: &Lab, host: &str) -> usize {
    let root = lab
        .state
        .bpf_pin_root
        .as_ref()
        .expect("the lab has a pin root");
    let pin = root.join(host).join("maps/vx_backend");
    let out = run(
        "bpftool",
        &["-j", "map", "dump", "pinned", pin.to_str().unwrap()],
    );
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return 0;
    };
    v.as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["value"].get(6).and_then(|b| b.as_str()) == Some("0x00"))
                .count()
        })
        .unwrap_or(0)
}

/// Every file under a directory (recursively), for the pins and cgroups a lab leaves.
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(d) = std::fs::read_dir(dir) {
        for e in d.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(tree(&p));
            }
            out.push(p);
        }
    }
    out
}

/// The lines a running command prints, each with the moment it arrived.
pub struct Lines {
    child: Child,
    lines: Arc<std::sync::Mutex<Vec<(std::time::Instant, String)>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Lines {
    /// Spawns `cmd` with its stdout read line by line as it comes.
    pub fn spawn(mut cmd: Command) -> Lines {
        use std::io::BufRead;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let l = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push((std::time::Instant::now(), line));
            }
        });
        Lines {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// Whether the command has ended.
    pub fn ended(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// The lines so far.
    pub fn so_far(&self) -> Vec<(std::time::Instant, String)> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for the command to end; returns its exit code and every line.
    pub fn wait(mut self) -> (Option<i32>, Vec<(std::time::Instant, String)>) {
        let status = self.child.wait().expect("wait");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status.code(), self.so_far())
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        // Only when a test fails before `wait`: the process is `vxmesh lab exec`; what it
        // runs in a container's cgroup goes with `lab down`.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The health status the store holds for `endpoint` of service `service`.
pub fn health(lab: &Lab, service: &str, endpoint: &str) -> Option<HealthStatus> {
    catalog(lab)
        .snapshot()
        .ok()?
        .health
        .get(&(service.to_string(), endpoint.to_string()))
        .map(|r| r.status)
}
