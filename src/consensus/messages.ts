/**
 * The `consensus` gossip topic (a signed proposal carrying its full block, or a signed vote): its message
 * type, wire codec and gossip validator; and the `consensus-messages` request/response protocol that
 * re-sends the messages of one height. Built on votes.ts (the signed forms) and block.ts (the block).
 */
import type { Address } from 'viem'
import { bytesToUint, uintToBytes } from '../codec/bytes.ts'
import { type Codec, cborCodec, shape } from '../codec/cbor.ts'
import { recoverAddress } from '../crypto/recover.ts'
import { P2PError } from '../errors.ts'
import type { ProtocolSpec } from '../p2p/reqresp.ts'
import { ACCEPT, ignore, reject, type ValidationResult } from '../p2p/validation.ts'
import { blockHashOfBytes, MAX_BLOCK_BYTES } from './block.ts'
import {
  decodeProposalTuple,
  decodeVoteTuple,
  encodeProposalTuple,
  encodeVoteTuple,
  type Recover,
  recoverProposalSigner,
  recoverVoteSigner,
  type SignedProposal,
  type SignedVote,
} from './votes.ts'

/**
 * A message of the `consensus` topic: a signed proposal with its full block (the canonical bytes; the
 * engine checks they hash to the signed `blockHash`, the application decodes and judges them), or a
 * signed vote.
 */
export type ConsensusMessage =
  | { readonly type: 'proposal'; readonly proposal: SignedProposal; readonly block: Uint8Array }
  | { readonly type: 'vote'; readonly vote: SignedVote }

/** Wire version of {@link consensusMessageCodec}. */
export const CONSENSUS_WIRE_VERSION = 1
/** Largest encoded consensus message: a block of the maximum size plus the proposal around it. */
export const CONSENSUS_MESSAGE_MAX_BYTES = MAX_BLOCK_BYTES + 1024

const PROPOSAL_TAG = 1
const VOTE_TAG = 2

const innerConsensusCodec = cborCodec<unknown>({
  version: CONSENSUS_WIRE_VERSION,
  maxBytes: CONSENSUS_MESSAGE_MAX_BYTES,
  check(v): ConsensusMessage {
    const a = shape.array(v, 'consensus', 3)
    const tag = shape.int(a[0], 'consensus.type', PROPOSAL_TAG, VOTE_TAG)
    if (tag === VOTE_TAG) {
      if (a.length !== 2) throw new P2PError('DECODE', 'consensus vote: expected 2 fields')
      return { type: 'vote', vote: decodeVoteTuple(a[1], 'vote') }
    }
    if (a.length !== 3) throw new P2PError('DECODE', 'consensus proposal: expected 3 fields')
    const proposal = decodeProposalTuple(a[1], 'proposal')
    const block = shape.bytes(a[2], 'proposal.block', MAX_BLOCK_BYTES)
    // The proposal signs the hash of these bytes' header (their body hash included); the application's
    // decodeBlock accepts only the canonical encoding, so one hash has one byte form.
    if (blockHashOfBytes(block) !== proposal.blockHash) {
      throw new P2PError('DECODE', 'proposal: blockHash is not the hash of the block')
    }
    return { type: 'proposal', proposal, block }
  },
})

/** Wire codec of the `consensus` topic (CBOR, version 1, at most {@link CONSENSUS_MESSAGE_MAX_BYTES}). */
export const consensusMessageCodec: Codec<ConsensusMessage> = {
  version: innerConsensusCodec.version,
  maxBytes: innerConsensusCodec.maxBytes,
  encode(msg) {
    if (msg.type === 'vote') return innerConsensusCodec.encode([VOTE_TAG, encodeVoteTuple(msg.vote)])
    return innerConsensusCodec.encode([PROPOSAL_TAG, encodeProposalTuple(msg.proposal), msg.block])
  },
  decode: (bytes) => innerConsensusCodec.decode(bytes) as ConsensusMessage,
}

/** Height, round and signer of a consensus message. */
export function messageHeader(msg: ConsensusMessage): { height: bigint; round: number; validator: Address } {
  const m = msg.type === 'proposal' ? msg.proposal : msg.vote
  return { height: m.height, round: m.round, validator: m.validator }
}

/** What {@link validateConsensusMessage} needs to know about the node's view. */
export interface ConsensusValidationContext {
  networkId: string
  /** The height this node is deciding (last committed height + 1). */
  height: bigint
  /** Its current round at that height. */
  round: number
  /** Voting power by lowercase address of the validators of `height`. */
  validators: ReadonlyMap<string, bigint>
  /** Validators of `height - 1`, for late votes of that height (evidence). Default `validators`. */
  previousValidators?: ReadonlyMap<string, bigint>
  /** Messages more than this many heights ahead are IGNOREd. */
  maxHeightsAhead: number
  /** Messages more than this many rounds ahead of the current round are IGNOREd. */
  maxRoundsAhead: number
  /** proposer(height, round) when the node knows it; a proposal from anyone else is REJECTed. */
  proposer?: (round: number) => string | undefined
  /** The application's check of a non-nil precommit's vote extension (ABCI++ VerifyVoteExtension). */
  verifyExtension?: (vote: SignedVote) => Promise<boolean>
  recover?: Recover
}

