import type { InstanceConfig, ResourceConfig } from '../config/types.js';
import { detectChanges } from '../detect/changes.js';
import { type PollPlan, type PollWindow, pollPlan } from '../detect/window.js';
import { pageCommit } from '../deliver/notification.js';
import type { Logger } from '../log.js';
import { apiBaseOf, type Authenticator } from '../poll/auth.js';
import { fetchJson } from '../poll/fetchJson.js';
import type { FetchPolicy } from '../poll/retry.js';
import type { GetText } from '../poll/httpClient.js';
import type { Page } from '../poll/pages.js';
import { type SweepSource, type SweepStep, sweepWindow } from '../poll/sweep.js';
import { sweepSource } from '../poll/sweepSource.js';
import type { PageCommit, Store, Stream, StreamProgress } from '../store/types.js';
import { type Instant, instantFromMs, isoFromInstant, US_PER_SECOND } from '../time/instant.js';

export type PollDeps = {
  store: Store;
  /** Reads pages; tokens go through `auth`, which has its own client. */
  getText: GetText;
  auth: Authenticator;
  log: Logger;
  fetchPolicy: FetchPolicy;
  newId: () => string;
  /** Called after a page queued notifications, so delivery starts without waiting for the poll. */
  onQueued: () => void;
  maxPages: number;
  /** Extra sweeps of a part read page by page whose records changed meanwhile, before it is left for the next poll. */
  maxResweeps: number;
  /** Last measured offset of the provider's clock from ours, ms (server − local); updated here. */
  skew: Skew;
  onRateLimited?: () => void;
  /**
   * Called as each try of a request for records starts: the request's number in this poll (the
   * n-th page asked for) and the try's (0: the first), so that a poll in progress can be shown.
   */
  onAttempt?: (page: number, retry: number) => void;
  /**
   * On a shared store, the fence of the stream's lease the poll runs under: every commit names
   * it, and is refused (LeaseLostError) once another replica holds the stream.
   */
  fence?: number;
};

/**
 * The provider's clock against ours. `mark`: its `Date` at the last read and our monotonic clock
 * then, so that a step of the provider's clock is told apart from a step of ours.
 */
export type Skew = { ms: number | undefined; mark?: { serverMs: number; monoMs: number } };

export type PollSummary = {
  pages: number; records: number; fresh: number; duplicates: number; rejected: number; history: number;
  notifications: number;
  /** Requests that read records (parts, and pages of parts swept page by page). */
  requests: number;
  /** Whether every part of the poll's windows was read completely; if not, the rest is read next poll. */
  settled: boolean;
};

/** A sweep longer than this many pages logs its progress at info: at once, then every few seconds. */
const QUIET_PAGES = 10;
const PROGRESS_EVERY_MS = 5000;
/**
 * How far the provider's clock must go back between two reads before the cursor follows it: two
 * `Date`s rounded to the second, and the time each answer took, blur a smaller step.
 */
const STEP_BACK_MIN_MS = 2000;
/** A skew this large is worth a warning: one of the two clocks is not kept by NTP. */
const SKEW_WARNING_MS = 10_000;
/** Pages whose commit may still be running while later pages are read. */
const COMMITS_IN_FLIGHT = 4;

/**
 * One poll of one stream: the fresh window, then the stretch of the past due a second read (see
 * `pollPlan`). Each window is read by `sweepWindow`, part by part in time order; each page's new
 * changes and their notifications are committed in one transaction, and each part's coverage
 * moves the stream's progress in the same kind of transaction, so a failure or a restart loses
 * only the part being read. Commits land in the order they are made.
 *
 * `stream` is the caller's: its cursor, recheck and skew follow what has been committed.
 */
