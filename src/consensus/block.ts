/**
 * Blocks and commit certificates: the values the validators agree on, their canonical binary encoding
 * (CBOR, one byte string per block: the header fields and the body as a nested byte string), the block
 * hash (`keccak256(abi.encode(Header))`, docs/settlement.md, so a contract can check precommits over it)
 * and the certificate that proves a commit (more than 2/3 of the voting power of precommits for the hash).
 *
 * A block carries everything `apply` needs, so applying it is a pure function of (state, block): the
 * signed intents it assigns for the first time travel with it (`intents`, aligned with `assignments`), and
 * the commit of the previous height with its vote extensions (`lastCommit`), from which the block time and
 * the health view it routes over are derived (ARCHITECTURE.md, Consensus: what the proposer alone must not
 * decide).
 */
import { decode as cborDecode, encode as cborEncode } from 'cborg'
import type { AbiParameter, Address, Hex } from 'viem'
import { bytesToAddress, bytesToHex, bytesToUint, hexToRaw, uintToBytes } from '../codec/bytes.ts'
import { type Codec, cborCodec, shape } from '../codec/cbor.ts'
import { decodeSignedIntent, encodeSignedIntent, type SignedIntent } from '../codec/intent.ts'
import { keccak256Bytes } from '../crypto/keccak.ts'
import { recoverAddress } from '../crypto/recover.ts'
import { P2PError } from '../errors.ts'
import type { ProtocolSpec } from '../p2p/reqresp.ts'
import { type Fill, fillCodec } from '../rollups/fill.ts'
import { type SignedStakeMove, stakeMoveId } from '../staking/moves.ts'
import { type SignedUnjail, unjailId } from '../staking/unjail.ts'
import type { AccountMessage } from '../staking/validators.ts'
import { accountMessageCodec, accountMessageToJson } from '../staking/wire-accounts.ts'
import { hasTwoThirds } from './quorum.ts'
import {
  decodeVoteTuple,
  encodeVoteTuple,
  MAX_ROUND,
  MAX_VOTE_EXTENSION_BYTES,
  type Recover,
  type SignedVote,
  voteDigest,
} from './votes.ts'

/** A new assignment: `executor` fills `intentId` on `chainId` before `deadline`. */
export interface BlockAssignment {
  readonly intentId: Hex
  readonly chainId: bigint
  /** Lowercase. */
  readonly executor: Address
  /** Unix seconds: min(block time + fillTimeoutSec, the intent's fillDeadline). */
  readonly deadline: bigint
}

/** A fill signed by the assigned executor (the `Fill` EIP-712 type of rollups/fill.ts). */
export interface BlockFill extends Fill {
  readonly signature: Hex
}

export type { SignedStakeMove, StakeMove } from '../staking/moves.ts'
export type { SignedUnjail, Unjail } from '../staking/unjail.ts'

/** Two signed votes of one validator for one height/round/kind and different block hashes. */
export interface VoteEvidence {
  readonly first: SignedVote
  readonly second: SignedVote
}

/** A block. Every list is in a canonical order that validateBlock checks. */
export interface Block {
  readonly height: bigint
  /** Round in which `proposer` built it (a re-proposal in a later round keeps the original block). */
  readonly round: number
  /** Lowercase address of the validator that built it. */
  readonly proposer: Address
  /** Unix milliseconds on the proposer's clock; after the parent's, within the skew of validators' clocks. */
  readonly time: number
  readonly parentHash: Hex
  /** New assignments, in intent id order (the router's order). */
  readonly assignments: readonly BlockAssignment[]
  /** The signed intents of `assignments`, same order. */
  readonly intents: readonly SignedIntent[]
  /** Assignments moved because their rollup is down, their deadline passed or their executor left. */
  readonly reassignments: readonly BlockAssignment[]
  /** In intent id order, one per intent. */
  readonly fills: readonly BlockFill[]
  /** Elastic stake moves, in (staker, nonce) order (staking/moves.ts). */
  readonly stakeMoves: readonly SignedStakeMove[]
  readonly evidence: readonly VoteEvidence[]
  /**
   * The commit of the previous height (CometBFT's LastCommit): precommits of more than 2/3 of its
   * validators for `parentHash`, with their timestamps and vote extensions; null at height 1. From it,
   * deterministically: the block time (stake-weighted median of the timestamps), the health view routing
   * uses (the signers' rollup observations), and who is online.
   */
  readonly lastCommit: CommitCertificate | null
  /** Unjails of validators whose downtime jail is over, in validator address order, one per validator. */
  readonly unjails: readonly SignedUnjail[]
  /**
   * Intents this block refunds (state/plan.ts `refundable`), in intent id order: each expires in this block
   * and its order is opened on its origin settler (the proposer's RPC says so, every validator checks it on
   * its own). One REFUND leaf each. Absent when none (decodeBlock omits an empty list).
   */
  readonly refunds?: readonly Hex[]
  /**
   * Signed account messages (Transfer, Delegate, Undelegate, CreateValidator: staking/validators.ts), in
   * (signer, nonce) order, each valid on the state the ones before it leave. Absent when none.
   */
  readonly accountMessages?: readonly AccountMessage[]
  /**
   * keccak256(abi.encode(address[] validators, uint256[] powers)) of the set that signs this block
   * (addresses ascending): what a light client checks the block's certificate against (state/epoch.ts).
   */
  readonly validatorsHash: Hex
  /** The same hash of the set that signs the next block (it differs only after an epoch boundary). */
  readonly nextValidatorsHash: Hex
  /**
   * StandardMerkleTree root of the block's settlement leaves (state/settlement.ts): one FILL leaf per fill,
   * then the REFUND leaves; bytes32(0) when there are none. What a settler's `claim` proves a leaf against.
   */
  readonly settlementRoot: Hex
}

