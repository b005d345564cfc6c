import { loadConfig } from '../config/load.js';
import type { HttpConfig, PollbridgeConfig, Schedule } from '../config/types.js';
import type { PollInProgress } from '../daemon/httpServer.js';
import { createScheduler, nextIntervalRun } from '../daemon/schedule.js';
import { isDaemonLockHeld } from '../store/lock.js';
import { CALLOUT_RESOURCE, type StreamStatus } from '../store/types.js';
import { isoFromInstant } from '../time/instant.js';
import { instantOrDash, isoOrNull, relativeOrDash, relativeTime, table } from './format.js';
import { withCliStore } from './openStore.js';
import { configPath } from './options.js';

/**
 * How long to wait for /healthz. It checks that the database takes a write, and a locked
 * database (the very case a status is wanted for) makes that wait SQLite's busy timeout for
 * each call queued before it.
 */
const HEALTH_TIMEOUT_MS = 20_000;

type DaemonHealth = { url: string; status: 'ok' | 'unhealthy' | 'unreachable'; reasons: string[]; polls: PollInProgress[] };

/**
 * The running daemon's /healthz, when the config says where it listens. Some problems live
 * only in the daemon's memory: a rotated refresh token that could not be saved is, by its
 * nature, not in the database this command reads, and neither is a poll in progress.
 */
async function daemonHealth(http: HttpConfig | undefined): Promise<DaemonHealth | undefined> {
  if (!http || http.port === 0) return undefined;
  const host = http.host === '0.0.0.0' ? '127.0.0.1' : http.host === '::' ? '[::1]' : http.host.includes(':') ? `[${http.host}]` : http.host;
  const url = `http://${host}:${http.port}/healthz`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS) });
    const body = (await res.json()) as { reasons?: string[]; polls?: PollInProgress[] };
    return { url, status: res.ok ? 'ok' : 'unhealthy', reasons: body.reasons ?? [], polls: body.polls ?? [] };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    return { url, status: 'unreachable', reasons: [`no answer: ${cause}`], polls: [] };
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

/**
 * When the daemon polls a stream next, by its schedule. A cron schedule names the instant; an
 * interval counts from the last poll's start, and the database keeps its end, so the estimate
 * can be late by that poll's duration. Before a first poll, one is due at once.
 */
export function nextPollAt(schedule: Schedule, lastPollAt: number | undefined, nowMs: number): number {
  if (schedule.kind === 'interval') return nextIntervalRun(lastPollAt, nowMs, schedule.intervalMs);
  if (lastPollAt === undefined) return nowMs;
  const scheduler = createScheduler(schedule);
  try {
    return scheduler.nthNextRun(1);
  } finally {
    scheduler.dispose();
  }
}

/** A poll in progress, in a line: "12 s so far (since …), page 3, retry 1". */
export function describePoll(poll: Pick<PollInProgress, 'since' | 'page' | 'retry'>, nowMs: number): string {
  const since = Date.parse(poll.since);
  const where = poll.page === 0 ? 'getting a token' : `page ${poll.page}${poll.retry > 0 ? `, retry ${poll.retry}` : ''}`;
  return `started ${relativeTime(since, nowMs)} (${poll.since}), ${where}`;
}

type StreamView = StreamStatus & {
  /** With a config, when the stream is next polled (undefined: not polled: no daemon, or not configured). */
  nextPollAt?: number;
  polling?: PollInProgress;
};

function streamViews(streams: readonly StreamStatus[], config: PollbridgeConfig | undefined, daemonRunning: boolean | undefined, health: DaemonHealth | undefined, nowMs: number): StreamView[] {
  return streams.map((s) => {
    const instance = config?.instances.find((i) => i.name === s.instance && i.enabled && i.resources.some((r) => r.name === s.resource));
    const polling = health?.polls.find((p) => p.instance === s.instance && p.resource === s.resource);
    const next = instance && daemonRunning !== false ? nextPollAt(instance.schedule, s.lastPollAt, nowMs) : undefined;
    return { ...s, ...(next !== undefined ? { nextPollAt: next } : {}), ...(polling ? { polling } : {}) };
  });
}

