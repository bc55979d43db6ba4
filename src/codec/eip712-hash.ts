/**
 * EIP-712 hashing without viem's generic machinery: `hashTypedDataFast` returns what viem's
 * `hashTypedData` returns, about ten times faster, for the types Murmur signs.
 *
 * Each `types` object is compiled once (cached in a WeakMap keyed by the object, so the `types` constants
 * must not be mutated): the type hash of every struct, one encoder per field that writes the field's
 * 32-byte word straight into a preallocated buffer of 32 * (1 + fields) bytes, which is then hashed with
 * the WebAssembly keccak. Domain separators are cached by the domain's value.
 *
 * Supported field types: address, bool, bytes, bytes1..bytes32, string, uint8..uint256, int8..int256,
 * arrays of any of these (`T[]`, and `T[n]` which, as in viem, is not length-checked) and struct types
 * (nested, arrays of structs, recursive). The domain takes any of name, version, chainId,
 * verifyingContract and salt; as viem does, `EIP712Domain` lists only the fields present (not undefined
 * or null) in that canonical order, unless `types` defines `EIP712Domain` itself.
 *
 * Accepted values follow viem: integers as bigint, number (integral) or a string `BigInt` parses;
 * addresses as 0x hex, all-lowercase or with a valid EIP-55 checksum; bytesN and bytes as 0x hex
 * (odd-length hex is left-padded with a zero nibble), bytes also as a Uint8Array. A value that does not
 * fit its type (bad address, integer out of range, bytesN of the wrong length, missing field...) throws
 * an Error naming the field.
 */
import type { HashTypedDataParameters, Hex, TypedData } from 'viem'
import { keccak256Bytes } from '../crypto/keccak.ts'

/** Writes the 32-byte EIP-712 encoding of `value` at `out[off .. off + 32]`. */
type Encoder = (value: unknown, out: Buffer, off: number) => void

interface StructCodec {
  readonly name: string
  readonly typeHash: Uint8Array
  readonly fieldNames: string[]
  readonly encoders: Encoder[]
  /** typeHash || field words; reused by every hash of this struct (a fresh one when re-entered). */
  readonly buf: Buffer
  busy: boolean
}

type Fields = readonly { readonly name: string; readonly type: string }[]
type Types = Record<string, Fields | undefined>

interface Compiled {
  readonly structs: Map<string, StructCodec>
  /** Separators of the domains hashed with this types object's own `EIP712Domain`. */
  readonly domainCache: Map<string, Uint8Array>
}

const INTEGER_RE =
  /^(u?int)(8|16|24|32|40|48|56|64|72|80|88|96|104|112|120|128|136|144|152|160|168|176|184|192|200|208|216|224|232|240|248|256)$/
const BYTES_N_RE = /^bytes([1-9]|1[0-9]|2[0-9]|3[0-2])$/
const STRUCT_NAME_RE = /^[A-Za-z0-9_$:]+$/
const ADDRESS_RE = /^0x[0-9a-fA-F]{40}$/
const HEX_RE = /^0x[0-9a-fA-F]*$/
const TWO_256 = 1n << 256n
const MAX_DOMAIN_CACHE = 512

function describe(value: unknown): string {
  if (typeof value === 'string') return value.length > 80 ? `"${value.slice(0, 77)}..."` : `"${value}"`
  if (typeof value === 'bigint') return `${value}n`
  if (value instanceof Uint8Array) return `Uint8Array(${value.length})`
  if (Array.isArray(value)) return `array(${value.length})`
  return value === null ? 'null' : typeof value === 'object' ? 'object' : String(value)
}

function fail(type: string, value: unknown, why: string): never {
  throw new Error(`${describe(value)} is not a valid ${type}: ${why}`)
}

/** `v` (0 <= v < 2^256) as a big-endian word. */
function writeUint(out: Buffer, off: number, v: bigint): void {
  if (v < 0x1_0000_0000_0000_0000n) {
    for (let i = 0; i < 24; i++) out[off + i] = 0
    writeU64(out, off + 24, Number(v >> 32n), Number(v & 0xffff_ffffn))
  } else {
    out.write(v.toString(16).padStart(64, '0'), off, 32, 'hex')
  }
}

function writeU64(out: Buffer, off: number, hi: number, lo: number): void {
  out[off] = hi >>> 24
  out[off + 1] = (hi >>> 16) & 0xff
  out[off + 2] = (hi >>> 8) & 0xff
  out[off + 3] = hi & 0xff
  out[off + 4] = lo >>> 24
  out[off + 5] = (lo >>> 16) & 0xff
  out[off + 6] = (lo >>> 8) & 0xff
  out[off + 7] = lo & 0xff
}

