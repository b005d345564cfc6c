import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';

const dirs: string[] = [];

/** A fresh directory per test, removed afterwards unless the test failed (kept to inspect). */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pollbridge-test-'));
  dirs.push(dir);
  return dir;
}

afterEach((ctx) => {
  const failed = ctx.task.result?.state === 'fail';
  for (const dir of dirs.splice(0)) {
    if (failed) console.error(`kept ${dir} for inspection`);
    else rmSync(dir, { recursive: true, force: true });
  }
});

export function writeJson(dir: string, name: string, value: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
  return path;
}

/** Polls `check` every 25 ms until it returns a value, for at most `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
