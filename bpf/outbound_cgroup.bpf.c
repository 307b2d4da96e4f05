/* Outbound capture on pod cgroups: TCP connect() goes to the agent, which learns where it was going. */

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "lib/config.h"
#include "lib/maps.h"
#include "lib/stats.h"

/* From <sys/socket.h> and <linux/netfilter_ipv4.h>, which do not build for the bpf target. */
#define AF_INET		2
#define SOL_IP		0
#define SO_ORIGINAL_DST	80

/*
 * The hooks below run in the context of the calling process, once per syscall, before the kernel
 * picks a route: rewriting user_ip4/user_port here is exactly as if the application had asked for
 * the agent's address. No packet is ever touched, so there is no per-packet cost and no NAT state.
 * A socket is tied to the cgroup of the process that created it, so attaching to a pod's cgroup
 * (children included) catches every socket created in the pod, and nothing else on the node.
 */

static __always_inline int redirect(void *ctx, __be32 dst_ip, __u32 dst_port, __u32 mark,
				    const struct ambit_config *cfg, __be16 *new_port)
{
	struct ambit_addr4 orig = { .ip = dst_ip, .port = (__be16)dst_port };
	__u64 cookie;

	/* 127/8 stays inside the pod's netns: there is no agent there to answer. */
	if ((bpf_ntohl(dst_ip) >> 24) == 127) {
		count(AMBIT_OUT_PASS_LOOPBACK);
		return 0;
	}
	if (dst_ip == cfg->proxy_ip4) {
		count(AMBIT_OUT_PASS_PROXY);
		return 0;
	}
	if (mark == AMBIT_BYPASS_MARK) {
		count(AMBIT_OUT_PASS_MARKED);
		return 0;
	}

	/*
	 * Record before rewriting. If the record cannot be stored the agent could not tell where the
	 * connection was going; letting it bypass the mesh would be worse, so connect() fails (EPERM).
	 */
	cookie = bpf_get_socket_cookie(ctx);
	if (bpf_map_update_elem(&ambit_cookie, &cookie, &orig, BPF_ANY)) {
		count(AMBIT_OUT_DENY_MAP_FULL);
		return -1;
	}
	*new_port = port_or(cfg->outbound_port, AMBIT_OUTBOUND_PORT);
	count(AMBIT_OUT_REDIRECTED);
	return 1;
}

SEC("cgroup/connect4")
int ambit_connect4(struct bpf_sock_addr *ctx)
{
	const struct ambit_config *cfg;
	__be16 port;
	int verdict;

	/* UDP (DNS above all) is not captured. */
	if (ctx->protocol != IPPROTO_TCP) {
		count(AMBIT_OUT_PASS_NOT_TCP);
		return 1;
	}
	cfg = config();
	if (!cfg) {
		count(AMBIT_OUT_PASS_NO_CONFIG);
		return 1;
	}
	verdict = redirect(ctx, ctx->user_ip4, ctx->user_port, ctx->sk->mark, cfg, &port);
	if (verdict < 0)
		return 0;
	if (verdict > 0) {
		ctx->user_ip4 = cfg->proxy_ip4;
		ctx->user_port = port;
	}
	return 1;
}

SEC("cgroup/connect6")
int ambit_connect6(struct bpf_sock_addr *ctx)
{
	const struct ambit_config *cfg;
	__u32 ip6[4];
	__be16 port;
	int verdict;

	if (ctx->protocol != IPPROTO_TCP) {
		count(AMBIT_OUT_PASS_NOT_TCP);
		return 1;
	}
	/* The context only allows 4-byte loads of user_ip6, one word at a time. */
	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
	if (!is_v4_mapped(ip6)) {
		count(AMBIT_OUT_PASS_NATIVE_V6);
		return 1;
	}
	cfg = config();
	if (!cfg) {
		count(AMBIT_OUT_PASS_NO_CONFIG);
		return 1;
	}
	verdict = redirect(ctx, ip6[3], ctx->user_port, ctx->sk->mark, cfg, &port);
	if (verdict < 0)
		return 0;
	if (verdict > 0) {
		ctx->user_ip6[3] = cfg->proxy_ip4;
		ctx->user_port = port;
	}
	return 1;
}

