import { createHash } from 'node:crypto';
import { CONCUR_ELEMENT, ELEMENT_KEYS, INSTANCE_KEYS, RESOURCE_EXTENSION_KEYS, RESOURCE_KEYS } from './keys.js';
import { isObject } from './read.js';
import { holdsReference } from './secrets.js';

/*
 * Turns an AMPLIFY export (`GET /instances`) into pollbridge instance files, with every secret
 * moved out to a systemd credential and replaced by a `${credential:NAME}` reference. No I/O:
 * the command writes what this returns.
 */

/** Concur's US data centre; a tenant elsewhere is found by the token answer's `geolocation`. */
export const DEFAULT_CONCUR_BASE_URL = 'https://us.api.concursolutions.com';

/**
 * A secret taken from the export. Printing, logging or serialising it shows a placeholder, so a
 * stray `console.log(result)` cannot leak it; only `reveal()` gives the value, to be written to
 * its credential file.
 */
export class SecretValue {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return '[secret]';
  }
  toJSON(): string {
    return '[secret]';
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return '[secret]';
  }
}

/** A credential file an instance file refers to. No `value`: the export did not hold it, the operator must create it. */
export type ImportedCredential = { name: string; what: string; instance: string; value?: SecretValue };

export type ImportedInstance = {
  name: string;
  /** `<slug>.json`, unique in the export (and on case-insensitive file systems). */
  fileName: string;
  /** The object to write: no secret in it. */
  instance: Record<string, unknown>;
  credentials: ImportedCredential[];
  /** AMPLIFY fields left out, as paths: `id`, `token`, `element.id`, `configuration["oauth.user.token"]`. */
  dropped: string[];
  /** What the operator should know about this instance: a provider built or still to add. */
  notes: string[];
};

export type ImportOptions = { baseUrl?: string };

export class AmplifyImportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AmplifyImportError';
  }
}

/** How a secret may be shown in an export that masks it: a value never to be copied as a secret. */
const MASKED = /^\*+$/;
const SIGNATURE_KEY = 'event.notification.signature.key';
const POLLER_CONFIGURATION = 'event.poller.configuration';
/** The fields of a resource pollbridge reads; none of them holds a secret. */
const RESOURCE_FIELDS: ReadonlySet<string> = new Set([...RESOURCE_KEYS, ...RESOURCE_EXTENSION_KEYS]);
/** Names of a resource field that may hold secrets under names of their own (`Authorization`). */
const SECRET_HOLDER = /^(headers?|auth|authorization|credentials?)$/i;
const PREVIOUS_KEYS = 'pollbridge.notification.previousSignatureKeys';
const AUTH_SECRETS = ['clientSecret', 'refreshToken', 'token', 'password'] as const;
/** AMPLIFY's Concur OAuth keys, moved into the provider block it lacks. */
const CONCUR_OAUTH = { clientId: 'oauth.api.key', clientSecret: 'oauth.api.secret', refreshToken: 'oauth.user.refresh_token' } as const;
/** Concur's access token of the moment: it expires within the hour and pollbridge gets its own. */
const CONCUR_ACCESS_TOKEN = 'oauth.user.token';
/** Credential names of the well-known secrets; any other is named after its key. */
const CREDENTIAL_NAMES: Readonly<Record<string, string>> = {
  [SIGNATURE_KEY]: 'signature-key',
  'pollbridge.callout.password': 'callout-password',
  [CONCUR_OAUTH.clientSecret]: 'client-secret',
  [CONCUR_OAUTH.refreshToken]: 'refresh-token',
  clientSecret: 'client-secret',
  refreshToken: 'refresh-token',
  token: 'token',
  password: 'password',
};

/** Whether a `configuration` key holds a secret, by AMPLIFY's naming of its keys. */
export function isSecretKey(key: string): boolean {
  const lower = key.toLowerCase();
  if (lower.endsWith('signature.key') || key === PREVIOUS_KEYS) return true;
  const last = lower.slice(lower.lastIndexOf('.') + 1);
  return ['secret', 'password', 'token'].some((word) => last.includes(word));
}

/**
 * The file name part of an instance name: lower case ASCII letters, digits and dashes. A name
 * with none of those (all in another script) gets a stable name of its hash.
 */
export function slugOf(name: string): string {
  const slug = name.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase()
    .replace(/[^a-z0-9]+/g, '-').replace(/^-+/, '').slice(0, 80).replace(/-+$/, '');
  return slug || `instance-${createHash('sha256').update(name).digest('hex').slice(0, 10)}`;
}

/** The instances of an export: one object, the array `GET /instances` returns, or `{ "instances": [...] }`. */
function itemsOf(parsed: unknown): { item: unknown; at: string }[] {
  if (Array.isArray(parsed)) return parsed.map((item, i) => ({ item, at: `[${i}]` }));
  if (isObject(parsed) && Array.isArray(parsed.instances)) return parsed.instances.map((item, i) => ({ item, at: `instances[${i}]` }));
  if (isObject(parsed)) return [{ item: parsed, at: 'the instance' }];
  throw new AmplifyImportError('must hold an AMPLIFY instance object, or an array of them as GET /instances returns');
}

