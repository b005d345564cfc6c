import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { zoneOffsetMs } from '../time/zone.js';
import {
  CalloutQueue, escapeXml, failedListEntry, failedListXml, notificationXml, parseCalloutTarget, type SimCalloutAttempt,
  type SimCalloutTarget, type SimNotification, SUBMIT_EVENT_TYPE,
} from './calloutSender.js';
import {
  ChangeOrder, closeSim, concurDate, listBody, listenSim, nextPageLink, parseConcurDate, readBody, readListQuery,
} from './concurList.js';

export { concurDate, parseConcurDate };

export type SimReport = {
  ID: string;
  URI: string;
  Name: string;
  Total: number;
  CurrencyCode: string;
  CreateDate: string;
  LastModifiedDate: string;
  OwnerLoginID: string;
  OwnerName: string;
  ApprovalStatusCode: string;
  ApprovalStatusName: string;
};

export type SimCredentials = { clientId: string; clientSecret: string; refreshToken: string };

export const DEFAULT_SIM_CREDENTIALS: SimCredentials = {
  clientId: 'sim-client',
  clientSecret: 'sim-secret',
  refreshToken: 'sim-refresh-token',
};

export type SimOptions = {
  host?: string;
  port?: number;
  credentials?: SimCredentials;
  /** Lifetime of an access token, seconds (sent as a string, as Concur does). */
  tokenLifetimeSec?: number;
  /**
   * The zone of Concur's zone-less dates: LastModifiedDate and CreateDate are written, and
   * modifiedDateAfter/Before read, as wall-clock time there (IANA name or `+09:00`; default UTC).
   */
  dateZone?: string;
  /** The generic route's `links.next`: an absolute path (default) or a query alone (`?page=2`). */
  genericNextLink?: 'path' | 'query';
  /**
   * Serve the tenant's geolocation on a second port (`geolocationUrl`): token answers name it,
   * and the first port, like Concur's US host for an EMEA tenant, refuses every refresh token
   * but the configured one.
   */
  separateGeolocation?: boolean;
  /** Push an Event Notification to this connector whenever a report enters Submitted (A_PEND). */
  callout?: SimCalloutTarget;
};

export type { SimCalloutTarget, SimNotification, SimCalloutAttempt };

/**
 * One version of a report. `madeMs` is the host's clock when it was made (not the simulator's,
 * which a fault may shift, nor a pinned `modifiedMs`): what a change-to-receipt latency is
 * measured from.
 */
export type Change = { kind: 'created' | 'updated' | 'deleted'; id: string; lastModified: string; madeMs: number };

type StoredReport = SimReport & { modifiedMs: number };

/** One scripted answer to a list request, instead of the data. */
export type ListFailure = {
  status: number;
  retryAfter?: string;
  body?: string;
  contentType?: string;
  /** Drop the connection without an answer. */
  reset?: boolean;
};

/**
 * Switches for what real APIs do to a poller. Tests set them in-process; other processes use
 * `POST /_sim/faults` (JSON of the plain fields).
 */
export type SimFaults = {
  /** Answers for the next list requests, one each, in order. */
  listFailures: ListFailure[];
  /** While set, the token endpoint refuses every refresh with this OAuth2 error. */
  tokenError: { status: number; error: string } | undefined;
  /** Answers for the next token requests, one each, in order, before any check. */
  tokenFailures: ListFailure[];
  /** A successful refresh answers this late, after the refresh token has been rotated. */
  tokenDelayMs: number;
  /** The simulator's clock runs this far ahead of the host's (negative: behind). */
  clockOffsetMs: number;
  /** NextPage points back at the page just served. */
  repeatNextPage: boolean;
  /** NextPage never ends, even past the data. */
  endlessPages: boolean;
  /** Reports on one LastModifiedDate come in a new random order on every request (no stable tie order). */
  shuffleTies: boolean;
  /** Each list answer (a page or a scripted failure) waits this long, as a slow API's do. */
  listDelayMs: number;
  /** Records served before the real ones on every list page 0 (bad ids, bad dates). */
  rawItems: unknown[];
  /** In-process only: runs before each list page is computed, to change data mid-sweep. */
  beforePage: ((pageIndex: number) => void) | undefined;
  /** Answers for the next requests of a notification's object (v1.1 or v3 report), one each, in order. */
  objectFailures: ListFailure[];
  /** The failed-notification list answers XML whatever the request's Accept says. */
  failedListAsXml: boolean;
  /**
   * In-process only: awaited before a failed notification's DELETE is applied; 'drop' closes the
   * connection without applying it, as if the DELETE had never arrived.
   */
  beforeDelete: ((id: string) => Promise<'apply' | 'drop'>) | undefined;
  /** In-process only: awaited before a notification's object is served. */
  beforeObject: ((id: string) => Promise<void>) | undefined;
};

