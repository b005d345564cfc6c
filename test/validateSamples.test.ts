import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import { tempDir, writeJson } from './helpers/tmp.js';

/** CONTRACT.md's sample config, its one documentation host replaced by a real-looking one. */
function contractSample() {
  return {
    database: './pollbridge.db',
    http: { listen: '127.0.0.1:9464' },
    instances: [{
      name: 'ConcurForDocs',
      element: { key: 'concur' },
      provider: {
        baseUrl: 'https://us.api.concursolutions.com',
        auth: {
          type: 'oauth2_refresh_token',
          tokenUrl: 'https://us.api.concursolutions.com/oauth2/v0/token',
          clientId: '${env:CONCUR_CLIENT_ID}',
          clientSecret: '${env:CONCUR_CLIENT_SECRET}',
          refreshToken: '${credential:concur-refresh-token}',
        },
      },
      configuration: {
        'event.notification.enabled': 'true',
        'event.vendor.type': 'polling',
        'event.notification.callback.url': 'https://hooks.acme.com/concur',
        'event.notification.signature.key': '${env:POLLBRIDGE_SIGNATURE_KEY}',
        'event.poller.refresh_interval': '15',
        'event.poller.configuration': {
          reports: {
            url: "/hubs/expense/reports?where=modifiedDateAfter='${date:yyyy-MM-dd'T'HH:mm:ss.SSS}'",
            idField: 'ID',
            datesConfiguration: {
              updatedDateField: 'LastModifiedDate',
              updatedDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS",
              createdDateField: 'CreateDate',
              createdDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS",
            },
          },
        },
      },
      tags: [],
    }],
  };
}

function env(dir: string) {
  const creds = join(dir, 'creds');
  mkdirSync(creds, { recursive: true });
  writeFileSync(join(creds, 'concur-refresh-token'), 'rt-0123456789\n');
  writeFileSync(join(creds, 'concur-client-secret'), 'cs-0123456789\n');
  writeFileSync(join(creds, 'signature-key'), 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n');
  return { CREDENTIALS_DIRECTORY: creds, CONCUR_CLIENT_ID: 'cid-1', CONCUR_CLIENT_SECRET: 'cs-0123456789', POLLBRIDGE_SIGNATURE_KEY: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' };
}

async function validate(config: unknown) {
  const dir = tempDir();
  const file = writeJson(dir, 'poller.config.json', config);
  return runCli(['validate', '-c', file], env(dir));
}

describe('validate passes the shipped samples and legitimate AMPLIFY exports', () => {
  it('CONTRACT.md\'s sample, its placeholder filled in, is OK without warnings', async () => {
    const r = await validate(contractSample());
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/: OK: 1 instance\(s\)/);
  });

  it('deploy/poller.config.json, its placeholders filled in, is OK', async () => {
    const { readFileSync } = await import('node:fs');
    const text = readFileSync(new URL('../deploy/poller.config.json', import.meta.url), 'utf8')
      .replace('YOUR-CONCUR-CLIENT-ID', 'cid-1').replace('hooks.example.com', 'hooks.acme.com');
    const config = JSON.parse(text) as { database: string };
    const r = await validate({ ...config, database: './pollbridge.db' });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('a single AMPLIFY instance with every documented field, macro and extension, AMPLIFY\'s own configuration keys, and its poller configuration as a JSON string', async () => {
    const inst = contractSample().instances[0]!;
    const poller = {
      reports: {
        url: "/hubs/expense/reports?where=modifiedDateAfter='${gmtDate:yyyy-MM-dd'T'HH:mm:ss}'",
        idField: 'ID', filterByUpdatedDate: true, filterByCurrentDate: false, createdCheckTolerance: 5, pageSize: 50, pollDelay: 30,
        datesConfiguration: {
          updatedDateField: 'LastModifiedDate', updatedDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS", updatedDateTimezone: 'UTC',
          createdDateField: 'CreateDate', createdDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS", createdDateTimezone: 'UTC',
        },
      },
      reports2: { url: "/hubs/expense/reports?where=modifiedDateAfter='${dateTimeZone:PST:yyyy-MM-dd'T'HH:mm:ss}'", idField: 'ID', datesConfiguration: { updatedDateField: 'LastModifiedDate' } },
    };
    const r = await validate({
      ...inst,
      configuration: {
        ...inst.configuration,
        'event.poller.configuration': JSON.stringify(poller),
        // AMPLIFY's own keys, which pollbridge does not read.
        'event.notification.type': 'webhook',
        'event.poller.urls': 'reports',
        'event.notification.instance.finder': 'users.id',
        'event.helper.key': 'concurPolling',
        'event.metadata': { reports: { eventIdPath: 'ID' } },
        'pollbridge.poller.cron': '*/5 * * * *',
        'pollbridge.poller.overlapSeconds': 60,
        'pollbridge.delivery.maxEventsPerNotification': 10,
      },
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('a generic API with epoch macros and its own element key is OK', async () => {
    const inst = contractSample().instances[0]!;
    const r = await validate({
      ...inst,
      element: { key: 'tickets' },
      provider: { baseUrl: 'https://api.tickets.acme.com', auth: { type: 'bearer', token: '${env:CONCUR_CLIENT_SECRET}' } },
      configuration: {
        ...inst.configuration,
        'event.poller.configuration': {
          tickets: { url: '/v2/tickets?since=${epoch:s}&ms=${epoch}&us=${epoch:us}', idField: 'data.id', 'pollbridge.items': 'data', 'pollbridge.nextPage': 'links.next', datesConfiguration: { updatedDateField: 'updated' } },
        },
      },
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});
