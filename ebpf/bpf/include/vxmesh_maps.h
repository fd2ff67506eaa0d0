/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * vxmesh_maps.h: every map key and value of the vxmesh datapath, and the maps themselves.
 *
 * This is the ONE header of map layouts. Its Rust mirror is ebpf/src/maps/types.rs: every
 * struct below has a #[repr(C)] twin there with size and offset assertions, and
 * ebpf/tests/btf_layout.rs checks the compiled objects' BTF against those twins. Change a
 * struct here and the test tells you what to change there.
 *
 * Byte order: fields named *_be (and every IPv4 address and port) are in network byte order,
 * exactly as they sit in the packet; everything else is host order.
 *
 * Every map is pinned by name (LIBBPF_PIN_BY_NAME) in the node's map directory, so every
 * object that includes this header (sock.o, lxc.o, later host.o/overlay.o) shares ONE
 * instance of each map, and a reload (agent restart or upgrade) finds the same maps with
 * their entries. max_entries below are defaults; the loader overrides them from its config.
 */
#ifndef VXMESH_MAPS_H
#define VXMESH_MAPS_H

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

/* ---- services: one frontend = (address, port, protocol) ---------------------------- */

/* Key of vx_svc: a frontend a client addresses (a VIP:port/proto, later HOST:PUB/proto). */
struct vx_svc_key {
	__be32 addr;  /* frontend IPv4 address */
	__be16 port;  /* frontend port */
	__u8 proto;   /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 pad;     /* must be 0 */
};

/* vx_svc.flags: pick by client identity (client IPv4 on the packet path, network
 * namespace on the socket path) and remember the pick in vx_affinity. */
#define VX_SVC_F_AFFINITY (1U << 0)
/* vx_svc.flags: the key is a published port (HOST:PUB/proto, the host's underlay address):
 * the underlay program (host.c) balances it; it never answers for a frontend without it. */
#define VX_SVC_F_PUBLISHED (1U << 1)
/* vx_svc.flags, with VX_SVC_F_PUBLISHED: the service answers in DSR mode. A flow to a backend
 * on another host leaves the ingress node with the published port still as its destination
 * port and the node's DSR MAC as its source (see vx_mesh_be_key): the backend's host writes
 * the target port itself and answers with HOST:PUB as the source, per flow. */
#define VX_SVC_F_DSR (1U << 2)

/* Value of vx_svc. The Maglev table of the service is vx_maglev[id]. */
struct vx_svc {
	__u32 id;                 /* service id: key of vx_maglev and vx_svc_stats; never 0 */
	__u32 flags;              /* VX_SVC_F_* */
	__u32 affinity_timeout_s; /* seconds an affinity entry stays valid; 0: until evicted */
};

/* Value of vx_vip (key: __be32 VIP): a service address the packet path answers ARP for
 * (RFC 826), so that a container whose process is outside the hooked cgroup can send to a
 * VIP in its own subnet; mac is the hardware address the replies give (the network's
 * gateway MAC, so the translated packet is routed by the host to its backend). */
struct vx_vip {
	__u8 mac[6];
	__u16 flags; /* reserved, 0 */
};

/* ---- Maglev tables ------------------------------------------------------------------ */

/*
 * vx_maglev: service id -> inner ARRAY of __u32 (BPF_F_INNER_MAP, so each inner map has its
 * own size). Inner layout: slot 0 holds M, the table size (a prime; 0 means no backend);
 * slots 1..=M hold backend ids (the Maglev lookup table of the paper, section 3.4). A new
 * table is a new inner map put in place by ONE update of vx_maglev[id], so no packet ever
 * sees a half-written table; M travels with its table for the same reason.
 */
#define VX_MAGLEV_SIZE_SLOT 0

/* ---- backends ----------------------------------------------------------------------- */

/* vx_backend.flags: draining: existing flows (conntrack, socket reverse entries) keep it,
 * a remembered affinity pick is ignored; the agent also leaves it out of new tables. */
#define VX_BE_F_DRAINING (1U << 0)

/* Value of vx_backend (key: __u32 backend id, assigned by user space, never 0). */
struct vx_backend {
	__be32 addr; /* backend IPv4 address */
	__be16 port; /* backend port */
	__u8 flags;  /* VX_BE_F_* */
	__u8 pad;    /* must be 0 */
};

/* Per-CPU value of vx_be_stats (key: backend id); user space sums over CPUs. */
struct vx_be_stats {
	__u64 packets; /* packets sent to the backend by the packet path; datagrams by sendmsg4 */
	__u64 bytes;   /* bytes of those packets (skb->len; 0 for the socket path) */
	__u64 conns;   /* new connections: conntrack entries made, connect4/sendmsg4 picks */
};

/* Per-CPU value of vx_svc_stats (key: service id). */
struct vx_svc_stats {
	__u64 no_backend; /* packets dropped / connects refused: the service had no backend */
};

/* ---- connection table ------------------------------------------------------------------ */

