import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { ConcurSim } from '../src/sim/concurSim.js';
import { runCli } from './helpers/cli.js';
import { instance } from './helpers/configs.js';
import { SIM_ENV, simConfig } from './helpers/simConfig.js';
import { tempDir, writeJson } from './helpers/tmp.js';

/*
 * Each of these configs printed OK before validate knew better, and then failed or misbehaved
 * in `run`. Each runs the built CLI, as an operator would.
 */

const DEPLOY_SAMPLE = fileURLToPath(new URL('../deploy/poller.config.json', import.meta.url));

async function validate(config: unknown, env: NodeJS.ProcessEnv = {}) {
  const file = writeJson(tempDir(), 'poller.config.json', config);
  return { file, ...(await runCli(['validate', '-c', file], env)) };
}

describe('pollbridge validate: what would fail at run time is an error (exit 1)', () => {
  it('an element key that differs from "concur" in letter case (every poll answered 404)', async () => {
    const r = await validate(instance({}, { element: { key: 'Concur' } }));
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`${r.file}: element.key: "Concur" is not an element pollbridge knows (keys are case-sensitive): did you mean "concur"?`);
    expect(r.stderr).toContain('the hub URLs (/hubs/…) answer 404 on every poll');
  });

  it('another element key with an AMPLIFY hub URL, which only "concur" maps to an API', async () => {
    const r = await validate(instance({}, { element: { key: 'expenses' } }));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${r.file}: element.key: "expenses" takes each resource's url as a path on provider.baseUrl, but "reports" has an AMPLIFY hub URL (/hubs/…)`);
    // The same key with a path of the provider's own is a generic API, and fine.
    const generic = instance({ 'event.poller.configuration': { reports: { url: '/v1/items?since=${epoch}' } } }, { element: { key: 'expenses' } });
    expect((await validate(generic)).code).toBe(0);
  });

  it('the shipped deploy sample, its credentials in place, still holding its placeholders', async () => {
    const credentials = tempDir();
    for (const name of ['concur-client-secret', 'concur-refresh-token', 'signature-key']) writeFileSync(join(credentials, name), `${name}-value\n`);
    const r = await runCli(['validate', '-c', DEPLOY_SAMPLE], { CREDENTIALS_DIRECTORY: credentials });
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')).toEqual([
      `${DEPLOY_SAMPLE}: instances[0].provider.auth.clientId: still holds "YOUR-CONCUR-CLIENT-ID", a placeholder of the example config: put your own value here`,
      `${DEPLOY_SAMPLE}: instances[0].configuration["event.notification.callback.url"]: still holds "hooks.example.com", a placeholder of the example config: put your own value here`,
      `2 problem(s) in ${DEPLOY_SAMPLE}`,
    ]);
    // Filled in, it is accepted.
    const filled = readFileSync(DEPLOY_SAMPLE, 'utf8').replace('YOUR-CONCUR-CLIENT-ID', 'a1b2c3').replace('hooks.example.com', 'hooks.acme.internal');
    const dir = tempDir();
    writeFileSync(join(dir, 'poller.config.json'), filled.replace('/var/lib/pollbridge/pollbridge.db', './pollbridge.db'));
    expect((await runCli(['validate', '-c', join(dir, 'poller.config.json')], { CREDENTIALS_DIRECTORY: credentials })).code).toBe(0);
  });

  it('a top-level "databse", which left the database in ./pollbridge.db', async () => {
    const r = await validate({ databse: '/var/lib/pollbridge/p.db', instances: [instance()] });
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')).toEqual([`${r.file}: databse: unknown key, ignored as it is: did you mean "database"?`, `1 problem(s) in ${r.file}`]);
  });

  it('unknown keys at every level outside AMPLIFY\'s configuration, and "database" beside a single instance', async () => {
    const r = await validate({
      ...instance({}, { provider: { baseURL: 'http://127.0.0.1:1', auth: { type: 'bearer', token: 't0ken', refreshToken: 'x' } }, element: { key: 'concur', name: 'Concur' } }),
      database: './p.db',
      tag: [],
    });
    expect(r.code).toBe(1);
    const lines = r.stderr.split('\n');
    expect(lines).toContain(`${r.file}: database: is read only at the top level, beside "instances" ({ "database": …, "instances": [ … ] }): here it would be ignored`);
    expect(lines).toContain(`${r.file}: tag: unknown key, ignored as it is: did you mean "tags"?`);
    // AMPLIFY's export describes the whole element there: only its key is read, the rest ignored.
    expect(lines.filter((l) => l.includes('element.'))).toEqual([]);
    expect(lines).toContain(`${r.file}: provider.baseURL: unknown key, ignored as it is: did you mean "baseUrl"?`);
    expect(lines).toContain(`${r.file}: provider.auth.refreshToken: is a setting of auth type "oauth2_refresh_token", not of "bearer": it would be ignored`);
    const multi = await validate({ instances: [instance()], http: { listen: '127.0.0.1:9464', host: 'x' } });
    expect(multi.stderr).toContain(`${multi.file}: http.host: unknown key (known here: listen, metricsPerInstance)`);
  });

  it('keys of AMPLIFY\'s own configuration are tolerated; a near miss of one pollbridge reads is a warning', async () => {
    const r = await validate(instance({ 'event.notification.callback.ur': 'x', 'event.element.owner': 'someone' }));
    expect(r.code).toBe(0);
    expect(r.stderr.split('\n')).toEqual([
      `warning: ${r.file}: configuration["event.notification.callback.ur"]: is not read by pollbridge: did you mean "event.notification.callback.url"?`,
    ]);
    expect(r.stdout).toContain('OK (1 warning(s))');
  });

  it('a wrongly cased ${ENV:X}, which was taken as the literal secret', async () => {
    const r = await validate(instance({ 'event.notification.signature.key': '${ENV:SIGNING_KEY}' }), { SIGNING_KEY: 'k-e-y-value' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${r.file}: configuration["event.notification.signature.key"]: unknown reference "\${ENV:…}" (known here: env, file, credential): did you mean "\${env:…}"?`);
    const unknown = await validate(instance({}, { provider: { baseUrl: 'http://127.0.0.1:1', auth: { type: 'bearer', token: '${vault:concur}' } } }));
    expect(unknown.stderr).toContain(`${unknown.file}: provider.auth.token: unknown reference "\${vault:…}" (known here: env, file, credential)`);
  });

  it('an unclosed ${date: in a resource URL, which was sent as it is', async () => {
    const url = "/hubs/expense/reports?where=modifiedDateAfter='${date:yyyy-MM-dd'T'HH:mm:ss'";
    const r = await validate(instance({ 'event.poller.configuration': { reports: { url } } }));
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')).toEqual([
      `${r.file}: configuration["event.poller.configuration"].reports.url: has a "\${" (character 48) that no "}" closes`,
      `1 problem(s) in ${r.file}`,
    ]);
  });

  it('invalid JSON, with its line and column', async () => {
    const r = await validate('{\n  "name": "Docs",\n  "element": { "key": "concur" }\n  "provider": {}\n}');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${r.file}: is not valid JSON: line 4, column 3: expected "," or "}" after a property value, found """`);
  });
});

