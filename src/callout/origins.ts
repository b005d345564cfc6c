/**
 * Whether the instance's token may be sent to `url`: a notification names the URL to fetch, and
 * anyone who learned the connector's password could name their own server to collect the token.
 * Allowed: the instance's API (its configured base URL, and the geolocation its token answer
 * named) and, for Concur, its own https hosts.
 */
export function tokenMayGoTo(url: string, instance: { baseUrl: string; elementKey: string }, apiBase: string | undefined): boolean {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return false;
  }
  const own = [instance.baseUrl, apiBase].flatMap((base) => {
    try {
      return base ? [new URL(base).origin] : [];
    } catch {
      return [];
    }
  });
  if (own.includes(target.origin)) return true;
  return instance.elementKey === 'concur' && target.protocol === 'https:' && !target.port
    && (target.hostname === 'concursolutions.com' || target.hostname.endsWith('.concursolutions.com'));
}
