/**
 * Elastic stake moves (ARCHITECTURE.md, Staking): a validator lends stake from its pool on one rollup to its
 * pool on another for a number of blocks. Pure: no I/O besides the optional signature recovery of
 * `validateStakeMove`.
 *
 * The model (docs/decisions.md, Agreement):
 * - the staker is a validator (delegations are part of the validator's pools and move with them); a move of
 *   anyone else is UNKNOWN_STAKER, a move of a jailed validator too (its stake is frozen);
 * - a move is covered when `amount` <= the staker's pool on `fromChainId` minus the stake it holds there on
 *   loan from its other pools (stake on loan is not lent on: when the loan ends it can always go back);
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
import { recoverAddress } from '../crypto/recover.ts'

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

/** What the staking rules read of the application state (`AppState` fits). */
export interface StakingState {
  readonly networkId: string
  readonly height: bigint
  readonly rollups: readonly { readonly chainId: number | bigint }[]
  readonly validators: readonly {
    readonly address: Address
    readonly pools: ReadonlyMap<bigint, bigint>
    readonly jailed: boolean
  }[]
  /** Moves in force by id. */
  readonly stakeMoves: ReadonlyMap<Hex, StakeMoveRecord>
  /** Highest nonce used by each staker. */
  readonly stakeNonces: ReadonlyMap<Address, bigint>
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

function fail(code: StakeMoveRejectCode, message: string): StakeMoveVerdict {
  return { ok: false, code, message }
}

/** Per-staker working data of a ledger. */
interface StakerEntry {
  pools: Map<bigint, bigint>
  jailed: boolean
  /** Stake on loan in each pool (sum of the staker's moves in force into that chain). */
  borrowed: Map<bigint, bigint>
  inForce: number
  changed: boolean
}

/**
 * A working copy of the staking part of a state, changed move by move: what `validateBlock`,
 * `proposeBlock` and `apply` run a block's staking through (jailing, returns, then the block's moves).
 * Reads fall through to the state; a staker's data is copied on first use.
 */
export class StakeLedger {
  readonly networkId: string
  readonly #state: StakingState
  readonly #chains: ReadonlySet<bigint>
  readonly #validators: ReadonlyMap<Address, StakingState['validators'][number]>
  readonly #stakers = new Map<Address, StakerEntry>()
  #moves: Map<Hex, StakeMoveRecord> | undefined
  #nonces: Map<Address, bigint> | undefined

  constructor(state: StakingState) {
    this.networkId = state.networkId
    this.#state = state
    this.#chains = new Set(state.rollups.map((r) => BigInt(r.chainId)))
    this.#validators = new Map(state.validators.map((v) => [v.address, v]))
  }

  /** Moves in force. */
  get moves(): ReadonlyMap<Hex, StakeMoveRecord> {
    return this.#moves ?? this.#state.stakeMoves
  }

  /** Highest nonce used per staker. */
  get nonces(): ReadonlyMap<Address, bigint> {
    return this.#nonces ?? this.#state.stakeNonces
  }

  #entry(address: Address): StakerEntry | undefined {
    let e = this.#stakers.get(address)
    if (e !== undefined) return e
    const v = this.#validators.get(address)
    if (v === undefined) return undefined
    const borrowed = new Map<bigint, bigint>()
    let inForce = 0
    for (const m of this.moves.values()) {
      if (m.staker !== address) continue
      inForce++
      borrowed.set(m.toChainId, (borrowed.get(m.toChainId) ?? 0n) + m.amount)
    }
    e = { pools: new Map(v.pools), jailed: v.jailed, borrowed, inForce, changed: false }
    this.#stakers.set(address, e)
    return e
  }

  /** The staker's pools as they stand in the ledger (the state's when untouched). */
  pools(address: Address): ReadonlyMap<bigint, bigint> | undefined {
    return this.#stakers.get(address)?.pools ?? this.#validators.get(address)?.pools
  }

  /** What `staker` can lend from `chainId`: its pool there minus the stake it holds there on loan. */
  available(staker: Address, chainId: bigint): bigint {
    const e = this.#entry(staker)
    if (e === undefined) return 0n
    return (e.pools.get(chainId) ?? 0n) - (e.borrowed.get(chainId) ?? 0n)
  }

