/**
 * JSON form of the stake book (AppState.stake; staking/validators.ts) and of the reward state
 * (AppState.rewards; rewards-state.ts), stored under `stake` and `rewards` in the `app` sublevel and
 * written only by blocks that change them (account messages, moves, slashes, fills, boundaries).
 * Big integers as decimal strings; maps as arrays in key order, so equal states store equal bytes.
 */
import type { Address, Hex } from 'viem'
import { delegationKey } from '../staking/delegations.ts'
import type { StakeState } from '../staking/validators.ts'
import type { RewardsState } from './rewards-state.ts'

export interface StakeStateJson {
  epoch: string
  balances: [string, string][]
  accountNonces: [string, string][]
  delegations: [string, string, string, string][]
  unbonding: Array<{
    id: string
    delegator: string
    validator: string
    chainId: string
    amount: string
    height: string
    epoch: string
    completeEpoch: string
  }>
  loans: Array<{
    id: string
    delegator: string
    validator: string
    fromChainId: string
    toChainId: string
    amount: string
    untilHeight: string
  }>
  validators: Array<{
    address: string
    peerId: string
    chainIds: string[]
    commissionBps: number
    createdEpoch: string
    jailed: boolean
    minSelfStake?: string
  }>
  active: [string, string][]
}

const byKey = <T>(m: ReadonlyMap<string, T>) => [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))

export function stakeStateToJson(s: StakeState): StakeStateJson {
  return {
    epoch: s.epoch.toString(),
    balances: byKey(s.balances).map(([a, b]) => [a, b.toString()]),
    accountNonces: byKey(s.accountNonces).map(([a, n]) => [a, n.toString()]),
    delegations: byKey(s.delegations).map(([, d]) => [
      d.delegator,
      d.validator,
      d.chainId.toString(),
      d.amount.toString(),
    ]),
    unbonding: byKey(s.unbonding).map(([, u]) => ({
      id: u.id,
      delegator: u.delegator,
      validator: u.validator,
      chainId: u.chainId.toString(),
      amount: u.amount.toString(),
      height: u.height.toString(),
      epoch: u.epoch.toString(),
      completeEpoch: u.completeEpoch.toString(),
    })),
    loans: byKey(s.loans).map(([, l]) => ({
      id: l.id,
      delegator: l.delegator,
      validator: l.validator,
      fromChainId: l.fromChainId.toString(),
      toChainId: l.toChainId.toString(),
      amount: l.amount.toString(),
      untilHeight: l.untilHeight.toString(),
    })),
    validators: byKey(s.validators).map(([, v]) => ({
      address: v.address,
      peerId: v.peerId,
      chainIds: v.chainIds.map(String),
      commissionBps: v.commissionBps,
      createdEpoch: v.createdEpoch.toString(),
      jailed: v.jailed,
      ...(v.minSelfStake === undefined ? {} : { minSelfStake: v.minSelfStake.toString() }),
    })),
    active: s.active.map((m) => [m.address, m.power.toString()]),
  }
}

/** The stake book of its JSON form over `base` (the genesis book: network id and chain ids). Throws on bad data. */
export function stakeStateFromJson(j: StakeStateJson, base: StakeState): StakeState {
  const addr = (a: string) => a as Address
  return {
    ...base,
    epoch: BigInt(j.epoch),
    balances: new Map(j.balances.map(([a, b]) => [addr(a), BigInt(b)])),
    accountNonces: new Map(j.accountNonces.map(([a, n]) => [addr(a), BigInt(n)])),
    delegations: new Map(
      j.delegations.map(([d, v, c, a]) => [
        delegationKey(addr(d), addr(v), BigInt(c)),
        { delegator: addr(d), validator: addr(v), chainId: BigInt(c), amount: BigInt(a) },
      ]),
    ),
    unbonding: new Map(
      j.unbonding.map((u) => [
        u.id as Hex,
        {
          id: u.id as Hex,
          delegator: addr(u.delegator),
          validator: addr(u.validator),
          chainId: BigInt(u.chainId),
          amount: BigInt(u.amount),
          height: BigInt(u.height),
          epoch: BigInt(u.epoch),
          completeEpoch: BigInt(u.completeEpoch),
        },
      ]),
    ),
    loans: new Map(
      j.loans.map((l) => [
        l.id as Hex,
        {
          id: l.id as Hex,
          delegator: addr(l.delegator),
          validator: addr(l.validator),
          fromChainId: BigInt(l.fromChainId),
          toChainId: BigInt(l.toChainId),
          amount: BigInt(l.amount),
          untilHeight: BigInt(l.untilHeight),
        },
      ]),
    ),
    validators: new Map(
      j.validators.map((v) => [
        addr(v.address),
        {
          address: addr(v.address),
          peerId: v.peerId,
          chainIds: v.chainIds.map((c) => BigInt(c)),
          commissionBps: v.commissionBps,
          createdEpoch: BigInt(v.createdEpoch),
          jailed: v.jailed,
          ...(v.minSelfStake === undefined ? {} : { minSelfStake: BigInt(v.minSelfStake) }),
        },
      ]),
    ),
    active: j.active.map(([a, p]) => ({ address: addr(a), power: BigInt(p) })),
  }
}

