/**
 * Accounts in the staking token (issue 11, item 1): balances by address, seeded by the genesis `accounts`,
 * changed by signed `Transfer`s and by bonding (delegations.ts, validators.ts). Pure: no I/O besides the
 * optional signature recovery of {@link validateTransfer}. Nothing here is wired into blocks yet.
 *
 * The model (docs/accounts.md):
 * - every signed account message (Transfer, Delegate, Undelegate, CreateValidator) spends one nonce of
 *   its signer's account: the highest nonce used so far is kept and a message needs a strictly greater
 *   one, as stake moves do (moves.ts), so the four types share one nonce space per account;
 * - an account may have at most `maxMessagesPerBlock` signed messages applied in one block (RATE_LIMITED
 *   beyond): transfers pay no fee, so this is what bounds the work one key can make the network do;
 * - a balance never goes below zero, and an account whose balance reaches zero is dropped from the map.
 *
 * Also here, as the lowest of the three ledger modules: the machinery every account message shares
 * (digest, typed data, signing, field checks and JSON forms, all driven by the EIP-712 field list of the
 * type in src/codec/eip712.ts, so that one definition serves the signature, the checks and the codecs).
 */
import type { Address, Hex, LocalAccount, TypedData } from 'viem'
import { hashNetworkTyped, networkDomain, TRANSFER_TYPES } from '../codec/eip712.ts'
import { badField, parseAddress, parseDecimal, parseHex, parseObject } from '../codec/json.ts'
import { recoverAddress } from '../crypto/recover.ts'
import type { RecoverFn } from './moves.ts'

const UINT256_MAX = (1n << 256n) - 1n
const UINT64_MAX = (1n << 64n) - 1n
const UINT16_MAX = 0xffff
const ADDRESS_RE = /^0x[0-9a-f]{40}$/
const SIGNATURE_RE = /^0x[0-9a-f]{130}$/
const BYTES_RE = /^0x(?:[0-9a-f]{2})*$/

/** Longest `bytes` field of an account message (a libp2p peer id is 34 to 39 bytes). */
export const MAX_MESSAGE_BYTES_FIELD = 64
/** Longest `uint256[]` field of an account message (the pools of a validator). */
export const MAX_MESSAGE_LIST = 32

/**
 * One signed account message type: its EIP-712 primary type and `types` constant, the key of the message
 * in its signed object and API body (`{transfer, signature}`), its wire kind, and the field holding the
 * signer's address.
 */
export interface MessageKind<K extends string, M> {
  readonly primaryType: string
  readonly types: TypedData
  readonly key: K
  /** The `k` of its wire form (wire-accounts.ts). */
  readonly wireKind: number
  readonly signer: keyof M & string
}

/** A message with its signer's 65-byte ECDSA signature over its EIP-712 digest. */
export type Signed<K extends string, M> = { readonly [k in K]: M } & { readonly signature: Hex }

/** What every check answers: accepted with the message's id, or refused with a typed code. */
export type Verdict<C extends string> =
  | { readonly ok: true; readonly id: Hex }
  | { readonly ok: false; readonly code: C; readonly message: string }

/** A refusal. */
export function reject<C extends string>(code: C, message: string): { ok: false; code: C; message: string } {
  return { ok: false, code, message }
}

/** The EIP-712 fields of a kind, in order. */
export function kindFields(
  kind: Pick<MessageKind<string, unknown>, 'types' | 'primaryType'>,
): readonly { name: string; type: string }[] {
  const fields = kind.types[kind.primaryType]
  if (fields === undefined) throw new Error(`${kind.primaryType} is not in its types`)
  return fields
}

/** The id of a message: its EIP-712 digest under `networkDomain(networkId)` (what the signer signs). */
export function messageId<K extends string, M>(kind: MessageKind<K, M>, networkId: string, message: M): Hex {
  return hashNetworkTyped(networkId, kind.primaryType as never, kind.types, message as never)
}

/** The complete typed-data definition of a message, for any EIP-712 signer. */
export function messageTypedData<K extends string, M>(
  kind: MessageKind<K, M>,
  networkId: string,
  message: M,
) {
  return { domain: networkDomain(networkId), types: kind.types, primaryType: kind.primaryType, message }
}

/** The signer's address of a message. */
export function messageSigner<K extends string, M>(kind: MessageKind<K, M>, message: M): Address {
  return message[kind.signer] as Address
}

