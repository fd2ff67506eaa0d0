//! Issue 12: switching a host between the bridge datapath and the eBPF fast path (`agent
//! --datapath`) keeps established connections. One TCP connection carries a numbered byte
//! stream from h1-c1 to h2-c1 the whole time while both hosts' agents are restarted with
//! `--datapath ebpf` and then with `--datapath bridge` again; every byte arrives, in order.
//! tcpdump on both hosts' bridges is the witness of the path: the connection's frames cross
//! the bridges on the bridge datapath, and none do on the fast path, while the stream goes
//! on.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vxmesh_tests::capture::Capture;
use vxmesh_tests::{run, wait_until, Lab};

const PORT: u16 = 7100;
const SETTLE: Duration = Duration::from_secs(30);

/// Byte `offset` of the stream: 8-byte blocks of a multiplicative hash of the block number,
/// so a lost, repeated or reordered chunk shows at once.
fn pattern(offset: u64) -> u8 {
    let block = (offset / 8).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (offset / 8);
    (block >> (8 * (offset % 8))) as u8
}

/// The stream: a writer feeding `nc` in h1-c1 and a reader checking what `nc -l` in h2-c1
/// hands over, byte by byte.
struct Stream {
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    bad: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    writer: Option<std::thread::JoinHandle<()>>,
    reader: Option<std::thread::JoinHandle<()>>,
    children: Vec<Child>,
}

impl Stream {
    fn start(lab: &Lab, from: &str, to: &str) -> Stream {
        let mut server = Command::new("ip")
            .args(["netns", "exec", &lab.namespace(to), "nc", "-l", "-p"])
            .arg(PORT.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("nc -l");
        let listening = wait_until(Duration::from_secs(10), || {
            let out = run("ip", &["netns", "exec", &lab.namespace(to), "ss", "-Hltn"]);
            String::from_utf8_lossy(&out.stdout).contains(&format!(":{PORT}"))
        });
        assert!(listening, "nc did not listen in {to}");
        let target = lab.container(to).address.to_string();
        let mut client = Command::new("ip")
            .args(["netns", "exec", &lab.namespace(from), "nc", "-N", &target])
            .arg(PORT.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("nc");
        let (sent, received, bad) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let mut input = client.stdin.take().unwrap();
        let (s, st) = (sent.clone(), stop.clone());
        // About 12 MB/s: enough frames to see on every capture, little for 2 shared cores.
        let writer = std::thread::spawn(move || {
            let mut off = 0u64;
            while !st.load(Ordering::Relaxed) {
                let chunk: Vec<u8> = (off..off + 256 * 1024).map(pattern).collect();
                if input.write_all(&chunk).is_err() {
                    return;
                }
                off += chunk.len() as u64;
                s.store(off, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
            // Dropping stdin ends the stream: nc -N shuts the connection down.
        });
        let mut output = server.stdout.take().unwrap();
        let (r, b) = (received.clone(), bad.clone());
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut off = 0u64;
            while let Ok(n) = output.read(&mut buf) {
                if n == 0 {
                    return;
                }
                for &byte in &buf[..n] {
                    if byte != pattern(off) && b.load(Ordering::Relaxed) == 0 {
                        b.store(off + 1, Ordering::Relaxed);
                    }
                    off += 1;
                }
                r.store(off, Ordering::Relaxed);
            }
        });
        Stream {
            sent,
            received,
            bad,
            stop,
            writer: Some(writer),
            reader: Some(reader),
            children: vec![server, client],
        }
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Ends the stream and returns (bytes sent, bytes received, first bad offset + 1 or 0).
    fn finish(mut self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.writer.take().unwrap().join().unwrap();
        let reader = self.reader.take().unwrap();
        let done = wait_until(Duration::from_secs(20), || reader.is_finished());
        assert!(done, "the stream did not end after its writer stopped");
        reader.join().unwrap();
        (
            self.sent.load(Ordering::Relaxed),
            self.received(),
            self.bad.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Frames of the stream's connection that cross the bridge `vb-net1` of each host during
/// one second, and the bytes the stream carried meanwhile.
fn on_the_bridges(lab: &Lab, stream: &Stream) -> (usize, u64) {
    let filter = format!("tcp port {PORT}");
    let mut caps: Vec<Capture> = ["h1", "h2"]
        .iter()
        .map(|h| Capture::start(&lab.host(h).namespace, "vb-net1", &filter))
        .collect();
    let before = stream.received();
    std::thread::sleep(Duration::from_secs(1));
    let frames = caps.iter_mut().map(|c| c.stop().len()).sum();
    (frames, stream.received() - before)
}

/// Waits until a one-second window sees `bridged` (some frames, or none) of the connection
/// on the bridges while the stream moves on; panics with what it saw last.
fn wait_for_path(lab: &Lab, stream: &Stream, bridged: bool, what: &str) {
    let mut last = (0, 0);
    let ok = wait_until(SETTLE, || {
        last = on_the_bridges(lab, stream);
        (last.0 > 0) == bridged && last.1 > 0
    });
    assert!(
        ok,
        "{what}: last window saw {} frames on the bridges while {} bytes arrived\nh1 log:\n{}",
        last.0,
        last.1,
        lab.agent_log("h1")
    );
}

#[test]
fn an_established_connection_survives_switching_the_datapath_both_ways() {
    let mut lab = Lab::up_with(&[
        "--hosts",
        "2",
        "--containers-per-host",
        "1",
        "--networks",
        "1",
        "--datapath",
        "bridge",
    ]);
    let to = lab.container("h2-c1").address;
    assert!(
        lab.ping_within("h1-c1", to, SETTLE),
        "h1-c1 cannot reach h2-c1"
    );
    let stream = Stream::start(&lab, "h1-c1", "h2-c1");
    wait_for_path(&lab, &stream, true, "bridge datapath");

    for h in ["h1", "h2"] {
        lab.restart_agent_with(h, "ebpf");
        assert_eq!(lab.host(h).datapath.as_deref(), Some("ebpf"));
    }
    wait_for_path(&lab, &stream, false, "after switching to ebpf");

    for h in ["h1", "h2"] {
        lab.restart_agent_with(h, "bridge");
    }
    wait_for_path(&lab, &stream, true, "after switching back to bridge");
    assert!(
        lab.agent_log("h1").contains("frames take the bridge again"),
        "the agent did not say it removed the fast path:\n{}",
        lab.agent_log("h1")
    );
    assert!(
        !lab.state
            .bpf_pin_root
            .as_ref()
            .unwrap()
            .join("_fast-h1")
            .exists(),
        "the fast path's pins are still there"
    );

    let (sent, received, bad) = stream.finish();
    assert_eq!(bad, 0, "byte {} of the stream arrived wrong", bad - 1);
    assert_eq!(received, sent, "the stream lost bytes");
    assert!(sent > 1 << 20, "only {sent} bytes were sent");
}
