import type { Got } from 'got';
import { drainFailedQueue } from '../callout/failedQueue.js';
import { GroupCommit } from '../callout/groupCommit.js';
import { type CalloutInstance, CalloutIngester } from '../callout/ingest.js';
import { type CalloutRoute, type CalloutServer, startCalloutServer } from '../callout/server.js';
import { newNotificationId } from '../util/ids.js';
import type { CalloutListenConfig, HttpConfig, InstanceConfig, PollbridgeConfig, ResourceConfig } from '../config/types.js';
import { Deliverer, type DeliveryTarget } from '../deliver/deliverer.js';
import { DEFAULT_MAX_RETRY_AFTER_SEC } from '../deliver/retryPolicy.js';
import type { Logger, SecretSink } from '../log.js';
import { type Authenticator, createAuthenticator, TOKEN_REQUEST_TIMEOUT_MS } from '../poll/auth.js';
import { DEFAULT_FETCH_POLICY, type FetchPolicy } from '../poll/retry.js';
import { createGetText, createHttpClient, type GetText } from '../poll/httpClient.js';
import { acquireDaemonLock } from '../store/lock.js';
import { openPgStore } from '../store/pg/pgStore.js';
import { ThreadedStore } from '../store/threadedStore.js';
import { CALLOUT_RESOURCE, type CalloutReceipt, type Lease, LeaseLostError, type Store, type Stream } from '../store/types.js';
import { type Instant, instantFromMs, msFromInstant } from '../time/instant.js';
import { abortableSleep } from '../util/abortableSleep.js';
import { Semaphore, type Slot } from '../util/semaphore.js';
import { parseRetryAfter } from '../util/retryAfter.js';
import { OriginLimiter } from '../poll/originLimiter.js';
import { RateGate } from '../poll/rateGate.js';
import type { Placeable } from './assignment.js';
import { LeaseLoop } from './cluster.js';
import { type Health, startHttpServer } from './httpServer.js';
import { Metrics, statusClass } from './metrics.js';
import { pollStream, type PollSummary, retentionHorizon, type Skew } from './pollStream.js';
import { createScheduler, type Scheduler } from './schedule.js';
import { gridOffsetMs } from './pollTimes.js';
import { TimerWheel } from './timerWheel.js';

export type DaemonOptions = {
  config: PollbridgeConfig;
  log: Logger & Partial<SecretSink>;
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
  /** On PostgreSQL: this replica's name for people (`status`, /metrics); the host's by default. */
  replicaName?: string;
};

type PlannedStream = {
  instance: InstanceConfig;
  resource: ResourceConfig;
  auth: Authenticator;
  /** A new authenticator, not one kept from the running config. */
  fresh: boolean;
  opened: Stream;
};

/**
 * A config's streams and callout instances: the running streams of instances it leaves as they
 * are (`kept`), the rows of the others opened and their authenticators made.
 */
type Plan = {
  config: PollbridgeConfig;
  kept: StreamRuntime[];
  streams: PlannedStream[];
  callouts: Map<string, CalloutInstance>;
  freshAuths: Authenticator[];
};

/** A listener of the daemon (health and metrics, the callout connector) and how to open it. */
type ListenerSlot<L extends { url: string; close(): Promise<void> }> = {
  what: string;
  get(): L | undefined;
  set(listener: L | undefined): void;
  address(config: PollbridgeConfig): HttpConfig | undefined;
  open(config: PollbridgeConfig): Promise<L>;
};

/** Concur's failed-queue reader of one callout instance: what it was started for, how to stop it, its wait to cut short. */
type FailedQueueLoop = { fingerprint: string; controller: AbortController; nap: AbortController | undefined; done: Promise<void> };

type StreamRuntime = {
  key: string;
  instance: InstanceConfig;
  resource: ResourceConfig;
  stream: Stream;
  auth: Authenticator;
  scheduler: Scheduler;
  /** Ends this stream's poll in progress: a stop, or a reload that removed or changed it. */
  controller: AbortController;
  /** Its instance's pause after a 429, shared by the instance's streams. */
  gate: RateGate;
  /** When its next poll is due, ms; undefined while one runs. */
  dueMs: number | undefined;
  /** The poll started for the due time, from the wait for its instance's gate and a slot to its end. */
  running: Promise<void> | undefined;
  /** The poll of the runtime this one replaced, which must end before this one polls the same row. */
  after: Promise<void> | undefined;
  skew: Skew;
  /** When a poll last completed (or, before the first, when this stream started), ms. */
  lastCompletedAt: number;
  /** /healthz reports a stall from then: STALL_POLLS polls have been due since lastCompletedAt. */
  stallAt: number;
  lastPrunedAt: number;
  /**
   * The poll running now, for /healthz (and so `status`): kept in memory, as it means nothing
   * once the process is gone, and a row written per page and retry would cost a write each.
   */
  polling?: { since: number; page: number; retry: number };
  /** On a cluster: ends the poll in progress when this replica's lease on the stream is lost. */
  leaseLost?: AbortController;
  /** On a cluster: the fence under which `stream` was last read from the database (another replica may have moved it since). */
  rowFence?: number;
};

/** How long /healthz waits for a networked database's test write before it calls it out of reach. */
const HEALTH_DB_WAIT_MS = 3000;

/** Old seen rows are pruned at most this often per stream. */
const PRUNE_EVERY_MS = 3_600_000;

export class ReloadError extends Error {}

/** The daemon cannot start for a reason the operator must fix (a port in use). */
export class StartError extends Error {}

/**
 * /healthz answers 503 when this many scheduled polls have come and gone (each had until the
 * next was due) since the last completed one.
 */
const STALL_POLLS = 3;

/** The access and refresh tokens of an instance's last three refreshes stay redacted. */
const TOKENS_REDACTED_PER_INSTANCE = 6;

/** Log lines and health reasons name streams up to this many; past it, they count them. */
const NAMED_STREAMS = 20;

