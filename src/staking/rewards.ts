/**
 * The reward arithmetic of an epoch (issue 11, item 4; docs/rewards.md). Pure: no I/O, bigint throughout,
 * every payout rounded down, results independent of the order of the inputs.
 *
 * 1. The emission is split across pools (rollups) by weight: activity × security factor × boost, where
 *    activity = baseWeight + fillWeight·filled + settleWeight·settled + valueWeight·⌊valueMoved/valueUnit⌋,
 *    security factor = 10 000 + securityBps, boost = 10 000 + the concentration boost (concentration.ts).
 *    A pool without stake weighs 0 (nobody to pay); its share goes to the pools that have stake.
 * 2. A pool's reward is split pro rata by effective stake: an entry counts twice when `doubled` (lent by a
 *    move into a congested target, active after `congestedActivationBlocks`: see `stakeEntries`).
 * 3. A validator's reward (summed over its pools) pays its commission first; the rest is credited to its
 *    F1 accumulator (Cosmos x/distribution): the cumulative reward per unit of stake grows by
 *    ⌊shared · PRECISION / stake⌋ and a delegation withdraws ⌊stake · (cumulative now − at its start) /
 *    PRECISION⌋. No loop over delegators at the epoch boundary.
 * Every remainder of a floor in 1 and 2, and the shared part of a validator with no delegated stake, goes
 * to the community pool of the epoch, so commission + credited + community == emission exactly. The
 * accumulator's own dust (claims are floors of what was credited) stays in `outstanding` and goes to the
 * community pool when the validator's last delegation ends (`endDelegation`).
 */
import type { Address } from 'viem'
import { MurmurError } from '../errors.ts'
import {
  type BoostParams,
  BPS,
  concentration,
  type PoolHoldings,
  rewardBoosts,
  type StakeHolding,
} from './concentration.ts'
import type { StakeMoveRecord } from './moves.ts'

/** Fixed point of the cumulative reward per unit of stake (10^27: a ratio's truncation loses < stake/10^27). */
export const REWARD_PRECISION = 10n ** 27n

export type RewardsErrorCode = 'BAD_INPUT' | 'BAD_PARAMS' | 'STAKE_MISMATCH'
/** A reward input, parameter or delegation operation out of range. */
export class RewardsError extends MurmurError<RewardsErrorCode> {}

/** Reward parameters (genesis `params`; defaults DEFAULT_REWARD_PARAMS, docs/rewards.md). */
export interface RewardParams extends BoostParams {
  /** Tokens created per epoch and split by `distributeEpoch`. */
  readonly emissionPerEpoch: bigint
  /** Activity every pool with stake has, contribution or not (pays for being available). */
  readonly baseWeight: bigint
  /** Activity per intent filled on the pool's rollup in the epoch. */
  readonly fillWeight: bigint
  /** Activity per intent settled (repaid) on the pool's rollup in the epoch. */
  readonly settleWeight: bigint
  /** Activity per `valueUnit` of value moved (common unit, state/assets.ts). */
  readonly valueWeight: bigint
  /** Value moved is counted in whole units of this (so a large transfer does not drown every other figure). */
  readonly valueUnit: bigint
  /** Blocks after a move's commit before its stake counts double (no last-minute farming). */
  readonly congestedActivationBlocks: bigint
}

/** Defaults (docs/rewards.md): one epoch is 100 blocks by default, so is the activation delay. */
export const DEFAULT_REWARD_PARAMS: RewardParams = {
  emissionPerEpoch: 10_000n,
  baseWeight: 1n,
  fillWeight: 10n,
  settleWeight: 10n,
  valueWeight: 1n,
  valueUnit: 10n ** 18n,
  congestedActivationBlocks: 100n,
  concentrationHhiLevel: 25_000_000n,
  concentrationBoostBps: 5_000,
}

/** What a pool (rollup) contributed in the epoch. */
export interface PoolContribution {
  readonly chainId: bigint
  readonly intentsFilled: bigint
  readonly intentsSettled: bigint
  /** Value moved in the common unit. */
  readonly valueMoved: bigint
  /** The rollup's security factor, basis points (genesis). */
  readonly securityBps: number
}

/** Stake of a validator in a pool; `doubled` stake counts twice. */
export interface StakeEntry extends StakeHolding {
  readonly doubled: boolean
}

/** The stake of one pool at the epoch boundary. */
export interface PoolStake extends PoolHoldings {
  readonly entries: readonly StakeEntry[]
}

