/**
 * Wire codec of the `stake` topic: one signed stake move per message, CBOR map
 * `{s: staker, f: fromChainId, t: toChainId, a: amount, d: durationBlocks, n: nonce, sig}` with addresses
 * and signatures as raw bytes and integers as minimal big-endian bytes (no leading zero), version byte 1.
 */
import type { Address } from 'viem'
import { bytesToHex, bytesToUint, hexToRaw, uintToBytes } from '../codec/bytes.ts'
import { type Codec, cborCodec, shape } from '../codec/cbor.ts'
import { P2PError } from '../errors.ts'
import { findBadStakeMoveField, type SignedStakeMove } from './moves.ts'

/** Largest encoded message, version byte included (a real one is about 200 bytes). */
export const STAKE_MOVE_MAX_BYTES = 512
/** Wire version of {@link stakeMoveCodec}. */
export const STAKE_MOVE_WIRE_VERSION = 1

const KEYS = ['s', 'f', 't', 'a', 'd', 'n', 'sig'] as const

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
        staker: bytesToHex(o['s'], 'stakeMove.staker', 20) as Address,
        fromChainId: bytesToUint(o['f'], 'stakeMove.fromChainId', 32),
        toChainId: bytesToUint(o['t'], 'stakeMove.toChainId', 32),
        amount: bytesToUint(o['a'], 'stakeMove.amount', 32),
        durationBlocks: bytesToUint(o['d'], 'stakeMove.durationBlocks', 8),
        nonce: bytesToUint(o['n'], 'stakeMove.nonce', 32),
      },
      signature: bytesToHex(o['sig'], 'stakeMove.signature', 65),
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
      s: hexToRaw(m.staker),
      f: uintToBytes(m.fromChainId),
      t: uintToBytes(m.toChainId),
      a: uintToBytes(m.amount),
      d: uintToBytes(m.durationBlocks),
      n: uintToBytes(m.nonce),
      sig: hexToRaw(s.signature),
    })
  },
  decode: (bytes) => inner.decode(bytes) as SignedStakeMove,
}
