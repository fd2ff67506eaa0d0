/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * arp_answer.h: recognising an ARP request and turning it into its reply in place (RFC 826),
 * with no map of its own: the services' VIP answers (arp.h) and the overlay fast path's
 * endpoint answers (overlay_fast.c) decide whom to answer for and with which MAC.
 *
 * Only well-formed Ethernet/IPv4 requests (htype 1, ptype 0x0800, hlen 6, plen 4, op 1) from
 * a sender with an address (not a probe, RFC 5227) and not about the sender itself (not
 * gratuitous) are answered, as the bridge's ARP suppression does (br_arp_nd_proxy.c).
 */
#ifndef VXMESH_ARP_ANSWER_H
#define VXMESH_ARP_ANSWER_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "parse.h"

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
 * When skb is an ARP request that may be answered, returns its ARP header (directly
 * readable and writable until the next helper that changes packet data) and sets *spa and
 * *tpa (network order); NULL otherwise. skb is not changed beyond pulling its headers into
 * the linear part.
 */
static __always_inline struct vx_arp *vx_arp_request(struct __sk_buff *skb, __be32 *spa,
						     __be32 *tpa)
{
	void *data, *data_end;
	struct ethhdr *eth;
	struct vx_arp *arp;

	if (vx_pull(skb, sizeof(*eth) + sizeof(*arp)))
		return NULL;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	arp = data + sizeof(*eth);
	if ((void *)(arp + 1) > data_end)
		return NULL;
	if (eth->h_proto != bpf_htons(ETH_P_ARP) || arp->htype != bpf_htons(1) ||
	    arp->ptype != bpf_htons(ETH_P_IP) || arp->hlen != ETH_ALEN || arp->plen != 4 ||
	    arp->op != bpf_htons(VX_ARP_REQUEST))
		return NULL;
	__builtin_memcpy(spa, arp->spa, 4);
	__builtin_memcpy(tpa, arp->tpa, 4);
	if (*spa == 0 || *spa == *tpa)
		return NULL;
	return arp;
}

/*
 * Turns the request whose ARP header vx_arp_request() returned into the reply "tpa is at
 * mac", addressed to the asker: Ethernet source mac, destination the asker's MAC.
 */
static __always_inline void vx_arp_answer(struct vx_arp *arp, __be32 spa, __be32 tpa,
					  const __u8 *mac)
{
	struct ethhdr *eth = (void *)arp - sizeof(*eth);

	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	arp->op = bpf_htons(VX_ARP_REPLY);
	__builtin_memcpy(arp->tha, arp->sha, ETH_ALEN);
	__builtin_memcpy(arp->tpa, &spa, 4);
	__builtin_memcpy(arp->sha, mac, ETH_ALEN);
	__builtin_memcpy(arp->spa, &tpa, 4);
}

#endif /* VXMESH_ARP_ANSWER_H */
