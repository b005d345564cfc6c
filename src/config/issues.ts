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

/** Collects issues while a reader walks the file, so `validate` can report all of them at once. */
export class IssueList {
  readonly items: ConfigIssue[] = [];
  constructor(readonly file: string) {}
  add(path: string, message: string): void {
    this.items.push({ file: this.file, path, message });
  }
}
