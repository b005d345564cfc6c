import { readFileSync } from 'node:fs';
import { standardKeyBytes, VerificationError, verifyNotification } from '../deliver/sign.js';
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

/**
 * With nothing piped in, reading stdin would wait for a body the user never meant to type, with
 * no sign of it: the terminal case is refused with the way to give one.
 */
export function refuseTerminalStdin(stdinIsTty: boolean | undefined): void {
  if (stdinIsTty) {
    throw new UserError('the body is read from stdin, which is a terminal: pipe the received body in (pollbridge verify --key KEY -H "webhook-id: …" … < body.json)');
  }
}

/**
 * What to add to a failed check so the user knows the way on: an old capture fails on its
 * timestamp alone, and `--tolerance-sec` is what lets it be checked.
 */
export function verificationHint(headers: Record<string, string>, toleranceSec: number, nowSec: number): string {
  const timestamp = headers['webhook-timestamp'];
  if (timestamp === undefined || !/^\d+$/.test(timestamp)) return '';
  const ageSec = nowSec - Number(timestamp);
  if (Math.abs(ageSec) <= toleranceSec) return '';
  if (ageSec < 0) return ` (its timestamp is ${-ageSec} s ahead of this machine's clock; is either clock off?)`;
  return ` (it was signed ${ageSec} s ago; to check an old capture, give --tolerance-sec ${ageSec} or more)`;
}

/** For receiver developers: does this body, with these headers, verify with one of these keys? */
export async function verifyCommand(opts: { key?: string[]; header?: string[]; headersFile?: string; toleranceSec?: string; amplifyOnly?: boolean }): Promise<void> {
  const keys = opts.key ?? (process.env.POLLBRIDGE_SIGNATURE_KEY ? [process.env.POLLBRIDGE_SIGNATURE_KEY] : []);
  if (keys.length === 0 || keys.includes('')) throw new UserError('give the signature key with --key (repeatable) or POLLBRIDGE_SIGNATURE_KEY');
  if (keys.some((k) => standardKeyBytes(k).length === 0)) throw new UserError('a whsec_ key needs its base64 bytes after the prefix');
  const toleranceSec = opts.toleranceSec === undefined ? undefined : parseToleranceSec(opts.toleranceSec);
  const lines = [...(opts.headersFile ? readFileSync(opts.headersFile, 'utf8').split(/\r?\n/) : []), ...(opts.header ?? [])];
  const headers = parseHeaderLines(lines);
  refuseTerminalStdin(process.stdin.isTTY);
  const body = await readStdin();
  const nowSec = Math.floor(Date.now() / 1000);
  try {
    verifyNotification(body, headers, keys, { toleranceSec, amplifyOnly: opts.amplifyOnly === true, nowSec });
  } catch (err) {
    if (err instanceof VerificationError) {
      const hint = opts.amplifyOnly ? '' : verificationHint(headers, toleranceSec ?? 300, nowSec);
      throw new UserError(`NOT verified: ${err.message}${hint}`);
    }
    throw err;
  }
  process.stdout.write('verified\n');
}