export const STATIC_TOKEN = 'sim-static-token';
export const BASIC_CREDENTIALS = { username: 'sim-user', password: 'sim-password' };

const APPROVAL = [['A_NOTF', 'Not Submitted'], ['A_PEND', 'Submitted & Pending Approval'], ['A_APPR', 'Approved']] as const;

/**
 * A local stand-in for Concur's expense report API: the OAuth2 refresh-token grant with rotating
 * refresh tokens, `GET /api/v3.0/expense/reports` with modifiedDateAfter/Before, limit and an
 * opaque offset, and absolute `NextPage` links. Changes are made through methods (tests) or the
 * `/_sim` control routes (demo, other processes).
 */
export class ConcurSim {
  private readonly reports = new Map<string, StoredReport>();
  private readonly ordered = new ChangeOrder<StoredReport>();
  private readonly jsonById = new Map<string, string>();
  private readonly accessTokens = new Map<string, number>();
  private validRefreshToken: string;
  private server: http.Server | undefined;
  private lastModifiedMs = 0;
  private sequence = 0;
  readonly changes: Change[] = [];
  readonly faults: SimFaults = {
    listFailures: [], tokenError: undefined, tokenFailures: [], tokenDelayMs: 0, clockOffsetMs: 0, listDelayMs: 0, repeatNextPage: false, endlessPages: false, shuffleTies: false, rawItems: [], beforePage: undefined,
    objectFailures: [], failedListAsXml: false, beforeDelete: undefined, beforeObject: undefined,
  };
  private readonly calloutQueue = new CalloutQueue();
  /** The Event Notifications this simulator, as Concur, has queued, and every attempt to push one. */
  readonly callouts = {
    queued: (): SimNotification[] => this.calloutQueue.list('queued'),
    delivered: (): SimNotification[] => this.calloutQueue.list('delivered'),
    failed: (): SimNotification[] => this.calloutQueue.list('failed'),
    attempts: this.calloutQueue.attempts,
  };
  /** DELETE requests per failed-notification id that reached the simulator (applied, dropped or refused). */
  readonly deletes = new Map<string, number>();
  /** Requests per report id for a notification's object (v1.1 report details or v3 report). */
  readonly objectRequests = new Map<string, number>();
  /** Every list request's query, in order, for tests to inspect what was asked. */
  readonly listQueries: URLSearchParams[] = [];
  requestCount = 0;
  /** Each distinct User-Agent that came (empty: none): one entry means every request sent it. */
  readonly userAgents = new Set<string>();
  tokenRequestCount = 0;
  /** The base URL each token request arrived at, in order. */
  readonly tokenRequestBases: string[] = [];
  /** Every access and refresh token handed out, for tests that prove none is ever logged. */
  readonly issuedTokens: string[] = [];
  baseUrl = '';
  /** With `separateGeolocation`: the tenant's own host. */
  geolocationUrl: string | undefined;
  private geolocationServer: http.Server | undefined;

  constructor(private readonly options: SimOptions = {}) {
    this.validRefreshToken = this.credentials.refreshToken;
    if (options.callout) this.setCallout(options.callout);
  }

  /** Starts (or, with undefined, pauses) pushing notifications; queued ones go to the new target. */
  setCallout(target: SimCalloutTarget | undefined): void {
    this.calloutQueue.setTarget(target);
  }