function integerEncoder(type: string, signed: boolean, bits: number): Encoder {
  const max = (1n << BigInt(signed ? bits - 1 : bits)) - 1n
  const min = signed ? -max - 1n : 0n
  // Non-negative numbers up to here take the fast path.
  const maxNum = bits > 53 ? Number.MAX_SAFE_INTEGER : Number(max)
  return (value, out, off) => {
    let v: bigint
    if (typeof value === 'number') {
      if (value >= 0 && value <= maxNum && Number.isInteger(value)) {
        for (let i = 0; i < 24; i++) out[off + i] = 0
        writeU64(out, off + 24, Math.floor(value / 0x1_0000_0000), value >>> 0)
        return
      }
      if (!Number.isInteger(value)) fail(type, value, 'not an integer')
      v = BigInt(value)
    } else if (typeof value === 'bigint') {
      v = value
    } else if (typeof value === 'string') {
      try {
        v = BigInt(value)
      } catch {
        fail(type, value, 'not an integer')
      }
    } else {
      fail(type, value, 'expected a bigint or a number')
    }
    if (v < min || v > max) fail(type, value, `out of range [${min}, ${max}]`)
    writeUint(out, off, v < 0n ? TWO_256 + v : v)
  }
}

function encodeBool(value: unknown, out: Buffer, off: number): void {
  if (typeof value !== 'boolean') fail('bool', value, 'expected true or false')
  for (let i = 0; i < 31; i++) out[off + i] = 0
  out[off + 31] = value ? 1 : 0
}

/** EIP-55 checksum form of a lowercase 0x address. */
function checksum(lower: string): string {
  const h = keccak256Bytes(Buffer.from(lower.slice(2), 'latin1'))
  let r = '0x'
  for (let i = 0; i < 40; i++) {
    const c = lower[i + 2]!
    const nibble = i % 2 === 0 ? h[i >> 1]! >> 4 : h[i >> 1]! & 0x0f
    r += nibble >= 8 ? c.toUpperCase() : c
  }
  return r
}

/** Mixed-case addresses already seen, and whether their checksum is valid. */
const checksumOk = new Map<string, boolean>()

function encodeAddress(value: unknown, out: Buffer, off: number): void {
  if (typeof value !== 'string' || !ADDRESS_RE.test(value))
    fail('address', value, 'expected 0x and 20 bytes of hex')
  const lower = value.toLowerCase()
  if (lower !== value) {
    let ok = checksumOk.get(value)
    if (ok === undefined) {
      ok = checksum(lower) === value
      if (checksumOk.size >= 4096) checksumOk.clear()
      checksumOk.set(value, ok)
    }
    if (!ok) fail('address', value, 'mixed case with a bad EIP-55 checksum')
  }
  for (let i = 0; i < 12; i++) out[off + i] = 0
  out.write(value.slice(2), off + 12, 20, 'hex')
}

/** The hex digits of a 0x hex string, left-padded to whole bytes (as viem's hexToBytes). */
function hexDigits(type: string, value: unknown): string {
  if (typeof value !== 'string' || !HEX_RE.test(value)) fail(type, value, 'expected 0x-prefixed hex')
  return value.length % 2 === 0 ? value.slice(2) : `0${value.slice(2)}`
}

function bytesNEncoder(type: string, n: number): Encoder {
  return (value, out, off) => {
    const digits = hexDigits(type, value)
    if (digits.length !== 2 * n) fail(type, value, `expected ${n} bytes, got ${digits.length / 2}`)
    out.write(digits, off, n, 'hex')
    for (let i = n; i < 32; i++) out[off + i] = 0
  }
}

function encodeBytes(value: unknown, out: Buffer, off: number): void {
  const data = value instanceof Uint8Array ? value : Buffer.from(hexDigits('bytes', value), 'hex')
  out.set(keccak256Bytes(data), off)
}

function encodeString(value: unknown, out: Buffer, off: number): void {
  if (typeof value !== 'string') fail('string', value, 'expected a string')
  out.set(keccak256Bytes(Buffer.from(value, 'utf8')), off)
}

/** Prefixes an error thrown while encoding part of a value with where it happened. */
function at(where: string, err: unknown): Error {
  const msg = err instanceof Error ? err.message : String(err)
  return new Error(`${where}: ${msg}`, { cause: err })
}

function arrayEncoder(element: Encoder): Encoder {
  return (value, out, off) => {
    if (!Array.isArray(value)) fail('array', value, 'expected an array')
    const words = Buffer.alloc(32 * value.length)
    let i = 0
    try {
      for (; i < value.length; i++) {
        const item = value[i]
        if (item === undefined || item === null) throw new Error('missing element')
        element(item, words, 32 * i)
      }
    } catch (err) {
      throw at(`[${i}]`, err)
    }
    out.set(keccak256Bytes(words), off)
  }
}

