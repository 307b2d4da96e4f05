// VirtualService mirrors: once the client's whole body has arrived, a copy of the request goes to each
// mirror's cluster with its authority suffixed "-shadow", and whatever comes back is dropped.

import { Readable } from 'node:stream';
import type { MeshSnapshot } from '../../state/model.js';
import type { DestinationTarget } from '../route-decision.js';
import type { DownstreamRequest } from './downstream.js';
import { pickTarget } from './endpoint-pick.js';
import type { ForwardContext } from './forward.js';
import type { HeaderMap } from './headers.js';
import { RequestBody } from './request-body.js';

/** Shadow copies: same request, authority suffixed "-shadow" (as Envoy marks them), answers dropped. */
export function startMirrors(ctx: Pick<ForwardContext, 'clusters' | 'source' | 'upstream'>, mirrors: readonly DestinationTarget[], d: DownstreamRequest, headers: HeaderMap, body: RequestBody, protocol: 'h1' | 'h2', snapshot: MeshSnapshot): void {
  if (mirrors.length === 0) return;
  void body.complete().then((whole) => {
    if (!whole) return;
    for (const mirror of mirrors) {
      const resolved = ctx.clusters.resolve(snapshot, mirror, { namespace: ctx.source.namespace, labels: ctx.source.labels });
      if (!resolved.ok) continue;
      const picked = pickTarget(snapshot, { cluster: resolved.cluster, pod: undefined }, { host: mirror.host, authority: d.authority, port: mirror.port, method: d.method, path: d.path, headers: d.headers, source: { namespace: ctx.source.namespace, labels: ctx.source.labels } }, new Set());
      if (picked.kind === 'fail') continue;
      const copy = new RequestBody(Readable.from(body.held()), body.held().length === 0);
      const exchange = ctx.upstream.send(picked.target, { method: d.method, path: d.path, authority: `${hostOf(d.authority)}-shadow${portSuffix(d.authority)}`, headers }, copy, protocol);
      const timer = setTimeout(() => exchange.abort(), 10_000);
      void exchange.result.then((r) => {
        clearTimeout(timer);
        if (r.kind === 'response') r.body.resume();
      });
    }
  });
}

function hostOf(authority: string): string {
  const m = /^(\[[^\]]*\]|[^:]*)(:\d+)?$/.exec(authority);
  return m ? m[1]! : authority;
}

function portSuffix(authority: string): string {
  return /:(\d+)$/.exec(authority)?.[0] ?? '';
}