#define VX_CT_DIR_FWD 0   /* the original direction: client -> frontend */
#define VX_CT_DIR_REPLY 1 /* the reply direction: backend -> client, as it reaches us */

/* vx_ct_entry.flags: the flow came in through a published port of this host (routing
 * mesh): its replies leave through the underlay device, not the local stack. */
#define VX_CT_F_MESH (1U << 0)

/* Key of vx_ct: a packet's 5-tuple as seen on the wire, and its direction. */
struct vx_ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir;   /* VX_CT_DIR_* */
	__u16 pad;  /* must be 0 */
};

/*
 * Value of vx_ct: what to write into a packet of this flow.
 *   DIR_FWD:   destination := nat_addr:nat_port (the backend), backend_id names it.
 *   DIR_REPLY: source := nat_addr:nat_port (the frontend the client addressed).
 */
struct vx_ct_entry {
	__be32 nat_addr;
	__be16 nat_port;
	__u8 flags;      /* VX_CT_F_* */
	__u8 pad;
	__u32 backend_id;
	__u32 svc_id;
	__u64 created_ns; /* bpf_ktime_get_ns() when the flow was first seen */
};

/* ---- client affinity ---------------------------------------------------------------- */

/* Socket-path client identities carry this bit, packet-path ones (IPv4 addresses) do not. */
#define VX_AFF_CLIENT_NETNS (1ULL << 63)

/* Key of vx_affinity. client: the IPv4 source address (network order, zero-extended) on the
 * packet path; VX_AFF_CLIENT_NETNS | netns cookie on the socket path, where the source
 * address is not known yet at connect(). */
struct vx_aff_key {
	__u64 client;
	__u32 svc_id;
	__u32 pad;   /* must be 0 */
};

struct vx_aff_entry {
	__u32 backend_id;
	__u32 pad;
	__u64 last_ns; /* bpf_ktime_get_ns() of the last use */
};

/* ---- socket path reverse map ---------------------------------------------------------- */

/* Value of vx_sock_rev (key: __u64 socket cookie): what connect4/sendmsg4 rewrote, so that
 * recvmsg4/getpeername4 show the frontend again. */
struct vx_sock_rev {
	__be32 frontend_addr;
	__be32 backend_addr;
	__be16 frontend_port;
	__be16 backend_port;
	__u32 backend_id;
};

/* ---- IPv4 fragments ------------------------------------------------------------------- */

/* Key of vx_frag: one IP datagram (RFC 791: source, destination, protocol, identification). */
struct vx_frag_key {
	__be32 saddr;
	__be32 daddr;
	__be16 id;
	__u8 proto;
	__u8 pad;   /* must be 0 */
};

/* Value of vx_frag: the L4 ports the first fragment carried. */
struct vx_frag_ports {
	__be16 sport;
	__be16 dport;
};

/* ---- routing mesh (host.c) ------------------------------------------------------------ */

/* Value of vx_host[0]: this host's underlay identity. */
struct vx_host {
	__be32 addr;    /* underlay IPv4 address (HOST of HOST:PUB) */
	__u32 ifindex;  /* underlay device: FIB lookups and replies to clients leave through it */
	__u8 mac[6];    /* the MAC naming this node as an ingress node (source MAC of the
			 * packets it sends into the overlay; NOT the bridges' shared gateway MAC) */
	__u16 pad;      /* must be 0 */
};

/* Value of vx_be_loc (key: backend id): where the underlay program delivers a backend's
 * packets on this host. */
struct vx_be_loc {
	__u32 ifindex;  /* local backend: its host-side veth; remote: its network's bridge */
	__u8 mac[6];    /* the backend's MAC (destination MAC of the delivered frame) */
	__u8 flags;     /* VX_BE_LOC_F_* */
	__u8 pad;       /* must be 0 */
};

#define VX_BE_LOC_F_LOCAL (1U << 0) /* the backend runs on this host */

/* Key of vx_mesh_node: a MAC address (the node-naming MAC of an ingress node). */
struct vx_mac_key {
	__u8 mac[6];
	__u16 pad; /* must be 0 */
};

/* vx_mesh_node.flags, vx_mesh_be_key.flags, vx_mesh_be.flags, vx_mesh_flow.flags: direct
 * server return. */
#define VX_MESH_F_DSR (1U << 0)

/* A node's DSR MAC is its node MAC with this bit of the second octet flipped (0a:5e:… ->
 * 0a:5f:…): the source MAC of the DSR frames it forwards into the overlay. Default-mode
 * frames carry the node MAC itself, so the backend's host tells the two apart per frame. */
#define VX_MESH_DSR_MAC_BIT 0x01

/* Value of vx_mesh_node: the ingress node a node-naming source MAC stands for. */
struct vx_mesh_node {
	__be32 addr;  /* its underlay address (DSR replies take it as their source) */
	__u32 flags;  /* VX_MESH_F_DSR: the MAC is the node's DSR MAC */
};

