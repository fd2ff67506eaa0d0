//! Issue 11, acceptance 3: vxmesh embedded as a library. A separate process
//! (`src/bin/embed_agents.rs`) runs its own multi-threaded tokio runtime, starts three agents
//! for three lab hosts through the library, attaches containers and waits for them with the
//! library's waits; the test checks from outside (ping, ip) that "applied" means applied,
//! stops one agent through its handle, injects a reconcile error, and ends the process with
//! SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use vxmesh_tests::{run, unique, vxmesh_bin, Lab, TestNetns};

/// The embedder process, its stdin and its reported steps.
struct Embedder {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Embedder {
    /// The next step it reports, which must be `event` (within 3 minutes).
    fn expect(&mut self, event: &str) -> Value {
        let v = self
            .lines
            .recv_timeout(Duration::from_secs(180))
            .unwrap_or_else(|_| {
                panic!(
                    "no '{event}' from the embedder; its log:\n{}",
                    self.stderr.lock().unwrap()
                )
            });
        assert_eq!(
            v["event"],
            event,
            "{v}\nlog:\n{}",
            self.stderr.lock().unwrap()
        );
        v
    }

    fn go(&mut self) {
        writeln!(self.stdin, "go").unwrap();
    }
}

impl Drop for Embedder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn embedder(lab: &Lab, args: &[String]) -> Embedder {
    let bin = vxmesh_bin().with_file_name("embed_agents");
    let mut child = Command::new(bin)
        .arg(&lab.state.store)
        .arg(lab.prefix())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start embed_agents");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (err_pipe, log) = (child.stderr.take().unwrap(), stderr.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
            let mut l = log.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let stdin = child.stdin.take().unwrap();
    Embedder {
        child,
        stdin,
        lines,
        stderr,
    }
}

/// One round of pings from `from` to `ip`, right after the library said "applied": no
/// retries, so a wait that returned early fails here.
fn pings(ns: &str, ip: &str) -> bool {
    run(
        "ip",
        &[
            "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", ip,
        ],
    )
    .status
    .success()
}

#[test]
fn three_agents_in_one_embedding_process() {
    let lab = Lab::up(3, 0, 1);
    // The lab's own agents (processes) make way for the embedded ones.
    for h in ["h1", "h2", "h3"] {
        lab.signal_agent(h, libc::SIGTERM);
        assert!(
            lab.wait_agent_exit(h, Duration::from_secs(30)),
            "{h}'s agent did not stop"
        );
    }
    let ns: Vec<TestNetns> = (1..=4)
        .map(|i| TestNetns::new(&unique(&format!("em{i}"))))
        .collect();
    let mut args: Vec<String> = ["h1", "h2", "h3"]
        .iter()
        .map(|h| format!("{h}={}", lab.host(h).namespace))
        .collect();
    args.push("--".into());
    // c1 on h1, c2 on h2, c3 on h3; c4 on h2 is attached after h3's agent was stopped.
    for (i, host) in ["h1", "h2", "h3", "h2"].iter().enumerate() {
        args.push(format!("c{}={host}={}", i + 1, ns[i].0));
    }
    let mut e = embedder(&lab, &args);

    e.expect("started");
    let refused = e.expect("refused");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("node h1 already has a running agent (this process)"),
        "{refused}"
    );
    // Another process is refused too, naming the embedder.
    let cli = run(
        "timeout",
        &[
            "30",
            vxmesh_bin().to_str().unwrap(),
            "--store",
            lab.state.store.to_str().unwrap(),
            "agent",
            "--node",
            "h1",
            "--netns",
            &lab.host("h1").namespace,
        ],
    );
    let err = String::from_utf8_lossy(&cli.stderr);
    assert_eq!(cli.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "node h1 already has a running agent (pid {} on this machine)",
            e.child.id()
        )),
        "{err}"
    );

    e.expect("network-applied");
    let attached = e.expect("attached");
    assert!(attached["revision"].as_u64().unwrap() > 0);
    let ips = e.expect("containers")["ips"].clone();
    for to in ["c2", "c3"] {
        let ip = ips[to].as_str().unwrap();
        assert!(pings(&ns[0].0, ip), "c1 → {to} ({ip}) right after the wait");
    }
    e.go();

    e.expect("applied-without-stopped");
    let stopped = e.expect("stopped");
    assert_eq!(stopped["node"], "h3");
    let waited = stopped["wait_for_stopped"].as_str().unwrap_or_default();
    assert!(
        waited.contains("h3"),
        "the store-side wait names h3: {stopped}"
    );
    let c4 = stopped["ips"]["c4"].as_str().unwrap();
    assert!(
        pings(&ns[0].0, c4),
        "c1 → c4 ({c4}) with h3's agent stopped"
    );
    e.go();

    // The injected fault: h2's underlay address removed (the agent cannot find its underlay).
    let h2 = lab.host("h2");
    let addr = format!("{}/24", h2.address);
    let fault = e.expect("ready-for-fault");
    assert_eq!(fault["node"], "h2");
    run(
        "ip",
        &[
            "-n",
            &h2.namespace,
            "addr",
            "del",
            &addr,
            "dev",
            &h2.interface,
        ],
    );
    let seen = e.expect("error-seen");
    let handle_errors = seen["handle"].as_array().unwrap();
    assert!(!handle_errors.is_empty(), "{seen}");
    assert_eq!(
        seen["handle"], seen["store"],
        "the store holds what the handle says"
    );
    run(
        "ip",
        &[
            "-n",
            &h2.namespace,
            "addr",
            "add",
            &addr,
            "dev",
            &h2.interface,
        ],
    );
    e.go();
    e.expect("error-cleared");
    let idle = e.expect("idle");
    assert_eq!(idle["running"], serde_json::json!(["h1", "h2"]));

    // The library took no signal: SIGTERM's default action ends the embedder.
    // SAFETY: kill(2) on our own child, which has not been waited for yet.
    unsafe { libc::kill(e.child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = e.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIGTERM did not end the embedder"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    // Its agents' log lines name their node.
    let log = e.stderr.lock().unwrap().clone();
    for h in ["h1", "h2", "h3"] {
        assert!(
            log.contains(&format!("agent{{node={h}}}")),
            "no line of {h}'s agent:\n{log}"
        );
    }
}
