import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatIssue } from '../src/config/issues.js';
import { DEFAULT_POLLING_LIMITS, loadConfig, readConfig } from '../src/config/load.js';
import { reloadDifference } from '../src/cli/runCommand.js';
import { runCli, startCli } from './helpers/cli.js';
import { instance } from './helpers/configs.js';
import { tempDir, writeJson } from './helpers/tmp.js';

const PASSWORD = 'connector-password-long-enough';

/** A main file beside an `instances.d` holding `files` (name → JSON value, or raw text). */
function setUp(main: Record<string, unknown>, files: Record<string, unknown> = {}) {
  const root = tempDir();
  const dir = join(root, 'instances.d');
  mkdirSync(dir);
  for (const [name, value] of Object.entries(files)) writeJson(dir, name, value);
  const path = writeJson(root, 'c.json', { database: 'p.db', instancesDir: 'instances.d', ...main });
  return { root, dir, path, file: (name: string) => join(dir, name) };
}

const named = (name: string, configuration: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => instance(configuration, { name, ...extra });

function calloutOn(name: string, username = 'concur-connector') {
  return named(name, { 'pollbridge.callout.enabled': 'true', 'pollbridge.callout.username': username, 'pollbridge.callout.password': PASSWORD });
}

/** Each refused file with its issues, formatted as validate prints them. */
const refusals = (path: string, env: NodeJS.ProcessEnv = {}) =>
  loadConfig(path, { env }).refused.map((r) => ({ file: r.file, name: r.name, issues: r.issues.map(formatIssue) }));

describe('instancesDir: loading', () => {
  it('reads every *.json file of the directory, sorted by name, after the main file\'s instances, each with its source', () => {
    const s = setUp({ instances: [named('Main')] }, { 'b.json': named('B'), 'a.json': named('A') });
    const config = loadConfig(s.path);
    expect(config.instancesDir).toBe(s.dir);
    expect(config.refused).toEqual([]);
    expect(config.instances.map((i) => [i.name, i.source])).toEqual([['Main', undefined], ['A', s.file('a.json')], ['B', s.file('b.json')]]);
    expect(config.instances.every((i) => /^[\w-]{43}$/.test(i.fingerprint))).toBe(true);
  });

  it('takes a relative instancesDir from the main file\'s directory, and an absolute one as it is', () => {
    const s = setUp({}, { 'a.json': named('A') });
    const elsewhere = tempDir();
    const path = writeJson(elsewhere, 'c.json', { database: 'p.db', instancesDir: s.dir });
    expect(loadConfig(path).instances.map((i) => i.source)).toEqual([s.file('a.json')]);
  });

  it('leaves out hidden files, other extensions, subdirectories and what they hold', () => {
    const s = setUp({}, { 'a.json': named('A'), '.a.json.swp': '{', '.b.json': '{ broken', 'notes.txt': 'hello', 'c.json.bak': '{' });
    mkdirSync(join(s.dir, 'sub'));
    writeJson(join(s.dir, 'sub'), 'd.json', '{ broken');
    mkdirSync(join(s.dir, 'dir.json'));
    const config = loadConfig(s.path);
    expect(config.instances.map((i) => i.name)).toEqual(['A']);
    expect(config.refused).toEqual([]);
  });

  it('follows a symbolic link to an instance file', () => {
    const s = setUp({}, {});
    const target = writeJson(tempDir(), 'shared.json', named('Linked'));
    symlinkSync(target, s.file('linked.json'));
    expect(loadConfig(s.path).instances.map((i) => [i.name, i.source])).toEqual([['Linked', s.file('linked.json')]]);
  });

  it('refuses a symbolic link loop and a dangling link alone, each with its path, and loads the others', () => {
    const s = setUp({}, { 'ok.json': named('Ok') });
    symlinkSync('loop-b.json', s.file('loop-a.json'));
    symlinkSync('loop-a.json', s.file('loop-b.json'));
    symlinkSync('gone.json', s.file('dangling.json'));
    const result = readConfig(s.path);
    expect(result.config!.instances.map((i) => i.name)).toEqual(['Ok']);
    expect(result.config!.refused.map((r) => [r.file, r.issues.map(formatIssue)])).toEqual([
      [s.file('dangling.json'), [`${s.file('dangling.json')}: cannot read the file: ENOENT`]],
      [s.file('loop-a.json'), [`${s.file('loop-a.json')}: cannot read the file: ELOOP`]],
      [s.file('loop-b.json'), [`${s.file('loop-b.json')}: cannot read the file: ELOOP`]],
    ]);
  });

  it('allows no instances at all with a directory, with a warning; without one, no enabled instance stays an error', () => {
    const s = setUp({});
    const result = readConfig(s.path);
    expect(result.config?.instances).toEqual([]);
    expect(result.warnings.map(formatIssue)).toEqual([`${s.path}: instancesDir: no instance to poll yet: add instance files (*.json) to ${s.dir}`]);
    expect(readConfig(setUp({ instances: [] }).path).issues).toEqual([]);

    const off = named('Off', { 'event.notification.enabled': 'false' });
    const withDir = readConfig(setUp({}, { 'off.json': off }).path);
    expect(withDir.issues).toEqual([]);
    expect(withDir.warnings.map((w) => w.message)).toEqual(['no instance is enabled, so pollbridge polls nothing until one is']);
    const root = tempDir();
    const without = readConfig(writeJson(root, 'c.json', { database: 'p.db', instances: [off] }));
    expect(without.issues.map((i) => i.message)).toEqual([expect.stringMatching(/^no instance is enabled, so pollbridge would poll nothing/)]);
  });

  it('refuses the whole config when the directory is missing or not a directory, naming it', () => {
    const root = tempDir();
    const path = writeJson(root, 'c.json', { database: 'p.db', instancesDir: 'nowhere' });
    expect(readConfig(path).issues.map(formatIssue)).toEqual([`${path}: instancesDir: cannot read the directory ${join(root, 'nowhere')}: ENOENT`]);
    writeFileSync(join(root, 'file'), '');
    const notDir = writeJson(root, 'd.json', { database: 'p.db', instancesDir: 'file' });
    expect(readConfig(notDir).issues.map(formatIssue)).toEqual([`${notDir}: instancesDir: cannot read the directory ${join(root, 'file')}: ENOTDIR`]);
    const empty = writeJson(root, 'e.json', { database: 'p.db', instancesDir: '' });
    expect(readConfig(empty).issues.map(formatIssue)).toEqual([`${empty}: instancesDir: must name a directory (or be left out)`]);
  });

  it('keeps instancesDir and polling out of an instance: they are top-level settings', () => {
    const root = tempDir();
    const path = writeJson(root, 'c.json', { database: 'p.db', instances: [named('A', {}, { instancesDir: 'x', polling: {} })] });
    expect(readConfig(path).issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
      'instances[0].instancesDir: is read only at the top level, beside "instances" ({ "instancesDir": …, "instances": [ … ] }): here it would be ignored',
      'instances[0].polling: is read only at the top level, beside "instances" ({ "polling": …, "instances": [ … ] }): here it would be ignored',
    ]);
  });
});

