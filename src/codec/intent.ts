/**
 * Intents: ERC-7683 `GaslessCrossChainOrder`s signed with EIP-712 (INTERFACES.md, "Intents").
 * Typed form (bigint uint256, number uint32, lowercase hex), JSON form, the `MurmurOrder` payload,
 * the intent id, and the binary wire codec. Pure: no I/O.
 */

import {
  type Address,
  decodeAbiParameters,
  encodeAbiParameters,
  type Hex,
  keccak256,
  type LocalAccount,
  stringToBytes,
} from 'viem'
import { keccak256Bytes } from '../crypto/keccak.ts'
import { GASLESS_ORDER_PRIMARY_TYPE, GASLESS_ORDER_TYPES, orderDomain } from './eip712.ts'
import {
  badField,
  CodecError,
  join,
  parseAddress,
  parseDecimal,
  parseHex,
  parseObject,
  parseUint32,
  toDecimal,
  UINT32_MAX,
  UINT256_MAX,
} from './json.ts'

export { CodecError, type CodecErrorCode } from './json.ts'

/** An ERC-7683 gasless order in its typed form. Addresses and hex are lowercase. */
export interface GaslessCrossChainOrder {
  originSettler: Address
  user: Address
  nonce: bigint
  originChainId: bigint
  /** uint32 unix seconds. */
  openDeadline: number
  /** uint32 unix seconds. */
  fillDeadline: number
  orderDataType: Hex
  orderData: Hex
}

/** JSON form of an order: uint256 as decimal strings, uint32 as numbers, lowercase 0x hex. */
export interface GaslessCrossChainOrderJson {
  originSettler: string
  user: string
  nonce: string
  originChainId: string
  openDeadline: number
  fillDeadline: number
  orderDataType: string
  orderData: string
}

/**
 * An order with its 65-byte ECDSA signature (other lengths reserved for ERC-1271/6492), or with the empty
 * signature `0x` when its user opened it on chain herself (`open`): then the origin settler's `Open` event
 * and `orderStatus` prove it, and its nonce has {@link ONCHAIN_NONCE_BIT} set (docs/decisions.md,
 * "Orders opened on chain").
 */
export interface SignedIntent {
  order: GaslessCrossChainOrder
  signature: Hex
}

/**
 * Bit 255 of the nonce: set on every order a settler's `open` builds (`2^255 | counter`), and the only
 * orders that may travel unsigned.
 */
export const ONCHAIN_NONCE_BIT = 1n << 255n

/** The signature of an order opened on chain: none. */
export const NO_SIGNATURE: Hex = '0x'

/** True for an intent carried without signature (an order its user opened on chain). */
export function isOnchainIntent(intent: SignedIntent): boolean {
  return intent.signature === NO_SIGNATURE
}

/** True when `nonce` is in the range a settler's `open` uses (bit 255 set). */
export function isOnchainNonce(nonce: bigint): boolean {
  return (nonce & ONCHAIN_NONCE_BIT) !== 0n
}

/** JSON form of a signed intent: the body of `POST /v1/intents`. */
export interface SignedIntentJson {
  order: GaslessCrossChainOrderJson
  signature: string
}

/** The Murmur payload carried in `orderData`. Token 0x0 is the chain's native token. */
export interface MurmurOrderData {
  inputToken: Address
  inputAmount: bigint
  outputToken: Address
  outputAmount: bigint
  recipient: Address
  /** Empty means any rollup of the network. */
  destinationChainIds: readonly bigint[]
}

/** The EIP-712 type string of the payload. */
export const MURMUR_ORDER_TYPE =
  'MurmurOrder(address inputToken,uint256 inputAmount,address outputToken,uint256 outputAmount,address recipient,uint256[] destinationChainIds)'
/** `orderDataType` of every Murmur order: keccak256 of {@link MURMUR_ORDER_TYPE}. */
export const MURMUR_ORDER_TYPEHASH: Hex = keccak256(stringToBytes(MURMUR_ORDER_TYPE))

/** Largest encoded order accepted (INTERFACES.md: "at most 4 KiB"). */
export const MAX_ORDER_BYTES = 4096
/** Most intents one batch message may carry. */
export const MAX_INTENT_BATCH_COUNT = 1024
/** Version byte of the signed-intent and batch wire formats. */
export const INTENT_WIRE_VERSION = 1

