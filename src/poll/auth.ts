import { createHash } from 'node:crypto';
import type { Got } from 'got';
import type { AuthConfig } from '../config/types.js';
import type { Store } from '../store/types.js';
import { describeNetworkError } from './httpClient.js';

export class AuthError extends Error {}

/** Refresh this long before Concur's stated expiry, so a token never expires mid-poll. */
const EXPIRY_MARGIN_MS = 60_000;

export interface Authenticator {
  headers(signal?: AbortSignal): Promise<Record<string, string>>;
  /** The last token was refused (401): the next `headers()` must get a new one. */
  invalidate(): void;
  /** Where the provider says the API lives (Concur's `geolocation`), if it said. */
  apiBase(): string | undefined;
}

export type AuthDeps = {
  http: Got;
  store: Store;
  instance: string;
  /** Told about every token learned at run time, so the logger can redact it. */
  onSecret: (value: string) => void;
};

export function createAuthenticator(config: AuthConfig, deps: AuthDeps): Authenticator {
  switch (config.type) {
    case 'none':
      return { headers: async () => ({}), invalidate: () => {}, apiBase: () => undefined };
    case 'bearer':
      return { headers: async () => ({ authorization: `Bearer ${config.token}` }), invalidate: () => {}, apiBase: () => undefined };
    case 'basic': {
      const value = 'Basic ' + Buffer.from(`${config.username}:${config.password}`).toString('base64');
      deps.onSecret(value);
      return { headers: async () => ({ authorization: value }), invalidate: () => {}, apiBase: () => undefined };
    }
    case 'oauth2_refresh_token':
      return new RefreshTokenAuth(config, deps);
  }
}

type TokenResponse = { access_token?: unknown; expires_in?: unknown; refresh_token?: unknown; geolocation?: unknown; error?: unknown; error_description?: unknown };

/**
 * OAuth2 refresh-token grant as Concur runs it: every refresh returns a new refresh token that
 * replaces the old one (which may stop working at once), so it is stored before it is used. The
 * access token is stored with it and used again after a restart while it is valid: a refresh is
 * the one moment a crash can lose the only working refresh token (after Concur answered, before
 * the answer is written), so there is one an hour, not one per start.
 */
class RefreshTokenAuth implements Authenticator {
  private accessToken: string | undefined;
  private expiresAt = 0;
  private geolocation: string | undefined;
  private refreshing: Promise<void> | undefined;
  private restoring: Promise<void> | undefined;
  /** The newest refresh token: the configured one until the stored one is read or a refresh rotates it. */
  private refreshToken: string;
  private readonly seedHash: string;

  constructor(private readonly config: Extract<AuthConfig, { type: 'oauth2_refresh_token' }>, private readonly deps: AuthDeps) {
    this.seedHash = createHash('sha256').update(config.refreshToken).digest('hex');
    this.refreshToken = config.refreshToken;
  }

  apiBase(): string | undefined {
    return this.geolocation;
  }

  invalidate(): void {
    this.accessToken = undefined;
  }

  async headers(signal?: AbortSignal): Promise<Record<string, string>> {
    // A failed read of the stored state is tried again on the next call, not remembered.
    this.restoring ??= this.restore().catch((err: unknown) => {
      this.restoring = undefined;
      throw err;
    });
    await this.restoring;
    if (!this.accessToken || Date.now() >= this.expiresAt) {
      // Concurrent polls of one instance share one refresh: two would race to rotate the token.
      this.refreshing ??= this.refresh(signal).finally(() => {
        this.refreshing = undefined;
      });
      await this.refreshing;
    }
    return { authorization: `Bearer ${this.accessToken}` };
  }

  /**
   * The stored tokens, if they were stored for this configuration (a new refresh token in the
   * config wins): the refresh token always, the access token while it is still good.
   */
  private async restore(): Promise<void> {
    const saved = await this.deps.store.loadAuthState(this.deps.instance);
    if (!saved || saved.seedHash !== this.seedHash) return;
    this.geolocation ??= saved.geolocation;
    this.deps.onSecret(saved.refreshToken);
    this.refreshToken = saved.refreshToken;
    if (saved.accessToken === undefined || saved.accessExpiresAt === undefined || Date.now() >= saved.accessExpiresAt) return;
    this.deps.onSecret(saved.accessToken);
    this.accessToken = saved.accessToken;
    this.expiresAt = saved.accessExpiresAt;
  }

  private async refresh(signal?: AbortSignal): Promise<void> {
    let response;
    try {
      response = await this.deps.http.post(this.config.tokenUrl, {
        form: { grant_type: 'refresh_token', client_id: this.config.clientId, client_secret: this.config.clientSecret, refresh_token: this.refreshToken },
        headers: { accept: 'application/json' },
        signal,
      });
    } catch (err) {
      throw new AuthError(`token request to ${this.config.tokenUrl} failed: ${describeNetworkError(err)}`, { cause: err });
    }
    let body: TokenResponse;
    try {
      body = JSON.parse(response.body) as TokenResponse;
    } catch {
      throw new AuthError(`token endpoint ${this.config.tokenUrl} answered ${response.statusCode} without JSON`);
    }
    if (response.statusCode !== 200 || typeof body.access_token !== 'string') {
      const reason = typeof body.error === 'string' ? `${body.error}${typeof body.error_description === 'string' ? ` (${body.error_description})` : ''}` : 'no access_token';
      throw new AuthError(`token refresh refused by ${this.config.tokenUrl}: HTTP ${response.statusCode}, ${reason}`);
    }
    this.deps.onSecret(body.access_token);
    // Concur sends expires_in as a string ("3600").
    const expiresInSec = Number(body.expires_in ?? 3600);
    this.accessToken = body.access_token;
    this.expiresAt = Date.now() + Math.max(0, (Number.isFinite(expiresInSec) ? expiresInSec : 3600) * 1000 - EXPIRY_MARGIN_MS);
    if (typeof body.geolocation === 'string' && /^https?:\/\//.test(body.geolocation)) this.geolocation = body.geolocation;
    if (typeof body.refresh_token === 'string' && body.refresh_token !== '') {
      this.deps.onSecret(body.refresh_token);
      this.refreshToken = body.refresh_token;
    }
    await this.deps.store.saveAuthState(this.deps.instance, {
      seedHash: this.seedHash, refreshToken: this.refreshToken, geolocation: this.geolocation, accessToken: this.accessToken, accessExpiresAt: this.expiresAt,
    });
  }
}
