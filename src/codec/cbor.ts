/**
 * The generic wire-codec machinery: a versioned, size-bounded CBOR codec and the shape checks its `check`
 * functions use. Nothing here knows a message type; every wire type of the node is built from it.
 *
 * Errors are P2PError DECODE / TOO_LARGE (src/errors.ts, the bottom layer): the gossip validator and the
 * request/response layer turn exactly those codes into REJECTs and peer penalties, so a codec error keeps
 * the class the network layer already understands.
 */
import { decode as cborDecode, encode as cborEncode } from 'cborg'
import { P2PError } from '../errors.ts'

/**
 * Bytes <-> value for one wire message type. Every encoded message starts with a
 * version byte, so a type can evolve without a new topic, and has a hard maximum size.
 */
export interface Codec<T> {
  /** Wire version written as the first byte. */
  readonly version: number
  /** Largest encoded message accepted, bytes (the version byte included). */
  readonly maxBytes: number
  encode(value: T): Uint8Array
  /** Throws P2PError DECODE or TOO_LARGE on anything that is not a valid message. */
  decode(bytes: Uint8Array): T
}

/**
 * A CBOR codec (cborg, deterministic encoding) with a version byte and a shape check.
 * `check` turns the decoded CBOR into T or throws; it is where a type's fields are verified.
 */
export function cborCodec<T>(opts: {
  version: number
  maxBytes: number
  check: (v: unknown) => T
}): Codec<T> {
  return {
    version: opts.version,
    maxBytes: opts.maxBytes,
    encode(value: T): Uint8Array {
      const body = cborEncode(value)
      const out = new Uint8Array(body.length + 1)
      out[0] = opts.version
      out.set(body, 1)
      if (out.length > opts.maxBytes) {
        throw new P2PError('TOO_LARGE', `message of ${out.length} bytes exceeds ${opts.maxBytes}`)
      }
      return out
    },
    decode(bytes: Uint8Array): T {
      if (bytes.length > opts.maxBytes) {
        throw new P2PError('TOO_LARGE', `message of ${bytes.length} bytes exceeds ${opts.maxBytes}`)
      }
      if (bytes.length < 2) throw new P2PError('DECODE', 'message too short')
      if (bytes[0] !== opts.version) throw new P2PError('DECODE', `unknown version ${bytes[0]}`)
      let value: unknown
      try {
        value = cborDecode(bytes.subarray(1), { strict: true, rejectDuplicateMapKeys: true })
      } catch (err) {
        throw new P2PError('DECODE', `bad CBOR: ${(err as Error).message}`)
      }
      try {
        return opts.check(value)
      } catch (err) {
        if (err instanceof P2PError) throw err
        throw new P2PError('DECODE', (err as Error).message)
      }
    },
  }
}

/** Small shape-check helpers for `check` functions. Each throws P2PError DECODE. */
export const shape = {
  object(v: unknown, what: string): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) {
      throw new P2PError('DECODE', `${what}: expected a map`)
    }
    return v as Record<string, unknown>
  },
  int(v: unknown, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new P2PError('DECODE', `${what}: expected an integer in [${min}, ${max}]`)
    }
    return v
  },
  string(v: unknown, what: string, maxLength = 1024): string {
    if (typeof v !== 'string' || v.length > maxLength)
      throw new P2PError('DECODE', `${what}: expected a string`)
    return v
  },
  bytes(v: unknown, what: string, maxLength = 1 << 20): Uint8Array {
    if (!(v instanceof Uint8Array) || v.length > maxLength)
      throw new P2PError('DECODE', `${what}: expected bytes`)
    return v
  },
  array(v: unknown, what: string, maxLength = 1024): unknown[] {
    if (!Array.isArray(v) || v.length > maxLength) throw new P2PError('DECODE', `${what}: expected an array`)
    return v
  },
}
