import { fstatSync } from 'node:fs';
import { isatty } from 'node:tty';
import { chooseLogOutput, LOG_FORMATS, type LogFormat, type LogOutput } from '../log.js';
import { UserError } from './userError.js';

/** `--log-format` wins, then POLLBRIDGE_LOG_FORMAT, then auto; read against where stdout goes now. */
export function stdoutLogOutput(flag: string | undefined): LogOutput {
  const format = flag ?? process.env.POLLBRIDGE_LOG_FORMAT ?? 'auto';
  if (!(LOG_FORMATS as readonly string[]).includes(format)) throw new UserError(`log format must be one of ${LOG_FORMATS.join(', ')}, got "${format}"`);
  return chooseLogOutput(format as LogFormat, { isTTY: isatty(1), ...stdoutIdentity() }, process.env.JOURNAL_STREAM);
}

/** stdout's device and inode, compared with JOURNAL_STREAM; none when stdout is closed. */
function stdoutIdentity(): { device?: bigint; inode?: bigint } {
  try {
    const stat = fstatSync(1, { bigint: true });
    return { device: stat.dev, inode: stat.ino };
  } catch {
    return {};
  }
}
