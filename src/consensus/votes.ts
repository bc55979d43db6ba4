/**
 * Signed consensus votes and proposals: EIP-712 typed data under `networkDomain(networkId)` (INTERFACES.md,
 * "Other signed objects": validators' own types are defined the same way), so any Ethereum tool or contract
 * can check a vote or a commit certificate:
 *
 *   Proposal(uint64 height,uint32 round,bytes32 blockHash,int32 validRound)
 *   Vote(uint8 kind,uint64 height,uint32 round,bytes32 blockHash)      kind 1 prevote, 2 precommit;
 *                                                                      nil is bytes32(0)
 *
 * Also their CBOR tuples (shared by blocks' evidence, the `consensus` topic and the WAL) and the conversions
 * to and from the core's view. Nothing here knows blocks: block.ts and messages.ts build on this file.
 */
import type { Address, Hex, LocalAccount, TypedData } from 'viem'
import { bytesToAddress, bytesToHex, bytesToUint, hexToRaw, uintToBytes } from '../codec/bytes.ts'
import { shape } from '../codec/cbor.ts'
import { hashNetworkTyped, networkDomain } from '../codec/eip712.ts'
import { keccak256Bytes } from '../crypto/keccak.ts'
import { recoverAddress } from '../crypto/recover.ts'
import { P2PError } from '../errors.ts'
import type { Proposal, Vote, VoteKind } from './types.ts'

/** `Proposal(uint64 height,uint32 round,bytes32 blockHash,int32 validRound)` */
export const PROPOSAL_TYPES = {
  Proposal: [
    { name: 'height', type: 'uint64' },
    { name: 'round', type: 'uint32' },
    { name: 'blockHash', type: 'bytes32' },
    { name: 'validRound', type: 'int32' },
  ],
} as const satisfies TypedData

/**
 * `Vote(uint8 kind,uint64 height,uint32 round,bytes32 blockHash,uint64 timestampMs,bytes32 extensionHash)`.
 * `timestampMs` is the signer's clock (BFT time: a block's time is the stake-weighted median of the
 * timestamps of the precommits its last commit carries); `extensionHash` is keccak256 of the vote
 * extension of a non-nil precommit (ABCI++), bytes32(0) when there is none.
 */
export const VOTE_TYPES = {
  Vote: [
    { name: 'kind', type: 'uint8' },
    { name: 'height', type: 'uint64' },
    { name: 'round', type: 'uint32' },
    { name: 'blockHash', type: 'bytes32' },
    { name: 'timestampMs', type: 'uint64' },
    { name: 'extensionHash', type: 'bytes32' },
  ],
} as const satisfies TypedData

/** Largest vote extension (a validator's observation of every rollup). */
export const MAX_VOTE_EXTENSION_BYTES = 2048

const NO_EXTENSION = new Uint8Array(0)

/** keccak256 of an extension; bytes32(0) for none. */
export function extensionHash(extension: Uint8Array | undefined): Hex {
  if (extension === undefined || extension.length === 0) return NIL_HASH
  return `0x${Buffer.from(keccak256Bytes(extension)).toString('hex')}`
}

/** Signed form of a vote kind (CometBFT's SignedMsgType numbering: prevote 1, precommit 2). */
export const VOTE_KIND_CODE: { readonly [K in VoteKind]: 1 | 2 } = { prevote: 1, precommit: 2 }

/** The block hash a vote for nil signs. */
export const NIL_HASH: Hex = `0x${'00'.repeat(32)}`

/** Rounds are uint32 in the typed data and validRound is int32: rounds stay below 2^31. */
export const MAX_ROUND = 0x7fff_ffff
const UINT64_MAX = (1n << 64n) - 1n
const BYTES32_RE = /^0x[0-9a-f]{64}$/
const ADDRESS_RE = /^0x[0-9a-f]{40}$/
const SIGNATURE_RE = /^0x[0-9a-f]{130}$/

