/**
 * Slows the guessing of Basic credentials per remote address, without letting a stranger lock
 * Concur out.
 *
 * Why this shape:
 * - Valid credentials from an address without failures are never slowed: Concur connecting
 *   directly pays nothing, whatever happens at other addresses.
 * - After `freeFailures` failures in `windowMs`, an address's credential checks are paced, one
 *   slot every `intervalMs` however many connections it opens: an attacker gets at most one
 *   guess per interval per address. Requests beyond `maxWaiting` per address (or
 *   `maxWaitingTotal` over all) are refused before the credentials are checked, so a refusal
 *   tells nothing and waiting requests cannot pile up.
 * - A success does not reset the failures (an attacker behind the same reverse proxy as Concur
 *   must not ride on Concur's successes); failures only age out of the window. So a shared
 *   address is slowed while the guessing goes on and never locked: its requests still get a
 *   slot each interval, and the pacing ends `windowMs` after the guessing stops.
 * - Memory is bounded: at most `maxAddresses` addresses, the least recently seen forgotten first.
 *
 * Pure: the caller passes the clock in (a monotonic one, in ms: a clock set back would stretch
 * the pacing). The caller calls `done` once for every admitted request
 * (`now` or `wait`) when it has been answered, and `failed` when its credentials were wrong.
 */

export type ThrottleOptions = {
  /** Failed attempts per address within `windowMs` before its checks are paced. */
  freeFailures: number;
  /** How long a failed attempt counts, in ms. */
  windowMs: number;
  /** Time between two credential checks of a paced address, in ms. */
  intervalMs: number;
  /** Admitted, unanswered requests (paced or not) of one paced address at which its further requests are refused. */
  maxWaiting: number;
  /** Admitted, unanswered requests over all addresses at which requests of paced addresses are refused. */
  maxWaitingTotal: number;
  /** Addresses tracked at most. */
  maxAddresses: number;
};

export const DEFAULT_THROTTLE_OPTIONS: ThrottleOptions = {
  freeFailures: 5,
  windowMs: 15 * 60_000,
  intervalMs: 1000,
  maxWaiting: 8,
  maxWaitingTotal: 256,
  maxAddresses: 10_000,
};

export type Admission = { kind: 'now' } | { kind: 'wait'; ms: number } | { kind: 'refuse'; retryAfterSec: number };

type AddressState = {
  /** The most recent failures (at most `freeFailures` of them), oldest first, in ms. */
  failures: number[];
  /** When the latest admitted credential check was (or is) due, in ms. */
  lastSlot: number | undefined;
  /** Admitted requests not yet answered. */
  waiting: number;
};

export class AuthThrottle {
  private readonly options: ThrottleOptions;
  // A Map iterates in insertion order: re-inserting on each sight keeps it least recently seen first.
  private readonly addresses = new Map<string, AddressState>();
  private waitingTotal = 0;

  constructor(options: Partial<ThrottleOptions> = {}) {
    this.options = { ...DEFAULT_THROTTLE_OPTIONS, ...options };
    for (const [name, value] of Object.entries(this.options)) {
      const least = name === 'freeFailures' || name === 'windowMs' ? 0 : 1;
      if (!Number.isSafeInteger(value) || value < least) throw new RangeError(`throttle option ${name} must be an integer ≥ ${least}, not ${value}`);
    }
  }

  /** Whether a request from `address` may have its credentials checked now, later, or not at all. */
  admit(address: string, now: number): Admission {
    const state = this.see(address);
    if (!this.paced(state, now)) {
      // A slot given out while the address was paced may still be ahead: pacing resumes after it.
      state.lastSlot = Math.max(state.lastSlot ?? now, now);
      this.enter(state);
      return { kind: 'now' };
    }
    const { intervalMs, maxWaiting, maxWaitingTotal } = this.options;
    const slot = state.lastSlot === undefined ? now : Math.max(now, state.lastSlot + intervalMs);
    if (state.waiting >= maxWaiting || this.waitingTotal >= maxWaitingTotal) {
      // By then the slots already given out have passed and a place may be free again.
      return { kind: 'refuse', retryAfterSec: Math.max(1, Math.ceil((slot - now) / 1000)) };
    }
    state.lastSlot = slot;
    this.enter(state);
    return slot === now ? { kind: 'now' } : { kind: 'wait', ms: slot - now };
  }

  /** An admitted request of `address` has been answered. */
  done(address: string): void {
    const state = this.addresses.get(address);
    if (!state || state.waiting === 0) return;
    state.waiting--;
    this.waitingTotal--;
  }

  /** A request of `address` came with wrong credentials. */
  failed(address: string, now: number): void {
    const { failures } = this.see(address);
    failures.push(now);
    if (failures.length > this.options.freeFailures) failures.shift();
  }

  /** Admitted requests not yet answered, of `address` or over all addresses. */
  waitingCount(address?: string): number {
    return address === undefined ? this.waitingTotal : (this.addresses.get(address)?.waiting ?? 0);
  }

  /** Addresses tracked. */
  get size(): number {
    return this.addresses.size;
  }

  private paced(state: AddressState, now: number): boolean {
    const { freeFailures, windowMs } = this.options;
    if (state.failures.length < freeFailures) return false;
    // The oldest kept is the freeFailures-th most recent failure: all of them count while it does.
    const oldest = state.failures[0];
    return oldest === undefined || now - oldest < windowMs;
  }

  private enter(state: AddressState): void {
    state.waiting++;
    this.waitingTotal++;
  }

  private see(address: string): AddressState {
    let state = this.addresses.get(address);
    if (state) {
      this.addresses.delete(address);
    } else {
      state = { failures: [], lastSlot: undefined, waiting: 0 };
      if (this.addresses.size >= this.options.maxAddresses) this.forgetOldest();
    }
    this.addresses.set(address, state);
    return state;
  }

  private forgetOldest(): void {
    const [oldest, state] = this.addresses.entries().next().value as [string, AddressState];
    this.addresses.delete(oldest);
    this.waitingTotal -= state.waiting;
  }
}
