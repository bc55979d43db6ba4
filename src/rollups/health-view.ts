/**
 * Health aggregation: from many validators' signed reports to one {@link HealthView} every node agrees on
 * (ARCHITECTURE.md, Self-healing: "a rollup is down when reports carrying more than 1/3 of stake say so
 * or no fresh report exists").
 *
 * {@link aggregateHealth} is pure and deterministic: the same reports, time, stakes and rollups give the
 * same view whatever the order of the inputs. A proposer puts {@link HealthAggregator.reportsUsed} in its
 * block; validators re-run {@link aggregateHealth} over exactly those reports at the block's time.
 */
import type { Address } from 'viem'
import { HEALTH_STATUS_NAME, type HealthReport, type SignedHealthReport } from './health-report.ts'
import type { HealthView, RollupHealth, RollupStatus, RollupType } from './router.ts'

/** A rollup as genesis declares it. */
export interface GenesisRollup {
  chainId: number | bigint
  name: string
  type: RollupType
  securityBps: number
  /** Its settlement contracts (lowercase addresses); absent: served without escrow. */
  settlement?: { readonly settler: string; readonly lightClient: string }
}

/** Which reports count at a given time. */
export interface HealthWindow {
  /** A report older than `nowMs - freshnessMs` is not fresh. */
  freshnessMs: number
  /** A report dated after `nowMs + maxSkewMs` does not count (it should not have been accepted). */
  maxSkewMs: number
}

/** Default window: genesis' defaults (healthFreshnessMs 5 000, maxClockSkewSec 30). */
export const DEFAULT_HEALTH_WINDOW: HealthWindow = { freshnessMs: 5_000, maxSkewMs: 30_000 }

/** One weighted sample of a median. */
export interface WeightedSample<T extends number | bigint> {
  value: T
  weight: bigint
  /** Orders equal values (the validator address), so the sort is total. */
  tiebreak: string
}

