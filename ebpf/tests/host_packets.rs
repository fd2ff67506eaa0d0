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
    ingress_with(n, proto, underlay_ifindex, table, 0);
}

/// [`ingress`] with `svc_flags` added to the published frontend's (e.g. `SVC_F_DSR`).
fn ingress_with(n: &mut Node, proto: u8, underlay_ifindex: u32, table: &[u32], svc_flags: u32) {
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
    m.upsert_service(
        SvcKey::new(HOST, PUB, proto),
        Svc {
            id: SVC_ID,
            flags: SVC_F_PUBLISHED | svc_flags,
            affinity_timeout_s: 0,
        },
    )
    .unwrap();
}

/// What a program returns for a packet it leaves alone: the host programs pass it on to the
/// device's other tc filters (TCX_NEXT), the container-side one accepts it.
fn pass(prog: &str) -> u32 {
    if prog == PROG_FROM_LXC {
        TC_ACT_OK
    } else {
        TCX_NEXT
    }
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

/// The connection-table entry of the TCP flow CLIENT:`cport` → HOST:PUB.
fn forward_entry(n: &mut Node, cport: u16) -> CtEntry {
    n.dp()
        .maps()
        .conntrack(&CtKey::new(
            CLIENT,
            cport,
            HOST,
            PUB,
            IPPROTO_TCP,
            CT_DIR_FWD,
        ))
        .unwrap()
        .expect("forward entry")
}

#[test]
fn syn_to_a_published_port_reaches_a_local_backend() {
    let mut n = Node::load();
    ingress(&mut n, IPPROTO_TCP, 7, &[1]);
    let syn = Spec::tcp_syn(CLIENT, 40000, HOST, PUB);
    assert_delivered(&mut n, &syn, 1);
    let ct = forward_entry(&mut n, 40000);
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

/// Says that local backend `ip` serves `published` with its port `target` (`flags`:
/// `MESH_F_DSR` keys it by the published port, as DSR frames arrive).
fn serve(m: &mut Maps, ip: Ipv4Addr, published: u16, target: u16, proto: u8, flags: u8) {
    let port = if flags & MESH_F_DSR != 0 {
        published
    } else {
        target
    };
    m.upsert_mesh_be(
        MeshBeKey::new(ip, port, proto, flags),
        MeshBe {
            pub_port: published.to_be(),
            target_port: target.to_be(),
            flags,
            pad: [0; 3],
            overlay_ifindex: OVERLAY_IFINDEX,
        },
    )
    .unwrap();
}

/// The backend host: knows the ingress node's MACs and that backend 2 serves PUB.
fn backend_host(n: &mut Node, underlay_ifindex: u32, flags: u8) {
    let m = n.dp().maps_mut();
    m.set_host(Host::new(
        Ipv4Addr::new(192, 0, 2, 3),
        underlay_ifindex,
        [0x0a, 0x5e, 0, 0, 0, 3],
    ))
    .unwrap();
    m.upsert_mesh_node(NODE_MAC, HOST, 0).unwrap();
    m.upsert_mesh_node(dsr_mac(NODE_MAC), HOST, MESH_F_DSR)
        .unwrap();
    let (ip, port, _) = be(2);
    serve(m, ip, PUB, port, IPPROTO_TCP, flags);
}

/// The backend host's record of the TCP flow from CLIENT:`cport` to backend 2's port.
fn flow_record(n: &mut Node, cport: u16) -> Option<MeshFlow> {
    let (ip, port, _) = be(2);
    let key = CtKey::new(ip, port, CLIENT, cport, IPPROTO_TCP, CT_DIR_REPLY);
    n.dp().maps().mesh_flow(&key).unwrap()
}

/// The forward frame as the VXLAN device hands it over on the backend host (default mode:
/// translated, from the node MAC; DSR: to the published port, from the DSR MAC), the same
/// frame as it must leave `vx_from_overlay`, and the backend's SYN-ACK as its container
/// sends it (to the gateway MAC).
fn forward_and_reply(flags: u8) -> (Vec<u8>, Vec<u8>, Spec) {
    let (ip, port, mac) = be(2);
    let syn = Spec::tcp_syn(CLIENT, 41000, ip, port);
    let translated = framed(&syn, mac, NODE_MAC);
    if flags & MESH_F_DSR == 0 {
        return (translated.clone(), translated, synack(ip, port, 41000));
    }
    let src = dsr_mac(NODE_MAC);
    let fwd = framed(&syn.with((CLIENT, 41000), (ip, PUB)), mac, src);
    (fwd, framed(&syn, mac, src), synack(ip, port, 41000))
}

#[test]
fn backend_host_sends_replies_back_to_the_ingress_node_over_the_overlay() {
    let mut n = Node::load();
    backend_host(&mut n, 7, 0);
    let (fwd, _, synack) = forward_and_reply(0);
    let out = run(&mut n, PROG_FROM_OVERLAY, &fwd);
    assert_eq!(
        (out.verdict, &out.packet),
        (TCX_NEXT, &fwd),
        "forward passes as it is"
    );
    let (ip, port, mac) = be(2);
    let rec = flow_record(&mut n, 41000).expect("flow recorded");
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
    assert_out_as(u, n, prog, frame, reply, PUB, None);
}

/// [`assert_out_of_underlay`] with source HOST:`published`, and the skb a GSO packet of
/// `gso` = (segment size, segments) when given.
fn assert_out_as(
    u: &Underlay,
    n: &mut Node,
    prog: &str,
    frame: &[u8],
    reply: &Spec,
    published: u16,
    gso: Option<(u32, u32)>,
) {
    let out = u.run(|| match gso {
        Some((size, segs)) => n.dp().run_tc_gso(prog, frame, size, segs).unwrap(),
        None => n.dp().run_tc(prog, frame).unwrap(),
    });
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_checksums(&out.packet);
    assert_eq!(
        out.packet,
        framed(
            &reply.with((HOST, published), (CLIENT, reply.dport)),
            CLIENT_MAC,
            UNDERLAY_MAC
        ),
        "source HOST:{published}, MACs from the FIB"
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
    let (fwd, translated, reply) = forward_and_reply(MESH_F_DSR);
    // The forward frame still carries the published port: the backend's port goes in here.
    let out = run(&mut n, PROG_FROM_OVERLAY, &fwd);
    assert_eq!((out.verdict, &out.packet), (TCX_NEXT, &translated));
    assert_checksums(&out.packet);
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
    let mesh_be = |flags| MeshBe {
        pub_port: PUB.to_be(),
        target_port: 80u16.to_be(),
        flags,
        pad: [0; 3],
        overlay_ifindex: 3,
    };
    let err = m
        .upsert_mesh_be(MeshBeKey::new(HOST, 80, 1, 0), mesh_be(0))
        .unwrap_err();
    assert!(format!("{err}").contains("backend proto"), "{err}");
    // DSR entries are keyed by the published port, default ones by the target port.
    for (key, flags) in [
        (
            MeshBeKey::new(HOST, 80, IPPROTO_TCP, MESH_F_DSR),
            MESH_F_DSR,
        ),
        (MeshBeKey::new(HOST, PUB, IPPROTO_TCP, 0), 0),
        (MeshBeKey::new(HOST, PUB, IPPROTO_TCP, 0), MESH_F_DSR),
    ] {
        let err = m.upsert_mesh_be(key, mesh_be(flags)).unwrap_err();
        assert!(
            format!("{err}").contains("mesh flags") || format!("{err}").contains("backend port"),
            "{err}"
        );
    }
    let err = m.upsert_mesh_node(NODE_MAC, HOST, 2).unwrap_err();
    assert!(format!("{err}").contains("node flags"), "{err}");
    assert!(m.mesh_bes().unwrap().is_empty());
    assert!(m.mesh_nodes().unwrap().is_empty());
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
    m.upsert_mesh_node(other_mac, Ipv4Addr::new(192, 0, 2, 3), 0)
        .unwrap();
    serve(m, ip, PUB, port, IPPROTO_TCP, 0);
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

#[test]
fn dsr_sends_a_remote_backends_flow_with_the_published_port_and_the_dsr_mac() {
    // DSR: the frame into the overlay keeps PUB as its destination port (the backend's host
    // translates it and so knows the published port per flow) and carries the node's DSR
    // MAC; a local backend gets the whole translation here, as in default mode.
    let mut n = Node::load();
    ingress_with(&mut n, IPPROTO_TCP, 7, &[2], SVC_F_DSR);
    let (ip, port, mac) = be(2);
    let syn = Spec::tcp_syn(CLIENT, 40010, HOST, PUB);
    // The next packet of the flow goes by the connection table, alike.
    let mut ack = syn.clone();
    ack.l4 = L4::Tcp {
        syn: false,
        ack: true,
    };
    for s in [syn, ack] {
        let out = run(&mut n, PROG_FROM_UNDERLAY, &s.frame());
        assert_eq!(out.verdict, TC_ACT_REDIRECT);
        assert_checksums(&out.packet);
        assert_eq!(
            out.packet,
            framed(&s.with((CLIENT, 40010), (ip, PUB)), mac, dsr_mac(NODE_MAC))
        );
    }
    let fwd = forward_entry(&mut n, 40010);
    assert_eq!(
        (fwd.nat_ip(), fwd.nat_port(), fwd.backend_id),
        (ip, port, 2)
    );

    let mut n = Node::load();
    ingress_with(&mut n, IPPROTO_TCP, 7, &[1], SVC_F_DSR);
    assert_delivered(&mut n, &Spec::tcp_syn(CLIENT, 40011, HOST, PUB), 1);
}

#[test]
fn dsr_one_target_port_published_twice_answers_each_flow_from_its_own_port() {
    // Ingress node A publishes the service's port 80 as 8080 and as 9090 (DSR); its backend
    // 2 runs on node B. Each flow's frames go from A's vx_from_underlay into B's
    // vx_from_overlay, and B's reply leaves B's underlay with the port the client addressed.
    const PUB2: u16 = 9090;
    let u = Underlay::new();
    let mut a = Node::load();
    ingress_with(&mut a, IPPROTO_TCP, 7, &[2], SVC_F_DSR);
    a.dp()
        .maps_mut()
        .upsert_service(
            SvcKey::new(HOST, PUB2, IPPROTO_TCP),
            Svc {
                id: SVC_ID,
                flags: SVC_F_PUBLISHED | SVC_F_DSR,
                affinity_timeout_s: 0,
            },
        )
        .unwrap();
    let mut b = Node::load();
    backend_host(&mut b, u.ifindex, MESH_F_DSR);
    let (ip, port, mac) = be(2);
    serve(b.dp().maps_mut(), ip, PUB2, port, IPPROTO_TCP, MESH_F_DSR);

    for (cport, published) in [(45000, PUB), (45001, PUB2), (45002, PUB)] {
        let syn = Spec::tcp_syn(CLIENT, cport, HOST, published);
        let over = run(&mut a, PROG_FROM_UNDERLAY, &syn.frame());
        assert_eq!(over.verdict, TC_ACT_REDIRECT);
        let into_backend = run(&mut b, PROG_FROM_OVERLAY, &over.packet);
        assert_eq!(into_backend.verdict, TCX_NEXT);
        assert_checksums(&into_backend.packet);
        assert_eq!(
            into_backend.packet,
            framed(
                &syn.with((CLIENT, cport), (ip, port)),
                mac,
                dsr_mac(NODE_MAC)
            ),
            "the backend gets its own port"
        );
        // The reply comes from HOST:published, the port this flow's client addressed.
        let reply = synack(ip, port, cport);
        let frame = framed(&reply, GATEWAY_MAC, mac);
        assert_out_as(&u, &mut b, PROG_FROM_LXC, &frame, &reply, published, None);
    }
}

#[test]
fn a_published_port_whose_backends_are_all_gone_drops_and_counts() {
    // The table still names backend 3, which has left vx_backend (reported down, removed):
    // no healthy backend, nothing delivered, counted; the empty table is the other case
    // (published_port_without_a_healthy_backend_drops_and_counts).
    let mut n = Node::load();
    ingress(&mut n, IPPROTO_TCP, 7, &[3]);
    let syn = Spec::tcp_syn(CLIENT, 40020, HOST, PUB).frame();
    let out = run(&mut n, PROG_FROM_UNDERLAY, &syn);
    assert_eq!((out.verdict, out.packet), (TC_ACT_SHOT, syn));
    assert_eq!(n.dp().maps().service_stats(SVC_ID).unwrap().no_backend, 1);
    assert_eq!(stat(&mut n, Stat::NoBackend), 1);
    assert_eq!(stat(&mut n, Stat::MeshFwd), 0);
    assert_eq!(n.dp().maps().conntrack_fill().unwrap().entries, 0);
}

#[test]
fn truncated_headers_pass_the_overlay_and_reply_programs_untouched() {
    let mut n = Node::load();
    backend_host(&mut n, 7, 0);
    let (ip, port, mac) = be(2);
    let whole = framed(&Spec::tcp_syn(CLIENT, 41010, ip, port), mac, NODE_MAC);
    let mut ihl15 = whole.clone();
    ihl15[14] = 0x4f;
    let mut long = whole.clone();
    long[16..18].copy_from_slice(&200u16.to_be_bytes());
    for prog in [PROG_FROM_OVERLAY, PROG_FROM_LXC] {
        for frame in [ihl15.clone(), long.clone(), whole[..14 + 30].to_vec()] {
            let before = stat(&mut n, Stat::Truncated);
            let out = run(&mut n, prog, &frame);
            assert_eq!((out.verdict, &out.packet), (pass(prog), &frame), "{prog}");
            assert_eq!(stat(&mut n, Stat::Truncated), before + 1, "{prog}");
        }
    }
    assert!(flow_record(&mut n, 41010).is_none());
}

#[test]
fn ip_options_on_the_overlay_path_and_the_turned_back_reply() {
    // NOP ×4, a timestamp option (RFC 791) of 8 bytes: the ports are found behind them.
    let options = vec![1, 1, 1, 1, 0x44, 4, 5, 0, 1, 1, 1, 0];
    let mut n = Node::load();
    ingress(&mut n, IPPROTO_TCP, 7, &[2]);
    let mut syn = Spec::tcp_syn(CLIENT, 41020, HOST, PUB);
    syn.options = options.clone();
    assert_delivered(&mut n, &syn, 2);

    let mut n = Node::load();
    backend_host(&mut n, 7, 0);
    let (ip, port, mac) = be(2);
    let fwd = framed(&syn.with((CLIENT, 41020), (ip, port)), mac, NODE_MAC);
    let out = run(&mut n, PROG_FROM_OVERLAY, &fwd);
    assert_eq!((out.verdict, &out.packet), (TCX_NEXT, &fwd));
    let mut reply = synack(ip, port, 41020);
    reply.options = options;
    let out = run(&mut n, PROG_FROM_LXC, &framed(&reply, GATEWAY_MAC, mac));
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(out.packet, framed(&reply, NODE_MAC, mac));
}

#[test]
fn fragments_of_a_dsr_reply_leave_as_host_pub() {
    // A UDP reply cut in two on the backend host: the first fragment carries the ports and
    // leaves them in vx_frag, the later one (no UDP header) gets the same source address.
    let u = Underlay::new();
    let mut n = Node::load();
    backend_host(&mut n, u.ifindex, MESH_F_DSR);
    let (ip, port, mac) = be(2);
    serve(n.dp().maps_mut(), ip, PUB, port, IPPROTO_UDP, MESH_F_DSR);
    let query = Spec::udp(CLIENT, 6001, ip, PUB, b"q");
    let fwd = framed(&query, mac, dsr_mac(NODE_MAC));
    let out = run(&mut n, PROG_FROM_OVERLAY, &fwd);
    assert_eq!(out.verdict, TCX_NEXT);
    assert_eq!(
        out.packet,
        framed(
            &query.with((CLIENT, 6001), (ip, port)),
            mac,
            dsr_mac(NODE_MAC)
        )
    );

    let answer = Spec::udp(ip, port, CLIENT, 6001, &[9u8; 64]);
    let (first, later) = answer.fragments(32);
    let (want_first, want_later) = answer.with((HOST, PUB), (CLIENT, 6001)).fragments(32);
    for (frag, want) in [(first, want_first), (later, want_later)] {
        let mut frame = frag;
        frame[..6].copy_from_slice(&GATEWAY_MAC);
        frame[6..12].copy_from_slice(&mac);
        let out = u.run(|| n.dp().run_tc(PROG_FROM_LXC, &frame).unwrap());
        assert_eq!(out.verdict, TC_ACT_REDIRECT);
        assert_checksums(&out.packet);
        let mut want = want;
        want[..6].copy_from_slice(&CLIENT_MAC);
        want[6..12].copy_from_slice(&UNDERLAY_MAC);
        assert_eq!(out.packet, want);
    }
}

#[test]
fn a_gso_reply_larger_than_the_underlay_mtu_leaves_whole() {
    // A TSO reply of the backend's TCP, or one that GRO merged on its way over the overlay, is
    // one skb standing for several segments: the FIB lookup must check its segments against
    // the underlay's MTU (1500 here), not its whole length, or every such reply is dropped.
    const MSS: u32 = 1398;
    let data = |src: (Ipv4Addr, u16), cport: u16| {
        let mut s = Spec::tcp_syn(src.0, src.1, CLIENT, cport);
        s.l4 = L4::Tcp {
            syn: false,
            ack: true,
        };
        s.payload = vec![0x5a; 2 * MSS as usize];
        s
    };
    let u = Underlay::new();
    let (ip, port, mac) = be(2);

    // Default mode, the ingress host: the reply back from the overlay.
    let mut n = Node::load();
    ingress(&mut n, IPPROTO_TCP, u.ifindex, &[2]);
    assert_delivered(&mut n, &Spec::tcp_syn(CLIENT, 46000, HOST, PUB), 2);
    let reply = data((ip, port), 46000);
    let back = framed(&reply, NODE_MAC, mac);
    assert!(back.len() > 1514);
    let gso = Some((MSS, 2));
    assert_out_as(&u, &mut n, PROG_FROM_OVERLAY, &back, &reply, PUB, gso);
    assert_eq!(stat(&mut n, Stat::NatError), 0);

    // DSR, the backend host: the reply from the backend's veth.
    let mut b = Node::load();
    backend_host(&mut b, u.ifindex, MESH_F_DSR);
    let (fwd, _, _) = forward_and_reply(MESH_F_DSR);
    assert_eq!(run(&mut b, PROG_FROM_OVERLAY, &fwd).verdict, TCX_NEXT);
    let reply = data((ip, port), 41000);
    let frame = framed(&reply, GATEWAY_MAC, mac);
    assert_out_as(&u, &mut b, PROG_FROM_LXC, &frame, &reply, PUB, gso);
    assert_eq!(stat(&mut b, Stat::NatError), 0);
}