/**
 * Reads a whole export. Every instance is checked before any is returned: a bad item, a missing
 * name, or two names that would share a file are reported together, in one line.
 */
export function importAmplifyExport(parsed: unknown, options: ImportOptions = {}): ImportedInstance[] {
  const items = itemsOf(parsed);
  if (items.length === 0) throw new AmplifyImportError('holds no instance (an empty array)');
  const problems: string[] = [];
  const named: { inst: Record<string, unknown>; at: string; name: string; slug: string }[] = [];
  for (const { item, at } of items) {
    if (!isObject(item)) {
      problems.push(`${at} is not an object`);
      continue;
    }
    if (typeof item.name !== 'string' || item.name.trim() === '') {
      problems.push(`${at} has no name`);
      continue;
    }
    named.push({ inst: item, at, name: item.name, slug: slugOf(item.name) });
  }
  const bySlug = new Map<string, typeof named>();
  for (const n of named) bySlug.set(n.slug, [...(bySlug.get(n.slug) ?? []), n]);
  for (const [slug, same] of bySlug) {
    if (same.length < 2) continue;
    const who = same.map((n) => `"${n.name}" (${n.at})`).join(', ');
    problems.push(same.every((n) => n.name === same[0]!.name)
      ? `the name "${same[0]!.name}" is used ${same.length} times: ${same.map((n) => n.at).join(', ')}`
      : `${who} would all be written to ${slug}.json: rename all but one in the export`);
  }
  if (problems.length > 0) throw new AmplifyImportError(problems.join('; '));
  return named.map((n) => importInstance(n.inst, n.name, n.slug, options));
}

/** Hands out credential names for one instance, `<slug>.<what>`, each once. */
class CredentialList {
  readonly items: ImportedCredential[] = [];
  constructor(readonly slug: string, readonly instance: string) {}

  /** The reference to write in place of `value`; the value itself becomes a credential to write, or to create when absent. */
  add(base: string, what: string, value: unknown): string {
    let name = `${this.slug}.${base}`;
    for (let n = 2; this.items.some((c) => c.name === name); n++) name = `${this.slug}.${base}-${n}`;
    const text = value === undefined || value === null || value === '' ? undefined
      : typeof value === 'string' ? value : JSON.stringify(value);
    const present = text !== undefined && !MASKED.test(text);
    this.items.push({ name, what, instance: this.instance, ...(present ? { value: new SecretValue(text) } : {}) });
    return `\${credential:${name}}`;
  }
}

const isEmpty = (value: unknown): boolean => value === undefined || value === null || value === '';
const credentialBase = (key: string): string => CREDENTIAL_NAMES[key] ?? key.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

function importInstance(inst: Record<string, unknown>, name: string, slug: string, options: ImportOptions): ImportedInstance {
  const credentials = new CredentialList(slug, name);
  const dropped = Object.keys(inst).filter((k) => !(INSTANCE_KEYS as readonly string[]).includes(k));
  const notes: string[] = [];
  const out: Record<string, unknown> = { name };

  const element = inst.element;
  if (isObject(element)) {
    out.element = Object.fromEntries(Object.entries(element).filter(([k]) => (ELEMENT_KEYS as readonly string[]).includes(k)));
    dropped.push(...Object.keys(element).filter((k) => !(ELEMENT_KEYS as readonly string[]).includes(k)).map((k) => `element.${k}`));
  } else if (element !== undefined) {
    out.element = element;
  }
  const elementKey = isObject(element) ? element.key : undefined;
  const configuration = isObject(inst.configuration) ? { ...inst.configuration } : inst.configuration;

  if (inst.provider !== undefined) {
    out.provider = isObject(inst.provider) ? providerOf(inst.provider, credentials) : inst.provider;
  } else if (elementKey === CONCUR_ELEMENT && isObject(configuration)) {
    out.provider = concurProvider(configuration, credentials, options.baseUrl ?? DEFAULT_CONCUR_BASE_URL);
    const moved = Object.values(CONCUR_OAUTH).filter((k) => configuration[k] !== undefined);
    const accessToken = configuration[CONCUR_ACCESS_TOKEN] !== undefined;
    notes.push(`provider built for Concur (${options.baseUrl ?? DEFAULT_CONCUR_BASE_URL})`
      + (moved.length > 0 ? ` from ${moved.join(', ')}, moved out of configuration` : '')
      + (accessToken ? `; ${CONCUR_ACCESS_TOKEN} left out (an access token: pollbridge gets its own)` : ''));
    for (const key of Object.values(CONCUR_OAUTH)) delete configuration[key];
    if (accessToken) {
      delete configuration[CONCUR_ACCESS_TOKEN];
      dropped.push(`configuration["${CONCUR_ACCESS_TOKEN}"]`);
    }
  } else {
    notes.push('no provider block: add one ("provider": { "baseUrl": …, "auth": … }); pollbridge refuses this file until then');
  }

  if (isObject(configuration) && configuration[POLLER_CONFIGURATION] !== undefined) {
    const { value, left } = withoutResourceSecrets(configuration[POLLER_CONFIGURATION]);
    if (left.length > 0) {
      configuration[POLLER_CONFIGURATION] = value;
      dropped.push(...left.map((at) => `configuration["${POLLER_CONFIGURATION}"]${at}`));
      notes.push(`left out ${left.length} field(s) of ${POLLER_CONFIGURATION} that may hold secrets and that pollbridge does not read (${left.map((at) => at.replace(/^\./, '')).join(', ')})`);
    }
  }

  // pollbridge has no such flag: only event.notification.enabled decides whether it polls.
  const enabled = isObject(configuration) ? configuration['event.notification.enabled'] : undefined;
  if (inst.disabled === true && (enabled === true || enabled === 'true')) {
    notes.push('disabled in AMPLIFY, but its event.notification.enabled is true: pollbridge will poll it (set it to "false" to keep it off)');
  }
  if (isObject(configuration)) out.configuration = configurationOf(configuration, credentials);
  else if (configuration !== undefined) out.configuration = configuration;
  if (inst.tags !== undefined) out.tags = inst.tags;
  return { name, fileName: `${slug}.json`, instance: out, credentials: credentials.items, dropped, notes };
}

