//! Issue 12, acceptance 1: transfers through the batched WireGuard datapath (the default) arrive
//! intact and in order, over TCP and over UDP. The data carry a marker and a sequence number
//! in every line (TCP) or datagram (UDP), so a segment cut at the wrong place, a wrong
//! sequence number, a lost or doubled segment or a reordering shows as a difference. The
//! kernels of both containers and hosts count no checksum error (a wrong checksum made by the
//! segmentation would be dropped and counted there, not merged), and tcpdump on the WireGuard
//! interfaces sees frames larger than their MTU in both directions: the kernel handed the
//! sender's datapath whole TCP segments and the receiver's datapath handed merged ones back.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vxmesh_tests::capture::Capture;
use vxmesh_tests::{crypto, Lab};

const SETTLE: Duration = Duration::from_secs(30);
const MARKER: &str = "VXMESH-BATCH-MARKER";
/// The WireGuard interface's MTU in the lab (underlay 1500 - 60) and its Ethernet header.
const WG_FRAME: usize = 1440 + 14;

/// `bytes` bytes of 64-byte lines `MARKER <line number> <filler>\n`.
fn marked(bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes);
    let mut n = 0u64;
    while out.len() < bytes {
        let mut line = format!("{MARKER} {n:012} ").into_bytes();
        let fill = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut i = n as usize;
        while line.len() < 63 {
            line.push(fill[i % fill.len()]);
            i += 1;
        }
        line.push(b'\n');
        out.extend_from_slice(&line);
        n += 1;
    }
    out.truncate(bytes);
    out
}

/// A counter of `/proc/net/snmp` (e.g. `Tcp` `InCsumErrors`) in namespace `ns`.
fn snmp(ns: &str, proto: &str, field: &str) -> u64 {
    let text = vxmesh_tests::run_ok("ip", &["netns", "exec", ns, "cat", "/proc/net/snmp"]);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{proto}:")))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let [names, values] = &rows[..] else {
        panic!("no {proto} rows in /proc/net/snmp of {ns}:\n{text}");
    };
    let i = names.iter().position(|n| *n == field).expect(field);
    values[i].parse().expect("a number")
}

fn checksum_errors(lab: &Lab) -> Vec<(String, u64)> {
    let mut out = vec![];
    for m in ["h1", "h2", "h1-c1", "h2-c1"] {
        let ns = lab.namespace(m);
        out.push((format!("{m} Tcp"), snmp(&ns, "Tcp", "InCsumErrors")));
        out.push((format!("{m} Udp"), snmp(&ns, "Udp", "InCsumErrors")));
    }
    out
}