/**
 * The ABI-encodable block header (docs/settlement.md, `struct Header`): 9 static words, so
 * `abi.encode(header)` is 288 bytes and `blockHash = keccak256(abi.encode(header))`.
 */
export interface BlockHeader {
  readonly height: bigint
  readonly round: number
  /** The block time, unix milliseconds. */
  readonly timeMs: bigint
  readonly proposer: Address
  readonly parentHash: Hex
  /** keccak256 of the block body's bytes (CBOR, version byte first): everything else the block carries. */
  readonly bodyHash: Hex
  readonly settlementRoot: Hex
  readonly validatorsHash: Hex
  readonly nextValidatorsHash: Hex
}

/** The viem ABI parameter of `struct Header` (a static tuple), e.g. for the contracts' CommitProof. */
export const HEADER_TUPLE = {
  type: 'tuple',
  name: 'header',
  components: [
    { name: 'height', type: 'uint64' },
    { name: 'round', type: 'uint32' },
    { name: 'timeMs', type: 'uint64' },
    { name: 'proposer', type: 'address' },
    { name: 'parentHash', type: 'bytes32' },
    { name: 'bodyHash', type: 'bytes32' },
    { name: 'settlementRoot', type: 'bytes32' },
    { name: 'validatorsHash', type: 'bytes32' },
    { name: 'nextValidatorsHash', type: 'bytes32' },
  ],
} as const satisfies AbiParameter

/** `encodeAbiParameters(HEADER_ABI, [header])` is `abi.encode(header)`. */
export const HEADER_ABI = [HEADER_TUPLE] as const

/** Bytes of `abi.encode(header)`: 9 words. */
export const HEADER_BYTES = 9 * 32

/** Largest encoded block, version byte included. */
export const MAX_BLOCK_BYTES = 1024 * 1024
export const MAX_BLOCK_ASSIGNMENTS = 512
/** Also the most assignments one block re-routes (the rest wait for the next blocks). */
export const MAX_BLOCK_REASSIGNMENTS = 512
export const MAX_BLOCK_FILLS = 1024
export const MAX_BLOCK_STAKE_MOVES = 64
export const MAX_BLOCK_EVIDENCE = 32
export const MAX_BLOCK_UNJAILS = 64
export const MAX_BLOCK_REFUNDS = 1024
/** Most account messages in a block. */
export const MAX_BLOCK_ACCOUNT_MESSAGES = 256
/** Most precommits in a certificate (and validators in a set). */
export const MAX_CERTIFICATE_SIGNATURES = 1024
/**
 * Wire version of blocks (3: unjails and the validator-set hashes; 4: the header fields and the settlement
 * root first, the body as a nested byte string, the hash over the ABI header; 5: the body's refunds; 6:
 * the body's account messages).
 */
export const BLOCK_WIRE_VERSION = 6
/** Wire version of certificates. */
export const CERTIFICATE_WIRE_VERSION = 2

const UINT64_MAX = (1n << 64n) - 1n
const UINT256_MAX = (1n << 256n) - 1n
const BYTES32_RE = /^0x[0-9a-f]{64}$/
const ADDRESS_RE = /^0x[0-9a-f]{40}$/
const SIGNATURE_RE = /^0x[0-9a-f]{130}$/

function want(ok: boolean, what: string): void {
  if (!ok) throw new Error(`block: ${what} is out of range or not lowercase hex`)
}

function uint(x: bigint, max: bigint, what: string): Uint8Array {
  want(typeof x === 'bigint' && x >= 0n && x <= max, what)
  return uintToBytes(x)
}

function raw(hex: Hex, re: RegExp, what: string): Uint8Array {
  want(typeof hex === 'string' && re.test(hex), what)
  return hexToRaw(hex)
}

function assignmentToWire(a: BlockAssignment, what: string): unknown[] {
  return [
    raw(a.intentId, BYTES32_RE, `${what}.intentId`),
    uint(a.chainId, UINT256_MAX, `${what}.chainId`),
    raw(a.executor, ADDRESS_RE, `${what}.executor`),
    uint(a.deadline, UINT64_MAX, `${what}.deadline`),
  ]
}

function assignmentFromWire(x: unknown, what: string): BlockAssignment {
  const a = shape.array(x, what, 4)
  if (a.length !== 4) throw new P2PError('DECODE', `${what}: expected 4 fields`)
  return {
    intentId: bytesToHex(a[0], `${what}.intentId`, 32),
    chainId: bytesToUint(a[1], `${what}.chainId`, 32),
    executor: bytesToAddress(a[2], `${what}.executor`),
    deadline: bytesToUint(a[3], `${what}.deadline`, 8),
  }
}

function stakeMoveToWire(s: SignedStakeMove): unknown[] {
  const m = s.move
  return [
    raw(m.staker, ADDRESS_RE, 'stakeMove.staker'),
    uint(m.fromChainId, UINT256_MAX, 'stakeMove.fromChainId'),
    uint(m.toChainId, UINT256_MAX, 'stakeMove.toChainId'),
    uint(m.amount, UINT256_MAX, 'stakeMove.amount'),
    uint(m.durationBlocks, UINT64_MAX, 'stakeMove.durationBlocks'),
    uint(m.nonce, UINT256_MAX, 'stakeMove.nonce'),
    raw(s.signature, SIGNATURE_RE, 'stakeMove.signature'),
  ]
}