  /** Resolves when no notification is in flight or waiting for a retry. */
  calloutsSettled(): Promise<void> {
    return this.calloutQueue.settled();
  }

  /** Concur's "Test Connection" button: the status the connector answers with the target's credentials. */
  testConnection(): Promise<number> {
    return this.calloutQueue.testConnection();
  }

  /** Concur queues a notification when a report enters the Submitted workflow step. */
  private notifySubmitted(report: StoredReport): void {
    if (!this.calloutQueue.enabled || report.ApprovalStatusCode !== 'A_PEND') return;
    const ms = this.now();
    const wall = new Date(ms + zoneOffsetMs(this.dateZone, ms)).toISOString();
    const objectUri = this.calloutQueue.objectUriVersion === 'v3' ? report.URI : `${this.baseUrl}/api/expense/expensereport/v1.1/report/${report.ID}`;
    const n = { eventType: SUBMIT_EVENT_TYPE, objectType: 'EXPRPT' as const, objectUri, eventDate: wall.slice(0, 10) };
    this.calloutQueue.enqueue({
      ...n, id: randomBytes(16).toString('hex').toUpperCase(), reportId: report.ID, eventDateTime: wall.slice(0, 19), xml: notificationXml(n), tries: 0, state: 'queued',
    });
  }

  private get credentials(): SimCredentials {
    return this.options.credentials ?? DEFAULT_SIM_CREDENTIALS;
  }

  private get dateZone(): string {
    return this.options.dateZone ?? 'UTC';
  }

  async start(): Promise<string> {
    const main = await this.listen(this.options.port ?? 0);
    this.server = main.server;
    this.baseUrl = main.base;
    if (this.options.separateGeolocation) {
      const geolocation = await this.listen(0);
      this.geolocationServer = geolocation.server;
      this.geolocationUrl = geolocation.base;
    }
    return this.baseUrl;
  }

  private listen(port: number): Promise<{ server: http.Server; base: string }> {
    return listenSim((req, res, base) => this.handle(req, res, base), port, this.options.host ?? '127.0.0.1');
  }

  async stop(): Promise<void> {
    this.calloutQueue.stop();
    const servers = [this.server, this.geolocationServer].filter((s) => s !== undefined);
    this.server = undefined;
    this.geolocationServer = undefined;
    for (const server of servers) await closeSim(server);
  }

  now(): number {
    return Date.now() + this.faults.clockOffsetMs;
  }

  /** A modification time strictly after every earlier one, so each change is a distinct instant. */
  private nextModified(): number {
    this.lastModifiedMs = Math.max(this.now(), this.lastModifiedMs + 1);
    return this.lastModifiedMs;
  }

  /** Invalidates every access token, as a revocation on Concur's side would. */
  revokeAccessTokens(): void {
    this.accessTokens.clear();
  }

  /** `modifiedMs` pins the modification time (many records sharing one date). */
  createReport(overrides: Partial<SimReport> = {}, options: { modifiedMs?: number } = {}): SimReport {
    this.sequence++;
    const ms = options.modifiedMs ?? this.nextModified();
    const id = overrides.ID ?? randomBytes(10).toString('hex').toUpperCase();
    const [code, name] = APPROVAL[0];
    const report = {
      ID: id,
      URI: `${this.baseUrl}/api/v3.0/expense/reports/${id}`,
      Name: `Trip ${this.sequence}`,
      Total: Math.round(Math.random() * 100_000) / 100,
      CurrencyCode: 'USD',
      CreateDate: concurDate(ms, this.dateZone),
      LastModifiedDate: concurDate(ms, this.dateZone),
      OwnerLoginID: `user${this.sequence % 7}@example.com`,
      OwnerName: `User ${this.sequence % 7}`,
      ApprovalStatusCode: code,
      ApprovalStatusName: name,
      ...overrides,
      modifiedMs: ms,
    };
    this.reports.set(id, report);
    this.remember(report);
    this.ordered.insert(report);
    this.changes.push({ kind: 'created', id, lastModified: report.LastModifiedDate, madeMs: Date.now() });
    this.notifySubmitted(report);
    return this.publicReport(report);
  }

