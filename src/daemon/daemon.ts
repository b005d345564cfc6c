import type { Got } from 'got';
import { newNotificationId } from '../util/ids.js';
import type { InstanceConfig, PollbridgeConfig, ResourceConfig } from '../config/types.js';
import { Deliverer, type DeliveryTarget } from '../deliver/deliverer.js';
import { DEFAULT_MAX_RETRY_AFTER_SEC } from '../deliver/retryPolicy.js';
import type { Logger } from '../log.js';
import { type Authenticator, createAuthenticator, TOKEN_REQUEST_TIMEOUT_MS } from '../poll/auth.js';
import { DEFAULT_FETCH_POLICY, type FetchPolicy } from '../poll/retry.js';
import { createGetText, createHttpClient, type GetText } from '../poll/httpClient.js';
import { acquireDaemonLock } from '../store/lock.js';
import { ThreadedStore } from '../store/threadedStore.js';
import type { Store, Stream } from '../store/types.js';
import { type Instant, instantFromMs, msFromInstant } from '../time/instant.js';
import { abortableSleep } from '../util/abortableSleep.js';
import { Semaphore } from '../util/semaphore.js';
import { type Health, startHttpServer } from './httpServer.js';
import { Metrics, statusClass } from './metrics.js';
import { pollStream, type PollSummary, retentionHorizon, type Skew } from './pollStream.js';
import { createScheduler, type Scheduler } from './schedule.js';

export type DaemonOptions = {
  config: PollbridgeConfig;
  log: Logger & { addSecrets?(values: string[]): void };
  /** First start only: announce changes since this instant (overrides backfillFrom). */
  since?: Instant;
  fetchPolicy?: FetchPolicy;
  /** How long a stop waits for deliveries in flight, ms. */
  graceMs?: number;
  /** Most polls running at once, across instances and resources. */
  maxConcurrentPolls?: number;
  maxPages?: number;
  /**
   * Opens the database. Default: the SQLite store on a thread of its own, so that no fsync stops
   * the event loop. In-process tests run the daemon from its TypeScript sources, where the
   * thread's built code is not beside it: they pass the built `ThreadedStore.open`.
   */
  openStore?: (path: string) => Promise<Store>;
};

type StreamRuntime = {
  instance: InstanceConfig;
  resource: ResourceConfig;
  stream: Stream;
  auth: Authenticator;
  scheduler: Scheduler;
  skew: Skew;
  /** When a poll last completed (or, before the first, when this stream started), ms. */
  lastCompletedAt: number;
  lastPrunedAt: number;
};

/** Old seen rows are pruned at most this often per stream. */
const PRUNE_EVERY_MS = 3_600_000;

export class ReloadError extends Error {}

/** The daemon cannot start for a reason the operator must fix (a port in use). */
export class StartError extends Error {}

/** Polls that have not completed for this many intervals make /healthz answer 503. */
const STALL_INTERVALS = 3;

/** How long a stop or reload waits for token refreshes in flight: one request, then its save. */
const AUTH_CLOSE_LIMIT_MS = TOKEN_REQUEST_TIMEOUT_MS + 5_000;

/**
 * The running service: one polling loop per (instance, resource), one deliverer, and the health
 * and metrics endpoint. Start and stop are idempotent; stop ends polling first, then lets
 * deliveries in flight finish. `reload` swaps the configuration without touching the outbox.
 */
export class Daemon {
  private store: Store | undefined;
  private lock: { release(): void } | undefined;
  private http: Got | undefined;
  private getText: GetText | undefined;
  private deliverer: Deliverer | undefined;
  private httpServer: { url: string; close(): Promise<void> } | undefined;
  private streams: StreamRuntime[] = [];
  private targets = new Map<string, DeliveryTarget>();
  private loopController = new AbortController();
  private stopped = false;
  private readonly semaphore: Semaphore;
  private loops: Promise<void>[] = [];
  private starting: Promise<void> | undefined;
  private opening: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  readonly metrics: Metrics;