/*
 * ACTIVE_ESTABLISHED runs in tcp_finish_connect(), before the pod's final ACK of the handshake is
 * sent, so the (pod IP, pod port) entry exists before the agent's accept() can return. A connection
 * that gets no entry (its pod is over its cap, or the table is full) reaches the agent without an
 * original destination, and the agent refuses it: fail closed, and only for that connection.
 */
static __always_inline void move_to_pair(struct bpf_sock_ops *skops, struct ambit_addr4 *pair,
					 __be32 remote_ip, __u32 remote_port)
{
	const struct ambit_config *cfg = config();
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct ambit_addr4 *orig = bpf_map_lookup_elem(&ambit_cookie, &cookie);
	__u32 max, one = 1, *held;
	long err;

	if (!orig) {
		/*
		 * Connected to the agent without a record: connect4 stored one, and the LRU dropped it
		 * before the handshake finished (a flood of connects that never complete). Say so.
		 */
		if (cfg && remote_ip == cfg->proxy_ip4 &&
		    remote_port == port_or(cfg->outbound_port, AMBIT_OUTBOUND_PORT))
			count(AMBIT_SOCKOPS_RECORD_LOST);
		else
			count(AMBIT_SOCKOPS_NOT_REDIRECTED);
		return;
	}
	max = cfg && cfg->pod_pairs_max ? cfg->pod_pairs_max : AMBIT_POD_PAIRS_MAX;
	held = bpf_map_lookup_elem(&ambit_pod_pairs, &pair->ip);
	if (held && *held >= max) {
		count(AMBIT_SOCKOPS_POD_QUOTA);
		bpf_map_delete_elem(&ambit_cookie, &cookie);
		return;
	}
	err = bpf_map_update_elem(&ambit_origdst, pair, orig, BPF_NOEXIST);
	if (err == -17 /* EEXIST: a stale entry under this pair; it is replaced, not counted again */)
		err = bpf_map_update_elem(&ambit_origdst, pair, orig, BPF_EXIST);
	else if (!err && held)
		__sync_fetch_and_add(held, 1);
	else if (!err && bpf_map_update_elem(&ambit_pod_pairs, &pair->ip, &one, BPF_NOEXIST)) {
		/* Another CPU created the pod's counter first. */
		held = bpf_map_lookup_elem(&ambit_pod_pairs, &pair->ip);
		if (held)
			__sync_fetch_and_add(held, 1);
	}
	bpf_map_delete_elem(&ambit_cookie, &cookie);
	if (err) {
		count(AMBIT_SOCKOPS_STORE_FAILED);
		return;
	}
	/* Ask for STATE_CB on this socket only, so the pair entry dies with the connection. */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	count(AMBIT_SOCKOPS_PAIR_STORED);
}

/* The pair entry of a closing socket, and its place in the pod's count. */
static __always_inline void release_pair(struct ambit_addr4 *pair)
{
	__u32 *held;

	if (bpf_map_delete_elem(&ambit_origdst, pair))
		return;
	held = bpf_map_lookup_elem(&ambit_pod_pairs, &pair->ip);
	if (held && *held > 0)
		__sync_fetch_and_sub(held, 1);
	count(AMBIT_SOCKOPS_PAIR_DELETED);
}

SEC("sockops")
int ambit_sockops(struct bpf_sock_ops *skops)
{
	/*
	 * Read the addresses unconditionally and once: clang otherwise folds the ctx offset into a
	 * branch and the verifier rejects the "modified ctx ptr". local_ip4 is the IPv4 source for
	 * v4-mapped AF_INET6 sockets too (tcp_v4_connect sets sk_rcv_saddr for them).
	 */
	struct ambit_addr4 pair = {
		.ip = skops->local_ip4,
		.port = bpf_htons((__u16)skops->local_port),	/* local_port is host order */
	};
	__be32 remote_ip = skops->remote_ip4;
	/* remote_port is in network order in the low 16 bits (the kernel's own layout since 5.10). */
	__u32 remote_port = skops->remote_port;

	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		move_to_pair(skops, &pair, remote_ip, remote_port);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* Called from tcp_set_state() before the port is released, so local_port is still set. */
		if (skops->args[1] == BPF_TCP_CLOSE)
			release_pair(&pair);
		break;
	}
	return 1;
}

