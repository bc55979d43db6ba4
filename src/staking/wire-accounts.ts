/**
 * Wire codec of the signed account messages (Transfer, Delegate, Undelegate, CreateValidator): one per
 * message, version byte 3, a CBOR map of the kind `k` (each kind's `wireKind`), the signature `sig` as
 * raw bytes and every EIP-712 field under its own name, encoded by its type as wire.ts does: addresses
 * and `bytes` raw, integers as minimal big-endian bytes (no leading zero), `uint16` as a CBOR integer,
 * `uint256[]` as an array of minimal bytes. The field list is the EIP-712 type's (src/codec/eip712.ts),
 * so the wire form cannot drift from what is signed. They ride the `stake` topic (staking/wire.ts) and
 * blocks (consensus/block.ts).
 */
import type { Address, Hex } from 'viem'
import { bytesToHex, bytesToUint, hexToRaw, uintToBytes } from '../codec/bytes.ts'
import { type Codec, cborCodec, shape } from '../codec/cbor.ts'
import { P2PError } from '../errors.ts'
import {
  findBadMessageField,
  kindFields,
  MAX_MESSAGE_BYTES_FIELD,
  MAX_MESSAGE_LIST,
  type MessageKind,
  messageId,
  type Signed,
  signedMessageFromJson,
  signedMessageToJson,
  TRANSFER_KIND,
} from './accounts.ts'
import { DELEGATE_KIND, UNDELEGATE_KIND } from './delegations.ts'
import { type AccountMessage, CREATE_VALIDATOR_KIND } from './validators.ts'

/**
 * Wire version of {@link accountMessageCodec}: 3, so that on the `stake` topic the version byte tells an
 * account message from a stake move or Unjail (version 2, staking/wire.ts).
 */
export const ACCOUNT_MESSAGE_WIRE_VERSION = 3
/** Largest encoded message, version byte included (a CreateValidator with 32 pools of uint256 ids fits). */
export const ACCOUNT_MESSAGE_MAX_BYTES = 1_536

type AnyKind = MessageKind<string, unknown>

/** The kinds by `wireKind`. */
export const ACCOUNT_MESSAGE_KINDS: readonly AnyKind[] = [
  TRANSFER_KIND,
  DELEGATE_KIND,
  UNDELEGATE_KIND,
  CREATE_VALIDATOR_KIND,
] as readonly AnyKind[]

/** The kind of a signed account message. */
export function accountMessageKind(m: AccountMessage): AnyKind {
  const kind = ACCOUNT_MESSAGE_KINDS.find((k) => k.key in m)
  if (kind === undefined) throw new Error('not an account message')
  return kind
}

const UINT_BYTES: Record<string, number> = { uint256: 32, uint64: 8 }

function encodeField(type: string, v: unknown): unknown {
  if (type === 'address' || type === 'bytes') return hexToRaw(v as Hex)
  if (type === 'uint16') return v
  if (type === 'uint256[]') return (v as bigint[]).map(uintToBytes)
  return uintToBytes(v as bigint)
}

function decodeField(type: string, v: unknown, what: string): unknown {
  if (type === 'address') return bytesToHex(v, what, 20)
  if (type === 'bytes') {
    const b = shape.bytes(v, what, MAX_MESSAGE_BYTES_FIELD)
    return `0x${Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex')}`
  }
  if (type === 'uint16') return shape.int(v, what, 0, 0xffff)
  if (type === 'uint256[]')
    return shape.array(v, what, MAX_MESSAGE_LIST).map((x, i) => bytesToUint(x, `${what}[${i}]`, 32))
  const n = UINT_BYTES[type]
  if (n === undefined) throw new Error(`no wire form for ${type}`)
  return bytesToUint(v, what, n)
}