function stakeMoveFromWire(x: unknown, what: string): SignedStakeMove {
  const a = shape.array(x, what, 7)
  if (a.length !== 7) throw new P2PError('DECODE', `${what}: expected 7 fields`)
  return {
    move: {
      staker: bytesToAddress(a[0], `${what}.staker`),
      fromChainId: bytesToUint(a[1], `${what}.fromChainId`, 32),
      toChainId: bytesToUint(a[2], `${what}.toChainId`, 32),
      amount: bytesToUint(a[3], `${what}.amount`, 32),
      durationBlocks: bytesToUint(a[4], `${what}.durationBlocks`, 8),
      nonce: bytesToUint(a[5], `${what}.nonce`, 32),
    },
    signature: bytesToHex(a[6], `${what}.signature`, 65),
  }
}

function unjailToWire(s: SignedUnjail): unknown[] {
  return [
    raw(s.unjail.validator, ADDRESS_RE, 'unjail.validator'),
    uint(s.unjail.nonce, UINT256_MAX, 'unjail.nonce'),
    raw(s.signature, SIGNATURE_RE, 'unjail.signature'),
  ]
}

function unjailFromWire(x: unknown, what: string): SignedUnjail {
  const a = shape.array(x, what, 3)
  if (a.length !== 3) throw new P2PError('DECODE', `${what}: expected 3 fields`)
  return {
    unjail: {
      validator: bytesToAddress(a[0], `${what}.validator`),
      nonce: bytesToUint(a[1], `${what}.nonce`, 32),
    },
    signature: bytesToHex(a[2], `${what}.signature`, 65),
  }
}

function limit<T>(list: readonly T[], max: number, what: string): readonly T[] {
  if (list.length > max) throw new Error(`block: more than ${max} ${what}`)
  return list
}

/** The CBOR value of a block's body (an array, fields in declaration order). */
function bodyToWire(b: Block): unknown[] {
  if (b.intents.length !== b.assignments.length) throw new Error('block: intents must align with assignments')
  return [
    limit(b.assignments, MAX_BLOCK_ASSIGNMENTS, 'assignments').map((a, i) =>
      assignmentToWire(a, `assignments[${i}]`),
    ),
    b.intents.map((i) => encodeSignedIntent(i)),
    limit(b.reassignments, MAX_BLOCK_REASSIGNMENTS, 'reassignments').map((a, i) =>
      assignmentToWire(a, `reassignments[${i}]`),
    ),
    limit(b.fills, MAX_BLOCK_FILLS, 'fills').map(({ signature, ...fill }) =>
      fillCodec.encode({ fill, signature }),
    ),
    limit(b.stakeMoves, MAX_BLOCK_STAKE_MOVES, 'stake moves').map(stakeMoveToWire),
    limit(b.evidence, MAX_BLOCK_EVIDENCE, 'evidence').map((e) => [
      encodeVoteTuple(e.first),
      encodeVoteTuple(e.second),
    ]),
    b.lastCommit === null ? null : encodeCertificate(b.lastCommit),
    limit(b.unjails, MAX_BLOCK_UNJAILS, 'unjails').map(unjailToWire),
    limit(b.refunds ?? [], MAX_BLOCK_REFUNDS, 'refunds').map((id) => raw(id, BYTES32_RE, 'refunds')),
    limit(b.accountMessages ?? [], MAX_BLOCK_ACCOUNT_MESSAGES, 'account messages').map((m) =>
      accountMessageCodec.encode(m),
    ),
  ]
}

/** The body fields of a block, decoded. */
type BlockBody = Pick<
  Block,
  | 'assignments'
  | 'intents'
  | 'reassignments'
  | 'fills'
  | 'stakeMoves'
  | 'evidence'
  | 'lastCommit'
  | 'unjails'
  | 'refunds'
  | 'accountMessages'
>

function bodyFromWire(v: unknown): BlockBody {
  const a = shape.array(v, 'block body', 10)
  if (a.length !== 10) throw new P2PError('DECODE', 'block body: expected 10 fields')
  const list = (i: number, what: string, max: number) => shape.array(a[i], `block.${what}`, max)
  const assignments = list(0, 'assignments', MAX_BLOCK_ASSIGNMENTS).map((x, i) =>
    assignmentFromWire(x, `assignments[${i}]`),
  )
  const intents = list(1, 'intents', MAX_BLOCK_ASSIGNMENTS).map((x, i) =>
    decodeSignedIntent(shape.bytes(x, `intents[${i}]`, 8192)),
  )
  if (intents.length !== assignments.length)
    throw new P2PError('DECODE', 'block: intents do not align with assignments')
  const refunds = list(8, 'refunds', MAX_BLOCK_REFUNDS).map((x, i) => bytesToHex(x, `refunds[${i}]`, 32))
  const accountMessages = list(9, 'accountMessages', MAX_BLOCK_ACCOUNT_MESSAGES).map((x, i) =>
    accountMessageCodec.decode(shape.bytes(x, `accountMessages[${i}]`, accountMessageCodec.maxBytes)),
  )
  return {
    assignments,
    intents,
    reassignments: list(2, 'reassignments', MAX_BLOCK_REASSIGNMENTS).map((x, i) =>
      assignmentFromWire(x, `reassignments[${i}]`),
    ),
    fills: list(3, 'fills', MAX_BLOCK_FILLS).map((x, i) => {
      const { fill, signature } = fillCodec.decode(shape.bytes(x, `fills[${i}]`, fillCodec.maxBytes))
      return { ...fill, signature }
    }),
    stakeMoves: list(4, 'stakeMoves', MAX_BLOCK_STAKE_MOVES).map((x, i) =>
      stakeMoveFromWire(x, `stakeMoves[${i}]`),
    ),
    evidence: list(5, 'evidence', MAX_BLOCK_EVIDENCE).map((x, i) => {
      const pair = shape.array(x, `evidence[${i}]`, 2)
      if (pair.length !== 2) throw new P2PError('DECODE', `evidence[${i}]: expected two votes`)
      return {
        first: decodeVoteTuple(pair[0], `evidence[${i}].first`),
        second: decodeVoteTuple(pair[1], `evidence[${i}].second`),
      }
    }),
    lastCommit:
      a[6] === null ? null : decodeCertificate(shape.bytes(a[6], 'block.lastCommit', MAX_BLOCK_BYTES)),
    unjails: list(7, 'unjails', MAX_BLOCK_UNJAILS).map((x, i) => unjailFromWire(x, `unjails[${i}]`)),
    // Omitted when empty, like a block built without any: one value, one shape.
    ...(refunds.length === 0 ? {} : { refunds }),
    ...(accountMessages.length === 0 ? {} : { accountMessages }),
  }
}