/** What a proposer signs. */
export interface ProposalBody {
  readonly height: bigint
  readonly round: number
  readonly blockHash: Hex
  /** -1 for a fresh block. */
  readonly validRound: number
}

/** A proposal with the proposer's address and 65-byte signature. */
export interface SignedProposal extends ProposalBody {
  /** Lowercase. */
  readonly validator: Address
  readonly signature: Hex
}

/** What a validator signs when it votes; `blockHash: null` is a vote for nil. */
export interface VoteBody {
  readonly kind: VoteKind
  readonly height: bigint
  readonly round: number
  readonly blockHash: Hex | null
  /** The signer's clock, unix milliseconds (default 0). */
  readonly timestampMs?: number
  /** The vote extension of a non-nil precommit (default none). */
  readonly extension?: Uint8Array
}

/** A vote with the voter's address and 65-byte signature. */
export interface SignedVote extends VoteBody {
  readonly timestampMs: number
  readonly extension: Uint8Array
  /** Lowercase. */
  readonly validator: Address
  readonly signature: Hex
}

function checkRound(round: number, what: string): void {
  if (!Number.isInteger(round) || round < 0 || round > MAX_ROUND)
    throw new Error(`${what}: bad round ${round}`)
}

function checkStamp(v: VoteBody): void {
  const ts = v.timestampMs ?? 0
  if (!Number.isSafeInteger(ts) || ts < 0) throw new Error(`vote: bad timestamp ${ts}`)
  const ext = v.extension ?? NO_EXTENSION
  if (ext.length > MAX_VOTE_EXTENSION_BYTES) throw new Error('vote: extension too large')
  if (ext.length > 0 && (v.kind !== 'precommit' || v.blockHash === null))
    throw new Error('vote: only a non-nil precommit carries an extension')
}

function checkHeight(height: bigint, what: string): void {
  if (typeof height !== 'bigint' || height < 0n || height > UINT64_MAX)
    throw new Error(`${what}: bad height ${height}`)
}

/** EIP-712 digest of a proposal under `networkDomain(networkId)`. */
export function proposalDigest(networkId: string, p: ProposalBody): Hex {
  return hashNetworkTyped(networkId, 'Proposal', PROPOSAL_TYPES, {
    height: p.height,
    round: p.round,
    blockHash: p.blockHash,
    validRound: p.validRound,
  })
}

/** EIP-712 digest of a vote under `networkDomain(networkId)`; nil signs {@link NIL_HASH}. */
export function voteDigest(networkId: string, v: VoteBody): Hex {
  return hashNetworkTyped(networkId, 'Vote', VOTE_TYPES, {
    kind: VOTE_KIND_CODE[v.kind],
    height: v.height,
    round: v.round,
    blockHash: v.blockHash ?? NIL_HASH,
    timestampMs: BigInt(v.timestampMs ?? 0),
    extensionHash: extensionHash(v.extension),
  })
}

/** The complete typed data of a vote, for any EIP-712 signer or verifier (a contract included). */
export function voteTypedData(networkId: string, v: VoteBody) {
  return {
    domain: networkDomain(networkId),
    types: VOTE_TYPES,
    primaryType: 'Vote',
    message: {
      kind: VOTE_KIND_CODE[v.kind],
      height: v.height,
      round: v.round,
      blockHash: v.blockHash ?? NIL_HASH,
      timestampMs: BigInt(v.timestampMs ?? 0),
      extensionHash: extensionHash(v.extension),
    },
  } as const
}

/** The complete typed data of a proposal. */
export function proposalTypedData(networkId: string, p: ProposalBody) {
  return {
    domain: networkDomain(networkId),
    types: PROPOSAL_TYPES,
    primaryType: 'Proposal',
    message: { height: p.height, round: p.round, blockHash: p.blockHash, validRound: p.validRound },
  } as const
}

type Signer = Pick<LocalAccount, 'address' | 'signTypedData'>

