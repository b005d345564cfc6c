import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyNotification } from '../src/deliver/sign.js';
import { ConcurSim } from '../src/sim/concurSim.js';
import { startCli } from './helpers/cli.js';
import { SIM_ENV, simConfig } from './helpers/simConfig.js';
import { tempDir, waitFor, writeJson } from './helpers/tmp.js';

type AmplifyCheck = (rawBody: Buffer, header: string | undefined, keys: string[]) => boolean;

/**
 * The README's by-hand check of `Elements-Webhook-Signature`, run as the README prints it: the
 * snippet is cut out of README.md into a module of its own, so a README edit that breaks it fails here.
 */
async function readmeAmplifyCheck(dir: string): Promise<AmplifyCheck> {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const snippet = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!).find((code) => code.includes('function amplifySignatureOk'));
  if (!snippet) throw new Error('README.md has no js block defining amplifySignatureOk');
  const file = join(dir, 'readme-amplify-check.mjs');
  writeFileSync(file, `${snippet}\nexport { amplifySignatureOk };\n`);
  const module = (await import(/* @vite-ignore */ pathToFileURL(file).href)) as { amplifySignatureOk: AmplifyCheck };
  return module.amplifySignatureOk;
}

type Verdicts = Record<string, boolean>;
type Attempt = { id: string; objectIds: string[]; signatures: number; verdicts: Verdicts; status: number };

/**
 * One receiver on 127.0.0.1 standing for several: each request is judged by every way of
 * checking it (the `standardwebhooks` library, the README's check, the helper, with the old key,
 * the new key or both), and answered 204 only when the receivers the test says are live accept it.
 */
