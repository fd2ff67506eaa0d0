/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * maglev.h: look a flow up in a service's Maglev table (Eisenbud et al., "Maglev: A Fast and
 * Reliable Software Network Load Balancer", NSDI 2016, section 3.4). The table is computed
 * in user space (ingress-lb) and only read here; see vx_maglev in vxmesh_maps.h for its
 * layout and how it is swapped.
 */
#ifndef VXMESH_MAGLEV_H
#define VXMESH_MAGLEV_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "vxmesh_maps.h"

/* The murmur3 32-bit finaliser (fmix32): full avalanche, so hash % M spreads evenly. */
static __always_inline __u32 vx_mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bU;
	h ^= h >> 13;
	h *= 0xc2b2ae35U;
	h ^= h >> 16;
	return h;
}

/* Hash of a flow's 5-tuple (any byte order, as long as every host uses the same). */
static __always_inline __u32 vx_hash_tuple(__be32 saddr, __be32 daddr, __be16 sport, __be16 dport,
					   __u8 proto)
{
	__u32 h = 0x9e3779b9U;

	h = vx_mix32(h ^ saddr);
	h = vx_mix32(h ^ daddr);
	h = vx_mix32(h ^ (((__u32)sport << 16) | dport));
	return vx_mix32(h ^ proto);
}

/* Hash of a client identity (affinity: every host picks the same backend for a client). */
static __always_inline __u32 vx_hash_client(__u64 client)
{
	__u32 h = 0x9e3779b9U;

	h = vx_mix32(h ^ (__u32)client);
	return vx_mix32(h ^ (__u32)(client >> 32));
}

/* Backend id in slot hash % M of service svc_id's table; 0 if it has none (no table, or
 * M = 0: no backend). */
static __always_inline __u32 vx_maglev_lookup(__u32 svc_id, __u32 hash)
{
	__u32 slot = VX_MAGLEV_SIZE_SLOT;
	__u32 *m, *id;
	void *table;

	table = bpf_map_lookup_elem(&vx_maglev, &svc_id);
	if (!table)
		return 0;
	m = bpf_map_lookup_elem(table, &slot);
	if (!m || *m == 0)
		return 0;
	slot = 1 + hash % *m;
	id = bpf_map_lookup_elem(table, &slot);
	return id ? *id : 0;
}

#endif /* VXMESH_MAGLEV_H */
