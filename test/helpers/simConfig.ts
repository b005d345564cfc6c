import { demoConfig } from '../../src/cli/demoCommand.js';
import { DEFAULT_SIM_CREDENTIALS, STATIC_TOKEN } from '../../src/sim/concurSim.js';

/**
 * The demo's config, made a little harsher for tests: the client secret through the environment,
 * 3 records a page (so a handful of reports already spans pages), 3 quick retries.
 */
export function simConfig(simUrl: string, callbackUrl: string, key: string, configuration: Record<string, unknown> = {}) {
  const base = demoConfig(simUrl, callbackUrl, key);
  const instance = base.instances[0]!;
  const reports = instance.configuration['event.poller.configuration'].reports;
  return {
    ...base,
    database: './state/pollbridge.db',
    instances: [{
      ...instance,
      name: 'ConcurTest',
      provider: { ...instance.provider, auth: { ...instance.provider.auth, clientSecret: '${env:SIM_CLIENT_SECRET}' } },
      configuration: {
        ...instance.configuration,
        'pollbridge.delivery.retrySchedule': [1, 1, 1],
        'event.poller.configuration': { reports: { ...reports, pageSize: 3 } },
        ...configuration,
      },
    }],
  };
}

export const SIM_ENV = { SIM_CLIENT_SECRET: DEFAULT_SIM_CREDENTIALS.clientSecret };

type SimConfig = ReturnType<typeof simConfig>;

/** The sim config with fields of its one resource replaced. */
export function withResource(base: SimConfig, fields: Record<string, unknown>) {
  const instance = base.instances[0]!;
  const poller = instance.configuration['event.poller.configuration'];
  return { ...base, instances: [{ ...instance, configuration: { ...instance.configuration, 'event.poller.configuration': { reports: { ...poller.reports, ...fields } } } }] };
}

/**
 * The sim config pointed at the simulator's generic route (bearer token, records under
 * `data.items`, a relative `links.next`), with `url`, and any `configuration` keys and resource
 * fields given.
 */
export function asGenericApi(base: SimConfig, url: string, configuration: Record<string, unknown> = {}, resourceFields: Record<string, unknown> = {}) {
  const concur = base.instances[0]!;
  return {
    ...base,
    instances: [{
      ...concur,
      element: { key: 'tickets-api' },
      provider: { baseUrl: concur.provider.baseUrl, auth: { type: 'bearer', token: STATIC_TOKEN } },
      configuration: {
        ...concur.configuration,
        ...configuration,
        'event.poller.configuration': {
          reports: { url, idField: 'id', 'pollbridge.items': 'data.items', 'pollbridge.nextPage': 'links.next', datesConfiguration: { updatedDateField: 'updated_at' }, ...resourceFields },
        },
      },
    }],
  };
}
