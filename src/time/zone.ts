import { getTimezoneOffset } from 'date-fns-tz';

/**
 * Java's three-letter zone ids that are not IANA names (java.time.ZoneId.SHORT_IDS); AMPLIFY
 * configurations were written for Java, so "PST" must keep meaning what it meant there.
 */
const JAVA_SHORT_IDS: Record<string, string> = {
  ACT: 'Australia/Darwin', AET: 'Australia/Sydney', AGT: 'America/Argentina/Buenos_Aires',
  ART: 'Africa/Cairo', AST: 'America/Anchorage', BET: 'America/Sao_Paulo', BST: 'Asia/Dhaka',
  CAT: 'Africa/Harare', CNT: 'America/St_Johns', CST: 'America/Chicago', CTT: 'Asia/Shanghai',
  EAT: 'Africa/Addis_Ababa', ECT: 'Europe/Paris', EST: '-05:00', HST: '-10:00', IET: 'America/Indiana/Indianapolis',
  IST: 'Asia/Kolkata', JST: 'Asia/Tokyo', MIT: 'Pacific/Apia', MST: '-07:00', NET: 'Asia/Yerevan',
  NST: 'Pacific/Auckland', PLT: 'Asia/Karachi', PNT: 'America/Phoenix', PRT: 'America/Puerto_Rico',
  PST: 'America/Los_Angeles', SST: 'Pacific/Guadalcanal', VST: 'Asia/Ho_Chi_Minh',
};

/**
 * Turns a zone as AMPLIFY users write it (IANA name, `GMT`, `UTC`, `EST`, `GMT-8:00`, `-8:00`)
 * into a zone date-fns-tz understands, or undefined when it names no zone.
 */
export function normalizeTimeZone(zone: string): string | undefined {
  const z = zone.trim();
  if (z === '' ) return undefined;
  if (/^(GMT|UTC|UT|Z|Etc\/UTC|Etc\/GMT)$/i.test(z)) return 'UTC';
  const offset = /^(?:GMT|UTC)?([+-])(\d{1,2})(?::?(\d{2}))?$/i.exec(z);
  if (offset) {
    const hours = Number(offset[2]);
    const minutes = Number(offset[3] ?? '0');
    if (hours > 18 || minutes > 59) return undefined;
    return `${offset[1]}${String(hours).padStart(2, '0')}:${String(minutes).padStart(2, '0')}`;
  }
  const mapped = JAVA_SHORT_IDS[z.toUpperCase()] ?? z;
  return Number.isNaN(getTimezoneOffset(mapped, new Date(0))) ? undefined : mapped;
}

const offsetFormats = new Map<string, Intl.DateTimeFormat>();

/**
 * Offset of `zone` from UTC at the given UTC instant, in milliseconds (east positive). Read from
 * Intl's `longOffset` rather than date-fns-tz's getTimezoneOffset, which reports the standard
 * offset during the repeated hour of an autumn DST change (01:30 EDT read as EST).
 */
export function zoneOffsetMs(zone: string, utcMs: number): number {
  if (zone === 'UTC') return 0;
  const fixed = /^([+-])(\d{2}):(\d{2})$/.exec(zone);
  if (fixed) return (fixed[1] === '-' ? -1 : 1) * (Number(fixed[2]) * 60 + Number(fixed[3])) * 60_000;
  let format = offsetFormats.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'longOffset' });
    offsetFormats.set(zone, format);
  }
  const name = format.formatToParts(new Date(utcMs)).find((p) => p.type === 'timeZoneName')?.value ?? 'GMT';
  const m = /^GMT(?:([+-])(\d{2}):(\d{2}))?$/.exec(name);
  if (!m || !m[1]) return 0;
  return (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) * 60_000;
}
