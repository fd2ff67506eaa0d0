/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * arp.h: answers a container's ARP request for a service VIP (RFC 826).
 *
 * A VIP comes from its network's subnet, so a container sends to it on-link and asks for
 * its hardware address first; no interface holds the VIP, so nobody else would answer. The
 * answer gives the MAC stored in vx_vip (the network's gateway MAC): the packet then reaches
 * the host-side veth addressed to the bridge, vx_from_lxc translates it, and the host routes
 * it to the backend. Which requests are answered, and how: arp_answer.h.
 */
#ifndef VXMESH_ARP_H
#define VXMESH_ARP_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "arp_answer.h"
#include "vxmesh_maps.h"

/*
 * When skb is an ARP request for a VIP, turns it into the reply in place and returns 1 (the
 * caller sends it back where it came from); 0 otherwise (skb untouched).
 */
static __always_inline int vx_arp_reply(struct __sk_buff *skb)
{
	struct vx_arp *arp;
	struct vx_vip *vip;
	__be32 spa, tpa;

	arp = vx_arp_request(skb, &spa, &tpa);
	if (!arp)
		return 0;
	vip = bpf_map_lookup_elem(&vx_vip, &tpa);
	if (!vip)
		return 0;
	vx_arp_answer(arp, spa, tpa, vip->mac);
	vx_stat_inc(VX_STAT_ARP_REPLY);
	return 1;
}

#endif /* VXMESH_ARP_H */
