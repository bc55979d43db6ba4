/**
 * Delegations (issue 11, item 3): stake an account puts behind a validator in one of its pools, taken
 * from its balance by a signed `Delegate`, given back by a signed `Undelegate` through an unbonding entry
 * that pays out `unbondingEpochs` epoch boundaries later (Cosmos x/staking's unbonding delegations).
 * A validator's own stake is its delegation to itself, so leaving is undelegating it. Pure: no I/O
 * besides the optional signature recovery of {@link validateDelegationMessage}. Not wired into blocks.
 *
 * The model (docs/accounts.md):
 * - a delegation is keyed by (delegator, validator, chainId); a Delegate needs a validator that serves
 *   `chainId` (UNKNOWN_VALIDATOR) and the amount in the balance (INSUFFICIENT_BALANCE);
 * - an Undelegate takes at most the delegation minus the stake it holds there on loan (stake in flight
 *   does not hop: it must come back first, INSUFFICIENT_STAKE); the unbonding entry keeps the height
 *   and epoch it was made and the epoch it completes, and stays slashable until then;
 * - a delegator moves its own delegation between pools of the same validator ({@link mayMove},
 *   {@link lend}): only what it owns and has not lent, never stake on loan (no transitive moves);
 * - unbonding entries plus loans in force per (delegator, validator) pair are capped at
 *   `maxEntriesPerPair` (TOO_MANY_ENTRIES), so one pair cannot make the state grow without bound.
 */
import type { Address, Hex, LocalAccount } from 'viem'
import { DELEGATE_TYPES, UNDELEGATE_TYPES } from '../codec/eip712.ts'
import { recoverAddress } from '../crypto/recover.ts'
import {
  type AccountLedger,
  checkSignedBy,
  findBadMessageField,
  type MessageKind,
  messageId,
  reject,
  type SenderRejectCode,
  type Signed,
  signMessage,
  type Verdict,
} from './accounts.ts'
import type { RecoverFn } from './moves.ts'

/** `Delegate(address delegator,address validator,uint256 chainId,uint256 amount,uint256 nonce)`; Undelegate alike. */
export interface Delegation {
  /** Lowercase; the signer. */
  readonly delegator: Address
  /** Lowercase. */
  readonly validator: Address
  readonly chainId: bigint
  readonly amount: bigint
  readonly nonce: bigint
}

export type SignedDelegate = Signed<'delegate', Delegation>
export type SignedUndelegate = Signed<'undelegate', Delegation>

/** The Delegate message kind. */
export const DELEGATE_KIND: MessageKind<'delegate', Delegation> = {
  primaryType: 'Delegate',
  types: DELEGATE_TYPES,
  key: 'delegate',
  wireKind: 1,
  signer: 'delegator',
}

/** The Undelegate message kind. */
export const UNDELEGATE_KIND: MessageKind<'undelegate', Delegation> = {
  primaryType: 'Undelegate',
  types: UNDELEGATE_TYPES,
  key: 'undelegate',
  wireKind: 2,
  signer: 'delegator',
}

type Account = Pick<LocalAccount, 'address' | 'signTypedData'>

/** Signs a Delegate with the delegator's account. */
export const signDelegate = (a: Account, networkId: string, d: Delegation): Promise<SignedDelegate> =>
  signMessage(DELEGATE_KIND, a, networkId, d)

/** Signs an Undelegate with the delegator's account. */
export const signUndelegate = (a: Account, networkId: string, d: Delegation): Promise<SignedUndelegate> =>
  signMessage(UNDELEGATE_KIND, a, networkId, d)

/** Why a Delegate or Undelegate is refused (the 400 codes of `POST /v1/delegations`, `/v1/undelegations`). */
export type DelegationRejectCode =
  | 'MALFORMED'
  | 'BAD_SIGNATURE'
  | 'UNKNOWN_VALIDATOR'
  | SenderRejectCode
  | 'INSUFFICIENT_BALANCE'
  | 'INSUFFICIENT_STAKE'
  | 'TOO_MANY_ENTRIES'

/** Why a delegator's own stake move is refused ({@link DelegationLedger.mayMove}). */
export type DelegatorMoveRejectCode = 'UNKNOWN_STAKER' | 'INSUFFICIENT_STAKE' | 'TOO_MANY_ENTRIES'

