import { describe, expect, it } from 'vitest';
import { compileUrlTemplate } from '../src/poll/urlTemplate.js';
import { instantFromMs } from '../src/time/instant.js';
import { PatternError } from '../src/time/javaPattern.js';

const start = instantFromMs(Date.parse('2026-11-22T07:05:09.042Z')) + 123;
const expand = (template: string, zone = 'UTC') => compileUrlTemplate(template, zone).expand(start, (v) => v);

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

  it('uses the configured zone for date when one is set, and GMT for gmtDate whatever is configured', () => {
    expect(expand('${date:HH:mm}', 'Europe/Paris')).toBe('08:05');
    expect(expand('${gmtDate:HH:mm}', 'Europe/Paris')).toBe('07:05');
    expect(expand('${gmtDate:HH:mm}', 'America/Los_Angeles')).toBe('07:05');
  });

  it("knows how the provider writes dates: the first date macro's pattern and zone, else ISO local time in the configured zone", () => {
    const dates = (template: string, zone = 'Asia/Tokyo') => {
      const { pattern, zone: z } = compileUrlTemplate(template, zone).providerDates;
      return { pattern, zone: z };
    };
    expect(dates("/r?after=${date:yyyy-MM-dd HH:mm}&e=${epoch}")).toEqual({ pattern: 'yyyy-MM-dd HH:mm', zone: 'Asia/Tokyo' });
    expect(dates('/r?e=${epoch}&after=${gmtDate:yyyy-MM-dd}')).toEqual({ pattern: 'yyyy-MM-dd', zone: 'UTC' });
    expect(dates('/r?after=${dateTimeZone:PST:HH:mm}&g=${gmtDate:HH}')).toEqual({ pattern: 'HH:mm', zone: 'America/Los_Angeles' });
    expect(dates('/r?since=${epoch:s}')).toEqual({ pattern: "yyyy-MM-dd'T'HH:mm:ss.SSS", zone: 'Asia/Tokyo' });
  });

  it('encodes macro values with the encoder it is given, and only them', () => {
    const url = compileUrlTemplate('/r?a=b&d=${date:yyyy-MM-dd HH:mmXXX}', 'Asia/Kolkata').expand(start, encodeURIComponent);
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
