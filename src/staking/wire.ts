/**
 * Wire codec of the `stake` topic: one signed stake move, Unjail or account message per message. An
 * account message is version byte 3 (staking/wire-accounts.ts); the others version byte 2,
 * CBOR map with addresses and signatures as raw bytes and integers as minimal big-endian bytes (no
 * leading zero):
 * - a stake move: `{k: 0, s: staker, f: fromChainId, t: toChainId, a: amount, d: durationBlocks, n: nonce, sig}`;
 * - an Unjail: `{k: 1, v: validator, n: nonce, sig}`.
 * Version 1 (moves only, no `k`) is no longer read.
 */
import type { Address } from 'viem'
import { bytesToHex, bytesToUint, hexToRaw, uintToBytes } from '../codec/bytes.ts'
import { type Codec, cborCodec, shape } from '../codec/cbor.ts'
import { P2PError } from '../errors.ts'
import { findBadStakeMoveField, type SignedStakeMove } from './moves.ts'
import { findBadUnjailField, type SignedUnjail } from './unjail.ts'
import type { AccountMessage } from './validators.ts'
import {
  ACCOUNT_MESSAGE_MAX_BYTES,
  ACCOUNT_MESSAGE_WIRE_VERSION,
  accountMessageCodec,
} from './wire-accounts.ts'

/** What the `stake` topic carries: a signed stake move (`move`), Unjail (`unjail`) or account message. */
export type StakeMessage = SignedStakeMove | SignedUnjail | AccountMessage

/** True when the message is an account message (Transfer, Delegate, Undelegate, CreateValidator). */
export function isAccountMessage(m: StakeMessage): m is AccountMessage {
  return !('move' in m) && !('unjail' in m)
}

/** True when the message is an Unjail. */
export function isUnjail(m: StakeMessage): m is SignedUnjail {
  return 'unjail' in m
}

/** Largest encoded message, version byte included (a real one is about 200 bytes). */
export const STAKE_MOVE_MAX_BYTES = 512
/** Wire version of {@link stakeMoveCodec}. */
export const STAKE_MOVE_WIRE_VERSION = 2

const MOVE_KEYS = ['k', 's', 'f', 't', 'a', 'd', 'n', 'sig'] as const
const UNJAIL_KEYS = ['k', 'v', 'n', 'sig'] as const

function exactKeys(o: Record<string, unknown>, keys: readonly string[], what: string): void {
  const got = Object.keys(o)
  if (got.length !== keys.length || !keys.every((k) => Object.hasOwn(o, k)))
    throw new P2PError('DECODE', `${what}: unexpected key set`)
}

const inner = cborCodec<unknown>({
  version: STAKE_MOVE_WIRE_VERSION,
  maxBytes: STAKE_MOVE_MAX_BYTES,
  check(v): StakeMessage {
    const o = shape.object(v, 'stake')
    if (o['k'] === 1) {
      exactKeys(o, UNJAIL_KEYS, 'unjail')
      return {
        unjail: {
          validator: bytesToHex(o['v'], 'unjail.validator', 20) as Address,
          nonce: bytesToUint(o['n'], 'unjail.nonce', 32),
        },
        signature: bytesToHex(o['sig'], 'unjail.signature', 65),
      }
    }
    if (o['k'] !== 0) throw new P2PError('DECODE', 'stake: unknown kind')
    exactKeys(o, MOVE_KEYS, 'stakeMove')
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

/**
 * A stake move or an Unjail on the `stake` topic. Encoding one with a field out of range throws. (The
 * name predates Unjail: the topic's codec.)
 */
export const stakeMoveCodec: Codec<StakeMessage> = {
  version: inner.version,
  maxBytes: Math.max(inner.maxBytes, ACCOUNT_MESSAGE_MAX_BYTES),
  encode(m) {
    if (isAccountMessage(m)) return accountMessageCodec.encode(m)
    if (isUnjail(m)) {
      const bad = findBadUnjailField(m)
      if (bad !== undefined) throw new Error(`unjail field ${bad} is out of range`)
      return inner.encode({
        k: 1,
        v: hexToRaw(m.unjail.validator),
        n: uintToBytes(m.unjail.nonce),
        sig: hexToRaw(m.signature),
      })
    }
    const bad = findBadStakeMoveField(m)
    if (bad !== undefined) throw new Error(`stake move field ${bad} is out of range`)
    const s = m.move
    return inner.encode({
      k: 0,
      s: hexToRaw(s.staker),
      f: uintToBytes(s.fromChainId),
      t: uintToBytes(s.toChainId),
      a: uintToBytes(s.amount),
      d: uintToBytes(s.durationBlocks),
      n: uintToBytes(s.nonce),
      sig: hexToRaw(m.signature),
    })
  },
  decode: (bytes) =>
    bytes[0] === ACCOUNT_MESSAGE_WIRE_VERSION
      ? accountMessageCodec.decode(bytes)
      : (inner.decode(bytes) as StakeMessage),
}
