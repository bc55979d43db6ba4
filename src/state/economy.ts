/**
 * The economy step of `apply` (issue 11, items 4 and 6): after a block's staking, the epoch's activity, the
 * reward periods of the pairs whose stake changed, the epoch's rewards at a boundary, and the pool alarms.
 * Pure. Credits (rewards paid to balances) go through the block's StakeLedger, so `apply` must take the
 * book's state after this step.
 */
import type { Address } from 'viem'
import { concentration, minSelfStakeToJoin, type PoolHoldings, poolAlarms } from '../staking/concentration.ts'
import type { StakeLedger } from '../staking/ledger.ts'
import { isEpochBoundary } from './epoch.ts'
import { DEFAULT_CORRELATION_WINDOW_BLOCKS } from './plan.ts'
import { addActivity, type RewardsState, reconcilePeriods, rewardEpoch } from './rewards-state.ts'
import { type AppState, cmp, type SlashRecord, type ValidatorState } from './types.ts'

/** A fill the block settled: its rollup, its output amount, whether its origin repays it (a FILL leaf). */
export interface SettledFill {
  readonly chainId: bigint
  readonly value: bigint
  readonly settles: boolean
}

/**
 * The holdings of each rollup's pool (chain id order, every rollup listed): the validators of `set` that
 * are not jailed, with their stake there.
 */
export function poolHoldings(
  state: Pick<AppState, 'rollups'>,
  validators: readonly ValidatorState[],
  set: ReadonlyMap<Address, bigint>,
): PoolHoldings[] {
  return [...state.rollups]
    .map((r) => BigInt(r.chainId))
    .sort(cmp)
    .map((chainId) => ({
      chainId,
      entries: validators
        .filter((v) => !v.jailed && set.has(v.address) && (v.pools.get(chainId) ?? 0n) > 0n)
        .map((v) => ({ validator: v.address, amount: v.pools.get(chainId)! })),
    }))
}

/** The pools alarmed after a block whose validators and next set are these, given the alarms before. */
export function alarmsAfter(
  state: Pick<AppState, 'rollups' | 'rewardParams'>,
  before: readonly bigint[],
  validators: readonly ValidatorState[],
  set: ReadonlyMap<Address, bigint>,
): readonly bigint[] {
  const next = poolAlarms(
    new Set(before),
    concentration(poolHoldings(state, validators, set)),
    state.rewardParams,
  )
  return next.length === before.length && next.every((c, i) => c === before[i]) ? before : next
}

/**
 * The rewards and alarms after the block at `height` on `state`, whose staking `ledger` ran and whose
 * validators and next consensus set are given.
 */
export function economyAfter(
  state: AppState,
  height: bigint,
  ledger: StakeLedger,
  fills: readonly SettledFill[],
  validators: readonly ValidatorState[],
  nextSet: ReadonlyMap<Address, bigint>,
): { rewards: RewardsState; alarms: readonly bigint[] } {
  let rewards = state.rewards
  const activity = addActivity(rewards.activity, fills)
  if (activity !== rewards.activity) rewards = { ...rewards, activity }
  const credit = (a: Address, x: bigint) => ledger.credit(a, x)
  if (ledger.changed) rewards = reconcilePeriods(rewards, ledger.touchedPairStakes(), credit)
  if (isEpochBoundary(state, height)) {
    const commissionBps = new Map<Address, number>()
    for (const r of ledger.book.validators.values()) commissionBps.set(r.address, r.commissionBps)
    rewards = rewardEpoch(
      rewards,
      {
        // The book's boundary already ran: the epoch that ends here is the one before.
        epoch: ledger.book.delegations.epoch - 1n,
        height,
        params: state.rewardParams,
        rollups: state.rollups,
        validators,
        signers: state.consensusSet,
        moves: ledger.moves.values(),
        commissionBps,
      },
      credit,
    ).state
  }
  const alarms =
    validators === state.validators && nextSet === state.consensusSet
      ? state.alarms
      : alarmsAfter(state, state.alarms, validators, nextSet)
  return { rewards, alarms }
}

/**
 * The economy part of `GET /v1/staking`: the rewards of the last epochs (`paid + communityPool ==
 * emission` each), the community pool and all emission so far, the concentration figures of the
 * consensus set (overall and per pool, Nakamoto coefficient at 1/3 and HHI in basis points squared), and
 * per pool its alarm and the self-stake that joins it now.
 */
export function economyToJson(state: AppState) {
  const c = concentration(poolHoldings(state, state.validators, state.consensusSet))
  const alarmed = new Set(state.alarms)
  return {
    communityPool: state.rewards.communityPool.toString(),
    emitted: state.rewards.emitted.toString(),
    rewards: state.rewards.history.map((h) => ({
      epoch: h.epoch.toString(),
      height: h.height.toString(),
      emission: h.emission.toString(),
      paid: h.paid.toString(),
      communityPool: h.communityPool.toString(),
      byValidator: Object.fromEntries([...h.byValidator].map(([v, x]) => [v, x.toString()])),
      pools: h.pools.map((p) => ({
        chainId: p.chainId.toString(),
        reward: p.reward.toString(),
        weight: p.weight.toString(),
        boostBps: p.boostBps,
        effectiveStake: p.effectiveStake.toString(),
        validators: p.validators.map((v) => ({
          address: v.validator,
          effectiveStake: v.effectiveStake.toString(),
          reward: v.reward.toString(),
        })),
      })),
    })),
    concentration: {
      nakamoto: c.overall.nakamoto,
      hhi: c.overall.hhi.toString(),
      pools: Object.fromEntries(
        c.pools.map((p) => [
          p.chainId.toString(),
          {
            nakamoto: p.nakamoto,
            hhi: p.hhi.toString(),
            validators: p.validators,
            stake: p.stake.toString(),
          },
        ]),
      ),
    },
    alarms: state.alarms.map(String),
    minSelfStakeToJoin: Object.fromEntries(
      c.pools.map((p) => [
        p.chainId.toString(),
        minSelfStakeToJoin(
          state.stakeParams.minSelfStake,
          alarmed.has(p.chainId),
          state.rewardParams,
        ).toString(),
      ]),
    ),
  }
}

/** The double-signing punishments in the correlation window after the block at `height` (its accused added). */
export function slashesAfter(
  state: AppState,
  height: bigint,
  accused: Iterable<string>,
): readonly SlashRecord[] {
  const window = BigInt(state.params.correlationWindowBlocks ?? DEFAULT_CORRELATION_WINDOW_BLOCKS)
  const kept = state.slashes.filter((r) => r.height + window > height)
  const added = [...accused].sort(cmp).map((a) => ({
    height,
    validator: a as Address,
    power: state.consensusSet.get(a as Address) ?? 0n,
  }))
  if (added.length === 0 && kept.length === state.slashes.length) return state.slashes
  return [...kept, ...added]
}
