import { createHash } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import cron from 'node-cron';
import { compileUrlTemplate, type UrlTemplate } from '../poll/urlTemplate.js';
import { createDateParser, type DateParser } from '../time/dateParser.js';
import { instantFromMs } from '../time/instant.js';
import { MIN_SECRET } from '../util/secretIndex.js';
import { PatternError } from '../time/javaPattern.js';
import { normalizeTimeZone } from '../time/zone.js';
import { checkCallouts, type PlacedInstance, readCalloutListen, readInstanceCallout } from './callout.js';
import { childPath, ConfigError, type ConfigIssue, IssueList } from './issues.js';
import { type InstanceFile, readInstanceFiles, refuseSharedNames } from './instancesDir.js';
import { readJsonFile } from './jsonFile.js';
import { INSTANCE_EXTENSION_KEYS, RESOURCE_EXTENSION_KEYS } from './keys.js';
import { readListen } from './listen.js';
import { isObject, ObjectReader } from './read.js';
import { resolveSecrets, type SecretContext } from './secrets.js';
import { checkInstanceShape, checkRootShape, isMultiInstanceFile, referenceProblems, URL_KINDS, withoutAmplifyFields } from './shape.js';
import { type AuthConfig, type ClusterConfig, DEFAULT_LEASE_SECONDS, type InstanceConfig, type PollbridgeConfig, type PollingLimits, type RefusedInstanceFile, type ResourceConfig, type Schedule } from './types.js';

/** Above this many instances, /metrics has no per-instance series unless `http.metricsPerInstance` says so. */
export const METRICS_PER_INSTANCE_LIMIT = 100;

/**
 * Enough for 4,000 streams a minute against an API answering in 500 ms: a poll reads its window
 * and then the stretch due a second read (two requests), so about 67 requests are in flight;
 * twice that leaves room for token refreshes, slow pages and a backlog after a pause.
 */
export const DEFAULT_POLLING_LIMITS: PollingLimits = { maxConcurrent: 256, maxConcurrentPerOrigin: 128 };

/** AMPLIFY's delivery schedule: 4^n seconds for n = 1..9, about three days in all. */
export const DEFAULT_RETRY_SCHEDULE_SEC = [4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144];

const NO_EXTENSION_KEYS: ReadonlySet<string> = new Set();

/** Standard Webhooks' key encoding: canonical base64, padded, as its libraries decode it. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})+$|^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)$/;

export type LoadOptions = { env?: NodeJS.ProcessEnv; databaseOverride?: string };

/** `warnings`: what will work, but likely not as meant (also in `config.warnings`). */
export type LoadResult = { config: PollbridgeConfig; issues: []; warnings: ConfigIssue[] } | { config: undefined; issues: ConfigIssue[]; warnings: ConfigIssue[] };

