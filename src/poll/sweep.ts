import type { Instant } from '../time/instant.js';

/** One answer of the provider: a page of records, whether more follow, and its clock (`Date`, ms). */
export type SweepPage = { items: unknown[]; more: boolean; serverDateMs: number | undefined };

export type SweepSource = {
  /**
   * One request for the records stamped in `[start, end]`, or from `start` on when `end` is
   * undefined: its first page only.
   */
  firstPage(start: Instant, end: Instant | undefined): Promise<SweepPage>;
  /** Every page of `[start, end]` by offset, or of everything from `start` when `end` is undefined. */
  pages(start: Instant, end: Instant | undefined): AsyncIterable<SweepPage>;
  /** A record's stamp, when it can be read: where to split a part that does not fit a page. */
  stampOf(item: unknown): Instant | undefined;
  /** One version of one record (its id and stamp): what must be read at least once. */
  versionOf(item: unknown): string;
  /** Records a page holds at most. */
  pageSize: number;
  /**
   * The finest step in which the request's dates can move (µs): a part is never split below it.
   * Undefined when a request cannot be closed at an end date: the window is then read whole.
   */
  resolutionUs: number | undefined;
  /** Sweeps of one part, beyond the first, before it is left unsettled for the next poll. */
  maxResweeps: number;
  /** Records come oldest first by stamp, as the operator says (windows without an end date). */
  oldestFirst: boolean;
};

/**
 * What a sweep yields, in time order: records to commit (`items`), and each time a stretch of the
 * window is known to be read completely, `covered`: every record that stood in `[from, covered]`
 * while it was read is among the items yielded so far. `unsettled`: the part at `from` could not
 * be confirmed complete; the sweep goes on with the parts after it, and the reader's progress
 * must stop at `from` (the next poll reads it again).
 */
export type SweepStep = {
  items: unknown[];
  /** The provider's clock when the records or the coverage were read (its `Date`, ms). */
  serverDateMs: number | undefined;
  from?: Instant;
  covered?: Instant;
  unsettled?: true;
};

/** Aim a part at this share of a page: a part that overflows costs a request. */
const FILL = 0.7;
/** A part after one that fit grows at most this many times wider. */
const MAX_GROWTH = 8;

/**
 * Reads a window so that no record that stood in it throughout is skipped, by construction.
 *
 * Offset paging shifts when a record leaves the window between two page requests (an update moves
 * it past the end, a delete removes it): every later record moves up one place and one is skipped
 * at the next page boundary, with nothing in the answers to show it. A single request cannot shift
 * under itself. So the window is cut by time into parts that each fit in one page: a part is read
 * with one request; if the answer says more pages follow, the part is cut narrower (at a stamp from
 * the page, or in half) and read again, until it fits. Parts are read oldest first and each one's
 * coverage is reported as it completes, so progress survives a failure or a restart part by part.
 *
 * A part that cannot be cut further (more records on one stamp than a page holds, or a provider
 * whose requests cannot be closed at an end date) is swept page by page, again and again, until a
 * sweep is confirmed by the next: see `confirms`.
 */
export async function* sweepWindow(window: { start: Instant; end: Instant }, source: SweepSource): AsyncGenerator<SweepStep> {
  const res = source.resolutionUs;
  if (res === undefined) {
    if (source.oldestFirst) yield* sweepOpenWindow(window, source);
    else yield* sweepUntilStable(window.start, undefined, window.end, source);
    return;
  }
  let lo = alignDown(window.start, res);
  let width = Math.max(res, window.end - lo);
  while (lo < window.end) {
    const hi = Math.min(window.end, Math.max(lo + res, alignDown(lo + width, res)));
    const page = await source.firstPage(lo, hi);
    if (!page.more) {
      yield { items: page.items, serverDateMs: page.serverDateMs, from: lo, covered: hi };
      width = grownWidth(hi - lo, page.items.length, source.pageSize, res);
      lo = hi;
      continue;
    }
    // The page is a true reading of part of the records: keep them, and narrow the part.
    yield { items: page.items, serverDateMs: page.serverDateMs };
    if (hi - lo <= res) {
      yield* sweepUntilStable(lo, hi, hi, source);
      lo = hi;
      width = res;
      continue;
    }
    width = splitWidth(lo, hi, page.items.map(source.stampOf), res);
  }
}

/**
 * A window whose requests cannot be closed at an end date (a generic API's `since`), from a
 * provider that returns the oldest records first: a request from `lo` answers with the oldest
 * records from `lo` on, so everything stamped before the last record on that one page is on it,
 * and the next request starts there (keyset paging, each step one request that cannot shift).
 * The order is the operator's word (`pollbridge.oldestFirst`): a page that happens to be sorted
 * proves nothing of the next (an API ordered by id can hold an old record changed late). A page
 * whose stamps do decrease, or that holds one stamp only, sends the rest of the window to the
 * page-by-page sweep.
 */
