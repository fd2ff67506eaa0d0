//! The overlay fast path (`overlay_fast.c`) under BPF_PROG_TEST_RUN, on frames built with
//! etherparse. The programs key everything by the interface a frame arrives on and check
//! the MTU of the device they would send it to, so the runs happen in a network namespace
//! of the test's own holding those devices: two host-side veths of network A, one of
//! network B, and each network's VXLAN device (MTU 1450, as an agent makes them). Each test
//! asserts the verdict, the exact output frame (unchanged, or the exact ARP reply) and the
//! counter of the path taken: a test run does not carry a redirect out, so the counters tell
//! which kind of redirect the program chose (delivery itself is shown end to end by the lab
//! tests run with `VXMESH_TEST_DATAPATH=ebpf`).
mod common;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use common::netns::TestNs;
use common::*;
use vxmesh_ebpf::fast::*;
use vxmesh_ebpf::{PROG_FAST_FROM_LXC, PROG_FAST_FROM_VXLAN, TCX_NEXT, TC_ACT_REDIRECT};

const VNI_A: u32 = 4096;
const VNI_B: u32 = 4097;
const MTU: u32 = 1450;
const GW_A: Ipv4Addr = Ipv4Addr::new(10, 10, 1, 1);
const GW_MAC_A: [u8; 6] = [0x0a, 0x58, 10, 10, 1, 1];
/// Local endpoints of network A (host veths `la1`, `la2`) and of B (`lb1`).
const A1: (Ipv4Addr, [u8; 6]) = (Ipv4Addr::new(10, 10, 1, 2), [0x0a, 0x58, 10, 10, 1, 2]);
const A2: (Ipv4Addr, [u8; 6]) = (Ipv4Addr::new(10, 10, 1, 3), [0x0a, 0x58, 10, 10, 1, 3]);
const B1: (Ipv4Addr, [u8; 6]) = (Ipv4Addr::new(10, 10, 2, 2), [0x0a, 0x58, 10, 10, 2, 2]);
/// Remote endpoints: R on network A, S on network B, both on host 192.0.2.2.
const R: (Ipv4Addr, [u8; 6]) = (Ipv4Addr::new(10, 10, 1, 9), [0x0a, 0x58, 10, 10, 1, 9]);
const S: (Ipv4Addr, [u8; 6]) = (Ipv4Addr::new(10, 10, 2, 9), [0x0a, 0x58, 10, 10, 2, 9]);
const VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const BCAST: [u8; 6] = [0xff; 6];

/// The test's namespace with its devices, and a fast path loaded under a pin root of its
/// own (both removed on drop).
struct Fixture {
    ns: TestNs,
    fp: Option<FastPath>,
    root: PathBuf,
    node: String,
    la1: u32,
    la2: u32,
    lb1: u32,
    vxa: u32,
    vxb: u32,
}

impl Fixture {
    fn new() -> Self {
        let ns = TestNs::new("vxf");
        for (host, peer) in [("la1", "ca1"), ("la2", "ca2"), ("lb1", "cb1")] {
            ns.ip(&[
                "link", "add", host, "mtu", "1450", "type", "veth", "peer", "name", peer, "mtu",
                "1450",
            ]);
        }
        for (dev, vni) in [("vxa", VNI_A), ("vxb", VNI_B)] {
            ns.ip(&[
                "link",
                "add",
                dev,
                "mtu",
                "1450",
                "type",
                "vxlan",
                "id",
                &vni.to_string(),
                "dstport",
                "4789",
                "local",
                "192.0.2.1",
                "nolearning",
            ]);
        }
        let node = unique("f");
        let root = PathBuf::from(format!("/sys/fs/bpf/vxmesh-test-{}", unique("fast")));
        let fp = FastPath::load(&root, &node).unwrap_or_else(|e| {
            let _ = teardown_fast(&root, &node);
            panic!("load the fast path: {e}")
        });
        let mut f = Fixture {
            la1: ns.ifindex("la1"),
            la2: ns.ifindex("la2"),
            lb1: ns.ifindex("lb1"),
            vxa: ns.ifindex("vxa"),
            vxb: ns.ifindex("vxb"),
            ns,
            fp: Some(fp),
            root,
            node,
        };
        let want = f.state(0);
        f.fp().maps_mut().sync(&want).expect("fill the maps");
        f
    }

