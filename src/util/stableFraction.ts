import { createHash } from 'node:crypto';

/**
 * A number in [0, 1) fixed by `key`: the same on every start, every machine and every version,
 * and spread evenly over many keys. Places a stream's polls and an instance's token refreshes in
 * their interval, so thousands of them do not all land on the same second.
 */
export function stableFraction(key: string): number {
  return createHash('sha256').update(key).digest().readUInt32BE(0) / 2 ** 32;
}
