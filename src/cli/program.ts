import { Command, Option } from 'commander';
import { ConfigError } from '../config/issues.js';
import { StartError } from '../daemon/daemon.js';
import { StoreOpenError } from '../store/lock.js';
import { MigrationError } from '../store/migrate.js';
import { demoCommand } from './demoCommand.js';
import { eventsListCommand, eventsShowCommand, replayCommand } from './eventsCommand.js';
import { releaseSignals } from './heldSignals.js';
import { runCommand } from './runCommand.js';
import { simCommand } from './simCommand.js';
import { statusCommand } from './statusCommand.js';
import { numberOption } from './options.js';
import { UserError } from './userError.js';
import { validateCommand } from './validateCommand.js';
import { verifyCommand } from './verifyCommand.js';

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];
const rateOption = numberOption('--rate', { min: 0, max: 1000, unit: 'changes per second' });

export function buildProgram(): Command {
  const program = new Command('pollbridge')
    .description('Poll SAP Concur (or any REST list API) for changed records and deliver signed events.')
    .showHelpAfterError()
    // Only the daemon handles signals; every other command gets their default action back.
    .hook('preAction', (_program, command) => {
      if (command.name() !== 'run') releaseSignals();
    });
  const configOption = (): Option => new Option('-c, --config <file>', 'config file (default: $POLLBRIDGE_CONFIG or ./poller.config.json)');
  const dbOption = (): Option => new Option('--db <file>', 'SQLite database (default: the one the config names)');

  program.command('run')
    .description('run the daemon')
    .addOption(configOption())
    .addOption(dbOption())
    .option('--once', 'poll every resource once, deliver what can be delivered now, exit')
    .option('--since <iso>', 'on first start, announce changes since this time (backfill)')
    .option('--log-level <level>', 'error, warn, info or debug (default: $POLLBRIDGE_LOG_LEVEL or info)')
    // At most the longest a delivery attempt may take (pollbridge.delivery.timeoutMs): a longer grace waits for nothing.
    .option('--grace-ms <ms>', 'on stop, how long deliveries in flight may finish', numberOption('--grace-ms', { min: 0, max: 600_000, integer: true, unit: 'milliseconds' }))
    .action(runCommand);

  program.command('validate')
    .description('check a config file and list every problem')
    .addOption(configOption())
    .option('--online', 'then, for each enabled instance: get a token, read the first page of each resource, POST a signed test notification')
    .action(validateCommand);

  program.command('status')
    .description('cursors, last polls, backlog, dead letters, last errors')
    .addOption(configOption())
    .addOption(dbOption())
    .option('--json', 'machine-readable output')
    .action(statusCommand);

  const events = program.command('events').description('inspect notifications');
  events.command('list')
    .addOption(configOption())
    .addOption(dbOption())
    .option('--status <status>', 'pending, delivered or dead')
    .option('--limit <n>', 'most rows to show', numberOption('--limit', { min: 1, integer: true }), 50)
    .option('--json', 'machine-readable output')
    .action(eventsListCommand);
  events.command('show <id>')
    .addOption(configOption())
    .addOption(dbOption())
    .option('--json', 'machine-readable output')
    .action(eventsShowCommand);

  program.command('replay [ids...]')
    .description('send notifications again (by id, or every dead one)')
    .addOption(configOption())
    .addOption(dbOption())
    .option('--dead', 'replay every dead-lettered notification')
    .option('--since <iso>', 'with --dead: only those created since this time')
    .action(replayCommand);

  program.command('verify')
    .description('verify a received notification: body on stdin, headers as options')
    .option('--key <key>', 'signature key; repeat it for each key accepted during a rotation (default: $POLLBRIDGE_SIGNATURE_KEY)', collect)
    .option('-H, --header <line>', 'a received header, "Name: value" (repeatable)', collect)
    .option('--headers-file <file>', 'a file of received headers, one "Name: value" per line')
    .option('--tolerance-sec <s>', 'allowed webhook-timestamp age, whole seconds', '300')
    .option('--amplify-only', 'check Elements-Webhook-Signature alone (no timestamp, so no replay protection)')
    .action(verifyCommand);

  program.command('sim')
    .description('run a local Concur-like API (OAuth2, paging, a stream of changes)')
    .option('--port <port>', 'port to listen on', numberOption('--port', { min: 0, max: 65535, integer: true }), 8080)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--rate <n>', 'random changes per second', rateOption, 1)
    .action(simCommand);

  program.command('demo')
    .description('simulator + daemon + a verifying receiver, printing events as they arrive')
    .option('--events <n>', 'stop after this many verified events', numberOption('--events', { min: 1, integer: true }))
    .option('--seconds <n>', 'stop after this many seconds', numberOption('--seconds', { min: 1, max: 86_400, integer: true, unit: 'seconds' }))
    .option('--rate <n>', 'changes per second in the simulator', rateOption, 2)
    .option('--log-level <level>', 'daemon log level, on stderr', 'warn')
    .option('--keep', 'keep the demo database and config')
    .action(demoCommand);

  return program;
}

/** Expected failures print one line; anything else is a bug and keeps its stack. */
export async function runCli(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(err.message + '\n');
      process.exitCode = 2;
    } else if (err instanceof UserError || err instanceof StoreOpenError || err instanceof StartError || err instanceof MigrationError) {
      process.stderr.write(`pollbridge: ${err.message}\n`);
      process.exitCode = err instanceof UserError ? err.exitCode : 1;
    } else {
      process.stderr.write(`pollbridge: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 70;
    }
  }
}
