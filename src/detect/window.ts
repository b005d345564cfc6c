import { type Instant, US_PER_SECOND } from '../time/instant.js';

export type WindowInput = {
  /** Upper bound of the last window fully processed. */
  cursor: Instant;
  now: Instant;
  pollDelaySec: number;
  /** Re-read this much before the cursor: covers clock skew and records that commit late. */
  overlapSec: number;
  /** Leave the newest seconds for the next poll, so that a window is closed when it is read. */
  settleSec: number;
};

export type PollWindow = { start: Instant; end: Instant };

/**
 * The window one poll reads: `[cursor − pollDelay − overlap, now − settle]`. The end never falls
 * behind the cursor, so a clock that steps backwards cannot move the cursor back.
 */
export function pollWindow(w: WindowInput): PollWindow {
  const start = w.cursor - Math.round((w.pollDelaySec + w.overlapSec) * US_PER_SECOND);
  const end = Math.max(w.cursor, w.now - Math.round(w.settleSec * US_PER_SECOND));
  return { start, end };
}
