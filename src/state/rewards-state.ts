/**
 * Epoch rewards in the application state (issue 11, item 4; docs/rewards.md, "Wiring"): what each pool did
 * in the epoch (fills, settlements, value), the F1 accumulators of the validators and the periods of their
 * delegations, the community pool, and the figures of the last epochs. Pure: no I/O. The arithmetic is
 * staking/rewards.ts; this file feeds it from blocks.
 *
 * - Every block adds its fills to the epoch's activity of the rollup they were made on: one fill, its
 *   output amount as value moved, and one settlement when the order's origin has a settler (the block's
 *   FILL leaf repays it there).
 * - A delegation's period is per (delegator, validator): the sum of its delegations over the validator's
 *   pools, so a stake move (a loan between pools) does not touch it. After any block that changed a pair's
 *   stake (Delegate, Undelegate, CreateValidator, a slash), the pair's pending reward is paid into the
 *   delegator's balance and a new period starts on the new stake (F1 without slash events: a slash ends
 *   the period at the stake earned on).
 * - At an epoch boundary the emission is split over the stake as it stands after the block (jailed
 *   validators and validators outside the consensus set that signed the epoch earn nothing); commission
 *   goes to the validator's balance, the rest into its accumulator, remainders to the community pool.
 */
import type { Address } from 'viem'
import type { StakeMoveRecord } from '../staking/moves.ts'
import {
  DEFAULT_REWARD_PARAMS,
  type DelegationPeriod,
  distributeEpoch,
  EMPTY_ACCUMULATOR,
  type EpochRewards,
  endDelegation,
  type PoolContribution,
  pendingReward,
  type RewardParams,
  stakeEntries,
  startDelegation,
  type ValidatorAccumulator,
} from '../staking/rewards.ts'
import type { StakeState } from '../staking/validators.ts'

