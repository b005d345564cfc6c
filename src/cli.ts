#!/usr/bin/env -S node --max-semi-space-size=2 --max-old-space-size=128
import { runCli } from './cli/program.js';

// `pollbridge events list | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

await runCli(process.argv);
