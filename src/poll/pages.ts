import { getPath } from '../util/dotPath.js';
import { type FetchResult, UpstreamError } from './fetchJson.js';

/** `more`: the page links to a next one. */
export type Page = { index: number; url: string; items: unknown[]; serverDate: string | undefined; more: boolean };

export type PageSource = {
  fetch: (url: string) => Promise<FetchResult>;
  itemsPath: string;
  nextPagePath: string;
  /** Its origin is the only one next-page links may lead to. */
  apiBase: string;
  /** A chain longer than this is a provider bug, not data. */
  maxPages: number;
  /** Request the next page while this one is processed (default); off when only one is wanted. */
  readAhead?: boolean;
};

/**
 * Follows next-page links to the end, one page read ahead. A relative link resolves against the
 * page that held it, as a browser would (`?page=2` stays on that page's path). A link back to a
 * page already read, a link to another origin (our token must not leave the provider), or an
 * endless chain stop the poll with an error rather than loop or leak.
 */
export async function* readPages(firstUrl: string, source: PageSource): AsyncGenerator<Page> {
  const visited = new Set<string>();
  const origin = new URL(source.apiBase).origin;
  const fetchPage = (url: string): Promise<FetchResult> => {
    // Resolved links come back normalised (`'` as `%27`): the first URL must compare in that form.
    visited.add(new URL(url).href);
    const pending = source.fetch(url);
    // Read ahead may be abandoned when the caller stops early; its failure then belongs to no one.
    pending.catch(() => {});
    return pending;
  };
  const readAhead = source.readAhead ?? true;
  let url: string | undefined = firstUrl;
  let next: Promise<FetchResult> | undefined = fetchPage(firstUrl);
  for (let index = 0; url !== undefined && next !== undefined; index++) {
    const { body, serverDate } = await next;
    const items = getPath(body, source.itemsPath);
    if (!Array.isArray(items)) {
      const where = source.itemsPath ? `"${source.itemsPath}"` : 'the top level';
      throw new UpstreamError(`page ${index + 1} from ${url} has no array at ${where}`);
    }
    const nextUrl = nextPageUrl(body, source, origin, visited, index, url);
    if (nextUrl !== undefined && index + 1 >= source.maxPages) throw new UpstreamError(`more than ${source.maxPages} pages from ${firstUrl}: stopping`);
    // The next page is requested before this one is processed: the provider works while we do.
    next = readAhead && nextUrl !== undefined ? fetchPage(nextUrl) : undefined;
    yield { index, url, items, serverDate, more: nextUrl !== undefined };
    if (!readAhead && nextUrl !== undefined) next = fetchPage(nextUrl);
    url = nextUrl;
  }
}

function nextPageUrl(body: unknown, source: PageSource, origin: string, visited: Set<string>, index: number, url: string): string | undefined {
  const next = source.nextPagePath ? getPath(body, source.nextPagePath) : undefined;
  if (next === undefined || next === null || next === '') return undefined;
  if (typeof next !== 'string') throw new UpstreamError(`page ${index + 1} from ${url}: "${source.nextPagePath}" is not a URL`);
  let resolved: string;
  try {
    resolved = new URL(next, url).href;
  } catch (err) {
    throw new UpstreamError(`page ${index + 1} from ${url}: next page "${next.slice(0, 200)}" is not a URL`, undefined, { cause: err });
  }
  if (new URL(resolved).origin !== origin) throw new UpstreamError(`page ${index + 1}: next page ${resolved} leaves ${origin}: refusing to follow`);
  if (visited.has(resolved)) throw new UpstreamError(`page ${index + 1}: next page ${resolved} was already read: the provider is looping`);
  return resolved;
}
