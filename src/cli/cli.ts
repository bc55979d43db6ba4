import { Argument, Command, CommanderError, InvalidArgumentError, Option } from 'commander'
// The timeline table has no imports: cheap enough to load for `--help` and argument checks.
import { SCENARIO_NAMES, type ScenarioName } from '../../devnet/scenario-timelines.ts'
import { DEFAULT_RATE_LIMIT, formatRateLimit, parseRateLimit, type RateLimit } from '../api/limits.ts'
import { MurmurError } from '../errors.ts'
import {
  BYZANTINE_ENV,
  BYZANTINE_MODES,
  type ByzantineMode,
  parseByzantineModes,
} from '../node/byzantine-modes.ts'
import type { NodeOptions } from '../node/options.ts'
import { VERSION } from '../version.ts'
import { EXIT_USAGE, getJson, intArg, parseRollup, print, usage } from './args.ts'
import { addChainCommands } from './chain.ts'
import { addStakeCommands } from './stake.ts'
import { addWalletCommands } from './wallet.ts'

export { EXIT_USAGE, parseRollup } from './args.ts'

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const

export function parseHostPort(value: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(value)
  const port = Number(m?.[2])
  if (m === null || port > 65535) throw new InvalidArgumentError('expected HOST:PORT, e.g. 127.0.0.1:7070')
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port }
}

function parseMultiaddr(value: string, previous: string[]): string[] {
  if (!value.startsWith('/')) throw new InvalidArgumentError(`not a multiaddr: ${value}`)
  return [...previous, value]
}

/** `--rate-limit`: boxed, so that `off` (no limit) is not mistaken for the flag's absence. */
function rateLimitArg(value: string): { value: RateLimit | undefined } {
  try {
    return { value: parseRateLimit(value) }
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message)
  }
}

/** `--byzantine` (TEST ONLY): refused without MURMUR_TEST_BYZANTINE=1, one line (node/byzantine.ts). */
function byzantineArg(value: string): ReadonlySet<ByzantineMode> {
  try {
    return parseByzantineModes(value)
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message)
  }
}

