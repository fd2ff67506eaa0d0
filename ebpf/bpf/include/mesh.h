/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * mesh.h: the routing mesh (published ports on every host), on top of lb.h.
 *
 * Ingress host (the one whose underlay address the client addressed):
 *   vx_mesh_deliver()       after vx_lb_dnat_ex(): the frame gets the backend's MAC as its
 *                           destination and this node's MAC (vx_host.mac) as its source and
 *                           is redirected to the egress of vx_be_loc.ifindex: a local
 *                           backend's host-side veth, or a remote one's network bridge,
 *                           whose static FDB carries it over the network's VXLAN device.
 *                           DSR to a remote backend: the published port stays the
 *                           destination port and the source MAC is the node's DSR MAC.
 *   vx_mesh_reverse_out()   a reply of a flow it translated (a vx_ct reply entry with
 *                           VX_CT_F_MESH, from the overlay or from a local backend's veth):
 *                           source back to HOST:PUB, then out of the underlay device.
 * Backend host (the flow came over the overlay from another ingress node):
 *   vx_mesh_record()        at the VXLAN device's ingress: a frame whose source MAC is an
 *                           ingress node's (vx_mesh_node) to a backend of a published port
 *                           (vx_mesh_be) leaves the flow's reply tuple in vx_mesh_flow; a
 *                           DSR frame gets the backend's target port as destination here.
 *   vx_mesh_turn_back()     at the backend's host-side veth ingress: a reply of such a flow
 *                           goes back to the ingress node over the overlay (destination MAC
 *                           = the node's MAC, redirected to the VXLAN device, whose static
 *                           FDB entry for that MAC names the node), or in DSR mode gets
 *                           HOST:PUB as its source and leaves through this host's underlay.
 *
 * Leaving through the underlay: bpf_fib_lookup (flags 0, ifindex = the underlay device) then
 * bpf_redirect, or bpf_redirect_neigh when the neighbour is not resolved yet (FIELD-NOTES:
 * BPF_FIB_LOOKUP_OUTPUT from the bridge port answered NOT_FWDED here).
 */
#ifndef VXMESH_MESH_H
#define VXMESH_MESH_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "lb.h"
#include "nat.h"
#include "parse.h"
#include "vxmesh_maps.h"

#ifndef AF_INET
#define AF_INET 2
#endif

static __always_inline struct vx_host *vx_host_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&vx_host, &zero);
}

/* Writes the Ethernet destination and source. 0 or a negative helper error. */
static __always_inline int vx_set_macs(struct __sk_buff *skb, const __u8 *dst, const __u8 *src)
{
	int err = bpf_skb_store_bytes(skb, 0, dst, 6, 0);

	if (err)
		return err;
	return bpf_skb_store_bytes(skb, 6, src, 6, 0);
}

/* Sends the (already translated) packet p out of the host's underlay device towards its
 * destination: a TC_ACT_* verdict. Dropped (and counted as a NAT error) when the host is
 * not configured, the FIB has no route out, or the packet (a GSO packet: its segments) does
 * not fit the device's MTU (rc other than SUCCESS / NO_NEIGH). */
static __always_inline int vx_mesh_out_underlay(struct __sk_buff *skb, const struct vx_pkt *p)
{
	struct bpf_fib_lookup fib;
	struct vx_host *host = vx_host_get();
	long rc;

	if (!host || !host->ifindex)
		goto fail;
	__builtin_memset(&fib, 0, sizeof(fib));
	fib.family = AF_INET;
	fib.l4_protocol = p->proto;
	fib.sport = p->sport;
	fib.dport = p->dport;
	/* tot_len 0: the helper checks the skb against the egress device's MTU itself
	 * (is_skb_forwardable), which lets a GSO packet (TSO from the backend, GRO over the
	 * overlay) through when its segments fit; tot_len = skb->len would call every packet
	 * larger than the MTU FRAG_NEEDED and drop the bulk of a download. */
	fib.tot_len = 0;
	fib.ipv4_src = p->saddr;
	fib.ipv4_dst = p->daddr;
	fib.ifindex = host->ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (vx_set_macs(skb, fib.dmac, fib.smac))
			goto fail;
		vx_stat_inc(VX_STAT_MESH_REPLY);
		return bpf_redirect(fib.ifindex, 0);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh;

		__builtin_memset(&nh, 0, sizeof(nh));
		nh.nh_family = AF_INET;
		nh.ipv4_nh = fib.ipv4_dst;
		vx_stat_inc(VX_STAT_MESH_REPLY);
		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
fail:
	vx_stat_inc(VX_STAT_NAT_ERROR);
	return TC_ACT_SHOT;
}