/** Signs a proposal with the validator's account (deterministic: RFC 6979). */
export async function signProposal(
  account: Signer,
  networkId: string,
  p: ProposalBody,
): Promise<SignedProposal> {
  checkHeight(p.height, 'proposal')
  checkRound(p.round, 'proposal')
  if (!Number.isInteger(p.validRound) || p.validRound < -1 || p.validRound >= p.round) {
    throw new Error(`proposal: bad validRound ${p.validRound}`)
  }
  if (!BYTES32_RE.test(p.blockHash)) throw new Error('proposal: blockHash must be lowercase bytes32 hex')
  const signature = (await account.signTypedData(proposalTypedData(networkId, p))).toLowerCase() as Hex
  return { ...p, validator: account.address.toLowerCase() as Address, signature }
}

/** Signs a vote with the validator's account (deterministic: RFC 6979). */
export async function signVote(account: Signer, networkId: string, v: VoteBody): Promise<SignedVote> {
  checkHeight(v.height, 'vote')
  checkRound(v.round, 'vote')
  if (v.blockHash !== null && !BYTES32_RE.test(v.blockHash))
    throw new Error('vote: blockHash must be lowercase bytes32 hex')
  checkStamp(v)
  const body = { ...v, timestampMs: v.timestampMs ?? 0, extension: v.extension ?? NO_EXTENSION }
  const signature = (await account.signTypedData(voteTypedData(networkId, body))).toLowerCase() as Hex
  return { ...body, validator: account.address.toLowerCase() as Address, signature }
}

/** Address recovery, injectable (tests, a worker pool). */
export type Recover = (digest: Hex, signature: Hex) => Promise<Address>

/** The signer of a vote (lowercase); rejects with SignatureError when nothing recovers. */
export function recoverVoteSigner(networkId: string, v: SignedVote, recover: Recover = recoverAddress) {
  return recover(voteDigest(networkId, v), v.signature)
}

/** The signer of a proposal (lowercase); rejects with SignatureError when nothing recovers. */
export function recoverProposalSigner(
  networkId: string,
  p: SignedProposal,
  recover: Recover = recoverAddress,
) {
  return recover(proposalDigest(networkId, p), p.signature)
}

/** True when the vote's signature recovers to `vote.validator`. Never throws on a bad signature. */
export async function verifyVoteSignature(
  networkId: string,
  v: SignedVote,
  recover: Recover = recoverAddress,
): Promise<boolean> {
  try {
    return (await recoverVoteSigner(networkId, v, recover)) === v.validator
  } catch {
    return false
  }
}

// ---------------------------------------------------------------------------------------------------
// Between the signed forms and the core's (core heights are numbers, values are the block hashes).

/** The core's view of a signed vote. */
export function toCoreVote(v: SignedVote): Vote {
  return { kind: v.kind, height: Number(v.height), round: v.round, value: v.blockHash, from: v.validator }
}

/** The core's view of a signed proposal. */
export function toCoreProposal(p: SignedProposal): Proposal {
  return {
    height: Number(p.height),
    round: p.round,
    value: p.blockHash,
    validRound: p.validRound,
    from: p.validator,
  }
}

/** What to sign for a core vote. */
export function voteBodyOf(v: Vote): VoteBody {
  return { kind: v.kind, height: BigInt(v.height), round: v.round, blockHash: v.value as Hex | null }
}

/** What to sign for a core proposal. */
export function proposalBodyOf(p: Proposal): ProposalBody {
  return { height: BigInt(p.height), round: p.round, blockHash: p.value as Hex, validRound: p.validRound }
}

/** A key naming one signed vote (kind, height, round, voter, value). */
export function voteKey(v: {
  kind: VoteKind
  height: number | bigint
  round: number
  from: string
  value: string | null
}) {
  return `${v.kind}/${v.height}/${v.round}/${v.from}/${v.value ?? 'nil'}`
}

// ---------------------------------------------------------------------------------------------------
// Wire tuples (CBOR arrays), shared with block.ts (evidence), messages.ts and the WAL.