/** The zero address: the native token, or no settler contract. */
export const ZERO_ADDRESS: Address = '0x0000000000000000000000000000000000000000'

const MURMUR_ORDER_ABI = [
  {
    type: 'tuple',
    components: [
      { name: 'inputToken', type: 'address' },
      { name: 'inputAmount', type: 'uint256' },
      { name: 'outputToken', type: 'address' },
      { name: 'outputAmount', type: 'uint256' },
      { name: 'recipient', type: 'address' },
      { name: 'destinationChainIds', type: 'uint256[]' },
    ],
  },
] as const

const ADDRESS_LOWER_RE = /^0x[0-9a-f]{40}$/
const BYTES32_LOWER_RE = /^0x[0-9a-f]{64}$/
const HEX_LOWER_RE = /^0x(?:[0-9a-f]{2})*$/

function isUint256(x: unknown): x is bigint {
  return typeof x === 'bigint' && x >= 0n && x <= UINT256_MAX
}
function isUint32(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= UINT32_MAX
}

/**
 * Name of the first field of a typed order that is out of range or not canonical lowercase hex,
 * or undefined when the order is well formed. Says nothing about deadlines, signature or payload.
 */
export function findBadOrderField(order: GaslessCrossChainOrder): keyof GaslessCrossChainOrder | undefined {
  if (typeof order.originSettler !== 'string' || !ADDRESS_LOWER_RE.test(order.originSettler)) {
    return 'originSettler'
  }
  if (typeof order.user !== 'string' || !ADDRESS_LOWER_RE.test(order.user)) return 'user'
  if (!isUint256(order.nonce)) return 'nonce'
  if (!isUint256(order.originChainId)) return 'originChainId'
  if (!isUint32(order.openDeadline)) return 'openDeadline'
  if (!isUint32(order.fillDeadline)) return 'fillDeadline'
  if (typeof order.orderDataType !== 'string' || !BYTES32_LOWER_RE.test(order.orderDataType)) {
    return 'orderDataType'
  }
  if (typeof order.orderData !== 'string' || !HEX_LOWER_RE.test(order.orderData)) return 'orderData'
  return undefined
}

function assertOrder(order: GaslessCrossChainOrder): void {
  const bad = findBadOrderField(order)
  if (bad !== undefined) throw badField(bad, 'invalid value')
}

/**
 * Size in bytes of `abi.encode(order)` (the order as one dynamic tuple), the measure of the 4 KiB rule:
 * the tuple offset, eight head words, the bytes length word, and `orderData` padded to whole words.
 */
export function encodedOrderSize(order: GaslessCrossChainOrder): number {
  const dataBytes = (order.orderData.length - 2) / 2
  return 10 * 32 + Math.ceil(dataBytes / 32) * 32
}

/** ABI encoding of the `MurmurOrder` tuple (`abi.encode(order)` in Solidity). */
export function encodeOrderData(data: MurmurOrderData): Hex {
  const check = (field: keyof MurmurOrderData, ok: boolean) => {
    if (!ok) throw badField(join('orderData', field), 'invalid value')
  }
  check('inputToken', ADDRESS_LOWER_RE.test(data.inputToken))
  check('inputAmount', isUint256(data.inputAmount))
  check('outputToken', ADDRESS_LOWER_RE.test(data.outputToken))
  check('outputAmount', isUint256(data.outputAmount))
  check('recipient', ADDRESS_LOWER_RE.test(data.recipient))
  check(
    'destinationChainIds',
    Array.isArray(data.destinationChainIds) && data.destinationChainIds.every(isUint256),
  )
  return encodeAbiParameters(MURMUR_ORDER_ABI, [data])
}

/**
 * Decodes `orderData`. Only the canonical encoding is accepted (it must re-encode to the same bytes),
 * so one payload has one byte form. Throws CodecError BAD_ORDER_DATA.
 */
