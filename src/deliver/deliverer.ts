import { setMaxListeners } from 'node:events';
import type { Got } from 'got';
import type { Logger } from '../log.js';
import type { AttemptOutcome, AttemptRecord, DeliveryGroup, OutboxEntry, Store } from '../store/types.js';
import { type Decision, decide, type RetryPolicy } from './retryPolicy.js';
import { sendNotification } from './sendNotification.js';
import type { SigningKeys } from './sign.js';

export type DeliveryTarget = {
  url: string;
  keys: SigningKeys;
  timeoutMs: number;
  concurrency: number;
  /** One at a time, oldest first; a failing notification holds back the ones behind it. */
  ordered: boolean;
  policy: RetryPolicy;
};

export type DelivererDeps = {
  store: Store;
  http: Got;
  log: Logger;
  /** Each instance's current target, from the live config. */
  targets: () => ReadonlyMap<string, DeliveryTarget>;
  /** Longest idle sleep: notifications replayed by another process are noticed this fast. */
  idleCheckMs?: number;
  onAttempt?: (entry: OutboxEntry, decision: Decision, statusCode: number | undefined, durationMs: number) => void;
  /** On a shared store, how long a claim outlasts its URL's timeout (CLAIM_MARGIN_MS). */
  claimMarginMs?: number;
};

/**
 * Due notifications read beyond the free slots, so that a slot that frees is refilled at once.
 * None on a shared store: there a read claims, and a claimed notification waiting here would be
 * counted against its receiver's concurrency by every replica, and kept from them until its claim
 * lapsed.
 */
const READ_AHEAD = 8;

/**
 * A claimed notification's request is started only if it can end this long before the claim
 * does (ms): the clocks of this process's timers and of the claim's reckoning differ that little.
 */
const START_MARGIN_MS = 1000;

/**
 * On a shared store, the shortest sleep after a look that started nothing: notifications may be
 * due and yet not this replica's (another's claims fill their URL's slots, or hold them), and
 * no event here says when that ends. Without it the loop would ask the database again at once.
 */
const SHARED_IDLE_MS = 200;

/** How long delivery pauses after the store failed to record an attempt. */
const STORE_RETRY_MS = 1000;

/**
 * Sends the outbox, independently of polling: a slow receiver never holds up a poll, and a poll
 * never waits for a receiver. Up to `concurrency` requests per callback URL are in flight; a
 * failing notification waits for its retry time without blocking the ones behind it.
 */
export class Deliverer {
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly perUrl = new Map<string, number>();
  /** Requests in flight per instance, until their attempt is written. */
  private readonly perInstance = new Map<string, number>();
  /**
   * Instances whose receiver may have notifications waiting on backoff: those that failed since
   * their last success, and every instance until its first success after start (the database may
   * hold a backlog from before). A success pulls that backlog in at once.
   */
  private readonly mayHaveBacklog = new Set<string>();
  private readonly checkedSinceStart = new Set<string>();
  private readonly unrecorded: { attempt: AttemptRecord; outcome: AttemptOutcome; resolve(): void; reject(err: unknown): void }[] = [];
  private readonly abort = new AbortController();
  private wakeUp: (() => void) | undefined;
  private pendingWake = false;
  private stopping = false;
  private recordFailedAt = -Infinity;
  /**
   * One set per read of the outbox on its way: the ids whose request ended meanwhile. The store
   * may have answered before their attempt was written, so such a row is stale (still pending,
   * its attempt count behind): starting it would send it again, with its backoff skipped.
   */
  private readonly openReads = new Set<Set<string>>();
  /** Due notifications of unordered instances, read before a slot was free for them. */
  private readAhead: OutboxEntry[] = [];
  private flushing = false;
  private loop: Promise<void> | undefined;
  private untilIdle = false;
  /**
   * In a run that ends when idle (`run --once`), the callback URLs that failed an attempt: they
   * get no more requests in this run. A hung receiver would otherwise cost one timeout for every
   * notification it has; they wait, pending, for the next run or the daemon.
   */
  private readonly givenUp = new Set<string>();

  constructor(private readonly deps: DelivererDeps) {
    // One listener per request in flight, as many as the configured concurrencies allow (64 per
    // callback URL): not a leak, but past 10 node would log "Possible EventTarget memory leak".
    setMaxListeners(0, this.abort.signal);
  }

  /** Runs until stop(); with `untilIdle`, returns once nothing is due and nothing is in flight. */
  start(options: { untilIdle?: boolean } = {}): Promise<void> {
    this.untilIdle = options.untilIdle ?? false;
    this.loop ??= this.run(this.untilIdle);
    return this.loop;
  }