describe('instancesDir: a file that does not validate is refused alone', () => {
  it('refuses a broken file with its path and every problem, and loads the others', () => {
    const noCallback = named('NoCallback', { 'event.notification.callback.url': undefined, 'event.vendor.type': 'webhook' });
    const s = setUp({ instances: [named('Main')] }, { 'a.json': named('A'), 'b.json': noCallback, 'c.json': '{ "name": "C",', 'd.json': [named('D')], 'e.json': named('E') });
    const result = readConfig(s.path);
    expect(result.issues).toEqual([]);
    expect(result.config!.instances.map((i) => i.name)).toEqual(['Main', 'A', 'E']);
    expect(refusals(s.path)).toEqual([
      { file: s.file('b.json'), name: 'NoCallback', issues: [
        `${s.file('b.json')}: configuration["event.vendor.type"]: must be "polling", got "webhook"`,
        `${s.file('b.json')}: configuration["event.notification.callback.url"]: is required`,
      ] },
      { file: s.file('c.json'), name: undefined, issues: [expect.stringMatching(new RegExp(`^${s.file('c.json').replace(/[.]/g, '\\.')}: is not valid JSON: line 1, column \\d+`))] },
      { file: s.file('d.json'), name: undefined, issues: [`${s.file('d.json')}: holds an array: write one instance object per file`] },
    ]);
  });

  it('refuses a file with an unknown key as any instance would be, naming the key in that file', () => {
    const s = setUp({}, { 'a.json': named('A', {}, { tag: [] }), 'b.json': named('B') });
    expect(refusals(s.path)).toEqual([{ file: s.file('a.json'), name: 'A', issues: [`${s.file('a.json')}: tag: unknown key, ignored as it is: did you mean "tags"?`] }]);
  });

  it('still refuses the whole config for a problem of the main file, listing the files\' problems as well', () => {
    const s = setUp({ databse: 'x' }, { 'a.json': named('A', { 'event.vendor.type': 'webhook' }), 'b.json': named('B') });
    expect(readConfig(s.path).issues.map(formatIssue)).toEqual([
      `${s.path}: databse: unknown key, ignored as it is: did you mean "database"?`,
      `${s.file('a.json')}: configuration["event.vendor.type"]: must be "polling", got "webhook"`,
    ]);
  });
});

