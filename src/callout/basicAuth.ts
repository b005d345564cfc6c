import { createHash, timingSafeEqual } from 'node:crypto';

export type BasicCredentials = { username: string; password: string };

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The credentials of an `Authorization: Basic …` header (RFC 7617): the scheme in any case, the
 * token strict base64 (canonical padding), UTF-8, split at the first colon (a password may hold
 * colons, a user name may not). Undefined for anything else.
 */
export function parseBasicAuth(header: string | undefined): BasicCredentials | undefined {
  const match = /^basic +([^ ]+) *$/i.exec(header ?? '');
  if (!match) return undefined;
  const token = match[1]!;
  if (!BASE64.test(token)) return undefined;
  const bytes = Buffer.from(token, 'base64');
  // Unused bits set in the last character decode the same as clear ones: not canonical, refused.
  if (bytes.toString('base64') !== token) return undefined;
  let decoded: string;
  try {
    decoded = utf8.decode(bytes);
  } catch {
    return undefined;
  }
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Fixed-length digests, so that timingSafeEqual compares the same number of bytes whatever the lengths. */
function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/**
 * The index of the first candidate equal to `given`, or -1. Every candidate is compared, user
 * name and password each in constant time and both always, so the time taken tells neither which
 * candidate matched nor how much of a password was right; undefined `given` does the same work.
 */
export function matchCredentials(given: BasicCredentials | undefined, candidates: readonly BasicCredentials[]): number {
  // Digests of each part apart: hashing `user\0password` would let "a\0b"+"c" equal "a"+"b\0c".
  const username = digest(given?.username ?? '');
  const password = digest(given?.password ?? '');
  let found = -1;
  candidates.forEach((candidate, index) => {
    const sameUser = timingSafeEqual(username, digest(candidate.username));
    const samePassword = timingSafeEqual(password, digest(candidate.password));
    // `&` rather than `&&`: the password is compared even when the user name differs.
    if ((Number(sameUser) & Number(samePassword) & Number(given !== undefined)) === 1 && found < 0) found = index;
  });
  return found;
}
