// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * lxc.c: tc programs for a container's host-side veth (attached through tcx).
 *
 *   vx_from_lxc  tcx ingress of the host-side veth: packets the container sends. Packets to
 *                a service frontend are DNATed to a backend (vx_lb_dnat); ARP requests
 *                for a VIP are answered (vx_arp_reply) and sent back to the container.
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
#include "parse.h"
#include "vxmesh_maps.h"

/* Parses skb into p; 0 if p is an IPv4 TCP/UDP packet whose ports are known. */
static __always_inline int vx_lxc_parse(struct __sk_buff *skb, struct vx_pkt *p)
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

static __always_inline int vx_tc_verdict(enum vx_lb_result r)
{
	return r == VX_LB_DROP ? TC_ACT_SHOT : TC_ACT_OK;
}

SEC("classifier")
int vx_from_lxc(struct __sk_buff *skb)
{
	struct vx_pkt p;

	if (skb->protocol == bpf_htons(ETH_P_ARP)) {
		if (vx_arp_reply(skb))
			return bpf_redirect(skb->ifindex, 0);
		return TC_ACT_OK;
	}
	if (vx_lxc_parse(skb, &p))
		return TC_ACT_OK;
	return vx_tc_verdict(vx_lb_dnat(skb, &p));
}

SEC("classifier")
int vx_to_lxc(struct __sk_buff *skb)
{
	struct vx_pkt p;

	if (vx_lxc_parse(skb, &p))
		return TC_ACT_OK;
	return vx_tc_verdict(vx_lb_reverse(skb, &p));
}

char _license[] SEC("license") = "Dual BSD/GPL";