/* Maps the peer the agent would show back to the original destination, for getpeername(). */
static __always_inline const struct ambit_addr4 *restored_peer(struct bpf_sock_addr *ctx, __be32 ip,
							      __u32 port)
{
	const struct ambit_config *cfg = config();
	struct ambit_addr4 pair;
	const struct ambit_addr4 *orig;

	if (!cfg || ip != cfg->proxy_ip4 || port != port_or(cfg->outbound_port, AMBIT_OUTBOUND_PORT)) {
		count(AMBIT_PEER_PASS);
		return NULL;
	}
	pair.ip = ctx->sk->src_ip4;
	pair.port = bpf_htons((__u16)ctx->sk->src_port);
	pair._pad = 0;
	orig = bpf_map_lookup_elem(&ambit_origdst, &pair);
	count(orig ? AMBIT_PEER_RESTORED : AMBIT_PEER_PASS);
	return orig;
}

SEC("cgroup/getpeername4")
int ambit_getpeername4(struct bpf_sock_addr *ctx)
{
	const struct ambit_addr4 *orig = restored_peer(ctx, ctx->user_ip4, ctx->user_port);

	if (orig) {
		ctx->user_ip4 = orig->ip;
		ctx->user_port = orig->port;
	}
	return 1;
}

SEC("cgroup/getpeername6")
int ambit_getpeername6(struct bpf_sock_addr *ctx)
{
	const struct ambit_addr4 *orig;
	__u32 ip6[4];

	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
	if (!is_v4_mapped(ip6)) {
		count(AMBIT_PEER_PASS);
		return 1;
	}
	orig = restored_peer(ctx, ip6[3], ctx->user_port);
	if (orig) {
		ctx->user_ip6[3] = orig->ip;
		ctx->user_port = orig->port;
	}
	return 1;
}

/*
 * Attached to the agent's cgroup. The kernel's own SO_ORIGINAL_DST comes from conntrack; this runs
 * after it and answers from ambit_origdst instead when the peer is a redirected pod socket. Without
 * an entry the kernel's answer stands, so the same agent code works behind iptables REDIRECT.
 */
SEC("cgroup/getsockopt")
int ambit_getsockopt(struct bpf_sockopt *ctx)
{
	struct sockaddr_in *out = ctx->optval;
	const struct ambit_addr4 *orig;
	struct ambit_addr4 peer = {};
	struct bpf_sock *sk = ctx->sk;

	if (ctx->level != SOL_IP || ctx->optname != SO_ORIGINAL_DST || !sk) {
		count(AMBIT_SOCKOPT_OTHER);
		return 1;
	}
	peer.ip = sk->dst_ip4;
	peer.port = sk->dst_port;
	orig = bpf_map_lookup_elem(&ambit_origdst, &peer);
	/* optval is a kernel copy of (at most a page of) the caller's buffer; it may be too short. */
	if (!orig || (void *)(out + 1) > ctx->optval_end) {
		count(AMBIT_SOCKOPT_NOT_FOUND);
		return 1;
	}
	out->sin_family = AF_INET;
	out->sin_port = orig->port;
	out->sin_addr.s_addr = orig->ip;
	__builtin_memset(out->sin_zero, 0, sizeof(out->sin_zero));
	/*
	 * optlen and retval are adjacent s32 fields: clang would merge the two stores into one 8-byte
	 * store, and the verifier only allows 4-byte context writes. volatile keeps them apart.
	 */
	*(volatile __s32 *)&ctx->optlen = sizeof(*out);
	*(volatile __s32 *)&ctx->retval = 0;
	count(AMBIT_SOCKOPT_ORIG_DST);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
