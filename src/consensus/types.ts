/**
 * Types of the Tendermint consensus core (see core.ts): the messages it reasons about, its inputs and
 * outputs, and its parameters. Values are opaque: the core only ever sees a `ValueId` (the hex hash of
 * a block); the driver owns the blocks, checks their validity and signs what the core asks it to send.
 */

/** Identifier of a proposed value: the hex hash of a block. The core never inspects it. */
export type ValueId = string

/** A validator's identity: its Ethereum address (lowercase hex, so string order is byte order). */
export type ValidatorId = string

/** A member of the validator set. Voting power is the bonded stake. */
export interface Validator {
  readonly id: ValidatorId
  readonly power: bigint
}

/** step_p of Algorithm 1 (L4). */
export type Step = 'propose' | 'prevote' | 'precommit'

export type VoteKind = 'prevote' | 'precommit'

export type TimeoutKind = 'propose' | 'prevote' | 'precommit'

/** ⟨PROPOSAL, h, r, v, vr⟩ signed by `from`. `validRound` is -1 for a fresh value. */
export interface Proposal {
  readonly height: number
  readonly round: number
  readonly value: ValueId
  readonly validRound: number
  readonly from: ValidatorId
}

/** ⟨PREVOTE|PRECOMMIT, h, r, id(v)|nil⟩ signed by `from`; `value: null` is a vote for nil. */
export interface Vote {
  readonly kind: VoteKind
  readonly height: number
  readonly round: number
  readonly value: ValueId | null
  readonly from: ValidatorId
}

/** Two votes of one validator for the same height/round/kind and different values. */
export interface DuplicateVoteEvidence {
  readonly validator: ValidatorId
  readonly first: Vote
  readonly second: Vote
}

/** A decided value with its commit certificate: precommits for `value` at `round` carrying > 2/3 power. */
export interface Decision {
  readonly height: number
  readonly round: number
  readonly value: ValueId
  readonly certificate: readonly Vote[]
}

/**
 * Round timeouts: timeoutX(r) = xMs + r * xDeltaMs, so that after GST the timeouts eventually exceed
 * the message delay (the paper's liveness argument needs them to grow with the round).
 */
export interface ConsensusParams {
  readonly timeoutProposeMs: number
  readonly timeoutProposeDeltaMs: number
  readonly timeoutPrevoteMs: number
  readonly timeoutPrevoteDeltaMs: number
  readonly timeoutPrecommitMs: number
  readonly timeoutPrecommitDeltaMs: number
}

/** CometBFT-like defaults. */
export const DEFAULT_CONSENSUS_PARAMS: ConsensusParams = {
  timeoutProposeMs: 3000,
  timeoutProposeDeltaMs: 500,
  timeoutPrevoteMs: 1000,
  timeoutPrevoteDeltaMs: 500,
  timeoutPrecommitMs: 1000,
  timeoutPrecommitDeltaMs: 500,
}

/** What the node signed, persisted before it is broadcast. Replayed by `restoreFromWal`. */
export type WalRecord =
  | { readonly type: 'proposal'; readonly proposal: Proposal }
  | { readonly type: 'vote'; readonly vote: Vote }

/** Begin consensus instance `height` (L10, and L52-54 once the driver has committed the previous one). */
export interface StartHeightInput {
  readonly type: 'startHeight'
  readonly height: number
  readonly validators: readonly Validator[]
  /**
   * Validators skipped as proposers (offline in the committed state: missing from the last commits).
   * They still vote. Deterministic: every node derives it from the same committed state.
   */
  readonly skip?: readonly ValidatorId[]
}

/** A proposal whose signature the driver verified; `valid` is valid(v), checked by the driver. */
export interface ProposalInput {
  readonly type: 'proposal'
  readonly proposal: Proposal
  readonly valid: boolean
}

/** A vote whose signature the driver verified. */
export interface VoteInput {
  readonly type: 'vote'
  readonly vote: Vote
}

/** A timeout the core scheduled earlier has expired (L57, L61, L65). */
export interface TimeoutInput {
  readonly type: 'timeout'
  readonly kind: TimeoutKind
  readonly height: number
  readonly round: number
}

/** getValue() (L18) answered: the driver built a block for the `requestValue` output. */
export interface ValueReadyInput {
  readonly type: 'valueReady'
  readonly height: number
  readonly round: number
  readonly value: ValueId
}

export type ConsensusInput = StartHeightInput | ProposalInput | VoteInput | TimeoutInput | ValueReadyInput

/** Append a record to the WAL; the driver must make it durable before performing the next output. */
export interface PersistOutput {
  readonly type: 'persist'
  readonly record: WalRecord
}

export interface BroadcastProposalOutput {
  readonly type: 'broadcastProposal'
  readonly proposal: Proposal
}

export interface BroadcastVoteOutput {
  readonly type: 'broadcastVote'
  readonly vote: Vote
}

/** Feed `{ type: 'timeout', kind, height, round }` back after `durationMs`. */
export interface ScheduleTimeoutOutput {
  readonly type: 'scheduleTimeout'
  readonly kind: TimeoutKind
  readonly height: number
  readonly round: number
  readonly durationMs: number
}

/** getValue() (L18): build a block and answer with `valueReady` for the same height and round. */
export interface RequestValueOutput {
  readonly type: 'requestValue'
  readonly height: number
  readonly round: number
}

/** decision_p[h_p] = v (L51). The driver commits the block, then feeds `startHeight(height + 1)`. */
export interface DecideOutput extends Decision {
  readonly type: 'decide'
}

/** A validator equivocated; emitted once per validator, height, round and vote kind. */
export interface EvidenceOutput {
  readonly type: 'evidence'
  readonly evidence: DuplicateVoteEvidence
}

export type ConsensusOutput =
  | PersistOutput
  | BroadcastProposalOutput
  | BroadcastVoteOutput
  | ScheduleTimeoutOutput
  | RequestValueOutput
  | DecideOutput
  | EvidenceOutput