async function startJudgingReceiver(checks: Record<string, (body: Buffer, headers: http.IncomingHttpHeaders) => boolean>) {
  const attempts: Attempt[] = [];
  let accepts: (v: Verdicts) => boolean = () => false;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const verdicts = Object.fromEntries(Object.entries(checks).map(([name, check]) => [name, check(body, req.headers)]));
      const { message } = JSON.parse(body.toString('utf8')) as { message: { events: { objectId: string }[] } };
      const status = accepts(verdicts) ? 204 : 401;
      attempts.push({
        id: String(req.headers['webhook-id']),
        objectIds: message.events.map((e) => e.objectId),
        signatures: String(req.headers['webhook-signature'] ?? '').split(' ').length,
        verdicts,
        status,
      });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    attempts,
    live(rule: (v: Verdicts) => boolean) {
      accepts = rule;
    },
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('key rotation, end to end', () => {
  it('the daemon rotates by config and SIGHUP; library and by-hand receivers on either key keep working, and a one-key receiver that swaps early or late loses nothing', { timeout: 60_000 }, async () => {
    // The old key is an AMPLIFY-era plain string, the new one a whsec_ key: both kinds in one rotation.
    const oldKey = 'amplify-era key ' + randomBytes(8).toString('hex');
    const newKey = 'whsec_' + randomBytes(24).toString('base64');
    const dir = tempDir();
    const amplifySignatureOk = await readmeAmplifyCheck(dir);
    const library = (key: string) => {
      const wh = key.startsWith('whsec_') ? new Webhook(key) : new Webhook(key, { format: 'raw' });
      return (body: Buffer, headers: http.IncomingHttpHeaders) => {
        try {
          wh.verify(body, headers as Record<string, string>);
          return true;
        } catch {
          return false;
        }
      };
    };
    const byHand = (keys: string[]) => (body: Buffer, headers: http.IncomingHttpHeaders) =>
      amplifySignatureOk(body, headers['elements-webhook-signature'] as string | undefined, keys);
    const helper = (key: string) => (body: Buffer, headers: http.IncomingHttpHeaders) => {
      try {
        verifyNotification(body, headers, key);
        return true;
      } catch {
        return false;
      }
    };
    const receiver = await startJudgingReceiver({
      'library, old key': library(oldKey),
      'library, new key': library(newKey),
      'by hand, old key': byHand([oldKey]),
      'by hand, new key': byHand([newKey]),
      'by hand, both keys': byHand([oldKey, newKey]),
      'helper, old key': helper(oldKey),
      'helper, new key': helper(newKey),
    });
    cleanups.push(() => receiver.close());
    const sim = new ConcurSim();
    const simUrl = await sim.start();
    cleanups.push(() => sim.stop());

    // Room for the retries that the one-key receivers below need: up to 6, 2 s apart.
    const config = simConfig(simUrl, receiver.url, '${env:OLD_SIGNATURE_KEY}', { 'pollbridge.delivery.retrySchedule': [2, 2, 2, 2, 2, 2] });
    const configFile = writeJson(dir, 'poller.config.json', config);
    const setKeys = (current: string, previous: string[]) => {
      const c = config.instances[0]!.configuration as Record<string, unknown>;
      c['event.notification.signature.key'] = current;
      c['pollbridge.notification.previousSignatureKeys'] = previous;
      writeJson(dir, 'poller.config.json', config);
    };
    const env = { ...SIM_ENV, OLD_SIGNATURE_KEY: oldKey, NEW_SIGNATURE_KEY: newKey };
    const p = startCli(['run', '-c', configFile, '--since', new Date(Date.now() - 60_000).toISOString()], env);
    /** A new report, and every attempt to deliver its notification once the first has arrived. */
    const announce = async (phase: string) => {
      const report = sim.createReport();
      await waitFor(`${phase}: the first attempt`, () => receiver.attempts.some((a) => a.objectIds.includes(report.ID)));
      return { report, attempts: () => receiver.attempts.filter((a) => a.objectIds.includes(report.ID)) };
    };
    const verdicts = (old: boolean, during: boolean, after: boolean): Verdicts => ({
      'library, old key': old || during,
      'library, new key': during || after,
      'by hand, old key': old || during,
      'by hand, new key': after,
      'by hand, both keys': true,
      'helper, old key': old || during,
      'helper, new key': during || after,
    });
    try {
      await p.waitForLog('pollbridge started');

      // 1. Before: one key, the old one.
      receiver.live((v) => v['library, old key']! && v['by hand, old key']!);
      const before = await announce('before the rotation');
      expect(before.attempts()[0]).toMatchObject({ status: 204, signatures: 1, verdicts: verdicts(true, false, false) });

      // 2. The rotation starts: the new key signs, the old one is kept in previousSignatureKeys.
      // Receivers that have not moved (library or by hand) accept, and so do those that have.
      setKeys('${env:NEW_SIGNATURE_KEY}', ['${env:OLD_SIGNATURE_KEY}']);
      p.child.kill('SIGHUP');
      await p.waitForLog('config reloaded');
      receiver.live((v) => ['library, old key', 'by hand, old key', 'library, new key', 'by hand, both keys', 'helper, new key'].every((name) => v[name]));
      const during = await announce('during the rotation');
      expect(during.attempts()[0]).toMatchObject({ status: 204, signatures: 2, verdicts: verdicts(false, true, false) });

      // 3. A by-hand receiver holding one key swaps to the new one too early and refuses with 401;
      // the rotation ends, and the retry, signed with the keys running by then, gets through.
      receiver.live((v) => v['by hand, new key']!);
      const early = await announce('a receiver that swapped early');
      expect(early.attempts()[0]).toMatchObject({ status: 401, verdicts: verdicts(false, true, false) });
      setKeys('${env:NEW_SIGNATURE_KEY}', []);
      p.child.kill('SIGHUP');
      await p.waitForLog('config reloaded', 2);
      await waitFor('the retry after the rotation ended', () => early.attempts().some((a) => a.status === 204), 20_000);
      expect(early.attempts().at(-1)).toMatchObject({ status: 204, signatures: 1, verdicts: verdicts(false, false, true) });
      expect(new Set(early.attempts().map((a) => a.id)).size).toBe(1);

      // 4. After the rotation, a by-hand receiver still on the old key refuses with 401; it swaps
      // as the README says, and the retry gets through under the same id.
      receiver.live((v) => v['by hand, old key']!);
      const late = await announce('a receiver that swaps after the end');
      expect(late.attempts()[0]).toMatchObject({ status: 401, signatures: 1, verdicts: verdicts(false, false, true) });
      receiver.live((v) => v['by hand, new key']!);
      await waitFor('the retry accepted by the receiver on the new key', () => late.attempts().some((a) => a.status === 204), 20_000);
      expect(late.attempts().at(-1)).toMatchObject({ status: 204, verdicts: verdicts(false, false, true) });
      expect(new Set(late.attempts().map((a) => a.id)).size).toBe(1);
      expect(late.attempts()[0]!.id).not.toBe(early.attempts()[0]!.id);
    } finally {
      p.child.kill('SIGTERM');
      expect((await p.exited).code).toBe(0);
    }
    const output = [...p.stdout, ...p.stderr].join('\n');
    for (const key of [oldKey, newKey]) expect(output, 'a signature key reached the logs').not.toContain(key);
  });
});
