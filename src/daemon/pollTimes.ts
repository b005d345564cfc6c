/**
 * When an interval stream polls. Each stream has a grid of its own: due at `offset + k·interval`
 * (ms since the epoch), its offset fixed by its name (`stableFraction`), so that the polls of
 * thousands of streams spread over the interval instead of all starting at second 0, and a
 * restart or a reload leaves every stream where it was.
 */

import { stableFraction } from '../util/stableFraction.js';

/** Where in its interval a stream polls, ms: fixed by its instance's and resource's names. */
export function gridOffsetMs(instance: string, resource: string, intervalMs: number): number {
  return stableFraction(`poll:${instance}/${resource}`) * intervalMs;
}

/** The stream's first grid point after `afterMs`. */
export function nextGridPoint(afterMs: number, intervalMs: number, offsetMs: number): number {
  const k = Math.floor((afterMs - offsetMs) / intervalMs) + 1;
  return offsetMs + k * intervalMs;
}

/**
 * The poll after one that was due at `lastDueMs`, as it ends at `nowMs`. On time: the next grid
 * point. A poll that overran one or more grid points is followed at once by one poll (due at the
 * last grid point missed), not by a burst of them. A clock stepped back by more than an interval
 * (lastDue far in the future) goes on from now's grid point rather than waiting out the step.
 */
export function nextDue(lastDueMs: number, nowMs: number, intervalMs: number, offsetMs: number): number {
  if (lastDueMs > nowMs + intervalMs) return nextGridPoint(nowMs, intervalMs, offsetMs);
  const next = nextGridPoint(lastDueMs, intervalMs, offsetMs);
  if (next > nowMs) return next;
  return nextGridPoint(nowMs - intervalMs, intervalMs, offsetMs);
}

/**
 * A stream's first poll after a start, or after a reload added it: at once when changes are
 * waiting longer than the grid would make them wait (`backfill`: it starts from a past moment
 * given by --since or backfillFrom; or its cursor is more than one interval and the settle time
 * behind, after a downtime that missed a grid point), else at its next grid point. A new
 * stream's cursor is now: nothing is missed by waiting for its place, and a fleet's first round
 * is spread like every other.
 */
export function firstDue(nowMs: number, cursorMs: number, settleMs: number, intervalMs: number, offsetMs: number, backfill: boolean): number {
  if (backfill || nowMs - cursorMs > intervalMs + settleMs) return nowMs;
  return nextGridPoint(nowMs, intervalMs, offsetMs);
}
