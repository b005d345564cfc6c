import { readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { childPath, type IssueList } from './issues.js';

const REFERENCE = /\$\{(env|file|credential):([^}]+)\}/g;

/** Whether a value already holds a `${env:}`, `${file:}` or `${credential:}` reference. */
export function holdsReference(value: unknown): boolean {
  return typeof value === 'string' && new RegExp(REFERENCE.source).test(value);
}

export type SecretContext = {
  env: NodeJS.ProcessEnv;
  /** Relative `${file:}` paths are read from here: the config file's directory. */
  baseDir: string;
  issues: IssueList;
  /** Receives each resolved value, for log redaction. */
  resolved: string[];
};

function readSecret(kind: string, name: string, ctx: SecretContext): { value?: string; problem?: string } {
  if (kind === 'env') {
    const value = ctx.env[name];
    return value === undefined || value === '' ? { problem: `environment variable ${name} is not set` } : { value };
  }
  let path: string;
  if (kind === 'credential') {
    const dir = ctx.env.CREDENTIALS_DIRECTORY;
    if (!dir) return { problem: `\${credential:${name}} needs CREDENTIALS_DIRECTORY (set by systemd's LoadCredential=)` };
    path = join(dir, name);
  } else {
    path = isAbsolute(name) ? name : resolve(ctx.baseDir, name);
  }
  try {
    // Files written by editors and `echo` end in a newline that is never part of the secret.
    return { value: readFileSync(path, 'utf8').replace(/\r?\n$/, '') };
  } catch (err) {
    return { problem: `cannot read ${kind} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
  }
}

/**
 * Replaces `${env:NAME}`, `${file:PATH}` and `${credential:NAME}` in every string of a parsed
 * config. Other `${…}` (URL date macros) are left for the poller. Problems name the reference,
 * never a value.
 */
export function resolveSecrets(value: unknown, path: string, ctx: SecretContext): unknown {
  if (typeof value === 'string') {
    if (!value.includes('${')) return value;
    return value.replace(REFERENCE, (whole, kind: string, name: string) => {
      const { value: secret, problem } = readSecret(kind, name.trim(), ctx);
      if (problem !== undefined || secret === undefined) {
        ctx.issues.add(path, problem ?? `${whole} is empty`);
        // Keep the reference: an empty string would add a second, misleading "is required".
        return whole;
      }
      ctx.resolved.push(secret);
      ctx.issues.secret(secret, whole);
      return secret;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => resolveSecrets(v, childPath(path, i), ctx));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolveSecrets(v, childPath(path, k), ctx)]));
  }
  return value;
}
