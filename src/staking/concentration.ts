/**
 * Concentration of stake and the self-healing rules built on it (ARCHITECTURE.md, Self-healing; issue 11,
 * item 6). Pure: no I/O, bigint for every figure a block decides, results independent of input order.
 *
 * - Nakamoto coefficient: the fewest validators whose stake together exceeds 1/3 of the total (the share
 *   that can halt a Tendermint chain), validators taken largest first, ties by address;
 * - HHI (Herfindahl–Hirschman index): the sum of squared shares in basis points squared, 0..10^8
 *   (n equal shares give 10^8 / n), computed exactly and floored once;
 * - a per-pool alarm with hysteresis, the lowered self-stake to join an alarmed pool, and the reward
 *   boost of the least concentrated pools (docs/rewards.md).
 */
import type { Address } from 'viem'
import { MurmurError } from '../errors.ts'

/** Basis points in one (shares, factors). */
export const BPS = 10_000n
/** HHI of a single validator holding everything: 10 000² (basis points squared). */
export const HHI_MAX = BPS * BPS

export type ConcentrationErrorCode = 'BAD_INPUT' | 'BAD_PARAMS'
/** A concentration input or parameter out of range. */
export class ConcentrationError extends MurmurError<ConcentrationErrorCode> {}

/** Stake of one validator in one place (a pool, or all of them). */
export interface StakeHolding {
  /** Lowercase. */
  readonly validator: Address
  readonly amount: bigint
}

/** The stake of one pool (rollup): its holdings, a validator possibly listed more than once. */
export interface PoolHoldings {
  readonly chainId: bigint
  readonly entries: readonly StakeHolding[]
}

/** Concentration figures of a set of holdings. */
export interface ConcentrationFigures {
  /** Validators with stake > 0. */
  readonly validators: number
  readonly stake: bigint
  /** Fewest validators over 1/3 of `stake`; 0 when `stake` is 0. */
  readonly nakamoto: number
  /** Sum of squared shares, basis points squared (0..HHI_MAX); 0 when `stake` is 0. */
  readonly hhi: bigint
}

/** Figures overall (a validator's pools summed) and per pool (chain id order). */
export interface Concentration {
  readonly overall: ConcentrationFigures
  readonly pools: readonly (ConcentrationFigures & { readonly chainId: bigint })[]
}