  /** New notifications were queued (or a request finished): look at the outbox now. */
  wake(): void {
    this.pendingWake = true;
    this.wakeUp?.();
  }

  /** Stops taking work, lets requests in flight finish for up to `graceMs`, then aborts them. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.wake();
    await this.loop;
    const settled = Promise.allSettled([...this.inFlight.values()]);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      settled.then(() => false),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), graceMs); }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.deps.log.warn('aborting deliveries still in flight after the grace period', { inFlight: this.inFlight.size, graceMs });
      this.abort.abort();
      await settled;
    }
  }

  private async run(untilIdle: boolean): Promise<void> {
    while (!this.stopping) {
      try {
        if (await this.step(untilIdle)) return;
      } catch (err) {
        // A store error (disk full, I/O) must not end delivery for good: say so and try again.
        this.deps.log.error('delivery loop failed; retrying in a second', { error: (err as Error).message });
        await this.sleep(1000);
      }
    }
  }

  /** One look at the outbox; true when `untilIdle` and there is nothing left to do. */
  private async step(untilIdle: boolean): Promise<boolean> {
    // While the store takes no attempt, sending again would repeat the same request in a tight loop.
    const pausedMs = this.recordFailedAt + STORE_RETRY_MS - Date.now();
    if (pausedMs > 0) {
      await this.sleep(pausedMs, { wakeable: false });
      return false;
    }
    this.pendingWake = false;
    const targets = this.deps.targets();
    // Notifications read ahead start first: a slot that frees is refilled without a query.
    let started = this.startReadAhead(targets);
    // Only instances whose callback URL has a free slot, and only a few more than could start
    // now: a slow receiver's backlog never hides another's notifications, and bodies are read
    // only for requests about to be sent.
    const free = this.freeSlots(targets);
    if (free.slots > 0) {
      const ordered = free.instances.filter((name) => targets.get(name)!.ordered);
      const unordered = free.instances.filter((name) => !targets.get(name)!.ordered);
      const now = Date.now();
      const shared = this.deps.store.cluster !== undefined;
      const exclude = new Set([...this.inFlight.keys(), ...this.readAhead.map((e) => e.id)]);
      const ended = new Set<string>();
      this.openReads.add(ended);
      const groups = shared ? deliveryGroups(targets, this.deps.claimMarginMs) : undefined;
      let heads: OutboxEntry[];
      let due: OutboxEntry[];
      try {
        [heads, due] = await Promise.all([
          // Ordered instances offer only their oldest pending notification, and only once it is due.
          ordered.length > 0 ? this.deps.store.dueHeads(now, ordered, groups) : [],
          unordered.length > 0 ? this.deps.store.dueNotifications(now, free.slots + (shared ? 0 : READ_AHEAD), exclude, unordered, groups) : [],
        ]);
      } finally {
        this.openReads.delete(ended);
      }
      // A row whose request ended during the read is left for the next look, read afresh.
      for (const entry of heads) if (!ended.has(entry.id) && this.tryStart(entry, targets.get(entry.instance))) started++;
      for (const entry of due) {
        if (ended.has(entry.id)) continue;
        if (this.tryStart(entry, targets.get(entry.instance))) started++;
        else if (!shared && !this.inFlight.has(entry.id)) this.readAhead.push(entry);
      }
    }
    if (untilIdle && started === 0 && this.inFlight.size === 0 && this.readAhead.length === 0) return true;
    const delay = await this.idleDelay(targets);
    await this.sleep(this.deps.store.cluster !== undefined && started === 0 ? Math.max(delay, SHARED_IDLE_MS) : delay);
    return false;
  }

  /** Starts what it can of the notifications read ahead; drops those whose instance is gone. */
  private startReadAhead(targets: ReadonlyMap<string, DeliveryTarget>): number {
    let started = 0;
    this.readAhead = this.readAhead.filter((entry) => {
      const target = targets.get(entry.instance);
      if (!target || target.ordered || this.givenUp.has(target.url)) return false;
      if (!this.tryStart(entry, target)) return !this.inFlight.has(entry.id);
      started++;
      return false;
    });
    return started;
  }

  /** The instances that could start a request now, and how many requests could start in all. */
  private freeSlots(targets: ReadonlyMap<string, DeliveryTarget>): { instances: string[]; slots: number } {
    const instances: string[] = [];
    const slotsByUrl = new Map<string, number>();
    for (const [name, target] of targets) {
      const slots = target.concurrency - (this.perUrl.get(target.url) ?? 0);
      if (slots <= 0 || this.givenUp.has(target.url) || (target.ordered && this.perInstance.has(name))) continue;
      instances.push(name);
      slotsByUrl.set(target.url, Math.max(slotsByUrl.get(target.url) ?? 0, slots));
    }
    return { instances, slots: [...slotsByUrl.values()].reduce((a, b) => a + b, 0) };
  }

