import { createHash, randomBytes } from 'node:crypto';
import type http from 'node:http';
import {
  ChangeOrder, closeSim, concurDate, concurHubResource, listBody, listenSim, nextPageLink, readBody, readListQuery, type Versioned,
} from './concurList.js';

/**
 * Many Concur companies behind one host, as an integration vendor's poller meets them: each
 * company its own OAuth2 client and rotating refresh token, its access tokens reading its own
 * records only, its own rate limit; every answer as late as a distant API's.
 */

/** The two list resources of each company, by the Concur path both the simulator and the hub URL name. */
export const FLEET_RESOURCES = { reports: 'expense/reports', entries: 'expense/entries' } as const;
export type FleetResource = keyof typeof FLEET_RESOURCES;
const RESOURCE_NAMES = Object.keys(FLEET_RESOURCES) as FleetResource[];
const ROUTES = new Map(RESOURCE_NAMES.map((r) => [`/api/v3.0/${FLEET_RESOURCES[r]}`, r]));
export const FLEET_TOKEN_PATH = '/oauth2/v0/token';
/** Credentials derive from it, so that a config written in one process fits a simulator in another. */
export const DEFAULT_FLEET_SEED = 'pollbridge-fleet';

export type FleetCredentials = { clientId: string; clientSecret: string; refreshToken: string };

const derive = (seed: string, what: string, company: number): string =>
  createHash('sha256').update(`${seed}\0${what}\0${company}`).digest('base64url').slice(0, 32);

/** Company `company`'s client and first refresh token (the one a new config holds). */
export function fleetCredentials(company: number, seed = DEFAULT_FLEET_SEED): FleetCredentials {
  return { clientId: `fleet-client-${company}`, clientSecret: derive(seed, 'secret', company), refreshToken: derive(seed, 'refresh', company) };
}

/** The instance name of company `company` in the configs `fleetConfigFor` writes. */
export const fleetInstanceName = (company: number): string => `Company${String(company).padStart(4, '0')}`;

export type FleetSimOptions = {
  companies: number;
  host?: string;
  port?: number;
  seed?: string;
  /** Every answer, token answers included, is sent this long after its request arrived, ms. */
  latencyMs?: number;
  /** API requests a company may make in one second of the clock; more are answered 429. Default: no limit. */
  rateLimitPerSec?: number;
  /** Lifetime of an access token, seconds (sent as a string, as Concur does). Default 3600. */
  tokenLifetimeSec?: number;
  /** Called as each request arrives, before it is answered: for measuring when polls come. */
  onRequest?: (request: FleetRequest) => void;
};

export type FleetRequest = {
  atMs: number;
  kind: 'token' | 'list' | 'other';
  /** The company the client id (token) or access token (list) names; undefined when neither is known. */
  company: number | undefined;
  resource?: FleetResource;
  query?: URLSearchParams;
};

export type FleetRecord = { ID: string; Name: string; CreateDate: string; LastModifiedDate: string; [field: string]: unknown };
export type FleetChange = { company: number; resource: FleetResource; id: string; lastModified: string; madeMs: number };

type Stored = Versioned & { record: FleetRecord; json: string };
type Collection = { order: ChangeOrder<Stored>; byId: Map<string, Stored>; lastModifiedMs: number };

type Company = {
  credentials: FleetCredentials;
  /** The only refresh token the token endpoint accepts for this company now. */
  refreshToken: string;
  collections: Partial<Record<FleetResource, Collection>>;
  /** The second of the clock the rate limit counts in, and its API requests so far. */
  second: number;
  inSecond: number;
};

type PerCompany = Uint32Array;

export class FleetSim {
  private readonly companies: Company[];
  private readonly byClientId = new Map<string, number>();
  private readonly accessTokens = new Map<string, { company: number; expiresAt: number }>();
  private server: http.Server | undefined;
  baseUrl = '';
  readonly changes: FleetChange[] = [];
  /** Totals of the whole run. `invalidGrant` must stay 0 for a poller that keeps every rotated token. */
  readonly counters = { requests: 0, tokens: 0, invalidGrant: 0, invalidClient: 0, unauthorized: 0, lists: 0, rateLimited: 0 };
  /** The same, by company index. */
  readonly byCompany: { tokens: PerCompany; invalidGrant: PerCompany; rateLimited: PerCompany; lists: Record<FleetResource, PerCompany> };

  constructor(private readonly options: FleetSimOptions) {
    if (!Number.isInteger(options.companies) || options.companies < 1) throw new Error(`companies must be a whole number ≥ 1, got ${options.companies}`);
    const seed = options.seed ?? DEFAULT_FLEET_SEED;
    this.companies = Array.from({ length: options.companies }, (_, i) => {
      const credentials = fleetCredentials(i, seed);
      this.byClientId.set(credentials.clientId, i);
      return { credentials, refreshToken: credentials.refreshToken, collections: {}, second: 0, inSecond: 0 };
    });
    const perCompany = (): PerCompany => new Uint32Array(options.companies);
    this.byCompany = {
      tokens: perCompany(), invalidGrant: perCompany(), rateLimited: perCompany(),
      lists: Object.fromEntries(RESOURCE_NAMES.map((r) => [r, perCompany()])) as Record<FleetResource, PerCompany>,
    };
  }

