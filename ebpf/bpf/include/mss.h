/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * mss.h: TCP MSS clamping, on one packet (what iptables' TCPMSS target does).
 *
 * A SYN's Maximum Segment Size option (RFC 9293 section 3.7.1: kind 2, length 4) tells the
 * peer the largest segment it may send. A SYN that enters a path whose MTU is smaller than
 * its sender assumed gets the option lowered to what fits that path, MTU - 20 (IPv4 header)
 * - 20 (TCP header) (RFC 879, RFC 6691), so the peer never sends a segment the path drops.
 * The TCP checksum is updated incrementally (RFC 1624); the packet's length does not change.
 *
 * Only SYNs (with or without ACK) of whole datagrams are looked at, and only their option
 * bytes (at most 40: data offset <= 15 words). A SYN without an MSS option is left alone: its
 * peer then assumes 536 bytes (RFC 9293 section 3.7.1), which fits any IPv4 path. An option
 * list that is malformed before the MSS option is reached is left alone too.
 */
#ifndef VXMESH_MSS_H
#define VXMESH_MSS_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "parse.h"

#define VX_TCP_OPT_EOL 0
#define VX_TCP_OPT_NOP 1
#define VX_TCP_OPT_MSS 2
#define VX_TCP_OPT_MSS_LEN 4
#define VX_TCP_HDR_LEN 20       /* TCP header without options */
#define VX_TCP_MAX_OPTS 40      /* (15 - 5) words of options at most */
#define VX_TCP_FLAG_SYN 0x02    /* in byte 13 of the TCP header */
#define VX_MSS_OVERHEAD 40      /* IPv4 and TCP headers without options (RFC 879) */

enum vx_mss_result {
	VX_MSS_UNTOUCHED = 0, /* not a SYN, no MSS option, or already small enough */
	VX_MSS_CLAMPED = 1,   /* the option now says max_mss */
	VX_MSS_ERROR = -1,    /* a rewrite helper failed: the packet may be half-written */
};

/*
 * Lowers the MSS option of the TCP SYN p describes to max_mss (bytes, host order) when it
 * is larger. Returns a vx_mss_result.
 */
static __always_inline int vx_mss_clamp(struct __sk_buff *skb, const struct vx_pkt *p,
					__u16 max_mss)
{
	__u8 opts[VX_TCP_MAX_OPTS];
	__u8 hdr[2]; /* data offset and flags: bytes 12 and 13 of the TCP header */
	__u32 optlen, i, off;
	__u16 old, from, to;
	__be16 mss_be;

	if (p->proto != IPPROTO_TCP || p->frag != VX_FRAG_NONE)
		return VX_MSS_UNTOUCHED;
	if (bpf_skb_load_bytes(skb, p->l4_off + 12, hdr, sizeof(hdr)))
		return VX_MSS_UNTOUCHED;
	if (!(hdr[1] & VX_TCP_FLAG_SYN))
		return VX_MSS_UNTOUCHED;
	optlen = (__u32)(hdr[0] >> 4) * 4;
	if (optlen <= VX_TCP_HDR_LEN)
		return VX_MSS_UNTOUCHED;
	optlen -= VX_TCP_HDR_LEN;
	if (optlen > VX_TCP_MAX_OPTS)
		return VX_MSS_UNTOUCHED;
	__builtin_memset(opts, 0, sizeof(opts));
	if (bpf_skb_load_bytes(skb, p->l4_off + VX_TCP_HDR_LEN, opts, optlen))
		return VX_MSS_UNTOUCHED;

	/* Walk the options (RFC 9293 section 3.1): EOL ends the list, NOP is one byte, every
	 * other option is kind, length (>= 2), data. Each step moves at least one byte. */
	for (i = 0; i < VX_TCP_MAX_OPTS;) {
		__u8 kind, len;

		if (i >= optlen)
			return VX_MSS_UNTOUCHED;
		kind = opts[i];
		if (kind == VX_TCP_OPT_EOL)
			return VX_MSS_UNTOUCHED;
		if (kind == VX_TCP_OPT_NOP) {
			i++;
			continue;
		}
		if (i + 1 >= optlen)
			return VX_MSS_UNTOUCHED;
		len = opts[i + 1];
		if (len < 2)
			return VX_MSS_UNTOUCHED;
		if (kind == VX_TCP_OPT_MSS)
			break;
		i += len;
	}
	if (i + VX_TCP_OPT_MSS_LEN > optlen || i + VX_TCP_OPT_MSS_LEN > VX_TCP_MAX_OPTS ||
	    opts[i + 1] != VX_TCP_OPT_MSS_LEN)
		return VX_MSS_UNTOUCHED;
	old = ((__u16)opts[i + 2] << 8) | opts[i + 3];
	if (old <= max_mss)
		return VX_MSS_UNTOUCHED;

	/* The checksum sums 16-bit words counted from the TCP header's start. The option's
	 * value sits at offset 20 + i + 2: at an even offset it is one word (its bytes as they
	 * are in the packet), at an odd one its bytes fall into two words, which sums like the
	 * value with its bytes swapped. */
	if (i & 1) {
		from = old;
		to = max_mss;
	} else {
		from = bpf_htons(old);
		to = bpf_htons(max_mss);
	}
	off = p->l4_off + VX_TCP_HDR_LEN + i + 2;
	mss_be = bpf_htons(max_mss);
	if (bpf_l4_csum_replace(skb, p->csum_off, from, to, sizeof(__u16)))
		return VX_MSS_ERROR;
	if (bpf_skb_store_bytes(skb, off, &mss_be, sizeof(mss_be), 0))
		return VX_MSS_ERROR;
	return VX_MSS_CLAMPED;
}

#endif /* VXMESH_MSS_H */
