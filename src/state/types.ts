/**
 * Types of the application state (ARCHITECTURE.md, "src/state"): what committed blocks decide, and the
 * network parameters the state machine reads.
 */
import type { Address, Hex } from 'viem'
import type { ExpectedOutput } from '../rollups/fill.ts'
import type { GenesisRollup } from '../rollups/health-view.ts'
import type { PoolAlarmParams } from '../staking/concentration.ts'
import type { StakeMoveRecord } from '../staking/moves.ts'
import type { RewardParams } from '../staking/rewards.ts'
import type { StakeParams, StakeState } from '../staking/validators.ts'
import type { AssetTable, GenesisAsset } from './assets.ts'
import type { RewardsState } from './rewards-state.ts'

/** Network parameters the state machine reads (genesis `params`). */
export interface AppParams {
  readonly maxClockSkewSec: number
  readonly blockIntervalMs: number
  readonly healthFreshnessMs: number
  readonly fillTimeoutSec: number
  /**
   * A validator missing from this many consecutive commits (as the blocks' last commits carry them) is
   * offline: skipped as proposer and executor until it signs again. Default 3.
   */
  readonly offlineAfterBlocks: number
  /** Blocks of the missed-blocks window (Cosmos x/slashing `SignedBlocksWindow`). Default 100. */
  readonly signedBlocksWindow: number
  /**
   * A validator that signed fewer than this share of its last `signedBlocksWindow` blocks (basis points,
   * Cosmos `MinSignedPerWindow`) is jailed for downtime. Default 5000.
   */
  readonly minSignedPerWindowBps: number
  /** Seconds a downtime jail lasts (Cosmos `DowntimeJailDuration`). Default 60. */
  readonly downtimeJailSec: number
  /** Share of the stake slashed for downtime, basis points. Default 0. */
  readonly slashDowntimeBps: number
  /** Share of the stake slashed for double signing, basis points. Default 500 (5 %). */
  readonly slashDoubleSignBps: number
  /** The consensus validator set changes only after blocks whose height is a multiple of this. Default 100. */
  readonly epochBlocks: number
  /**
   * Seconds after an order's fillDeadline before anyone may refund it on its origin settler without the
   * network (the settler's constructor argument). Default 3600.
   */
  readonly refundGraceSec?: number
  /** Least self-stake to create a validator and stay eligible for the set. Default: the smallest genesis stake. */
  readonly minSelfStake?: bigint
  /** Most validators in the consensus set (the most staked; ties by address). Default 100. */
  readonly maxValidators?: number
  /** Most signed account messages of one account in a block (transfers pay no fee). Default 16. */
  readonly maxMessagesPerBlock?: number
  /** Epoch boundaries an unbonding entry waits before it pays out. Default 10. */
  readonly unbondingEpochs?: number
  /** Most unbonding entries plus loans in force per (delegator, validator) pair. Default 7. */
  readonly maxEntriesPerPair?: number
  /** Share of what a double-signing slash burns paid to the proposer including the evidence, bps. Default 1000. */
  readonly whistleblowerRewardBps?: number
  /** Correlation penalty: extra slash per unit of share of the set slashed in the window. Default 3. */
  readonly correlationMultiplier?: number
  /** Blocks over which double-signing slashes add up for the correlation penalty. Default 1000. */
  readonly correlationWindowBlocks?: number
  /** Reward parameters (docs/rewards.md); each defaults to DEFAULT_REWARD_PARAMS. */
  readonly emissionPerEpoch?: bigint
  readonly baseWeight?: bigint
  readonly fillWeight?: bigint
  readonly settleWeight?: bigint
  readonly valueWeight?: bigint
  readonly valueUnit?: bigint
  readonly congestedActivationBlocks?: bigint
  readonly concentrationHhiLevel?: bigint
  readonly concentrationBoostBps?: number
  /** Pool alarm parameters (docs/rewards.md); each defaults to DEFAULT_ALARM_PARAMS. */
  readonly minPoolValidators?: number
  readonly minPoolStake?: bigint
  readonly clearPoolValidators?: number
  readonly clearPoolStake?: bigint
  readonly alarmMinSelfStakeBps?: number
  readonly alarmMinSelfStakeFloor?: bigint
  /**
   * Base-fee surge detour (state/surge.ts): raise at this share of a rollup's baseline base fee (bps,
   * default 30 000 = 3×), clear below surgeClearBps (default 15 000), hold at least surgeMinHoldBlocks
   * (default 20), baseline the median of surgeWindowBlocks calm blocks (default 64), never a surge below
   * surgeMinBaseFeeWei (default 0.1 gwei).
   */
  readonly surgeRaiseBps?: number
  readonly surgeClearBps?: number
  readonly surgeMinHoldBlocks?: number
  readonly surgeWindowBlocks?: number
  readonly surgeMinBaseFeeWei?: bigint
}

