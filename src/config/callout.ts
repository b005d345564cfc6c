import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { childPath, type IssueList } from './issues.js';
import { readListen, sameListenAddress } from './listen.js';
import type { ObjectReader } from './read.js';
import type { CalloutListenConfig, HttpConfig, InstanceCalloutConfig, InstanceConfig } from './types.js';

/*
 * The callout settings: the top-level listener Concur's Event Notification callout POSTs to,
 * and each instance's part of it (`pollbridge.callout.*`).
 */

export const DEFAULT_CALLOUT_PATH = '/concur/v1.0/notify';
/** Concur's "Test Connection" button requests this path: no instance may take it for notifications. */
export const TEST_CONNECTION_PATH = '/system/v1.0/testconnection';
/** Concur's connector password is typed by an administrator; below this, guessing gets plausible. */
const MIN_PASSWORD_LENGTH = 12;
const PEM = '-----BEGIN';
/** PKCS#8's and the traditional format's marks of a key under a passphrase, which OpenSSL would ask for. */
const ENCRYPTED_KEY = /^-----BEGIN ENCRYPTED PRIVATE KEY-----$|^Proc-Type: 4,ENCRYPTED$/m;

const errorCode = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? (err as Error).name;

/**
 * One of `tls.cert`/`tls.key`: PEM text as it is (from a `${file:}` or `${credential:}`), else a
 * path from the config file's directory, read now, so that a reload reads a renewed file.
 */
function readPem(tls: ObjectReader, key: 'cert' | 'key', baseDir: string): { pem: string; from: string } | undefined {
  const value = tls.string(key, { secret: key === 'key' });
  // A reference that did not resolve is reported already; it is no path to read as well.
  if (!value || tls.issues.items.some((i) => i.path === tls.at(key))) return undefined;
  if (value.startsWith(PEM)) return { pem: value, from: 'the PEM text given' };
  const path = isAbsolute(value) ? value : resolve(baseDir, value);
  try {
    return { pem: readFileSync(path, 'utf8'), from: path };
  } catch (err) {
    tls.issues.add(tls.at(key), `cannot read ${path}: ${errorCode(err)}`);
    return undefined;
  }
}

/**
 * Each problem names the file and OpenSSL's error code: never the text, which for the key is a
 * secret.
 */
function checkPair(tls: ObjectReader, cert: { pem: string; from: string }, key: { pem: string; from: string }): boolean {
  let usable = true;
  try {
    new X509Certificate(cert.pem);
  } catch (err) {
    tls.issues.add(tls.at('cert'), `${cert.from} is not a PEM certificate (${errorCode(err)})`);
    usable = false;
  }
  if (ENCRYPTED_KEY.test(key.pem)) {
    tls.issues.add(tls.at('key'), `${key.from} is an encrypted private key: pollbridge takes it unencrypted (readable by its user only)`);
    return false;
  }
  try {
    createPrivateKey(key.pem);
  } catch (err) {
    tls.issues.add(tls.at('key'), `${key.from} is not a PEM private key (${errorCode(err)})`);
    usable = false;
  }
  if (!usable) return false;
  try {
    createSecureContext({ cert: cert.pem, key: key.pem, minVersion: 'TLSv1.2' });
    return true;
  } catch (err) {
    const code = errorCode(err);
    tls.issues.add(tls.at('key'), code === 'ERR_OSSL_X509_KEY_VALUES_MISMATCH'
      ? `${key.from} is not the private key of the certificate in callout.tls.cert (${cert.from})`
      : `cannot serve TLS with this key and the certificate in callout.tls.cert (${code})`);
    return false;
  }
}

/**
 * The top-level `callout` (references already resolved), or undefined if absent or unusable.
 * `secrets` receives the key's text and each line of it, for log redaction.
 */
export function readCalloutListen(root: ObjectReader, baseDir: string, secrets: string[]): CalloutListenConfig | undefined {
  const callout = root.object('callout');
  if (!callout) return undefined;
  const listen = readListen(callout, '0.0.0.0:8443', { required: true });
  const tls = callout.object('tls');
  if (!tls) return listen && { ...listen, tls: undefined };
  const given = (key: 'cert' | 'key') => tls.has(key) && tls.obj[key] !== '';
  for (const [key, other] of [['cert', 'key'], ['key', 'cert']] as const) {
    if (!given(key) && given(other)) tls.issues.add(tls.at(key), `is required beside "${other}": TLS needs both the certificate and its private key`);
  }
  if (!given('cert') && !given('key')) tls.issues.add(tls.path, 'needs "cert" and "key" (or leave "tls" out to serve plain HTTP behind a proxy)');
  const cert = readPem(tls, 'cert', baseDir);
  const key = readPem(tls, 'key', baseDir);
  if (key) {
    // Each line as well: an excerpt of the key must not pass the log redaction either.
    secrets.push(key.pem, ...key.pem.split(/\r?\n/).filter((line) => line && !line.startsWith('-----')));
    tls.issues.secret(key.pem, 'the private key');
  }
  if (!cert || !key || !checkPair(tls, cert, key)) return undefined;
  return listen && { ...listen, tls: { cert: cert.pem, key: key.pem } };
}

/**
 * An instance's `pollbridge.callout.*` (in `configuration`), undefined unless enabled. Every key
 * is checked either way. `instanceEnabled` is undefined when `event.notification.enabled` is
 * itself in question (reported already).
 */