/** Signs a message with `account`, which must be the message's signer field. */
export async function signMessage<K extends string, M>(
  kind: MessageKind<K, M>,
  account: Pick<LocalAccount, 'address' | 'signTypedData'>,
  networkId: string,
  message: M,
): Promise<Signed<K, M>> {
  const signer = messageSigner(kind, message)
  if (signer !== account.address.toLowerCase())
    throw new Error(`${kind.key}.${kind.signer} ${signer} is not the signing account ${account.address}`)
  const typed = messageTypedData(kind, networkId, message) as Parameters<LocalAccount['signTypedData']>[0]
  const signature = (await account.signTypedData(typed)).toLowerCase() as Hex
  return { [kind.key]: message, signature } as Signed<K, M>
}

function badUint(v: unknown, max: bigint): boolean {
  return typeof v !== 'bigint' || v < 0n || v > max
}

/** Whether `v` is out of range for an EIP-712 field type an account message uses. */
function badValue(type: string, v: unknown): boolean {
  switch (type) {
    case 'address':
      return typeof v !== 'string' || !ADDRESS_RE.test(v)
    case 'uint256':
      return badUint(v, UINT256_MAX)
    case 'uint64':
      return badUint(v, UINT64_MAX)
    case 'uint16':
      return typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > UINT16_MAX
    case 'uint256[]':
      return !Array.isArray(v) || v.length > MAX_MESSAGE_LIST || v.some((x) => badUint(x, UINT256_MAX))
    case 'bytes':
      return typeof v !== 'string' || v.length > 2 + 2 * MAX_MESSAGE_BYTES_FIELD || !BYTES_RE.test(v)
    default:
      throw new Error(`no account message has a ${type} field`)
  }
}

/** Which field of a signed message is out of its type's range (or not lowercase hex), or undefined. */
export function findBadMessageField<K extends string, M>(
  kind: MessageKind<K, M>,
  s: Signed<K, M>,
): string | undefined {
  const m = s[kind.key] as Record<string, unknown> | undefined
  if (typeof m !== 'object' || m === null) return kind.key
  for (const f of kindFields(kind)) if (badValue(f.type, m[f.name])) return f.name
  if (typeof s.signature !== 'string' || !SIGNATURE_RE.test(s.signature)) return 'signature'
  return undefined
}

/** `undefined` when `signature` recovers to `signer` from `id`, else the BAD_SIGNATURE refusal. */
export async function checkSignedBy(
  id: Hex,
  signature: Hex,
  signer: Address,
  recover: RecoverFn = recoverAddress,
): Promise<{ ok: false; code: 'BAD_SIGNATURE'; message: string } | undefined> {
  let got: Address
  try {
    got = await recover(id, signature)
  } catch {
    return reject('BAD_SIGNATURE', 'the signature does not recover')
  }
  return got === signer ? undefined : reject('BAD_SIGNATURE', `signed by ${got}, not ${signer}`)
}

/**
 * A signed message in the JSON conventions (the body of its POST route): integers as decimal strings,
 * except `uint16` fields (basis points) as JSON numbers; `bytes` as lowercase hex.
 */
export function signedMessageToJson<K extends string, M>(kind: MessageKind<K, M>, s: Signed<K, M>) {
  const m = s[kind.key] as Record<string, unknown>
  const out: Record<string, unknown> = {}
  for (const f of kindFields(kind)) {
    const v = m[f.name]
    out[f.name] =
      typeof v === 'bigint' ? v.toString() : Array.isArray(v) ? v.map((x: bigint) => x.toString()) : v
  }
  return { [kind.key]: out, signature: s.signature } as { [k in K]: Record<string, unknown> } & {
    signature: Hex
  }
}