describe('pollbridge validate: a plain-http callback off this machine is a warning (exit 0)', () => {
  it('warns for another host, not for loopback', async () => {
    const r = await validate(instance({ 'event.notification.callback.url': 'http://hooks.acme.internal/concur' }));
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(`warning: ${r.file}: configuration["event.notification.callback.url"]: is plain http to a host other than this machine: `
      + 'notifications, records and signatures cross the network readable by anyone on the way; use https');
    for (const url of ['http://127.0.0.1:8080/hook', 'http://localhost/hook', 'http://[::1]:9/hook', 'https://hooks.acme.internal/concur']) {
      const quiet = await validate(instance({ 'event.notification.callback.url': url }));
      expect([quiet.code, quiet.stderr]).toEqual([0, '']);
    }
  });

  describe('run', () => {
    let sim: ConcurSim | undefined;
    afterEach(async () => {
      await sim?.stop();
    });

    it('logs the warning at warn when it starts', async () => {
      sim = new ConcurSim();
      const simUrl = await sim.start();
      // No record changes, so nothing is ever sent to the callback (TEST-NET-1, never contacted).
      const dir = tempDir();
      mkdirSync(join(dir, 'state'));
      const file = writeJson(dir, 'poller.config.json', simConfig(simUrl, 'http://192.0.2.1/hook', 'signing-key-1'));
      const r = await runCli(['run', '--once', '-c', file], SIM_ENV);
      expect(r.code).toBe(0);
      expect(r.logs.find((l) => l.message === 'config warning')).toMatchObject({
        level: 'warn',
        problem: expect.stringContaining('instances[0].configuration["event.notification.callback.url"]: is plain http to a host other than this machine'),
      });
    });
  });
});