    fn fp(&mut self) -> &mut FastPath {
        self.fp.as_mut().expect("loaded")
    }

    /// What an agent would write for this host, with `a2_flags` extra on A2's entry.
    fn state(&self, a2_flags: u32) -> FastState {
        let mut s = FastState::default();
        let port = |vni, vxlan| FastPort {
            vni,
            vxlan_ifindex: vxlan,
            flags: 0,
        };
        s.ports.insert(self.la1, port(VNI_A, self.vxa));
        s.ports.insert(self.la2, port(VNI_A, self.vxa));
        s.ports.insert(self.lb1, port(VNI_B, self.vxb));
        for (vxlan, vni) in [(self.vxa, VNI_A), (self.vxb, VNI_B)] {
            s.ports.insert(
                vxlan,
                FastPort {
                    vni,
                    vxlan_ifindex: vxlan,
                    flags: PORT_F_VXLAN,
                },
            );
        }
        let local = |ifindex, flags| FastL2 {
            ifindex,
            flags: L2_F_LOCAL | flags,
        };
        s.l2.insert(FastMacKey::new(VNI_A, A1.1), local(self.la1, 0));
        s.l2.insert(FastMacKey::new(VNI_A, A2.1), local(self.la2, a2_flags));
        s.l2.insert(FastMacKey::new(VNI_B, B1.1), local(self.lb1, 0));
        let remote = |ifindex| FastL2 { ifindex, flags: 0 };
        s.l2.insert(FastMacKey::new(VNI_A, R.1), remote(self.vxa));
        s.l2.insert(FastMacKey::new(VNI_B, S.1), remote(self.vxb));
        s.eps
            .insert(FastIpKey::new(VNI_A, GW_A), FastEp::gateway(GW_MAC_A));
        s.eps
            .insert(FastIpKey::new(VNI_A, A1.0), FastEp::local(A1.1, self.la1));
        s.eps
            .insert(FastIpKey::new(VNI_A, A2.0), FastEp::local(A2.1, self.la2));
        s.eps
            .insert(FastIpKey::new(VNI_B, B1.0), FastEp::local(B1.1, self.lb1));
        s.eps
            .insert(FastIpKey::new(VNI_A, R.0), FastEp::remote(R.1, VTEP));
        s.eps
            .insert(FastIpKey::new(VNI_B, S.0), FastEp::remote(S.1, VTEP));
        s
    }

    /// Runs `prog` on `frame` arriving on `ifindex`, inside the test's namespace.
    fn run(&mut self, prog: &str, frame: &[u8], ifindex: u32) -> vxmesh_ebpf::TcRun {
        let fp = self.fp.as_ref().expect("loaded");
        self.ns
            .run(|| fp.run_tc(prog, frame, ifindex))
            .expect("test run")
    }

    fn stat(&mut self, s: FastStat) -> u64 {
        self.fp().maps().stat(s).unwrap()
    }

    /// Runs `prog` and asserts the frame went on untouched to the next program (TCX_NEXT).
    fn assert_passed(&mut self, prog: &str, frame: &[u8], ifindex: u32, why: &str) {
        let out = self.run(prog, frame, ifindex);
        assert_eq!(
            (out.verdict, &out.packet),
            (TCX_NEXT, &frame.to_vec()),
            "{why}"
        );
    }

    /// Runs `prog` and asserts it redirected the frame unchanged, counted in `stat`.
    fn assert_redirected(&mut self, prog: &str, frame: &[u8], ifindex: u32, stat: FastStat) {
        let before = self.stat(stat);
        let out = self.run(prog, frame, ifindex);
        assert_eq!(
            (out.verdict, &out.packet),
            (TC_ACT_REDIRECT, &frame.to_vec())
        );
        assert_eq!(self.stat(stat), before + 1, "counted as {stat:?}");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        drop(self.fp.take());
        if let Err(e) = teardown_fast(&self.root, &self.node) {
            eprintln!("teardown of {}: {e}", self.node);
        }
    }
}

/// A UDP datagram from `src` to `dst` (addresses and MACs) with `len` bytes of payload.
fn udp(src: (Ipv4Addr, [u8; 6]), dst: (Ipv4Addr, [u8; 6]), len: usize) -> Vec<u8> {
    let mut f = Spec::udp(src.0, 40000, dst.0, 7000, &vec![0x5a; len]).frame();
    f[0..6].copy_from_slice(&dst.1);
    f[6..12].copy_from_slice(&src.1);
    f
}

