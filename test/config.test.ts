import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readConfig } from '../src/config/load.js';
import { formatIssue } from '../src/config/issues.js';
import { runCli } from './helpers/cli.js';
import { instance } from './helpers/configs.js';
import { tempDir, writeJson } from './helpers/tmp.js';

const SAMPLE = fileURLToPath(new URL('../poller.config.json', import.meta.url));
const SAMPLE_ENV = {
  CONCUR_CLIENT_ID: 'client-id',
  CONCUR_CLIENT_SECRET: 'client-secret-value',
  CONCUR_REFRESH_TOKEN: 'refresh-token-value',
  POLLBRIDGE_SIGNATURE_KEY: 'signature-key-value',
};

/** The sample instance with its one resource extended. */
function resourceWith(extra: Record<string, unknown>) {
  const base = instance();
  const reports = base.configuration['event.poller.configuration'].reports;
  return instance({ 'event.poller.configuration': { reports: { ...reports, ...extra } } });
}

/** A copy of the sample with its callback URL edited, as the README asks before use. */
function editedSample(): string {
  const sample = JSON.parse(readFileSync(SAMPLE, 'utf8')) as { instances: { configuration: Record<string, unknown> }[] };
  sample.instances[0]!.configuration['event.notification.callback.url'] = 'https://receiver.internal/concur';
  return writeJson(tempDir(), 'poller.config.json', sample);
}

function problems(value: unknown, env: NodeJS.ProcessEnv = {}): string[] {
  const dir = tempDir();
  const file = writeJson(dir, 'c.json', value);
  return readConfig(file, { env }).issues.map(formatIssue);
}

describe('config: the sample', () => {
  it('validates with the environment variables set once its placeholder callback URL is edited, and resolves them', () => {
    expect(readConfig(SAMPLE, { env: SAMPLE_ENV }).issues.map(formatIssue)).toEqual([
      `${SAMPLE}: instances[0].configuration["event.notification.callback.url"]: still holds "hooks.example.com", a placeholder of the example config: put your own value here`,
    ]);
    const result = readConfig(editedSample(), { env: SAMPLE_ENV });
    expect(result.issues).toEqual([]);
    const inst = result.config!.instances[0]!;
    expect(inst.auth).toMatchObject({ type: 'oauth2_refresh_token', clientId: 'client-id', refreshToken: 'refresh-token-value' });
    expect(inst.schedule).toEqual({ kind: 'interval', intervalMs: 15 * 60_000 });
    expect(inst.enabled).toBe(true);
    expect(result.config!.secrets).toEqual(expect.arrayContaining(['client-secret-value', 'refresh-token-value', 'signature-key-value']));
  });

  it('`pollbridge validate` accepts it edited (exit 0) and lists every missing variable without it (exit 1, as the contract says; run exits 2)', async () => {
    const ok = await runCli(['validate', '-c', editedSample()], SAMPLE_ENV);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/OK: 1 instance\(s\), streams ConcurForDocs\/reports/);
    const bad = await runCli(['validate', '-c', SAMPLE]);
    expect(bad.code).toBe(1);
    // run on the same file exits 2, on which the unit's RestartPreventExitStatus=2 stops restarting.
    expect((await runCli(['run', '--once', '-c', SAMPLE])).code).toBe(2);
    for (const name of Object.keys(SAMPLE_ENV)) expect(bad.stderr).toContain(`environment variable ${name} is not set`);
    // The four variables, and the placeholder.
    expect(bad.stderr).toMatch(/5 problem\(s\)/);
  });
});