export async function pollStream(instance: InstanceConfig, resource: ResourceConfig, stream: Stream, deps: PollDeps, signal?: AbortSignal): Promise<PollSummary> {
  const log = deps.log.child({ instance: instance.name, resource: resource.name });
  const plan = pollPlan({
    cursor: stream.cursor,
    recheck: stream.recheck,
    now: instantFromMs(Date.now()),
    skewMs: deps.skew.ms,
    pollDelaySec: resource.pollDelaySec,
    overlapSec: instance.overlapSec,
    settleSec: instance.settleSec,
  });
  await deps.auth.headers(signal);
  const apiBase = apiBaseOf(instance, deps.auth);
  const summary: PollSummary = { pages: 0, records: 0, fresh: 0, duplicates: 0, rejected: 0, history: 0, notifications: 0, requests: 0, settled: true };
  const ctx: SweepContext = { instance, resource, stream, deps, log };
  const source = sweepSource({
    resource,
    elementKey: instance.elementKey,
    apiBase,
    maxPages: deps.maxPages,
    maxResweeps: deps.maxResweeps,
    fetch: (u) => {
      const page = ++summary.requests;
      let tries = 0;
      // Every try goes through getText, a retry after a timeout as much as after an answer.
      const getText: GetText = (...request) => {
        deps.onAttempt?.(page, tries++);
        return deps.getText(...request);
      };
      return fetchJson(getText, deps.auth, u, deps.fetchPolicy, signal, (status) => {
        if (status === 429) deps.onRateLimited?.();
      }, (notice) => log.warn('page request failed; retrying', notice));
    },
    onPage: (page) => measureSkew(ctx, page),
  });
  const commits = new CommitQueue(deps.newId());
  const reach: Reach = { cursor: stream.cursor, recheckAtPlan: stream.recheck, recheck: stream.recheck, providerNow: plan.providerNow, planSkewMs: deps.skew.ms, planMark: deps.skew.mark };
  try {
    for (const [pass, window] of passes(plan, source)) {
      log.debug('sweep started', { pass, windowStart: isoFromInstant(window.start), windowEnd: isoFromInstant(window.end) });
      const unsettledAt = await readWindow(ctx, pass, window, source, summary, commits, reach);
      if (unsettledAt !== undefined) {
        summary.settled = false;
        log.warn('records kept changing while a part of the window was read; it is read again next poll', { pass, at: isoFromInstant(unsettledAt) });
        break;
      }
    }
  } finally {
    // Whatever ended the poll, no commit is left running behind its back.
    await commits.settle();
  }
  await commits.drain();
  if (summary.settled) await deps.store.completePoll(stream.id, { cursor: stream.cursor, recheck: stream.recheck, skewMs: deps.skew.ms }, Date.now(), deps.fence);
  return summary;
}

type Pass = 'fresh' | 'recheck' | 'both';

/** A page named with its lease's fence, on a shared store; as it was elsewhere. */
function fenced(page: PageCommit, fence: number | undefined): PageCommit {
  return fence === undefined ? page : { ...page, fence };
}

/**
 * Where this poll's progress will stand once its commits land (the stream's own fields follow the
 * commits), and the provider's now by the plan.
 */
type Reach = {
  /** The cursor and the recheck when the poll was planned. */
  cursor: Instant;
  recheckAtPlan: Instant;
  /** The recheck as this poll's commits will leave it. */
  recheck: Instant;
  providerNow: Instant;
  /** The skew and its mark when the poll was planned. */
  planSkewMs: number | undefined;
  planMark: Skew['mark'];
};

/**
 * A window that cannot be closed at an end date (a generic API) reads everything after its start
 * anyway: one read from the earlier start serves both passes.
 */
function passes(plan: PollPlan, source: SweepSource): [Pass, PollWindow][] {
  if (!plan.recheck) return [['fresh', plan.fresh]];
  if (source.resolutionUs === undefined) return [['both', { start: Math.min(plan.fresh.start, plan.recheck.start), end: plan.fresh.end }]];
  return [['fresh', plan.fresh], ['recheck', plan.recheck]];
}

/**
 * Store commits in flight, awaited in order; a failure surfaces once, at `push` or `drain`. They form one
 * chain: after a commit fails, the store refuses the rest, so no later progress steps over it.
 */
class CommitQueue {
  private readonly inFlight: Promise<void>[] = [];
  private seq = 0;

  constructor(private readonly chainId: string) {}

  /** The page, numbered in this poll's chain. */
  chained(page: PageCommit): PageCommit {
    return { ...page, chain: { id: this.chainId, seq: this.seq++ } };
  }