function cmp(a: string | bigint, b: string | bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** What one pool (rollup) did in the epoch so far. */
export interface PoolActivity {
  readonly filled: bigint
  readonly settled: bigint
  readonly value: bigint
}

/** The figures of one epoch boundary (`GET /v1/staking` `rewards`). */
export interface EpochRecord {
  readonly epoch: bigint
  /** The boundary block. */
  readonly height: bigint
  readonly emission: bigint
  /** Commission + credited to accumulators. */
  readonly paid: bigint
  /** This epoch's remainder (paid + communityPool == emission). */
  readonly communityPool: bigint
  /** Reward per validator (before commission), address order. */
  readonly byValidator: ReadonlyMap<Address, bigint>
  /** Per pool: its reward, weight and boost, chain id order. */
  readonly pools: readonly {
    readonly chainId: bigint
    readonly reward: bigint
    readonly weight: bigint
    readonly boostBps: number
    readonly effectiveStake: bigint
    /** Per validator (address order): its effective stake (moved congested stake doubled) and reward here. */
    readonly validators: readonly {
      readonly validator: Address
      readonly effectiveStake: bigint
      readonly reward: bigint
    }[]
  }[]
}

/** The reward part of the application state. */
export interface RewardsState {
  readonly activity: ReadonlyMap<bigint, PoolActivity>
  readonly accumulators: ReadonlyMap<Address, ValidatorAccumulator>
  /** By `delegator/validator`. */
  readonly periods: ReadonlyMap<string, DelegationPeriod>
  /** Every remainder ever, plus accumulator dust of validators whose last delegation ended. */
  readonly communityPool: bigint
  /** Every emission so far (what conservation adds to the genesis total). */
  readonly emitted: bigint
  /** The last REWARD_HISTORY epochs, oldest first. */
  readonly history: readonly EpochRecord[]
}

/** Epochs of figures kept for the API. */
export const REWARD_HISTORY = 10

const NO_ACTIVITY: PoolActivity = { filled: 0n, settled: 0n, value: 0n }

/** `delegator/validator`: the key of a period. */
export function pairKey(delegator: Address, validator: Address): string {
  return `${delegator}/${validator}`
}

/** Each (delegator, validator) pair's stake: its delegations summed over chains. */
export function pairStakes(stake: Pick<StakeState, 'delegations'>): Map<string, bigint> {
  const out = new Map<string, bigint>()
  for (const e of stake.delegations.values()) {
    const k = pairKey(e.delegator, e.validator)
    out.set(k, (out.get(k) ?? 0n) + e.amount)
  }
  return out
}

/** The reward state at genesis: a period for every genesis delegation pair, nothing accrued. */
export function genesisRewards(stake: Pick<StakeState, 'delegations'>): RewardsState {
  const accumulators = new Map<Address, ValidatorAccumulator>()
  const periods = new Map<string, DelegationPeriod>()
  for (const [k, s] of [...pairStakes(stake)].sort(([a], [b]) => cmp(a, b))) {
    const validator = k.slice(k.indexOf('/') + 1) as Address
    const { acc, period } = startDelegation(accumulators.get(validator) ?? EMPTY_ACCUMULATOR, s)
    accumulators.set(validator, acc)
    periods.set(k, period)
  }
  return { activity: new Map(), accumulators, periods, communityPool: 0n, emitted: 0n, history: [] }
}

/** The epoch's activity with a block's settling fills added. */
export function addActivity(
  activity: ReadonlyMap<bigint, PoolActivity>,
  fills: readonly { readonly chainId: bigint; readonly value: bigint; readonly settles: boolean }[],
): ReadonlyMap<bigint, PoolActivity> {
  if (fills.length === 0) return activity
  const out = new Map(activity)
  for (const f of fills) {
    const a = out.get(f.chainId) ?? NO_ACTIVITY
    out.set(f.chainId, {
      filled: a.filled + 1n,
      settled: a.settled + (f.settles ? 1n : 0n),
      value: a.value + f.value,
    })
  }
  return out
}

/**
 * Ends and restarts the period of every pair of `stakes` (`delegator/validator` -> its stake now) whose
 * stake differs from its period's. Pending rewards are paid through `credit`. Returns the new state (the
 * same object when nothing changed).
 */
export function reconcilePeriods(
  r: RewardsState,
  stakes: ReadonlyMap<string, bigint>,
  credit: (delegator: Address, amount: bigint) => void,
): RewardsState {
  let accumulators: Map<Address, ValidatorAccumulator> | undefined
  let periods: Map<string, DelegationPeriod> | undefined
  let community = r.communityPool
  for (const k of [...stakes.keys()].sort(cmp)) {
    const s = stakes.get(k)!
    const p = r.periods.get(k)
    if ((p?.stake ?? 0n) === s) continue
    const slash = k.indexOf('/')
    const delegator = k.slice(0, slash) as Address
    const validator = k.slice(slash + 1) as Address
    accumulators ??= new Map(r.accumulators)
    periods ??= new Map(r.periods)
    let acc = accumulators.get(validator) ?? EMPTY_ACCUMULATOR
    if (p !== undefined) {
      const ended = endDelegation(acc, p)
      acc = ended.acc
      community += ended.toCommunity
      if (ended.paid > 0n) credit(delegator, ended.paid)
      periods.delete(k)
    }
    if (s > 0n) {
      const started = startDelegation(acc, s)
      acc = started.acc
      periods.set(k, started.period)
    }
    accumulators.set(validator, acc)
  }
  if (accumulators === undefined) return r
  return { ...r, accumulators, periods: periods!, communityPool: community }
}

/** What an epoch boundary reads besides the reward state. */
export interface EpochRewardInput {
  readonly epoch: bigint
  readonly height: bigint
  readonly params: RewardParams
  readonly rollups: readonly { readonly chainId: number | bigint; readonly securityBps: number }[]
  /** Validators after the block (pools, jail status). */
  readonly validators: readonly {
    readonly address: Address
    readonly pools: ReadonlyMap<bigint, bigint>
    readonly jailed: boolean
  }[]
  /** The set that signed the epoch: only its members earn. */
  readonly signers: ReadonlyMap<Address, bigint>
  readonly moves: Iterable<StakeMoveRecord>
  readonly commissionBps: ReadonlyMap<Address, number>
}

/**
 * The epoch boundary: the emission split and credited, commission paid through `credit`, the figures
 * recorded, the activity started over. Returns the new state and the epoch's split.
 */
export function rewardEpoch(
  r: RewardsState,
  input: EpochRewardInput,
  credit: (validator: Address, amount: bigint) => void,
): { state: RewardsState; rewards: EpochRewards } {
  const contributions: PoolContribution[] = input.rollups.map((x) => {
    const a = r.activity.get(BigInt(x.chainId)) ?? NO_ACTIVITY
    return {
      chainId: BigInt(x.chainId),
      intentsFilled: a.filled,
      intentsSettled: a.settled,
      valueMoved: a.value,
      securityBps: x.securityBps,
    }
  })
  const earning = input.validators.filter((v) => input.signers.has(v.address))
  const stakes = stakeEntries(earning, input.moves, input.height, input.params.congestedActivationBlocks)
  const { rewards, accumulators } = distributeEpoch(
    input.params,
    { contributions, stakes, commissionBps: input.commissionBps },
    r.accumulators,
  )
  for (const v of rewards.validators) if (v.commission > 0n) credit(v.validator, v.commission)
  const record: EpochRecord = {
    epoch: input.epoch,
    height: input.height,
    emission: rewards.emission,
    paid: rewards.commission + rewards.credited,
    communityPool: rewards.communityPool,
    byValidator: new Map(rewards.validators.map((v) => [v.validator, v.reward])),
    pools: rewards.pools.map((p) => ({
      chainId: p.chainId,
      reward: p.reward,
      weight: p.weight,
      boostBps: p.boostBps,
      effectiveStake: p.effectiveStake,
      validators: p.validators,
    })),
  }
  return {
    state: {
      activity: new Map(),
      accumulators,
      periods: r.periods,
      communityPool: r.communityPool + rewards.communityPool,
      emitted: r.emitted + rewards.emission,
      history: [...r.history, record].slice(-REWARD_HISTORY),
    },
    rewards,
  }
}

/** Rewards a delegator could withdraw now, summed over its pairs (`GET /v1/accounts/:address` `rewards`). */
export function pendingRewardsOf(r: RewardsState, delegator: Address): bigint {
  let t = 0n
  const prefix = `${delegator}/`
  for (const [k, p] of r.periods) {
    if (!k.startsWith(prefix)) continue
    const acc = r.accumulators.get(k.slice(prefix.length) as Address)
    if (acc !== undefined) t += pendingReward(acc, p)
  }
  return t
}

/** `defaults` with the fields `p` sets (undefined ones left out). */
export function withDefaults<T extends object>(
  defaults: T,
  p: { readonly [K in keyof T]?: T[K] | undefined },
): T {
  const out = { ...defaults }
  for (const k of Object.keys(defaults) as (keyof T)[]) if (p[k] !== undefined) out[k] = p[k] as T[keyof T]
  return out
}

/** The reward parameters of a genesis `params` (defaults for those it leaves out). */
export function rewardParamsOf(
  p: { readonly [K in keyof RewardParams]?: RewardParams[K] | undefined },
): RewardParams {
  return withDefaults(DEFAULT_REWARD_PARAMS, p)
}