/** What the state machine needs of a genesis (`Genesis` of node/genesis.ts fits). */
export interface AppGenesis {
  readonly networkId: string
  /** Unix seconds. */
  readonly genesisTime: number
  readonly validators: readonly {
    readonly address: string
    readonly peerId: string
    readonly stake: bigint
    readonly pools: readonly number[]
  }[]
  readonly delegations: readonly {
    readonly delegator: string
    readonly validator: string
    readonly amount: bigint
    readonly chainId: number
  }[]
  /** Balances in the staking token at genesis; none when absent. */
  readonly accounts?: readonly { readonly address: string; readonly balance: bigint }[]
  readonly rollups: readonly GenesisRollup[]
  /** The asset table (state/assets.ts); none when absent. */
  readonly assets?: readonly GenesisAsset[]
  readonly params: AppParams
}

/** A validator as the state knows it (`GET /v1/validators`). */
export interface ValidatorState {
  /** Lowercase. */
  readonly address: Address
  readonly peerId: string
  /** Bonded stake: the sum of its pools. Enters the consensus set at an epoch boundary unless jailed. */
  readonly power: bigint
  /** Stake per rollup it serves (chain id -> stake). */
  readonly pools: ReadonlyMap<bigint, bigint>
  /** Jailed for downtime (until an Unjail after `jailedUntil`) or for double signing (tombstoned). */
  readonly jailed: boolean
  /** Unix seconds: the downtime jail ends (an Unjail is valid from then on); null when not jailed or tombstoned. */
  readonly jailedUntil: bigint | null
  /** Slashed for double signing: jailed forever, never unjailed, never punished again. */
  readonly tombstoned: boolean
}

/** An open assignment, with what re-routing and fill checks need of its intent. */
export interface AssignmentState {
  readonly intentId: Hex
  readonly chainId: bigint
  readonly executor: Address
  /** Unix seconds: after it the assignment is re-routed. */
  readonly deadline: bigint
  /** Block that made (or last moved) it. */
  readonly height: bigint
  readonly user: Address
  readonly destinationChainIds: readonly bigint[]
  readonly outputToken: Address
  readonly outputAmount: bigint
  readonly recipient: Address
  /**
   * The intent's origin chain (its order's `originChainId`): the FILL leaf names it (state/settlement.ts).
   * Set by apply on every new assignment. Optional only because state/storage.ts does not persist it yet:
   * an assignment reloaded from disk without it makes settlementLeaves throw.
   */
  readonly originChainId: bigint
  /** The intent's own fill deadline, unix seconds: after it the intent expires. */
  readonly fillDeadline: bigint
  /** The order's input token on its origin (the REFUND leaf's token: what the settler escrowed). */
  readonly inputToken: Address
  /** The order's inputAmount (the REFUND leaf's amount). */
  readonly inputAmount: bigint
  /** Executors it was taken from for being offline: re-routing never sends it back to them. */
  readonly avoid: readonly Address[]
}

/** What a fill of assignment `a` must deliver (rollups/fill.ts `verifyFillReceipt`). */
export function expectedOutputOf(a: AssignmentState): ExpectedOutput {
  return { recipient: a.recipient, outputToken: a.outputToken, outputAmount: a.outputAmount }
}