/** The header fields a block carries on the wire (all of `BlockHeader` but the body hash, recomputed). */
type WireHeader = Pick<
  Block,
  | 'height'
  | 'round'
  | 'proposer'
  | 'time'
  | 'parentHash'
  | 'settlementRoot'
  | 'validatorsHash'
  | 'nextValidatorsHash'
>

/**
 * The outer CBOR value of a block: the header fields, then the body's own versioned CBOR bytes. The body
 * is a nested byte string so that the hash of received bytes needs no decoding of the body (one keccak
 * over its bytes, one over the 288-byte header).
 */
function blockToWire(b: Block, body: Uint8Array): unknown[] {
  want(Number.isInteger(b.round) && b.round >= 0 && b.round <= MAX_ROUND, 'round')
  want(Number.isSafeInteger(b.time) && b.time >= 0, 'time')
  return [
    uint(b.height, UINT64_MAX, 'height'),
    b.round,
    raw(b.proposer, ADDRESS_RE, 'proposer'),
    b.time,
    raw(b.parentHash, BYTES32_RE, 'parentHash'),
    raw(b.settlementRoot, BYTES32_RE, 'settlementRoot'),
    raw(b.validatorsHash, BYTES32_RE, 'validatorsHash'),
    raw(b.nextValidatorsHash, BYTES32_RE, 'nextValidatorsHash'),
    body,
  ]
}

/** The outer fields of a block as raw bytes, shape-checked (what the hash of received bytes needs). */
interface RawHeader {
  /** Minimal big-endian bytes, at most 8. */
  readonly height: Uint8Array
  readonly round: number
  readonly proposer: Uint8Array
  readonly time: number
  readonly parentHash: Uint8Array
  readonly settlementRoot: Uint8Array
  readonly validatorsHash: Uint8Array
  readonly nextValidatorsHash: Uint8Array
  readonly body: Uint8Array
}

function fixed(v: unknown, what: string, length: number): Uint8Array {
  const b = shape.bytes(v, what, length)
  if (b.length !== length) throw new P2PError('DECODE', `${what}: expected ${length} bytes`)
  return b
}

function rawHeaderFromWire(v: unknown): RawHeader {
  const a = shape.array(v, 'block', 9)
  if (a.length !== 9) throw new P2PError('DECODE', 'block: expected 9 fields')
  const height = shape.bytes(a[0], 'block.height', 8)
  if (height.length > 0 && height[0] === 0) throw new P2PError('DECODE', 'block.height: leading zero byte')
  return {
    height,
    round: shape.int(a[1], 'block.round', 0, MAX_ROUND),
    proposer: fixed(a[2], 'block.proposer', 20),
    time: shape.int(a[3], 'block.time'),
    parentHash: fixed(a[4], 'block.parentHash', 32),
    settlementRoot: fixed(a[5], 'block.settlementRoot', 32),
    validatorsHash: fixed(a[6], 'block.validatorsHash', 32),
    nextValidatorsHash: fixed(a[7], 'block.nextValidatorsHash', 32),
    body: shape.bytes(a[8], 'block.body', MAX_BLOCK_BYTES),
  }
}

function blockFromWire(r: RawHeader): WireHeader {
  return {
    height: bytesToUint(r.height, 'block.height', 8),
    round: r.round,
    proposer: bytesToAddress(r.proposer, 'block.proposer'),
    time: r.time,
    parentHash: bytesToHex(r.parentHash, 'block.parentHash', 32),
    settlementRoot: bytesToHex(r.settlementRoot, 'block.settlementRoot', 32),
    validatorsHash: bytesToHex(r.validatorsHash, 'block.validatorsHash', 32),
    nextValidatorsHash: bytesToHex(r.nextValidatorsHash, 'block.nextValidatorsHash', 32),
  }
}

const blockCodec = cborCodec<unknown>({
  version: BLOCK_WIRE_VERSION,
  maxBytes: MAX_BLOCK_BYTES,
  check: rawHeaderFromWire,
})

const bodyCodec = cborCodec<unknown>({
  version: BLOCK_WIRE_VERSION,
  maxBytes: MAX_BLOCK_BYTES,
  check: bodyFromWire,
})