export interface RewardsStateJson {
  activity: [string, string, string, string][]
  accumulators: [string, string, string, string][]
  periods: [string, string, string][]
  communityPool: string
  emitted: string
  history: Array<{
    epoch: string
    height: string
    emission: string
    paid: string
    communityPool: string
    byValidator: [string, string][]
    pools: Array<{
      chainId: string
      reward: string
      weight: string
      boostBps: number
      effectiveStake: string
      validators: [string, string, string][]
    }>
  }>
}

const str = (x: bigint) => x.toString()

export function rewardsStateToJson(r: RewardsState): RewardsStateJson {
  return {
    activity: [...r.activity]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([c, a]) => [str(c), str(a.filled), str(a.settled), str(a.value)]),
    accumulators: byKey(r.accumulators).map(([v, a]) => [
      v,
      str(a.cumulative),
      str(a.stake),
      str(a.outstanding),
    ]),
    periods: byKey(r.periods).map(([k, p]) => [k, str(p.stake), str(p.start)]),
    communityPool: str(r.communityPool),
    emitted: str(r.emitted),
    history: r.history.map((h) => ({
      epoch: str(h.epoch),
      height: str(h.height),
      emission: str(h.emission),
      paid: str(h.paid),
      communityPool: str(h.communityPool),
      byValidator: [...h.byValidator].map(([v, x]) => [v, str(x)]),
      pools: h.pools.map((p) => ({
        chainId: str(p.chainId),
        reward: str(p.reward),
        weight: str(p.weight),
        boostBps: p.boostBps,
        effectiveStake: str(p.effectiveStake),
        validators: p.validators.map((v) => [v.validator, str(v.effectiveStake), str(v.reward)]),
      })),
    })),
  }
}

export function rewardsStateFromJson(j: RewardsStateJson): RewardsState {
  return {
    activity: new Map(
      j.activity.map(([c, f, s, v]) => [
        BigInt(c),
        { filled: BigInt(f), settled: BigInt(s), value: BigInt(v) },
      ]),
    ),
    accumulators: new Map(
      j.accumulators.map(([v, c, s, o]) => [
        v as Address,
        { cumulative: BigInt(c), stake: BigInt(s), outstanding: BigInt(o) },
      ]),
    ),
    periods: new Map(j.periods.map(([k, s, st]) => [k, { stake: BigInt(s), start: BigInt(st) }])),
    communityPool: BigInt(j.communityPool),
    emitted: BigInt(j.emitted),
    history: j.history.map((h) => ({
      epoch: BigInt(h.epoch),
      height: BigInt(h.height),
      emission: BigInt(h.emission),
      paid: BigInt(h.paid),
      communityPool: BigInt(h.communityPool),
      byValidator: new Map(h.byValidator.map(([v, x]) => [v as Address, BigInt(x)])),
      pools: h.pools.map((p) => ({
        chainId: BigInt(p.chainId),
        reward: BigInt(p.reward),
        weight: BigInt(p.weight),
        boostBps: p.boostBps,
        effectiveStake: BigInt(p.effectiveStake),
        validators: p.validators.map(([v, e, x]) => ({
          validator: v as Address,
          effectiveStake: BigInt(e),
          reward: BigInt(x),
        })),
      })),
    })),
  }
}