export function decodeOrderData(orderData: Hex): MurmurOrderData {
  const bad = (why: string, cause?: unknown) =>
    new CodecError('BAD_ORDER_DATA', `orderData: ${why}`, 'orderData', { cause })
  if (typeof orderData !== 'string' || !HEX_LOWER_RE.test(orderData)) throw bad('not lowercase hex')
  const len = (orderData.length - 2) / 2
  // Canonical size is offset + 5 words + array length + one word per chain id; checking it first also
  // bounds what the ABI decoder may try to read.
  if (len < 8 * 32 || len % 32 !== 0) throw bad('wrong length')
  // Hand-written for the one fixed layout (viem's generic decoder plus a re-encode cost ~40 us):
  //   word 0: offset of the tuple = 0x20
  //   tuple:  inputToken, inputAmount, outputToken, outputAmount, recipient, offset of the array = 0xc0
  //   array:  length L, then L words.
  // Canonical means exactly that: fixed offsets, zero address padding, and 256 + 32 * L bytes.
  const b = Buffer.from(orderData.slice(2), 'hex')
  const word = (i: number) => b.subarray(i * 32, i * 32 + 32)
  const small = (i: number): number | undefined => {
    const w = word(i)
    for (let k = 0; k < 28; k++) if (w[k] !== 0) return undefined
    return w.readUInt32BE(28)
  }
  const address = (i: number, field: string): Address => {
    const w = word(i)
    for (let k = 0; k < 12; k++) if (w[k] !== 0) throw bad(`${field}: not canonically encoded`)
    return `0x${w.subarray(12).toString('hex')}` as Address
  }
  const uint = (i: number): bigint => readUint256(b, i * 32)
  if (small(0) !== 0x20) throw bad('not canonically encoded (tuple offset)')
  if (small(6) !== 0xc0) throw bad('not canonically encoded (array offset)')
  const count = small(7)
  if (count === undefined || len !== 256 + 32 * count) throw bad('not canonically encoded (array length)')
  const destinationChainIds: bigint[] = []
  for (let i = 0; i < count; i++) destinationChainIds.push(uint(8 + i))
  const decoded: MurmurOrderData = {
    inputToken: address(1, 'inputToken'),
    inputAmount: uint(2),
    outputToken: address(3, 'outputToken'),
    outputAmount: uint(4),
    recipient: address(5, 'recipient'),
    destinationChainIds,
  }
  return decoded
}

/** Parses the JSON form strictly: exact key set, every field checked; errors name the field. */
export function orderFromJson(json: unknown, field = 'order'): GaslessCrossChainOrder {
  const o = parseObject(json, field, ORDER_KEYS)
  return {
    originSettler: parseAddress(o.originSettler, join(field, 'originSettler')),
    user: parseAddress(o.user, join(field, 'user')),
    nonce: parseDecimal(o.nonce, join(field, 'nonce')),
    originChainId: parseDecimal(o.originChainId, join(field, 'originChainId')),
    openDeadline: parseUint32(o.openDeadline, join(field, 'openDeadline')),
    fillDeadline: parseUint32(o.fillDeadline, join(field, 'fillDeadline')),
    orderDataType: parseHex(o.orderDataType, join(field, 'orderDataType'), { bytes: 32 }),
    orderData: parseHex(o.orderData, join(field, 'orderData'), { maxBytes: MAX_ORDER_BYTES }),
  }
}

const ORDER_KEYS = [
  'originSettler',
  'user',
  'nonce',
  'originChainId',
  'openDeadline',
  'fillDeadline',
  'orderDataType',
  'orderData',
] as const satisfies readonly (keyof GaslessCrossChainOrder)[]

/** The JSON form of a typed order. Throws CodecError BAD_FIELD if the order is not well formed. */
export function orderToJson(order: GaslessCrossChainOrder): GaslessCrossChainOrderJson {
  assertOrder(order)
  return {
    originSettler: order.originSettler,
    user: order.user,
    nonce: toDecimal(order.nonce),
    originChainId: toDecimal(order.originChainId),
    openDeadline: order.openDeadline,
    fillDeadline: order.fillDeadline,
    orderDataType: order.orderDataType,
    orderData: order.orderData,
  }
}

/**
 * Parses `{order, signature}`. The signature must be lowercase hex of at most 4 KiB; its length is
 * judged by validation (65 bytes for ECDSA). It may be empty only for an order opened on chain (nonce with
 * {@link ONCHAIN_NONCE_BIT}); otherwise CodecError UNSIGNED.
 */
export function signedIntentFromJson(json: unknown): SignedIntent {
  const body = parseObject(json, '', ['order', 'signature'] as const)
  const order = orderFromJson(body.order, 'order')
  const signature = parseHex(body.signature, 'signature', { maxBytes: MAX_ORDER_BYTES })
  checkUnsigned(order, signature)
  return { order, signature }
}