/** Parses `{<key>, signature}` in the JSON conventions. Throws CodecError naming the field. */
export function signedMessageFromJson<K extends string, M>(
  kind: MessageKind<K, M>,
  body: unknown,
): Signed<K, M> {
  const o = parseObject(body, '', [kind.key, 'signature'])
  const fields = kindFields(kind)
  const raw = parseObject(
    o[kind.key],
    kind.key,
    fields.map((f) => f.name),
  )
  const m: Record<string, unknown> = {}
  for (const f of fields) {
    const path = `${kind.key}.${f.name}`
    const v = raw[f.name]
    if (f.type === 'address') m[f.name] = parseAddress(v, path)
    else if (f.type === 'uint256') m[f.name] = parseDecimal(v, path)
    else if (f.type === 'uint64') m[f.name] = parseDecimal(v, path, UINT64_MAX)
    else if (f.type === 'bytes') m[f.name] = parseHex(v, path, { maxBytes: MAX_MESSAGE_BYTES_FIELD })
    else if (f.type === 'uint16') {
      if (badValue('uint16', v)) throw badField(path, 'expected an integer in [0, 65535]')
      m[f.name] = v
    } else {
      if (!Array.isArray(v) || v.length > MAX_MESSAGE_LIST)
        throw badField(path, `expected an array of at most ${MAX_MESSAGE_LIST} decimal strings`)
      m[f.name] = v.map((x, i) => parseDecimal(x, `${path}[${i}]`))
    }
  }
  return { [kind.key]: m, signature: parseHex(o.signature, 'signature', { bytes: 65 }) } as Signed<K, M>
}

/** `Transfer(address from,address to,uint256 amount,uint256 nonce)` */
export interface Transfer {
  /** Lowercase; the signer. */
  readonly from: Address
  /** Lowercase. */
  readonly to: Address
  readonly amount: bigint
  readonly nonce: bigint
}

export type SignedTransfer = Signed<'transfer', Transfer>

/** The Transfer message kind. */
export const TRANSFER_KIND: MessageKind<'transfer', Transfer> = {
  primaryType: 'Transfer',
  types: TRANSFER_TYPES,
  key: 'transfer',
  wireKind: 0,
  signer: 'from',
}

/** Signs a Transfer with the sender's account. */
export const signTransfer = (
  account: Pick<LocalAccount, 'address' | 'signTypedData'>,
  networkId: string,
  transfer: Transfer,
): Promise<SignedTransfer> => signMessage(TRANSFER_KIND, account, networkId, transfer)

/** Why a Transfer is refused (the 400 codes of `POST /v1/transfers`). */
export type TransferRejectCode =
  | 'MALFORMED'
  | 'BAD_SIGNATURE'
  | 'NONCE_USED'
  | 'RATE_LIMITED'
  | 'INSUFFICIENT_BALANCE'

/** Codes every account message may be refused with before its own checks. */
export type SenderRejectCode = 'NONCE_USED' | 'RATE_LIMITED'

/** Parameters of accounts. */
export interface AccountParams {
  /** Most signed account messages of one account applied in one block. */
  readonly maxMessagesPerBlock: number
}

/** Defaults of {@link AccountParams}. */
export const DEFAULT_ACCOUNT_PARAMS: AccountParams = { maxMessagesPerBlock: 16 }

/** The account part of a state. */
export interface AccountState {
  readonly networkId: string
  /** Non-zero balances by lowercase address. */
  readonly balances: ReadonlyMap<Address, bigint>
  /** Highest nonce used by each account, over all its signed account messages. */
  readonly accountNonces: ReadonlyMap<Address, bigint>
}

/** The zero address: no transfer goes there (it would take tokens out of every sum unseen). */
const ZERO_ADDRESS = `0x${'0'.repeat(40)}`

/**
 * A working copy of the account part of a state, changed message by message in block order. Reads fall
 * through to the state until the first write copies the map. `beginBlock` starts the per-block message
 * counts over (a ledger made for one block needs no call).
 */
export class AccountLedger {
  readonly networkId: string
  readonly params: AccountParams
  readonly #state: AccountState
  #balances: Map<Address, bigint> | undefined
  #nonces: Map<Address, bigint> | undefined
  /** Messages applied this block, per account. */
  #counts = new Map<Address, number>()
  /** Height of the block being applied. */
  height: bigint

  constructor(state: AccountState, params: AccountParams = DEFAULT_ACCOUNT_PARAMS, height = 0n) {
    this.networkId = state.networkId
    this.params = params
    this.#state = state
    this.height = height
  }

  /** Starts a new block: the per-block message counts start from zero. */
  beginBlock(height: bigint): void {
    this.height = height
    this.#counts = new Map()
  }

  get balances(): ReadonlyMap<Address, bigint> {
    return this.#balances ?? this.#state.balances
  }

  get nonces(): ReadonlyMap<Address, bigint> {
    return this.#nonces ?? this.#state.accountNonces
  }

  balance(address: Address): bigint {
    return this.balances.get(address) ?? 0n
  }