/** Stake on its way back to a balance. */
export interface UnbondingEntry {
  /** The Undelegate's id. */
  readonly id: Hex
  readonly delegator: Address
  readonly validator: Address
  readonly chainId: bigint
  /** What is paid out (slashed when the validator is punished for an infraction before `height`). */
  readonly amount: bigint
  /** Block and epoch that made it. */
  readonly height: bigint
  readonly epoch: bigint
  /** Paid out at the boundary that starts this epoch: `epoch + unbondingEpochs`. */
  readonly completeEpoch: bigint
}

/** A delegator's stake lent from one pool of a validator to another, back at `untilHeight`. */
export interface DelegationLoan {
  readonly id: Hex
  readonly delegator: Address
  readonly validator: Address
  readonly fromChainId: bigint
  readonly toChainId: bigint
  readonly amount: bigint
  readonly untilHeight: bigint
}

/** A delegation in force. */
export interface DelegationEntry {
  readonly delegator: Address
  readonly validator: Address
  readonly chainId: bigint
  readonly amount: bigint
}

/** Parameters of delegations. */
export interface DelegationParams {
  /** Epoch boundaries an unbonding entry waits before it pays out. */
  readonly unbondingEpochs: number
  /** Most unbonding entries plus loans in force per (delegator, validator) pair. */
  readonly maxEntriesPerPair: number
}

/** Defaults of {@link DelegationParams} (Cosmos caps entries per pair at 7 too). */
export const DEFAULT_DELEGATION_PARAMS: DelegationParams = { unbondingEpochs: 10, maxEntriesPerPair: 7 }

/** The delegation part of a state. */
export interface DelegationState {
  /** Epoch in progress (epoch 0 starts at genesis). */
  readonly epoch: bigint
  /** By {@link delegationKey}. */
  readonly delegations: ReadonlyMap<string, DelegationEntry>
  readonly unbonding: ReadonlyMap<Hex, UnbondingEntry>
  readonly loans: ReadonlyMap<Hex, DelegationLoan>
}

/** What delegations need to know of a validator. */
export type ValidatorLookup = (address: Address) => { readonly chainIds: readonly bigint[] } | undefined

/** The key of a delegation: `delegator/validator/chainId`. */
export function delegationKey(delegator: Address, validator: Address, chainId: bigint): string {
  return `${delegator}/${validator}/${chainId}`
}

function cmp(a: string | bigint, b: string | bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * A working copy of the delegation part of a state, over the block's {@link AccountLedger} (where stake
 * comes from and goes back to). Maps are copied on the first write.
 */
export class DelegationLedger {
  readonly params: DelegationParams
  readonly accounts: AccountLedger
  readonly #validator: ValidatorLookup
  readonly #state: DelegationState
  #epoch: bigint
  #delegations: Map<string, DelegationEntry> | undefined
  #unbonding: Map<Hex, UnbondingEntry> | undefined
  #loans: Map<Hex, DelegationLoan> | undefined

  constructor(
    state: DelegationState,
    params: DelegationParams,
    accounts: AccountLedger,
    validator: ValidatorLookup,
  ) {
    this.params = params
    this.accounts = accounts
    this.#validator = validator
    this.#state = state
    this.#epoch = state.epoch
  }

  get epoch(): bigint {
    return this.#epoch
  }
  get delegations(): ReadonlyMap<string, DelegationEntry> {
    return this.#delegations ?? this.#state.delegations
  }
  get unbonding(): ReadonlyMap<Hex, UnbondingEntry> {
    return this.#unbonding ?? this.#state.unbonding
  }
  get loans(): ReadonlyMap<Hex, DelegationLoan> {
    return this.#loans ?? this.#state.loans
  }

  /** The delegation of `delegator` behind `validator` in `chainId` (0 when none). */
  amount(delegator: Address, validator: Address, chainId: bigint): bigint {
    return this.delegations.get(delegationKey(delegator, validator, chainId))?.amount ?? 0n
  }

  /** What of that delegation is on loan into `chainId` (it must go back before it moves again). */
  borrowed(delegator: Address, validator: Address, chainId: bigint): bigint {
    let b = 0n
    for (const l of this.loans.values())
      if (l.delegator === delegator && l.validator === validator && l.toChainId === chainId) b += l.amount
    return b
  }

  /** What `delegator` may undelegate or move from its delegation: the delegation minus its borrowed part. */
  movable(delegator: Address, validator: Address, chainId: bigint): bigint {
    return this.amount(delegator, validator, chainId) - this.borrowed(delegator, validator, chainId)
  }

