/**
 * The health monitor's rule and its thresholds: what a poll's figures (and the RPC's consistency) make of a
 * rollup's status. Pure; the monitor (health-monitor.ts) measures, this decides.
 */
import { DEFAULT_HEALTH_MIN_INTERVAL_MS } from './health-report.ts'
import type { RollupStatus } from './router.ts'

/** Options of a {@link HealthMonitor}; plain data, every threshold with a default. */
export interface HealthMonitorOptions {
  /** RPC URL of each rollup this node serves, by chain id. */
  rollups: ReadonlyMap<number, string>
  /** Interval between the starts of two polls of one rollup. Default 250 ms. */
  pollMs?: number
  /** Timeout of one RPC request (viem retries nothing: we count errors ourselves). Default 1 000 ms. */
  rpcTimeoutMs?: number
  /** Down when the RPC has been failing for longer than this since the last success. Default 1 000 ms. */
  downAfterMs?: number
  /** Down when no new block came for max(stallBlockTimes × block time, stallMinMs). Defaults 3 and 3 000 ms. */
  stallBlockTimes?: number
  stallMinMs?: number
  /** Degraded when no new block came for lateBlockTimes × block time + pollMs. Default 2. */
  lateBlockTimes?: number
  /** Degraded above this gas used ratio. Default 9 000 bps (90 %). */
  degradedGasRatioBps?: number
  /** Degraded above this RPC latency. Default 500 ms. */
  degradedLatencyMs?: number
  /** A report per rollup at most this often, and at once on a status change. Default 1 000 ms. */
  reportIntervalMs?: number
  /** Never two reports of one rollup closer than this (receivers IGNORE them). Default 100 ms. */
  minReportGapMs?: number
  /** Blocks over which the block interval is averaged (anvil timestamps are whole seconds). Default 8. */
  blockWindow?: number
  /**
   * A head more than this many blocks below the highest head seen is not a reorg but an inconsistent
   * RPC (a restarted or replaced chain, a load balancer over nodes far apart): down. Default 64.
   */
  maxReorgDepth?: number
  /** Down for this long after the last inconsistent answer (a head gone back too far). Default 3 000 ms. */
  inconsistentHoldMs?: number
  /** The chain id is asked again this often, and after every failed poll. Default 10 000 ms. */
  chainIdCheckMs?: number
}

/** The options with every default filled in. */
export type ResolvedHealthMonitorOptions = Required<HealthMonitorOptions>

/** Defaults of {@link HealthMonitorOptions}. */
export const DEFAULT_HEALTH_MONITOR_OPTIONS: Omit<ResolvedHealthMonitorOptions, 'rollups'> = {
  pollMs: 250,
  rpcTimeoutMs: 1_000,
  downAfterMs: 1_000,
  stallBlockTimes: 3,
  stallMinMs: 3_000,
  lateBlockTimes: 2,
  degradedGasRatioBps: 9_000,
  degradedLatencyMs: 500,
  reportIntervalMs: 1_000,
  minReportGapMs: DEFAULT_HEALTH_MIN_INTERVAL_MS,
  blockWindow: 8,
  maxReorgDepth: 64,
  inconsistentHoldMs: 3_000,
  chainIdCheckMs: 10_000,
}

/** Why a rollup has its status; bounded, used as a log field. */
export type HealthReason =
  | 'ok'
  | 'rpc_failing'
  | 'stalled'
  | 'rpc_error'
  | 'congested'
  | 'slow_rpc'
  | 'late_block'
  | 'wrong_chain'
  | 'head_backwards'

/** What {@link classifyHealth} looks at. */
export interface HealthObservation {
  nowMs: number
  /** When monitoring started: the reference while nothing succeeded yet. */
  startedAtMs: number
  consecutiveErrors: number
  lastSuccessAtMs: number | undefined
  lastNewBlockAtMs: number | undefined
  blockTimeMs: number
  gasUsedRatioBps: number
  latencyMs: number
  /** The RPC's last chain id answer was not the configured chain id. */
  wrongChain?: boolean
  /** Last time the head went back more than maxReorgDepth. */
  rewoundAtMs?: number
}

/**
 * The status rule, first match wins:
 * down: the RPC answers another chain id, or its head went back more than maxReorgDepth less than
 * inconsistentHoldMs ago (an inconsistent RPC is worse than a dead one: its figures are of another chain);
 * down: the RPC has failed since the last success more than downAfterMs ago, or no new block for more than
 * max(stallBlockTimes × block time, stallMinMs); degraded: the last poll failed, gas ratio above the
 * threshold, RPC latency above the threshold, or a block is late; up otherwise.
 */
export function classifyHealth(
  o: HealthObservation,
  t: Pick<
    ResolvedHealthMonitorOptions,
    | 'downAfterMs'
    | 'stallBlockTimes'
    | 'stallMinMs'
    | 'lateBlockTimes'
    | 'degradedGasRatioBps'
    | 'degradedLatencyMs'
    | 'pollMs'
  > & { inconsistentHoldMs?: number },
): { status: RollupStatus; reason: HealthReason } {
  if (o.wrongChain === true) return { status: 'down', reason: 'wrong_chain' }
  const hold = t.inconsistentHoldMs ?? DEFAULT_HEALTH_MONITOR_OPTIONS.inconsistentHoldMs
  if (o.rewoundAtMs !== undefined && o.nowMs - o.rewoundAtMs < hold)
    return { status: 'down', reason: 'head_backwards' }
  const sinceSuccess = o.nowMs - (o.lastSuccessAtMs ?? o.startedAtMs)
  if (o.consecutiveErrors > 0 && sinceSuccess > t.downAfterMs)
    return { status: 'down', reason: 'rpc_failing' }
  const sinceNewBlock = o.nowMs - (o.lastNewBlockAtMs ?? o.startedAtMs)
  if (sinceNewBlock > Math.max(t.stallBlockTimes * o.blockTimeMs, t.stallMinMs)) {
    return { status: 'down', reason: 'stalled' }
  }
  if (o.consecutiveErrors > 0) return { status: 'degraded', reason: 'rpc_error' }
  if (o.gasUsedRatioBps > t.degradedGasRatioBps) return { status: 'degraded', reason: 'congested' }
  if (o.latencyMs > t.degradedLatencyMs) return { status: 'degraded', reason: 'slow_rpc' }
  if (o.blockTimeMs > 0 && sinceNewBlock > t.lateBlockTimes * o.blockTimeMs + t.pollMs) {
    return { status: 'degraded', reason: 'late_block' }
  }
  return { status: 'up', reason: 'ok' }
}
