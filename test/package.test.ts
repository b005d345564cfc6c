import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from './helpers/tmp.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

describe('the npm package', () => {
  it('npm pack builds dist from scratch (prepack), and the unpacked package runs the demo end to end', { timeout: 180_000 }, () => {
    // A copy of the sources, so that prepack's clean build does not touch the dist/ other tests run.
    const work = tempDir();
    const copy = join(work, 'src-copy');
    mkdirSync(copy);
    for (const entry of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src', 'migrations', 'deploy', 'docs', 'poller.config.json', 'README.md']) {
      cpSync(join(ROOT, entry), join(copy, entry), { recursive: true });
    }
    // A leftover of an old build must not ship.
    mkdirSync(join(copy, 'dist'));
    cpSync(join(ROOT, 'package.json'), join(copy, 'dist', 'stale.js'));
    symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
    const packed = JSON.parse(execFileSync(NPM, ['pack', '--json', '--pack-destination', work], { cwd: copy, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as { filename: string; files: { path: string }[] }[];
    const files = packed[0]!.files.map((f) => f.path);
    for (const needed of ['dist/cli.js', 'dist/store/storeThread.js', 'deploy/pollbridge.service', 'docs/performance.md', 'poller.config.json', ...readdirSync(join(ROOT, 'migrations')).map((m) => `migrations/${m}`)]) {
      expect(files).toContain(needed);
    }
    expect(files.filter((f) => f.startsWith('test/') || f.startsWith('src/') || f === 'dist/stale.js')).toEqual([]);

    // Its dependencies as an install would place them; the package itself exactly as packed.
    execFileSync('tar', ['xzf', join(work, packed[0]!.filename), '-C', work]);
    const pkg = join(work, 'package');
    symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
    expect(existsSync(join(pkg, 'dist', 'cli.js'))).toBe(true);
    const demo = spawnSync(process.execPath, [join(pkg, 'dist', 'cli.js'), 'demo', '--events', '1', '--seconds', '60'], { cwd: work, encoding: 'utf8', timeout: 90_000 });
    expect(demo.status, demo.stderr).toBe(0);
    // The first change the demo makes may be read already updated: either type counts.
    expect(demo.stdout, `${demo.stdout}\n${demo.stderr.slice(-2000)}`).toMatch(/^verified {2}(CREATED|UPDATED) {2}reports /m);
  });
});
