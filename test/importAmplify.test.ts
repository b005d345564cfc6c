import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { AmplifyImportError, type ImportedInstance, importAmplifyExport, isSecretKey, slugOf } from '../src/config/amplifyImport.js';
import { readConfig } from '../src/config/load.js';
import { runCli } from './helpers/cli.js';
import { tempDir, writeJson } from './helpers/tmp.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/amplify/', import.meta.url));
const ARRAY_EXPORT = join(FIXTURES, 'instances.json');
const SINGLE_EXPORT = join(FIXTURES, 'single.json');
const read = (file: string): unknown => JSON.parse(readFileSync(file, 'utf8'));

/** Every secret of the fixtures: they all say "fixture" (or are whsec_ keys), which no other value does. */
function secretsOf(value: unknown): string[] {
  if (typeof value === 'string') return /fixture|^whsec_/.test(value) ? [value] : [];
  if (Array.isArray(value)) return value.flatMap(secretsOf);
  if (value && typeof value === 'object') return Object.values(value).flatMap(secretsOf);
  return [];
}
const SECRETS = [...secretsOf(read(ARRAY_EXPORT)), ...secretsOf(read(SINGLE_EXPORT))];

const byName = (result: ImportedInstance[], name: string): ImportedInstance => result.find((i) => i.name === name)!;
const revealed = (i: ImportedInstance): Record<string, string | undefined> =>
  Object.fromEntries(i.credentials.map((c) => [c.name, c.value?.reveal()]));

