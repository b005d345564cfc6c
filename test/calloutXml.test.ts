import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotificationFormatError, parseFailedList, parseNotification } from '../src/callout/notificationXml.js';
import { parseXml, UnsafeXmlError, XmlSyntaxError } from '../src/callout/xml.js';

const SECRET = 'top-secret-file-content-7f3a';
let dir: string;
let secretFile: string;
let server: Server;
let serverUrl: string;
let requestsSeen = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pollbridge-xml-'));
  secretFile = join(dir, 'secret.txt');
  writeFileSync(secretFile, SECRET);
  server = createServer((_req, res) => {
    requestsSeen++;
    res.end(SECRET);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  serverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dtd`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

/** The error `run` throws; fails the test when it throws none. */
function thrown(run: () => unknown): Error {
  try {
    run();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error, none was thrown');
}

describe('DTDs and entity declarations are refused before parsing', () => {
  const attacks: [string, () => string][] = [
    ['an external entity to a file (XXE)', () => `<?xml version="1.0"?><!DOCTYPE n [<!ENTITY xxe SYSTEM "file://${secretFile}">]><Notification><Context>&xxe;</Context></Notification>`],
    ['an external entity to a URL (XXE)', () => `<?xml version="1.0"?><!DOCTYPE n [<!ENTITY xxe SYSTEM "${serverUrl}">]><Notification><Context>&xxe;</Context></Notification>`],
    ['an external DTD by URL', () => `<!DOCTYPE Notification SYSTEM "${serverUrl}"><Notification/>`],
    [
      'the billion laughs expansion',
      () =>
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' +
        Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i === 0 ? '' : i};`.repeat(10)}">`).join('') +
        ']><lolz>&lol9;</lolz>',
    ],
    ['a DOCTYPE without entities', () => '<!DOCTYPE Notification><Notification><EventType>x</EventType></Notification>'],
    ['a lower-case doctype', () => '<!doctype Notification><Notification/>'],
    ['a parameter entity', () => `<!DOCTYPE n [<!ENTITY % remote SYSTEM "${serverUrl}"> %remote;]><n/>`],
    ['an entity of the internal subset referenced in text', () => '<!DOCTYPE n [<!ENTITY who "injected">]><n><Context>&who;</Context></n>'],
    ['an ENTITY declaration without a DOCTYPE', () => '<n><!ENTITY who "injected"><Context>&who;</Context></n>'],
    ['a DOCTYPE after the root element starts', () => '<n><!DOCTYPE x><Context/></n>'],
  ];

  it.each(attacks)('%s → UnsafeXmlError, nothing read, fetched or expanded', (_name, body) => {
    const before = requestsSeen;
    const err = thrown(() => parseXml(body()));
    expect(err).toBeInstanceOf(UnsafeXmlError);
    expect(err.message).toMatch(/^the XML has a <!(DOCTYPE|ENTITY)> declaration at line 1, column \d+: DTDs and entity declarations are refused$/);
    expect(err.message).not.toContain(SECRET);
    expect(requestsSeen).toBe(before);
    // The same from the notification parser: the refusal comes before any reading of fields.
    expect(() => parseNotification(body())).toThrow(UnsafeXmlError);
  });

  it('refuses a DTD in the failed-notification list too', () => {
    const list = `<!DOCTYPE l [<!ENTITY xxe SYSTEM "file://${secretFile}">]><NotificationList><Notification><Context>&xxe;</Context></Notification></NotificationList>`;
    expect(() => parseFailedList(list, 'application/xml')).toThrow(UnsafeXmlError);
  });

  it('names the line and column of the declaration', () => {
    expect(() => parseXml('<?xml version="1.0"?>\n  <!DOCTYPE x>\n<x/>')).toThrow(/at line 2, column 3:/);
  });
});

