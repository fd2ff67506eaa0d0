/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * lb.h: the load-balancing NAT engine. Given a parsed packet, vx_lb_dnat() translates a
 * packet addressed to a service frontend to one of its backends (Maglev pick, affinity,
 * connection table, DNAT with checksums) and vx_lb_reverse() turns a reply's source back
 * into the frontend. Both only rewrite the packet and the maps and return what they did;
 * where the packet goes next (TC_ACT_OK here, a redirect for the routing mesh) is the
 * caller's business. The socket programs use vx_lb_pick() alone.
 */
#ifndef VXMESH_LB_H
#define VXMESH_LB_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "conntrack.h"
#include "maglev.h"
#include "nat.h"
#include "parse.h"
#include "vxmesh_maps.h"

enum vx_lb_result {
	VX_LB_PASS = 0,  /* not a service's packet / not a translated flow: untouched */
	VX_LB_NATED = 1, /* translated */
	VX_LB_DROP = 2,  /* drop it: the service has no backend, or the rewrite failed */
};

static __always_inline struct vx_svc *vx_svc_lookup(__be32 addr, __be16 port, __u8 proto)
{
	struct vx_svc_key k;

	__builtin_memset(&k, 0, sizeof(k));
	k.addr = addr;
	k.port = port;
	k.proto = proto;
	return bpf_map_lookup_elem(&vx_svc, &k);
}

static __always_inline void vx_be_count(__u32 backend_id, __u64 packets, __u64 bytes, __u64 conns)
{
	struct vx_be_stats *s = bpf_map_lookup_elem(&vx_be_stats, &backend_id);

	if (s) {
		s->packets += packets;
		s->bytes += bytes;
		s->conns += conns;
	}
}

static __always_inline void vx_svc_no_backend(__u32 svc_id)
{
	struct vx_svc_stats *s = bpf_map_lookup_elem(&vx_svc_stats, &svc_id);

	if (s)
		s->no_backend += 1;
	vx_stat_inc(VX_STAT_NO_BACKEND);
}

/*
 * Picks a backend of svc for a new flow: the remembered affinity pick when the service has
 * VX_SVC_F_AFFINITY and it is still valid (backend present, not draining, not timed out),
 * else the Maglev table's slot for hash. Writes its id to *backend_id; returns the backend
 * or NULL when the service has no backend.
 */
static __always_inline struct vx_backend *vx_lb_pick(const struct vx_svc *svc, __u32 hash,
						     __u64 client, __u32 *backend_id)
{
	struct vx_aff_key ak;
	struct vx_aff_entry *a, ae;
	struct vx_backend *be;
	__u64 now = 0;
	__u32 id;

	if (svc->flags & VX_SVC_F_AFFINITY) {
		__builtin_memset(&ak, 0, sizeof(ak));
		ak.client = client;
		ak.svc_id = svc->id;
		now = bpf_ktime_get_ns();
		a = bpf_map_lookup_elem(&vx_affinity, &ak);
		if (a && (svc->affinity_timeout_s == 0 ||
			  now - a->last_ns <= (__u64)svc->affinity_timeout_s * 1000000000ULL)) {
			id = a->backend_id;
			be = bpf_map_lookup_elem(&vx_backend, &id);
			if (be && !(be->flags & VX_BE_F_DRAINING)) {
				a->last_ns = now;
				*backend_id = id;
				return be;
			}
		}
	}

	id = vx_maglev_lookup(svc->id, hash);
	if (!id)
		return NULL;
	be = bpf_map_lookup_elem(&vx_backend, &id);
	if (!be)
		return NULL;
	*backend_id = id;

	if (svc->flags & VX_SVC_F_AFFINITY) {
		__builtin_memset(&ae, 0, sizeof(ae));
		ae.backend_id = id;
		ae.last_ns = now;
		if (bpf_map_update_elem(&vx_affinity, &ak, &ae, BPF_ANY))
			vx_stat_inc(VX_STAT_CT_FULL);
	}
	return be;
}

/*
 * Forward direction: if p is addressed to a service frontend, DNAT it to the flow's backend
 * (the connection table's, or a new pick recorded there). A flow whose backend was deleted
 * from vx_backend (or changed address) is picked again; a flow whose backend only left the
 * Maglev table keeps it. A VX_FRAG_LATER fragment must have had its ports filled
 * (vx_frag_fill) before. New connection-table entries get ct_flags (VX_CT_F_*); on
 * VX_LB_NATED, *picked is the flow's backend id.
 */