/** An empty signature is allowed only on an order from a settler's `open` (its nonce says so). */
function checkUnsigned(order: GaslessCrossChainOrder, signature: Hex): void {
  if (signature === NO_SIGNATURE && !isOnchainNonce(order.nonce))
    throw new CodecError(
      'UNSIGNED',
      'signature: empty, but the nonce is not one of an order opened on chain (bit 255)',
      'signature',
    )
}

/** The JSON form of a signed intent. */
export function signedIntentToJson(intent: SignedIntent): SignedIntentJson {
  if (typeof intent.signature !== 'string' || !HEX_LOWER_RE.test(intent.signature)) {
    throw badField('signature', 'expected 0x-prefixed lowercase hex')
  }
  checkUnsigned(intent.order, intent.signature)
  return { order: orderToJson(intent.order), signature: intent.signature }
}

// EIP-712 hashing written out (https://eips.ethereum.org/EIPS/eip-712): viem's generic hashTypedData
// costs ~200 µs per order, more than a native signature recovery, and the id is computed for every
// gossiped intent before dedupe. Tests pin this to viem's and ethers' digests.
const GASLESS_ORDER_TYPE = `${GASLESS_ORDER_PRIMARY_TYPE}(${GASLESS_ORDER_TYPES.GaslessCrossChainOrder.map(
  (f) => `${f.type} ${f.name}`,
).join(',')})`
/** keccak256 of the `GaslessCrossChainOrder` type string. */
export const GASLESS_ORDER_TYPEHASH: Hex = keccak256(stringToBytes(GASLESS_ORDER_TYPE))
const DOMAIN_TYPEHASH = keccak256(
  stringToBytes('EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)'),
  'bytes',
)
const NAME_HASH = keccak256(stringToBytes('Murmur'), 'bytes')
const VERSION_HASH = keccak256(stringToBytes('1'), 'bytes')
const ORDER_TYPEHASH_BYTES = keccak256(stringToBytes(GASLESS_ORDER_TYPE), 'bytes')

function writeUint256(buf: Buffer, offset: number, value: bigint): void {
  buf.writeBigUInt64BE((value >> 192n) & 0xffff_ffff_ffff_ffffn, offset)
  buf.writeBigUInt64BE((value >> 128n) & 0xffff_ffff_ffff_ffffn, offset + 8)
  buf.writeBigUInt64BE((value >> 64n) & 0xffff_ffff_ffff_ffffn, offset + 16)
  buf.writeBigUInt64BE(value & 0xffff_ffff_ffff_ffffn, offset + 24)
}

function readUint256(bytes: Uint8Array, offset: number): bigint {
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, 32)
  return (
    (view.getBigUint64(0) << 192n) |
    (view.getBigUint64(8) << 128n) |
    (view.getBigUint64(16) << 64n) |
    view.getBigUint64(24)
  )
}

// Orders share few domains (one per origin chain and settler); caching saves two keccak permutations.
const DOMAIN_CACHE_MAX = 256
const domainCache = new Map<string, Uint8Array>()

/** The EIP-712 domain separator of an order's domain. */
function orderDomainSeparator(order: GaslessCrossChainOrder): Uint8Array {
  const key = `${order.originChainId}:${order.originSettler}`
  const hit = domainCache.get(key)
  if (hit !== undefined) return hit
  const buf = Buffer.alloc(5 * 32)
  buf.set(DOMAIN_TYPEHASH, 0)
  buf.set(NAME_HASH, 32)
  buf.set(VERSION_HASH, 64)
  writeUint256(buf, 96, order.originChainId)
  buf.write(order.originSettler.slice(2), 128 + 12, 20, 'hex')
  const separator = keccak256Bytes(buf)
  if (domainCache.size >= DOMAIN_CACHE_MAX) domainCache.clear()
  domainCache.set(key, separator)
  return separator
}

/**
 * The intent id: the EIP-712 digest (what viem's `hashTypedData` returns) of the order under
 * {@link orderDomain}. Throws CodecError BAD_FIELD if the order is not well formed.
 */
