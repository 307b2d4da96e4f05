// The bench's request/response server: echoes every byte back on the same connection, so a client
// that writes a 1 KB request gets its 1 KB response as soon as the bytes arrive.

import { createServer } from 'node:net';

const port = Number(process.argv[2] ?? 7000);

createServer({ noDelay: true }, (socket) => {
  socket.on('data', (chunk) => socket.write(chunk));
  // A client that vanishes mid-run must not take the server down for the next round.
  socket.on('error', () => socket.destroy());
}).listen(port, () => process.stdout.write(`echo server listening on ${port}\n`));
