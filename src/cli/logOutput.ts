import { fstatSync } from 'node:fs';
import { isatty } from 'node:tty';
import { chooseLogOutput, LOG_FORMATS, type LogFormat, type LogOutput } from '../log.js';
import { UserError } from './userError.js';

/** `--log-format` wins, then POLLBRIDGE_LOG_FORMAT, then auto; read against where stdout goes now. */
export function stdoutLogOutput(flag: string | undefined): LogOutput {
  const format = flag ?? process.env.POLLBRIDGE_LOG_FORMAT ?? 'auto';
  if (!(LOG_FORMATS as readonly string[]).includes(format)) throw new UserError(`log format must be one of ${LOG_FORMATS.join(', ')}, got "${format}"`);
  return chooseLogOutput(format as LogFormat, { isTTY: isatty(1), ...identity(1) }, process.env.JOURNAL_STREAM);
}

/**
 * Writes an error line for the operator on stderr; under journald with the syslog priority of an
 * error (`<3>`) on each line, so that `journalctl -p err` shows why pollbridge did not start.
 */
export function writeError(text: string): void {
  const journald = chooseLogOutput('json', { isTTY: false, ...identity(2) }, process.env.JOURNAL_STREAM).journald;
  const lines = text.replace(/\n$/, '').split('\n');
  process.stderr.write(lines.map((l) => (journald ? `<3>${l}` : l)).join('\n') + '\n');
}

/** A descriptor's device and inode, compared with JOURNAL_STREAM; none when it is closed. */
function identity(fd: number): { device?: bigint; inode?: bigint } {
  try {
    const stat = fstatSync(fd, { bigint: true });
    return { device: stat.dev, inode: stat.ino };
  } catch {
    return {};
  }
}