  updateReport(id: string, options: { modifiedMs?: number } = {}): SimReport {
    const report = this.reports.get(id);
    if (!report) throw new Error(`no report ${id}`);
    const ms = options.modifiedMs ?? this.nextModified();
    const next = APPROVAL[(APPROVAL.findIndex(([c]) => c === report.ApprovalStatusCode) + 1) % APPROVAL.length]!;
    this.ordered.remove(report);
    Object.assign(report, { LastModifiedDate: concurDate(ms, this.dateZone), modifiedMs: ms, ApprovalStatusCode: next[0], ApprovalStatusName: next[1] });
    this.remember(report);
    this.ordered.insert(report);
    this.changes.push({ kind: 'updated', id, lastModified: report.LastModifiedDate, madeMs: Date.now() });
    this.notifySubmitted(report);
    return this.publicReport(report);
  }

  /** Removes a report (an unsubmitted report deleted by its owner): it leaves every window at once. */
  deleteReport(id: string): void {
    const report = this.reports.get(id);
    if (!report) throw new Error(`no report ${id}`);
    this.ordered.remove(report);
    this.reports.delete(id);
    this.jsonById.delete(id);
    this.changes.push({ kind: 'deleted', id, lastModified: report.LastModifiedDate, madeMs: Date.now() });
  }

  /** One random change: a new report, or an update of an existing one. */
  randomChange(): SimReport {
    const ids = [...this.reports.keys()];
    if (ids.length === 0 || Math.random() < 0.4) return this.createReport();
    return this.updateReport(ids[Math.floor(Math.random() * ids.length)]!);
  }

  allReports(): SimReport[] {
    return [...this.reports.values()].map((r) => this.publicReport(r));
  }

