// Replies to the agent's source-preserving upstream connections that tc's exact-tuple lookup cannot
// see. The agent dials from a pod's address (IP_TRANSPARENT), so every reply is addressed to that pod;
// tc returns it to the agent when it arrives with the tuple the agent dialled (bpf/inbound_tc.bpf.c).
// Two kinds never do: a reply the node itself produces (the destination is an address of this node,
// so the reply is routed straight out to the pod, never entering a device tc watches), and a reply
// whose source kube-proxy's DNAT will rewrite only after tc ran (a VIP the agent does not resolve,
// such as a selector-less Service's; conntrack undoes DNAT in INPUT, after routing).
//
// So conntrack remembers the agent's connections (their packets carry the agent's SO_MARK when they
// leave), and their replies get the steering mark that routes them locally (ip rule fwmark 0x200
// lookup 100), where conntrack restores the dialled source and the agent's socket receives them. Both
// decisions are counted per rule, as tc counts its own.

import type { Logger } from '../telemetry/log.js';
import { requireTool, runCommand, which } from '../system/commands.js';
import { BYPASS_MARK, type Result, STEER_ROUTING, formatMark } from './bpf-binding.js';

export const REPLY_STEERING_TABLE = 'ambit_replies';

/**
 * The conntrack mark bit that names an agent connection. One bit under a mask, so that another
 * user of conntrack marks on the node (a CNI) keeps its own bits.
 */
export const AGENT_CONNMARK = 0x400;

export const REPLY_REASONS = ['reply-from-node', 'reply-to-agent'] as const;
export type ReplyReason = (typeof REPLY_REASONS)[number];

/** The whole table, as one nft transaction that replaces any previous one. */
export function renderReplySteeringRules(): string {
  const { mark, mask } = STEER_ROUTING;
  const steer = `meta mark set meta mark & ${formatMark(~mask >>> 0)} | ${formatMark(mark)}`;
  const isReply = `ct direction reply ct mark & ${formatMark(AGENT_CONNMARK)} == ${formatMark(AGENT_CONNMARK)}`;
  return `table ip ${REPLY_STEERING_TABLE} {}
delete table ip ${REPLY_STEERING_TABLE}
table ip ${REPLY_STEERING_TABLE} {
  chain output {
    type route hook output priority mangle; policy accept;
    meta mark ${formatMark(BYPASS_MARK)} ct direction original ct mark set ct mark | ${formatMark(AGENT_CONNMARK)}
    ${isReply} ${steer} counter comment "reply-from-node"
  }
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    ${isReply} ${steer} counter comment "reply-to-agent"
  }
}
`;
}

/** Writes the table (the rules never change while the agent runs). */
export async function installReplySteering(log: Logger): Promise<Result<void>> {
  try {
    await runCommand(requireTool('nft', 'nftables'), ['-f', '-'], renderReplySteeringRules());
    log.debug(`nft table ${REPLY_STEERING_TABLE} written`);
    return { ok: true, value: undefined };
  } catch (err) {
    return {
      ok: false,
      error: {
        code: 'ENFT',
        message: `cannot write nft table ${REPLY_STEERING_TABLE} (pods could not reach this node's own addresses or a VIP the agent does not resolve from their own address; is nf_conntrack loaded?): ${(err as Error).message}`,
      },
    };
  }
}

/** `ambit uninstall`: removes the table from this network namespace; true if there was one. */
export async function removeReplySteering(): Promise<boolean> {
  const nft = which('nft');
  if (!nft) return false;
  return runCommand(nft, ['delete', 'table', 'ip', REPLY_STEERING_TABLE]).then(
    () => true,
    () => false,
  );
}
