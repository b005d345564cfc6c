import { describe, expect, it } from 'vitest';
import { assign, type Candidate, desiredStreams, type Placeable } from '../src/daemon/assignment.js';
import { rng } from './helpers/rng.js';

const fleet = (n: number): Placeable[] => Array.from({ length: n }, (_, i) => ({ id: i + 1, instance: `company-${Math.floor(i / 2)}`, resource: i % 2 ? 'requests' : 'reports' }));
const replicas = (...names: string[]): Candidate[] => names.map((name, i) => ({ id: `id-${i}-${name}`, name }));

function counts(owners: Map<number, string>): Map<string, number> {
  const c = new Map<string, number>();
  for (const owner of owners.values()) c.set(owner, (c.get(owner) ?? 0) + 1);
  return c;
}

describe('rendezvous assignment of streams to replicas', () => {
  const streams = fleet(4000);

  // A fair random split of 4,000 over 3 strays by 2.2 % (one standard deviation) from the even
  // share: 8 % is 3.6 of them, and a hash that correlates with the names would go far past it.
  it('spreads 4,000 streams over 3 replicas within 8 % of an even share each, for any names', () => {
    const sets = [['vm-a', 'vm-b', 'vm-c'], ['pollbridge-1', 'pollbridge-2', 'pollbridge-3'], ['db01.eu.example', 'db02.eu.example', 'app.us.example']];
    for (const names of sets) {
      const owners = assign(streams, replicas(...names));
      expect(owners.size).toBe(4000);
      const c = counts(owners);
      expect(c.size).toBe(3);
      for (const n of c.values()) expect(Math.abs(n - 4000 / 3) / (4000 / 3), names.join()).toBeLessThan(0.08);
    }
  });

  it('gives every stream to exactly one replica, the same on every replica whatever the order of the list', () => {
    const list = replicas('vm-a', 'vm-b', 'vm-c');
    const owners = assign(streams, list);
    const reversed = assign(streams, [...list].reverse());
    expect([...reversed]).toEqual([...owners]);
    const union = list.flatMap((r) => [...desiredStreams(streams, list, r.id)]);
    expect(union.length).toBe(4000);
    expect(new Set(union).size).toBe(4000);
  });

  it('moves only the leaving replica\'s streams, and gives them all back when it returns (a new id, the same name)', () => {
    const all = replicas('vm-a', 'vm-b', 'vm-c');
    const before = assign(streams, all);
    const leaver = all[1]!;
    const after = assign(streams, all.filter((r) => r !== leaver));
    for (const [id, owner] of before) {
      if (owner === leaver.id) expect(after.get(id)).not.toBe(leaver.id);
      else expect(after.get(id)).toBe(owner);
    }
    // Both others take a share of the leaver's streams, not one of them all.
    const moved = counts(new Map([...after].filter(([id]) => before.get(id) === leaver.id)));
    expect(moved.size).toBe(2);
    const returned = { id: 'a-new-id-after-restart', name: leaver.name };
    const back = assign(streams, [all[0]!, returned, all[2]!]);
    for (const [id, owner] of before) expect(back.get(id)).toBe(owner === leaver.id ? returned.id : owner);
  });

  it('moves about a quarter of the streams to a fourth replica, and each from its previous holder to the new one only', () => {
    const three = replicas('vm-a', 'vm-b', 'vm-c');
    const fourth = { id: 'id-3-vm-d', name: 'vm-d' };
    const before = assign(streams, three);
    const after = assign(streams, [...three, fourth]);
    let moved = 0;
    for (const [id, owner] of after) {
      if (owner !== before.get(id)) {
        expect(owner).toBe(fourth.id);
        moved++;
      }
    }
    expect(Math.abs(moved - 1000) / 1000).toBeLessThan(0.1);
  });

  it('breaks a tie between two replicas of one name by id, and assigns nothing without replicas', () => {
    const twins = [{ id: 'b', name: 'same' }, { id: 'a', name: 'same' }];
    const owners = assign(streams.slice(0, 50), twins);
    expect(new Set(owners.values())).toEqual(new Set(['a']));
    expect(assign(streams, []).size).toBe(0);
  });

  it('keeps every stream placed, once, over random joins and leaves (seeded)', () => {
    const sample = streams.slice(0, 300);
    for (let seed = 1; seed <= 40; seed++) {
      const random = rng(seed);
      const pool = replicas('a', 'b', 'c', 'd', 'e');
      let live = pool.filter(() => random() < 0.6);
      for (let step = 0; step < 10; step++) {
        const r = pool[Math.floor(random() * pool.length)]!;
        const before = assign(sample, live);
        live = live.includes(r) ? live.filter((x) => x !== r) : [...live, r];
        const after = assign(sample, live);
        const ok = after.size === (live.length === 0 ? 0 : sample.length)
          && [...after].every(([id, owner]) => live.some((x) => x.id === owner) && (before.get(id) === owner || before.get(id) === r.id || owner === r.id));
        if (!ok) expect.fail(`seed ${seed}, step ${step}: a stream moved that neither left nor joined`);
      }
    }
  });
});
