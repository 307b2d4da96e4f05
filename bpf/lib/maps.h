/* Every map Ambit shares between its programs and the agent, pinned by name so restarts reuse them. */
#ifndef AMBIT_MAPS_H
#define AMBIT_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "config.h"

/* An IPv4 socket address as the agent encodes it: both fields in network byte order. */
struct ambit_addr4 {
	__be32 ip;
	__be16 port;
	__u16 _pad;	/* always zero: the struct is a hash key, so padding must be deterministic */
};

/* Key 0 only; see struct ambit_config. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ambit_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_config SEC(".maps");

/*
 * Socket cookie -> original destination, written by connect4/6. At connect() time the source port
 * is usually not chosen yet, so the cookie is the only stable name the socket has. LRU, because a
 * connect() that never completes would otherwise leak its entry.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, AMBIT_ORIG_DST_ENTRIES);
	__type(key, __u64);
	__type(value, struct ambit_addr4);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_cookie SEC(".maps");

/*
 * (pod IP, pod port) -> original destination, moved here from ambit_cookie once the connection is
 * established: that pair is what the agent sees as the peer of the accepted socket, so it can find
 * the entry without knowing the pod's socket. Deleted when the pod's socket closes, which every
 * established socket does, so this is a plain hash: an LRU would let one pod's many connections
 * evict the entries of other pods' live ones. Allocated as used, not up front.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AMBIT_PAIR_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ambit_addr4);
	__type(value, struct ambit_addr4);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_origdst SEC(".maps");

/* Pod IPv4 address -> how many ambit_origdst entries its connections hold now (the per-pod cap). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AMBIT_ENROLLED_ENTRIES);
	__type(key, __be32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_pod_pairs SEC(".maps");

/* Pod IPv4 address (network order) -> 1, for every enrolled pod on this node. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AMBIT_ENROLLED_ENTRIES);
	__type(key, __be32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_enrolled SEC(".maps");

static __always_inline const struct ambit_config *config(void)
{
	__u32 key = 0;
	const struct ambit_config *cfg = bpf_map_lookup_elem(&ambit_config, &key);

	return cfg && cfg->proxy_ip4 ? cfg : NULL;
}

/* ::ffff:a.b.c.d: an AF_INET6 socket talking IPv4, which the IPv4 hooks never see. */
static __always_inline int is_v4_mapped(const __u32 ip6[4])
{
	return ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0xffff);
}

static __always_inline __be16 port_or(__be16 configured, __u16 fallback)
{
	return configured ? configured : bpf_htons(fallback);
}

#endif