describe('importAmplifyExport (pure)', () => {
  it('the fixtures hold the secrets this file looks for', () => {
    // Instance tokens, client secrets, access and refresh tokens, signature keys, an OAuth code.
    expect(SECRETS.length).toBe(18);
  });

  it('turns the array GET /instances returns into one instance per file, no secret left in any', () => {
    const result = importAmplifyExport(read(ARRAY_EXPORT));
    expect(result.map((i) => i.fileName)).toEqual(['acme-corp.json', 'globex-uberseehandel-gmbh.json', 'initech-emea.json']);
    const written = JSON.stringify(result.map((i) => i.instance));
    for (const secret of SECRETS) expect(written).not.toContain(secret);
    for (const i of result) expect(Object.keys(i.instance)).toEqual(['name', 'element', 'provider', 'configuration', 'tags']);
    for (const i of result) expect(i.instance.element).toEqual({ key: 'concur' });
  });

  it('builds the provider of a Concur export from its oauth.* keys and takes those keys out of configuration', () => {
    const acme = byName(importAmplifyExport(read(ARRAY_EXPORT)), 'Acme Corp');
    expect(acme.instance.provider).toEqual({
      baseUrl: 'https://us.api.concursolutions.com',
      auth: {
        type: 'oauth2_refresh_token',
        clientId: '3f1c9a2e-7d4b-4e0a-9c61-acme0client1d',
        clientSecret: '${credential:acme-corp.client-secret}',
        refreshToken: '${credential:acme-corp.refresh-token}',
      },
    });
    const configuration = acme.instance.configuration as Record<string, unknown>;
    expect(Object.keys(configuration).filter((k) => k.startsWith('oauth.'))).toEqual(['oauth.user.refresh_interval', 'oauth.user.refresh_time', 'oauth.callback.url']);
    expect(configuration['event.notification.signature.key']).toBe('${credential:acme-corp.signature-key}');
    expect(revealed(acme)).toEqual({
      'acme-corp.client-secret': 'fixture-acme-client-secret-7b91e0d4',
      'acme-corp.refresh-token': 'fixture-acme-refresh-token-5c0f2a9e',
      'acme-corp.signature-key': 'fixture-acme-signature-key-d83a61',
    });
    expect(acme.credentials.every((c) => c.instance === 'Acme Corp')).toBe(true);
    expect(acme.dropped).toEqual(expect.arrayContaining(['id', 'token', 'createdDate', 'updatedDate', 'user', 'valid', 'disabled', 'element.id', 'configuration["oauth.user.token"]']));
    expect(acme.notes.join(' ')).toContain('provider built for Concur (https://us.api.concursolutions.com) from oauth.api.key, oauth.api.secret, oauth.user.refresh_token');
  });

  it('keeps event.poller.configuration as the JSON string AMPLIFY wrote', () => {
    const globex = byName(importAmplifyExport(read(ARRAY_EXPORT)), 'Globex Überseehandel GmbH');
    const original = ((read(ARRAY_EXPORT) as Record<string, unknown>[])[1]!.configuration as Record<string, unknown>)['event.poller.configuration'];
    expect(typeof original).toBe('string');
    expect((globex.instance.configuration as Record<string, unknown>)['event.poller.configuration']).toBe(original);
  });

  it('leaves out a secret a resource of event.poller.configuration holds (a field pollbridge does not read), object or JSON string', () => {
    const resource = (secrets: Record<string, unknown>): Record<string, unknown> => ({
      url: "/hubs/expense/reports?where=modifiedDateAfter='${date:yyyy-MM-dd'T'HH:mm:ss.SSS}'", idField: 'ID', pageSize: 50, ...secrets,
    });
    const configuration = (poller: unknown): Record<string, unknown> => ({
      'event.vendor.type': 'polling', 'event.notification.callback.url': 'https://hooks.acme.io/concur', 'event.poller.configuration': poller,
    });
    const [asObject, asString] = importAmplifyExport([
      { name: 'Nested Object', element: { key: 'concur' }, configuration: configuration({
        reports: resource({ password: 'nested-pass-1', headers: { Authorization: 'Bearer nested-hdr-1' } }),
        tokens: resource({ 'api.token': 'nested-tok-1' }),
      }) },
      { name: 'Nested String', element: { key: 'concur' }, configuration: configuration(JSON.stringify({ reports: resource({ clientSecret: 'nested-cs-2' }) })) },
    ]);
    const written = JSON.stringify([asObject!.instance, asString!.instance]);
    for (const secret of ['nested-pass-1', 'nested-hdr-1', 'nested-tok-1', 'nested-cs-2']) expect(written).not.toContain(secret);
    const poller = (i: ImportedInstance): unknown => (i.instance.configuration as Record<string, unknown>)['event.poller.configuration'];
    // What pollbridge reads stays, resource names included (a resource may be called "tokens").
    expect(poller(asObject!)).toEqual({ reports: resource({}), tokens: resource({}) });
    expect(typeof poller(asString!)).toBe('string');
    expect(JSON.parse(poller(asString!) as string)).toEqual({ reports: resource({}) });
    expect(asObject!.dropped).toEqual(expect.arrayContaining([
      'configuration["event.poller.configuration"].reports.password', 'configuration["event.poller.configuration"].reports.headers',
      'configuration["event.poller.configuration"].tokens["api.token"]',
    ]));
    expect(asObject!.notes.join('; ')).toContain('left out 3 field(s) of event.poller.configuration that may hold secrets and that pollbridge does not read (reports.password, reports.headers, tokens["api.token"])');
    expect(asString!.notes.join('; ')).toContain('(reports.clientSecret)');
  });

  it('keeps a provider block, replacing its literal secrets and leaving its references', () => {
    const initech = byName(importAmplifyExport(read(ARRAY_EXPORT)), 'Initech EMEA');
    const auth = (initech.instance.provider as { auth: Record<string, string> }).auth;
    expect(auth.clientSecret).toBe('${env:INITECH_CLIENT_SECRET}');
    expect(auth.refreshToken).toBe('${credential:initech-emea.refresh-token}');
    expect(auth.tokenUrl).toBe('https://emea.api.concursolutions.com/oauth2/v0/token');
    expect((initech.instance.configuration as Record<string, unknown>)['pollbridge.notification.previousSignatureKeys'])
      .toEqual(['${credential:initech-emea.previous-signature-key-1}']);
    expect(initech.credentials.map((c) => c.name)).toEqual(['initech-emea.refresh-token', 'initech-emea.signature-key', 'initech-emea.previous-signature-key-1']);
    expect(initech.notes).toEqual([]);
  });

  it('a single-object export; a Concur export without a refresh token still gets its reference, marked as missing', () => {
    const [umbrella, ...rest] = importAmplifyExport(read(SINGLE_EXPORT));
    expect(rest).toEqual([]);
    expect(umbrella!.fileName).toBe('umbrella-pharma-sandbox.json');
    expect((umbrella!.instance.provider as { auth: Record<string, string> }).auth.refreshToken).toBe('${credential:umbrella-pharma-sandbox.refresh-token}');
    const refresh = umbrella!.credentials.find((c) => c.name === 'umbrella-pharma-sandbox.refresh-token');
    expect(refresh).toEqual({ name: 'umbrella-pharma-sandbox.refresh-token', what: 'Concur refresh token (oauth.user.refresh_token)', instance: 'Umbrella Pharma (sandbox)' });
    expect(umbrella!.dropped).toContain('providerData');
  });

  it('accepts { "instances": [...] }, and --base-url for the provider it builds', () => {
    const result = importAmplifyExport({ instances: [read(SINGLE_EXPORT)] }, { baseUrl: 'https://emea.api.concursolutions.com' });
    expect((result[0]!.instance.provider as { baseUrl: string }).baseUrl).toBe('https://emea.api.concursolutions.com');
  });

  it('another element without a provider: the file is still made, and the operator told to add one', () => {
    const [generic] = importAmplifyExport({
      name: 'Zendesk', element: { key: 'zendesk' },
      configuration: { 'event.vendor.type': 'polling', 'api.token': 'zd-token-value', 'pollbridge.callout.password': 'pw-value', 'event.notification.signature.key': '' },
    });
    expect(generic!.instance.provider).toBeUndefined();
    expect(generic!.notes[0]).toMatch(/^no provider block: add one/);
    expect(generic!.instance.configuration).toEqual({
      'event.vendor.type': 'polling',
      'api.token': '${credential:zendesk.api-token}',
      'pollbridge.callout.password': '${credential:zendesk.callout-password}',
      'event.notification.signature.key': '',
    });
    expect(revealed(generic!)).toEqual({ 'zendesk.api-token': 'zd-token-value', 'zendesk.callout-password': 'pw-value' });
  });

  it('says when an instance disabled in AMPLIFY would be polled', () => {
    const notesOf = (disabled: boolean, enabled: string) => importAmplifyExport({ name: 'D', disabled, element: { key: 'x' }, provider: {}, configuration: { 'event.notification.enabled': enabled } })[0]!.notes;
    expect(notesOf(true, 'true')).toEqual(['disabled in AMPLIFY, but its event.notification.enabled is true: pollbridge will poll it (set it to "false" to keep it off)']);
    expect(notesOf(true, 'false')).toEqual([]);
    expect(notesOf(false, 'true')).toEqual([]);
  });

  it('a masked value (AMPLIFY shows some secrets as ****) is a credential to create, never one to write', () => {
    const [i] = importAmplifyExport({ name: 'M', element: { key: 'concur' }, configuration: { 'oauth.api.secret': '********', 'oauth.api.key': 'id' } });
    expect(i!.credentials.find((c) => c.name === 'm.client-secret')?.value).toBeUndefined();
  });

  it('refuses names that would share a file, items that are not objects and missing names, all in one message', () => {
    const attempt = (parsed: unknown): string => {
      try {
        importAmplifyExport(parsed);
      } catch (err) {
        expect(err).toBeInstanceOf(AmplifyImportError);
        return (err as Error).message;
      }
      throw new Error('no error');
    };
    expect(attempt([{ name: 'Acme Corp' }, { name: 'ACME corp!' }])).toBe('"Acme Corp" ([0]), "ACME corp!" ([1]) would all be written to acme-corp.json: rename all but one in the export');
    expect(attempt([{ name: 'A' }, { name: 'A' }])).toBe('the name "A" is used 2 times: [0], [1]');
    expect(attempt([{ name: 'A' }, 'B', { id: 3 }, { name: '  ' }])).toBe('[1] is not an object; [2] has no name; [3] has no name');
    expect(attempt([])).toBe('holds no instance (an empty array)');
    expect(attempt('text')).toMatch(/^must hold an AMPLIFY instance object/);
  });

  it('secret keys by AMPLIFY naming', () => {
    for (const key of ['oauth.api.secret', 'oauth.user.token', 'oauth.user.refresh_token', 'event.notification.signature.key', 'pollbridge.callout.password', 'api.Password', 'pollbridge.notification.previousSignatureKeys']) {
      expect(isSecretKey(key), key).toBe(true);
    }
    for (const key of ['oauth.api.key', 'oauth.token.url', 'event.poller.configuration', 'pollbridge.callout.username', 'oauth.user.refresh_interval']) {
      expect(isSecretKey(key), key).toBe(false);
    }
  });

  it('file names: ASCII slugs, and a stable name for a name in another script', () => {
    expect(slugOf('  Société Générale — Paris ')).toBe('societe-generale-paris');
    expect(slugOf('日本支社')).toMatch(/^instance-[0-9a-f]{10}$/);
    expect(slugOf('日本支社')).toBe(slugOf('日本支社'));
    expect(slugOf('日本支社')).not.toBe(slugOf('大阪支社'));
  });

  it('a secret shows as a placeholder when printed, serialised or inspected', () => {
    const [i] = importAmplifyExport(read(SINGLE_EXPORT));
    const text = `${JSON.stringify(i)} ${inspect(i, { depth: 10 })} ${String(i!.credentials[0]!.value)}`;
    for (const secret of SECRETS) expect(text).not.toContain(secret);
    expect(text).toContain('[secret]');
  });
});