  /** Every check of a move but its signature, against the ledger as it stands. */
  check(signed: SignedStakeMove): StakeMoveVerdict {
    const bad = findBadStakeMoveField(signed)
    if (bad !== undefined) return fail('MALFORMED', `${bad} is out of range or not lowercase hex`)
    const m = signed.move
    if (m.fromChainId === m.toChainId) return fail('MALFORMED', 'fromChainId equals toChainId')
    if (m.amount === 0n) return fail('MALFORMED', 'amount is 0')
    if (m.durationBlocks === 0n || m.durationBlocks > STAKE_MOVE_MAX_DURATION_BLOCKS)
      return fail('MALFORMED', `durationBlocks must be in [1, ${STAKE_MOVE_MAX_DURATION_BLOCKS}]`)
    if (!this.#chains.has(m.fromChainId)) return fail('MALFORMED', `unknown chain ${m.fromChainId}`)
    if (!this.#chains.has(m.toChainId)) return fail('MALFORMED', `unknown chain ${m.toChainId}`)
    const id = stakeMoveId(this.networkId, m)
    const e = this.#entry(m.staker)
    if (e === undefined) return fail('UNKNOWN_STAKER', `${m.staker} is not a validator`)
    if (e.jailed) return fail('UNKNOWN_STAKER', `${m.staker} is jailed`)
    const used = this.nonces.get(m.staker)
    if (used !== undefined && m.nonce <= used)
      return fail('NONCE_USED', `nonce ${m.nonce} <= ${used}, the highest used by ${m.staker}`)
    if (e.inForce >= MAX_STAKE_MOVES_IN_FORCE)
      return fail('TOO_MANY_MOVES', `${m.staker} has ${MAX_STAKE_MOVES_IN_FORCE} moves in force`)
    const available = this.available(m.staker, m.fromChainId)
    if (m.amount > available)
      return fail('INSUFFICIENT_STAKE', `${m.amount} > ${available} lendable on ${m.fromChainId}`)
    return { ok: true, id }
  }

  #writableMoves(): Map<Hex, StakeMoveRecord> {
    this.#moves ??= new Map(this.#state.stakeMoves)
    return this.#moves
  }

  /** Applies a move that `check` accepted, committed at `height`. */
  apply(id: Hex, move: StakeMove, height: bigint, targetCongested: boolean): StakeMoveRecord {
    const e = this.#entry(move.staker)
    if (e === undefined) throw new Error(`stake move of unknown staker ${move.staker}`)
    const from = (e.pools.get(move.fromChainId) ?? 0n) - move.amount
    if (from < 0n) throw new Error(`stake move ${id} overdraws ${move.fromChainId}`)
    setPool(e.pools, move.fromChainId, from)
    setPool(e.pools, move.toChainId, (e.pools.get(move.toChainId) ?? 0n) + move.amount)
    e.borrowed.set(move.toChainId, (e.borrowed.get(move.toChainId) ?? 0n) + move.amount)
    e.inForce++
    e.changed = true
    const record: StakeMoveRecord = {
      id,
      staker: move.staker,
      fromChainId: move.fromChainId,
      toChainId: move.toChainId,
      amount: move.amount,
      height,
      untilHeight: height + move.durationBlocks,
      targetCongested,
    }
    this.#writableMoves().set(id, record)
    this.#nonces ??= new Map(this.#state.stakeNonces)
    this.#nonces.set(move.staker, move.nonce)
    return record
  }

  /** Returns the stake of every move with `untilHeight <= height`, in id order; the ended moves. */
  expire(height: bigint): StakeMoveRecord[] {
    const due = [...this.moves.values()]
      .filter((m) => m.untilHeight <= height)
      .sort((a, b) => cmp(a.id, b.id))
    for (const m of due) {
      const e = this.#entry(m.staker)
      this.#writableMoves().delete(m.id)
      if (e === undefined) continue
      const to = e.pools.get(m.toChainId) ?? 0n
      const back = m.amount <= to ? m.amount : to // never below zero (an invariant keeps amount <= to)
      setPool(e.pools, m.toChainId, to - back)
      setPool(e.pools, m.fromChainId, (e.pools.get(m.fromChainId) ?? 0n) + back)
      const b = (e.borrowed.get(m.toChainId) ?? 0n) - m.amount
      if (b > 0n) e.borrowed.set(m.toChainId, b)
      else e.borrowed.delete(m.toChainId)
      e.inForce--
      e.changed = true
    }
    return due
  }

  /**
   * Jails a validator and slashes `slashBps` of each of its pools and of each of its moves in force: what
   * it keeps is floor(stake × (10000 − slashBps) / 10000), so a loan never returns more than its target
   * pool holds (the floors of the parts sum to at most the floor of the whole). Slashes again when called
   * again: the caller decides who is punished (evidence once, guarded by tombstone).
   */
  punish(address: Address, slashBps: number): void {
    const e = this.#entry(address)
    if (e === undefined) return
    const keep = BigInt(10_000 - Math.min(Math.max(slashBps, 0), 10_000))
    const kept = (x: bigint) => (x * keep) / 10_000n
    if (keep !== 10_000n) {
      for (const [c, s] of e.pools) setPool(e.pools, c, kept(s))
      e.borrowed.clear()
      for (const m of [...this.moves.values()]) {
        if (m.staker !== address) continue
        const slashed = { ...m, amount: kept(m.amount) }
        this.#writableMoves().set(m.id, slashed)
        e.borrowed.set(m.toChainId, (e.borrowed.get(m.toChainId) ?? 0n) + slashed.amount)
      }
    }
    e.jailed = true
    e.changed = true
  }

  /** Stakers whose pools or jail status the ledger changed: their new pools and status. */
  changes(): ReadonlyMap<Address, { pools: ReadonlyMap<bigint, bigint>; jailed: boolean }> {
    const out = new Map<Address, { pools: ReadonlyMap<bigint, bigint>; jailed: boolean }>()
    for (const [a, e] of this.#stakers) if (e.changed) out.set(a, { pools: e.pools, jailed: e.jailed })
    return out
  }
}

function setPool(pools: Map<bigint, bigint>, chainId: bigint, stake: bigint): void {
  if (stake === 0n) pools.delete(chainId)
  else pools.set(chainId, stake)
}

/**
 * Whether `signed` can go into the block at `height` (default `state.height + 1`) on top of `state`: every
 * check of {@link StakeLedger.check}, then the signature (it must recover to the staker). The cheap,
 * state-dependent checks run first.
 */
export async function validateStakeMove(
  state: StakingState,
  signed: SignedStakeMove,
  height: bigint = state.height + 1n,
  recover: RecoverFn = recoverAddress,
): Promise<StakeMoveVerdict> {
  const ledger = new StakeLedger(state)
  // Loans due at `height` are back before the block's moves.
  if (height > state.height) ledger.expire(height)
  const v = ledger.check(signed)
  if (!v.ok) return v
  let signer: Address
  try {
    signer = await recover(v.id, signed.signature)
  } catch {
    return fail('BAD_SIGNATURE', 'the signature does not recover')
  }
  if (signer !== signed.move.staker) return fail('BAD_SIGNATURE', `signed by ${signer}, not the staker`)
  return v
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

/** Sum of every pool of every validator (what moves and returns conserve). */
export function totalStake(state: Pick<StakingState, 'validators'>): bigint {
  let t = 0n
  for (const v of state.validators) for (const s of v.pools.values()) t += s
  return t
}

/** JSON of a move in force (big integers as decimal strings). */
export function stakeMoveRecordToJson(m: StakeMoveRecord) {
  return {
    id: m.id,
    staker: m.staker,
    fromChainId: m.fromChainId.toString(),
    toChainId: m.toChainId.toString(),
    amount: m.amount.toString(),
    height: m.height.toString(),
    untilHeight: m.untilHeight.toString(),
    targetCongested: m.targetCongested,
  }
}

/**
 * The body of `GET /v1/staking`: per rollup (chain id order) the validators with stake there (address
 * order, jailed ones included: their stake is still bonded) and the total; the moves in force (id order).
 */
export function stakingToJson(state: StakingState) {
  const pools = [...state.rollups]
    .map((r) => BigInt(r.chainId))
    .sort(cmp)
    .map((chainId) => {
      const validators = state.validators
        .filter((v) => (v.pools.get(chainId) ?? 0n) > 0n)
        .map((v) => ({ address: v.address, stake: v.pools.get(chainId)!, jailed: v.jailed }))
        .sort((a, b) => cmp(a.address, b.address))
      const total = validators.reduce((t, v) => t + v.stake, 0n)
      return {
        chainId: chainId.toString(),
        validators: validators.map((v) => ({
          address: v.address,
          stake: v.stake.toString(),
          jailed: v.jailed,
        })),
        total: total.toString(),
      }
    })
  const moves = [...state.stakeMoves.values()].sort((a, b) => cmp(a.id, b.id)).map(stakeMoveRecordToJson)
  return { height: state.height.toString(), pools, moves }
}