describe('config: AMPLIFY spellings', () => {
  it('takes event.poller.configuration as a JSON string, and decimal minutes', () => {
    const dir = tempDir();
    const base = instance({ 'event.poller.refresh_interval': '0.5' });
    const asString = { ...base, configuration: { ...base.configuration, 'event.poller.configuration': JSON.stringify(base.configuration['event.poller.configuration']) } };
    const result = readConfig(writeJson(dir, 'c.json', asString), { env: {} });
    expect(result.issues).toEqual([]);
    expect(result.config!.instances[0]!.resources[0]!.name).toBe('reports');
    expect(result.config!.instances[0]!.schedule).toEqual({ kind: 'interval', intervalMs: 30_000 });
  });

  it('accepts whsec_ keys in base64, current and previous, and a resource\'s own pollbridge keys', () => {
    const file = writeJson(tempDir(), 'c.json', {
      ...resourceWith({ url: '/items?since=${epoch}', 'pollbridge.items': 'data', 'pollbridge.nextPage': 'next', 'pollbridge.oldestFirst': 'true' }),
      element: { key: 'generic' },
      configuration: {
        ...resourceWith({ url: '/items?since=${epoch}', 'pollbridge.items': 'data', 'pollbridge.nextPage': 'next', 'pollbridge.oldestFirst': 'true' }).configuration,
        'event.notification.signature.key': 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
        'pollbridge.notification.previousSignatureKeys': ['whsec_dGhyZWU=', 'whsec_dHdvIGI=', 'whsec_b25lIGJ5', 'a plain key'],
      },
    });
    const result = readConfig(file, { env: {} });
    expect(result.issues).toEqual([]);
    expect(result.config!.instances[0]!.resources[0]).toMatchObject({ itemsPath: 'data', nextPagePath: 'next', oldestFirst: true });
  });

  it('`pollbridge validate` refuses a poller configuration encoded twice, which it used to call OK and then poll nothing', async () => {
    const doubled = instance({ 'event.poller.configuration': JSON.stringify(JSON.stringify(instance().configuration['event.poller.configuration'])) });
    const result = await runCli(['validate', '-c', writeJson(tempDir(), 'c.json', doubled)]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('c.json: configuration["event.poller.configuration"]: is a JSON string holding another JSON string (encoded twice)');
  });

  it('`pollbridge validate` refuses a config with no enabled instance, and an unknown pollbridge key in a resource', async () => {
    const file = writeJson(tempDir(), 'c.json', {
      instances: [
        instance({ 'event.notification.enabled': 'false' }),
        { ...resourceWith({ 'pollbridge.nextpage': 'next' }), name: 'Other', configuration: { ...resourceWith({ 'pollbridge.nextpage': 'next' }).configuration, 'event.notification.enabled': 'false' } },
      ],
    });
    const result = await runCli(['validate', '-c', file]);
    expect(result.code).toBe(1);
    expect(result.stderr.split('\n')).toEqual([
      `${file}: instances[1].configuration["event.poller.configuration"].reports["pollbridge.nextpage"]: unknown pollbridge key (known here: pollbridge.items, pollbridge.nextPage, pollbridge.oldestFirst)`,
      `${file}: instances: no instance is enabled, so pollbridge would poll nothing: set "event.notification.enabled": "true" on the instance(s) to poll`,
      `2 problem(s) in ${file}`,
    ]);
  });

  it('loads a disabled instance without polling it, and a multi-instance file', () => {
    const dir = tempDir();
    const file = writeJson(dir, 'c.json', {
      database: 'state/p.db',
      instances: [instance({ 'event.notification.enabled': 'false' }), { ...instance(), name: 'Other' }],
    });
    const result = readConfig(file, { env: {} });
    expect(result.issues).toEqual([]);
    expect(result.config!.instances.map((i) => [i.name, i.enabled])).toEqual([['Docs', false], ['Other', true]]);
    expect(result.config!.database).toBe(join(dir, 'state/p.db'));
  });

  it('reads ${file:} relative to the config (trailing newline dropped) and ${credential:} from CREDENTIALS_DIRECTORY', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'key.txt'), 'file-secret\n');
    mkdirSync(join(dir, 'creds'));
    writeFileSync(join(dir, 'creds', 'token'), 'credential-secret');
    const file = writeJson(dir, 'c.json', instance(
      { 'event.notification.signature.key': '${file:key.txt}' },
      { provider: { baseUrl: 'http://127.0.0.1:1', auth: { type: 'bearer', token: '${credential:token}' } } },
    ));
    const result = readConfig(file, { env: { CREDENTIALS_DIRECTORY: join(dir, 'creds') } });
    expect(result.issues).toEqual([]);
    expect(result.config!.instances[0]!.signatureKey).toBe('file-secret');
    expect(result.config!.instances[0]!.auth).toEqual({ type: 'bearer', token: 'credential-secret' });
  });
});

