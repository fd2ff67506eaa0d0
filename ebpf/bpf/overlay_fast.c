// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * overlay_fast.c: the overlay fast path (`vxmesh agent --datapath ebpf`): frames between a
 * container and its network's VXLAN device skip the network's bridge, and frames from
 * other hosts skip the host-side veth too. Both programs are attached through tcx, FIRST in
 * their hook (before the services' programs, which see everything the fast path leaves).
 *
 *   vxf_from_lxc    tcx ingress of a container's host-side veth (frames the container
 *                   sends). A unicast frame to the MAC of a remote endpoint of its network
 *                   is redirected to the network's VXLAN device (bpf_redirect), whose static
 *                   FDB entries (the agent's, the same the bridge path uses) encapsulate it
 *                   toward the endpoint's host: the wire format is the VXLAN device's own. A
 *                   frame to a local endpoint of the network goes straight into that
 *                   container. An ARP request for an endpoint of the network or its gateway
 *                   is answered from vxf_ep and sent back to the container.
 *   vxf_from_vxlan  tcx ingress of a network's VXLAN device (decapsulated frames from other
 *                   hosts). A unicast frame from a remote endpoint of the network to a local
 *                   one goes straight into the container (bpf_redirect_peer: the host-side
 *                   veth and its backlog queue are skipped).
 *
 * Delivery to a local container is bpf_redirect_peer, or bpf_redirect to the veth's egress
 * when its vxf_l2 entry says VXF_L2_F_EGRESS (the services' reverse NAT runs there).
 *
 * Everything else is left untouched to the next program and the bridge (VX_TC_NEXT, never
 * TC_ACT_OK, which with tcx would end the hook and skip the devices' tc filters):
 * broadcast and multicast frames, frames to the gateway (routed by the host, where the
 * isolation filters and the services see them), frames to or from MACs the store does not
 * name (a VXLAN peer configured by hand, a routing-mesh ingress node), and frames larger
 * than the MTU of the device they would be sent to (bpf_check_mtu; the bridge drops them, as
 * it does on the bridge path: is_skb_forwardable). Isolation between networks: every key
 * carries the network's VNI, taken from the interface the frame arrived on (vxf_port).
 *
 * Verdicts: TC_ACT_REDIRECT (sent on, or an ARP request answered), VX_TC_NEXT (everything
 * else). Nothing is dropped here. Counters: vxf_stats.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "arp_answer.h"
#include "fast_maps.h"
#include "parse.h"

/* TCX_NEXT (include/uapi/linux/bpf.h, 6.6+; TC_ACT_UNSPEC before): not this program's
 * frame; the next program of the hook, the device's tc filters and the bridge decide. */
#define VX_TC_NEXT TC_ACT_UNSPEC

/* Answers an ARP request for an address of network vni from vxf_ep, back out of the veth it
 * came from; VX_TC_NEXT when it is not such a request. */
static __always_inline int vxf_arp(struct __sk_buff *skb, __u32 vni)
{
	struct vxf_ip_key key = { .vni = vni };
	struct vx_arp *arp;
	struct vxf_ep *ep;
	__be32 spa, tpa;

	arp = vx_arp_request(skb, &spa, &tpa);
	if (!arp)
		return VX_TC_NEXT;
	key.addr = tpa;
	ep = bpf_map_lookup_elem(&vxf_ep, &key);
	if (!ep)
		return VX_TC_NEXT;
	vx_arp_answer(arp, spa, tpa, ep->mac);
	vxf_stat_inc(VXF_STAT_ARP_REPLY);
	return bpf_redirect(skb->ifindex, 0);
}

/* Reads the Ethernet header; NULL for a runt frame. Valid until the next helper that
 * changes packet data. */
static __always_inline struct ethhdr *vxf_eth(struct __sk_buff *skb)
{
	struct ethhdr *eth;

	if (vx_pull(skb, sizeof(*eth)))
		return NULL;
	eth = (void *)(long)skb->data;
	if ((void *)(eth + 1) > (void *)(long)skb->data_end)
		return NULL;
	return eth;
}

/* The vxf_l2 entry of mac on network vni, or NULL. */
static __always_inline struct vxf_l2 *vxf_l2_of(__u32 vni, const __u8 *mac)
{
	struct vxf_mac_key key = { .vni = vni };

	__builtin_memcpy(key.mac, mac, ETH_ALEN);
	return bpf_map_lookup_elem(&vxf_l2, &key);
}

/* Whether the frame fits the MTU of device ifindex (a GSO frame is segmented to it later),
 * counted when it does not. */
static __always_inline int vxf_fits(struct __sk_buff *skb, __u32 ifindex)
{
	__u32 mtu_len = 0;

	if (bpf_check_mtu(skb, ifindex, &mtu_len, 0, 0) == BPF_MTU_CHK_RET_SUCCESS)
		return 1;
	vxf_stat_inc(VXF_STAT_TOO_BIG);
	return 0;
}

/* Into the local container behind host-side veth l2->ifindex. */
static __always_inline int vxf_deliver(const struct vxf_l2 *l2)
{
	if (l2->flags & VXF_L2_F_EGRESS)
		return bpf_redirect(l2->ifindex, 0);
	return bpf_redirect_peer(l2->ifindex, 0);
}

SEC("classifier")
int vxf_from_lxc(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct vxf_port *port;
	struct ethhdr *eth;
	struct vxf_l2 *l2;
	__u32 vni, vxlan;

	port = bpf_map_lookup_elem(&vxf_port, &ifindex);
	if (!port || (port->flags & VXF_PORT_F_VXLAN))
		return VX_TC_NEXT;
	vni = port->vni;
	vxlan = port->vxlan_ifindex;
	if (skb->protocol == bpf_htons(ETH_P_ARP))
		return vxf_arp(skb, vni);
	eth = vxf_eth(skb);
	if (!eth || (eth->h_dest[0] & 1))
		return VX_TC_NEXT;
	l2 = vxf_l2_of(vni, eth->h_dest);
	if (!l2) {
		vxf_stat_inc(VXF_STAT_PASS);
		return VX_TC_NEXT;
	}
	if (!vxf_fits(skb, l2->ifindex))
		return VX_TC_NEXT;
	if (l2->flags & VXF_L2_F_LOCAL) {
		if (l2->ifindex == ifindex)
			return VX_TC_NEXT;
		vxf_stat_inc(VXF_STAT_TX_LOCAL);
		return vxf_deliver(l2);
	}
	/* A remote endpoint is reached only through its own network's VXLAN device. */
	if (l2->ifindex != vxlan)
		return VX_TC_NEXT;
	vxf_stat_inc(VXF_STAT_TX_REMOTE);
	return bpf_redirect(vxlan, 0);
}

SEC("classifier")
int vxf_from_vxlan(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct vxf_l2 *dst, *src;
	struct vxf_port *port;
	struct ethhdr *eth;
	__u32 vni;

	port = bpf_map_lookup_elem(&vxf_port, &ifindex);
	if (!port || !(port->flags & VXF_PORT_F_VXLAN))
		return VX_TC_NEXT;
	vni = port->vni;
	eth = vxf_eth(skb);
	if (!eth || (eth->h_dest[0] & 1))
		return VX_TC_NEXT;
	dst = vxf_l2_of(vni, eth->h_dest);
	src = vxf_l2_of(vni, eth->h_source);
	/* Only endpoint-to-endpoint frames of this network: a frame from a MAC the store does
	 * not name as a remote endpoint (a routing-mesh ingress node, a peer set up by hand)
	 * goes the bridge's way, past the programs after this one. */
	if (!dst || !(dst->flags & VXF_L2_F_LOCAL) || !src || (src->flags & VXF_L2_F_LOCAL)) {
		vxf_stat_inc(VXF_STAT_PASS);
		return VX_TC_NEXT;
	}
	if (!vxf_fits(skb, dst->ifindex))
		return VX_TC_NEXT;
	vxf_stat_inc(VXF_STAT_RX_LOCAL);
	return vxf_deliver(dst);
}

char _license[] SEC("license") = "Dual BSD/GPL";
