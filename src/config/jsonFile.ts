import { readFileSync } from 'node:fs';
import type { IssueList } from './issues.js';
import { findJsonSyntaxError } from './jsonSyntax.js';

/**
 * Reads and parses one JSON file, or records why it cannot (the I/O error code, or where the
 * syntax first goes wrong) and returns undefined.
 */
export function readJsonFile(path: string, issues: IssueList): { value: unknown } | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    issues.add('', `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    return undefined;
  }
  try {
    return { value: JSON.parse(text) };
  } catch (err) {
    const at = findJsonSyntaxError(text);
    issues.add('', at ? `is not valid JSON: line ${at.line}, column ${at.column}: ${at.message}` : `is not valid JSON: ${(err as Error).message}`);
    return undefined;
  }
}
