import winston from 'winston';
import { SecretIndex } from './util/secretIndex.js';

export type Logger = winston.Logger;

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;

/**
 * Replaces every known secret in a string, and the start of one that ends a line (an excerpt
 * cut inside it): tokens and keys must never reach a log line, whole or in part.
 */
export function redactor(secrets: readonly string[]): (text: string) => string {
  const index = new SecretIndex(secrets);
  return (text) => index.redact(text);
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

/**
 * Values learned at run time (access and refresh tokens) join the redacted ones; tokens long
 * replaced are forgotten, or a fleet's hourly refreshes would grow the list without end.
 */
export type SecretSink = { addSecrets(values: readonly string[]): void; forgetSecrets(values: readonly string[]): void };

export type LoggerOptions = { level?: string; secrets?: readonly string[]; stream?: NodeJS.WritableStream } & Partial<LogOutput>;

/**
 * JSON lines on stdout by default (text on request), errors with their stack, every secret the
 * config resolved redacted from every field whatever the format. `addSecrets` covers values
 * learned later (access tokens).
 */
export function createLogger(options: LoggerOptions = {}): Logger & SecretSink {
  const secrets = new SecretIndex(options.secrets ?? []);
  const redact = (text: string): string => secrets.redact(text);
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
    addSecrets(values: readonly string[]) {
      for (const v of values) secrets.add(v);
    },
    forgetSecrets(values: readonly string[]) {
      for (const v of values) secrets.delete(v);
    },
  });
}
