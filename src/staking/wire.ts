/**
 * Wire codec of the `stake` topic: one signed stake move per message, CBOR map
 * `{s: staker, f: fromChainId, t: toChainId, a: amount, d: durationBlocks, n: nonce, sig}` with addresses
 * and signatures as raw bytes and integers as minimal big-endian bytes (no leading zero), version byte 1.
 */
import type { Address, Hex } from 'viem'
import { P2PError } from '../errors.ts'
import { type Codec, cborCodec, shape } from '../p2p/codec.ts'
import { findBadStakeMoveField, type SignedStakeMove } from './moves.ts'

/** Largest encoded message, version byte included (a real one is about 200 bytes). */
export const STAKE_MOVE_MAX_BYTES = 512
/** Wire version of {@link stakeMoveCodec}. */
export const STAKE_MOVE_WIRE_VERSION = 1

const KEYS = ['s', 'f', 't', 'a', 'd', 'n', 'sig'] as const

function uintBytes(n: bigint): Uint8Array {
  if (n === 0n) return new Uint8Array(0)
  let hex = n.toString(16)
  if (hex.length % 2 === 1) hex = `0${hex}`
  return new Uint8Array(Buffer.from(hex, 'hex'))
}

function bytesUint(v: unknown, what: string, maxBytes: number): bigint {
  const b = shape.bytes(v, what, maxBytes)
  if (b.length === 0) return 0n
  if (b[0] === 0) throw new P2PError('DECODE', `${what}: leading zero byte`)
  return BigInt(`0x${Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex')}`)
}

function fixedHex(v: unknown, what: string, length: number): Hex {
  const b = shape.bytes(v, what, length)
  if (b.length !== length) throw new P2PError('DECODE', `${what}: expected ${length} bytes`)
  return `0x${Buffer.from(b.buffer, b.byteOffset, length).toString('hex')}`
}

const raw = (hex: Hex) => new Uint8Array(Buffer.from(hex.slice(2), 'hex'))

const inner = cborCodec<unknown>({
  version: STAKE_MOVE_WIRE_VERSION,
  maxBytes: STAKE_MOVE_MAX_BYTES,
  check(v): SignedStakeMove {
    const o = shape.object(v, 'stakeMove')
    const keys = Object.keys(o)
    if (keys.length !== KEYS.length || !KEYS.every((k) => Object.hasOwn(o, k)))
      throw new P2PError('DECODE', 'stakeMove: unexpected key set')
    return {
      move: {
        staker: fixedHex(o['s'], 'stakeMove.staker', 20) as Address,
        fromChainId: bytesUint(o['f'], 'stakeMove.fromChainId', 32),
        toChainId: bytesUint(o['t'], 'stakeMove.toChainId', 32),
        amount: bytesUint(o['a'], 'stakeMove.amount', 32),
        durationBlocks: bytesUint(o['d'], 'stakeMove.durationBlocks', 8),
        nonce: bytesUint(o['n'], 'stakeMove.nonce', 32),
      },
      signature: fixedHex(o['sig'], 'stakeMove.signature', 65),
    }
  },
})

/** `{move, signature}` on the `stake` topic. Encoding a move with a field out of range throws. */
export const stakeMoveCodec: Codec<SignedStakeMove> = {
  version: inner.version,
  maxBytes: inner.maxBytes,
  encode(s) {
    const bad = findBadStakeMoveField(s)
    if (bad !== undefined) throw new Error(`stake move field ${bad} is out of range`)
    const m = s.move
    return inner.encode({
      s: raw(m.staker),
      f: uintBytes(m.fromChainId),
      t: uintBytes(m.toChainId),
      a: uintBytes(m.amount),
      d: uintBytes(m.durationBlocks),
      n: uintBytes(m.nonce),
      sig: raw(s.signature),
    })
  },
  decode: (bytes) => inner.decode(bytes) as SignedStakeMove,
}