/** A block's canonical bytes and its hash, computed once per block object. */
interface Encoded {
  readonly bytes: Uint8Array
  readonly header: BlockHeader
  hash?: Hex
}

/**
 * The encodings of blocks encoded or decoded before. A block is a deeply readonly value, and one proposal is
 * encoded, decoded, hashed and stored several times on every node (the consensus message, the held
 * block, the WAL entry of the precommit, the commit batch): each block object is encoded once.
 */
const encoded = new WeakMap<Block, Encoded>()

function encodedOf(block: Block): Encoded {
  let e = encoded.get(block)
  if (e === undefined) {
    const body = bodyCodec.encode(bodyToWire(block))
    const bytes = blockCodec.encode(blockToWire(block, body))
    e = { bytes, header: headerOf(block, rawToHex(keccak256Bytes(body))) }
    encoded.set(block, e)
  }
  return e
}

function rawToHex(b: Uint8Array): Hex {
  return `0x${Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')}`
}

function headerOf(h: WireHeader, bodyHash: Hex): BlockHeader {
  return {
    height: h.height,
    round: h.round,
    timeMs: BigInt(h.time),
    proposer: h.proposer,
    parentHash: h.parentHash,
    bodyHash,
    settlementRoot: h.settlementRoot,
    validatorsHash: h.validatorsHash,
    nextValidatorsHash: h.nextValidatorsHash,
  }
}

/**
 * The canonical encoding of a block: version byte, then deterministic CBOR of the header fields and the
 * body bytes (themselves a version byte and deterministic CBOR). Throws a plain Error on a field out of
 * range (a programmer error) and P2PError TOO_LARGE above {@link MAX_BLOCK_BYTES}.
 */
export function encodeBlock(block: Block): Uint8Array {
  return encodedOf(block).bytes
}

/**
 * Decodes {@link encodeBlock}'s output. Only the canonical encoding is accepted (it must re-encode to the
 * same bytes), so a block has one byte form and one hash. Throws P2PError DECODE or TOO_LARGE.
 */
export function decodeBlock(bytes: Uint8Array): Block {
  const r = blockCodec.decode(bytes) as RawHeader
  const block: Block = { ...blockFromWire(r), ...(bodyCodec.decode(r.body) as BlockBody) }
  let again: Uint8Array
  try {
    again = encodeBlock(block)
  } catch (err) {
    throw new P2PError('DECODE', `block: does not re-encode: ${(err as Error).message}`)
  }
  if (!Buffer.from(again).equals(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))) {
    encoded.delete(block)
    throw new P2PError('DECODE', 'block: not canonically encoded')
  }
  return block
}

/**
 * `abi.encode(header)`: the 9 words written by hand (every field is a static type, so the encoding is the
 * fields left-padded to 32 bytes, in order); equal to `encodeAbiParameters(HEADER_ABI, [header])`, several
 * times faster (the hash of every block on every height goes through it).
 */
export function encodeHeader(h: BlockHeader): Uint8Array {
  want(typeof h.height === 'bigint' && h.height >= 0n && h.height <= UINT64_MAX, 'header.height')
  want(Number.isInteger(h.round) && h.round >= 0 && h.round <= 0xffff_ffff, 'header.round')
  want(typeof h.timeMs === 'bigint' && h.timeMs >= 0n && h.timeMs <= UINT64_MAX, 'header.timeMs')
  const out = Buffer.alloc(HEADER_BYTES)
  out.writeBigUInt64BE(h.height, 24)
  out.writeUInt32BE(h.round, 60)
  out.writeBigUInt64BE(h.timeMs, 88)
  const put = (hex: Hex, re: RegExp, word: number, what: string) => {
    want(typeof hex === 'string' && re.test(hex), what)
    out.write(hex.slice(2), word * 32 + 32 - (hex.length - 2) / 2, 'hex')
  }
  put(h.proposer, ADDRESS_RE, 3, 'header.proposer')
  put(h.parentHash, BYTES32_RE, 4, 'header.parentHash')
  put(h.bodyHash, BYTES32_RE, 5, 'header.bodyHash')
  put(h.settlementRoot, BYTES32_RE, 6, 'header.settlementRoot')
  put(h.validatorsHash, BYTES32_RE, 7, 'header.validatorsHash')
  put(h.nextValidatorsHash, BYTES32_RE, 8, 'header.nextValidatorsHash')
  return new Uint8Array(out.buffer, out.byteOffset, HEADER_BYTES)
}

/** `keccak256(abi.encode(header))`, lowercase hex: the block hash precommits sign. */
export function headerHash(h: BlockHeader): Hex {
  return rawToHex(keccak256Bytes(encodeHeader(h)))
}

/** The header of a block (its body hash computed from its encoding, once per block object). */
export function blockHeader(block: Block): BlockHeader {
  return encodedOf(block).header
}

/**
 * The hash of a block given as its encoded bytes, without decoding the body: the header fields, the
 * keccak256 of the body bytes, then {@link headerHash}. Equal to `blockHash(decodeBlock(bytes))` for every
 * block `decodeBlock` accepts. Throws P2PError DECODE (or TOO_LARGE) when the outer encoding or a header
 * field is malformed.
 */
