import { describe, expect, it } from 'vitest';
import { readConfig } from '../src/config/load.js';
import { confirms, grownWidth, splitWidth, type SweepPage, type SweepRead, type SweepSource, type SweepStep, sweepWindow } from '../src/poll/sweep.js';
import { windowResolutionUs } from '../src/poll/sweepSource.js';
import { instance } from './helpers/configs.js';
import { tempDir, writeJson } from './helpers/tmp.js';

const read = (versions: string[], repeated = false): SweepRead => ({ versions: new Set(versions), repeated, pages: 2, firstDateMs: undefined });

describe('confirming a sweep by the next', () => {
  it('holds when every version of the earlier sweep is in the later one', () => {
    expect(confirms(read(['a', 'b']), read(['a', 'b', 'c']))).toBe(true);
  });

  it('fails when a version read earlier is gone: it left while the sweep ran, and may have shifted a page', () => {
    expect(confirms(read(['a', 'b']), read(['b', 'c']))).toBe(false);
  });

  it('fails when the earlier sweep read a version twice: the order changed under it', () => {
    expect(confirms(read(['a', 'b'], true), read(['a', 'b']))).toBe(false);
  });
});

describe('cutting parts', () => {
  it('cuts an overflowing part at the stamp that fills 70 % of a page, when the page is the oldest records', () => {
    const stamps = Array.from({ length: 10 }, (_, i) => 1000 + i * 100);
    expect(splitWidth(1000, 5000, stamps, 1)).toBe(700);
  });

  it('halves a part whose page shows no stamp inside it, and never cuts below the resolution', () => {
    expect(splitWidth(0, 8000, [undefined, 9000], 1000)).toBe(4000);
    expect(splitWidth(0, 2000, [0, 0, 0], 1000)).toBe(1000);
  });

  it('always makes the part narrower', () => {
    expect(splitWidth(0, 3000, [2999, 2999, 2999], 1000)).toBeLessThan(3000);
  });

  it('grows after a part that fit, aiming at 70 % of a page, at most eightfold', () => {
    expect(grownWidth(1000, 0, 10, 1)).toBe(8000);
    expect(grownWidth(1000, 7, 10, 1)).toBe(1000);
    expect(grownWidth(1000, 14, 10, 1)).toBe(500);
    expect(grownWidth(1000, 14, 10, 1000)).toBe(1000);
  });
});

/** An in-memory provider: records by stamp (ties by id), offset pages of `pageSize`. */
function memorySource(stamps: number[], pageSize: number, res: number | 'open' | 'open, oldest first' = 1) {
  const records = stamps.map((s, i) => ({ id: `r${i}`, s })).sort((a, b) => a.s - b.s || (a.id < b.id ? -1 : 1));
  let requests = 0;
  const inRange = (start: number, end: number | undefined) => records.filter((r) => r.s >= start && (end === undefined || r.s <= end));
  const page = (start: number, end: number | undefined, offset: number): SweepPage => {
    requests++;
    const all = inRange(start, end);
    return { items: all.slice(offset, offset + pageSize), more: offset + pageSize < all.length, serverDateMs: undefined };
  };
  const source: SweepSource = {
    firstPage: async (start, end) => page(start, end, 0),
    async *pages(start, end) {
      for (let offset = 0; ; offset += pageSize) {
        const p = page(start, end, offset);
        yield p;
        if (!p.more) return;
      }
    },
    stampOf: (item) => (item as { s: number }).s,
    versionOf: (item) => `${(item as { id: string }).id}@${(item as { s: number }).s}`,
    pageSize,
    resolutionUs: typeof res === 'number' ? res : undefined,
    maxResweeps: 3,
    oldestFirst: res === 'open, oldest first',
  };
  return { source, records, requests: () => requests };
}

async function sweepAll(window: { start: number; end: number }, source: SweepSource): Promise<SweepStep[]> {
  const steps: SweepStep[] = [];
  for await (const step of sweepWindow(window, source)) steps.push(step);
  return steps;
}

function coverage(steps: SweepStep[]): [number, number][] {
  return steps.filter((s) => s.covered !== undefined).map((s) => [s.from!, s.covered!]);
}

