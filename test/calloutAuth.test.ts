import { describe, expect, it } from 'vitest';
import { type BasicCredentials, matchCredentials, parseBasicAuth } from '../src/callout/basicAuth.js';

function basic(userPass: string, scheme = 'Basic'): string {
  return `${scheme} ${Buffer.from(userPass, 'utf8').toString('base64')}`;
}

describe('parseBasicAuth', () => {
  it('reads user name and password, the scheme in any case', () => {
    expect(parseBasicAuth(basic('concur:s3cret'))).toEqual({ username: 'concur', password: 's3cret' });
    expect(parseBasicAuth(basic('concur:s3cret', 'basic'))).toEqual({ username: 'concur', password: 's3cret' });
    expect(parseBasicAuth(basic('concur:s3cret', 'BASIC'))).toEqual({ username: 'concur', password: 's3cret' });
  });

  it('splits at the first colon: a password may hold colons', () => {
    expect(parseBasicAuth(basic('concur:a:b::c'))).toEqual({ username: 'concur', password: 'a:b::c' });
    expect(parseBasicAuth(basic('concur:'))).toEqual({ username: 'concur', password: '' });
    expect(parseBasicAuth(basic(':pw'))).toEqual({ username: '', password: 'pw' });
  });

  it('decodes UTF-8', () => {
    expect(parseBasicAuth(basic('jürgen:pässwörd€'))).toEqual({ username: 'jürgen', password: 'pässwörd€' });
  });

  it.each([
    ['no header', undefined],
    ['an empty header', ''],
    ['the scheme alone', 'Basic'],
    ['the scheme and a space', 'Basic '],
    ['another scheme', `Bearer ${Buffer.from('concur:s3cret').toString('base64')}`],
    ['a scheme that only starts like Basic', `Basicx ${Buffer.from('concur:s3cret').toString('base64')}`],
    ['no colon', basic('concur')],
    ['an empty token', basic('')],
    ['characters outside base64', 'Basic Y29uY3VyOnMz*2NyZXQ='],
    ['URL-safe base64', 'Basic ' + Buffer.from('a:\xfb\xff', 'latin1').toString('base64url')],
    ['missing padding', 'Basic ' + Buffer.from('concur:s3cret').toString('base64').replace(/=+$/, '')],
    ['padding in the middle', 'Basic Y29u=Y3VyOnMzY3JldA=='],
    ['unused bits set in the last character', 'Basic YTpiYw=='.replace('w==', 'x==')],
    ['two tokens', `${basic('concur:s3cret')} ${basic('concur:s3cret').slice(6)}`],
    ['invalid UTF-8', 'Basic ' + Buffer.from([0x61, 0x3a, 0xff, 0xfe]).toString('base64')],
  ])('%s → undefined', (_name, header) => {
    expect(parseBasicAuth(header)).toBeUndefined();
  });
});

describe('matchCredentials', () => {
  const candidates: BasicCredentials[] = [
    { username: 'concur', password: 'first' },
    { username: 'concur', password: 'second' },
    { username: 'other', password: 'first' },
    { username: 'concur', password: 'second' },
  ];

  it('finds the first candidate equal in both user name and password', () => {
    expect(matchCredentials({ username: 'concur', password: 'first' }, candidates)).toBe(0);
    expect(matchCredentials({ username: 'concur', password: 'second' }, candidates)).toBe(1);
    expect(matchCredentials({ username: 'other', password: 'first' }, candidates)).toBe(2);
  });

  it('finds none for a right user name with another candidate’s or a partial password', () => {
    expect(matchCredentials({ username: 'other', password: 'second' }, candidates)).toBe(-1);
    expect(matchCredentials({ username: 'concur', password: 'firs' }, candidates)).toBe(-1);
    expect(matchCredentials({ username: 'concur', password: 'first ' }, candidates)).toBe(-1);
    expect(matchCredentials({ username: 'Concur', password: 'first' }, candidates)).toBe(-1);
  });

  it('does not let the boundary between user name and password move', () => {
    const tricky = [{ username: 'a\0b', password: 'c' }];
    expect(matchCredentials({ username: 'a', password: 'b\0c' }, tricky)).toBe(-1);
    expect(matchCredentials({ username: 'a\0b', password: 'c' }, tricky)).toBe(0);
  });

  it('finds none for undefined, even against empty credentials, and none among no candidates', () => {
    expect(matchCredentials(undefined, candidates)).toBe(-1);
    expect(matchCredentials(undefined, [{ username: '', password: '' }])).toBe(-1);
    expect(matchCredentials({ username: '', password: '' }, [{ username: '', password: '' }])).toBe(0);
    expect(matchCredentials({ username: 'concur', password: 'first' }, [])).toBe(-1);
  });

  it('round-trips a header through both', () => {
    expect(matchCredentials(parseBasicAuth(basic('concur:second')), candidates)).toBe(1);
    expect(matchCredentials(parseBasicAuth('Basic !!'), candidates)).toBe(-1);
  });
});
