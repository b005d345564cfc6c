import { describe, expect, it } from 'vitest';
import { compileUrlTemplate } from '../src/poll/urlTemplate.js';
import { instantFromMs } from '../src/time/instant.js';
import { PatternError } from '../src/time/javaPattern.js';

const start = instantFromMs(Date.parse('2026-11-22T07:05:09.042Z')) + 123;
const expand = (template: string, zone = 'UTC') => compileUrlTemplate(template, zone)(start, (v) => v);

describe('URL macros', () => {
  it('expands date and gmtDate with the window start in UTC', () => {
    expect(expand("/r?after='${date:yyyy-MM-dd'T'HH:mm:ss.SSS}'")).toBe("/r?after='2026-11-22T07:05:09.042'");
    expect(expand('/r?after=${gmtDate:yyyy-MM-dd HH:mm}')).toBe('/r?after=2026-11-22 07:05');
  });

  it('expands dateTimeZone with zones that contain colons', () => {
    expect(expand('/r?d=${dateTimeZone:America/New_York:yyyy-MM-dd HH:mm}')).toBe('/r?d=2026-11-22 02:05');
    expect(expand('/r?d=${dateTimeZone:-8:00:HH:mm}')).toBe('/r?d=23:05');
  });

  it('expands epoch in ms, s and µs', () => {
    const ms = Date.parse('2026-11-22T07:05:09.042Z');
    expect(expand('${epoch}')).toBe(String(ms));
    expect(expand('${epoch:s}')).toBe(String(Math.floor(ms / 1000)));
    expect(expand('${epoch:us}')).toBe(String(ms * 1000 + 123));
  });

  it('uses the configured zone for date when one is set', () => {
    expect(expand('${date:HH:mm}', 'Europe/Paris')).toBe('08:05');
  });

  it('encodes macro values with the encoder it is given, and only them', () => {
    const url = compileUrlTemplate('/r?a=b&d=${date:yyyy-MM-dd HH:mmXXX}', 'Asia/Kolkata')(start, encodeURIComponent);
    expect(url).toBe('/r?a=b&d=2026-11-22%2012%3A35%2B05%3A30');
  });

  it('refuses unknown macros, bad units and bad patterns when compiled', () => {
    expect(() => compileUrlTemplate('${now}', 'UTC')).toThrow(/unknown macro \$\{now\}/);
    expect(() => compileUrlTemplate('${epoch:min}', 'UTC')).toThrow(PatternError);
    expect(() => compileUrlTemplate('${date:YYYY}', 'UTC')).toThrow(/week year/);
    expect(() => compileUrlTemplate('${dateTimeZone:Nowhere:HH}', 'UTC')).toThrow(/known zone/);
    expect(() => compileUrlTemplate('${date}', 'UTC')).toThrow(/needs a date pattern/);
  });
});
