//! `#[repr(C)]` mirrors of every map key and value in `bpf/include/fast_maps.h`.
//!
//! Each struct has the C struct's name (`vxf_port` → [`FastPort`]), fields in the same order
//! with the same widths, and const assertions of its size and of every field's offset;
//! `tests/btf_layout.rs` checks the same numbers against `overlay_fast.o`'s BTF. IPv4
//! addresses are stored as in the packet (network byte order): build keys and values with
//! the constructors.

use std::{mem::offset_of, net::Ipv4Addr};

use crate::maps::types::{layout, Layout};

/// `vxf_port.flags`: the interface is the network's VXLAN device (`VXF_PORT_F_VXLAN`).
pub const PORT_F_VXLAN: u32 = 1 << 0;
/// `vxf_l2.flags`: the MAC is an endpoint attached on this host (`VXF_L2_F_LOCAL`).
pub const L2_F_LOCAL: u32 = 1 << 0;
/// `vxf_l2.flags`: deliver through the veth's egress, where a program (the services'
/// reverse NAT) must see the frame, instead of straight into the container
/// (`VXF_L2_F_EGRESS`).
pub const L2_F_EGRESS: u32 = 1 << 1;
/// `vxf_ep.flags`: an endpoint attached on this host (`VXF_EP_F_LOCAL`).
pub const EP_F_LOCAL: u16 = 1 << 0;
/// `vxf_ep.flags`: the network's gateway (`VXF_EP_F_GATEWAY`).
pub const EP_F_GATEWAY: u16 = 1 << 1;
/// The largest VNI (24 bits, RFC 7348 section 5).
pub const VNI_MAX: u32 = (1 << 24) - 1;

fn be32(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

/// `struct vxf_port`: an interface the fast path is attached to (value of `vxf_port`, key:
/// its ifindex).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastPort {
    /// The network's VNI.
    pub vni: u32,
    /// The network's VXLAN device.
    pub vxlan_ifindex: u32,
    /// `PORT_F_*`.
    pub flags: u32,
}

/// `struct vxf_mac_key`: a MAC on a network (key of `vxf_l2`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FastMacKey {
    /// The network's VNI.
    pub vni: u32,
    /// The MAC address.
    pub mac: [u8; 6],
    /// Must be 0.
    pub pad: u16,
}

impl FastMacKey {
    /// The key of `mac` on network `vni`.
    pub fn new(vni: u32, mac: [u8; 6]) -> Self {
        Self { vni, mac, pad: 0 }
    }
}

/// `struct vxf_l2`: where a frame to a MAC goes (value of `vxf_l2`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastL2 {
    /// Local endpoint: its host-side veth; remote: the network's VXLAN device.
    pub ifindex: u32,
    /// `L2_F_*`.
    pub flags: u32,
}

/// `struct vxf_ip_key`: an IPv4 address on a network (key of `vxf_ep`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FastIpKey {
    /// The network's VNI.
    pub vni: u32,
    /// IPv4 address, network byte order.
    pub addr: u32,
}

impl FastIpKey {
    /// The key of `addr` on network `vni`.
    pub fn new(vni: u32, addr: Ipv4Addr) -> Self {
        Self {
            vni,
            addr: be32(addr),
        }
    }

    /// The address.
    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr.to_ne_bytes())
    }
}

/// `struct vxf_ep`: what an ARP request for an address is answered with (value of
/// `vxf_ep`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastEp {
    /// The MAC the answer gives.
    pub mac: [u8; 6],
    /// `EP_F_*`.
    pub flags: u16,
    /// Remote endpoint: where its node's VXLAN packets go (network order); else 0.
    pub vtep: u32,
    /// Local endpoint: its host-side veth; else 0.
    pub ifindex: u32,
}

impl FastEp {
    /// A remote endpoint with `mac` whose node's VXLAN address is `vtep`.
    pub fn remote(mac: [u8; 6], vtep: Ipv4Addr) -> Self {
        Self {
            mac,
            flags: 0,
            vtep: be32(vtep),
            ifindex: 0,
        }
    }

    /// An endpoint with `mac` attached on this host behind host-side veth `ifindex`.
    pub fn local(mac: [u8; 6], ifindex: u32) -> Self {
        Self {
            mac,
            flags: EP_F_LOCAL,
            vtep: 0,
            ifindex,
        }
    }

    /// The network's gateway, answered with the bridge's `mac`.
    pub fn gateway(mac: [u8; 6]) -> Self {
        Self {
            mac,
            flags: EP_F_GATEWAY,
            vtep: 0,
            ifindex: 0,
        }
    }

    /// The VXLAN address of a remote endpoint's node.
    pub fn vtep(&self) -> Option<Ipv4Addr> {
        (self.vtep != 0).then(|| Ipv4Addr::from(self.vtep.to_ne_bytes()))
    }
}

// SAFETY: every type is #[repr(C)], Copy, made of integers only, and has no implicit
// padding (the assertions below fix every offset and the size), so any byte pattern is a
// valid value and every byte of a value is initialised.
unsafe impl aya::Pod for FastPort {}
unsafe impl aya::Pod for FastMacKey {}
unsafe impl aya::Pod for FastL2 {}
unsafe impl aya::Pod for FastIpKey {}
unsafe impl aya::Pod for FastEp {}

/// Every mirrored struct of `fast_maps.h` with its C name, size and field offsets, for the
/// BTF layout test.
pub const FAST_LAYOUTS: &[Layout] = &[
    layout!("vxf_port", FastPort, 12, { vni: 0, vxlan_ifindex: 4, flags: 8 }),
    layout!("vxf_mac_key", FastMacKey, 12, { vni: 0, mac: 4, pad: 10 }),
    layout!("vxf_l2", FastL2, 8, { ifindex: 0, flags: 4 }),
    layout!("vxf_ip_key", FastIpKey, 8, { vni: 0, addr: 4 }),
    layout!("vxf_ep", FastEp, 16, { mac: 0, flags: 6, vtep: 8, ifindex: 12 }),
];

/// Indexes of `vxf_stats` (`enum vxf_stat`), the fast path's per-CPU counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FastStat {
    /// Container frames sent straight to the network's VXLAN device.
    TxRemote = 0,
    /// Container frames sent straight to another container of this host.
    TxLocal = 1,
    /// Frames from other hosts delivered straight to a container.
    RxLocal = 2,
    /// ARP requests answered from `vxf_ep`.
    ArpReply = 3,
    /// Frames over the MTU of the device they would go to: left to the bridge.
    TooBig = 4,
    /// Unicast frames not between known endpoints: left to the bridge.
    Pass = 5,
}

impl FastStat {
    /// Every counter, in index order.
    pub const ALL: [FastStat; 6] = [
        FastStat::TxRemote,
        FastStat::TxLocal,
        FastStat::RxLocal,
        FastStat::ArpReply,
        FastStat::TooBig,
        FastStat::Pass,
    ];
}

/// Number of slots of `vxf_stats` (`VXF_STAT_MAX`).
pub const FAST_STAT_MAX: u32 = 6;
