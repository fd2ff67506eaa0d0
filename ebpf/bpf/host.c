// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * host.c: the routing mesh's tc programs on a host's own devices (attached through tcx).
 * See mesh.h for the whole path.
 *
 *   vx_from_underlay  tcx ingress of the host's underlay device: a packet to a published
 *                     port of this host (vx_svc entry with VX_SVC_F_PUBLISHED, keyed by the
 *                     host's underlay address) is DNATed to a backend with the client's
 *                     source address kept (vx_lb_dnat_ex, VX_CT_F_MESH), fitted to the
 *                     path's MTU (mtu.h: a SYN's MSS clamped; a packet too large turned into
 *                     ICMP fragmentation needed, back out of the underlay) and redirected to
 *                     that backend (its veth, or its network's bridge into the overlay).
 *   vx_from_overlay   tcx ingress of a network's VXLAN device: a reply of a routing-mesh
 *                     flow this host translated, addressed to this node's MAC, is
 *                     reverse-NATed and sent out of the
 *                     underlay device; a frame from another ingress node to a local backend
 *                     of a published port is remembered (vx_mesh_flow) and passes on (a
 *                     DSR frame with the backend's target port written in).
 *
 * Verdicts: TC_ACT_REDIRECT for a delivered or turned-back packet; TC_ACT_SHOT for a packet
 * to a published port whose service has no backend, and for one a rewrite, the backend's
 * location or the FIB lookup failed on (counted); VX_TC_NEXT for everything else, untouched
 * (not for a published port, not IPv4 TCP/UDP, truncated, unmatched later fragments).
 *
 * VX_TC_NEXT, not TC_ACT_OK: these devices also carry the agent's classic tc filters (on the
 * underlay device: no IPv4 into a network's subnet, pref 4788, and no UDP 4790 for encrypted
 * networks, pref 4790). With tcx, a program's TC_ACT_OK ends the ingress hook and the filters
 * never run (sch_handle_ingress: only TCX_NEXT goes on to them), which let plain VXLAN into
 * an encrypted network as soon as a port was published.
 *
 * Why tc and not XDP: delivering into the bridge needs bpf_redirect to a device's egress
 * with a socket buffer (from XDP, bpf_redirect into the bridge delivered nothing here, and
 * XDP_TX on a veth needs a program on the peer; FIELD-NOTES "eBPF datapath").
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "lb.h"
#include "mesh.h"
#include "mtu.h"
#include "parse.h"
#include "vxmesh_maps.h"

/* TCX_NEXT (include/uapi/linux/bpf.h, 6.6+; TC_ACT_UNSPEC before): not this program's
 * packet, the next program of the hook and then the device's tc filters decide. */
#define VX_TC_NEXT TC_ACT_UNSPEC

SEC("classifier")
int vx_from_underlay(struct __sk_buff *skb)
{
	struct vx_svc *svc;
	struct vx_pkt p;
	__u32 backend_id = 0, svc_id, svc_flags;
	__be32 front_addr;
	__be16 front_port;
	int verdict;

	if (vx_lb_parse(skb, &p))
		return VX_TC_NEXT;
	svc = vx_svc_lookup(p.daddr, p.dport, p.proto);
	if (!svc || !(svc->flags & VX_SVC_F_PUBLISHED))
		return VX_TC_NEXT;
	svc_id = svc->id;
	svc_flags = svc->flags;
	front_addr = p.daddr;
	front_port = p.dport;
	switch (vx_lb_dnat_ex(skb, &p, VX_CT_F_MESH, &backend_id)) {
	case VX_LB_NATED:
		vx_mesh_claim(&p, front_addr, front_port, backend_id, svc_id);
		verdict = vx_mesh_fit(skb, &p, backend_id, front_addr, front_port);
		if (verdict != VX_FIT_OK)
			return verdict;
		return vx_mesh_deliver(skb, &p, backend_id, svc_flags, front_port);
	case VX_LB_DROP:
		return TC_ACT_SHOT;
	default:
		return VX_TC_NEXT;
	}
}

SEC("classifier")
int vx_from_overlay(struct __sk_buff *skb)
{
	struct vx_pkt p;
	int verdict;

	if (vx_lb_parse(skb, &p))
		return VX_TC_NEXT;
	if (vx_mesh_to_me(skb)) {
		verdict = vx_mesh_reverse_out(skb, &p);
		if (verdict >= 0)
			return verdict;
	}
	return vx_mesh_record(skb, &p) ? TC_ACT_SHOT : VX_TC_NEXT;
}

char _license[] SEC("license") = "Dual BSD/GPL";
