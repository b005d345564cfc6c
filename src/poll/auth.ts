import { createHash } from 'node:crypto';
import type { Got } from 'got';
import { AbortError } from 'p-retry';
import { CONCUR_ELEMENT } from '../config/keys.js';
import type { AuthConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { AuthState, Store } from '../store/types.js';
import { stableFraction } from '../util/stableFraction.js';
import { describeNetworkError } from './httpClient.js';
import { type FetchPolicy, isTransientStatus, retryTransient, transient } from './retry.js';

export class AuthError extends Error {}

/**
 * How long one token request may take. A refresh is not cancelled by a stopping poll (Concur
 * may already have rotated the refresh token), so this is what bounds it, and a stop with it.
 */
export const TOKEN_REQUEST_TIMEOUT_MS = 10_000;

/** Waits before the second and third attempt to save a rotated refresh token (SQLITE_BUSY, a full disk). */
const SAVE_RETRY_DELAYS_MS = [250, 1000];

/**
 * While a rotated refresh token is only in memory, saving it is tried again at each request
 * for a token (each page), and this often when none comes. Not more often: an attempt on a
 * locked database holds the database thread for SQLite's busy timeout (5 s).
 */
const SAVE_AGAIN_EVERY_MS = 30_000;

/**
 * Refresh this long before Concur's stated expiry, so a token never expires mid-poll: a tenth
 * of the token's life, at most a minute. A fixed minute made a token living 20 s be refreshed
 * before every request.
 */
export function refreshMarginMs(lifetimeMs: number): number {
  return Math.min(60_000, lifetimeMs / 10);
}

/** Tokens living shorter than this are refreshed at the margin: spreading them would only add refreshes. */
const SPREAD_MIN_LIFETIME_MS = 600_000;

/**
 * When a token issued at `issuedMs` is refreshed, ms since the epoch. Each instance has its place
 * in the token's life (`phase`, from its name): refreshes come at `phase` of the period, so that
 * two thousand instances started together do not all refresh in the same minute an hour later,
 * and each minute holds its share. The first refresh after a start may come early, once, to
 * reach the instance's place.
 */
export function refreshAtMs(issuedMs: number, lifetimeMs: number, phase: number): number {
  const period = lifetimeMs - refreshMarginMs(lifetimeMs);
  const latest = issuedMs + period;
  if (lifetimeMs < SPREAD_MIN_LIFETIME_MS) return latest;
  const margin = refreshMarginMs(lifetimeMs);
  const at = latest - ((((latest - phase * period) % period) + period) % period);
  // Not again within the margin of the last refresh: the next place is then still before the
  // token expires (in its margin), and a test or a restart never sees a second refresh at once.
  return at - issuedMs < margin ? at + period : at;
}

/**
 * The origin of a `geolocation` from a token answer, if it is an https URL, or an http one while
 * the configured token URL is http too (a local setup): refreshes there carry the client secret
 * and the refresh token, and pages the access token, so an answer never downgrades them to http.
 */
export function geolocationOrigin(value: unknown, tokenUrl: string): string | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    const url = new URL(value);
    if (url.protocol === 'https:') return url.origin;
    return url.protocol === 'http:' && new URL(tokenUrl).protocol === 'http:' ? url.origin : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Where to refresh: Concur wants refreshes at the token's geolocation (an EMEA tenant's refresh
 * token is refused by the US host of the sample config). The configured URL's path is kept,
 * only the host changes: the path is the API's, the host the tenant's data centre.
 */
/**
 * Where an instance's API is: for Concur, the geolocation its token answer named (the tenant's
 * data centre), else the configured base URL. Every request for records, objects or failed
 * notifications goes there.
 */
export function apiBaseOf(instance: { elementKey: string; baseUrl: string }, auth: Authenticator): string {
  return (instance.elementKey === CONCUR_ELEMENT ? auth.apiBase() : undefined) ?? instance.baseUrl;
}

export function refreshUrl(tokenUrl: string, geolocation: string | undefined): string {
  if (!geolocation) return tokenUrl;
  const configured = new URL(tokenUrl);
  return new URL(`${configured.pathname}${configured.search}`, geolocation).toString();
}

export interface Authenticator {
  headers(signal?: AbortSignal): Promise<Record<string, string>>;
  /** The last token was refused (401): the next `headers()` must get a new one. */
  invalidate(): void;
  /** Where the provider says the API lives (Concur's `geolocation`), if it said. */
  apiBase(): string | undefined;
  /** What an operator must act on now (a rotated refresh token that could not be saved), for /healthz. */
  problem(): string | undefined;
  /** Starts no more token requests, and waits for one in flight to be answered and saved. */
  close(): Promise<void>;
}

