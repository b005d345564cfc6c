import type { ResourceConfig } from '../config/types.js';
import type { Instant } from '../time/instant.js';

/** Joins a configured path onto a base that may itself have a path (`https://host/api` + `/items`). */
function joinUrl(base: string, pathOrUrl: string): string {
  if (/^https?:\/\//i.test(pathOrUrl)) return pathOrUrl;
  return base.replace(/\/+$/, '') + '/' + pathOrUrl.replace(/^\/+/, '');
}

/** Splits a query string without treating `+` as a space: dates carry `+01:00`. */
function queryPairs(query: string): [string, string][] {
  return query
    .split('&')
    .filter(Boolean)
    .map((pair) => {
      const eq = pair.indexOf('=');
      const key = eq < 0 ? pair : pair.slice(0, eq);
      const value = eq < 0 ? '' : pair.slice(eq + 1);
      return [safeDecode(key), safeDecode(value)];
    });
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** `modifiedDateAfter='2026-11-22T07:00:00' and user='ALL'` → pairs. */
export function parseWhere(where: string): [string, string][] | undefined {
  const pairs: [string, string][] = [];
  for (const clause of where.split(/\s+and\s+/i)) {
    const m = /^\s*([A-Za-z][\w.]*)\s*=\s*'((?:[^']|'')*)'\s*$/.exec(clause);
    if (!m) return undefined;
    pairs.push([m[1]!, m[2]!.replaceAll("''", "'")]);
  }
  return pairs;
}

export class UrlMappingError extends Error {}

/**
 * The first page's URL for one poll. For the Concur element, AMPLIFY hub URLs
 * (`/hubs/expense/reports?where=modifiedDateAfter='…'`) become Concur's own API
 * (`/api/v3.0/expense/reports?modifiedDateAfter=…&user=ALL&limit=N`), closed at `windowEnd` with
 * `modifiedDateBefore` so that a sweep reads a fixed set of records; other URLs are paths on the
 * provider's base URL with the macros expanded and URL-encoded. Both ends of the window are written
 * as the provider's dates are (zone and pattern of the URL's date macro), the start rounded down
 * and the end up, so that the provider reads at least [windowStart, windowEnd].
 */
export function firstPageUrl(resource: ResourceConfig, elementKey: string, apiBase: string, windowStart: Instant, windowEnd?: Instant): string {
  const hub = /^\/?hubs\/([^?]+)(?:\?(.*))?$/.exec(resource.url);
  if (elementKey !== 'concur' || !hub) return joinUrl(apiBase, resource.urlTemplate.expand(windowStart, encodeURIComponent));
  const expanded = resource.urlTemplate.expand(windowStart, (v) => v);
  const [path, query = ''] = expanded.replace(/^\/?hubs\//, '').split(/\?(.*)/s) as [string, string?];
  const params = new URLSearchParams();
  for (const [key, value] of queryPairs(query)) {
    if (key === 'where') {
      const pairs = parseWhere(value);
      if (!pairs) throw new UrlMappingError(`cannot map where clause "${value}" of ${resource.name}: expected field='value' [and …]`);
      for (const [k, v] of pairs) params.set(k, v);
    } else {
      params.set(key, value);
    }
  }
  if (!params.has('user')) params.set('user', 'ALL');
  if (windowEnd !== undefined && !params.has('modifiedDateBefore')) {
    params.set('modifiedDateBefore', resource.urlTemplate.providerDates.atOrAfter(windowEnd));
  }
  params.set('limit', String(Math.min(resource.pageSize, 100)));
  const apiPath = path.startsWith('expense/') ? `api/v3.0/${path}` : path;
  return `${joinUrl(apiBase, apiPath)}?${params.toString()}`;
}
