import { asGenericApi, simConfig } from './simConfig.js';

/**
 * One instance of a fleet on the simulator's generic route (a static bearer token: many instances
 * on one simulator never fight over its one rotating refresh token). Its requests carry
 * `tenant=<name>` and `extraQuery`, which the simulator ignores and a recording proxy reads to
 * tell the instances apart. The schedule is the caller's: the demo's every-second cron is left out.
 */
export function tenantInstance(name: string, apiUrl: string, callbackUrl: string, key: string, configuration: Record<string, unknown> = {}, extraQuery = '') {
  const url = `/generic/v1/reports?updated_since=\${date:yyyy-MM-dd'T'HH:mm:ss.SSSXXX}&per_page=50&tenant=${encodeURIComponent(name)}${extraQuery}`;
  const generic = asGenericApi(simConfig(apiUrl, callbackUrl, key), url, { 'pollbridge.poller.cron': undefined, ...configuration });
  return { ...generic.instances[0]!, name };
}

/** The JSON log lines of `message` for one instance. */
export function linesOf(logs: Record<string, unknown>[], message: string, instance: string): Record<string, unknown>[] {
  return logs.filter((l) => l.message === message && l.instance === instance);
}
