import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { AmplifyImportError, type ImportedCredential, type ImportedInstance, importAmplifyExport } from '../config/amplifyImport.js';
import { findJsonSyntaxError } from '../config/jsonSyntax.js';
import { isObject } from '../config/read.js';
import { configPath } from './options.js';
import { UserError } from './userError.js';

export type ImportAmplifyOptions = { config?: string; dir?: string; force?: boolean; credentialsDir?: string; baseUrl?: string };

/** Where the credential files go when the operator has not said: the path the service unit reads. */
const SUGGESTED_CREDENTIALS_DIR = '/etc/pollbridge/credentials';

/**
 * `pollbridge import amplify FILE`: one instance file per AMPLIFY instance, and the secrets in
 * credential files (with `--credentials-dir`) or listed for the operator to create. Nothing is
 * written when any file it would write exists, unless `--force`.
 */
export async function importAmplifyCommand(file: string, opts: ImportAmplifyOptions): Promise<void> {
  if (opts.baseUrl !== undefined && !/^https?:\/\/[^/]/.test(opts.baseUrl)) {
    throw new UserError(`--base-url must be an absolute http(s) URL, got "${opts.baseUrl}"`);
  }
  const imported = readExport(file, opts.baseUrl);
  const { dir, why, warning } = targetDir(opts);
  const credentialsDir = opts.credentialsDir === undefined ? undefined : resolve(opts.credentialsDir);
  const configFiles = imported.map((i) => ({ path: join(dir, i.fileName), imported: i }));
  const credentials = imported.flatMap((i) => i.credentials);
  const secretFiles = credentialsDir === undefined ? []
    : credentials.flatMap((c) => (c.value ? [{ path: join(credentialsDir, c.name), value: c.value.reveal() }] : []));

  if (!opts.force) {
    const existing = [...configFiles, ...secretFiles].map((f) => f.path).filter((p) => existsSync(p));
    if (existing.length > 0) {
      throw new UserError(`nothing written: ${existing.length} file(s) exist, use --force to overwrite them: ${existing.join(', ')}`);
    }
  }

  const say = (line: string): boolean => process.stdout.write(line + '\n');
  say(`instance files in ${dir} (${why})`);
  if (credentialsDir !== undefined && secretFiles.length > 0) {
    ensureDir(credentialsDir, 0o700);
    // Credentials first: a daemon that reloads meanwhile must not find an instance without its secrets.
    for (const f of secretFiles) writeAtomically(f.path, f.value, 0o600);
  }
  ensureDir(dir, 0o755);
  for (const { path, imported: i } of configFiles) {
    writeAtomically(path, JSON.stringify(i.instance, null, 2) + '\n', 0o644);
    say(`wrote ${path} ("${i.name}")${describeChanges(i)}`);
  }
  for (const line of credentialReport(credentials, credentialsDir)) say(line);
  if (warning !== undefined) process.stderr.write(warning + '\n');
  const dirMode = credentialsDir !== undefined && secretFiles.length > 0 ? statSync(credentialsDir).mode & 0o077 : 0;
  if (dirMode !== 0) process.stderr.write(`warning: ${credentialsDir} can be read by other users: chmod 0700 it\n`);
}

function readExport(file: string, baseUrl: string | undefined): ImportedInstance[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UserError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    const at = findJsonSyntaxError(text);
    throw new UserError(`${file} is not valid JSON: ${at ? `line ${at.line}, column ${at.column}: ${at.message}` : (err as Error).message}`);
  }
  try {
    return importAmplifyExport(parsed, { baseUrl });
  } catch (err) {
    if (err instanceof AmplifyImportError) throw new UserError(`${file}: ${err.message}`);
    throw err;
  }
}

/**
 * `--dir`, else the `instancesDir` of the config, else `instances.d` beside it. The config is
 * read as raw JSON: it may not validate yet, precisely because its instances are still to come.
 * A `--dir` other than the config's `instancesDir` is allowed (files to review first), with a
 * warning: the daemon would not read them there.
 */
