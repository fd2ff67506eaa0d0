//! `#[repr(C)]` mirrors of every map key and value in `bpf/include/vxmesh_maps.h`.
//!
//! Each struct has the C struct's name (`vx_svc_key` → [`SvcKey`]), fields in the same
//! order with the same widths, and const assertions of its size and of every field's
//! offset; `tests/btf_layout.rs` checks the same numbers against the compiled objects' BTF.
//! Addresses and ports are stored exactly as in the packet (network byte order): build them
//! with [`SvcKey::new`], [`Backend::new`] and friends rather than by hand.

use std::{mem::offset_of, net::Ipv4Addr};

/// IANA protocol number of TCP (RFC 9293).
pub const IPPROTO_TCP: u8 = 6;
/// IANA protocol number of UDP (RFC 768).
pub const IPPROTO_UDP: u8 = 17;

/// `vx_svc.flags`: pick by client identity and remember the pick (`VX_SVC_F_AFFINITY`).
pub const SVC_F_AFFINITY: u32 = 1 << 0;
/// `vx_svc.flags`: the key is a published port HOST:PUB of this host's underlay address,
/// balanced by `vx_from_underlay` (`VX_SVC_F_PUBLISHED`).
pub const SVC_F_PUBLISHED: u32 = 1 << 1;
/// `vx_svc.flags`, with [`SVC_F_PUBLISHED`]: the service answers in DSR mode; a flow to a
/// remote backend crosses the overlay with the published port as its destination port and
/// the node's DSR MAC ([`dsr_mac`]) as its source (`VX_SVC_F_DSR`).
pub const SVC_F_DSR: u32 = 1 << 2;
/// `vx_ct_entry.flags`: a routing-mesh flow of this ingress host (`VX_CT_F_MESH`).
pub const CT_F_MESH: u8 = 1 << 0;
/// `vx_be_loc.flags`: the backend runs on this host (`VX_BE_LOC_F_LOCAL`).
pub const BE_LOC_F_LOCAL: u8 = 1 << 0;
/// `vx_mesh_node.flags`, [`MeshBeKey::flags`], `vx_mesh_be.flags`, `vx_mesh_flow.flags`:
/// direct server return (`VX_MESH_F_DSR`).
pub const MESH_F_DSR: u8 = 1 << 0;
/// The bit of a node MAC's second octet that its DSR MAC has flipped (`VX_MESH_DSR_MAC_BIT`).
pub const MESH_DSR_MAC_BIT: u8 = 0x01;

/// The DSR MAC of the node named `node_mac`: the source MAC of the DSR frames it forwards
/// into the overlay (`0a:5e:…` → `0a:5f:…`), as `vx_from_underlay` derives it.
pub fn dsr_mac(node_mac: [u8; 6]) -> [u8; 6] {
    let mut m = node_mac;
    m[1] ^= MESH_DSR_MAC_BIT;
    m
}
/// `vx_backend.flags`: draining (`VX_BE_F_DRAINING`): existing flows stay, a remembered
/// affinity pick is ignored.
pub const BE_F_DRAINING: u8 = 1 << 0;
/// `vx_ct_key.dir` of the original direction (client → frontend).
pub const CT_DIR_FWD: u8 = 0;
/// `vx_ct_key.dir` of the reply direction (backend → client).
pub const CT_DIR_REPLY: u8 = 1;
/// Slot of a Maglev inner table that holds its size M (`VX_MAGLEV_SIZE_SLOT`).
pub const MAGLEV_SIZE_SLOT: u32 = 0;
/// Bit set in [`AffKey::client`] for socket-path identities (`VX_AFF_CLIENT_NETNS`).
pub const AFF_CLIENT_NETNS: u64 = 1 << 63;

fn be32(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}
fn ip(be: u32) -> Ipv4Addr {
    Ipv4Addr::from(be.to_ne_bytes())
}

/// `struct vx_svc_key`: a frontend (address, port, protocol), the key of `vx_svc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SvcKey {
    /// IPv4 address, network byte order.
    pub addr: u32,
    /// Port, network byte order.
    pub port: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub proto: u8,
    /// Must be 0.
    pub pad: u8,
}