describe('instancesDir: names and callout routes are unique across files', () => {
  it('keeps the main file\'s instance of a name and refuses the file that also takes it', () => {
    const s = setUp({ instances: [named('Shared')] }, { 'a.json': named('Shared'), 'b.json': named('B') });
    const config = loadConfig(s.path);
    expect(config.instances.map((i) => [i.name, i.source])).toEqual([['Shared', undefined], ['B', s.file('b.json')]]);
    expect(refusals(s.path)).toEqual([{ file: s.file('a.json'), name: 'Shared', issues: [`${s.file('a.json')}: name: "Shared" is also used by ${s.path} (instances[0])`] }]);
  });

  it('refuses every file of a name two files share, choosing none; a broken file\'s name counts too', () => {
    const broken = named('Twin', { 'event.vendor.type': 'webhook' });
    const s = setUp({}, { 'x.json': named('Twin'), 'y.json': named('Twin'), 'z.json': named('Other'), 'o.json': broken, 'p.json': named('Other') });
    expect(loadConfig(s.path).instances).toEqual([]);
    const byFile = Object.fromEntries(refusals(s.path).map((r) => [r.file, r.issues.filter((i) => i.includes(': name: '))]));
    expect(byFile[s.file('x.json')]).toEqual([`${s.file('x.json')}: name: "Twin" is also used by ${s.file('o.json')}, ${s.file('y.json')}`]);
    expect(byFile[s.file('y.json')]).toEqual([`${s.file('y.json')}: name: "Twin" is also used by ${s.file('o.json')}, ${s.file('x.json')}`]);
    expect(byFile[s.file('p.json')]).toEqual([`${s.file('p.json')}: name: "Other" is also used by ${s.file('z.json')}`]);
    expect(byFile[s.file('z.json')]).toEqual([`${s.file('z.json')}: name: "Other" is also used by ${s.file('p.json')}`]);
  });

  it('refuses a file whose callout route the main file has, both files of a route they share, and a callout file without the listener', () => {
    const clash = /both take callouts on \/concur\/v1\.0\/notify as user "concur-connector"/;
    const s = setUp({ callout: { listen: '127.0.0.1:0' }, instances: [calloutOn('Main')] }, {
      'a.json': calloutOn('A'), 'b.json': calloutOn('B', 'other-user'), 'c.json': calloutOn('C', 'other-user'), 'd.json': calloutOn('D', 'own-user'),
    });
    const config = loadConfig(s.path);
    expect(config.instances.map((i) => i.name)).toEqual(['Main', 'D']);
    const refused = refusals(s.path);
    expect(refused.map((r) => r.file)).toEqual([s.file('a.json'), s.file('b.json'), s.file('c.json')]);
    expect(refused[0]!.issues).toEqual([expect.stringMatching(clash)]);
    expect(refused[0]!.issues[0]).toContain(`"Main" (${s.path}) and "A" (${s.file('a.json')})`);
    expect(refused[1]!.issues).toEqual([expect.stringContaining(`configuration["pollbridge.callout.username"]: instances "B" (${s.file('b.json')}) and "C" (${s.file('c.json')})`)]);
    expect(refused[2]!.issues).toEqual([refused[1]!.issues[0]!.replace(`${s.file('b.json')}: `, `${s.file('c.json')}: `)]);

    const noListener = setUp({ instances: [named('Main')] }, { 'a.json': calloutOn('A') });
    expect(refusals(noListener.path)).toEqual([{ file: noListener.file('a.json'), name: 'A', issues: [
      `${noListener.file('a.json')}: configuration["pollbridge.callout.enabled"]: needs the listener Concur calls: "callout": { "listen": "HOST:PORT" } at the top level of ${noListener.path}`,
    ] }]);
  });
});

