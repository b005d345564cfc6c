import { generateKeyPairSync } from 'node:crypto';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { formatIssue } from '../src/config/issues.js';
import { readConfig } from '../src/config/load.js';
import { runCli } from './helpers/cli.js';
import { instance } from './helpers/configs.js';
import { rng } from './helpers/rng.js';
import { tempDir, writeJson } from './helpers/tmp.js';

const TLS = fileURLToPath(new URL('./fixtures/tls/', import.meta.url));
const pem = (name: string) => readFileSync(join(TLS, name), 'utf8');
const PASSWORD = 'connector-password-long-enough';
/** The base64 body lines of each fixture key: no message may hold any of them. */
const KEY_LINES = ['a.key', 'b.key', 'other.key'].flatMap((k) => pem(k).split('\n').filter((l) => l && !l.startsWith('-----')));

/** An instance whose callout is on, with `callout` keys (without the `pollbridge.callout.` prefix) overriding. */
function calloutInstance(name: string, callout: Record<string, unknown> = {}, configuration: Record<string, unknown> = {}) {
  const prefixed = Object.fromEntries(Object.entries({ enabled: 'true', username: 'concur-connector', password: PASSWORD, ...callout })
    .map(([k, v]) => [`pollbridge.callout.${k}`, v]));
  return instance({ ...prefixed, ...configuration }, { name });
}

/** A multi-instance file with the fixtures copied to `tls/` beside it. */
function load(file: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) {
  const dir = tempDir();
  cpSync(TLS, join(dir, 'tls'), { recursive: true });
  const path = writeJson(dir, 'c.json', { database: 'p.db', ...file });
  const result = readConfig(path, { env });
  const messages = [...result.issues, ...result.warnings].map(formatIssue);
  return { dir, path, result, issues: result.issues.map(formatIssue), warnings: result.warnings.map(formatIssue), messages };
}

const LISTEN = { listen: '127.0.0.1:8443' };

function expectNoSecretIn(messages: string[]): void {
  for (const m of messages) {
    expect(m).not.toContain(PASSWORD);
    expect(m).not.toContain('-----BEGIN');
    for (const line of KEY_LINES) expect(m).not.toContain(line);
  }
}