/**
 * Where the rotated refresh token and the access token are kept: the database; with `cluster`,
 * one shared by replicas, whose token lock makes each refresh and its save one step.
 */
export type AuthStateStore = Pick<Store, 'loadAuthState' | 'saveAuthState' | 'cluster'>;

/** Tells which configured refresh token a stored state grew from: a new one in the config wins over it. */
export function seedHashOf(refreshToken: string): string {
  return createHash('sha256').update(refreshToken).digest('hex');
}

export type AuthDeps = {
  http: Got;
  store: AuthStateStore;
  instance: string;
  log: Logger;
  /** Retries of a token request: the same rules as a page's. */
  policy: FetchPolicy;
  /** Told about every token learned at run time, so the logger can redact it. */
  onSecret: (value: string) => void;
  /** Runs each token request, for the daemon's limit of requests in flight to the token host. */
  limit?: <T>(url: string, request: () => Promise<T>) => Promise<T>;
};

const fixed = (headers: Record<string, string>): Authenticator => ({
  headers: async () => headers, invalidate: () => {}, apiBase: () => undefined, problem: () => undefined, close: async () => {},
});

export function createAuthenticator(config: AuthConfig, deps: AuthDeps): Authenticator {
  switch (config.type) {
    case 'none':
      return fixed({});
    case 'bearer':
      return fixed({ authorization: `Bearer ${config.token}` });
    case 'basic': {
      const value = 'Basic ' + Buffer.from(`${config.username}:${config.password}`).toString('base64');
      deps.onSecret(value);
      return fixed({ authorization: value });
    }
    case 'oauth2_refresh_token':
      return new RefreshTokenAuth(config, deps);
  }
}

type TokenResponse = { access_token?: unknown; expires_in?: unknown; refresh_token?: unknown; geolocation?: unknown; error?: unknown; error_description?: unknown };
type TokenAnswer = TokenResponse & { access_token: string };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** `promise`, or a rejection as soon as `signal` aborts; the work behind `promise` goes on. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(new AuthError('the poll was stopped while its token was refreshed'));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(new AuthError('the poll was stopped while its token was refreshed'));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * OAuth2 refresh-token grant as Concur runs it: every refresh returns a new refresh token that
 * replaces the old one (which may stop working at once), so it is stored before it is used. The
 * access token is stored with it and used again after a restart while it is valid: a refresh is
 * the one moment a crash can lose the only working refresh token (after Concur answered, before
 * the answer is written), so there is one an hour, not one per start.
 *
 * A refresh, once sent, runs to its end whoever stops waiting for it: a poll's abort signal
 * only stops that poll waiting. A stop (`close`) waits for it and its save.
 */
class RefreshTokenAuth implements Authenticator {
  private accessToken: string | undefined;
  /** The last access token answered 401 here: another replica's stored token is adopted only if it is not this one. */
  private rejected: string | undefined;
  private expiresAt = 0;
  private geolocation: string | undefined;
  private refreshing: Promise<void> | undefined;
  private restoring: Promise<void> | undefined;
  /** The newest refresh token: the configured one until the stored one is read or a refresh rotates it. */
  private refreshToken: string;
  private readonly seedHash: string;
  /** This instance's place in a token's life, for refreshes spread over the hour. */
  private readonly phase: number;
  /** Ends the waits between token request attempts, and the retries of saving, when stopping. */
  private readonly closing = new AbortController();
  /** Saves run one at a time, each writing the newest state. */
  private saves: Promise<void> = Promise.resolve();
  private saveQueued = false;
  /** Set while the newest refresh token is only in memory. */
  private unsaved: { since: number; error: string } | undefined;
  private saveTimer: NodeJS.Timeout | undefined;

  constructor(private readonly config: Extract<AuthConfig, { type: 'oauth2_refresh_token' }>, private readonly deps: AuthDeps) {
    this.seedHash = seedHashOf(config.refreshToken);
    this.refreshToken = config.refreshToken;
    this.phase = stableFraction(`token:${deps.instance}`);
  }

  apiBase(): string | undefined {
    return this.geolocation;
  }

  invalidate(): void {
    this.rejected = this.accessToken ?? this.rejected;
    this.accessToken = undefined;
  }

  problem(): string | undefined {
    if (!this.unsaved) return undefined;
    return `the rotated refresh token could not be saved since ${new Date(this.unsaved.since).toISOString()} (${this.unsaved.error}); `
      + 'it is only in memory, and saving is retried: if pollbridge stops before it is saved, put a new refresh token in the config and reload';
  }