describe('instancesDir: references and secrets', () => {
  it('reads ${file:} from the instance file\'s directory, and the main file\'s from its own', () => {
    const s = setUp({ instances: [named('Main', { 'event.notification.signature.key': '${file:key.txt}' })] }, {
      'a.json': named('A', { 'event.notification.signature.key': '${file:key.txt}' }),
    });
    writeFileSync(join(s.root, 'key.txt'), 'main-signature-key\n');
    writeFileSync(join(s.dir, 'key.txt'), 'file-signature-key\n');
    const config = loadConfig(s.path);
    expect(config.instances.map((i) => i.signatureKey)).toEqual(['main-signature-key', 'file-signature-key']);
    expect(config.secrets).toEqual(expect.arrayContaining(['main-signature-key', 'file-signature-key']));
  });

  it('resolves ${credential:} from CREDENTIALS_DIRECTORY, and refuses only the file whose credential is missing', () => {
    const creds = tempDir();
    writeFileSync(join(creds, 'a-token'), 'bearer-token-of-a\n');
    const bearer = (name: string, credential: string) => named(name, {}, { provider: { baseUrl: 'http://127.0.0.1:1', auth: { type: 'bearer', token: `\${credential:${credential}}` } } });
    const s = setUp({}, { 'a.json': bearer('A', 'a-token'), 'b.json': bearer('B', 'b-token') });
    const env = { CREDENTIALS_DIRECTORY: creds };
    const config = loadConfig(s.path, { env });
    expect(config.instances.map((i) => [i.name, i.auth])).toEqual([['A', { type: 'bearer', token: 'bearer-token-of-a' }]]);
    expect(config.secrets).toContain('bearer-token-of-a');
    expect(refusals(s.path, env)).toEqual([{ file: s.file('b.json'), name: 'B', issues: [`${s.file('b.json')}: provider.auth.token: cannot read credential ${join(creds, 'b-token')}: ENOENT`] }]);
  });

  it('fingerprints what the file resolves to: a credential\'s new content changes it, a second read does not', () => {
    const creds = tempDir();
    writeFileSync(join(creds, 'token'), 'first-token-value');
    const s = setUp({}, {
      'a.json': named('A', {}, { provider: { baseUrl: 'http://127.0.0.1:1', auth: { type: 'bearer', token: '${credential:token}' } } }),
      'b.json': named('B'),
    });
    const env = { CREDENTIALS_DIRECTORY: creds };
    const fingerprints = () => loadConfig(s.path, { env }).instances.map((i) => i.fingerprint);
    const [a1, b1] = fingerprints();
    expect(fingerprints()).toEqual([a1, b1]);
    writeFileSync(join(creds, 'token'), 'second-token-value');
    const [a2, b2] = fingerprints();
    expect(a2).not.toBe(a1);
    expect(b2).toBe(b1);
  });

  it('tolerates the read-only fields of an AMPLIFY export, which change no fingerprint, and warns of AMPLIFY\'s disabled flag', () => {
    const exported = named('Exported', {}, {
      id: 471196, createdDate: '2020-01-01T00:00:00Z', updatedDate: '2021-02-03T04:05:06Z', token: 'amplify-instance-token-value',
      element: { id: 23, name: 'Concur', key: 'concur', image: 'elements/provider_concur.png', deleted: false, typeOauth: true },
      elementId: 23, valid: true, disabled: false, description: 'from AMPLIFY', maxCacheSize: 0, cacheTimeToLive: 0, cachingEnabled: false,
      providerData: { code: 'x' }, externalAuthentication: 'none', user: { id: 1, emailAddress: 'ops@example.com' },
      eventsEnabled: true, traceLoggingEnabled: false, authenticationType: 'oauth2', provisionInteractions: [],
    });
    const s = setUp({}, { 'exported.json': exported, 'plain.json': named('Plain') });
    const result = readConfig(s.path);
    expect(result.issues).toEqual([]);
    expect(result.config!.refused).toEqual([]);
    expect(result.warnings).toEqual([]);
    const [fromExport] = result.config!.instances;
    writeJson(s.dir, 'exported.json', { ...exported, updatedDate: '2022-01-01T00:00:00Z', element: { key: 'concur' }, id: 1 });
    expect(loadConfig(s.path).instances[0]!.fingerprint).toBe(fromExport!.fingerprint);

    writeJson(s.dir, 'exported.json', { ...exported, disabled: true });
    expect(readConfig(s.path).warnings.map(formatIssue)).toEqual([
      `${s.file('exported.json')}: disabled: is AMPLIFY's flag and not read: this instance is polled if "event.notification.enabled" is true, whatever AMPLIFY did with it`,
    ]);
  });
});

