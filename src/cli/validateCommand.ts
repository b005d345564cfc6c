import { readConfig } from '../config/load.js';
import { formatIssue } from '../config/issues.js';
import { checkOnline } from './onlineCheck.js';
import { configPath } from './options.js';

/**
 * Lists every problem of a config file (exit 1, as the contract fixes it; `run` exits 2 on the
 * same file, for systemd not to restart it) and every warning (exit 0 if there are only
 * warnings), or a one-line summary of what it will poll. An `instancesDir` file refused is
 * listed with its problems (exit 1), and the summary says what the others hold.
 * `--online` then tries each enabled instance against its provider and receiver (exit 1 if a
 * step fails).
 */
export async function validateCommand(opts: { config?: string; online?: boolean }): Promise<void> {
  const file = configPath(opts.config);
  const result = readConfig(file);
  for (const warning of result.warnings) process.stderr.write(`warning: ${formatIssue(warning)}\n`);
  if (!result.config) {
    for (const issue of result.issues) process.stderr.write(formatIssue(issue) + '\n');
    process.stderr.write(`${result.issues.length} problem(s) in ${file}\n`);
    process.exitCode = 1;
    return;
  }
  const c = result.config;
  for (const refused of c.refused) for (const issue of refused.issues) process.stderr.write(formatIssue(issue) + '\n');
  if (c.refused.length > 0) {
    process.stderr.write(`${c.refused.length} instance file(s) refused in ${c.instancesDir}; the others load\n`);
    process.exitCode = 1;
  }
  const streams = c.instances.flatMap((i) => i.resources.map((r) => `${i.name}/${r.name}${i.enabled ? '' : ' (disabled)'}`));
  const warned = result.warnings.length > 0 ? ` (${result.warnings.length} warning(s))` : '';
  const verdict = c.refused.length > 0 ? 'OK but for the refused file(s)' : 'OK';
  // A fleet's thousands of streams are counted, not listed: the line stays a line.
  const listed = streams.length <= 20 ? `streams ${streams.join(', ')}` : `${streams.length} streams`;
  process.stdout.write(`${file}: ${verdict}${warned}: ${c.instances.length} instance(s), ${listed}; database ${c.database}\n`);
  if (!opts.online) return;
  const passed = await checkOnline(c, (line) => process.stdout.write(line + '\n'));
  if (!passed) process.exitCode = 1;
}