describe('config: each bad input has its own clear message naming file and path', () => {
  it.each([
    ['broken JSON', '{ "name": ', /c\.json: is not valid JSON/],
    ['a JSON array', '[]', /must hold a JSON object/],
  ])('%s', (_name, text, message) => {
    expect(problems(text)).toEqual([expect.stringMatching(message)]);
  });

  it.each([
    ['missing callback URL', instance({ 'event.notification.callback.url': undefined }), 'configuration["event.notification.callback.url"]: is required'],
    ['relative callback URL', instance({ 'event.notification.callback.url': '/hook' }), 'must be an absolute http(s) URL, got "/hook"'],
    ['refresh interval not a number', instance({ 'event.poller.refresh_interval': 'often' }), 'configuration["event.poller.refresh_interval"]: must be a number of minutes, got "often"'],
    ['vendor type webhook', instance({ 'event.vendor.type': 'webhook' }), 'must be "polling", got "webhook"'],
    ['enabled not a boolean', instance({ 'event.notification.enabled': 'yes' }), 'must be true or false, got "yes"'],
    ['poller configuration string not JSON', instance({ 'event.poller.configuration': '{reports:' }), 'configuration["event.poller.configuration"]: is a string but not valid JSON'],
    ['week-year pattern', instance({ 'event.poller.configuration': { reports: { url: '/hubs/expense/reports', datesConfiguration: { updatedDateFormat: 'YYYY-MM-dd' } } } }),
      'datesConfiguration.updatedDateFormat: \'Y\' is Java\'s week year'],
    ['unknown URL macro', instance({ 'event.poller.configuration': { reports: { url: '/x?d=${today}' } } }), 'reports.url: unknown reference "${today}"'],
    ['unknown pollbridge key', instance({ 'pollbridge.poller.crn': '* * * * *' }), 'configuration["pollbridge.poller.crn"]: unknown pollbridge key'],
    ['unknown pollbridge key in a resource', resourceWith({ 'pollbridge.itmes': 'data' }),
      'configuration["event.poller.configuration"].reports["pollbridge.itmes"]: unknown pollbridge key (known here: pollbridge.items, pollbridge.nextPage, pollbridge.oldestFirst)'],
    ['unknown pollbridge key in a resource given as a JSON string', instance({ 'event.poller.configuration': JSON.stringify(resourceWith({ 'pollbridge.oldestfirst': true }).configuration['event.poller.configuration']) }),
      'configuration["event.poller.configuration"].reports["pollbridge.oldestfirst"]: unknown pollbridge key'],
    ['instance setting inside a resource', resourceWith({ 'pollbridge.poller.cron': '* * * * *' }),
      'reports["pollbridge.poller.cron"]: is an instance setting: it belongs in "configuration"'],
    ['resource setting on the instance', instance({ 'pollbridge.items': 'data' }), 'configuration["pollbridge.items"]: is a resource setting'],
    ['pollbridge key in datesConfiguration', resourceWith({ datesConfiguration: { updatedDateField: 'LastModifiedDate', 'pollbridge.zone': 'UTC' } }),
      'reports.datesConfiguration["pollbridge.zone"]: unknown pollbridge key (none belongs here)'],
    ['pollbridge key in provider', instance({}, { provider: { baseUrl: 'http://127.0.0.1:1', 'pollbridge.timeoutMs': 5 } }), 'provider["pollbridge.timeoutMs"]: unknown pollbridge key'],
    ['pollbridge key at the root of a multi-instance file', { 'pollbridge.database': 'x.db', instances: [instance()] }, 'c.json: ["pollbridge.database"]: unknown pollbridge key'],
    ['poller configuration encoded twice', instance({ 'event.poller.configuration': JSON.stringify(JSON.stringify(instance().configuration['event.poller.configuration'])) }),
      'configuration["event.poller.configuration"]: is a JSON string holding another JSON string (encoded twice)'],
    ['whsec_ key that is not base64', instance({ 'event.notification.signature.key': 'whsec_not-base64!' }),
      'configuration["event.notification.signature.key"]: is a "whsec_" key but the rest is not base64'],
    ['whsec_ key with base64 unpadded', instance({ 'event.notification.signature.key': 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS' }), 'is a "whsec_" key but the rest is not base64'],
    ['previous whsec_ key that is not base64', instance({ 'pollbridge.notification.previousSignatureKeys': 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_%%%%' }),
      'configuration["pollbridge.notification.previousSignatureKeys"][1]: is a "whsec_" key but the rest is not base64'],
    ['the only instance disabled', instance({ 'event.notification.enabled': 'false' }),
      'configuration["event.notification.enabled"]: no instance is enabled, so pollbridge would poll nothing'],
    ['every instance disabled', { instances: [instance({ 'event.notification.enabled': 'false' }), { ...instance({ 'event.notification.enabled': false }), name: 'Other' }] },
      'c.json: instances: no instance is enabled, so pollbridge would poll nothing'],
    ['bad cron', instance({ 'pollbridge.poller.cron': 'every minute' }), 'is not a valid cron expression: "every minute"'],
    ['unknown time zone', instance({ 'pollbridge.poller.timezone': 'Mars/Olympus' }), 'unknown time zone "Mars/Olympus"'],
    ['unknown auth type', instance({}, { provider: { baseUrl: 'http://127.0.0.1:1', auth: { type: 'oauth1' } } }), 'provider.auth.type: must be oauth2_refresh_token, bearer, basic or none, got "oauth1"'],
    ['oauth2 without its secrets', instance({}, { provider: { baseUrl: 'http://127.0.0.1:1', auth: { type: 'oauth2_refresh_token', clientId: 'x', refreshToken: 'r' } } }), 'provider.auth.clientSecret: is required'],
    ['no resources', instance({ 'event.poller.configuration': {} }), 'must configure at least one resource'],
    ['page size over Concur\'s limit', instance({ 'event.poller.configuration': { reports: { url: '/hubs/expense/reports', pageSize: 500 } } }), 'reports.pageSize: must be between 1 and 100, got 500'],
    ['bad backfill date', instance({ 'pollbridge.poller.backfillFrom': 'last week' }), 'must be an ISO-8601 date-time, got "last week"'],
    ['credential without systemd', instance({ 'event.notification.signature.key': '${credential:key}' }), 'needs CREDENTIALS_DIRECTORY'],
    ['unreadable secret file', instance({ 'event.notification.signature.key': '${file:missing.txt}' }), 'cannot read file'],
  ])('%s', (_name, config, message) => {
    const found = problems(config);
    expect(found).toHaveLength(1);
    expect(found[0]).toContain('c.json: ');
    expect(found[0]).toContain(message);
  });

  it('reports every problem at once, and never a secret value, even where a message quotes the value', async () => {
    // Each secret sits where a message would quote it: a token of the wrong type, old keys in a
    // list of the wrong shape, an environment value that makes a bad URL.
    const hook = 'hooks.example.com/hook-secret-7f3a';
    const file = writeJson(tempDir(), 'c.json', instance({
      'event.vendor.type': 'webhook',
      'event.poller.refresh_interval': '-1',
      'event.notification.signature.key': '${env:KEY}',
      'event.notification.callback.url': '${env:HOOK}',
      'pollbridge.notification.previousSignatureKeys': ['old-signing-key-1', { key: 'old-signing-key-2' }],
    }, { provider: { baseUrl: 'nope', auth: { type: 'bearer', token: 918273645 } } }));
    const result = await runCli(['validate', '-c', file], { HOOK: hook });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/7 problem\(s\)/);
    for (const secret of [hook, 'hook-secret', '918273645', 'old-signing-key-1', 'old-signing-key-2']) expect(result.stderr).not.toContain(secret);
    expect(result.stderr).toContain('configuration["event.notification.callback.url"]: must be an absolute http(s) URL, got "${env:HOOK}"');
    expect(result.stderr).toContain('provider.auth.token: must be a string, got a number');
    expect(result.stderr).toContain('configuration["pollbridge.notification.previousSignatureKeys"]: must be a list (array or comma-separated string) of strings');
  });

  it('reports the other problems of a resource whose url is bad too', () => {
    const found = problems(instance({ 'event.poller.configuration': { reports: { url: '/x?d=${today}', pageSize: 'many', pollDelay: -5 } } }));
    expect(found).toHaveLength(3);
    expect(found.join('\n')).toMatch(/reports\.url: unknown reference[\s\S]*reports\.pageSize: must be a whole number[\s\S]*reports\.pollDelay: must be between 0 and 86400 seconds/);
  });

  it('refuses a duplicate instance name', () => {
    expect(problems({ instances: [instance(), instance()] })).toEqual([expect.stringContaining('instances[1].name: duplicate instance name "Docs"')]);
  });
});

describe('config: the sample file can be copied and edited', () => {
  it('resolves a relative database path against the config directory', () => {
    const file = editedSample();
    expect(readConfig(file, { env: SAMPLE_ENV }).config!.database).toBe(join(dirname(file), 'pollbridge.db'));
  });
});
