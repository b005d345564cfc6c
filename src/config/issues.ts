import { MIN_SECRET } from '../util/secretIndex.js';

/** One problem in a configuration file, located by file and JSON path. */
export type ConfigIssue = { file: string; path: string; message: string };

export function formatIssue(issue: ConfigIssue): string {
  return issue.path ? `${issue.file}: ${issue.path}: ${issue.message}` : `${issue.file}: ${issue.message}`;
}

export class ConfigError extends Error {
  constructor(readonly issues: ConfigIssue[]) {
    super(issues.map(formatIssue).join('\n'));
    this.name = 'ConfigError';
  }
}

/** Appends a key to a JSON path, bracketing keys that are not plain identifiers (AMPLIFY's dotted keys). */
export function childPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  if (/^[A-Za-z_$][\w$]*$/.test(key)) return path ? `${path}.${key}` : key;
  return `${path}[${JSON.stringify(key)}]`;
}

/**
 * Collects issues while a reader walks the file, so `validate` can report all of them at once.
 * A message that quotes a value (a bad URL, say) may quote a resolved `${env:}`/`${file:}`
 * value: each is shown as the reference it came from, never as itself.
 */
export class IssueList {
  readonly items: ConfigIssue[] = [];
  /** What will work, but likely not as meant: reported, never a reason to refuse the file. */
  readonly warnings: ConfigIssue[] = [];
  /** Resolved value → the reference that produced it, longest value first. */
  private secrets: [string, string][] = [];
  constructor(readonly file: string) {}

  secret(value: string, reference: string): void {
    if (value.length < MIN_SECRET) return;
    this.secrets.push([value, reference]);
    this.secrets.sort((a, b) => b[0].length - a[0].length);
  }

  add(path: string, message: string): void {
    this.items.push({ file: this.file, path, message: this.hide(message) });
  }

  warn(path: string, message: string): void {
    this.warnings.push({ file: this.file, path, message: this.hide(message) });
  }

  private hide(message: string): string {
    return this.secrets.reduce((text, [value, reference]) => text.split(value).join(reference), message);
  }
}
