import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

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
};

type Change = { kind: 'created' | 'updated'; id: string; lastModified: string };

const APPROVAL = [['A_NOTF', 'Not Submitted'], ['A_PEND', 'Submitted & Pending Approval'], ['A_APPR', 'Approved']] as const;

/**
 * Concur's dates: UTC wall clock without a zone, and as many fraction digits as needed
 * (`2013-09-02T19:46:01.98`), which is exactly what pollbridge must read right.
 */
export function concurDate(ms: number): string {
  const iso = new Date(ms).toISOString().slice(0, 23);
  return iso.replace(/\.?0+$/, '');
}

function parseConcurDate(value: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$/.test(value)) return undefined;
  const ms = Date.parse(value.length === 10 ? `${value}T00:00:00Z` : `${value}Z`);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * A local stand-in for Concur's expense report API: the OAuth2 refresh-token grant with rotating
 * refresh tokens, `GET /api/v3.0/expense/reports` with modifiedDateAfter/Before, limit and an
 * opaque offset, and absolute `NextPage` links. Changes are made through methods (tests) or the
 * `/_sim` control routes (demo, other processes).
 */
export class ConcurSim {
  private readonly reports = new Map<string, SimReport & { modifiedMs: number }>();
  private readonly accessTokens = new Map<string, number>();
  private validRefreshToken: string;
  private server: http.Server | undefined;
  private lastModifiedMs = 0;
  private sequence = 0;
  readonly changes: Change[] = [];
  requestCount = 0;
  tokenRequestCount = 0;
  baseUrl = '';

  constructor(private readonly options: SimOptions = {}) {
    this.validRefreshToken = this.credentials.refreshToken;
  }

  private get credentials(): SimCredentials {
    return this.options.credentials ?? DEFAULT_SIM_CREDENTIALS;
  }