/** Builds the `murmur` command tree. Flags map onto module options here and nowhere else. */
export function buildCli(): Command {
  const program = new Command('murmur')
    .description('Murmur: a peer-to-peer coordinator for a network of Ethereum rollups')
    .version(VERSION)
    .exitOverride()
    // Bad usage is one line on stderr and exit code 2.
    .configureOutput({ outputError: (str, write) => write(`murmur: ${str.split('\n')[0]} (see --help)\n`) })

  const keys = program.command('keys').description('manage node and validator keys').exitOverride()
  keys
    .command('generate')
    .description('create the node key (libp2p Ed25519) and validator key (secp256k1) in DIR, mode 0600')
    .requiredOption('--data-dir <dir>', 'node data directory')
    .exitOverride()
    .action(async (o: { dataDir: string }) => {
      // The node's modules load only for the commands that use them: `--help` and the wallet commands
      // start in a fraction of the time.
      const { loadKeys } = await import('../identity/keys.ts')
      const k = await loadKeys(o.dataDir, { create: true })
      print({ peerId: k.peerId, address: k.validator.address.toLowerCase() })
    })

  const node = program.command('node').description('run a node').exitOverride()
  node
    .command('start')
    .description('start a node in the foreground; Ctrl-C (SIGINT) or SIGTERM stops it cleanly')
    .requiredOption('--data-dir <dir>', 'node data directory (keys, database); locked while the node runs')
    .requiredOption('--genesis <file>', 'genesis JSON file of the network')
    .option('--listen <multiaddr>', 'libp2p listen address (repeatable)', parseMultiaddr, [])
    .option(
      '--announce <multiaddr>',
      'address peers are told to dial instead of the listen ones, e.g. behind NAT or a port mapping (repeatable)',
      parseMultiaddr,
      [],
    )
    .option('--api <host:port>', 'HTTP API address', parseHostPort)
    .option('--no-api', 'do not serve the HTTP API')
    .option(
      '--bootstrap <multiaddr>',
      'peer to dial at start, /ip4/../tcp/../p2p/<id> (repeatable)',
      parseMultiaddr,
      [],
    )
    .option(
      '--rollup <chainId=url>',
      'RPC endpoint of a rollup this node watches (repeatable)',
      parseRollup,
      new Map(),
    )
    .option('--admin', 'serve /admin/v1/* (partition, probes); loopback API only', false)
    .option(
      '--rate-limit <rate>',
      `requests per client IP on the public API routes: N/s, N/m or N/h; 0 or off for none (default ${formatRateLimit(DEFAULT_RATE_LIMIT)})`,
      rateLimitArg,
    )
    .option('--dashboard', "serve the dashboard page at /dashboard/ of the API (this node's view)", false)
    .option('--no-auto-unjail', "never send this validator's Unjail by itself after a downtime jail")
    .addOption(
      new Option(
        '--byzantine <modes>',
        `TEST ONLY, refused unless ${BYZANTINE_ENV}=1: misbehave on purpose (${BYZANTINE_MODES.join(',')})`,
      )
        .argParser(byzantineArg)
        .hideHelp(),
    )
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default('info'))
    .option('--log-file <path>', 'write logs to this file instead of stderr')
    .exitOverride()
    .action(async (o) => {
      const opts: Partial<NodeOptions> & Pick<NodeOptions, 'dataDir' | 'genesisPath'> = {
        dataDir: o.dataDir,
        genesisPath: o.genesis,
        bootstrap: o.bootstrap,
        rollups: o.rollup,
        admin: o.admin,
        dashboard: o.dashboard,
        autoUnjail: o.autoUnjail,
        logLevel: o.logLevel,
        logFile: o.logFile,
      }
      if (o.listen.length > 0) opts.listen = o.listen
      if (o.announce.length > 0) opts.p2p = { announce: o.announce }
      if (o.byzantine !== undefined) opts.byzantine = o.byzantine
      if (o.rateLimit !== undefined) opts.apiLimits = { rateLimit: o.rateLimit.value }
      if (o.api === false) opts.api = undefined
      else if (typeof o.api === 'object') opts.api = o.api
      await runNode(opts)
    })

  program
    .command('status')
    .description("print a node's status")
    .requiredOption('--api <url>', 'node API URL, e.g. http://127.0.0.1:7070')
    .exitOverride()
    .action(async (o: { api: string }) => {
      print(await getJson(new URL('/v1/status', o.api).toString()))
    })

  addWalletCommands(program)
  addChainCommands(program)
  addStakeCommands(program)

  const devnet = program
    .command('devnet')
    .description('a whole network on this machine: anvil rollups + node processes, with fault commands')
    .exitOverride()
  devnet
    .command('up')
    .description('start a devnet in the foreground; prints node APIs and the dashboard; Ctrl-C tears it down')
    .option('--nodes <n>', 'node processes', intArg, 4)
    .option('--rollups <k>', 'anvil rollups (chain ids 901, 902, ...)', intArg, 3)
    .option('--dir <dir>', 'where the devnet keeps its state', '.devnet')
    .option('--rate <n>', 'traffic per second generated on the network', intArg, 2)
    .option(
      '--profile <name>',
      'rollup profiles: uniform (every rollup a 1 s anvil), mixed (cycles through the kinds), or one kind (arbitrum-like, base-like, zksync-like, ...)',
      'uniform',
    )
    .option('--traffic <mode>', 'shape of the traffic at --rate: steady, bursty or mixed', 'steady')
    .option('--seed <n>', 'seed of the traffic schedule', intArg, 1)
    .option(
      '--native',
      'no settlement contracts: native intents the executor pays itself (default: contracts, a test token, ERC-20 intents)',
      false,
    )
    .option(
      '--netns',
      'each node and anvil in its own network namespace on a bridge (Linux, root): partition, delay, loss, flaky drop and hold real packets',
      false,
    )
    .option(
      '--control-port <port>',
      'port of the control server and dashboard on 127.0.0.1 (0: any)',
      intArg,
      0,
    )
    .exitOverride()
    .action(async (o: DevnetUpFlags) => {
      const { Devnet } = await import('../../devnet/devnet.ts')
      const { PROFILE_NAMES } = await import('../../devnet/profiles.ts')
      const { TRAFFIC_MODES } = await import('../../devnet/traffic.ts')
      if (!(PROFILE_NAMES as readonly string[]).includes(o.profile))
        usage(`--profile must be one of ${PROFILE_NAMES.join(', ')}`)
      if (!(TRAFFIC_MODES as readonly string[]).includes(o.traffic))
        usage(`--traffic must be one of ${TRAFFIC_MODES.join(', ')}`)
      const net = new Devnet({
        nodes: o.nodes,
        rollups: o.rollups,
        dir: o.dir,
        rate: o.rate,
        profile: o.profile,
        traffic: o.traffic as (typeof TRAFFIC_MODES)[number],
        seed: o.seed,
        settlement: !o.native,
        netns: o.netns,
        controlPort: o.controlPort,
      })
      let stopping = false
      const onSignal = () => {
        if (stopping) process.exit(130)
        stopping = true
        process.stdout.write('devnet: stopping...\n')
        net.stop().then(
          () => process.exit(0),
          () => process.exit(1),
        )
      }
      process.on('SIGINT', onSignal)
      process.on('SIGTERM', onSignal)
      try {
        await net.up()
      } catch (err) {
        await net.stop()
        throw err
      }
    })
  const faults: Array<[string, string, string]> = [
    ['partition', '<groups...>', 'split the nodes into groups that cannot reach each other, e.g. 0,1 2,3'],
    ['heal', '', 'remove every partition'],
    ['kill', '<n>', 'kill -9 node n'],
    ['restart', '<n>', 'restart node n (stops it first if it runs)'],
    ['rollup-down', '<k>', 'stop rollup k (index 0.. or chain id)'],
    ['rollup-up', '<k>', 'start rollup k again'],
    [
      'spike',
      '<rate> <seconds>',
      "the devnet's wallets send <rate> intents/s for <seconds>, then back to normal",
    ],
    ['fund', '<address>', 'give an address 10 ETH on every rollup, for gas (anvil_setBalance)'],
    ['delay', '<ms> [nodes]', '--netns: every packet the nodes (e.g. 0,2; default all) send waits MS more'],
    ['loss', '<pct> [nodes]', '--netns: the nodes lose PCT % of the packets they send'],
    ['flaky', '[nodes]', '--netns: a bad link on the nodes: 80 ms +- 40 ms, 2 % loss, 5 % reordered'],
    ['clear', '[nodes]', '--netns: remove delay, loss and flaky from the nodes (heal removes partitions)'],
  ]
  for (const [verb, arg, help] of faults) {
    devnet
      .command(`${verb}${arg ? ` ${arg}` : ''}`)
      .description(help)
      .option('--dir <dir>', 'the devnet directory', '.devnet')
      .exitOverride()
      .action(async (...a: unknown[]) => {
        const { devnetCommand } = await import('../../devnet/devnet.ts')
        // The command is the last argument of an action; its args are the positional strings.
        const cmd = a.at(-1) as Command
        const o = cmd.opts() as { dir: string }
        print(await devnetCommand(o.dir, verb, cmd.args))
      })
  }

  addScenarioCommand(devnet)

  return program
}

