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
    /// The frontend address.
    pub fn ip(&self) -> Ipv4Addr {
        ip(self.addr)
    }
    /// The frontend port, host order.
    pub fn port(&self) -> u16 {
        u16::from_be(self.port)
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
    /// The backend address.
    pub fn ip(&self) -> Ipv4Addr {
        ip(self.addr)
    }
    /// The backend port, host order.
    pub fn port(&self) -> u16 {
        u16::from_be(self.port)
    }
}

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

/// Asserts at compile time a struct's size and each field's offset.
macro_rules! layout {
    ($t:ty, $size:expr, { $($field:ident: $off:expr),* $(,)? }) => {
        const _: () = assert!(size_of::<$t>() == $size);
        $(const _: () = assert!(offset_of!($t, $field) == $off);)*
    };
}

layout!(SvcKey, 8, { addr: 0, port: 4, proto: 6, pad: 7 });
layout!(Svc, 12, { id: 0, flags: 4, affinity_timeout_s: 8 });
layout!(Backend, 8, { addr: 0, port: 4, flags: 6, pad: 7 });
layout!(BeStats, 24, { packets: 0, bytes: 8, conns: 16 });
layout!(SvcStats, 8, { no_backend: 0 });
layout!(CtKey, 16, { saddr: 0, daddr: 4, sport: 8, dport: 10, proto: 12, dir: 13, pad: 14 });
layout!(CtEntry, 24, {
    nat_addr: 0, nat_port: 4, flags: 6, pad: 7, backend_id: 8, svc_id: 12, created_ns: 16,
});
layout!(AffKey, 16, { client: 0, svc_id: 8, pad: 12 });
layout!(AffEntry, 16, { backend_id: 0, pad: 4, last_ns: 8 });
layout!(SockRev, 16, {
    frontend_addr: 0, backend_addr: 4, frontend_port: 8, backend_port: 10, backend_id: 12,
});
layout!(FragKey, 12, { saddr: 0, daddr: 4, id: 8, proto: 10, pad: 11 });
layout!(FragPorts, 4, { sport: 0, dport: 2 });

/// One mirrored struct as the BTF layout test checks it: C name, size, `(field, offset)`.
pub type Layout = (&'static str, usize, &'static [(&'static str, usize)]);

/// Every mirrored struct with its C name, size and field offsets, for the BTF layout test.
pub const LAYOUTS: &[Layout] = &[
    (
        "vx_svc_key",
        size_of::<SvcKey>(),
        &[
            ("addr", offset_of!(SvcKey, addr)),
            ("port", offset_of!(SvcKey, port)),
            ("proto", offset_of!(SvcKey, proto)),
            ("pad", offset_of!(SvcKey, pad)),
        ],
    ),
    (
        "vx_svc",
        size_of::<Svc>(),
        &[
            ("id", offset_of!(Svc, id)),
            ("flags", offset_of!(Svc, flags)),
            ("affinity_timeout_s", offset_of!(Svc, affinity_timeout_s)),
        ],
    ),
    (
        "vx_backend",
        size_of::<Backend>(),
        &[
            ("addr", offset_of!(Backend, addr)),
            ("port", offset_of!(Backend, port)),
            ("flags", offset_of!(Backend, flags)),
            ("pad", offset_of!(Backend, pad)),
        ],
    ),
    (
        "vx_be_stats",
        size_of::<BeStats>(),
        &[
            ("packets", offset_of!(BeStats, packets)),
            ("bytes", offset_of!(BeStats, bytes)),
            ("conns", offset_of!(BeStats, conns)),
        ],
    ),
    (
        "vx_svc_stats",
        size_of::<SvcStats>(),
        &[("no_backend", offset_of!(SvcStats, no_backend))],
    ),
    (
        "vx_ct_key",
        size_of::<CtKey>(),
        &[
            ("saddr", offset_of!(CtKey, saddr)),
            ("daddr", offset_of!(CtKey, daddr)),
            ("sport", offset_of!(CtKey, sport)),
            ("dport", offset_of!(CtKey, dport)),
            ("proto", offset_of!(CtKey, proto)),
            ("dir", offset_of!(CtKey, dir)),
            ("pad", offset_of!(CtKey, pad)),
        ],
    ),
    (
        "vx_ct_entry",
        size_of::<CtEntry>(),
        &[
            ("nat_addr", offset_of!(CtEntry, nat_addr)),
            ("nat_port", offset_of!(CtEntry, nat_port)),
            ("flags", offset_of!(CtEntry, flags)),
            ("pad", offset_of!(CtEntry, pad)),
            ("backend_id", offset_of!(CtEntry, backend_id)),
            ("svc_id", offset_of!(CtEntry, svc_id)),
            ("created_ns", offset_of!(CtEntry, created_ns)),
        ],
    ),
    (
        "vx_aff_key",
        size_of::<AffKey>(),
        &[
            ("client", offset_of!(AffKey, client)),
            ("svc_id", offset_of!(AffKey, svc_id)),
            ("pad", offset_of!(AffKey, pad)),
        ],
    ),
    (
        "vx_aff_entry",
        size_of::<AffEntry>(),
        &[
            ("backend_id", offset_of!(AffEntry, backend_id)),
            ("pad", offset_of!(AffEntry, pad)),
            ("last_ns", offset_of!(AffEntry, last_ns)),
        ],
    ),
    (
        "vx_sock_rev",
        size_of::<SockRev>(),
        &[
            ("frontend_addr", offset_of!(SockRev, frontend_addr)),
            ("backend_addr", offset_of!(SockRev, backend_addr)),
            ("frontend_port", offset_of!(SockRev, frontend_port)),
            ("backend_port", offset_of!(SockRev, backend_port)),
            ("backend_id", offset_of!(SockRev, backend_id)),
        ],
    ),
    (
        "vx_frag_key",
        size_of::<FragKey>(),
        &[
            ("saddr", offset_of!(FragKey, saddr)),
            ("daddr", offset_of!(FragKey, daddr)),
            ("id", offset_of!(FragKey, id)),
            ("proto", offset_of!(FragKey, proto)),
            ("pad", offset_of!(FragKey, pad)),
        ],
    ),
    (
        "vx_frag_ports",
        size_of::<FragPorts>(),
        &[
            ("sport", offset_of!(FragPorts, sport)),
            ("dport", offset_of!(FragPorts, dport)),
        ],
    ),
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
}

impl Stat {
    /// Every counter, in index order.
    pub const ALL: [Stat; 13] = [
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
    ];
}

/// Number of slots of `vx_stats` (`VX_STAT_MAX`).
pub const STAT_MAX: u32 = 16;
