// Rollup scaling benchmark. Prints figures; never fails on a time.
//
//   node bench/rollups.ts [--mode all|ceiling|scale|failover] [--ks 1,5,10,25,50] [--seconds 20]
//                         [--warmup 5] [--fills-per-block 2] [--block-time 1] [--executors 2] [--load 1.25]
//
// 1. ceiling: what this machine can drive. Signed eth_sendRawTransaction per second from one account
//    against an anvil with a huge gas limit; and the whole pipeline of step 2 on a few chains far wider
//    than it can fill (its fills per second are the machine's, not the chains', limit).
// 2. scale: for each K, K anvil rollups whose capacity is fixed by gas limit (fills-per-block native fills)
//    and block time; an intent load of `load` × K × capacity, routed every `batch-ms` by routeIntents()
//    over a view built from a live HealthMonitor, filled by real Executors (a LevelDB store each). Over a
//    steady window after a warm-up, read from the chains' blocks: fills per second, scaling efficiency
//    rate(K) / (K × rate(1)), utilisation = fill gas / (gas limit × blocks).
//    The default of 2 fills per block puts K = 50 at 100 fills/s, well under the pipeline's ceiling on
//    2 cores (≈ 170 fills/s when nothing else runs): the chains, not the machine, are the bottleneck.
// 3. failover: time from a rollup's death (stop(), and a black-holed RPC) to 'down' in a HealthMonitor.
//
// Every anvil is stopped by its pid on every exit path, Ctrl-C included.
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as delay } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { type Address, createPublicClient, type Hex, http, keccak256, toHex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import {
  deriveAccounts,
  type FundedAccount,
  type Rollup,
  type Rollups,
  startRollups,
} from '../devnet/anvil.ts'
import { Executor } from '../src/rollups/executor.ts'
import { fillCall, NATIVE_TOKEN } from '../src/rollups/fill.ts'
import { HealthMonitor } from '../src/rollups/health-monitor.ts'
import {
  type HealthView,
  type PoolMember,
  type RollupHealth,
  type RouteIntent,
  type RouteParams,
  routeIntents,
} from '../src/rollups/router.ts'
import { Store } from '../src/state/store.ts'
import { median, percentile } from './lib.ts'

const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'rollups'),
  options: {
    mode: { type: 'string', default: 'all' },
    ks: { type: 'string', default: '1,5,10,25,50' },
    seconds: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '5' },
    'fills-per-block': { type: 'string', default: '2' },
    'block-time': { type: 'string', default: '1' },
    executors: { type: 'string', default: '2' },
    load: { type: 'string', default: '1.25' },
    'batch-ms': { type: 'string', default: '250' },
    'queue-blocks': { type: 'string', default: '2' },
    capacity: { type: 'string', default: 'pending' },
    'intent-ttl': { type: 'string', default: '120' },
    'queue-seconds': { type: 'string', default: '5' },
    'ceiling-seconds': { type: 'string', default: '8' },
    'ceiling-chains': { type: 'string', default: '4' },
    'ceiling-fills-per-block': { type: 'string', default: '100' },
    'failover-trials': { type: 'string', default: '5' },
  },
})

const MODE = values.mode
const KS = values.ks.split(',').map(Number)
const WINDOW_SEC = Number(values.seconds)
const WARMUP_SEC = Number(values.warmup)
const FILLS_PER_BLOCK = Number(values['fills-per-block'])
const BLOCK_TIME_SEC = Number(values['block-time'])
const EXECUTORS = Number(values.executors)
const LOAD_FACTOR = Number(values.load)
const BATCH_MS = Number(values['batch-ms'])
const QUEUE_BLOCKS = Number(values['queue-blocks'])
/**
 * What the router's view says a chain has used: 'pending' (default), the fills assigned and not yet mined;
 * 'raw', the monitor's own figure (the latest block's gas used), for comparison.
 */
const CAPACITY = values.capacity
if (CAPACITY !== 'pending' && CAPACITY !== 'raw') throw new Error(`unknown --capacity ${CAPACITY}`)
const INTENT_TTL_SEC = Number(values['intent-ttl'])
/** The intent queue holds at most this many seconds of offered load, like a bounded pool. */
const QUEUE_SEC = Number(values['queue-seconds'])
const CEILING_SEC = Number(values['ceiling-seconds'])
const CEILING_CHAINS = Number(values['ceiling-chains'])
const CEILING_FILLS_PER_BLOCK = Number(values['ceiling-fills-per-block'])
const FAILOVER_TRIALS = Number(values['failover-trials'])
if (!['all', 'ceiling', 'scale', 'failover'].includes(MODE)) throw new Error(`unknown --mode ${MODE}`)
for (const k of KS) if (!Number.isInteger(k) || k < 1) throw new Error(`bad K ${k} in --ks`)
if (!Number.isInteger(FILLS_PER_BLOCK) || FILLS_PER_BLOCK < 1)
  throw new Error('--fills-per-block must be >= 1')
if (!Number.isInteger(QUEUE_BLOCKS) || QUEUE_BLOCKS < 1) throw new Error('--queue-blocks must be >= 1')

