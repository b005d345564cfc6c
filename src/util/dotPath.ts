export type PathReader = (value: unknown) => unknown;

/**
 * A reader of `a.b.0.c` in parsed JSON, the path split once: detection reads three fields of
 * every record. An empty path is the value itself.
 */
export function pathReader(path: string): PathReader {
  if (path === '') return (value) => value;
  const keys = path.split('.');
  return (value) => {
    let current: unknown = value;
    for (const key of keys) {
      if (current === null || typeof current !== 'object') return undefined;
      current = (current as Record<string, unknown>)[key];
    }
    return current;
  };
}

/** Reads `a.b.0.c` from parsed JSON once. */
export function getPath(value: unknown, path: string): unknown {
  return pathReader(path)(value);
}