/**
 * Gossip validation of a decoded consensus message (STYLE.md: ACCEPT, IGNORE, REJECT). Cheap checks first:
 * - IGNORE `STALE` (below height - 1; a proposal of height - 1; a late vote by a non-member),
 *   `FUTURE_HEIGHT`, `FUTURE_ROUND` (not useful yet; the proposer rule costs O(round) per message);
 * - REJECT `NOT_VALIDATOR`, `WRONG_PROPOSER`, `BAD_SIGNATURE`, `BAD_EXTENSION` (a precommit whose vote
 *   extension the application refuses): provably wrong;
 * - ACCEPT otherwise. A proposal's block is judged by the driver (valid(v) depends on the node's view),
 *   not here: a well-signed proposal of a bad block is relayed and prevoted nil.
 */
export async function validateConsensusMessage(
  msg: ConsensusMessage,
  ctx: ConsensusValidationContext,
): Promise<ValidationResult> {
  const { height, round, validator } = messageHeader(msg)
  let set = ctx.validators
  if (height < ctx.height - 1n) return ignore('STALE')
  if (height === ctx.height - 1n) {
    if (msg.type === 'proposal') return ignore('STALE')
    set = ctx.previousValidators ?? ctx.validators
    if (!set.has(validator)) return ignore('STALE')
  }
  if (height > ctx.height + BigInt(ctx.maxHeightsAhead)) return ignore('FUTURE_HEIGHT')
  const roundBase = height === ctx.height ? ctx.round : 0
  if (height >= ctx.height && round > roundBase + ctx.maxRoundsAhead) return ignore('FUTURE_ROUND')
  const power = set.get(validator)
  if (power === undefined || power <= 0n) return reject('NOT_VALIDATOR')
  if (msg.type === 'proposal' && height === ctx.height) {
    const expected = ctx.proposer?.(round)
    if (expected !== undefined && expected !== validator) return reject('WRONG_PROPOSER')
  }
  const recover = ctx.recover ?? recoverAddress
  let signer: Address
  try {
    signer =
      msg.type === 'proposal'
        ? await recoverProposalSigner(ctx.networkId, msg.proposal, recover)
        : await recoverVoteSigner(ctx.networkId, msg.vote, recover)
  } catch {
    return reject('BAD_SIGNATURE')
  }
  if (signer !== validator) return reject('BAD_SIGNATURE')
  if (
    msg.type === 'vote' &&
    msg.vote.kind === 'precommit' &&
    msg.vote.blockHash !== null &&
    ctx.verifyExtension !== undefined &&
    !(await ctx.verifyExtension(msg.vote))
  ) {
    return reject('BAD_EXTENSION')
  }
  return ACCEPT
}

// ---------------------------------------------------------------------------------------------------
// `consensus-messages`: the signed messages a peer holds for one height. Gossip delivers each message once,
// but Tendermint assumes every message of a height eventually reaches every correct validator (the paper's
// gossip layer; CometBFT's consensus reactor re-sends what a peer misses). A validator that made no
// progress for a while (e.g. it restarted after its peers had voted, or a partition healed) asks for them.

/** `consensus-messages` request: the messages of `height`. */
export interface ConsensusMessagesRequest {
  readonly height: bigint
}

/** Byte budget of one `consensus-messages` answer (the answerer stops adding proposals before it). */
export const CONSENSUS_MESSAGES_MAX_BYTES = 4 * 1024 * 1024
/** Most messages in one answer. */
export const MAX_CONSENSUS_MESSAGES = 8192

const messagesRequestInner = cborCodec<unknown>({
  version: 1,
  maxBytes: 16,
  check(v): ConsensusMessagesRequest {
    return { height: bytesToUint(v, 'height', 8) }
  },
})

const messagesResponseInner = cborCodec<unknown>({
  version: 1,
  maxBytes: CONSENSUS_MESSAGES_MAX_BYTES + CONSENSUS_MESSAGE_MAX_BYTES,
  check(v): ConsensusMessage[] {
    return shape
      .array(v, 'messages', MAX_CONSENSUS_MESSAGES)
      .map((x, i) =>
        consensusMessageCodec.decode(shape.bytes(x, `messages[${i}]`, CONSENSUS_MESSAGE_MAX_BYTES)),
      )
  },
})

/**
 * `/murmur/<networkId>/consensus-messages/1`: the signed proposals and votes the answerer holds for a
 * height (its own and those it accepted). Handler: `(req) => driver.getConsensusMessages(req.height)`.
 * Each message is checked by the asker like a gossip message (`validateMessage`), so the answerer is not
 * trusted.
 */
export const CONSENSUS_MESSAGES_PROTOCOL: ProtocolSpec<ConsensusMessagesRequest, ConsensusMessage[]> = {
  name: 'consensus-messages',
  request: {
    version: 1,
    maxBytes: 16,
    encode: (req) => messagesRequestInner.encode(uintToBytes(req.height)),
    decode: (bytes) => messagesRequestInner.decode(bytes) as ConsensusMessagesRequest,
  },
  response: {
    version: 1,
    maxBytes: CONSENSUS_MESSAGES_MAX_BYTES + CONSENSUS_MESSAGE_MAX_BYTES,
    encode: (msgs) => messagesResponseInner.encode(msgs.map((m) => consensusMessageCodec.encode(m))),
    decode: (bytes) => messagesResponseInner.decode(bytes) as ConsensusMessage[],
  },
  timeoutMs: 10_000,
  maxInboundStreams: 2,
}