  async headers(signal?: AbortSignal): Promise<Record<string, string>> {
    // A failed read of the stored state is tried again on the next call, not remembered.
    this.restoring ??= this.restore().catch((err: unknown) => {
      this.restoring = undefined;
      throw err;
    });
    await this.restoring;
    if (this.unsaved && !this.saveQueued) void this.save([]);
    if (!this.accessToken || Date.now() >= this.expiresAt) {
      // Concurrent polls of one instance share one refresh: two would race to rotate the token.
      if (!this.refreshing) {
        if (this.closing.signal.aborted) throw new AuthError('pollbridge is stopping: no token refresh is started');
        const refreshing = this.refresh().finally(() => {
          this.refreshing = undefined;
        });
        // Its poll may have stopped waiting: a failure then is the next poll's to report, not an unhandled rejection.
        refreshing.catch(() => {});
        this.refreshing = refreshing;
      }
      await untilAborted(this.refreshing, signal);
    }
    return { authorization: `Bearer ${this.accessToken}` };
  }

  async close(): Promise<void> {
    this.closing.abort(new AuthError('pollbridge is stopping: the token request is not tried again'));
    clearTimeout(this.saveTimer);
    await this.refreshing?.catch(() => {});
    await this.saves;
    if (!this.unsaved) return;
    await this.save([]);
    if (this.unsaved) {
      this.deps.log.error('stopping with a rotated refresh token that could not be saved: the next start uses the stored one, which Concur has replaced, and polls fail with invalid_grant until a new refresh token is put in the config', {
        error: this.unsaved.error,
      });
    }
  }

  /**
   * The stored tokens, if they were stored for this configuration (a new refresh token in the
   * config wins): the refresh token always, the access token while it is still good.
   */
  private async restore(): Promise<void> {
    const saved = await this.deps.store.loadAuthState(this.deps.instance);
    if (!saved || saved.seedHash !== this.seedHash) return;
    this.geolocation ??= geolocationOrigin(saved.geolocation, this.config.tokenUrl);
    this.deps.onSecret(saved.refreshToken);
    this.refreshToken = saved.refreshToken;
    if (saved.accessToken === undefined || saved.accessExpiresAt === undefined || Date.now() >= saved.accessExpiresAt) return;
    this.deps.onSecret(saved.accessToken);
    this.accessToken = saved.accessToken;
    this.expiresAt = saved.accessExpiresAt;
  }

  /**
   * With replicas on one database, a refresh runs only under the instance's token lock: Concur
   * rotates the refresh token on every use, so two replicas refreshing at once would strand the
   * instance (the slower one sends a spent token). Under the lock, a good access token another
   * replica stored is taken as it is; otherwise the refresh starts from the newest stored
   * refresh token, and its result is saved before the lock is let go.
   */
  private async refresh(): Promise<void> {
    const cluster = this.deps.store.cluster;
    if (!cluster) return this.refreshNow();
    await cluster.withTokenLock(this.deps.instance, async (stored) => {
      if (stored && stored.seedHash === this.seedHash) {
        if (this.adoptAccessToken(stored)) return;
        // A refresh token rotated here and not yet saved is newer than the stored one; else the
        // stored one is (this replica's own, or another's rotation since).
        if (!this.unsaved && stored.refreshToken !== this.refreshToken) {
          this.deps.onSecret(stored.refreshToken);
          this.refreshToken = stored.refreshToken;
          this.geolocation = geolocationOrigin(stored.geolocation, this.config.tokenUrl) ?? this.geolocation;
        }
      }
      await this.refreshNow();
    });
  }

  /** Takes a stored access token that is still good and not the one refused here (with its refresh token); true if taken. */
  private adoptAccessToken(stored: AuthState): boolean {
    const { accessToken, accessExpiresAt } = stored;
    if (accessToken === undefined || accessExpiresAt === undefined || Date.now() >= accessExpiresAt || accessToken === this.rejected) return false;
    if (this.unsaved) return false;
    this.deps.onSecret(accessToken);
    this.deps.onSecret(stored.refreshToken);
    this.accessToken = accessToken;
    this.expiresAt = accessExpiresAt;
    this.refreshToken = stored.refreshToken;
    this.geolocation = geolocationOrigin(stored.geolocation, this.config.tokenUrl) ?? this.geolocation;
    return true;
  }

  private async refreshNow(): Promise<void> {
    const url = refreshUrl(this.config.tokenUrl, this.geolocation);
    let answer: TokenAnswer | undefined;
    try {
      await retryTransient(async () => {
        answer = await this.requestToken(url);
      }, this.deps.policy, this.closing.signal, (notice) => this.deps.log.warn('token request failed; retrying', notice));
    } catch (err) {
      // p-retry throws on an aborted signal even after an attempt succeeded: an answer already
      // received carries the rotated refresh token, and is used and saved all the same.
      if (!answer) throw err instanceof AuthError ? err : new AuthError(`token refresh at ${url} failed: ${String(err)}`, { cause: err });
    }
    this.apply(answer!);
    await this.save(SAVE_RETRY_DELAYS_MS);
  }

