/* DNS capture on pod cgroups: a pod's queries to port 53 (UDP and TCP, IPv4 and v4-mapped IPv6) go to the agent's DNS proxy. */

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "lib/config.h"
#include "lib/maps.h"

#define DNS_PORT 53

/*
 * Socket cookie -> the DNS server the pod asked for. recvmsg4/6 read it to give each reply the source
 * address the resolver expects: glibc (and most stub resolvers) drop a reply that does not come from
 * the server they asked. A UDP socket has no close hook to delete its entry, so the map is an LRU.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, AMBIT_ORIG_DST_ENTRIES);
	__type(key, __u64);
	__type(value, struct ambit_addr4);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_dns_server SEC(".maps");

/*
 * Sends a query for (ip, port) to the proxy when it is a DNS query from a socket that may be
 * captured, recording the server it was meant for. 127/8 is captured too: a pod's resolver on
 * loopback is still the pod's resolver. Returns 0 to refuse the syscall (the record could not be
 * kept, so the reply could not be matched), 1 otherwise.
 */
static __always_inline int to_proxy(void *ctx, __u32 *user_ip4, __u32 *user_port, __u32 mark)
{
	const struct ambit_config *cfg = config();
	struct ambit_addr4 server = { .ip = *user_ip4, .port = (__be16)*user_port };
	__u64 cookie;

	if (!cfg || *user_port != bpf_htons(DNS_PORT) || mark == AMBIT_BYPASS_MARK || *user_ip4 == cfg->proxy_ip4)
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	if (bpf_map_update_elem(&ambit_dns_server, &cookie, &server, BPF_ANY))
		return 0;
	*user_ip4 = cfg->proxy_ip4;
	*user_port = bpf_htons(AMBIT_DNS_PORT);
	return 1;
}

/*
 * connect() of UDP (glibc connects its query socket) and TCP sockets to (ip, port). Runs before or
 * after ambit_connect4/6 on the same cgroup: before, it sends port 53 to the proxy's address, which
 * ambit_connect4/6 leave alone; after, ambit_connect4/6 have already sent a TCP query to the outbound
 * listener and recorded port 53 in ambit_cookie, so this takes that record over.
 */
static __always_inline int connect_to_proxy(struct bpf_sock_addr *ctx, __u32 *ip, __u32 *port)
{
	const struct ambit_config *cfg;
	struct ambit_addr4 *orig;
	__u64 cookie;

	if (ctx->protocol != IPPROTO_UDP && ctx->protocol != IPPROTO_TCP)
		return 1;
	cfg = config();
	if (cfg && ctx->protocol == IPPROTO_TCP && *ip == cfg->proxy_ip4 &&
	    *port == port_or(cfg->outbound_port, AMBIT_OUTBOUND_PORT)) {
		cookie = bpf_get_socket_cookie(ctx);
		orig = bpf_map_lookup_elem(&ambit_cookie, &cookie);
		if (!orig || orig->port != bpf_htons(DNS_PORT))
			return 1;
		*ip = orig->ip;
		*port = orig->port;
		bpf_map_delete_elem(&ambit_cookie, &cookie);
	}
	return to_proxy(ctx, ip, port, ctx->sk->mark);
}

/* Whether a reply from (ip, port) comes from the proxy, and if so the server the pod asked. */
static __always_inline const struct ambit_addr4 *asked_server(struct bpf_sock_addr *ctx, __u32 ip, __u32 port)
{
	const struct ambit_config *cfg = config();
	__u64 cookie;

	if (!cfg || ip != cfg->proxy_ip4 || port != bpf_htons(AMBIT_DNS_PORT))
		return NULL;
	cookie = bpf_get_socket_cookie(ctx);
	return bpf_map_lookup_elem(&ambit_dns_server, &cookie);
}

SEC("cgroup/connect4")
int ambit_dns_connect4(struct bpf_sock_addr *ctx)
{
	__u32 ip = ctx->user_ip4, port = ctx->user_port;
	int verdict = connect_to_proxy(ctx, &ip, &port);

	ctx->user_ip4 = ip;
	ctx->user_port = port;
	return verdict;
}

/* sendto() on an unconnected UDP socket names its server on every datagram. */
SEC("cgroup/sendmsg4")
int ambit_dns_sendmsg4(struct bpf_sock_addr *ctx)
{
	__u32 ip = ctx->user_ip4, port = ctx->user_port;
	int verdict = to_proxy(ctx, &ip, &port, ctx->sk->mark);

	ctx->user_ip4 = ip;
	ctx->user_port = port;
	return verdict;
}

/* A reply from the proxy is shown as coming from the server the pod asked. */
SEC("cgroup/recvmsg4")
int ambit_dns_recvmsg4(struct bpf_sock_addr *ctx)
{
	const struct ambit_addr4 *server = asked_server(ctx, ctx->user_ip4, ctx->user_port);

	if (server) {
		ctx->user_ip4 = server->ip;
		ctx->user_port = server->port;
	}
	return 1;
}

/*
 * The same for an AF_INET6 socket asking an IPv4 server as ::ffff:a.b.c.d (a dual-stack runtime's
 * resolver): only the last word is the address, and the proxy is reached as ::ffff:<node IP>. A
 * native IPv6 server is left alone: the proxy listens on the node's IPv4 address only, which a socket
 * set IPV6_V6ONLY could not reach.
 */
static __always_inline int load_v4_mapped(struct bpf_sock_addr *ctx, __u32 *ip)
{
	__u32 ip6[4];

	/* The context only allows 4-byte loads of user_ip6, one word at a time. */
	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
	*ip = ip6[3];
	return is_v4_mapped(ip6);
}

SEC("cgroup/connect6")
int ambit_dns_connect6(struct bpf_sock_addr *ctx)
{
	__u32 ip, port = ctx->user_port;
	int verdict;

	if (!load_v4_mapped(ctx, &ip))
		return 1;
	verdict = connect_to_proxy(ctx, &ip, &port);
	ctx->user_ip6[3] = ip;
	ctx->user_port = port;
	return verdict;
}

SEC("cgroup/sendmsg6")
int ambit_dns_sendmsg6(struct bpf_sock_addr *ctx)
{
	__u32 ip, port = ctx->user_port;
	int verdict;

	if (!load_v4_mapped(ctx, &ip))
		return 1;
	verdict = to_proxy(ctx, &ip, &port, ctx->sk->mark);
	ctx->user_ip6[3] = ip;
	ctx->user_port = port;
	return verdict;
}

SEC("cgroup/recvmsg6")
int ambit_dns_recvmsg6(struct bpf_sock_addr *ctx)
{
	const struct ambit_addr4 *server;
	__u32 ip;

	if (!load_v4_mapped(ctx, &ip))
		return 1;
	server = asked_server(ctx, ip, ctx->user_port);
	if (server) {
		ctx->user_ip6[3] = server->ip;
		ctx->user_port = server->port;
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