export function blockHashOfBytes(bytes: Uint8Array): Hex {
  const r = blockCodec.decode(bytes) as RawHeader
  // The header words straight from the raw fields (no hex round trip): this runs on every proposal.
  const out = new Uint8Array(HEADER_BYTES)
  const view = new DataView(out.buffer)
  out.set(r.height, 32 - r.height.length)
  view.setUint32(60, r.round)
  view.setUint32(88, Math.floor(r.time / 2 ** 32))
  view.setUint32(92, r.time >>> 0)
  out.set(r.proposer, 3 * 32 + 12)
  out.set(r.parentHash, 4 * 32)
  out.set(keccak256Bytes(r.body), 5 * 32)
  out.set(r.settlementRoot, 6 * 32)
  out.set(r.validatorsHash, 7 * 32)
  out.set(r.nextValidatorsHash, 8 * 32)
  return rawToHex(keccak256Bytes(out))
}

/** `keccak256(abi.encode(blockHeader(block)))`. */
export function blockHash(block: Block): Hex {
  const e = encodedOf(block)
  if (e.hash === undefined) e.hash = headerHash(e.header)
  return e.hash
}

// ---------------------------------------------------------------------------------------------------
// Commit certificates.

/**
 * One precommit of a certificate; the vote it signs is
 * `Vote(2, height, round, blockHash, timestampMs, keccak256(extension))`.
 */
export interface CertificateSignature {
  readonly validator: Address
  readonly signature: Hex
  /** The signer's clock when it precommitted, unix milliseconds (BFT time). */
  readonly timestampMs: number
  /** Its vote extension (the application's: Murmur puts the signer's rollup observations there). */
  readonly extension: Uint8Array
}

/** More than 2/3 of the voting power of precommits for `blockHash` at (`height`, `round`). */
export interface CommitCertificate {
  readonly height: bigint
  readonly round: number
  readonly blockHash: Hex
  /** Sorted by validator address, one per validator. */
  readonly precommits: readonly CertificateSignature[]
}

/** A certificate from signed precommits for one block (any order; sorted by validator, duplicates dropped). */
export function certificateFromVotes(votes: readonly SignedVote[]): CommitCertificate {
  const first = votes[0]
  if (first === undefined || first.blockHash === null)
    throw new Error('certificate: needs precommits for a block')
  const byValidator = new Map<string, CertificateSignature>()
  for (const v of votes) {
    if (
      v.kind !== 'precommit' ||
      v.height !== first.height ||
      v.round !== first.round ||
      v.blockHash !== first.blockHash
    ) {
      throw new Error('certificate: votes for different targets')
    }
    if (!byValidator.has(v.validator))
      byValidator.set(v.validator, {
        validator: v.validator,
        signature: v.signature,
        timestampMs: v.timestampMs,
        extension: v.extension,
      })
  }
  const precommits = [...byValidator.values()].sort((a, b) => (a.validator < b.validator ? -1 : 1))
  return { height: first.height, round: first.round, blockHash: first.blockHash, precommits }
}

const certCodec = cborCodec<unknown>({
  version: CERTIFICATE_WIRE_VERSION,
  maxBytes: 128 + MAX_CERTIFICATE_SIGNATURES * (112 + MAX_VOTE_EXTENSION_BYTES),
  check(v): CommitCertificate {
    const a = shape.array(v, 'certificate', 4)
    if (a.length !== 4) throw new P2PError('DECODE', 'certificate: expected 4 fields')
    let last = ''
    const precommits = shape.array(a[3], 'certificate.precommits', MAX_CERTIFICATE_SIGNATURES).map((x, i) => {
      const p = shape.array(x, `precommits[${i}]`, 4)
      if (p.length !== 4) throw new P2PError('DECODE', `precommits[${i}]: expected 4 fields`)
      const validator = bytesToAddress(p[0], `precommits[${i}].validator`)
      if (validator <= last) throw new P2PError('DECODE', 'certificate: precommits not sorted by validator')
      last = validator
      return {
        validator,
        signature: bytesToHex(p[1], `precommits[${i}].signature`, 65),
        timestampMs: shape.int(p[2], `precommits[${i}].timestampMs`),
        extension: shape.bytes(p[3], `precommits[${i}].extension`, MAX_VOTE_EXTENSION_BYTES),
      }
    })
    return {
      height: bytesToUint(a[0], 'certificate.height', 8),
      round: shape.int(a[1], 'certificate.round', 0, MAX_ROUND),
      blockHash: bytesToHex(a[2], 'certificate.blockHash', 32),
      precommits,
    }
  },
})

/** Encodes a certificate (CBOR, version byte). */
export function encodeCertificate(c: CommitCertificate): Uint8Array {
  want(Number.isInteger(c.round) && c.round >= 0 && c.round <= MAX_ROUND, 'certificate.round')
  return certCodec.encode([
    uint(c.height, UINT64_MAX, 'certificate.height'),
    c.round,
    raw(c.blockHash, BYTES32_RE, 'certificate.blockHash'),
    limit(c.precommits, MAX_CERTIFICATE_SIGNATURES, 'precommits').map((p) => [
      raw(p.validator, ADDRESS_RE, 'certificate.validator'),
      raw(p.signature, SIGNATURE_RE, 'certificate.signature'),
      stamp(p.timestampMs),
      ext(p.extension),
    ]),
  ])
}

function stamp(ms: number): number {
  want(Number.isSafeInteger(ms) && ms >= 0, 'certificate.timestampMs')
  return ms
}

function ext(e: Uint8Array): Uint8Array {
  want(e instanceof Uint8Array && e.length <= MAX_VOTE_EXTENSION_BYTES, 'certificate.extension')
  return e
}

