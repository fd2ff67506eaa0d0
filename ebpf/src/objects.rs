//! The compiled objects, embedded (build.rs compiles `bpf/*.c` into `$OUT_DIR`).

/// `bpf/lxc.c`: the container-veth tc programs.
pub static LXC_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lxc.o"));
/// `bpf/sock.c`: the cgroup socket programs.
pub static SOCK_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock.o"));

/// tc program of the host-side veth's ingress (packets from the container): DNAT.
pub const PROG_FROM_LXC: &str = "vx_from_lxc";
/// tc program of the host-side veth's egress (packets to the container): reverse NAT.
pub const PROG_TO_LXC: &str = "vx_to_lxc";
/// The tc programs of `lxc.o`.
pub const LXC_PROGRAMS: [&str; 2] = [PROG_FROM_LXC, PROG_TO_LXC];
/// The cgroup programs of `sock.o`, in attach order.
pub const SOCK_PROGRAMS: [&str; 5] = [
    "vx_connect4",
    "vx_sendmsg4",
    "vx_recvmsg4",
    "vx_getpeername4",
    "vx_sock_release",
];
/// `bpf/host.c`: the routing mesh's programs on the host's own devices.
pub static HOST_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/host.o"));

/// tc program of the host's underlay device's ingress: published ports → backends.
pub const PROG_FROM_UNDERLAY: &str = "vx_from_underlay";
/// tc program of a network's VXLAN device's ingress: routing-mesh replies and flow records.
pub const PROG_FROM_OVERLAY: &str = "vx_from_overlay";
/// The tc programs of `host.o`.
pub const HOST_PROGRAMS: [&str; 2] = [PROG_FROM_UNDERLAY, PROG_FROM_OVERLAY];

/// `bpf/overlay_fast.c`: the overlay fast path (`agent --datapath ebpf`), see [`crate::fast`].
pub static FAST_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/overlay_fast.o"));
/// tc program of a container's host-side veth's ingress: frames straight to the network's
/// VXLAN device or to another local container; ARP answered from the endpoint map.
pub const PROG_FAST_FROM_LXC: &str = "vxf_from_lxc";
/// tc program of a network's VXLAN device's ingress: frames straight into the container.
pub const PROG_FAST_FROM_VXLAN: &str = "vxf_from_vxlan";
/// The tc programs of `overlay_fast.o`.
pub const FAST_PROGRAMS: [&str; 2] = [PROG_FAST_FROM_LXC, PROG_FAST_FROM_VXLAN];
