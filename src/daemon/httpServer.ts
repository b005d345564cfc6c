import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HttpConfig } from '../config/types.js';
import type { Metrics } from './metrics.js';

/** A poll running now: since when (ISO-8601 UTC), the page it asks for (0: none yet, a token first) and which retry of it. */
export type PollInProgress = { instance: string; resource: string; since: string; page: number; retry: number };

/** `late`: streams whose STALL_POLLS scheduled polls came and went without one completing; `lateStreams` names the worst few. */
export type Health = { ok: boolean; reasons: string[]; polls?: PollInProgress[]; streams?: number; late?: number; lateStreams?: string[] };

/**
 * `GET /healthz` (200, or 503 with the reasons; the polls in progress either way) and `GET /metrics` (Prometheus text). `HEAD`
 * answers as `GET` without the body: load balancers and `curl -I` probe with it.
 */
export async function startHttpServer(listen: HttpConfig, health: () => Promise<Health>, metrics: Metrics): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = async (): Promise<void> => {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
      } else if (path === '/healthz') {
        const h = await health();
        res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({
          status: h.ok ? 'ok' : 'unhealthy', reasons: h.reasons, streams: h.streams, late: h.late ?? 0, lateStreams: h.lateStreams ?? [], polls: h.polls ?? [],
        }));
      } else if (path === '/metrics') {
        const text = await metrics.registry.metrics();
        res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz or /metrics\n');
      }
    };
    reply().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`internal error: ${(err as Error).message}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