/** `murmur devnet scenario NAME --dir DIR [--report FILE]`: exit 0 all invariants held, 1 one broke. */
function addScenarioCommand(devnet: Command): void {
  devnet
    .command('scenario')
    .description(
      'run a timeline of faults against the devnet in --dir while sending intents, then check the invariants; exit 1 when one broke',
    )
    .addArgument(new Argument('<name>', 'scenario').choices(SCENARIO_NAMES))
    .option('--dir <dir>', 'the devnet directory', '.devnet')
    .option('--report <file>', 'write the JSON report here')
    .option('--seed <n>', 'seed of the random choices (which node, how long)', intArg)
    .option('--short', 'the CI timeline: faults of a few seconds', false)
    .option('--duration-ms <ms>', 'scale the timeline so that its traffic ends after this many ms', intArg)
    .option('--rate <n>', 'intents per second the scenario sends', intArg)
    .option(
      '--stall-bound-ms <ms>',
      'longest height stall allowed while more than 2/3 of stake is connected',
      intArg,
    )
    .option(
      '--recover-bound-ms <ms>',
      'time a node may take to be back at the network height after a fault',
      intArg,
    )
    .option(
      '--fill-bound-ms <ms>',
      'time an intent may take to be filled once the network can (default: genesis fillTimeoutSec + 15 s)',
      intArg,
    )
    .exitOverride()
    .action(async (name: string, o: ScenarioFlags) => {
      const { BREAK_HOOKS, runScenario } = await import('../../devnet/scenario.ts')
      const hook = process.env['MURMUR_SCENARIO_BREAK']
      if (hook !== undefined && hook !== '' && !(BREAK_HOOKS as readonly string[]).includes(hook))
        usage(`MURMUR_SCENARIO_BREAK must be one of ${BREAK_HOOKS.join(', ')}`)
      if (o.durationMs !== undefined && o.durationMs < 3_000) usage('--duration-ms must be at least 3000')
      const report = await runScenario({
        name: name as ScenarioName,
        dir: o.dir,
        short: o.short,
        ...(o.report === undefined ? {} : { report: o.report }),
        ...(o.seed === undefined ? {} : { seed: o.seed }),
        ...(o.durationMs === undefined ? {} : { durationMs: o.durationMs }),
        ...(o.rate === undefined ? {} : { rate: o.rate }),
        ...(hook === undefined || hook === '' ? {} : { breakHook: hook as (typeof BREAK_HOOKS)[number] }),
        bounds: {
          ...(o.stallBoundMs === undefined ? {} : { stallBoundMs: o.stallBoundMs }),
          ...(o.recoverBoundMs === undefined ? {} : { recoverBoundMs: o.recoverBoundMs }),
          ...(o.fillBoundMs === undefined ? {} : { fillBoundMs: o.fillBoundMs }),
        },
      })
      const broken = report.invariants.filter((i) => !i.passed)
      if (broken.length > 0)
        throw new MurmurError(
          'INVARIANT_BROKEN',
          `${broken.map((i) => i.name).join(', ')} broke in scenario ${name}`,
        )
    })
}

