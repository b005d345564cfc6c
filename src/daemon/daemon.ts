import type { Got } from 'got';
import { ulid } from 'ulid';
import type { InstanceConfig, PollbridgeConfig, ResourceConfig } from '../config/types.js';
import { Deliverer, type DeliveryTarget } from '../deliver/deliverer.js';
import { DEFAULT_MAX_RETRY_AFTER_SEC } from '../deliver/retryPolicy.js';
import type { Logger } from '../log.js';
import { type Authenticator, createAuthenticator } from '../poll/auth.js';
import { DEFAULT_FETCH_POLICY, type FetchPolicy } from '../poll/fetchJson.js';
import { createHttpClient } from '../poll/httpClient.js';
import { acquireDaemonLock } from '../store/lock.js';
import { SqliteStore } from '../store/sqliteStore.js';
import type { Store, Stream } from '../store/types.js';
import { type Instant, instantFromMs } from '../time/instant.js';
import { abortableSleep } from '../util/abortableSleep.js';
import { Semaphore } from '../util/semaphore.js';
import { pollStream, type PollSummary } from './pollStream.js';
import { createScheduler } from './schedule.js';

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
};

type StreamRuntime = { instance: InstanceConfig; resource: ResourceConfig; stream: Stream; auth: Authenticator; skew: { ms: number | undefined } };

/**
 * The running service: one polling loop per (instance, resource) and one deliverer. Start and
 * stop are idempotent; stop ends polling first, then lets deliveries in flight finish.
 */
export class Daemon {
  private store: Store | undefined;
  private lock: { release(): void } | undefined;
  private http: Got | undefined;
  private deliverer: Deliverer | undefined;
  private streams: StreamRuntime[] = [];
  private readonly stopController = new AbortController();
  private readonly semaphore: Semaphore;
  private loops: Promise<void>[] = [];
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;

  constructor(private readonly options: DaemonOptions) {
    this.semaphore = new Semaphore(options.maxConcurrentPolls ?? 4);
  }

  get config(): PollbridgeConfig {
    return this.options.config;
  }

  private get log(): Logger {
    return this.options.log;
  }

  /** Opens the database (refusing one held by another daemon) and starts polling and delivery. */
  start(): Promise<void> {
    this.starting ??= this.open().then(() => {
      this.loops = this.streams.map((s) => this.pollLoop(s));
      void this.deliverer!.start();
      this.log.info('pollbridge started', {
        database: this.config.database,
        streams: this.streams.map((s) => `${s.instance.name}/${s.resource.name}`),
      });
    });
    return this.starting;
  }

  /** `run --once`: poll every stream once, deliver what can be delivered now, and stop. */
  async runOnce(): Promise<{ failedPolls: number; pending: number }> {
    await this.open();
    const results = await Promise.all(this.streams.map((s) => this.pollGuarded(s)));
    await this.deliverer!.start({ untilIdle: true });
    const pending = (await this.store!.notificationCounts()).pending;
    await this.stop();
    return { failedPolls: results.filter((r) => r === undefined).length, pending };
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.stopController.abort();
      await Promise.allSettled(this.loops);
      await this.deliverer?.stop(this.options.graceMs ?? 10_000);
      await this.store?.close();
      this.lock?.release();
      this.log.info('pollbridge stopped');
    })();
    return this.stopping;
  }

  private async open(): Promise<void> {
    if (this.store) return;
    this.lock = acquireDaemonLock(this.config.database);
    const store = new SqliteStore(this.config.database);
    this.store = store;
    const timeoutMs = Math.max(...this.config.instances.map((i) => i.delivery.timeoutMs), 15_000);
    this.http = createHttpClient({ timeoutMs });
    const now = instantFromMs(Date.now());
    const authByInstance = new Map<string, Authenticator>();
    for (const instance of this.config.instances) {
      if (!instance.enabled) {
        this.log.info('instance disabled (event.notification.enabled is not true): not polled', { instance: instance.name });
        continue;
      }
      const auth = createAuthenticator(instance.auth, {
        http: this.http,
        store,
        instance: instance.name,
        onSecret: (v) => this.options.log.addSecrets?.([v]),
      });
      authByInstance.set(instance.name, auth);
      for (const resource of instance.resources) {
        const initial = this.options.since ?? instance.backfillFrom ?? now;
        const stream = await store.openStream(instance.name, resource.name, initial);
        this.streams.push({ instance, resource, stream, auth, skew: { ms: undefined } });
      }
    }
    const targets = new Map(this.config.instances.map((i) => [i.name, deliveryTarget(i)]));
    this.deliverer = new Deliverer({ store, http: this.http, log: this.log, target: (name) => targets.get(name) });
  }

  private async pollLoop(s: StreamRuntime): Promise<void> {
    const scheduler = createScheduler(s.instance.schedule);
    const signal = this.stopController.signal;
    let lastStart: number | undefined;
    try {
      while (!signal.aborted) {
        await abortableSleep(scheduler.msUntilNext(lastStart, Date.now()), signal);
        if (signal.aborted) break;
        lastStart = Date.now();
        await this.pollGuarded(s);
      }
    } finally {
      scheduler.dispose();
    }
  }

  /** One poll; a failure is logged and recorded, never thrown: the loop polls again next time. */
  private async pollGuarded(s: StreamRuntime): Promise<PollSummary | undefined> {
    const log = this.log.child({ instance: s.instance.name, resource: s.resource.name });
    const started = Date.now();
    return this.semaphore.use(async () => {
      try {
        const summary = await pollStream(s.instance, s.resource, s.stream, {
          store: this.store!,
          http: this.http!,
          auth: s.auth,
          log: this.log,
          fetchPolicy: this.options.fetchPolicy ?? DEFAULT_FETCH_POLICY,
          newId: ulid,
          onQueued: () => this.deliverer?.wake(),
          maxPages: this.options.maxPages ?? 100_000,
          maxResweeps: 3,
          skew: s.skew,
        }, this.stopController.signal);
        if (summary.cursor !== undefined) s.stream = { ...s.stream, cursor: summary.cursor };
        const { cursor: _cursor, ...counts } = summary;
        log.info('poll finished', { ...counts, settled: summary.cursor !== undefined, skewMs: s.skew.ms, durationMs: Date.now() - started });
        return summary;
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (this.stopController.signal.aborted) {
          log.info('poll interrupted by stop; its window is read again on start', { durationMs: Date.now() - started });
        } else {
          log.error('poll failed; the cursor stays, the window is read again next time', { error: message, durationMs: Date.now() - started });
        }
        await this.store!.failPoll(s.stream.id, message, Date.now()).catch(() => {});
        return undefined;
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
