import http from 'node:http';
import https from 'node:https';

/** Where the simulator, as Concur, sends its Event Notification callouts: an application connector. */
export type SimCalloutTarget = {
  /** The connector's full notify URL, e.g. `http://127.0.0.1:PORT/concur/v1.0/notify` (http or https). */
  url: string;
  username: string;
  password: string;
  /** The waits before each retry, ms (default 500, 1000, 2000, 4000); once used up, the notification is failed. */
  retryDelaysMs?: number[];
  /** What ObjectURI names: the v1.1 report details (default, as Concur's documented example) or the v3 report. */
  objectUri?: 'v1.1' | 'v3';
  /** PEM certificate(s) to trust for an https URL besides the public CAs (a test's self-signed one). */
  ca?: string;
  /** One attempt's limit, ms (default 10000): a connector that does not answer in time counts as a failure. */
  timeoutMs?: number;
  /** Attempts in flight at once (default 16): Concur's queue sends in parallel, but not without bound. */
  maxInFlight?: number;
};

export type SimNotificationState = 'queued' | 'delivered' | 'failed';

export type SimNotification = {
  id: string;
  reportId: string;
  eventType: string;
  objectType: 'EXPRPT';
  objectUri: string;
  /** `yyyy-MM-dd`, as the pushed body carries it. */
  eventDate: string;
  /** `yyyy-MM-ddTHH:mm:ss`, as the failed list shows it. */
  eventDateTime: string;
  /** The body, fixed when queued: every retry sends these bytes. */
  xml: string;
  tries: number;
  state: SimNotificationState;
};

export type SimCalloutAttempt = { id: string; status: number | undefined; error?: string };

export const SUBMIT_EVENT_TYPE = 'Report Entered Expense Report Workflow Step - SUBMIT';
export const NOTIFICATION_NAMESPACE = 'http://www.concursolutions.com/api/notification/2012/06';
const DEFAULT_RETRY_DELAYS_MS = [500, 1000, 2000, 4000];

export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** The pushed body, as Concur documents it. */
export function notificationXml(n: { eventType: string; objectType: string; objectUri: string; eventDate: string }): string {
  return `<Notification><EventType>${escapeXml(n.eventType)}</EventType><ObjectType>${escapeXml(n.objectType)}</ObjectType>` +
    `<ObjectURI>${escapeXml(n.objectUri)}</ObjectURI><EventDateTime>${escapeXml(n.eventDate)}</EventDateTime><Context/></Notification>`;
}

/** One entry of the failed-notification list, in the field order of Concur's JSON example. */
export function failedListEntry(n: SimNotification, notificationUri: string) {
  return { Context: '', EventDateTime: n.eventDateTime, EventType: n.eventType, NotificationURI: notificationUri, ObjectType: n.objectType, ObjectURI: n.objectUri };
}

export function failedListXml(entries: ReturnType<typeof failedListEntry>[]): string {
  const one = (e: ReturnType<typeof failedListEntry>): string =>
    `<Notification><Context/><EventDateTime>${escapeXml(e.EventDateTime)}</EventDateTime><EventType>${escapeXml(e.EventType)}</EventType>` +
    `<NotificationURI>${escapeXml(e.NotificationURI)}</NotificationURI><ObjectType>${escapeXml(e.ObjectType)}</ObjectType>` +
    `<ObjectURI>${escapeXml(e.ObjectURI)}</ObjectURI></Notification>`;
  return `<NotificationList xmlns="${NOTIFICATION_NAMESPACE}">${entries.map(one).join('')}</NotificationList>`;
}

/** The wait before the retry that follows try number `tries` (1-based), or undefined: no retry left. */
export function retryDelayMs(delays: readonly number[], tries: number): number | undefined {
  return delays[tries - 1];
}

