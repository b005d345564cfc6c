import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { SecretIndex } from '../src/util/secretIndex.js';
import { createLogger } from '../src/log.js';
import { rng } from './helpers/rng.js';

/** The plain rule, secret by secret: every occurrence masked, and a secret's start (6+ chars) ending a line. */
function reference(secrets: string[], text: string): string {
  const masked = new Array<boolean>(text.length).fill(false);
  const usable = secrets.filter((s) => s.length >= 4);
  for (const s of usable) {
    for (let i = text.indexOf(s); i >= 0; i = text.indexOf(s, i + 1)) for (let k = i; k < i + s.length; k++) masked[k] = true;
  }
  let lineStart = 0;
  for (const line of text.split('\n')) {
    for (const s of usable) {
      for (let i = Math.max(0, line.length - s.length + 1); i <= line.length - 6; i++) {
        if (s.startsWith(line.slice(i))) for (let k = lineStart + i; k < lineStart + line.length; k++) masked[k] = true;
      }
    }
    lineStart += line.length + 1;
  }
  let out = '';
  for (let i = 0; i < text.length; i++) {
    if (!masked[i]) out += text[i];
    else if (i === 0 || !masked[i - 1]) out += '[redacted]';
  }
  return out;
}

describe('the secret index', () => {
  it('redacts as the plain rule does, whatever the overlaps, cuts and line breaks (seeded)', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const random = rng(seed);
      const alphabet = 'abcd1\n';
      const word = (n: number) => Array.from({ length: n }, () => alphabet[Math.floor(random() * (alphabet.length - 1))]).join('');
      const secrets = Array.from({ length: 1 + Math.floor(random() * 6) }, () => word(3 + Math.floor(random() * 8)));
      let text = '';
      while (text.length < 60) {
        const r = random();
        if (r < 0.3) text += secrets[Math.floor(random() * secrets.length)]!;
        else if (r < 0.4) { const s = secrets[Math.floor(random() * secrets.length)]!; text += `${s.slice(0, Math.floor(random() * s.length))}\n`; }
        else text += alphabet[Math.floor(random() * alphabet.length)]!;
      }
      expect(new SecretIndex(secrets).redact(text), `seed ${seed}: ${JSON.stringify({ secrets, text })}`).toBe(reference(secrets, text));
    }
  });

  it('forgets a secret deleted, and keeps the others', () => {
    const index = new SecretIndex(['token-one-1234', 'token-two-5678']);
    index.delete('token-one-1234');
    expect(index.redact('a token-one-1234 b token-two-5678')).toBe('a token-one-1234 b [redacted]');
    expect(index.size).toBe(1);
  });

  it('a logger with 10,000 secrets keeps every one of them out of its lines, and forgets retired ones', async () => {
    const lines: string[] = [];
    const stream = new PassThrough();
    stream.on('data', (c: Buffer) => lines.push(...c.toString('utf8').split('\n').filter(Boolean)));
    const secrets = Array.from({ length: 10_000 }, (_, i) => `secret-${i.toString(36)}-${(i * 7919).toString(36)}`);
    const log = createLogger({ secrets, stream, format: 'json' });
    log.addSecrets(['late-token-abcdef']);
    log.info('poll finished', { a: secrets[4242], b: `x${secrets[9999]}y`, c: 'late-token-abcdef', d: `cut ${secrets[17]!.slice(0, 9)}` });
    log.forgetSecrets(['late-token-abcdef']);
    log.info('after', { c: 'late-token-abcdef' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines[0]).not.toContain(secrets[4242]);
    expect(lines[0]).not.toContain(secrets[9999]);
    expect(lines[0]).not.toContain('late-token');
    expect(lines[0]).not.toContain(secrets[17]!.slice(0, 9));
    expect(JSON.parse(lines[0]!)).toMatchObject({ a: '[redacted]', b: 'x[redacted]y', c: '[redacted]', d: 'cut [redacted]' });
    expect(JSON.parse(lines[1]!)).toMatchObject({ c: 'late-token-abcdef' });
  });
});