/** Reads, resolves and checks a config file. Never throws for a bad file: it returns every issue. */
export function readConfig(file: string, options: LoadOptions = {}): LoadResult {
  const path = resolve(file);
  const issues = new IssueList(file);
  const json = readJsonFile(path, issues);
  if (!json) return { config: undefined, issues: issues.items, warnings: issues.warnings };
  const raw = json.value;
  if (!isObject(raw)) {
    issues.add('', 'must hold a JSON object: one instance, or { "instances": [...] }');
    return { config: undefined, issues: issues.items, warnings: issues.warnings };
  }
  const env = options.env ?? process.env;
  const resolved: string[] = [];
  const secretCtx = { env, baseDir: dirname(path), issues, resolved };
  const multi = isMultiInstanceFile(raw);
  const root = multi ? raw : { instances: [raw] };
  const rootReader = new ObjectReader(root, '', issues);
  checkRootShape(raw, issues);

  const { database, databaseUrl } = readDatabase(root, dirname(path), options.databaseOverride, secretCtx);
  const cluster = readCluster(rootReader);
  const httpReader = rootReader.object('http');
  const http = httpReader && readListen(httpReader, '127.0.0.1:9464');
  const polling = readPolling(rootReader);
  // Its tls files may be given by `${file:}`/`${credential:}`; the other top-level keys are read as written.
  const calloutReader = new ObjectReader({ callout: resolveSecrets(root.callout, 'callout', secretCtx) }, '', issues);
  const callout = readCalloutListen(calloutReader, dirname(path), resolved);
  const instancesDirRaw = rootReader.string('instancesDir');
  if (root.instancesDir === '') issues.add('instancesDir', 'must name a directory (or be left out)');
  const instancesDir = instancesDirRaw === undefined ? undefined : resolve(dirname(path), instancesDirRaw);

  const placed: PlacedInstance[] = [];
  const listed = root.instances ?? [];
  // With a directory named, even a wrong one (reported as such), `instances` may be left out.
  const dirNamed = root.instancesDir !== undefined;
  if (!Array.isArray(listed) || (listed.length === 0 && !dirNamed)) {
    issues.add('instances', dirNamed ? 'must be an array of instances (or left out)' : 'must be a non-empty array of instances');
  } else {
    listed.forEach((inst, i) => {
      const at = multi ? `instances[${i}]` : '';
      if (!isObject(inst)) {
        issues.add(at, 'must be an object');
        return;
      }
      const instance = readInstanceObject(inst, at, secretCtx, undefined);
      if (instance) placed.push({ instance, at, issues });
    });
  }
  const mainAllRead = Array.isArray(listed) && placed.length === listed.length;
  const mainInstances = placed.map((p) => p.instance);
  // The root's own pollbridge key is read as a setting, not searched as an extension.
  if (multi) reportUnknownExtensionKeys(Object.fromEntries(Object.entries(raw).filter(([key]) => key !== 'instances' && key !== CLUSTER_LEASE_KEY)), [], '', issues);
  const names = new Map<string, string>();
  for (const { instance, at } of placed) if (!names.has(instance.name)) names.set(instance.name, `${file} (${at})`);

  const files = instancesDir === undefined ? [] : readDirectory(instancesDir, issues, env, resolved);
  refuseSharedNames(files, names);
  // A function: checkCallouts may refuse more files.
  const fromFiles = (): PlacedInstance[] => files.flatMap((f) => (f.instance && f.issues.items.length === 0 ? [{ instance: f.instance, at: '', issues: f.issues }] : []));
  // Only when every instance could be read and every flag was true or false: an instance that
  // could not be read, or a flag such as "yes", may be the one meant to be enabled.
  const enabledUnclear = issues.items.some((i) => i.path.endsWith('["event.notification.enabled"]'));
  if (instancesDir === undefined && mainAllRead && mainInstances.length > 0 && !enabledUnclear && !mainInstances.some((i) => i.enabled)) {
    issues.add(multi ? 'instances' : 'configuration["event.notification.enabled"]',
      'no instance is enabled, so pollbridge would poll nothing: set "event.notification.enabled": "true" on the instance(s) to poll');
  }
  const refusedBefore = files.length - fromFiles().length;
  checkCallouts(issues, {
    calloutGiven: root.callout !== undefined, listen: callout, http, instances: [...placed, ...fromFiles()],
    allRead: mainAllRead && refusedBefore === 0, multi,
  });
  const seen = new Set<string>();
  for (const { instance, at } of placed) {
    if (seen.has(instance.name)) issues.add(multi ? `${at}.name` : 'name', `duplicate instance name "${instance.name}"`);
    seen.add(instance.name);
  }
  const instances = [...mainInstances, ...fromFiles().map((p) => p.instance)];
  const refused: RefusedInstanceFile[] = files.filter((f) => f.issues.items.length > 0).map((f) => ({ file: f.file, name: f.name, issues: f.issues.items }));
  if (instancesDir !== undefined) {
    // Instances come and go with their files: an empty directory is a daemon waiting for them.
    if (instances.length === 0) issues.warn('instancesDir', `no instance to poll yet: add instance files (*.json) to ${instancesDir}`);
    else if (refused.length === 0 && !instances.some((i) => i.enabled)) issues.warn('instances', 'no instance is enabled, so pollbridge polls nothing until one is');
  }
  const metricsPerInstance = readMetricsPerInstance(httpReader, instances.length);

  // Refused files' too: the daemon may keep running what one of them held.
  for (const inst of [...mainInstances, ...files.flatMap((f) => (f.instance ? [f.instance] : []))]) resolved.push(...secretsOf(inst));
  const warnings = [...issues.warnings, ...files.flatMap((f) => f.issues.warnings)];
  // All at once, as validate promises: the files' own issues too.
  if (issues.items.length > 0) return { config: undefined, issues: [...issues.items, ...refused.flatMap((r) => r.issues)], warnings };
  const secrets = [...new Set(resolved.filter((s) => s.length >= MIN_SECRET))];
  return {
    config: { file: path, database, databaseUrl, cluster, http, metricsPerInstance, polling, instancesDir, refused, callout, instances, secrets, warnings },
    issues: [],
    warnings,
  };
}