describe('top-level polling and http.metricsPerInstance', () => {
  const load = (main: Record<string, unknown>, count = 1) => {
    const root = tempDir();
    const instances = Array.from({ length: count }, (_, i) => named(`I${i}`));
    return readConfig(writeJson(root, 'c.json', { database: 'p.db', instances, ...main }));
  };

  it('defaults, and reads whole numbers written as numbers or AMPLIFY-style strings', () => {
    expect(load({}).config!.polling).toEqual(DEFAULT_POLLING_LIMITS);
    expect(load({ polling: { maxConcurrent: '1000', maxConcurrentPerOrigin: 8 } }).config!.polling).toEqual({ maxConcurrent: 1000, maxConcurrentPerOrigin: 8 });
    expect(load({ polling: { maxConcurrentPerOrigin: 1000 } }).config!.polling).toEqual({ maxConcurrent: 256, maxConcurrentPerOrigin: 1000 });
  });

  it('refuses values out of range, fractions, words and unknown keys, each by its path', () => {
    const issues = (polling: unknown) => load({ polling }).issues.map((i) => `${i.path}: ${i.message}`);
    expect(issues({ maxConcurrent: 0, maxConcurrentPerOrigin: 1001 })).toEqual([
      'polling.maxConcurrent: must be between 1 and 10000, got 0',
      'polling.maxConcurrentPerOrigin: must be between 1 and 1000, got 1001',
    ]);
    expect(issues({ maxConcurrent: 10_001, maxConcurrentPerOrigin: '2.5' })).toEqual([
      'polling.maxConcurrent: must be between 1 and 10000, got 10001',
      'polling.maxConcurrentPerOrigin: must be a whole number, got "2.5"',
    ]);
    expect(issues({ maxConcurrent: 'many' })).toEqual(['polling.maxConcurrent: must be a whole number, got "many"']);
    expect(issues({ maxConcurent: 3 })).toEqual(['polling.maxConcurent: unknown key, ignored as it is: did you mean "maxConcurrent"?']);
    expect(issues(4)).toEqual(['polling: must be an object, got 4']);
  });

  it('has per-instance series up to 100 instances by default, not above, and as http.metricsPerInstance says', () => {
    expect(load({}, 100).config!.metricsPerInstance).toBe(true);
    expect(load({}, 101).config!.metricsPerInstance).toBe(false);
    const listen = '127.0.0.1:0';
    expect(load({ http: { listen, metricsPerInstance: true } }, 101).config!.metricsPerInstance).toBe(true);
    expect(load({ http: { listen, metricsPerInstance: 'false' } }).config!.metricsPerInstance).toBe(false);
    expect(load({ http: { listen, metricsPerInstance: 'yes' } }).issues.map((i) => `${i.path}: ${i.message}`)).toEqual(['http.metricsPerInstance: must be true or false, got "yes"']);
    expect(load({ http: { metricsPerInstance: false } }).warnings.map((i) => `${i.path}: ${i.message}`)).toEqual(['http.metricsPerInstance: is set but http.listen is not: there is no /metrics to serve']);
  });

  it('counts the directory\'s instances for the default', () => {
    const files = Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`i${String(i).padStart(3, '0')}.json`, named(`I${i}`)]));
    expect(loadConfig(setUp({}, files).path).metricsPerInstance).toBe(false);
    delete files['i000.json'];
    expect(loadConfig(setUp({}, files).path).metricsPerInstance).toBe(true);
  });
});

