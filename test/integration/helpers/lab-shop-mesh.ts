// The mesh lab.test.ts brings up: which pods run where, what they serve, and the Services in front of them.

import { twoNodesYaml } from './lab-session.js';

/** A Service whose one endpoint is web-a on alpha: kube-proxy's DNAT (the nft VIP path) always picks it. */
export const WEB_ALPHA_VIP = '10.97.0.13';

// A tiny HTTP server that says which pod answered and whom it saw connecting; runs with the host's
// node, as lab containers do.
const server = (port: number): string[] => [
  'node',
  '-e',
  `require('http').createServer((q, s) => s.end(process.env.POD_NAME + ' ' + q.socket.remoteAddress.replace('::ffff:', '') + '\\n')).listen(${port})`,
];

/**
 * The lab's two nodes and the shop namespace: web-a and web-b behind the web Service, a client, a pod that
 * keeps crashing, a pod that opts out and one in an unlabelled namespace; `extra` YAML is appended, and the
 * namespace's and web-a's labels can be changed to release pods from the mesh.
 */
export function shopMeshYaml(extra = '', namespaceLabels = '{ istio.io/dataplane-mode: ambient }', webALabels = ', side: alpha'): string {
  const pod = (name: string, node: string, ip: string, app: string, command: string[], ns = 'shop', labels = ''): string => `
---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${ns}, labels: { app: ${app}${labels} } }
spec:
  nodeName: ${node}
  containers:
    - name: main
      command: ${JSON.stringify(command)}
      env: [{ name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }]
      ports: [{ name: web, containerPort: 8080 }]
${app === 'web' ? '      readinessProbe: { httpGet: { path: /, port: web }, periodSeconds: 2 }\n' : ''}status: { podIP: ${ip} }`;
  return `${twoNodesYaml(78, 245)}---
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: ${namespaceLabels} }
${pod('web-a', 'alpha', '10.245.1.10', 'web', server(8080), 'shop', webALabels)}
${pod('web-b', 'beta', '10.245.2.10', 'web', server(8080))}
${pod('client', 'alpha', '10.245.1.20', 'client', ['sleep', 'infinity'])}
${pod('crasher', 'beta', '10.245.2.20', 'crasher', ['sh', '-c', 'echo crashing; exit 3'])}
${pod('optout', 'alpha', '10.245.1.21', 'client', ['sleep', 'infinity'], 'shop', ', istio.io/dataplane-mode: none')}
${pod('outsider', 'alpha', '10.245.1.30', 'client', ['sleep', 'infinity'], 'other')}
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec:
  clusterIP: 10.97.0.10
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: web }]
---
apiVersion: v1
kind: Service
metadata: { name: web-alpha, namespace: shop }
spec:
  clusterIP: ${WEB_ALPHA_VIP}
  selector: { side: alpha }
  ports: [{ name: tcp, port: 80, targetPort: web }]
${extra}`;
}
