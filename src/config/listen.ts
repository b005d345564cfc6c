import type { ObjectReader } from './read.js';
import type { HttpConfig } from './types.js';

const HOST_PORT = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/;

/** Addresses that take every interface's connections, so their port is taken on every address. */
const WILDCARD_HOSTS: ReadonlySet<string> = new Set(['0.0.0.0', '::']);

/**
 * A listener's `listen: "HOST:PORT"` (`[v6]:PORT` too; no host means 127.0.0.1), or undefined
 * when it is absent (an issue if `required`) or malformed (an issue).
 */
export function readListen(r: ObjectReader, example: string, opts: { required?: boolean } = {}): HttpConfig | undefined {
  const listen = opts.required ? r.string('listen', { required: true }) : r.string('listen');
  if (!listen) return undefined;
  const m = HOST_PORT.exec(listen);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    r.issues.add(r.at('listen'), `must be HOST:PORT, e.g. "${example}", got "${listen}"`);
    return undefined;
  }
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

/** Two listeners that one of them would fail to bind (port 0 picks a free port each time). */
export function sameListenAddress(a: HttpConfig, b: HttpConfig): boolean {
  return a.port !== 0 && a.port === b.port && (a.host === b.host || WILDCARD_HOSTS.has(a.host) || WILDCARD_HOSTS.has(b.host));
}