describe('callout config: what it loads', () => {
  it('defaults: plain HTTP, path /concur/v1.0/notify, failed queue every 15 minutes; the password is a secret', () => {
    const { result } = load({ callout: LISTEN, instances: [calloutInstance('Docs')] });
    expect(result.issues).toEqual([]);
    expect(result.warnings).toEqual([]);
    expect(result.config!.callout).toEqual({ host: '127.0.0.1', port: 8443, tls: undefined });
    expect(result.config!.instances[0]!.callout).toEqual({ path: '/concur/v1.0/notify', username: 'concur-connector', password: PASSWORD, failedQueueMs: 15 * 60_000 });
    expect(result.config!.secrets).toContain(PASSWORD);
  });

  it('an instance without pollbridge.callout.enabled, or with it false, has no callout; a file without "callout" has no listener', () => {
    const { result } = load({ instances: [instance({}, { name: 'A' }), calloutInstance('B', { enabled: 'false', password: 'x' })] });
    expect(result.issues).toEqual([]);
    expect(result.config!.callout).toBeUndefined();
    expect(result.config!.instances.map((i) => i.callout)).toEqual([undefined, undefined]);
  });

  it('reads the path, the failed-queue period (0 = never, decimals allowed), and [v6]:PORT and :PORT listeners', () => {
    const { result } = load({
      callout: { listen: '[::]:9443' },
      instances: [calloutInstance('A', { path: '/hooks/a', failedQueueMinutes: '0' }), calloutInstance('B', { path: '/hooks/b', failedQueueMinutes: 1.5 })],
    });
    expect(result.issues).toEqual([]);
    expect(result.config!.callout).toEqual({ host: '::', port: 9443, tls: undefined });
    expect(result.config!.instances.map((i) => [i.callout!.path, i.callout!.failedQueueMs])).toEqual([['/hooks/a', 0], ['/hooks/b', 90_000]]);
    expect(load({ callout: { listen: ':9443' }, instances: [calloutInstance('A')] }).result.config!.callout!.host).toBe('127.0.0.1');
  });

  it('reads tls.cert and tls.key relative to the config file, or absolute, as PEM texts; the key is a secret', () => {
    const { result, dir } = load({ callout: { ...LISTEN, tls: { cert: 'tls/a.crt', key: join(TLS, 'a.key') } }, instances: [calloutInstance('Docs')] });
    expect(result.issues).toEqual([]);
    expect(dir).not.toBe(TLS);
    expect(result.config!.callout!.tls).toEqual({ cert: pem('a.crt'), key: pem('a.key') });
    expect(result.config!.secrets).toContain(pem('a.key'));
    const keyLines = pem('a.key').split('\n').filter((l) => l && !l.startsWith('-----'));
    expect(keyLines.length).toBeGreaterThan(0);
    expect(result.config!.secrets).toEqual(expect.arrayContaining(keyLines));
    expect(result.config!.secrets).not.toContain(pem('a.crt'));
  });

  it('reads the files again at each load: a renewed certificate is taken by a reload', () => {
    const { path, dir, result } = load({ callout: { ...LISTEN, tls: { cert: 'tls/a.crt', key: 'tls/a.key' } }, instances: [calloutInstance('Docs')] });
    expect(result.config!.callout!.tls!.cert).toBe(pem('a.crt'));
    writeFileSync(join(dir, 'tls', 'a.crt'), pem('b.crt'));
    writeFileSync(join(dir, 'tls', 'a.key'), pem('b.key'));
    const again = readConfig(path, { env: {} });
    expect(again.issues).toEqual([]);
    expect(again.config!.callout!.tls).toEqual({ cert: pem('b.crt'), key: pem('b.key') });
  });

  it('takes PEM text through ${file:} and ${credential:} (systemd LoadCredential=), and a path through ${env:}', () => {
    const creds = join(tempDir(), 'creds');
    mkdirSync(creds);
    writeFileSync(join(creds, 'callout.key'), pem('a.key'));
    const { result } = load(
      { callout: { ...LISTEN, tls: { cert: '${file:tls/a.crt}', key: '${credential:callout.key}' } }, instances: [calloutInstance('Docs')] },
      { CREDENTIALS_DIRECTORY: creds },
    );
    expect(result.issues).toEqual([]);
    // ${file:} drops the file's last newline, as for every secret.
    expect(result.config!.callout!.tls).toEqual({ cert: pem('a.crt').trimEnd(), key: pem('a.key').trimEnd() });
    expect(result.config!.secrets).toContain(pem('a.key').trimEnd());

    const byEnv = load({ callout: { ...LISTEN, tls: { cert: '${env:CERT_PATH}', key: 'tls/a.key' } }, instances: [calloutInstance('Docs')] }, { CERT_PATH: join(TLS, 'a.crt') });
    expect(byEnv.result.issues).toEqual([]);
    expect(byEnv.result.config!.callout!.tls!.cert).toBe(pem('a.crt'));
  });
});

