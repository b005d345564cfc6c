import { readConfig } from '../config/load.js';
import { formatIssue } from '../config/issues.js';
import { configPath } from './options.js';

/**
 * Lists every problem of a config file (exit 2, as `run` exits on the same file), or a one-line
 * summary of what it will poll.
 */
export function validateCommand(opts: { config?: string }): void {
  const file = configPath(opts.config);
  const result = readConfig(file);
  if (!result.config) {
    for (const issue of result.issues) process.stderr.write(formatIssue(issue) + '\n');
    process.stderr.write(`${result.issues.length} problem(s) in ${file}\n`);
    process.exitCode = 2;
    return;
  }
  const c = result.config;
  const streams = c.instances.flatMap((i) => i.resources.map((r) => `${i.name}/${r.name}${i.enabled ? '' : ' (disabled)'}`));
  process.stdout.write(`${file}: OK: ${c.instances.length} instance(s), streams ${streams.join(', ')}; database ${c.database}\n`);
}