/**
 * Gas of one native fill: a value transfer whose calldata is the 32-byte intent id (fill.ts). Under
 * Prague the EIP-7623 calldata floor applies: 21 000 + 10 × (4 × 32 nonzero bytes) = 22 280, above the
 * standard 21 000 + 16 × 32. Checked against the chain's eth_estimateGas at every start.
 */
const FILL_GAS = 22_280n
const GAS_LIMIT = FILL_GAS * BigInt(FILLS_PER_BLOCK)
/** Fills per second one chain can take. */
const CHAIN_CAPACITY = FILLS_PER_BLOCK / BLOCK_TIME_SEC
/** A block gas limit far above anything the harness can send (≈ 45 000 fills per block). */
const HUGE_GAS_LIMIT = 1_000_000_000n
const NETWORK_ID = 'murmur-bench'
const ACCOUNT_SEED = 'murmur-bench-rollups'
const CLOCK_TICKS_PER_SEC = 100

const log = (s: string): void => {
  process.stderr.write(`${s}\n`)
}
const silent = pino({ level: 'silent' })

// -------------------------------------------------------------------------------------------------
// Every process and store this run opens, closed on every exit path (normal, error, SIGINT, SIGTERM).

const closers = new Set<() => Promise<void>>()

/** Registers `fn` for the signal handler; the returned function runs it (once) and unregisters it. */
function onExit(name: string, fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined
  const once = (): Promise<void> => {
    running ??= fn().catch((err: unknown) => log(`closing ${name} failed: ${(err as Error).message}`))
    return running as Promise<void>
  }
  closers.add(once)
  return async () => {
    await once()
    closers.delete(once)
  }
}

async function closeAll(): Promise<void> {
  // Newest first: executors and the monitor before the chains they talk to.
  for (const close of [...closers].reverse()) await close()
  closers.clear()
}

let interrupted = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) return
    interrupted = true
    log(`\n${signal}: stopping every rollup and store...`)
    void closeAll().finally(() => process.exit(130))
  })
}

// -------------------------------------------------------------------------------------------------
// Small helpers.

interface RpcBlock {
  number: Hex
  timestamp: Hex
  gasUsed: Hex
  gasLimit: Hex
  baseFeePerGas?: Hex
  transactions: Array<{ from: Address }>
}

/** One JSON-RPC batch; throws on any error. */
async function rpcBatch(url: string, calls: Array<[string, unknown[]]>): Promise<unknown[]> {
  const body = calls.map(([method, params], id) => ({ jsonrpc: '2.0', id, method, params }))
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  })
  const json = (await res.json()) as Array<{ id: number; result?: unknown; error?: { message: string } }>
  const out: unknown[] = new Array(calls.length)
  for (const r of json) {
    if (r.error) throw new Error(`${url}: ${calls[r.id]?.[0]}: ${r.error.message}`)
    out[r.id] = r.result
  }
  return out
}

/**
 * Arrival time of every new block of one chain, pushed by anvil (eth_subscribe newHeads over a WebSocket
 * through the proxy). Block timestamps are whole seconds and anvil bumps a late block's successor, so they
 * drift; arrival times measure a window of exactly N block intervals to the millisecond.
 */
class HeadWatcher {
  readonly heads: Array<{ number: bigint; atMs: number }> = []
  /** Fills mined since the subscription: every block's gas used in fills (the chains carry nothing else). */
  minedFills = 0
  readonly #ws: WebSocket

  private constructor(ws: WebSocket) {
    this.#ws = ws
    ws.onmessage = (e) => {
      const msg = JSON.parse(String(e.data)) as {
        method?: string
        params?: { result?: { number?: Hex; gasUsed?: Hex } }
      }
      const head = msg.params?.result
      if (msg.method !== 'eth_subscription' || head?.number === undefined) return
      this.heads.push({ number: BigInt(head.number), atMs: performance.now() })
      // A fill whose intent id has zero bytes uses a little less than FILL_GAS: round, do not truncate.
      this.minedFills += Math.round(Number(BigInt(head.gasUsed ?? '0x0')) / Number(FILL_GAS))
    }
  }

  static async open(rpcUrl: string): Promise<HeadWatcher> {
    const ws = new WebSocket(rpcUrl.replace(/^http/, 'ws'))
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve()
      ws.onerror = () => reject(new Error(`cannot open a WebSocket to ${rpcUrl}`))
    })
    const watcher = new HeadWatcher(ws)
    ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_subscribe', params: ['newHeads'] }))
    return watcher
  }

  /**
   * The blocks that arrived between `fromMs` and `toMs`, first..last, and the block interval: the
   * least-squares slope of arrival time over block number, so that one late delivery (this process's
   * event loop was busy) does not stretch or shrink the window as it would with first and last alone.
   */
  span(fromMs: number, toMs: number): { first: bigint; last: bigint; intervalMs: number } {
    const inside = this.heads.filter((h) => h.atMs >= fromMs && h.atMs <= toMs)
    if (inside.length < 3) throw new Error('fewer than three blocks arrived in the window')
    const xs = inside.map((h) => Number(h.number - inside[0]!.number))
    const ys = inside.map((h) => h.atMs)
    const mx = xs.reduce((a, b) => a + b, 0) / xs.length
    const my = ys.reduce((a, b) => a + b, 0) / ys.length
    let sxy = 0
    let sxx = 0
    for (let i = 0; i < xs.length; i++) {
      sxy += (xs[i]! - mx) * (ys[i]! - my)
      sxx += (xs[i]! - mx) ** 2
    }
    return { first: inside[0]!.number, last: inside.at(-1)!.number, intervalMs: sxy / sxx }
  }

  close(): void {
    this.#ws.close()
  }
}

