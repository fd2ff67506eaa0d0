/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * mtu.h: the MTU rule of the routing mesh's forward path.
 *
 * vx_from_underlay delivers a client's packet to a device: a local backend's host-side veth,
 * or the backend's network bridge, whose static FDB sends it into the network's VXLAN
 * device. The agent gives both the network's MTU, which already leaves room for every
 * header the overlay adds (underlay - 50 for VXLAN; underlay - 110 for an encrypted
 * network, WireGuard's 60 around VXLAN's 50), so that device's MTU is the path MTU of the
 * client's packets. A client on the underlay assumes the underlay's MTU (1500 for 1500), so
 * the device would drop its full-size packets without a word (the bridge port's and veth's
 * is_skb_forwardable()). vx_mesh_fit() keeps TCP from ever sending them: a SYN's MSS is
 * clamped to that MTU - 40 (mss.h), so the backend sends, and learns to expect, segments
 * that fit; the backend's own SYN-ACK already advertises its own interface's MTU - 40.
 *
 * The MTU is read from the device itself (bpf_check_mtu), so it follows the agent's
 * changes at once and needs no map.
 */
#ifndef VXMESH_MTU_H
#define VXMESH_MTU_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "mss.h"
#include "parse.h"
#include "vxmesh_maps.h"

/* The MTU (bytes of IP packet) of device ifindex in skb's namespace, or 0 when there is no
 * such device. */
static __always_inline __u32 vx_dev_mtu(struct __sk_buff *skb, __u32 ifindex)
{
	__u32 mtu = 0; /* in: 0, check skb->len (only the MTU it reports back is used) */

	if (bpf_check_mtu(skb, ifindex, &mtu, 0, 0) < 0)
		return 0;
	return mtu;
}

/* Fits the (translated) packet p to the path through device ifindex: a TCP SYN's MSS is
 * clamped to the device's MTU - 40 (counted in vx_stats). Returns 0, or -1 when the rewrite
 * failed (counted as a NAT error; drop the packet). */
static __always_inline int vx_mesh_fit(struct __sk_buff *skb, const struct vx_pkt *p,
				       __u32 ifindex)
{
	__u32 mtu = vx_dev_mtu(skb, ifindex);

	/* No such device (the redirect fails alike), or one no MSS option could exceed. */
	if (mtu <= VX_MSS_OVERHEAD || mtu - VX_MSS_OVERHEAD > 0xffff)
		return 0;
	switch (vx_mss_clamp(skb, p, mtu - VX_MSS_OVERHEAD)) {
	case VX_MSS_CLAMPED:
		vx_stat_inc(VX_STAT_MSS_CLAMP);
		return 0;
	case VX_MSS_ERROR:
		vx_stat_inc(VX_STAT_NAT_ERROR);
		return -1;
	default:
		return 0;
	}
}

#endif /* VXMESH_MTU_H */
