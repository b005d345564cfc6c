import http from 'node:http';
import zlib from 'node:zlib';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createGetText, describeNetworkError } from '../src/poll/httpClient.js';
import { pollbridgeVersion } from '../src/version.js';

const servers: http.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function serve(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('page reads (createGetText)', () => {
  it('returns any status with its body and headers, follows no redirect, and keeps the connection for the next read', async () => {
    const sockets = new Set<Socket>();
    const url = await serve((req, res) => {
      sockets.add(req.socket);
      if (req.url === '/moved') return void res.writeHead(302, { location: '/elsewhere' }).end('gone');
      res.writeHead(200, { 'content-type': 'application/json', date: 'Sun, 22 Nov 2026 10:00:00 GMT' }).end(JSON.stringify({ auth: req.headers.authorization, ua: req.headers['user-agent'] }));
    });
    const getText = createGetText({ timeoutMs: 2000 });
    const first = await getText(`${url}/page`, { authorization: 'Bearer t' });
    expect(first).toMatchObject({ statusCode: 200, headers: { date: 'Sun, 22 Nov 2026 10:00:00 GMT' } });
    expect(JSON.parse(first.body)).toEqual({ auth: 'Bearer t', ua: `pollbridge/${pollbridgeVersion()} (+node ${process.versions.node})` });
    expect(await getText(`${url}/moved`, {})).toMatchObject({ statusCode: 302, body: 'gone' });
    expect(sockets.size).toBe(1);
  });

  it('asks for compression and decodes gzip; a corrupt compressed answer is an error that says so', async () => {
    const page = JSON.stringify({ Items: Array.from({ length: 50 }, (_, i) => ({ ID: `R${i}` })) });
    const url = await serve((req, res) => {
      expect(req.headers['accept-encoding']).toContain('gzip');
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      res.end(req.url === '/corrupt' ? Buffer.from('not gzip at all') : zlib.gzipSync(page));
    });
    const getText = createGetText({ timeoutMs: 2000 });
    expect((await getText(`${url}/page`, {})).body).toBe(page);
    await expect(getText(`${url}/corrupt`, {})).rejects.toThrow(/cannot decode the gzip answer/);
  });

  it('gives up on an answer that stalls halfway, with an error that says it timed out', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"Items": [');
    });
    const err = await createGetText({ timeoutMs: 200 })(`${url}/page`, {}).catch((e: unknown) => e);
    expect(describeNetworkError(err)).toBe('timed out (ETIMEDOUT)');
  });

  it('stops at once when its signal is aborted, and refuses a protocol it does not speak', async () => {
    const url = await serve(() => {});
    const controller = new AbortController();
    const reading = createGetText({ timeoutMs: 60_000 })(`${url}/page`, {}, controller.signal);
    controller.abort();
    await expect(reading).rejects.toMatchObject({ name: 'AbortError' });
    await expect(createGetText({ timeoutMs: 1000 })('ftp://127.0.0.1/x', {})).rejects.toThrow('unsupported protocol ftp:');
  });
});
