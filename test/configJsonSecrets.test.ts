import { describe, expect, it } from 'vitest';
import { findJsonSyntaxError } from '../src/config/jsonSyntax.js';
import { runCli } from './helpers/cli.js';
import { tempDir, writeJson } from './helpers/tmp.js';

const SECRET = 'Zq7HkP2mX9vLr4TsecretTOKEN';

describe('a JSON error never quotes a secret of the file', () => {
  it.each([
    ['a secret written without its quotes', `{\n  "token": ${SECRET}\n}`, 2, 12, 'expected a value, found an unquoted word'],
    ['a secret holding an unescaped quote', `{\n  "token": "Zq7"${SECRET}"\n}`, 2, 17, 'expected "," or "}" after a property value, found an unquoted word'],
    ['a secret after a missing comma', `[\n  "a"\n  ${SECRET}\n]`, 3, 3, 'expected "," or "]" after an array element, found an unquoted word'],
    ['a secret after the end', `{}\n${SECRET}`, 2, 1, 'unexpected unquoted word after the end of the JSON value'],
    ['a misspelt literal is not quoted either', '{\n  "a": Flase\n}', 2, 8, 'expected a value, found an unquoted word'],
    ['a near literal is named', '{\n  "a": tru\n}', 2, 8, 'expected a value, found "tru"'],
  ])('%s', (_what, text, line, column, message) => {
    const found = findJsonSyntaxError(text);
    expect(found).toEqual({ line, column, message });
    expect(JSON.stringify(found)).not.toContain('Zq7H');
  });

  it('validate and run print no part of the secret of a broken file', async () => {
    const dir = tempDir();
    const file = writeJson(dir, 'poller.config.json', `{\n  "name": "A",\n  "provider": { "auth": { "type": "bearer", "token": ${SECRET} } }\n}\n`);
    for (const [args, code] of [[['validate', '-c', file], 1], [['run', '--once', '-c', file], 2]] as const) {
      const r = await runCli([...args]);
      expect(r.code).toBe(code);
      expect(r.stdout + r.stderr).toContain('line 3, column');
      expect(r.stdout + r.stderr).not.toContain('TsecretTOK');
    }
  });
});
