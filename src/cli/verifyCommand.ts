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

/** For receiver developers: does this body, with these headers, verify with this key? */
export async function verifyCommand(opts: { key?: string; header?: string[]; headersFile?: string; toleranceSec?: string }): Promise<void> {
  const key = opts.key ?? process.env.POLLBRIDGE_SIGNATURE_KEY;
  if (!key) throw new UserError('give the signature key with --key or POLLBRIDGE_SIGNATURE_KEY');
  const lines = [...(opts.headersFile ? readFileSync(opts.headersFile, 'utf8').split(/\r?\n/) : []), ...(opts.header ?? [])];
  const headers = parseHeaderLines(lines);
  const body = await readStdin();
  try {
    verifyNotification(body, headers, key, { toleranceSec: opts.toleranceSec === undefined ? undefined : Number(opts.toleranceSec) });
  } catch (err) {
    if (err instanceof VerificationError) throw new UserError(`NOT verified: ${err.message}`);
    throw err;
  }
  process.stdout.write('verified\n');
}
