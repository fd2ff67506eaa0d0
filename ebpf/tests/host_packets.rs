//! The routing mesh's tc programs (`host.c`, and the reply half in `lxc.c`'s `vx_from_lxc`)
//! under BPF_PROG_TEST_RUN: each test asserts the verdict and the exact output frame
//! (rebuilt with the expected addresses and MACs; checksums verified by recomputation).
//! Packets not theirs leave the routing-mesh programs with TCX_NEXT (the tc filters after
//! them still run). Replies that leave through the underlay do a real FIB lookup: those tests run in a
//! network namespace of their own with an underlay device and a permanent neighbour entry
//! for the client, so the MACs the program writes are the ones the kernel's FIB gives.
mod common;

use std::net::Ipv4Addr;

use common::{netns::TestNs, *};
use vxmesh_ebpf::*;

/// The ingress host's underlay address (HOST of HOST:PUB) and the published port.
const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PUB: u16 = 8080;
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x50];
const UNDERLAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 1];
/// The MAC naming the ingress node in the overlay.
const NODE_MAC: [u8; 6] = [0x0a, 0x5e, 0, 0, 0, 1];
const SVC_ID: u32 = 9;
/// Backend 1 is local (behind veth ifindex 31), backend 2 remote (behind bridge 40).
const BACKENDS: [(u32, Ipv4Addr, u16, [u8; 6], u32, u8); 2] = [
    (
        1,
        Ipv4Addr::new(10, 0, 1, 11),
        80,
        [0x0a, 0x58, 10, 0, 1, 11],
        31,
        BE_LOC_F_LOCAL,
    ),
    (
        2,
        Ipv4Addr::new(10, 0, 1, 12),
        80,
        [0x0a, 0x58, 10, 0, 1, 12],
        40,
        0,
    ),
];
const OVERLAY_IFINDEX: u32 = 50;
const GATEWAY_MAC: [u8; 6] = [0x0a, 0x58, 10, 0, 1, 1];

fn be(id: u32) -> (Ipv4Addr, u16, [u8; 6]) {
    let b = BACKENDS.iter().find(|b| b.0 == id).expect("known backend");
    (b.1, b.2, b.3)
}