/** Decodes {@link encodeCertificate}'s output; throws P2PError DECODE or TOO_LARGE. */
export function decodeCertificate(bytes: Uint8Array): CommitCertificate {
  return certCodec.decode(bytes) as CommitCertificate
}

/** Why a certificate does not prove a commit. */
export type CertificateRejectCode =
  | 'WRONG_TARGET'
  | 'DUPLICATE_SIGNER'
  | 'NOT_VALIDATOR'
  | 'BAD_SIGNATURE'
  | 'NO_QUORUM'

export type CertificateVerdict =
  | { readonly ok: true; readonly power: bigint; readonly total: bigint }
  | { readonly ok: false; readonly code: CertificateRejectCode; readonly message: string }

/**
 * Checks that `cert` proves the commit of `blockHash` at (`height`, `round`) by `validators` (voting power by
 * lowercase address): every precommit is a distinct member's signature over `Vote(2, height, round,
 * blockHash, timestampMs, keccak256(extension))` under `networkDomain(networkId)`, and their power w
 * satisfies `w * 3 > total * 2`. Pure apart from signature recovery (all at once); the same check an
 * EIP-712 verifier contract would run.
 */
export async function verifyCertificate(
  cert: CommitCertificate,
  validators: ReadonlyMap<string, bigint>,
  height: bigint,
  round: number,
  blockHash: Hex,
  networkId: string,
  recover: Recover = recoverAddress,
): Promise<CertificateVerdict> {
  const fail = (code: CertificateRejectCode, message: string): CertificateVerdict => ({
    ok: false,
    code,
    message,
  })
  if (cert.height !== height || cert.round !== round || cert.blockHash !== blockHash) {
    return fail('WRONG_TARGET', `certificate is for ${cert.height}/${cert.round}/${cert.blockHash}`)
  }
  let total = 0n
  for (const p of validators.values()) if (p > 0n) total += p
  const seen = new Set<string>()
  let power = 0n
  for (const p of cert.precommits) {
    if (seen.has(p.validator)) return fail('DUPLICATE_SIGNER', `${p.validator} signs twice`)
    seen.add(p.validator)
    const w = validators.get(p.validator)
    if (w === undefined || w <= 0n) return fail('NOT_VALIDATOR', `${p.validator} is not a validator`)
    power += w
  }
  const signers = await Promise.all(
    cert.precommits.map((p) =>
      recover(
        voteDigest(networkId, {
          kind: 'precommit',
          height,
          round,
          blockHash,
          timestampMs: p.timestampMs,
          extension: p.extension,
        }),
        p.signature,
      ).catch(() => undefined),
    ),
  )
  for (const [i, p] of cert.precommits.entries()) {
    const signer = signers[i]
    if (signer === undefined) return fail('BAD_SIGNATURE', `precommit of ${p.validator} does not recover`)
    if (signer !== p.validator)
      return fail('BAD_SIGNATURE', `precommit of ${p.validator} signed by ${signer}`)
  }
  if (!hasTwoThirds(power, total)) return fail('NO_QUORUM', `${power} of ${total} power`)
  return { ok: true, power, total }
}

// ---------------------------------------------------------------------------------------------------
// Storage and sync.

/** A committed block (its canonical bytes) with its certificate, as stored and as served to syncing peers. */
export interface SyncedBlock {
  readonly bytes: Uint8Array
  readonly certificate: CommitCertificate
}

/** Value of the `blocks` sublevel: CBOR `[blockBytes, certificateBytes]`. */
export function encodeStoredBlock(blockBytes: Uint8Array, certBytes: Uint8Array): Uint8Array {
  return cborEncode([blockBytes, certBytes])
}

/** Inverse of {@link encodeStoredBlock}: the raw parts. Throws P2PError DECODE. */
export function decodeStoredBlockParts(value: Uint8Array): { blockBytes: Uint8Array; certBytes: Uint8Array } {
  let v: unknown
  try {
    v = cborDecode(value, { strict: true })
  } catch (err) {
    throw new P2PError('DECODE', `stored block: ${(err as Error).message}`)
  }
  const a = shape.array(v, 'stored block', 2)
  return {
    blockBytes: shape.bytes(a[0], 'stored block', MAX_BLOCK_BYTES),
    certBytes: shape.bytes(a[1], 'stored certificate'),
  }
}

/** `blocks-by-range` request: up to `count` blocks from height `from`. */
export interface BlocksByRangeRequest {
  readonly from: bigint
  readonly count: number
}

/** Most blocks in one `blocks-by-range` answer. */
export const MAX_BLOCKS_PER_RANGE = 64
/** Byte budget of one `blocks-by-range` answer (the answerer stops adding blocks before it). */
export const BLOCKS_BY_RANGE_MAX_BYTES = 8 * 1024 * 1024

const rangeRequestInner = cborCodec<unknown>({
  version: 1,
  maxBytes: 32,
  check(v): BlocksByRangeRequest {
    const a = shape.array(v, 'blocks-by-range', 2)
    if (a.length !== 2) throw new P2PError('DECODE', 'blocks-by-range: expected 2 fields')
    return { from: bytesToUint(a[0], 'from', 8), count: shape.int(a[1], 'count', 1, MAX_BLOCKS_PER_RANGE) }
  },
})

const blocksByRangeRequestCodec: Codec<BlocksByRangeRequest> = {
  version: 1,
  maxBytes: 32,
  encode(req) {
    return rangeRequestInner.encode([uint(req.from, UINT64_MAX, 'from'), req.count])
  },
  decode(bytes) {
    return rangeRequestInner.decode(bytes) as BlocksByRangeRequest
  },
}

