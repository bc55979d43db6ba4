/**
 * Base-fee surge detour (issue 13, item 8; docs/decisions.md "Base-fee surges"): a rollup whose base fee,
 * as the block's health view states it, jumps to a multiple of its own recent median is "surging", and
 * the router sends new work elsewhere until it calms.
 *
 * The state is consensus state: it is a pure function of the sequence of block views (planBlock's
 * `view`, the stake-weighted median of the commit's observations), never of a node's own measurements,
 * so every node derives the same flags. Hysteresis: raised at `surgeRaiseBps` of the baseline, cleared
 * only below `surgeClearBps` (lower) and not before `surgeMinHoldBlocks` blocks, so a fee hovering
 * around one level does not flap. The baseline is frozen while a surge lasts (its samples are not
 * added), or a long surge would become the new normal and clear itself while fees are still high.
 */
import type { HealthView, RollupHealth } from '../rollups/router.ts'
import type { AppParams, AppState, RollupSurge, SurgeState } from './types.ts'

export type { RollupSurge, SurgeState } from './types.ts'

/** The surge parameters, resolved. */
export interface SurgeParams {
  /** Raise at or above this share of the baseline, bps (30 000 = 3×). */
  readonly raiseBps: bigint
  /** Clear below this share of the baseline, bps; at most raiseBps. */
  readonly clearBps: bigint
  /** A surge lasts at least this many blocks. */
  readonly minHoldBlocks: bigint
  /** Calm blocks the baseline median is taken over. */
  readonly windowBlocks: number
  /** A base fee below this is never a surge (dust fees: 7 wei to 70 wei is no reason to detour). */
  readonly minBaseFeeWei: bigint
}

/** Defaults of the genesis params `surgeRaiseBps`, `surgeClearBps`, `surgeMinHoldBlocks`, ... */
export const DEFAULT_SURGE_PARAMS = {
  surgeRaiseBps: 30_000,
  surgeClearBps: 15_000,
  surgeMinHoldBlocks: 20,
  surgeWindowBlocks: 64,
  surgeMinBaseFeeWei: 100_000_000n,
} as const

/** Fewest samples before a baseline exists (and so before anything can surge). */
export const MIN_SURGE_SAMPLES = 8

const BPS = 10_000n
const NONE: SurgeState = new Map()

/** The surge parameters of `params`, defaults for those left out. */
export function surgeParamsOf(params: AppParams): SurgeParams {
  const d = DEFAULT_SURGE_PARAMS
  return {
    raiseBps: BigInt(params.surgeRaiseBps ?? d.surgeRaiseBps),
    clearBps: BigInt(params.surgeClearBps ?? d.surgeClearBps),
    minHoldBlocks: BigInt(params.surgeMinHoldBlocks ?? d.surgeMinHoldBlocks),
    windowBlocks: params.surgeWindowBlocks ?? d.surgeWindowBlocks,
    minBaseFeeWei: params.surgeMinBaseFeeWei ?? d.surgeMinBaseFeeWei,
  }
}

/** The lower median of `samples`; undefined with fewer than MIN_SURGE_SAMPLES. */
export function surgeBaseline(samples: readonly bigint[]): bigint | undefined {
  if (samples.length < MIN_SURGE_SAMPLES) return undefined
  const sorted = [...samples].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  return sorted[(sorted.length - 1) >> 1]
}

/** The base fee of `h` in bps of `baseline`; 0 without a positive baseline. */
export function surgeLevelBps(baseFeeWei: bigint, baseline: bigint | undefined): bigint {
  return baseline === undefined || baseline <= 0n ? 0n : (baseFeeWei * BPS) / baseline
}

function withSample(samples: readonly bigint[], fee: bigint, window: number): readonly bigint[] {
  const next = [...samples, fee]
  return next.length > window ? next.slice(next.length - window) : next
}

/**
 * One rollup's surge state after the block at `height` whose view shows it as `h`. A rollup down or
 * missing from the view leaves its state as it was (its figures describe nothing; the router does not
 * use it anyway), except that the hold keeps counting by height.
 */
export function surgeStep(
  prev: RollupSurge | undefined,
  h: RollupHealth | undefined,
  height: bigint,
  p: SurgeParams,
): RollupSurge {
  const cur: RollupSurge = prev ?? { samples: [], since: null }
  if (h === undefined || h.status === 'down') return cur
  const fee = h.baseFeeWei
  const level = surgeLevelBps(fee, surgeBaseline(cur.samples))
  if (cur.since === null) {
    if (level >= p.raiseBps && level > 0n && fee >= p.minBaseFeeWei)
      return { samples: cur.samples, since: height }
    return { samples: withSample(cur.samples, fee, p.windowBlocks), since: null }
  }
  const held = height - cur.since >= p.minHoldBlocks
  if (held && (level < p.clearBps || fee < p.minBaseFeeWei))
    return { samples: withSample(cur.samples, fee, p.windowBlocks), since: null }
  return cur
}

/** The surge state after the block at `height` whose health view is `view`: {@link surgeStep} per rollup. */
export function surgesAfter(
  state: Pick<AppState, 'surges' | 'rollups' | 'params'>,
  view: HealthView,
  height: bigint,
): SurgeState {
  const p = surgeParamsOf(state.params)
  const before = state.surges ?? NONE
  const out = new Map<bigint, RollupSurge>()
  for (const id of state.rollups.map((r) => BigInt(r.chainId)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    out.set(id, surgeStep(before.get(id), view.get(id), height, p))
  }
  return out
}

/**
 * The surging rollups of `surges` with their level (base fee in bps of the baseline) in `view`: what the
 * router detours around, least surging first when it must use one.
 */
export function surgingLevels(surges: SurgeState, view: HealthView): ReadonlyMap<bigint, bigint> {
  const out = new Map<bigint, bigint>()
  for (const [id, s] of surges) {
    if (s.since === null) continue
    out.set(id, surgeLevelBps(view.get(id)?.baseFeeWei ?? 0n, surgeBaseline(s.samples)))
  }
  return out
}

/** Chain ids of the rollups surging in `state` (GET /v1/rollups `surging`). */
export function surgingChains(state: Pick<AppState, 'surges'>): ReadonlySet<bigint> {
  const out = new Set<bigint>()
  for (const [id, s] of state.surges ?? NONE) if (s.since !== null) out.add(id)
  return out
}

/** Throws RangeError for parameters that make no sense (clear above raise, empty window, ...). */
export function checkSurgeParams(p: SurgeParams): void {
  if (p.raiseBps <= BPS) throw new RangeError('surgeRaiseBps must be above 10000 (1x the baseline)')
  if (p.clearBps > p.raiseBps) throw new RangeError('surgeClearBps must not exceed surgeRaiseBps')
  if (p.windowBlocks < MIN_SURGE_SAMPLES)
    throw new RangeError(`surgeWindowBlocks must be at least ${MIN_SURGE_SAMPLES}`)
}