/// The frame of `s` with these Ethernet addresses.
fn framed(s: &Spec, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = s.frame();
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

/// The ingress host: published HOST:PUB/proto over both backends with `table`.
fn ingress(n: &mut Node, proto: u8, underlay_ifindex: u32, table: &[u32]) {
    let m = n.dp().maps_mut();
    m.set_host(Host::new(HOST, underlay_ifindex, NODE_MAC))
        .unwrap();
    for (id, ip, port, mac, ifindex, flags) in BACKENDS {
        m.upsert_backend(id, Backend::new(ip, port, 0)).unwrap();
        m.upsert_be_loc(
            id,
            BeLoc {
                ifindex,
                mac,
                flags,
                pad: 0,
            },
        )
        .unwrap();
    }
    m.replace_maglev_table(SVC_ID, table).unwrap();
    publish(m, HOST, PUB, proto, SVC_ID);
}

fn run(n: &mut Node, prog: &str, frame: &[u8]) -> TcRun {
    n.dp().run_tc(prog, frame).expect("test run")
}

fn stat(n: &mut Node, s: Stat) -> u64 {
    n.dp().maps().stat(s).unwrap()
}

/// Asserts `s` (to HOST:PUB) leaves vx_from_underlay DNATed to backend `id`, client kept,
/// with the backend's MAC and the node MAC, redirected.
fn assert_delivered(n: &mut Node, s: &Spec, id: u32) {
    let out = run(n, PROG_FROM_UNDERLAY, &s.frame());
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_checksums(&out.packet);
    let (ip, port, mac) = be(id);
    assert_eq!(
        out.packet,
        framed(&s.with((s.src, s.sport), (ip, port)), mac, NODE_MAC),
        "DNAT to backend {id} with the client's address kept"
    );
}

#[test]
fn syn_to_a_published_port_reaches_a_local_backend() {
    let mut n = Node::load();
    ingress(&mut n, IPPROTO_TCP, 7, &[1]);
    let syn = Spec::tcp_syn(CLIENT, 40000, HOST, PUB);
    assert_delivered(&mut n, &syn, 1);
    let ct = n
        .dp()
        .maps()
        .conntrack(&CtKey::new(
            CLIENT,
            40000,
            HOST,
            PUB,
            IPPROTO_TCP,
            CT_DIR_FWD,
        ))
        .unwrap()
        .expect("forward entry");
    assert_eq!((ct.backend_id, ct.flags), (1, CT_F_MESH));
    let rev = n
        .dp()
        .maps()
        .conntrack(&CtKey::new(
            be(1).0,
            80,
            CLIENT,
            40000,
            IPPROTO_TCP,
            CT_DIR_REPLY,
        ))
        .unwrap()
        .expect("reply entry");
    assert_eq!(
        (rev.nat_ip(), rev.nat_port(), rev.flags),
        (HOST, PUB, CT_F_MESH)
    );
    assert_eq!(stat(&mut n, Stat::MeshFwd), 1);
}

#[test]
fn syn_to_a_published_port_goes_into_the_overlay_for_a_remote_backend() {
    // The frame redirected into the bridge is exactly what the VXLAN device carries as its
    // inner frame: backend MAC (static FDB entry → the backend's host), node MAC as source.
    let mut n = Node::load();
    ingress(&mut n, IPPROTO_TCP, 7, &[2]);
    assert_delivered(&mut n, &Spec::tcp_syn(CLIENT, 40001, HOST, PUB), 2);
    // UDP too, by the same path.
    let mut n = Node::load();
    ingress(&mut n, IPPROTO_UDP, 7, &[2]);
    assert_delivered(&mut n, &Spec::udp(CLIENT, 5353, HOST, PUB, b"ping"), 2);
}

#[test]
fn unpublished_ports_and_plain_service_frontends_pass_untouched() {
    let mut n = Node::load();
    ingress(&mut n, IPPROTO_TCP, 7, &[1, 2]);
    // A VIP frontend (no VX_SVC_F_PUBLISHED) is not the underlay program's business.
    let vip = Ipv4Addr::new(10, 96, 0, 1);
    n.dp()
        .maps_mut()
        .upsert_service(
            SvcKey::new(vip, 80, IPPROTO_TCP),
            Svc {
                id: SVC_ID,
                flags: 0,
                affinity_timeout_s: 0,
            },
        )
        .unwrap();
    for frame in [
        Spec::tcp_syn(CLIENT, 40000, HOST, 22).frame(),
        Spec::udp(CLIENT, 40000, HOST, PUB, b"x").frame(),
        Spec::tcp_syn(CLIENT, 40000, Ipv4Addr::new(192, 0, 2, 2), PUB).frame(),
        Spec::tcp_syn(CLIENT, 40000, vip, 80).frame(),
    ] {
        let out = run(&mut n, PROG_FROM_UNDERLAY, &frame);
        assert_eq!((out.verdict, &out.packet), (TCX_NEXT, &frame));
    }
    assert_eq!(n.dp().maps().conntrack_fill().unwrap().entries, 0);
    assert_eq!(stat(&mut n, Stat::MeshFwd), 0);
}

#[test]
fn published_port_without_a_healthy_backend_drops_and_counts() {
    let mut n = Node::load();
    ingress(&mut n, IPPROTO_TCP, 7, &[]);
    let syn = Spec::tcp_syn(CLIENT, 40000, HOST, PUB).frame();
    let out = run(&mut n, PROG_FROM_UNDERLAY, &syn);
    assert_eq!((out.verdict, out.packet), (TC_ACT_SHOT, syn));
    assert_eq!(n.dp().maps().service_stats(SVC_ID).unwrap().no_backend, 1);
    assert_eq!(n.dp().maps().conntrack_fill().unwrap().entries, 0);
}

#[test]
fn fragments_follow_their_first_fragment_into_the_mesh() {
    let mut n = Node::load();
    ingress(&mut n, IPPROTO_UDP, 7, &[2]);
    let dgram = Spec::udp(CLIENT, 6000, HOST, PUB, &[7u8; 64]);
    let (first, later) = dgram.fragments(32);
    // The later fragment first: its first was not seen, it passes untouched.
    let out = run(&mut n, PROG_FROM_UNDERLAY, &later);
    assert_eq!((out.verdict, &out.packet), (TCX_NEXT, &later));
    let (ip, port, mac) = be(2);
    let (want_first, want_later) = dgram.with((CLIENT, 6000), (ip, port)).fragments(32);
    let set_macs = |mut f: Vec<u8>| {
        f[..6].copy_from_slice(&mac);
        f[6..12].copy_from_slice(&NODE_MAC);
        f
    };
    let out = run(&mut n, PROG_FROM_UNDERLAY, &first);
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(out.packet, set_macs(want_first));
    let out = run(&mut n, PROG_FROM_UNDERLAY, &later);
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_checksums(&out.packet);
    assert_eq!(out.packet, set_macs(want_later));
}

#[test]
fn ip_options_are_skipped_and_truncated_headers_pass() {
    let mut n = Node::load();
    ingress(&mut n, IPPROTO_TCP, 7, &[1]);
    let mut syn = Spec::tcp_syn(CLIENT, 40002, HOST, PUB);
    // NOP ×4, a timestamp option (RFC 791) of 8 bytes.
    syn.options = vec![1, 1, 1, 1, 0x44, 4, 5, 0, 1, 1, 1, 0];
    assert_delivered(&mut n, &syn, 1);

    let whole = Spec::tcp_syn(CLIENT, 40003, HOST, PUB).frame();
    let mut ihl15 = whole.clone();
    ihl15[14] = 0x4f;
    let mut long = whole.clone();
    long[16..18].copy_from_slice(&200u16.to_be_bytes());
    for frame in [ihl15, long, whole[..14 + 30].to_vec()] {
        let before = stat(&mut n, Stat::Truncated);
        let out = run(&mut n, PROG_FROM_UNDERLAY, &frame);
        assert_eq!((out.verdict, &out.packet), (TCX_NEXT, &frame));
        assert_eq!(stat(&mut n, Stat::Truncated), before + 1);
    }
}

/// The backend host: knows the ingress node's MAC and that backend 2 serves PUB.
fn backend_host(n: &mut Node, underlay_ifindex: u32, flags: u8) {
    let m = n.dp().maps_mut();
    m.set_host(Host::new(
        Ipv4Addr::new(192, 0, 2, 3),
        underlay_ifindex,
        [0x0a, 0x5e, 0, 0, 0, 3],
    ))
    .unwrap();
    m.upsert_mesh_node(NODE_MAC, HOST).unwrap();
    let (ip, port, _) = be(2);
    m.upsert_mesh_be(
        SvcKey::new(ip, port, IPPROTO_TCP),
        MeshBe {
            pub_port: PUB.to_be(),
            flags,
            pad: 0,
            overlay_ifindex: OVERLAY_IFINDEX,
        },
    )
    .unwrap();
}

/// The forward frame as it leaves the VXLAN device on the backend host, and the backend's
/// SYN-ACK as its container sends it (to the gateway MAC).
fn forward_and_reply() -> (Vec<u8>, Spec) {
    let (ip, port, mac) = be(2);
    let fwd = framed(&Spec::tcp_syn(CLIENT, 41000, ip, port), mac, NODE_MAC);
    (fwd, synack(ip, port, 41000))
}

#[test]
fn backend_host_sends_replies_back_to_the_ingress_node_over_the_overlay() {
    let mut n = Node::load();
    backend_host(&mut n, 7, 0);
    let (fwd, synack) = forward_and_reply();
    let out = run(&mut n, PROG_FROM_OVERLAY, &fwd);
    assert_eq!(
        (out.verdict, &out.packet),
        (TCX_NEXT, &fwd),
        "forward passes as it is"
    );
    let (ip, port, mac) = be(2);
    let rec = n
        .dp()
        .maps()
        .mesh_flow(&CtKey::new(
            ip,
            port,
            CLIENT,
            41000,
            IPPROTO_TCP,
            CT_DIR_REPLY,
        ))
        .unwrap()
        .expect("flow recorded");
    assert_eq!(rec.node_mac, NODE_MAC);
    assert_eq!(rec.ingress_addr, u32::from_ne_bytes(HOST.octets()));
    assert_eq!(
        (u16::from_be(rec.pub_port), rec.overlay_ifindex),
        (PUB, OVERLAY_IFINDEX)
    );

    // The reply leaves the container: same IP packet, destination MAC = the ingress node's.
    let out = run(&mut n, PROG_FROM_LXC, &framed(&synack, GATEWAY_MAC, mac));
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(out.packet, framed(&synack, NODE_MAC, mac));
    assert_eq!(stat(&mut n, Stat::MeshReply), 1);

    // A frame from a MAC that names no ingress node leaves no record; its reply is untouched.
    let other = framed(&Spec::tcp_syn(CLIENT, 41001, ip, port), mac, MAC_A);
    assert_eq!(run(&mut n, PROG_FROM_OVERLAY, &other).verdict, TCX_NEXT);
    let reply = framed(&Spec::tcp_syn(ip, port, CLIENT, 41001), GATEWAY_MAC, mac);
    let out = run(&mut n, PROG_FROM_LXC, &reply);
    assert_eq!((out.verdict, out.packet), (TC_ACT_OK, reply));
}

/// A network namespace of the test's own with an underlay device `u0` (192.0.2.1/24, MAC
/// UNDERLAY_MAC, forwarding on) and a permanent neighbour entry for CLIENT; removed on drop.
struct Underlay {
    ns: TestNs,
    ifindex: u32,
}

impl Underlay {
    fn new() -> Self {
        let ns = TestNs::new("vxmesh-hostpk");
        ns.ip(&[
            "link",
            "add",
            "u0",
            "address",
            "02:00:00:00:01:01",
            "type",
            "veth",
            "peer",
            "name",
            "u1",
        ]);
        ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "u0"]);
        ns.ip(&["link", "set", "u0", "up"]);
        ns.ip(&["link", "set", "u1", "up"]);
        ns.ip(&[
            "neigh",
            "replace",
            "192.0.2.50",
            "lladdr",
            "02:00:00:00:00:50",
            "dev",
            "u0",
            "nud",
            "permanent",
        ]);
        ns.sysctl("net.ipv4.conf.all.forwarding=1");
        let ifindex = ns.ifindex("u0");
        Self { ns, ifindex }
    }

    /// Runs `f` on a thread inside the namespace (test runs look routes up there).
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.ns.run(f)
    }
}