/** `[kind, height, round, blockHash (32 zero bytes for nil), validator, signature, timestampMs, extension]` */
export type VoteTuple = [number, Uint8Array, number, Uint8Array, Uint8Array, Uint8Array, number, Uint8Array]

export function encodeVoteTuple(v: SignedVote): VoteTuple {
  checkHeight(v.height, 'vote')
  checkRound(v.round, 'vote')
  if (v.blockHash !== null && !BYTES32_RE.test(v.blockHash)) throw new Error('vote: bad blockHash')
  if (!ADDRESS_RE.test(v.validator)) throw new Error('vote: bad validator')
  if (!SIGNATURE_RE.test(v.signature)) throw new Error('vote: bad signature')
  checkStamp(v)
  return [
    VOTE_KIND_CODE[v.kind],
    uintToBytes(v.height),
    v.round,
    hexToRaw(v.blockHash ?? NIL_HASH),
    hexToRaw(v.validator),
    hexToRaw(v.signature),
    v.timestampMs,
    v.extension,
  ]
}

export function decodeVoteTuple(x: unknown, what: string): SignedVote {
  const a = shape.array(x, what, 8)
  if (a.length !== 8) throw new P2PError('DECODE', `${what}: expected 8 fields`)
  const code = shape.int(a[0], `${what}.kind`, 1, 2)
  const hash = bytesToHex(a[3], `${what}.blockHash`, 32)
  const extension = shape.bytes(a[7], `${what}.extension`, MAX_VOTE_EXTENSION_BYTES)
  if (extension.length > 0 && (code !== 2 || hash === NIL_HASH))
    throw new P2PError('DECODE', `${what}: only a non-nil precommit carries an extension`)
  return {
    kind: code === 1 ? 'prevote' : 'precommit',
    height: bytesToUint(a[1], `${what}.height`, 8),
    round: shape.int(a[2], `${what}.round`, 0, MAX_ROUND),
    blockHash: hash === NIL_HASH ? null : hash,
    timestampMs: shape.int(a[6], `${what}.timestampMs`),
    extension,
    validator: bytesToAddress(a[4], `${what}.validator`),
    signature: bytesToHex(a[5], `${what}.signature`, 65),
  }
}

/** `[height, round, blockHash, validRound, validator, signature]` */
export type ProposalTuple = [Uint8Array, number, Uint8Array, number, Uint8Array, Uint8Array]

export function encodeProposalTuple(p: SignedProposal): ProposalTuple {
  checkHeight(p.height, 'proposal')
  checkRound(p.round, 'proposal')
  if (!BYTES32_RE.test(p.blockHash)) throw new Error('proposal: bad blockHash')
  if (!ADDRESS_RE.test(p.validator)) throw new Error('proposal: bad validator')
  if (!SIGNATURE_RE.test(p.signature)) throw new Error('proposal: bad signature')
  return [
    uintToBytes(p.height),
    p.round,
    hexToRaw(p.blockHash),
    p.validRound,
    hexToRaw(p.validator),
    hexToRaw(p.signature),
  ]
}

export function decodeProposalTuple(x: unknown, what: string): SignedProposal {
  const a = shape.array(x, what, 6)
  if (a.length !== 6) throw new P2PError('DECODE', `${what}: expected 6 fields`)
  const round = shape.int(a[1], `${what}.round`, 0, MAX_ROUND)
  const validRound = shape.int(a[3], `${what}.validRound`, -1, MAX_ROUND)
  if (validRound >= round) throw new P2PError('DECODE', `${what}: validRound must be below round`)
  return {
    height: bytesToUint(a[0], `${what}.height`, 8),
    round,
    blockHash: bytesToHex(a[2], `${what}.blockHash`, 32),
    validRound,
    validator: bytesToAddress(a[4], `${what}.validator`),
    signature: bytesToHex(a[5], `${what}.signature`, 65),
  }
}
