/**
 * One replica's part in a cluster: every third of a lease it says it is alive, works out which
 * streams are its own (rendezvous over the live replicas), and renews, takes and lets go of their
 * leases in one round. Each lease is used only while it has not run out by this process's own
 * (monotonic) clock, counted from before the round was sent and less a margin: a replica cut off
 * from the database stops polling before the database lets any other replica take over.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log.js';
import type { ClusterStore, Lease } from '../store/types.js';
import { abortableSleep } from '../util/abortableSleep.js';
import { desiredStreams, type Placeable } from './assignment.js';

export type LeaseLoopOptions = {
  cluster: ClusterStore;
  /** How long a lease and a heartbeat last, ms (pollbridge.cluster.leaseSeconds). */
  leaseMs: number;
  log: Logger;
  /** The streams this replica could poll: its config's, read at every round. */
  streams: () => readonly Placeable[];
  /** Leases no longer usable (let go of, taken, or run out here): their polls must stop. Cannot fail. */
  onLost: (streamIds: number[]) => void;
  /**
   * New leases, each with its fence. When it throws, they are offered again next round (the
   * leases are kept meanwhile): the daemon reads their rows first, which may fail.
   */
  onGained: (leases: Lease[]) => Promise<void>;
};

/**
 * Taken off a lease's length for its local expiry: the time a round's answer may take to come
 * back after the database set the expiry is already counted (the expiry is dated from before
 * the request), this covers clocks that run at slightly different rates and a late timer.
 */
const MARGIN_FRACTION = 0.2;

type Held = { fence: number; /** performance.now() at which this process stops using it. */ until: number };

export class LeaseLoop {
  /** Every lease the database last said is ours, usable or not. */
  private held = new Map<number, Held>();
  /** The leases the daemon was told of (gained, not lost since), with their fences. */
  private told = new Map<number, number>();
  private readonly controller = new AbortController();
  private nap: AbortController | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  /** When the last round succeeded (or the loop started), Date.now(). */
  private lastOkAt = Date.now();
  /** Rounds are failing: since when, and why. */
  private failing: { since: number; error: string } | undefined;

  constructor(private readonly options: LeaseLoopOptions) {}

  get periodMs(): number {
    return Math.max(100, Math.round(this.options.leaseMs / 3));
  }

  /** The fence of `streamId`'s lease while this replica may poll it; undefined otherwise. */
  fence(streamId: number): number | undefined {
    const h = this.held.get(streamId);
    return h && h.until > performance.now() ? h.fence : undefined;
  }

  /** How many leases this replica may use now. */
  get usable(): number {
    let n = 0;
    const now = performance.now();
    for (const [id, fence] of this.told) if (this.held.get(id)?.fence === fence && this.held.get(id)!.until > now) n++;
    return n;
  }

  /**
   * Why this replica is not doing its share, for /healthz: no round has succeeded for longer than
   * a lease (they fail, or one hangs on a database that does not answer).
   */
  problem(): string | undefined {
    if (!this.running || this.stopping) return undefined;
    const sinceMs = Date.now() - this.lastOkAt;
    if (sinceMs <= this.options.leaseMs) return undefined;
    const why = this.failing ? this.failing.error : 'a round is waiting for the database';
    return `cluster lease rounds failing for ${Math.round(sinceMs / 1000)} s (leases last ${this.options.leaseMs / 1000} s), so this replica polls nothing: ${why}`;
  }

  start(): void {
    if (this.running) return;
    this.lastOkAt = Date.now();
    this.running = this.loop();
  }

  /**
   * One round outside the loop (`run --once`) in which this replica asks for every stream, not
   * only its share: it takes those no running replica holds, and leaves the others to them.
   */
  async takeFree(): Promise<void> {
    await this.round(true);
  }

  /** A round now (a reload changed the streams), not at the end of the current wait. */
  wake(): void {
    this.nap?.abort();
  }