  get companyCount(): number {
    return this.companies.length;
  }

  async start(): Promise<string> {
    const { server, base } = await listenSim((req, res, b) => this.handle(req, res, b), this.options.port ?? 0, this.options.host ?? '127.0.0.1');
    this.server = server;
    this.baseUrl = base;
    return base;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await closeSim(server);
  }

  /**
   * A change in one company: `id` of an existing record updates it, anything else creates one.
   * Its LastModifiedDate is now (strictly after the collection's last change, so each is a new version).
   */
  change(company: number, resource: FleetResource = 'reports', id?: string): FleetChange {
    const c = this.company(company);
    const collection = (c.collections[resource] ??= { order: new ChangeOrder<Stored>(), byId: new Map(), lastModifiedMs: 0 });
    const ms = Math.max(Date.now(), collection.lastModifiedMs + 1);
    collection.lastModifiedMs = ms;
    const lastModified = concurDate(ms);
    const existing = id === undefined ? undefined : collection.byId.get(id);
    let stored: Stored;
    if (existing) {
      collection.order.remove(existing);
      stored = existing;
      stored.modifiedMs = ms;
      stored.record.LastModifiedDate = lastModified;
    } else {
      const newId = id ?? randomBytes(10).toString('hex').toUpperCase();
      const record = newRecord(resource, newId, company, collection.byId.size, lastModified);
      stored = { ID: newId, modifiedMs: ms, record, json: '' };
      collection.byId.set(newId, stored);
    }
    stored.json = JSON.stringify(stored.record);
    collection.order.insert(stored);
    const change = { company, resource, id: stored.ID, lastModified, madeMs: Date.now() };
    this.changes.push(change);
    return change;
  }

  /** The records of one company's resource, oldest change first. */
  records(company: number, resource: FleetResource): FleetRecord[] {
    const order = this.company(company).collections[resource]?.order;
    return order ? order.slice(0, order.length).map((s) => s.record) : [];
  }

  /** The refresh token the company's next refresh must present (a restarted poller's stored one). */
  currentRefreshToken(company: number): string {
    return this.company(company).refreshToken;
  }