/// A SYN-ACK from `ip:port` to the client's port `cport`.
fn synack(ip: Ipv4Addr, port: u16, cport: u16) -> Spec {
    let mut s = Spec::tcp_syn(ip, port, CLIENT, cport);
    s.l4 = L4::Tcp {
        syn: true,
        ack: true,
    };
    s
}

/// Runs `prog` on `frame` inside the underlay namespace and asserts that `reply` leaves
/// with source HOST:PUB, redirected, with the MACs the FIB gives for the client.
fn assert_out_of_underlay(u: &Underlay, n: &mut Node, prog: &str, frame: &[u8], reply: &Spec) {
    let out = u.run(|| n.dp().run_tc(prog, frame).unwrap());
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_checksums(&out.packet);
    assert_eq!(
        out.packet,
        framed(
            &reply.with((HOST, PUB), (CLIENT, reply.dport)),
            CLIENT_MAC,
            UNDERLAY_MAC
        ),
        "source HOST:PUB, MACs from the FIB"
    );
}

#[test]
fn ingress_host_reverses_replies_from_the_overlay_and_sends_them_out_of_the_underlay() {
    let u = Underlay::new();
    let mut n = Node::load();
    ingress(&mut n, IPPROTO_TCP, u.ifindex, &[2]);
    assert_delivered(&mut n, &Spec::tcp_syn(CLIENT, 42000, HOST, PUB), 2);
    let (ip, port, mac) = be(2);
    let mut reply = synack(ip, port, 42000);
    reply.payload = b"hello".to_vec();
    // As the backend host sent it back: to the node MAC, over the overlay.
    // Flooded to this node though addressed to another node's MAC: not ours, untouched.
    let flooded = framed(&reply, [0x0a, 0x5e, 192, 0, 2, 9], mac);
    let out = u.run(|| n.dp().run_tc(PROG_FROM_OVERLAY, &flooded).unwrap());
    assert_eq!((out.verdict, out.packet), (TCX_NEXT, flooded));
    let back = framed(&reply, NODE_MAC, mac);
    assert_out_of_underlay(&u, &mut n, PROG_FROM_OVERLAY, &back, &reply);
    assert_eq!(stat(&mut n, Stat::MeshReply), 1);
}