  /**
   * Ends the loop (a round in progress finishes), then lets go of every lease and claim at once,
   * so that the others take over without waiting for them to run out. Idempotent.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.controller.abort();
      await this.running;
      clearTimeout(this.expiryTimer);
      const lost = [...this.told.keys()];
      this.held.clear();
      this.told.clear();
      if (lost.length > 0) this.options.onLost(lost);
      try {
        await this.options.cluster.leave();
      } catch (err) {
        this.options.log.warn('could not let go of the leases on stopping; the other replicas take them over once they run out', { error: (err as Error).message, leaseSeconds: this.options.leaseMs / 1000 });
      }
    })();
    return this.stopping;
  }

  private async loop(): Promise<void> {
    const signal = this.controller.signal;
    while (!signal.aborted) {
      const began = performance.now();
      await this.round();
      if (signal.aborted) break;
      this.nap = new AbortController();
      await abortableSleep(Math.max(0, this.periodMs - (performance.now() - began)), AbortSignal.any([signal, this.nap.signal]));
    }
  }

  /** One round; a failure (the database unreachable) is logged and the loop goes on. */
  private async round(everyStream = false): Promise<void> {
    const { cluster, leaseMs, log } = this.options;
    // Dated before the request: the database dates the lease and the heartbeat later than this.
    const sentAt = performance.now();
    try {
      const live = await cluster.heartbeat(leaseMs);
      const desired = everyStream ? new Set(this.options.streams().map((s) => s.id)) : desiredStreams(this.options.streams(), live, cluster.replica.id);
      const held = [...this.held.keys()];
      const release = held.filter((id) => !desired.has(id));
      // A stream let go of stops here before the database hears of it.
      this.held = new Map([...this.held].filter(([id]) => desired.has(id)));
      this.report();
      const keep = held.filter((id) => desired.has(id));
      const take = [...desired].filter((id) => !this.held.has(id));
      const result = await cluster.syncLeases({ keep, take, release }, leaseMs);
      const asked = new Set([...keep, ...take]);
      const until = sentAt + leaseMs * (1 - MARGIN_FRACTION);
      // A lease returned that this round did not renew (taken by a round whose answer was lost)
      // runs out when it was set to: unknown here, so it is not used before the next round renews it.
      this.held = new Map(result.held.map((l) => [l.streamId, { fence: l.fence, until: asked.has(l.streamId) ? until : -Infinity }]));
      if (this.failing) log.info('cluster lease rounds work again', { failedForSeconds: Math.round((Date.now() - this.failing.since) / 1000) });
      this.failing = undefined;
      this.lastOkAt = Date.now();
      if (take.length > 0 || release.length > 0) {
        log.debug('lease round', { replicas: live.length, desired: desired.size, held: result.held.length, took: take.length, released: release.length });
      }
    } catch (err) {
      const error = (err as Error).message;
      if (!this.failing) log.warn('a cluster lease round failed; polling stops on each lease as it runs out here, and rounds go on', { error });
      else log.debug('a cluster lease round failed again', { error });
      this.failing = { since: this.failing?.since ?? Date.now(), error };
    }
    if (this.controller.signal.aborted) return;
    await this.reportGained();
    this.report();
    this.armExpiry();
  }

  /** Tells the daemon of leases that ran out here or are gone. */
  private report(): void {
    const now = performance.now();
    const lost: number[] = [];
    for (const [id, fence] of this.told) {
      const h = this.held.get(id);
      if (!h || h.fence !== fence || h.until <= now) {
        lost.push(id);
        this.told.delete(id);
      }
    }
    if (lost.length > 0) this.options.onLost(lost);
  }

  private async reportGained(): Promise<void> {
    this.report();
    const now = performance.now();
    const gained = [...this.held].filter(([id, h]) => h.until > now && !this.told.has(id)).map(([streamId, h]) => ({ streamId, fence: h.fence }));
    if (gained.length === 0) return;
    try {
      await this.options.onGained(gained);
      for (const l of gained) this.told.set(l.streamId, l.fence);
    } catch (err) {
      this.options.log.warn('could not take up the streams of new leases; trying again next round', { streams: gained.length, error: (err as Error).message });
    }
  }

  /** At the first local expiry, the daemon hears of it, even while a round hangs on the database. */
  private armExpiry(): void {
    clearTimeout(this.expiryTimer);
    let first = Infinity;
    for (const [id, fence] of this.told) {
      const h = this.held.get(id);
      if (h && h.fence === fence) first = Math.min(first, h.until);
    }
    if (first === Infinity) return;
    this.expiryTimer = setTimeout(() => {
      this.report();
      this.armExpiry();
    }, Math.max(0, first - performance.now()) + 1);
    this.expiryTimer.unref();
  }
}