const inner = cborCodec<AccountMessage>({
  version: ACCOUNT_MESSAGE_WIRE_VERSION,
  maxBytes: ACCOUNT_MESSAGE_MAX_BYTES,
  check(v): AccountMessage {
    const o = shape.object(v, 'account message')
    const kind = typeof o['k'] === 'number' ? ACCOUNT_MESSAGE_KINDS[o['k']] : undefined
    if (kind === undefined) throw new P2PError('DECODE', 'account message: unknown kind')
    const fields = kindFields(kind)
    const keys = Object.keys(o)
    if (
      keys.length !== fields.length + 2 ||
      !fields.every((f) => Object.hasOwn(o, f.name)) ||
      !Object.hasOwn(o, 'sig')
    )
      throw new P2PError('DECODE', `${kind.key}: unexpected key set`)
    const m: Record<string, unknown> = {}
    for (const f of fields) m[f.name] = decodeField(f.type, o[f.name], `${kind.key}.${f.name}`)
    return {
      [kind.key]: m,
      signature: bytesToHex(o['sig'], `${kind.key}.signature`, 65),
    } as unknown as AccountMessage
  },
})

/** Signed account messages on the wire. Encoding one with a field out of range throws. */
export const accountMessageCodec: Codec<AccountMessage> = {
  version: inner.version,
  maxBytes: inner.maxBytes,
  encode(m) {
    const kind = accountMessageKind(m)
    const signed = m as unknown as Signed<string, unknown>
    const bad = findBadMessageField(kind, signed)
    if (bad !== undefined) throw new Error(`${kind.key} field ${bad} is out of range`)
    const msg = signed[kind.key] as Record<string, unknown>
    const out: Record<string, unknown> = { k: kind.wireKind }
    for (const f of kindFields(kind)) out[f.name] = encodeField(f.type, msg[f.name])
    out['sig'] = hexToRaw(m.signature)
    return inner.encode(out as unknown as AccountMessage)
  },
  decode: (bytes) => inner.decode(bytes),
}

/** A signed account message in the JSON conventions (`{transfer, signature}` and so on). */
export function accountMessageToJson(m: AccountMessage) {
  return signedMessageToJson(accountMessageKind(m), m as unknown as Signed<string, unknown>)
}

/** Parses the body of the POST route of `kind`. Throws CodecError naming the field. */
export function accountMessageFromJson(kind: AnyKind, body: unknown): AccountMessage {
  return signedMessageFromJson(kind, body) as unknown as AccountMessage
}

/** The message object inside a signed account message (`m.transfer`, `m.delegate`, ...). */
function body(m: AccountMessage): Record<string, unknown> {
  return (m as unknown as Record<string, Record<string, unknown>>)[accountMessageKind(m).key]!
}

/** The address that must have signed an account message (its signer field). */
export function accountMessageSigner(m: AccountMessage): Address {
  const kind = accountMessageKind(m)
  return body(m)[kind.signer as string] as Address
}

/** The nonce of an account message. */
export function accountMessageNonce(m: AccountMessage): bigint {
  return body(m)['nonce'] as bigint
}

/** The id of an account message: the EIP-712 digest its signer signs. */
export function accountMessageId(networkId: string, m: AccountMessage): Hex {
  return messageId(accountMessageKind(m), networkId, body(m))
}

/** True when `b` may follow `a` in a block: (signer, nonce) strictly increasing. */
export function accountMessageOrdered(a: AccountMessage, b: AccountMessage): boolean {
  const sa = accountMessageSigner(a)
  const sb = accountMessageSigner(b)
  return sa < sb || (sa === sb && accountMessageNonce(a) < accountMessageNonce(b))
}

/** Sorts messages into block order: signer, then nonce, then id (so the proposer's choice is deterministic). */
export function sortAccountMessages(networkId: string, ms: Iterable<AccountMessage>): AccountMessage[] {
  const key = (m: AccountMessage) => ({
    m,
    signer: accountMessageSigner(m),
    nonce: accountMessageNonce(m),
    id: accountMessageId(networkId, m),
  })
  const cmp = (a: string | bigint, b: string | bigint) => (a < b ? -1 : a > b ? 1 : 0)
  return [...ms]
    .map(key)
    .sort((x, y) => cmp(x.signer, y.signer) || cmp(x.nonce, y.nonce) || cmp(x.id, y.id))
    .map((x) => x.m)
}
