import type { InstanceConfig, ResourceConfig } from '../config/types.js';
import { detectChanges } from '../detect/changes.js';
import { overlapWithSkewSec } from '../detect/skew.js';
import { type PollWindow, pollWindow } from '../detect/window.js';
import { pageCommit } from '../deliver/notification.js';
import type { Logger } from '../log.js';
import type { Authenticator } from '../poll/auth.js';
import { type FetchPolicy, fetchJson } from '../poll/fetchJson.js';
import type { GetText } from '../poll/httpClient.js';
import { type Page, readPages } from '../poll/pages.js';
import { firstPageUrl } from '../poll/requestUrl.js';
import type { Store, Stream } from '../store/types.js';
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
  /** Extra sweeps of a window whose records changed while it was read, before giving up for now. */
  maxResweeps: number;
  /** Last measured offset of the provider's clock from ours, ms (server − local); updated here. */
  skew: { ms: number | undefined };
  onRateLimited?: () => void;
};

export type PollSummary = {
  pages: number; records: number; fresh: number; duplicates: number; rejected: number; history: number;
  notifications: number; sweeps: number;
  /** The new cursor, or undefined when the window could not be settled and stays to be read again. */
  cursor: Instant | undefined;
};

/** A sweep longer than this many pages logs its progress at info: at once, then every few seconds. */
const QUIET_PAGES = 10;
const PROGRESS_EVERY_MS = 5000;
/** Pages whose commit may still be running while later pages are read. */
const COMMITS_IN_FLIGHT = 4;

/**
 * One poll of one stream: read the window page by page, commit each page's new changes and their
 * notifications in one transaction, and move the cursor only after the last page. A failure
 * anywhere leaves the cursor where it was, so the next poll reads the same window again; what was
 * already committed is then recognised as seen and not announced twice.
 *
 * Offset paging shifts when records change during a sweep: a record that leaves the window moves
 * every later record one place up, and one is skipped at the next page boundary. So after a
 * multi-page sweep we ask whether anything changed since (just before) the sweep began; if so the
 * window is swept again (duplicates are suppressed) until a sweep finds nothing the one before
 * it missed. Nothing changed, or one page: no second sweep.
 */
export async function pollStream(instance: InstanceConfig, resource: ResourceConfig, stream: Stream, deps: PollDeps, signal?: AbortSignal): Promise<PollSummary> {
  const log = deps.log.child({ instance: instance.name, resource: resource.name });
  const window = pollWindow({
    cursor: stream.cursor,
    now: instantFromMs(Date.now()),
    pollDelaySec: resource.pollDelaySec,
    overlapSec: overlapWithSkewSec(instance.overlapSec, deps.skew.ms),
    settleSec: instance.settleSec,
  });
  await deps.auth.headers(signal);
  const apiBase = (instance.elementKey === 'concur' ? deps.auth.apiBase() : undefined) ?? instance.baseUrl;
  const summary: PollSummary = { pages: 0, records: 0, fresh: 0, duplicates: 0, rejected: 0, history: 0, notifications: 0, sweeps: 0, cursor: undefined };
  const ctx: SweepContext = { instance, resource, stream, deps, log, apiBase, signal };

  for (;;) {
    const sweepStart = instantFromMs(Date.now());
    const freshBefore = summary.fresh;
    const pages = await sweep(ctx, window, summary);
    summary.sweeps++;
    // One page is read at once: nothing can shift under it.
    if (pages <= 1) break;
    // A second sweep that found nothing new confirms the first one skipped nothing.
    if (summary.sweeps > 1 && summary.fresh === freshBefore) break;
    const margin = Math.max(5 * US_PER_SECOND, Math.abs(deps.skew.ms ?? 0) * 1000 + US_PER_SECOND);
    if (!(await changedSince(ctx, sweepStart - margin))) break;
    if (summary.sweeps > deps.maxResweeps) {
      log.warn('records kept changing while the window was read; it stays open and is read again next poll', { sweeps: summary.sweeps });
      return summary;
    }
    log.debug('records changed while the window was read; reading it again so that none is skipped', { sweep: summary.sweeps + 1 });
  }
  await deps.store.completePoll(stream.id, window.end, Date.now());
  summary.cursor = window.end;
  return summary;
}

type SweepContext = {
  instance: InstanceConfig;
  resource: ResourceConfig;
  stream: Stream;
  deps: PollDeps;
  log: Logger;
  apiBase: string;
  signal: AbortSignal | undefined;
};