describe('parseXml: XML as plain JSON', () => {
  it('decodes the predefined entities and character references, and only once', () => {
    expect(parseXml('<a>x &amp; y &lt;z&gt; &quot;q&quot; &apos;s&apos; &#65;&#x42;&#x1F600; &amp;amp;</a>')).toEqual({ a: 'x & y <z> "q" \'s\' AB😀 &amp;' });
    expect(parseXml('<u>https://host/r?a=1&amp;b=2</u>')).toEqual({ u: 'https://host/r?a=1&b=2' });
  });

  it('leaves CDATA as written', () => {
    expect(parseXml('<a>x<![CDATA[<b>&amp;</b>]]>y</a>')).toEqual({ a: 'x<b>&amp;</b>y' });
  });

  it('refuses an undefined entity and a reference to a character XML does not allow', () => {
    expect(() => parseXml('<a>&nbsp;</a>')).toThrow(new XmlSyntaxError('undefined entity &nbsp; at line 1, column 4: only &amp; &lt; &gt; &quot; &apos; and character references are allowed'));
    expect(() => parseXml('<a>&toString;</a>')).toThrow(/^undefined entity &toString; at line 1, column 4/);
    expect(() => parseXml('<a>&#0;</a>')).toThrow(XmlSyntaxError);
    expect(() => parseXml('<a>&#xD800;</a>')).toThrow(/character reference &#xD800; is not an XML character/);
  });

  it('keeps text as text: 00123, true and 1e5 are not numbers or booleans', () => {
    expect(parseXml('<r><Id>00123</Id><B>true</B><E>1e5</E><N>-0</N></r>')).toEqual({ r: { Id: '00123', B: 'true', E: '1e5', N: '-0' } });
  });

  it('removes namespace prefixes and drops attributes, xmlns included', () => {
    const xml = '<c:Report xmlns:c="urn:c" xmlns="urn:d" id="7"><c:Name lang="en"> Trip </c:Name><Total currency="USD">12.50</Total></c:Report>';
    expect(parseXml(xml)).toEqual({ Report: { Name: 'Trip', Total: '12.50' } });
  });

  it('turns empty elements into "" and repeated elements into arrays, keeping the root as the single key', () => {
    expect(parseXml('<L><Context/><E></E><W>  </W><I>1</I><I>2</I><I><X>3</X></I></L>')).toEqual({ L: { Context: '', E: '', W: '', I: ['1', '2', { X: '3' }] } });
    expect(parseXml('<?xml version="1.0" encoding="utf-8"?>\n<!-- a comment -->\n<ReportDetails><ReportID>9</ReportID></ReportDetails>\n')).toEqual({ ReportDetails: { ReportID: '9' } });
  });

  it('keeps text between child elements under #text', () => {
    expect(parseXml('<a>x<b>y</b>z</a>')).toEqual({ a: { b: 'y', '#text': 'xz' } });
  });

  it('lets no element name reach a prototype', () => {
    expect(() => parseXml('<a><__proto__><polluted>1</polluted></__proto__></a>')).toThrow(XmlSyntaxError);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('refuses nesting deeper than the parser allows, as a syntax error', () => {
    const deep = '<a>'.repeat(500) + '</a>'.repeat(500);
    expect(() => parseXml(deep)).toThrow(/^XML refused by the parser: Maximum nested tags exceeded$/);
  });
});

describe('parseXml: not well-formed → XmlSyntaxError with the position', () => {
  const cases: [string, string, RegExp][] = [
    ['a mismatched closing tag', '<a>\n  <b></a>', /^not well-formed XML at line 2, column \d+: Expected closing tag 'b'/],
    ['a bare ampersand', '<a>x & y</a>', /^not well-formed XML at line 1, column 6: char '&' is not expected\.$/],
    ['text before the root', 'hello <a/>', /^not well-formed XML at line 1, column 1:/],
    ['text after the root', '<a></a>junk', /^not well-formed XML at line 1, column 8: Extra text at the end$/],
    ['text after an empty root', '<a/>junk', /^not well-formed XML: content after the root element$/],
    ['an element after an empty root', '<a/>\n<b/>', /^not well-formed XML: content after the root element$/],
    ['two root elements', '<a></a><b/>', /^not well-formed XML: 2 root elements, not one$/],
    ['CDATA before the root', '<![CDATA[x]]><a/>', /^not well-formed XML: 2 root elements, not one$/],
    ['an empty body', '', /^not well-formed XML at line 1: Start tag expected\.$/],
    ['an unclosed element', '<a><b>', /^not well-formed XML/],
  ];
  it('finds text after an empty root behind thousands of comments (a backtracking pattern never returns here)', () => {
    const comments = '<!-- c --><?pi x?>'.repeat(3000);
    expect(() => parseXml(`${comments}<a x="/>" y='>'/>${comments}junk`)).toThrow(new XmlSyntaxError('not well-formed XML: content after the root element'));
    expect(parseXml(`\uFEFF<?xml version="1.0"?>${comments}<a x="/>"/>${comments}\n`)).toEqual({ a: '' });
  });

  it.each(cases)('%s', (_name, text, message) => {
    const err = thrown(() => parseXml(text));
    expect(err).toBeInstanceOf(XmlSyntaxError);
    expect(err.message).toMatch(message);
    expect(err.message).not.toContain('\n');
  });
});

// Concur's documented push (Event Notification callout, "Send Notification").
const PUSHED = `<Notification>
  <EventType>Report Entered Expense Report Workflow Step - SUBMIT</EventType>
  <ObjectType>EXPRPT</ObjectType>
  <ObjectURI>https://www.concursolutions.com/api/expense/expensereport/v1.1/reportfulldetails/nO2ZE$sZ$pQXcHWcktDk8Khvuj$pzzeRCszEd</ObjectURI>
  <EventDateTime>2012-05-01</EventDateTime>
  <Context/>
</Notification>`;

describe('parseNotification', () => {
  it("reads Concur's documented notification", () => {
    expect(parseNotification(PUSHED)).toEqual({
      eventType: 'Report Entered Expense Report Workflow Step - SUBMIT',
      objectType: 'EXPRPT',
      objectUri: 'https://www.concursolutions.com/api/expense/expensereport/v1.1/reportfulldetails/nO2ZE$sZ$pQXcHWcktDk8Khvuj$pzzeRCszEd',
      eventDateTime: '2012-05-01',
      context: '',
    });
  });

  it('allows a namespace, any order, surrounding whitespace, a missing Context and escaped URLs', () => {
    const body = `\n  <?xml version="1.0"?><n:Notification xmlns:n="http://www.concursolutions.com/api/notification/2012/06">
      <n:Context> step 2 </n:Context><n:ObjectURI>https://h.example/r?a=1&amp;b=2</n:ObjectURI>
      <n:EventDateTime>2026-11-26</n:EventDateTime><n:ObjectType>TRAVELREQ</n:ObjectType><n:EventType> E </n:EventType>
    </n:Notification>\n`;
    expect(parseNotification(body)).toEqual({ eventType: 'E', objectType: 'TRAVELREQ', objectUri: 'https://h.example/r?a=1&b=2', eventDateTime: '2026-11-26', context: 'step 2' });
    expect(parseNotification(PUSHED.replace('<Context/>', '')).context).toBe('');
  });

  const reasons: [string, string, string][] = [
    ['another root element', '<Foo><EventType>x</EventType></Foo>', 'the root element is <Foo>, not <Notification>'],
    ['a missing ObjectURI', PUSHED.replace(/<ObjectURI>.*<\/ObjectURI>/, ''), '<ObjectURI> is missing'],
    ['a missing EventType', PUSHED.replace(/<EventType>.*<\/EventType>/, ''), '<EventType> is missing'],
    ['an empty EventDateTime', PUSHED.replace('<EventDateTime>2012-05-01</EventDateTime>', '<EventDateTime> </EventDateTime>'), '<EventDateTime> is empty'],
    ['another ObjectType', PUSHED.replace('EXPRPT', 'X'), '<ObjectType> is "X": only EXPRPT and TRAVELREQ are sent by Concur'],
    ['a relative ObjectURI', PUSHED.replace(/<ObjectURI>.*<\/ObjectURI>/, '<ObjectURI>/api/x</ObjectURI>'), '<ObjectURI> is not an absolute http(s) URL: "/api/x"'],
    ['a file ObjectURI', PUSHED.replace(/<ObjectURI>.*<\/ObjectURI>/, '<ObjectURI>file:///etc/passwd</ObjectURI>'), '<ObjectURI> is not an absolute http(s) URL: "file:///etc/passwd"'],
    ['a repeated ObjectType', PUSHED.replace('<ObjectType>EXPRPT</ObjectType>', '<ObjectType>EXPRPT</ObjectType><ObjectType>EXPRPT</ObjectType>'), '<ObjectType> appears more than once'],
    ['an EventType with elements inside', PUSHED.replace(/<EventType>.*<\/EventType>/, '<EventType><b>x</b></EventType>'), '<EventType> is an object, not text'],
    ['an empty Notification', '<Notification/>', '<EventType> is missing'],
  ];
  it.each(reasons)('%s → NotificationFormatError naming it', (_name, body, reason) => {
    const err = thrown(() => parseNotification(body));
    expect(err).toBeInstanceOf(NotificationFormatError);
    expect(err.message).toBe(reason);
  });

  it('quotes at most 80 characters of input in a reason, on one line', () => {
    const long = 'A\n'.repeat(5000);
    const err = thrown(() => parseNotification(PUSHED.replace('EXPRPT', long)));
    expect(err.message).toBe(`<ObjectType> is "${'A '.repeat(40)}…": only EXPRPT and TRAVELREQ are sent by Concur`);
    const root = thrown(() => parseNotification(`<${'R'.repeat(5000)}/>`));
    expect(root.message).toBe(`the root element is <${'R'.repeat(80)}…>, not <Notification>`);
  });
});

// Concur's documented failed-notification list, XML (namespaced) and JSON.
const LIST_XML = `<NotificationList xmlns="http://www.concursolutions.com/api/notification/2012/06" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
  <Notification>
    <Context/>
    <EventDateTime>2012-11-14T19:45:25</EventDateTime>
    <EventType>Report Entered Expense Report Workflow Step - SUBMIT</EventType>
    <NotificationURI>https://www.concursolutions.com/api/platform/notifications/v1.0/notification/nKK0a$p$sNeK2</NotificationURI>
    <ObjectType>EXPRPT</ObjectType>
    <ObjectURI>https://www.concursolutions.com/api/expense/expensereport/v2.0/report/nxxKgLlnROz3zHJBCRksaas5I9hsSFv8r</ObjectURI>
  </Notification>
  <Notification>
    <Context>Pre-Extract</Context>
    <EventDateTime>2012-11-15T08:00:00</EventDateTime>
    <EventType>Report Entered Expense Report Workflow Step - PREEXTRACT</EventType>
    <NotificationURI>https://www.concursolutions.com/api/platform/notifications/v1.0/notification/nLL1b</NotificationURI>
    <ObjectType>TRAVELREQ</ObjectType>
    <ObjectURI>https://www.concursolutions.com/api/travelrequest/v1.0/requests/gWq</ObjectURI>
  </Notification>
</NotificationList>`;

const JSON_ITEM = {
  Context: '',
  EventDateTime: '2012-11-14T19:45:25',
  EventType: 'Report Entered Expense Report Workflow Step - SUBMIT',
  NotificationURI: 'https://www.concursolutions.com/api/platform/notifications/v1.0/notification/nKK0a$p$sNeK2',
  ObjectType: 'EXPRPT',
  ObjectURI: 'https://www.concursolutions.com/api/expense/expensereport/v2.0/report/nxxKgLlnROz3zHJBCRksaas5I9hsSFv8r',
};

const FIRST = {
  eventType: 'Report Entered Expense Report Workflow Step - SUBMIT',
  objectType: 'EXPRPT',
  objectUri: 'https://www.concursolutions.com/api/expense/expensereport/v2.0/report/nxxKgLlnROz3zHJBCRksaas5I9hsSFv8r',
  eventDateTime: '2012-11-14T19:45:25',
  context: '',
};

describe('parseFailedList', () => {
  it('reads the namespaced XML list; each body is a standalone <Notification> that parses again', () => {
    const { items, problems } = parseFailedList(LIST_XML, 'application/xml; charset=utf-8');
    expect(problems).toEqual([]);
    expect(items.map((i) => i.notificationUri)).toEqual([
      'https://www.concursolutions.com/api/platform/notifications/v1.0/notification/nKK0a$p$sNeK2',
      'https://www.concursolutions.com/api/platform/notifications/v1.0/notification/nLL1b',
    ]);
    expect(items[0]!.notification).toEqual(FIRST);
    expect(items[1]!.notification).toMatchObject({ objectType: 'TRAVELREQ', context: 'Pre-Extract' });
    expect(items[0]!.body).toMatch(/^<Notification><Context\/><EventDateTime>2012-11-14T19:45:25<\/EventDateTime>.*<\/Notification>$/);
    for (const item of items) expect(parseNotification(item.body)).toEqual(item.notification);
  });

  it('reads a list of one, an empty list and a list without notifications', () => {
    const one = LIST_XML.replace(/<\/Notification>\s*<Notification>[\s\S]*<\/Notification>/, '</Notification>');
    expect(parseFailedList(one, 'text/xml').items.map((i) => i.notification)).toEqual([FIRST]);
    expect(parseFailedList('<NotificationList xmlns="http://www.concursolutions.com/api/notification/2012/06"/>', 'application/xml')).toEqual({ items: [], problems: [] });
    expect(parseFailedList('<NotificationList>\n</NotificationList>', undefined)).toEqual({ items: [], problems: [] });
    expect(parseFailedList('[]', 'application/json')).toEqual({ items: [], problems: [] });
  });

  it('keeps the escapes of an XML item body so that it parses again the same', () => {
    const list = LIST_XML.replace('<Context/>', '<Context>a &amp; &lt;b&gt;</Context>');
    const [item] = parseFailedList(list, 'application/xml').items;
    expect(item!.notification.context).toBe('a & <b>');
    expect(parseNotification(item!.body).context).toBe('a & <b>');
  });

  it('reads the JSON array, with NotificationURI or NotificationURL; each body is the item as JSON', () => {
    const { NotificationURI, ...rest } = JSON_ITEM;
    const withUrl = { ...rest, NotificationURL: NotificationURI.replace('nKK0a$p$sNeK2', 'other') };
    const text = JSON.stringify([JSON_ITEM, withUrl]);
    const { items, problems } = parseFailedList(text, 'application/json');
    expect(problems).toEqual([]);
    expect(items).toEqual([
      { notification: FIRST, notificationUri: NotificationURI, body: JSON.stringify(JSON_ITEM) },
      { notification: FIRST, notificationUri: withUrl.NotificationURL, body: JSON.stringify(withUrl) },
    ]);
  });

  it('tells JSON from XML by the content type, else by the first character', () => {
    const text = JSON.stringify([JSON_ITEM]);
    expect(parseFailedList(`\n ${text}`, undefined).items).toHaveLength(1);
    expect(parseFailedList(`\uFEFF${text}`, 'application/json; charset=utf-8').items).toHaveLength(1);
    expect(parseFailedList(text, 'text/plain').items).toHaveLength(1);
    expect(parseFailedList(text, 'application/vnd.concur+json').items).toHaveLength(1);
    expect(parseFailedList(`\n${LIST_XML}`, 'application/octet-stream').items).toHaveLength(2);
    // The content type wins: JSON said, XML sent.
    expect(() => parseFailedList(LIST_XML, 'application/json')).toThrow(/^the failed-notification list is not valid JSON: /);
    expect(() => parseFailedList('OK', 'text/plain')).toThrow(new NotificationFormatError('the failed-notification list is neither JSON nor XML (Content-Type "text/plain", body starts with "OK")'));
  });

  it('puts each unreadable item in problems with its position and reason, keeping the others', () => {
    const { NotificationURI: _uri, ...noUri } = JSON_ITEM;
    const list = [JSON_ITEM, noUri, { ...JSON_ITEM, ObjectURI: 'not a url' }, 'text', { ...JSON_ITEM, NotificationURI: 'ftp://x/y' }, { ...JSON_ITEM, Context: null }];
    const { items, problems } = parseFailedList(JSON.stringify(list), 'application/json');
    expect(items.map((i) => i.notificationUri)).toEqual([JSON_ITEM.NotificationURI, JSON_ITEM.NotificationURI]);
    expect(problems).toEqual([
      'item 2 of 6: "NotificationURI" is missing',
      'item 3 of 6: "ObjectURI" is not an absolute http(s) URL: "not a url"',
      'item 4 of 6: it is a string, not an object',
      'item 5 of 6: "NotificationURI" is not an absolute http(s) URL: "ftp://x/y"',
    ]);
    const xml = LIST_XML.replace(/<NotificationURI>[^<]*nLL1b<\/NotificationURI>/, '').replace('<ObjectType>EXPRPT</ObjectType>', '<ObjectType>PAYMENT</ObjectType>');
    expect(parseFailedList(xml, 'application/xml')).toEqual({
      items: [],
      problems: ['item 1 of 2: <ObjectType> is "PAYMENT": only EXPRPT and TRAVELREQ are sent by Concur', 'item 2 of 2: <NotificationURI> is missing'],
    });
  });

  it('throws for a list that is not a list', () => {
    expect(() => parseFailedList('{"Items":[]}', 'application/json')).toThrow(new NotificationFormatError('the failed-notification list is an object, not a JSON array'));
    expect(() => parseFailedList('null', 'application/json')).toThrow(new NotificationFormatError('the failed-notification list is null, not a JSON array'));
    expect(() => parseFailedList(PUSHED, 'application/xml')).toThrow(new NotificationFormatError('the root element is <Notification>, not <NotificationList>'));
    expect(() => parseFailedList('<NotificationList>text</NotificationList>', 'application/xml')).toThrow(new NotificationFormatError('<NotificationList> holds a string, not <Notification> elements'));
    expect(() => parseFailedList('<NotificationList><Notification></NotificationList>', 'application/xml')).toThrow(XmlSyntaxError);
  });
});