  /** Unbonding entries plus loans in force of the (delegator, validator) pair. */
  entries(delegator: Address, validator: Address): number {
    let n = 0
    for (const u of this.unbonding.values()) if (u.delegator === delegator && u.validator === validator) n++
    for (const l of this.loans.values()) if (l.delegator === delegator && l.validator === validator) n++
    return n
  }

  /** (delegator, validator) pairs (`delegator/validator`) whose delegations this ledger wrote. */
  readonly touchedPairs = new Set<string>()

  #setDelegation(delegator: Address, validator: Address, chainId: bigint, amount: bigint): void {
    if (amount < 0n) throw new Error(`delegation ${delegator}/${validator}/${chainId} below zero`)
    this.touchedPairs.add(`${delegator}/${validator}`)
    this.#delegations ??= new Map(this.#state.delegations)
    const key = delegationKey(delegator, validator, chainId)
    if (amount === 0n) this.#delegations.delete(key)
    else this.#delegations.set(key, { delegator, validator, chainId, amount })
  }

  /** Bonds `amount` of `delegator`'s balance behind `validator` in `chainId` (the caller checked both). */
  bond(delegator: Address, validator: Address, chainId: bigint, amount: bigint): void {
    this.accounts.debit(delegator, amount)
    this.#setDelegation(delegator, validator, chainId, this.amount(delegator, validator, chainId) + amount)
  }

  #checkCommon(
    kind: MessageKind<'delegate' | 'undelegate', Delegation>,
    s: Signed<'delegate', Delegation> | Signed<'undelegate', Delegation>,
  ): Verdict<DelegationRejectCode> | Delegation {
    const bad = findBadMessageField(kind, s as Signed<typeof kind.key, Delegation>)
    if (bad !== undefined) return reject('MALFORMED', `${bad} is out of range or not lowercase hex`)
    const d = (s as Record<string, unknown>)[kind.key] as Delegation
    if (d.amount === 0n) return reject('MALFORMED', 'amount is 0')
    const v = this.#validator(d.validator)
    if (v === undefined) return reject('UNKNOWN_VALIDATOR', `${d.validator} is not a validator`)
    // New stake goes only where the validator serves; stake already there (moved in) may always leave.
    if (kind === DELEGATE_KIND && !v.chainIds.includes(d.chainId))
      return reject('UNKNOWN_VALIDATOR', `${d.validator} does not serve ${d.chainId}`)
    return this.accounts.checkSender(d.delegator, d.nonce) ?? d
  }

  /** Every check of a Delegate but its signature. */
  checkDelegate(s: SignedDelegate): Verdict<DelegationRejectCode> {
    const d = this.#checkCommon(DELEGATE_KIND, s)
    if ('ok' in d) return d
    const balance = this.accounts.balance(d.delegator)
    if (d.amount > balance)
      return reject('INSUFFICIENT_BALANCE', `${d.amount} > ${balance}, the balance of ${d.delegator}`)
    return { ok: true, id: messageId(DELEGATE_KIND, this.accounts.networkId, d) }
  }

  /** Applies a Delegate that {@link checkDelegate} accepted. */
  applyDelegate(s: SignedDelegate): void {
    const d = s.delegate
    this.bond(d.delegator, d.validator, d.chainId, d.amount)
    this.accounts.useNonce(d.delegator, d.nonce)
  }

  /** Every check of an Undelegate but its signature. */
  checkUndelegate(s: SignedUndelegate): Verdict<DelegationRejectCode> {
    const d = this.#checkCommon(UNDELEGATE_KIND, s)
    if ('ok' in d) return d
    const movable = this.movable(d.delegator, d.validator, d.chainId)
    if (d.amount > movable)
      return reject(
        'INSUFFICIENT_STAKE',
        `${d.amount} > ${movable}, delegated and not on loan, on ${d.chainId}`,
      )
    if (this.entries(d.delegator, d.validator) >= this.params.maxEntriesPerPair)
      return reject(
        'TOO_MANY_ENTRIES',
        `${d.delegator} has ${this.params.maxEntriesPerPair} entries with ${d.validator}`,
      )
    return { ok: true, id: messageId(UNDELEGATE_KIND, this.accounts.networkId, d) }
  }

  /** Applies an Undelegate that {@link checkUndelegate} accepted: the stake starts unbonding. */
  applyUndelegate(s: SignedUndelegate): UnbondingEntry {
    const d = s.undelegate
    this.#setDelegation(
      d.delegator,
      d.validator,
      d.chainId,
      this.amount(d.delegator, d.validator, d.chainId) - d.amount,
    )
    const entry: UnbondingEntry = {
      id: messageId(UNDELEGATE_KIND, this.accounts.networkId, d),
      delegator: d.delegator,
      validator: d.validator,
      chainId: d.chainId,
      amount: d.amount,
      height: this.accounts.height,
      epoch: this.#epoch,
      completeEpoch: this.#epoch + BigInt(this.params.unbondingEpochs),
    }
    this.#unbonding ??= new Map(this.#state.unbonding)
    this.#unbonding.set(entry.id, entry)
    this.accounts.useNonce(d.delegator, d.nonce)
    return entry
  }

  /**
   * Whether `signer` may move `amount` of its delegation behind `validator` out of `chainId` (a
   * delegator's own stake move): it must own that much there and not hold it on loan (stake in flight
   * does not hop), and its pair must have an entry left. A validator moves its own stake the same way,
   * as its delegation to itself.
   */
  mayMove(
    signer: Address,
    validator: Address,
    chainId: bigint,
    amount: bigint,
  ): Verdict<DelegatorMoveRejectCode> | { ok: true } {
    if (this.amount(signer, validator, chainId) === 0n)
      return reject('UNKNOWN_STAKER', `${signer} has no stake behind ${validator} on ${chainId}`)
    const movable = this.movable(signer, validator, chainId)
    if (amount <= 0n || amount > movable)
      return reject('INSUFFICIENT_STAKE', `${amount} is not in (0, ${movable}], movable on ${chainId}`)
    if (this.entries(signer, validator) >= this.params.maxEntriesPerPair)
      return reject(
        'TOO_MANY_ENTRIES',
        `${signer} has ${this.params.maxEntriesPerPair} entries with ${validator}`,
      )
    return { ok: true }
  }

  /** Applies a move {@link mayMove} allowed: the stake changes pool until `untilHeight`. */
  lend(loan: DelegationLoan): void {
    const { delegator: d, validator: v } = loan
    this.#setDelegation(d, v, loan.fromChainId, this.amount(d, v, loan.fromChainId) - loan.amount)
    this.#setDelegation(d, v, loan.toChainId, this.amount(d, v, loan.toChainId) + loan.amount)
    this.#loans ??= new Map(this.#state.loans)
    this.#loans.set(loan.id, loan)
  }

  /** Brings back every loan with `untilHeight <= height`, in id order; the ended loans. */
  expireLoans(height: bigint): DelegationLoan[] {
    const due = [...this.loans.values()]
      .filter((l) => l.untilHeight <= height)
      .sort((a, b) => cmp(a.id, b.id))
    for (const l of due) {
      this.#loans ??= new Map(this.#state.loans)
      this.#loans.delete(l.id)
      const { delegator: d, validator: v } = l
      const there = this.amount(d, v, l.toChainId)
      // An invariant keeps amount <= there; the guard keeps a bug from making a delegation negative.
      let back = l.amount
      if (back > there) back = there
      this.#setDelegation(d, v, l.toChainId, there - back)
      this.#setDelegation(d, v, l.fromChainId, this.amount(d, v, l.fromChainId) + back)
    }
    return due
  }

  /**
   * Starts epoch `epoch` (the previous one plus one): pays out every unbonding entry that completes by
   * then, in id order. Returns the entries paid.
   */
  beginEpoch(epoch: bigint): UnbondingEntry[] {
    if (epoch !== this.#epoch + 1n) throw new Error(`epoch ${epoch} does not follow ${this.#epoch}`)
    this.#epoch = epoch
    const due = [...this.unbonding.values()]
      .filter((u) => u.completeEpoch <= epoch)
      .sort((a, b) => cmp(a.id, b.id))
    for (const u of due) {
      this.#unbonding ??= new Map(this.#state.unbonding)
      this.#unbonding.delete(u.id)
      this.accounts.credit(u.delegator, u.amount)
    }
    return due
  }

  /**
   * Slashes `validator` for an infraction at `infractionHeight`. At stake: the delegations behind it (their
   * loans with them) and its unbonding entries made from then on (entries made before had left). Each
   * part keeps floor(part × (10000 − slashBps) / 10000). With `stakeAtInfraction` (the validator's power
   * when it misbehaved) the amount due is capped at `slashBps` of it, so stake bonded after the
   * infraction does not raise the slash (Cosmos slashes the power at the infraction): when the cap binds,
   * every part at stake keeps the floor of the same fraction, (at stake − due) / at stake. Returns what
   * was burned.
   */
  slash(validator: Address, slashBps: number, infractionHeight: bigint, stakeAtInfraction?: bigint): bigint {
    const bps = BigInt(Math.min(Math.max(slashBps, 0), 10_000))
    const entries = [...this.unbonding.values()].filter(
      (u) => u.validator === validator && u.height >= infractionHeight,
    )
    const behind = [...this.delegations.values()].filter((e) => e.validator === validator)
    let atStake = 0n
    for (const u of entries) atStake += u.amount
    for (const e of behind) atStake += e.amount
    // What each part keeps, as a fraction num / den of it.
    let num = 10_000n - bps
    let den = 10_000n
    if (stakeAtInfraction !== undefined && atStake > 0n) {
      const due = (stakeAtInfraction * bps) / 10_000n
      if (due * 10_000n < atStake * bps) {
        num = atStake - due
        den = atStake
      }
    }
    let burned = 0n
    for (const u of entries) {
      const k = (u.amount * num) / den
      burned += u.amount - k
      this.#unbonding ??= new Map(this.#state.unbonding)
      this.#unbonding.set(u.id, { ...u, amount: k })
    }
    for (const e of behind) {
      const k = (e.amount * num) / den
      burned += e.amount - k
      this.#setDelegation(e.delegator, e.validator, e.chainId, k)
    }
    for (const l of [...this.loans.values()]) {
      if (l.validator !== validator) continue
      this.#loans ??= new Map(this.#state.loans)
      this.#loans.set(l.id, { ...l, amount: (l.amount * num) / den })
    }
    return burned
  }

  /** Every validator's pools: the sum of the delegations behind it per chain (one pass). */
  pools(): Map<Address, Map<bigint, bigint>> {
    const out = new Map<Address, Map<bigint, bigint>>()
    for (const e of this.delegations.values()) {
      const p = out.get(e.validator) ?? new Map<bigint, bigint>()
      out.set(e.validator, p)
      p.set(e.chainId, (p.get(e.chainId) ?? 0n) + e.amount)
    }
    return out
  }

  /** Every validator's own stake: the sum of its delegations to itself (one pass). */
  selfStakes(): Map<Address, bigint> {
    const out = new Map<Address, bigint>()
    for (const e of this.delegations.values())
      if (e.delegator === e.validator) out.set(e.validator, (out.get(e.validator) ?? 0n) + e.amount)
    return out
  }

  /** Sum of the delegations (bonded) and of the unbonding entries. */
  totals(): { bonded: bigint; unbonding: bigint } {
    let bonded = 0n
    let unbonding = 0n
    for (const e of this.delegations.values()) bonded += e.amount
    for (const u of this.unbonding.values()) unbonding += u.amount
    return { bonded, unbonding }
  }

  /** The delegation part of the state as the ledger leaves it. */
  state(): DelegationState {
    return { epoch: this.#epoch, delegations: this.delegations, unbonding: this.unbonding, loans: this.loans }
  }
}

/** Any check of a Delegate or Undelegate, then its signature (it must recover to the delegator). */
export async function validateDelegationMessage(
  ledger: DelegationLedger,
  s: SignedDelegate | SignedUndelegate,
  recover: RecoverFn = recoverAddress,
): Promise<Verdict<DelegationRejectCode>> {
  const isDelegate = 'delegate' in s
  const v = isDelegate ? ledger.checkDelegate(s) : ledger.checkUndelegate(s)
  if (!v.ok) return v
  const d = isDelegate ? s.delegate : s.undelegate
  return (await checkSignedBy(v.id, s.signature, d.delegator, recover)) ?? v
}

/** `GET /v1/accounts/:address`'s delegation parts, in key and id order, amounts as decimal strings. */
export function delegatorToJson(ledger: DelegationLedger, address: Address) {
  const delegations = [...ledger.delegations.entries()]
    .filter(([, e]) => e.delegator === address)
    .sort(([a], [b]) => cmp(a, b))
    .map(([, e]) => ({ validator: e.validator, chainId: e.chainId.toString(), amount: e.amount.toString() }))
  const unbonding = [...ledger.unbonding.values()]
    .filter((u) => u.delegator === address)
    .sort((a, b) => cmp(a.id, b.id))
    .map((u) => ({
      validator: u.validator,
      chainId: u.chainId.toString(),
      amount: u.amount.toString(),
      untilEpoch: u.completeEpoch.toString(),
    }))
  return { delegations, unbonding }
}
