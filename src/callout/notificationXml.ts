import type { CalloutNotification } from '../store/types.js';
import { parseXml } from './xml.js';

/** A body or list that is XML (or JSON) but not what Concur sends. The message is one line. */
export class NotificationFormatError extends Error {}

/** One item of Concur's failed-notification list. */
export type FailedItem = {
  notification: CalloutNotification;
  /** Where the item is deleted at Concur once its receipt is committed. */
  notificationUri: string;
  /**
   * The item's own text: JSON.stringify of a JSON item; an XML item re-serialised as a standalone
   * `<Notification>` (its child elements and text, without namespace or attributes).
   */
  body: string;
};

const OBJECT_TYPES = ['EXPRPT', 'TRAVELREQ'];

/** Input quoted in a reason: one line, at most 80 characters. */
function quote(value: string): string {
  const flat = value.replace(/\s+/g, ' ');
  return JSON.stringify(flat.length > 80 ? `${flat.slice(0, 80)}…` : flat);
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isAbsoluteHttpUrl(value: string): boolean {
  if (!/^https?:\/\//i.test(value)) return false;
  try {
    new URL(value);
    return true;
  } catch {
    return false;
  }
}

/** A reader of one named field: `<Name>` for XML, `"Name"` for JSON, as reasons name them. */
type Field = (name: string) => { label: string; value: unknown };

function text(field: Field, name: string, required: boolean): string {
  const { label, value } = field(name);
  if (value === undefined || value === null) {
    if (required) throw new NotificationFormatError(`${label} is missing`);
    return '';
  }
  if (Array.isArray(value)) throw new NotificationFormatError(`${label} appears more than once`);
  if (typeof value !== 'string') throw new NotificationFormatError(`${label} is ${kindOf(value)}, not text`);
  const trimmed = value.trim();
  if (required && trimmed === '') throw new NotificationFormatError(`${label} is empty`);
  return trimmed;
}

function httpUrl(field: Field, name: string): string {
  const value = text(field, name, true);
  if (!isAbsoluteHttpUrl(value)) throw new NotificationFormatError(`${field(name).label} is not an absolute http(s) URL: ${quote(value)}`);
  return value;
}

function notificationFields(field: Field): CalloutNotification {
  const eventType = text(field, 'EventType', true);
  const objectType = text(field, 'ObjectType', true);
  if (!OBJECT_TYPES.includes(objectType)) {
    throw new NotificationFormatError(`${field('ObjectType').label} is ${quote(objectType)}: only EXPRPT and TRAVELREQ are sent by Concur`);
  }
  const objectUri = httpUrl(field, 'ObjectURI');
  const eventDateTime = text(field, 'EventDateTime', true);
  const context = text(field, 'Context', false);
  return { eventType, objectType, objectUri, eventDateTime, context };
}

function xmlFields(element: unknown): Field {
  const children = isRecord(element) ? element : {};
  return (name) => ({ label: `<${name}>`, value: children[name] });
}

function rootOf(document: Record<string, unknown>, expected: string): unknown {
  const [tag] = Object.keys(document) as [string];
  if (tag !== expected) throw new NotificationFormatError(`the root element is <${quote(tag).slice(1, -1)}>, not <${expected}>`);
  return document[tag];
}

/**
 * Concur's pushed `<Notification>` (namespace allowed, elements in any order, text trimmed,
 * `<Context>` optional). Throws UnsafeXmlError, XmlSyntaxError or NotificationFormatError.
 */
export function parseNotification(body: string): CalloutNotification {
  const root = rootOf(parseXml(body.trim()), 'Notification');
  return notificationFields(xmlFields(root));
}

/** XML text for one parsed element's content; text escaped so that the result parses again. */
function toXml(tag: string, value: unknown): string {
  if (Array.isArray(value)) return value.map((item) => toXml(tag, item)).join('');
  if (isRecord(value)) {
    const inner = Object.entries(value)
      .map(([child, childValue]) => (child === '#text' ? escapeXml(String(childValue)) : toXml(child, childValue)))
      .join('');
    return `<${tag}>${inner}</${tag}>`;
  }
  const content = String(value);
  return content === '' ? `<${tag}/>` : `<${tag}>${escapeXml(content)}</${tag}>`;
}

function escapeXml(value: string): string {
  return value.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

function readItem(fields: Field, uriNames: readonly string[]): Omit<FailedItem, 'body'> {
  const notification = notificationFields(fields);
  const uriName = uriNames.find((name) => fields(name).value !== undefined) ?? uriNames[0]!;
  return { notification, notificationUri: httpUrl(fields, uriName) };
}

type ListFormat = 'json' | 'xml';

function formatOf(text: string, contentType: string | undefined): ListFormat {
  const mediaType = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (/^[\w.+-]+\/([\w.-]+\+)?json$/.test(mediaType)) return 'json';
  if (/^[\w.+-]+\/([\w.-]+\+)?xml$/.test(mediaType)) return 'xml';
  const first = text.trimStart().replace(/^\uFEFF/, '')[0];
  if (first === '[' || first === '{') return 'json';
  if (first === '<') return 'xml';
  throw new NotificationFormatError(`the failed-notification list is neither JSON nor XML (Content-Type ${quote(contentType ?? 'none')}, body starts with ${quote(text.trimStart().slice(0, 20))})`);
}

/** Each item read, or its 1-based position and reason in `problems`: never silently dropped. */
function readItems<T>(raw: readonly T[], read: (item: T) => FailedItem): { items: FailedItem[]; problems: string[] } {
  const items: FailedItem[] = [];
  const problems: string[] = [];
  raw.forEach((item, index) => {
    try {
      items.push(read(item));
    } catch (err) {
      if (!(err instanceof NotificationFormatError)) throw err;
      problems.push(`item ${index + 1} of ${raw.length}: ${err.message}`);
    }
  });
  return { items, problems };
}

function parseJsonList(text: string): { items: FailedItem[]; problems: string[] } {
  let list: unknown;
  try {
    list = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    throw new NotificationFormatError(`the failed-notification list is not valid JSON: ${(err as Error).message.split('\n')[0]!.slice(0, 100)}`, { cause: err });
  }
  if (!Array.isArray(list)) throw new NotificationFormatError(`the failed-notification list is ${kindOf(list)}, not a JSON array`);
  return readItems(list, (item: unknown) => {
    if (!isRecord(item)) throw new NotificationFormatError(`it is ${kindOf(item)}, not an object`);
    const fields: Field = (name) => ({ label: `"${name}"`, value: item[name] });
    // Concur's table names the field NotificationURL, its examples NotificationURI.
    return { ...readItem(fields, ['NotificationURI', 'NotificationURL']), body: JSON.stringify(item) };
  });
}

function parseXmlList(text: string): { items: FailedItem[]; problems: string[] } {
  const root = rootOf(parseXml(text.trim()), 'NotificationList');
  if (root === '') return { items: [], problems: [] };
  if (!isRecord(root)) throw new NotificationFormatError(`<NotificationList> holds ${kindOf(root)}, not <Notification> elements`);
  const listed = root['Notification'];
  const notifications = listed === undefined ? [] : Array.isArray(listed) ? listed : [listed];
  return readItems(notifications, (element: unknown) => ({
    ...readItem(xmlFields(element), ['NotificationURI', 'NotificationURL']),
    body: toXml('Notification', element),
  }));
}

/**
 * Concur's failed-notification list: a JSON array or an XML `<NotificationList>`, told apart by
 * the content type, else by the first character. A list that is not a list throws
 * NotificationFormatError (or UnsafeXmlError / XmlSyntaxError); an unreadable item is a problem.
 */
export function parseFailedList(text: string, contentType: string | undefined): { items: FailedItem[]; problems: string[] } {
  return formatOf(text, contentType) === 'json' ? parseJsonList(text) : parseXmlList(text);
}