export function intentId(order: GaslessCrossChainOrder): Hex {
  assertOrder(order)
  const s = Buffer.alloc(9 * 32)
  s.set(ORDER_TYPEHASH_BYTES, 0)
  s.write(order.originSettler.slice(2), 32 + 12, 20, 'hex')
  s.write(order.user.slice(2), 64 + 12, 20, 'hex')
  writeUint256(s, 96, order.nonce)
  writeUint256(s, 128, order.originChainId)
  s.writeUInt32BE(order.openDeadline, 160 + 28)
  s.writeUInt32BE(order.fillDeadline, 192 + 28)
  s.write(order.orderDataType.slice(2), 224, 32, 'hex')
  s.set(keccak256Bytes(Buffer.from(order.orderData.slice(2), 'hex')), 256)
  const d = Buffer.alloc(66)
  d[0] = 0x19
  d[1] = 0x01
  d.set(orderDomainSeparator(order), 2)
  d.set(keccak256Bytes(s), 34)
  return `0x${Buffer.from(keccak256Bytes(d)).toString('hex')}`
}

/** The complete typed-data definition of an order, for any EIP-712 signer (viem or wallet). */
export function orderTypedData(order: GaslessCrossChainOrder) {
  return {
    domain: orderDomain(order),
    types: GASLESS_ORDER_TYPES,
    primaryType: GASLESS_ORDER_PRIMARY_TYPE,
    message: order,
  } as const
}

/** What {@link buildOrder} needs; addresses may be checksummed, they come out lowercase. */
export interface BuildOrderParams {
  /** Default: the zero address (no settler contract). */
  originSettler?: Address
  user: Address
  nonce: bigint
  originChainId: bigint
  openDeadline: number
  fillDeadline: number
  /** Default: the native token. */
  inputToken?: Address
  inputAmount: bigint
  /** Default: the native token. */
  outputToken?: Address
  outputAmount: bigint
  /** Default: `user`. */
  recipient?: Address
  /** Default: empty, any rollup of the network. */
  destinationChainIds?: readonly bigint[]
}

/** Builds a Murmur order: `orderDataType` is the MurmurOrder typehash and `orderData` its encoding. */
export function buildOrder(p: BuildOrderParams): GaslessCrossChainOrder {
  const addr = (a: Address | undefined, field: string): Address => parseAddress(a ?? ZERO_ADDRESS, field)
  const user = addr(p.user, 'user')
  const order: GaslessCrossChainOrder = {
    originSettler: addr(p.originSettler, 'originSettler'),
    user,
    nonce: p.nonce,
    originChainId: p.originChainId,
    openDeadline: p.openDeadline,
    fillDeadline: p.fillDeadline,
    orderDataType: MURMUR_ORDER_TYPEHASH,
    orderData: encodeOrderData({
      inputToken: addr(p.inputToken, 'inputToken'),
      inputAmount: p.inputAmount,
      outputToken: addr(p.outputToken, 'outputToken'),
      outputAmount: p.outputAmount,
      recipient: p.recipient === undefined ? user : addr(p.recipient, 'recipient'),
      destinationChainIds: [...(p.destinationChainIds ?? [])],
    }),
  }
  assertOrder(order)
  return order
}

/** Signs an order with any viem account that can sign typed data; returns the lowercase signature. */
export async function signOrder(
  account: Pick<LocalAccount, 'signTypedData'>,
  order: GaslessCrossChainOrder,
): Promise<Hex> {
  const sig = await account.signTypedData(orderTypedData(order))
  return sig.toLowerCase() as Hex
}

// Wire layout, version 1 (big-endian integers):
//   u8 version | originSettler 20 | user 20 | nonce 32 | originChainId 32 | openDeadline u32 |
//   fillDeadline u32 | orderDataType 32 | u32 orderData length | orderData | u16 signature length | signature
// Fixed widths make the encoding canonical: one signed intent, one byte string.
const FIXED_BYTES = 1 + 20 + 20 + 32 + 32 + 4 + 4 + 32 + 4 + 2
const MAX_SIGNATURE_BYTES = 0xffff

function checkSignature(order: GaslessCrossChainOrder, signature: Hex): void {
  if (typeof signature !== 'string' || !HEX_LOWER_RE.test(signature)) {
    throw badField('signature', 'expected 0x-prefixed lowercase hex')
  }
  if ((signature.length - 2) / 2 > MAX_SIGNATURE_BYTES) throw badField('signature', 'too long')
  checkUnsigned(order, signature)
}

/** Length in bytes of {@link encodeSignedIntent}'s output. */
export function signedIntentWireSize(intent: SignedIntent): number {
  return FIXED_BYTES + (intent.order.orderData.length - 2) / 2 + (intent.signature.length - 2) / 2
}

