/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * fast_maps.h: every map key and value of the overlay fast path (overlay_fast.c), and the
 * maps themselves.
 *
 * This is the fast path's ONE header of map layouts, kept apart from vxmesh_maps.h on
 * purpose: that header also defines the services' maps, so every object including it creates
 * and pins all of them, and the fast path loads on hosts without any service (its own pin
 * directory, its own lifetime). Its Rust mirror is ebpf/src/fast/types.rs: every struct
 * below has a #[repr(C)] twin there with size and offset assertions, and
 * ebpf/tests/btf_layout.rs checks overlay_fast.o's BTF against those twins.
 *
 * Byte order: IPv4 addresses (fields named addr, vtep) are in network byte order, exactly as
 * they sit in the packet; everything else is host order.
 *
 * Keys carry the network's VNI: a lookup made for a packet of one network never finds an
 * entry of another (isolation between networks, as the per-network bridges give it).
 *
 * Every map is pinned by name (LIBBPF_PIN_BY_NAME) in the fast path's map directory, so an
 * agent restart finds them with their entries. max_entries below are the sizes used; the
 * hash maps are not preallocated (BPF_F_NO_PREALLOC), so they take kernel memory for the
 * entries they hold, not for max_entries (262,144 preallocated entries of vxf_l2 and
 * vxf_ep would take tens of MB on every host). Only the agent writes them.
 */
#ifndef VXMESH_FAST_MAPS_H
#define VXMESH_FAST_MAPS_H

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

/* Value of vxf_port (key: __u32 ifindex of an interface of this host the fast path is
 * attached to: a container's host-side veth, or a network's VXLAN device). */
struct vxf_port {
	__u32 vni;           /* the network the interface belongs to */
	__u32 vxlan_ifindex; /* that network's VXLAN device (where remote frames are sent) */
	__u32 flags;         /* VXF_PORT_F_* */
};

/* vxf_port.flags: the interface is the network's VXLAN device (frames from other hosts). */
#define VXF_PORT_F_VXLAN (1U << 0)

/* Key of vxf_l2: a MAC address on a network. */
struct vxf_mac_key {
	__u32 vni;
	__u8 mac[6];
	__u16 pad; /* must be 0 */
};

/* Value of vxf_l2: where a frame to that MAC goes (the bridge's forwarding decision). */
struct vxf_l2 {
	__u32 ifindex; /* local endpoint: its host-side veth; remote: the network's VXLAN device */
	__u32 flags;   /* VXF_L2_F_* */
};

/* vxf_l2.flags: the MAC is an endpoint attached on this host. */
#define VXF_L2_F_LOCAL (1U << 0)
/* vxf_l2.flags (local only): deliver through the veth's egress (bpf_redirect), not straight
 * into the container (bpf_redirect_peer): a program on that egress (the services' reverse
 * NAT, vx_to_lxc) must see the frame. */
#define VXF_L2_F_EGRESS (1U << 1)

/* Key of vxf_ep: an IPv4 address on a network. */
struct vxf_ip_key {
	__u32 vni;
	__be32 addr;
};

/* Value of vxf_ep: what ARP requests for that address are answered with (RFC 826). */
struct vxf_ep {
	__u8 mac[6];   /* the endpoint's MAC (the gateway's, for the gateway address) */
	__u16 flags;   /* VXF_EP_F_* */
	__be32 vtep;   /* remote endpoint: the address its node's VXLAN packets go to; else 0 */
	__u32 ifindex; /* local endpoint: its host-side veth; else 0 */
};

#define VXF_EP_F_LOCAL (1U << 0)   /* an endpoint attached on this host */
#define VXF_EP_F_GATEWAY (1U << 1) /* the network's gateway (the bridge's address) */

/* Indexes of vxf_stats (per-CPU __u64 counters). */
enum vxf_stat {
	VXF_STAT_TX_REMOTE = 0,    /* container frames sent straight to the VXLAN device */
	VXF_STAT_TX_LOCAL = 1,     /* container frames to a container of this host */
	VXF_STAT_RX_LOCAL = 2,     /* frames from other hosts delivered to a container */
	VXF_STAT_ARP_REPLY = 3,    /* ARP requests answered from vxf_ep */
	VXF_STAT_TOO_BIG = 4,      /* frames over the VXLAN device's MTU: left to the bridge */
	VXF_STAT_PASS = 5,         /* frames left to the bridge (not for a known endpoint) */
	VXF_STAT_MAX = 6,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct vxf_port);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vxf_port SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct vxf_mac_key);
	__type(value, struct vxf_l2);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vxf_l2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct vxf_ip_key);
	__type(value, struct vxf_ep);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vxf_ep SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VXF_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vxf_stats SEC(".maps");

static __always_inline void vxf_stat_inc(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&vxf_stats, &idx);

	if (c)
		*c += 1;
}

#endif /* VXMESH_FAST_MAPS_H */