/** Checks a target given by another process, naming the field that is wrong. */
export function parseCalloutTarget(value: unknown): SimCalloutTarget | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('callout target: expected a JSON object');
  const t = value as Record<string, unknown>;
  if (Object.keys(t).length === 0) return undefined;
  for (const field of ['url', 'username', 'password'] as const) {
    if (typeof t[field] !== 'string') throw new Error(`callout target: ${field} must be a string`);
  }
  let url: URL;
  try {
    url = new URL(t.url as string);
  } catch {
    throw new Error('callout target: url is not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('callout target: url must be http or https');
  const delays = t.retryDelaysMs;
  if (delays !== undefined && (!Array.isArray(delays) || !delays.every((d) => Number.isInteger(d) && (d as number) >= 0))) {
    throw new Error('callout target: retryDelaysMs must be an array of whole milliseconds ≥ 0');
  }
  if (t.objectUri !== undefined && t.objectUri !== 'v1.1' && t.objectUri !== 'v3') throw new Error('callout target: objectUri must be "v1.1" or "v3"');
  if (t.ca !== undefined && typeof t.ca !== 'string') throw new Error('callout target: ca must be a PEM string');
  for (const field of ['timeoutMs', 'maxInFlight'] as const) {
    const v = t[field];
    if (v !== undefined && (!Number.isInteger(v) || (v as number) < 1)) throw new Error(`callout target: ${field} must be a whole number ≥ 1`);
  }
  return t as SimCalloutTarget;
}

/**
 * Concur's notification queue for one company: notifications wait here until the connector
 * answers 200, are retried on anything else after the target's delays, and end failed (kept for
 * the failed-notification API) when the delays are used up.
 */
export class CalloutQueue {
  private target: SimCalloutTarget | undefined;
  private readonly items = new Map<string, SimNotification>();
  /** Queued ids whose next try is due, oldest first. */
  private readonly ready: string[] = [];
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Ids of the notifications being sent now. */
  private readonly inFlight = new Set<string>();
  /** Every open request (sends and connection tests), for stop() to cancel. */
  private readonly requests = new Set<http.ClientRequest>();
  private waiters: (() => void)[] = [];
  readonly attempts: SimCalloutAttempt[] = [];

  setTarget(target: SimCalloutTarget | undefined): void {
    this.target = target;
    if (target) {
      this.pump();
      return;
    }
    // Without a connector nothing is sent: waiting retries are parked, to go out to the next one.
    for (const [id, timer] of this.timers) {
      clearTimeout(timer);
      this.ready.push(id);
    }
    this.timers.clear();
    this.settleIfIdle();
  }

  get enabled(): boolean {
    return this.target !== undefined;
  }

  get objectUriVersion(): 'v1.1' | 'v3' {
    return this.target?.objectUri ?? 'v1.1';
  }

  enqueue(notification: SimNotification): void {
    this.items.set(notification.id, notification);
    this.ready.push(notification.id);
    this.pump();
  }

  list(state: SimNotificationState): SimNotification[] {
    return [...this.items.values()].filter((n) => n.state === state).map((n) => ({ ...n }));
  }

  /** Deletes a failed notification (Concur's DELETE); false when there is none by that id. */
  removeFailed(id: string): boolean {
    if (this.items.get(id)?.state !== 'failed') return false;
    this.items.delete(id);
    return true;
  }

  /** Resolves when nothing is in flight or waiting for a retry. */
  settled(): Promise<void> {
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Concur's "Test Connection": the connector's status for its test route with the target's credentials. */
  testConnection(): Promise<number> {
    const target = this.target;
    if (!target) return Promise.reject(new Error('no callout target set'));
    return this.start(target, new URL('/system/v1.0/testconnection', target.url), 'GET', undefined).then((r) => r.status);
  }

  /** Cancels every timer and request; their notifications stay queued, as if never tried now. */
  stop(): void {
    for (const id of this.inFlight) {
      this.items.get(id)!.tries--;
      this.ready.push(id);
    }
    this.inFlight.clear();
    for (const req of this.requests) req.destroy();
    this.setTarget(undefined);
  }

  private idle(): boolean {
    return this.requests.size === 0 && this.inFlight.size === 0 && this.timers.size === 0 && (this.target === undefined || this.ready.length === 0);
  }

  private settleIfIdle(): void {
    if (!this.idle()) return;
    for (const resolve of this.waiters.splice(0)) resolve();
  }

  private pump(): void {
    const target = this.target;
    if (!target) return;
    while (this.ready.length > 0 && this.inFlight.size < (target.maxInFlight ?? 16)) {
      const id = this.ready.shift()!;
      if (this.items.get(id)?.state === 'queued') this.send(target, this.items.get(id)!);
    }
    this.settleIfIdle();
  }

  private send(target: SimCalloutTarget, n: SimNotification): void {
    n.tries++;
    this.inFlight.add(n.id);
    this.start(target, new URL(target.url), 'POST', n.xml).then(
      ({ status }) => this.finish(n, status, undefined),
      (err: unknown) => this.finish(n, undefined, err instanceof Error ? err.message : String(err)),
    );
  }

  private finish(n: SimNotification, status: number | undefined, error: string | undefined): void {
    // A request cancelled by stop() was already taken out: its end is not an attempt's answer.
    if (!this.inFlight.delete(n.id)) return;
    this.attempts.push(error === undefined ? { id: n.id, status } : { id: n.id, status, error });
    if (status === 200) n.state = 'delivered';
    else if (this.target) {
      const delay = retryDelayMs(this.target.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS, n.tries);
      if (delay === undefined) n.state = 'failed';
      else {
        this.timers.set(n.id, setTimeout(() => {
          this.timers.delete(n.id);
          this.ready.push(n.id);
          this.pump();
        }, delay));
      }
    } else this.ready.push(n.id);
    this.pump();
  }

  private start(target: SimCalloutTarget, url: URL, method: string, body: string | undefined): Promise<{ status: number }> {
    const secure = url.protocol === 'https:';
    const headers: Record<string, string> = {
      authorization: 'Basic ' + Buffer.from(`${target.username}:${target.password}`).toString('base64'),
      'user-agent': 'pollbridge-sim (Concur Event Notification)',
    };
    if (body !== undefined) {
      headers['content-type'] = 'application/xml';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    // No shared agent: a kept-alive socket that the connector closed would turn into a failed try.
    const options: https.RequestOptions = { method, headers, agent: false, ...(secure && target.ca ? { ca: target.ca } : {}) };
    const request = (secure ? https : http).request(url, options);
    this.requests.add(request);
    const timeoutMs = target.timeoutMs ?? 10_000;
    const done = new Promise<{ status: number }>((resolve, reject) => {
      let status: number | undefined;
      request.setTimeout(timeoutMs, () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      request.on('response', (res) => {
        status = res.statusCode ?? 0;
        res.resume();
      });
      request.on('error', reject);
      // After the answer's body too: settled() means no socket is left open.
      request.on('close', () => (status === undefined ? reject(new Error('connection closed without an answer')) : resolve({ status })));
    });
    request.end(body);
    return done.finally(() => {
      this.requests.delete(request);
      this.settleIfIdle();
    });
  }
}
