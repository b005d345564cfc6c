// fast-xml-parser: a well-kept parser whose entity processing can be switched off entirely and
// whose output is plain objects (no DOM to walk, nothing fetched, nothing expanded).
import { XMLParser, XMLValidator } from 'fast-xml-parser';

/** A document with a DTD or an entity declaration: refused before any parsing. */
export class UnsafeXmlError extends Error {}

/** Text that is not well-formed XML. */
export class XmlSyntaxError extends Error {}

/**
 * Any markup declaration (`<!DOCTYPE`, `<!ENTITY`, and the `<!ELEMENT`/`<!ATTLIST`/`<!NOTATION`
 * that can only live inside one). Concur never sends a DTD, so refusing them outright makes
 * external entities (XXE) and entity expansion (billion laughs) impossible instead of limited.
 * Comments (`<!--`) and CDATA (`<![CDATA[`) do not match: they start with a non-letter.
 */
const MARKUP_DECLARATION = /<!\s*(doctype|entity|element|attlist|notation)/i;

// A Map, not an object literal: `&toString;` must not find Object.prototype.toString.
const PREDEFINED = new Map([
  ['amp', '&'],
  ['lt', '<'],
  ['gt', '>'],
  ['quot', '"'],
  ['apos', "'"],
]);

// The parser below never decodes anything (the second wall); text is decoded here, and only
// what XML itself predefines: the five named entities and character references.
const REFERENCE = /&(#x[0-9a-fA-F]+|#[0-9]+|[^;&\s]*);/g;

// XML 1.0 `Char`: a character reference to anything else is not well-formed.
function isXmlChar(code: number): boolean {
  return code === 0x9 || code === 0xa || code === 0xd || (code >= 0x20 && code <= 0xd7ff) || (code >= 0xe000 && code <= 0xfffd) || (code >= 0x10000 && code <= 0x10ffff);
}

/** `line L, column C` of the first occurrence of `needle` in `text`, for an error message. */
function positionOf(text: string, needle: string): string {
  const at = text.indexOf(needle);
  if (at < 0) return '';
  const before = text.slice(0, at);
  const line = before.split('\n').length;
  return ` at line ${line}, column ${at - before.lastIndexOf('\n')}`;
}

function oneLine(text: string, max = 80): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

function decodeText(text: string, source: string): string {
  return text.replace(REFERENCE, (whole, ref: string) => {
    if (ref.startsWith('#')) {
      const code = ref[1] === 'x' ? Number.parseInt(ref.slice(2), 16) : Number.parseInt(ref.slice(1), 10);
      if (!isXmlChar(code)) throw new XmlSyntaxError(`character reference ${oneLine(whole, 20)} is not an XML character${positionOf(source, whole)}`);
      return String.fromCodePoint(code);
    }
    const predefined = PREDEFINED.get(ref);
    if (predefined === undefined) throw new XmlSyntaxError(`undefined entity ${oneLine(whole, 40)}${positionOf(source, whole)}: only &amp; &lt; &gt; &quot; &apos; and character references are allowed`);
    return predefined;
  });
}

/**
 * Where the spaces, comments and processing instructions starting at `from` end (scanned, not
 * matched by a regular expression: a lazy pattern over many comments backtracks exponentially).
 */
function skipMisc(text: string, from: number): number {
  let at = from;
  for (;;) {
    while (at < text.length && /\s/.test(text[at]!)) at++;
    const close = text.startsWith('<!--', at) ? '-->' : text.startsWith('<?', at) ? '?>' : undefined;
    if (close === undefined) return at;
    const end = text.indexOf(close, at + 2);
    if (end < 0) return at;
    at = end + close.length;
  }
}

/** Where the start tag at `from` ends (after its `>`), quoted attribute values skipped. */
function startTagEnd(text: string, from: number): number {
  let quote: string | undefined;
  for (let at = from + 1; at < text.length; at++) {
    const c = text[at]!;
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === '>') {
      return at + 1;
    }
  }
  return text.length;
}

/**
 * The validator reports text after a root element `<a></a>` but not after `<a/>`, and the parser
 * drops it: checked here (comments, processing instructions and spaces may follow).
 */