export function loadConfig(file: string, options: LoadOptions = {}): PollbridgeConfig {
  const result = readConfig(file, options);
  if (!result.config) throw new ConfigError(result.issues);
  return result.config;
}

/**
 * One instance object, wherever it is written: in the main file's `instances` (`source`
 * undefined) or alone in an `instancesDir` file. `${file:}` paths are read from `ctx.baseDir`,
 * the directory of the file it is in.
 */
function readInstanceObject(inst: Record<string, unknown>, at: string, ctx: SecretContext, source: string | undefined): InstanceConfig | undefined {
  const own = withoutAmplifyFields(inst, at, ctx.issues);
  const withConfig = withParsedPollerConfiguration(own, at, ctx.issues);
  reportUnknownExtensionKeys(withConfig, [], at, ctx.issues);
  checkInstanceShape(withConfig, at, ctx.issues);
  const secretsResolved = resolveSecrets(withConfig, at, ctx) as Record<string, unknown>;
  return readInstance(new ObjectReader(secretsResolved, at, ctx.issues), fingerprintOf(secretsResolved), source);
}

/** The files of `instancesDir`, each read on its own; a directory that cannot be listed is the main file's issue. */
function readDirectory(dir: string, issues: IssueList, env: NodeJS.ProcessEnv, resolved: string[]): InstanceFile[] {
  try {
    return readInstanceFiles(dir, (raw, fileIssues, file) =>
      readInstanceObject(raw, '', { env, baseDir: dirname(file), issues: fileIssues, resolved }, file));
  } catch (err) {
    issues.add('instancesDir', `cannot read the directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    return [];
  }
}

/** The values of an instance that are secrets, for log redaction. */
function secretsOf(inst: InstanceConfig): string[] {
  const a = inst.auth;
  return [
    ...[inst.signatureKey, ...inst.previousSignatureKeys].filter((k): k is string => k !== undefined),
    ...(a.type === 'oauth2_refresh_token' ? [a.clientSecret, a.refreshToken] : a.type === 'bearer' ? [a.token] : a.type === 'basic' ? [a.password] : []),
    ...(inst.callout ? [inst.callout.password] : []),
  ];
}

const CLUSTER_LEASE_KEY = 'pollbridge.cluster.leaseSeconds';

/**
 * A `postgres://` (or `postgresql://`) URL, written or from `${env:}`/`${credential:}`, selects the
 * PostgreSQL store; anything else is the SQLite file's path, relative to the config file.
 * `database` keeps the URL without its password and query, for messages.
 */
function readDatabase(root: Record<string, unknown>, baseDir: string, override: string | undefined, ctx: SecretContext): { database: string; databaseUrl: string | undefined } {
  const raw = override ?? (typeof root.database === 'string' ? resolveSecrets(root.database, 'database', ctx) : undefined);
  if (root.database !== undefined && typeof root.database !== 'string' && override === undefined) ctx.issues.add('database', 'must be a string: a file path or a postgres:// URL');
  const text = typeof raw === 'string' ? raw : 'pollbridge.db';
  if (!isPostgresUrl(text)) return { database: override ? resolve(text) : resolve(baseDir, text), databaseUrl: undefined };
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    ctx.issues.add('database', 'is not a valid postgres:// URL');
    return { database: 'postgres://(invalid)', databaseUrl: undefined };
  }
  // Its password, and whatever its query carries (a password, a key file): the rest names a
  // server and a database, and is how messages say which.
  if (url.password) ctx.resolved.push(decodeURIComponent(url.password), url.password);
  for (const value of url.searchParams.values()) ctx.resolved.push(value);
  return { database: describeDatabaseUrl(url), databaseUrl: text };
}

export function isPostgresUrl(text: string): boolean {
  return /^postgres(ql)?:\/\//i.test(text);
}

/** The URL for messages: host, port and database, never its password or query. */
export function describeDatabaseUrl(url: URL): string {
  const user = url.username ? `${decodeURIComponent(url.username)}@` : '';
  return `postgres://${user}${url.host}${url.pathname}`;
}

function readCluster(root: ObjectReader): ClusterConfig {
  const seconds = root.number(CLUSTER_LEASE_KEY, DEFAULT_LEASE_SECONDS, { min: 1, max: 600 });
  return { leaseMs: Math.round(seconds * 1000) };
}

function readPolling(root: ObjectReader): PollingLimits {
  const polling = root.object('polling');
  if (!polling) return DEFAULT_POLLING_LIMITS;
  return {
    maxConcurrent: polling.number('maxConcurrent', DEFAULT_POLLING_LIMITS.maxConcurrent, { min: 1, max: 10_000, integer: true }),
    maxConcurrentPerOrigin: polling.number('maxConcurrentPerOrigin', DEFAULT_POLLING_LIMITS.maxConcurrentPerOrigin, { min: 1, max: 1000, integer: true }),
  };
}

/** Per-instance series are on by default only while the instances are few enough to read on one page. */
function readMetricsPerInstance(http: ObjectReader | undefined, instanceCount: number): boolean {
  const byDefault = instanceCount <= METRICS_PER_INSTANCE_LIMIT;
  if (!http?.has('metricsPerInstance')) return byDefault;
  if (!http.has('listen')) http.issues.warn(http.at('metricsPerInstance'), 'is set but http.listen is not: there is no /metrics to serve');
  return http.boolean('metricsPerInstance', byDefault);
}

/** AMPLIFY stores `event.poller.configuration` as a JSON string as often as an object. */
function withParsedPollerConfiguration(inst: Record<string, unknown>, at: string, issues: IssueList): Record<string, unknown> {
  const configuration = inst.configuration;
  if (!isObject(configuration)) return inst;
  const pollerConfig = configuration['event.poller.configuration'];
  if (typeof pollerConfig !== 'string') return inst;
  const path = new ObjectReader(configuration, at ? `${at}.configuration` : 'configuration', issues).at('event.poller.configuration');
  let parsed: unknown;
  try {
    parsed = JSON.parse(pollerConfig);
  } catch (err) {
    issues.add(path, `is a string but not valid JSON: ${(err as Error).message}`);
    return inst;
  }
  // Decoding twice would guess at what went wrong with the copy; the operator fixes it once.
  if (typeof parsed === 'string') {
    issues.add(path, 'is a JSON string holding another JSON string (encoded twice): write the resources as an object, or as a string encoded once');
    return inst;
  }
  return { ...inst, configuration: { ...configuration, 'event.poller.configuration': parsed } };
}

/**
 * Every `pollbridge.*` key, wherever it is, must be one that this place of the file knows: such
 * keys are almost always typos, and a misplaced one would be ignored just the same.
 * `keys` is where `value` sits, from the instance down.
 */
function reportUnknownExtensionKeys(value: unknown, keys: string[], path: string, issues: IssueList): void {
  if (Array.isArray(value)) {
    value.forEach((v, i) => reportUnknownExtensionKeys(v, [...keys, String(i)], childPath(path, i), issues));
    return;
  }
  if (!isObject(value)) return;
  const inPoller = keys[0] === 'configuration' && keys[1] === 'event.poller.configuration';
  // The keys of event.poller.configuration itself are resource names, whatever they are called.
  const known = inPoller && keys.length === 2 ? undefined
    : inPoller && keys.length === 3 ? RESOURCE_EXTENSION_KEYS
      : keys.length === 1 && keys[0] === 'configuration' ? INSTANCE_EXTENSION_KEYS
        : NO_EXTENSION_KEYS;
  for (const [key, child] of Object.entries(value)) {
    if (known && key.startsWith('pollbridge.') && !known.has(key)) issues.add(childPath(path, key), unknownExtensionKey(key, known));
    reportUnknownExtensionKeys(child, [...keys, key], childPath(path, key), issues);
  }
}

function unknownExtensionKey(key: string, known: ReadonlySet<string>): string {
  if (INSTANCE_EXTENSION_KEYS.has(key)) return 'is an instance setting: it belongs in "configuration"';
  if (RESOURCE_EXTENSION_KEYS.has(key)) return 'is a resource setting: it belongs in a resource of "event.poller.configuration"';
  return known.size > 0 ? `unknown pollbridge key (known here: ${[...known].join(', ')})` : 'unknown pollbridge key (none belongs here)';
}

/** A `whsec_` key is base64 by the Standard Webhooks rule; receivers' libraries refuse anything else. */
function checkSignatureKey(issues: IssueList, path: string, key: string | undefined): void {
  if (key?.startsWith('whsec_') && !BASE64.test(key.slice('whsec_'.length))) {
    issues.add(path, 'is a "whsec_" key but the rest is not base64 (A-Z a-z 0-9 + /, padded with = to a multiple of 4)');
  }
}

function checkUrl(r: ObjectReader, key: string, value: string | undefined): void {
  if (!value) return;
  try {
    const u = new URL(value);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http');
  } catch {
    r.issues.add(r.at(key), `must be an absolute http(s) URL, got "${value}"`);
  }
}

/** Loopback names and addresses: a callback there never crosses a network. */
const LOOPBACK_HOST = /^(?:localhost|.+\.localhost|127(?:\.\d{1,3}){3}|\[::1\])$/i;

function warnPlainHttp(r: ObjectReader, key: string, value: string | undefined): void {
  let url: URL;
  try {
    url = new URL(value ?? '');
  } catch {
    return;
  }
  if (url.protocol === 'http:' && !LOOPBACK_HOST.test(url.hostname)) {
    // The URL may come from a reference: the warning quotes no part of it.
    r.issues.warn(r.at(key), 'is plain http to a host other than this machine: notifications, records and signatures cross the network readable by anyone on the way; use https');
  }
}

/** The instance as written, its references resolved: what a reload compares. */
function fingerprintOf(resolved: Record<string, unknown>): string {
  return createHash('sha256').update(JSON.stringify(resolved)).digest('base64url');
}

function readInstance(r: ObjectReader, fingerprint: string, source: string | undefined): InstanceConfig | undefined {
  const name = r.string('name', { required: true });
  const elementKey = r.object('element', { required: true })?.string('key', { required: true }) ?? '';
  const provider = r.object('provider', { required: true });
  const baseUrl = provider?.string('baseUrl', { required: true }) ?? '';
  if (provider) checkUrl(provider, 'baseUrl', baseUrl);
  const auth = provider ? readAuth(provider, baseUrl) : ({ type: 'none' } as const);
  const c = r.object('configuration', { required: true });
  if (!c) return undefined;

  const vendorType = c.string('event.vendor.type', { required: true });
  if (vendorType && vendorType !== 'polling') c.issues.add(c.at('event.vendor.type'), `must be "polling", got "${vendorType}"`);
  const enabled = c.boolean('event.notification.enabled', false);
  const enabledClear = !c.issues.items.some((i) => i.path === c.at('event.notification.enabled'));
  const callbackUrl = c.string('event.notification.callback.url', { required: true });
  checkUrl(c, 'event.notification.callback.url', callbackUrl);
  warnPlainHttp(c, 'event.notification.callback.url', callbackUrl);
  const signatureKey = c.string('event.notification.signature.key', { secret: true });
  checkSignatureKey(c.issues, c.at('event.notification.signature.key'), signatureKey);
  const previousSignatureKeys = c.list('pollbridge.notification.previousSignatureKeys', { secret: true });
  previousSignatureKeys.forEach((key, i) => checkSignatureKey(c.issues, childPath(c.at('pollbridge.notification.previousSignatureKeys'), i), key));

  const timeZone = readZone(c, 'pollbridge.poller.timezone') ?? 'UTC';
  const schedule = readSchedule(c);
  const backfillFrom = readBackfill(c);

  const retries = c.list('pollbridge.delivery.retrySchedule').map(Number);
  if (retries.some((n) => !Number.isFinite(n) || n < 0)) {
    c.issues.add(c.at('pollbridge.delivery.retrySchedule'), 'must list delays in seconds, each 0 or more');
  }
  const delivery = {
    maxEventsPerNotification: c.number('pollbridge.delivery.maxEventsPerNotification', 10, { min: 1, max: 1000, integer: true }),
    timeoutMs: c.number('pollbridge.delivery.timeoutMs', 15_000, { min: 100, max: 600_000, integer: true, unit: 'milliseconds' }),
    retryScheduleSec: c.has('pollbridge.delivery.retrySchedule') ? retries : DEFAULT_RETRY_SCHEDULE_SEC,
    concurrency: c.number('pollbridge.delivery.concurrency', 4, { min: 1, max: 64, integer: true }),
    ordered: c.boolean('pollbridge.delivery.ordered', false),
  };

  const resources = readResources(c, elementKey, timeZone);
  return {
    name,
    fingerprint,
    source,
    elementKey,
    enabled,
    callbackUrl: callbackUrl ?? '',
    signatureKey,
    previousSignatureKeys,
    baseUrl,
    auth,
    schedule,
    backfillFrom,
    overlapSec: c.number('pollbridge.poller.overlapSeconds', 60, { min: 0, max: 86_400, unit: 'seconds' }),
    settleSec: c.number('pollbridge.poller.settleSeconds', 0, { min: 0, max: 3_600, unit: 'seconds' }),
    seenRetentionSec: c.number('pollbridge.poller.seenRetentionDays', 7, { min: 1, max: 3650, unit: 'days' }) * 86_400,
    timeZone,
    delivery,
    resources,
    callout: readInstanceCallout(c, enabledClear ? enabled : undefined),
  };
}

function readAuth(provider: ObjectReader, baseUrl: string): AuthConfig {
  const a = provider.object('auth');
  if (!a) return { type: 'none' };
  const type = a.string('type', { required: true });
  switch (type) {
    case 'oauth2_refresh_token': {
      const tokenUrl = a.string('tokenUrl') ?? `${baseUrl.replace(/\/$/, '')}/oauth2/v0/token`;
      checkUrl(a, 'tokenUrl', tokenUrl);
      return {
        type,
        tokenUrl,
        clientId: a.string('clientId', { required: true }),
        clientSecret: a.string('clientSecret', { required: true, secret: true }),
        refreshToken: a.string('refreshToken', { required: true, secret: true }),
      };
    }
    case 'bearer':
      return { type, token: a.string('token', { required: true, secret: true }) };
    case 'basic':
      return { type, username: a.string('username', { required: true }), password: a.string('password', { required: true, secret: true }) };
    case 'none':
      return { type };
    default:
      if (type) a.issues.add(a.at('type'), `must be oauth2_refresh_token, bearer, basic or none, got "${type}"`);
      return { type: 'none' };
  }
}

function readZone(r: ObjectReader, key: string): string | undefined {
  const raw = r.string(key);
  if (raw === undefined) return undefined;
  const zone = normalizeTimeZone(raw);
  if (!zone) r.issues.add(r.at(key), `unknown time zone "${raw}" (use an IANA name such as Europe/Paris, or UTC, or -08:00)`);
  return zone;
}

function readSchedule(c: ObjectReader): Schedule {
  const expression = c.string('pollbridge.poller.cron');
  if (expression !== undefined) {
    if (!cron.validate(expression)) c.issues.add(c.at('pollbridge.poller.cron'), `is not a valid cron expression: "${expression}"`);
    return { kind: 'cron', expression };
  }
  const minutes = c.number('event.poller.refresh_interval', 15, { min: 1 / 60, max: 7 * 24 * 60, unit: 'minutes' });
  return { kind: 'interval', intervalMs: Math.round(minutes * 60_000) };
}

function readBackfill(c: ObjectReader): number | undefined {
  const raw = c.string('pollbridge.poller.backfillFrom');
  if (raw === undefined) return undefined;
  const ms = Date.parse(raw);
  if (Number.isNaN(ms)) {
    c.issues.add(c.at('pollbridge.poller.backfillFrom'), `must be an ISO-8601 date-time, got "${raw}"`);
    return undefined;
  }
  return instantFromMs(ms);
}

function readResources(c: ObjectReader, elementKey: string, instanceZone: string): ResourceConfig[] {
  // Still a string here means it did not parse, which is already reported.
  if (typeof c.obj['event.poller.configuration'] === 'string') return [];
  const poller = c.object('event.poller.configuration', { required: true });
  if (!poller) return [];
  const resources: ResourceConfig[] = [];
  if (Object.keys(poller.obj).length === 0) poller.issues.add(poller.path, 'must configure at least one resource');
  for (const name of Object.keys(poller.obj)) {
    const r = poller.object(name);
    if (!r) continue;
    const resource = readResource(r, name, elementKey, instanceZone);
    if (resource) resources.push(resource);
  }
  return resources;
}

/**
 * Compiled URL templates and date parsers are pure functions of their text and zone: a fleet's
 * thousands of instances written from one template share them, rather than holding a closure
 * tree each (2,000 instances held some 50 MB of them).
 */
const templates = new Map<string, UrlTemplate>();
const parsers = new Map<string, DateParser>();

function shared<T>(cache: Map<string, T>, key: string, compile: () => T): T {
  let value = cache.get(key);
  if (value === undefined) {
    value = compile();
    cache.set(key, value);
  }
  return value;
}

function compileOrReport<T>(r: ObjectReader, key: string, compile: () => T): T | undefined {
  try {
    return compile();
  } catch (err) {
    if (!(err instanceof PatternError)) throw err;
    r.issues.add(r.at(key), err.message);
    return undefined;
  }
}

function readResource(r: ObjectReader, name: string, elementKey: string, instanceZone: string): ResourceConfig | undefined {
  const url = r.string('url', { required: true });
  const dates = r.object('datesConfiguration');
  const updatedZone = (dates && readZone(dates, 'updatedDateTimezone')) ?? instanceZone;
  const createdZone = (dates && readZone(dates, 'createdDateTimezone')) ?? instanceZone;
  const updatedDateFormat = dates?.string('updatedDateFormat');
  const createdDateFormat = dates?.string('createdDateFormat');
  // A bad reference is reported by checkInstanceShape, from the file as written.
  const urlTemplate = url && referenceProblems(url, URL_KINDS).length === 0 ? compileOrReport(r, 'url', () => shared(templates, `${url}\n${updatedZone}`, () => compileUrlTemplate(url, updatedZone))) : undefined;
  const parseUpdatedDate = compileOrReport(dates ?? r, 'updatedDateFormat', () => shared(parsers, `${updatedDateFormat}\n${updatedZone}`, () => createDateParser(updatedDateFormat, updatedZone)));
  const parseCreatedDate = compileOrReport(dates ?? r, 'createdDateFormat', () => shared(parsers, `${createdDateFormat}\n${createdZone}`, () => createDateParser(createdDateFormat, createdZone)));
  const createdDateField = dates?.string('createdDateField');
  // Every field is read before any is judged, so one bad value does not hide the next.
  const rest = {
    idField: r.string('idField') ?? (elementKey === 'concur' ? 'ID' : 'id'),
    filterByUpdatedDate: r.boolean('filterByUpdatedDate', true),
    updatedDateField: dates?.string('updatedDateField') ?? (elementKey === 'concur' ? 'LastModifiedDate' : 'updatedAt'),
    createdCheckToleranceSec: r.number('createdCheckTolerance', 0, { min: 0, unit: 'seconds' }),
    pageSize: r.number('pageSize', 100, { min: 1, max: elementKey === 'concur' ? 100 : 10_000, integer: true }),
    pollDelaySec: r.number('pollDelay', 0, { min: 0, max: 86_400, unit: 'seconds' }),
    itemsPath: r.string('pollbridge.items') ?? (elementKey === 'concur' ? 'Items' : ''),
    nextPagePath: r.string('pollbridge.nextPage') ?? (elementKey === 'concur' ? 'NextPage' : ''),
    oldestFirst: r.boolean('pollbridge.oldestFirst', false),
  };
  const resource: ResourceConfig | undefined =
    url && urlTemplate && parseUpdatedDate && parseCreatedDate
      ? { name, url, urlTemplate, parseUpdatedDate, createdDateField, parseCreatedDate: createdDateField ? parseCreatedDate : undefined, ...rest }
      : undefined;
  // Read (and so validate) the AMPLIFY flag even though our window always has an upper bound.
  r.boolean('filterByCurrentDate', true);
  return resource;
}
