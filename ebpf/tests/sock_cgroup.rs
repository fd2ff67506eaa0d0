//! The cgroup socket programs (`sock.c`) on a real cgroup: a child process moved into a
//! cgroup made for the test connects to a VIP over loopback and reaches the backend's
//! listener on 127.0.0.1; a UDP round trip shows the VIP as the reply's source. The VIP is
//! in 127/8 with nothing listening on it, so a process outside the cgroup is refused.
mod common;

use std::{
    fs,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::*;
use vxmesh_ebpf::*;

const CHILD_ACTION: &str = "VXMESH_EBPF_SOCK_CHILD";
const CHILD_CGROUP: &str = "VXMESH_EBPF_SOCK_CHILD_CGROUP";
const VIP: Ipv4Addr = Ipv4Addr::new(127, 1, 2, 3);
const VPORT: u16 = 7;

/// A cgroup v2 directory of the test's own under /sys/fs/cgroup/unified, removed on drop.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new() -> Self {
        let p = PathBuf::from(format!(
            "/sys/fs/cgroup/unified/vxmesh-test-{}",
            unique("cg")
        ));
        fs::create_dir(&p).expect("create test cgroup");
        Self(p)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("could not remove {}", self.0.display());
    }
}

/// The child's body: run only when re-executed by `child()` below.
#[test]
fn child_main() {
    let Ok(action) = std::env::var(CHILD_ACTION) else {
        return;
    };
    if let Ok(cg) = std::env::var(CHILD_CGROUP) {
        fs::write(
            Path::new(&cg).join("cgroup.procs"),
            std::process::id().to_string(),
        )
        .expect("join cgroup");
    }
    let (kind, addr) = action.split_once(' ').expect("ACTION ADDR");
    let addr: SocketAddr = addr.parse().unwrap();
    let result = match kind {
        "tcp" => TcpStream::connect_timeout(&addr, Duration::from_secs(3)).and_then(|mut s| {
            let mut got = String::new();
            s.read_to_string(&mut got)?;
            Ok(format!("peer={} got={}", s.peer_addr()?, got.trim()))
        }),
        "udp" => UdpSocket::bind("127.0.0.1:0").and_then(|s| {
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.send_to(b"ping", addr)?;
            let mut buf = [0u8; 64];
            let (n, from) = s.recv_from(&mut buf)?;
            Ok(format!(
                "from={from} got={}",
                String::from_utf8_lossy(&buf[..n])
            ))
        }),
        _ => panic!("unknown action {kind}"),
    };
    match result {
        Ok(r) => println!("RESULT ok {r}"),
        Err(e) => println!("RESULT error {:?}", e.kind()),
    }
}

/// Runs `action` ("tcp ADDR" / "udp ADDR") in a child process, inside `cgroup` if given,
/// and returns its RESULT line.
fn child(action: &str, cgroup: Option<&Cgroup>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
        .env(CHILD_ACTION, action);
    if let Some(cg) = cgroup {
        cmd.env(CHILD_CGROUP, &cg.0);
    }
    let out = cmd.output().expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| {
            panic!(
                "child printed no RESULT: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string()
}

fn service(n: &mut Node, proto: u8, backend: Option<SocketAddr>) {
    let m = n.dp().maps_mut();
    if let Some(SocketAddr::V4(b)) = backend {
        m.upsert_backend(1, Backend::new(*b.ip(), b.port(), 0))
            .unwrap();
        m.replace_maglev_table(9, &[1; 7]).unwrap();
    }
    m.upsert_service(
        SvcKey::new(VIP, VPORT, proto),
        Svc {
            id: 9,
            flags: 0,
            affinity_timeout_s: 0,
        },
    )
    .unwrap();
}

#[test]
fn tcp_connect_to_the_vip_reaches_the_backend_and_the_peer_reads_as_the_vip() {
    let cg = Cgroup::new();
    let mut n = Node::load();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        write!(s, "backend saw {}", peer.ip()).unwrap();
    });
    service(&mut n, IPPROTO_TCP, Some(backend));
    let links = n.dp().attach_cgroup(&cg.0).unwrap();
    assert_eq!(links.len(), 5);

    // Witness: bpftool lists the five programs on the cgroup.
    let show = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(&cg.0)
        .output()
        .expect("bpftool");
    let show = String::from_utf8_lossy(&show.stdout);
    for prog in [
        "connect4",
        "sendmsg4",
        "recvmsg4",
        "getpeername4",
        "sock_release",
    ] {
        assert!(
            show.contains(prog),
            "bpftool cgroup show lacks {prog}:\n{show}"
        );
    }

    // Outside the cgroup: nothing listens on the VIP.
    let vip = format!("tcp {VIP}:{VPORT}");
    assert_eq!(child(&vip, None), "error ConnectionRefused");
    // Inside: the backend answers, and getpeername() shows the VIP.
    assert_eq!(
        child(&vip, Some(&cg)),
        format!("ok peer={VIP}:{VPORT} got=backend saw 127.0.0.1")
    );
    server.join().unwrap();
    let m = n.dp().maps();
    assert_eq!(m.backend_stats(1).unwrap().conns, 1);
    assert_eq!(m.stat(Stat::SockConnect).unwrap(), 1);
    assert!(m.stat(Stat::SockReverse).unwrap() >= 1);
    // The child's socket is closed: sock_release forgot it.
    assert_eq!(m.sock_rev_entries(), 0);
}

#[test]
fn udp_round_trip_through_the_vip_shows_the_vip_as_reply_source() {
    let cg = Cgroup::new();
    let mut n = Node::load();
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    let backend = echo.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let (len, from) = echo.recv_from(&mut buf).unwrap();
        let reply = format!(
            "echo {} from {}",
            String::from_utf8_lossy(&buf[..len]),
            from.ip()
        );
        echo.send_to(reply.as_bytes(), from).unwrap();
    });
    service(&mut n, IPPROTO_UDP, Some(backend));
    n.dp().attach_cgroup(&cg.0).unwrap();
    assert_eq!(
        child(&format!("udp {VIP}:{VPORT}"), Some(&cg)),
        format!("ok from={VIP}:{VPORT} got=echo ping from 127.0.0.1")
    );
    server.join().unwrap();
    let m = n.dp().maps();
    let s = m.backend_stats(1).unwrap();
    assert_eq!((s.packets, s.conns), (1, 1));
    assert_eq!(m.stat(Stat::SockSendmsg).unwrap(), 1);
    assert_eq!(m.stat(Stat::SockReverse).unwrap(), 1);
    assert_eq!(m.sock_rev_entries(), 0);
}

#[test]
fn connect_to_a_service_without_backend_is_refused_and_counted() {
    let cg = Cgroup::new();
    let mut n = Node::load();
    service(&mut n, IPPROTO_TCP, None);
    n.dp().attach_cgroup(&cg.0).unwrap();
    assert_eq!(
        child(&format!("tcp {VIP}:{VPORT}"), Some(&cg)),
        "error PermissionDenied"
    );
    assert_eq!(n.dp().maps().service_stats(9).unwrap().no_backend, 1);
}

#[test]
fn detach_cgroup_removes_the_links() {
    let cg = Cgroup::new();
    let mut n = Node::load();
    let links = n.dp().attach_cgroup(&cg.0).unwrap();
    assert!(links.iter().all(|l| l.exists()));
    assert_eq!(n.dp().detach_cgroup(&cg.0).unwrap(), 5);
    assert!(links.iter().all(|l| !l.exists()));
    let show = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(&cg.0)
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&show.stdout).contains("vx_"),
        "{}",
        String::from_utf8_lossy(&show.stdout)
    );
}
