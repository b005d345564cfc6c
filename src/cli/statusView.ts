import type { InstanceConfig, Schedule } from '../config/types.js';
import type { PollInProgress } from '../daemon/httpServer.js';
import { createScheduler } from '../daemon/schedule.js';
import { CALLOUT_RESOURCE, type CalloutCounts, type NotificationStatus, type StreamStatus } from '../store/types.js';
import { msFromInstant } from '../time/instant.js';
import { relativeOrDash, relativeTime, table } from './format.js';

/** Above this many streams, `status` prints a summary unless asked for the table. */
export const SUMMARY_ABOVE_STREAMS = 20;
/** Lines per section of the summary (worst lag, failing, waiting outboxes, daemon reasons). */
export const SUMMARY_SECTION_LINES = 10;
/** A stream lags when it has gone this many of its periods without a completed poll. */
export const LAGGING_PERIODS = 2;

export type StreamView = StreamStatus & {
  /** With a config, when the stream is next polled (undefined: not polled: no daemon, or not configured). */
  nextPollAt?: number;
  polling?: PollInProgress;
  /** How often the config has it polled, ms (undefined: not polled by this config). */
  periodMs?: number;
  /** Since the last completed poll, or since the window a never-completed stream starts from, ms. */
  lagMs?: number;
  /** Undefined when there is no telling: no config, or a stream the config does not poll. */
  lagging?: boolean;
};

export type StreamFilter = {
  /** Instance names, `*` matching any run of characters; a stream matches any of them. */
  instances: readonly string[];
  failing: boolean;
  lagging: boolean;
};

export const isFiltered = (f: StreamFilter): boolean => f.instances.length > 0 || f.failing || f.lagging;

/** `acme-*` style patterns: `*` matches any run of characters, everything else itself. */
export function instanceMatcher(patterns: readonly string[]): (name: string) => boolean {
  if (patterns.length === 0) return () => true;
  const regexps = patterns.map((p) => new RegExp(`^${p.split('*').map((part) => part.replace(/[\\^$.|?+()[\]{}]/g, '\\$&')).join('.*')}$`));
  return (name) => regexps.some((r) => r.test(name));
}

/** A stream matches when it matches every filter given (an instance pattern, failing, lagging). */
export function streamMatcher(filter: StreamFilter): (s: StreamView) => boolean {
  const instance = instanceMatcher(filter.instances);
  return (s) => instance(s.instance) && (!filter.failing || s.lastPollOk === false) && (!filter.lagging || s.lagging === true);
}

/**
 * The time between two polls: the interval, or for a cron schedule the gap between its next two
 * runs (a cron with irregular gaps is judged by the coming one).
 */
export function periodOf(schedule: Schedule): number {
  if (schedule.kind === 'interval') return schedule.intervalMs;
  const scheduler = createScheduler(schedule);
  try {
    return scheduler.nthNextRun(2) - scheduler.nthNextRun(1);
  } finally {
    scheduler.dispose();
  }
}

/** How often the config has the daemon read a stream: its schedule, or the callout's failed-queue rounds. */
export function streamPeriodMs(instance: InstanceConfig | undefined, resource: string, periods: (i: InstanceConfig) => number): number | undefined {
  if (!instance?.enabled) return undefined;
  if (resource === CALLOUT_RESOURCE) return instance.callout && instance.callout.failedQueueMs > 0 ? instance.callout.failedQueueMs : undefined;
  return instance.resources.some((r) => r.name === resource) ? periods(instance) : undefined;
}

/**
 * Lag and lagging of a stream: the time since its last completed poll (for a stream that never
 * completed one, since the start of its window: the first start, or the backfill), and whether
 * that is more than LAGGING_PERIODS of its periods.
 */
export function lagOf(s: StreamStatus, periodMs: number | undefined, nowMs: number): Pick<StreamView, 'lagMs' | 'lagging'> {
  const from = s.lastSuccessAt ?? (s.resource === CALLOUT_RESOURCE ? undefined : msFromInstant(s.cursor));
  const lagMs = from === undefined ? undefined : Math.max(0, nowMs - from);
  if (periodMs === undefined) return lagMs === undefined ? {} : { lagMs };
  return { ...(lagMs === undefined ? {} : { lagMs }), lagging: lagMs !== undefined && lagMs > LAGGING_PERIODS * periodMs };
}

/** How many streams each replica holds, most first, and how many none holds (between holders, or no replica running). */
export function replicasLine(streams: readonly StreamStatus[]): string {
  const held = new Map<string, number>();
  let unheld = 0;
  for (const s of streams) {
    if (s.replica === undefined) unheld++;
    else held.set(s.replica, (held.get(s.replica) ?? 0) + 1);
  }
  const parts = [...held].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([name, n]) => `${name} ${n}`);
  if (unheld > 0) parts.push(`none ${unheld}`);
  return `replicas holding streams: ${parts.length > 0 ? parts.join(', ') : 'none'}`;
}

