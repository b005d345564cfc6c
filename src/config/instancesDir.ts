import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { IssueList } from './issues.js';
import { readJsonFile } from './jsonFile.js';
import { isObject } from './read.js';
import type { InstanceConfig } from './types.js';

/*
 * `instancesDir`: one AMPLIFY instance object per file. Each file stands alone: one that does not
 * validate is refused with its own issues, and the others load.
 */

/** One file of the directory as read: refused when its `issues` hold any. */
export type InstanceFile = {
  /** Absolute path: it names the file in every issue and becomes the instance's `source`. */
  file: string;
  issues: IssueList;
  instance: InstanceConfig | undefined;
  /** The instance's name, when the file could be read that far. */
  name: string | undefined;
};

/** Reads one instance object of `file`, into `issues`: the path an instance of the main file takes too. */
export type ReadInstanceObject = (raw: Record<string, unknown>, issues: IssueList, file: string) => InstanceConfig | undefined;

/**
 * The instance files of `dir` (absolute), sorted by name: every `*.json` directly in it. Hidden
 * ones (`.x.json`: editors' temp files) and anything not a file are left out. Throws when the
 * directory cannot be listed.
 */
function listInstanceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.name.endsWith('.json') && !e.name.startsWith('.') && (e.isFile() || e.isSymbolicLink()))
    .map((e) => e.name)
    .sort()
    .map((name) => join(dir, name));
}

/** Reads every instance file of `dir`; throws only when the directory itself cannot be listed. */
export function readInstanceFiles(dir: string, readOne: ReadInstanceObject): InstanceFile[] {
  return listInstanceFiles(dir).map((file) => {
    const issues = new IssueList(file);
    const json = readJsonFile(file, issues);
    if (!json) return { file, issues, instance: undefined, name: undefined };
    if (!isObject(json.value)) {
      issues.add('', Array.isArray(json.value)
        ? 'holds an array: write one instance object per file'
        : 'must hold one instance object: { "name": …, "element": …, "provider": …, "configuration": … }');
      return { file, issues, instance: undefined, name: undefined };
    }
    const raw = json.value;
    const instance = readOne(raw, issues, file);
    const name = instance?.name || (typeof raw.name === 'string' && raw.name !== '' ? raw.name : undefined);
    return { file, issues, instance, name };
  });
}

/**
 * Names are unique across the main file and the directory. An instance of the main file keeps
 * its name and the file that also takes it is refused; between files none is chosen: each one
 * is refused (a running instance of that name keeps running). Refused files count too, as the
 * daemon may still run what one held. `mainNames`: name → where the main file has it.
 */
export function refuseSharedNames(files: InstanceFile[], mainNames: ReadonlyMap<string, string>): void {
  const byName = new Map<string, InstanceFile[]>();
  for (const f of files) if (f.name !== undefined) byName.set(f.name, [...(byName.get(f.name) ?? []), f]);
  for (const [name, sharing] of byName) {
    const main = mainNames.get(name);
    for (const f of sharing) {
      const others = [...(main === undefined ? [] : [main]), ...sharing.filter((o) => o !== f).map((o) => o.file)];
      if (others.length > 0) f.issues.add('name', `"${name}" is also used by ${others.join(', ')}`);
    }
  }
}
