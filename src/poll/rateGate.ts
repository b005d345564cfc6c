import { abortableSleep } from '../util/abortableSleep.js';

/** The pause after a 429 without Retry-After, doubled for each one in a row, up to the last. */
const BACKOFF_MS = [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000];
/** A Retry-After longer than this is not believed: an hour's pause would stall the company. */
const MAX_PAUSE_MS = 300_000;

/**
 * Concur limits each company, not the host: a 429 pauses the requests of that company (its
 * instance) alone, for the answer's Retry-After or a growing backoff, while the other companies
 * go on. Pages of a company that come meanwhile wait here, before taking a request slot.
 */
export class RateGate {
  private openAt = 0;
  private inARow = 0;

  /** When requests may go again, ms since the epoch (0: now). */
  get pausedUntil(): number {
    return this.openAt;
  }

  /** Waits until the pause (if any) is over, or `signal` aborts. */
  async wait(signal: AbortSignal | undefined): Promise<void> {
    for (let rounds = 0; rounds < 100; rounds++) {
      const ms = this.openAt - Date.now();
      if (ms <= 0 || signal?.aborted) return;
      await abortableSleep(ms, signal ?? new AbortController().signal);
    }
  }

  /** The provider answered: 429 pauses the company (`retryAfterSec` as sent, if it was), anything else ends a streak. */
  answered(status: number, retryAfterSec: number | undefined, now = Date.now()): void {
    if (status !== 429) {
      this.inARow = 0;
      return;
    }
    const backoff = BACKOFF_MS[Math.min(this.inARow, BACKOFF_MS.length - 1)]!;
    this.inARow++;
    const pause = Math.min(MAX_PAUSE_MS, retryAfterSec !== undefined ? retryAfterSec * 1000 : backoff);
    this.openAt = Math.max(this.openAt, now + pause);
  }
}