describe('callout config: the listener\'s problems', () => {
  const withTls = (tls: unknown, env: NodeJS.ProcessEnv = {}) => load({ callout: { ...LISTEN, tls }, instances: [calloutInstance('Docs')] }, env);

  it('a file that cannot be read: the path and the OS error code', () => {
    const { issues, path, dir, messages } = withTls({ cert: 'tls/missing.crt', key: 'tls' });
    expect(issues).toEqual([
      `${path}: callout.tls.cert: cannot read ${join(dir, 'tls/missing.crt')}: ENOENT`,
      `${path}: callout.tls.key: cannot read ${join(dir, 'tls')}: EISDIR`,
    ]);
    expectNoSecretIn(messages);
  });

  it('files that are not PEM: which one, and OpenSSL\'s code', () => {
    const { dir, path, issues: first } = withTls({ cert: 'tls/README.md', key: 'tls/a.key' });
    expect(first).toEqual([expect.stringMatching(new RegExp(`^${path}: callout\\.tls\\.cert: ${join(dir, 'tls/README.md')} is not a PEM certificate \\(ERR_\\w+\\)$`))]);
    // A certificate given as the key, and a key given as the certificate.
    const swapped = withTls({ cert: 'tls/a.key', key: 'tls/a.crt' });
    expect(swapped.issues).toEqual([
      expect.stringMatching(/callout\.tls\.cert: \S+\/tls\/a\.key is not a PEM certificate \(ERR_\w+\)$/),
      expect.stringMatching(/callout\.tls\.key: \S+\/tls\/a\.crt is not a PEM private key \(ERR_\w+\)$/),
    ]);
    expectNoSecretIn(swapped.messages);
  });

  it('a key that does not match the certificate, from a file or from a credential', () => {
    const { issues, path, dir, messages } = withTls({ cert: 'tls/a.crt', key: 'tls/other.key' });
    expect(issues).toEqual([`${path}: callout.tls.key: ${join(dir, 'tls/other.key')} is not the private key of the certificate in callout.tls.cert (${join(dir, 'tls/a.crt')})`]);
    expectNoSecretIn(messages);

    const creds = join(tempDir(), 'creds');
    mkdirSync(creds);
    writeFileSync(join(creds, 'callout.key'), pem('b.key'));
    const byCredential = withTls({ cert: 'tls/a.crt', key: '${credential:callout.key}' }, { CREDENTIALS_DIRECTORY: creds });
    expect(byCredential.issues).toEqual([expect.stringMatching(/callout\.tls\.key: the PEM text given is not the private key of the certificate in callout\.tls\.cert \(\S+a\.crt\)$/)]);
    expectNoSecretIn(byCredential.messages);
  });

  it.each(['pkcs8', 'sec1'] as const)('an encrypted key (%s): it must be given unencrypted', (type) => {
    const { privateKey } = generateKeyPairSync('ec', {
      namedCurve: 'P-256',
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type, format: 'pem', cipher: 'aes-256-cbc', passphrase: 'passphrase' },
    });
    const dir = tempDir();
    writeFileSync(join(dir, 'enc.key'), privateKey);
    const { issues, messages } = withTls({ cert: 'tls/a.crt', key: join(dir, 'enc.key') });
    expect(issues).toEqual([expect.stringMatching(/callout\.tls\.key: \S+enc\.key is an encrypted private key: pollbridge takes it unencrypted/)]);
    const body = privateKey.split('\n').filter((l) => /^[A-Za-z0-9+/=]{40,}$/.test(l));
    expect(body.length).toBeGreaterThan(0);
    for (const m of messages) for (const line of body) expect(m).not.toContain(line);
  });

  it('tls with one of the two, or neither', () => {
    expect(withTls({ cert: 'tls/a.crt' }).issues).toEqual([expect.stringMatching(/callout\.tls\.key: is required beside "cert": TLS needs both the certificate and its private key$/)]);
    expect(withTls({ key: 'tls/a.key' }).issues).toEqual([expect.stringMatching(/callout\.tls\.cert: is required beside "key"/)]);
    expect(withTls({ cert: 'tls/a.crt', key: '' }).issues).toEqual([expect.stringMatching(/callout\.tls\.key: is required beside "cert"/)]);
    expect(withTls({}).issues).toEqual([expect.stringMatching(/callout\.tls: needs "cert" and "key" \(or leave "tls" out to serve plain HTTP behind a proxy\)$/)]);
  });

  it('a reference that does not resolve is reported once, not read as a path as well', () => {
    const { issues } = withTls({ cert: 'tls/a.crt', key: '${credential:callout.key}' });
    expect(issues).toEqual([expect.stringMatching(/callout\.tls\.key: \$\{credential:callout\.key\} needs CREDENTIALS_DIRECTORY/)]);
  });

  it('listen missing, malformed, or on the address of http.listen', () => {
    expect(load({ callout: {}, instances: [calloutInstance('Docs')] }).issues).toEqual([expect.stringMatching(/: callout\.listen: is required$/)]);
    expect(load({ callout: { listen: '8443' }, instances: [calloutInstance('Docs')] }).issues)
      .toEqual([expect.stringMatching(/: callout\.listen: must be HOST:PORT, e.g. "0\.0\.0\.0:8443", got "8443"$/)]);
    const clash = (http: string, callout: string) => load({ http: { listen: http }, callout: { listen: callout }, instances: [calloutInstance('Docs')] }).issues;
    expect(clash('127.0.0.1:9464', '127.0.0.1:9464')).toEqual([expect.stringMatching(/: callout\.listen: is on the address of http\.listen \(127\.0\.0\.1:9464\): give the callout listener a port of its own$/)]);
    expect(clash('127.0.0.1:9464', '0.0.0.0:9464')).toHaveLength(1);
    expect(clash('127.0.0.1:9464', '127.0.0.1:8443')).toEqual([]);
    expect(clash('127.0.0.1:9464', '10.0.0.1:9464')).toEqual([]);
    // Port 0 picks a free port for each listener.
    expect(clash('127.0.0.1:0', '127.0.0.1:0')).toEqual([]);
  });

  it('unknown keys under callout and callout.tls, and callout inside an instance', () => {
    const { issues, path } = load({ callout: { ...LISTEN, tsl: { cert: 'tls/a.crt' } }, instances: [calloutInstance('Docs')] });
    expect(issues).toEqual([`${path}: callout.tsl: unknown key, ignored as it is: did you mean "tls"?`]);
    expect(load({ callout: { ...LISTEN, tls: { crt: 'tls/a.crt', key: 'tls/a.key' } }, instances: [calloutInstance('Docs')] }).issues)
      .toEqual(expect.arrayContaining([expect.stringMatching(/: callout\.tls\.crt: unknown key, ignored as it is: did you mean "cert"\?$/)]));
    expect(load({ instances: [{ ...calloutInstance('Docs'), callout: LISTEN }] }).issues).toEqual(expect.arrayContaining([
      expect.stringMatching(/: instances\[0\]\.callout: is read only at the top level, beside "instances"/),
    ]));
  });

  it('a listener no instance uses: a warning, not an error', () => {
    const { result, warnings, path } = load({ callout: LISTEN, instances: [instance()] });
    expect(result.issues).toEqual([]);
    expect(warnings).toEqual([`${path}: callout: is set but no instance has "pollbridge.callout.enabled": "true": the listener would answer every request 404 or 401`]);
  });
});

