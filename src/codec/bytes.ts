/**
 * Byte helpers of the wire codecs: integers as minimal big-endian bytes (no leading zero, 0 is the empty
 * string, so one value has one encoding) and addresses, hashes and signatures as raw bytes. Decoders take
 * `unknown` (a field of decoded CBOR) and throw P2PError DECODE, like the shape checks they build on.
 */
import type { Address, Hex } from 'viem'
import { P2PError } from '../errors.ts'
import { shape } from './cbor.ts'

/** Minimal big-endian bytes of a non-negative bigint (0 is the empty string). */
export function uintToBytes(n: bigint): Uint8Array {
  if (n < 0n) throw new RangeError('negative integer')
  if (n === 0n) return new Uint8Array(0)
  let hex = n.toString(16)
  if (hex.length % 2 === 1) hex = `0${hex}`
  return new Uint8Array(Buffer.from(hex, 'hex'))
}

/** Inverse of {@link uintToBytes}; throws P2PError DECODE on a non-canonical or too long value. */
export function bytesToUint(v: unknown, what: string, maxBytes: number): bigint {
  const b = shape.bytes(v, what, maxBytes)
  if (b.length === 0) return 0n
  if (b[0] === 0) throw new P2PError('DECODE', `${what}: leading zero byte`)
  return BigInt(`0x${Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex')}`)
}

/** 20 raw bytes -> lowercase 0x address. */
export function bytesToAddress(v: unknown, what: string): Address {
  const b = shape.bytes(v, what, 20)
  if (b.length !== 20) throw new P2PError('DECODE', `${what}: expected 20 bytes`)
  return `0x${Buffer.from(b.buffer, b.byteOffset, 20).toString('hex')}`
}

/** Fixed-length raw bytes -> lowercase 0x hex. */
export function bytesToHex(v: unknown, what: string, length: number): Hex {
  const b = shape.bytes(v, what, length)
  if (b.length !== length) throw new P2PError('DECODE', `${what}: expected ${length} bytes`)
  return `0x${Buffer.from(b.buffer, b.byteOffset, length).toString('hex')}`
}

/** 0x hex -> raw bytes. */
export function hexToRaw(hex: Hex): Uint8Array {
  return new Uint8Array(Buffer.from(hex.slice(2), 'hex'))
}
