/* Inbound capture at tc ingress: TCP for enrolled pods, and replies to the agent, go to agent sockets. */

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "lib/config.h"
#include "lib/maps.h"
#include "lib/stats.h"

/* From <linux/ip.h> users in the kernel; the UAPI header leaves them out. */
#define IP_MF		0x2000
#define IP_OFFSET	0x1fff

/*
 * This is TPROXY without iptables. The packet keeps its headers; bpf_sk_assign() only decides which
 * local socket the stack delivers it to, and the steer mark makes routing treat the pod IP as local
 * (see AMBIT_STEER_MARK). Nothing is rewritten, so no checksum needs fixing and the agent reads the
 * original destination as the local address of the accepted socket.
 *
 * It must run at ingress: bpf_sk_assign() is refused at egress (-EOPNOTSUPP), because only the
 * receive path consults skb->sk. The same return codes mean the same for classic cls_bpf in
 * direct-action mode and for tcx (TC_ACT_UNSPEC == TCX_NEXT, TC_ACT_OK == TCX_PASS,
 * TC_ACT_SHOT == TCX_DROP), so one program serves both attach modes. A packet Ambit has no opinion
 * on returns TC_ACT_UNSPEC so that programs after it on the device (a CNI's) still run.
 */

static __always_inline int pass(enum ambit_reason reason)
{
	count(reason);
	return TC_ACT_UNSPEC;
}

static __always_inline int drop(enum ambit_reason reason)
{
	count(reason);
	return TC_ACT_SHOT;
}

static __always_inline int assign(struct __sk_buff *skb, struct bpf_sock *sk, enum ambit_reason reason)
{
	long err = bpf_sk_assign(skb, sk, 0);

	bpf_sk_release(sk);
	/*
	 * A failed assign would let the packet continue to the pod (or, for a reply, to the remote
	 * client), bypassing the agent: fail closed.
	 */
	if (err)
		return drop(AMBIT_TC_DROP_ASSIGN_FAILED);
	skb->mark = (skb->mark & ~AMBIT_STEER_MARK_MASK) | AMBIT_STEER_MARK;
	count(reason);
	return TC_ACT_OK;
}

/*
 * The socket that owns this exact 4-tuple in the node's netns, if it is an agent connection.
 * bpf_skc_lookup_tcp (not bpf_sk_lookup_tcp) returns request socks as they are: the full-socket
 * variant would return the listener for a half-open connection, and the final ACK of the handshake
 * would then hit the listener and be reset. LISTEN means "no connection yet" (a new SYN), and
 * TIME_WAIT sockets must let a new SYN through to the listener, so neither is assigned here.
 */
static __always_inline struct bpf_sock *established(struct __sk_buff *skb, struct bpf_sock_tuple *tuple)
{
	struct bpf_sock *sk = bpf_skc_lookup_tcp(skb, tuple, sizeof(tuple->ipv4), BPF_F_CURRENT_NETNS, 0);

	if (sk && (sk->state == BPF_TCP_LISTEN || sk->state == BPF_TCP_TIME_WAIT)) {
		bpf_sk_release(sk);
		return NULL;
	}
	return sk;
}

/*
 * replies: also look for agent sockets whose peer is not an enrolled pod. The agent connects to a
 * pod with the client's address as its source (IP_TRANSPARENT), so the pod's reply is addressed to
 * the client and would be forwarded away; it has to be pulled back where it leaves the pod, on the
 * pod's host-side veth. The uplink never carries such replies, and skipping the lookup there saves
 * a hash lookup for every packet that is not for an enrolled pod.
 */
