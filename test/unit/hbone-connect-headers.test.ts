// The CONNECT request's wire form: authority parsing and printing, ztunnel's headers, and the inbound
// checks in ztunnel's order with their 400 reasons.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalIp, formatAuthority, formatBaggage, outboundConnectHeaders, parseAuthority, readConnectRequest } from '../../agent/tunnel/hbone/connect-headers.js';

describe('HBONE CONNECT headers', () => {
  it('parses ip:port and [ipv6]:port authorities and nothing else', () => {
    assert.deepEqual(parseAuthority('10.244.1.10:9080'), { ip: '10.244.1.10', port: 9080 });
    assert.deepEqual(parseAuthority('[fd00::1]:9080'), { ip: 'fd00::1', port: 9080 });
    assert.deepEqual(parseAuthority('[::ffff:10.0.0.1]:80'), { ip: '10.0.0.1', port: 80 });
    for (const bad of ['reviews.default.svc.cluster.local:9080', '10.0.0.1', '10.0.0.1:0', '10.0.0.1:65536', '10.0.0.256:80', 'fd00::1:80', '[10.0.0.1]:80', ' 10.0.0.1:80']) {
      assert.equal(parseAuthority(bad), undefined, bad);
    }
    assert.equal(formatAuthority({ ip: 'fd00::1', port: 9080 }), '[fd00::1]:9080');
    assert.equal(canonicalIp('::FFFF:127.0.0.2'), '127.0.0.2');
  });

  it('builds ztunnel\'s request: classic CONNECT, forwarded, a fresh traceparent, baggage when given', () => {
    const headers = outboundConnectHeaders({ authority: { ip: '10.0.0.2', port: 9080 }, clientIp: '10.0.0.1', serviceHostname: 'reviews.default.svc.cluster.local', baggage: 'k8s.namespace.name=default' });
    assert.equal(headers[':method'], 'CONNECT');
    assert.equal(headers[':authority'], '10.0.0.2:9080');
    assert.equal(headers[':path'], undefined);
    assert.equal(headers[':scheme'], undefined);
    assert.equal(headers.forwarded, 'for="10.0.0.1";host=reviews.default.svc.cluster.local');
    assert.match(String(headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    assert.equal(headers.baggage, 'k8s.namespace.name=default');
    assert.equal(outboundConnectHeaders({ authority: { ip: '10.0.0.2', port: 1 }, clientIp: '10.0.0.1' }).baggage, undefined);
    assert.equal(
      formatBaggage({ clusterName: 'Kubernetes', namespace: 'default', workload: { type: 'deployment', name: 'reviews-v1' }, canonicalService: 'reviews', canonicalRevision: 'v1' }),
      'k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name=reviews-v1,service.name=reviews,service.version=v1',
    );
  });

  it('checks an inbound request in ztunnel\'s order, 400 with a reason for each failure', () => {
    const local = '10.0.0.2';
    const reason = (headers: Record<string, string>): string | undefined => {
      const check = readConnectRequest(headers, local);
      return check.ok ? undefined : check.reason;
    };
    assert.equal(reason({ ':method': 'GET', ':path': '/' }), 'method GET is not supported; HBONE accepts CONNECT only');
    assert.equal(reason({ ':method': 'CONNECT', ':protocol': 'websocket', ':authority': '10.0.0.2:80' }), 'extended CONNECT (:protocol) is not HBONE');
    assert.equal(reason({ ':method': 'CONNECT', ':path': '/', ':authority': '10.0.0.2:80' }), 'a CONNECT request carries no :path or :scheme');
    assert.equal(reason({ ':method': 'CONNECT' }), 'the CONNECT request has no :authority');
    assert.equal(reason({ ':method': 'CONNECT', ':authority': 'reviews:80' }), ':authority "reviews:80" is not <ip>:<port>');
    assert.equal(reason({ ':method': 'CONNECT', ':authority': '10.0.0.3:80' }), ':authority 10.0.0.3:80 names 10.0.0.3, but the tunnel was opened to 10.0.0.2');
    const accepted = readConnectRequest({ ':method': 'CONNECT', ':authority': '10.0.0.2:80', traceparent: 't', forwarded: 'for="1.2.3.4"' }, '::ffff:10.0.0.2');
    assert.deepEqual(accepted, { ok: true, authority: { ip: '10.0.0.2', port: 80 }, headers: { traceparent: 't', forwarded: 'for="1.2.3.4"' } });
  });
});