static __always_inline enum vx_lb_result vx_lb_dnat_ex(struct __sk_buff *skb, struct vx_pkt *p,
						       __u8 ct_flags, __u32 *picked)
{
	struct vx_ct_entry *ct;
	struct vx_backend *be;
	struct vx_svc *svc;
	__u32 backend_id = 0, svc_id, hash;
	__be32 addr;
	__be16 port;
	__u64 conns = 0;

	svc = vx_svc_lookup(p->daddr, p->dport, p->proto);
	if (!svc)
		return VX_LB_PASS;
	svc_id = svc->id;

	ct = vx_ct_lookup(p, VX_CT_DIR_FWD);
	if (ct) {
		backend_id = ct->backend_id;
		be = bpf_map_lookup_elem(&vx_backend, &backend_id);
		if (be && be->addr == ct->nat_addr && be->port == ct->nat_port) {
			addr = ct->nat_addr;
			port = ct->nat_port;
			goto translate;
		}
		vx_stat_inc(VX_STAT_CT_RESELECT);
	}

	if (svc->flags & VX_SVC_F_AFFINITY)
		hash = vx_hash_client(p->saddr);
	else
		hash = vx_hash_tuple(p->saddr, p->daddr, p->sport, p->dport, p->proto);
	be = vx_lb_pick(svc, hash, p->saddr, &backend_id);
	if (!be) {
		vx_svc_no_backend(svc_id);
		return VX_LB_DROP;
	}
	addr = be->addr;
	port = be->port;
	if (vx_ct_create(p, addr, port, backend_id, svc_id, ct_flags))
		vx_stat_inc(VX_STAT_CT_FULL);
	else
		vx_stat_inc(VX_STAT_CT_NEW);
	conns = 1;

translate:
	if (p->frag == VX_FRAG_FIRST)
		vx_frag_record(p);
	if (vx_nat_rewrite(skb, p, VX_NAT_DST, addr, port)) {
		vx_stat_inc(VX_STAT_NAT_ERROR);
		return VX_LB_DROP;
	}
	vx_be_count(backend_id, 1, skb->len, conns);
	vx_stat_inc(p->frag == VX_FRAG_LATER ? VX_STAT_FRAG_NAT : VX_STAT_FWD_NAT);
	*picked = backend_id;
	return VX_LB_NATED;
}

/* vx_lb_dnat_ex for the east-west path: no connection-table flags, the pick not needed. */
static __always_inline enum vx_lb_result vx_lb_dnat(struct __sk_buff *skb, struct vx_pkt *p)
{
	__u32 picked;

	return vx_lb_dnat_ex(skb, p, 0, &picked);
}

/* Reply direction: if p belongs to a translated flow, write the frontend back as its
 * source. */
static __always_inline enum vx_lb_result vx_lb_reverse(struct __sk_buff *skb, struct vx_pkt *p)
{
	struct vx_ct_entry *ct;
	__be32 addr;
	__be16 port;

	ct = vx_ct_lookup(p, VX_CT_DIR_REPLY);
	if (!ct)
		return VX_LB_PASS;
	addr = ct->nat_addr;
	port = ct->nat_port;
	if (p->frag == VX_FRAG_FIRST)
		vx_frag_record(p);
	if (vx_nat_rewrite(skb, p, VX_NAT_SRC, addr, port)) {
		vx_stat_inc(VX_STAT_NAT_ERROR);
		return VX_LB_DROP;
	}
	vx_stat_inc(p->frag == VX_FRAG_LATER ? VX_STAT_FRAG_NAT : VX_STAT_REV_NAT);
	return VX_LB_NATED;
}

/* Parses skb into p for the load balancer; 0 if p is an IPv4 TCP/UDP packet whose ports are
 * known (a later fragment's from its first fragment). Truncated packets and later fragments
 * whose first was not seen are counted and refused (-1); so is anything else. */
static __always_inline int vx_lb_parse(struct __sk_buff *skb, struct vx_pkt *p)
{
	switch (vx_parse(skb, p)) {
	case VX_PARSE_OK:
		break;
	case VX_PARSE_TRUNCATED:
		vx_stat_inc(VX_STAT_TRUNCATED);
		return -1;
	default:
		return -1;
	}
	if (p->frag == VX_FRAG_LATER && vx_frag_fill(p)) {
		vx_stat_inc(VX_STAT_FRAG_MISS);
		return -1;
	}
	return 0;
}

#endif /* VXMESH_LB_H */
