import cron from 'node-cron';
import type { Schedule } from '../config/types.js';
import { firstDue, nextDue } from './pollTimes.js';

/** When a stream polls: the one place that knows an interval's grid and a cron's matches. */
export type Scheduler = {
  /**
   * The first poll after a start or after a reload added the stream: see `firstDue` (an interval
   * stream); a cron stream polls at once, as it always has.
   */
  first(nowMs: number, stream: { cursorMs: number; settleMs: number; backfill: boolean }): number;
  /** The poll after the one due at `dueMs`, as it ends at `nowMs`. */
  next(dueMs: number, nowMs: number): number;
  /**
   * When the n-th run from now is due, ms since the epoch: health checks ask "have n polls been
   * due since the last completed one?", which a fixed interval cannot answer for a cron schedule
   * with irregular gaps (09:00 and 17:00 on weekdays).
   */
  nthNextRun(n: number): number;
  dispose(): void;
};

/**
 * Interval (AMPLIFY's refresh_interval: polls at `offsetMs + k·interval`, see pollTimes.ts) or
 * cron (`pollbridge.poller.cron`, seconds allowed).
 */
export function createScheduler(schedule: Schedule, offsetMs = 0): Scheduler {
  if (schedule.kind === 'interval') {
    const interval = schedule.intervalMs;
    return {
      first: (now, s) => firstDue(now, s.cursorMs, s.settleMs, interval, offsetMs, s.backfill),
      next: (due, now) => nextDue(due, now, interval, offsetMs),
      nthNextRun: (n) => Date.now() + n * interval,
      dispose: () => {},
    };
  }
  // A stopped task is node-cron's matcher without its timer: we only ask it for the next match.
  const task = cron.createTask(schedule.expression, () => {});
  return {
    first: (now) => now,
    next: (_due, now) => task.getNextRuns(1)[0]?.getTime() ?? now + 60_000,
    nthNextRun: (n) => task.getNextRuns(n)[n - 1]?.getTime() ?? Date.now() + n * 60_000,
    dispose: () => void task.destroy(),
  };
}
