import type { InstanceConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { Authenticator } from '../poll/auth.js';
import { type BodyParser, fetchDocument, parseJson } from '../poll/fetchJson.js';
import type { GetText } from '../poll/httpClient.js';
import type { FetchPolicy } from '../poll/retry.js';
import type { CalloutRow, Store } from '../store/types.js';
import { abortableSleep } from '../util/abortableSleep.js';
import { calloutEventKey, calloutNotification, type Fetched } from './event.js';
import { tokenMayGoTo } from './origins.js';
import { parseXml } from './xml.js';

/**
 * An instance whose receipts become events: its config, its callout stream, its token. Its
 * `config.callout` is undefined when the callout was turned off with receipts still waiting.
 */
export type CalloutInstance = { config: InstanceConfig; streamId: number; auth: Authenticator };

export type IngestOutcome = 'event' | 'duplicate' | 'fetch_failed';

export type IngestDeps = {
  store: Store;
  getText: GetText;
  fetchPolicy: FetchPolicy;
  log: Logger;
  newId: () => string;
  /** The running config's callout instances (a reload changes them). */
  instances: () => ReadonlyMap<string, CalloutInstance>;
  /** An event was queued: the deliverer can start. */
  onQueued: () => void;
  onOutcome?: (instance: string, outcome: IngestOutcome) => void;
  /** Receipts fetched at once. */
  concurrency?: number;
};

/** How long the ingester waits after the store failed, before it reads its work again. */
const STORE_RETRY_MS = 1_000;
/** Receipts are looked for this often even when nobody wakes the ingester (a missed wake costs no more). */
const IDLE_CHECK_MS = 30_000;

/** Concur's v1.1 APIs answer XML whatever `Accept` asks; v3 answers JSON. */
export const parseObject: BodyParser = (text, contentType) => {
  const xml = contentType ? /[/+]xml\b/i.test(contentType) : text.trimStart().startsWith('<');
  return xml ? parseXml(text) : parseJson(text, contentType);
};

/**
 * Turns committed callout receipts into events, apart from the answer to Concur: each receipt's
 * ObjectURI is fetched with its instance's token (the polling fetch's retry rules), and the
 * event and the receipt's completion are committed together. A receipt stays to be done until
 * then: a stop or a crash at any point leaves it for the next start, and the event key makes a
 * second try of the same receipt (or Concur's re-send of it) no second event. A fetch that fails
 * after its retries still makes an event, with the notification alone: never silence.
 */
export class CalloutIngester {
  private readonly inFlight = new Set<number>();
  private readonly controller = new AbortController();
  private wakeUp: (() => void) | undefined;
  private woken = false;
  private loop: Promise<void> | undefined;
  private readonly tasks = new Set<Promise<void>>();

  constructor(private readonly deps: IngestDeps) {}

  start(): void {
    this.loop ??= this.run();
  }

  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  /** Fetches in progress are abandoned (their receipts stay to be done); waits for commits in progress. */
  async stop(): Promise<void> {
    this.controller.abort();
    this.wakeUp?.();
    await this.loop;
    await Promise.allSettled([...this.tasks]);
  }

  private get concurrency(): number {
    return this.deps.concurrency ?? 8;
  }

  private async run(): Promise<void> {
    const signal = this.controller.signal;
    while (!signal.aborted) {
      this.woken = false;
      let rows: CalloutRow[] = [];
      const free = this.concurrency - this.inFlight.size;
      if (free > 0) {
        try {
          rows = await this.deps.store.calloutsToIngest([...this.deps.instances().keys()], free, this.inFlight);
        } catch (err) {
          this.deps.log.error('cannot read the callouts waiting for their event; trying again', { error: (err as Error).message });
          await abortableSleep(STORE_RETRY_MS, signal);
          continue;
        }
      }
      for (const row of rows) this.track(row);
      if (rows.length === free && free > 0) continue;
      // A stop during the read above found no wakeUp to call: it must not wait out the idle check.
      if (this.woken || signal.aborted) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, IDLE_CHECK_MS);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = undefined;
    }
  }

  private track(row: CalloutRow): void {
    this.inFlight.add(row.id);
    const task = this.ingest(row).catch((err: unknown) => {
      if (this.controller.signal.aborted) return;
      this.deps.log.error('callout not turned into an event yet; trying again', { instance: row.instance, receipt: row.id, error: (err as Error).message });
      return abortableSleep(STORE_RETRY_MS, this.controller.signal);
    }).finally(() => {
      this.inFlight.delete(row.id);
      this.tasks.delete(task);
      this.wake();
    });
    this.tasks.add(task);
  }

  private async ingest(row: CalloutRow): Promise<void> {
    const instance = this.deps.instances().get(row.instance);
    // Its instance left the config meanwhile: the receipt waits for it to come back.
    if (!instance) return;
    const log = this.deps.log.child({ instance: row.instance });
    const fetched = await this.fetch(row, instance, log);
    if (this.controller.signal.aborted) return;
    // A reload replaced (and closed) the authenticator the fetch used, or took the instance out:
    // the failure may be that alone, so the receipt is tried again as the running config says.
    if (fetched.error !== undefined && this.deps.instances().get(row.instance)?.auth !== instance.auth) return;
    const draft = calloutNotification({
      id: this.deps.newId(), instanceName: row.instance, elementKey: instance.config.elementKey, notification: row.notification,
      source: row.source, receivedAt: row.receivedAt, fetched,
    });
    const { queued } = await this.deps.store.completeCallout(row.id, instance.streamId, calloutEventKey(row.notification, fetched), draft);
    const outcome: IngestOutcome = !queued ? 'duplicate' : fetched.error !== undefined ? 'fetch_failed' : 'event';
    this.deps.onOutcome?.(row.instance, outcome);
    if (queued) this.deps.onQueued();
    log.info(queued ? 'callout queued as an event' : 'callout already announced: no second event', {
      receipt: row.id, notification: queued ? draft.id : undefined, objectUri: row.notification.objectUri, eventType: row.notification.eventType,
      ...(fetched.error !== undefined ? { fetchError: fetched.error } : {}),
    });
  }

  private async fetch(row: CalloutRow, instance: CalloutInstance, log: Logger): Promise<Fetched> {
    const url = row.notification.objectUri;
    if (!tokenMayGoTo(url, instance.config, instance.auth.apiBase())) {
      return { error: `ObjectURI is not on the instance's API host (${instance.config.baseUrl}): not fetched, so the token is not sent there` };
    }
    try {
      const { body } = await fetchDocument(this.deps.getText, instance.auth, url, this.deps.fetchPolicy, parseObject, this.controller.signal, undefined,
        (notice) => log.warn('callout object request failed; retrying', { ...notice, receipt: row.id }));
      return { object: body };
    } catch (err) {
      return { error: (err as Error).message };
    }
  }
}
