import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { acquireDaemonLock } from '../src/store/lock.js';
import { SqliteStore } from '../src/store/sqliteStore.js';
import { CLI, startCli } from './helpers/cli.js';
import { harness } from './helpers/harness.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { tempDir, waitFor } from './helpers/tmp.js';

const modeOf = (path: string): string => (statSync(path).mode & 0o777).toString(8).padStart(4, '0');

describe('the database and its companions are private to their owner', () => {
  it('a daemon started under umask 022 creates the database, its WAL and SHM, and its lock 0600', async () => {
    const h = await harness();
    const db = join(tempDir(), 'state', 'p.db');
    // The umask is set in the child's own shell: the test process keeps its own.
    const child = spawn('/bin/sh', ['-c', 'umask 022 && exec "$@"', 'sh', process.execPath, CLI, 'run', '-c', h.configFile, '--db', db], {
      env: { PATH: process.env.PATH, ...SIM_ENV },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    try {
      await waitFor(`the daemon to start (stderr: ${err})`, () => out.includes('"pollbridge started"'));
      await waitFor('the WAL and its index', () => existsSync(`${db}-wal`) && existsSync(`${db}-shm`));
      expect(Object.fromEntries(['', '-wal', '-shm', '.lock'].map((s) => [`p.db${s}`, modeOf(db + s)]))).toEqual({
        'p.db': '0600', 'p.db-wal': '0600', 'p.db-shm': '0600', 'p.db.lock': '0600',
      });
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });

  it('tightens a database, WAL, SHM and lock left open to others (by an earlier version) when it opens them for writing', async () => {
    const db = join(tempDir(), 'p.db');
    const earlier = new SqliteStore(db);
    await earlier.openStream('Docs', 'reports', 0);
    acquireDaemonLock(db).release();
    const files = ['', '-wal', '-shm', '.lock'].map((s) => db + s);
    for (const f of files) chmodSync(f, 0o644);

    const store = new SqliteStore(db);
    const lock = acquireDaemonLock(db);
    try {
      expect(files.map(modeOf)).toEqual(['0600', '0600', '0600', '0600']);
    } finally {
      lock.release();
      await store.close();
      await earlier.close();
    }
  });

  it('leaves the modes alone when it only reads (status, events may run as another user)', async () => {
    const db = join(tempDir(), 'p.db');
    await new SqliteStore(db).close();
    chmodSync(db, 0o640);
    await new SqliteStore(db, { readonly: true }).close();
    expect(modeOf(db)).toBe('0640');
  });
});

describe('daemon lock through symbolic links', () => {
  it('refuses a second daemon that reaches the same database through a linked file or a linked directory', async () => {
    const h = await harness();
    const dir = tempDir();
    mkdirSync(join(dir, 'real'));
    const real = join(dir, 'real', 'p.db');
    // Dangling until the first daemon creates the database through it.
    symlinkSync(real, join(dir, 'alias.db'));
    symlinkSync(join(dir, 'real'), join(dir, 'linked'));

    const first = startCli(['run', '-c', h.configFile, '--db', join(dir, 'alias.db')], SIM_ENV);
    try {
      await first.waitForLog('pollbridge started');
      for (const path of [real, join(dir, 'linked', 'p.db')]) {
        const second = startCli(['run', '-c', h.configFile, '--db', path], SIM_ENV);
        // Whichever comes first: refused (it exits) or a second daemon on the database (it starts).
        const outcome = await Promise.race([
          second.exited.then(() => 'exited'),
          second.waitForLog('pollbridge started').then(() => 'started', () => 'neither'),
        ]);
        if (outcome === 'started') second.child.kill('SIGTERM');
        const { code } = await second.exited;
        expect(outcome, path).toBe('exited');
        expect(code).toBe(1);
        expect(second.stderr.join('\n')).toBe(`pollbridge: database ${path} is in use by another pollbridge daemon (lock ${real}.lock is held)`);
      }
    } finally {
      first.child.kill('SIGTERM');
      await first.exited;
    }
    expect(await first.exited).toEqual({ code: 0, signal: null });
  });
});