function hasTextAfterEmptyRoot(text: string): boolean {
  const root = skipMisc(text, text.startsWith('\uFEFF') ? 1 : 0);
  const end = startTagEnd(text, root);
  return text[end - 2] === '/' && skipMisc(text, end) < text.length;
}

// The second wall, should a declaration ever get past the check in parseXml: with entity
// processing off the parser substitutes nothing, neither DTD entities nor HTML ones (it has no
// switch to skip a DOCTYPE, but reads one only to collect entities it then never uses).
// preserveOrder: the ordered output lets text and CDATA be told apart below.
const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: true,
  removeNSPrefix: true,
  parseTagValue: false,
  processEntities: false,
  htmlEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  trimValues: true,
  // Kept apart so that CDATA, unlike text, is not entity-decoded.
  cdataPropName: '#cdata',
});

type OrderedNode = Record<string, unknown>;

function isTextNode(node: OrderedNode): node is { '#text': string } {
  return typeof node['#text'] === 'string';
}

/** The tag name of an element node in the parser's ordered output (its only key). */
function tagOf(node: OrderedNode): string {
  return Object.keys(node)[0]!;
}

/**
 * One element's children as JSON: text only → a string ('' when empty); element children → an
 * object, repeated names as arrays, any text between them under `#text`.
 */
function elementValue(children: OrderedNode[], source: string): unknown {
  let text = '';
  const fields = new Map<string, unknown[]>();
  for (const child of children) {
    if (isTextNode(child)) {
      text += decodeText(child['#text'], source);
      continue;
    }
    const tag = tagOf(child);
    if (tag === '#cdata') {
      for (const part of child[tag] as OrderedNode[]) if (isTextNode(part)) text += part['#text'];
      continue;
    }
    const values = fields.get(tag) ?? [];
    values.push(elementValue(child[tag] as OrderedNode[], source));
    fields.set(tag, values);
  }
  if (fields.size === 0) return text;
  // fromEntries defines own properties: no key, however named, reaches a prototype.
  const entries: [string, unknown][] = [...fields].map(([tag, values]) => [tag, values.length === 1 ? values[0] : values]);
  if (text !== '') entries.push(['#text', text]);
  return Object.fromEntries(entries);
}

/**
 * Well-formed XML as JSON: the root element as the single key; elements as keys without their
 * namespace prefix; attributes (xmlns and the rest) dropped; text as strings, never numbers (an id
 * `00123` stays text); an empty element as ''; repeated elements as arrays. Only the predefined
 * entities and character references are decoded.
 */
export function parseXml(text: string): Record<string, unknown> {
  const declaration = MARKUP_DECLARATION.exec(text);
  if (declaration) {
    throw new UnsafeXmlError(`the XML has a <!${declaration[1]!.toUpperCase()}> declaration${positionOf(text, declaration[0])}: DTDs and entity declarations are refused`);
  }
  const valid = XMLValidator.validate(text);
  if (valid !== true) {
    const { msg, line, col } = valid.err;
    const where = line === undefined ? '' : col === undefined ? ` at line ${line}` : ` at line ${line}, column ${col}`;
    throw new XmlSyntaxError(`not well-formed XML${where}: ${oneLine(msg, 160)}`);
  }
  let ordered: OrderedNode[];
  try {
    ordered = parser.parse(text) as OrderedNode[];
  } catch (err) {
    // The parser's own refusals: nesting deeper than its limit, names such as __proto__.
    throw new XmlSyntaxError(`XML refused by the parser: ${oneLine((err as Error).message, 160)}`, { cause: err });
  }
  if (hasTextAfterEmptyRoot(text)) throw new XmlSyntaxError('not well-formed XML: content after the root element');
  const roots = ordered.filter((node) => !isTextNode(node));
  if (roots.length !== 1) throw new XmlSyntaxError(`not well-formed XML: ${roots.length} root elements, not one`);
  const root = roots[0]!;
  const tag = tagOf(root);
  return Object.fromEntries([[tag, elementValue(root[tag] as OrderedNode[], text)]]);
}
