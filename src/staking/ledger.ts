/**
 * The staking step of a block (ARCHITECTURE.md, Staking): one working copy of the stake book
 * (validators.ts: accounts, delegations, unbonding, loans, validator records) and of the stake moves in
 * force, through which `validateBlock`, `proposeBlock` and `apply` run a block's staking in one order:
 * punishments, loans due, the block's stake moves, its account messages, the epoch boundary. Pure: no I/O.
 *
 * Stake moves over the book (docs/accounts.md, "Stake moves"):
 * - a move signed by a validator lends its own stake (its delegation to itself) from one of its pools to
 *   another; a move signed by anyone else lends that staker's delegation behind the lowest-address
 *   validator whose delegation on `fromChainId` covers `amount` (a StakeMove names no validator);
 * - only stake owned and not on loan moves (no hop while in flight), at most
 *   MAX_STAKE_MOVES_IN_FORCE moves per staker and `maxEntriesPerPair` entries per (staker, validator);
 * - the stake of a jailed validator is frozen: its own and its delegators' moves are UNKNOWN_STAKER;
 * - a validator's pools are the delegations behind it per chain (moved stake where it was moved to), so
 *   a move changes pools and never power, and a slash reaches every delegator, loan and unbonding entry.
 */
import type { Address, Hex } from 'viem'
import { recoverAddress } from '../crypto/recover.ts'
import { minSelfStakeToJoin, type PoolAlarmParams } from './concentration.ts'
import {
  findBadStakeMoveField,
  MAX_STAKE_MOVES_IN_FORCE,
  type RecoverFn,
  type SignedStakeMove,
  STAKE_MOVE_MAX_DURATION_BLOCKS,
  type StakeMove,
  type StakeMoveRecord,
  type StakeMoveRejectCode,
  type StakeMoveVerdict,
  stakeMoveId,
  stakeMoveRecordToJson,
} from './moves.ts'
import {
  type AccountMessage,
  type AccountMessageRejectCode,
  StakeBook,
  type StakeParams,
  type StakeState,
} from './validators.ts'

/** What the staking step reads of the application state (`AppState` fits). */
export interface StakingState {
  readonly networkId: string
  readonly height: bigint
  readonly rollups: readonly { readonly chainId: number | bigint }[]
  /** Jail status is the validators' (state/apply.ts decides it); pools are the book's. */
  readonly validators: readonly { readonly address: Address; readonly jailed: boolean }[]
  /** Moves in force by id. */
  readonly stakeMoves: ReadonlyMap<Hex, StakeMoveRecord>
  /** Highest stake move nonce used by each staker. */
  readonly stakeNonces: ReadonlyMap<Address, bigint>
  readonly stake: StakeState
  readonly stakeParams: StakeParams
  /**
   * A validator's consensus power at a height (the stake that voted then), if the state knows it: what a
   * slash for an infraction at that height is capped by.
   */
  readonly powerAt?: (validator: Address, height: bigint) => bigint | undefined
  /** Pools whose concentration alarm is raised: joining them takes less self-stake. */
  readonly alarms?: readonly bigint[]
  readonly rewardParams?: PoolAlarmParams
}

/**
 * The least self-stake of a CreateValidator for `chainIds`: `minSelfStake`, lowered by the alarm rule
 * (concentration.ts `minSelfStakeToJoin`) only when every pool it joins is alarmed, so the lowered price
 * buys service only where it is short.
 */
export function joinMinSelfStake(state: StakingState, chainIds: readonly bigint[]): bigint {
  const min = state.stakeParams.minSelfStake
  const alarms = state.alarms ?? []
  if (state.rewardParams === undefined || chainIds.length === 0 || !chainIds.every((c) => alarms.includes(c)))
    return min
  return minSelfStakeToJoin(min, true, state.rewardParams)
}

