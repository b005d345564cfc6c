import { readFileSync } from 'node:fs';
import { VerificationError, verifyNotification } from '../deliver/sign.js';
import { UserError } from './userError.js';

function parseHeaderLines(lines: string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of lines) {
    if (line.trim() === '') continue;
    const colon = line.indexOf(':');
    if (colon < 1) throw new UserError(`header must be "Name: value", got "${line}"`);
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Strict: `Number()` would read "" as 0 and "abc" as NaN, and a NaN tolerance disables the check. */
export function parseToleranceSec(value: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new UserError(`--tolerance-sec must be a whole number of seconds, 0 or more, got "${value}"`);
  }
  return Number(value);
}

/** For receiver developers: does this body, with these headers, verify with one of these keys? */
export async function verifyCommand(opts: { key?: string[]; header?: string[]; headersFile?: string; toleranceSec?: string; amplifyOnly?: boolean }): Promise<void> {
  const keys = opts.key ?? (process.env.POLLBRIDGE_SIGNATURE_KEY ? [process.env.POLLBRIDGE_SIGNATURE_KEY] : []);
  if (keys.length === 0 || keys.includes('')) throw new UserError('give the signature key with --key (repeatable) or POLLBRIDGE_SIGNATURE_KEY');
  const toleranceSec = opts.toleranceSec === undefined ? undefined : parseToleranceSec(opts.toleranceSec);
  const lines = [...(opts.headersFile ? readFileSync(opts.headersFile, 'utf8').split(/\r?\n/) : []), ...(opts.header ?? [])];
  const headers = parseHeaderLines(lines);
  const body = await readStdin();
  try {
    verifyNotification(body, headers, keys, { toleranceSec, amplifyOnly: opts.amplifyOnly === true });
  } catch (err) {
    if (err instanceof VerificationError) throw new UserError(`NOT verified: ${err.message}`);
    throw err;
  }
  process.stdout.write('verified\n');
}