function hashStruct(codec: StructCodec, value: unknown): Uint8Array {
  if (value === null || typeof value !== 'object') fail(codec.name, value, 'expected an object')
  const data = value as Record<string, unknown>
  let buf = codec.buf
  if (codec.busy) {
    // A recursive type: this struct is being encoded further up the stack.
    buf = Buffer.alloc(codec.buf.length)
    buf.set(codec.typeHash, 0)
  } else codec.busy = true
  const { fieldNames, encoders } = codec
  let i = 0
  try {
    for (; i < fieldNames.length; i++) {
      const v = data[fieldNames[i]!]
      if (v === undefined || v === null) throw new Error('missing field')
      encoders[i]!(v, buf, 32 + 32 * i)
    }
    return keccak256Bytes(buf)
  } catch (err) {
    throw at(`${codec.name}.${fieldNames[i]}`, err)
  } finally {
    if (buf === codec.buf) codec.busy = false
  }
}

/** `Name(type name,...)` of the struct and its dependencies, the dependencies sorted (EIP-712). */
function encodeType(primary: string, types: Types): string {
  const deps = new Set<string>()
  const visit = (t: string) => {
    const base = t.replace(/(\[[0-9]*\])+$/, '')
    if (deps.has(base) || types[base] === undefined) return
    deps.add(base)
    for (const f of types[base]) visit(f.type)
  }
  visit(primary)
  deps.delete(primary)
  let out = ''
  for (const name of [primary, ...[...deps].sort()]) {
    out += `${name}(${types[name]!.map((f) => `${f.type} ${f.name}`).join(',')})`
  }
  return out
}

function compileTypes(types: Types): Map<string, StructCodec> {
  const structs = new Map<string, StructCodec>()
  for (const [name, fields] of Object.entries(types)) {
    if (fields === undefined) continue
    if (
      !STRUCT_NAME_RE.test(name) ||
      name === 'address' ||
      name === 'bool' ||
      name === 'string' ||
      /^(u?int|bytes)[0-9]*$/.test(name)
    )
      throw new Error(`EIP-712: invalid struct type name "${name}"`)
    const buf = Buffer.alloc(32 * (1 + fields.length))
    const typeHash = keccak256Bytes(Buffer.from(encodeType(name, types), 'utf8'))
    buf.set(typeHash, 0)
    structs.set(name, {
      name,
      typeHash,
      fieldNames: fields.map((f) => f.name),
      encoders: [],
      buf,
      busy: false,
    })
  }
  const encoderOf = (type: string): Encoder => {
    if (type.endsWith(']')) {
      const open = type.lastIndexOf('[')
      if (open < 0 || !/^[0-9]*$/.test(type.slice(open + 1, -1)))
        throw new Error(`EIP-712: invalid type "${type}"`)
      return arrayEncoder(encoderOf(type.slice(0, open)))
    }
    const struct = structs.get(type)
    if (struct !== undefined) return (value, out, off) => out.set(hashStruct(struct, value), off)
    if (type === 'address') return encodeAddress
    if (type === 'bool') return encodeBool
    if (type === 'string') return encodeString
    if (type === 'bytes') return encodeBytes
    const bytesN = BYTES_N_RE.exec(type)
    if (bytesN !== null) return bytesNEncoder(type, Number(bytesN[1]))
    const int = INTEGER_RE.exec(type)
    if (int !== null) return integerEncoder(type, int[1] === 'int', Number(int[2]))
    throw new Error(`EIP-712: unknown type "${type}"`)
  }
  for (const [name, fields] of Object.entries(types)) {
    if (fields === undefined) continue
    const codec = structs.get(name)!
    for (const f of fields) codec.encoders.push(encoderOf(f.type))
  }
  return structs
}

const compiledTypes = new WeakMap<object, Compiled>()

function compiled(types: Types): Compiled {
  let c = compiledTypes.get(types)
  if (c === undefined) {
    c = { structs: compileTypes(types), domainCache: new Map() }
    compiledTypes.set(types, c)
  }
  return c
}

const DOMAIN_FIELDS = [
  { name: 'name', type: 'string' },
  { name: 'version', type: 'string' },
  { name: 'chainId', type: 'uint256' },
  { name: 'verifyingContract', type: 'address' },
  { name: 'salt', type: 'bytes32' },
] as const

/** `EIP712Domain` codecs of the canonical domains, by the bit mask of the fields present. */
const canonicalDomains: (StructCodec | undefined)[] = []
/** Separators of canonical domains, by the domain's JSON. */
const domainCache = new Map<string, Uint8Array>()

