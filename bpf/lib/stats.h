/* Per-reason decision counters: every program outcome bumps one slot that user space can read. */
#ifndef AMBIT_STATS_H
#define AMBIT_STATS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/*
 * The order is ABI: agent/redirect/bpf-binding.ts names these slots by index. Append only.
 */
enum ambit_reason {
	/* cgroup/connect4 and connect6 on enrolled pod cgroups */
	AMBIT_OUT_REDIRECTED,
	AMBIT_OUT_PASS_NOT_TCP,
	AMBIT_OUT_PASS_LOOPBACK,
	AMBIT_OUT_PASS_PROXY,
	AMBIT_OUT_PASS_MARKED,
	AMBIT_OUT_PASS_NATIVE_V6,
	AMBIT_OUT_PASS_NO_CONFIG,
	AMBIT_OUT_DENY_MAP_FULL,
	/* sockops on enrolled pod cgroups */
	AMBIT_SOCKOPS_PAIR_STORED,
	AMBIT_SOCKOPS_NOT_REDIRECTED,
	AMBIT_SOCKOPS_STORE_FAILED,
	AMBIT_SOCKOPS_PAIR_DELETED,
	/* cgroup/getsockopt on the agent's cgroup */
	AMBIT_SOCKOPT_ORIG_DST,
	AMBIT_SOCKOPT_NOT_FOUND,
	AMBIT_SOCKOPT_OTHER,
	/* cgroup/getpeername4 and getpeername6 on enrolled pod cgroups */
	AMBIT_PEER_RESTORED,
	AMBIT_PEER_PASS,
	/* tc ingress on the uplink and on pods' host-side veths */
	AMBIT_TC_PASS_NOT_IPV4,
	AMBIT_TC_PASS_NOT_TCP,
	AMBIT_TC_PASS_MALFORMED,
	AMBIT_TC_PASS_TO_NODE,
	AMBIT_TC_PASS_NOT_ENROLLED,
	AMBIT_TC_PASS_NO_SOCKET,
	AMBIT_TC_ASSIGNED_ESTABLISHED,
	AMBIT_TC_ASSIGNED_LISTENER,
	AMBIT_TC_DROP_NO_LISTENER,
	AMBIT_TC_DROP_ASSIGN_FAILED,
	AMBIT_TC_DROP_FRAGMENT,
	/* sockops, appended */
	AMBIT_SOCKOPS_POD_QUOTA,
	AMBIT_SOCKOPS_RECORD_LOST,
	AMBIT_REASON_MAX,
};

/*
 * Per-CPU slots: tc runs for every packet on every CPU, and a shared counter would bounce one cache
 * line between them. User space sums the per-CPU values.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AMBIT_REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambit_stats SEC(".maps");

static __always_inline void count(enum ambit_reason reason)
{
	__u32 key = reason;
	__u64 *slot = bpf_map_lookup_elem(&ambit_stats, &key);

	if (slot)
		*slot += 1;
}

#endif
