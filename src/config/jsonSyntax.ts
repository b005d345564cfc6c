/** Where a JSON text first goes wrong: 1-based line and column, and what was expected there. */
export type JsonSyntaxError = { line: number; column: number; message: string };

class Failure extends Error {
  constructor(readonly offset: number, message: string) {
    super(message);
  }
}

const UNQUOTED = 'an unquoted word';

/**
 * Whether a bare word of the file may be quoted in an error: a near miss of a JSON literal
 * (`tru`, `True`, `NULL`) or too short to be a secret. Any other may be a secret written
 * without its quotes, or the rest of one after a quote it holds, and the error goes to a log.
 */
function nameable(word: string): boolean {
  const lower = word.toLowerCase();
  return word.length < 4 || ['true', 'false', 'null'].some((literal) => literal.startsWith(lower));
}

/**
 * Finds the first syntax error of `text` by the JSON grammar. Node's own message names no
 * position for some errors ("Unexpected token '}'", "Unexpected end of JSON input") and never a
 * line, which is what an operator editing a file needs. Undefined when the text is valid JSON.
 */
export function findJsonSyntaxError(text: string): JsonSyntaxError | undefined {
  let i = 0;
  const fail = (message: string): never => {
    throw new Failure(i, message);
  };
  const shown = (): string => {
    if (i >= text.length) return 'the end of the file';
    const word = /^\w+/.exec(text.slice(i, i + 40))?.[0];
    return word === undefined || nameable(word) ? `"${word ?? text[i]}"` : UNQUOTED;
  };
  const space = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const expect = (char: string, what: string): void => {
    space();
    if (text[i] !== char) fail(`expected ${what}, found ${shown()}`);
    i++;
  };
  const string = (): void => {
    i++;
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text[i]!;
      if (c === '"') break;
      if (c < ' ') fail('control character in a string (write \\n, \\t …)');
      if (c === '\\') {
        i++;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail('bad \\u escape');
          i += 4;
        } else if (!'"\\/bfnrt'.includes(text[i] ?? 'x')) {
          fail(`bad escape "\\${text[i] ?? ''}"`);
        }
      }
      i++;
    }
    i++;
  };
  const value = (): void => {
    space();
    const c = text[i];
    if (c === '{') {
      i++;
      space();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        space();
        if (text[i] !== '"') fail(`expected a property name in double quotes, found ${shown()}`);
        string();
        expect(':', '":" after the property name');
        value();
        space();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return;
        }
        fail(`expected "," or "}" after a property value, found ${shown()}`);
      }
    }
    if (c === '[') {
      i++;
      space();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        value();
        space();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return;
        }
        fail(`expected "," or "]" after an array element, found ${shown()}`);
      }
    }
    if (c === '"') return string();
    const literal = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(text.slice(i, i + 400));
    if (!literal) fail(`expected a value, found ${shown()}`);
    i += literal![0].length;
  };
  try {
    value();
    space();
    if (i < text.length) fail(`unexpected ${shown().replace(/^an /, '')} after the end of the JSON value`);
    return undefined;
  } catch (err) {
    if (!(err instanceof Failure)) throw err;
    const before = text.slice(0, err.offset);
    const line = before.split('\n').length;
    const column = err.offset - before.lastIndexOf('\n');
    return { line, column, message: err.message };
  }
}