impl SvcKey {
    /// The key of frontend `addr:port` (host-order port) for protocol `proto`.
    pub fn new(addr: Ipv4Addr, port: u16, proto: u8) -> Self {
        Self {
            addr: be32(addr),
            port: port.to_be(),
            proto,
            pad: 0,
        }
    }
}

/// `struct vx_svc`: the value of `vx_svc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Svc {
    /// Service id (key of `vx_maglev` and `vx_svc_stats`); never 0.
    pub id: u32,
    /// `SVC_F_*` flags.
    pub flags: u32,
    /// Seconds an affinity pick stays valid; 0: until the LRU evicts it.
    pub affinity_timeout_s: u32,
}

/// `struct vx_backend`: the value of `vx_backend` (key: backend id, never 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// IPv4 address, network byte order.
    pub addr: u32,
    /// Port, network byte order.
    pub port: u16,
    /// `BE_F_*` flags.
    pub flags: u8,
    /// Must be 0.
    pub pad: u8,
}

impl Backend {
    /// Backend `addr:port` (host-order port) with `flags`.
    pub fn new(addr: Ipv4Addr, port: u16, flags: u8) -> Self {
        Self {
            addr: be32(addr),
            port: port.to_be(),
            flags,
            pad: 0,
        }
    }
}

/// `ip()` and `port()` (host order) of a struct with network-order `addr` and `port`.
macro_rules! addr_port {
    ($($t:ty),*) => {$(
        impl $t {
            /// The address.
            pub fn ip(&self) -> Ipv4Addr {
                ip(self.addr)
            }
            /// The port, host order.
            pub fn port(&self) -> u16 {
                u16::from_be(self.port)
            }
        }
    )*};
}
addr_port!(SvcKey, Backend, MeshBeKey);

/// `struct vx_be_stats`: per-CPU counters of one backend (`vx_be_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BeStats {
    /// Packets the packet path sent to the backend, plus datagrams sendmsg4 sent.
    pub packets: u64,
    /// Bytes of the packet path's packets (the socket path counts none).
    pub bytes: u64,
    /// New connections: conntrack entries made, connect4/sendmsg4 picks.
    pub conns: u64,
}

/// `struct vx_svc_stats`: per-CPU counters of one service (`vx_svc_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SvcStats {
    /// Packets dropped and connects refused because the service had no backend.
    pub no_backend: u64,
}

/// `struct vx_ct_key`: a 5-tuple as seen on the wire, and its direction (`vx_ct`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    /// Source IPv4 address, network order.
    pub saddr: u32,
    /// Destination IPv4 address, network order.
    pub daddr: u32,
    /// Source port, network order.
    pub sport: u16,
    /// Destination port, network order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// [`CT_DIR_FWD`] or [`CT_DIR_REPLY`].
    pub dir: u8,
    /// Must be 0.
    pub pad: u16,
}

impl CtKey {
    /// The key of the packet `saddr:sport → daddr:dport` (host-order ports) in direction `dir`.
    pub fn new(
        saddr: Ipv4Addr,
        sport: u16,
        daddr: Ipv4Addr,
        dport: u16,
        proto: u8,
        dir: u8,
    ) -> Self {
        Self {
            saddr: be32(saddr),
            daddr: be32(daddr),
            sport: sport.to_be(),
            dport: dport.to_be(),
            proto,
            dir,
            pad: 0,
        }
    }
}

/// `struct vx_ct_entry`: what to write into a packet of the flow (`vx_ct`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    /// Forward: the new destination (backend); reply: the new source (frontend). Network order.
    pub nat_addr: u32,
    /// The matching port, network order.
    pub nat_port: u16,
    /// Reserved, 0.
    pub flags: u8,
    /// Padding.
    pub pad: u8,
    /// The flow's backend.
    pub backend_id: u32,
    /// The flow's service.
    pub svc_id: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC, ns) when the flow was first seen.
    pub created_ns: u64,
}

impl CtEntry {
    /// The NAT address.
    pub fn nat_ip(&self) -> Ipv4Addr {
        ip(self.nat_addr)
    }
    /// The NAT port, host order.
    pub fn nat_port(&self) -> u16 {
        u16::from_be(self.nat_port)
    }
}