  async push(commit: Promise<void>): Promise<void> {
    // Awaited below, in order; a failure must not also surface as an unhandled rejection.
    commit.catch(() => {});
    this.inFlight.push(commit);
    if (this.inFlight.length >= COMMITS_IN_FLIGHT) await this.inFlight.shift();
  }

  /** Resolves once every commit pushed so far has landed; rejects if one failed. */
  landed(): Promise<void> {
    return Promise.all(this.inFlight).then(() => {});
  }

  async settle(): Promise<void> {
    await Promise.allSettled(this.inFlight);
  }

  async drain(): Promise<void> {
    while (this.inFlight.length > 0) await this.inFlight.shift();
  }
}

type SweepContext = {
  instance: InstanceConfig;
  resource: ResourceConfig;
  stream: Stream;
  deps: PollDeps;
  log: Logger;
};

/**
 * "Changed after we started" must be judged by the clock that stamped the records: a provider
 * 30 s behind stamps a change made just after our first start 30 s before it. The origin only
 * ever moves earlier: the skew now is not the skew of when a record was stamped (the provider's
 * clock may have stepped forward since), and a little history announced is better than a change
 * taken for history. The `Date` header has one-second resolution, hence the margin.
 */
function originInProviderTime(ctx: SweepContext): Instant {
  const skewMs = ctx.deps.skew.ms;
  const origin = skewMs === undefined ? ctx.stream.origin : ctx.stream.origin + Math.min(0, Math.round((skewMs - 2000) * 1000));
  // Changes older than the retention of seen rows, or than any seen row already pruned, can no
  // longer be told apart from announced ones: raising the retention does not bring them back.
  return Math.max(origin, retentionHorizon(ctx.instance, ctx.stream.cursor), ctx.stream.forgotten ?? -Infinity);
}

/** Seen changes before this instant may be forgotten: no window reaches back that far. */
export function retentionHorizon(instance: InstanceConfig, cursor: Instant): Instant {
  return cursor - instance.seenRetentionSec * US_PER_SECOND;
}

/**
 * The provider's clock from its `Date` header, which is rounded down to the second: taken as the
 * end of that second, so that a window ends at or just after the provider's now, never short of
 * it (the cursor stops at `Date` itself, so reaching a little past is safe).
 */
function measureSkew(ctx: SweepContext, page: Page): void {
  if (!page.serverDate) return;
  const server = Date.parse(page.serverDate);
  if (Number.isNaN(server)) return;
  const skewMs = server + 1000 - Date.now();
  const previous = ctx.deps.skew.ms;
  ctx.deps.skew.ms = skewMs;
  ctx.deps.skew.mark = { serverMs: server, monoMs: performance.now() };
  if (Math.abs(skewMs) > SKEW_WARNING_MS && (previous === undefined || Math.abs(previous) <= SKEW_WARNING_MS)) {
    ctx.log.warn('provider clock is far from ours; windows are read in its time', { skewMs });
  }
}

/**
 * Reads one window part by part, committing as it goes. Returns where the first part that could
 * not be settled starts, if one could not: progress stops there, while the parts after it are
 * still read and their changes announced.
 */
