/**
 * Elastic stake moves (ARCHITECTURE.md, Staking): a staker lends stake from a validator's pool on one rollup
 * to its pool on another for a number of blocks. The message, its id, signature, field checks, order and
 * JSON; the rules that apply it over the stake book are staking/ledger.ts. Pure.
 *
 * The model (docs/accounts.md, "Stake moves"):
 * - a validator moves its own stake, a delegator its own delegation (ledger.ts); stake on loan is not
 *   lent on (when the loan ends it can always go back), a jailed validator's stake is frozen;
 * - nonces: per staker, the highest nonce used so far is kept; a move needs a strictly greater one, so
 *   nonces need not be consecutive but are used in increasing order;
 * - applying takes `amount` from the pool on `fromChainId` and adds it to the pool on `toChainId` (the
 *   validator then serves `toChainId` with it: the router counts it as a pool member there); voting power
 *   (the sum of the pools) does not change. At height >= `untilHeight = height + durationBlocks` the
 *   stake goes back, moves in id order. A pool emptied by a move or a return is removed.
 * - punishment (double signing, downtime: state/apply.ts) slashes a share of each pool of the validator
 *   and of each of its moves in force, keeping the floor, so a loan never returns more than its target
 *   pool holds; a jailed validator's stake is frozen (no moves).
 * - in a block, moves are in (staker, nonce) order, each valid on the state left by the ones before it:
 *   a staker's moves go in nonce order, and two moves of one staker must both be covered.
 */
import type { Address, Hex, LocalAccount } from 'viem'
import { hashNetworkTyped, networkDomain, STAKE_MOVE_TYPES } from '../codec/eip712.ts'

/** `StakeMove(address staker,uint256 fromChainId,uint256 toChainId,uint256 amount,uint64 durationBlocks,uint256 nonce)` */
export interface StakeMove {
  /** Lowercase. */
  readonly staker: Address
  readonly fromChainId: bigint
  readonly toChainId: bigint
  readonly amount: bigint
  readonly durationBlocks: bigint
  readonly nonce: bigint
}

/** A stake move with the staker's 65-byte ECDSA signature over its EIP-712 digest. */
export interface SignedStakeMove {
  readonly move: StakeMove
  readonly signature: Hex
}

/** Longest loan, in blocks (about 14 hours at 500 ms blocks). */
export const STAKE_MOVE_MAX_DURATION_BLOCKS = 100_000n
/** Most moves of one staker in force at once (bounds the state a validator can make the network keep). */
export const MAX_STAKE_MOVES_IN_FORCE = 64
/** A target rollup whose gas used ratio in the block's health view is at least this is congested. */
export const STAKE_MOVE_CONGESTED_BPS = 8_000

/** Primary type name of a stake move. */
export const STAKE_MOVE_PRIMARY_TYPE = 'StakeMove'

const UINT64_MAX = (1n << 64n) - 1n
const UINT256_MAX = (1n << 256n) - 1n
const ADDRESS_RE = /^0x[0-9a-f]{40}$/
const SIGNATURE_RE = /^0x[0-9a-f]{130}$/

/** A move in force. */
export interface StakeMoveRecord {
  /** The move's EIP-712 digest. */
  readonly id: Hex
  readonly staker: Address
  /**
   * The validator whose pools the stake moves between (the staker itself for a validator's move; staking/
   * ledger.ts picks it for a delegator's). Absent in records made before delegations: the staker.
   */
  readonly validator?: Address
  readonly fromChainId: bigint
  readonly toChainId: bigint
  /** What goes back at `untilHeight` (slashed with the staker's pools when it is punished). */
  readonly amount: bigint
  /** Block that committed it. */
  readonly height: bigint
  /** The stake returns in the block of this height. */
  readonly untilHeight: bigint
  /** The target's gas used ratio was >= STAKE_MOVE_CONGESTED_BPS in the committing block's health view. */
  readonly targetCongested: boolean
}

