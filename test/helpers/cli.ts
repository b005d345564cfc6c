import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';
import { waitFor } from './tmp.js';

export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

export type CliProcess = {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  logs: () => Record<string, unknown>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitForLog: (message: string, count?: number, timeoutMs?: number) => Promise<Record<string, unknown>>;
};

const running = new Set<ChildProcess>();

/** No test may leave a daemon behind: anything still running is killed, and the test fails. */
afterEach(() => {
  const leaked = [...running].filter((c) => c.exitCode === null && c.signalCode === null);
  for (const c of leaked) c.kill('SIGKILL');
  running.clear();
  if (leaked.length > 0) throw new Error(`${leaked.length} pollbridge process(es) left running by the test`);
});

/** Runs the built CLI as a child process, collecting its lines; `nodeArgs` go to node itself. */
export function startCli(args: string[], env: NodeJS.ProcessEnv = {}, input?: string, nodeArgs: string[] = []): CliProcess {
  const child = spawn(process.execPath, [...nodeArgs, CLI, ...args], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  running.add(child);
  const stdout: string[] = [];
  const stderr: string[] = [];
  const collect = (stream: NodeJS.ReadableStream, into: string[]) => {
    let partial = '';
    stream.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      into.push(...lines);
    });
    stream.on('end', () => {
      if (partial) into.push(partial);
    });
  };
  collect(child.stdout!, stdout);
  collect(child.stderr!, stderr);
  if (input !== undefined) child.stdin!.end(input);
  else child.stdin!.end();
  // 'close', not 'exit': by then every line of output has been read.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  const logs = (): Record<string, unknown>[] =>
    stdout.flatMap((l) => {
      if (!l.startsWith('{"')) return [];
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  return {
    child,
    stdout,
    stderr,
    logs,
    exited,
    waitForLog: (message, count = 1, timeoutMs = 15_000) =>
      waitFor(`log "${message}" x${count} (stderr: ${stderr.slice(-3).join(' | ')})`, () => {
        const found = logs().filter((l) => l.message === message);
        return found.length >= count ? found[count - 1] : undefined;
      }, timeoutMs),
  };
}

/** Runs the CLI to completion. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv = {}, input?: string) {
  const p = startCli(args, env, input);
  const result = await Promise.race([
    p.exited,
    new Promise<never>((_, reject) => setTimeout(() => {
      p.child.kill('SIGKILL');
      reject(new Error(`pollbridge ${args.join(' ')} did not exit in 30 s`));
    }, 30_000).unref()),
  ]);
  return { ...result, stdout: p.stdout.join('\n'), stderr: p.stderr.join('\n'), logs: p.logs() };
}