function pagesFrom(ctx: SweepContext, start: Instant, end: Instant | undefined, readAhead = true): AsyncGenerator<Page> {
  const { resource, instance, deps, apiBase, signal } = ctx;
  return readPages(firstPageUrl(resource, instance.elementKey, apiBase, start, end), {
    fetch: (u) => fetchJson(deps.getText, deps.auth, u, deps.fetchPolicy, signal, (status) => {
      if (status === 429) deps.onRateLimited?.();
    }),
    itemsPath: resource.itemsPath,
    nextPagePath: resource.nextPagePath,
    apiBase,
    maxPages: deps.maxPages,
    readAhead,
  });
}

/**
 * "Changed after we started" must be judged by the clock that stamped the records: a provider
 * 30 s behind stamps a change made just after our first start 30 s before it. The `Date` header
 * has one-second resolution, hence the margin.
 */
function originInProviderTime(ctx: SweepContext): Instant {
  const skewMs = ctx.deps.skew.ms;
  const origin = skewMs === undefined ? ctx.stream.origin : ctx.stream.origin + Math.round((skewMs - 1500) * 1000);
  // Changes older than the retention of seen rows can no longer be told apart from announced ones.
  return Math.max(origin, retentionHorizon(ctx.instance, ctx.stream.cursor));
}

/** Seen changes before this instant may be forgotten: no window reaches back that far. */
export function retentionHorizon(instance: InstanceConfig, cursor: Instant): Instant {
  return cursor - instance.seenRetentionSec * US_PER_SECOND;
}

/** The provider's clock from its `Date` header (one-second resolution: read as mid-second). */
function measureSkew(ctx: SweepContext, page: Page): void {
  if (!page.serverDate) return;
  const server = Date.parse(page.serverDate);
  if (Number.isNaN(server)) return;
  const skewMs = server + 500 - Date.now();
  const previous = ctx.deps.skew.ms;
  ctx.deps.skew.ms = skewMs;
  const limitMs = (ctx.instance.overlapSec * 1000) / 2;
  if (Math.abs(skewMs) > limitMs && (previous === undefined || Math.abs(previous) <= limitMs)) {
    ctx.log.warn('provider clock is far from ours; the poll window overlap is widened to match', { skewMs, overlapSeconds: ctx.instance.overlapSec });
  }
}

async function sweep(ctx: SweepContext, window: PollWindow, summary: PollSummary): Promise<number> {
  const { instance, resource, stream, deps, log } = ctx;
  log.debug('sweep started', { windowStart: isoFromInstant(window.start), windowEnd: isoFromInstant(window.end) });
  let pages = 0;
  let progressAt = -Infinity;
  // A page is committed while the next ones are fetched and read (the store may commit on its
  // own thread); commits land in page order, and the sweep ends only when all have landed.
  const commits: Promise<void>[] = [];
  try {
    for await (const page of pagesFrom(ctx, window.start, window.end)) {
      measureSkew(ctx, page);
      const { changes, rejected, history } = detectChanges(page.items, resource, originInProviderTime(ctx), `page ${page.index + 1}`);
      for (const r of rejected) log.warn('record rejected', { position: r.position, reason: r.reason });
      const commit = deps.store.commitPage(stream.id, pageCommit(changes, rejected, {
        instanceName: instance.name,
        elementKey: instance.elementKey,
        objectType: resource.name,
        maxEvents: instance.delivery.maxEventsPerNotification,
        newId: deps.newId,
      })).then((result) => {
        summary.fresh += result.fresh;
        summary.duplicates += result.duplicates;
        summary.notifications += result.notificationIds.length;
        if (result.notificationIds.length > 0) deps.onQueued();
      });
      // Awaited below, in order; a failure must not also surface as an unhandled rejection.
      commit.catch(() => {});
      commits.push(commit);
      pages++;
      summary.pages++;
      summary.records += page.items.length;
      summary.rejected += rejected.length;
      summary.history += history;
      if (commits.length >= COMMITS_IN_FLIGHT) await commits.shift();
      if (pages > QUIET_PAGES && Date.now() - progressAt >= PROGRESS_EVERY_MS) {
        progressAt = Date.now();
        log.info('poll progress', { page: pages, records: summary.records, fresh: summary.fresh });
      }
    }
  } finally {
    // Whatever ended the sweep, no commit is left running behind the poll's back.
    await Promise.allSettled(commits);
  }
  for (const commit of commits) await commit;
  return pages;
}

/** Whether any record changed at or after `since`, by the provider's own filter and our reading. */
async function changedSince(ctx: SweepContext, since: Instant): Promise<boolean> {
  const first = await pagesFrom(ctx, since, undefined, false).next();
  if (first.done) return false;
  return detectChanges(first.value.items, ctx.resource, since, 'probe').changes.length > 0;
}