const rangeResponseInner = cborCodec<unknown>({
  version: 1,
  maxBytes: BLOCKS_BY_RANGE_MAX_BYTES + MAX_BLOCK_BYTES + 1024,
  check(v): SyncedBlock[] {
    return shape.array(v, 'blocks', MAX_BLOCKS_PER_RANGE).map((x, i) => {
      const pair = shape.array(x, `blocks[${i}]`, 2)
      if (pair.length !== 2) throw new P2PError('DECODE', `blocks[${i}]: expected 2 fields`)
      return {
        bytes: shape.bytes(pair[0], `blocks[${i}].block`, MAX_BLOCK_BYTES),
        certificate: decodeCertificate(shape.bytes(pair[1], `blocks[${i}].certificate`)),
      }
    })
  },
})

const blocksByRangeResponseCodec: Codec<SyncedBlock[]> = {
  version: 1,
  maxBytes: BLOCKS_BY_RANGE_MAX_BYTES + MAX_BLOCK_BYTES + 1024,
  encode(blocks) {
    return rangeResponseInner.encode(blocks.map((b) => [b.bytes, encodeCertificate(b.certificate)]))
  },
  decode(bytes) {
    return rangeResponseInner.decode(bytes) as SyncedBlock[]
  },
}

/**
 * `/murmur/<networkId>/blocks-by-range/1`: committed blocks with their certificates, in height order from
 * `from`, stopping at the first height the answerer does not have. The answerer's handler is
 * `(req) => driver.getBlocksRange(req.from, req.count)`.
 */
export const BLOCKS_BY_RANGE_PROTOCOL: ProtocolSpec<BlocksByRangeRequest, SyncedBlock[]> = {
  name: 'blocks-by-range',
  request: blocksByRangeRequestCodec,
  response: blocksByRangeResponseCodec,
  timeoutMs: 15_000,
  maxInboundStreams: 2,
}

// ---------------------------------------------------------------------------------------------------
// JSON (`GET /v1/blocks/:height`, INTERFACES.md conventions).

function assignmentJson(a: BlockAssignment) {
  return {
    intentId: a.intentId,
    chainId: a.chainId.toString(),
    executor: a.executor,
    deadline: Number(a.deadline),
  }
}

function voteJson(v: SignedVote) {
  return {
    kind: v.kind,
    height: v.height.toString(),
    round: v.round,
    blockHash: v.blockHash,
    timestampMs: v.timestampMs,
    extension: `0x${Buffer.from(v.extension).toString('hex')}`,
    validator: v.validator,
    signature: v.signature,
  }
}

/**
 * The body of `GET /v1/blocks/:height`: big integers as decimal strings, `time` in unix seconds (`timeMs`
 * keeps the block's millisecond time), deadlines in unix seconds; with `networkId`, each stake move also
 * shows its id (the id `POST /v1/stake-moves` answered), and each unjail its id (`POST /v1/unjail`'s).
 */
export function blockToJson(
  block: Block,
  hash: Hex,
  certificate: CommitCertificate | null,
  networkId?: string,
) {
  return {
    height: block.height.toString(),
    hash,
    round: block.round,
    proposer: block.proposer,
    time: Math.floor(block.time / 1000),
    timeMs: block.time,
    parentHash: block.parentHash,
    bodyHash: blockHeader(block).bodyHash,
    settlementRoot: block.settlementRoot,
    assignments: block.assignments.map(assignmentJson),
    reassignments: block.reassignments.map(assignmentJson),
    stakeMoves: block.stakeMoves.map((s) => ({
      ...(networkId === undefined ? {} : { id: stakeMoveId(networkId, s.move) }),
      move: {
        staker: s.move.staker,
        fromChainId: s.move.fromChainId.toString(),
        toChainId: s.move.toChainId.toString(),
        amount: s.move.amount.toString(),
        durationBlocks: s.move.durationBlocks.toString(),
        nonce: s.move.nonce.toString(),
      },
      signature: s.signature,
    })),
    fills: block.fills.map((f) => ({
      intentId: f.intentId,
      chainId: f.chainId.toString(),
      txHash: f.txHash,
      blockNumber: f.blockNumber.toString(),
      blockHash: f.blockHash,
      executor: f.executor,
      signature: f.signature,
    })),
    evidence: block.evidence.map((e) => ({
      validator: e.first.validator,
      first: voteJson(e.first),
      second: voteJson(e.second),
    })),
    lastCommit: block.lastCommit === null ? null : certificateJson(block.lastCommit),
    accountMessages: (block.accountMessages ?? []).map(accountMessageToJson),
    unjails: block.unjails.map((u) => ({
      ...(networkId === undefined ? {} : { id: unjailId(networkId, u.unjail) }),
      unjail: { validator: u.unjail.validator, nonce: u.unjail.nonce.toString() },
      signature: u.signature,
    })),
    refunds: [...(block.refunds ?? [])],
    validatorsHash: block.validatorsHash,
    nextValidatorsHash: block.nextValidatorsHash,
    certificate: certificate === null ? null : certificateJson(certificate),
  }
}

/** A certificate in the JSON conventions (extensions as hex). */
export function certificateJson(c: CommitCertificate) {
  return {
    height: c.height.toString(),
    round: c.round,
    blockHash: c.blockHash,
    precommits: c.precommits.map((p) => ({
      validator: p.validator,
      signature: p.signature,
      timestampMs: p.timestampMs,
      extension: `0x${Buffer.from(p.extension).toString('hex')}`,
    })),
  }
}