function canonicalDomainCodec(domain: Record<string, unknown>): StructCodec {
  let mask = 0
  for (let i = 0; i < DOMAIN_FIELDS.length; i++) if (domain[DOMAIN_FIELDS[i]!.name] != null) mask |= 1 << i
  let codec = canonicalDomains[mask]
  if (codec === undefined) {
    const fields = DOMAIN_FIELDS.filter((_, i) => (mask & (1 << i)) !== 0)
    codec = compileTypes({ EIP712Domain: fields }).get('EIP712Domain')!
    canonicalDomains[mask] = codec
  }
  return codec
}

function domainKey(domain: object): string | undefined {
  try {
    return JSON.stringify(domain, (_, v) => (typeof v === 'bigint' ? v.toString() : v))
  } catch {
    return undefined
  }
}

function domainSeparatorOf(domain: unknown, c: Compiled): Uint8Array {
  if (typeof domain !== 'object' || domain === null)
    throw new Error(`EIP-712: domain must be an object, got ${describe(domain)}`)
  const own = c.structs.get('EIP712Domain')
  const cache = own === undefined ? domainCache : c.domainCache
  const key = domainKey(domain)
  let sep = key === undefined ? undefined : cache.get(key)
  if (sep === undefined) {
    const codec = own ?? canonicalDomainCodec(domain as Record<string, unknown>)
    sep = hashStruct(codec, domain)
    if (key !== undefined) {
      if (cache.size >= MAX_DOMAIN_CACHE) cache.clear()
      cache.set(key, sep)
    }
  }
  return sep
}

/** 0x1901 || domainSeparator || hashStruct(message); reused, the hash is synchronous. */
const digestInput = Buffer.alloc(66)
digestInput[0] = 0x19
digestInput[1] = 0x01

const EMPTY_TYPES: Types = {}

/** The separator of `domain` (32 bytes): hashStruct of the `EIP712Domain` of its present fields. */
export function domainSeparatorFast(domain: object): Uint8Array {
  // A copy: the cached one must not be changed by the caller.
  return domainSeparatorOf(domain, compiled(EMPTY_TYPES)).slice()
}

/**
 * The EIP-712 digest of `message` as `primaryType` of `types`, under a precomputed domain separator
 * (from {@link domainSeparatorFast}); null hashes without a domain, as viem does for `domain: null`.
 */
export function hashWithSeparatorBytes(
  separator: Uint8Array | null,
  types: Types,
  primaryType: string,
  message: unknown,
): Uint8Array {
  const c = compiled(types)
  const codec = c.structs.get(primaryType)
  if (codec === undefined) throw new Error(`EIP-712: primary type "${primaryType}" is not in types`)
  const structHash = hashStruct(codec, message)
  if (separator === null) return keccak256Bytes(Buffer.concat([digestInput.subarray(0, 2), structHash]))
  digestInput.set(separator, 2)
  digestInput.set(structHash, 34)
  return keccak256Bytes(digestInput)
}

/** {@link hashTypedDataFast}, as 32 bytes. */
export function hashTypedDataFastBytes(parameters: {
  domain?: unknown
  types: unknown
  primaryType: unknown
  message?: unknown
}): Uint8Array {
  const types = parameters.types as Types
  if (typeof types !== 'object' || types === null) throw new Error('EIP-712: types must be an object')
  const primaryType = parameters.primaryType as string
  const c = compiled(types)
  const domain = parameters.domain === undefined ? {} : parameters.domain
  const separator = domain === null ? null : domainSeparatorOf(domain, c)
  if (primaryType === 'EIP712Domain') {
    if (separator === null) return keccak256Bytes(digestInput.subarray(0, 2))
    return keccak256Bytes(Buffer.concat([digestInput.subarray(0, 2), separator]))
  }
  return hashWithSeparatorBytes(separator, types, primaryType, parameters.message)
}

/** Lowercase 0x hex of 32 bytes. */
export function digestHex(digest: Uint8Array): Hex {
  return `0x${Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('hex')}`
}

/**
 * Drop-in for viem's `hashTypedData` (same parameters, same digest, lowercase hex) for the types listed
 * in the module comment; throws an Error on a value that does not fit its type.
 */
export function hashTypedDataFast<
  const typedData extends TypedData | Record<string, unknown>,
  primaryType extends keyof typedData | 'EIP712Domain',
>(parameters: HashTypedDataParameters<typedData, primaryType>): Hex {
  return digestHex(hashTypedDataFastBytes(parameters as Parameters<typeof hashTypedDataFastBytes>[0]))
}