  /**
   * How long to sleep: until the next notification that could start falls due. Only those count:
   * a due notification behind an ordered head that is backing off, or of an instance no longer in
   * the config, would otherwise make this 0 and the loop spin on the store.
   */
  private async idleDelay(targets: ReadonlyMap<string, DeliveryTarget>): Promise<number> {
    const cap = this.deps.idleCheckMs ?? 1000;
    // A request in flight wakes the loop when it ends: no need to ask when the next is due.
    if (this.inFlight.size > 0) return cap;
    const startable = [...targets].filter(([, target]) => !this.givenUp.has(target.url));
    const ordered = startable.filter(([, target]) => target.ordered).map(([name]) => name);
    const unordered = startable.filter(([, target]) => !target.ordered).map(([name]) => name);
    if (ordered.length === 0 && unordered.length === 0) return cap;
    const next = await this.deps.store.nextDueAt(unordered, ordered);
    return next === undefined ? cap : Math.max(0, Math.min(cap, next - Date.now()));
  }

  /** Sleeps until `ms` pass or stop(); a wake ends it too unless `wakeable` is false. */
  private sleep(ms: number, { wakeable = true } = {}): Promise<void> {
    if ((wakeable && this.pendingWake) || this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(timer);
        self.wakeUp = undefined;
        resolve();
      }
      this.wakeUp = wakeable ? done : () => { if (this.stopping) done(); };
    });
  }

  private tryStart(entry: OutboxEntry, target: DeliveryTarget | undefined): boolean {
    if (!target || this.inFlight.has(entry.id) || this.givenUp.has(target.url)) return false;
    // Past its claim, another replica may send it while this request runs: left to lapse, and
    // claimed afresh later (by any replica).
    if (entry.claimDeadline !== undefined && Date.now() + target.timeoutMs + START_MARGIN_MS > entry.claimDeadline) return false;
    // One at a time is the ordered instance's own rule, not its receiver's: a receiver it shares
    // with a busy unordered instance would otherwise never have a slot free for it.
    if (target.ordered && this.perInstance.has(entry.instance)) return false;
    const busy = this.perUrl.get(target.url) ?? 0;
    if (busy >= target.concurrency) return false;
    this.perUrl.set(target.url, busy + 1);
    this.perInstance.set(entry.instance, (this.perInstance.get(entry.instance) ?? 0) + 1);
    let released = false;
    // The receiver's slot is free once it has answered; the notification itself stays in flight
    // (never picked up twice) until its attempt is written, which overlaps the next request.
    const releaseSlot = (): void => {
      if (released) return;
      released = true;
      this.perUrl.set(target.url, (this.perUrl.get(target.url) ?? 1) - 1);
      this.wake();
    };
    const task = this.deliver(entry, target, releaseSlot).finally(() => {
      releaseSlot();
      for (const read of this.openReads) read.add(entry.id);
      const left = (this.perInstance.get(entry.instance) ?? 1) - 1;
      if (left > 0) this.perInstance.set(entry.instance, left);
      else this.perInstance.delete(entry.instance);
      this.inFlight.delete(entry.id);
      this.wake();
    });
    this.inFlight.set(entry.id, task);
    return true;
  }

  /**
   * Group commit: attempts that finish together are written in one transaction, so a burst of
   * deliveries pays one fsync rather than one each. One write at a time: attempts that finish
   * while one is being written go together in the next, so the busier the receivers, the larger
   * the batches. A flush waits for setImmediate, after the responses already received have been
   * handled. A notification stays in flight until its attempt is written: never picked up twice.
   */
  private record(attempt: AttemptRecord, outcome: AttemptOutcome): Promise<void> {
    return new Promise((resolve, reject) => {
      this.unrecorded.push({ attempt, outcome, resolve, reject });
      this.scheduleFlush();
    });
  }

  private scheduleFlush(): void {
    if (this.flushing || this.unrecorded.length === 0) return;
    this.flushing = true;
    setImmediate(() => void this.flush());
  }

  private async flush(): Promise<void> {
    const batch = this.unrecorded.splice(0);
    try {
      await this.deps.store.recordAttempts(batch.map(({ attempt, outcome }) => ({ attempt, outcome })));
      for (const b of batch) b.resolve();
    } catch (err) {
      for (const b of batch) b.reject(err);
    } finally {
      this.flushing = false;
      this.scheduleFlush();
    }
  }

  private async deliver(entry: OutboxEntry, target: DeliveryTarget, answered: () => void): Promise<void> {
    const attempt = entry.attempts + 1;
    const startedAt = Date.now();
    const result = await sendNotification(this.deps.http, target, entry, this.abort.signal);
    answered();
    // Cut off by shutdown: not the receiver's fault, so it costs no attempt; it is sent again on start.
    if (this.abort.signal.aborted && result.statusCode === undefined) return;
    const decision = decide(result, attempt - entry.replayBase, target.policy);
    // Before anything is awaited: the slot this request freed must not go to the same receiver.
    if (decision.status === 'retry' && this.untilIdle && !this.givenUp.has(target.url)) {
      this.givenUp.add(target.url);
      this.deps.log.warn('receiver is failing: its other notifications wait for the next run', { instance: entry.instance, statusCode: result.statusCode, error: result.error });
    }
    const now = Date.now();
    const outcome: AttemptOutcome =
      decision.status === 'delivered' ? { status: 'delivered', at: now }
        : decision.status === 'retry' ? { status: 'pending', nextAttemptAt: now + decision.delayMs }
          : { status: 'dead' };
    const error = decision.status === 'dead' && result.error ? `${result.error}; ${decision.reason}` : result.error;
    try {
      await this.record(
        { notificationId: entry.id, attempt, startedAt, durationMs: result.durationMs, statusCode: result.statusCode, error, responseExcerpt: result.responseExcerpt },
        outcome,
      );
    } catch (err) {
      this.recordFailedAt = Date.now();
      this.deps.log.error('could not record a delivery attempt; it will be sent again', { eventId: entry.id, attempt, error: (err as Error).message, pauseMs: STORE_RETRY_MS });
      return;
    }
    this.deps.onAttempt?.(entry, decision, result.statusCode, result.durationMs);
    if (decision.status === 'retry') this.mayHaveBacklog.add(entry.instance);
    if (decision.status === 'delivered' && (!this.checkedSinceStart.has(entry.instance) || this.mayHaveBacklog.has(entry.instance))) {
      this.checkedSinceStart.add(entry.instance);
      this.mayHaveBacklog.delete(entry.instance);
      try {
        const expedited = await this.deps.store.expediteRetries(entry.instance, Date.now());
        if (expedited > 0) this.deps.log.info('receiver is answering again: sending its backlog now', { instance: entry.instance, notifications: expedited });
      } catch (err) {
        // The delivery is recorded; only the shortcut failed. The backlog keeps its retry times,
        // and the next success tries again.
        this.mayHaveBacklog.add(entry.instance);
        this.deps.log.error('could not bring forward the backlog of a receiver that answers again', { instance: entry.instance, error: (err as Error).message });
      }
    }
    const fields = { instance: entry.instance, eventId: entry.id, attempt, durationMs: result.durationMs, statusCode: result.statusCode };
    if (decision.status === 'delivered') this.deps.log.info('notification delivered', fields);
    else if (decision.status === 'retry') this.deps.log.warn('delivery failed, will retry', { ...fields, error: result.error, retryInMs: decision.delayMs });
    else this.deps.log.error('notification dead-lettered', { ...fields, error, reason: decision.reason });
  }
}