async function readWindow(ctx: SweepContext, pass: Pass, window: PollWindow, source: SweepSource, summary: PollSummary, commits: CommitQueue, reach: Reach): Promise<Instant | undefined> {
  const { instance, resource, stream, deps, log } = ctx;
  let progressAt = -Infinity;
  let pages = 0;
  let unsettledAt: Instant | undefined;
  for await (const step of sweepWindow(window, source)) {
    if (step.unsettled) unsettledAt ??= step.from;
    const progress = step.covered === undefined || unsettledAt !== undefined ? undefined : progressOf(ctx, pass, step, reach);
    if (step.items.length === 0 && !progress) continue;
    const { changes, rejected, history } = detectChanges(step.items, resource, originInProviderTime(ctx), `page ${summary.pages + 1}`);
    for (const r of rejected) log.warn('record rejected', { position: r.position, reason: r.reason });
    const page = pageCommit(changes, rejected, {
      instanceName: instance.name,
      elementKey: instance.elementKey,
      objectType: resource.name,
      maxEvents: instance.delivery.maxEventsPerNotification,
      newId: deps.newId,
    });
    const advance = (): void => {
      if (progress?.cursor !== undefined) stream.cursor = progress.cursor;
      if (progress?.recheck !== undefined) stream.recheck = progress.recheck;
    };
    // Nothing to write but progress (most polls of a quiet fleet): it counts once the commits
    // before it have landed, and reaches the database with the next commit or the poll's end; a
    // crash before then reads an empty part again. A commit (an fsync) each cost more than all
    // the rest of such a poll.
    const landed = changes.length === 0 && rejected.length === 0
      ? commits.landed().then(advance)
      : deps.store.commitPage(stream.id, commits.chained(fenced(progress ? { ...page, progress } : page, deps.fence))).then((result) => {
        summary.fresh += result.fresh;
        summary.duplicates += result.duplicates;
        summary.notifications += result.notificationIds.length;
        if (result.notificationIds.length > 0) deps.onQueued();
        // Only what is committed counts as progress, in memory as in the database.
        advance();
      });
    await commits.push(landed);
    if (step.items.length > 0) {
      pages++;
      summary.pages++;
    }
    summary.records += step.items.length;
    summary.rejected += rejected.length;
    summary.history += history;
    if (pages > QUIET_PAGES && Date.now() - progressAt >= PROGRESS_EVERY_MS) {
      progressAt = Date.now();
      log.info('poll progress', { page: pages, records: summary.records, fresh: summary.fresh, at: isoFromInstant(stream.cursor) });
    }
  }
  return unsettledAt;
}

/**
 * How far a covered part moves the stream. The cursor stops at the provider's clock when the part
 * was read (its `Date`, never later than the read): a part that reached past it (our clock ahead,
 * a skew not yet measured, a cursor first set by our clock) is read again from there. So the
 * cursor may move back, to where the provider's clock really is; never past a change unread. A part read when it was already
 * older than the overlap needs no second read: the recheck moves with it when it reaches that far.
 */
function progressOf(ctx: SweepContext, pass: Pass, step: SweepStep, reach: Reach): StreamProgress {
  const { instance, deps } = ctx;
  const covered = step.covered!;
  // Without a `Date` header the provider's clock is taken to be where the plan put it.
  const readAt = step.serverDateMs === undefined ? reach.providerNow : instantFromMs(step.serverDateMs);
  const agedTo = Math.min(covered, readAt - instance.overlapSec * US_PER_SECOND);
  const skewMs = deps.skew.ms;
  // The provider's clock went back since the plan: what it stamps now lies before the cursor, by
  // as much. Timed by our monotonic clock, so that a step of ours does not count; after a restart
  // only the skew kept in the database is there to compare (a step of ours then costs a re-read).
  const mark = deps.skew.mark;
  const drop = reach.planMark !== undefined && mark !== undefined
    ? mark.monoMs - reach.planMark.monoMs - (mark.serverMs - reach.planMark.serverMs)
    : reach.planSkewMs !== undefined && skewMs !== undefined ? reach.planSkewMs - skewMs : 0;
  const stepBack = drop > STEP_BACK_MIN_MS ? Math.round(drop * 1000) : 0;
  // A part before the cursor (pollDelay reaches back) does not move it back; the provider's clock does.
  let cursor = Math.min(Math.max(reach.cursor, covered), readAt);
  let recheck = reach.recheck;
  // Parts are read oldest first: the recheck follows only from where it already stands.
  if (pass === 'recheck' || reach.recheck >= step.from!) recheck = Math.max(recheck, agedTo);
  if (stepBack > 0) {
    cursor = Math.min(cursor, reach.cursor - stepBack);
    recheck = Math.min(recheck, reach.recheckAtPlan - stepBack);
  }
  // What is rechecked has been read: the recheck never stands past the cursor.
  if (pass !== 'recheck') recheck = Math.min(recheck, cursor);
  reach.recheck = recheck;
  return pass === 'recheck' ? { recheck, skewMs } : { cursor, recheck, skewMs };
}
