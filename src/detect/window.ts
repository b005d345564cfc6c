import { type Instant, US_PER_SECOND } from '../time/instant.js';

/**
 * How far a fresh window reaches back before the cursor once the skew is known. The cursor itself
 * already stops at the provider's `Date` (rounded down to its second); this covers a `Date` that
 * is rounded to the nearest second instead. Changes that become visible later than this are
 * caught by the recheck.
 */
const SKEW_MARGIN_SEC = 1;
/**
 * A measured skew smaller than this is no skew: one-second `Date` headers cannot tell it apart
 * from zero, and taking it at face value would end windows up to half a second short of now.
 */
const SKEW_RESOLUTION_MS = 1000;

export type PlanInput = {
  /** In the provider's time: every change stamped before it was read at least once. */
  cursor: Instant;
  /** Every change stamped before it was read again once it was older than the overlap. */
  recheck: Instant;
  /** Our clock. */
  now: Instant;
  /** The provider's clock minus ours (ms), as last measured; undefined when never measured. */
  skewMs: number | undefined;
  pollDelaySec: number;
  /** How late a change may become visible after its stamp (commit lag, replicas, skew error). */
  overlapSec: number;
  /** Leave the newest seconds for the next poll, so that a window is closed when it is read. */
  settleSec: number;
};

export type PollWindow = { start: Instant; end: Instant };

/** What one poll reads: the fresh window first, then the part of the past that is due a second read. */
export type PollPlan = {
  fresh: PollWindow;
  /** Undefined when nothing has aged past the overlap since the last poll. */
  recheck: PollWindow | undefined;
  /** The provider's time when the plan was made, by our clock and the last measured skew. */
  providerNow: Instant;
};

const us = (sec: number): number => Math.round(sec * US_PER_SECOND);

/**
 * The windows one poll reads, in the provider's time (our clock plus the measured skew), so that
 * a cursor never runs ahead of the clock that stamps the records.
 *
 * - Fresh: `[cursor − pollDelay − margin, providerNow − settle]`. The margin covers the error of
 *   the skew measurement (`Date` has one-second resolution), or the whole overlap while the skew
 *   is unknown. When our clock has stepped back behind the cursor the window still reaches the
 *   cursor: reading it measures the skew again (the cursor then moves back to the provider's
 *   clock, see `pollStream`).
 * - Recheck: `[recheck − pollDelay, min(cursor, providerNow − overlap)]`: each stretch of time is
 *   read once more after it has aged by the overlap, catching changes that became visible late.
 *   Every change is read about twice in all, where re-reading the whole overlap on every poll
 *   would read it overlap/interval times and hold new changes behind that re-read. An overlap of
 *   0 says nothing becomes visible late: no recheck.
 */
export function pollPlan(w: PlanInput): PollPlan {
  const skewMs = w.skewMs === undefined || Math.abs(w.skewMs) < SKEW_RESOLUTION_MS ? 0 : w.skewMs;
  const providerNow = w.now + Math.round(skewMs * 1000);
  // Never an empty window: a read is what measures the skew and pulls back a cursor that ran ahead.
  const marginSec = w.skewMs === undefined ? Math.max(w.overlapSec, SKEW_MARGIN_SEC) : SKEW_MARGIN_SEC;
  const start = w.cursor - us(w.pollDelaySec + marginSec);
  const end = Math.max(w.cursor, providerNow - us(w.settleSec));
  const recheckEnd = Math.min(w.cursor, providerNow - us(w.overlapSec));
  const recheckStart = w.recheck - us(w.pollDelaySec);
  return {
    fresh: { start, end },
    recheck: w.overlapSec > 0 && recheckEnd > w.recheck ? { start: recheckStart, end: recheckEnd } : undefined,
    providerNow,
  };
}
