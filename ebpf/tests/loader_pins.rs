//! The loader and the pin layout: maps reused on reload (connection table kept), teardown
//! removing every pin, and tcx links that keep a container's veth translating after the
//! loading process has exited, taken over by the next load. Witness: bpftool.
mod common;

use std::{
    fs::File,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use common::*;
use vxmesh_ebpf::*;

fn sh(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn bpftool_json(args: &[&str]) -> String {
    let out = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `"key":NUMBER` from bpftool's JSON.
fn json_u64(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .ok()
}

#[test]
fn reload_reuses_pinned_maps_and_keeps_the_connection_table() {
    let mut n = Node::load();
    let vip = Ipv4Addr::new(10, 96, 0, 1);
    let m = n.dp().maps_mut();
    m.upsert_backend(1, Backend::new(Ipv4Addr::new(10, 0, 0, 9), 80, 0))
        .unwrap();
    m.replace_maglev_table(3, &[1; 7]).unwrap();
    m.upsert_service(
        SvcKey::new(vip, 80, IPPROTO_TCP),
        Svc {
            id: 3,
            flags: 0,
            affinity_timeout_s: 0,
        },
    )
    .unwrap();
    let syn = Spec::tcp_syn(Ipv4Addr::new(10, 0, 1, 1), 50000, vip, 80).frame();
    n.dp().run_tc(PROG_FROM_LXC, &syn).unwrap();
    let ct_id = n.dp().maps().map_id("vx_ct").unwrap();
    let pins = n.dp().pins().clone();
    for map in MAP_NAMES {
        assert!(pins.maps.join(map).exists(), "map {map} pinned");
    }
    for prog in LXC_PROGRAMS
        .iter()
        .chain(SOCK_PROGRAMS.iter())
        .chain(HOST_PROGRAMS.iter())
    {
        assert!(pins.progs.join(prog).exists(), "program {prog} pinned");
    }
    // Witness: bpftool sees the pinned map with that id.
    let shown = bpftool_json(&[
        "map",
        "show",
        "pinned",
        pins.maps.join("vx_ct").to_str().unwrap(),
    ]);
    assert_eq!(json_u64(&shown, "id"), Some(u64::from(ct_id)), "{shown}");

    // An agent restart: the process's handles go, the pins stay; the next load reuses them.
    let config = n.dp().config().clone();
    drop(n.dp.take());
    n.dp = Some(Datapath::load(config).unwrap());
    assert_eq!(n.dp().maps().map_id("vx_ct").unwrap(), ct_id, "same map");
    let key = CtKey::new(
        Ipv4Addr::new(10, 0, 1, 1),
        50000,
        vip,
        80,
        IPPROTO_TCP,
        CT_DIR_FWD,
    );
    let entry = n.dp().maps().conntrack(&key).unwrap().expect("entry kept");
    assert_eq!(entry.backend_id, 1);
    assert_eq!(n.dp().maps().maglev_table(3).unwrap(), Some(vec![1; 7]));
}

/// Whether `bpftool ARGS` fails (the object is gone) within 5 s.
fn gone(args: &[&str]) -> bool {
    (0..100).any(|_| {
        let out = Command::new("bpftool").args(args).output().unwrap();
        if out.status.success() {
            std::thread::sleep(Duration::from_millis(50));
        }
        !out.status.success()
    })
}

#[test]
fn teardown_removes_every_pin_and_frees_the_maps() {
    let mut n = Node::load();
    let ct_id = n.dp().maps().map_id("vx_ct").unwrap();
    let pins = n.dp().pins().clone();
    let (root, name) = (n.root.clone(), n.name.clone());
    drop(n.dp.take());
    let removed = teardown(&root, &name).unwrap();
    assert_eq!(
        removed.len(),
        MAP_NAMES.len() + LXC_PROGRAMS.len() + SOCK_PROGRAMS.len() + HOST_PROGRAMS.len()
    );
    assert!(!pins.node_dir.exists());
    assert!(!root.exists(), "empty pin root removed");
    // The kernel frees a map after its last reference goes, from deferred work: wait.
    assert!(
        gone(&["map", "show", "id", &ct_id.to_string()]),
        "map {ct_id} still exists"
    );
    // Teardown of a node that has nothing pinned is not an error.
    assert!(teardown(&root, &name).unwrap().is_empty());
}

#[test]
fn bad_config_is_refused_before_anything_is_made() {
    let mut c = DatapathConfig::new("../escape");
    let err = Datapath::load(c.clone()).err().expect("refused");
    assert!(err.to_string().contains("invalid node"), "{err}");
    c.node = "fine".into();
    c.conntrack_entries = 0;
    let err = Datapath::load(c).err().expect("refused");
    assert!(err.to_string().contains("conntrack_entries"), "{err}");
    assert!(!Path::new("/sys/fs/bpf/vxmesh/fine").exists());
}

// ---- tcx on a veth in network namespaces of the test's own -----------------------------

const CHILD_ENV: &str = "VXMESH_EBPF_TCX_CHILD";
const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const CONTAINER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

/// Two network namespaces: "host" (with the host-side veth) and "container" (the peer),
/// 10.77.0.1/24 and 10.77.0.2/24, the container routing the VIP via the host. Removed on drop.
struct Lab {
    host: String,
    container: String,
    veth: String,
}

impl Lab {
    fn new() -> Self {
        let u = unique("v");
        let lab = Self {
            host: format!("vxmesh-ebpf-h{u}"),
            container: format!("vxmesh-ebpf-c{u}"),
            veth: format!("h{u}"),
        };
        let peer = format!("c{u}");
        sh("ip", &["netns", "add", &lab.host]);
        sh("ip", &["netns", "add", &lab.container]);
        let (h, c) = (lab.host.as_str(), lab.container.as_str());
        sh(
            "ip",
            &[
                "-n", h, "link", "add", &lab.veth, "type", "veth", "peer", "name", &peer, "netns",
                c,
            ],
        );
        sh(
            "ip",
            &["-n", h, "addr", "add", "10.77.0.1/24", "dev", &lab.veth],
        );
        sh("ip", &["-n", h, "link", "set", &lab.veth, "up"]);
        sh("ip", &["-n", h, "link", "set", "lo", "up"]);
        sh(
            "ip",
            &["-n", c, "addr", "add", "10.77.0.2/24", "dev", &peer],
        );
        sh("ip", &["-n", c, "link", "set", &peer, "up"]);
        sh(
            "ip",
            &[
                "-n",
                c,
                "route",
                "add",
                "10.77.0.100/32",
                "via",
                "10.77.0.1",
            ],
        );
        lab
    }
    fn ns_path(name: &str) -> PathBuf {
        PathBuf::from(format!("/run/netns/{name}"))
    }
    fn ifindex(&self) -> u32 {
        let veth = self.veth.clone();
        in_ns(&Self::ns_path(&self.host), move || {
            let c = std::ffi::CString::new(veth).unwrap();
            // SAFETY: c is a valid C string.
            unsafe { libc::if_nametoindex(c.as_ptr()) }
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.container, &self.host] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` on a thread inside the network namespace at `ns`.
fn in_ns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = File::open(ns).unwrap();
    std::thread::spawn(move || {
        // SAFETY: file is an open nsfs file; setns changes this thread only.
        assert_eq!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        f()
    })
    .join()
    .unwrap()
}

/// The body of the loading process: load, program a service, attach, exit.
#[test]
fn child_main() {
    let Ok(args) = std::env::var(CHILD_ENV) else {
        return;
    };
    let a: Vec<&str> = args.split(' ').collect();
    let mut config = DatapathConfig::new(a[1]);
    config.pin_root = a[0].into();
    let mut dp = Datapath::load(config).unwrap();
    let m = dp.maps_mut();
    m.upsert_backend(1, Backend::new(HOST_IP, 8080, 0)).unwrap();
    m.replace_maglev_table(5, &[1; 7]).unwrap();
    m.upsert_service(
        SvcKey::new(VIP, 80, IPPROTO_TCP),
        Svc {
            id: 5,
            flags: 0,
            affinity_timeout_s: 0,
        },
    )
    .unwrap();
    let links = dp
        .attach_lxc(Path::new(a[2]), a[3].parse().unwrap())
        .unwrap();
    println!("RESULT {}", links.len());
}

fn load_in_child(root: &Path, node: &str, netns: &Path, ifindex: u32) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
        .env(
            CHILD_ENV,
            format!("{} {node} {} {ifindex}", root.display(), netns.display()),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("RESULT 2"),
        "child: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One TCP connection from the container to VIP:80; the host's server on 10.77.0.1:8080
/// answers with the address it saw. Returns "peer=<what the client's socket shows> got=..".
fn connect_through_vip(lab: &Lab) -> Result<String, std::io::Error> {
    let listener = in_ns(&Lab::ns_path(&lab.host), || {
        TcpListener::bind(SocketAddr::from((HOST_IP, 8080))).unwrap()
    });
    listener.set_nonblocking(false).unwrap();
    let server = std::thread::spawn(move || {
        if let Ok((mut s, peer)) = listener.accept() {
            let _ = write!(s, "backend saw {}", peer.ip());
        }
    });
    let r = in_ns(&Lab::ns_path(&lab.container), || {
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::from((VIP, 80)), Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut got = String::new();
        s.read_to_string(&mut got)?;
        Ok(format!("peer={} got={got}", s.peer_addr()?))
    });
    if r.is_err() {
        // Unblock the server thread.
        let _ = in_ns(&Lab::ns_path(&lab.host), || {
            TcpStream::connect(SocketAddr::from((HOST_IP, 8080)))
        });
    }
    server.join().unwrap();
    r
}

fn link_ids(pins: &[PathBuf]) -> Vec<(u64, u64)> {
    pins.iter()
        .map(|p| {
            let j = bpftool_json(&["link", "show", "pinned", p.to_str().unwrap()]);
            (
                json_u64(&j, "id").expect("link id"),
                json_u64(&j, "prog_id").expect("prog id"),
            )
        })
        .collect()
}

#[test]
fn tcx_links_keep_translating_after_the_loader_exits_and_are_taken_over_on_reload() {
    let lab = Lab::new();
    let netns = Lab::ns_path(&lab.host);
    let ifindex = lab.ifindex();
    let node = Node {
        dp: None,
        root: PathBuf::from(format!("/sys/fs/bpf/vxmesh-test-{}", unique("root"))),
        name: unique("tcx"),
    };
    // Without the programs the VIP answers nothing.
    assert!(connect_through_vip(&lab).is_err());

    load_in_child(&node.root, &node.name, &netns, ifindex);
    let links: Vec<PathBuf> = std::fs::read_dir(node.root.join(&node.name).join("links"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(links.len(), 2);
    let before = link_ids(&links);
    let shown = bpftool_json(&["link", "show"]);
    // bpftool 7.1 names tcx links by number (type 11, BPF_LINK_TYPE_TCX).
    for (id, _) in &before {
        assert!(
            shown.contains(&format!("\"id\":{id},\"type\":11")),
            "bpftool link show: {shown}"
        );
    }

    // The loader has exited: the pinned links still translate both ways, and the backend
    // sees the container's own address.
    assert_eq!(
        connect_through_vip(&lab).unwrap(),
        format!("peer={VIP}:80 got=backend saw {CONTAINER_IP}")
    );

    // A second load (an agent restart) swaps the programs behind the same links.
    load_in_child(&node.root, &node.name, &netns, ifindex);
    let after = link_ids(&links);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.0, a.0, "same link");
        assert_ne!(b.1, a.1, "new program");
    }
    assert_eq!(
        connect_through_vip(&lab).unwrap(),
        format!("peer={VIP}:80 got=backend saw {CONTAINER_IP}")
    );

    // Teardown detaches: the VIP answers nothing again and the links are gone.
    teardown(&node.root, &node.name).unwrap();
    assert!(connect_through_vip(&lab).is_err());
    for (id, _) in after {
        assert!(
            gone(&["link", "show", "id", &id.to_string()]),
            "link {id} still there"
        );
    }
}