/** Everything an epoch's split reads. */
export interface EpochInput {
  readonly contributions: readonly PoolContribution[]
  readonly stakes: readonly PoolStake[]
  /** Commission per validator, basis points; absent: 0. */
  readonly commissionBps: ReadonlyMap<Address, number>
}

/** One pool's part of an epoch. */
export interface PoolReward {
  readonly chainId: bigint
  readonly weight: bigint
  readonly boostBps: number
  readonly effectiveStake: bigint
  readonly reward: bigint
  /** Per validator (address order): effective stake and reward in this pool. */
  readonly validators: readonly {
    readonly validator: Address
    readonly effectiveStake: bigint
    readonly reward: bigint
  }[]
}

/** One validator's part of an epoch (its pools summed). */
export interface ValidatorReward {
  readonly validator: Address
  readonly reward: bigint
  /** Paid to the validator. */
  readonly commission: bigint
  /** Credited to its accumulator for its delegations (self-stake included). */
  readonly credited: bigint
  /** Its shared part when it had no delegated stake (to the community pool). */
  readonly uncredited: bigint
}

/** The outcome of an epoch: commission + credited + communityPool == emission. */
export interface EpochRewards {
  readonly emission: bigint
  readonly pools: readonly PoolReward[]
  readonly validators: readonly ValidatorReward[]
  readonly commission: bigint
  readonly credited: bigint
  /** This epoch's remainder: floors of the splits plus the uncredited parts. */
  readonly communityPool: bigint
}

/** A validator's F1 accumulator. */
export interface ValidatorAccumulator {
  /** Cumulative reward per unit of stake × REWARD_PRECISION. */
  readonly cumulative: bigint
  /** Stake of its delegations in force (the denominator of the next epoch). */
  readonly stake: bigint
  /** Credited and not yet withdrawn (what its delegations can claim, plus dust). */
  readonly outstanding: bigint
}

/** A delegation's period: its stake and the cumulative ratio when it started (Cosmos DelegatorStartingInfo). */
export interface DelegationPeriod {
  readonly stake: bigint
  readonly start: bigint
}

/** A validator that nobody has delegated to yet. */
export const EMPTY_ACCUMULATOR: ValidatorAccumulator = { cumulative: 0n, stake: 0n, outstanding: 0n }