  private publicReport(r: StoredReport): SimReport {
    const { modifiedMs: _ms, ...rest } = r;
    return rest;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse, base: string): Promise<void> {
    this.requestCount++;
    this.userAgents.add(req.headers['user-agent'] ?? '');
    const url = new URL(req.url ?? '/', base);
    const body = await readBody(req);
    /** A string payload is JSON text already. */
    const send = (status: number, payload: unknown, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'application/json', date: new Date(this.now()).toUTCString(), ...headers });
      res.end(typeof payload === 'string' ? payload : JSON.stringify(payload));
    };
    if (req.method === 'POST' && url.pathname === '/oauth2/v0/token') return this.token(body, base, req, res, send);
    if (url.pathname.startsWith('/_sim/')) return this.control(req.method ?? 'GET', url, body, send);
    if (url.pathname.startsWith(NOTIFICATIONS_PATH) || OBJECT_ROUTE.test(url.pathname)) {
      if (!this.bearerAllowed(req)) return send(401, { Message: 'Invalid or expired token' });
      return this.notificationApi(req, res, url, base, send);
    }
    const concur = url.pathname === '/api/v3.0/expense/reports';
    const generic = url.pathname === '/generic/v1/reports';
    if (req.method === 'GET' && (concur || generic)) {
      const auth = req.headers.authorization ?? '';
      const basic = 'Basic ' + Buffer.from(`${BASIC_CREDENTIALS.username}:${BASIC_CREDENTIALS.password}`).toString('base64');
      const allowed = concur ? this.bearerAllowed(req) : auth === `Bearer ${STATIC_TOKEN}` || auth === basic;
      if (!allowed) return send(401, { Message: 'Invalid or expired token' });
      this.listQueries.push(url.searchParams);
      // Before the page is read, so the answer holds what changed meanwhile, as a slow query's would.
      if (this.faults.listDelayMs > 0) await new Promise((r) => setTimeout(r, this.faults.listDelayMs));
      const failure = this.faults.listFailures.shift();
      if (failure?.reset) {
        req.socket.destroy();
        return;
      }
      if (failure) {
        res.writeHead(failure.status, {
          'content-type': failure.contentType ?? 'application/json',
          ...(failure.retryAfter ? { 'retry-after': failure.retryAfter } : {}),
        });
        res.end(failure.body ?? JSON.stringify({ Message: `simulated ${failure.status}` }));
        return;
      }
      return concur ? this.listReports(url, send) : this.listGeneric(url, send);
    }
    send(404, { Message: `no route ${req.method} ${url.pathname}` });
  }

  private bearerAllowed(req: http.IncomingMessage): boolean {
    const expiry = this.accessTokens.get((req.headers.authorization ?? '').replace(/^Bearer /, ''));
    return expiry !== undefined && expiry >= Date.now();
  }

  /** Concur's failed-notification list and DELETE, and the objects a notification's ObjectURI names. */
  private async notificationApi(req: http.IncomingMessage, res: http.ServerResponse, url: URL, base: string, send: (s: number, p: unknown, h?: Record<string, string>) => void): Promise<void> {
    const method = req.method ?? 'GET';
    const object = OBJECT_ROUTE.exec(url.pathname);
    if (method === 'GET' && object) {
      const id = decodeURIComponent(object[2]!);
      this.objectRequests.set(id, (this.objectRequests.get(id) ?? 0) + 1);
      await this.faults.beforeObject?.(id);
      const failure = this.faults.objectFailures.shift();
      if (failure) return answerScripted(failure, req, res);
      const report = this.reports.get(id);
      if (!report) return send(404, { Message: `no report ${id}` });
      if (object[1] === undefined) return send(200, this.jsonById.get(id)!);
      return send(200, reportDetailsXml(report), { 'content-type': 'application/xml' });
    }
    if (method === 'GET' && url.pathname === NOTIFICATIONS_PATH) {
      if (url.searchParams.get('status') !== 'failed') return send(400, { Message: 'status must be failed' });
      const entries = this.calloutQueue.list('failed').map((n) => failedListEntry(n, `${base}${NOTIFICATIONS_PATH}/${n.id}`));
      if (!this.faults.failedListAsXml && /application\/json/i.test(req.headers.accept ?? '')) return send(200, entries);
      return send(200, failedListXml(entries), { 'content-type': 'application/xml' });
    }
    const one = new RegExp(`^${NOTIFICATIONS_PATH}/([^/]+)$`).exec(url.pathname);
    if (method === 'DELETE' && one) {
      const id = decodeURIComponent(one[1]!);
      this.deletes.set(id, (this.deletes.get(id) ?? 0) + 1);
      if ((await this.faults.beforeDelete?.(id)) === 'drop') {
        req.socket.destroy();
        return;
      }
      if (!this.calloutQueue.removeFailed(id)) return send(400, { Message: `no failed notification ${id}` });
      return send(200, {});
    }
    send(404, { Message: `no route ${method} ${url.pathname}` });
  }

  private async token(body: string, base: string, req: http.IncomingMessage, res: http.ServerResponse, send: (s: number, p: unknown) => void): Promise<void> {
    this.tokenRequestCount++;
    this.tokenRequestBases.push(base);
    const failure = this.faults.tokenFailures.shift();
    if (failure) return answerScripted(failure, req, res);
    if (this.faults.tokenError) return send(this.faults.tokenError.status, { error: this.faults.tokenError.error, error_description: 'simulated failure' });
    const form = new URLSearchParams(body);
    const c = this.credentials;
    if (form.get('grant_type') !== 'refresh_token') return send(400, { error: 'unsupported_grant_type' });
    if (form.get('client_id') !== c.clientId || form.get('client_secret') !== c.clientSecret) return send(401, { error: 'invalid_client' });
    if (form.get('refresh_token') !== this.validRefreshToken) return send(400, { error: 'invalid_grant', error_description: 'refresh token is invalid or expired' });
    if (this.geolocationUrl && base !== this.geolocationUrl && form.get('refresh_token') !== c.refreshToken) {
      return send(400, { error: 'invalid_grant', error_description: `refresh token belongs to ${this.geolocationUrl}` });
    }
    const accessToken = randomBytes(24).toString('base64url');
    const lifetime = this.options.tokenLifetimeSec ?? 3600;
    this.accessTokens.set(accessToken, Date.now() + lifetime * 1000);
    // Rotation: the old refresh token stops working at once, the harshest case Concur allows.
    this.validRefreshToken = randomBytes(24).toString('base64url');
    this.issuedTokens.push(accessToken, this.validRefreshToken);
    if (this.faults.tokenDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.faults.tokenDelayMs));
    send(200, {
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: String(lifetime),
      refresh_token: this.validRefreshToken,
      refresh_expires_in: '15552000',
      id_token: 'sim-id-token',
      geolocation: this.geolocationUrl ?? this.baseUrl,
    });
  }

  /**
   * One page of the reports changed after `after` and before `before` (ms, exclusive), oldest
   * change first, ties by ID: the order offset paging walks.
   */
  private page(after: number | undefined, before: number | undefined, offset: number, limit: number) {
    const [lo, hi] = this.ordered.range(after, before);
    const pageIndex = Math.floor(offset / limit);
    const from = Math.min(lo + offset, hi);
    const list = this.faults.shuffleTies ? shuffledTies(this.ordered.slice(lo, hi)) : undefined;
    return {
      raw: pageIndex === 0 ? this.faults.rawItems : [],
      reports: list ? list.slice(from - lo, Math.min(from + limit, hi) - lo) : this.ordered.slice(from, Math.min(from + limit, hi)),
      more: this.faults.endlessPages || from + limit < hi,
    };
  }

  /**
   * A report's JSON, written when the report changes rather than on every read: benchmarks read
   * 200k reports through the simulator on the same machine as pollbridge, and the simulator's
   * serialising would be counted against pollbridge.
   */
  private remember(r: StoredReport): void {
    this.jsonById.set(r.ID, JSON.stringify(this.publicReport(r)));
  }

  private listReports(url: URL, send: (s: number, p: unknown) => void): void {
    const query = readListQuery(url.searchParams, this.dateZone);
    if ('error' in query) return send(400, { Message: query.error });
    const { limit, offset } = query;
    this.faults.beforePage?.(Math.floor(offset / limit));
    const { raw, reports, more } = this.page(query.afterMs, query.beforeMs, offset, limit);
    let nextPage: string | null = null;
    if (this.faults.repeatNextPage) nextPage = url.toString();
    else if (more) nextPage = nextPageLink(url, offset + limit);
    const items = [...raw.map((item) => JSON.stringify(item) ?? 'null'), ...reports.map((r) => this.jsonById.get(r.ID)!)];
    send(200, listBody(items, nextPage));
  }

  /**
   * The same reports as a generic REST API shapes them: ISO dates with a zone, `page` numbers,
   * a relative `links.next` (an absolute path, or a query alone), records under `data.items`.
   */
  private listGeneric(url: URL, send: (s: number, p: unknown) => void): void {
    const q = url.searchParams;
    const since = q.get('updated_since');
    const sinceMs = since === null ? undefined : Date.parse(since);
    if (sinceMs !== undefined && Number.isNaN(sinceMs)) return send(400, { error: 'updated_since must be ISO-8601' });
    const perPage = Number(q.get('per_page') ?? '50');
    const page = Number(q.get('page') ?? '1');
    this.faults.beforePage?.(page - 1);
    const { raw, reports, more } = this.page(sinceMs === undefined ? undefined : sinceMs - 1, undefined, (page - 1) * perPage, perPage);
    const items = [...raw, ...reports.map((r) => ({
      id: r.ID, name: r.Name, updated_at: new Date(r.modifiedMs).toISOString(), created_at: this.isoDate(r.CreateDate),
    }))];
    const next = new URL(url);
    next.searchParams.set('page', String(page + 1));
    const link = this.options.genericNextLink === 'query' ? next.search : `${next.pathname}${next.search}`;
    send(200, { data: { items }, links: { next: more ? link : null } });
  }

  /** A Concur date with its zone, for the generic route (text it cannot read goes out as it is). */
  private isoDate(concur: string): string {
    const ms = parseConcurDate(concur, this.dateZone);
    return ms === undefined ? concur : new Date(ms).toISOString();
  }

  private control(method: string, url: URL, body: string, send: (s: number, p: unknown) => void): void | Promise<void> {
    const path = url.pathname.slice('/_sim/'.length);
    if (method === 'GET' && path === 'reports') return send(200, this.allReports());
    if (method === 'GET' && path === 'changes') return send(200, this.changes);
    if (method === 'POST' && path === 'faults') {
      Object.assign(this.faults, JSON.parse(body || '{}') as Partial<SimFaults>);
      return send(200, { ...this.faults, beforePage: undefined });
    }
    if (method === 'POST' && path === 'reports') return send(201, this.createReport(body ? (JSON.parse(body) as Partial<SimReport>) : {}));
    const remove = /^reports\/([^/]+)\/delete$/.exec(path);
    if (method === 'POST' && remove) {
      if (!this.reports.has(remove[1]!)) return send(404, { Message: `no report ${remove[1]}` });
      this.deleteReport(remove[1]!);
      return send(200, {});
    }
    const update = /^reports\/([^/]+)\/update$/.exec(path);
    if (method === 'POST' && update) {
      if (!this.reports.has(update[1]!)) return send(404, { Message: `no report ${update[1]}` });
      return send(200, this.updateReport(update[1]!));
    }
    if (method === 'POST' && path === 'callout') {
      let target: SimCalloutTarget | undefined;
      try {
        target = parseCalloutTarget(JSON.parse(body || '{}'));
      } catch (err) {
        return send(400, { Message: err instanceof Error ? err.message : String(err) });
      }
      this.setCallout(target);
      return send(200, { enabled: target !== undefined });
    }
    if (method === 'GET' && path === 'callouts') {
      return send(200, { queued: this.callouts.queued(), delivered: this.callouts.delivered(), failed: this.callouts.failed(), attempts: this.callouts.attempts });
    }
    if (method === 'POST' && path === 'callout/test') {
      return this.testConnection().then((status) => send(200, { status }), (err: unknown) => send(200, { error: err instanceof Error ? err.message : String(err) }));
    }
    send(404, { Message: `no control route ${method} ${path}` });
  }
}

