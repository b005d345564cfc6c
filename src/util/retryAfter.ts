const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const MONTH = `(${MONTHS.join('|')})`;
const TIME = '(\\d{2}):(\\d{2}):(\\d{2})';
// RFC 9110 §5.6.7: a recipient accepts all three forms; only the first is sent today.
const IMF_FIXDATE = new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\\d{2}) ${MONTH} (\\d{4}) ${TIME} GMT$`);
const RFC850_DATE = new RegExp(`^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\\d{2})-${MONTH}-(\\d{2}) ${TIME} GMT$`);
const ASCTIME_DATE = new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ${MONTH} ([ \\d]\\d) ${TIME} (\\d{4})$`);

/** Milliseconds since the epoch, or undefined for a day or time that does not exist. */
function utc(year: number, month: string, day: string, hh: string, mm: string, ss: string): number | undefined {
  const m = MONTHS.indexOf(month);
  const [d, h, min, s] = [day, hh, mm, ss].map((v) => Number(v.trim())) as [number, number, number, number];
  // 60 is a leap second; Date.UTC carries it into the next minute.
  if (h > 23 || min > 59 || s > 60) return undefined;
  const at = Date.UTC(year, m, d, h, min, s);
  const check = new Date(at - (s === 60 ? 1000 : 0));
  return check.getUTCMonth() === m && check.getUTCDate() === d ? at : undefined;
}

/** An HTTP-date (RFC 9110 §5.6.7) in ms since the epoch; undefined for anything else. */
function parseHttpDate(value: string, nowMs: number): number | undefined {
  let match = IMF_FIXDATE.exec(value);
  if (match) return utc(Number(match[3]), match[2]!, match[1]!, match[4]!, match[5]!, match[6]!);
  match = ASCTIME_DATE.exec(value);
  if (match) return utc(Number(match[6]), match[1]!, match[2]!, match[3]!, match[4]!, match[5]!);
  match = RFC850_DATE.exec(value);
  if (!match) return undefined;
  // A two-digit year more than 50 years ahead is the most recent past year with those digits.
  const thisYear = new Date(nowMs).getUTCFullYear();
  let year = thisYear - (thisYear % 100) + Number(match[3]);
  if (year > thisYear + 50) year -= 100;
  return utc(year, match[2]!, match[1]!, match[4]!, match[5]!, match[6]!);
}

/**
 * A `Retry-After` header in whole seconds from `nowMs`: delay-seconds (digits only) or an
 * HTTP-date, as RFC 9110 §10.2.3 defines it; a date in the past is 0. Anything else ("-1", "1.5",
 * "soon", a list of values) is no `Retry-After` at all. Both the poller (pages, token refreshes)
 * and the deliverer read it, so it lives below both.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const at = parseHttpDate(text, nowMs);
  return at === undefined ? undefined : Math.max(0, Math.ceil((at - nowMs) / 1000));
}