/** The application state after `height` blocks. */
export interface AppState {
  readonly networkId: string
  readonly genesisHash: Hex
  readonly height: bigint
  /** The genesis hash at height 0. */
  readonly lastBlockHash: Hex
  /** Unix milliseconds; genesisTime × 1000 at height 0. */
  readonly lastBlockTime: number
  /** Sorted by address. */
  readonly validators: readonly ValidatorState[]
  readonly assignments: ReadonlyMap<Hex, AssignmentState>
  /**
   * Assignments that went back to pending (re-routed without a route), by intent id, until the intent is
   * assigned again or its fill deadline passes: its executor may have opened the order on its origin
   * before the rollup went down, so when the deadline passes the block may refund it (plan.ts
   * `refundable`). The last assignment as it was.
   */
  readonly released: ReadonlyMap<Hex, AssignmentState>
  /** Filled or expired intents -> their fill deadline; an intent here is never assigned again. */
  readonly done: ReadonlyMap<Hex, bigint>
  /** Elastic stake moves in force, by id (staking/moves.ts). */
  readonly stakeMoves: ReadonlyMap<Hex, StakeMoveRecord>
  /** Highest stake move nonce used by each staker. */
  readonly stakeNonces: ReadonlyMap<Address, bigint>
  /**
   * Voting power of the validators that decided block `height` (the signers the next block's last commit
   * must carry more than 2/3 of); the genesis set at height 0.
   */
  readonly commitPowers: ReadonlyMap<Address, bigint>
  /** The last height whose commit, as a block carried it, holds the validator's precommit. */
  readonly signedAt: ReadonlyMap<Address, bigint>
  /**
   * The consensus validator set that decides block `height + 1` (power by address): fixed for an epoch,
   * taken from the validators at an epoch boundary (state/epoch.ts). The genesis validators at height 0.
   */
  readonly consensusSet: ReadonlyMap<Address, bigint>
  /** The consensus set before `consensusSet` (the genesis set until the first change). */
  readonly priorSet: ReadonlyMap<Address, bigint>
  /** The first height `consensusSet` decides (1 at genesis). */
  readonly setSince: bigint
  /** Missed-blocks windows of the validators tracked for downtime (state/liveness.ts). */
  readonly liveness: ReadonlyMap<Address, MissedWindow>
  /** Highest Unjail nonce used by each validator. */
  readonly unjailNonces: ReadonlyMap<Address, bigint>
  /**
   * Accounts, delegations, unbonding entries, loans and validator records (staking/validators.ts): the
   * source of every validator's pools (the delegations behind it per chain, loans included).
   */
  readonly stake: StakeState
  /** The staking parameters, resolved from `params` and their defaults at genesis. */
  readonly stakeParams: StakeParams
  /** Epoch activity, F1 accumulators and periods, community pool, last epochs (state/rewards-state.ts). */
  readonly rewards: RewardsState
  /** Reward and pool alarm parameters, resolved at genesis. */
  readonly rewardParams: RewardParams & PoolAlarmParams
  /** Pools (chain ids, ascending) whose concentration alarm is raised (staking/concentration.ts). */
  readonly alarms: readonly bigint[]
  /** Base-fee surge state per rollup (state/surge.ts): the router detours new work around surging ones. */
  readonly surges: SurgeState
  /**
   * Double-signing punishments within the correlation window (height, validator, its power in the set),
   * oldest first: what the correlation penalty adds up.
   */
  readonly slashes: readonly SlashRecord[]
  readonly rollups: readonly GenesisRollup[]
  /** The genesis asset table, indexed. */
  readonly assets: AssetTable
  readonly params: AppParams
}

/** A double-signing punishment: the block that applied it, the validator, its consensus power then. */
export interface SlashRecord {
  readonly height: bigint
  readonly validator: Address
  readonly power: bigint
}

/**
 * A validator's missed-blocks window (Cosmos x/slashing's bit array): bit `i % signedBlocksWindow` of
 * `bits` is set when the `i`-th height recorded since the window was reset was missed.
 */
export interface MissedWindow {
  /** Heights recorded since the last reset (a full window once >= signedBlocksWindow). */
  readonly recorded: number
  /** Set bits of `bits`: heights missed within the window. */
  readonly missed: number
  /** ceil(signedBlocksWindow / 8) bytes, bit i at byte i >> 3, mask 1 << (i & 7). */
  readonly bits: Uint8Array
}

/**
 * Version of the stored state layout. 2 added stake moves (`m/<id>`) and `meta.stakeNonces`; 3 added
 * `meta.commitPowers` and `meta.signedAt` (blocks carry their last commit); 4 added jailing
 * (`jailedUntil`, `tombstoned`), `meta.consensusSet`, `meta.liveness` and `meta.unjailNonces`; 5: blocks
 * of wire version 4 (ABI header hash, settlement root) and assignments' `originChainId`; 6: blocks of wire
 * version 5 (refunds), assignments' `inputToken` and `inputAmount`, released assignments (`r/<id>`); 7:
 * blocks of wire version 6 (account messages), the stake book (`meta.stake`).
 * Older states do not load (their blocks have another wire format and other hashes).
 */
export const APP_STATE_VERSION = 7
/** Evidence older than this many blocks is no longer accepted. */
export const EVIDENCE_MAX_AGE_BLOCKS = 100n

/** Total order of ids, addresses and chain ids (strings compare as bytes: lowercase hex). */
export function cmp(a: string | bigint, b: string | bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Sum of a validator's pools: its power. */
export function sumPools(pools: ReadonlyMap<bigint, bigint>): bigint {
  let s = 0n
  for (const v of pools.values()) s += v
  return s
}

/** One rollup's base-fee surge state (state/surge.ts). */
export interface RollupSurge {
  /** Base fees of the last calm blocks that saw the rollup not down, oldest first, at most the window. */
  readonly samples: readonly bigint[]
  /** Height that raised the surge; null while calm. */
  readonly since: bigint | null
}

/** Surge state by chain id (every genesis rollup once it has been seen). */
export type SurgeState = ReadonlyMap<bigint, RollupSurge>
