/** The genesis: its hash (the parent of block 1) and the state at height 0. */
import type { Address, Hex } from 'viem'
import { stringToBytes } from 'viem'
import { keccak256Bytes } from '../crypto/keccak.ts'
import { checkAlarmParams, DEFAULT_ALARM_PARAMS, type PoolAlarmParams } from '../staking/concentration.ts'
import { checkRewardParams, type RewardParams } from '../staking/rewards.ts'
import { defaultStakeParams, genesisStakeState, type StakeParams } from '../staking/validators.ts'
import { AssetTable } from './assets.ts'
import { alarmsAfter } from './economy.ts'
import {
  DEFAULT_CORRELATION_MULTIPLIER,
  DEFAULT_CORRELATION_WINDOW_BLOCKS,
  DEFAULT_WHISTLEBLOWER_REWARD_BPS,
} from './plan.ts'
import { genesisRewards, rewardParamsOf, withDefaults } from './rewards-state.ts'
import { checkSurgeParams, surgeParamsOf } from './surge.ts'
import { type AppGenesis, type AppState, cmp, sumPools, type ValidatorState } from './types.ts'

function toHex(bytes: Uint8Array): Hex {
  return `0x${Buffer.from(bytes).toString('hex')}`
}

/** keccak256 of a canonical JSON form of the genesis: the parent hash of block 1. */
export function genesisHash(g: AppGenesis): Hex {
  const canonical = [
    g.networkId,
    g.genesisTime,
    [...g.validators]
      .map((v) => [v.address.toLowerCase(), v.peerId, v.stake.toString(), [...v.pools].sort((a, b) => a - b)])
      .sort((a, b) => cmp(a[0] as string, b[0] as string)),
    g.delegations.map((d) => [
      d.delegator.toLowerCase(),
      d.validator.toLowerCase(),
      d.amount.toString(),
      d.chainId,
    ]),
    [...g.rollups]
      .map((r) => [
        String(r.chainId),
        r.name,
        r.type,
        r.securityBps,
        ...(r.settlement === undefined ? [] : [r.settlement.settler, r.settlement.lightClient]),
      ])
      .sort((a, b) => cmp(BigInt(a[0] as string), BigInt(b[0] as string))),
    [
      g.params.maxClockSkewSec,
      g.params.blockIntervalMs,
      g.params.healthFreshnessMs,
      g.params.fillTimeoutSec,
      g.params.offlineAfterBlocks,
      g.params.signedBlocksWindow,
      g.params.minSignedPerWindowBps,
      g.params.downtimeJailSec,
      g.params.slashDowntimeBps,
      g.params.slashDoubleSignBps,
      g.params.epochBlocks,
      // Left out at its default, so a genesis that does not set it keeps the hash it had before it.
      ...(g.params.refundGraceSec === undefined || g.params.refundGraceSec === 3_600
        ? []
        : [g.params.refundGraceSec]),
    ],
    // The staking part, resolved (defaults included) so that two spellings of one network hash alike.
    ((p: StakeParams) => [
      p.minSelfStake.toString(),
      p.maxValidators,
      p.maxMessagesPerBlock,
      p.unbondingEpochs,
      p.maxEntriesPerPair,
    ])(stakeParamsOf(g)),
    Object.entries(economyParamsOf(g)).map(([k, v]) => [k, String(v)]),
    [
      g.params.whistleblowerRewardBps ?? DEFAULT_WHISTLEBLOWER_REWARD_BPS,
      g.params.correlationMultiplier ?? DEFAULT_CORRELATION_MULTIPLIER,
      g.params.correlationWindowBlocks ?? DEFAULT_CORRELATION_WINDOW_BLOCKS,
    ],
    // Appended only when a surge param is set, so a genesis without them keeps the hash it had before them.
    ...(SURGE_PARAM_NAMES.some((k) => g.params[k] !== undefined)
      ? [Object.entries(surgeParamsOf(g.params)).map(([k, v]) => [k, String(v)])]
      : []),
    [...(g.accounts ?? [])]
      .map((a) => [a.address.toLowerCase(), a.balance.toString()])
      .sort((a, b) => cmp(a[0]!, b[0]!)),
    // Appended only when present, so a genesis without assets keeps the hash it had before them.
    ...((g.assets?.length ?? 0) > 0
      ? [
          g.assets!.map((a) => [
            a.symbol,
            a.minSpreadBps,
            Object.entries(a.tokens).sort(([x], [y]) => cmp(BigInt(x), BigInt(y))),
          ]),
        ]
      : []),
  ]
  return toHex(keccak256Bytes(stringToBytes(JSON.stringify(canonical))))
}

