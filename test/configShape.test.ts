import { describe, expect, it } from 'vitest';
import { closest, editDistance } from '../src/config/editDistance.js';
import { findJsonSyntaxError } from '../src/config/jsonSyntax.js';
import { SECRET_KINDS } from '../src/config/keys.js';
import { placeholderIn, referenceProblems, URL_KINDS } from '../src/config/shape.js';

describe('editDistance', () => {
  it.each([
    ['database', 'database', 0],
    ['databse', 'database', 1],
    ['datbase', 'database', 1],
    ['adtabase', 'database', 1],
    ['baseURL', 'baseUrl', 2],
    ['', 'abc', 3],
    ['kitten', 'sitting', 3],
  ])('%s → %s is %i', (a, b, d) => {
    expect(editDistance(a, b)).toBe(d);
    expect(editDistance(b, a)).toBe(d);
  });
});

describe('closest', () => {
  it('names the nearest candidate, ignoring letter case', () => {
    expect(closest('databse', ['database', 'http', 'instances'])).toBe('database');
    expect(closest('Concur', ['concur'])).toBe('concur');
    expect(closest('ENV', SECRET_KINDS)).toBe('env');
    expect(closest('baseURL', ['baseUrl', 'auth'])).toBe('baseUrl');
  });

  it('names none when nothing is near, and never the word itself', () => {
    expect(closest('tags2', ['database', 'http', 'instances'])).toBeUndefined();
    // Short words are near every other short word: no guess for them.
    expect(closest('ab', ['cd', 'ef'])).toBeUndefined();
    expect(closest('http', ['http'])).toBeUndefined();
  });
});

describe('findJsonSyntaxError', () => {
  it.each([
    ['{\n  "a": 1,\n  "b": tru\n}', 3, 8, 'expected a value, found "tru"'],
    ['{\n  "a": 1\n  "b": 2\n}', 3, 3, 'expected "," or "}" after a property value, found """'],
    ['{ "a": 1, }', 1, 11, 'expected a property name in double quotes, found "}"'],
    ['{ "a": [1, 2 }', 1, 14, 'expected "," or "]" after an array element, found "}"'],
    ['{ "a": "x', 1, 10, 'unterminated string'],
    ['{ "a": 1 } x', 1, 12, 'unexpected "x" after the end of the JSON value'],
    ['', 1, 1, 'expected a value, found the end of the file'],
    ['{ "a": "\\q" }', 1, 10, 'bad escape "\\q"'],
  ])('%j: line %i, column %i', (text, line, column, message) => {
    expect(() => JSON.parse(text)).toThrow();
    expect(findJsonSyntaxError(text)).toEqual({ line, column, message });
  });

  it('finds nothing in valid JSON', () => {
    for (const text of ['{}', '[]', '{"a":[1,-2.5e3,true,false,null,"\\u00e9\\n",{}]}', ' "x" ']) {
      expect(() => JSON.parse(text)).not.toThrow();
      expect(findJsonSyntaxError(text)).toBeUndefined();
    }
  });
});

describe('referenceProblems', () => {
  it('accepts the known kinds', () => {
    expect(referenceProblems('${env:A}-${file:b.txt}-${credential:c}', SECRET_KINDS)).toEqual([]);
    expect(referenceProblems("/x?a='${date:yyyy-MM-dd}'&b=${epoch}&c=${epoch:s}&d=${dateTimeZone:PST:HH}", URL_KINDS)).toEqual([]);
    expect(referenceProblems('no references', SECRET_KINDS)).toEqual([]);
  });

  it('names a wrongly cased or unknown kind, with the one meant', () => {
    expect(referenceProblems('${ENV:TOKEN}', SECRET_KINDS)).toEqual(['unknown reference "${ENV:…}" (known here: env, file, credential): did you mean "${env:…}"?']);
    expect(referenceProblems('${Credential:x}', SECRET_KINDS)).toEqual([expect.stringContaining('did you mean "${credential:…}"?')]);
    expect(referenceProblems('/x?d=${Date:yyyy}', URL_KINDS)).toEqual([expect.stringContaining('did you mean "${date:…}"?')]);
    expect(referenceProblems('/x?d=${today}', URL_KINDS)).toEqual(['unknown reference "${today}" (known here: env, file, credential, date, gmtDate, dateTimeZone, epoch)']);
    // Date macros mean nothing outside a resource's url.
    expect(referenceProblems('${date:yyyy}', SECRET_KINDS)).toEqual([expect.stringContaining('unknown reference "${date:…}"')]);
  });

  it('finds a "${" that is never closed, and quotes no part of the value', () => {
    expect(referenceProblems("/r?where=modifiedDateAfter='${date:yyyy-MM-dd", URL_KINDS)).toEqual(['has a "${" (character 29) that no "}" closes']);
    const secretish = 'pa55${wordsecret';
    expect(referenceProblems(secretish, SECRET_KINDS).join()).not.toContain('wordsecret');
    expect(referenceProblems('s3cr3t${x y z}', SECRET_KINDS)).toEqual(['unknown reference "${…}" (known here: env, file, credential)']);
  });
});

describe('placeholderIn', () => {
  it('finds the example config\'s placeholders', () => {
    expect(placeholderIn('YOUR-CONCUR-CLIENT-ID')).toBe('YOUR-CONCUR-CLIENT-ID');
    expect(placeholderIn('YOUR_API_TOKEN')).toBe('YOUR_API_TOKEN');
    expect(placeholderIn('https://hooks.example.com/concur')).toBe('hooks.example.com');
    expect(placeholderIn('http://example.org:8080/x')).toBe('example.org');
    expect(placeholderIn('https://receiver.invalid/hook')).toBe('receiver.invalid');
  });

  it('leaves real values alone', () => {
    for (const value of ['https://us.api.concursolutions.com', 'https://hooks.example-corp.com/x', 'https://myexample.com/x', 'your-own-id', 'http://127.0.0.1:9/hook', 'YOURS']) {
      expect(placeholderIn(value)).toBeUndefined();
    }
  });
});