export async function statusCommand(opts: { db?: string; config?: string; json?: boolean }): Promise<void> {
  // With --db there may be no config to read (another machine's copy of the database).
  const config = opts.db ? undefined : loadConfig(configPath(opts.config));
  const health = await daemonHealth(config?.http);
  await withCliStore({ db: opts.db ?? config!.database }, { readonly: true }, async (store, path) => {
    const streams = await store.streams();
    const counts = await store.notificationCounts();
    const callouts = await store.calloutCounts();
    const now = Date.now();
    const daemonRunning = isDaemonLockHeld(path);
    const views = streamViews(streams, config, daemonRunning, health, now);
    // Without a config (--db) there is no telling which instances are still configured.
    const waiting = config ? unconfigured(streams, new Set(config.instances.map((i) => i.name))) : [];
    if (opts.json) {
      const status = {
        now: isoOrNull(now),
        daemonRunning: daemonRunning ?? null,
        streams: views.map((s) => ({
          ...s,
          cursor: s.resource === CALLOUT_RESOURCE ? null : isoFromInstant(s.cursor),
          lastPollAt: isoOrNull(s.lastPollAt),
          lastSuccessAt: isoOrNull(s.lastSuccessAt),
          ...(config ? { nextPollAt: isoOrNull(s.nextPollAt) } : {}),
          ...(health ? { polling: s.polling ? { since: s.polling.since, page: s.polling.page, retry: s.polling.retry } : null } : {}),
        })),
        notifications: counts,
        callouts: callouts.map((c) => ({ ...c, lastReceivedAt: isoOrNull(c.lastReceivedAt) })),
        ...(config ? { unconfigured: waiting } : {}), ...(health ? { daemon: health } : {}),
      };
      process.stdout.write(JSON.stringify(status, null, 2) + '\n');
      return;
    }
    const nextColumn = (s: StreamView): string => (s.polling ? 'polling now' : s.nextPollAt === undefined ? '-' : s.nextPollAt <= now ? 'due now' : relativeTime(s.nextPollAt, now));
    process.stdout.write(table(
      ['INSTANCE', 'RESOURCE', 'CURSOR', 'LAST POLL', 'RESULT', ...(config ? ['NEXT POLL'] : []), 'PENDING', 'DEAD', 'REJECTED', 'LAST ERROR'],
      views.map((s) => [
        // A callout stream has no cursor: Concur pushes; its "poll" is the read of Concur's failed queue.
        s.instance, s.resource, s.resource === CALLOUT_RESOURCE ? '-' : instantOrDash(s.cursor), relativeOrDash(s.lastPollAt, now),
        s.lastPollOk === undefined ? '-' : s.lastPollOk ? 'ok' : 'failed',
        ...(config ? [nextColumn(s)] : []),
        String(s.pending), String(s.dead), String(s.rejected), s.lastPollError ?? s.lastDeliveryError ?? '',
      ]),
    ));
    process.stdout.write(`notifications: ${counts.pending} pending, ${counts.delivered} delivered, ${counts.dead} dead\n`);
    for (const c of callouts) {
      process.stdout.write(`callouts ${c.instance}: ${c.received} received (last ${relativeOrDash(c.lastReceivedAt, now)}), ${c.awaitingEvent} waiting for their event, ${c.awaitingDelete} waiting for their DELETE at Concur\n`);
    }
    for (const { instance, pending } of waiting) {
      process.stdout.write(`${instance}: ${pending} pending, waiting for an instance no longer configured (kept; sent if it is configured again)\n`);
    }
    process.stdout.write(daemonRunning === true ? 'daemon: running on this database\n'
      : daemonRunning === false ? 'daemon: not running on this database (nothing is polled or sent until `pollbridge run`)\n'
        : 'daemon: cannot tell whether one is running (the database\'s lock file is not readable)\n');
    if (health) {
      process.stdout.write(`daemon (${health.url}): ${health.status}\n`);
      for (const reason of health.reasons) process.stdout.write(`  ${reason}\n`);
      for (const poll of health.polls) process.stdout.write(`  polling ${poll.instance}/${poll.resource}: ${describePoll(poll, now)}\n`);
    } else if (daemonRunning && config) {
      process.stdout.write('  (set http.listen in the config for its polls in progress and health here)\n');
    }
  });
}