describe('callout config: each instance\'s problems', () => {
  it('enabled without a user name or a password', () => {
    const { issues, path } = load({ callout: LISTEN, instances: [calloutInstance('Docs', { username: undefined, password: '' })] });
    expect(issues).toEqual([
      `${path}: instances[0].configuration["pollbridge.callout.username"]: is required when pollbridge.callout.enabled is true: the user name registered with the application connector in Concur`,
      `${path}: instances[0].configuration["pollbridge.callout.password"]: is required when pollbridge.callout.enabled is true: the password registered with the application connector in Concur`,
    ]);
  });

  it('a password that is not a string is named by its type, never its value', () => {
    const { issues } = load({ callout: LISTEN, instances: [calloutInstance('Docs', { password: 123456789012345 })] });
    expect(issues).toEqual([expect.stringMatching(/\["pollbridge\.callout\.password"\]: must be a string, got a number$/)]);
  });

  it('enabled without the top-level listener: says what to add, in a multi-instance file and in a single-instance one', () => {
    const { issues, path } = load({ instances: [calloutInstance('Docs')] });
    expect(issues).toEqual([`${path}: instances[0].configuration["pollbridge.callout.enabled"]: needs the listener Concur calls: "callout": { "listen": "HOST:PORT" } at the top level, beside "instances"`]);
    const file = writeJson(tempDir(), 'single.json', calloutInstance('Docs'));
    expect(readConfig(file, { env: {} }).issues.map(formatIssue)).toEqual([
      `${file}: configuration["pollbridge.callout.enabled"]: needs the listener Concur calls: "callout": { "listen": "HOST:PORT" } at the top level, which a single-instance file has not: write it as { "callout": { "listen": "HOST:PORT" }, "instances": [ … ] }`,
    ]);
  });

  it.each([
    ['no leading slash', 'concur/notify', 'must start with "/", got "concur/notify"'],
    ['a query', '/notify?x=1', 'must be a path alone, without "?" or "#", got "/notify?x=1"'],
    ['a fragment', '/notify#x', 'must be a path alone, without "?" or "#", got "/notify#x"'],
    ['Test Connection\'s', '/system/v1.0/testconnection', 'is the path of Concur\'s Test Connection, which every callout instance answers: choose another (the default is "/concur/v1.0/notify"), got "/system/v1.0/testconnection"'],
  ])('path with %s', (_name, value, message) => {
    const { issues, path } = load({ callout: LISTEN, instances: [calloutInstance('Docs', { path: value })] });
    expect(issues).toEqual([`${path}: instances[0].configuration["pollbridge.callout.path"]: ${message}`]);
  });

  it('a bad path is reported even while the callout is off', () => {
    const { issues } = load({ instances: [calloutInstance('Docs', { enabled: 'false', path: 'notify' })] });
    expect(issues).toEqual([expect.stringMatching(/\["pollbridge\.callout\.path"\]: must start with "\/"/)]);
  });

  it('two instances on the same path as the same user: both named; another path or another user is fine', () => {
    const { issues, path } = load({ callout: LISTEN, instances: [calloutInstance('A'), calloutInstance('B', { password: 'another-password-long' })] });
    expect(issues).toEqual([
      `${path}: instances[1].configuration["pollbridge.callout.username"]: instances "A" and "B" both take callouts on /concur/v1.0/notify as user "concur-connector": `
      + 'a notification could not be told apart; give one of them another pollbridge.callout.path or user name',
    ]);
    expect(load({ callout: LISTEN, instances: [calloutInstance('A'), calloutInstance('B', { path: '/concur/b' })] }).issues).toEqual([]);
    expect(load({ callout: LISTEN, instances: [calloutInstance('A'), calloutInstance('B', { username: 'other-user' })] }).issues).toEqual([]);
    // A disabled callout takes no requests.
    expect(load({ callout: LISTEN, instances: [calloutInstance('A'), calloutInstance('B', { enabled: false })] }).issues).toEqual([]);
  });

  it('enabled on an instance that is not: an error saying to enable the instance or turn its callout off', () => {
    const { issues, path } = load({ callout: LISTEN, instances: [instance({}, { name: 'Polled' }), calloutInstance('Docs', {}, { 'event.notification.enabled': 'false' })] });
    expect(issues).toEqual([
      `${path}: instances[1].configuration["pollbridge.callout.enabled"]: is true but the instance is not enabled ("event.notification.enabled"): `
      + 'its callouts would be answered 200 and never delivered. Set "event.notification.enabled": "true", or turn its callout off',
    ]);
    // A flag that is itself wrong is one problem, not two.
    const unclear = load({ callout: LISTEN, instances: [instance({}, { name: 'Polled' }), calloutInstance('Docs', {}, { 'event.notification.enabled': 'yes' })] });
    expect(unclear.issues).toEqual([expect.stringMatching(/\["event\.notification\.enabled"\]: must be true or false, got "yes"$/)]);
  });

  it('a password shorter than 12 characters: a warning that never quotes it', () => {
    const { result, warnings, path } = load({ callout: LISTEN, instances: [calloutInstance('Docs', { password: 'elevenchars' })] });
    expect(result.issues).toEqual([]);
    expect(warnings).toEqual([expect.stringMatching(new RegExp(`^${path}: instances\\[0\\]\\.configuration\\["pollbridge\\.callout\\.password"\\]: is shorter than 12 characters`))]);
    expect(warnings[0]).not.toContain('elevenchars');
    expect(load({ callout: LISTEN, instances: [calloutInstance('Docs', { password: 'twelve-chars' })] }).warnings).toEqual([]);
  });

  it('failedQueueMinutes between 0 and 1440', () => {
    for (const bad of ['-1', '1441', 'often']) {
      expect(load({ callout: LISTEN, instances: [calloutInstance('Docs', { failedQueueMinutes: bad })] }).issues)
        .toEqual([expect.stringMatching(/\["pollbridge\.callout\.failedQueueMinutes"\]: must be /)]);
    }
    expect(load({ callout: LISTEN, instances: [calloutInstance('Docs', { failedQueueMinutes: '1440' })] }).result.config!.instances[0]!.callout!.failedQueueMs).toBe(86_400_000);
  });

  it('a misspelt pollbridge.callout key is refused, naming the known ones', () => {
    const { issues } = load({ callout: LISTEN, instances: [calloutInstance('Docs', { pasword: PASSWORD })] });
    expect(issues).toEqual(expect.arrayContaining([expect.stringMatching(/\["pollbridge\.callout\.pasword"\]: unknown pollbridge key \(known here: .*pollbridge\.callout\.password/)]));
    expectNoSecretIn(issues);
  });

  it('with no instance enabled, the one check of that is unchanged', () => {
    const { issues, path } = load({ instances: [instance({ 'event.notification.enabled': 'false' })] });
    expect(issues).toEqual([`${path}: instances: no instance is enabled, so pollbridge would poll nothing: set "event.notification.enabled": "true" on the instance(s) to poll`]);
  });
});

const SEEDS = Number(process.env.CALLOUT_CONFIG_SEEDS ?? 300);
const FIRST_SEED = Number(process.env.CALLOUT_CONFIG_FIRST_SEED ?? 1);

/**
 * One random file of callout settings, and the problems the rules above give it, worked out
 * apart from the loader: each as "error|warning PATH", sorted.
 */
function randomFile(seed: number): { file: Record<string, unknown>; expected: string[]; passwords: string[] } {
  const random = rng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const expected: string[] = [];
  const calloutGiven = random() < 0.7;
  const httpClash = calloutGiven && random() < 0.2;
  const seen = new Set<string>();
  const passwords: string[] = [];
  let instancesEnabled = 0;
  let calloutsEnabled = 0;
  const instances = Array.from({ length: 1 + Math.floor(random() * 4) }, (_, i) => {
    const instanceEnabled = random() < 0.8;
    const calloutEnabled = random() < 0.6;
    const path = pick([undefined, '/concur/v1.0/notify', '/a', '/b', 'no-slash', '/q?x', '/system/v1.0/testconnection']);
    const username = pick([undefined, 'user-one', 'user-two']);
    const password = pick([undefined, `long-password-${seed}-${i}`, `short${i}${seed % 10}`]);
    if (password) passwords.push(password);
    if (instanceEnabled) instancesEnabled++;
    if (calloutEnabled) calloutsEnabled++;
    const key = (name: string) => `instances[${i}].configuration["pollbridge.callout.${name}"]`;
    if (path !== undefined && !/^\/[^?#]*$/.test(path)) expected.push(`error ${key('path')}`);
    if (path === '/system/v1.0/testconnection') expected.push(`error ${key('path')}`);
    if (calloutEnabled) {
      if (!username) expected.push(`error ${key('username')}`);
      if (!password) expected.push(`error ${key('password')}`);
      if (password && password.length < 12) expected.push(`warning ${key('password')}`);
      if (!instanceEnabled) expected.push(`error ${key('enabled')}`);
      if (!calloutGiven) expected.push(`error ${key('enabled')}`);
      const route = `${path ?? '/concur/v1.0/notify'} ${username}`;
      if (username && seen.has(route)) expected.push(`error ${key('username')}`);
      seen.add(route);
    }
    const settings = { enabled: String(calloutEnabled), path, username, password };
    return calloutInstance(`I${i}`, settings, { 'event.notification.enabled': String(instanceEnabled) });
  });
  if (instancesEnabled === 0) expected.push('error instances');
  if (calloutGiven && calloutsEnabled === 0) expected.push('warning callout');
  if (httpClash) expected.push('error callout.listen');
  const file = {
    http: { listen: '127.0.0.1:9464' },
    ...(calloutGiven ? { callout: { listen: httpClash ? '0.0.0.0:9464' : '127.0.0.1:8443' } } : {}),
    instances,
  };
  return { file, expected: expected.sort(), passwords };
}

describe('callout config, randomized (seeded)', () => {
  it(`gives each random file exactly the problems of the rules, quoting no password (${SEEDS} seeds)`, () => {
    let errorsSeen = 0;
    let cleanSeen = 0;
    for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
      const { file, expected, passwords } = randomFile(seed);
      const { result, messages } = load(file);
      const found = [...result.issues.map((i) => `error ${i.path}`), ...result.warnings.map((w) => `warning ${w.path}`)].sort();
      try {
        expect(found).toEqual(expected);
        for (const m of messages) for (const p of passwords) expect(m).not.toContain(p);
      } catch (err) {
        throw new Error(`failing seed ${seed} (rerun with CALLOUT_CONFIG_FIRST_SEED=${seed} CALLOUT_CONFIG_SEEDS=1): ${(err as Error).message}`);
      }
      if (result.issues.length > 0) errorsSeen++;
      if (expected.length === 0) cleanSeen++;
    }
    // The seeds reach both kinds of file, or the comparison proves little.
    if (SEEDS >= 100) {
      expect(errorsSeen).toBeGreaterThan(SEEDS / 10);
      expect(cleanSeen).toBeGreaterThan(SEEDS / 100);
    }
  });
});

describe('callout config: `pollbridge validate`', () => {
  it('lists every problem and warning, exits 1, and prints neither the password nor the key', async () => {
    const dir = tempDir();
    const creds = join(dir, 'creds');
    mkdirSync(creds);
    writeFileSync(join(creds, 'callout.key'), pem('other.key'));
    const short = 'short-pass1';
    const file = writeJson(dir, 'c.json', {
      database: 'p.db',
      callout: { listen: '127.0.0.1:8443', tls: { cert: join(TLS, 'a.crt'), key: '${credential:callout.key}' } },
      instances: [calloutInstance('A', { password: short }), calloutInstance('B', { path: '/b?x' })],
    });
    const result = await runCli(['validate', '-c', file], { CREDENTIALS_DIRECTORY: creds });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.split('\n')).toEqual([
      expect.stringMatching(new RegExp(`^warning: ${file}: instances\\[0\\]\\.configuration\\["pollbridge\\.callout\\.password"\\]: is shorter than 12 characters`)),
      `${file}: callout.tls.key: the PEM text given is not the private key of the certificate in callout.tls.cert (${join(TLS, 'a.crt')})`,
      `${file}: instances[1].configuration["pollbridge.callout.path"]: must be a path alone, without "?" or "#", got "/b?x"`,
      `2 problem(s) in ${file}`,
    ]);
    const output = result.stdout + result.stderr;
    expect(output).not.toContain(short);
    expectNoSecretIn([output]);
  });
});