describe('pollbridge validate with an instance directory (built CLI)', () => {
  it('lists each refused file\'s problems and exits 1, loads the rest, and prints no secret of any file', async () => {
    const env = { GOOD_SIGNATURE_KEY: 'good-signature-key-value', BAD_CLIENT_SECRET: 'bad-client-secret-value' };
    const bad = named('Bad', { 'event.notification.callback.url': 'not a url' }, {
      provider: { baseUrl: 'http://127.0.0.1:1', auth: { type: 'oauth2_refresh_token', clientId: 'id', clientSecret: '${env:BAD_CLIENT_SECRET}', refreshToken: 'refresh-token-in-file' } },
    });
    const s = setUp({}, { 'bad.json': bad, 'good.json': named('Good', { 'event.notification.signature.key': '${env:GOOD_SIGNATURE_KEY}' }) });
    const r = await runCli(['validate', '-c', s.path], env);
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')).toEqual([
      `${s.file('bad.json')}: configuration["event.notification.callback.url"]: must be an absolute http(s) URL, got "not a url"`,
      `1 instance file(s) refused in ${s.dir}; the others load`,
    ]);
    expect(r.stdout).toMatch(/: OK but for the refused file\(s\): 1 instance\(s\), streams Good\/reports;/);
    for (const secret of [...Object.values(env), 'refresh-token-in-file']) expect(r.stdout + r.stderr).not.toContain(secret);

    writeJson(s.dir, 'bad.json', named('Fixed'));
    const ok = await runCli(['validate', '-c', s.path], env);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/: OK: 2 instance\(s\), streams Fixed\/reports, Good\/reports;/);
  });
});

describe('pollbridge run with a refused instance file (built CLI)', () => {
  it('logs one error line naming the file and its problems, and runs the others', async () => {
    const s = setUp({}, { 'a.json': named('A', { 'event.notification.enabled': 'false' }), 'b.json': named('B', { 'event.vendor.type': 'webhook' }) });
    const r = await runCli(['run', '--once', '-c', s.path]);
    expect(r.code).toBe(0);
    expect(r.logs.filter((l) => l.message === 'instance file refused')).toEqual([expect.objectContaining({
      level: 'error', file: s.file('b.json'), instance: 'B',
      problems: [`${s.file('b.json')}: configuration["event.vendor.type"]: must be "polling", got "webhook"`],
    })]);
    expect(r.logs).toContainEqual(expect.objectContaining({ instance: 'A', message: expect.stringMatching(/^instance disabled/) }));
  });
});

describe('pollbridge run: a reload of an instance directory says what it did (built CLI)', () => {
  it('names at most 20 of each kind and counts the rest (a fleet added at once)', () => {
    const fleet = new Map(Array.from({ length: 2000 }, (_, i) => [`Company${i}`, 'f']));
    const difference = reloadDifference(new Map([['Old', 'f'], ['Company7', 'f']]), new Map([...fleet, ['Company7', 'g']]));
    expect(difference.added).toHaveLength(21);
    expect(difference.added.slice(0, 2)).toEqual(['Company0', 'Company1']);
    expect(difference.added[20]).toBe('… and 1979 more');
    expect(difference).toMatchObject({ removed: ['Old'], changed: ['Company7'] });
  });

  it('names the instances added, removed and changed, not the ones kept: a file renamed with the same instance is kept', { timeout: 60_000 }, async () => {
    const s = setUp({}, { 'a.json': named('A'), 'b.json': named('B'), 'c.json': named('C'), 'keep.json': named('Kept') });
    const p = startCli(['run', '-c', s.path, '--log-format', 'json']);
    try {
      await p.waitForLog('pollbridge started');
      rmSync(s.file('a.json'));
      writeJson(s.dir, 'b.json', named('B', { 'event.poller.refresh_interval': '5' }));
      renameSync(s.file('c.json'), s.file('c-renamed.json'));
      writeJson(s.dir, 'd.json', named('D'));
      p.child.kill('SIGHUP');
      const reloaded = await p.waitForLog('config reloaded');
      expect(reloaded).toMatchObject({ instances: 4, added: ['D'], removed: ['A'], changed: ['B'] });
    } finally {
      p.child.kill('SIGTERM');
      await p.exited;
    }
  });
});
