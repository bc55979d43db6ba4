/**
 * Validators who join and leave (issue 11, item 2), and the book that holds accounts, delegations and
 * validator records together. Pure: no I/O besides the optional signature recovery of
 * {@link validateAccountMessage}. Not wired into blocks, state, gossip or the API.
 *
 * The model (docs/accounts.md):
 * - a signed `CreateValidator` is the validator record: it binds the signing address to a libp2p peer id
 *   (the bytes of its multihash; Ed25519, the node identity key), names the pools (chain ids, strictly
 *   increasing, each a rollup of the network), the commission (<= 10000 bps) and the self-stake, taken
 *   from the account (at least `minSelfStake`) and spread evenly over the pools (the remainder to the
 *   lowest chain id, as genesis does), as the validator's delegation to itself;
 * - the validator set changes only at epoch boundaries ({@link StakeBook.epochBoundary}; Cosmos
 *   x/staking's end-block): a validator created in epoch e is a candidate from then, and the boundary
 *   that starts e + 1 is the first that may put it in the set. At each boundary the set is the
 *   `maxValidators` eligible validators of most stake (ties: the lower address), eligible meaning not
 *   jailed and a self-stake of at least `minSelfStake`; the rest are left out but stay bonded;
 * - a validator leaves by undelegating its own stake (delegations.ts): below `minSelfStake` it drops out
 *   at the next boundary, and the stake unbonds over `unbondingEpochs`, slashable all the while.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { Address, Hex, LocalAccount } from 'viem'
import { CREATE_VALIDATOR_TYPES } from '../codec/eip712.ts'
import { recoverAddress } from '../crypto/recover.ts'
import {
  AccountLedger,
  type AccountParams,
  type AccountState,
  checkSignedBy,
  DEFAULT_ACCOUNT_PARAMS,
  findBadMessageField,
  genesisBalances,
  type MessageKind,
  messageId,
  reject,
  type SenderRejectCode,
  type Signed,
  type SignedTransfer,
  signMessage,
  type TransferRejectCode,
  type Verdict,
} from './accounts.ts'
import {
  DEFAULT_DELEGATION_PARAMS,
  DelegationLedger,
  type DelegationParams,
  type DelegationRejectCode,
  type DelegationState,
  delegationKey,
  type SignedDelegate,
  type SignedUndelegate,
} from './delegations.ts'
import type { RecoverFn } from './moves.ts'

/**
 * `CreateValidator(address validator,bytes peerId,uint256[] chainIds,uint256 selfStake,uint16 commissionBps,
 * uint256 nonce)`
 */
export interface CreateValidator {
  /** Lowercase; the signer. */
  readonly validator: Address
  /** The peer id's multihash bytes (`peerId.toMultihash().bytes`), lowercase hex. */
  readonly peerId: Hex
  /** The pools, strictly increasing. */
  readonly chainIds: readonly bigint[]
  readonly selfStake: bigint
  readonly commissionBps: number
  readonly nonce: bigint
}

export type SignedCreateValidator = Signed<'createValidator', CreateValidator>

/** The CreateValidator message kind. */
export const CREATE_VALIDATOR_KIND: MessageKind<'createValidator', CreateValidator> = {
  primaryType: 'CreateValidator',
  types: CREATE_VALIDATOR_TYPES,
  key: 'createValidator',
  wireKind: 3,
  signer: 'validator',
}

/** Signs a CreateValidator with the validator's account. */
export const signCreateValidator = (
  a: Pick<LocalAccount, 'address' | 'signTypedData'>,
  networkId: string,
  c: CreateValidator,
): Promise<SignedCreateValidator> => signMessage(CREATE_VALIDATOR_KIND, a, networkId, c)

/** Why a CreateValidator is refused (the 400 codes of `POST /v1/validators`). */
export type CreateValidatorRejectCode =
  | 'MALFORMED'
  | 'BAD_SIGNATURE'
  | 'BAD_PEER_ID'
  | 'ALREADY_VALIDATOR'
  | 'PEER_ID_TAKEN'
  | 'BELOW_MIN_SELF_STAKE'
  | SenderRejectCode
  | 'INSUFFICIENT_BALANCE'