/** Blocks from..to inclusive, with transactions (for their senders). */
async function blocks(url: string, from: bigint, to: bigint): Promise<RpcBlock[]> {
  const calls: Array<[string, unknown[]]> = []
  for (let n = from; n <= to; n++) calls.push(['eth_getBlockByNumber', [toHex(n), true]])
  return (await rpcBatch(url, calls)) as RpcBlock[]
}

/** CPU seconds (user + system) of a process, from /proc; 0 when it is gone. */
function procCpuSec(pid: number | undefined): number {
  if (pid === undefined) return 0
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // Fields 14 and 15 of proc(5), counted from the state field (3).
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SEC
  } catch {
    return 0
  }
}

function procRssMb(pid: number | undefined): number {
  if (pid === undefined) return 0
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) / 1024 : 0
  } catch {
    return 0
  }
}

/** Busy CPU seconds of the whole machine (all cores), from /proc/stat. */
function machineBusySec(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number)
  return (user! + nice! + system! + irq! + softirq! + steal!) / CLOCK_TICKS_PER_SEC
}

const harnessCpuSec = (): number => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

const randomId = (): Hex => `0x${randomBytes(32).toString('hex')}`

async function waitFor(what: string, cond: () => boolean, timeoutMs: number, stepMs = 5): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await delay(stepMs)
  }
}

interface Launched {
  net: Rollups
  rollups: readonly Rollup[]
  close: () => Promise<void>
}

