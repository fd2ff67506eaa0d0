/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * parse.h: Ethernet + IPv4 (with options, fragments) + TCP/UDP ports, for tc programs.
 *
 * Every read is a direct packet access checked against data_end, so the verifier proves
 * that no byte outside the packet is read. Headers outside the linear part are pulled in
 * with bpf_skb_pull_data() first.
 */
#ifndef VXMESH_PARSE_H
#define VXMESH_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define VX_FRAG_NONE 0  /* a whole datagram */
#define VX_FRAG_FIRST 1 /* offset 0, more fragments follow: carries the L4 header */
#define VX_FRAG_LATER 2 /* offset > 0: no L4 header; ports come from vx_frag */

/* IPv4 frag_off bits (RFC 791 section 3.1). */
#define VX_IP_MF 0x2000
#define VX_IP_OFFSET 0x1fff

/* What vx_parse() found; offsets are from the start of the frame. */
struct vx_pkt {
	__u32 l3_off;   /* the IPv4 header */
	__u32 l4_off;   /* the TCP/UDP header: l3_off + IHL * 4 */
	__u32 csum_off; /* the L4 checksum field (TCP: l4_off + 16, UDP: l4_off + 6) */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;   /* 0 in a VX_FRAG_LATER fragment until filled from vx_frag */
	__be16 dport;
	__be16 ip_id;
	__u8 proto;     /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 frag;      /* VX_FRAG_* */
};

enum vx_parse_result {
	VX_PARSE_OK = 0,        /* an IPv4 TCP or UDP packet, p is filled */
	VX_PARSE_NOT_OURS = 1,  /* not IPv4, or not TCP/UDP: leave it alone */
	VX_PARSE_TRUNCATED = 2, /* shorter than its own headers say, or malformed: leave it alone */
};

/* Makes the first len bytes of the packet directly readable. 0 on success. */
static __always_inline int vx_pull(struct __sk_buff *skb, __u32 len)
{
	if ((void *)(long)skb->data + len <= (void *)(long)skb->data_end)
		return 0;
	if (skb->len < len)
		return -1;
	return bpf_skb_pull_data(skb, len) ? -1 : 0;
}

static __always_inline int vx_parse(struct __sk_buff *skb, struct vx_pkt *p)
{
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 hdr_len, tot_len, l4_len;
	__u16 frag_off;

	if (vx_pull(skb, sizeof(struct ethhdr)))
		return VX_PARSE_TRUNCATED;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return VX_PARSE_TRUNCATED;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return VX_PARSE_NOT_OURS;

	if (vx_pull(skb, sizeof(struct ethhdr) + sizeof(struct iphdr)))
		return VX_PARSE_TRUNCATED;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	ip = data + sizeof(struct ethhdr);
	if ((void *)(ip + 1) > data_end)
		return VX_PARSE_TRUNCATED;
	if (ip->version != 4 || ip->ihl < 5)
		return VX_PARSE_TRUNCATED;
	hdr_len = (__u32)ip->ihl * 4;
	tot_len = bpf_ntohs(ip->tot_len);
	/* The datagram must hold its own header and fit in the frame (RFC 791 3.1). */
	if (tot_len < hdr_len || tot_len > skb->len - sizeof(struct ethhdr))
		return VX_PARSE_TRUNCATED;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return VX_PARSE_NOT_OURS;

	p->l3_off = sizeof(struct ethhdr);
	p->l4_off = sizeof(struct ethhdr) + hdr_len;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->ip_id = ip->id;
	p->proto = ip->protocol;
	p->sport = 0;
	p->dport = 0;
	frag_off = bpf_ntohs(ip->frag_off);
	if (frag_off & VX_IP_OFFSET)
		p->frag = VX_FRAG_LATER;
	else if (frag_off & VX_IP_MF)
		p->frag = VX_FRAG_FIRST;
	else
		p->frag = VX_FRAG_NONE;

	if (p->proto == IPPROTO_TCP) {
		l4_len = sizeof(struct tcphdr);
		p->csum_off = p->l4_off + offsetof(struct tcphdr, check);
	} else {
		l4_len = sizeof(struct udphdr);
		p->csum_off = p->l4_off + offsetof(struct udphdr, check);
	}
	if (p->frag == VX_FRAG_LATER)
		return VX_PARSE_OK;

	/* Whole datagrams and first fragments carry the full L4 header (RFC 1858: a first
	 * fragment too short for it is malformed). */
	if (hdr_len + l4_len > tot_len)
		return VX_PARSE_TRUNCATED;
	if (vx_pull(skb, p->l4_off + l4_len))
		return VX_PARSE_TRUNCATED;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	/* hdr_len is at most 60, so the verifier knows the offset's bounds. */
	{
		__be16 *ports = data + sizeof(struct ethhdr) + (hdr_len & 0x3c);

		if ((void *)ports + l4_len > data_end)
			return VX_PARSE_TRUNCATED;
		p->sport = ports[0];
		p->dport = ports[1];
	}
	return VX_PARSE_OK;
}

#endif /* VXMESH_PARSE_H */