/** A validator's record. */
export interface ValidatorRecord {
  readonly address: Address
  /** The libp2p peer id, in its string form. */
  readonly peerId: string
  readonly chainIds: readonly bigint[]
  readonly commissionBps: number
  /** Epoch it was created in (0 for the genesis ones). */
  readonly createdEpoch: bigint
  readonly jailed: boolean
  /**
   * The least self-stake it must keep to stay eligible: what it was admitted at (lower than the book's
   * `minSelfStake` when it joined pools whose concentration alarm was raised); absent: `minSelfStake`.
   */
  readonly minSelfStake?: bigint
}

/** A member of the validator set, with the power it has for the epoch. */
export interface SetMember {
  readonly address: Address
  readonly power: bigint
}

/** Every parameter of the book. */
export interface StakeParams extends AccountParams, DelegationParams {
  /** Least self-stake to create a validator and to stay eligible for the set. */
  readonly minSelfStake: bigint
  /** Most validators in the set. */
  readonly maxValidators: number
}

/** The state the book works on. */
export interface StakeState extends AccountState, DelegationState {
  /** Chain ids of the network's rollups. */
  readonly chainIds: readonly bigint[]
  readonly validators: ReadonlyMap<Address, ValidatorRecord>
  /** The set of the epoch in progress, power descending then address. */
  readonly active: readonly SetMember[]
}

/** The signed messages of accounts. */
export type AccountMessage = SignedTransfer | SignedDelegate | SignedUndelegate | SignedCreateValidator

/** Any code an account message may be refused with. */
export type AccountMessageRejectCode = TransferRejectCode | DelegationRejectCode | CreateValidatorRejectCode