function writeSignedIntent(out: Buffer, at: number, { order, signature }: SignedIntent): number {
  let o = at
  out[o++] = INTENT_WIRE_VERSION
  o += out.write(order.originSettler.slice(2), o, 20, 'hex')
  o += out.write(order.user.slice(2), o, 20, 'hex')
  writeUint256(out, o, order.nonce)
  o += 32
  writeUint256(out, o, order.originChainId)
  o += 32
  o = out.writeUInt32BE(order.openDeadline, o)
  o = out.writeUInt32BE(order.fillDeadline, o)
  o += out.write(order.orderDataType.slice(2), o, 32, 'hex')
  const dataLen = (order.orderData.length - 2) / 2
  o = out.writeUInt32BE(dataLen, o)
  o += out.write(order.orderData.slice(2), o, dataLen, 'hex')
  const sigLen = (signature.length - 2) / 2
  o = out.writeUInt16BE(sigLen, o)
  o += out.write(signature.slice(2), o, sigLen, 'hex')
  return o
}

/**
 * Encodes a signed intent for the wire. Throws CodecError BAD_FIELD on an ill-formed intent, UNSIGNED on
 * an empty signature over an order not opened on chain.
 */
export function encodeSignedIntent(intent: SignedIntent): Uint8Array {
  assertOrder(intent.order)
  checkSignature(intent.order, intent.signature)
  const buf = Buffer.alloc(signedIntentWireSize(intent))
  writeSignedIntent(buf, 0, intent)
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length)
}

function hexAt(bytes: Uint8Array, at: number, len: number): Hex {
  return `0x${Buffer.from(bytes.buffer, bytes.byteOffset + at, len).toString('hex')}`
}

/** Reads one signed intent at `at`; returns it and the offset after it. */
function readSignedIntent(
  bytes: Uint8Array,
  at: number,
  end: number,
): { intent: SignedIntent; next: number } {
  const need = (o: number, n: number) => {
    if (o + n > end) throw new CodecError('TRUNCATED', 'signed intent: truncated')
  }
  need(at, FIXED_BYTES)
  if (bytes[at] !== INTENT_WIRE_VERSION) {
    throw new CodecError('BAD_VERSION', `signed intent: unknown version ${bytes[at]}`)
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let o = at + 1
  const originSettler = hexAt(bytes, o, 20)
  o += 20
  const user = hexAt(bytes, o, 20)
  o += 20
  const nonce = readUint256(bytes, o)
  o += 32
  const originChainId = readUint256(bytes, o)
  o += 32
  const openDeadline = view.getUint32(o)
  const fillDeadline = view.getUint32(o + 4)
  o += 8
  const orderDataType = hexAt(bytes, o, 32)
  o += 32
  const dataLen = view.getUint32(o)
  o += 4
  need(o, dataLen + 2)
  const orderData = hexAt(bytes, o, dataLen)
  o += dataLen
  const sigLen = view.getUint16(o)
  o += 2
  need(o, sigLen)
  const signature = hexAt(bytes, o, sigLen)
  o += sigLen
  if (sigLen === 0 && !isOnchainNonce(nonce))
    throw new CodecError(
      'UNSIGNED',
      'signed intent: empty signature on an order not opened on chain',
      'signature',
    )
  const order = {
    originSettler,
    user,
    nonce,
    originChainId,
    openDeadline,
    fillDeadline,
    orderDataType,
    orderData,
  }
  return { intent: { order, signature }, next: o }
}

/**
 * Decodes {@link encodeSignedIntent}'s output. Throws CodecError BAD_VERSION, TRUNCATED,
 * TRAILING_BYTES, or UNSIGNED for an empty signature on an order not opened on chain; any other
 * failure is a bug.
 */
export function decodeSignedIntent(bytes: Uint8Array): SignedIntent {
  const { intent, next } = readSignedIntent(bytes, 0, bytes.length)
  if (next !== bytes.length) throw new CodecError('TRAILING_BYTES', 'signed intent: trailing bytes')
  return intent
}

// Batch layout, version 1: u8 version | u16 count | count x (u32 length | signed intent).
// The per-item length lets a reader slice items apart without parsing them.

/** Encodes many signed intents into one gossip message. */
export function encodeSignedIntentBatch(intents: readonly SignedIntent[]): Uint8Array {
  if (intents.length > MAX_INTENT_BATCH_COUNT) {
    throw new CodecError('TOO_LARGE', `batch: more than ${MAX_INTENT_BATCH_COUNT} intents`)
  }
  let total = 3
  for (const intent of intents) {
    assertOrder(intent.order)
    checkSignature(intent.order, intent.signature)
    total += 4 + signedIntentWireSize(intent)
  }
  const buf = Buffer.alloc(total)
  buf[0] = INTENT_WIRE_VERSION
  let o = buf.writeUInt16BE(intents.length, 1)
  for (const intent of intents) {
    const start = o + 4
    const end = writeSignedIntent(buf, start, intent)
    buf.writeUInt32BE(end - start, o)
    o = end
  }
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length)
}

