import { childPath, type IssueList } from './issues.js';

type Obj = Record<string, unknown>;

export const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

const describe = (v: unknown): string => (typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v) ?? String(v));

/** What a secret's bad value is, without the value. */
const kindOf = (v: unknown): string => (Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`);

/** `secret`: the value is a key, token or password, so a problem with it names its type, never the value. */
type ReadOptions = { required?: boolean; secret?: boolean };

/**
 * Typed reads of one object of the config. AMPLIFY writes numbers and booleans as strings
 * ("15", "true"); both spellings are accepted. A bad value is recorded and the default returned,
 * so reading goes on and every problem is reported.
 */
export class ObjectReader {
  constructor(readonly obj: Obj, readonly path: string, readonly issues: IssueList) {}

  at(key: string): string {
    return childPath(this.path, key);
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  string(key: string, opts: ReadOptions & { required: true }): string;
  string(key: string, opts?: ReadOptions & { required?: false }): string | undefined;
  string(key: string, opts: ReadOptions = {}): string | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null || v === '') {
      if (opts.required) this.issues.add(this.at(key), 'is required');
      return opts.required ? '' : undefined;
    }
    if (typeof v !== 'string') {
      this.issues.add(this.at(key), `must be a string, got ${opts.secret ? kindOf(v) : describe(v)}`);
      return opts.required ? '' : undefined;
    }
    return v;
  }

  boolean(key: string, fallback: boolean): boolean {
    const v = this.obj[key];
    if (v === undefined || v === null || v === '') return fallback;
    if (v === true || v === 'true') return true;
    if (v === false || v === 'false') return false;
    this.issues.add(this.at(key), `must be true or false, got ${describe(v)}`);
    return fallback;
  }

  number(key: string, fallback: number, opts: { min?: number; max?: number; integer?: boolean; unit?: string } = {}): number {
    const v = this.obj[key];
    if (v === undefined || v === null || v === '') return fallback;
    const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
    const unit = opts.unit ? ` ${opts.unit}` : '';
    if (!Number.isFinite(n) || (opts.integer && !Number.isInteger(n))) {
      this.issues.add(this.at(key), `must be ${opts.integer ? 'a whole' : 'a'} number${unit ? ` of${unit}` : ''}, got ${describe(v)}`);
      return fallback;
    }
    if ((opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max)) {
      const range = opts.max === undefined ? `at least ${opts.min}` : `between ${opts.min ?? '-∞'} and ${opts.max}`;
      this.issues.add(this.at(key), `must be ${range}${unit}, got ${describe(v)}`);
      return fallback;
    }
    return n;
  }

  /** A list given as a JSON array or a comma-separated string. */
  list(key: string, opts: { secret?: boolean } = {}): string[] {
    const v = this.obj[key];
    if (v === undefined || v === null || v === '') return [];
    if (typeof v === 'string') return v.split(',').map((s) => s.trim()).filter(Boolean);
    if (Array.isArray(v) && v.every((x) => typeof x === 'string' || (!opts.secret && typeof x === 'number'))) return v.map(String);
    const shown = opts.secret ? (Array.isArray(v) ? 'an array holding something other than strings' : kindOf(v)) : describe(v);
    this.issues.add(this.at(key), `must be a list (array or comma-separated string)${opts.secret ? ' of strings' : ''}, got ${shown}`);
    return [];
  }

  object(key: string, opts: { required?: boolean } = {}): ObjectReader | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) {
      if (opts.required) this.issues.add(this.at(key), 'is required');
      return undefined;
    }
    if (!isObject(v)) {
      this.issues.add(this.at(key), `must be an object, got ${describe(v)}`);
      return undefined;
    }
    return new ObjectReader(v, this.at(key), this.issues);
  }
}
