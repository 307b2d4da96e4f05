// Name resolution inside lab pods: an /etc/hosts per pod that answers Service names the way cluster DNS
// would (`name` within the pod's namespace; `name.ns`, `name.ns.svc` and the FQDN everywhere).

import type { MeshSnapshot } from '../state/model.js';

export function renderPodHosts(snapshot: MeshSnapshot, pod: { namespace: string; name: string; ip: string }): string {
  const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', `${pod.ip}\t${pod.name}`];
  for (const service of snapshot.services.values()) {
    const vip = service.vips[0];
    if (!vip) continue;
    const names = [`${service.name}.${service.namespace}`, `${service.name}.${service.namespace}.svc`, service.hostname];
    if (service.namespace === pod.namespace) names.unshift(service.name);
    lines.push(`${vip}\t${names.join(' ')}`);
  }
  return `# Written by ambit lab: Service names as cluster DNS would answer them.\n${lines.join('\n')}\n`;
}

/** No resolver is reachable from a lab pod; pointing at loopback makes other lookups fail fast. */
export const POD_RESOLV_CONF = '# Written by ambit lab: names resolve through /etc/hosts only.\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n';
