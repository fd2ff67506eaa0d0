/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * conntrack.h: the connection table (vx_ct, an LRU hash) of translated flows.
 *
 * A translated flow has two entries: the original direction (client -> frontend) says
 * which destination to write, the reply direction (backend -> client, keyed by the tuple
 * the reply carries) says which source to write back. Both are made at once by
 * vx_ct_create(). LRU eviction bounds the table (its size is set at load time); nothing
 * else expires entries, so a flow keeps its backend for as long as it stays in the table,
 * whatever happens to the Maglev tables meanwhile.
 *
 * Also the IPv4 fragment table (vx_frag): a first fragment leaves its ports there so the
 * later fragments of the datagram (which carry no L4 header) find the same entries.
 */
#ifndef VXMESH_CONNTRACK_H
#define VXMESH_CONNTRACK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "parse.h"
#include "vxmesh_maps.h"

static __always_inline void vx_ct_key_of(struct vx_ct_key *k, const struct vx_pkt *p, __u8 dir)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->saddr = p->saddr;
	k->daddr = p->daddr;
	k->sport = p->sport;
	k->dport = p->dport;
	k->proto = p->proto;
	k->dir = dir;
}

/* The entry of the flow p belongs to, seen in direction dir, or NULL. */
static __always_inline struct vx_ct_entry *vx_ct_lookup(const struct vx_pkt *p, __u8 dir)
{
	struct vx_ct_key k;

	vx_ct_key_of(&k, p, dir);
	return bpf_map_lookup_elem(&vx_ct, &k);
}

/*
 * Records that the flow of p (original direction) goes to nat_addr:nat_port: the forward
 * entry, and the reply entry that turns the replies' source back into p's destination.
 * Both entries carry flags (VX_CT_F_*). Returns 0 or the negative error of the map update.
 */
static __always_inline int vx_ct_create(const struct vx_pkt *p, __be32 nat_addr, __be16 nat_port,
					__u32 backend_id, __u32 svc_id, __u8 flags)
{
	struct vx_ct_key k;
	struct vx_ct_entry e;
	__u64 now = bpf_ktime_get_ns();
	int err;

	__builtin_memset(&e, 0, sizeof(e));
	e.backend_id = backend_id;
	e.svc_id = svc_id;
	e.flags = flags;
	e.created_ns = now;

	/* Reply entry first: a forward entry without it would translate a flow whose replies
	 * nobody turns back. */
	__builtin_memset(&k, 0, sizeof(k));
	k.saddr = nat_addr;
	k.daddr = p->saddr;
	k.sport = nat_port;
	k.dport = p->sport;
	k.proto = p->proto;
	k.dir = VX_CT_DIR_REPLY;
	e.nat_addr = p->daddr;
	e.nat_port = p->dport;
	err = bpf_map_update_elem(&vx_ct, &k, &e, BPF_ANY);
	if (err)
		return err;

	vx_ct_key_of(&k, p, VX_CT_DIR_FWD);
	e.nat_addr = nat_addr;
	e.nat_port = nat_port;
	return bpf_map_update_elem(&vx_ct, &k, &e, BPF_ANY);
}

static __always_inline void vx_frag_key_of(struct vx_frag_key *k, const struct vx_pkt *p)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->saddr = p->saddr;
	k->daddr = p->daddr;
	k->id = p->ip_id;
	k->proto = p->proto;
}

/* Remembers the ports of a first fragment (call before rewriting p). */
static __always_inline void vx_frag_record(const struct vx_pkt *p)
{
	struct vx_frag_key k;
	struct vx_frag_ports v = { .sport = p->sport, .dport = p->dport };

	vx_frag_key_of(&k, p);
	if (bpf_map_update_elem(&vx_frag, &k, &v, BPF_ANY))
		vx_stat_inc(VX_STAT_CT_FULL);
}

/* Fills the ports of a later fragment from its first fragment. 0 if found. */
static __always_inline int vx_frag_fill(struct vx_pkt *p)
{
	struct vx_frag_key k;
	struct vx_frag_ports *v;

	vx_frag_key_of(&k, p);
	v = bpf_map_lookup_elem(&vx_frag, &k);
	if (!v)
		return -1;
	p->sport = v->sport;
	p->dport = v->dport;
	return 0;
}

#endif /* VXMESH_CONNTRACK_H */
