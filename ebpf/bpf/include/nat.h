/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nat.h: rewrite an IPv4 TCP/UDP packet's source or destination address and port with the
 * IP header checksum and the L4 checksum (which covers the pseudo-header, RFC 793 3.1 and
 * RFC 768) updated incrementally (RFC 1624). The helpers do it for every checksum state of
 * the skb: BPF_F_PSEUDO_HDR marks the address as part of the pseudo-header (so a
 * CHECKSUM_PARTIAL skb, as a container's own TCP sends them, stays right), and
 * BPF_F_MARK_MANGLED_0 keeps a UDP checksum of 0 ("none", RFC 768) at 0 and writes a
 * computed 0 as 0xffff.
 *
 * No notion of services or containers here: the east-west path and the routing mesh both
 * call it.
 */
#ifndef VXMESH_NAT_H
#define VXMESH_NAT_H

#include <stddef.h>
#include <linux/bpf.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>

#include "parse.h"

#define VX_NAT_DST 0 /* rewrite the destination (DNAT) */
#define VX_NAT_SRC 1 /* rewrite the source (the reverse of a DNAT, on replies) */

/*
 * Rewrites the destination or the source of the packet p describes to addr:port (network
 * order) and updates p. A VX_FRAG_LATER fragment has no L4 header: only the address and the
 * IP checksum change. Returns 0, or a negative error of the helper that failed (the packet
 * may then be half-written: drop it).
 */
static __always_inline int vx_nat_rewrite(struct __sk_buff *skb, struct vx_pkt *p, int which,
					  __be32 addr, __be16 port)
{
	__be32 old_addr = which == VX_NAT_DST ? p->daddr : p->saddr;
	__be16 old_port = which == VX_NAT_DST ? p->dport : p->sport;
	__u32 addr_off = p->l3_off + (which == VX_NAT_DST ? offsetof(struct iphdr, daddr)
							   : offsetof(struct iphdr, saddr));
	__u32 port_off = p->l4_off + (which == VX_NAT_DST ? 2 : 0);
	__u64 l4_flags = p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	int has_l4 = p->frag != VX_FRAG_LATER;
	int err;

	if (old_addr != addr) {
		if (has_l4) {
			err = bpf_l4_csum_replace(skb, p->csum_off, old_addr, addr,
						  BPF_F_PSEUDO_HDR | l4_flags | sizeof(addr));
			if (err)
				return err;
		}
		err = bpf_l3_csum_replace(skb, p->l3_off + offsetof(struct iphdr, check), old_addr,
					  addr, sizeof(addr));
		if (err)
			return err;
		err = bpf_skb_store_bytes(skb, addr_off, &addr, sizeof(addr), 0);
		if (err)
			return err;
	}
	if (has_l4 && old_port != port) {
		err = bpf_l4_csum_replace(skb, p->csum_off, old_port, port,
					  l4_flags | sizeof(port));
		if (err)
			return err;
		err = bpf_skb_store_bytes(skb, port_off, &port, sizeof(port), 0);
		if (err)
			return err;
	}
	if (which == VX_NAT_DST) {
		p->daddr = addr;
		p->dport = port;
	} else {
		p->saddr = addr;
		p->sport = port;
	}
	return 0;
}

#endif /* VXMESH_NAT_H */