static __always_inline int steer(struct __sk_buff *skb, bool replies)
{
	void *data_end = (void *)(long)skb->data_end;
	void *data = (void *)(long)skb->data;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp;
	const struct ambit_config *cfg;
	struct bpf_sock_tuple tuple = {};
	struct bpf_sock *sk;
	bool enrolled;
	__be16 hbone;

	if ((void *)(eth + 1) > data_end)
		return pass(AMBIT_TC_PASS_MALFORMED);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return pass(AMBIT_TC_PASS_NOT_IPV4);
	if ((void *)(ip + 1) > data_end)
		return pass(AMBIT_TC_PASS_MALFORMED);
	if (ip->protocol != IPPROTO_TCP)
		return pass(AMBIT_TC_PASS_NOT_TCP);
	/*
	 * A fragment hides the TCP ports (all but the first carry none), and the stack reassembles only
	 * after tc, so neither the listener lookup nor the established one can judge it. TCP sets DF and
	 * never needs fragments; anyone can still send them (a raw socket on another host), so one for an
	 * enrolled pod is dropped rather than let through uncaptured: passing it would deliver a
	 * reassembled SYN straight to the pod, around the agent.
	 */
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) {
		if (bpf_map_lookup_elem(&ambit_enrolled, &ip->daddr))
			return drop(AMBIT_TC_DROP_FRAGMENT);
		return pass(AMBIT_TC_PASS_MALFORMED);
	}
	/*
	 * IP options (any process may set IP_OPTIONS on its socket) move the TCP header; find it from the
	 * header length. ihl is four bits, so the offset is at most 60 bytes and the verifier can bound
	 * the pointer; the check below keeps every read of the TCP header inside the packet.
	 */
	if (ip->ihl < 5)
		return pass(AMBIT_TC_PASS_MALFORMED);
	tcp = (void *)ip + (ip->ihl & 0xf) * 4;
	if ((void *)(tcp + 1) > data_end)
		return pass(AMBIT_TC_PASS_MALFORMED);

	/* Traffic to the node itself (pods' redirected outbound among it) is local anyway. */
	cfg = config();
	if (cfg && ip->daddr == cfg->proxy_ip4)
		return pass(AMBIT_TC_PASS_TO_NODE);

	tuple.ipv4.saddr = ip->saddr;
	tuple.ipv4.daddr = ip->daddr;
	tuple.ipv4.sport = tcp->source;
	tuple.ipv4.dport = tcp->dest;

	enrolled = bpf_map_lookup_elem(&ambit_enrolled, &ip->daddr) != NULL;
	if (enrolled || replies) {
		sk = established(skb, &tuple);
		if (sk)
			return assign(skb, sk, AMBIT_TC_ASSIGNED_ESTABLISHED);
	}
	if (!enrolled)
		return pass(AMBIT_TC_PASS_NOT_ENROLLED);

	/*
	 * A mid-stream packet with no agent socket belongs to a connection that predates enrollment:
	 * leave it be rather than reset it. New connections always start with a pure SYN.
	 */
	if (!tcp->syn || tcp->ack)
		return pass(AMBIT_TC_PASS_NO_SOCKET);

	/*
	 * The listeners are bound to 0.0.0.0, so a lookup with the original destination address and
	 * the listener's port finds them. They must be IP_TRANSPARENT: otherwise the SYN is accepted
	 * but the SYN-ACK, from the non-local pod address, has no route.
	 */
	hbone = port_or(cfg ? cfg->hbone_port : 0, AMBIT_HBONE_PORT);
	tuple.ipv4.dport = tcp->dest == hbone ? hbone : port_or(cfg ? cfg->inbound_port : 0, AMBIT_INBOUND_PORT);
	sk = bpf_skc_lookup_tcp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return drop(AMBIT_TC_DROP_NO_LISTENER);
	if (sk->state != BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		return drop(AMBIT_TC_DROP_NO_LISTENER);
	}
	return assign(skb, sk, AMBIT_TC_ASSIGNED_LISTENER);
}

/* On the node's uplink: connections from other nodes to enrolled pods. */
SEC("tc")
int ambit_tc_uplink(struct __sk_buff *skb)
{
	return steer(skb, false);
}

/*
 * On every pod's host-side veth (enrolled or not): connections from pods on this node to enrolled
 * pods, and the replies of pods to the agent's source-preserving upstream connections.
 */
SEC("tc")
int ambit_tc_pod(struct __sk_buff *skb)
{
	return steer(skb, true);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