/* The connection-table key of the replies of p's flow (p already translated: backend ->
 * client). */
static __always_inline void vx_mesh_reply_key(struct vx_ct_key *k, const struct vx_pkt *p)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->saddr = p->daddr;
	k->daddr = p->saddr;
	k->sport = p->dport;
	k->dport = p->sport;
	k->proto = p->proto;
	k->dir = VX_CT_DIR_REPLY;
}

/*
 * Ingress host, after vx_lb_dnat_ex translated p (to backend_id of service svc_id) for the
 * frontend front_addr:front_port: this host now owns the flow's replies. A flow of the same
 * 5-tuple that came earlier through another ingress node (a reused client port) may have
 * left a vx_mesh_flow record, or this host's reply entry may have been taken by it: the
 * newest forward packet wins, so the record goes and the reply entry is made again.
 */
static __always_inline void vx_mesh_claim(const struct vx_pkt *p, __be32 front_addr,
					  __be16 front_port, __u32 backend_id, __u32 svc_id)
{
	struct vx_ct_entry e, *ct;
	struct vx_ct_key k;

	vx_mesh_reply_key(&k, p);
	bpf_map_delete_elem(&vx_mesh_flow, &k);
	ct = bpf_map_lookup_elem(&vx_ct, &k);
	if (ct && ct->nat_addr == front_addr && ct->nat_port == front_port &&
	    (ct->flags & VX_CT_F_MESH))
		return;
	__builtin_memset(&e, 0, sizeof(e));
	e.nat_addr = front_addr;
	e.nat_port = front_port;
	e.flags = VX_CT_F_MESH;
	e.backend_id = backend_id;
	e.svc_id = svc_id;
	e.created_ns = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&vx_ct, &k, &e, BPF_ANY))
		vx_stat_inc(VX_STAT_CT_FULL);
}

/* Forward direction on the ingress host, after vx_lb_dnat_ex translated p to backend_id for
 * the frontend port front_port of a service with flags svc_flags: a verdict. A DSR flow to a
 * backend on another host keeps front_port as its destination port and gets the node's DSR
 * MAC as its source (VX_SVC_F_DSR): the backend's host translates the port itself and so
 * knows, per flow, which published port to answer from. */
static __always_inline int vx_mesh_deliver(struct __sk_buff *skb, struct vx_pkt *p,
					   __u32 backend_id, __u32 svc_flags, __be16 front_port)
{
	struct vx_be_loc *loc = bpf_map_lookup_elem(&vx_be_loc, &backend_id);
	struct vx_host *host = vx_host_get();
	__u8 src[6];

	if (!loc || !host)
		goto fail;
	__builtin_memcpy(src, host->mac, 6);
	if ((svc_flags & VX_SVC_F_DSR) && !(loc->flags & VX_BE_LOC_F_LOCAL)) {
		src[1] ^= VX_MESH_DSR_MAC_BIT;
		if (vx_nat_rewrite(skb, p, VX_NAT_DST, p->daddr, front_port))
			goto fail;
	}
	if (vx_set_macs(skb, loc->mac, src))
		goto fail;
	vx_stat_inc(VX_STAT_MESH_FWD);
	return bpf_redirect(loc->ifindex, 0);
fail:
	vx_stat_inc(VX_STAT_NAT_ERROR);
	return TC_ACT_SHOT;
}

/* A reply of a routing-mesh flow this host translated: source back to HOST:PUB and out of
 * the underlay. Returns -1 when p is not such a reply (untouched), else a verdict. */
static __always_inline int vx_mesh_reverse_out(struct __sk_buff *skb, struct vx_pkt *p)
{
	struct vx_ct_entry *ct = vx_ct_lookup(p, VX_CT_DIR_REPLY);

	if (!ct || !(ct->flags & VX_CT_F_MESH))
		return -1;
	if (vx_lb_reverse(skb, p) != VX_LB_NATED)
		return TC_ACT_SHOT;
	return vx_mesh_out_underlay(skb, p);
}

/* 1 if the frame is addressed to this node's MAC (vx_host.mac): a routing-mesh reply sent
 * back to this ingress node. Without a static FDB entry for that MAC on the sender's VXLAN
 * device, the sender floods it to every peer, and a peer must not answer for a flow of the
 * same 5-tuple it once translated itself (an old flow of a reused client port). */
static __always_inline int vx_mesh_to_me(struct __sk_buff *skb)
{
	struct vx_host *host = vx_host_get();
	__u8 dst[6];

	if (!host || bpf_skb_load_bytes(skb, 0, dst, 6))
		return 0;
	return __builtin_memcmp(dst, host->mac, 6) == 0;
}

