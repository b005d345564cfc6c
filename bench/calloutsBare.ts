/**
 * The callout scenario's baseline: a bare node:http server in a process of its own that reads
 * each request's body and answers 200, with no authentication, parsing or commit. The daemon's
 * connector is measured against what this machine's HTTP stack alone does under the same load.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type BareReply = { type: 'ready'; url: string };

const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('OK\n'));
});
server.keepAliveTimeout = 5_000;
server.listen(0, '127.0.0.1', () => {
  const reply: BareReply = { type: 'ready', url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/concur/v1.0/notify` };
  process.send!(reply);
});