interface DevnetUpFlags {
  nodes: number
  rollups: number
  dir: string
  rate: number
  profile: string
  traffic: string
  seed: number
  native: boolean
  netns: boolean
  controlPort: number
}

interface ScenarioFlags {
  dir: string
  report?: string
  seed?: number
  short: boolean
  durationMs?: number
  rate?: number
  stallBoundMs?: number
  recoverBoundMs?: number
  fillBoundMs?: number
}

async function runNode(
  opts: Partial<NodeOptions> & Pick<NodeOptions, 'dataDir' | 'genesisPath'>,
): Promise<void> {
  const { MurmurNode } = await import('../node/node.ts')
  const node = new MurmurNode(opts)
  let signals = 0
  const onSignal = (sig: NodeJS.Signals) => {
    signals++
    if (signals > 1) {
      process.stderr.write(`murmur: second ${sig}, exiting now\n`)
      process.exit(130)
    }
    node.log.info({ signal: sig }, 'stopping')
    node.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    )
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  await node.start()
  const api = node.apiAddress
  // One machine-readable line on stdout, so scripts (devnet, tests) learn the ports.
  process.stdout.write(
    JSON.stringify({
      event: 'started',
      peerId: node.keys.peerId,
      validator: node.keys.validator.address.toLowerCase(),
      listen: node.p2p.libp2p.getMultiaddrs().map(String),
      api: api === undefined ? null : `http://${api.host}:${api.port}`,
    }) + '\n',
  )
}

export async function main(argv: string[]): Promise<number> {
  const program = buildCli()
  try {
    await program.parseAsync(argv, { from: 'user' })
    return 0
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0)
        return 0
      return EXIT_USAGE
    }
    if (err instanceof MurmurError) {
      process.stderr.write(`murmur: ${err.code}: ${err.message}\n`)
      return 1
    }
    process.stderr.write(`murmur: ${(err as Error).stack ?? String(err)}\n`)
    return 1
  }
}