/**
 * Decodes a batch; all or nothing. Throws CodecError BAD_VERSION, TRUNCATED, TRAILING_BYTES, or
 * TOO_LARGE when the count exceeds `maxCount`.
 */
export function decodeSignedIntentBatch(
  bytes: Uint8Array,
  maxCount: number = MAX_INTENT_BATCH_COUNT,
): SignedIntent[] {
  if (bytes.length < 3) throw new CodecError('TRUNCATED', 'batch: truncated')
  if (bytes[0] !== INTENT_WIRE_VERSION)
    throw new CodecError('BAD_VERSION', `batch: unknown version ${bytes[0]}`)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const count = view.getUint16(1)
  if (count > maxCount) throw new CodecError('TOO_LARGE', `batch: ${count} intents, at most ${maxCount}`)
  const out: SignedIntent[] = []
  let o = 3
  for (let i = 0; i < count; i++) {
    if (o + 4 > bytes.length) throw new CodecError('TRUNCATED', 'batch: truncated')
    const len = view.getUint32(o)
    o += 4
    if (o + len > bytes.length) throw new CodecError('TRUNCATED', 'batch: truncated')
    const { intent, next } = readSignedIntent(bytes, o, o + len)
    if (next !== o + len) throw new CodecError('TRAILING_BYTES', `batch: item ${i} has trailing bytes`)
    out.push(intent)
    o = next
  }
  if (o !== bytes.length) throw new CodecError('TRAILING_BYTES', 'batch: trailing bytes')
  return out
}

const GASLESS_ORDER_ABI = [{ type: 'tuple', components: GASLESS_ORDER_TYPES.GaslessCrossChainOrder }] as const

/**
 * `abi.encode(GaslessCrossChainOrder)`: the `originData` of a settler `fill` (and of the `Open` event's
 * fill instructions), from which the destination settler recomputes the order id.
 */
export function originDataOf(order: GaslessCrossChainOrder): Hex {
  return encodeAbiParameters(GASLESS_ORDER_ABI, [order])
}

/**
 * The order in `originData` (`abi.encode(GaslessCrossChainOrder)`, {@link originDataOf}), as the `Open`
 * event's fill instructions carry it. Only the canonical encoding is accepted (it must re-encode to the
 * same bytes), so the order is the one whose id the settler computed. Throws CodecError BAD_FIELD.
 */
export function orderFromOriginData(originData: Hex): GaslessCrossChainOrder {
  const bad = (why: string, cause?: unknown) =>
    new CodecError('BAD_FIELD', `originData: ${why}`, 'originData', { cause })
  if (typeof originData !== 'string' || !/^0x(?:[0-9a-fA-F]{2})*$/.test(originData)) throw bad('not hex')
  if ((originData.length - 2) / 2 > MAX_ORDER_BYTES + 12 * 32) throw bad('too large')
  const data = originData.toLowerCase() as Hex
  let o: GaslessCrossChainOrder
  try {
    const [d] = decodeAbiParameters(GASLESS_ORDER_ABI, data)
    o = {
      originSettler: d.originSettler.toLowerCase() as Address,
      user: d.user.toLowerCase() as Address,
      nonce: d.nonce,
      originChainId: d.originChainId,
      openDeadline: d.openDeadline,
      fillDeadline: d.fillDeadline,
      orderDataType: d.orderDataType.toLowerCase() as Hex,
      orderData: d.orderData.toLowerCase() as Hex,
    }
  } catch (err) {
    throw bad('does not decode', err)
  }
  if (findBadOrderField(o) !== undefined || originDataOf(o) !== data) throw bad('not canonically encoded')
  return o
}
