import { Command, Option } from 'commander';
import { DEFAULT_CONCUR_BASE_URL } from '../config/amplifyImport.js';
import { ConfigError } from '../config/issues.js';
import { StartError } from '../daemon/daemon.js';
import { StoreOpenError } from '../store/files.js';
import { MigrationError } from '../store/migrate.js';
import { PgStoreError } from '../store/pg/pgErrors.js';
import { StoreError } from '../store/threadedStore.js';
import { pollbridgeVersion } from '../version.js';
import { demoCommand } from './demoCommand.js';
import { eventsListCommand, eventsShowCommand, replayCommand } from './eventsCommand.js';
import { releaseSignals } from './heldSignals.js';
import { importAmplifyCommand } from './importCommand.js';
import { writeError } from './logOutput.js';
import { runCommand } from './runCommand.js';
import { simCommand } from './simCommand.js';
import { statusCommand } from './statusCommand.js';
import { LAGGING_PERIODS, SUMMARY_ABOVE_STREAMS } from './statusView.js';
import { numberOption } from './options.js';
import { UserError } from './userError.js';
import { validateCommand } from './validateCommand.js';
import { verifyCommand } from './verifyCommand.js';

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];
/** Shown after a command's options: the lines a new operator would otherwise have to work out. */
const examples = (...lines: string[]): string => `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}\n`;
const rateOption = numberOption('--rate', { min: 0, max: 1000, unit: 'changes per second' });