const NOTIFICATIONS_PATH = '/api/platform/notifications/v1.0/notification';
/** A notification's object: Concur's v1.1 report details (XML only) or the v3 report (JSON). */
const OBJECT_ROUTE = /^\/api\/(?:expense\/expensereport\/(v1\.1)\/report|v3\.0\/expense\/reports)\/([^/]+)$/;

function reportDetailsXml(r: SimReport): string {
  const field = (name: string, value: string | number): string => `<${name}>${escapeXml(String(value))}</${name}>`;
  return `<ReportDetails xmlns="http://www.concursolutions.com/api/expense/expensereport/2011/03">` +
    field('ReportID', r.ID) + field('ReportName', r.Name) + field('ReportTotal', r.Total) + field('CurrencyCode', r.CurrencyCode) +
    field('ApprovalStatusCode', r.ApprovalStatusCode) + field('ApprovalStatusName', r.ApprovalStatusName) +
    field('LastModifiedDate', r.LastModifiedDate) + field('EmployeeName', r.OwnerName) + '</ReportDetails>';
}

function answerScripted(failure: ListFailure, req: http.IncomingMessage, res: http.ServerResponse): void {
  if (failure.reset) {
    req.socket.destroy();
    return;
  }
  res.writeHead(failure.status, {
    'content-type': failure.contentType ?? 'application/json',
    ...(failure.retryAfter ? { 'retry-after': failure.retryAfter } : {}),
  });
  res.end(failure.body ?? JSON.stringify({ Message: `simulated ${failure.status}` }));
}

/** The same reports, each run of equal modification times in a random order. */
function shuffledTies(list: StoredReport[]): StoredReport[] {
  const out = [...list];
  for (let start = 0; start < out.length;) {
    let end = start + 1;
    while (end < out.length && out[end]!.modifiedMs === out[start]!.modifiedMs) end++;
    for (let i = end - 1; i > start; i--) {
      const j = start + Math.floor(Math.random() * (i - start + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    start = end;
  }
  return out;
}