fn tcp(src: (Ipv4Addr, [u8; 6]), dst: (Ipv4Addr, [u8; 6])) -> Vec<u8> {
    let mut f = Spec::tcp_syn(src.0, 40000, dst.0, 80).frame();
    f[0..6].copy_from_slice(&dst.1);
    f[6..12].copy_from_slice(&src.1);
    f
}

#[test]
fn a_frame_to_a_remote_endpoint_goes_straight_to_its_networks_vxlan_device() {
    let mut f = Fixture::new();
    let (la1, lb1) = (f.la1, f.lb1);
    f.assert_redirected(PROG_FAST_FROM_LXC, &tcp(A1, R), la1, FastStat::TxRemote);
    f.assert_redirected(
        PROG_FAST_FROM_LXC,
        &udp(A1, R, 100),
        la1,
        FastStat::TxRemote,
    );
    f.assert_redirected(
        PROG_FAST_FROM_LXC,
        &udp(B1, S, 100),
        lb1,
        FastStat::TxRemote,
    );
    // Any EtherType goes by its destination MAC, as the bridge forwards it.
    let mut ipv6ish = udp(A1, R, 100);
    ipv6ish[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    f.assert_redirected(PROG_FAST_FROM_LXC, &ipv6ish, la1, FastStat::TxRemote);
}

#[test]
fn a_frame_to_a_local_endpoint_goes_straight_into_its_container() {
    let mut f = Fixture::new();
    let (la1, la2) = (f.la1, f.la2);
    f.assert_redirected(PROG_FAST_FROM_LXC, &tcp(A1, A2), la1, FastStat::TxLocal);
    f.assert_redirected(PROG_FAST_FROM_LXC, &tcp(A2, A1), la2, FastStat::TxLocal);
    // A frame to the sender's own MAC is the bridge's business.
    f.assert_passed(PROG_FAST_FROM_LXC, &tcp(A1, A1), la1, "to itself");
    // Delivery through the veth's egress (services there) is a redirect too.
    let want = f.state(L2_F_EGRESS);
    assert_eq!(f.fp().maps_mut().sync(&want).unwrap().written, 1);
    f.assert_redirected(PROG_FAST_FROM_LXC, &tcp(A1, A2), la1, FastStat::TxLocal);
}

#[test]
fn what_is_not_between_known_endpoints_of_one_network_goes_the_bridges_way() {
    let mut f = Fixture::new();
    let (la1, lb1, vxa) = (f.la1, f.lb1, f.vxa);
    let passes = f.stat(FastStat::Pass);
    // The gateway (routed by the host), an unknown MAC, a multicast and a broadcast frame.
    f.assert_passed(
        PROG_FAST_FROM_LXC,
        &tcp(A1, (GW_A, GW_MAC_A)),
        la1,
        "to the gateway",
    );
    let stranger = (Ipv4Addr::new(10, 10, 1, 77), [0x02, 0, 0, 0, 0, 0x77]);
    f.assert_passed(PROG_FAST_FROM_LXC, &tcp(A1, stranger), la1, "unknown MAC");
    f.assert_passed(
        PROG_FAST_FROM_LXC,
        &udp(A1, (R.0, [0x01, 0, 0x5e, 0, 0, 1]), 10),
        la1,
        "multicast",
    );
    f.assert_passed(
        PROG_FAST_FROM_LXC,
        &udp(A1, (R.0, BCAST), 10),
        la1,
        "broadcast",
    );
    assert_eq!(f.stat(FastStat::Pass), passes + 2, "two unicast misses");
    // Isolation: network B's endpoints are unknown on network A's veth, and the reverse.
    f.assert_passed(PROG_FAST_FROM_LXC, &tcp(A1, S), la1, "A to B's remote");
    f.assert_passed(PROG_FAST_FROM_LXC, &tcp(A1, B1), la1, "A to B's local");
    f.assert_passed(PROG_FAST_FROM_LXC, &tcp(B1, R), lb1, "B to A's remote");
    // An interface without a port entry, and the wrong program for a port.
    let lo = 1;
    f.assert_passed(PROG_FAST_FROM_LXC, &tcp(A1, R), lo, "no port");
    f.assert_passed(PROG_FAST_FROM_LXC, &tcp(R, A1), vxa, "VXLAN port");
    f.assert_passed(PROG_FAST_FROM_VXLAN, &tcp(R, A1), la1, "veth port");
}

#[test]
fn a_frame_over_the_vxlan_devices_mtu_is_left_to_the_bridge() {
    let mut f = Fixture::new();
    let la1 = f.la1;
    // Exactly the MTU: 1450 bytes of IP (20 + 8 + 1422), sent on.
    let fits = udp(A1, R, MTU as usize - 28);
    assert_eq!(fits.len(), 14 + MTU as usize);
    f.assert_redirected(PROG_FAST_FROM_LXC, &fits, la1, FastStat::TxRemote);
    // One byte more: the bridge decides (and drops it, as on the bridge path).
    let too_big = f.stat(FastStat::TooBig);
    let over = udp(A1, R, MTU as usize - 27);
    f.assert_passed(PROG_FAST_FROM_LXC, &over, la1, "over the MTU");
    assert_eq!(f.stat(FastStat::TooBig), too_big + 1);
    // The same for a local container (its veth's MTU) and from the VXLAN device.
    f.assert_passed(PROG_FAST_FROM_LXC, &udp(A1, A2, 1423), la1, "local, over");
    let vxa = f.vxa;
    f.assert_passed(PROG_FAST_FROM_VXLAN, &udp(R, A1, 1423), vxa, "in, over");
    assert_eq!(f.stat(FastStat::TooBig), too_big + 3);
}

#[test]
fn a_frame_from_a_remote_endpoint_goes_straight_into_the_local_container() {
    let mut f = Fixture::new();
    let (vxa, vxb) = (f.vxa, f.vxb);
    f.assert_redirected(PROG_FAST_FROM_VXLAN, &tcp(R, A1), vxa, FastStat::RxLocal);
    f.assert_redirected(
        PROG_FAST_FROM_VXLAN,
        &udp(R, A2, 1422),
        vxa,
        FastStat::RxLocal,
    );
    f.assert_redirected(PROG_FAST_FROM_VXLAN, &tcp(S, B1), vxb, FastStat::RxLocal);
    // Not from a remote endpoint of this network: a MAC the store does not name (a
    // routing-mesh ingress node, a peer set up by hand), a local one, another network's.
    let node_mac = (Ipv4Addr::new(10, 99, 0, 1), [0x0e, 0, 0, 0, 0, 1]);
    f.assert_passed(
        PROG_FAST_FROM_VXLAN,
        &tcp(node_mac, A1),
        vxa,
        "unknown source",
    );
    f.assert_passed(PROG_FAST_FROM_VXLAN, &tcp(A2, A1), vxa, "local source");
    f.assert_passed(PROG_FAST_FROM_VXLAN, &tcp(S, A1), vxa, "B's remote");
    // Not to a local endpoint of this network.
    f.assert_passed(PROG_FAST_FROM_VXLAN, &tcp(R, B1), vxa, "B's local on A");
    f.assert_passed(PROG_FAST_FROM_VXLAN, &tcp(R, R), vxa, "to a remote MAC");
    f.assert_passed(
        PROG_FAST_FROM_VXLAN,
        &tcp(R, (GW_A, GW_MAC_A)),
        vxa,
        "to the gateway",
    );
    f.assert_passed(
        PROG_FAST_FROM_VXLAN,
        &udp(R, (A1.0, BCAST), 10),
        vxa,
        "bcast",
    );
}

/// An endpoint as ARP names it: (MAC, address).
fn who(e: (Ipv4Addr, [u8; 6])) -> ([u8; 6], Ipv4Addr) {
    (e.1, e.0)
}

#[test]
fn arp_requests_for_endpoints_and_the_gateway_are_answered_from_the_map() {
    let mut f = Fixture::new();
    let (la1, lb1) = (f.la1, f.lb1);
    let request = |asker: (Ipv4Addr, [u8; 6]), target: Ipv4Addr| {
        arp_frame((BCAST, asker.1), 1, who(asker), ([0; 6], target))
    };
    for (target, mac) in [(R.0, R.1), (GW_A, GW_MAC_A), (A2.0, A2.1)] {
        let before = f.stat(FastStat::ArpReply);
        let out = f.run(PROG_FAST_FROM_LXC, &request(A1, target), la1);
        assert_eq!(out.verdict, TC_ACT_REDIRECT, "{target}: back to the asker");
        assert_eq!(
            out.packet,
            arp_frame((A1.1, mac), 2, (mac, target), who(A1)),
            "{target} is at {mac:02x?}"
        );
        assert_eq!(f.stat(FastStat::ArpReply), before + 1);
    }
    let out = f.run(PROG_FAST_FROM_LXC, &request(B1, S.0), lb1);
    assert_eq!(out.packet, arp_frame((B1.1, S.1), 2, (S.1, S.0), who(B1)));

    // Not answered: another network's address, an unknown one, a reply, a gratuitous ARP, a
    // probe (sender 0.0.0.0), a truncated request; and nothing from the VXLAN side.
    let unknown = Ipv4Addr::new(10, 10, 1, 77);
    for (frame, why) in [
        (request(A1, S.0), "B's address on A"),
        (request(B1, R.0), "A's address on B"),
        (request(A1, unknown), "unknown"),
        (arp_frame((R.1, A1.1), 2, who(A1), who(R)), "a reply"),
        (request(A1, A1.0), "gratuitous"),
        (
            arp_frame(
                (BCAST, A1.1),
                1,
                (A1.1, Ipv4Addr::UNSPECIFIED),
                ([0; 6], R.0),
            ),
            "probe",
        ),
        (request(A1, R.0)[..41].to_vec(), "truncated"),
    ] {
        let port = if why == "A's address on B" { lb1 } else { la1 };
        f.assert_passed(PROG_FAST_FROM_LXC, &frame, port, why);
    }
    let vxa = f.vxa;
    f.assert_passed(PROG_FAST_FROM_VXLAN, &request(R, A1.0), vxa, "from afar");
}

/// A change that makes a wanted state bad.
type Spoil = Box<dyn Fn(&mut FastState)>;

#[test]
fn the_maps_follow_the_wanted_state_and_refuse_bad_entries() {
    let mut f = Fixture::new();
    let want = f.state(0);
    // A second sync of the same state changes nothing; the maps read back equal.
    let n = f.fp().maps_mut().sync(&want).unwrap();
    assert_eq!((n.written, n.removed), (0, 0));
    assert_eq!(f.fp().maps().state().unwrap(), want);

    // A remote endpoint gone: its entries go, and its frames take the bridge's way.
    let mut less = want.clone();
    less.l2.remove(&FastMacKey::new(VNI_A, R.1));
    less.eps.remove(&FastIpKey::new(VNI_A, R.0));
    let n = f.fp().maps_mut().sync(&less).unwrap();
    assert_eq!((n.written, n.removed), (0, 2));
    let la1 = f.la1;
    f.assert_passed(PROG_FAST_FROM_LXC, &tcp(A1, R), la1, "R is gone");

    // Bad entries: an error naming the field, and nothing changed.
    let bad: [(&str, Spoil); 5] = [
        (
            "vni",
            Box::new(|s| {
                s.l2.insert(FastMacKey::new(1 << 24, R.1), FastL2::default());
            }),
        ),
        (
            "l2 mac",
            Box::new(|s| {
                s.l2.insert(
                    FastMacKey::new(VNI_A, BCAST),
                    FastL2 {
                        ifindex: 5,
                        flags: 0,
                    },
                );
            }),
        ),
        (
            "port ifindex",
            Box::new(|s| {
                s.ports.insert(0, FastPort::default());
            }),
        ),
        (
            "l2 flags",
            Box::new(|s| {
                s.l2.insert(
                    FastMacKey::new(VNI_A, R.1),
                    FastL2 {
                        ifindex: 5,
                        flags: L2_F_EGRESS,
                    },
                );
            }),
        ),
        (
            "endpoint addr",
            Box::new(|s| {
                s.eps.insert(
                    FastIpKey::new(VNI_A, Ipv4Addr::UNSPECIFIED),
                    FastEp::remote(R.1, VTEP),
                );
            }),
        ),
    ];
    for (field, spoil) in bad {
        let mut s = want.clone();
        spoil(&mut s);
        let e = f.fp().maps_mut().sync(&s).unwrap_err().to_string();
        assert!(e.contains(field), "{field}: {e}");
        assert_eq!(f.fp().maps().state().unwrap(), less, "unchanged by {field}");
    }
    assert_eq!(FastStat::ALL.len() as u32, FAST_STAT_MAX);
}
