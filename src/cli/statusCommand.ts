import { loadConfig } from '../config/load.js';
import type { HttpConfig, InstanceConfig, PollbridgeConfig, Schedule } from '../config/types.js';
import type { PollInProgress } from '../daemon/httpServer.js';
import { gridOffsetMs, nextGridPoint } from '../daemon/pollTimes.js';
import { createScheduler } from '../daemon/schedule.js';
import { CALLOUT_RESOURCE, type StreamStatus } from '../store/types.js';
import { isoFromInstant } from '../time/instant.js';
import { instantOrDash, isoOrNull, relativeOrDash, relativeTime, table } from './format.js';
import { anyoneSending, senders, type Senders, withCliStore } from './openStore.js';
import { configPath } from './options.js';
import {
  instanceMatcher, isFiltered, lagOf, periodOf, type StreamFilter, streamMatcher, streamPeriodMs, type StreamView, SUMMARY_ABOVE_STREAMS, SUMMARY_SECTION_LINES, summaryText,
} from './statusView.js';
import { UserError } from './userError.js';

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
 * interval stream polls at its grid point (`offsetMs` in the interval), or at once when its last
 * poll is more than an interval ago. A cron stream not polled yet is due at once.
 */
export function nextPollAt(schedule: Schedule, offsetMs: number, lastPollAt: number | undefined, nowMs: number): number {
  if (schedule.kind === 'interval') {
    return lastPollAt !== undefined && nowMs - lastPollAt > schedule.intervalMs ? nowMs : nextGridPoint(nowMs, schedule.intervalMs, offsetMs);
  }
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

function memo<T>(cache: Map<string, T>, key: string, make: () => T): T {
  if (!cache.has(key)) cache.set(key, make());
  return cache.get(key)!;
}

/**
 * Each stream with what the config and the daemon add: its next poll, its poll in progress, its
 * period and whether it lags. Periods are worked out once per instance (a cron schedule's takes
 * a matcher), and instances found by name in a map: thousands of streams stay cheap.
 */
function streamViews(streams: readonly StreamStatus[], config: PollbridgeConfig | undefined, daemonRunning: boolean | undefined, health: DaemonHealth | undefined, nowMs: number): StreamView[] {
  const instances = new Map(config?.instances.map((i) => [i.name, i]));
  const periods = new Map<string, number>();
  const periodOfInstance = (i: InstanceConfig): number => memo(periods, i.name, () => periodOf(i.schedule));
  // A cron's next run is the same for every stream of the instance that has been polled.
  const cronNext = new Map<string, number>();
  const next = (i: InstanceConfig, resource: string, lastPollAt: number | undefined): number => {
    if (i.schedule.kind === 'cron') return lastPollAt === undefined ? nowMs : memo(cronNext, i.name, () => nextPollAt(i.schedule, 0, lastPollAt, nowMs));
    return nextPollAt(i.schedule, gridOffsetMs(i.name, resource, i.schedule.intervalMs), lastPollAt, nowMs);
  };
  const polls = new Map(health?.polls.map((p) => [`${p.instance}\n${p.resource}`, p]));
  return streams.map((s) => {
    const instance = instances.get(s.instance);
    const polled = instance?.enabled && instance.resources.some((r) => r.name === s.resource) ? instance : undefined;
    const polling = polls.get(`${s.instance}\n${s.resource}`);
    const nextAt = polled && daemonRunning !== false ? next(polled, s.resource, s.lastPollAt) : undefined;
    const periodMs = config ? streamPeriodMs(instance, s.resource, periodOfInstance) : undefined;
    return {
      ...s, ...(nextAt !== undefined ? { nextPollAt: nextAt } : {}), ...(polling ? { polling } : {}),
      ...(periodMs !== undefined ? { periodMs } : {}), ...lagOf(s, periodMs, nowMs),
      // With a config, a stream it does not poll is not lagging; without one there is no telling.
      ...(config && periodMs === undefined ? { lagging: false } : {}),
    };
  });
}

export type StatusOptions = {
  db?: string;
  config?: string;
  json?: boolean;
  instance?: string[];
  failing?: boolean;
  lagging?: boolean;
  all?: boolean;
};

/** What the daemon says about itself; in a summary, its reasons cut short and its polls counted. */
function daemonText(who: Senders, health: DaemonHealth | undefined, config: PollbridgeConfig | undefined, polls: readonly PollInProgress[] | undefined, nowMs: number): string {
  const lines = [sendersLine(who)];
  const daemonRunning = anyoneSending(who);
  if (health) {
    lines.push(`daemon (${health.url}): ${health.status}`);
    const reasons = polls ? health.reasons : health.reasons.slice(0, SUMMARY_SECTION_LINES);
    for (const reason of reasons) lines.push(`  ${reason}`);
    if (reasons.length < health.reasons.length) lines.push(`  … and ${health.reasons.length - reasons.length} more reasons`);
    if (polls) for (const poll of polls) lines.push(`  polling ${poll.instance}/${poll.resource}: ${describePoll(poll, nowMs)}`);
    else if (health.polls.length > 0) lines.push(`  polling now: ${health.polls.length} streams`);
  } else if (daemonRunning && config) {
    lines.push(config.http?.port === 0
      ? '  (http.listen has port 0: the daemon\'s address is in its log ("health and metrics listening"), not known here)'
      : '  (set http.listen in the config for its polls in progress and health here)');
  }
  return lines.join('\n') + '\n';
}

function sendersLine(who: Senders): string {
  if (who.kind === 'replicas') {
    return who.names.length > 0 ? `replicas: ${who.names.length} running on this database (${who.names.join(', ')})`
      : 'replicas: none running on this database (nothing is polled or sent until `pollbridge run`)';
  }
  return who.running === true ? 'daemon: running on this database'
    : who.running === false ? 'daemon: not running on this database (nothing is polled or sent until `pollbridge run`)'
      : 'daemon: cannot tell whether one is running (the database\'s lock file is not readable)';
}

export async function statusCommand(opts: StatusOptions): Promise<void> {
  const filter: StreamFilter = { instances: opts.instance ?? [], failing: opts.failing === true, lagging: opts.lagging === true };
  // Lagging is judged against the schedule, which only the config has.
  if (filter.lagging && opts.db) throw new UserError('--lagging needs the config (the schedules say when a stream lags): use -c FILE instead of --db');
  // With --db there may be no config to read (another machine's copy of the database).
  const config = opts.db ? undefined : loadConfig(configPath(opts.config));
  const health = await daemonHealth(config?.http);
  await withCliStore({ db: opts.db }, { readonly: true, config }, async (store, db) => {
    const streams = await store.streams();
    const counts = await store.notificationCounts();
    const now = Date.now();
    const who = await senders(db);
    const daemonRunning = anyoneSending(who);
    const views = streamViews(streams, config, daemonRunning, health, now);
    const instance = instanceMatcher(filter.instances);
    const selected = views.filter(streamMatcher(filter));
    const callouts = (await store.calloutCounts()).filter((c) => instance(c.instance));
    // Without a config (--db) there is no telling which instances are still configured.
    const waiting = config ? unconfigured(streams, new Set(config.instances.map((i) => i.name))).filter((w) => instance(w.instance)) : [];
    // Replicas hold streams (a shared store, in use): who holds each is shown, and a stream none
    // holds says so. Otherwise the output is SQLite's, column for column.
    const clustered = streams.some((s) => s.replica !== undefined);
    if (opts.json) {
      const status = {
        now: isoOrNull(now),
        daemonRunning: daemonRunning ?? null,
        ...(who.kind === 'replicas' ? { replicas: who.names } : {}),
        streams: selected.map(({ periodMs: _periodMs, lagMs: _lagMs, ...s }) => ({
          ...s,
          cursor: s.resource === CALLOUT_RESOURCE ? null : isoFromInstant(s.cursor),
          lastPollAt: isoOrNull(s.lastPollAt),
          lastSuccessAt: isoOrNull(s.lastSuccessAt),
          ...(config ? { nextPollAt: isoOrNull(s.nextPollAt) } : {}),
          ...(health ? { polling: s.polling ? { since: s.polling.since, page: s.polling.page, retry: s.polling.retry } : null } : {}),
          lagging: s.lagging ?? null,
          ...(clustered ? { replica: s.replica ?? null } : {}),
        })),
        notifications: counts,
        callouts: callouts.map((c) => ({ ...c, lastReceivedAt: isoOrNull(c.lastReceivedAt) })),
        ...(config ? { unconfigured: waiting } : {}), ...(health ? { daemon: health } : {}),
      };
      process.stdout.write(JSON.stringify(status, null, 2) + '\n');
      return;
    }
    if (!isFiltered(filter) && !opts.all && views.length > SUMMARY_ABOVE_STREAMS) {
      process.stdout.write(summaryText({ streams: views, configured: config?.instances, counts, callouts, waiting, nowMs: now, clustered }));
      process.stdout.write(daemonText(who, health, config, undefined, now));
      return;
    }
    const nextColumn = (s: StreamView): string => (s.polling ? 'polling now' : s.nextPollAt === undefined ? '-' : s.nextPollAt <= now ? 'due now' : relativeTime(s.nextPollAt, now));
    if (selected.length === 0 && isFiltered(filter)) {
      process.stdout.write(`no stream matches (${views.length} streams in all)\n`);
    } else {
      process.stdout.write(table(
        ['INSTANCE', 'RESOURCE', ...(clustered ? ['REPLICA'] : []), 'CURSOR', 'LAST POLL', 'RESULT', ...(config ? ['NEXT POLL'] : []), 'PENDING', 'DEAD', 'REJECTED', 'LAST ERROR'],
        selected.map((s) => [
          // A callout stream has no cursor: Concur pushes; its "poll" is the read of Concur's failed queue.
          s.instance, s.resource, ...(clustered ? [s.replica ?? '-'] : []), s.resource === CALLOUT_RESOURCE ? '-' : instantOrDash(s.cursor), relativeOrDash(s.lastPollAt, now),
          s.lastPollOk === undefined ? '-' : s.lastPollOk ? 'ok' : 'failed',
          ...(config ? [nextColumn(s)] : []),
          String(s.pending), String(s.dead), String(s.rejected), s.lastPollError ?? s.lastDeliveryError ?? '',
        ]),
      ));
    }
    process.stdout.write(`notifications: ${counts.pending} pending, ${counts.delivered} delivered, ${counts.dead} dead${isFiltered(filter) ? ' (all instances)' : ''}\n`);
    for (const c of callouts) {
      process.stdout.write(`callouts ${c.instance}: ${c.received} received (last ${relativeOrDash(c.lastReceivedAt, now)}), ${c.awaitingEvent} waiting for their event, ${c.awaitingDelete} waiting for their DELETE at Concur\n`);
    }
    for (const { instance: name, pending } of waiting) {
      process.stdout.write(`${name}: ${pending} pending, waiting for an instance no longer configured (kept; sent if it is configured again)\n`);
    }
    const shown = new Set(selected.map((s) => `${s.instance}\n${s.resource}`));
    const polls = health?.polls ?? [];
    process.stdout.write(daemonText(who, health, config, isFiltered(filter) ? polls.filter((p) => shown.has(`${p.instance}\n${p.resource}`)) : polls, now));
  });
}