export type StakeMoveRejectCode =
  | 'MALFORMED'
  | 'BAD_SIGNATURE'
  | 'UNKNOWN_STAKER'
  | 'NONCE_USED'
  | 'INSUFFICIENT_STAKE'
  | 'TOO_MANY_MOVES'

export type StakeMoveVerdict =
  | { readonly ok: true; readonly id: Hex }
  | { readonly ok: false; readonly code: StakeMoveRejectCode; readonly message: string }

/** Signature recovery: `(digest, signature) -> lowercase address`; rejects when nothing recovers. */
export type RecoverFn = (digest: Hex, signature: Hex) => Promise<Address>

function cmp(a: string | bigint, b: string | bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** The id of a move: its EIP-712 digest under `networkDomain(networkId)` (what the staker signs). */
export function stakeMoveId(networkId: string, move: StakeMove): Hex {
  return hashNetworkTyped(networkId, STAKE_MOVE_PRIMARY_TYPE, STAKE_MOVE_TYPES, move)
}

/** The complete typed-data definition of a move, for any EIP-712 signer. */
export function stakeMoveTypedData(networkId: string, move: StakeMove) {
  return {
    domain: networkDomain(networkId),
    types: STAKE_MOVE_TYPES,
    primaryType: STAKE_MOVE_PRIMARY_TYPE,
    message: move,
  } as const
}

/** Signs a move with the staker's account; `move.staker` must be that account. */
export async function signStakeMove(
  account: Pick<LocalAccount, 'address' | 'signTypedData'>,
  networkId: string,
  move: StakeMove,
): Promise<SignedStakeMove> {
  if (move.staker !== account.address.toLowerCase())
    throw new Error(`move.staker ${move.staker} is not the signing account ${account.address}`)
  const signature = (await account.signTypedData(stakeMoveTypedData(networkId, move))).toLowerCase() as Hex
  return { move, signature }
}

/** Why the fields of a signed move are out of their types' ranges (or not lowercase hex), or undefined. */
export function findBadStakeMoveField(s: SignedStakeMove): string | undefined {
  const m = s.move
  if (typeof m.staker !== 'string' || !ADDRESS_RE.test(m.staker)) return 'staker'
  for (const [k, max] of [
    ['fromChainId', UINT256_MAX],
    ['toChainId', UINT256_MAX],
    ['amount', UINT256_MAX],
    ['durationBlocks', UINT64_MAX],
    ['nonce', UINT256_MAX],
  ] as const) {
    const v = m[k]
    if (typeof v !== 'bigint' || v < 0n || v > max) return k
  }
  if (typeof s.signature !== 'string' || !SIGNATURE_RE.test(s.signature)) return 'signature'
  return undefined
}

/** True when `b` comes after `a` in a block: (staker, nonce) strictly increasing. */
export function stakeMoveOrdered(a: StakeMove, b: StakeMove): boolean {
  return a.staker < b.staker || (a.staker === b.staker && a.nonce < b.nonce)
}

/** Sorts moves into block order: staker, then nonce, then id (so the proposer's choice is deterministic). */
export function sortStakeMoves(networkId: string, moves: Iterable<SignedStakeMove>): SignedStakeMove[] {
  return [...moves]
    .map((s) => ({ s, id: findBadStakeMoveField(s) === undefined ? stakeMoveId(networkId, s.move) : '' }))
    .sort(
      (x, y) =>
        cmp(x.s.move.staker, y.s.move.staker) || cmp(x.s.move.nonce, y.s.move.nonce) || cmp(x.id, y.id),
    )
    .map((x) => x.s)
}

/** JSON of a move in force (big integers as decimal strings). */
export function stakeMoveRecordToJson(m: StakeMoveRecord) {
  return {
    id: m.id,
    staker: m.staker,
    validator: m.validator ?? m.staker,
    fromChainId: m.fromChainId.toString(),
    toChainId: m.toChainId.toString(),
    amount: m.amount.toString(),
    height: m.height.toString(),
    untilHeight: m.untilHeight.toString(),
    targetCongested: m.targetCongested,
  }
}
