import winston from 'winston';

export type Logger = winston.Logger;

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;

const MIN_SECRET = 4;
/** Shorter starts tell little of a secret, and would often match the end of an innocent id. */
const MIN_CUT = 6;

/**
 * The start of a secret that ends `line`, at least MIN_CUT characters long, replaced: what a
 * cut excerpt of an answer (which echoed a token) leaves where the cut fell.
 */
function redactCutEnd(line: string, secrets: readonly string[]): string {
  for (const s of secrets) {
    for (let i = Math.max(0, line.length - s.length + 1); i <= line.length - MIN_CUT; i++) {
      if (line.charCodeAt(i) === s.charCodeAt(0) && s.startsWith(line.slice(i))) return line.slice(0, i) + '[redacted]';
    }
  }
  return line;
}

/**
 * Replaces every known secret in a string, and the start of one that ends a line (an excerpt
 * cut inside it): tokens and keys must never reach a log line, whole or in part.
 */
export function redactor(secrets: readonly string[]): (text: string) => string {
  const sorted = [...secrets].filter((s) => s.length >= MIN_SECRET).sort((a, b) => b.length - a.length);
  return (text) => {
    const whole = sorted.reduce((t, s) => (t.includes(s) ? t.split(s).join('[redacted]') : t), text);
    return sorted.length === 0 ? whole : whole.split('\n').map((line) => redactCutEnd(line, sorted)).join('\n');
  };
}

const redactFormat = winston.format((info, options: unknown) => {
  const opts = options as { redact: (s: string) => string };
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return opts.redact(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  for (const key of Reflect.ownKeys(info)) {
    if (typeof key === 'string') (info as Record<string, unknown>)[key] = walk((info as Record<string, unknown>)[key]);
  }
  return info;
});

export const LOG_FORMATS = ['auto', 'json', 'text'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** How lines are written: JSON or one readable line each, with or without journald's priority prefix. */
export type LogOutput = { format: 'json' | 'text'; journald: boolean };

/** sd-daemon(3) priorities: journald reads the `<N>` prefix of a line as its priority and strips it. */
const PRIORITY: Record<string, number> = { error: 3, warn: 4, info: 6, debug: 7 };

/**
 * What `format` means where stdout goes. `auto` is text on a terminal and JSON elsewhere. The
 * priority prefix is added whenever stdout is the journal: `JOURNAL_STREAM` names the journal's
 * stream as `device:inode` (systemd.exec(5)), and only a stdout with that identity is it; the
 * variable alone is inherited by anything the service starts, whatever its stdout.
 */
export function chooseLogOutput(format: LogFormat, stdout: { isTTY: boolean; device?: bigint; inode?: bigint }, journalStream: string | undefined): LogOutput {
  const journal = /^(\d+):(\d+)$/.exec(journalStream ?? '');
  const journald = journal !== null && stdout.device === BigInt(journal[1]!) && stdout.inode === BigInt(journal[2]!);
  return { format: format === 'auto' ? (stdout.isTTY ? 'text' : 'json') : format, journald };
}

/** A field's value in a text line: bare when that reads back unambiguously, JSON otherwise (quotes, newlines escaped). */
function textValue(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  return typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value);
}

/** `2026-11-26T03:18:16.123Z WARN  message key=value …`: one line per entry, whatever the fields hold. */
const textFormat = winston.format.printf((info) => {
  const { level, message, timestamp, ...fields } = info as Record<string, unknown>;
  const pairs = Object.entries(fields).filter(([, v]) => v !== undefined).map(([k, v]) => ` ${k}=${textValue(v)}`);
  return `${String(timestamp)} ${String(level).toUpperCase().padEnd(5)} ${String(message).replace(/\n/g, '\\n')}${pairs.join('')}`;
});

const MESSAGE = Symbol.for('message');

const journaldPrefix = winston.format((info) => {
  const line = info as unknown as Record<symbol, string>;
  line[MESSAGE] = `<${PRIORITY[info.level] ?? 6}>${line[MESSAGE]}`;
  return info;
});

export type LoggerOptions = { level?: string; secrets?: readonly string[]; stream?: NodeJS.WritableStream } & Partial<LogOutput>;

/**
 * JSON lines on stdout by default (text on request), errors with their stack, every secret the
 * config resolved redacted from every field whatever the format. `addSecrets` covers values
 * learned later (access tokens).
 */
export function createLogger(options: LoggerOptions = {}): Logger & { addSecrets(values: string[]): void } {
  const secrets = [...(options.secrets ?? [])];
  let redact = redactor(secrets);
  const logger = winston.createLogger({
    level: options.level ?? 'info',
    format: winston.format.combine(
      winston.format.errors({ stack: true }),
      winston.format.timestamp(),
      redactFormat({ redact: (s: string) => redact(s) }),
      options.format === 'text' ? textFormat : winston.format.json(),
      ...(options.journald ? [journaldPrefix()] : []),
    ),
    transports: [new winston.transports.Stream({ stream: options.stream ?? process.stdout })],
  });
  return Object.assign(logger, {
    addSecrets(values: string[]) {
      secrets.push(...values);
      redact = redactor(secrets);
    },
  });
}
