/* DNS capture on pod cgroups: a pod's queries to port 53 (UDP and TCP) go to the agent's DNS proxy. */

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "lib/config.h"
#include "lib/maps.h"

#define DNS_PORT 53

/*
 * Socket cookie -> the DNS server the pod asked for. recvmsg4 reads it to give each reply the source
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
 * connect() of UDP (glibc connects its query socket) and TCP sockets. Runs before or after
 * ambit_connect4 on the same cgroup: before, it sends port 53 to the proxy's address, which
 * ambit_connect4 leaves alone; after, ambit_connect4 has already sent a TCP query to the outbound
 * listener and recorded port 53 in ambit_cookie, so this takes that record over.
 */
SEC("cgroup/connect4")
int ambit_dns_connect4(struct bpf_sock_addr *ctx)
{
	const struct ambit_config *cfg;
	struct ambit_addr4 *orig;
	__u32 ip = ctx->user_ip4, port = ctx->user_port;
	__u64 cookie;
	int verdict;

	if (ctx->protocol != IPPROTO_UDP && ctx->protocol != IPPROTO_TCP)
		return 1;
	cfg = config();
	if (cfg && ctx->protocol == IPPROTO_TCP && ip == cfg->proxy_ip4 &&
	    port == port_or(cfg->outbound_port, AMBIT_OUTBOUND_PORT)) {
		cookie = bpf_get_socket_cookie(ctx);
		orig = bpf_map_lookup_elem(&ambit_cookie, &cookie);
		if (!orig || orig->port != bpf_htons(DNS_PORT))
			return 1;
		ip = orig->ip;
		port = orig->port;
		bpf_map_delete_elem(&ambit_cookie, &cookie);
	}
	verdict = to_proxy(ctx, &ip, &port, ctx->sk->mark);
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
	const struct ambit_config *cfg = config();
	const struct ambit_addr4 *server;
	__u64 cookie;

	if (!cfg || ctx->user_ip4 != cfg->proxy_ip4 || ctx->user_port != bpf_htons(AMBIT_DNS_PORT))
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	server = bpf_map_lookup_elem(&ambit_dns_server, &cookie);
	if (server) {
		ctx->user_ip4 = server->ip;
		ctx->user_port = server->port;
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