  /** NONCE_USED or RATE_LIMITED for a message of `signer` with `nonce`, or undefined. */
  checkSender(
    signer: Address,
    nonce: bigint,
  ): { ok: false; code: SenderRejectCode; message: string } | undefined {
    const used = this.nonces.get(signer)
    if (used !== undefined && nonce <= used)
      return reject('NONCE_USED', `nonce ${nonce} <= ${used}, the highest used by ${signer}`)
    const n = this.#counts.get(signer) ?? 0
    if (n >= this.params.maxMessagesPerBlock)
      return reject('RATE_LIMITED', `${signer} has ${n} messages in this block, the most allowed`)
    return undefined
  }

  /** Records a message of `signer` applied: its nonce is used, its count in the block grows. */
  useNonce(signer: Address, nonce: bigint): void {
    this.#nonces ??= new Map(this.#state.accountNonces)
    this.#nonces.set(signer, nonce)
    this.#counts.set(signer, (this.#counts.get(signer) ?? 0) + 1)
  }

  /** Takes `amount` from `address`; overdrawing is a bug (every caller checks first). */
  debit(address: Address, amount: bigint): void {
    const left = this.balance(address) - amount
    if (amount < 0n || left < 0n) throw new Error(`debit of ${amount} overdraws ${address}`)
    this.#set(address, left)
  }

  /** Adds `amount` to `address`. */
  credit(address: Address, amount: bigint): void {
    if (amount < 0n) throw new Error(`negative credit to ${address}`)
    this.#set(address, this.balance(address) + amount)
  }

  #set(address: Address, balance: bigint): void {
    this.#balances ??= new Map(this.#state.balances)
    if (balance === 0n) this.#balances.delete(address)
    else this.#balances.set(address, balance)
  }

  /** Every check of a Transfer but its signature, against the ledger as it stands. */
  checkTransfer(s: SignedTransfer): Verdict<TransferRejectCode> {
    const bad = findBadMessageField(TRANSFER_KIND, s)
    if (bad !== undefined) return reject('MALFORMED', `${bad} is out of range or not lowercase hex`)
    const t = s.transfer
    if (t.amount === 0n) return reject('MALFORMED', 'amount is 0')
    if (t.from === t.to) return reject('MALFORMED', 'from equals to')
    if (t.to === ZERO_ADDRESS) return reject('MALFORMED', 'to is the zero address')
    const sender = this.checkSender(t.from, t.nonce)
    if (sender !== undefined) return sender
    const balance = this.balance(t.from)
    if (t.amount > balance)
      return reject('INSUFFICIENT_BALANCE', `${t.amount} > ${balance}, the balance of ${t.from}`)
    return { ok: true, id: messageId(TRANSFER_KIND, this.networkId, t) }
  }

  /** Applies a Transfer that {@link checkTransfer} accepted. */
  applyTransfer(s: SignedTransfer): void {
    const t = s.transfer
    this.debit(t.from, t.amount)
    this.credit(t.to, t.amount)
    this.useNonce(t.from, t.nonce)
  }

  /** Sum of every balance. */
  total(): bigint {
    let t = 0n
    for (const b of this.balances.values()) t += b
    return t
  }

  /** The account part of the state as the ledger leaves it. */
  state(): AccountState {
    return { networkId: this.networkId, balances: this.balances, accountNonces: this.nonces }
  }
}

/** {@link AccountLedger.checkTransfer}, then the signature (it must recover to `from`). */
export async function validateTransfer(
  ledger: AccountLedger,
  s: SignedTransfer,
  recover: RecoverFn = recoverAddress,
): Promise<Verdict<TransferRejectCode>> {
  const v = ledger.checkTransfer(s)
  if (!v.ok) return v
  return (await checkSignedBy(v.id, s.signature, s.transfer.from, recover)) ?? v
}

/** The genesis `accounts` as balances; a repeated address adds up, a zero balance is left out. */
export function genesisBalances(
  accounts: readonly { readonly address: string; readonly balance: bigint }[],
): Map<Address, bigint> {
  const out = new Map<Address, bigint>()
  for (const a of accounts) {
    if (a.balance < 0n) throw new Error(`negative genesis balance of ${a.address}`)
    const address = a.address.toLowerCase() as Address
    const b = (out.get(address) ?? 0n) + a.balance
    if (b > 0n) out.set(address, b)
  }
  return new Map([...out].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)))
}

/** `GET /v1/accounts/:address`'s balance part: `{address, balance}` with the balance a decimal string. */
export function accountToJson(ledger: Pick<AccountLedger, 'balance'>, address: Address) {
  return { address, balance: ledger.balance(address).toString() }
}