export function buildProgram(): Command {
  const program = new Command('pollbridge')
    .description('Poll SAP Concur (or any REST list API) for changed records and deliver signed events.')
    .version(pollbridgeVersion())
    .showHelpAfterError()
    .addHelpText('after', examples(
      'pollbridge demo                        # everything on this machine, in one command',
      'pollbridge validate -c poller.config.json',
      'pollbridge run -c poller.config.json',
      'pollbridge status -c poller.config.json',
      'pollbridge <command> --help            # each command\'s options and examples',
    ))
    // Only the daemon handles signals; every other command gets their default action back.
    .hook('preAction', (_program, command) => {
      if (command.name() !== 'run') releaseSignals();
    });
  const configOption = (): Option => new Option('-c, --config <file>', 'config file (default: $POLLBRIDGE_CONFIG or ./poller.config.json)');
  const dbOption = (): Option => new Option('--db <file|url>', 'SQLite database file or postgres:// URL (default: the one the config names)');

  program.command('run')
    .description('run the daemon')
    .addOption(configOption())
    .addOption(dbOption())
    .option('--once', 'poll every resource once, deliver what can be delivered now, exit')
    .option('--since <iso>', 'on first start, announce changes since this time (backfill)')
    .option('--log-level <level>', 'error, warn, info or debug (default: $POLLBRIDGE_LOG_LEVEL or info)')
    .option('--log-format <format>', 'auto (text on a terminal, JSON otherwise), json or text (default: $POLLBRIDGE_LOG_FORMAT or auto)')
    // At most the longest a delivery attempt may take (pollbridge.delivery.timeoutMs): a longer grace waits for nothing.
    .option('--grace-ms <ms>', 'on stop, how long deliveries in flight may finish', numberOption('--grace-ms', { min: 0, max: 600_000, integer: true, unit: 'milliseconds' }))
    .option('--replica <name>', 'on a PostgreSQL database: this replica\'s name in status and /metrics; streams go back to it by this name after a restart (default: the host name)')
    .addHelpText('after', examples(
      'pollbridge run -c /etc/pollbridge/poller.config.json',
      'pollbridge run -c poller.config.json --replica vm-2               # one of several replicas on a postgres:// database',
      'pollbridge run -c poller.config.json --once                       # one poll of each resource, deliver, exit',
      'pollbridge run -c poller.config.json --since 2024-05-01T00:00:00Z  # first start: announce changes since then',
    ))
    .action(runCommand);

  program.command('validate')
    .description('check a config file and list every problem')
    .addOption(configOption())
    .option('--online', 'then, for each enabled instance: get a token, read the first page of each resource, POST a signed test notification')
    .addHelpText('after', examples('pollbridge validate -c poller.config.json', 'pollbridge validate -c poller.config.json --online'))
    .action(validateCommand);

  program.command('status')
    .description('cursors, last polls, backlog, dead letters, last errors')
    .addOption(configOption())
    .addOption(dbOption())
    .option('--json', 'machine-readable output (the filters apply)')
    .option('--instance <name>', 'only these instances; `*` matches any run of characters; repeatable', collect)
    .option('--failing', 'only streams whose last poll failed')
    .option('--lagging', `only streams with no completed poll for more than ${LAGGING_PERIODS} of their intervals (needs the config)`)
    .option('--all', `every stream in the table, even above ${SUMMARY_ABOVE_STREAMS} (where a summary is shown otherwise)`)
    .addHelpText('after', examples(
      'pollbridge status -c poller.config.json         # with the config: next polls, and the running daemon\'s view',
      'pollbridge status -c poller.config.json --failing --instance \'acme-*\'',
      'pollbridge status --db /var/lib/pollbridge/pollbridge.db --json',
    ))
    .action(statusCommand);

  const events = program.command('events').description('inspect notifications');
  events.command('list')
    .description('list notifications, newest first')
    .addOption(configOption())
    .addOption(dbOption())
    .option('--status <status>', 'pending, delivered or dead')
    .option('--limit <n>', 'most rows to show', numberOption('--limit', { min: 1, integer: true }), 50)
    .option('--json', 'machine-readable output')
    .addHelpText('after', examples(
      'pollbridge events list -c poller.config.json --status dead',
      'pollbridge events list --db pollbridge.db --limit 10 --json',
    ))
    .action(eventsListCommand);
  events.command('show <id>')
    .description('one notification: its attempts and its body')
    .addOption(configOption())
    .addOption(dbOption())
    .option('--json', 'machine-readable output')
    .addHelpText('after', examples('pollbridge events show -c poller.config.json 01J0Z8X3K7Q9V2M4N6P8R0T2W4'))
    .action(eventsShowCommand);

  program.command('replay [ids...]')
    .description('queue notifications to be sent again (by id, or every dead one); the daemon sends them')
    .addOption(configOption())
    .addOption(dbOption())
    .option('--dead', 'replay every dead-lettered notification')
    .option('--since <iso>', 'with --dead: only those created since this time')
    .addHelpText('after', examples(
      'pollbridge replay -c poller.config.json 01J0Z8X3K7Q9V2M4N6P8R0T2W4',
      'pollbridge replay -c poller.config.json --dead --since 2024-05-01T00:00:00Z',
    ))
    .action(replayCommand);

  program.command('import')
    .description('turn another poller\'s export into pollbridge instance files')
    .command('amplify <file>')
    .description('one instance file per AMPLIFY instance (an object, or the array GET /instances returns), secrets moved to credential files')
    .addOption(configOption())
    .option('--dir <dir>', 'where the instance files go (default: the instancesDir of the config, else instances.d beside it)')
    .option('--force', 'overwrite files that exist (without it, an import that would overwrite one writes nothing)')
    .option('--credentials-dir <dir>', 'also write each secret of the export to <dir>/<name>, mode 0600')
    .option('--base-url <url>', `Concur API base URL of the provider built for a Concur instance that has none (default: ${DEFAULT_CONCUR_BASE_URL})`)
    .addHelpText('after', examples(
      'pollbridge import amplify instances.json -c /etc/pollbridge/poller.config.json',
      'pollbridge import amplify instances.json --dir /etc/pollbridge/instances.d --credentials-dir /etc/pollbridge/credentials',
      'pollbridge import amplify acme.json --base-url https://emea.api.concursolutions.com --force',
    ))
    .action(importAmplifyCommand);

  program.command('verify')
    .description('verify a received notification: body on stdin, headers as options')
    .option('--key <key>', 'signature key; repeat it for each key accepted during a rotation (default: $POLLBRIDGE_SIGNATURE_KEY)', collect)
    .option('-H, --header <line>', 'a received header, "Name: value" (repeatable)', collect)
    .option('--headers-file <file>', 'a file of received headers, one "Name: value" per line')
    .option('--tolerance-sec <s>', 'allowed webhook-timestamp age, whole seconds', '300')
    .option('--amplify-only', 'check Elements-Webhook-Signature alone (no timestamp, so no replay protection)')
    .addHelpText('after', examples(
      'pollbridge verify --key "$KEY" --headers-file headers.txt < body.json',
      'pollbridge verify --key "$OLD_KEY" --key "$NEW_KEY" -H "webhook-id: 01J…" -H "webhook-timestamp: 1717000000" -H "webhook-signature: v1,…" < body.json',
      'pollbridge verify --key "$KEY" --headers-file headers.txt --tolerance-sec 86400 < captured-yesterday.json',
    ))
    .action(verifyCommand);

  program.command('sim')
    .description('run a local Concur-like API (OAuth2, paging, a stream of changes)')
    .option('--port <port>', 'port to listen on', numberOption('--port', { min: 0, max: 65535, integer: true }), 8080)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--rate <n>', 'random changes per second', rateOption, 1)
    .option('--callout-url <url>', "push Event Notifications to this connector's notify URL when a report enters Submitted")
    .option('--callout-user <user>', 'the Basic auth user name for the callout')
    .option('--callout-password <password>', 'the Basic auth password for the callout')
    .option('--companies <n>', 'serve this many Concur companies, each with its own client and refresh token', numberOption('--companies', { min: 1, max: 100_000, integer: true, unit: 'companies' }))
    .option('--latency-ms <ms>', 'with --companies: answer every request this late', numberOption('--latency-ms', { min: 0, max: 60_000, integer: true, unit: 'milliseconds' }))
    .option('--instances-dir <dir>', 'with --companies: write one instance file per company here')
    .option('--callback-url <url>', 'with --instances-dir: where the instances deliver their events')
    .addHelpText('after', examples(
      'pollbridge sim --port 8080 --rate 5',
      'pollbridge sim --companies 2000 --latency-ms 500 --rate 10 --instances-dir instances.d --callback-url http://127.0.0.1:9000/hook',
      'pollbridge sim --port 0 --rate 0   # any free port, changes only through /_sim',
      'pollbridge sim --callout-url http://127.0.0.1:8443/concur/v1.0/notify --callout-user concur --callout-password "$PASSWORD"',
    ))
    .action(simCommand);

  program.command('demo')
    .description('simulator + daemon + a verifying receiver, printing events as they arrive')
    .option('--events <n>', 'stop after this many verified events', numberOption('--events', { min: 1, integer: true }))
    .option('--seconds <n>', 'stop after this many seconds', numberOption('--seconds', { min: 1, max: 86_400, integer: true, unit: 'seconds' }))
    .option('--rate <n>', 'changes per second in the simulator', rateOption, 2)
    .option('--log-level <level>', 'daemon log level, on stderr', 'warn')
    .option('--keep', 'keep the demo database and config')
    .addHelpText('after', examples('pollbridge demo', 'pollbridge demo --events 5 --rate 10', 'pollbridge demo --seconds 30 --log-level info --keep'))
    .action(demoCommand);

  return program;
}

/** Expected failures print one line; anything else is a bug and keeps its stack. */
export async function runCli(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      writeError(err.message);
      process.exitCode = 2;
    } else if (err instanceof UserError || err instanceof StoreOpenError || err instanceof StartError || err instanceof MigrationError) {
      writeError(`pollbridge: ${err.message}`);
      process.exitCode = err instanceof UserError ? err.exitCode : 1;
    } else if (err instanceof PgStoreError) {
      // PostgreSQL failed a call (the connection lost, a statement timed out): the operator's to fix.
      writeError(`pollbridge: ${err.message}`);
      process.exitCode = 1;
    } else if (err instanceof StoreError) {
      // The database refused a call (locked past the busy timeout, disk full): the operator's to fix.
      writeError(`pollbridge: the database refused a call: ${err.message}${err.code ? ` (${err.code})` : ''}`);
      process.exitCode = 1;
    } else {
      writeError(`pollbridge: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      process.exitCode = 70;
    }
  }
}
