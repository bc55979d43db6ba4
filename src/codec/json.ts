/**
 * Strict parsers for the JSON conventions of INTERFACES.md: big integers as decimal strings, addresses,
 * hashes and bytes as 0x-prefixed lowercase hex, times as numbers. Every failure names its field.
 */
import type { Address, Hex } from 'viem'
import { getAddress } from 'viem'
import { MurmurError } from '../errors.ts'

export type CodecErrorCode =
  | 'BAD_FIELD'
  | 'BAD_VERSION'
  | 'TRUNCATED'
  | 'TRAILING_BYTES'
  | 'BAD_ORDER_DATA'
  | 'TOO_LARGE'
  /** An empty signature on an order that was not opened on chain (codec/intent.ts). */
  | 'UNSIGNED'

/** A JSON value or wire message that does not decode to a valid object. */
export class CodecError extends MurmurError<CodecErrorCode> {
  /** Dotted path of the offending field, when one field is to blame. */
  readonly field: string | undefined
  constructor(code: CodecErrorCode, message: string, field?: string, options?: ErrorOptions) {
    super(code, message, options)
    this.field = field
  }
}

/** `2^256 - 1`. */
export const UINT256_MAX = (1n << 256n) - 1n
/** `2^64 - 1`. */
export const UINT64_MAX = (1n << 64n) - 1n
/** `2^32 - 1`. */
export const UINT32_MAX = 0xffff_ffff

/** A BAD_FIELD error naming `field`. */
export function badField(field: string, why: string): CodecError {
  return new CodecError('BAD_FIELD', `${field}: ${why}`, field)
}

const DECIMAL_RE = /^(0|[1-9][0-9]*)$/
const ADDRESS_RE = /^0x[0-9a-fA-F]{40}$/
const LOWER_HEX_RE = /^0x(?:[0-9a-f]{2})*$/

/** Parses a canonical decimal string (no sign, no leading zeros) into a bigint in `[0, max]`. */
export function parseDecimal(value: unknown, field: string, max: bigint = UINT256_MAX): bigint {
  if (typeof value !== 'string') throw badField(field, 'expected a decimal string')
  // 78 digits hold any uint256; the bound keeps BigInt() off huge strings.
  if (value.length > 78 || !DECIMAL_RE.test(value)) throw badField(field, 'expected a decimal string')
  const n = BigInt(value)
  if (n > max) throw badField(field, 'out of range')
  return n
}

/** Decimal string form of a non-negative bigint. */
export function toDecimal(n: bigint): string {
  return n.toString(10)
}

/** Parses a JSON number that is an integer in `[0, 2^32 - 1]`. */
export function parseUint32(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > UINT32_MAX) {
    throw badField(field, 'expected an integer in [0, 2^32-1]')
  }
  return value
}

/**
 * Parses an address and returns it lowercase. Lowercase is the convention; a mixed-case address is
 * accepted only when its EIP-55 checksum is right, since that is what wallets emit by default.
 */
export function parseAddress(value: unknown, field: string): Address {
  if (typeof value !== 'string' || !ADDRESS_RE.test(value))
    throw badField(field, 'expected a 20-byte 0x address')
  const lower = value.toLowerCase() as Address
  if (value !== lower && getAddress(lower) !== value) throw badField(field, 'bad EIP-55 checksum')
  return lower
}

/**
 * Parses 0x-prefixed lowercase hex bytes, optionally of an exact byte length, bounded by `maxBytes`
 * (checked before the pattern so a huge string costs nothing).
 */
export function parseHex(
  value: unknown,
  field: string,
  opts: { bytes?: number; maxBytes?: number } = {},
): Hex {
  if (typeof value !== 'string') throw badField(field, 'expected 0x-prefixed lowercase hex')
  const n = (value.length - 2) / 2
  if (opts.bytes !== undefined && n !== opts.bytes) throw badField(field, `expected ${opts.bytes} bytes`)
  if (opts.maxBytes !== undefined && n > opts.maxBytes) {
    throw new CodecError('TOO_LARGE', `${field}: more than ${opts.maxBytes} bytes`, field)
  }
  if (!LOWER_HEX_RE.test(value)) throw badField(field, 'expected 0x-prefixed lowercase hex')
  return value as Hex
}

/**
 * Checks that `value` is a plain JSON object with exactly `keys` (none missing, none extra) and returns it.
 * Unknown fields are refused so that one object has one JSON form.
 */
export function parseObject<K extends string>(
  value: unknown,
  field: string,
  keys: readonly K[],
): Record<K, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw badField(field, 'expected an object')
  }
  const obj = value as Record<string, unknown>
  for (const k of Object.keys(obj)) {
    if (!(keys as readonly string[]).includes(k)) throw badField(join(field, k), 'unknown field')
  }
  for (const k of keys) {
    if (!Object.hasOwn(obj, k)) throw badField(join(field, k), 'missing')
  }
  return obj as Record<K, unknown>
}

/** `a.b`, or `b` when `a` is empty. */
export function join(parent: string, child: string): string {
  return parent === '' ? child : `${parent}.${child}`
}