#[test]
fn ingress_host_sends_a_local_backends_reply_out_of_the_underlay() {
    let u = Underlay::new();
    let mut n = Node::load();
    ingress(&mut n, IPPROTO_TCP, u.ifindex, &[1]);
    assert_delivered(&mut n, &Spec::tcp_syn(CLIENT, 43000, HOST, PUB), 1);
    let (ip, port, mac) = be(1);
    let reply = synack(ip, port, 43000);
    let frame = framed(&reply, GATEWAY_MAC, mac);
    assert_out_of_underlay(&u, &mut n, PROG_FROM_LXC, &frame, &reply);
}

#[test]
fn dsr_backend_host_answers_the_client_directly_as_host_pub() {
    // Source HOST:PUB of the ingress node, out of this (the backend's) host's underlay.
    let u = Underlay::new();
    let mut n = Node::load();
    backend_host(&mut n, u.ifindex, MESH_F_DSR);
    let (fwd, reply) = forward_and_reply();
    assert_eq!(run(&mut n, PROG_FROM_OVERLAY, &fwd).verdict, TCX_NEXT);
    let frame = framed(&reply, GATEWAY_MAC, be(2).2);
    assert_out_of_underlay(&u, &mut n, PROG_FROM_LXC, &frame, &reply);
}

