import net from 'node:net';
import { afterEach } from 'vitest';

const proxies: TcpProxy[] = [];
afterEach(async () => { await Promise.all(proxies.splice(0).map((p) => p.close())); });

export type TcpProxy = {
  /** The URL given, pointing at the proxy instead. */
  url: string;
  /** A network partition: nothing passes either way, connections old and new hang (no reset). */
  cut(): void;
  /** The partition heals: what was held back goes through. */
  heal(): void;
  close(): Promise<void>;
};

/** A TCP pass-through to the host and port of `url` (a database's, say), that a test can partition. */
export async function startTcpProxy(url: string): Promise<TcpProxy> {
  const target = new URL(url);
  let cut = false;
  const pairs = new Set<[net.Socket, net.Socket]>();
  /** What a partition holds back, per direction, to send when it heals. */
  const held: { to: net.Socket; data: Buffer }[] = [];
  const forward = (from: net.Socket, to: net.Socket): void => {
    from.on('data', (data: Buffer) => {
      if (cut) held.push({ to, data });
      else to.write(data);
    });
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    forward(client, upstream);
    forward(upstream, client);
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxied = new URL(url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String((server.address() as net.AddressInfo).port);
  const proxy: TcpProxy = {
    url: proxied.toString(),
    cut() {
      cut = true;
    },
    heal() {
      cut = false;
      for (const { to, data } of held.splice(0)) if (!to.destroyed) to.write(data);
    },
    async close() {
      for (const pair of pairs) for (const s of pair) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  proxies.push(proxy);
  return proxy;
}
