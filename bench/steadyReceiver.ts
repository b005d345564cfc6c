/**
 * The steady scenario's receiver, in a process of its own: answers 200 at once and keeps, for
 * each event, which version it announced, under which notification id, and when it arrived.
 * On any IPC message it sends what it has, with the moment it took them.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Receipt } from './steadyVersions.js';

export type ReceiverReply = { type: 'ready'; url: string } | { type: 'receipts'; receipts: Receipt[]; atMs: number };

type Body = { message: { events: { objectId: string; date: string }[] } };

const receipts: Receipt[] = [];
const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const receivedMs = Date.now();
    const notificationId = String(req.headers['webhook-id']);
    const { message } = JSON.parse(Buffer.concat(chunks).toString()) as Body;
    for (const e of message.events) receipts.push({ objectId: e.objectId, date: e.date, notificationId, receivedMs });
    res.writeHead(200).end();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const reply: ReceiverReply = { type: 'ready', url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` };
  process.send!(reply);
});
process.on('message', () => {
  const reply: ReceiverReply = { type: 'receipts', receipts, atMs: Date.now() };
  process.send!(reply);
});
