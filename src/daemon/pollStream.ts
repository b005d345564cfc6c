import type { Got } from 'got';
import type { InstanceConfig, ResourceConfig } from '../config/types.js';
import { detectChanges } from '../detect/changes.js';
import { pollWindow } from '../detect/window.js';
import { buildNotifications } from '../deliver/notification.js';
import type { Logger } from '../log.js';
import type { Authenticator } from '../poll/auth.js';
import { type FetchPolicy, fetchJson } from '../poll/fetchJson.js';
import { readPages } from '../poll/pages.js';
import { firstPageUrl } from '../poll/requestUrl.js';
import type { Store, Stream } from '../store/types.js';
import { instantFromMs, isoFromInstant } from '../time/instant.js';

export type PollDeps = {
  store: Store;
  http: Got;
  auth: Authenticator;
  log: Logger;
  fetchPolicy: FetchPolicy;
  newId: () => string;
  /** Called after a page queued notifications, so delivery starts without waiting for the poll. */
  onQueued: () => void;
  maxPages: number;
};

export type PollSummary = { pages: number; records: number; fresh: number; duplicates: number; rejected: number; history: number; notifications: number; cursor: number };

/**
 * One poll of one stream: read the window page by page, commit each page's new changes and their
 * notifications in one transaction, and move the cursor only after the last page. A failure
 * anywhere leaves the cursor where it was, so the next poll reads the same window again; what was
 * already committed is then recognised as seen and not announced twice.
 */
export async function pollStream(instance: InstanceConfig, resource: ResourceConfig, stream: Stream, deps: PollDeps, signal?: AbortSignal): Promise<PollSummary> {
  const window = pollWindow({
    cursor: stream.cursor,
    now: instantFromMs(Date.now()),
    pollDelaySec: resource.pollDelaySec,
    overlapSec: instance.overlapSec,
    settleSec: instance.settleSec,
  });
  await deps.auth.headers(signal);
  const apiBase = (instance.elementKey === 'concur' ? deps.auth.apiBase() : undefined) ?? instance.baseUrl;
  const url = firstPageUrl(resource, instance.elementKey, apiBase, window.start);
  const log = deps.log.child({ instance: instance.name, resource: resource.name });
  log.debug('poll started', { windowStart: isoFromInstant(window.start), windowEnd: isoFromInstant(window.end), url });
  const summary: PollSummary = { pages: 0, records: 0, fresh: 0, duplicates: 0, rejected: 0, history: 0, notifications: 0, cursor: window.end };
  const pages = readPages(url, {
    fetch: (u) => fetchJson(deps.http, deps.auth, u, deps.fetchPolicy, signal),
    itemsPath: resource.itemsPath,
    nextPagePath: resource.nextPagePath,
    apiBase,
    maxPages: deps.maxPages,
  });
  for await (const page of pages) {
    const { changes, rejected, history } = detectChanges(page.items, resource, stream.origin, `page ${page.index + 1}`);
    for (const r of rejected) log.warn('record rejected', { position: r.position, reason: r.reason });
    const result = await deps.store.commitPage(
      stream.id,
      changes,
      (fresh) => buildNotifications(fresh.map((i) => changes[i]!), {
        instanceName: instance.name,
        elementKey: instance.elementKey,
        objectType: resource.name,
        maxEvents: instance.delivery.maxEventsPerNotification,
        newId: deps.newId,
      }),
      rejected.map((r) => ({ position: r.position, reason: r.reason, record: JSON.stringify(r.record) ?? 'undefined' })),
    );
    summary.pages++;
    summary.records += page.items.length;
    summary.fresh += result.fresh;
    summary.duplicates += result.duplicates;
    summary.rejected += rejected.length;
    summary.history += history;
    summary.notifications += result.notificationIds.length;
    if (result.notificationIds.length > 0) deps.onQueued();
    if (page.index > 0 && page.index % 50 === 0) log.info('poll progress', { pages: summary.pages, records: summary.records, fresh: summary.fresh });
  }
  await deps.store.completePoll(stream.id, window.end, Date.now());
  return summary;
}
