/**
 * The health monitor: polls each rollup this node serves over its own RPC (viem), measures it, classifies
 * it up / degraded / down, and signs and publishes a {@link HealthReport} per rollup.
 *
 * Polling `eth_getBlockByNumber('latest')` rather than subscribing: a poll that fails is itself the
 * measurement (a subscription that goes quiet says nothing), and it needs no reconnect logic.
 */
import type { Logger } from 'pino'
import { Counter, Gauge, type Registry } from 'prom-client'
import { createPublicClient, type LocalAccount, type PublicClient } from 'viem'
import { abortableDelay } from './delay.ts'
import {
  classifyHealth,
  DEFAULT_HEALTH_MONITOR_OPTIONS,
  type HealthMonitorOptions,
  type HealthReason,
  type ResolvedHealthMonitorOptions,
} from './health-classify.ts'
import {
  gasRatioBps,
  HEALTH_STATUS_CODE,
  type HealthReport,
  type SignedHealthReport,
  signHealthReport,
} from './health-report.ts'
import type { RollupStatus } from './router.ts'
import { type RpcTransport, rpcTransport } from './rpc.ts'

export {
  classifyHealth,
  DEFAULT_HEALTH_MONITOR_OPTIONS,
  type HealthMonitorOptions,
  type HealthObservation,
  type HealthReason,
  type ResolvedHealthMonitorOptions,
} from './health-classify.ts'

/** This node's latest own measurement of one rollup. */
export interface LocalHealth {
  chainId: bigint
  status: RollupStatus
  reason: HealthReason
  /** Figures of the latest block seen (zeros before the first success). */
  blockNumber: bigint
  gasUsed: bigint
  gasLimit: bigint
  gasUsedRatioBps: number
  baseFeeWei: bigint
  /** Average block interval over the window; 0 while unknown. */
  blockTimeMs: number
  /** Round trip of the latest successful poll. */
  latencyMs: number
  consecutiveErrors: number
  lastSuccessAtMs: number | undefined
  /** When this node first saw the current head. */
  lastNewBlockAtMs: number | undefined
  measuredAtMs: number
}

/** Collaborators of a {@link HealthMonitor}. */
export interface HealthMonitorModules {
  log: Logger
  registry: Registry
  /** The validator's key: reports are signed with it and carry its address. */
  account: Pick<LocalAccount, 'address' | 'signTypedData'>
  networkId: string
  /** Called with every signed report (gossip it, feed it to the local aggregator). Errors are logged. */
  publish: (report: SignedHealthReport) => void | Promise<void>
  /** Wall clock, unix ms. Default Date.now. */
  now?: () => number
}

interface SeenBlock {
  number: bigint
  /** Block timestamp, unix seconds. */
  timestamp: bigint
}

interface LatestBlock {
  number: bigint
  timestamp: bigint
  gasUsed: bigint
  gasLimit: bigint
  baseFeePerGas: bigint | null
}

interface ChainState {
  chainId: number
  url: string
  client: PublicClient
  /** Distinct blocks seen, ascending by number, spanning at most blockWindow blocks. */
  window: SeenBlock[]
  head: { number: bigint; gasUsed: bigint; gasLimit: bigint; baseFeeWei: bigint } | undefined
  /** The last block fetched. */
  latest: LatestBlock | undefined
  blockTimeMs: number
  latencyMs: number
  consecutiveErrors: number
  lastSuccessAtMs: number | undefined
  lastNewBlockAtMs: number | undefined
  startedAtMs: number
  local: LocalHealth | undefined
  lastPublishedAtMs: number | undefined
  lastPublishedStatus: RollupStatus | undefined
  lastTimestampMs: bigint
  /** When the chain id was last found right; undefined: ask before the next block. */
  chainIdCheckedAtMs: number | undefined
  /** The chain id the RPC answered when it was not the configured one. */
  wrongChainId: number | undefined
  /** Highest head seen since the last inconsistency: what "went back too far" is measured from. */
  maxHead: bigint | undefined
  rewoundAtMs: number | undefined
}

