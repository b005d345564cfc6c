import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { acquireDaemonLock } from '../src/store/lock.js';
import { tempDir } from './helpers/tmp.js';

const BUILT_LOCK = fileURLToPath(new URL('../dist/store/lock.js', import.meta.url));

/**
 * A process probing the lock as `status` and `replay` do (the built code), as fast as it can,
 * for at most `count` probes or 30 s; it says "ready" after its first probe.
 */
function probeLoop(db: string, count: number) {
  const script = `
    const { isDaemonLockHeld } = await import(${JSON.stringify(BUILT_LOCK)});
    const db = ${JSON.stringify(db)};
    const until = Date.now() + 30000;
    isDaemonLockHeld(db);
    process.stdout.write('ready\\n');
    for (let i = 0; i < ${count} && Date.now() < until; i++) isDaemonLockHeld(db);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`probe exited ${code} before ready`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, ready, exited };
}

describe('the lock probe against a starting daemon', () => {
  it('a status/replay probe running at the same time never makes a daemon start fail as "in use"', async () => {
    const db = join(tempDir(), 'p.db');
    // The lock file exists (a daemon ran here before), so every probe really opens it.
    acquireDaemonLock(db).release();
    const probe = probeLoop(db, 5_000_000);
    try {
      await probe.ready;
      const refused: string[] = [];
      for (let i = 0; i < 300; i++) {
        try {
          acquireDaemonLock(db).release();
        } catch (err) {
          refused.push((err as Error).message);
        }
      }
      expect(refused).toEqual([]);
    } finally {
      probe.child.kill();
      await probe.exited;
    }
  }, 60_000);
});
