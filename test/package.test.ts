import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from './helpers/tmp.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** Packs a copy of this checkout as `npm pack` would for a release: prepack builds dist/ from scratch. */
/** The migrations of one store, as the package must list them. */
const sqlFiles = (dir: string): string[] => readdirSync(join(ROOT, dir)).filter((f) => f.endsWith('.sql')).map((f) => `${dir}/${f}`);

function packCopy(work: string): { tarball: string; files: string[] } {
  // A copy of the sources, so that prepack's clean build does not touch the dist/ other tests run.
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
  return { tarball: join(work, packed[0]!.filename), files: packed[0]!.files.map((f) => f.path) };
}

const VERIFIED = /^verified {2}(polled|pushed) {2}(CREATED|UPDATED) {2}reports /m;

describe('the npm package', () => {
  it('npm pack builds dist from scratch (prepack), and the unpacked package runs the demo end to end', { timeout: 180_000 }, () => {
    const work = tempDir();
    const { tarball, files } = packCopy(work);
    for (const needed of ['dist/cli.js', 'dist/store/storeThread.js', 'deploy/pollbridge.service', 'deploy/replica.conf', 'docs/performance.md', 'poller.config.json', ...sqlFiles('migrations'), ...sqlFiles('migrations/postgres')]) {
      expect(files).toContain(needed);
    }
    expect(files.filter((f) => f.startsWith('test/') || f.startsWith('src/') || f === 'dist/stale.js')).toEqual([]);

    // Its dependencies as an install would place them; the package itself exactly as packed.
    execFileSync('tar', ['xzf', tarball, '-C', work]);
    const pkg = join(work, 'package');
    symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
    expect(existsSync(join(pkg, 'dist', 'cli.js'))).toBe(true);
    const demo = spawnSync(process.execPath, [join(pkg, 'dist', 'cli.js'), 'demo', '--events', '1', '--seconds', '60'], { cwd: work, encoding: 'utf8', timeout: 90_000 });
    expect(demo.status, demo.stderr).toBe(0);
    // The first change the demo makes may be read already updated: either type counts.
    expect(demo.stdout, `${demo.stdout}\n${demo.stderr.slice(-2000)}`).toMatch(VERIFIED);
  });

  it('npm install -g of the packed tarball gives a working pollbridge command: --version, then the demo', { timeout: 600_000 }, (ctx) => {
    const work = tempDir();
    const { tarball } = packCopy(work);
    const prefix = join(work, 'prefix');
    // Offline: .ci/warm-npm-cache put the registry's answers in npm's cache. better-sqlite3 compiles
    // from source, as on a machine where no prebuilt binary is fetched.
    const install = spawnSync(NPM, ['install', '-g', '--offline', '--no-audit', '--no-fund', '--prefix', prefix, tarball], {
      encoding: 'utf8', env: { ...process.env, npm_config_build_from_source: 'true' }, timeout: 540_000,
    });
    if (install.status !== 0 && /ENOTCACHED/.test(install.stderr)) {
      if (process.env.CI) throw new Error(`npm's cache lacks pollbridge's dependencies: run .ci/warm-npm-cache first\n${install.stderr.slice(-1000)}`);
      ctx.skip('npm\'s cache lacks pollbridge\'s dependencies; .ci/warm-npm-cache puts them there');
      return;
    }
    expect(install.status, install.stderr.slice(-2000)).toBe(0);
    const bin = join(prefix, 'bin', 'pollbridge');
    const version = spawnSync(bin, ['--version'], { encoding: 'utf8' });
    expect(version.stdout.trim()).toBe((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
    const demo = spawnSync(bin, ['demo', '--events', '1', '--seconds', '60'], { cwd: work, encoding: 'utf8', timeout: 90_000 });
    expect(demo.status, demo.stderr.slice(-2000)).toBe(0);
    expect(demo.stdout).toMatch(VERIFIED);
  });
});
