import { describe, expect, it } from 'vitest';
import { calloutEventKey, calloutNotification, calloutObjectId, type Fetched } from '../src/callout/event.js';
import { GroupCommit } from '../src/callout/groupCommit.js';
import { tokenMayGoTo } from '../src/callout/origins.js';
import { throttleKey } from '../src/callout/server.js';
import type { CalloutNotification } from '../src/store/types.js';
import { rng } from './helpers/rng.js';

const notification: CalloutNotification = {
  eventType: 'Report Entered Expense Report Workflow Step - SUBMIT',
  objectType: 'EXPRPT',
  objectUri: 'https://www.concursolutions.com/api/expense/expensereport/v1.1/report/nF7%24pNuz',
  eventDateTime: '2026-11-26',
  context: '',
};

const report = (modified: string, extra: Record<string, unknown> = {}): Fetched => ({
  object: { ReportDetails: { ReportID: 'nF7$pNuz', ReportName: 'Trip', LastModifiedDate: modified, ...extra } },
});

describe('the event made of a callout', () => {
  it('is the AMPLIFY envelope with the object and the notification in raw', () => {
    const draft = calloutNotification({
      id: 'N1', instanceName: 'acme', elementKey: 'concur', notification, source: 'push', receivedAt: Date.UTC(2026, 10, 26, 8), fetched: report('2026-11-26T08:00:00.12'),
    });
    expect(draft.eventCount).toBe(1);
    const { message } = JSON.parse(draft.body);
    expect(message.eventId).toBe('N1');
    expect(message.instanceName).toBe('acme');
    expect(message.events).toEqual([{ eventType: 'UPDATED', objectId: 'nF7$pNuz', objectType: 'reports', elementKey: 'concur', date: '2026-11-26T08:00:00.000Z' }]);
    expect(message.raw.objectType).toBe('reports');
    expect(message.raw.reports).toEqual([report('2026-11-26T08:00:00.12').object]);
    expect(message.raw.notification).toMatchObject({ EventType: notification.eventType, ObjectURI: notification.objectUri, EventDateTime: '2026-11-26', Context: '', source: 'push' });
    expect(message.raw.fetchError).toBeUndefined();
  });

  it('says the fetch failed, and takes the id from the ObjectURI, when there is no object', () => {
    const draft = calloutNotification({
      id: 'N2', instanceName: 'acme', elementKey: 'concur', notification: { ...notification, objectType: 'TRAVELREQ' }, source: 'failed-queue', receivedAt: 0,
      fetched: { error: 'GET … answered 404' },
    });
    const { message } = JSON.parse(draft.body);
    expect(message.events[0]).toMatchObject({ objectId: 'nF7$pNuz', objectType: 'requests' });
    expect(message.raw).toMatchObject({ objectType: 'requests', requests: [], fetchError: 'GET … answered 404' });
  });

  it('takes a v3 report id, and falls back to the URI for an object without one', () => {
    expect(calloutObjectId(notification, { object: { ID: 'ABC', Name: 'x' } })).toBe('ABC');
    expect(calloutObjectId(notification, { object: { Whatever: { Name: 'x' } } })).toBe('nF7$pNuz');
    expect(calloutObjectId({ ...notification, objectUri: 'https://h/a/b/' }, { error: 'x' })).toBe('b');
  });
});

describe('the event key (what makes a second event or not)', () => {
  it('is the same for a re-send about the same state of the object', () => {
    expect(calloutEventKey(notification, report('2026-11-26T08:00:00.12'))).toBe(calloutEventKey({ ...notification }, report('2026-11-26T08:00:00.12', { Other: 'changed' })));
  });

  it('differs when the object was modified since (a report resubmitted the same day)', () => {
    expect(calloutEventKey(notification, report('2026-11-26T08:00:00.12'))).not.toBe(calloutEventKey(notification, report('2026-11-26T09:30:00')));
  });

  it('differs by each field of the notification, and between fetched and not', () => {
    const base = calloutEventKey(notification, report('t'));
    const changed = { eventType: 'Report Entered Expense Report Workflow Step - EXTRACT', objectType: 'TRAVELREQ', objectUri: `${notification.objectUri}x`, eventDateTime: '2026-11-27', context: 'x' };
    for (const [field, value] of Object.entries(changed)) {
      expect(calloutEventKey({ ...notification, [field]: value }, report('t')), field).not.toBe(base);
    }
    expect(calloutEventKey(notification, { error: 'a' })).toBe(calloutEventKey(notification, { error: 'another reason' }));
    expect(calloutEventKey(notification, { error: 'a' })).not.toBe(base);
  });

  it("is the same for a push (a date) and Concur's failed list (a date and time) of one notification", () => {
    expect(calloutEventKey({ ...notification, eventDateTime: '2026-11-26T19:45:25' }, report('t'))).toBe(calloutEventKey(notification, report('t')));
    expect(calloutEventKey({ ...notification, eventDateTime: '2026-11-27T00:00:01' }, report('t'))).not.toBe(calloutEventKey(notification, report('t')));
  });

  it('hashes an object without LastModifiedDate whole', () => {
    expect(calloutEventKey(notification, { object: { ID: 'A', Total: 1 } })).not.toBe(calloutEventKey(notification, { object: { ID: 'A', Total: 2 } }));
    expect(calloutEventKey(notification, { object: { ID: 'A', Total: 1 } })).toBe(calloutEventKey(notification, { object: { ID: 'A', Total: 1 } }));
  });
});