/* Backend host, at the VXLAN device's ingress: remembers which ingress node a
 * routing-mesh flow to a local backend came from. A DSR frame (from a node's DSR MAC) still
 * carries the published port: its destination port becomes the backend's target port here.
 * Returns 0, or -1 when that rewrite failed (drop the packet; counted). */
static __always_inline int vx_mesh_record(struct __sk_buff *skb, struct vx_pkt *p)
{
	struct vx_mesh_be_key bk;
	struct vx_mac_key mk;
	struct vx_ct_key fk;
	struct vx_mesh_flow f, *old;
	struct vx_ct_entry *ct;
	struct vx_mesh_be *be;
	struct vx_mesh_node *node;

	__builtin_memset(&mk, 0, sizeof(mk));
	if (bpf_skb_load_bytes(skb, 6, mk.mac, 6))
		return 0;
	node = bpf_map_lookup_elem(&vx_mesh_node, &mk);
	if (!node)
		return 0;
	__builtin_memset(&bk, 0, sizeof(bk));
	bk.addr = p->daddr;
	bk.port = p->dport;
	bk.proto = p->proto;
	bk.flags = node->flags & VX_MESH_F_DSR;
	be = bpf_map_lookup_elem(&vx_mesh_be, &bk);
	if (!be)
		return 0;
	/* Before any rewrite: later fragments find these ports and so the same entry. */
	if (p->frag == VX_FRAG_FIRST)
		vx_frag_record(p);
	if ((bk.flags & VX_MESH_F_DSR) &&
	    vx_nat_rewrite(skb, p, VX_NAT_DST, p->daddr, be->target_port)) {
		vx_stat_inc(VX_STAT_NAT_ERROR);
		return -1;
	}

	vx_mesh_reply_key(&fk, p);
	old = bpf_map_lookup_elem(&vx_mesh_flow, &fk);
	if (old && old->ingress_addr == node->addr && old->pub_port == be->pub_port &&
	    old->flags == be->flags)
		return 0;
	__builtin_memset(&f, 0, sizeof(f));
	__builtin_memcpy(f.node_mac, mk.mac, 6);
	f.pub_port = be->pub_port;
	f.ingress_addr = node->addr;
	f.overlay_ifindex = be->overlay_ifindex;
	f.flags = be->flags;
	if (bpf_map_update_elem(&vx_mesh_flow, &fk, &f, BPF_ANY))
		vx_stat_inc(VX_STAT_CT_FULL);
	/* The newest forward packet wins: a reply entry this host made when it was the ingress
	 * node of an older flow of the same 5-tuple must not catch these replies. */
	ct = bpf_map_lookup_elem(&vx_ct, &fk);
	if (ct && (ct->flags & VX_CT_F_MESH))
		bpf_map_delete_elem(&vx_ct, &fk);
	return 0;
}

/* Backend host, at a backend's host-side veth ingress: a reply of a routing-mesh flow that
 * came from another ingress node goes back to it (default mode) or straight to the client
 * with HOST:PUB as its source (DSR). Returns -1 when p is not such a reply (untouched),
 * else a verdict. */
static __always_inline int vx_mesh_turn_back(struct __sk_buff *skb, struct vx_pkt *p)
{
	struct vx_mesh_flow *f;
	struct vx_ct_key k;
	__u8 node_mac[6];
	__u32 ifindex;
	__u8 src_mac[6];

	vx_ct_key_of(&k, p, VX_CT_DIR_REPLY);
	f = bpf_map_lookup_elem(&vx_mesh_flow, &k);
	if (!f)
		return -1;
	if (f->flags & VX_MESH_F_DSR) {
		if (p->frag == VX_FRAG_FIRST)
			vx_frag_record(p);
		if (vx_nat_rewrite(skb, p, VX_NAT_SRC, f->ingress_addr, f->pub_port)) {
			vx_stat_inc(VX_STAT_NAT_ERROR);
			return TC_ACT_SHOT;
		}
		return vx_mesh_out_underlay(skb, p);
	}
	__builtin_memcpy(node_mac, f->node_mac, 6);
	ifindex = f->overlay_ifindex;
	if (bpf_skb_load_bytes(skb, 6, src_mac, 6) || vx_set_macs(skb, node_mac, src_mac)) {
		vx_stat_inc(VX_STAT_NAT_ERROR);
		return TC_ACT_SHOT;
	}
	vx_stat_inc(VX_STAT_MESH_REPLY);
	return bpf_redirect(ifindex, 0);
}

#endif /* VXMESH_MESH_H */