const SURGE_PARAM_NAMES = [
  'surgeRaiseBps',
  'surgeClearBps',
  'surgeMinHoldBlocks',
  'surgeWindowBlocks',
  'surgeMinBaseFeeWei',
] as const

/** The staking parameters of a genesis: its `params`, defaults for those it leaves out. */
export function stakeParamsOf(g: AppGenesis): StakeParams {
  const d = defaultStakeParams(g)
  const p = g.params
  return {
    minSelfStake: p.minSelfStake ?? d.minSelfStake,
    maxValidators: p.maxValidators ?? d.maxValidators,
    maxMessagesPerBlock: p.maxMessagesPerBlock ?? d.maxMessagesPerBlock,
    unbondingEpochs: p.unbondingEpochs ?? d.unbondingEpochs,
    maxEntriesPerPair: p.maxEntriesPerPair ?? d.maxEntriesPerPair,
  }
}

/** The reward and pool alarm parameters of a genesis (defaults for those it leaves out). */
export function economyParamsOf(g: AppGenesis): RewardParams & PoolAlarmParams {
  const r = rewardParamsOf(g.params)
  const a = withDefaults(DEFAULT_ALARM_PARAMS, g.params)
  checkRewardParams(r)
  checkAlarmParams(a)
  return { ...r, ...a }
}

/**
 * The state at height 0. A validator's own stake is spread evenly over its pools (the remainder of the
 * division goes to its lowest chain id); a delegation adds to one pool. Power is the sum of the pools.
 */
export function genesisState(g: AppGenesis): AppState {
  const pools = new Map<string, Map<bigint, bigint>>()
  for (const v of g.validators) {
    const chains = [...new Set(v.pools.map((c) => BigInt(c)))].sort(cmp)
    const n = BigInt(chains.length)
    const share = n === 0n ? 0n : v.stake / n
    const rem = n === 0n ? 0n : v.stake % n
    pools.set(v.address.toLowerCase(), new Map(chains.map((c, i) => [c, share + (i === 0 ? rem : 0n)])))
  }
  for (const d of g.delegations) {
    const p = pools.get(d.validator.toLowerCase())
    if (p === undefined) continue
    const c = BigInt(d.chainId)
    p.set(c, (p.get(c) ?? 0n) + d.amount)
  }
  const validators = g.validators
    .map((v): ValidatorState => {
      const address = v.address.toLowerCase() as Address
      const p = pools.get(address)!
      return {
        address,
        peerId: v.peerId,
        power: sumPools(p),
        pools: p,
        jailed: false,
        jailedUntil: null,
        tombstoned: false,
      }
    })
    .sort((a, b) => cmp(a.address, b.address))
  const hash = genesisHash(g)
  const stakeParams = stakeParamsOf(g)
  const stake = genesisStakeState(g, stakeParams)
  const rewardParams = economyParamsOf(g)
  checkSurgeParams(surgeParamsOf(g.params))
  const genesisSet = new Map(validators.filter((v) => v.power > 0n).map((v) => [v.address, v.power]))
  return {
    networkId: g.networkId,
    genesisHash: hash,
    height: 0n,
    lastBlockHash: hash,
    lastBlockTime: g.genesisTime * 1000,
    validators,
    assignments: new Map(),
    released: new Map(),
    done: new Map(),
    stakeMoves: new Map(),
    stakeNonces: new Map(),
    commitPowers: genesisSet,
    signedAt: new Map(),
    consensusSet: genesisSet,
    priorSet: genesisSet,
    setSince: 1n,
    liveness: new Map(),
    unjailNonces: new Map(),
    stake,
    stakeParams,
    rewards: genesisRewards(stake),
    rewardParams,
    slashes: [],
    alarms: alarmsAfter({ rollups: g.rollups, rewardParams }, [], validators, genesisSet),
    surges: new Map(),
    rollups: g.rollups,
    assets: new AssetTable(
      g.assets ?? [],
      g.rollups.map((r) => BigInt(r.chainId)),
    ),
    params: g.params,
  }
}