describe('where the token may be sent', () => {
  const concur = { baseUrl: 'https://us.api.concursolutions.com', elementKey: 'concur' };
  it.each([
    ['the configured API', 'https://us.api.concursolutions.com/api/x', concur, undefined, true],
    ['the geolocation', 'http://127.0.0.1:4000/api/x', { baseUrl: 'http://127.0.0.1:5000', elementKey: 'concur' }, 'http://127.0.0.1:4000', true],
    ["Concur's own https host", 'https://www.concursolutions.com/api/expense/expensereport/v1.1/report/1', concur, undefined, true],
    ['a look-alike host', 'https://www.concursolutions.com.evil.example/api', concur, undefined, false],
    ['a host ending in the name without the dot', 'https://evilconcursolutions.com/api', concur, undefined, false],
    ["Concur's host over plain http", 'http://www.concursolutions.com/api', concur, undefined, false],
    ["Concur's host on another port", 'https://www.concursolutions.com:8443/api', concur, undefined, false],
    ['Concur hosts for a generic element', 'https://www.concursolutions.com/api', { baseUrl: 'https://api.example.com', elementKey: 'generic' }, undefined, false],
    ['another host', 'https://attacker.example/collect', concur, undefined, false],
    ['not a URL', 'not a url', concur, undefined, false],
    ['userinfo tricks', 'https://us.api.concursolutions.com@attacker.example/', concur, undefined, false],
  ])('%s', (_what, url, instance, apiBase, allowed) => {
    expect(tokenMayGoTo(url, instance, apiBase)).toBe(allowed);
  });
});

describe('group commit', () => {
  it('commits what arrives during a commit together in the next, each add settling with its own result', async () => {
    const groups: number[][] = [];
    let release: (() => void) | undefined;
    const commit = new GroupCommit<number, string>(async (items) => {
      groups.push(items);
      if (groups.length === 1) await new Promise<void>((r) => { release = r; });
      return items.map((i) => `r${i}`);
    });
    const first = commit.add(0);
    await new Promise((r) => setImmediate(r));
    const rest = [1, 2, 3].map((i) => commit.add(i));
    release!();
    expect(await Promise.all([first, ...rest])).toEqual(['r0', 'r1', 'r2', 'r3']);
    expect(groups).toEqual([[0], [1, 2, 3]]);
  });

  it('rejects every add of a failed group, and goes on with the next', async () => {
    let fail = true;
    const commit = new GroupCommit<number, number>(async (items) => {
      if (fail) {
        fail = false;
        throw new Error('disk full');
      }
      return items;
    });
    const a = commit.add(1);
    const b = commit.add(2);
    await expect(a).rejects.toThrow('disk full');
    await expect(b).rejects.toThrow('disk full');
    expect(await commit.add(3)).toBe(3);
  });

  it('never loses or mixes up an item, whatever the timing (seeded)', async () => {
    for (let seed = 1; seed <= 100; seed++) {
      const random = rng(seed);
      const commit = new GroupCommit<number, number>(async (items) => {
        await new Promise((r) => setTimeout(r, Math.floor(random() * 3)));
        if (random() < 0.1) throw new Error('refused');
        return items.map((i) => i * 2);
      }, 1 + Math.floor(random() * 5));
      const adds: Promise<{ i: number; r: number | 'refused' }>[] = [];
      for (let i = 0; i < 40; i++) {
        adds.push(commit.add(i).then((r) => ({ i, r }), () => ({ i, r: 'refused' as const })));
        if (random() < 0.3) await new Promise((r) => setTimeout(r, Math.floor(random() * 2)));
      }
      const results = await Promise.all(adds);
      for (const { i, r } of results) if (r !== 'refused') expect(r, `seed ${seed}`).toBe(i * 2);
      expect(results.length, `seed ${seed}`).toBe(40);
    }
  });
});

describe('whom the auth throttle counts', () => {
  it.each([
    ['203.0.113.9', '203.0.113.9'],
    ['::ffff:203.0.113.9', '203.0.113.9'],
    ['2001:db8:85a3:1:aaaa:bbbb:cccc:dddd', '2001:db8:85a3:1::/64'],
    ['2001:db8:85a3:1::1', '2001:db8:85a3:1::/64'],
    ['2001:0db8:85a3:0001::2', '2001:db8:85a3:1::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    [undefined, 'unknown'],
  ])('%s → %s', (address, key) => {
    expect(throttleKey(address)).toBe(key);
  });

  it('puts every address of one /64 under one key, and another /64 under another', () => {
    expect(throttleKey('2001:db8:1:2:3:4:5:6')).toBe(throttleKey('2001:db8:1:2:ffff::9'));
    expect(throttleKey('2001:db8:1:2::1')).not.toBe(throttleKey('2001:db8:1:3::1'));
  });
});
