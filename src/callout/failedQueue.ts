import type { Got } from 'got';
import type { Logger } from '../log.js';
import { apiBaseOf } from '../poll/auth.js';
import { fetchDocument } from '../poll/fetchJson.js';
import { describeNetworkError, type GetText } from '../poll/httpClient.js';
import type { FetchPolicy } from '../poll/retry.js';
import type { CalloutReceipt, Store } from '../store/types.js';
import type { CalloutInstance } from './ingest.js';
import { parseFailedList } from './notificationXml.js';
import { tokenMayGoTo } from './origins.js';

export const FAILED_LIST_PATH = '/api/platform/notifications/v1.0/notification?status=failed';

export type FailedQueueDeps = {
  store: Store;
  http: Got;
  getText: GetText;
  fetchPolicy: FetchPolicy;
  log: Logger;
  /** Receipts were committed: the ingester has work. */
  onReceived: () => void;
};

export type FailedQueueRound = { listed: number; received: number; deleted: number; problems: number };

/**
 * One round of Concur's failed-notification queue for one instance: what Concur could not
 * deliver to us (we were down, or our answers were lost) is read, committed as receipts like a
 * push, and only then deleted at Concur. A crash between the commit and the DELETE leaves the
 * item listed: read again, it is the same receipt (its NotificationURI), and the DELETE is sent
 * again. Receipts whose DELETE failed before are deleted again at each round.
 */
export async function drainFailedQueue(instance: CalloutInstance, deps: FailedQueueDeps, signal: AbortSignal): Promise<FailedQueueRound> {
  const name = instance.config.name;
  const log = deps.log.child({ instance: name });
  const apiBase = apiBaseOf(instance.config, instance.auth);
  const listUrl = `${apiBase.replace(/\/+$/, '')}${FAILED_LIST_PATH}`;
  let problems: string[] = [];
  const { body } = await fetchDocument(deps.getText, instance.auth, listUrl, deps.fetchPolicy, (text, contentType) => {
    const list = parseFailedList(text, contentType);
    problems = list.problems;
    return list.items;
  }, signal, undefined, (notice) => log.warn("Concur's failed-notification list request failed; retrying", { ...notice }));
  for (const problem of problems) log.warn("an item of Concur's failed-notification list cannot be read; it is left there", { problem });
  const items = body as ReturnType<typeof parseFailedList>['items'];
  const now = Date.now();
  const receipts: CalloutReceipt[] = items.map((item) => ({
    instance: name, source: 'failed-queue', body: item.body, notification: item.notification, notificationUri: item.notificationUri, receivedAt: now,
  }));
  const recorded = receipts.length > 0 ? await deps.store.recordCallouts(receipts) : [];
  const received = recorded.filter((r) => !r.duplicate).length;
  if (received > 0) deps.onReceived();
  const listedNow = new Set(items.map((item) => item.notificationUri));
  let deleted = 0;
  for (const { id, notificationUri } of await deps.store.calloutsToDelete(name)) {
    if (signal.aborted) break;
    if (await deleteAtConcur(instance, notificationUri, listedNow.has(notificationUri), deps, signal, log)) {
      await deps.store.markCalloutDeleted(id, Date.now());
      deleted++;
    }
  }
  if (items.length > 0 || deleted > 0 || problems.length > 0) {
    log.info("Concur's failed-notification queue read", { listed: items.length, received, deleted, problems: problems.length });
  }
  return { listed: items.length, received, deleted, problems: problems.length };
}

/**
 * True once Concur no longer holds it: deleted now (200/204) or before (404, or Concur's 400 for
 * a notification it does not have, when this round's list no longer names it: our earlier DELETE
 * was applied but its answer was lost to a stop or a crash).
 */
async function deleteAtConcur(
  instance: CalloutInstance, uri: string, listedNow: boolean, deps: FailedQueueDeps, signal: AbortSignal, log: Logger,
): Promise<boolean> {
  if (!tokenMayGoTo(uri, instance.config, instance.auth.apiBase())) {
    log.warn("a failed notification's NotificationURI is not on the instance's API host: not deleted, so the token is not sent there", { notificationUri: uri });
    return false;
  }
  try {
    const headers = { accept: 'application/json', ...(await instance.auth.headers(signal)) };
    const response = await deps.http(uri, { method: 'DELETE', headers, signal });
    if (response.statusCode === 401) instance.auth.invalidate();
    if (response.statusCode < 300 || response.statusCode === 404 || (response.statusCode === 400 && !listedNow)) return true;
    log.warn('Concur refused to delete a failed notification; trying again next round', { notificationUri: uri, status: response.statusCode });
  } catch (err) {
    if (!signal.aborted) log.warn('could not delete a failed notification at Concur; trying again next round', { notificationUri: uri, error: describeNetworkError(err) });
  }
  return false;
}