  constructor(private options: DaemonOptions) {
    this.semaphore = new Semaphore(options.maxConcurrentPolls ?? 4);
    this.metrics = new Metrics(
      () => this.streams.map((s) => ({
        instance: s.instance.name,
        resource: s.resource.name,
        cursorLagSec: (Date.now() - msFromInstant(s.stream.cursor)) / 1000,
        skewSec: s.skew.ms === undefined ? undefined : s.skew.ms / 1000,
      })),
      async () => (this.store ? this.store.notificationCounts() : { pending: 0, dead: 0 }),
    );
  }

  get config(): PollbridgeConfig {
    return this.options.config;
  }

  /** Where /healthz and /metrics answer, once started with `http.listen`. */
  get httpUrl(): string | undefined {
    return this.httpServer?.url;
  }

  private get log(): Logger {
    return this.options.log;
  }

  /** Opens the database (refusing one held by another daemon) and starts polling and delivery. */
  start(): Promise<void> {
    this.starting ??= (async () => {
      await this.open();
      if (this.config.http) {
        const { host, port } = this.config.http;
        try {
          this.httpServer = await startHttpServer(this.config.http, () => this.health(), this.metrics);
        } catch (err) {
          await this.stop();
          throw new StartError(`cannot listen on ${host}:${port} (http.listen): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
        this.log.info('health and metrics listening', { url: this.httpServer.url });
      }
      this.startLoops();
      void this.deliverer!.start();
      this.log.info('pollbridge started', {
        database: this.config.database,
        streams: this.streams.map((s) => `${s.instance.name}/${s.resource.name}`),
      });
    })();
    return this.starting;
  }

  /**
   * `run --once`: poll every stream once, deliver what can be delivered now, and stop. A stop()
   * meanwhile cuts it short (`interrupted`): the next run goes on from the last part committed.
   */
  async runOnce(): Promise<{ failedPolls: number; pending: number; interrupted: boolean }> {
    await this.open();
    const results = await Promise.all(this.streams.map((s) => this.pollGuarded(s)));
    await this.deliverer!.start({ untilIdle: true });
    const interrupted = this.stopped;
    const pending = interrupted ? 0 : (await this.store!.notificationCounts()).pending;
    await this.stop();
    // An interrupted poll is not a failed one: the next run goes on where it stopped.
    return { failedPolls: interrupted ? 0 : results.filter((r) => r === undefined).length, pending, interrupted };
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.stopped = true;
      // A stop while the database is still opening closes it once it is open.
      await this.opening?.catch(() => {});
      await this.stopLoops();
      for (const s of this.streams) s.scheduler.dispose();
      await this.httpServer?.close();
      // A refresh in flight must be answered and saved before the database closes: Concur has
      // rotated the refresh token by then.
      await Promise.all([this.deliverer?.stop(this.options.graceMs ?? 10_000), this.closeAuths(this.streams.map((s) => s.auth))]);
      await this.store?.close();
      this.lock?.release();
      this.log.info('pollbridge stopped');
    })();
    return this.stopping;
  }

  /**
   * Applies a new, already validated configuration: polling restarts on the new streams (a poll
   * in progress is interrupted; the next goes on from its last committed part), deliveries go to
   * the new targets, and the outbox is kept. The database cannot change while running.
   */
  async reload(config: PollbridgeConfig): Promise<void> {
    await this.starting;
    if (this.stopped) return;
    if (config.database !== this.config.database) {
      throw new ReloadError(`the database cannot change on reload (${this.config.database} → ${config.database}); restart instead`);
    }
    await this.stopLoops();
    for (const s of this.streams) s.scheduler.dispose();
    this.options = { ...this.options, config };
    this.options.log.addSecrets?.(config.secrets);
    const before = this.streams.map((s) => s.auth);
    await this.buildStreams();
    const kept = new Set(this.streams.map((s) => s.auth));
    await this.closeAuths(before.filter((a) => !kept.has(a)));
    if (!this.stopped) this.startLoops();
    this.deliverer?.wake();
  }

  /**
   * 503-worthy problems: a stream without a completed poll for 3 intervals, a rotated refresh
   * token that could not be saved, or a database that takes no write.
   */
  async health(): Promise<Health> {
    const reasons: string[] = [];
    const now = Date.now();
    const authProblems = new Map(this.streams.map((s) => [s.instance.name, s.auth.problem()]));
    for (const [instance, problem] of authProblems) if (problem) reasons.push(`${instance}: ${problem}`);
    for (const s of this.streams) {
      const limitMs = STALL_INTERVALS * s.scheduler.nominalIntervalMs();
      const sinceMs = now - s.lastCompletedAt;
      if (sinceMs > limitMs) {
        reasons.push(`${s.instance.name}/${s.resource.name}: no completed poll for ${Math.round(sinceMs / 1000)} s (limit: ${STALL_INTERVALS} intervals, ${Math.round(limitMs / 1000)} s)`);
      }
    }
    try {
      await this.store?.checkWritable();
    } catch (err) {
      reasons.push(`database cannot be written: ${(err as Error).message}`);
    }
    return { ok: reasons.length === 0, reasons };
  }

  private open(): Promise<void> {
    this.opening ??= this.openNow();
    return this.opening;
  }

  private async openNow(): Promise<void> {
    this.lock = acquireDaemonLock(this.config.database);
    let store: Store;
    try {
      store = await (this.options.openStore ?? ThreadedStore.open)(this.config.database);
    } catch (err) {
      this.lock.release();
      this.lock = undefined;
      throw err;
    }
    this.store = store;
    const timeoutMs = Math.max(...this.config.instances.map((i) => i.delivery.timeoutMs), 15_000);
    this.http = createHttpClient({ timeoutMs });
    this.getText = createGetText({ timeoutMs });
    await this.buildStreams();
    this.deliverer = new Deliverer({
      store,
      http: this.http,
      log: this.log,
      targets: () => this.targets,
      onAttempt: (entry, decision, statusCode, durationMs) => {
        this.metrics.deliveryAttempts.inc({ instance: entry.instance, class: statusClass(statusCode) });
        this.metrics.deliveryDuration.observe({ instance: entry.instance }, durationMs / 1000);
        if (decision.status === 'delivered') this.metrics.deliveryLatency.observe({ instance: entry.instance }, (Date.now() - entry.createdAt) / 1000);
      },
    });
  }

  private async buildStreams(): Promise<void> {
    const store = this.store!;
    const now = instantFromMs(Date.now());
    const streams: StreamRuntime[] = [];
    for (const instance of this.config.instances) {
      if (!instance.enabled) {
        this.log.info('instance disabled (event.notification.enabled is not true): not polled', { instance: instance.name });
        continue;
      }
      // Kept across a reload while its credentials are unchanged: it may hold a rotated refresh
      // token that could not be saved yet, which a fresh one would not know.
      const same = this.streams.find((s) => s.instance.name === instance.name && JSON.stringify(s.instance.auth) === JSON.stringify(instance.auth));
      const auth = same?.auth ?? createAuthenticator(instance.auth, {
        http: this.http!,
        store,
        instance: instance.name,
        log: this.log.child({ instance: instance.name }),
        policy: this.options.fetchPolicy ?? DEFAULT_FETCH_POLICY,
        onSecret: (v) => this.options.log.addSecrets?.([v]),
      });
      for (const resource of instance.resources) {
        const initial = this.options.since ?? instance.backfillFrom ?? now;
        const opened = await store.openStream(instance.name, resource.name, initial);
        const previous = this.streams.find((s) => s.stream.id === opened.id);
        // Progress is committed as polls go; the running stream knows the latest of it.
        const stream = previous?.stream ?? opened;
        streams.push({
          instance, resource, stream, auth,
          scheduler: createScheduler(instance.schedule),
          // The last measured skew survives a restart: the first windows are read in the provider's time too.
          skew: previous?.skew ?? { ms: stream.skewMs },
          lastCompletedAt: previous?.lastCompletedAt ?? Date.now(),
          lastPrunedAt: previous?.lastPrunedAt ?? 0,
        });
      }
    }
    this.streams = streams;
    this.targets = new Map(this.config.instances.map((i) => [i.name, deliveryTarget(i)]));
    const orphaned = (await store.instancesWithPending()).filter((name) => !this.targets.has(name));
    if (orphaned.length > 0) this.log.warn('pending notifications kept for instances no longer in the config', { instances: orphaned });
  }

  /** Lets token refreshes in flight finish and be saved, for at most AUTH_CLOSE_LIMIT_MS. */
  private async closeAuths(auths: Authenticator[]): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), AUTH_CLOSE_LIMIT_MS);
    });
    const closed = Promise.all([...new Set(auths)].map((a) => a.close())).then(() => 'closed' as const);
    const result = await Promise.race([closed, late]);
    clearTimeout(timer);
    if (result === 'late') {
      this.log.error(`a token refresh was still unfinished after ${AUTH_CLOSE_LIMIT_MS / 1000} s; if polls fail with invalid_grant from now on, put a new refresh token in the config and reload`);
    }
  }

  private startLoops(): void {
    this.loopController = new AbortController();
    this.loops = this.streams.map((s) => this.pollLoop(s, this.loopController.signal));
  }

  private async stopLoops(): Promise<void> {
    this.loopController.abort();
    await Promise.allSettled(this.loops);
    this.loops = [];
  }

  private async pollLoop(s: StreamRuntime, signal: AbortSignal): Promise<void> {
    let lastStart: number | undefined;
    while (!signal.aborted) {
      await abortableSleep(s.scheduler.msUntilNext(lastStart, Date.now()), signal);
      if (signal.aborted) break;
      lastStart = Date.now();
      await this.pollGuarded(s, signal);
    }
  }

  /** One poll; a failure is logged and recorded, never thrown: the loop polls again next time. */
  private async pollGuarded(s: StreamRuntime, signal: AbortSignal = this.loopController.signal): Promise<PollSummary | undefined> {
    const labels = { instance: s.instance.name, resource: s.resource.name };
    const log = this.log.child(labels);
    return this.semaphore.use(async () => {
      const started = Date.now();
      try {
        const summary = await pollStream(s.instance, s.resource, s.stream, {
          store: this.store!,
          getText: this.getText!,
          auth: s.auth,
          log: this.log,
          fetchPolicy: this.options.fetchPolicy ?? DEFAULT_FETCH_POLICY,
          newId: newNotificationId,
          onQueued: () => this.deliverer?.wake(),
          maxPages: this.options.maxPages ?? 100_000,
          maxResweeps: 3,
          skew: s.skew,
          onRateLimited: () => this.metrics.upstreamRateLimited.inc(labels),
        }, signal);
        const settled = summary.settled;
        if (settled) {
          s.lastCompletedAt = Date.now();
          if (Date.now() - s.lastPrunedAt > PRUNE_EVERY_MS) {
            s.lastPrunedAt = Date.now();
            const pruned = await this.store!.pruneSeen(s.stream.id, retentionHorizon(s.instance, s.stream.cursor));
            if (pruned > 0) log.info('forgot seen changes older than the retention', { pruned });
          }
        }
        this.metrics.polls.inc({ ...labels, result: settled ? 'ok' : 'unsettled' });
        this.metrics.recordsSeen.inc(labels, summary.records);
        this.metrics.eventsEmitted.inc(labels, summary.fresh);
        this.metrics.duplicatesSuppressed.inc(labels, summary.duplicates);
        this.metrics.recordsRejected.inc(labels, summary.rejected);
        log.info('poll finished', { ...summary, skewMs: s.skew.ms, durationMs: Date.now() - started });
        return summary;
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (signal.aborted) {
          // A stop or reload cut it short: not a failure of the provider, so nothing is recorded.
          log.info('poll interrupted; the next goes on from its last committed part', { durationMs: Date.now() - started });
          return undefined;
        }
        this.metrics.polls.inc({ ...labels, result: 'failed' });
        log.error('poll failed; the next poll goes on from its last committed part', { error: message, durationMs: Date.now() - started });
        await this.store!.failPoll(s.stream.id, message, Date.now()).catch((err: unknown) => {
          log.error('could not record the failed poll', { error: (err as Error).message });
        });
        return undefined;
      } finally {
        this.metrics.pollDuration.observe(labels, (Date.now() - started) / 1000);
      }
    });
  }
}

function deliveryTarget(instance: InstanceConfig): DeliveryTarget {
  return {
    url: instance.callbackUrl,
    keys: { current: instance.signatureKey, previous: instance.previousSignatureKeys },
    timeoutMs: instance.delivery.timeoutMs,
    concurrency: instance.delivery.concurrency,
    ordered: instance.delivery.ordered,
    policy: { scheduleSec: instance.delivery.retryScheduleSec, maxRetryAfterSec: DEFAULT_MAX_RETRY_AFTER_SEC, jitter: 0.2 },
  };
}
