import cron from 'node-cron';
import type { Schedule } from '../config/types.js';

/**
 * When an interval poll runs next. Polls start `intervalMs` apart; one that overran starts the next
 * at once instead of firing a burst of missed ones; a clock stepped backwards (lastStart in the
 * future) waits one interval from now rather than the whole gap.
 */
export function nextIntervalRun(lastStartMs: number | undefined, nowMs: number, intervalMs: number): number {
  if (lastStartMs === undefined) return nowMs;
  if (lastStartMs > nowMs) return nowMs + intervalMs;
  return Math.max(nowMs, lastStartMs + intervalMs);
}

export type Scheduler = {
  msUntilNext(lastStartMs: number | undefined, nowMs: number): number;
  /**
   * When the n-th run from now is due, ms since the epoch: health checks ask "have n polls been
   * due since the last completed one?", which a fixed interval cannot answer for a cron schedule
   * with irregular gaps (09:00 and 17:00 on weekdays).
   */
  nthNextRun(n: number): number;
  dispose(): void;
};

/** Interval (AMPLIFY's refresh_interval) or cron (`pollbridge.poller.cron`, seconds allowed). */
export function createScheduler(schedule: Schedule): Scheduler {
  if (schedule.kind === 'interval') {
    return {
      msUntilNext: (last, now) => nextIntervalRun(last, now, schedule.intervalMs) - now,
      nthNextRun: (n) => Date.now() + n * schedule.intervalMs,
      dispose: () => {},
    };
  }
  // A stopped task is node-cron's matcher without its timer: we only ask it for the next match.
  const task = cron.createTask(schedule.expression, () => {});
  return {
    msUntilNext: (last, now) => {
      if (last === undefined) return 0;
      const next = task.getNextRuns(1)[0];
      return next ? Math.max(0, next.getTime() - now) : 60_000;
    },
    nthNextRun: (n) => task.getNextRuns(n)[n - 1]?.getTime() ?? Date.now() + n * 60_000,
    dispose: () => void task.destroy(),
  };
}