function cmp(a: string | bigint, b: string | bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Sums holdings per validator, drops zeros; address order. Negative amounts are refused. */
export function aggregateHoldings(entries: Iterable<StakeHolding>): StakeHolding[] {
  const by = new Map<Address, bigint>()
  for (const e of entries) {
    if (e.amount < 0n)
      throw new ConcentrationError('BAD_INPUT', `negative stake ${e.amount} of ${e.validator}`)
    if (e.amount > 0n) by.set(e.validator, (by.get(e.validator) ?? 0n) + e.amount)
  }
  return [...by]
    .map(([validator, amount]) => ({ validator, amount }))
    .sort((a, b) => cmp(a.validator, b.validator))
}

/**
 * Nakamoto coefficient at 1/3: validators sorted by stake descending (ties by address ascending, so the
 * answer is one number for one state), the smallest prefix whose sum s has 3·s > total.
 */
export function nakamotoCoefficient(entries: Iterable<StakeHolding>): number {
  const list = aggregateHoldings(entries).sort(
    (a, b) => cmp(b.amount, a.amount) || cmp(a.validator, b.validator),
  )
  const total = list.reduce((t, e) => t + e.amount, 0n)
  let sum = 0n
  for (let i = 0; i < list.length; i++) {
    sum += list[i]!.amount
    if (3n * sum > total) return i + 1
  }
  return 0
}

/** HHI in basis points squared: floor(Σ sᵢ² · 10^8 / T²), exact before the one floor. */
export function herfindahl(entries: Iterable<StakeHolding>): bigint {
  const list = aggregateHoldings(entries)
  const total = list.reduce((t, e) => t + e.amount, 0n)
  if (total === 0n) return 0n
  let squares = 0n
  for (const e of list) squares += e.amount * e.amount
  return (squares * HHI_MAX) / (total * total)
}

function figures(entries: readonly StakeHolding[]): ConcentrationFigures {
  const list = aggregateHoldings(entries)
  return {
    validators: list.length,
    stake: list.reduce((t, e) => t + e.amount, 0n),
    nakamoto: nakamotoCoefficient(list),
    hhi: herfindahl(list),
  }
}

/** Concentration overall (each validator's pools summed) and per pool, pools in chain id order. */
export function concentration(pools: readonly PoolHoldings[]): Concentration {
  const merged = new Map<bigint, StakeHolding[]>()
  for (const p of pools) merged.set(p.chainId, [...(merged.get(p.chainId) ?? []), ...p.entries])
  const chainIds = [...merged.keys()].sort(cmp)
  return {
    overall: figures(chainIds.flatMap((c) => merged.get(c)!)),
    pools: chainIds.map((chainId) => ({ chainId, ...figures(merged.get(chainId)!) })),
  }
}

/** Parameters of the pool alarm and of the lowered self-stake (defaults: DEFAULT_ALARM_PARAMS). */
export interface PoolAlarmParams {
  /** Raised when a pool has fewer validators than this. */
  readonly minPoolValidators: number
  /** Raised when a pool holds less stake than this. */
  readonly minPoolStake: bigint
  /** Cleared only when the pool has at least this many validators (>= minPoolValidators)... */
  readonly clearPoolValidators: number
  /** ...and at least this much stake (>= minPoolStake). */
  readonly clearPoolStake: bigint
  /** While a pool's alarm is raised, joining it needs this share of `minSelfStake` (basis points). */
  readonly alarmMinSelfStakeBps: number
  /** ...but never less than this (so a pool cannot be joined for nothing). */
  readonly alarmMinSelfStakeFloor: bigint
}

/**
 * Defaults that raise the alarm only for a pool nobody serves (no validator, no stake): a network sets its
 * safe levels in genesis `params` (the devnet does: devnet/network.ts), since what is safe depends on its
 * stake and size.
 */
export const DEFAULT_ALARM_PARAMS: PoolAlarmParams = {
  minPoolValidators: 1,
  minPoolStake: 1n,
  clearPoolValidators: 1,
  clearPoolStake: 1n,
  alarmMinSelfStakeBps: 5_000,
  alarmMinSelfStakeFloor: 1n,
}

/** Throws BAD_PARAMS unless the clear levels are at or above the raise levels and the shares in range. */
export function checkAlarmParams(p: PoolAlarmParams): void {
  const bad = (m: string) => new ConcentrationError('BAD_PARAMS', m)
  if (!Number.isInteger(p.minPoolValidators) || p.minPoolValidators < 0) throw bad('minPoolValidators')
  if (!Number.isInteger(p.clearPoolValidators) || p.clearPoolValidators < p.minPoolValidators)
    throw bad('clearPoolValidators must be an integer >= minPoolValidators')
  if (p.minPoolStake < 0n || p.clearPoolStake < p.minPoolStake)
    throw bad('clearPoolStake must be >= minPoolStake >= 0')
  if (
    !Number.isInteger(p.alarmMinSelfStakeBps) ||
    p.alarmMinSelfStakeBps < 0 ||
    p.alarmMinSelfStakeBps > 10_000
  )
    throw bad('alarmMinSelfStakeBps must be in [0, 10000]')
  if (p.alarmMinSelfStakeFloor < 0n) throw bad('alarmMinSelfStakeFloor must be >= 0')
}

/**
 * The alarm of one pool after an observation, given whether it was raised: raised when validators <
 * minPoolValidators or stake < minPoolStake; once raised it stays raised until validators >=
 * clearPoolValidators and stake >= clearPoolStake (hysteresis: a pool hovering at the raise level does not
 * flap, and the router's avoidance of it does not flap either).
 */
export function nextPoolAlarm(
  raised: boolean,
  pool: Pick<ConcentrationFigures, 'validators' | 'stake'>,
  p: PoolAlarmParams,
): boolean {
  if (pool.validators < p.minPoolValidators || pool.stake < p.minPoolStake) return true
  if (!raised) return false
  return !(pool.validators >= p.clearPoolValidators && pool.stake >= p.clearPoolStake)
}

/**
 * The pools whose alarm is raised after observing `c` (chain id order), given those raised before. A pool
 * of the network without any stake must be listed in `c.pools` (with zero figures) to be alarmed: the
 * caller passes every rollup, since a pool that lost all its stake is the worst case.
 */
export function poolAlarms(
  raisedBefore: ReadonlySet<bigint>,
  c: Concentration,
  p: PoolAlarmParams,
): bigint[] {
  return c.pools
    .filter((pool) => nextPoolAlarm(raisedBefore.has(pool.chainId), pool, p))
    .map((x) => x.chainId)
}

/**
 * Minimum self-stake to join a pool: `minSelfStake` normally; while the pool's alarm is raised,
 * max(alarmMinSelfStakeFloor, floor(minSelfStake · alarmMinSelfStakeBps / 10 000)), never above
 * `minSelfStake` (the seed: lower the threshold to attract nodes while a pool has too few).
 */
export function minSelfStakeToJoin(minSelfStake: bigint, alarmRaised: boolean, p: PoolAlarmParams): bigint {
  if (!alarmRaised) return minSelfStake
  const lowered = (minSelfStake * BigInt(p.alarmMinSelfStakeBps)) / BPS
  const floored = lowered > p.alarmMinSelfStakeFloor ? lowered : p.alarmMinSelfStakeFloor
  return floored < minSelfStake ? floored : minSelfStake
}

/** When and how much the least concentrated pools' reward weight is raised. */
export interface BoostParams {
  /** Boost only when the overall HHI (basis points squared) is above this. */
  readonly concentrationHhiLevel: bigint
  /** Extra weight of a boosted pool, basis points (5000: its weight × 1.5). */
  readonly concentrationBoostBps: number
}

/**
 * Reward boosts (chain id -> extra basis points) when the overall HHI is above `concentrationHhiLevel`:
 * the pools with stake whose HHI is at most the lower median of the pools' HHIs and strictly below the
 * highest get `concentrationBoostBps`. Ties are treated alike (no order decides), and when every pool is
 * equally concentrated none is boosted (a boost to all changes no share). Empty map otherwise.
 */
export function rewardBoosts(c: Concentration, p: BoostParams): Map<bigint, number> {
  const out = new Map<bigint, number>()
  if (c.overall.hhi <= p.concentrationHhiLevel || p.concentrationBoostBps <= 0) return out
  const staked = c.pools.filter((x) => x.stake > 0n)
  if (staked.length < 2) return out
  const hhis = staked.map((x) => x.hhi).sort(cmp)
  const median = hhis[Math.floor((hhis.length - 1) / 2)]!
  const highest = hhis[hhis.length - 1]!
  for (const x of staked) if (x.hhi <= median && x.hhi < highest) out.set(x.chainId, p.concentrationBoostBps)
  return out
}
