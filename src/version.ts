import { readFileSync } from 'node:fs';

let version: string | undefined;

/**
 * This package's version, from its own package.json: one folder above this module, both in src/
 * and in dist/, so an installed package reports what was installed, not what was built.
 * Read on first use, not at import.
 */
export function pollbridgeVersion(): string {
  version ??= (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return version;
}

/** Who is asking, in every request: providers and receivers can tell versions apart in their logs. */
export function userAgent(): string {
  return `pollbridge/${pollbridgeVersion()} (+node ${process.versions.node})`;
}