function targetDir(opts: ImportAmplifyOptions): { dir: string; why: string; warning?: string } {
  const config = resolve(configPath(opts.config));
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(config, 'utf8'));
  } catch {
    raw = undefined;
  }
  const configured = isObject(raw) && typeof raw.instancesDir === 'string' && raw.instancesDir !== ''
    ? resolve(dirname(config), raw.instancesDir) : undefined;
  if (opts.dir !== undefined) {
    const dir = resolve(opts.dir);
    const warning = configured !== undefined && configured !== dir
      ? `warning: ${dir} is not the instancesDir of ${config} (${configured}): the daemon does not read these files until they are moved there`
      : undefined;
    return { dir, why: '--dir', ...(warning ? { warning } : {}) };
  }
  if (configured !== undefined) return { dir: configured, why: `the instancesDir of ${config}` };
  const state = raw === undefined ? (existsSync(config) ? 'cannot be read as JSON' : 'does not exist') : 'names no instancesDir';
  return { dir: resolve(dirname(config), 'instances.d'), why: `beside ${config}, which ${state}: it needs "instancesDir": "instances.d"` };
}

/** One line per instance, however many fields AMPLIFY gave it: the first few are named, the rest counted. */
function describeChanges(i: ImportedInstance): string {
  const top = i.dropped.filter((d) => !d.includes('.') && !d.includes('['));
  const element = i.dropped.filter((d) => d.startsWith('element.')).length;
  const parts = [
    ...(top.length > 0 ? [`left out ${top.length} AMPLIFY field(s) pollbridge does not read (${top.slice(0, 4).join(', ')}${top.length > 4 ? ', …' : ''})`
      + `${element > 0 ? ` and element's ${element} other than key` : ''}`] : []),
    ...i.notes,
  ];
  return parts.length > 0 ? `: ${parts.join('; ')}` : '';
}

function credentialReport(credentials: ImportedCredential[], credentialsDir: string | undefined): string[] {
  if (credentials.length === 0) return ['no secret to move: the files reference no credential'];
  const width = Math.max(...credentials.map((c) => c.name.length));
  const line = (c: ImportedCredential): string => `  ${c.name.padEnd(width)}  "${c.instance}": ${c.what}`;
  const written = credentialsDir === undefined ? [] : credentials.filter((c) => c.value);
  const missing = credentials.filter((c) => !written.includes(c));
  const dir = credentialsDir ?? SUGGESTED_CREDENTIALS_DIR;
  const out: string[] = [];
  if (written.length > 0) out.push(`wrote ${written.length} credential file(s) in ${dir} (mode 0600):`, ...written.map(line));
  if (missing.length > 0) {
    const absent = missing.filter((c) => !c.value).length;
    const found = missing.length - absent;
    out.push(`create ${missing.length} credential file(s) in ${dir} (mode 0600, the value alone${absent > 0 ? `; ${absent} not in the export, marked *` : ''}):`,
      ...missing.map((c) => `${line(c)}${c.value ? '' : ' *'}`));
    if (found > 0) out.push(`  (to write the ${found} found in the export: the same import with --credentials-dir ${dir} --force)`);
  }
  out.push('systemd: hand them to the service in a drop-in (systemctl edit pollbridge), one line each:',
    ...credentials.map((c) => `  LoadCredential=${c.name}:${join(dir, c.name)}`));
  return out;
}

function ensureDir(dir: string, mode: number): void {
  if (existsSync(dir)) return;
  try {
    mkdirSync(dir, { recursive: true, mode });
    chmodSync(dir, mode);
  } catch (err) {
    throw new UserError(`cannot create ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/**
 * Temp file in the same directory, then rename: a reader (a daemon reloading) sees the old file
 * or the new one, never half of one. The mode is set when the file is created, so a secret is
 * never readable by others even for a moment. The temp name does not end in .json, so a loader
 * of `*.json` never picks it up.
 */
function writeAtomically(path: string, content: string, mode: number): void {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    rmSync(temp, { force: true });
    const fd = openSync(temp, 'wx', mode);
    try {
      writeSync(fd, content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(temp, mode);
    renameSync(temp, path);
  } catch (err) {
    rmSync(temp, { force: true });
    throw new UserError(`cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}
