#!/usr/bin/env -S node --max-semi-space-size=2 --max-old-space-size=128
import { holdSignals } from './cli/heldSignals.js';

holdSignals();

// `pollbridge events list | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

// Loaded after the signals are held: loading takes a while, and a signal meanwhile must not kill.
const { runCli } = await import('./cli/program.js');
await runCli(process.argv);