describe('sweeping a window by parts', () => {
  it('reads every record, covers the window from start to end without a gap, and costs about two requests a page', async () => {
    const stamps = Array.from({ length: 100 }, (_, i) => 1_000 + i * 37 + (i % 7));
    const m = memorySource(stamps, 10);
    const steps = await sweepAll({ start: 0, end: 10_000 }, m.source);
    const got = new Set(steps.flatMap((s) => s.items.map(m.source.versionOf)));
    expect(got.size).toBe(100);
    const parts = coverage(steps);
    expect(parts[0]![0]).toBe(0);
    expect(parts.at(-1)![1]).toBe(10_000);
    for (let i = 1; i < parts.length; i++) expect(parts[i]![0]).toBe(parts[i - 1]![1]);
    expect(m.requests()).toBeLessThanOrEqual(25);
  });

  it('reads a window that fits one page with one request', async () => {
    const m = memorySource([5, 6, 7], 10);
    const steps = await sweepAll({ start: 0, end: 100 }, m.source);
    expect(m.requests()).toBe(1);
    expect(coverage(steps)).toEqual([[0, 100]]);
  });

  it('sweeps more records on one stamp than a page holds page by page, until a sweep is confirmed', async () => {
    const m = memorySource([50, 50, 50, 50, 50, 50, 50, 10, 90], 3, 10);
    const steps = await sweepAll({ start: 0, end: 100 }, m.source);
    expect(new Set(steps.flatMap((s) => s.items.map(m.source.versionOf))).size).toBe(9);
    expect(steps.some((s) => s.unsettled)).toBe(false);
    expect(coverage(steps).at(-1)![1]).toBe(100);
  });

  it('sweeps a window that cannot be closed at an end date whole, and confirms it by a second sweep', async () => {
    const m = memorySource([1, 2, 3, 4, 5, 6, 7], 3, 'open');
    const steps = await sweepAll({ start: 0, end: 100 }, m.source);
    expect(coverage(steps)).toEqual([[0, 100]]);
    // Three pages, twice.
    expect(m.requests()).toBe(6);
  });

  it('reads such a window from the last stamp of each page, one request each, when the provider returns the oldest first', async () => {
    const m = memorySource([1, 2, 3, 4, 5, 6, 7], 3, 'open, oldest first');
    const steps = await sweepAll({ start: 0, end: 100 }, m.source);
    expect(coverage(steps)).toEqual([[0, 2], [3, 4], [5, 100]]);
    expect(new Set(steps.flatMap((s) => s.items.map(m.source.versionOf))).size).toBe(7);
    expect(m.requests()).toBe(3);
  });

  it('sweeps the rest of such a window whole, confirmed by a second sweep, from a page that holds one stamp only', async () => {
    const m = memorySource([1, 2, 2, 2, 2, 3, 4], 3, 'open, oldest first');
    const steps = await sweepAll({ start: 0, end: 100 }, m.source);
    expect(coverage(steps).at(-1)![1]).toBe(100);
    expect(new Set(steps.flatMap((s) => s.items.map(m.source.versionOf))).size).toBe(7);
    expect(steps.some((s) => s.unsettled)).toBe(false);
  });
});

describe('a generic API not said to return the oldest first', () => {
  it('is swept whole even when its first page happens to look sorted: ordered by id, an old record changed late does not hide the next', async () => {
    // Ordered by id; stamps 5, 6, 20 on the first page look sorted, and 13 (stamp 8) follows.
    const records = [{ id: 10, s: 5 }, { id: 11, s: 6 }, { id: 12, s: 20 }, { id: 13, s: 8 }, { id: 14, s: 21 }];
    const select = (start: number) => records.filter((r) => r.s >= start).sort((a, b) => a.id - b.id);
    const page = (start: number, offset: number): SweepPage => {
      const all = select(start);
      return { items: all.slice(offset, offset + 3), more: offset + 3 < all.length, serverDateMs: undefined };
    };
    const source: SweepSource = {
      firstPage: async (start) => page(start, 0),
      async *pages(start) {
        for (let offset = 0; ; offset += 3) {
          const p = page(start, offset);
          yield p;
          if (!p.more) return;
        }
      },
      stampOf: (item) => (item as { s: number }).s,
      versionOf: (item) => `${(item as { id: number }).id}`,
      pageSize: 3,
      resolutionUs: undefined,
      maxResweeps: 3,
      oldestFirst: false,
    };
    const steps = await sweepAll({ start: 0, end: 30 }, source);
    expect(new Set(steps.flatMap((s) => s.items.map((i) => (i as { id: number }).id)))).toEqual(new Set([10, 11, 12, 13, 14]));
    expect(coverage(steps).at(-1)![1]).toBe(30);
  });
});

function resource(url: string, elementKey = 'concur') {
  const file = writeJson(tempDir(), 'c.json', instance({
    'event.poller.configuration': {
      reports: { url, idField: 'ID', datesConfiguration: { updatedDateField: 'LastModifiedDate', updatedDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS" } },
    },
  }, { element: { key: elementKey } }));
  const result = readConfig(file, { env: {} });
  expect(result.issues).toEqual([]);
  return result.config!.instances[0]!.resources[0]!;
}

describe('the resolution of a request\'s dates', () => {
  it('is a millisecond for Concur\'s pattern, a second for a pattern in seconds, and undefined when a request has no end date', () => {
    expect(windowResolutionUs(resource("/hubs/expense/reports?where=modifiedDateAfter='${date:yyyy-MM-dd'T'HH:mm:ss.SSS}'"), 'concur', 'https://h.example')).toBe(1000);
    expect(windowResolutionUs(resource("/hubs/expense/reports?where=modifiedDateAfter='${gmtDate:yyyy-MM-dd'T'HH:mm:ss}'"), 'concur', 'https://h.example')).toBe(1_000_000);
    expect(windowResolutionUs(resource('/items?since=${epoch}', 'generic'), 'generic', 'https://h.example')).toBeUndefined();
  });
});