describe('pollbridge import amplify (built CLI)', () => {
  it('writes one file per instance and the credentials; the files load with the real loader; no secret anywhere', async () => {
    const dir = tempDir();
    const config = writeJson(dir, 'poller.config.json', { database: 'pollbridge.db', instancesDir: 'tenants' });
    const creds = join(dir, 'creds');
    const r = await runCli(['import', 'amplify', ARRAY_EXPORT, '-c', config, '--credentials-dir', creds]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const target = join(dir, 'tenants');
    expect(r.stdout).toContain(`instance files in ${target} (the instancesDir of ${config})`);
    const files = readdirSync(target).sort();
    expect(files).toEqual(['acme-corp.json', 'globex-uberseehandel-gmbh.json', 'initech-emea.json']);
    for (const f of files) {
      expect(r.stdout).toContain(`wrote ${join(target, f)} (`);
      expect(statSync(join(target, f)).mode & 0o777).toBe(0o644);
      expect(readFileSync(join(target, f), 'utf8')).toMatch(/^\{\n {2}"name": .*\n\}\n$/s);
    }
    expect(statSync(creds).mode & 0o777).toBe(0o700);
    const credentialFiles = readdirSync(creds);
    expect(credentialFiles).toHaveLength(9);
    for (const f of credentialFiles) expect(statSync(join(creds, f)).mode & 0o777).toBe(0o600);
    expect(r.stdout).toContain(`LoadCredential=acme-corp.refresh-token:${join(creds, 'acme-corp.refresh-token')}`);

    const written = files.map((f) => readFileSync(join(target, f), 'utf8'));
    for (const secret of SECRETS) {
      for (const text of [...written, r.stdout, r.stderr]) expect(text).not.toContain(secret);
    }

    const main = writeJson(dir, 'main.config.json', { database: 'pollbridge.db', instances: written.map((t) => JSON.parse(t) as unknown) });
    const loaded = readConfig(main, { env: { CREDENTIALS_DIRECTORY: creds, INITECH_CLIENT_SECRET: 'from-env' } });
    expect(loaded.issues).toEqual([]);
    expect(loaded.warnings).toEqual([]);
    const instances = loaded.config!.instances;
    expect(instances.map((i) => i.name)).toEqual(['Acme Corp', 'Globex Überseehandel GmbH', 'Initech EMEA']);
    expect(instances[0]!.auth).toMatchObject({ clientSecret: 'fixture-acme-client-secret-7b91e0d4', refreshToken: 'fixture-acme-refresh-token-5c0f2a9e' });
    expect(instances[1]!.resources.map((res) => res.name)).toEqual(['reports']);
    expect(instances[2]!.signatureKey).toBe('whsec_Zml4dHVyZS1pbml0ZWNoLW5ldy1rZXktOTk=');
    expect(instances[2]!.previousSignatureKeys).toEqual(['whsec_Zml4dHVyZS1pbml0ZWNoLW9sZC1rZXktMTE=']);
  });

  it('never overwrites without --force: refuses before writing anything, naming every file that exists', async () => {
    const dir = tempDir();
    const target = join(dir, 'out');
    const creds = join(dir, 'creds');
    const args = ['import', 'amplify', ARRAY_EXPORT, '--dir', target, '--credentials-dir', creds];
    expect((await runCli(args)).code).toBe(0);
    writeFileSync(join(target, 'acme-corp.json'), 'edited by hand\n');
    rmSync(join(target, 'initech-emea.json'));
    rmSync(join(creds, 'globex-uberseehandel-gmbh.client-secret'));

    const refused = await runCli(args);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr.split('\n')).toHaveLength(1);
    expect(refused.stderr).toContain('nothing written: 10 file(s) exist, use --force to overwrite them: ');
    expect(refused.stderr).toContain(join(target, 'acme-corp.json'));
    expect(refused.stderr).toContain(join(creds, 'acme-corp.signature-key'));
    expect(readFileSync(join(target, 'acme-corp.json'), 'utf8')).toBe('edited by hand\n');
    expect(existsSync(join(target, 'initech-emea.json'))).toBe(false);
    expect(existsSync(join(creds, 'globex-uberseehandel-gmbh.client-secret'))).toBe(false);

    const forced = await runCli([...args, '--force']);
    expect(forced.code).toBe(0);
    expect(JSON.parse(readFileSync(join(target, 'acme-corp.json'), 'utf8'))).toMatchObject({ name: 'Acme Corp' });
    expect(readFileSync(join(creds, 'globex-uberseehandel-gmbh.client-secret'), 'utf8')).toBe('fixture-globex-client-secret-0e4d77');
    expect(readdirSync(target).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('--dir other than the config\'s instancesDir: writes there, and warns that the daemon does not read them there', async () => {
    const dir = tempDir();
    const config = writeJson(dir, 'poller.config.json', { database: './p.db', instancesDir: 'instances.d' });
    const elsewhere = await runCli(['import', 'amplify', ARRAY_EXPORT, '-c', config, '--dir', join(dir, 'review')]);
    expect(elsewhere.code).toBe(0);
    expect(readdirSync(join(dir, 'review'))).toHaveLength(3);
    expect(elsewhere.stderr).toBe(`warning: ${join(dir, 'review')} is not the instancesDir of ${config} (${join(dir, 'instances.d')}): the daemon does not read these files until they are moved there`);
    const same = await runCli(['import', 'amplify', ARRAY_EXPORT, '-c', config, '--dir', join(dir, 'instances.d')]);
    expect(same.code).toBe(0);
    expect(same.stderr).toBe('');
  });

  it('warns when the credentials directory it is given can be read by others (the files themselves are 0600)', async () => {
    const dir = tempDir();
    const creds = join(dir, 'creds');
    mkdirSync(creds, { mode: 0o755 });
    chmodSync(creds, 0o755);
    const r = await runCli(['import', 'amplify', SINGLE_EXPORT, '--dir', join(dir, 'out'), '--credentials-dir', creds]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(`warning: ${creds} can be read by other users: chmod 0700 it`);
    for (const f of readdirSync(creds)) expect(statSync(join(creds, f)).mode & 0o777).toBe(0o600);
  });

  it('without --credentials-dir: lists the credentials to create, the missing one marked, and writes no secret', async () => {
    const dir = tempDir();
    const config = writeJson(dir, 'poller.config.json', { database: 'pollbridge.db', instances: [] });
    const r = await runCli(['import', 'amplify', SINGLE_EXPORT], { POLLBRIDGE_CONFIG: config });
    expect(r.code).toBe(0);
    const target = join(dir, 'instances.d');
    expect(r.stdout).toContain(`instance files in ${target} (beside ${config}, which names no instancesDir: it needs "instancesDir": "instances.d")`);
    expect(r.stdout).toContain('create 3 credential file(s) in /etc/pollbridge/credentials (mode 0600, the value alone; 1 not in the export, marked *)');
    expect(r.stdout).toMatch(/umbrella-pharma-sandbox\.refresh-token +"Umbrella Pharma \(sandbox\)": Concur refresh token \(oauth\.user\.refresh_token\) \*/);
    const written = readFileSync(join(target, 'umbrella-pharma-sandbox.json'), 'utf8');
    for (const secret of SECRETS) expect(written + r.stdout + r.stderr).not.toContain(secret);
    expect(existsSync('/etc/pollbridge/credentials/umbrella-pharma-sandbox.client-secret')).toBe(false);
  });

  it.each([
    ['an unreadable file', (dir: string) => join(dir, 'missing.json'), /^pollbridge: cannot read .*missing\.json: ENOENT$/],
    ['invalid JSON, with its line and column', (dir: string) => writeJson(dir, 'bad.json', '[\n  { "name": "A" },\n  { "name" "B" }\n]\n'),
      /^pollbridge: .*bad\.json is not valid JSON: line 3, column 12: expected ":" after the property name, found .*$/],
    ['an element that is not an object', (dir: string) => writeJson(dir, 'items.json', [{ name: 'A' }, 42]), /^pollbridge: .*items\.json: \[1\] is not an object$/],
    ['a missing name', (dir: string) => writeJson(dir, 'noname.json', { id: 7, element: { key: 'concur' } }), /^pollbridge: .*noname\.json: the instance has no name$/],
  ])('exits 1 with one line for %s', async (_what, make, message) => {
    const dir = tempDir();
    const r = await runCli(['import', 'amplify', make(dir), '--dir', join(dir, 'out')]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(message);
    expect(existsSync(join(dir, 'out'))).toBe(false);
  });
});
