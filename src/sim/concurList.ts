import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseIso } from '../time/dateParser.js';
import { msFromInstant } from '../time/instant.js';
import { zoneOffsetMs } from '../time/zone.js';

/**
 * What Concur's v3 list endpoints share, for the simulators: zone-less dates, the
 * modifiedDateAfter/Before window, `limit` with an opaque offset, absolute `NextPage` links.
 */

/**
 * Concur's dates: wall clock without a zone (UTC unless the simulator is given one), and as many
 * fraction digits as needed (`2013-09-02T19:46:01.98`), which is exactly what pollbridge must read right.
 */
export function concurDate(ms: number, zone = 'UTC'): string {
  const iso = new Date(ms + zoneOffsetMs(zone, ms)).toISOString().slice(0, 23);
  return iso.replace(/\.?0+$/, '');
}

/** A zone-less Concur date read in `zone`, ms; a wall-clock time that occurs twice is the earlier. */
export function parseConcurDate(value: string, zone = 'UTC'): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$/.test(value)) return undefined;
  const at = parseIso(value, zone);
  return at === undefined ? undefined : msFromInstant(at);
}

/** A record as the window sees it: its id and when it last changed (ms). */
export type Versioned = { ID: string; modifiedMs: number };

const byChange = (a: Versioned, b: Versioned): number => a.modifiedMs - b.modifiedMs || (a.ID < b.ID ? -1 : a.ID > b.ID ? 1 : 0);

/**
 * Records by (modifiedMs, ID), the order Concur's offset paging walks: a window is a range of
 * it and a page a slice, so a sweep of 200k stays cheap.
 */
export class ChangeOrder<T extends Versioned> {
  private readonly list: T[] = [];

  get length(): number {
    return this.list.length;
  }

  /** First index for which `isAfter` holds. */
  private firstIndex(isAfter: (r: T) => boolean): number {
    let lo = 0;
    let hi = this.list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (isAfter(this.list[mid]!)) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  insert(record: T): void {
    const last = this.list[this.list.length - 1];
    if (!last || byChange(last, record) < 0) this.list.push(record);
    else this.list.splice(this.firstIndex((r) => byChange(r, record) > 0), 0, record);
  }

  /** Call before the record's modifiedMs changes: it is found by its place in the order. */
  remove(record: T): void {
    this.list.splice(this.firstIndex((r) => byChange(r, record) >= 0), 1);
  }

  /** The index range [lo, hi) of the records changed after `after` and before `before` (ms, exclusive). */
  range(after: number | undefined, before: number | undefined): [number, number] {
    const lo = after === undefined ? 0 : this.firstIndex((r) => r.modifiedMs > after);
    const hi = before === undefined ? this.list.length : this.firstIndex((r) => r.modifiedMs >= before);
    return [lo, hi];
  }

  slice(from: number, to: number): T[] {
    return this.list.slice(from, to);
  }
}

/** A list request's window and page, as Concur reads them. */
export type ListQuery = { limit: number; afterMs: number | undefined; beforeMs: number | undefined; offset: number };

/** The window and page of a list request, or the message of Concur's 400 for it. */
export function readListQuery(q: URLSearchParams, zone: string): ListQuery | { error: string } {
  const limit = Number(q.get('limit') ?? '25');
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) return { error: 'limit must be between 1 and 100' };
  const after = q.get('modifiedDateAfter');
  const before = q.get('modifiedDateBefore');
  const afterMs = after === null ? undefined : parseConcurDate(after, zone);
  const beforeMs = before === null ? undefined : parseConcurDate(before, zone);
  if ((after !== null && afterMs === undefined) || (before !== null && beforeMs === undefined)) {
    return { error: 'modifiedDateAfter/modifiedDateBefore must be yyyy-MM-dd or yyyy-MM-ddTHH:mm:ss' };
  }
  const offset = q.get('offset') ? Number(Buffer.from(q.get('offset')!, 'base64url').toString()) : 0;
  return { limit, afterMs, beforeMs, offset };
}

/** The absolute `NextPage` link to the page at `offset` of the same window. */
export function nextPageLink(url: URL, offset: number): string {
  const next = new URL(url);
  next.searchParams.set('offset', Buffer.from(String(offset)).toString('base64url'));
  return next.toString();
}

/** A v3 list answer from records already serialised (each written once, when it changed). */
export function listBody(itemsJson: string[], nextPage: string | null): string {
  return `{"Items":[${itemsJson.join(',')}],"NextPage":${JSON.stringify(nextPage)}}`;
}

/** The requests of a simulator: `base` is the URL of the port it came in on. */
export type SimHandler = (req: http.IncomingMessage, res: http.ServerResponse, base: string) => Promise<void>;

/** A server on `host:port` (0: any free port) whose handler's failures answer 500. */
export async function listenSim(handler: SimHandler, port: number, host: string): Promise<{ server: http.Server; base: string }> {
  let base = '';
  const server = http.createServer((req, res) => {
    handler(req, res, base).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ Message: String(err) }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const { address, port: bound } = server.address() as AddressInfo;
  base = `http://${address.includes(':') ? `[${address}]` : address}:${bound}`;
  return { server, base };
}

export async function closeSim(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

export function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/**
 * A resource of the Concur element as AMPLIFY configures it: the hub URL of `path`
 * (`expense/reports`) with the window's start, and Concur's zone-less date fields.
 */
export function concurHubResource(path: string) {
  return {
    url: `/hubs/${path}?where=modifiedDateAfter='\${date:yyyy-MM-dd'T'HH:mm:ss.SSS}'`,
    idField: 'ID',
    datesConfiguration: {
      updatedDateField: 'LastModifiedDate',
      updatedDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS",
      createdDateField: 'CreateDate',
      createdDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS",
    },
  };
}