async function* sweepOpenWindow(window: { start: Instant; end: Instant }, source: SweepSource): AsyncGenerator<SweepStep> {
  let lo = window.start;
  for (;;) {
    const page = await source.firstPage(lo, undefined);
    if (!page.more) {
      yield { items: page.items, serverDateMs: page.serverDateMs, from: lo, covered: window.end };
      return;
    }
    const last = lastStampIfSorted(page.items, source);
    if (last === undefined || last <= lo) {
      yield { items: page.items, serverDateMs: page.serverDateMs };
      yield* sweepUntilStable(lo, undefined, window.end, source);
      return;
    }
    // Records on the last stamp may go on past the page: covered up to just before it.
    yield { items: page.items, serverDateMs: page.serverDateMs, from: lo, covered: Math.min(last - 1, window.end) };
    if (last > window.end) return;
    lo = last;
  }
}

/** The stamp of a page's last record, when every stamp can be read and none decreases. */
function lastStampIfSorted(items: readonly unknown[], source: SweepSource): Instant | undefined {
  let previous = -Infinity;
  for (const item of items) {
    const stamp = source.stampOf(item);
    if (stamp === undefined || stamp < previous) return undefined;
    previous = stamp;
  }
  return previous === -Infinity ? undefined : previous;
}

/**
 * Sweeps `[start, end]` page by page until one sweep is confirmed by the next (or is a single
 * page), then reports the part covered up to `coverTo`.
 */
async function* sweepUntilStable(start: Instant, end: Instant | undefined, coverTo: Instant, source: SweepSource): AsyncGenerator<SweepStep> {
  let previous: SweepRead | undefined;
  for (let sweep = 0; sweep <= source.maxResweeps; sweep++) {
    const read: SweepRead = { versions: new Set(), repeated: false, pages: 0, firstDateMs: undefined };
    for await (const page of source.pages(start, end)) {
      read.pages++;
      read.firstDateMs ??= page.serverDateMs;
      for (const item of page.items) {
        const v = source.versionOf(item);
        if (read.versions.has(v)) read.repeated = true;
        read.versions.add(v);
      }
      yield { items: page.items, serverDateMs: page.serverDateMs };
    }
    if (read.pages <= 1) {
      yield { items: [], serverDateMs: read.firstDateMs, from: start, covered: coverTo };
      return;
    }
    if (previous && confirms(previous, read)) {
      yield { items: [], serverDateMs: previous.firstDateMs, from: start, covered: coverTo };
      return;
    }
    previous = read;
  }
  yield { items: [], serverDateMs: undefined, from: start, unsettled: true };
}

export type SweepRead = {
  /** The record versions one sweep read. */
  versions: Set<string>;
  /** Whether one version came twice within the sweep (records moved under it, or ties in no stable order). */
  repeated: boolean;
  pages: number;
  firstDateMs: number | undefined;
};

/**
 * Whether `later`, a sweep of the same part made after `earlier`, proves that `earlier` skipped
 * nothing that stood throughout it.
 *
 * A skip needs a record to leave from before the page boundary while the sweep runs (records that
 * arrive only make a record come twice). The first record to leave that way had been read: it was
 * in `earlier`, and a version that has left never comes back, so it cannot be in `later`. So when
 * every version of `earlier` is in `later`, nothing left before its boundary, and `earlier` read
 * every record that stood throughout. This holds when the provider keeps one order between
 * requests; a sweep that read a version twice may have seen the order change, so it proves
 * nothing and must be confirmed by a clean one (one with no repeat read all the records there were).
 */
export function confirms(earlier: SweepRead, later: SweepRead): boolean {
  if (earlier.repeated) return false;
  for (const v of earlier.versions) if (!later.versions.has(v)) return false;
  return true;
}

/** The width of the next part after one of `width` held `count` records: aim at FILL of a page. */
export function grownWidth(width: number, count: number, pageSize: number, res: number): number {
  const factor = count === 0 ? MAX_GROWTH : Math.min(MAX_GROWTH, (FILL * pageSize) / count);
  return Math.max(res, alignDown(width * factor, res));
}

/**
 * A narrower width for a part `[lo, hi]` whose first page did not hold it. Providers that sort by
 * stamp return the oldest records first, so the stamp of the record at FILL of the page is a cut
 * that fits; the cut must also shrink the part whatever the order, else halve it.
 */
export function splitWidth(lo: Instant, hi: Instant, stamps: readonly (Instant | undefined)[], res: number): number {
  const inside = stamps.filter((s): s is Instant => s !== undefined && s > lo && s < hi).sort((a, b) => a - b);
  const cut = inside[Math.floor(inside.length * FILL)];
  const width = cut !== undefined ? cut - lo : (hi - lo) / 2;
  return Math.max(res, Math.min(alignDown(width, res), hi - lo - res));
}

function alignDown(t: number, res: number): number {
  return Math.floor(t / res) * res;
}
