import { loadConfig } from '../config/load.js';
import type { HttpConfig } from '../config/types.js';
import { instantOrDash, isoOrDash, table } from './format.js';
import { withCliStore } from './openStore.js';
import { configPath } from './options.js';

/**
 * How long to wait for /healthz. It checks that the database takes a write, and a locked
 * database (the very case a status is wanted for) makes that wait SQLite's busy timeout for
 * each call queued before it.
 */
const HEALTH_TIMEOUT_MS = 20_000;

type DaemonHealth = { url: string; status: 'ok' | 'unhealthy' | 'unreachable'; reasons: string[] };

/**
 * The running daemon's /healthz, when the config says where it listens. Some problems live
 * only in the daemon's memory: a rotated refresh token that could not be saved is, by its
 * nature, not in the database this command reads.
 */
async function daemonHealth(http: HttpConfig | undefined): Promise<DaemonHealth | undefined> {
  if (!http || http.port === 0) return undefined;
  const host = http.host === '0.0.0.0' ? '127.0.0.1' : http.host === '::' ? '[::1]' : http.host.includes(':') ? `[${http.host}]` : http.host;
  const url = `http://${host}:${http.port}/healthz`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS) });
    const body = (await res.json()) as { reasons?: string[] };
    return { url, status: res.ok ? 'ok' : 'unhealthy', reasons: body.reasons ?? [] };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    return { url, status: 'unreachable', reasons: [`no answer: ${cause}`] };
  }
}

export async function statusCommand(opts: { db?: string; config?: string; json?: boolean }): Promise<void> {
  // With --db there may be no config to read (another machine's copy of the database).
  const config = opts.db ? undefined : loadConfig(configPath(opts.config));
  const health = await daemonHealth(config?.http);
  await withCliStore({ db: opts.db ?? config!.database }, { readonly: true }, async (store) => {
    const streams = await store.streams();
    const counts = await store.notificationCounts();
    if (opts.json) {
      const status = { streams: streams.map((s) => ({ ...s, cursor: instantOrDash(s.cursor) })), notifications: counts, ...(health ? { daemon: health } : {}) };
      process.stdout.write(JSON.stringify(status, null, 2) + '\n');
      return;
    }
    process.stdout.write(table(
      ['INSTANCE', 'RESOURCE', 'CURSOR', 'LAST POLL', 'RESULT', 'PENDING', 'DEAD', 'REJECTED', 'LAST ERROR'],
      streams.map((s) => [
        s.instance, s.resource, instantOrDash(s.cursor), isoOrDash(s.lastPollAt),
        s.lastPollOk === undefined ? '-' : s.lastPollOk ? 'ok' : 'failed',
        String(s.pending), String(s.dead), String(s.rejected), s.lastPollError ?? s.lastDeliveryError ?? '',
      ]),
    ));
    process.stdout.write(`notifications: ${counts.pending} pending, ${counts.delivered} delivered, ${counts.dead} dead\n`);
    if (health) {
      process.stdout.write(`daemon (${health.url}): ${health.status}\n`);
      for (const reason of health.reasons) process.stdout.write(`  ${reason}\n`);
    }
  });
}
