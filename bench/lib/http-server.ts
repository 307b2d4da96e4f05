// The L7 bench's HTTP server: answers every request, once its body is read, with 200 and a 1 KB body
// on the same keep-alive connection.

import { createServer } from 'node:http';

const port = Number(process.argv[2] ?? 8080);
const body = Buffer.alloc(1024, 'y');

const server = createServer((req, res) => {
  req.resume();
  req.once('end', () => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, () => process.stdout.write(`http server listening on ${port}\n`));