  private company(index: number): Company {
    const c = this.companies[index];
    if (!c) throw new Error(`no company ${index} (the simulator serves 0..${this.companies.length - 1})`);
    return c;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse, base: string): Promise<void> {
    const atMs = Date.now();
    this.counters.requests++;
    const url = new URL(req.url ?? '/', base);
    const body = await readBody(req);
    const send = (status: number, payload: unknown, headers: Record<string, string> = {}): void => {
      const answer = (): void => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(typeof payload === 'string' ? payload : JSON.stringify(payload));
      };
      const latency = this.options.latencyMs ?? 0;
      if (latency > 0) setTimeout(answer, Math.max(0, atMs + latency - Date.now()));
      else answer();
    };
    const resource = ROUTES.get(url.pathname);
    if (req.method === 'POST' && url.pathname === FLEET_TOKEN_PATH) {
      const form = new URLSearchParams(body);
      const company = this.byClientId.get(form.get('client_id') ?? '');
      this.options.onRequest?.({ atMs, kind: 'token', company });
      return send(...this.token(form, company, base));
    }
    if (req.method !== 'GET' || !resource) {
      this.options.onRequest?.({ atMs, kind: 'other', company: undefined });
      return send(404, { Message: `no route ${req.method} ${url.pathname}` });
    }
    const token = this.accessTokens.get((req.headers.authorization ?? '').replace(/^Bearer /, ''));
    const company = token && token.expiresAt >= atMs ? token.company : undefined;
    this.options.onRequest?.({ atMs, kind: 'list', company, resource, query: url.searchParams });
    if (company === undefined) {
      this.counters.unauthorized++;
      return send(401, { Message: 'Invalid or expired token' });
    }
    const limited = this.overRateLimit(company, atMs);
    if (limited !== undefined) return send(429, { Message: 'Rate limit exceeded' }, { 'retry-after': limited });
    this.counters.lists++;
    this.byCompany.lists[resource][company]!++;
    send(...this.list(company, resource, url));
  }

  /** The Retry-After (seconds) of a request over the company's limit, or undefined within it. */
  private overRateLimit(company: number, atMs: number): string | undefined {
    const limit = this.options.rateLimitPerSec;
    if (limit === undefined) return undefined;
    const c = this.companies[company]!;
    const second = Math.floor(atMs / 1000);
    if (c.second !== second) {
      c.second = second;
      c.inSecond = 0;
    }
    if (++c.inSecond <= limit) return undefined;
    this.counters.rateLimited++;
    this.byCompany.rateLimited[company]!++;
    return '1';
  }

  /** The refresh-token grant; the refresh token rotates at once, before the (late) answer is sent. */
  private token(form: URLSearchParams, company: number | undefined, base: string): [number, unknown] {
    this.counters.tokens++;
    if (form.get('grant_type') !== 'refresh_token') return [400, { error: 'unsupported_grant_type' }];
    const c = company === undefined ? undefined : this.companies[company]!;
    if (c === undefined || company === undefined || form.get('client_secret') !== c.credentials.clientSecret) {
      this.counters.invalidClient++;
      return [401, { error: 'invalid_client' }];
    }
    this.byCompany.tokens[company]!++;
    if (form.get('refresh_token') !== c.refreshToken) {
      this.counters.invalidGrant++;
      this.byCompany.invalidGrant[company]!++;
      return [400, { error: 'invalid_grant', error_description: 'refresh token is invalid or expired' }];
    }
    c.refreshToken = randomBytes(24).toString('base64url');
    const accessToken = randomBytes(24).toString('base64url');
    const lifetime = this.options.tokenLifetimeSec ?? 3600;
    this.accessTokens.set(accessToken, { company, expiresAt: Date.now() + lifetime * 1000 });
    return [200, {
      access_token: accessToken, token_type: 'Bearer', expires_in: String(lifetime),
      refresh_token: c.refreshToken, refresh_expires_in: '15552000', geolocation: base,
    }];
  }

  private list(company: number, resource: FleetResource, url: URL): [number, unknown] {
    const query = readListQuery(url.searchParams, 'UTC');
    if ('error' in query) return [400, { Message: query.error }];
    const { limit, offset } = query;
    const order = this.companies[company]!.collections[resource]?.order;
    if (!order) return [200, listBody([], null)];
    const [lo, hi] = order.range(query.afterMs, query.beforeMs);
    const from = Math.min(lo + offset, hi);
    const to = Math.min(from + limit, hi);
    return [200, listBody(order.slice(from, to).map((s) => s.json), to < hi ? nextPageLink(url, offset + limit) : null)];
  }
}

function newRecord(resource: FleetResource, id: string, company: number, n: number, date: string): FleetRecord {
  const common = { ID: id, CreateDate: date, LastModifiedDate: date };
  if (resource === 'reports') return { ...common, Name: `Trip ${n + 1}`, Total: 100 + n, CurrencyCode: 'USD', ApprovalStatusCode: 'A_NOTF', OwnerLoginID: `user${n % 7}@company${company}.example.com` };
  return { ...common, Name: `Entry ${n + 1}`, ExpenseTypeCode: 'MEALS', TransactionAmount: 10 + n, TransactionCurrencyCode: 'USD' };
}

export type FleetConfigOptions = {
  seed?: string;
  signatureKey: string;
  /** `event.poller.refresh_interval`, minutes. Default "1". */
  refreshInterval?: string;
  /** `pageSize` of both resources; default the element's own. */
  pageSize?: number;
};

/**
 * One AMPLIFY instance object per company, as a vendor's `/instances` export holds them with
 * pollbridge's `provider` block, for companies 0..n-1 or those listed: write each to a file of an
 * `instancesDir`, or put them in `instances`. The first refresh tokens are written in (a bench's or test's throwaway secrets).
 */
export function fleetConfigFor(companies: number | number[], simUrl: string, callbackUrl: string, options: FleetConfigOptions) {
  const indexes = typeof companies === 'number' ? Array.from({ length: companies }, (_, i) => i) : companies;
  const resource = (r: FleetResource) => ({ ...concurHubResource(FLEET_RESOURCES[r]), ...(options.pageSize === undefined ? {} : { pageSize: options.pageSize }) });
  return indexes.map((company) => {
    const c = fleetCredentials(company, options.seed);
    return {
      name: fleetInstanceName(company),
      element: { key: 'concur' },
      provider: {
        baseUrl: simUrl,
        auth: { type: 'oauth2_refresh_token', tokenUrl: `${simUrl}${FLEET_TOKEN_PATH}`, clientId: c.clientId, clientSecret: c.clientSecret, refreshToken: c.refreshToken },
      },
      configuration: {
        'event.notification.enabled': 'true',
        'event.vendor.type': 'polling',
        'event.notification.callback.url': callbackUrl,
        'event.notification.signature.key': options.signatureKey,
        'event.poller.refresh_interval': options.refreshInterval ?? '1',
        'event.poller.configuration': Object.fromEntries(RESOURCE_NAMES.map((r) => [r, resource(r)])),
      },
      tags: [],
    };
  });
}
