/**
 * Types of the application state (ARCHITECTURE.md, "src/state"): what committed blocks decide, and the
 * network parameters the state machine reads.
 */
import type { Address, Hex } from 'viem'
import type { ExpectedOutput } from '../rollups/fill.ts'
import type { GenesisRollup } from '../rollups/health-view.ts'
import type { StakeMoveRecord } from '../staking/moves.ts'

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
  readonly rollups: readonly GenesisRollup[]
  readonly params: AppParams
}

/** A validator as the state knows it (`GET /v1/validators`). */
export interface ValidatorState {
  /** Lowercase. */
  readonly address: Address
  readonly peerId: string
  /** Bonded stake: the sum of its pools. Counts for consensus unless jailed. */
  readonly power: bigint
  /** Stake per rollup it serves (chain id -> stake). */
  readonly pools: ReadonlyMap<bigint, bigint>
  readonly jailed: boolean
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
  /** The intent's own fill deadline, unix seconds: after it the intent expires. */
  readonly fillDeadline: bigint
  /** Executors it was taken from for being offline: re-routing never sends it back to them. */
  readonly avoid: readonly Address[]
}

/** The application state after `height` blocks. */
/** What a fill of assignment `a` must deliver (rollups/fill.ts `verifyFillReceipt`). */
export function expectedOutputOf(a: AssignmentState): ExpectedOutput {
  return { recipient: a.recipient, outputToken: a.outputToken, outputAmount: a.outputAmount }
}

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
  readonly rollups: readonly GenesisRollup[]
  readonly params: AppParams
}

/**
 * Version of the stored state layout. 2 added stake moves (`m/<id>`) and `meta.stakeNonces`; 3 added
 * `meta.commitPowers` and `meta.signedAt` (blocks carry their last commit); older states do not load (their
 * blocks have another wire format).
 */
export const APP_STATE_VERSION = 3
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
