// AuthorizationPolicy ipBlocks, notIpBlocks, remoteIpBlocks and the ip conditions, written in Istio's
// YAML: a peer seen through a dual-stack socket (`::ffff:10.2.0.5`, in any spelling) is the IPv4 peer it
// is, so a DENY on 10.0.0.0/8 cannot be dodged by it, and IPv6 blocks match IPv6 peers by prefix.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfigFile } from '../../agent/config/load.js';
import { type ConnectionAttributes, authorizeConnection } from '../../agent/policy/authorization.js';
import { authorizeRequest } from '../../agent/policy/http-authorization.js';
import { buildSnapshot } from '../../agent/state/build.js';
import type { MeshSnapshot } from '../../agent/state/model.js';

const WEB = `
apiVersion: v1
kind: Pod
metadata: { name: web, namespace: shop, labels: { app: web } }
spec: { containers: [{ name: c, command: [x] }] }
status: { podIP: 10.1.0.1 }
`;

function mesh(policy: string): MeshSnapshot {
  const parsed = parseConfigFile(`${WEB}---\n${policy}`, 'policy.yaml');
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error'), []);
  return buildSnapshot(parsed.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
}

function policy(action: 'ALLOW' | 'DENY', rule: string): string {
  return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: p, namespace: shop }
spec:
  action: ${action}
  rules:
    - ${rule}
`;
}

function from(snapshot: MeshSnapshot, sourceIp: string): ConnectionAttributes {
  const destination = snapshot.workloads.get('shop/web')!;
  return { sourceIp, destination, destinationIp: '10.1.0.1', destinationPort: 80 };
}

const allowed = (s: MeshSnapshot, ip: string): boolean => authorizeConnection(s, from(s, ip)).allowed;
const MAPPED = ['::ffff:10.2.0.5', '::FFFF:10.2.0.5', '::ffff:a02:5', '0:0:0:0:0:ffff:0a02:0005'];

describe('ipBlocks with IPv4-mapped IPv6 and IPv6 peers', () => {
  it('a DENY on an IPv4 block denies the same peer written as IPv4-mapped IPv6, in every spelling', () => {
    const s = mesh(policy('DENY', 'from: [{ source: { ipBlocks: [10.0.0.0/8] } }]'));
    assert.equal(allowed(s, '10.2.0.5'), false);
    for (const ip of MAPPED) assert.equal(allowed(s, ip), false, ip);
    assert.equal(allowed(s, '::ffff:11.2.0.5'), true, 'a mapped address outside the block');
  });

  it('an ALLOW with notIpBlocks refuses a mapped address inside the excluded block', () => {
    const s = mesh(policy('ALLOW', 'from: [{ source: { notIpBlocks: [10.2.0.0/16] } }]'));
    for (const ip of MAPPED) assert.equal(allowed(s, ip), false, ip);
    assert.equal(allowed(s, '::ffff:10.3.0.5'), true);
  });

  it('IPv6 blocks match IPv6 peers by prefix, and never an IPv4 peer', () => {
    const s = mesh(policy('ALLOW', 'from: [{ source: { ipBlocks: ["fd00:10::/32", "2001:db8::7"] } }]'));
    assert.equal(allowed(s, 'fd00:10:0:1::5'), true);
    assert.equal(allowed(s, 'FD00:0010::9'), true);
    assert.equal(allowed(s, '2001:db8::7'), true);
    assert.equal(allowed(s, '2001:db8:0:0:0:0:0:7'), true);
    assert.equal(allowed(s, 'fd00:11::5'), false);
    assert.equal(allowed(s, '10.2.0.5'), false);
  });

  it('a mapped IPv6 block of /96 or longer is the IPv4 block it covers', () => {
    const s = mesh(policy('DENY', 'from: [{ source: { ipBlocks: ["::ffff:10.2.0.0/112"] } }]'));
    assert.equal(allowed(s, '10.2.0.5'), false);
    assert.equal(allowed(s, '10.3.0.5'), true);
  });

  it('source.ip conditions and remoteIpBlocks read the peer the same way', () => {
    const condition = mesh(policy('DENY', 'when: [{ key: source.ip, values: [10.0.0.0/8, "fd00::/8"] }]'));
    assert.equal(allowed(condition, '::ffff:10.2.0.5'), false);
    assert.equal(allowed(condition, 'fd00::1'), false);
    assert.equal(allowed(condition, 'fe80::1'), true);

    const remote = mesh(policy('DENY', 'from: [{ source: { remoteIpBlocks: [10.0.0.0/8] } }]'));
    const request = (ip: string) =>
      authorizeRequest(remote, { ...from(remote, ip), method: 'GET', authority: 'web', path: '/', headers: new Map() }).allowed;
    assert.equal(request('::ffff:10.2.0.5'), false);
    assert.equal(request('::ffff:a02:5'), false);
    assert.equal(request('192.168.0.1'), true);
  });
});