export type SummaryInput = {
  streams: readonly StreamView[];
  /** Undefined without a config (--db). */
  configured: readonly InstanceConfig[] | undefined;
  counts: Record<NotificationStatus, number>;
  callouts: readonly CalloutCounts[];
  waiting: readonly { instance: string; pending: number }[];
  nowMs: number;
  /** On a shared store: streams carry the replica holding them. */
  clustered?: boolean;
};

const byLagDesc = (a: StreamView, b: StreamView): number => (b.lagMs ?? -1) - (a.lagMs ?? -1);
const more = (n: number, flag: string): string[] => (n > 0 ? [`  … and ${n} more: use ${flag}`] : []);

/**
 * The one-screen status of many streams: totals, then the worst few of each kind of trouble,
 * each section cut at SUMMARY_SECTION_LINES with the flag that shows the rest.
 */
export function summaryText(input: SummaryInput): string {
  const { streams, configured, counts, callouts, waiting, nowMs, clustered } = input;
  const lines: string[] = [];
  const instances = new Set(streams.map((s) => s.instance)).size;
  const failing = streams.filter((s) => s.lastPollOk === false).sort(byLagDesc);
  const neverPolled = streams.filter((s) => s.lastPollOk === undefined).length;
  lines.push(`streams: ${streams.length} of ${instances} instances${configured ? ` (config: ${configured.length} instances, ${configured.filter((i) => i.enabled).length} enabled)` : ''}`);
  lines.push(`last poll: ${streams.length - failing.length - neverPolled} ok, ${failing.length} failed, ${neverPolled} not yet polled`);
  if (configured) {
    const scheduled = streams.filter((s) => s.periodMs !== undefined);
    const recent = scheduled.filter((s) => s.lagMs !== undefined && s.lastSuccessAt !== undefined && s.lagMs <= s.periodMs!).length;
    const lagging = scheduled.filter((s) => s.lagging).length;
    lines.push(`polled: ${recent} of ${scheduled.length} scheduled streams within their interval, ${lagging} lagging (more than ${LAGGING_PERIODS} intervals)`);
  }
  if (clustered) lines.push(replicasLine(streams));
  lines.push(`notifications: ${counts.pending} pending, ${counts.delivered} delivered, ${counts.dead} dead`);
  if (callouts.length > 0) {
    const sum = (f: (c: CalloutCounts) => number): number => callouts.reduce((n, c) => n + f(c), 0);
    lines.push(`callouts: ${callouts.length} instances, ${sum((c) => c.received)} received, ${sum((c) => c.awaitingEvent)} waiting for their event, ${sum((c) => c.awaitingDelete)} waiting for their DELETE at Concur`);
  }

  const rows = (list: readonly StreamView[]): string => table(
    ['  INSTANCE', 'RESOURCE', 'LAST COMPLETED', 'LAST POLL', 'RESULT', 'LAST ERROR'],
    list.map((s) => [
      `  ${s.instance}`, s.resource, relativeOrDash(s.lastSuccessAt, nowMs), relativeOrDash(s.lastPollAt, nowMs),
      s.lastPollOk === undefined ? '-' : s.lastPollOk ? 'ok' : 'failed', (s.lastPollError ?? s.lastDeliveryError ?? '').slice(0, 80),
    ]),
  ).trimEnd();
  const lagging = streams.filter((s) => s.lagging).sort(byLagDesc);
  if (lagging.length > 0) {
    lines.push('', `lagging, worst first (no completed poll for more than ${LAGGING_PERIODS} intervals):`, rows(lagging.slice(0, SUMMARY_SECTION_LINES)), ...more(lagging.length - SUMMARY_SECTION_LINES, '--lagging'));
  } else {
    const worst = [...streams].sort(byLagDesc)[0];
    if (worst?.lagMs !== undefined) {
      const since = worst.lastSuccessAt === undefined ? `no completed poll, its window from ${relativeTime(nowMs - worst.lagMs, nowMs)}` : `last completed poll ${relativeTime(worst.lastSuccessAt, nowMs)}`;
      lines.push(`worst lag: ${worst.instance}/${worst.resource}, ${since}`);
    }
  }
  if (failing.length > 0) {
    lines.push('', 'failing (last poll failed), longest first:', rows(failing.slice(0, SUMMARY_SECTION_LINES)), ...more(failing.length - SUMMARY_SECTION_LINES, '--failing'));
  }
  if (waiting.length > 0) {
    lines.push('', 'pending for instances no longer configured (kept; sent if configured again):');
    for (const { instance, pending } of waiting.slice(0, SUMMARY_SECTION_LINES)) lines.push(`  ${instance}: ${pending} pending`);
    lines.push(...more(waiting.length - SUMMARY_SECTION_LINES, '--instance NAME'));
  }
  lines.push('', `(a summary of ${streams.length} streams: --all for every stream, --instance NAME, --failing${configured ? ' or --lagging' : ''} for some)`);
  return lines.join('\n') + '\n';
}
