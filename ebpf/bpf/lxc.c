// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * lxc.c: tc programs for a container's host-side veth (attached through tcx).
 *
 *   vx_from_lxc  tcx ingress of the host-side veth: packets the container sends. Packets to
 *                a service frontend are DNATed to a backend (vx_lb_dnat); ARP requests
 *                for a VIP are answered (vx_arp_reply) and sent back to the container.
 *                Replies of routing-mesh flows (mesh.h) leave by the underlay device
 *                or go back to their ingress node over the overlay (TC_ACT_REDIRECT).
 *   vx_to_lxc    tcx egress of the host-side veth: packets to the container. Replies of a
 *                translated flow get the frontend back as their source (vx_lb_reverse).
 *
 * Verdicts: TC_ACT_REDIRECT for an answered ARP request (back out of the same veth, to the
 * container); TC_ACT_OK for everything that is not dropped (translated or not); TC_ACT_SHOT
 * for a packet to a service with no backend (counted in vx_svc_stats and vx_stats) and for
 * a packet a rewrite helper failed on. Non-IPv4, non-TCP/UDP, truncated or malformed
 * packets, and later fragments whose first fragment was not seen, pass untouched
 * (TC_ACT_OK; truncated ones and unmatched fragments are counted in vx_stats).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "arp.h"
#include "lb.h"
#include "mesh.h"
#include "parse.h"
#include "vxmesh_maps.h"

static __always_inline int vx_tc_verdict(enum vx_lb_result r)
{
	return r == VX_LB_DROP ? TC_ACT_SHOT : TC_ACT_OK;
}

SEC("classifier")
int vx_from_lxc(struct __sk_buff *skb)
{
	enum vx_lb_result r;
	struct vx_pkt p;
	int verdict;

	if (skb->protocol == bpf_htons(ETH_P_ARP)) {
		if (vx_arp_reply(skb))
			return bpf_redirect(skb->ifindex, 0);
		return TC_ACT_OK;
	}

	if (vx_lb_parse(skb, &p))
		return TC_ACT_OK;
	r = vx_lb_dnat(skb, &p);
	if (r != VX_LB_PASS)
		return vx_tc_verdict(r);
	/* Routing mesh: a local backend's reply to a flow that came in through a published
	 * port, of this host (back out of the underlay) or of another (back to it). */
	verdict = vx_mesh_reverse_out(skb, &p);
	if (verdict < 0)
		verdict = vx_mesh_turn_back(skb, &p);
	return verdict < 0 ? TC_ACT_OK : verdict;
}

SEC("classifier")
int vx_to_lxc(struct __sk_buff *skb)
{
	struct vx_pkt p;

	if (vx_lb_parse(skb, &p))
		return TC_ACT_OK;
	return vx_tc_verdict(vx_lb_reverse(skb, &p));
}

char _license[] SEC("license") = "Dual BSD/GPL";
