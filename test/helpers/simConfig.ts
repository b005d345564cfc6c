import { DEFAULT_SIM_CREDENTIALS } from '../../src/sim/concurSim.js';

/** A config pointing one Concur instance at the simulator, polled every second. */
export function simConfig(simUrl: string, callbackUrl: string, key: string, configuration: Record<string, unknown> = {}) {
  const c = DEFAULT_SIM_CREDENTIALS;
  return {
    database: './state/pollbridge.db',
    instances: [{
      name: 'ConcurTest',
      element: { key: 'concur' },
      provider: {
        baseUrl: simUrl,
        auth: { type: 'oauth2_refresh_token', tokenUrl: `${simUrl}/oauth2/v0/token`, clientId: c.clientId, clientSecret: '${env:SIM_CLIENT_SECRET}', refreshToken: c.refreshToken },
      },
      configuration: {
        'event.notification.enabled': 'true',
        'event.vendor.type': 'polling',
        'event.notification.callback.url': callbackUrl,
        'event.notification.signature.key': key,
        'pollbridge.poller.cron': '* * * * * *',
        'pollbridge.delivery.retrySchedule': [1, 1, 1],
        'event.poller.configuration': {
          reports: {
            url: "/hubs/expense/reports?where=modifiedDateAfter='${date:yyyy-MM-dd'T'HH:mm:ss.SSS}'",
            idField: 'ID',
            pageSize: 3,
            datesConfiguration: {
              updatedDateField: 'LastModifiedDate', updatedDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS",
              createdDateField: 'CreateDate', createdDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS",
            },
          },
        },
        ...configuration,
      },
    }],
  };
}

export const SIM_ENV = { SIM_CLIENT_SECRET: DEFAULT_SIM_CREDENTIALS.clientSecret };
