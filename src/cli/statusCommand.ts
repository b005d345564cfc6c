import { loadConfig } from '../config/load.js';
import type { HttpConfig } from '../config/types.js';
import type { StreamStatus } from '../store/types.js';
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

/**
 * Instances with pending notifications that the config no longer names, with how many: their
 * outbox is kept and waits, and is sent if the instance comes back under the same name.
 */
function unconfigured(streams: readonly StreamStatus[], configured: ReadonlySet<string>): { instance: string; pending: number }[] {
  const pending = new Map<string, number>();
  for (const s of streams) {
    if (s.pending > 0 && !configured.has(s.instance)) pending.set(s.instance, (pending.get(s.instance) ?? 0) + s.pending);
  }
  return [...pending].map(([instance, n]) => ({ instance, pending: n }));
}

export async function statusCommand(opts: { db?: string; config?: string; json?: boolean }): Promise<void> {
  // With --db there may be no config to read (another machine's copy of the database).
  const config = opts.db ? undefined : loadConfig(configPath(opts.config));
  const health = await daemonHealth(config?.http);
  await withCliStore({ db: opts.db ?? config!.database }, { readonly: true }, async (store) => {
    const streams = await store.streams();
    const counts = await store.notificationCounts();
    // Without a config (--db) there is no telling which instances are still configured.
    const waiting = config ? unconfigured(streams, new Set(config.instances.map((i) => i.name))) : [];
    if (opts.json) {
      const status = {
        streams: streams.map((s) => ({ ...s, cursor: instantOrDash(s.cursor) })), notifications: counts,
        ...(config ? { unconfigured: waiting } : {}), ...(health ? { daemon: health } : {}),
      };
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
    for (const { instance, pending } of waiting) {
      process.stdout.write(`${instance}: ${pending} pending, waiting for an instance no longer configured (kept; sent if it is configured again)\n`);
    }
    if (health) {
      process.stdout.write(`daemon (${health.url}): ${health.status}\n`);
      for (const reason of health.reasons) process.stdout.write(`  ${reason}\n`);
    }
  });
}