  async start(): Promise<string> {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ Message: String(err) }));
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port ?? 0, this.options.host ?? '127.0.0.1', () => resolve());
    });
    const { address, port } = server.address() as AddressInfo;
    this.baseUrl = `http://${address.includes(':') ? `[${address}]` : address}:${port}`;
    return this.baseUrl;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** A modification time strictly after every earlier one, so each change is a distinct instant. */
  private nextModified(): number {
    this.lastModifiedMs = Math.max(Date.now(), this.lastModifiedMs + 1);
    return this.lastModifiedMs;
  }

  createReport(overrides: Partial<SimReport> = {}): SimReport {
    this.sequence++;
    const ms = this.nextModified();
    const id = overrides.ID ?? randomBytes(10).toString('hex').toUpperCase();
    const [code, name] = APPROVAL[0];
    const report = {
      ID: id,
      URI: `${this.baseUrl}/api/v3.0/expense/reports/${id}`,
      Name: `Trip ${this.sequence}`,
      Total: Math.round(Math.random() * 100_000) / 100,
      CurrencyCode: 'USD',
      CreateDate: concurDate(ms),
      LastModifiedDate: concurDate(ms),
      OwnerLoginID: `user${this.sequence % 7}@example.com`,
      OwnerName: `User ${this.sequence % 7}`,
      ApprovalStatusCode: code,
      ApprovalStatusName: name,
      ...overrides,
      modifiedMs: ms,
    };
    this.reports.set(id, report);
    this.changes.push({ kind: 'created', id, lastModified: report.LastModifiedDate });
    return this.publicReport(report);
  }

  updateReport(id: string): SimReport {
    const report = this.reports.get(id);
    if (!report) throw new Error(`no report ${id}`);
    const ms = this.nextModified();
    const next = APPROVAL[(APPROVAL.findIndex(([c]) => c === report.ApprovalStatusCode) + 1) % APPROVAL.length]!;
    Object.assign(report, { LastModifiedDate: concurDate(ms), modifiedMs: ms, ApprovalStatusCode: next[0], ApprovalStatusName: next[1] });
    this.changes.push({ kind: 'updated', id, lastModified: report.LastModifiedDate });
    return this.publicReport(report);
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

  private publicReport(r: SimReport & { modifiedMs: number }): SimReport {
    const { modifiedMs: _ms, ...rest } = r;
    return rest;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.requestCount++;
    const url = new URL(req.url ?? '/', this.baseUrl);
    const body = await readBody(req);
    const send = (status: number, payload: unknown, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(payload));
    };
    if (req.method === 'POST' && url.pathname === '/oauth2/v0/token') return this.token(body, send);
    if (url.pathname.startsWith('/_sim/')) return this.control(req.method ?? 'GET', url, body, send);
    if (req.method === 'GET' && url.pathname === '/api/v3.0/expense/reports') {
      const auth = req.headers.authorization ?? '';
      const expiry = this.accessTokens.get(auth.replace(/^Bearer /, ''));
      if (expiry === undefined || expiry < Date.now()) return send(401, { Message: 'Invalid or expired token' });
      return this.listReports(url, send);
    }
    send(404, { Message: `no route ${req.method} ${url.pathname}` });
  }

  private token(body: string, send: (s: number, p: unknown) => void): void {
    this.tokenRequestCount++;
    const form = new URLSearchParams(body);
    const c = this.credentials;
    if (form.get('grant_type') !== 'refresh_token') return send(400, { error: 'unsupported_grant_type' });
    if (form.get('client_id') !== c.clientId || form.get('client_secret') !== c.clientSecret) return send(401, { error: 'invalid_client' });
    if (form.get('refresh_token') !== this.validRefreshToken) return send(400, { error: 'invalid_grant', error_description: 'refresh token is invalid or expired' });
    const accessToken = randomBytes(24).toString('base64url');
    const lifetime = this.options.tokenLifetimeSec ?? 3600;
    this.accessTokens.set(accessToken, Date.now() + lifetime * 1000);
    // Rotation: the old refresh token stops working at once, the harshest case Concur allows.
    this.validRefreshToken = randomBytes(24).toString('base64url');
    send(200, {
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: String(lifetime),
      refresh_token: this.validRefreshToken,
      refresh_expires_in: '15552000',
      id_token: 'sim-id-token',
      geolocation: this.baseUrl,
    });
  }

  private listReports(url: URL, send: (s: number, p: unknown) => void): void {
    const q = url.searchParams;
    const limit = Number(q.get('limit') ?? '25');
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) return send(400, { Message: 'limit must be between 1 and 100' });
    const after = q.get('modifiedDateAfter');
    const before = q.get('modifiedDateBefore');
    const afterMs = after === null ? undefined : parseConcurDate(after);
    const beforeMs = before === null ? undefined : parseConcurDate(before);
    if ((after !== null && afterMs === undefined) || (before !== null && beforeMs === undefined)) {
      return send(400, { Message: 'modifiedDateAfter/modifiedDateBefore must be yyyy-MM-dd or yyyy-MM-ddTHH:mm:ss' });
    }
    const offset = q.get('offset') ? Number(Buffer.from(q.get('offset')!, 'base64url').toString()) : 0;
    const matching = [...this.reports.values()]
      .filter((r) => (afterMs === undefined || r.modifiedMs > afterMs) && (beforeMs === undefined || r.modifiedMs < beforeMs))
      .sort((a, b) => a.modifiedMs - b.modifiedMs || a.ID.localeCompare(b.ID));
    const items = matching.slice(offset, offset + limit).map((r) => this.publicReport(r));
    let nextPage: string | null = null;
    if (offset + limit < matching.length) {
      const next = new URL(url);
      next.searchParams.set('offset', Buffer.from(String(offset + limit)).toString('base64url'));
      nextPage = next.toString();
    }
    send(200, { Items: items, NextPage: nextPage });
  }

  private control(method: string, url: URL, body: string, send: (s: number, p: unknown) => void): void {
    const path = url.pathname.slice('/_sim/'.length);
    if (method === 'GET' && path === 'reports') return send(200, this.allReports());
    if (method === 'GET' && path === 'changes') return send(200, this.changes);
    if (method === 'POST' && path === 'reports') return send(201, this.createReport(body ? (JSON.parse(body) as Partial<SimReport>) : {}));
    const update = /^reports\/([^/]+)\/update$/.exec(path);
    if (method === 'POST' && update) {
      if (!this.reports.has(update[1]!)) return send(404, { Message: `no report ${update[1]}` });
      return send(200, this.updateReport(update[1]!));
    }
    send(404, { Message: `no control route ${method} ${path}` });
  }
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