  /** One token request: transient failures (network, 429, 5xx) are thrown for a retry, the rest as final. */
  private async requestToken(url: string): Promise<TokenAnswer> {
    let response;
    try {
      const post = () => this.deps.http.post(url, {
        form: { grant_type: 'refresh_token', client_id: this.config.clientId, client_secret: this.config.clientSecret, refresh_token: this.refreshToken },
        headers: { accept: 'application/json' },
        timeout: { request: TOKEN_REQUEST_TIMEOUT_MS },
      });
      response = await (this.deps.limit ? this.deps.limit(url, post) : post());
    } catch (err) {
      const reason = describeNetworkError(err);
      throw transient(new AuthError(`token request to ${url} failed: ${reason}`, { cause: err }), reason);
    }
    const status = response.statusCode;
    if (isTransientStatus(status)) throw transient(new AuthError(`token endpoint ${url} answered ${status}`), `answered ${status}`, response.headers['retry-after']);
    let body: TokenResponse;
    try {
      body = JSON.parse(response.body) as TokenResponse;
    } catch {
      throw new AbortError(new AuthError(`token endpoint ${url} answered ${status} without JSON`));
    }
    if (status !== 200 || typeof body.access_token !== 'string') {
      const reason = typeof body.error === 'string' ? `${body.error}${typeof body.error_description === 'string' ? ` (${body.error_description})` : ''}` : 'no access_token';
      throw new AbortError(new AuthError(`token refresh refused by ${url}: HTTP ${status}, ${reason}`));
    }
    return body as TokenAnswer;
  }

  private apply(body: TokenAnswer): void {
    this.deps.onSecret(body.access_token);
    // Concur sends expires_in as a string ("3600").
    const stated = Number(body.expires_in ?? 3600);
    const lifetimeMs = (Number.isFinite(stated) && stated >= 0 ? stated : 3600) * 1000;
    this.accessToken = body.access_token;
    // Whole ms: the stored expiry is an integer column (PostgreSQL's BIGINT refuses a fraction).
    this.expiresAt = Math.floor(refreshAtMs(Date.now(), lifetimeMs, this.phase));
    this.geolocation = geolocationOrigin(body.geolocation, this.config.tokenUrl) ?? this.geolocation;
    if (typeof body.refresh_token === 'string' && body.refresh_token !== '') {
      this.deps.onSecret(body.refresh_token);
      this.refreshToken = body.refresh_token;
    }
  }

  /**
   * Writes the newest state, trying again after each of `retryDelaysMs`. A failure does not stop
   * polling (the tokens in memory work): it is reported, and saving is tried again every few
   * seconds until it succeeds or pollbridge stops.
   */
  private save(retryDelaysMs: readonly number[]): Promise<void> {
    this.saveQueued = true;
    this.saves = this.saves.then(() => {
      this.saveQueued = false;
      return this.saveNow(retryDelaysMs);
    });
    return this.saves;
  }

  private async saveNow(retryDelaysMs: readonly number[]): Promise<void> {
    const state: AuthState = {
      seedHash: this.seedHash, refreshToken: this.refreshToken, geolocation: this.geolocation, accessToken: this.accessToken, accessExpiresAt: this.expiresAt,
    };
    let error: unknown;
    for (let attempt = 0; attempt <= retryDelaysMs.length; attempt++) {
      if (attempt > 0) await sleep(retryDelaysMs[attempt - 1]!);
      try {
        await this.deps.store.saveAuthState(this.deps.instance, state);
        if (this.unsaved && state.refreshToken === this.refreshToken) {
          this.unsaved = undefined;
          this.deps.log.info('the rotated refresh token is saved now');
        }
        return;
      } catch (err) {
        error = err;
      }
    }
    const message = error instanceof Error ? error.message : String(error);
    if (!this.unsaved) {
      this.deps.log.error('the rotated refresh token could not be saved; it is kept in memory and saving is retried. If pollbridge stops before it is saved, polls fail with invalid_grant: put a new refresh token in the config and reload', {
        error: message, attempts: retryDelaysMs.length + 1,
      });
    }
    this.unsaved = { since: this.unsaved?.since ?? Date.now(), error: message };
    if (!this.closing.signal.aborted) {
      clearTimeout(this.saveTimer);
      this.saveTimer = setTimeout(() => void this.save([]), SAVE_AGAIN_EVERY_MS);
    }
  }
}
