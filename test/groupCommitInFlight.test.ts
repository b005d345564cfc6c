import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../src/callout/groupCommit.js';
import { rng } from './helpers/rng.js';

// With maxInFlight above 1 the next group is handed over while one commits (the database thread
// then commits it with the writes queued beside it): never more groups at once than allowed,
// every item in exactly one group, the groups handed over in the order their items came.

describe('group commit with groups in flight', () => {
  it('hands the next group over while one commits, and no third until one is done', async () => {
    const groups: number[][] = [];
    const releases: (() => void)[] = [];
    const commit = new GroupCommit<number, number>(async (items) => {
      groups.push(items);
      await new Promise<void>((r) => releases.push(r));
      return items;
    }, 512, 2);
    const first = commit.add(0);
    await new Promise((r) => setImmediate(r));
    const second = [1, 2].map((i) => commit.add(i));
    await new Promise((r) => setImmediate(r));
    const third = [3, 4].map((i) => commit.add(i));
    await new Promise((r) => setImmediate(r));
    expect(groups).toEqual([[0], [1, 2]]);
    releases[0]!();
    await first;
    await new Promise((r) => setImmediate(r));
    expect(groups).toEqual([[0], [1, 2], [3, 4]]);
    releases[1]!();
    releases[2]!();
    expect(await Promise.all([...second, ...third])).toEqual([1, 2, 3, 4]);
  });

  it('never has more than maxInFlight groups at once, loses or reorders no item (seeded)', async () => {
    for (let seed = 1; seed <= 100; seed++) {
      const random = rng(seed);
      const maxInFlight = 1 + Math.floor(random() * 4);
      let inFlight = 0;
      let most = 0;
      const handed: number[] = [];
      const commit = new GroupCommit<number, number>(async (items) => {
        inFlight++;
        most = Math.max(most, inFlight);
        handed.push(...items);
        await new Promise((r) => setTimeout(r, Math.floor(random() * 3)));
        inFlight--;
        if (random() < 0.1) throw new Error('refused');
        return items.map((i) => i * 2);
      }, 1 + Math.floor(random() * 5), maxInFlight);
      const adds: Promise<number | 'refused'>[] = [];
      for (let i = 0; i < 40; i++) {
        adds.push(commit.add(i).catch(() => 'refused' as const));
        if (random() < 0.3) await new Promise((r) => setTimeout(r, Math.floor(random() * 2)));
      }
      const results = await Promise.all(adds);
      results.forEach((r, i) => { if (r !== 'refused') expect(r, `seed ${seed}`).toBe(i * 2); });
      expect(handed, `seed ${seed}`).toEqual(Array.from({ length: 40 }, (_, i) => i));
      expect(most, `seed ${seed}`).toBeLessThanOrEqual(maxInFlight);
    }
  });
});
