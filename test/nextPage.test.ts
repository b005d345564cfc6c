import { describe, expect, it } from 'vitest';
import { readPages } from '../src/poll/pages.js';
import { STATIC_TOKEN } from '../src/sim/concurSim.js';
import { harness } from './helpers/harness.js';

/**
 * Reads a chain of pages from a table of URL → next link (no network: what is tested is how each
 * link is resolved), and returns the URLs requested in order.
 */
async function follow(apiBase: string, firstUrl: string, links: Record<string, string | null>): Promise<string[]> {
  const requested: string[] = [];
  const source = {
    fetch: (url: string) => {
      requested.push(url);
      if (!(url in links)) return Promise.reject(new Error(`no page at ${url}`));
      return Promise.resolve({ body: { items: [], next: links[url] }, serverDate: undefined });
    },
    itemsPath: 'items',
    nextPagePath: 'next',
    apiBase,
    maxPages: 10,
  };
  for await (const _page of readPages(firstUrl, source)) {
    // Only the URLs matter here.
  }
  return requested;
}

describe('next-page links resolve against the page that held them, as a browser does', () => {
  const base = 'https://h.example/api/v2';

  it('a query-only link (?page=2) stays on the page it came from', async () => {
    const first = `${base}/items?page=1`;
    const requested = await follow(base, first, { [first]: '?page=2', [`${base}/items?page=2`]: null });
    expect(requested).toEqual([first, `${base}/items?page=2`]);
  });

  it('an absolute-path link (/api/v2/items?page=2) is taken from the origin, not appended to the base path', async () => {
    const first = `${base}/items?page=1`;
    const requested = await follow(base, first, { [first]: '/api/v2/items?page=2', [`${base}/items?page=2`]: null });
    expect(requested).toEqual([first, `${base}/items?page=2`]);
  });

  it('a path-relative link (items?page=2, ../v3/items) resolves against the page directory', async () => {
    const first = `${base}/items?page=1`;
    const requested = await follow(base, first, {
      [first]: 'items?page=2',
      [`${base}/items?page=2`]: '../v3/items?page=3',
      'https://h.example/api/v3/items?page=3': null,
    });
    expect(requested).toEqual([first, `${base}/items?page=2`, 'https://h.example/api/v3/items?page=3']);
  });

  it('absolute links are followed as they are', async () => {
    const first = `${base}/items?page=1`;
    const requested = await follow(base, first, { [first]: 'https://h.example/other?cursor=x', 'https://h.example/other?cursor=x': null });
    expect(requested).toEqual([first, 'https://h.example/other?cursor=x']);
  });

  it('still never leaves the provider: another origin, even protocol-relative, stops the poll', async () => {
    const first = `${base}/items`;
    await expect(follow(base, first, { [first]: '//evil.example/items?page=2' })).rejects.toThrow(
      /next page https:\/\/evil\.example\/items\?page=2 leaves https:\/\/h\.example: refusing to follow/,
    );
    await expect(follow(base, first, { [first]: 'http://h.example/api/v2/items?page=2' })).rejects.toThrow(/leaves https:\/\/h\.example/);
  });

  it('a relative link back to the page just read is a loop', async () => {
    const first = `${base}/items?page=1`;
    await expect(follow(base, first, { [first]: '?page=1' })).rejects.toThrow(/was already read: the provider is looping/);
  });
});

describe('relative next-page links from a generic API under a base URL with a path', () => {
  it.each([
    ['a query alone (?page=2)', 'query'],
    ['an absolute path (/generic/v1/reports?page=2)', 'path'],
  ] as const)('follows %s to the last page and announces every record', async (_name, genericNextLink) => {
    const h = await harness({}, { genericNextLink }, (base) => {
      const concur = base.instances[0]!;
      const generic = {
        ...concur,
        name: 'GenericUnderPath',
        element: { key: 'tickets-api' },
        // The path prefix is what a link resolved against the base URL would get wrong.
        provider: { baseUrl: `${concur.provider.baseUrl}/generic`, auth: { type: 'bearer', token: STATIC_TOKEN } },
        configuration: {
          ...concur.configuration,
          'event.poller.configuration': {
            reports: {
              url: "/v1/reports?updated_since=${date:yyyy-MM-dd'T'HH:mm:ss.SSSXXX}&per_page=2",
              idField: 'id',
              'pollbridge.items': 'data.items',
              'pollbridge.nextPage': 'links.next',
              datesConfiguration: { updatedDateField: 'updated_at', createdDateField: 'created_at' },
            },
          },
        },
      };
      return { ...base, instances: [generic] };
    });
    const reports = Array.from({ length: 5 }, () => h.sim.createReport());
    const { daemon } = h.daemon({ since: (Date.now() - 60_000) * 1000 });
    expect(await daemon.runOnce()).toMatchObject({ failedPolls: 0 });
    // Each sweep of the window starts at page 1 and follows the links.
    const pages = h.sim.listQueries.map((q) => q.get('page'));
    expect(pages.slice(0, 3)).toEqual([null, '2', '3']);
    expect(h.events().map((e) => e.objectId).sort()).toEqual(reports.map((r) => r.ID).sort());
  });
});
