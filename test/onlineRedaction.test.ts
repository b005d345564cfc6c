import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import { harness } from './helpers/harness.js';
import { asGenericApi, SIM_ENV } from './helpers/simConfig.js';

const servers: http.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

/** An HTTP server on 127.0.0.1 answering every request with `answer(url)`. */
async function echoServer(answer: (url: string) => { status: number; body: string }): Promise<string> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const { status, body } = answer(req.url ?? '');
      res.writeHead(status, { 'content-type': 'text/plain' }).end(body);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Every run of 8 characters of `secret`: a secret cut anywhere still shows one of these. */
const pieces = (secret: string): string[] => Array.from({ length: secret.length - 7 }, (_, i) => secret.slice(i, i + 8));

describe('validate --online never shows a secret, even a cut one', () => {
  it('a receiver that answers 403 echoing the callback URL\'s token past the 120th character shows no piece of it', async () => {
    const hookToken = 'hooktok-0123456789abcdefghijklmnopqrstuv';
    // 101 characters before the token: the line's 120-character excerpt would end inside it.
    const answer = 'a'.repeat(94) + ' token=' + hookToken + ' was refused';
    const h = await harness({}, {}, (base) => {
      const inst = base.instances[0]!;
      const url = `${inst.configuration['event.notification.callback.url']}?token=\${env:HOOK_TOKEN}`;
      return { ...base, instances: [{ ...inst, configuration: { ...inst.configuration, 'event.notification.callback.url': url } }] };
    }, () => ({ status: 403, body: answer }));
    const r = await runCli(['validate', '--online', '-c', h.configFile], { ...SIM_ENV, HOOK_TOKEN: hookToken });
    expect(r.code).toBe(1);
    const callback = r.stdout.split('\n').find((l) => l.startsWith('ConcurTest callback: FAILED'));
    expect(callback).toContain('aaaa');
    for (const piece of pieces(hookToken)) expect(r.stdout + r.stderr).not.toContain(piece);
  });

  it('an API that answers 400 echoing its key from the query past the 120th character shows no piece of it', async () => {
    const apiKey = 'apikey-0123456789abcdefghijklmnopqrstuvw';
    const api = await echoServer((url) => ({ status: 400, body: 'b'.repeat(80) + ' bad request ' + decodeURIComponent(url) }));
    const h = await harness({}, {}, (base) => {
      const generic = asGenericApi(base, `${api}/v1/items?key=\${env:API_KEY}&since=\${date:yyyy-MM-dd}`);
      const inst = generic.instances[0]!;
      return { ...generic, instances: [{ ...inst, provider: { ...inst.provider, baseUrl: api } }] };
    });
    const r = await runCli(['validate', '--online', '-c', h.configFile], { ...SIM_ENV, API_KEY: apiKey });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/reports first page: FAILED: .*answered 400: b{10}/);
    for (const piece of pieces(apiKey)) expect(r.stdout + r.stderr).not.toContain(piece);
  });
});