export function readInstanceCallout(c: ObjectReader, instanceEnabled: boolean | undefined): InstanceCalloutConfig | undefined {
  const enabled = c.boolean('pollbridge.callout.enabled', false);
  const path = c.string('pollbridge.callout.path') ?? DEFAULT_CALLOUT_PATH;
  const username = c.string('pollbridge.callout.username');
  const password = c.string('pollbridge.callout.password', { secret: true });
  const failedQueueMinutes = c.number('pollbridge.callout.failedQueueMinutes', 15, { min: 0, max: 1440, unit: 'minutes' });
  const pathProblem = !path.startsWith('/') ? 'must start with "/"'
    : /[?#]/.test(path) ? 'must be a path alone, without "?" or "#"'
      : path === TEST_CONNECTION_PATH ? `is the path of Concur's Test Connection, which every callout instance answers: choose another (the default is "${DEFAULT_CALLOUT_PATH}")`
        : undefined;
  if (pathProblem) c.issues.add(c.at('pollbridge.callout.path'), `${pathProblem}, got "${path}"`);
  if (!enabled) return undefined;
  for (const [key, value, what] of [['username', username, 'user name'], ['password', password, 'password']] as const) {
    if (!value && !c.issues.items.some((i) => i.path === c.at(`pollbridge.callout.${key}`))) {
      c.issues.add(c.at(`pollbridge.callout.${key}`), `is required when pollbridge.callout.enabled is true: the ${what} registered with the application connector in Concur`);
    }
  }
  if (instanceEnabled === false) {
    c.issues.add(c.at('pollbridge.callout.enabled'), 'is true but the instance is not enabled ("event.notification.enabled"): '
      + 'its callouts would be answered 200 and never delivered. Set "event.notification.enabled": "true", or turn its callout off');
  }
  if (password && password.length < MIN_PASSWORD_LENGTH) {
    c.issues.warn(c.at('pollbridge.callout.password'), `is shorter than ${MIN_PASSWORD_LENGTH} characters: anyone who reaches the listener may guess it, `
      + 'slowly but in time; use a long random one (Concur keeps it, nobody has to remember it)');
  }
  return { path, username: username ?? '', password: password ?? '', failedQueueMs: Math.round(failedQueueMinutes * 60_000) };
}

/** An instance as read, with where it is: its path in its file, and that file's issues. */
export type PlacedInstance = { instance: InstanceConfig; at: string; issues: IssueList };

/**
 * What only the whole config tells: a callout instance needs the listener, no two may look the
 * same to it, a listener needs an instance, and it cannot share the port of `http.listen`.
 * `issues` are the main file's; each instance's own problems go to its file's list, so that an
 * `instancesDir` file is refused alone. `allRead`: every instance could be read (else the unread
 * one may be the callout's).
 */
export function checkCallouts(issues: IssueList, opts: {
  calloutGiven: boolean; listen: CalloutListenConfig | undefined; http: HttpConfig | undefined;
  instances: PlacedInstance[]; allRead: boolean; multi: boolean;
}): void {
  const key = (at: string, name: string) => childPath(childPath(at, 'configuration'), `pollbridge.callout.${name}`);
  const callouts = opts.instances.filter((p) => p.instance.callout);
  for (const placed of callouts) {
    if (opts.calloutGiven) continue;
    placed.issues.add(key(placed.at, 'enabled'), placed.instance.source !== undefined
      ? `needs the listener Concur calls: "callout": { "listen": "HOST:PORT" } at the top level of ${issues.file}`
      : opts.multi
        ? 'needs the listener Concur calls: "callout": { "listen": "HOST:PORT" } at the top level, beside "instances"'
        : 'needs the listener Concur calls: "callout": { "listen": "HOST:PORT" } at the top level, which a single-instance file has not: '
          + 'write it as { "callout": { "listen": "HOST:PORT" }, "instances": [ … ] }');
  }
  const seen = new Map<string, PlacedInstance>();
  for (const placed of callouts) {
    const { path, username } = placed.instance.callout!;
    if (!username) continue;
    const first = seen.get(`${path}\n${username}`);
    if (!first) {
      seen.set(`${path}\n${username}`, placed);
      continue;
    }
    const pair = [first, placed];
    // The main file's instance keeps its route; between instance files none is chosen, as the
    // daemon keeps a running one running: each is refused.
    const inFiles = pair.filter((p) => p.instance.source !== undefined);
    const named = (p: PlacedInstance) => (inFiles.length > 0 ? `"${p.instance.name}" (${p.instance.source ?? issues.file})` : `"${p.instance.name}"`);
    const message = `instances ${named(first)} and ${named(placed)} both take callouts on ${path} as user "${username}": `
      + 'a notification could not be told apart; give one of them another pollbridge.callout.path or user name';
    for (const p of inFiles.length > 0 ? inFiles : [placed]) p.issues.add(key(p.at, 'username'), message);
  }
  if (opts.calloutGiven && opts.allRead && callouts.length === 0) {
    issues.warn('callout', 'is set but no instance has "pollbridge.callout.enabled": "true": the listener would answer every request 404 or 401');
  }
  if (opts.listen && opts.http && sameListenAddress(opts.listen, opts.http)) {
    issues.add('callout.listen', `is on the address of http.listen (${opts.http.host}:${opts.http.port}): give the callout listener a port of its own`);
  }
}