#[test]
fn bad_mesh_input_is_refused_and_changes_nothing() {
    let mut n = Node::load();
    let m = n.dp().maps_mut();
    let err = m
        .set_host(Host::new(HOST, 7, [0x01, 0, 0, 0, 0, 1]))
        .unwrap_err();
    assert!(format!("{err}").contains("host mac"), "{err}");
    assert_eq!(m.host().unwrap(), Host::default());
    let err = m
        .upsert_be_loc(
            0,
            BeLoc {
                ifindex: 3,
                mac: NODE_MAC,
                flags: 0,
                pad: 0,
            },
        )
        .unwrap_err();
    assert!(format!("{err}").contains("backend id"), "{err}");
    let err = m
        .upsert_mesh_be(
            SvcKey::new(HOST, 80, 1),
            MeshBe {
                pub_port: PUB.to_be(),
                flags: 0,
                pad: 0,
                overlay_ifindex: 3,
            },
        )
        .unwrap_err();
    assert!(format!("{err}").contains("backend proto"), "{err}");
    assert!(m.be_loc(0).unwrap().is_none());
}

#[test]
fn a_reused_client_port_follows_the_newest_ingress_node() {
    // This host is the ingress node of a flow to its local backend 1, then the same 5-tuple
    // arrives through another ingress node (the client reused its port), then through this
    // host again: each time the replies go where the newest forward packet came from.
    let u = Underlay::new();
    let mut n = Node::load();
    ingress(&mut n, IPPROTO_TCP, u.ifindex, &[1]);
    let other_mac = [0x0a, 0x5e, 192, 0, 2, 3];
    let (ip, port, mac) = be(1);
    let m = n.dp().maps_mut();
    m.upsert_mesh_node(other_mac, Ipv4Addr::new(192, 0, 2, 3))
        .unwrap();
    m.upsert_mesh_be(
        SvcKey::new(ip, port, IPPROTO_TCP),
        MeshBe {
            pub_port: PUB.to_be(),
            flags: 0,
            pad: 0,
            overlay_ifindex: OVERLAY_IFINDEX,
        },
    )
    .unwrap();
    let reply = synack(ip, port, 44000);
    let from_backend = framed(&reply, GATEWAY_MAC, mac);

    assert_delivered(&mut n, &Spec::tcp_syn(CLIENT, 44000, HOST, PUB), 1);
    assert_out_of_underlay(&u, &mut n, PROG_FROM_LXC, &from_backend, &reply);

    let via_other = framed(&Spec::tcp_syn(CLIENT, 44000, ip, port), mac, other_mac);
    assert_eq!(run(&mut n, PROG_FROM_OVERLAY, &via_other).verdict, TCX_NEXT);
    let out = run(&mut n, PROG_FROM_LXC, &from_backend);
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(
        out.packet,
        framed(&reply, other_mac, mac),
        "back to the other node"
    );

    assert_delivered(&mut n, &Spec::tcp_syn(CLIENT, 44000, HOST, PUB), 1);
    assert_out_of_underlay(&u, &mut n, PROG_FROM_LXC, &from_backend, &reply);
}
