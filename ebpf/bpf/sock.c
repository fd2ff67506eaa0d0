// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sock.c: cgroup socket-address programs: balance once per connection, at the socket.
 *
 *   vx_connect4     cgroup/connect4: connect() to a frontend goes to a backend instead
 *                   (TCP, and connected UDP). Picks by Maglev over a random hash (no source
 *                   port exists yet), or over the client's network namespace with affinity.
 *   vx_sendmsg4     cgroup/sendmsg4: an unconnected UDP sendmsg() to a frontend; a socket
 *                   keeps the backend it got first while that backend exists.
 *   vx_recvmsg4     cgroup/recvmsg4: a datagram from that backend shows the frontend as its
 *                   source.
 *   vx_getpeername4 cgroup/getpeername4: getpeername() shows the frontend.
 *   vx_sock_release cgroup/sock_release: forgets the socket's entry in vx_sock_rev.
 *
 * A service with no backend refuses the connect()/sendmsg() (return 0: EPERM), counted in
 * vx_svc_stats and vx_stats. vx_sock_rev is keyed by socket cookie alone: an unconnected
 * UDP socket talking to two frontends at once sees only the later one turned back.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#include "lb.h"
#include "vxmesh_maps.h"

#define VX_SOCK_ALLOW 1
#define VX_SOCK_DENY 0

static __always_inline int vx_sock_xlate(struct bpf_sock_addr *ctx, int sendmsg)
{
	struct vx_sock_rev rev, *old;
	struct vx_backend *be;
	struct vx_svc *svc;
	__u32 backend_id = 0, hash, proto = ctx->protocol;
	__be32 addr = ctx->user_ip4;
	__be16 port = (__be16)ctx->user_port;
	__u64 cookie, client;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return VX_SOCK_ALLOW;
	svc = vx_svc_lookup(addr, port, proto);
	if (!svc)
		return VX_SOCK_ALLOW;
	cookie = bpf_get_socket_cookie(ctx);

	if (sendmsg) {
		old = bpf_map_lookup_elem(&vx_sock_rev, &cookie);
		if (old && old->frontend_addr == addr && old->frontend_port == port) {
			backend_id = old->backend_id;
			be = bpf_map_lookup_elem(&vx_backend, &backend_id);
			if (be && be->addr == old->backend_addr && be->port == old->backend_port) {
				ctx->user_ip4 = be->addr;
				ctx->user_port = (__u32)be->port;
				vx_be_count(backend_id, 1, 0, 0);
				vx_stat_inc(VX_STAT_SOCK_SENDMSG);
				return VX_SOCK_ALLOW;
			}
		}
	}

	client = VX_AFF_CLIENT_NETNS | bpf_get_netns_cookie(ctx);
	if (svc->flags & VX_SVC_F_AFFINITY)
		hash = vx_hash_client(client);
	else
		hash = bpf_get_prandom_u32();
	be = vx_lb_pick(svc, hash, client, &backend_id);
	if (!be) {
		vx_svc_no_backend(svc->id);
		return VX_SOCK_DENY;
	}

	__builtin_memset(&rev, 0, sizeof(rev));
	rev.frontend_addr = addr;
	rev.frontend_port = port;
	rev.backend_addr = be->addr;
	rev.backend_port = be->port;
	rev.backend_id = backend_id;
	if (bpf_map_update_elem(&vx_sock_rev, &cookie, &rev, BPF_ANY))
		vx_stat_inc(VX_STAT_CT_FULL);

	ctx->user_ip4 = be->addr;
	ctx->user_port = (__u32)be->port;
	vx_be_count(backend_id, sendmsg ? 1 : 0, 0, 1);
	vx_stat_inc(sendmsg ? VX_STAT_SOCK_SENDMSG : VX_STAT_SOCK_CONNECT);
	return VX_SOCK_ALLOW;
}

/* recvmsg4 / getpeername4: a backend address the socket was sent to reads as the frontend. */
static __always_inline int vx_sock_reverse(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct vx_sock_rev *rev = bpf_map_lookup_elem(&vx_sock_rev, &cookie);

	if (rev && ctx->user_ip4 == rev->backend_addr &&
	    (__be16)ctx->user_port == rev->backend_port) {
		ctx->user_ip4 = rev->frontend_addr;
		ctx->user_port = (__u32)rev->frontend_port;
		vx_stat_inc(VX_STAT_SOCK_REVERSE);
	}
	return VX_SOCK_ALLOW;
}

SEC("cgroup/connect4")
int vx_connect4(struct bpf_sock_addr *ctx)
{
	return vx_sock_xlate(ctx, 0);
}

SEC("cgroup/sendmsg4")
int vx_sendmsg4(struct bpf_sock_addr *ctx)
{
	return vx_sock_xlate(ctx, 1);
}

SEC("cgroup/recvmsg4")
int vx_recvmsg4(struct bpf_sock_addr *ctx)
{
	return vx_sock_reverse(ctx);
}

SEC("cgroup/getpeername4")
int vx_getpeername4(struct bpf_sock_addr *ctx)
{
	return vx_sock_reverse(ctx);
}

SEC("cgroup/sock_release")
int vx_sock_release(struct bpf_sock *sk)
{
	__u64 cookie = bpf_get_socket_cookie(sk);

	bpf_map_delete_elem(&vx_sock_rev, &cookie);
	return VX_SOCK_ALLOW;
}

char _license[] SEC("license") = "Dual BSD/GPL";
