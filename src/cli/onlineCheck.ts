import type { Got } from 'got';
import type { InstanceConfig, PollbridgeConfig, ResourceConfig } from '../config/types.js';
import { sendNotification } from '../deliver/sendNotification.js';
import { createLogger, type Logger, redactor } from '../log.js';
import { apiBaseOf, type Authenticator, type AuthStateStore, createAuthenticator, geolocationOrigin, seedHashOf } from '../poll/auth.js';
import { fetchJson } from '../poll/fetchJson.js';
import { createGetText, createHttpClient, type GetText } from '../poll/httpClient.js';
import { readPages } from '../poll/pages.js';
import { firstPageUrl } from '../poll/requestUrl.js';
import type { FetchPolicy } from '../poll/retry.js';
import { acquireDaemonLock, DatabaseInUseError } from '../store/lock.js';
import { PgStore } from '../store/pg/pgStore.js';
import { SqliteStore } from '../store/sqliteStore.js';
import { instantFromMs } from '../time/instant.js';
import { newNotificationId } from '../util/ids.js';

/** A check waits less than a poll would: an operator is watching. */
const CHECK_POLICY: FetchPolicy = { retries: 2, minTimeoutMs: 1000, maxRetryAfterSec: 10 };
const PAGE_TIMEOUT_MS = 30_000;
/** The first page is read for a window this long, ending now: any window proves the URL. */
const CHECK_WINDOW_MS = 60 * 60_000;
/** Marks the test notification in the body's `raw.objectType`, beside `message.test`. */
const TEST_OBJECT_TYPE = 'pollbridge.test';
/** Marks the test notification in its headers, so a receiver can tell it before parsing the body. */
const TEST_HEADER = 'pollbridge-test';

type Outcome = { ok: boolean; detail: string };
type Say = (line: string) => void;

/**
 * The tokens' home while checking. With the daemon stopped, the check holds the daemon's lock
 * and uses the database as the daemon would: a refresh rotates Concur's refresh token, and the
 * new one is saved there for the daemon. With the daemon running, the database is only read:
 * a refresh here would rotate the refresh token the daemon holds in memory and break its next
 * refresh, so only an access token the daemon stored, still valid, is used. On PostgreSQL the
 * check is one more replica for the tokens: it refreshes under the instance's token lock, and
 * the replicas read what it stored.
 */
type TokenHome = { store: AuthStateStore; daemonRunning: boolean; close(): Promise<void> };

async function openTokenHome(config: PollbridgeConfig): Promise<TokenHome> {
  if (config.databaseUrl) {
    const store = await PgStore.open(config.databaseUrl, { replicaName: 'validate --online' });
    return { store, daemonRunning: false, close: () => store.close() };
  }
  const database = config.database;
  let lock: { release(): void };
  try {
    lock = acquireDaemonLock(database);
  } catch (err) {
    if (!(err instanceof DatabaseInUseError)) throw err;
    const store = new SqliteStore(database, { readonly: true });
    return { store, daemonRunning: true, close: () => store.close() };
  }
  try {
    const store = new SqliteStore(database);
    return {
      store,
      daemonRunning: false,
      close: async () => {
        await store.close();
        lock.release();
      },
    };
  } catch (err) {
    lock.release();
    throw err;
  }
}

/** For auth types without tokens: nothing is ever stored or read. */
const NOTHING_STORED: AuthStateStore = {
  loadAuthState: async () => undefined,
  saveAuthState: async () => {
    throw new Error('this auth type stores no tokens');
  },
};

type Context = { say: Say; redact: (text: string) => string; http: Got; getText: GetText; log: Logger; learn: (secret: string) => void; tokens: () => Promise<TokenHome>; database: string };

/**
 * For each enabled instance: a token, the first page of each resource, and a signed test
 * notification to the callback URL, one line each. Touches no cursor and no outbox. True when
 * every step passed.
 */
