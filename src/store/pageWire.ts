import type { PageChange, PageCommit, Store } from './types.js';

/** Strings joined into one, cut again at `ends`. */
type TextColumn = { text: string; ends: Uint32Array };

/**
 * A page as it crosses to the database thread: its changes column by column, each text column
 * one string. Cloning three long strings and two typed arrays costs a fraction of cloning a
 * hundred small objects (measured: 0.04 ms against 0.27 ms a page), on both threads.
 */
export type PackedPage = Omit<PageCommit, 'changes'> & {
  objectIds: TextColumn;
  updated: Float64Array;
  events: TextColumn;
  records: TextColumn;
};

const cell = (c: TextColumn, i: number): string => c.text.slice(i === 0 ? 0 : c.ends[i - 1], c.ends[i]);

export function packPage(page: PageCommit): PackedPage {
  const { changes, ...rest } = page;
  const n = changes.length;
  const updated = new Float64Array(n);
  const objectIds = { text: '', ends: new Uint32Array(n) };
  const events = { text: '', ends: new Uint32Array(n) };
  const records = { text: '', ends: new Uint32Array(n) };
  // One pass, appending: the clone flattens each column once.
  for (let i = 0; i < n; i++) {
    const c = changes[i]!;
    updated[i] = c.updated;
    objectIds.text += c.objectId;
    objectIds.ends[i] = objectIds.text.length;
    events.text += c.event;
    events.ends[i] = events.text.length;
    records.text += c.record;
    records.ends[i] = records.text.length;
  }
  return { ...rest, objectIds, updated, events, records };
}

export function unpackPage(packed: PackedPage): PageCommit {
  const { objectIds, updated, events, records, ...rest } = packed;
  const changes: PageChange[] = Array.from(updated, (u, i) => ({
    objectId: cell(objectIds, i), updated: u, event: cell(events, i), record: cell(records, i),
  }));
  return { ...rest, changes };
}

/** A store call's arguments as they cross to the database thread: only a page is packed. */
export function toWire(method: keyof Store, args: unknown[]): unknown[] {
  return method === 'commitPage' ? [args[0], packPage(args[1] as PageCommit)] : args;
}

export function fromWire(method: keyof Store, args: unknown[]): unknown[] {
  return method === 'commitPage' ? [args[0], unpackPage(args[1] as PackedPage)] : args;
}