/** Fewest blocks the block time is averaged over. */
const MIN_BLOCK_TIME_SPAN = 4

/** Metric label of a chain: bounded by genesis. */
function chainLabel(chainId: number): string {
  return String(chainId)
}

function gauge(registry: Registry, name: string, help: string): Gauge<'chain_id'> {
  return (
    (registry.getSingleMetric(name) as Gauge<'chain_id'> | undefined) ??
    new Gauge({ name, help, labelNames: ['chain_id'], registers: [registry] })
  )
}

function counter<L extends string>(registry: Registry, name: string, help: string, labels: L[]): Counter<L> {
  return (
    (registry.getSingleMetric(name) as Counter<L> | undefined) ??
    new Counter({ name, help, labelNames: labels, registers: [registry] })
  )
}

/**
 * Polls every rollup of `options.rollups`, keeps the latest own measurement per chain ({@link local}),
 * and publishes signed reports: at most every reportIntervalMs per chain, at once on a status change.
 */
export class HealthMonitor {
  readonly options: ResolvedHealthMonitorOptions
  readonly #modules: HealthMonitorModules
  readonly #log: Logger
  readonly #now: () => number
  readonly #chains: ChainState[] = []
  #abort: AbortController | undefined
  #loops: Promise<void>[] = []
  readonly #transports: RpcTransport[] = []
  readonly #metrics: {
    status: Gauge<'chain_id'>
    blockNumber: Gauge<'chain_id'>
    gasRatio: Gauge<'chain_id'>
    baseFee: Gauge<'chain_id'>
    blockTime: Gauge<'chain_id'>
    latency: Gauge<'chain_id'>
    rpcErrors: Counter<'chain_id'>
    inconsistent: Counter<'chain_id' | 'kind'>
    reports: Counter<'chain_id' | 'status'>
  }

  constructor(options: HealthMonitorOptions, modules: HealthMonitorModules) {
    this.options = { ...DEFAULT_HEALTH_MONITOR_OPTIONS, ...options }
    for (const [k, v] of Object.entries(this.options)) {
      if (k !== 'rollups' && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) {
        throw new RangeError(`health monitor option ${k} must be a non-negative number`)
      }
    }
    if (this.options.pollMs <= 0 || this.options.blockWindow < 1) {
      throw new RangeError('pollMs must be positive and blockWindow at least 1')
    }
    this.#modules = modules
    this.#log = modules.log.child({ module: 'health-monitor' })
    this.#now = modules.now ?? Date.now
    const r = modules.registry
    this.#metrics = {
      status: gauge(r, 'murmur_rollups_health_status', 'Own view of each rollup: 0 up, 1 degraded, 2 down'),
      blockNumber: gauge(r, 'murmur_rollups_head_block_number', 'Latest block number seen'),
      gasRatio: gauge(
        r,
        'murmur_rollups_gas_used_ratio_bps',
        'Gas used / gas limit of the latest block, bps',
      ),
      baseFee: gauge(r, 'murmur_rollups_base_fee_wei', 'Base fee of the latest block, wei'),
      blockTime: gauge(r, 'murmur_rollups_block_time_ms', 'Average block interval over the window, ms'),
      latency: gauge(r, 'murmur_rollups_rpc_latency_ms', 'Round trip of the latest successful poll, ms'),
      rpcErrors: counter(r, 'murmur_rollups_rpc_errors_total', 'Failed health polls', ['chain_id']),
      inconsistent: counter(
        r,
        'murmur_rollups_rpc_inconsistent_total',
        'Inconsistent RPC answers: wrong chain id, head gone back beyond maxReorgDepth',
        ['chain_id', 'kind'],
      ),
      reports: counter(r, 'murmur_rollups_health_reports_total', 'Signed health reports published', [
        'chain_id',
        'status',
      ]),
    }
  }

  /** Starts one poll loop per rollup. Idempotent while running. */
  start(): void {
    if (this.#abort !== undefined) return
    const abort = new AbortController()
    this.#abort = abort
    const startedAtMs = this.#now()
    this.#chains.length = 0
    for (const [chainId, url] of [...this.options.rollups].sort((a, b) => a[0] - b[0])) {
      const rpc = rpcTransport(url, {
        timeout: this.options.rpcTimeoutMs,
        retryCount: 0,
        fetchOptions: { signal: abort.signal },
      })
      this.#transports.push(rpc)
      this.#chains.push({
        chainId,
        url,
        client: createPublicClient({ transport: rpc.transport }),
        window: [],
        head: undefined,
        latest: undefined,
        blockTimeMs: 0,
        latencyMs: 0,
        consecutiveErrors: 0,
        lastSuccessAtMs: undefined,
        lastNewBlockAtMs: undefined,
        startedAtMs,
        local: undefined,
        lastPublishedAtMs: undefined,
        lastPublishedStatus: undefined,
        lastTimestampMs: 0n,
        chainIdCheckedAtMs: undefined,
        wrongChainId: undefined,
        maxHead: undefined,
        rewoundAtMs: undefined,
      })
    }
    this.#loops = this.#chains.map((s) => this.#loop(s, abort.signal))
    this.#log.info({ rollups: this.#chains.map((s) => s.chainId) }, 'health monitor started')
  }

  /** Stops polling; resolves once every in-flight poll and publish has finished. */
  async stop(): Promise<void> {
    const abort = this.#abort
    if (abort === undefined) return
    abort.abort()
    await Promise.all(this.#loops)
    this.#loops = []
    await Promise.all(this.#transports.splice(0).map((t) => t.close()))
    this.#abort = undefined
    this.#log.info('health monitor stopped')
  }

  /** The latest own measurement of each rollup polled at least once, by chain id. */
  local(): ReadonlyMap<bigint, LocalHealth> {
    const out = new Map<bigint, LocalHealth>()
    for (const s of this.#chains) if (s.local !== undefined) out.set(BigInt(s.chainId), s.local)
    return out
  }

  async #loop(s: ChainState, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const started = this.#now()
      try {
        await this.#poll(s, signal)
      } catch (err) {
        // #poll handles RPC failures itself; anything here is a bug.
        this.#log.error({ err, chainId: s.chainId }, 'health poll failed unexpectedly')
      }
      const wait = this.options.pollMs - (this.#now() - started)
      if (wait > 0 && !signal.aborted) await abortableDelay(wait, signal)
    }
  }

  async #poll(s: ChainState, signal: AbortSignal): Promise<void> {
    try {
      if (!(await this.#chainIdRight(s))) {
        // Figures of another chain mean nothing here: the rollup is down until the RPC answers right.
        s.consecutiveErrors = 0
        await this.#update(s)
        return
      }
    } catch (err) {
      if (signal.aborted) return
      this.#failed(s, err)
      await this.#update(s)
      return
    }
    const t0 = performance.now()
    try {
      // The block number first: most polls see the same head again, and then the block is not fetched.
      const number = await s.client.getBlockNumber({ cacheTime: 0 })
      const latencyMs = Math.round(performance.now() - t0)
      const block: LatestBlock =
        s.latest !== undefined && s.latest.number === number
          ? s.latest
          : await s.client.getBlock({ blockNumber: number })
      s.latest = block
      const now = this.#now()
      const depth = BigInt(this.options.maxReorgDepth)
      if (s.maxHead !== undefined && block.number + depth < s.maxHead) {
        // Back further than any reorg we accept: a restarted or replaced chain, or an RPC pool over nodes
        // far apart. Down for inconsistentHoldMs; the new head is the reference from now on.
        this.#log.error(
          {
            chainId: s.chainId,
            url: s.url,
            from: s.maxHead,
            to: block.number,
            back: s.maxHead - block.number,
            maxReorgDepth: this.options.maxReorgDepth,
          },
          'rollup head went backwards beyond the allowed reorg depth: treated as down',
        )
        this.#metrics.inconsistent.inc({ chain_id: chainLabel(s.chainId), kind: 'head_backwards' })
        s.rewoundAtMs = now
        s.maxHead = block.number
        s.window = []
        // A chain that starts over may be another chain at the same URL.
        s.chainIdCheckedAtMs = undefined
      } else if (s.window.length > 0 && block.number < s.window.at(-1)!.number) {
        // A reorg within the allowed depth: forget the blocks above the new head.
        this.#log.info(
          { chainId: s.chainId, from: s.window.at(-1)!.number, to: block.number },
          'rollup head went back within the allowed reorg depth',
        )
        s.window = s.window.filter((b) => b.number <= block.number)
      }
      if (s.maxHead === undefined || block.number > s.maxHead) s.maxHead = block.number
      const prev = s.window.at(-1)
      if (prev === undefined || block.number > prev.number) {
        s.window.push({ number: block.number, timestamp: block.timestamp })
        s.lastNewBlockAtMs = now
      }
      if (s.window.length < 2 && block.number > 0n) {
        // Seed the window with an older block so the block time is known from the first poll on.
        const back = BigInt(this.options.blockWindow)
        const older = await s.client.getBlock({ blockNumber: block.number > back ? block.number - back : 0n })
        s.window.unshift({ number: older.number, timestamp: older.timestamp })
      }
      const floor = block.number - BigInt(this.options.blockWindow)
      while (s.window.length > 2 && s.window[0]!.number < floor) s.window.shift()
      const first = s.window[0]!
      const head = s.window.at(-1)!
      // Timestamps are whole seconds: a span of one or two blocks says little, so wait for a few.
      if (head.number - first.number >= BigInt(Math.min(MIN_BLOCK_TIME_SPAN, this.options.blockWindow))) {
        const ms = ((head.timestamp - first.timestamp) * 1000n) / (head.number - first.number)
        s.blockTimeMs = Number(ms > 0xffff_ffffn ? 0xffff_ffffn : ms)
      }
      s.head = {
        number: block.number,
        gasUsed: block.gasUsed,
        gasLimit: block.gasLimit,
        baseFeeWei: block.baseFeePerGas ?? 0n,
      }
      s.latencyMs = latencyMs
      if (s.consecutiveErrors > 0) {
        this.#log.info({ chainId: s.chainId, errors: s.consecutiveErrors }, 'rollup RPC answers again')
      }
      s.consecutiveErrors = 0
      s.lastSuccessAtMs = now
    } catch (err) {
      if (signal.aborted) return
      this.#failed(s, err)
    }
    await this.#update(s)
  }

  #failed(s: ChainState, err: unknown): void {
    // A chain that comes back may be another chain at the same height (restarted): fetch its block, and
    // ask its chain id again.
    s.latest = undefined
    s.chainIdCheckedAtMs = undefined
    s.consecutiveErrors++
    this.#metrics.rpcErrors.inc({ chain_id: chainLabel(s.chainId) })
    if (s.consecutiveErrors === 1) {
      this.#log.warn({ chainId: s.chainId, err: (err as Error).message }, 'rollup RPC failed')
    }
  }

  /**
   * True when the RPC's chain id is the configured one: asked at the start, after a failed poll or a deep
   * rewind, and every chainIdCheckMs. A wrong answer is logged (error, both ids) once per change.
   */
  async #chainIdRight(s: ChainState): Promise<boolean> {
    const now = this.#now()
    if (
      s.wrongChainId === undefined &&
      s.chainIdCheckedAtMs !== undefined &&
      now - s.chainIdCheckedAtMs < this.options.chainIdCheckMs
    )
      return true
    const answered = await s.client.getChainId()
    if (answered !== s.chainId) {
      if (s.wrongChainId !== answered) {
        this.#log.error(
          { chainId: s.chainId, url: s.url, answeredChainId: answered },
          'rollup RPC answers another chain id: treated as down',
        )
        this.#metrics.inconsistent.inc({ chain_id: chainLabel(s.chainId), kind: 'wrong_chain' })
      }
      s.wrongChainId = answered
      s.lastSuccessAtMs = now
      return false
    }
    if (s.wrongChainId !== undefined) {
      this.#log.warn(
        { chainId: s.chainId, url: s.url, wasChainId: s.wrongChainId },
        'rollup RPC answers the configured chain id again',
      )
      // Nothing seen while it was another chain describes this one.
      s.wrongChainId = undefined
      s.latest = undefined
      s.window = []
      s.maxHead = undefined
    }
    s.chainIdCheckedAtMs = now
    return true
  }

  async #update(s: ChainState): Promise<void> {
    const now = this.#now()
    const { status, reason } = classifyHealth(
      {
        nowMs: now,
        startedAtMs: s.startedAtMs,
        consecutiveErrors: s.consecutiveErrors,
        lastSuccessAtMs: s.lastSuccessAtMs,
        lastNewBlockAtMs: s.lastNewBlockAtMs,
        blockTimeMs: s.blockTimeMs,
        gasUsedRatioBps: s.head ? gasRatioBps(s.head.gasUsed, s.head.gasLimit) : 0,
        latencyMs: s.latencyMs,
        wrongChain: s.wrongChainId !== undefined,
        rewoundAtMs: s.rewoundAtMs,
      },
      this.options,
    )
    const previous = s.local?.status
    const h = s.head
    s.local = {
      chainId: BigInt(s.chainId),
      status,
      reason,
      blockNumber: h?.number ?? 0n,
      gasUsed: h?.gasUsed ?? 0n,
      gasLimit: h?.gasLimit ?? 0n,
      gasUsedRatioBps: h ? gasRatioBps(h.gasUsed, h.gasLimit) : 0,
      baseFeeWei: h?.baseFeeWei ?? 0n,
      blockTimeMs: s.blockTimeMs,
      latencyMs: s.latencyMs,
      consecutiveErrors: s.consecutiveErrors,
      lastSuccessAtMs: s.lastSuccessAtMs,
      lastNewBlockAtMs: s.lastNewBlockAtMs,
      measuredAtMs: now,
    }
    const label = { chain_id: chainLabel(s.chainId) }
    this.#metrics.status.set(label, HEALTH_STATUS_CODE[status])
    this.#metrics.blockNumber.set(label, Number(s.local.blockNumber))
    this.#metrics.gasRatio.set(label, s.local.gasUsedRatioBps)
    this.#metrics.baseFee.set(label, Number(s.local.baseFeeWei))
    this.#metrics.blockTime.set(label, s.local.blockTimeMs)
    this.#metrics.latency.set(label, s.local.latencyMs)
    if (previous !== undefined && previous !== status) {
      this.#log.info({ chainId: s.chainId, from: previous, to: status, reason }, 'rollup status changed')
    }
    // Nothing worth saying before the first answer, unless it is that the rollup is down.
    if (h === undefined && status !== 'down') return
    const sinceLast = s.lastPublishedAtMs === undefined ? Number.POSITIVE_INFINITY : now - s.lastPublishedAtMs
    const due = sinceLast >= this.options.reportIntervalMs || status !== s.lastPublishedStatus
    if (!due || sinceLast < this.options.minReportGapMs) return
    const timestampMs = BigInt(now)
    if (timestampMs <= s.lastTimestampMs) return // the clock went back; receivers would IGNORE it
    const report: HealthReport = {
      validator: this.#modules.account.address.toLowerCase() as HealthReport['validator'],
      chainId: BigInt(s.chainId),
      blockNumber: s.local.blockNumber,
      gasUsed: s.local.gasUsed,
      gasLimit: s.local.gasLimit,
      gasUsedRatioBps: s.local.gasUsedRatioBps,
      baseFeeWei: s.local.baseFeeWei,
      blockTimeMs: s.local.blockTimeMs,
      latencyMs: Math.min(s.local.latencyMs, 0xffff_ffff),
      status: HEALTH_STATUS_CODE[status],
      timestampMs,
    }
    s.lastPublishedAtMs = now
    s.lastPublishedStatus = status
    s.lastTimestampMs = timestampMs
    try {
      const signed = await signHealthReport(this.#modules.account, this.#modules.networkId, report)
      await this.#modules.publish(signed)
      this.#metrics.reports.inc({ ...label, status })
    } catch (err) {
      this.#log.warn({ err, chainId: s.chainId }, 'publishing a health report failed')
    }
  }
}
