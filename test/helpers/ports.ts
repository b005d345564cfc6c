import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach } from 'vitest';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((resolve) => s.close(resolve));
});

/** A server holding `port` (0: any) of `host` until the test ends: an address a daemon cannot take. */
export async function occupiedPort(port = 0, host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  servers.push(server);
  return (server.address() as AddressInfo).port;
}