/** /healthz names the first few late streams, worst first. */
const LATE_NAMED = 5;

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
  /** On a cluster: this replica's stream leases. Absent on SQLite, where every stream is this daemon's. */
  private leases: LeaseLoop | undefined;
  private http: Got | undefined;
  private getText: GetText | undefined;
  private deliverer: Deliverer | undefined;
  private httpServer: { url: string; close(): Promise<void> } | undefined;
  private calloutServer: CalloutServer | undefined;
  private ingester: CalloutIngester | undefined;
  private calloutCommit: GroupCommit<CalloutReceipt, { id: number; duplicate: boolean }> | undefined;
  /** The running config's callout instances, by name. */
  private callouts = new Map<string, CalloutInstance>();
  private calloutRoutes: CalloutRoute[] = [];
  private streams: StreamRuntime[] = [];
  /** Every stream's next poll, on one timer. */
  private readonly wheel = new TimerWheel<StreamRuntime>((s, dueMs) => this.launch(s, dueMs));
  /** Polls running or waiting for their turn, for a stop to wait for. */
  private readonly inFlight = new Set<Promise<void>>();
  /** Tokens learned at run time, per instance, oldest first. */
  private readonly shownTokens = new Map<string, string[]>();
  /** The running config's secrets, as a set; made again after a reload. */
  private configSecrets: Set<string> | undefined;
  /**
   * Streams taken out while their poll was still ending (a page commit runs on after the abort),
   * or before the poll they were to follow had ended, by key.
   */
  private readonly retired = new Map<string, StreamRuntime>();
  /** Concur's failed-queue reader of each callout instance, with what it was started for. */
  private failedQueueLoops = new Map<string, FailedQueueLoop>();
  private readonly limiter: OriginLimiter;
  private targets = new Map<string, DeliveryTarget>();
  private loopController = new AbortController();
  private stopped = false;
  private semaphore: Semaphore;
  private loops: Promise<void>[] = [];
  /** Polling has started: streams a reload adds are scheduled at once. */
  private loopsStarted = false;
  private starting: Promise<void> | undefined;
  private opening: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  /** The lifecycle steps (start, reload, stop), chained: each runs after the one before ends. */
  private steps: Promise<void> = Promise.resolve();
  private storeDied: ((err: Error) => void) | undefined;
  /**
   * Settles with the error if the database stops under the running daemon (its thread died):
   * every store call fails from then on, so the process must end, non-zero, for systemd to
   * restart it.
   */
  readonly failed: Promise<Error>;
  readonly metrics: Metrics;

  constructor(private options: DaemonOptions) {
    this.semaphore = new Semaphore(options.maxConcurrentPolls ?? options.config.polling.maxConcurrent);
    this.limiter = new OriginLimiter(options.config.polling.maxConcurrentPerOrigin);
    this.failed = new Promise((resolve) => { this.storeDied = resolve; });
    this.metrics = new Metrics(
      () => {
        const now = Date.now();
        // On a cluster each replica tells of the streams it polls: the others' are theirs to tell.
        return this.streams.filter((s) => this.holds(s)).map((s) => ({
          instance: s.instance.name,
          resource: s.resource.name,
          cursorLagSec: (now - msFromInstant(s.stream.cursor)) / 1000,
          skewSec: s.skew.ms === undefined ? undefined : s.skew.ms / 1000,
          scheduleLagSec: s.dueMs !== undefined && s.dueMs < now ? (now - s.dueMs) / 1000 : 0,
          late: now > s.stallAt,
        }));
      },
      async () => (this.store ? this.store.notificationCounts() : { pending: 0, dead: 0 }),
      { perInstance: options.config.metricsPerInstance },
    );
  }

  get config(): PollbridgeConfig {
    return this.options.config;
  }

  /** Where /healthz and /metrics answer, once started with `http.listen`. */
  get httpUrl(): string | undefined {
    return this.httpServer?.url;
  }

  /** Where Concur's callout is answered, once started with `callout.listen`. */
  get calloutUrl(): string | undefined {
    return this.calloutServer?.url;
  }

  private get log(): Logger {
    return this.options.log;
  }

  /** Opens the database (refusing one held by another daemon) and starts polling and delivery. */
  start(): Promise<void> {
    this.starting ??= this.step(() => this.startNow());
    return this.starting;
  }

  /**
   * Start, reload and stop are steps of one queue: a reload or stop asked while another step is
   * running is applied after it, never beside it (two loops on one stream, a stop that returns
   * while a reload starts new loops).
   */
  private step(run: () => Promise<void>): Promise<void> {
    const result = this.steps.then(run);
    this.steps = result.catch(() => {});
    return result;
  }

  private async startNow(): Promise<void> {
    // A stop asked before the start: nothing is to be opened that no stop would close.
    if (this.stopped) return;
    await this.open();
    if (this.stopped) return;
    if (this.config.http || this.config.callout) {
      try {
        if (this.config.http) this.httpServer = await this.listen(this.config);
        if (this.config.callout) this.calloutServer = await this.listenCallouts(this.config);
      } catch (err) {
        // Closed before the start rejects, so that the caller may start again on this database at
        // once; a stop asked meanwhile is the next step and does it.
        if (!this.stopping) {
          this.stopped = true;
          this.stopping = this.stopNow();
          await this.stopping;
        }
        throw err;
      }
    }
    this.startLoops();
    void this.deliverer!.start();
    this.ingester!.start();
    this.log.info('pollbridge started', {
      database: this.config.database,
      instances: this.config.instances.length,
      streams: this.streams.length <= NAMED_STREAMS ? this.streams.map((s) => s.key) : this.streams.length,
    });
  }

  private async listenCallouts(config: PollbridgeConfig): Promise<CalloutServer> {
    const listen = config.callout!;
    let server;
    try {
      server = await startCalloutServer(listen, {
        routes: () => this.calloutRoutes,
        receive: async (instance, body, notification) => {
          await this.calloutCommit!.add({ instance, source: 'push', body, notification, notificationUri: undefined, receivedAt: Date.now() });
          this.ingester?.wake();
        },
        onResult: (result) => this.metrics.callouts.inc({ result }),
        log: this.log,
      });
    } catch (err) {
      throw new StartError(`cannot listen on ${listen.host}:${listen.port} (callout.listen): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    // The paths of `config`: on a reload, the running routes are still the old config's.
    const paths = [...new Set(config.instances.flatMap((i) => (i.enabled && i.callout ? [i.callout.path] : [])))];
    this.log.info("Concur's callout answered", { url: server.url, tls: listen.tls !== undefined, paths });
    return server;
  }

  private async listen(config: PollbridgeConfig): Promise<{ url: string; close(): Promise<void> }> {
    const { host, port } = config.http!;
    let server;
    try {
      server = await startHttpServer(config.http!, () => this.health(), this.metrics);
    } catch (err) {
      throw new StartError(`cannot listen on ${host}:${port} (http.listen): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    this.log.info('health and metrics listening', { url: server.url });
    return server;
  }

  /**
   * `run --once`: poll every stream once, deliver what can be delivered now, and stop. A stop()
   * meanwhile cuts it short (`interrupted`): the next run goes on from the last part committed.
   */
  async runOnce(): Promise<{ failedPolls: number; pending: number; interrupted: boolean }> {
    await this.open();
    // On a cluster: the streams no running replica holds, taken for this one run; the others are theirs.
    if (this.leases) {
      await this.leases.takeFree();
      // Renewed while the run lasts: a poll may outlast a lease.
      this.leases.start();
    }
    const mine = this.streams.filter((s) => this.holds(s));
    if (mine.length < this.streams.length) this.log.info('run --once: streams held by other replicas are left to them', { polled: mine.length, streams: this.streams.length });
    const results = await Promise.all(mine.map((s) => this.pollGuarded(s)));
    await this.deliverer!.start({ untilIdle: true });
    const interrupted = this.stopped;
    const pending = interrupted ? 0 : (await this.store!.notificationCounts()).pending;
    await this.stop();
    // An interrupted poll is not a failed one: the next run goes on where it stopped.
    return { failedPolls: interrupted ? 0 : results.filter((r) => r === undefined).length, pending, interrupted };
  }

  /**
   * Polls in progress are told to end at once (they go on from their last committed part next
   * time); the rest of the stop waits for the lifecycle step in progress, if any.
   */
  stop(): Promise<void> {
    this.stopping ??= (() => {
      this.stopped = true;
      this.loopController.abort();
      // Now, not when the step in progress ends: a reload may wait seconds for a token refresh.
      for (const s of this.streams) s.controller.abort();
      for (const loop of this.failedQueueLoops.values()) loop.controller.abort();
      return this.step(() => this.stopNow());
    })();
    return this.stopping;
  }

  private async stopNow(): Promise<void> {
    // A stop while the database is still opening closes it once it is open.
    await this.opening?.catch(() => {});
    await this.stopLoops();
    // Nothing is polled from here: the others take the streams now, not once the deliveries
    // in flight (up to the grace period) and the token refreshes have ended.
    await this.leases?.stop();
    // Callouts being answered are committed first (the listener waits for them), then no fetch
    // is started: what is left is done at the next start.
    await Promise.all([this.httpServer?.close(), this.calloutServer?.close()]);
    await this.ingester?.stop();
    // A refresh in flight must be answered and saved before the database closes: Concur has
    // rotated the refresh token by then.
    await Promise.all([this.deliverer?.stop(this.options.graceMs ?? 10_000), this.closeAuths(this.runningAuths())]);
    // Once no delivery runs: its claims on notifications go too, for the others to send at once
    // rather than when the claims run out.
    if (this.leases) {
      await this.store?.cluster?.leave().catch((err: unknown) => {
        this.log.warn('could not let go of the claims on notifications on stopping; the other replicas send them once the claims run out', { error: (err as Error).message });
      });
    }
    await this.store?.close();
    this.lock?.release();
    this.log.info('pollbridge stopped');
  }

  /**
   * Applies the validated configuration `next` reads when this reload's turn comes (undefined:
   * nothing to apply); true when it was applied. Polling restarts on the new streams (a poll in
   * progress is interrupted; the next goes on from its last committed part), deliveries go to the
   * new targets, and the outbox is kept. Everything that can fail (the database path, new streams'
   * rows, a new listen address) is done before the running config is touched: a refused reload
   * leaves it running as it was. The database cannot change while running.
   */
  reload(next: () => PollbridgeConfig | undefined): Promise<boolean> {
    let applied = false;
    return this.step(async () => {
      // Before a start, or after a failed one or a stop, there is nothing running to reload.
      if (this.stopped || !this.deliverer) return;
      // Read when its turn comes, not when asked: reloads asked while one runs see the latest file.
      const config = next();
      if (!config) return;
      await this.reloadNow(config);
      applied = true;
    }).then(() => applied);
  }

  private async reloadNow(config: PollbridgeConfig): Promise<void> {
    if (config.database !== this.config.database) {
      throw new ReloadError(`the database cannot change on reload (${this.config.database} → ${config.database}); restart instead`);
    }
    this.options.log.addSecrets?.(config.secrets);
    const plan = await this.planStreams(this.keepingRefused(config));
    const httpSlot = this.httpSlot();
    const calloutSlot = this.calloutSlot();
    const httpChanged = JSON.stringify(config.http) !== JSON.stringify(this.config.http);
    const calloutChanged = !sameCalloutListener(config.callout, this.config.callout);
    let httpServer: { url: string; close(): Promise<void> } | undefined;
    let calloutServer: CalloutServer | undefined;
    try {
      if (httpChanged && config.http) httpServer = await this.listenInstead(httpSlot, config);
      if (calloutChanged && config.callout) calloutServer = await this.listenInstead(calloutSlot, config);
      // The same listener: certificate renewals apply to the connections from now on. A pair
      // node refuses leaves the old one in use, and the reload refused.
      else if (config.callout?.tls) this.calloutServer?.setTls(config.callout.tls);
    } catch (err) {
      if (httpServer) {
        await httpServer.close();
        // Ours was closed to make way for the new address (see listenInstead): it comes back.
        if (!this.httpServer && this.config.http) this.httpServer = await this.listen(this.config).catch(() => undefined);
      }
      await this.closeAuths(plan.freshAuths);
      throw new ReloadError((err as Error).message);
    }
    // Nothing below fails: the new config takes over. Streams and instances it leaves as they
    // were go on undisturbed: no poll cut short, no schedule moved.
    const before = this.runningAuths();
    const previous = this.config;
    this.applyLimits(plan.config);
    this.metrics.setPerInstance(plan.config.metricsPerInstance);
    this.options = { ...this.options, config: plan.config };
    this.configSecrets = undefined;
    this.install(plan, previous);
    if (httpChanged) {
      await this.httpServer?.close();
      this.httpServer = httpServer;
    }
    if (calloutChanged) {
      await this.calloutServer?.close();
      this.calloutServer = calloutServer;
    }
    this.deliverer?.wake();
    this.ingester?.wake();
    const kept = new Set(this.runningAuths());
    await this.closeAuths(before.filter((a) => !kept.has(a)));
  }

  private runningAuths(): Authenticator[] {
    return [...this.streams.map((s) => s.auth), ...[...this.callouts.values()].map((c) => c.auth)];
  }

  private httpSlot(): ListenerSlot<{ url: string; close(): Promise<void> }> {
    return {
      what: 'health and metrics', get: () => this.httpServer, set: (l) => { this.httpServer = l; }, address: (c) => c.http, open: (c) => this.listen(c),
    };
  }

  private calloutSlot(): ListenerSlot<CalloutServer> {
    return {
      what: "Concur's callout", get: () => this.calloutServer, set: (l) => { this.calloutServer = l; }, address: (c) => c.callout, open: (c) => this.listenCallouts(c),
    };
  }

  /**
   * Listens on a reload's new address while the old one still answers. When only the host changes
   * (127.0.0.1:9464 → 0.0.0.0:9464) the kernel refuses the new address beside ours, the port being
   * busy only because it is ours: ours is closed first, and opened again if the new one fails too.
   */
  private async listenInstead<L extends { url: string; close(): Promise<void> }>(slot: ListenerSlot<L>, config: PollbridgeConfig): Promise<L> {
    try {
      return await slot.open(config);
    } catch (err) {
      const running = slot.address(this.config);
      if (!slot.get() || !running || running.port === 0 || running.port !== slot.address(config)!.port || !/EADDRINUSE/.test((err as Error).message)) throw err;
    }
    await slot.get()!.close();
    slot.set(undefined);
    try {
      return await slot.open(config);
    } catch (err) {
      slot.set(await slot.open(this.config).catch((again: unknown) => {
        this.log.error(`${slot.what} is off: its address could not be listened on again`, { error: (again as Error).message });
        return undefined;
      }));
      throw err;
    }
  }

  /**
   * 503-worthy problems: a stream whose last STALL_POLLS scheduled polls came and went without one
   * completing, a rotated refresh token that could not be saved, or a database that takes no
   * write. Also the polls in progress, for `status`.
   */
  async health(): Promise<Health> {
    const reasons: string[] = [];
    const now = Date.now();
    const authProblems = new Map(this.streams.map((s) => [s.instance.name, s.auth.problem()]));
    for (const [instance, problem] of authProblems) if (problem) reasons.push(`${instance}: ${problem}`);
    // On a cluster, the streams another replica polls are not this one's to be late on.
    const late = this.streams.filter((s) => now > s.stallAt && this.holds(s));
    if (late.length > 0) {
      // Worst first; a fleet's health names a few and counts the rest, in one line.
      late.sort((a, b) => a.lastCompletedAt - b.lastCompletedAt);
      const named = late.slice(0, LATE_NAMED).map((s) => `${s.key} (no completed poll for ${Math.round((now - s.lastCompletedAt) / 1000)} s)`);
      const more = late.length > LATE_NAMED ? ` and ${late.length - LATE_NAMED} more` : '';
      reasons.push(`${late.length} of ${this.streams.length} streams late (${STALL_POLLS} scheduled polls came and went without one completing): ${named.join(', ')}${more}`);
    }
    for (const refused of this.config.refused) {
      reasons.push(`instance file refused: ${refused.file}${refused.name ? ` (${refused.name})` : ''}: ${refused.issues[0]?.message ?? 'does not validate'}`);
    }
    try {
      await this.checkWritable();
      // A database out of reach says it all: the lease rounds failing on it are its consequence.
      const clusterProblem = this.leases?.problem();
      if (clusterProblem) reasons.push(clusterProblem);
    } catch (err) {
      reasons.push(`database cannot be written: ${(err as Error).message}`);
    }
    const polls = this.streams.flatMap((s) => (s.polling ? [{
      instance: s.instance.name, resource: s.resource.name, since: new Date(s.polling.since).toISOString(), page: s.polling.page, retry: s.polling.retry,
    }] : []));
    return { ok: reasons.length === 0, reasons, polls, streams: this.streams.length, late: late.length, lateStreams: late.slice(0, LATE_NAMED).map((s) => s.key) };
  }

  /**
   * The store's test write. A database across the network may go silent (a partition): its
   * answer is waited for HEALTH_DB_WAIT_MS at most, so that /healthz answers 503 rather than not at all.
   */
  private async checkWritable(): Promise<void> {
    const store = this.store;
    if (!store) return;
    if (!store.cluster) return store.checkWritable();
    let timer: NodeJS.Timeout | undefined;
    const silent = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer to a test write within ${HEALTH_DB_WAIT_MS / 1000} s`)), HEALTH_DB_WAIT_MS);
    });
    try {
      await Promise.race([store.checkWritable(), silent]);
    } finally {
      clearTimeout(timer);
    }
  }

  private open(): Promise<void> {
    this.opening ??= this.openNow();
    return this.opening;
  }

  private async openNow(): Promise<void> {
    const store = await this.openStore();
    this.store = store;
    const timeoutMs = Math.max(...this.config.instances.map((i) => i.delivery.timeoutMs), 15_000);
    this.http = createHttpClient({ timeoutMs });
    this.getText = createGetText({ timeoutMs });
    try {
      this.install(await this.planStreams(this.config));
    } catch (err) {
      // The database thread would keep the process alive, holding the lock, with nothing to stop it.
      this.store = undefined;
      await store.close().catch(() => {});
      this.lock?.release();
      this.lock = undefined;
      throw err;
    }
    this.watchStore(store);
    if (store.cluster) {
      const cluster = store.cluster;
      this.leases = new LeaseLoop({
        cluster,
        leaseMs: this.config.cluster.leaseMs,
        log: this.log,
        streams: () => this.leaseCandidates(),
        onLost: (ids) => this.leasesLost(ids),
        onGained: (leases) => this.leasesGained(leases),
      });
      this.metrics.setReplica(cluster.replica.name, () => this.leases?.usable ?? 0);
      this.log.info('on a cluster: this replica polls the streams whose leases it holds', { replica: cluster.replica.name, leaseSeconds: this.config.cluster.leaseMs / 1000 });
    }
    // Two groups in flight: the next waits on the database thread, where it joins the writes queued there.
    this.calloutCommit = new GroupCommit((receipts) => store.recordCallouts(receipts), 512, 2);
    this.ingester = new CalloutIngester({
      store,
      getText: this.getText,
      fetchPolicy: this.options.fetchPolicy ?? DEFAULT_FETCH_POLICY,
      log: this.log,
      newId: newNotificationId,
      instances: () => this.callouts,
      onQueued: () => this.deliverer?.wake(),
      onOutcome: (instance, outcome) => this.metrics.calloutEvents.inc({ instance, outcome }),
    });
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

  /**
   * PostgreSQL when the config names a URL: shared by the replicas, so no lock file. Else SQLite
   * under the lock file that keeps a second daemon off it.
   */
  private async openStore(): Promise<Store> {
    const url = this.config.databaseUrl;
    if (url) {
      return openPgStore(url, this.config.database, {
        replicaName: this.options.replicaName,
        onIdleError: (err) => this.log.warn('a database connection was lost while idle; the next call opens another', { error: err.message }),
      });
    }
    this.lock = acquireDaemonLock(this.config.database);
    try {
      return await (this.options.openStore ?? ThreadedStore.open)(this.config.database);
    } catch (err) {
      this.lock.release();
      this.lock = undefined;
      throw err;
    }
  }

  /** Whether this replica polls `s` now: always alone on a database, while it holds the lease on a cluster. */
  private holds(s: StreamRuntime): boolean {
    return !this.leases || this.leases.fence(s.stream.id) !== undefined;
  }

  /** The streams a lease round places: the polled ones, and the callout streams whose failed queue is read. */
  private leaseCandidates(): Placeable[] {
    const polled = this.streams.map((s) => ({ id: s.stream.id, instance: s.instance.name, resource: s.resource.name }));
    const queues = [...this.callouts.values()].filter((c) => (c.config.callout?.failedQueueMs ?? 0) > 0)
      .map((c) => ({ id: c.streamId, instance: c.config.name, resource: CALLOUT_RESOURCE }));
    return [...polled, ...queues];
  }

  /** Leases lost (moved, let go of, run out here): their polls end and are not scheduled again until a lease comes back. */
  private leasesLost(ids: number[]): void {
    const lost = new Set(ids);
    for (const s of this.streams) {
      if (!lost.has(s.stream.id)) continue;
      this.wheel.cancel(s);
      s.dueMs = undefined;
      s.leaseLost?.abort();
    }
    if (this.loopsStarted && !this.stopped) this.syncFailedQueueLoops(false);
    this.log.info('stream leases lost', { streams: this.streamNames(lost) });
  }

  /**
   * New leases: their rows are read again (another replica polled them last) and each is
   * scheduled as after a start: at once if overdue, else at its next grid point. A stream whose
   * last poll is still ending is scheduled when it ends.
   */
  private async leasesGained(leases: Lease[]): Promise<void> {
    const byId = new Map(leases.map((l) => [l.streamId, l.fence]));
    const gained = this.streams.filter((s) => byId.has(s.stream.id));
    const idle = gained.filter((s) => !s.running);
    if (idle.length > 0) {
      const rows = await this.store!.openStreams(idle.map((s) => ({ instance: s.instance.name, resource: s.resource.name, initialCursor: s.stream.cursor })));
      idle.forEach((s, i) => this.adoptRow(s, rows[i]!, byId.get(s.stream.id)!));
    }
    if (this.stopped) return;
    const now = Date.now();
    for (const s of gained) {
      // Counted from now: the polls due while another replica held it were not this one's to make.
      s.lastCompletedAt = now;
      s.stallAt = s.scheduler.nthNextRun(STALL_POLLS + 1);
      if (this.loopsStarted && !s.running) this.schedule(s, this.firstDue(s, now));
    }
    if (this.loopsStarted) this.syncFailedQueueLoops(false);
    this.log.info('stream leases gained', { streams: this.streamNames(new Set(byId.keys())) });
  }

  /** The stream as the database has it, read under the lease of `fence`. */
  private adoptRow(s: StreamRuntime, row: Stream, fence: number): void {
    // The skew the last poller measured; a mark of this process's clock would date from before it.
    if (s.rowFence !== fence) s.skew = { ms: row.skewMs };
    s.stream = row;
    s.rowFence = fence;
  }

  private streamNames(ids: ReadonlySet<number>): string[] | number {
    const named = [...this.streams.filter((s) => ids.has(s.stream.id)).map((s) => s.key), ...[...this.callouts.values()].filter((c) => ids.has(c.streamId)).map((c) => `${c.config.name}/${CALLOUT_RESOURCE}`)];
    return named.length <= NAMED_STREAMS ? named : named.length;
  }

  private watchStore(store: Store): void {
    void store.died?.then((err) => {
      if (this.stopped) return;
      this.log.error('the database stopped under the running daemon; exiting so that the service manager restarts pollbridge', { error: err.message });
      this.storeDied?.(err);
    });
  }

  /**
   * A reload's config with the running instances whose `instancesDir` file was refused kept as
   * they run: a typo in one company's file stops nothing.
   */
  private keepingRefused(config: PollbridgeConfig): PollbridgeConfig {
    const refusedFiles = new Set(config.refused.map((r) => r.file));
    const named = new Set(config.instances.map((i) => i.name));
    const kept = this.config.instances.filter((i) => i.source !== undefined && refusedFiles.has(i.source) && !named.has(i.name));
    if (kept.length === 0) return config;
    for (const i of kept) this.log.warn('instance file refused: the instance runs on with its last good config', { instance: i.name, file: i.source });
    return { ...config, instances: [...config.instances, ...kept] };
  }

  /**
   * Opens (or creates) the rows of a config's new and changed streams and the authenticators
   * they need, without touching the running ones: a failure here leaves the running config as
   * it was. An instance unchanged since the running config keeps its running streams.
   */
  private async planStreams(config: PollbridgeConfig): Promise<Plan> {
    const store = this.store!;
    const now = instantFromMs(Date.now());
    const planned: PlannedStream[] = [];
    const kept: StreamRuntime[] = [];
    const toOpen: (Omit<PlannedStream, 'opened'> & { initialCursor: Instant })[] = [];
    const callouts = new Map<string, CalloutInstance>();
    const auths = new Map<string, { auth: Authenticator; fresh: boolean }>();
    const runningStreams = new Map<string, StreamRuntime[]>();
    const running = new Map<string, { instance: InstanceConfig; auth: Authenticator }>();
    for (const s of this.streams) {
      running.set(s.instance.name, s);
      const streams = runningStreams.get(s.instance.name);
      if (streams) streams.push(s);
      else runningStreams.set(s.instance.name, [s]);
    }
    for (const c of this.callouts.values()) running.set(c.config.name, { instance: c.config, auth: c.auth });
    try {
      // Receipts answered 200 before an instance's callout was turned off still become events:
      // those waiting now, and those of pushes the running routes let in, whose commits may land
      // after this count (the next plan counts them).
      const waiting = new Set(await store.instancesWithWaitingCallouts());
      for (const route of this.calloutRoutes) waiting.add(route.instance);
      for (const instance of config.instances) {
        if (!instance.enabled) continue;
        const same = running.get(instance.name);
        const unchanged = same?.instance.fingerprint === instance.fingerprint ? runningStreams.get(instance.name) : undefined;
        // Kept across a reload while its credentials are unchanged: it may hold a rotated refresh
        // token that could not be saved yet, which a fresh one would not know.
        const sameAuth = same && JSON.stringify(same.instance.auth) === JSON.stringify(instance.auth) ? same.auth : undefined;
        const auth = sameAuth ?? this.authenticator(instance, store);
        auths.set(instance.name, { auth, fresh: !sameAuth });
        if (unchanged && unchanged.length === instance.resources.length) {
          kept.push(...unchanged);
        } else {
          const initialCursor = this.options.since ?? instance.backfillFrom ?? now;
          for (const resource of instance.resources) toOpen.push({ instance, resource, auth, fresh: !sameAuth, initialCursor });
        }
        if (instance.callout || waiting.has(instance.name)) {
          const previous = this.callouts.get(instance.name);
          const streamId = previous?.streamId ?? (await store.openStream(instance.name, CALLOUT_RESOURCE, now)).id;
          callouts.set(instance.name, { config: instance, streamId, auth });
        }
      }
      const opened = toOpen.length === 0 ? [] : await store.openStreams(toOpen.map((o) => ({ instance: o.instance.name, resource: o.resource.name, initialCursor: o.initialCursor })));
      toOpen.forEach(({ instance, resource, auth, fresh }, i) => planned.push({ instance, resource, auth, fresh, opened: opened[i]! }));
    } catch (err) {
      await this.closeAuths([...auths.values()].filter((a) => a.fresh).map((a) => a.auth));
      throw err;
    }
    return { config, kept, streams: planned, callouts, freshAuths: [...auths.values()].filter((a) => a.fresh).map((a) => a.auth) };
  }

  private authenticator(instance: InstanceConfig, store: Store): Authenticator {
    return createAuthenticator(instance.auth, {
      http: this.http!,
      store,
      instance: instance.name,
      log: this.log.child({ instance: instance.name }),
      policy: this.options.fetchPolicy ?? DEFAULT_FETCH_POLICY,
      onSecret: (v) => this.showToken(instance.name, v),
      limit: (url, request) => this.limiter.run(url, request),
    });
  }

  /**
   * A token learned at run time joins the redacted secrets; an instance's tokens older than its
   * last few refreshes (expired or rotated away) leave them, unless the config holds them.
   */
  private showToken(instance: string, value: string): void {
    this.options.log.addSecrets?.([value]);
    const shown = this.shownTokens.get(instance) ?? [];
    if (shown.includes(value)) return;
    shown.push(value);
    this.shownTokens.set(instance, shown);
    if (shown.length <= TOKENS_REDACTED_PER_INSTANCE) return;
    const old = shown.shift()!;
    this.configSecrets ??= new Set(this.config.secrets);
    if (!this.configSecrets.has(old)) this.options.log.forgetSecrets?.([old]);
  }

  /**
   * Makes the plan's streams the running ones. Kept streams go on as they are; a changed stream's
   * poll in progress is ended and the new one polls at once, after it; a removed one's is ended.
   * A stream that was running keeps its progress, its skew and its health.
   */
  private install({ config, kept, streams: planned, callouts }: Plan, previousConfig?: PollbridgeConfig): void {
    const previous = new Map(this.streams.map((s) => [s.key, s]));
    const keptSet = new Set(kept);
    const gates = new Map<string, RateGate>();
    for (const s of kept) gates.set(s.instance.name, s.gate);
    for (const s of this.streams) if (!keptSet.has(s)) gates.set(s.instance.name, gates.get(s.instance.name) ?? s.gate);
    const added = planned.map(({ instance, resource, auth, opened }) => {
      const key = `${instance.name}/${resource.name}`;
      const running = previous.get(key);
      if (running) this.retire(running);
      const old = running ?? this.retired.get(key);
      // Progress is committed as polls go; the running stream knows the latest of it.
      const stream = old?.stream ?? opened;
      const offsetMs = instance.schedule.kind === 'interval' ? gridOffsetMs(instance.name, resource.name, instance.schedule.intervalMs) : 0;
      const scheduler = createScheduler(instance.schedule, offsetMs);
      const gate = gates.get(instance.name) ?? new RateGate();
      gates.set(instance.name, gate);
      const runtime: StreamRuntime = {
        key, instance, resource, stream, auth, scheduler, gate,
        controller: new AbortController(),
        dueMs: undefined,
        running: undefined,
        // Its poll in progress, or, not launched yet, the one it was to follow.
        after: old?.running ?? old?.after,
        // The last measured skew survives a restart: the first windows are read in the provider's time too.
        skew: old?.skew ?? { ms: stream.skewMs },
        lastCompletedAt: old?.lastCompletedAt ?? Date.now(),
        // A changed schedule counts its own polls from now.
        stallAt: old && sameSchedule(old.instance, instance) ? old.stallAt : scheduler.nthNextRun(STALL_POLLS + 1),
        lastPrunedAt: old?.lastPrunedAt ?? 0,
        polling: undefined,
      };
      // A stream whose instance changed polls at once: the operator wants to see the change work.
      return { runtime, changed: old !== undefined };
    });
    const addedKeys = new Set(added.map((a) => a.runtime.key));
    for (const s of this.streams) if (!keptSet.has(s) && !addedKeys.has(s.key)) this.retire(s);
    const before = new Map(previousConfig?.instances.map((i) => [i.name, i.fingerprint]));
    for (const instance of config.instances) {
      if (!instance.enabled && before.get(instance.name) !== instance.fingerprint) this.log.info('instance disabled (event.notification.enabled is not true): not polled', { instance: instance.name });
    }
    this.streams = [...kept, ...added.map((a) => a.runtime)];
    this.callouts = callouts;
    this.calloutRoutes = [...callouts.values()].flatMap(({ config: c }) => (c.callout ? [{ instance: c.name, ...c.callout }] : []));
    this.targets = new Map(config.instances.map((i) => [i.name, deliveryTarget(i)]));
    if (this.loopsStarted && !this.stopped) {
      const now = Date.now();
      for (const { runtime, changed } of added) if (this.holds(runtime)) this.schedule(runtime, changed ? now : this.firstDue(runtime, now));
      this.syncFailedQueueLoops();
      // New streams are placed now, not at the end of the lease round's wait.
      this.leases?.wake();
    }
    void this.store!.instancesWithPending().then((names) => {
      const orphaned = names.filter((name) => !this.targets.has(name));
      if (orphaned.length > 0) this.log.warn('pending notifications kept for instances no longer in the config', { instances: orphaned.length <= NAMED_STREAMS ? orphaned : orphaned.length });
    }, () => {});
  }

  /** Takes a stream out of the schedule and ends its poll in progress. */
  private retire(s: StreamRuntime): void {
    this.wheel.cancel(s);
    s.controller.abort();
    s.scheduler.dispose();
    // A reload that brings the stream back before this poll has ended polls after it, from the
    // progress it committed. One not launched yet still owes the wait for the poll it was to follow.
    const ending = s.running ?? s.after;
    if (ending) {
      this.retired.set(s.key, s);
      void ending.finally(() => {
        if (this.retired.get(s.key) === s) this.retired.delete(s.key);
      });
    }
  }

  /** When a stream polls first after a start or after a reload added it. */
  private firstDue(s: StreamRuntime, now: number): number {
    // A stream that has not moved from the past moment it was asked to start from polls at once.
    const backfill = s.stream.cursor === s.stream.origin && (this.options.since ?? s.instance.backfillFrom) !== undefined;
    return s.scheduler.first(now, { cursorMs: msFromInstant(s.stream.cursor), settleMs: s.instance.settleSec * 1000, backfill });
  }

  /** A reload's new `polling` limits apply to polls and requests that start from now on. */
  private applyLimits(config: PollbridgeConfig): void {
    if (this.options.maxConcurrentPolls === undefined && config.polling.maxConcurrent !== this.config.polling.maxConcurrent) {
      this.semaphore = new Semaphore(config.polling.maxConcurrent);
    }
    this.limiter.setLimit(config.polling.maxConcurrentPerOrigin);
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
    this.loopsStarted = true;
    const now = Date.now();
    // On a cluster none is held yet: each is scheduled as its lease comes.
    for (const s of this.streams) if (this.holds(s)) this.schedule(s, this.firstDue(s, now));
    this.syncFailedQueueLoops();
    this.loops = [this.pruneCalloutsLoop(this.loopController.signal)];
    this.leases?.start();
  }

  /**
   * One reader of Concur's failed queue per callout instance that asks for one (on a cluster, on
   * the replica holding the lease of its callout stream); a changed instance's is started again.
   * `readKept`: the readers kept read the queue now (a reload is when an operator expects it read).
   */
  private syncFailedQueueLoops(readKept = true): void {
    const wanted = new Map([...this.callouts.values()]
      .filter((c) => (c.config.callout?.failedQueueMs ?? 0) > 0 && (!this.leases || this.leases.fence(c.streamId) !== undefined))
      .map((c) => [c.config.name, c]));
    const ending = new Map<string, Promise<void>>();
    for (const [name, loop] of this.failedQueueLoops) {
      if (wanted.get(name)?.config.fingerprint === loop.fingerprint) {
        if (readKept) loop.nap?.abort();
        continue;
      }
      loop.controller.abort();
      ending.set(name, loop.done);
      this.failedQueueLoops.delete(name);
    }
    for (const [name, c] of wanted) {
      if (this.failedQueueLoops.has(name)) continue;
      const controller = new AbortController();
      const loop: FailedQueueLoop = { fingerprint: c.config.fingerprint, controller, nap: undefined, done: Promise.resolve() };
      loop.done = (async () => {
        // The reader it replaces may be in the middle of a DELETE: one reader per queue at a time.
        await ending.get(name);
        await this.failedQueueLoop(c, controller.signal, (ms) => {
          loop.nap = new AbortController();
          return abortableSleep(ms, AbortSignal.any([controller.signal, loop.nap.signal]));
        });
      })();
      this.failedQueueLoops.set(name, loop);
    }
  }

  /** Done callout receipts and their event keys are kept as long as seen changes, then forgotten. */
  private async pruneCalloutsLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      for (const c of this.callouts.values()) {
        if (signal.aborted) break;
        try {
          const pruned = await this.store!.pruneCallouts(c.config.name, c.streamId, Date.now(), c.config.seenRetentionSec * 1000);
          if (pruned > 0) this.log.info('forgot callout receipts older than the retention', { instance: c.config.name, pruned });
        } catch (err) {
          this.log.error('could not forget old callout receipts; trying again later', { instance: c.config.name, error: (err as Error).message });
        }
      }
      await abortableSleep(PRUNE_EVERY_MS, signal);
    }
  }

  /**
   * Concur's failed-notification queue of one instance, read at start and every
   * `failedQueueMinutes`. Its outcome is the callout stream's "last poll" in `status`.
   */
  private async failedQueueLoop(instance: CalloutInstance, signal: AbortSignal, nap: (ms: number) => Promise<void>): Promise<void> {
    const labels = { instance: instance.config.name };
    const everyMs = instance.config.callout!.failedQueueMs;
    while (!signal.aborted) {
      try {
        await drainFailedQueue(instance, {
          store: this.store!, http: this.http!, getText: this.getText!, fetchPolicy: this.options.fetchPolicy ?? DEFAULT_FETCH_POLICY, log: this.log,
          onReceived: () => this.ingester?.wake(),
        }, signal);
        this.metrics.failedQueueRounds.inc({ ...labels, result: 'ok' });
        const fence = this.leases?.fence(instance.streamId);
        if (this.leases && fence === undefined) break;
        await this.store!.completePoll(instance.streamId, {}, Date.now(), fence);
      } catch (err) {
        if (signal.aborted) break;
        if (isLeaseLost(err)) {
          this.log.info("Concur's failed-notification queue is read by the replica holding its lease now", labels);
          break;
        }
        const message = (err as Error).message;
        this.metrics.failedQueueRounds.inc({ ...labels, result: 'failed' });
        this.log.error("Concur's failed-notification queue could not be read; trying again next round", { ...labels, error: message });
        await this.store!.failPoll(instance.streamId, message, Date.now(), this.leases?.fence(instance.streamId)).catch(() => {});
      }
      await nap(everyMs);
    }
  }

  private async stopLoops(): Promise<void> {
    this.loopController.abort();
    this.wheel.dispose();
    for (const s of this.streams) {
      s.controller.abort();
      s.scheduler.dispose();
    }
    for (const loop of this.failedQueueLoops.values()) loop.controller.abort();
    await Promise.allSettled([...this.loops, ...this.inFlight, ...[...this.failedQueueLoops.values()].map((l) => l.done)]);
    this.loops = [];
    this.failedQueueLoops.clear();
  }

  /**
   * Page reads of one stream: after its instance's pause for a 429, if any (waited out without the
   * poll's slot), and within the limit of requests in flight to the provider's origin. A 429
   * pauses the instance's other pages too.
   */
  private gatedGetText(s: StreamRuntime, slot: Slot): GetText {
    return async (url, headers, signal) => {
      if (s.gate.pausedUntil > Date.now()) await slot.idle(() => s.gate.wait(signal));
      const response = await this.limiter.run(url, () => this.getText!(url, headers, signal));
      s.gate.answered(response.statusCode, parseRetryAfter(response.headers['retry-after'], Date.now()));
      return response;
    };
  }

  private schedule(s: StreamRuntime, dueMs: number): void {
    s.dueMs = dueMs;
    this.wheel.schedule(s, dueMs);
  }

  /** The wheel says a stream's poll is due: it waits for its instance's gate and a slot, polls, and is scheduled again. */
  private launch(s: StreamRuntime, dueMs: number): void {
    // The wheel runs until the stop's turn comes; a stop asked before then starts no poll.
    if (this.stopped) return;
    // A lease lost while the poll was due: the stream is scheduled again when one comes back.
    if (!this.holds(s)) {
      s.dueMs = undefined;
      return;
    }
    s.dueMs = dueMs;
    const run = this.runDue(s, dueMs).catch((err: unknown) => {
      this.log.error('a poll ended unexpectedly; it is scheduled again', { instance: s.instance.name, resource: s.resource.name, error: (err as Error).message });
    }).finally(() => {
      this.inFlight.delete(run);
      s.running = undefined;
      // A retired stream (removed, replaced, stopping) has its controller aborted; one whose lease
      // went is scheduled when it comes back.
      if (!s.controller.signal.aborted && !this.stopped && this.holds(s)) {
        this.schedule(s, s.scheduler.next(dueMs, Date.now()));
      }
    });
    s.running = run;
    this.inFlight.add(run);
  }

  private async runDue(s: StreamRuntime, dueMs: number): Promise<void> {
    let signal = s.controller.signal;
    if (this.leases) {
      const leaseLost = new AbortController();
      s.leaseLost = leaseLost;
      signal = AbortSignal.any([signal, leaseLost.signal]);
    }
    // The runtime this one replaced may still be committing a page of the same stream.
    await s.after;
    s.after = undefined;
    await s.gate.wait(signal);
    if (signal.aborted) return;
    await this.pollGuarded(s, signal, dueMs);
  }

  /**
   * One poll; a failure is logged and recorded, never thrown: the stream polls again next time.
   * `dueMs`: when the schedule wanted it, for its lag (none for `run --once`).
   */
  private async pollGuarded(s: StreamRuntime, signal: AbortSignal = this.loopController.signal, dueMs?: number): Promise<PollSummary | undefined> {
    const labels = { instance: s.instance.name, resource: s.resource.name };
    const log = this.log.child(labels);
    return this.semaphore.use(async (slot) => {
      if (signal.aborted) return undefined;
      // Taken as the poll starts, after the wait for a slot: every commit of the poll names it.
      const fence = this.leases?.fence(s.stream.id);
      if (this.leases && fence === undefined) return undefined;
      const started = Date.now();
      const lag = dueMs === undefined ? {} : { dueAt: new Date(dueMs).toISOString(), lagMs: Math.max(0, started - dueMs) };
      if (dueMs !== undefined) this.metrics.scheduleLag.observe(Math.max(0, started - dueMs) / 1000);
      s.dueMs = undefined;
      s.polling = { since: started, page: 0, retry: 0 };
      try {
        // Gained while its last poll was ending: the row is read again, as another replica may have moved it.
        if (fence !== undefined && s.rowFence !== fence) this.adoptRow(s, await this.store!.openStream(s.instance.name, s.resource.name, s.stream.cursor), fence);
        const summary = await pollStream(s.instance, s.resource, s.stream, {
          store: this.store!,
          getText: this.gatedGetText(s, slot),
          auth: s.auth,
          log: this.log,
          fetchPolicy: { ...(this.options.fetchPolicy ?? DEFAULT_FETCH_POLICY), whileWaiting: slot.idle },
          newId: newNotificationId,
          onQueued: () => this.deliverer?.wake(),
          maxPages: this.options.maxPages ?? 100_000,
          maxResweeps: 3,
          skew: s.skew,
          onRateLimited: () => this.metrics.upstreamRateLimited.inc(labels),
          onAttempt: (page, retry) => { s.polling = { since: started, page, retry }; },
          fence,
        }, signal);
        const settled = summary.settled;
        if (settled) {
          s.lastCompletedAt = Date.now();
          s.stallAt = s.scheduler.nthNextRun(STALL_POLLS + 1);
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
        log.info('poll finished', { ...summary, skewMs: s.skew.ms, durationMs: Date.now() - started, ...lag });
        return summary;
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (isLeaseLost(err)) {
          // Another replica polls the stream now: its progress is the stream's, nothing is recorded.
          this.metrics.polls.inc({ ...labels, result: 'lease_lost' });
          log.warn('poll ended: the stream\'s lease moved to another replica, which goes on from the last committed part', { fence, durationMs: Date.now() - started });
          return undefined;
        }
        if (signal.aborted) {
          // A stop, a reload or a lease lost cut it short: not a failure of the provider, so nothing is recorded.
          log.info('poll interrupted; the next goes on from its last committed part', { durationMs: Date.now() - started });
          return undefined;
        }
        this.metrics.polls.inc({ ...labels, result: 'failed' });
        log.error('poll failed; the next poll goes on from its last committed part', { error: message, durationMs: Date.now() - started });
        await this.store!.failPoll(s.stream.id, message, Date.now(), fence).catch((err: unknown) => {
          if (isLeaseLost(err)) log.info('the failed poll is not recorded: the stream\'s lease moved to another replica', { fence });
          else log.error('could not record the failed poll', { error: (err as Error).message });
        });
        return undefined;
      } finally {
        s.polling = undefined;
        this.metrics.pollDuration.observe(labels, (Date.now() - started) / 1000);
      }
    });
  }
}

/** The same address and plain-or-TLS: the listener stays (a new certificate is set on it). */
function sameCalloutListener(a: CalloutListenConfig | undefined, b: CalloutListenConfig | undefined): boolean {
  return a?.host === b?.host && a?.port === b?.port && (a?.tls === undefined) === (b?.tls === undefined);
}

/** A commit refused because this replica no longer holds the stream (a store on a thread sends back its name only). */
function isLeaseLost(err: unknown): boolean {
  return err instanceof LeaseLostError || (err instanceof Error && err.name === 'LeaseLostError');
}

function sameSchedule(a: InstanceConfig, b: InstanceConfig): boolean {
  return JSON.stringify(a.schedule) === JSON.stringify(b.schedule);
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
