import http from 'node:http';
import https from 'node:https';
import { withCallout as withConnector } from '../../src/cli/demoCommand.js';

export const CONNECTOR = { username: 'concur-connector', password: 'a-long-connector-password' };
export const NOTIFY_PATH = '/concur/v1.0/notify';

/** A config (one from simConfig) that also answers Concur's callout for its instance, with CONNECTOR's credentials. */
export function withCallout<T extends { instances: { configuration: Record<string, unknown> }[] }>(
  base: T, listen = '127.0.0.1:0', configuration: Record<string, unknown> = {}, tls?: { cert: string; key: string },
) {
  return withConnector(base, { listen, ...CONNECTOR, configuration, ...(tls ? { tls } : {}) });
}

export const NOTIFICATION_XML = (objectUri: string, eventDate = '2026-11-26') =>
  `<Notification><EventType>Report Entered Expense Report Workflow Step - SUBMIT</EventType><ObjectType>EXPRPT</ObjectType><ObjectURI>${objectUri}</ObjectURI><EventDateTime>${eventDate}</EventDateTime><Context/></Notification>`;

export const basicAuth = (username: string, password: string) => `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;

/** One request to the connector, as Concur (or an attacker) would make it; never throws on status. */
export function post(url: string, body: string | Buffer, headers: Record<string, string> = {}, method = 'POST', ca?: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  const target = new URL(url);
  const client = target.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(target, { method, headers: { 'content-type': 'application/xml', ...headers }, ...(ca ? { ca } : {}), agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
