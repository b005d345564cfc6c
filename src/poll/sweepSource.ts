import type { ResourceConfig } from '../config/types.js';
import { type Instant, US_PER_MS } from '../time/instant.js';
import { pathReader } from '../util/dotPath.js';
import type { FetchResult } from './fetchJson.js';
import { type Page, readPages } from './pages.js';
import { firstPageUrl } from './requestUrl.js';
import type { SweepPage, SweepSource } from './sweep.js';

export type SweepSourceDeps = {
  resource: ResourceConfig;
  elementKey: string;
  apiBase: string;
  fetch: (url: string) => Promise<FetchResult>;
  maxPages: number;
  maxResweeps: number;
  /** Called with every page's `Date` header, for the skew. */
  onPage?: (page: Page) => void;
};

/** Steps a request's dates can take, finest first: µs (`${epoch:us}`) to a day (`yyyy-MM-dd`). */
const STEPS_US = [1, 1000, 1_000_000, 60_000_000, 3_600_000_000, 86_400_000_000];
/** A midnight, UTC: every step above starts a new unit there. */
const PROBE_AT = Date.UTC(2001, 0, 1) * US_PER_MS;

/**
 * The finest step in which the request's dates move, or undefined when a request cannot be closed
 * at an end date (a generic URL has only its start macro; a Concur hub URL gets
 * `modifiedDateBefore`): found by asking the URL builder itself, so every macro and pattern counts.
 */
export function windowResolutionUs(resource: ResourceConfig, elementKey: string, apiBase: string): number | undefined {
  const url = (start: Instant, end?: Instant): string => firstPageUrl(resource, elementKey, apiBase, start, end);
  if (url(PROBE_AT, PROBE_AT) === url(PROBE_AT)) return undefined;
  return STEPS_US.find((step) => url(PROBE_AT) !== url(PROBE_AT + step));
}

/**
 * The pages of one resource as a sweep reads them. Each request reaches one millisecond past both
 * ends of its part (past its start only, without an end date): whether Concur's `modifiedDateAfter`/`Before` include their own instant is not
 * known, and a record on a boundary then comes in both neighbouring parts rather than in neither.
 */
export function sweepSource(deps: SweepSourceDeps): SweepSource {
  const { resource, elementKey, apiBase } = deps;
  const idOf = pathReader(resource.idField);
  const updatedOf = pathReader(resource.updatedDateField);
  const read = (url: string, readAhead: boolean): AsyncGenerator<Page> =>
    readPages(url, { fetch: deps.fetch, itemsPath: resource.itemsPath, nextPagePath: resource.nextPagePath, apiBase, maxPages: deps.maxPages, readAhead });
  const url = (start: Instant, end: Instant | undefined): string =>
    firstPageUrl(resource, elementKey, apiBase, start - US_PER_MS, end === undefined ? undefined : end + US_PER_MS);
  const toSweepPage = (page: Page): SweepPage => {
    deps.onPage?.(page);
    const date = page.serverDate === undefined ? NaN : Date.parse(page.serverDate);
    return { items: page.items, more: page.more, serverDateMs: Number.isNaN(date) ? undefined : date };
  };
  return {
    async firstPage(start, end) {
      const first = await read(url(start, end), false).next();
      if (first.done) throw new Error('a page source ended before its first page');
      return toSweepPage(first.value);
    },
    async *pages(start, end) {
      for await (const page of read(url(start, end), true)) yield toSweepPage(page);
    },
    stampOf: (item) => resource.parseUpdatedDate(updatedOf(item)),
    versionOf: (item) => `${String(idOf(item))}\u0000${JSON.stringify(updatedOf(item) ?? null)}`,
    pageSize: resource.pageSize,
    resolutionUs: windowResolutionUs(resource, elementKey, apiBase),
    maxResweeps: deps.maxResweeps,
    oldestFirst: resource.oldestFirst,
  };
}
