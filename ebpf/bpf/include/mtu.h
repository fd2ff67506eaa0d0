/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * mtu.h: the MTU rule of the routing mesh's forward path.
 *
 * vx_from_underlay delivers a client's packet to a device (vx_be_loc): a local backend's
 * host-side veth, or the backend's network bridge, whose static FDB sends it into the
 * network's VXLAN device. The agent gives both the network's MTU, which already leaves room
 * for every header the overlay adds (underlay - 50 for VXLAN; underlay - 110 for an
 * encrypted network, WireGuard's 60 around VXLAN's 50), so that device's MTU is the path MTU
 * of the client's packets. A client on the underlay assumes the underlay's MTU, and the
 * device would drop its full-size packets without a word (is_skb_forwardable() of the
 * bridge port or of the veth's peer). vx_mesh_fit() makes sure none is lost that way:
 *
 *   - TCP: a SYN's MSS is clamped to that MTU - 40 (mss.h), so the backend never sends the
 *     client more per segment than the path carries back, and (its own SYN-ACK advertising
 *     its interface's MTU - 40) the client never sends it more either;
 *   - any packet still larger than that MTU (UDP, a TCP flow older than the clamp) is turned
 *     back into an ICMP fragmentation-needed error with that MTU (icmp.h), from HOST to the
 *     client, out of the device it came in on: PMTU discovery (RFC 1191), whether the
 *     packet had DF set or not (a tc program cannot fragment; a Linux sender lowers its
 *     path MTU for the destination either way and fragments its next datagrams).
 *
 * GSO packets (many segments in one skb) are not checked: their segments are cut to the
 * sender's MSS, which the clamp bounds. The MTU is read from the device at each packet
 * (bpf_check_mtu), so it follows the agent's changes at once and needs no map.
 */
#ifndef VXMESH_MTU_H
#define VXMESH_MTU_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "icmp.h"
#include "mss.h"
#include "nat.h"
#include "parse.h"
#include "vxmesh_maps.h"

#define VX_FIT_OK (-1) /* vx_mesh_fit: the packet fits, deliver it */

/*
 * Fits the packet p, translated by vx_lb_dnat_ex to backend_id from the frontend
 * front_addr:front_port, to the path through the device it is delivered to. Returns
 * VX_FIT_OK (deliver it; a SYN's MSS may have been lowered, counted as VX_STAT_MSS_CLAMP),
 * TC_ACT_REDIRECT (it did not fit and became an ICMP error to its sender, counted as
 * VX_STAT_FRAG_NEEDED), or TC_ACT_SHOT (a rewrite failed, counted as a NAT error). A backend
 * without a place, or whose device does not exist, is left to the delivery's own checks.
 */
static __always_inline int vx_mesh_fit(struct __sk_buff *skb, struct vx_pkt *p, __u32 backend_id,
				       __be32 front_addr, __be16 front_port)
{
	struct vx_be_loc *loc = bpf_map_lookup_elem(&vx_be_loc, &backend_id);
	__u32 mtu = 0; /* in: 0, check skb->len; out: the device's MTU */
	long fits;

	if (!loc)
		return VX_FIT_OK;
	fits = bpf_check_mtu(skb, loc->ifindex, &mtu, 0, 0);
	if (fits < 0 || mtu <= VX_MSS_OVERHEAD)
		return VX_FIT_OK;
	if (fits == BPF_MTU_CHK_RET_FRAG_NEEDED) {
		/* The error quotes the datagram as the client sent it. */
		if (vx_nat_rewrite(skb, p, VX_NAT_DST, front_addr, front_port) ||
		    vx_icmp_frag_needed(skb, p, mtu))
			goto fail;
		vx_stat_inc(VX_STAT_FRAG_NEEDED);
		return bpf_redirect(skb->ifindex, 0);
	}
	if (mtu - VX_MSS_OVERHEAD > 0xffff)
		return VX_FIT_OK;
	switch (vx_mss_clamp(skb, p, mtu - VX_MSS_OVERHEAD)) {
	case VX_MSS_CLAMPED:
		vx_stat_inc(VX_STAT_MSS_CLAMP);
		return VX_FIT_OK;
	case VX_MSS_ERROR:
		goto fail;
	default:
		return VX_FIT_OK;
	}
fail:
	vx_stat_inc(VX_STAT_NAT_ERROR);
	return TC_ACT_SHOT;
}

#endif /* VXMESH_MTU_H */