/// `struct vx_aff_key`: (client identity, service), the key of `vx_affinity`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffKey {
    /// IPv4 source address (network order, zero-extended) or [`AFF_CLIENT_NETNS`] | netns cookie.
    pub client: u64,
    /// Service id.
    pub svc_id: u32,
    /// Must be 0.
    pub pad: u32,
}

/// `struct vx_aff_entry`: a remembered pick (`vx_affinity`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffEntry {
    /// The backend picked.
    pub backend_id: u32,
    /// Padding.
    pub pad: u32,
    /// `bpf_ktime_get_ns()` of the last use.
    pub last_ns: u64,
}

/// `struct vx_sock_rev`: what connect4/sendmsg4 rewrote for a socket (`vx_sock_rev`, keyed
/// by socket cookie).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockRev {
    /// The frontend address the application used, network order.
    pub frontend_addr: u32,
    /// The backend address written instead, network order.
    pub backend_addr: u32,
    /// Frontend port, network order.
    pub frontend_port: u16,
    /// Backend port, network order.
    pub backend_port: u16,
    /// The backend.
    pub backend_id: u32,
}

/// `struct vx_frag_key`: one IPv4 datagram (source, destination, id, protocol; RFC 791).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// Source address, network order.
    pub saddr: u32,
    /// Destination address, network order.
    pub daddr: u32,
    /// IP identification, network order.
    pub id: u16,
    /// IP protocol.
    pub proto: u8,
    /// Must be 0.
    pub pad: u8,
}

/// `struct vx_frag_ports`: the ports a first fragment carried (`vx_frag`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragPorts {
    /// Source port, network order.
    pub sport: u16,
    /// Destination port, network order.
    pub dport: u16,
}

/// `struct vx_vip`: the value of `vx_vip` (key: the VIP, network order): the hardware
/// address the packet path answers ARP requests for the VIP with (RFC 826).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vip {
    /// The MAC address the ARP replies give.
    pub mac: [u8; 6],
    /// Reserved, 0.
    pub flags: u16,
}

impl Vip {
    /// ARP replies for the VIP give `mac`.
    pub fn new(mac: [u8; 6]) -> Self {
        Self { mac, flags: 0 }
    }
}

/// `struct vx_host`: `vx_host[0]`, this host's underlay identity for the routing mesh.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Host {
    /// Underlay IPv4 address, network order.
    pub addr: u32,
    /// Underlay device (FIB lookups and replies to clients leave through it).
    pub ifindex: u32,
    /// The MAC naming this node as an ingress node (not the bridges' gateway MAC).
    pub mac: [u8; 6],
    /// Must be 0.
    pub pad: u16,
}

impl Host {
    /// Host with underlay address `addr` on device `ifindex`, naming itself `mac`.
    pub fn new(addr: Ipv4Addr, ifindex: u32, mac: [u8; 6]) -> Self {
        Self {
            addr: be32(addr),
            ifindex,
            mac,
            pad: 0,
        }
    }
}

/// `struct vx_be_loc`: where the routing mesh delivers a backend on this host (`vx_be_loc`,
/// key: backend id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BeLoc {
    /// Local backend: its host-side veth; remote: its network's bridge.
    pub ifindex: u32,
    /// The backend's MAC.
    pub mac: [u8; 6],
    /// `BE_LOC_F_*`.
    pub flags: u8,
    /// Must be 0.
    pub pad: u8,
}

/// `struct vx_mac_key`: a MAC address, key of `vx_mesh_node`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacKey {
    /// The address.
    pub mac: [u8; 6],
    /// Must be 0.
    pub pad: u16,
}

/// `struct vx_mesh_node`: the ingress node a node-naming MAC stands for (`vx_mesh_node`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshNode {
    /// Its underlay address, network order.
    pub addr: u32,
    /// Reserved, 0.
    pub flags: u32,
}

/// `struct vx_mesh_be_key`: a local backend of a published port as the forward frames from
/// an ingress node address it, the key of `vx_mesh_be`: default mode (`flags` 0) the
/// backend's addr:target port, DSR ([`MESH_F_DSR`]) its addr:published port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeshBeKey {
    /// IPv4 address, network byte order.
    pub addr: u32,
    /// Port, network byte order.
    pub port: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub proto: u8,
    /// `MESH_F_*`: which frames the key matches.
    pub flags: u8,
}

