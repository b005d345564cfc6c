import winston from 'winston';

export type Logger = winston.Logger;

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;

/** Replaces every known secret in a string: tokens and keys must never reach a log line. */
export function redactor(secrets: readonly string[]): (text: string) => string {
  const sorted = [...secrets].filter((s) => s.length >= 4).sort((a, b) => b.length - a.length);
  return (text) => sorted.reduce((t, s) => (t.includes(s) ? t.split(s).join('[redacted]') : t), text);
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

export type LoggerOptions = { level?: string; secrets?: readonly string[]; stream?: NodeJS.WritableStream };

/**
 * JSON lines on stdout (journald keeps them), errors with their stack, every secret the config
 * resolved redacted from every field. `addSecrets` covers values learned later (access tokens).
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
      winston.format.json(),
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
