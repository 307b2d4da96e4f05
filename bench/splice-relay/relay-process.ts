// One relay for bench/splice-relay.bench.ts, in its own process so that its CPU (every thread, the
// addon's splice thread included) can be read from /proc: accepts on loopback and relays each
// connection to the target port with the agent's own code, `connectPlain` and `relay` (the kernel
// splice relay when the addon loads, JavaScript otherwise: AMBIT_NATIVE_ADDON chooses). Prints
// `listening <port>` once it accepts.
//
//   node --import tsx bench/splice-relay/relay-process.ts <target port>

import { createServer } from 'node:net';
import { connectPlain } from '../../agent/tunnel/outbound.js';
import { relay } from '../../agent/tunnel/relay.js';

const target = Number(process.argv[2]);
if (!(target > 0 && target < 65536)) {
  process.stderr.write('usage: relay-process.ts <target port on 127.0.0.1>\n');
  process.exit(2);
}

// As the agent's listeners: paused until the relay takes the socket, half-close passed on.
const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (downstream) => {
  downstream.on('error', () => undefined);
  void connectPlain({ ip: '127.0.0.1', port: target }).then(async (upstream) => {
    if (typeof upstream === 'string') {
      process.stderr.write(`relay: ${upstream}\n`);
      downstream.destroy();
      return;
    }
    await relay(downstream, upstream);
  });
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);
});