impl MeshBeKey {
    /// The key of backend `addr` for frames to `port` (host order) of `proto`, `flags`
    /// `MESH_F_*`.
    pub fn new(addr: Ipv4Addr, port: u16, proto: u8, flags: u8) -> Self {
        Self {
            addr: be32(addr),
            port: port.to_be(),
            proto,
            flags,
        }
    }
}

/// `struct vx_mesh_be`: a backend of a published port (`vx_mesh_be`, key: [`MeshBeKey`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshBe {
    /// The published port, network order.
    pub pub_port: u16,
    /// The backend's target port, network order.
    pub target_port: u16,
    /// `MESH_F_*`.
    pub flags: u8,
    /// Must be 0.
    pub pad: [u8; 3],
    /// The backend's network's VXLAN device.
    pub overlay_ifindex: u32,
}

/// `struct vx_mesh_flow`: a routing-mesh flow that reached a local backend from another
/// ingress node (`vx_mesh_flow`, key: its reply-direction [`CtKey`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshFlow {
    /// The ingress node's MAC.
    pub node_mac: [u8; 6],
    /// The published port, network order.
    pub pub_port: u16,
    /// The ingress node's underlay address, network order.
    pub ingress_addr: u32,
    /// The VXLAN device replies go back through.
    pub overlay_ifindex: u32,
    /// `MESH_F_*`.
    pub flags: u32,
}

// SAFETY: every type is #[repr(C)], Copy, made of integers only, and has no implicit
// padding (the assertions below fix every offset and the size), so any byte pattern is a
// valid value and every byte of a value is initialised.
unsafe impl aya::Pod for SvcKey {}
unsafe impl aya::Pod for Svc {}
unsafe impl aya::Pod for Backend {}
unsafe impl aya::Pod for BeStats {}
unsafe impl aya::Pod for SvcStats {}
unsafe impl aya::Pod for CtKey {}
unsafe impl aya::Pod for CtEntry {}
unsafe impl aya::Pod for AffKey {}
unsafe impl aya::Pod for AffEntry {}
unsafe impl aya::Pod for SockRev {}
unsafe impl aya::Pod for FragKey {}
unsafe impl aya::Pod for FragPorts {}
unsafe impl aya::Pod for Vip {}
unsafe impl aya::Pod for Host {}
unsafe impl aya::Pod for BeLoc {}
unsafe impl aya::Pod for MacKey {}
unsafe impl aya::Pod for MeshNode {}
unsafe impl aya::Pod for MeshBeKey {}
unsafe impl aya::Pod for MeshBe {}
unsafe impl aya::Pod for MeshFlow {}