export async function checkOnline(config: PollbridgeConfig, say: Say): Promise<boolean> {
  const secrets = [...config.secrets];
  let redact = redactor(secrets);
  const log = createLogger({ level: 'warn', secrets, stream: process.stderr });
  let home: Promise<TokenHome> | undefined;
  const ctx: Context = {
    say: (line) => say(redact(line)),
    redact: (text) => redact(text),
    http: createHttpClient({ timeoutMs: PAGE_TIMEOUT_MS }),
    getText: createGetText({ timeoutMs: PAGE_TIMEOUT_MS }),
    log,
    learn: (secret) => {
      secrets.push(secret);
      redact = redactor(secrets);
      log.addSecrets([secret]);
    },
    tokens: () => (home ??= openTokenHome(config)),
    database: config.database,
  };
  let passed = true;
  try {
    for (const instance of config.instances) {
      if (!instance.enabled) {
        ctx.say(`${instance.name}: disabled, not checked`);
        continue;
      }
      passed = (await checkInstance(instance, ctx)) && passed;
    }
  } finally {
    await (await home?.catch(() => undefined))?.close();
  }
  return passed;
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

async function checkInstance(instance: InstanceConfig, ctx: Context): Promise<boolean> {
  let passed = true;
  const step = (what: string, outcome: Outcome): void => {
    ctx.say(`${instance.name} ${what}: ${outcome.ok ? 'ok' : 'FAILED'}: ${outcome.detail}`);
    passed &&= outcome.ok;
  };
  let auth: Authenticator | undefined;
  try {
    const got = await authenticate(instance, ctx);
    auth = got.auth;
    step('token', { ok: true, detail: got.detail });
  } catch (err) {
    step('token', { ok: false, detail: message(err) });
  }
  for (const resource of instance.resources) {
    const what = `${resource.name} first page`;
    if (!auth) {
      step(what, { ok: false, detail: 'not read: no token' });
      continue;
    }
    try {
      step(what, { ok: true, detail: await readFirstPage(instance, resource, auth, ctx) });
    } catch (err) {
      step(what, { ok: false, detail: message(err) });
    }
  }
  if (auth) {
    await auth.close();
    const problem = auth.problem();
    if (problem) step('token saved', { ok: false, detail: problem });
  }
  step('callback', await postTestNotification(instance, ctx));
  return passed;
}

async function authenticate(instance: InstanceConfig, ctx: Context): Promise<{ auth: Authenticator; detail: string }> {
  const config = instance.auth;
  const deps = { http: ctx.http, instance: instance.name, log: ctx.log, policy: CHECK_POLICY, onSecret: ctx.learn };
  if (config.type !== 'oauth2_refresh_token') {
    return { auth: createAuthenticator(config, { ...deps, store: NOTHING_STORED }), detail: `no token to get (auth ${config.type}): the first page proves the credentials` };
  }
  const home = await ctx.tokens();
  const saved = await home.store.loadAuthState(instance.name);
  const ours = saved?.seedHash === seedHashOf(config.refreshToken) ? saved : undefined;
  const validUntil = ours?.accessToken !== undefined && ours.accessExpiresAt !== undefined && Date.now() < ours.accessExpiresAt ? ours.accessExpiresAt : undefined;
  if (home.daemonRunning) {
    if (!ours?.accessToken || validUntil === undefined) {
      throw new Error(`not checked: a daemon is running on ${ctx.database} and has stored no valid access token for this configuration; `
        + 'a refresh here would rotate the refresh token that daemon holds and break its next refresh. Run the check again after its next poll, or with the daemon stopped');
    }
    const token = ours.accessToken;
    ctx.learn(token);
    const apiBase = geolocationOrigin(ours.geolocation, config.tokenUrl);
    const stored: Authenticator = {
      headers: async () => ({ authorization: `Bearer ${token}` }),
      invalidate: () => {},
      apiBase: () => apiBase,
      problem: () => undefined,
      close: async () => {},
    };
    return { auth: stored, detail: `the access token the running daemon stored (valid until ${new Date(validUntil).toISOString()}); not refreshed while the daemon runs` };
  }
  const auth = createAuthenticator(config, { ...deps, store: home.store });
  await auth.headers();
  const detail = validUntil !== undefined
    ? `the stored access token (valid until ${new Date(validUntil).toISOString()})`
    : `a new access token from the token endpoint; a rotated refresh token is saved in ${ctx.database}, as the daemon saves it`;
  return { auth, detail };
}

async function readFirstPage(instance: InstanceConfig, resource: ResourceConfig, auth: Authenticator, ctx: Context): Promise<string> {
  const apiBase = apiBaseOf(instance, auth);
  const now = Date.now();
  const url = firstPageUrl(resource, instance.elementKey, apiBase, instantFromMs(now - CHECK_WINDOW_MS), instantFromMs(now));
  const pages = readPages(url, {
    fetch: (u) => fetchJson(ctx.getText, auth, u, CHECK_POLICY),
    itemsPath: resource.itemsPath,
    nextPagePath: resource.nextPagePath,
    apiBase,
    maxPages: 2,
    readAhead: false,
  });
  try {
    const first = await pages.next();
    if (first.done) throw new Error(`GET ${url} gave no page`);
    const { items, more } = first.value;
    return `${items.length} record(s) changed in the last hour${more ? ', more pages follow' : ''} (GET ${url})`;
  } finally {
    await pages.return(undefined);
  }
}

/**
 * A notification in the contract's envelope, signed as every delivery is, with no events (a
 * receiver that acts on each event acts on none) and marked as a test twice: `message.test` and
 * `raw.objectType` in the body, the TEST_HEADER header beside the signatures. Never stored.
 */
async function postTestNotification(instance: InstanceConfig, ctx: Context): Promise<Outcome> {
  const id = newNotificationId();
  const body = JSON.stringify({
    message: { eventId: id, instanceName: instance.name, elementKey: instance.elementKey, test: true, events: [], raw: { objectType: TEST_OBJECT_TYPE } },
  });
  const http = ctx.http.extend({ headers: { [TEST_HEADER]: '1' } });
  const target = { url: instance.callbackUrl, keys: { current: instance.signatureKey, previous: instance.previousSignatureKeys }, timeoutMs: instance.delivery.timeoutMs };
  const result = await sendNotification(http, target, { id, body });
  const where = `POST ${instance.callbackUrl}, test notification ${id}${instance.signatureKey ? '' : ', unsigned (no signature key)'}`;
  if (result.error === undefined) return { ok: true, detail: `HTTP ${result.statusCode} in ${result.durationMs} ms (${where})` };
  // Redacted before it is cut: a cut inside an echoed secret leaves a piece no redaction knows.
  const answer = result.responseExcerpt ? `: "${ctx.redact(result.responseExcerpt).replace(/\s+/g, ' ').trim().slice(0, 120)}"` : '';
  return { ok: false, detail: `${result.error}${answer} (${where})` };
}
