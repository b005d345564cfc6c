import { closest } from './editDistance.js';
import { childPath, type IssueList } from './issues.js';
import {
  AMPLIFY_CONFIGURATION_KEYS, AMPLIFY_INSTANCE_FIELDS, AUTH_KEYS, CALLOUT_KEYS, CALLOUT_TLS_KEYS, CONCUR_ELEMENT, DATES_KEYS, ELEMENT_KEYS, HTTP_KEYS, INSTANCE_EXTENSION_KEYS, INSTANCE_KEYS,
  POLLING_KEYS, PROVIDER_KEYS, RESOURCE_EXTENSION_KEYS, RESOURCE_KEYS, ROOT_KEYS, SECRET_KINDS, URL_MACROS,
} from './keys.js';
import { isObject } from './read.js';

/*
 * Checks of the file as written, before references are resolved: what reads as valid but would
 * fail or be ignored at run time. Outside AMPLIFY's `configuration` every key is pollbridge's
 * own, so an unknown one is an error; inside it AMPLIFY writes keys of its own, so only a near
 * miss of a key pollbridge reads is worth a warning.
 */

export const URL_KINDS: readonly string[] = [...SECRET_KINDS, ...URL_MACROS];
const CONFIGURATION_KEYS: readonly string[] = [...AMPLIFY_CONFIGURATION_KEYS, ...INSTANCE_EXTENSION_KEYS];
const RESOURCE_FIELDS: readonly string[] = [...RESOURCE_KEYS, ...RESOURCE_EXTENSION_KEYS];

/**
 * What is wrong with the `${…}` references of one string: a `${` never closed, or a kind that is
 * not one of `kinds` (it would be taken literally, or fail every poll). The string itself is
 * never quoted: it may be a secret.
 */
export function referenceProblems(value: string, kinds: readonly string[]): string[] {
  const problems: string[] = [];
  for (let at = value.indexOf('${'); at >= 0; at = value.indexOf('${', at + 2)) {
    const close = value.indexOf('}', at);
    if (close < 0) {
      problems.push(`has a "\${" (character ${at + 1}) that no "}" closes`);
      break;
    }
    const kind = /^[^:}]*/.exec(value.slice(at + 2))![0];
    if (!kinds.includes(kind)) {
      const suggestion = closest(kind, kinds);
      const rest = value[at + 2 + kind.length] === ':' ? ':…}' : '}';
      const named = /^[A-Za-z]+$/.test(kind) ? `"\${${kind}${rest}"` : '"${…}"';
      problems.push(`unknown reference ${named} (known here: ${kinds.join(', ')})${suggestion ? `: did you mean "\${${suggestion}${rest}"?` : ''}`);
    }
    at = close - 1;
  }
  return problems;
}

const PLACEHOLDER_WORD = /\bYOUR[-_][A-Z0-9_-]*[A-Z0-9]/;
/** RFC 2606's names for documentation: no real service answers there. */
const EXAMPLE_HOST = /^(?:.+\.)?example\.(?:com|net|org)$|^(?:.+\.)?(?:example|invalid)$/i;