/// One mirrored struct as the BTF layout test checks it: C name, size, `(field, offset)`.
pub type Layout = (&'static str, usize, &'static [(&'static str, usize)]);

/// Asserts at compile time a struct's size and each field's offset, and records them in a
/// [`Layout`] for the BTF test: one list of fields serves both.
macro_rules! layout {
    ($c:literal, $t:ty, $size:expr, { $($field:ident: $off:expr),* $(,)? }) => {{
        const _: () = assert!(size_of::<$t>() == $size);
        $(const _: () = assert!(offset_of!($t, $field) == $off);)*
        ($c, size_of::<$t>(), &[$((stringify!($field), offset_of!($t, $field))),*])
    }};
}
pub(crate) use layout;

/// Every mirrored struct with its C name, size and field offsets, for the BTF layout test.
pub const LAYOUTS: &[Layout] = &[
    layout!("vx_svc_key", SvcKey, 8, { addr: 0, port: 4, proto: 6, pad: 7 }),
    layout!("vx_svc", Svc, 12, { id: 0, flags: 4, affinity_timeout_s: 8 }),
    layout!("vx_vip", Vip, 8, { mac: 0, flags: 6 }),
    layout!("vx_backend", Backend, 8, { addr: 0, port: 4, flags: 6, pad: 7 }),
    layout!("vx_be_stats", BeStats, 24, { packets: 0, bytes: 8, conns: 16 }),
    layout!("vx_svc_stats", SvcStats, 8, { no_backend: 0 }),
    layout!("vx_ct_key", CtKey, 16, {
        saddr: 0, daddr: 4, sport: 8, dport: 10, proto: 12, dir: 13, pad: 14,
    }),
    layout!("vx_ct_entry", CtEntry, 24, {
        nat_addr: 0, nat_port: 4, flags: 6, pad: 7, backend_id: 8, svc_id: 12, created_ns: 16,
    }),
    layout!("vx_aff_key", AffKey, 16, { client: 0, svc_id: 8, pad: 12 }),
    layout!("vx_aff_entry", AffEntry, 16, { backend_id: 0, pad: 4, last_ns: 8 }),
    layout!("vx_sock_rev", SockRev, 16, {
        frontend_addr: 0, backend_addr: 4, frontend_port: 8, backend_port: 10, backend_id: 12,
    }),
    layout!("vx_frag_key", FragKey, 12, { saddr: 0, daddr: 4, id: 8, proto: 10, pad: 11 }),
    layout!("vx_frag_ports", FragPorts, 4, { sport: 0, dport: 2 }),
    layout!("vx_host", Host, 16, { addr: 0, ifindex: 4, mac: 8, pad: 14 }),
    layout!("vx_be_loc", BeLoc, 12, { ifindex: 0, mac: 4, flags: 10, pad: 11 }),
    layout!("vx_mac_key", MacKey, 8, { mac: 0, pad: 6 }),
    layout!("vx_mesh_node", MeshNode, 8, { addr: 0, flags: 4 }),
    layout!("vx_mesh_be_key", MeshBeKey, 8, { addr: 0, port: 4, proto: 6, flags: 7 }),
    layout!("vx_mesh_be", MeshBe, 12, {
        pub_port: 0, target_port: 2, flags: 4, pad: 5, overlay_ifindex: 8,
    }),
    layout!("vx_mesh_flow", MeshFlow, 20, {
        node_mac: 0, pub_port: 6, ingress_addr: 8, overlay_ifindex: 12, flags: 16,
    }),
];

/// Indexes of `vx_stats` (`enum vx_stat`), the per-CPU global counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stat {
    /// Packets DNATed to a backend.
    FwdNat = 0,
    /// Reply packets turned back to the frontend.
    RevNat = 1,
    /// Connection-table entries made.
    CtNew = 2,
    /// Flows whose backend was deleted and were picked again.
    CtReselect = 3,
    /// Packets dropped / connects refused: the service had no backend.
    NoBackend = 4,
    /// Non-first fragments translated from `vx_frag`.
    FragNat = 5,
    /// Non-first fragments whose first fragment was not seen: untouched.
    FragMiss = 6,
    /// Packets shorter than their headers: untouched.
    Truncated = 7,
    /// A rewrite helper failed: dropped.
    NatError = 8,
    /// A connection/affinity/fragment table update failed.
    CtFull = 9,
    /// connect4 rewrites.
    SockConnect = 10,
    /// sendmsg4 rewrites.
    SockSendmsg = 11,
    /// recvmsg4/getpeername4 rewrites.
    SockReverse = 12,
    /// ARP requests for a VIP answered.
    ArpReply = 13,
    /// Published-port packets delivered to a backend (routing mesh).
    MeshFwd = 14,
    /// Routing-mesh replies sent back (to the ingress node, or out of the underlay).
    MeshReply = 15,
    /// Routing-mesh SYNs whose MSS option was lowered to the path's MTU - 40 (`mtu.h`).
    MssClamp = 16,
    /// Routing-mesh packets larger than their path's MTU, answered with ICMP fragmentation
    /// needed (`mtu.h`).
    FragNeeded = 17,
}

impl Stat {
    /// Every counter, in index order.
    pub const ALL: [Stat; 18] = [
        Stat::FwdNat,
        Stat::RevNat,
        Stat::CtNew,
        Stat::CtReselect,
        Stat::NoBackend,
        Stat::FragNat,
        Stat::FragMiss,
        Stat::Truncated,
        Stat::NatError,
        Stat::CtFull,
        Stat::SockConnect,
        Stat::SockSendmsg,
        Stat::SockReverse,
        Stat::ArpReply,
        Stat::MeshFwd,
        Stat::MeshReply,
        Stat::MssClamp,
        Stat::FragNeeded,
    ];
}

/// Number of slots of `vx_stats` (`VX_STAT_MAX`).
pub const STAT_MAX: u32 = 18;