function cmp(a: string | bigint, b: string | bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function fail(code: StakeMoveRejectCode, message: string): StakeMoveVerdict {
  return { ok: false, code, message }
}

/** A working copy of the staking part of a state, changed in block order. */
export class StakeLedger {
  readonly networkId: string
  readonly book: StakeBook
  readonly #state: StakingState
  readonly #chains: ReadonlySet<bigint>
  readonly #jailed: Set<Address>
  #moves: Map<Hex, StakeMoveRecord> | undefined
  #nonces: Map<Address, bigint> | undefined
  /** Moves in force per staker, counted on first use. */
  readonly #inForce = new Map<Address, number>()
  #changed = false

  constructor(state: StakingState, height = state.height + 1n) {
    this.networkId = state.networkId
    this.#state = state
    this.#chains = new Set(state.rollups.map((r) => BigInt(r.chainId)))
    this.#jailed = new Set(state.validators.filter((v) => v.jailed).map((v) => v.address))
    this.book = new StakeBook(state.stake, state.stakeParams, height, (c) => joinMinSelfStake(state, c))
  }

  /** Moves in force. */
  get moves(): ReadonlyMap<Hex, StakeMoveRecord> {
    return this.#moves ?? this.#state.stakeMoves
  }

  /** Highest move nonce used per staker. */
  get nonces(): ReadonlyMap<Address, bigint> {
    return this.#nonces ?? this.#state.stakeNonces
  }

  /** True once anything changed stake (pools must be derived again). */
  get changed(): boolean {
    return this.#changed
  }

  #writableMoves(): Map<Hex, StakeMoveRecord> {
    this.#moves ??= new Map(this.#state.stakeMoves)
    return this.#moves
  }

  #countInForce(staker: Address): number {
    let n = this.#inForce.get(staker)
    if (n === undefined) {
      n = 0
      for (const m of this.moves.values()) if (m.staker === staker) n++
      this.#inForce.set(staker, n)
    }
    return n
  }

  /** The validator whose pools a move of `m.staker` lends between, or a refusal. */
  #moveValidator(m: StakeMove): Address | StakeMoveVerdict {
    const d = this.book.delegations
    if (this.book.validators.has(m.staker)) return m.staker
    const behind = new Set<Address>()
    for (const e of d.delegations.values())
      if (e.delegator === m.staker && e.chainId === m.fromChainId) behind.add(e.validator)
    if (behind.size === 0)
      return fail(
        'UNKNOWN_STAKER',
        `${m.staker} is not a validator and delegates nothing on ${m.fromChainId}`,
      )
    const sorted = [...behind].sort(cmp)
    for (const v of sorted) if (d.movable(m.staker, v, m.fromChainId) >= m.amount) return v
    return fail(
      'INSUFFICIENT_STAKE',
      `no delegation of ${m.staker} on ${m.fromChainId} has ${m.amount} that is not on loan`,
    )
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
    const validator = this.#moveValidator(m)
    if (typeof validator !== 'string') return validator
    if (this.#jailed.has(validator))
      return fail('UNKNOWN_STAKER', `${validator} is jailed: its stake is frozen`)
    const used = this.nonces.get(m.staker)
    if (used !== undefined && m.nonce <= used)
      return fail('NONCE_USED', `nonce ${m.nonce} <= ${used}, the highest used by ${m.staker}`)
    if (this.#countInForce(m.staker) >= MAX_STAKE_MOVES_IN_FORCE)
      return fail('TOO_MANY_MOVES', `${m.staker} has ${MAX_STAKE_MOVES_IN_FORCE} moves in force`)
    const may = this.book.delegations.mayMove(m.staker, validator, m.fromChainId, m.amount)
    if (!may.ok)
      return fail(
        may.code === 'TOO_MANY_ENTRIES'
          ? 'TOO_MANY_MOVES'
          : may.code === 'UNKNOWN_STAKER'
            ? 'INSUFFICIENT_STAKE'
            : may.code,
        may.message,
      )
    return { ok: true, id: stakeMoveId(this.networkId, m) }
  }

  /** Applies a move that `check` accepted, committed at `height`. */
  apply(id: Hex, move: StakeMove, height: bigint, targetCongested: boolean): StakeMoveRecord {
    const validator = this.#moveValidator(move)
    if (typeof validator !== 'string')
      throw new Error(`stake move ${id}: ${validator.ok ? '' : validator.message}`)
    const untilHeight = height + move.durationBlocks
    this.book.delegations.lend({
      id,
      delegator: move.staker,
      validator,
      fromChainId: move.fromChainId,
      toChainId: move.toChainId,
      amount: move.amount,
      untilHeight,
    })
    const record: StakeMoveRecord = {
      id,
      staker: move.staker,
      validator,
      fromChainId: move.fromChainId,
      toChainId: move.toChainId,
      amount: move.amount,
      height,
      untilHeight,
      targetCongested,
    }
    this.#writableMoves().set(id, record)
    this.#inForce.set(move.staker, this.#countInForce(move.staker) + 1)
    this.#nonces ??= new Map(this.#state.stakeNonces)
    this.#nonces.set(move.staker, move.nonce)
    this.#changed = true
    return record
  }

  /** Brings back the stake of every move with `untilHeight <= height`, in id order; the ended moves. */
  expire(height: bigint): StakeMoveRecord[] {
    const ended = this.book.delegations.expireLoans(height)
    const due = [...this.moves.values()]
      .filter((m) => m.untilHeight <= height)
      .sort((a, b) => cmp(a.id, b.id))
    for (const m of due) {
      this.#writableMoves().delete(m.id)
      const n = this.#inForce.get(m.staker)
      if (n !== undefined) this.#inForce.set(m.staker, n - 1)
    }
    if (ended.length > 0 || due.length > 0) this.#changed = true
    return due
  }

  /**
   * Jails a validator and slashes `slashBps` of every delegation behind it, of their loans and of the
   * unbonding entries made from `infractionHeight` on (stake that was at stake then), each part keeping
   * its floor. Returns what was burned. Slashes again when called again: the caller decides who is
   * punished (evidence once, guarded by tombstone).
   */
  punish(address: Address, slashBps: number, infractionHeight: bigint = this.#state.height): bigint {
    this.#jailed.add(address)
    this.book.setJailed(address, true)
    const before = this.book.delegations.loans
    const burned = this.book.delegations.slash(
      address,
      slashBps,
      infractionHeight,
      this.#state.powerAt?.(address, infractionHeight),
    )
    // The move records follow their loans (same id), which the slash scaled.
    const loans = this.book.delegations.loans
    if (loans !== before)
      for (const m of [...this.moves.values()]) {
        const l = loans.get(m.id)
        if ((m.validator ?? m.staker) === address && l !== undefined && l.amount !== m.amount)
          this.#writableMoves().set(m.id, { ...m, amount: l.amount })
      }
    this.#changed = true
    return burned
  }

  /** Frees a validator (an Unjail): its stake may move again, and it is eligible at the next boundary. */
  free(address: Address): void {
    this.#jailed.delete(address)
    this.book.setJailed(address, false)
    this.#changed = true
  }

  /** Every check of an account message but its signature. */
  checkMessage(
    m: AccountMessage,
  ): { ok: true; id: Hex } | { ok: false; code: AccountMessageRejectCode; message: string } {
    return this.book.check(m)
  }

  /** Applies an account message {@link checkMessage} accepted. */
  applyMessage(m: AccountMessage): void {
    this.book.apply(m)
    this.#changed = true
  }

  /** Credits `amount` of new tokens to a balance (a reward or commission). */
  credit(address: Address, amount: bigint): void {
    if (amount === 0n) return
    this.book.accounts.credit(address, amount)
    this.#changed = true
  }

  /** The epoch boundary of the book: unbonding entries due pay out. */
  epochBoundary(): bigint {
    const { paid } = this.book.epochBoundary()
    this.#changed = true
    return paid
  }

  /**
   * The stake now of every (delegator, validator) pair whose delegations this block wrote (`delegator/
   * validator` -> the sum over the network's chains), so reward periods are reconciled without a pass
   * over every delegation.
   */
  touchedPairStakes(): Map<string, bigint> {
    const d = this.book.delegations
    const out = new Map<string, bigint>()
    for (const k of d.touchedPairs) {
      const slash = k.indexOf('/')
      const delegator = k.slice(0, slash) as Address
      const validator = k.slice(slash + 1) as Address
      let s = 0n
      for (const c of this.#chains) s += d.amount(delegator, validator, c)
      out.set(k, s)
    }
    return out
  }

  /** Every validator's pools (chain id -> stake), for the validators of the book. */
  pools(): Map<Address, Map<bigint, bigint>> {
    return this.book.delegations.pools()
  }
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

/** Sum of every pool of every validator (what moves and returns conserve). */
export function totalStake(state: {
  readonly validators: readonly { readonly pools: ReadonlyMap<bigint, bigint> }[]
}): bigint {
  let t = 0n
  for (const v of state.validators) for (const s of v.pools.values()) t += s
  return t
}

/**
 * The body of `GET /v1/staking`: per rollup (chain id order) the validators with stake there (address
 * order, jailed ones included: their stake is still bonded) and the total; the moves in force (id order).
 */
export function stakingToJson(state: {
  readonly height: bigint
  readonly rollups: readonly { readonly chainId: number | bigint }[]
  readonly validators: readonly {
    readonly address: Address
    readonly pools: ReadonlyMap<bigint, bigint>
    readonly jailed: boolean
  }[]
  readonly stakeMoves: ReadonlyMap<Hex, StakeMoveRecord>
}) {
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
