/** How a failure of PostgreSQL reaches a caller: what failed, in words, with the server's reason. */

/** A call to PostgreSQL failed; `code` is the server's SQLSTATE (or the socket's code), when there is one. */
export class PgStoreError extends Error {
  readonly code: string | undefined;

  constructor(message: string, cause: unknown) {
    super(message, { cause });
    this.name = 'PgStoreError';
    this.code = (cause as { code?: unknown }).code === undefined ? undefined : String((cause as { code?: unknown }).code);
  }
}

/**
 * The reason of a failure, in a line. A connection to a name with two addresses (localhost) that
 * both refuse is an AggregateError with no message of its own: its parts say why. Neither pg nor
 * node puts the connection's password in these.
 */
export function pgErrorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (err.message) return err.message;
  const parts = err instanceof AggregateError ? err.errors.map((e) => pgErrorText(e)).filter((t) => t !== '') : [];
  if (parts.length > 0) return [...new Set(parts)].join('; ');
  return (err as { code?: string }).code ?? err.name;
}

/** Runs `fn`; a failure becomes a PgStoreError saying `what` failed, except those in `passThrough` (the store's own refusals). */
export async function described<T>(what: string, fn: () => Promise<T>, passThrough: readonly (abstract new (...args: never[]) => Error)[] = []): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (passThrough.some((kind) => err instanceof kind)) throw err;
    // The server's SQLSTATE, when it is one (not a socket's code): what an operator searches for.
    // Its detail is left out: it may quote row values.
    const code = (err as { code?: unknown }).code;
    const state = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? ` (SQLSTATE ${code})` : '';
    throw new PgStoreError(`${what} failed: ${pgErrorText(err)}${state}`, err);
  }
}