function cmp(a: string | bigint, b: string | bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function nonNegative(name: string, v: bigint): void {
  if (v < 0n) throw new RewardsError('BAD_INPUT', `${name} is negative (${v})`)
}

/** Throws BAD_PARAMS when a weight is negative, valueUnit is not positive or a bps figure is out of range. */
export function checkRewardParams(p: RewardParams): void {
  for (const k of ['emissionPerEpoch', 'baseWeight', 'fillWeight', 'settleWeight', 'valueWeight'] as const)
    if (p[k] < 0n) throw new RewardsError('BAD_PARAMS', `${k} is negative`)
  if (p.valueUnit <= 0n) throw new RewardsError('BAD_PARAMS', 'valueUnit must be positive')
  if (p.congestedActivationBlocks < 0n) throw new RewardsError('BAD_PARAMS', 'congestedActivationBlocks < 0')
  if (!Number.isInteger(p.concentrationBoostBps) || p.concentrationBoostBps < 0)
    throw new RewardsError('BAD_PARAMS', 'concentrationBoostBps must be a non-negative integer')
}

/** activity × (10 000 + securityBps) × (10 000 + boostBps): the weight of a pool with stake. */
export function poolWeight(p: RewardParams, c: PoolContribution | undefined, boostBps: number): bigint {
  const filled = c?.intentsFilled ?? 0n
  const settled = c?.intentsSettled ?? 0n
  const value = c?.valueMoved ?? 0n
  nonNegative('intentsFilled', filled)
  nonNegative('intentsSettled', settled)
  nonNegative('valueMoved', value)
  const security = c?.securityBps ?? 0
  if (!Number.isInteger(security) || security < 0 || security > 10_000)
    throw new RewardsError('BAD_INPUT', `securityBps ${security} out of [0, 10000]`)
  const activity =
    p.baseWeight + p.fillWeight * filled + p.settleWeight * settled + p.valueWeight * (value / p.valueUnit)
  return activity * (BPS + BigInt(security)) * (BPS + BigInt(boostBps))
}

/**
 * The split of one epoch's emission (steps 1–2 and the commission of step 3), before any accumulator:
 * pools, validators and the community pool remainder. `delegatedStake(v)` says whether validator `v` has
 * delegated stake to credit (0: its shared part goes to the community pool).
 */
export function splitEpoch(
  p: RewardParams,
  input: EpochInput,
  delegatedStake: (validator: Address) => bigint,
): EpochRewards {
  checkRewardParams(p)
  const emission = p.emissionPerEpoch
  const contributions = new Map<bigint, PoolContribution>()
  for (const c of input.contributions) {
    if (contributions.has(c.chainId))
      throw new RewardsError('BAD_INPUT', `pool ${c.chainId} contributed twice`)
    contributions.set(c.chainId, c)
  }
  const entries = new Map<bigint, StakeEntry[]>()
  for (const s of input.stakes) {
    for (const e of s.entries) nonNegative(`stake of ${e.validator}`, e.amount)
    entries.set(s.chainId, [...(entries.get(s.chainId) ?? []), ...s.entries])
  }
  const boosts = rewardBoosts(concentration([...entries].map(([chainId, e]) => ({ chainId, entries: e }))), p)
  const chainIds = [...new Set([...contributions.keys(), ...entries.keys()])].sort(cmp)

  // Effective stake per validator per pool, address order.
  const pools = chainIds.map((chainId) => {
    const by = new Map<Address, bigint>()
    for (const e of entries.get(chainId) ?? [])
      by.set(e.validator, (by.get(e.validator) ?? 0n) + (e.doubled ? 2n * e.amount : e.amount))
    const validators = [...by].filter(([, s]) => s > 0n).sort((a, b) => cmp(a[0], b[0]))
    const effectiveStake = validators.reduce((t, [, s]) => t + s, 0n)
    const boostBps = boosts.get(chainId) ?? 0
    const weight = effectiveStake > 0n ? poolWeight(p, contributions.get(chainId), boostBps) : 0n
    return { chainId, boostBps, weight, effectiveStake, validators }
  })

  const totalWeight = pools.reduce((t, x) => t + x.weight, 0n)
  let community = emission
  const byValidator = new Map<Address, bigint>()
  const poolRewards: PoolReward[] = pools.map((x) => {
    const reward = totalWeight > 0n ? (emission * x.weight) / totalWeight : 0n
    community -= reward
    let left = reward
    const validators = x.validators.map(([validator, effectiveStake]) => {
      const r = (reward * effectiveStake) / x.effectiveStake
      left -= r
      byValidator.set(validator, (byValidator.get(validator) ?? 0n) + r)
      return { validator, effectiveStake, reward: r }
    })
    community += left // the floors within the pool
    return {
      chainId: x.chainId,
      weight: x.weight,
      boostBps: x.boostBps,
      effectiveStake: x.effectiveStake,
      reward,
      validators,
    }
  })

  let commission = 0n
  let credited = 0n
  const validators: ValidatorReward[] = [...byValidator]
    .sort((a, b) => cmp(a[0], b[0]))
    .map(([validator, reward]) => {
      const bps = input.commissionBps.get(validator) ?? 0
      if (!Number.isInteger(bps) || bps < 0 || bps > 10_000)
        throw new RewardsError('BAD_INPUT', `commission ${bps} of ${validator} out of [0, 10000]`)
      const c = (reward * BigInt(bps)) / BPS
      const shared = reward - c
      const has = delegatedStake(validator) > 0n
      commission += c
      if (has) credited += shared
      else community += shared
      return { validator, reward, commission: c, credited: has ? shared : 0n, uncredited: has ? 0n : shared }
    })
  if (commission + credited + community !== emission || community < 0n)
    throw new Error(
      `epoch split does not conserve: ${commission} + ${credited} + ${community} != ${emission}`,
    )
  return { emission, pools: poolRewards, validators, commission, credited, communityPool: community }
}

/** Credits `shared` to an accumulator with stake > 0 (F1: the ratio grows, no delegator is visited). */
export function accrue(acc: ValidatorAccumulator, shared: bigint): ValidatorAccumulator {
  nonNegative('shared', shared)
  if (shared === 0n) return acc
  if (acc.stake <= 0n) throw new RewardsError('BAD_INPUT', 'credit to an accumulator without stake')
  return {
    cumulative: acc.cumulative + (shared * REWARD_PRECISION) / acc.stake,
    stake: acc.stake,
    outstanding: acc.outstanding + shared,
  }
}

/**
 * One epoch boundary: `splitEpoch` then each validator's credited part into its accumulator. Returns the
 * epoch's figures and the accumulators (every input one, changed or not, in address order).
 */
export function distributeEpoch(
  p: RewardParams,
  input: EpochInput,
  accumulators: ReadonlyMap<Address, ValidatorAccumulator>,
): { rewards: EpochRewards; accumulators: Map<Address, ValidatorAccumulator> } {
  const rewards = splitEpoch(p, input, (v) => accumulators.get(v)?.stake ?? 0n)
  const next = new Map<Address, ValidatorAccumulator>(accumulators)
  for (const v of rewards.validators)
    if (v.credited > 0n) next.set(v.validator, accrue(next.get(v.validator)!, v.credited))
  const sorted = new Map([...next].sort((a, b) => cmp(a[0], b[0])))
  return { rewards, accumulators: sorted }
}

/** Starts a delegation's period (a new delegation, or the second half of a stake change). */
export function startDelegation(
  acc: ValidatorAccumulator,
  stake: bigint,
): { acc: ValidatorAccumulator; period: DelegationPeriod } {
  if (stake <= 0n) throw new RewardsError('BAD_INPUT', `delegation stake ${stake} must be positive`)
  return { acc: { ...acc, stake: acc.stake + stake }, period: { stake, start: acc.cumulative } }
}

/** What a delegation can withdraw now: ⌊stake · (cumulative − start) / PRECISION⌋. */
export function pendingReward(acc: ValidatorAccumulator, period: DelegationPeriod): bigint {
  if (period.start > acc.cumulative)
    throw new RewardsError('BAD_INPUT', 'period starts after the accumulator')
  return (period.stake * (acc.cumulative - period.start)) / REWARD_PRECISION
}

/** Pays a delegation its pending reward and restarts its period at the current ratio. */
export function withdrawReward(
  acc: ValidatorAccumulator,
  period: DelegationPeriod,
): { acc: ValidatorAccumulator; period: DelegationPeriod; paid: bigint } {
  const paid = pendingReward(acc, period)
  if (paid > acc.outstanding) throw new Error(`accumulator overdrawn: ${paid} > ${acc.outstanding}`)
  return {
    acc: { ...acc, outstanding: acc.outstanding - paid },
    period: { ...period, start: acc.cumulative },
    paid,
  }
}

/**
 * Ends a delegation's period (it leaves, or its stake changes: end then start anew), paying its pending
 * reward. When it was the validator's last delegated stake, what is left outstanding (the dust of the
 * floors) goes to the community pool: `toCommunity`.
 */
export function endDelegation(
  acc: ValidatorAccumulator,
  period: DelegationPeriod,
): { acc: ValidatorAccumulator; paid: bigint; toCommunity: bigint } {
  if (period.stake > acc.stake)
    throw new RewardsError('STAKE_MISMATCH', `delegation ${period.stake} > accumulator stake ${acc.stake}`)
  const w = withdrawReward(acc, period)
  const stake = acc.stake - period.stake
  if (stake > 0n) return { acc: { ...w.acc, stake }, paid: w.paid, toCommunity: 0n }
  return {
    acc: { cumulative: acc.cumulative, stake: 0n, outstanding: 0n },
    paid: w.paid,
    toCommunity: w.acc.outstanding,
  }
}

/**
 * The stake entries of an epoch boundary at `height` from the validators' pools and the moves in force:
 * in each pool of a validator that is not jailed, the stake lent in by its moves whose target was
 * congested at commit and that were committed at least `activationBlocks` before `height` is `doubled`,
 * the rest not. Pools in chain id order, validators in address order.
 */
export function stakeEntries(
  validators: readonly {
    readonly address: Address
    readonly pools: ReadonlyMap<bigint, bigint>
    readonly jailed: boolean
  }[],
  moves: Iterable<StakeMoveRecord>,
  height: bigint,
  activationBlocks: bigint,
): PoolStake[] {
  const doubled = new Map<string, bigint>()
  for (const m of moves) {
    if (!m.targetCongested || m.untilHeight <= height || height < m.height + activationBlocks) continue
    const k = `${m.staker}/${m.toChainId}`
    doubled.set(k, (doubled.get(k) ?? 0n) + m.amount)
  }
  const pools = new Map<bigint, StakeEntry[]>()
  for (const v of [...validators].sort((a, b) => cmp(a.address, b.address))) {
    if (v.jailed) continue
    for (const [chainId, stake] of v.pools) {
      if (stake <= 0n) continue
      const d0 = doubled.get(`${v.address}/${chainId}`) ?? 0n
      const d = d0 < stake ? d0 : stake // a slash can leave a pool below its loans' sum
      const list = pools.get(chainId) ?? []
      if (d > 0n) list.push({ validator: v.address, amount: d, doubled: true })
      if (stake > d) list.push({ validator: v.address, amount: stake - d, doubled: false })
      pools.set(chainId, list)
    }
  }
  return [...pools].sort((a, b) => cmp(a[0], b[0])).map(([chainId, entries]) => ({ chainId, entries }))
}
