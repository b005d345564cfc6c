import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, redactor } from '../src/log.js';

const SECRET = 'tok-0123456789abcdefghij';

function capture(format: 'json' | 'text', journald = false) {
  const stream = new PassThrough();
  const chunks: string[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c.toString('utf8')));
  const log = createLogger({ level: 'debug', secrets: [SECRET], stream, format, journald });
  return { log, text: () => chunks.join('') };
}

describe('redaction of cut secrets', () => {
  it('the start of a secret ending a line is redacted; a secret\'s start inside a line or under 6 characters is kept', () => {
    const r = redactor([SECRET]);
    expect(r(`answered 400: key=${SECRET.slice(0, 10)}`)).toBe('answered 400: key=[redacted]');
    expect(r(`first: ${SECRET.slice(0, 9)}\n    at fetchJson (x.js:1:1)`)).toBe('first: [redacted]\n    at fetchJson (x.js:1:1)');
    expect(r(`whole ${SECRET} and cut ${SECRET.slice(0, 6)}`)).toBe('whole [redacted] and cut [redacted]');
    expect(r('ends in tok-0')).toBe('ends in tok-0');
    expect(r('tok-0 is not at the end')).toBe('tok-0 is not at the end');
    expect(redactor([])('anything tok-01')).toBe('anything tok-01');
  });

  it('text format: a cut secret in a nested field, an error\'s message and stack, all on one line', async () => {
    for (const journald of [false, true]) {
      const { log, text } = capture('text', journald);
      const err = new Error(`GET /x answered 401: ${SECRET.slice(0, 12)}`);
      log.warn(`retrying\nafter ${SECRET}`, { nested: { deeper: [`a ${SECRET.slice(0, 15)}`] }, error: err.message, stack: err.stack });
      await new Promise((r) => setImmediate(r));
      const out = text();
      expect(out.endsWith('\n')).toBe(true);
      expect(out.slice(0, -1)).not.toContain('\n');
      expect(out).toContain('[redacted]');
      for (let i = 0; i + 6 <= SECRET.length; i++) expect(out).not.toContain(SECRET.slice(i, i + 6));
      if (journald) expect(out.startsWith('<4>')).toBe(true);
    }
  });

  it('json format without journald: the same fields as before, redacted, one object per line', async () => {
    const { log, text } = capture('json');
    log.error('poll failed', { instance: 'A', error: `x ${SECRET}` });
    await new Promise((r) => setImmediate(r));
    const line = text().trimEnd();
    expect(line.startsWith('{')).toBe(true);
    const parsed = JSON.parse(line) as Record<string, unknown>;
    expect(Object.keys(parsed).sort()).toEqual(['error', 'instance', 'level', 'message', 'timestamp']);
    expect(parsed).toMatchObject({ level: 'error', message: 'poll failed', instance: 'A', error: 'x [redacted]' });
  });
});