/**
 * How long a claim outlasts the longest request it covers: room for the wait between the claim
 * and the request's start (a request starts only with its whole timeout and START_MARGIN_MS
 * left). A replica that dies holding claims keeps them from the others their whole length.
 */
export const CLAIM_MARGIN_MS = 30_000;

/**
 * Each callback URL with the instances that send to it and its concurrency: a shared store counts
 * its requests in flight on every replica against that. Instances sharing a URL with different
 * concurrencies get the largest, as a replica's own slots do (`freeSlots`); its claims last its
 * longest timeout and CLAIM_MARGIN_MS.
 */
export function deliveryGroups(targets: ReadonlyMap<string, DeliveryTarget>, marginMs = CLAIM_MARGIN_MS): DeliveryGroup[] {
  const groups = new Map<string, { key: string; instances: string[]; max: number; claimMs: number }>();
  for (const [name, target] of targets) {
    const group = groups.get(target.url);
    const claimMs = target.timeoutMs + marginMs;
    if (group) {
      group.instances.push(name);
      group.max = Math.max(group.max, target.concurrency);
      group.claimMs = Math.max(group.claimMs, claimMs);
    } else {
      groups.set(target.url, { key: target.url, instances: [name], max: target.concurrency, claimMs });
    }
  }
  return [...groups.values()];
}