function providerOf(provider: Record<string, unknown>, credentials: CredentialList): Record<string, unknown> {
  if (!isObject(provider.auth)) return { ...provider };
  const auth = { ...provider.auth };
  for (const key of AUTH_SECRETS) {
    const value = auth[key];
    if (isEmpty(value) || holdsReference(value)) continue;
    auth[key] = credentials.add(CREDENTIAL_NAMES[key]!, `provider.auth.${key}`, value);
  }
  return { ...provider, auth };
}

/** A missing client id or secret still gets its reference: the file is complete once the operator creates the credential. */
function concurProvider(configuration: Record<string, unknown>, credentials: CredentialList, baseUrl: string): Record<string, unknown> {
  const from = (field: keyof typeof CONCUR_OAUTH, what: string): unknown => {
    const key = CONCUR_OAUTH[field];
    const value = configuration[key];
    return holdsReference(value) ? value : credentials.add(credentialBase(key), `${what} (${key})`, value);
  };
  const clientId = configuration[CONCUR_OAUTH.clientId];
  return {
    baseUrl,
    auth: {
      type: 'oauth2_refresh_token',
      clientId: isEmpty(clientId) ? credentials.add('client-id', `Concur client id (${CONCUR_OAUTH.clientId})`, undefined) : clientId,
      clientSecret: from('clientSecret', 'Concur client secret'),
      refreshToken: from('refreshToken', 'Concur refresh token'),
    },
  };
}

function configurationOf(configuration: Record<string, unknown>, credentials: CredentialList): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(configuration)) {
    if (!isSecretKey(key) || isEmpty(value) || holdsReference(value)) {
      out[key] = value;
    } else if (key === PREVIOUS_KEYS) {
      const keys = typeof value === 'string' ? value.split(',').map((s) => s.trim()).filter(Boolean) : Array.isArray(value) ? value : [value];
      out[key] = keys.map((k, i) => (holdsReference(k) ? k : credentials.add(`previous-signature-key-${i + 1}`, `${key}[${i}]`, k)));
    } else {
      out[key] = credentials.add(credentialBase(key), `configuration["${key}"]`, value);
    }
  }
  return out;
}

/** A key as a path step: `.pageSize`, or `["api.token"]` for one a dot path would misread. */
const step = (key: string): string => (/^[A-Za-z_][\w-]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`);

/**
 * A resource may carry a secret in a field pollbridge does not read (a header, a token): the
 * loader ignores such fields, so it would sit, unused, in a file others can read. Such fields are
 * left out; the JSON string AMPLIFY may have written stays a string. Resource names are kept
 * whatever they say (a resource may be called `tokens`).
 */
function withoutResourceSecrets(poller: unknown): { value: unknown; left: string[] } {
  let parsed: unknown = poller;
  if (typeof poller === 'string') {
    try {
      parsed = JSON.parse(poller);
    } catch {
      return { value: poller, left: [] };
    }
  }
  if (!isObject(parsed)) return { value: poller, left: [] };
  const left: string[] = [];
  const kept = Object.fromEntries(Object.entries(parsed).map(([name, resource]) => {
    if (!isObject(resource)) return [name, resource];
    return [name, Object.fromEntries(Object.entries(resource).filter(([key]) => {
      const secret = !RESOURCE_FIELDS.has(key) && (isSecretKey(key) || SECRET_HOLDER.test(key));
      if (secret) left.push(`${step(name)}${step(key)}`);
      return !secret;
    }))];
  }));
  if (left.length === 0) return { value: poller, left };
  return { value: typeof poller === 'string' ? JSON.stringify(kept) : kept, left };
}