function cmp(a: number | bigint, b: number | bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * The lower stake-weighted median: sort by (value, tiebreak) and take the first value at which the
 * cumulative weight reaches half of the total (`2 × cum >= total`). Undefined when the total weight is 0.
 * Integer arithmetic only.
 */
export function weightedMedian<T extends number | bigint>(
  samples: readonly WeightedSample<T>[],
): T | undefined {
  const sorted = samples
    .filter((s) => s.weight > 0n)
    .sort((a, b) => cmp(a.value, b.value) || (a.tiebreak < b.tiebreak ? -1 : a.tiebreak > b.tiebreak ? 1 : 0))
  let total = 0n
  for (const s of sorted) total += s.weight
  if (total === 0n) return undefined
  let cum = 0n
  for (const s of sorted) {
    cum += s.weight
    if (cum * 2n >= total) return s.value
  }
  return undefined
}

/** Lowercase address -> positive power; zero and negative powers dropped. */
function normalizeValidators(validators: ReadonlyMap<Address, bigint>): Map<string, bigint> {
  const out = new Map<string, bigint>()
  for (const [a, p] of validators) if (p > 0n) out.set(a.toLowerCase(), (out.get(a.toLowerCase()) ?? 0n) + p)
  return out
}

/** True when `b` should be kept over `a` for the same (validator, chain): newer, then smaller signature. */
function fresher(a: SignedHealthReport, b: SignedHealthReport): boolean {
  if (b.report.timestampMs !== a.report.timestampMs) return b.report.timestampMs > a.report.timestampMs
  return b.signature < a.signature
}

/**
 * The reports that count at `nowMs`: from a validator with positive power, for a genesis rollup, inside the
 * window, at most one (the freshest) per (validator, chain). Sorted by chain id, then validator address.
 * Signatures are not checked here: reports come from gossip validation or a block's own check.
 */
export function selectFreshReports(
  reports: Iterable<SignedHealthReport>,
  nowMs: number | bigint,
  validators: ReadonlyMap<Address, bigint>,
  rollups: readonly GenesisRollup[],
  window: HealthWindow = DEFAULT_HEALTH_WINDOW,
): SignedHealthReport[] {
  const now = BigInt(nowMs)
  const oldest = now - BigInt(window.freshnessMs)
  const newest = now + BigInt(window.maxSkewMs)
  const powers = normalizeValidators(validators)
  const chains = new Set(rollups.map((r) => BigInt(r.chainId)))
  const best = new Map<string, SignedHealthReport>()
  for (const s of reports) {
    const r = s.report
    if (!chains.has(r.chainId) || !powers.has(r.validator)) continue
    if (r.timestampMs < oldest || r.timestampMs > newest) continue
    const key = `${r.chainId}/${r.validator}`
    const cur = best.get(key)
    if (cur === undefined || fresher(cur, s)) best.set(key, s)
  }
  return [...best.values()].sort(
    (a, b) =>
      cmp(a.report.chainId, b.report.chainId) ||
      (a.report.validator < b.report.validator ? -1 : a.report.validator > b.report.validator ? 1 : 0),
  )
}

const DOWN_ROW = {
  status: 'down' as RollupStatus,
  gasUsedRatioBps: 0,
  baseFeeWei: 0n,
  blockTimeMs: 0,
  latencyMs: 0,
  gasLimit: 0n,
  gasUsed: 0n,
}

/**
 * The network's view of every genesis rollup at `nowMs`.
 *
 * Per rollup, over the fresh reports (see {@link selectFreshReports}):
 * - down when no fresh report exists, or when the reports saying down carry more than 1/3 of the TOTAL
 *   power (`w × 3 > total`);
 * - otherwise up or degraded by the stake-weighted median of the statuses (a median of "down", possible
 *   when few validators report, counts as degraded: down needs the 1/3 rule);
 * - each figure is the stake-weighted median of that figure over the reports that do not say down (their
 *   last figures describe a chain they cannot reach), or over all fresh reports when every one says down.
 */
export function aggregateHealth(
  reports: Iterable<SignedHealthReport>,
  nowMs: number | bigint,
  validators: ReadonlyMap<Address, bigint>,
  rollups: readonly GenesisRollup[],
  window: HealthWindow = DEFAULT_HEALTH_WINDOW,
): HealthView {
  const fresh = selectFreshReports(reports, nowMs, validators, rollups, window)
  return aggregateReports(
    fresh.map((s) => s.report),
    validators,
    rollups,
  )
}

/**
 * The health view over `reports`, at most one per (validator, chain), already chosen (fresh reports, or
 * the observations a commit's vote extensions carry): per rollup, the stake-weighted median of each figure;
 * `down` when reports carrying more than 1/3 of the total power say so, `degraded` when the median status
 * is degraded or worse; a rollup nobody reports on is down. Weights are `validators`' powers; reports of
 * others count for nothing.
 */
export function aggregateReports(
  reports: readonly HealthReport[],
  validators: ReadonlyMap<Address, bigint>,
  rollups: readonly GenesisRollup[],
): HealthView {
  const powers = normalizeValidators(validators)
  let total = 0n
  for (const p of powers.values()) total += p
  const byChain = new Map<bigint, HealthReport[]>()
  for (const r of reports) {
    if (!powers.has(r.validator)) continue
    const list = byChain.get(r.chainId)
    if (list === undefined) byChain.set(r.chainId, [r])
    else list.push(r)
  }
  const view = new Map<bigint, RollupHealth>()
  for (const rollup of [...rollups].sort((a, b) => cmp(BigInt(a.chainId), BigInt(b.chainId)))) {
    const chainId = BigInt(rollup.chainId)
    const meta = { type: rollup.type, securityBps: rollup.securityBps }
    const list = byChain.get(chainId) ?? []
    if (list.length === 0) {
      view.set(chainId, { ...DOWN_ROW, ...meta })
      continue
    }
    const weight = (r: HealthReport) => powers.get(r.validator) ?? 0n
    let downWeight = 0n
    for (const r of list) if (r.status === 2) downWeight += weight(r)
    const statusMedian = weightedMedian(
      list.map((r) => ({ value: r.status as number, weight: weight(r), tiebreak: r.validator })),
    )
    const status: RollupStatus =
      downWeight * 3n > total ? 'down' : (statusMedian ?? 0) >= 1 ? 'degraded' : 'up'
    const live = list.filter((r) => r.status !== 2)
    const basis = live.length > 0 ? live : list
    const med = <T extends number | bigint>(pick: (r: HealthReport) => T, zero: T): T =>
      weightedMedian(basis.map((r) => ({ value: pick(r), weight: weight(r), tiebreak: r.validator }))) ?? zero
    view.set(chainId, {
      status,
      gasUsedRatioBps: med((r) => r.gasUsedRatioBps, 0),
      baseFeeWei: med((r) => r.baseFeeWei, 0n),
      blockTimeMs: med((r) => r.blockTimeMs, 0),
      latencyMs: med((r) => r.latencyMs, 0),
      gasLimit: med((r) => r.gasLimit, 0n),
      gasUsed: med((r) => r.gasUsed, 0n),
      ...meta,
    })
  }
  return view
}

/**
 * Holds the freshest accepted report per (validator, chain) and turns them into a {@link HealthView}.
 * Feed it reports that passed gossip validation (and the node's own reports).
 */
export class HealthAggregator {
  readonly window: HealthWindow
  readonly #reports = new Map<string, SignedHealthReport>()

  constructor(window: Partial<HealthWindow> = {}) {
    this.window = { ...DEFAULT_HEALTH_WINDOW, ...window }
  }

  /** Keeps `signed` when it is fresher than what is held for its (validator, chain); true when kept. */
  add(signed: SignedHealthReport): boolean {
    const key = `${signed.report.chainId}/${signed.report.validator}`
    const cur = this.#reports.get(key)
    if (cur !== undefined && !fresher(cur, signed)) return false
    this.#reports.set(key, signed)
    return true
  }

  /** Timestamp of the report held for (validator, chain): the `lastSeen` of gossip validation. */
  lastSeen(validator: Address, chainId: bigint): bigint | undefined {
    return this.#reports.get(`${chainId}/${validator.toLowerCase()}`)?.report.timestampMs
  }

  /** Reports held. */
  get size(): number {
    return this.#reports.size
  }

  /** Drops reports older than the freshness window; returns how many. */
  prune(nowMs: number | bigint): number {
    const oldest = BigInt(nowMs) - BigInt(this.window.freshnessMs)
    let n = 0
    for (const [k, s] of this.#reports) {
      if (s.report.timestampMs < oldest) {
        this.#reports.delete(k)
        n++
      }
    }
    return n
  }

  /** Exactly the reports {@link view} uses at `nowMs`, in canonical order (chain id, validator). */
  reportsUsed(
    nowMs: number | bigint,
    validators: ReadonlyMap<Address, bigint>,
    rollups: readonly GenesisRollup[],
  ): SignedHealthReport[] {
    return selectFreshReports(this.#reports.values(), nowMs, validators, rollups, this.window)
  }

  /** The aggregated view at `nowMs`; equal to `aggregateHealth(reportsUsed(...), ...)`. */
  view(
    nowMs: number | bigint,
    validators: ReadonlyMap<Address, bigint>,
    rollups: readonly GenesisRollup[],
  ): HealthView {
    return aggregateHealth(this.#reports.values(), nowMs, validators, rollups, this.window)
  }
}

/** One row of `GET /v1/rollups` (INTERFACES.md). */
export interface RollupRow {
  chainId: number
  name: string
  type: RollupType
  status: RollupStatus
  gasUsedRatioBps: number
  /** Decimal string. */
  baseFeeWei: string
  blockTimeMs: number
  latencyMs: number
  pendingAssignments: number
  /** Its base fee surges (committed state, state/surge.ts): new intents detour around it. */
  surging: boolean
  /** The rollup's settlement contracts from the genesis (what a wallet's order names as originSettler); null: none. */
  settlement: { settler: string; lightClient: string } | null
}

/** Rows of `GET /v1/rollups` in genesis chain id order; a rollup missing from the view shows as down. */
export function rollupRows(
  view: HealthView,
  rollups: readonly GenesisRollup[],
  pendingAssignments: ReadonlyMap<bigint, number> = new Map(),
  surging: ReadonlySet<bigint> = new Set(),
): RollupRow[] {
  return [...rollups]
    .sort((a, b) => cmp(BigInt(a.chainId), BigInt(b.chainId)))
    .map((r) => {
      const chainId = BigInt(r.chainId)
      const h = view.get(chainId)
      return {
        chainId: Number(chainId),
        name: r.name,
        type: r.type,
        status: h?.status ?? 'down',
        gasUsedRatioBps: h?.gasUsedRatioBps ?? 0,
        baseFeeWei: (h?.baseFeeWei ?? 0n).toString(10),
        blockTimeMs: h?.blockTimeMs ?? 0,
        latencyMs: h?.latencyMs ?? 0,
        pendingAssignments: pendingAssignments.get(chainId) ?? 0,
        surging: surging.has(chainId),
        settlement:
          r.settlement === undefined
            ? null
            : { settler: r.settlement.settler, lightClient: r.settlement.lightClient },
      }
    })
}

/** Status name of a report's status code. */
export function reportStatus(report: HealthReport): RollupStatus {
  return HEALTH_STATUS_NAME[report.status] ?? 'down'
}