async function launch(count: number, accounts: FundedAccount[], gasLimit: bigint): Promise<Launched> {
  const t0 = performance.now()
  const rollups = await startRollups({
    count,
    accounts: accounts.map((a) => a.privateKey),
    gasLimit,
    blockTimeSec: BLOCK_TIME_SEC,
    // Base fee 0: full blocks still raise it (EIP-1559), but from 0 it stays far below the 1 gwei tip the
    // Executor pays on top, so no fill ever waits for fees.
    baseFeeWei: 0n,
    readyTimeoutMs: 60_000,
  })
  const close = onExit(`${count} rollups`, () => rollups.stop())
  log(`  ${count} anvil rollups up in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  return { net: rollups, rollups: rollups.rollups, close }
}

/**
 * Anvil's own URL. The scaling runs never restart a chain, so they skip the devnet's TCP proxy: it runs in
 * this process and would copy every RPC byte twice more on the harness's core (a production RPC is
 * remote). The failover runs keep the proxy, whose URL survives stop()/start().
 */
function directUrl(r: Rollup): string {
  if (r.upstreamUrl === undefined) throw new Error(`rollup ${r.chainId} is not running`)
  return r.upstreamUrl
}

interface ExecutorHandle {
  executor: Executor
  address: Address
  close: () => Promise<void>
}

/** A real Executor with its own LevelDB store in a temp dir. */
async function openExecutor(account: FundedAccount, rollups: readonly Rollup[]): Promise<ExecutorHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'murmur-bench-rollups-'))
  const closeDir = onExit('temp dir', () => rm(dir, { recursive: true, force: true }))
  const store = new Store(join(dir, 'db'))
  await store.open()
  const closeStore = onExit('store', () => store.close())
  const executor = new Executor(
    {
      rollups: new Map(rollups.map((r) => [r.chainId, directUrl(r)])),
      // The gas limit of a fill transaction is its exact estimate: anvil packs a block by transaction gas
      // limits, so the default 20 % margin would fit only 3 fills where 4 fit by gas used.
      gasMarginBps: 0,
    },
    {
      store,
      account: privateKeyToAccount(account.privateKey),
      log: silent,
      registry: new Registry(),
      networkId: NETWORK_ID,
      publishFill: () => {},
    },
  )
  const stopExecutor = onExit('executor', () => executor.stop())
  return {
    executor,
    address: executor.address,
    close: async () => {
      await stopExecutor()
      await closeStore()
      await closeDir()
    },
  }
}

async function checkFillGas(rollup: Rollup, from: Address): Promise<void> {
  const client = createPublicClient({ transport: http(directUrl(rollup)) })
  const call = fillCall(keccak256('0x01'), { recipient: from, outputToken: NATIVE_TOKEN, outputAmount: 1n })
  const gas = await client.estimateGas({ account: from, ...call })
  if (gas !== FILL_GAS)
    throw new Error(`a native fill estimates at ${gas} gas, the benchmark assumes ${FILL_GAS}`)
}

// -------------------------------------------------------------------------------------------------
// 1. The machine's ceiling.

interface Ceiling {
  sendsPerSec: number
  /** The scaling pipeline on CEILING_CHAINS chains of CEILING_FILLS_PER_BLOCK fills each. */
  pipeline: ScaleRow
}

/** Signed eth_sendRawTransaction per second from one account, `concurrency` in flight. */
async function rawSendRate(rollup: Rollup, account: FundedAccount, seconds: number): Promise<number> {
  const signer = privateKeyToAccount(account.privateKey)
  const client = createPublicClient({ transport: http(directUrl(rollup), { retryCount: 0 }) })
  let nonce = 0
  let accepted = 0
  let counting = false
  const end = performance.now() + (seconds + 1) * 1000
  const worker = async () => {
    while (performance.now() < end) {
      const raw = await signer.signTransaction({
        type: 'eip1559',
        chainId: rollup.chainId,
        nonce: nonce++,
        to: signer.address,
        value: 1n,
        data: randomId(),
        gas: FILL_GAS,
        maxFeePerGas: 2_000_000_000n,
        maxPriorityFeePerGas: 1_000_000_000n,
      })
      await client.sendRawTransaction({ serializedTransaction: raw })
      if (counting) accepted++
    }
  }
  // One second of warm-up, then count.
  setTimeout(() => {
    counting = true
  }, 1000).unref()
  await Promise.all(Array.from({ length: 16 }, worker))
  return accepted / seconds
}

async function measureCeiling(): Promise<Ceiling> {
  log(`ceiling: one anvil chain with a ${HUGE_GAS_LIMIT} gas limit`)
  const accounts = deriveAccounts(1, `${ACCOUNT_SEED}/ceiling`)
  const rollups = await launch(1, accounts, HUGE_GAS_LIMIT)
  let sendsPerSec: number
  try {
    await checkFillGas(rollups.rollups[0]!, accounts[0]!.address)
    log(`  signed sendRawTransaction, 16 in flight, ${CEILING_SEC} s`)
    sendsPerSec = await rawSendRate(rollups.rollups[0]!, accounts[0]!, CEILING_SEC)
    log(`    ${sendsPerSec.toFixed(0)} sends/s`)
  } finally {
    await rollups.close()
  }
  // The whole pipeline of the scaling runs (monitor, router, Executors), on chains far wider than it can
  // fill: what it achieves is this machine's ceiling.
  const pipeline = await runScale({
    k: CEILING_CHAINS,
    fillsPerBlock: CEILING_FILLS_PER_BLOCK,
    loadFactor: LOAD_FACTOR,
    windowSec: CEILING_SEC,
  })
  return { sendsPerSec, pipeline }
}

// -------------------------------------------------------------------------------------------------
// 2. Scaling over K rollups.

interface ScaleRow {
  k: number
  capacityPerSec: number
  offeredPerSec: number
  filledPerSec: number
  /** Per chain: fill gas / (gas limit × blocks). */
  utilMean: number
  utilMin: number
  /** Blocks per second per chain, wall clock, mean. */
  blocksPerSec: number
  routerMsMean: number
  routerMsP99: number
  batchIntentsMean: number
  executorConfirmed: number
  /** From routing to the Executor's confirmed fill. */
  fillLatencyP50Ms: number
  fillLatencyP99Ms: number
  /** Event loop delay of this process over the window. */
  loopDelayP99Ms: number
  /** Share of (batch, chain) pairs where the chain was down or missing from the view. */
  downShare: number
  executorErrors: number
  expired: number
  /** Offered intents not queued because the queue was full. */
  shed: number
  queuedAtEnd: number
  /** Age of the oldest intent still queued at the end of the window. */
  oldestQueuedSec: number
  harnessCpu: number
  anvilCpu: number
  /** All processes of the machine, in cores. */
  machineBusy: number
  anvilRssMb: number
  foreignTxs: number
  maxBaseFee: bigint
}

interface Queued {
  intent: RouteIntent
  deadline: number
  queuedAtMs: number
}

const ROUTE_PARAMS: Partial<RouteParams> = {
  fillGasNative: FILL_GAS,
  // Assignments may run `QUEUE_BLOCKS` blocks ahead of the chain, see buildView.
  capacityWindowBlocks: CAPACITY === 'pending' ? QUEUE_BLOCKS : 1,
}
const NO_PROFILES = new Map()

interface ScaleRun {
  k: number
  fillsPerBlock: number
  /** Offered intents per second = loadFactor × k × chain capacity. */
  loadFactor: number
  windowSec: number
}

async function runScale({ k, fillsPerBlock, loadFactor, windowSec }: ScaleRun): Promise<ScaleRow> {
  const gasLimit = FILL_GAS * BigInt(fillsPerBlock)
  const capacityPerSec = k * (fillsPerBlock / BLOCK_TIME_SEC)
  log(
    `K=${k}: starting ${k} chain(s), gas limit ${gasLimit} (${fillsPerBlock} fills) per ${BLOCK_TIME_SEC} s block`,
  )
  const accounts = deriveAccounts(EXECUTORS, ACCOUNT_SEED)
  const rollups = await launch(k, accounts, gasLimit)
  const handles: ExecutorHandle[] = []
  let closeMonitor: (() => Promise<void>) | undefined
  let closeWatchers: (() => Promise<void>) | undefined
  try {
    await checkFillGas(rollups.rollups[0]!, accounts[0]!.address)
    for (const a of accounts) handles.push(await openExecutor(a, rollups.rollups))
    const monitor = new HealthMonitor(
      { rollups: new Map(rollups.rollups.map((r) => [r.chainId, directUrl(r)])) },
      {
        log: silent,
        registry: new Registry(),
        account: privateKeyToAccount(keccak256(toHex(ACCOUNT_SEED))),
        networkId: NETWORK_ID,
        publish: () => {},
      },
    )
    monitor.start()
    closeMonitor = onExit('health monitor', () => monitor.stop())
    const watchers = await Promise.all(rollups.rollups.map((r) => HeadWatcher.open(directUrl(r))))
    closeWatchers = onExit('head watchers', async () => {
      for (const w of watchers) w.close()
    })
    const executorAddresses = new Set(handles.map((h) => h.address.toLowerCase()))
    const users = Array.from({ length: 64 }, (_, i) => privateKeyToAccount(keccak256(toHex(i + 1))).address)

    // Fills assigned (minus the ones the Executor gave up on), by chain; and not yet confirmed by the
    // Executor, by executor and chain.
    const assigned = new Map<bigint, number>()
    const inflightCount = new Map<string, number>()
    const chainIds = rollups.rollups.map((r) => BigInt(r.chainId))
    const watcherOf = new Map(chainIds.map((id, i) => [id, watchers[i]!]))
    for (const id of chainIds) assigned.set(id, 0)

    /**
     * The router's input. Status, fees, latency and block time are the monitor's live measurements. The
     * spare capacity is not: the monitor's gasUsed is the latest block's, which under this load is our
     * own fills, and the router (which runs per batch, 4 batches per block) cannot see work already
     * assigned and not yet mined. So the harness reports the chain's outstanding work instead: gas of the
     * fills assigned and not yet mined (mined fills counted from the newHeads pushes), spread over the
     * capacity window, and the router keeps at most QUEUE_BLOCKS blocks of fills ahead of every chain:
     * spare = (gasLimit − ⌈pending / W⌉) × W. Counting from the chain rather than from the Executor's
     * confirmations keeps its detection latency (receipt polls) out of the capacity loop.
     */
    const buildView = (): HealthView => {
      const view = new Map<bigint, RollupHealth>()
      const w = BigInt(QUEUE_BLOCKS)
      for (const [chainId, h] of monitor.local()) {
        if (h.lastSuccessAtMs === undefined) continue
        // Assigned and not yet mined: what the chain already has to do in the coming blocks.
        const pending = (assigned.get(chainId) ?? 0) - watcherOf.get(chainId)!.minedFills
        const inflight = BigInt(Math.max(0, pending)) * FILL_GAS
        view.set(chainId, {
          status: h.status,
          gasUsedRatioBps: h.gasUsedRatioBps,
          baseFeeWei: h.baseFeeWei,
          blockTimeMs: h.blockTimeMs,
          latencyMs: h.latencyMs,
          gasLimit: h.gasLimit,
          gasUsed: CAPACITY === 'pending' ? (inflight + w - 1n) / w : h.gasUsed,
          type: 'zk',
          securityBps: 10_000,
        })
      }
      return view
    }
    const buildPools = (): Map<bigint, PoolMember[]> =>
      new Map(
        chainIds.map((id) => [
          id,
          handles.map((h) => ({
            validator: h.address,
            stake: 1n,
            outstanding: inflightCount.get(`${h.address}/${id}`) ?? 0,
          })),
        ]),
      )

    const offeredPerSec = loadFactor * capacityPerSec
    const queue = new Map<Hex, Queued>()
    const byAddress = new Map(handles.map((h) => [h.address.toLowerCase(), h]))
    let measuring = false
    let generated = 0
    let expired = 0
    let shed = 0
    const queueMax = Math.ceil(offeredPerSec * QUEUE_SEC)
    let confirmed = 0
    let errors = 0
    const errorCodes = new Map<string, number>()
    const routerMs: number[] = []
    const fillLatencyMs: number[] = []
    let notUp = 0
    let viewRows = 0
    const loopDelay = monitorEventLoopDelay({ resolution: 10 })
    const batchSizes: number[] = []

    const dispatch = (q: Queued, chainId: bigint, executor: Address): void => {
      const routedAt = performance.now()
      const h = byAddress.get(executor.toLowerCase())!
      const key = `${h.address}/${chainId}`
      assigned.set(chainId, assigned.get(chainId)! + 1)
      inflightCount.set(key, (inflightCount.get(key) ?? 0) + 1)
      h.executor
        .execute({
          intentId: q.intent.id,
          chainId,
          recipient: q.intent.user,
          outputToken: q.intent.outputToken,
          outputAmount: q.intent.outputAmount,
          deadline: q.deadline,
        })
        .then(
          () => {
            if (!measuring) return
            confirmed++
            fillLatencyMs.push(performance.now() - routedAt)
          },
          (err: { code?: string }) => {
            if (err.code === 'STOPPED') return
            // Never mined: it no longer holds capacity.
            assigned.set(chainId, assigned.get(chainId)! - 1)
            errors++
            errorCodes.set(err.code ?? 'unknown', (errorCodes.get(err.code ?? 'unknown') ?? 0) + 1)
          },
        )
        .finally(() => {
          inflightCount.set(key, inflightCount.get(key)! - 1)
        })
    }

    let carry = 0
    let last = performance.now()
    const batch = (): void => {
      const now = performance.now()
      carry += (offeredPerSec * (now - last)) / 1000
      last = now
      const nowSec = Math.floor(Date.now() / 1000)
      for (; carry >= 1; carry--) {
        if (measuring) generated++
        if (queue.size >= queueMax) {
          if (measuring) shed++
          continue
        }
        const id = randomId()
        queue.set(id, {
          intent: {
            id,
            user: users[Math.floor(Math.random() * users.length)]!,
            destinationChainIds: [],
            outputAmount: 990n,
            outputToken: NATIVE_TOKEN,
          },
          deadline: nowSec + INTENT_TTL_SEC,
          queuedAtMs: now,
        })
      }
      // Intents too close to their deadline for the Executor to start: dropped, as a pool would.
      for (const [id, q] of queue) {
        if (q.deadline - 2 <= nowSec) {
          queue.delete(id)
          if (measuring) expired++
        }
      }
      const intents = [...queue.values()].map((q) => q.intent)
      const view = buildView()
      if (measuring) {
        viewRows += chainIds.length
        for (const id of chainIds)
          if (view.get(id)?.status !== 'up' && view.get(id)?.status !== 'degraded') notUp++
      }
      const pools = buildPools()
      const t = performance.now()
      const result = routeIntents(intents, view, NO_PROFILES, pools, ROUTE_PARAMS)
      const ms = performance.now() - t
      if (measuring) {
        routerMs.push(ms)
        batchSizes.push(intents.length)
      }
      for (const a of result.assignments) {
        const q = queue.get(a.intentId)!
        queue.delete(a.intentId)
        dispatch(q, a.chainId, a.executor)
      }
    }

    let running = true
    const loop = (async () => {
      let next = performance.now()
      while (running) {
        batch()
        next += BATCH_MS
        const wait = next - performance.now()
        if (wait > 0) await delay(wait)
        else next = performance.now() // fell behind: do not burst to catch up
      }
    })()

    try {
      log(
        `  warm-up ${WARMUP_SEC} s, offering ${offeredPerSec.toFixed(1)} intents/s (${loadFactor} × capacity)`,
      )
      await delay(WARMUP_SEC * 1000)
      const urls = rollups.rollups.map(directUrl)
      const anvilCpu0 = rollups.rollups.reduce((s, r) => s + procCpuSec(r.pid), 0)
      const cpu0 = harnessCpuSec()
      const busy0 = machineBusySec()
      const wall0 = performance.now()
      measuring = true
      loopDelay.enable()
      log(`  measuring ${windowSec} s`)
      for (let s = 5; s < windowSec; s += 5) {
        await delay(5_000)
        log(`    ${s} s: queue ${queue.size}, confirmed ${confirmed}, errors ${errors}`)
      }
      await delay((windowSec - 5 * Math.floor((windowSec - 1) / 5)) * 1000)
      const wall1 = performance.now()
      measuring = false
      loopDelay.disable()
      const wall = (wall1 - wall0) / 1000
      const harnessCpu = (harnessCpuSec() - cpu0) / wall
      const machineBusy = (machineBusySec() - busy0) / wall
      const anvilCpu = (rollups.rollups.reduce((s, r) => s + procCpuSec(r.pid), 0) - anvilCpu0) / wall
      const anvilRssMb = rollups.rollups.reduce((s, r) => s + procRssMb(r.pid), 0)
      running = false
      await loop

      // Ground truth from the chains: per chain, the blocks that arrived in the window, first..last, and the
      // fills in last-N+1..last, over the time of those N block intervals.
      let filledPerSec = 0
      let foreignTxs = 0
      let maxBaseFee = 0n
      const utils: number[] = []
      const paces: number[] = []
      const spans = watchers.map((w) => w.span(wall0, wall1))
      const perChain = await Promise.all(
        urls.map((url, i) => blocks(url, spans[i]!.first + 1n, spans[i]!.last)),
      )
      for (const [i, list] of perChain.entries()) {
        // Blocks first+1..last: as many block intervals as blocks.
        const intervalSec = (list.length * spans[i]!.intervalMs) / 1000
        let fills = 0
        let gas = 0n
        for (const b of list) {
          for (const tx of b.transactions) {
            if (executorAddresses.has(tx.from.toLowerCase())) fills++
            else foreignTxs++
          }
          gas += BigInt(b.gasUsed)
          const fee = BigInt(b.baseFeePerGas ?? '0x0')
          if (fee > maxBaseFee) maxBaseFee = fee
        }
        filledPerSec += fills / intervalSec
        utils.push(Number((gas * 1_000_000n) / (BigInt(list[0]!.gasLimit) * BigInt(list.length))) / 1e6)
        paces.push(list.length / intervalSec)
      }
      if (errors > 0) log(`  executor errors: ${JSON.stringify(Object.fromEntries(errorCodes))}`)
      const sorted = [...routerMs].sort((a, b) => a - b)
      return {
        k,
        capacityPerSec,
        offeredPerSec: generated / wall,
        filledPerSec,
        utilMean: utils.reduce((a, b) => a + b, 0) / utils.length,
        utilMin: Math.min(...utils),
        blocksPerSec: paces.reduce((a, b) => a + b, 0) / paces.length,
        routerMsMean: routerMs.reduce((a, b) => a + b, 0) / Math.max(1, routerMs.length),
        routerMsP99: percentile(sorted, 99),
        batchIntentsMean: batchSizes.reduce((a, b) => a + b, 0) / Math.max(1, batchSizes.length),
        executorConfirmed: confirmed / wall,
        fillLatencyP50Ms: percentile(
          [...fillLatencyMs].sort((a, b) => a - b),
          50,
        ),
        fillLatencyP99Ms: percentile(
          [...fillLatencyMs].sort((a, b) => a - b),
          99,
        ),
        loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
        downShare: viewRows > 0 ? notUp / viewRows : 0,
        executorErrors: errors,
        expired,
        shed,
        queuedAtEnd: queue.size,
        oldestQueuedSec: Math.max(0, ...[...queue.values()].map((q) => (wall1 - q.queuedAtMs) / 1000)),
        harnessCpu,
        anvilCpu,
        machineBusy,
        anvilRssMb,
        foreignTxs,
        maxBaseFee,
      }
    } finally {
      running = false
      await loop
    }
  } finally {
    if (closeWatchers) await closeWatchers()
    if (closeMonitor) await closeMonitor()
    for (const h of handles) await h.close()
    await rollups.close()
  }
}

// -------------------------------------------------------------------------------------------------
// 3. Failover: death to 'down'.

async function measureFailover(): Promise<void> {
  const chains = 3
  log(`failover: ${chains} chains, HealthMonitor with default options, ${FAILOVER_TRIALS} trials per fault`)
  const rollups = await launch(chains, [], GAS_LIMIT)
  const monitor = new HealthMonitor(
    { rollups: new Map(rollups.rollups.map((r) => [r.chainId, r.rpcUrl])) },
    {
      log: silent,
      registry: new Registry(),
      account: privateKeyToAccount(keccak256(toHex(ACCOUNT_SEED))),
      networkId: NETWORK_ID,
      publish: () => {},
    },
  )
  monitor.start()
  const closeMonitor = onExit('health monitor', () => monitor.stop())
  const status = (r: Rollup) => monitor.local().get(BigInt(r.chainId))?.status
  const o = monitor.options
  try {
    const results: Array<{ fault: string; ms: number[] }> = []
    for (const fault of ['stop()', 'blackhole'] as const) {
      const ms: number[] = []
      for (let t = 0; t < FAILOVER_TRIALS; t++) {
        const r = rollups.rollups[t % chains]!
        await waitFor(`chain ${r.chainId} up`, () => status(r) === 'up', 30_000)
        // Land the fault at a random point of the poll cycle.
        await delay(Math.random() * o.pollMs)
        const t0 = performance.now()
        if (fault === 'stop()') await r.stop()
        else r.setUnreachable(true, 'blackhole')
        await waitFor(`chain ${r.chainId} down`, () => status(r) === 'down', 30_000, 1)
        ms.push(performance.now() - t0)
        log(`  ${fault} of chain ${r.chainId}: down after ${ms.at(-1)!.toFixed(0)} ms`)
        if (fault === 'stop()') await r.start()
        else r.setUnreachable(false)
      }
      results.push({ fault, ms })
    }
    console.log(
      `\nFailover: rollup death to 'down' in a HealthMonitor (pollMs ${o.pollMs}, rpcTimeoutMs ${o.rpcTimeoutMs}, ` +
        `downAfterMs ${o.downAfterMs}), ${FAILOVER_TRIALS} trials each`,
    )
    for (const { fault, ms } of results) {
      const s = [...ms].sort((a, b) => a - b)
      console.log(
        `  ${fault.padEnd(10)} median ${median(ms).toFixed(0)} ms   min ${s[0]!.toFixed(0)}   max ${s.at(-1)!.toFixed(0)}` +
          `   (${ms.map((x) => x.toFixed(0)).join(', ')})`,
      )
    }
  } finally {
    await closeMonitor()
    await rollups.close()
  }
}

// -------------------------------------------------------------------------------------------------

const pct = (x: number) => `${(x * 100).toFixed(1)}%`

function printCeiling(c: Ceiling): void {
  const p = c.pipeline
  console.log(
    `\nMachine ceiling (node ${process.version}, ${availableParallelism()} cores):\n` +
      `  signed eth_sendRawTransaction, one account, 16 in flight:   ${c.sendsPerSec.toFixed(0)}/s\n` +
      `  whole pipeline (monitor + router + ${EXECUTORS} Executors) on ${p.k} chains of ` +
      `${CEILING_FILLS_PER_BLOCK} fills per block (${p.capacityPerSec.toFixed(0)} fills/s of chain capacity, ` +
      `${p.offeredPerSec.toFixed(0)} offered): ${p.filledPerSec.toFixed(1)} fills/s, harness CPU ${pct(p.harnessCpu)} of a core, ` +
      `anvils ${pct(p.anvilCpu)}, other processes ${pct(Math.max(0, p.machineBusy - p.harnessCpu - p.anvilCpu))}`,
  )
}

function printScale(rows: ScaleRow[], ceiling: Ceiling | undefined): void {
  const base = rows.find((r) => r.k === 1)?.filledPerSec
  const kMax = Math.max(...rows.map((r) => r.k))
  console.log(
    `\nRollup scaling: ${FILLS_PER_BLOCK} native fills (${GAS_LIMIT} gas) per ${BLOCK_TIME_SEC} s block = ` +
      `${CHAIN_CAPACITY} fills/s per chain; load ${LOAD_FACTOR} × K × capacity, routed every ${BATCH_MS} ms ` +
      `(capacity: ${CAPACITY === 'pending' ? `fills assigned and not mined, ≤ ${QUEUE_BLOCKS} blocks ahead` : "the monitor's latest-block gas used"}); ` +
      `${EXECUTORS} real Executors (LevelDB); ${WINDOW_SEC} s window after ${WARMUP_SEC} s warm-up`,
  )
  console.log(
    `chains: ${(kMax * CHAIN_CAPACITY).toFixed(0)} fills/s at K=${kMax}` +
      (ceiling
        ? `; machine: ${ceiling.pipeline.filledPerSec.toFixed(0)} fills/s through the same pipeline, ` +
          `${ceiling.sendsPerSec.toFixed(0)} signed sends/s`
        : ''),
  )
  const header = [
    'K',
    'capacity/s',
    'offered/s',
    'filled/s',
    'efficiency',
    'util mean',
    'util min',
    'blocks/s',
    'router ms/batch',
    'intents/batch',
    'harness CPU',
    'anvils CPU',
    'others CPU',
    'anvils RSS',
  ]
  const table = rows.map((r) => [
    String(r.k),
    r.capacityPerSec.toFixed(0),
    r.offeredPerSec.toFixed(1),
    r.filledPerSec.toFixed(1),
    base === undefined ? 'n/a' : pct(r.filledPerSec / (r.k * base)),
    pct(r.utilMean),
    pct(r.utilMin),
    r.blocksPerSec.toFixed(3),
    `${r.routerMsMean.toFixed(2)} (p99 ${r.routerMsP99.toFixed(2)})`,
    r.batchIntentsMean.toFixed(0),
    pct(r.harnessCpu),
    pct(r.anvilCpu),
    pct(Math.max(0, r.machineBusy - r.harnessCpu - r.anvilCpu)),
    `${r.anvilRssMb.toFixed(0)} MB`,
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ')
  console.log(line(header))
  for (const row of table) console.log(line(row))
  console.log(
    `filled/s: per chain, fills in the N blocks that arrived in the window over N block intervals (fitted to their arrival times), summed.\n` +
      `efficiency: filled/s ÷ (K × filled/s at K=1)${base === undefined ? ' (n/a: no K=1 run)' : ''}. ` +
      `util: fill gas ÷ (gas limit × blocks), per chain. CPU: in units of one core ` +
      `(others: processes not of this benchmark).`,
  )
  for (const r of rows) {
    const notes: string[] = []
    if (r.executorErrors > 0) notes.push(`${r.executorErrors} executor errors`)
    if (r.expired > 0) notes.push(`${r.expired} intents expired`)
    if (r.shed > 0) notes.push(`${r.shed} offered intents shed (queue full, ${QUEUE_SEC} s of load)`)
    if (r.foreignTxs > 0) notes.push(`${r.foreignTxs} non-fill txs`)
    console.log(
      `  K=${r.k}: Executor confirmations ${r.executorConfirmed.toFixed(1)}/s, routed to confirmed p50 ` +
        `${r.fillLatencyP50Ms.toFixed(0)} ms p99 ${r.fillLatencyP99Ms.toFixed(0)} ms, event loop delay p99 ` +
        `${r.loopDelayP99Ms.toFixed(0)} ms, chains down/absent in ${pct(r.downShare)} of batches, queue at end ${r.queuedAtEnd} ` +
        `(oldest ${r.oldestQueuedSec.toFixed(0)} s), ` +
        `highest base fee ${r.maxBaseFee} wei${notes.length > 0 ? `, ${notes.join(', ')}` : ''}`,
    )
  }
}

async function main(): Promise<void> {
  log(`node ${process.version}, ${availableParallelism()} cores, mode ${MODE}`)
  let ceiling: Ceiling | undefined
  if (MODE === 'all' || MODE === 'ceiling') {
    ceiling = await measureCeiling()
    printCeiling(ceiling)
  }
  if (MODE === 'all' || MODE === 'scale') {
    const rows: ScaleRow[] = []
    for (const k of KS) {
      rows.push(
        await runScale({ k, fillsPerBlock: FILLS_PER_BLOCK, loadFactor: LOAD_FACTOR, windowSec: WINDOW_SEC }),
      )
      const r = rows.at(-1)!
      log(`  K=${k}: ${r.filledPerSec.toFixed(1)} fills/s, utilisation ${pct(r.utilMean)}`)
    }
    printScale(rows, ceiling)
  }
  if (MODE === 'all' || MODE === 'failover') await measureFailover()
}

try {
  await main()
} catch (err) {
  if (!interrupted) {
    log(`rollups bench failed: ${(err as Error).stack ?? String(err)}`)
    process.exitCode = 1
  }
} finally {
  if (!interrupted) {
    await closeAll()
    // Every process and store is closed; fetch can leave destroyed half-open sockets that keep the
    // event loop alive, so leave now.
    process.exit()
  }
}
