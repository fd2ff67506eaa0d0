/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * arp.h: answers a container's ARP request for a service VIP (RFC 826).
 *
 * A VIP comes from its network's subnet, so a container sends to it on-link and asks for
 * its hardware address first; no interface holds the VIP, so nobody else would answer. The
 * answer gives the MAC stored in vx_vip (the network's gateway MAC): the packet then reaches
 * the host-side veth addressed to the bridge, vx_from_lxc translates it, and the host routes
 * it to the backend. Only well-formed Ethernet/IPv4 requests (htype 1, ptype 0x0800, hlen 6,
 * plen 4, op 1) from a sender with an address (not a probe, RFC 5227) and not about the
 * sender itself (not gratuitous) are answered.
 */
#ifndef VXMESH_ARP_H
#define VXMESH_ARP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "parse.h"
#include "vxmesh_maps.h"

#define VX_ARP_REQUEST 1
#define VX_ARP_REPLY 2

/* An ARP packet for Ethernet and IPv4 (RFC 826); addresses as bytes (they are unaligned). */
struct vx_arp {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__u8 spa[4];
	__u8 tha[ETH_ALEN];
	__u8 tpa[4];
} __attribute__((packed));

/*
 * When skb is an ARP request for a VIP, turns it into the reply in place and returns 1 (the
 * caller sends it back where it came from); 0 otherwise (skb untouched).
 */
static __always_inline int vx_arp_reply(struct __sk_buff *skb)
{
	void *data, *data_end;
	struct ethhdr *eth;
	struct vx_arp *arp;
	struct vx_vip *vip;
	__be32 spa, tpa;

	if (vx_pull(skb, sizeof(*eth) + sizeof(*arp)))
		return 0;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	arp = data + sizeof(*eth);
	if ((void *)(arp + 1) > data_end)
		return 0;
	if (eth->h_proto != bpf_htons(ETH_P_ARP) || arp->htype != bpf_htons(1) ||
	    arp->ptype != bpf_htons(ETH_P_IP) || arp->hlen != ETH_ALEN || arp->plen != 4 ||
	    arp->op != bpf_htons(VX_ARP_REQUEST))
		return 0;
	__builtin_memcpy(&spa, arp->spa, 4);
	__builtin_memcpy(&tpa, arp->tpa, 4);
	if (spa == 0 || spa == tpa)
		return 0;
	vip = bpf_map_lookup_elem(&vx_vip, &tpa);
	if (!vip)
		return 0;

	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, vip->mac, ETH_ALEN);
	arp->op = bpf_htons(VX_ARP_REPLY);
	__builtin_memcpy(arp->tha, arp->sha, ETH_ALEN);
	__builtin_memcpy(arp->tpa, &spa, 4);
	__builtin_memcpy(arp->sha, vip->mac, ETH_ALEN);
	__builtin_memcpy(arp->spa, &tpa, 4);
	vx_stat_inc(VX_STAT_ARP_REPLY);
	return 1;
}

#endif /* VXMESH_ARP_H */
