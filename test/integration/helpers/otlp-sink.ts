// The test OTLP collector (test/fixtures/otlp/collector.ts) run as a process inside a lab node's network
// namespace, where that node's agent can reach it: on 127.0.0.1:<port> (argv), forwarded to the
// collector's own port. Every span it receives is printed to stdout as one JSON line. It exits after
// <lifetime> seconds (argv, default 600), so a test that dies cannot leave it behind for long.
//
//   ambit lab exec --lab <lab> node/<name> -- node --import tsx test/integration/helpers/otlp-sink.ts 14318

import { connect, createServer } from 'node:net';
import { OtlpCollector } from '../../fixtures/otlp/collector.js';

const port = Number(process.argv[2] ?? 14318);
const lifetimeMs = Number(process.argv[3] ?? 600) * 1000;
const collector = await OtlpCollector.start();
const target = Number(new URL(collector.url).port);
const front = createServer((socket) => {
  const upstream = connect(target, '127.0.0.1');
  socket.pipe(upstream).pipe(socket);
  socket.on('error', () => upstream.destroy());
  upstream.on('error', () => socket.destroy());
});
await new Promise<void>((resolve) => front.listen(port, '127.0.0.1', resolve));
console.log(JSON.stringify({ listening: port }));
let printed = 0;
const timer = setInterval(() => {
  while (printed < collector.spans.length) console.log(JSON.stringify(collector.spans[printed++]));
}, 100);
const stop = (): void => {
  clearInterval(timer);
  front.close();
  void collector.close().then(() => process.exit(0));
};
setTimeout(stop, lifetimeMs).unref();
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
