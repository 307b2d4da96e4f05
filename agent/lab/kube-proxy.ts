// The lab's stand-in for kube-proxy: an nftables table in each node namespace that DNATs Service VIPs
// to ready endpoints (random choice, as kube-proxy's iptables mode) for the pods behind it. It is what
// a cluster gives pods before any mesh is involved; the mesh's own balancing is the agent's, which
// resolves VIPs itself.

import { isIPv4 } from 'node:net';
import type { MeshSnapshot } from '../state/model.js';

export const KUBE_PROXY_TABLE = 'ambit_kube_proxy';

/** One nft transaction that replaces the table whole, so a reload never leaves half the rules. */
export function renderKubeProxyRules(snapshot: MeshSnapshot): string {
  const rules: string[] = [];
  const hairpins = new Set<string>();
  for (const service of snapshot.services.values()) {
    for (const vip of service.vips.filter((v) => isIPv4(v))) {
      for (const port of service.ports) {
        const l4 = port.protocol === 'UDP' ? 'udp' : 'tcp';
        const targets = service.endpoints.flatMap((e) => {
          const target = e.ports.get(port.port);
          return target === undefined || !isIPv4(e.ip) ? [] : [`${e.ip} . ${target}`];
        });
        if (targets.length === 0) continue; // no route to the VIP then: the client sees "no route to host"
        for (const e of service.endpoints) hairpins.add(`${e.ip} . ${e.ip}`);
        const match = `ip daddr ${vip} ${l4} dport ${port.port}`;
        rules.push(
          targets.length === 1
            ? `    ${match} dnat ip to ${targets[0]!.replace(' . ', ':')}`
            : `    ${match} dnat ip addr . port to numgen random mod ${targets.length} map { ${targets.map((t, i) => `${i} : ${t}`).join(', ')} }`,
        );
      }
    }
  }
  // A pod that reaches itself through its own Service needs its source rewritten, or it would
  // receive a packet from its own address and drop it as a martian.
  const hairpin = hairpins.size > 0 ? `    ct status dnat ip saddr . ip daddr { ${[...hairpins].join(', ')} } masquerade\n` : '';
  return `table ip ${KUBE_PROXY_TABLE} {}
delete table ip ${KUBE_PROXY_TABLE}
table ip ${KUBE_PROXY_TABLE} {
  chain services {
${rules.join('\n')}
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump services
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
${hairpin}  }
}
`;
}
