/* Ambit's eBPF configuration: compile-time constants here, run-time addresses in the ambit_config map. */
#ifndef AMBIT_CONFIG_H
#define AMBIT_CONFIG_H

#include <linux/types.h>

/* Istio ztunnel's ports, so Ambit interoperates with ambient tooling. */
#define AMBIT_OUTBOUND_PORT	15001
#define AMBIT_INBOUND_PORT	15006
#define AMBIT_HBONE_PORT	15008
/* ztunnel's DNS proxy port: pods' captured DNS goes to the agent there. */
#define AMBIT_DNS_PORT		15053

/*
 * SO_MARK the agent puts on its own upstream sockets (ztunnel uses the same value). connect4/6 leave
 * such sockets alone, which is the escape hatch for anything in an enrolled cgroup that must bypass
 * the mesh. Marks are scrubbed when a packet crosses a veth into another netns, so this only works
 * at socket level, never in tc.
 */
#define AMBIT_BYPASS_MARK	0x539

/*
 * skb->mark set on packets tc handed to a local socket with bpf_sk_assign. The node needs
 *   ip rule add fwmark 0x200/0xf00 lookup 100
 *   ip route add local 0.0.0.0/0 dev lo table 100
 * because the destination (a pod IP) is not local: without it ip_forward() would see an skb that
 * carries a socket and drop it. Only the bits under the mask belong to Ambit.
 */
#define AMBIT_STEER_MARK	0x200
#define AMBIT_STEER_MARK_MASK	0xf00

#define AMBIT_ORIG_DST_ENTRIES	65536
#define AMBIT_ENROLLED_ENTRIES	4096
/*
 * Established redirected connections tracked at once, node-wide and per pod. A pod holds at most
 * about 28k anyway (every one goes to the same node address and port, so the ephemeral port range
 * bounds it); the per-pod cap keeps one pod's connections from taking the whole table from the others.
 */
#define AMBIT_PAIR_ENTRIES	262144
#define AMBIT_POD_PAIRS_MAX	16384

/*
 * Value of the single entry of ambit_config, written by the agent. All fields are in network byte
 * order, as they appear on the wire; a zero port means the default above. proxy_ip4 == 0 means the
 * agent has not configured this node yet, and connect4/6 then leave connections alone.
 */
struct ambit_config {
	__be32 proxy_ip4;	/* the node address the outbound listener is bound to */
	__be16 outbound_port;
	__be16 inbound_port;
	__be16 hbone_port;
	__u16 _pad;
	__u32 pod_pairs_max;	/* host order; 0 means AMBIT_POD_PAIRS_MAX */
};

#endif
