import { describe, expect, it } from 'vitest';
import { formatIssue } from '../src/config/issues.js';
import { readConfig } from '../src/config/load.js';
import { runCli } from './helpers/cli.js';
import { instance } from './helpers/configs.js';
import { tempDir, writeJson } from './helpers/tmp.js';

const PASSWORD = 'pg-pass-w0rd-secret';

function load(root: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) {
  const file = writeJson(tempDir(), 'c.json', { ...root, instances: [instance()] });
  return { file, result: readConfig(file, { env }) };
}

describe('config: the database is a SQLite path or a PostgreSQL URL', () => {
  it('a postgres:// URL selects PostgreSQL; `database` names it without password or query, and both are secrets', () => {
    const url = `postgres://pollbridge:${PASSWORD}@db.internal:5432/pollbridge?sslmode=require&sslpassword=key-pass-secret`;
    const { config } = load({ database: url }).result;
    expect(config!.databaseUrl).toBe(url);
    expect(config!.database).toBe('postgres://pollbridge@db.internal:5432/pollbridge');
    expect(config!.secrets).toEqual(expect.arrayContaining([PASSWORD, 'key-pass-secret']));
    // The server's name is not a secret: messages may say which database.
    expect(config!.secrets.some((s) => 'postgres://pollbridge@db.internal:5432/pollbridge'.includes(s))).toBe(false);
  });

  it('takes the URL from ${env:} or ${credential:}, postgresql:// too', () => {
    const url = `postgresql://u:${PASSWORD}@127.0.0.1:5999/p`;
    const { config } = load({ database: '${env:DATABASE_URL}' }, { DATABASE_URL: url }).result;
    expect(config!.databaseUrl).toBe(url);
    expect(config!.database).toBe('postgres://u@127.0.0.1:5999/p');
  });

  it('a path stays SQLite: no URL', () => {
    const { file, result } = load({ database: 'state/p.db' });
    expect(result.config!.databaseUrl).toBeUndefined();
    expect(result.config!.database).toBe(file.replace(/c\.json$/, 'state/p.db'));
  });

  it('pollbridge.cluster.leaseSeconds: 15 s by default, as set, and refused out of range by name', () => {
    expect(load({}).result.config!.cluster).toEqual({ leaseMs: 15_000 });
    expect(load({ 'pollbridge.cluster.leaseSeconds': 2.5 }).result.config!.cluster).toEqual({ leaseMs: 2500 });
    const bad = load({ 'pollbridge.cluster.leaseSeconds': 0 }).result;
    expect(bad.config).toBeUndefined();
    expect(bad.issues.map(formatIssue)).toEqual([expect.stringMatching(/c\.json: \["pollbridge\.cluster\.leaseSeconds"\]: must be between 1 and 600, got 0$/)]);
  });

  it('`validate` names the PostgreSQL database without its password', async () => {
    const url = `postgres://pollbridge:${PASSWORD}@127.0.0.1:5999/pollbridge`;
    const { file } = load({ database: url });
    const result = await runCli(['validate', '-c', file]);
    expect(result.stdout).toContain('database postgres://pollbridge@127.0.0.1:5999/pollbridge');
    expect(result.stdout + result.stderr).not.toContain(PASSWORD);
  });
});
