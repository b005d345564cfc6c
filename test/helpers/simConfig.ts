import { demoConfig } from '../../src/cli/demoCommand.js';
import { DEFAULT_SIM_CREDENTIALS } from '../../src/sim/concurSim.js';

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