/** The example's placeholder in a value, if it still holds one. */
export function placeholderIn(value: string): string | undefined {
  const word = PLACEHOLDER_WORD.exec(value);
  if (word) return word[0];
  for (const m of value.matchAll(/\bhttps?:\/\/([^/:?#\s'"]+)/gi)) {
    if (EXAMPLE_HOST.test(m[1]!)) return m[1];
  }
  return undefined;
}

/** Reports the unknown keys of one object, naming the known one nearest to each. */
function unknownKeys(obj: Record<string, unknown>, known: readonly string[], path: string, issues: IssueList, misplaced: (key: string) => string | undefined = () => undefined): void {
  for (const key of Object.keys(obj)) {
    // Misplaced `pollbridge.` keys are reported by the loader, with where they belong.
    if (known.includes(key) || key.startsWith('pollbridge.')) continue;
    const suggestion = closest(key, known);
    issues.add(childPath(path, key), misplaced(key)
      ?? (suggestion ? `unknown key, ignored as it is: did you mean "${suggestion}"?` : `unknown key (known here: ${known.join(', ')})`));
  }
}

/** A near miss of a key pollbridge reads, among AMPLIFY's own keys: a warning, as AMPLIFY may have its reasons. */
function nearMisses(obj: Record<string, unknown>, known: readonly string[], path: string, issues: IssueList): void {
  for (const key of Object.keys(obj)) {
    if (known.includes(key) || key.startsWith('pollbridge.')) continue;
    const suggestion = closest(key, known);
    if (suggestion) issues.warn(childPath(path, key), `is not read by pollbridge: did you mean "${suggestion}"?`);
  }
}

function checkStrings(value: unknown, path: string, issues: IssueList, kinds: readonly string[]): void {
  if (typeof value === 'string') {
    for (const problem of referenceProblems(value, kinds)) issues.add(path, problem);
    const placeholder = placeholderIn(value);
    if (placeholder) issues.add(path, `still holds "${placeholder}", a placeholder of the example config: put your own value here`);
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => checkStrings(v, childPath(path, i), issues, kinds));
  } else if (isObject(value)) {
    for (const [k, v] of Object.entries(value)) checkStrings(v, childPath(path, k), issues, kinds);
  }
}

const TOP_LEVEL_ONLY: readonly string[] = ['database', 'http', 'callout', 'polling', 'instancesDir'];

const belongsAtTop = (key: string): string | undefined =>
  TOP_LEVEL_ONLY.includes(key)
    ? `is read only at the top level, beside "instances" ({ "${key}": …, "instances": [ … ] }): here it would be ignored`
    : undefined;

/** A file of `{ …, instances, instancesDir }`, not a single instance. */
export const isMultiInstanceFile = (raw: Record<string, unknown>): boolean => raw.instances !== undefined || raw.instancesDir !== undefined;

/** The file's top level: `{ database, http, callout, polling, instances, instancesDir }`, or else a single instance. */
export function checkRootShape(raw: Record<string, unknown>, issues: IssueList): void {
  if (!isMultiInstanceFile(raw)) return;
  unknownKeys(raw, ROOT_KEYS, '', issues);
  if (isObject(raw.polling)) unknownKeys(raw.polling, POLLING_KEYS, 'polling', issues);
  checkStrings(raw.database, 'database', issues, SECRET_KINDS);
  if (isObject(raw.http)) {
    unknownKeys(raw.http, HTTP_KEYS, 'http', issues);
    checkStrings(raw.http, 'http', issues, SECRET_KINDS);
  }
  if (isObject(raw.callout)) {
    unknownKeys(raw.callout, CALLOUT_KEYS, 'callout', issues);
    if (isObject(raw.callout.tls)) unknownKeys(raw.callout.tls, CALLOUT_TLS_KEYS, 'callout.tls', issues);
    checkStrings(raw.callout, 'callout', issues, SECRET_KINDS);
  }
}

/**
 * The instance without AMPLIFY's read-only fields (AMPLIFY_INSTANCE_FIELDS, and all of `element`
 * but its key). `disabled: true` is the one worth a word: AMPLIFY did not run the instance, and
 * pollbridge reads `event.notification.enabled` alone.
 */
export function withoutAmplifyFields(inst: Record<string, unknown>, at: string, issues: IssueList): Record<string, unknown> {
  if (inst.disabled === true || inst.disabled === 'true') {
    issues.warn(childPath(at, 'disabled'), 'is AMPLIFY\'s flag and not read: this instance is polled if "event.notification.enabled" is true, whatever AMPLIFY did with it');
  }
  const own = Object.fromEntries(Object.entries(inst).filter(([key]) => !AMPLIFY_INSTANCE_FIELDS.includes(key)));
  const element = own.element;
  if (isObject(element)) own.element = Object.fromEntries(Object.entries(element).filter(([key]) => (ELEMENT_KEYS as readonly string[]).includes(key)));
  return own;
}

/** One instance, without AMPLIFY's read-only fields, with `event.poller.configuration` already parsed if it was a string. */
export function checkInstanceShape(inst: Record<string, unknown>, at: string, issues: IssueList): void {
  unknownKeys(inst, INSTANCE_KEYS, at, issues, belongsAtTop);
  for (const key of ['name', 'tags'] as const) checkStrings(inst[key], childPath(at, key), issues, SECRET_KINDS);
  const element = inst.element;
  if (isObject(element)) checkStrings(element, childPath(at, 'element'), issues, SECRET_KINDS);
  const provider = inst.provider;
  if (isObject(provider)) {
    const providerPath = childPath(at, 'provider');
    unknownKeys(provider, PROVIDER_KEYS, providerPath, issues);
    checkStrings(provider, providerPath, issues, SECRET_KINDS);
    if (isObject(provider.auth)) checkAuthKeys(provider.auth, childPath(providerPath, 'auth'), issues);
  }
  const configuration = inst.configuration;
  if (!isObject(configuration)) return;
  const configurationPath = childPath(at, 'configuration');
  nearMisses(configuration, CONFIGURATION_KEYS, configurationPath, issues);
  for (const [key, value] of Object.entries(configuration)) {
    // AMPLIFY's other keys are not read: what they hold is AMPLIFY's business.
    if (!CONFIGURATION_KEYS.includes(key) && !key.startsWith('pollbridge.')) continue;
    if (key !== 'event.poller.configuration') checkStrings(value, childPath(configurationPath, key), issues, SECRET_KINDS);
  }
  const poller = configuration['event.poller.configuration'];
  const resources = isObject(poller) ? Object.entries(poller).filter((e): e is [string, Record<string, unknown>] => isObject(e[1])) : [];
  const pollerPath = childPath(configurationPath, 'event.poller.configuration');
  for (const [name, resource] of resources) {
    const resourcePath = childPath(pollerPath, name);
    nearMisses(resource, RESOURCE_FIELDS, resourcePath, issues);
    if (isObject(resource.datesConfiguration)) nearMisses(resource.datesConfiguration, DATES_KEYS, childPath(resourcePath, 'datesConfiguration'), issues);
    for (const [field, value] of Object.entries(resource)) {
      checkStrings(value, childPath(resourcePath, field), issues, field === 'url' ? URL_KINDS : SECRET_KINDS);
    }
  }
  if (isObject(element)) checkElementKey(element.key, resources, childPath(childPath(at, 'element'), 'key'), issues);
}

function checkAuthKeys(auth: Record<string, unknown>, path: string, issues: IssueList): void {
  const type = typeof auth.type === 'string' ? auth.type : undefined;
  const own = type === undefined ? undefined : AUTH_KEYS[type];
  // An unknown type is reported when the file is read; its keys are judged by every type's.
  const known = own ?? [...new Set(Object.values(AUTH_KEYS).flat())];
  unknownKeys(auth, known, path, issues, (key) => {
    const owners = Object.keys(AUTH_KEYS).filter((t) => AUTH_KEYS[t]!.includes(key));
    return own && owners.length > 0 ? `is a setting of auth type ${owners.map((t) => `"${t}"`).join(' or ')}, not of "${type}": it would be ignored` : undefined;
  });
}

/**
 * Only the Concur element maps AMPLIFY's hub URLs (`/hubs/expense/reports?where=…`) to an API;
 * under any other key they are requested as they are, on `provider.baseUrl`, and every poll
 * answers 404. Element keys are case-sensitive, as in AMPLIFY.
 */
function checkElementKey(key: unknown, resources: [string, Record<string, unknown>][], path: string, issues: IssueList): void {
  if (typeof key !== 'string' || key === CONCUR_ELEMENT || key === '') return;
  const hubs = resources.filter(([, r]) => typeof r.url === 'string' && /^\/?hubs\//.test(r.url)).map(([name]) => name);
  if (closest(key, [CONCUR_ELEMENT])) {
    issues.add(path, `"${key}" is not an element pollbridge knows (keys are case-sensitive): did you mean "${CONCUR_ELEMENT}"? `
      + `Under another key, each resource's url is requested as it is on provider.baseUrl${hubs.length > 0 ? ', and the hub URLs (/hubs/…) answer 404 on every poll' : ''}`);
  } else if (hubs.length > 0) {
    issues.add(path, `"${key}" takes each resource's url as a path on provider.baseUrl, but ${hubs.map((n) => `"${n}"`).join(', ')} `
      + `${hubs.length === 1 ? 'has an AMPLIFY hub URL' : 'have AMPLIFY hub URLs'} (/hubs/…), which only element "${CONCUR_ELEMENT}" maps to its API: `
      + `every poll would answer 404. Use "${CONCUR_ELEMENT}", or the provider's own path`);
  }
}