/* Key of vx_mesh_be: a local backend of a published port, as the forward frames from an
 * ingress node address it. Default mode (flags 0): backend addr:target port, the frames are
 * already translated. DSR (flags VX_MESH_F_DSR): backend addr:published port, so that the
 * published port the client addressed is known per flow even when one target port is
 * published under several ports. */
struct vx_mesh_be_key {
	__be32 addr;
	__be16 port;
	__u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 flags;  /* VX_MESH_F_*: which frames the key matches */
};

/* Value of vx_mesh_be: what the backend's host needs to answer routing-mesh flows. */
struct vx_mesh_be {
	__be16 pub_port;         /* the published port (DSR: the replies' source port) */
	__be16 target_port;      /* the backend's port (DSR: the frames' destination becomes it) */
	__u8 flags;              /* VX_MESH_F_* */
	__u8 pad[3];             /* must be 0 */
	__u32 overlay_ifindex;   /* the backend's network's VXLAN device (default mode) */
};

/* Value of vx_mesh_flow (key: struct vx_ct_key of the reply direction, as the backend sends
 * it, dir = VX_CT_DIR_REPLY): a routing-mesh flow that reached a backend of this host from
 * another (ingress) node. Written by the overlay program, read on the backend's veth. */
struct vx_mesh_flow {
	__u8 node_mac[6];        /* the ingress node's MAC (default mode: the replies' dest) */
	__be16 pub_port;         /* the published port */
	__be32 ingress_addr;     /* the ingress node's underlay address */
	__u32 overlay_ifindex;   /* VXLAN device the replies go back through */
	__u32 flags;             /* VX_MESH_F_* */
};

/* ---- global counters ------------------------------------------------------------------ */

/* Indexes of vx_stats (per-CPU __u64 counters). */
enum vx_stat {
	VX_STAT_FWD_NAT = 0,      /* packets DNATed to a backend */
	VX_STAT_REV_NAT = 1,      /* reply packets turned back to the frontend */
	VX_STAT_CT_NEW = 2,       /* connection-table entries made */
	VX_STAT_CT_RESELECT = 3,  /* flows whose backend was deleted: picked again */
	VX_STAT_NO_BACKEND = 4,   /* packets dropped / connects refused: no backend */
	VX_STAT_FRAG_NAT = 5,     /* non-first fragments translated from vx_frag */
	VX_STAT_FRAG_MISS = 6,    /* non-first fragments without their first: untouched */
	VX_STAT_TRUNCATED = 7,    /* packets shorter than their headers: untouched */
	VX_STAT_NAT_ERROR = 8,    /* a rewrite helper failed: dropped */
	VX_STAT_CT_FULL = 9,      /* a conntrack/affinity/fragment update failed */
	VX_STAT_SOCK_CONNECT = 10, /* connect4 rewrites */
	VX_STAT_SOCK_SENDMSG = 11, /* sendmsg4 rewrites */
	VX_STAT_SOCK_REVERSE = 12, /* recvmsg4/getpeername4 rewrites */
	VX_STAT_ARP_REPLY = 13,    /* ARP requests for a VIP answered */
	VX_STAT_MESH_FWD = 14,     /* published-port packets delivered to a backend */
	VX_STAT_MESH_REPLY = 15,   /* routing-mesh replies sent back (overlay, underlay, DSR) */
	VX_STAT_MSS_CLAMP = 16,    /* routing-mesh SYNs whose MSS option was lowered (mtu.h) */
	VX_STAT_FRAG_NEEDED = 17,  /* routing-mesh packets too large for their path: ICMP sent */
	VX_STAT_MAX = 18,
};

/* ---- the maps ------------------------------------------------------------------------ */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct vx_svc_key);
	__type(value, struct vx_svc);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vx_svc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __be32);
	__type(value, struct vx_vip);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vx_vip SEC(".maps");

struct vx_maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_INNER_MAP);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct vx_maglev_inner);
} vx_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, __u32);
	__type(value, struct vx_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vx_backend SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 262144);
	__type(key, __u32);
	__type(value, struct vx_be_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vx_be_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct vx_svc_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vx_svc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct vx_ct_key);
	__type(value, struct vx_ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vx_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct vx_aff_key);
	__type(value, struct vx_aff_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vx_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct vx_sock_rev);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vx_sock_rev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct vx_frag_key);
	__type(value, struct vx_frag_ports);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vx_frag SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VX_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vx_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vx_host);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vx_host SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, __u32);
	__type(value, struct vx_be_loc);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vx_be_loc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct vx_mac_key);
	__type(value, struct vx_mesh_node);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vx_mesh_node SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct vx_mesh_be_key);
	__type(value, struct vx_mesh_be);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vx_mesh_be SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct vx_ct_key);
	__type(value, struct vx_mesh_flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vx_mesh_flow SEC(".maps");

static __always_inline void vx_stat_inc(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&vx_stats, &idx);

	if (c)
		*c += 1;
}

#endif /* VXMESH_MAPS_H */