fn wait_exit(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// Whether the agent of `host` reported that the kernel takes tunnel GSO frames on its TAP.
fn tunnel_gso(lab: &Lab, host: &str) -> bool {
    lab.agent_log(host)
        .lines()
        .any(|l| l.contains("batched WireGuard datapath") && l.contains("tunnel_gso=true"))
}

fn batched_lab() -> Lab {
    let lab = crypto::lab_up(2, 1, 1, 1);
    for n in crypto::nodes(&lab) {
        let imp = n
            .wireguard
            .and_then(|w| w.implementation)
            .unwrap_or_default();
        assert!(imp.contains("batched"), "{}: {imp}", n.name);
    }
    let to = lab.container("h2-c1").address;
    assert!(
        lab.ping_within("h1-c1", to, SETTLE),
        "h1-c1 cannot reach h2-c1\n{}\n{}",
        lab.agent_log("h1"),
        lab.agent_log("h2")
    );
    lab
}

#[test]
fn tcp_transfer_through_the_batched_datapath_arrives_intact_and_in_order() {
    let lab = batched_lab();
    let to = lab.container("h2-c1").address;
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let data = marked(8 << 20);
    std::fs::write(&src, &data).unwrap();
    let before = checksum_errors(&lab);

    let mut sink = Command::new("ip")
        .args(["netns", "exec", &lab.namespace("h2-c1"), "sh", "-c"])
        .arg(format!("nc -l -p 7201 > {}", dst.display()))
        .stdin(Stdio::null())
        .spawn()
        .expect("nc");
    std::thread::sleep(Duration::from_millis(300));
    let mut tx_cap = Capture::start(&lab.namespace("h1"), "wg-vx", "udp port 4790");
    let mut rx_cap = Capture::start(&lab.namespace("h2"), "wg-vx", "udp port 4790");
    let sent = Command::new("ip")
        .args(["netns", "exec", &lab.namespace("h1-c1"), "sh", "-c"])
        .arg(format!("nc -N -w 10 {to} 7201 < {}", src.display()))
        .stdin(Stdio::null())
        .status()
        .expect("nc")
        .success();
    let done = wait_exit(&mut sink, Duration::from_secs(60));
    let (tx_frames, rx_frames) = (tx_cap.stop(), rx_cap.stop());
    assert!(
        sent && done,
        "the transfer did not finish (sent {sent}, received {done})"
    );

    let got = std::fs::read(&dst).unwrap();
    if got != data {
        let at = got
            .iter()
            .zip(&data)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(data.len()));
        let line = |b: &[u8]| {
            String::from_utf8_lossy(&b[(at / 64) * 64..][..64.min(b.len() - (at / 64) * 64)])
                .into_owned()
        };
        panic!(
            "received {} of {} bytes; first difference at byte {at}:\n  sent     {:?}\n  received {:?}",
            got.len(),
            data.len(),
            line(&data),
            line(&got),
        );
    }
    assert_eq!(checksum_errors(&lab), before, "checksum errors counted");

    let big = |frames: &[Vec<u8>]| frames.iter().filter(|f| f.len() > WG_FRAME).count();
    eprintln!(
        "h1 wg-vx: {} frames, {} larger than the MTU; h2 wg-vx: {} frames, {} larger",
        tx_frames.len(),
        big(&tx_frames),
        rx_frames.len(),
        big(&rx_frames)
    );
    if tunnel_gso(&lab, "h1") && tunnel_gso(&lab, "h2") {
        assert!(
            big(&tx_frames) > 0,
            "the sender's kernel handed over no large frame"
        );
        assert!(
            big(&rx_frames) > 0,
            "the receiver's datapath merged no segments"
        );
    } else {
        eprintln!("this kernel takes no tunnel GSO frames: the transfer went packet by packet");
    }
}

#[test]
fn udp_transfer_through_the_batched_datapath_arrives_intact_and_in_order() {
    let lab = batched_lab();
    let to = lab.container("h2-c1").address;
    let bin = env!("CARGO_BIN_EXE_udp_marker");
    // Full-size datagrams, small ones, and ones the container fragments (over its MTU, 1390).
    let (count, sizes) = ("6000", "1300,80,3000,1362");
    let before = checksum_errors(&lab);
    let mut rx = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.namespace("h2-c1"),
            bin,
            "recv",
            "7202",
        ])
        .args([count, sizes, MARKER, "3000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("udp_marker recv");
    let mut lines = BufReader::new(rx.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let sent = Command::new("ip")
        .args(["netns", "exec", &lab.namespace("h1-c1"), bin, "send"])
        .args([&format!("{to}:7202"), count, sizes, MARKER])
        .status()
        .expect("udp_marker send")
        .success();
    assert!(sent);
    let summary = lines.next().unwrap().unwrap();
    assert!(wait_exit(&mut rx, Duration::from_secs(30)));
    eprintln!("{summary}");
    let field = |k: &str| {
        summary
            .split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in {summary}"))
            .to_string()
    };
    let received: u64 = field("received").parse().unwrap();
    assert_eq!(
        field("intact"),
        field("received"),
        "damaged datagrams: {summary}"
    );
    assert_eq!(field("first_bad"), "-", "{summary}");
    assert_eq!(field("in_order"), "true", "{summary}");
    // UDP may lose a datagram on a busy machine; the datapath must not lose many.
    assert!(
        received >= 5700,
        "only {received} of {count} datagrams arrived"
    );
    assert_eq!(checksum_errors(&lab), before, "checksum errors counted");
}