function cmp(a: string | bigint, b: string | bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * The peer id of its multihash bytes (hex), as a string, when they are the canonical bytes of an Ed25519
 * libp2p peer id; else undefined.
 */
export function parsePeerIdBytes(bytes: Hex): string | undefined {
  // peerIdFromString takes a custom multibase decoder for strings that are not base58btc or a CID:
  // 'f' (base16) + the hex, so no multiformats import is needed for the bytes.
  const decoder = { decode: (s: string) => new Uint8Array(Buffer.from(s.slice(1), 'hex')) }
  try {
    const id = peerIdFromString(`f${bytes.slice(2)}`, decoder as Parameters<typeof peerIdFromString>[1])
    if (id.type !== 'Ed25519') return undefined
    if (Buffer.from(id.toMultihash().bytes).toString('hex') !== bytes.slice(2)) return undefined
    return id.toString()
  } catch {
    return undefined
  }
}

/** The multihash bytes of a peer id string (what a CreateValidator carries). */
export function peerIdBytes(peerId: string): Hex {
  return `0x${Buffer.from(peerIdFromString(peerId).toMultihash().bytes).toString('hex')}`
}

/** `stake` over `chainIds` (sorted) evenly, the remainder to the first (genesis's rule). */
export function spreadStake(stake: bigint, chainIds: readonly bigint[]): Map<bigint, bigint> {
  const n = BigInt(chainIds.length)
  const share = stake / n
  const rem = stake % n
  return new Map(chainIds.map((c, i) => [c, share + (i === 0 ? rem : 0n)]))
}

/**
 * The validator set: the `maxValidators` eligible validators of most stake, power descending, ties by
 * the lower address. Eligible: not jailed, self-stake >= `minSelfStake`, power > 0.
 */
export function selectValidatorSet(
  validators: Iterable<ValidatorRecord>,
  pools: ReadonlyMap<Address, ReadonlyMap<bigint, bigint>>,
  selfStake: (address: Address) => bigint,
  params: Pick<StakeParams, 'minSelfStake' | 'maxValidators'>,
): SetMember[] {
  const candidates: SetMember[] = []
  for (const v of validators) {
    if (v.jailed || selfStake(v.address) < (v.minSelfStake ?? params.minSelfStake)) continue
    let power = 0n
    for (const s of pools.get(v.address)?.values() ?? []) power += s
    if (power > 0n) candidates.push({ address: v.address, power })
  }
  candidates.sort((a, b) => cmp(b.power, a.power) || cmp(a.address, b.address))
  return candidates.slice(0, params.maxValidators)
}

/**
 * Accounts, delegations and validator records as one working copy, changed message by message in block
 * order, with epoch boundaries in between. `beginBlock(height)` before each block's messages.
 */
export class StakeBook {
  readonly params: StakeParams
  readonly accounts: AccountLedger
  readonly delegations: DelegationLedger
  readonly #state: StakeState
  readonly #chains: ReadonlySet<bigint>
  #validators: Map<Address, ValidatorRecord> | undefined
  #peerIds: Set<string> | undefined
  #active: readonly SetMember[]
  /** The least self-stake to join the given pools (lowered for alarmed pools by the caller's rule). */
  readonly minSelfStakeFor: (chainIds: readonly bigint[]) => bigint

  constructor(
    state: StakeState,
    params: StakeParams,
    height = 0n,
    minSelfStakeFor: (chainIds: readonly bigint[]) => bigint = () => params.minSelfStake,
  ) {
    this.params = params
    this.minSelfStakeFor = minSelfStakeFor
    this.#state = state
    this.#chains = new Set(state.chainIds)
    this.#active = state.active
    this.accounts = new AccountLedger(state, params, height)
    this.delegations = new DelegationLedger(state, params, this.accounts, (a) => this.validators.get(a))
  }

  get validators(): ReadonlyMap<Address, ValidatorRecord> {
    return this.#validators ?? this.#state.validators
  }

  /** The set of the epoch in progress. */
  get active(): readonly SetMember[] {
    return this.#active
  }

  beginBlock(height: bigint): void {
    this.accounts.beginBlock(height)
  }

  /** A validator's own stake: its delegations to itself, in every pool (lent ones too). */
  selfStake(address: Address): bigint {
    return this.delegations.selfStakes().get(address) ?? 0n
  }

  /** Every check of a CreateValidator but its signature. */
  checkCreateValidator(s: SignedCreateValidator): Verdict<CreateValidatorRejectCode> {
    const bad = findBadMessageField(CREATE_VALIDATOR_KIND, s)
    if (bad !== undefined) return reject('MALFORMED', `${bad} is out of range or not lowercase hex`)
    const c = s.createValidator
    if (c.chainIds.length === 0) return reject('MALFORMED', 'chainIds is empty')
    for (let i = 0; i < c.chainIds.length; i++) {
      const id = c.chainIds[i]!
      if (i > 0 && id <= c.chainIds[i - 1]!)
        return reject('MALFORMED', 'chainIds are not strictly increasing')
      if (!this.#chains.has(id)) return reject('MALFORMED', `unknown chain ${id}`)
    }
    if (c.commissionBps > 10_000) return reject('MALFORMED', `commissionBps ${c.commissionBps} > 10000`)
    const peerId = parsePeerIdBytes(c.peerId)
    if (peerId === undefined)
      return reject('BAD_PEER_ID', 'peerId is not the multihash of an Ed25519 libp2p peer id')
    if (this.validators.has(c.validator)) return reject('ALREADY_VALIDATOR', `${c.validator} is a validator`)
    if (this.#takenPeerIds().has(peerId)) return reject('PEER_ID_TAKEN', `${peerId} is another validator's`)
    const least = this.minSelfStakeFor(c.chainIds)
    if (c.selfStake < least)
      return reject(
        'BELOW_MIN_SELF_STAKE',
        `${c.selfStake} < ${least}, the least self-stake to join these pools`,
      )
    const sender = this.accounts.checkSender(c.validator, c.nonce)
    if (sender !== undefined) return sender
    const balance = this.accounts.balance(c.validator)
    if (c.selfStake > balance)
      return reject('INSUFFICIENT_BALANCE', `${c.selfStake} > ${balance}, the balance of ${c.validator}`)
    return { ok: true, id: messageId(CREATE_VALIDATOR_KIND, this.accounts.networkId, c) }
  }

  #takenPeerIds(): Set<string> {
    this.#peerIds ??= new Set([...this.validators.values()].map((v) => v.peerId))
    return this.#peerIds
  }

  /** Applies a CreateValidator that {@link checkCreateValidator} accepted. */
  applyCreateValidator(s: SignedCreateValidator): ValidatorRecord {
    const c = s.createValidator
    const record: ValidatorRecord = {
      address: c.validator,
      peerId: parsePeerIdBytes(c.peerId)!,
      chainIds: [...c.chainIds],
      commissionBps: c.commissionBps,
      createdEpoch: this.delegations.epoch,
      jailed: false,
      ...((m) => (m < this.params.minSelfStake ? { minSelfStake: m } : {}))(this.minSelfStakeFor(c.chainIds)),
    }
    this.#validators ??= new Map(this.#state.validators)
    this.#validators.set(c.validator, record)
    this.#takenPeerIds().add(record.peerId)
    for (const [chainId, stake] of spreadStake(c.selfStake, c.chainIds))
      if (stake > 0n) this.delegations.bond(c.validator, c.validator, chainId, stake)
    this.accounts.useNonce(c.validator, c.nonce)
    return record
  }

  /** Every check of any account message but its signature. */
  check(m: AccountMessage): Verdict<AccountMessageRejectCode> {
    if ('transfer' in m) return this.accounts.checkTransfer(m)
    if ('delegate' in m) return this.delegations.checkDelegate(m)
    if ('undelegate' in m) return this.delegations.checkUndelegate(m)
    return this.checkCreateValidator(m)
  }

  /** Applies an account message {@link check} accepted. */
  apply(m: AccountMessage): void {
    if ('transfer' in m) this.accounts.applyTransfer(m)
    else if ('delegate' in m) this.delegations.applyDelegate(m)
    else if ('undelegate' in m) this.delegations.applyUndelegate(m)
    else this.applyCreateValidator(m)
  }

  /** Checks then applies; the verdict. */
  submit(m: AccountMessage): Verdict<AccountMessageRejectCode> {
    const v = this.check(m)
    if (v.ok) this.apply(m)
    return v
  }

  /** Jails or frees a validator (the jailing rules decide; a jailed one is left out at the next boundary). */
  setJailed(address: Address, jailed: boolean): void {
    const v = this.validators.get(address)
    if (v === undefined) return
    this.#validators ??= new Map(this.#state.validators)
    this.#validators.set(address, { ...v, jailed })
  }

  /**
   * The boundary after the last block of the epoch in progress: the next epoch starts, the unbonding
   * entries due by then pay out, and the validator set is chosen again on the stake as it stands.
   */
  epochBoundary(): { epoch: bigint; active: readonly SetMember[]; paid: bigint } {
    const epoch = this.delegations.epoch + 1n
    let paid = 0n
    for (const u of this.delegations.beginEpoch(epoch)) paid += u.amount
    this.#active = this.#select()
    return { epoch, active: this.#active, paid }
  }

  /** Chooses the set again now (genesis only: otherwise only {@link epochBoundary} does). */
  chooseSet(): void {
    this.#active = this.#select()
  }

  /** The set {@link selectValidatorSet} picks on the stake as it stands. */
  #select(): SetMember[] {
    const self = this.delegations.selfStakes()
    return selectValidatorSet(
      this.validators.values(),
      this.delegations.pools(),
      (a) => self.get(a) ?? 0n,
      this.params,
    )
  }

  /** Sum of the balances, the bonded stake and the unbonding entries: what only slashing lowers. */
  totalTokens(): bigint {
    const { bonded, unbonding } = this.delegations.totals()
    return this.accounts.total() + bonded + unbonding
  }

  /** The state as the book leaves it. */
  state(): StakeState {
    return {
      ...this.accounts.state(),
      ...this.delegations.state(),
      chainIds: this.#state.chainIds,
      validators: this.validators,
      active: this.#active,
    }
  }
}

/** Any check of an account message, then its signature (it must recover to the message's signer). */
export async function validateAccountMessage(
  book: StakeBook,
  m: AccountMessage,
  recover: RecoverFn = recoverAddress,
): Promise<Verdict<AccountMessageRejectCode>> {
  const v = book.check(m)
  if (!v.ok) return v
  const signer =
    'transfer' in m
      ? m.transfer.from
      : 'delegate' in m
        ? m.delegate.delegator
        : 'undelegate' in m
          ? m.undelegate.delegator
          : m.createValidator.validator
  return (await checkSignedBy(v.id, m.signature, signer, recover)) ?? v
}

/** What the book needs of a genesis (the node's genesis fits, with `accounts` as the issue adds it). */
export interface StakeGenesis {
  readonly networkId: string
  readonly rollups: readonly { readonly chainId: number | bigint }[]
  readonly validators: readonly {
    readonly address: string
    readonly peerId: string
    readonly stake: bigint
    readonly pools: readonly (number | bigint)[]
  }[]
  readonly delegations?: readonly {
    readonly delegator: string
    readonly validator: string
    readonly amount: bigint
    readonly chainId: number | bigint
  }[]
  readonly accounts?: readonly { readonly address: string; readonly balance: bigint }[]
}

/** Defaults of {@link StakeParams}: `minSelfStake` is the smallest genesis validator's stake. */
export function defaultStakeParams(g: Pick<StakeGenesis, 'validators'>): StakeParams {
  let min: bigint | undefined
  for (const v of g.validators) if (min === undefined || v.stake < min) min = v.stake
  return {
    ...DEFAULT_ACCOUNT_PARAMS,
    ...DEFAULT_DELEGATION_PARAMS,
    minSelfStake: min ?? 1n,
    maxValidators: 100,
  }
}

/**
 * The state at genesis (epoch 0): balances from `accounts`, each validator's stake as its delegation to
 * itself spread over its pools, the genesis delegations, and the set chosen on that stake.
 */
export function genesisStakeState(g: StakeGenesis, params: StakeParams): StakeState {
  const validators = new Map<Address, ValidatorRecord>()
  const delegations = new Map<
    string,
    { delegator: Address; validator: Address; chainId: bigint; amount: bigint }
  >()
  const add = (delegator: Address, validator: Address, chainId: bigint, amount: bigint) => {
    if (amount === 0n) return
    const key = delegationKey(delegator, validator, chainId)
    delegations.set(key, {
      delegator,
      validator,
      chainId,
      amount: (delegations.get(key)?.amount ?? 0n) + amount,
    })
  }
  for (const v of [...g.validators].sort((a, b) => cmp(a.address.toLowerCase(), b.address.toLowerCase()))) {
    const address = v.address.toLowerCase() as Address
    const chainIds = [...new Set(v.pools.map((c) => BigInt(c)))].sort(cmp)
    validators.set(address, {
      address,
      peerId: v.peerId,
      chainIds,
      commissionBps: 0,
      createdEpoch: 0n,
      jailed: false,
    })
    for (const [c, s] of spreadStake(v.stake, chainIds)) add(address, address, c, s)
  }
  for (const d of g.delegations ?? [])
    add(
      d.delegator.toLowerCase() as Address,
      d.validator.toLowerCase() as Address,
      BigInt(d.chainId),
      d.amount,
    )
  const base: StakeState = {
    networkId: g.networkId,
    balances: genesisBalances(g.accounts ?? []),
    accountNonces: new Map(),
    epoch: 0n,
    delegations,
    unbonding: new Map(),
    loans: new Map(),
    chainIds: [...g.rollups].map((r) => BigInt(r.chainId)).sort(cmp),
    validators,
    active: [],
  }
  const book = new StakeBook(base, params)
  book.chooseSet()
  return { ...base, active: book.active }
}
