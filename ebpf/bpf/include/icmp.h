/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * icmp.h: ICMP "fragmentation needed" (RFC 792: destination unreachable, type 3 code 4; the
 * next-hop MTU in the second half of the unused word, RFC 1191 section 4), made in place
 * from an IPv4 packet that does not fit the path it was to take.
 *
 * The packet becomes the error: Ethernet addresses swapped, a new IPv4 header (from the
 * address the packet was sent to, back to its sender, TTL 64, TOS 0xc0 as Linux's own ICMP
 * errors), the ICMP header, then the offending datagram's IP header and the first 8 bytes
 * of its payload (RFC 792: enough for the sender to find its socket, the ports); the rest is
 * cut off. Checksums are computed whole (bpf_csum_diff), not updated. The caller sends it
 * back out of the device it came in on.
 *
 * Not done here (the kernel's icmp_send does): rate limiting. Each oversized packet gets
 * one error, smaller than the packet itself.
 */
#ifndef VXMESH_ICMP_H
#define VXMESH_ICMP_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "parse.h"

#define VX_ICMP_DEST_UNREACH 3
#define VX_ICMP_FRAG_NEEDED 4
#define VX_ICMP_QUOTE_DATA 8  /* bytes of the datagram's payload quoted (RFC 792) */
#define VX_IP_MAX_HDR 60
#define VX_IPTOS_INTERNETCONTROL 0xc0
#define VX_ICMP_TTL 64

/* The ICMP header of a fragmentation-needed error (<linux/icmp.h> cannot be included under
 * -target bpf, FIELD-NOTES). */
struct vx_icmp_frag {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__be16 unused;
	__be16 mtu; /* next-hop MTU (RFC 1191 section 4) */
};

/* Folds a 32-bit ones' complement partial sum (bpf_csum_diff's result) to the 16-bit
 * Internet checksum, complemented, in the byte order of the summed data (RFC 1071). */
static __always_inline __u16 vx_csum_fold(__s64 partial)
{
	__u32 s = (__u32)partial;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/*
 * Turns the packet p describes (as its sender sent it: p->saddr -> p->daddr) into an ICMP
 * fragmentation-needed error with next-hop MTU mtu, from p->daddr back to p->saddr. Returns
 * 0, or a negative error (the packet may then be half-written: drop it).
 */
static __always_inline int vx_icmp_frag_needed(struct __sk_buff *skb, const struct vx_pkt *p,
					       __u32 mtu)
{
	__u8 quote[VX_IP_MAX_HDR + VX_ICMP_QUOTE_DATA];
	struct vx_icmp_frag icmp;
	struct iphdr ip;
	__u8 macs[12], swapped[12];
	__u32 hdr_len = p->l4_off - p->l3_off, qlen;
	__s64 sum;

	if (hdr_len < sizeof(struct iphdr) || hdr_len > VX_IP_MAX_HDR)
		return -1;
	/* 28..68, a multiple of 4. The mask is a no-op on what an IHL gives, but the verifier
	 * needs it to see the bound; the empty asm keeps clang from folding it away. */
	qlen = hdr_len;
	asm volatile("" : "+r"(qlen));
	qlen = (qlen & 0x3c) + VX_ICMP_QUOTE_DATA;
	__builtin_memset(quote, 0, sizeof(quote));
	if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)) ||
	    bpf_skb_load_bytes(skb, p->l3_off, quote, qlen))
		return -1;
	__builtin_memcpy(swapped, macs + 6, 6);
	__builtin_memcpy(swapped + 6, macs, 6);

	__builtin_memset(&icmp, 0, sizeof(icmp));
	icmp.type = VX_ICMP_DEST_UNREACH;
	icmp.code = VX_ICMP_FRAG_NEEDED;
	icmp.mtu = bpf_htons((__u16)mtu);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&icmp, sizeof(icmp), 0);
	if (sum < 0)
		return (int)sum;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)quote, qlen, (__u32)sum);
	if (sum < 0)
		return (int)sum;
	icmp.checksum = vx_csum_fold(sum);

	__builtin_memset(&ip, 0, sizeof(ip));
	ip.version = 4;
	ip.ihl = sizeof(ip) / 4;
	ip.tos = VX_IPTOS_INTERNETCONTROL;
	ip.tot_len = bpf_htons(sizeof(ip) + sizeof(icmp) + qlen);
	ip.ttl = VX_ICMP_TTL;
	ip.protocol = IPPROTO_ICMP;
	ip.saddr = p->daddr;
	ip.daddr = p->saddr;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&ip, sizeof(ip), 0);
	if (sum < 0)
		return (int)sum;
	ip.check = vx_csum_fold(sum);

	if (bpf_skb_change_tail(skb, p->l3_off + sizeof(ip) + sizeof(icmp) + qlen, 0))
		return -1;
	if (bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), 0) ||
	    bpf_skb_store_bytes(skb, p->l3_off, &ip, sizeof(ip), 0) ||
	    bpf_skb_store_bytes(skb, p->l3_off + sizeof(ip), &icmp, sizeof(icmp), 0) ||
	    bpf_skb_store_bytes(skb, p->l3_off + sizeof(ip) + sizeof(icmp), quote, qlen, 0))
		return -1;
	return 0;
}

#endif /* VXMESH_ICMP_H */
