// The L7 proxy's upstream connections to a test server on loopback TCP, with every socket it opens
// kept in `opened` (in order), so a test can see which connection a request took and act on it.

import { type Socket, connect } from 'node:net';
import { ConnectionSlots } from '../../../agent/l7/proxy/connection-slots.js';
import { UpstreamConnections, type UpstreamTarget } from '../../../agent/l7/proxy/upstream-connections.js';

export function tcpUpstream(port: number): { upstream: UpstreamConnections; opened: Socket[]; target: UpstreamTarget } {
  const opened: Socket[] = [];
  const upstream = new UpstreamConnections(
    () =>
      new Promise<Socket | string>((resolve) => {
        const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(s));
        opened.push(s);
        s.once('error', (err) => resolve(err.message));
      }),
    new ConnectionSlots(),
  );
  const target: UpstreamTarget = { key: `127.0.0.1:${port}`, address: { ip: '127.0.0.1', port }, connectTimeoutMs: 1000 };
  return { upstream, opened, target };
}
