// A lab pod's /etc/hosts, as the kubelet writes it: localhost and the pod's own name. Service names are
// the cluster DNS's to answer (cluster-dns.ts), and, for enrolled pods, the mesh's DNS proxy's.

export function renderPodHosts(pod: { readonly name: string; readonly ip: string }): string {
  const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', `${pod.ip}\t${pod.name}`];
  return `# Written by ambit lab, as the kubelet writes a pod's hosts file.\n${lines.join('\n')}\n`;
}
