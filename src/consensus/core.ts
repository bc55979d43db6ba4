/**
 * Tendermint consensus core: Algorithm 1 of "The latest gossip on BFT consensus" (Buchman, Kwon,
 * Milosevic, 2018, arXiv:1807.04938) as a pure state machine, `step(state, input) -> { state, outputs }`.
 *
 * Pure core, async driver. The core does no I/O and reads no clock: it does not know about blocks,
 * signatures, timers, the WAL or the network. The driver owns all of that:
 * - it verifies signatures and feeds proposals (with valid(v), which it checks on the block), votes,
 *   expired timeouts and built values as inputs;
 * - it performs the outputs in order: `persist` (durable before the next output — so a vote is in the
 *   WAL before it is broadcast), `broadcastProposal`/`broadcastVote` (sign, publish), `scheduleTimeout`,
 *   `requestValue` (getValue() of L18, answered later with a `valueReady` input), `decide` (commit the
 *   block, then feed `startHeight(h + 1)`), `evidence`;
 * - it buffers messages for future heights and replays them after `startHeight`; the core ignores
 *   messages of past heights, except late votes of the previous height, checked for equivocation only;
 * - after a crash it rebuilds the core with `restoreFromWal` from the records it persisted.
 *
 * State. `step` never mutates its input: it copies the top-level record and replaces (never edits) the
 * nested maps and records it changes, so the old state stays valid and unchanged parts are shared. The
 * cost of an input is a few copies of maps with one entry per validator or round.
 *
 * Safety across crashes. Each round records what this node signed (signed[h][r][step]); a node asked to
 * vote or propose again for a step it already signed re-emits the signed message instead of signing a
 * new one. `restoreFromWal` rebuilds those records and the lock (the lock is always the value of the
 * node's own highest-round non-nil precommit, L36-41), so a restarted node never equivocates.
 *
 * Notes and departures from the pseudo-code (none touches the safety argument):
 * - getValue() is asynchronous (`requestValue` / `valueReady`);
 * - the proposer schedules timeoutPropose like everyone else (see startRound), so a slow block builder or
 *   a restart costs a round, not liveness;
 * - a proposer may send several proposals in one round (equivocation); all are kept, keyed by value,
 *   so that L36 and L49 can match whichever value the quorum formed on;
 * - proposer(h, r) costs O(r * n) (proposer.ts), so the driver bounds the rounds it accepts from peers;
 * - "2f+1"/"f+1" are voting power: > 2/3 and > 1/3 of the total. "2f+1 votes for id(v)" counts every
 *   validator that voted for v (a Byzantine one may count for two values, see quorum.ts); "2f+1 votes
 *   for ∗" and "f+1 messages" count each validator once. A second value from one validator produces
 *   evidence.
 */
import {
  incrementProposerPriority,
  type ProposerSelector,
  proposerAt,
  selectorForHeight,
} from './proposer.ts'
import {
  addVote,
  emptyTally,
  hasOneThird,
  hasTwoThirds,
  makeValidatorSet,
  powerFor,
  sameValidators,
  type ValidatorSet,
  type VoteTally,
  votesFor,
} from './quorum.ts'
import type {
  ConsensusInput,
  ConsensusOutput,
  ConsensusParams,
  Decision,
  DuplicateVoteEvidence,
  Proposal,
  ProposalInput,
  StartHeightInput,
  Step,
  TimeoutInput,
  TimeoutKind,
  Validator,
  ValidatorId,
  ValueId,
  ValueReadyInput,
  Vote,
  VoteInput,
  VoteKind,
  WalRecord,
} from './types.ts'

/** A proposal from the round's proposer with valid(v) as the driver judged it. */
export interface ReceivedProposal {
  readonly proposal: Proposal
  readonly valid: boolean
}

/** The message log of one round of the current height, and what this node did in it. */
export interface RoundState {
  /** Proposals from proposer(h, r), keyed by value (more than one only if the proposer equivocates). */
  readonly proposals: ReadonlyMap<ValueId, ReceivedProposal>
  readonly prevotes: VoteTally
  readonly precommits: VoteTally
  /** Distinct senders of any message of this round, and their power (L55). */
  readonly senders: ReadonlySet<ValidatorId>
  readonly senderPower: bigint
  /** L34 has fired ("for the first time"). */
  readonly prevoteTimeoutScheduled: boolean
  /** L36 has fired ("for the first time"). */
  readonly prevoteQuorumHandled: boolean
  /** L47 has fired ("for the first time"). */
  readonly precommitTimeoutScheduled: boolean
  /** signed[h][r][step]: what this node signed in this round, if anything. */
  readonly signedProposal: Proposal | null
  readonly signedPrevote: Vote | null
  readonly signedPrecommit: Vote | null
}

/** The variables of Algorithm 1 (L2-9) for the current height, plus its message log. */
export interface ConsensusState {
  readonly params: ConsensusParams
  /** This node's validator address (a node outside the set follows consensus and never signs). */
  readonly self: ValidatorId
  /** h_p; 0 until the first `startHeight`. */
  readonly height: number
  readonly validators: ValidatorSet
  /** Proposer priorities of round 0 of `height`. */
  readonly selector: ProposerSelector | null
  /** Validators skipped as proposers at this height (offline in the committed state). */
  readonly skip: ReadonlySet<ValidatorId>
  readonly round: number
  readonly step: Step
  readonly lockedValue: ValueId | null
  readonly lockedRound: number
  readonly validValue: ValueId | null
  readonly validRound: number
  /** decision_p[h_p]; once set the core waits for `startHeight(height + 1)`. */
  readonly decision: Decision | null
  /** A `requestValue` for the current round is outstanding. */
  readonly awaitingValue: boolean
  readonly rounds: ReadonlyMap<number, RoundState>
  /**
   * The message log of the previous height, kept only to catch late votes of an equivocating validator
   * (as CometBFT keeps the last commit); no rule reads it.
   */
  readonly lastHeight: LastHeight | null
}

/** The previous height's validators and message log. */
export interface LastHeight {
  readonly height: number
  readonly validators: ValidatorSet
  readonly rounds: ReadonlyMap<number, RoundState>
}

export interface StepResult {
  readonly state: ConsensusState
  readonly outputs: readonly ConsensusOutput[]
}

const NO_VALIDATORS: ValidatorSet = { validators: [], powers: new Map(), total: 0n }
const NO_SKIP: ReadonlySet<ValidatorId> = new Set()

/** The state of a node that has not started any height yet. */
export function initialState(params: ConsensusParams, self: ValidatorId): ConsensusState {
  return {
    params,
    self,
    height: 0,
    validators: NO_VALIDATORS,
    selector: null,
    skip: NO_SKIP,
    round: 0,
    step: 'propose',
    lockedValue: null,
    lockedRound: -1,
    validValue: null,
    validRound: -1,
    decision: null,
    awaitingValue: false,
    rounds: new Map(),
    lastHeight: null,
  }
}

/** timeoutX(r) = base + r * delta. */
export function timeoutDuration(params: ConsensusParams, kind: TimeoutKind, round: number): number {
  switch (kind) {
    case 'propose':
      return params.timeoutProposeMs + round * params.timeoutProposeDeltaMs
    case 'prevote':
      return params.timeoutPrevoteMs + round * params.timeoutPrevoteDeltaMs
    case 'precommit':
      return params.timeoutPrecommitMs + round * params.timeoutPrecommitDeltaMs
    default: {
      const unknown: never = kind
      throw new Error(`unknown timeout kind ${String(unknown)}`)
    }
  }
}

/** proposer(h_p, round) for the state's current height. */
export function proposerOf(state: ConsensusState, round: number): ValidatorId {
  if (state.selector === null) throw new Error('no height started')
  return proposerAt(state.selector, round, state.skip)
}

/** Feeds one input to the core. Never mutates `state`; ignored inputs return it unchanged. */
export function step(state: ConsensusState, input: ConsensusInput): StepResult {
  const c: Ctx = { s: { ...state }, out: [] }
  let accepted: boolean
  switch (input.type) {
    case 'startHeight':
      onStartHeight(c, input)
      accepted = true
      break
    case 'proposal':
      accepted = onProposal(c, input)
      break
    case 'vote':
      accepted = onVote(c, input)
      break
    case 'timeout':
      accepted = onTimeout(c, input)
      break
    case 'valueReady':
      accepted = onValueReady(c, input)
      break
    default: {
      const unknown: never = input
      throw new Error(`unknown consensus input ${JSON.stringify(unknown)}`)
    }
  }
  if (!accepted) return { state, outputs: [] }
  runRules(c)
  return { state: c.s, outputs: c.out }
}

/**
 * Rebuilds the core after a crash: starts `height` and replays this node's own WAL records of that
 * height (records of other heights are skipped). The result has the same signed[h][r][step] and lock
 * as before the crash; its outputs re-broadcast what was signed (without persisting it again) and
 * resume the round the node was in.
 */
export function restoreFromWal(
  params: ConsensusParams,
  self: ValidatorId,
  height: number,
  validators: readonly Validator[],
  records: readonly WalRecord[],
  skip: readonly ValidatorId[] = [],
): StepResult {
  const c: Ctx = { s: { ...initialState(params, self) }, out: [] }
  newHeight(c, height, validators, skip)
  let lastRound = -1
  for (const record of records) {
    const signed = record.type === 'proposal' ? record.proposal : record.vote
    if (signed.height !== height) continue
    if (signed.from !== self) throw new Error(`WAL record signed by ${signed.from}, not by ${self}`)
    const rs = roundOf(c.s, signed.round)
    if (record.type === 'proposal') {
      putRound(c, signed.round, {
        ...withProposal(c.s, rs, record.proposal, true),
        signedProposal: record.proposal,
      })
    } else {
      const vote = record.vote
      putRound(
        c,
        vote.round,
        vote.kind === 'prevote' ? { ...rs, signedPrevote: vote } : { ...rs, signedPrecommit: vote },
      )
      recordVote(c, vote)
      // L36-43: a non-nil precommit is only ever sent together with locking on its value.
      if (vote.kind === 'precommit' && vote.value !== null && vote.round > c.s.lockedRound) {
        c.s.lockedValue = vote.value
        c.s.lockedRound = vote.round
        c.s.validValue = vote.value
        c.s.validRound = vote.round
      }
    }
    if (signed.round > lastRound) lastRound = signed.round
  }
  if (lastRound < 0) {
    startRound(c, 0) // L10
  } else {
    const last = roundOf(c.s, lastRound)
    const resume: Step = last.signedPrecommit ? 'precommit' : last.signedPrevote ? 'prevote' : 'propose'
    for (const r of [...c.s.rounds.keys()].sort((a, b) => a - b)) {
      const rs = roundOf(c.s, r)
      if (rs.signedProposal && !(r === lastRound && resume === 'propose')) {
        c.out.push({ type: 'broadcastProposal', proposal: rs.signedProposal })
      }
      if (rs.signedPrevote) c.out.push({ type: 'broadcastVote', vote: rs.signedPrevote })
      if (rs.signedPrecommit) c.out.push({ type: 'broadcastVote', vote: rs.signedPrecommit })
    }
    if (resume === 'propose') {
      startRound(c, lastRound) // re-sends the signed proposal of that round, never a new one
    } else {
      c.s.round = lastRound
      c.s.step = resume
    }
  }
  runRules(c)
  return { state: c.s, outputs: c.out }
}

// ---------------------------------------------------------------------------------------------------
// Internals. `Ctx.s` is a private shallow copy of the state; nested values are replaced, never edited.

type Draft = { -readonly [K in keyof ConsensusState]: ConsensusState[K] }

interface Ctx {
  s: Draft
  out: ConsensusOutput[]
}

function isActive(s: ConsensusState): boolean {
  return s.height > 0 && s.decision === null
}

function emptyRound(height: number, round: number): RoundState {
  return {
    proposals: new Map(),
    prevotes: emptyTally(height, round, 'prevote'),
    precommits: emptyTally(height, round, 'precommit'),
    senders: new Set(),
    senderPower: 0n,
    prevoteTimeoutScheduled: false,
    prevoteQuorumHandled: false,
    precommitTimeoutScheduled: false,
    signedProposal: null,
    signedPrevote: null,
    signedPrecommit: null,
  }
}

function roundOf(s: ConsensusState, round: number): RoundState {
  return s.rounds.get(round) ?? emptyRound(s.height, round)
}

function putRound(c: Ctx, round: number, rs: RoundState): void {
  c.s.rounds = new Map(c.s.rounds).set(round, rs)
}

function withSender(validators: ValidatorSet, rs: RoundState, from: ValidatorId): RoundState {
  if (rs.senders.has(from)) return rs
  const power = validators.powers.get(from) ?? 0n
  return { ...rs, senders: new Set(rs.senders).add(from), senderPower: rs.senderPower + power }
}

function withProposal(s: ConsensusState, rs: RoundState, proposal: Proposal, valid: boolean): RoundState {
  const proposals = new Map(rs.proposals).set(proposal.value, { proposal, valid })
  return withSender(s.validators, { ...rs, proposals }, proposal.from)
}

/**
 * Adds a vote to the tally of its round in `rounds` (a message log of `height`). Returns the new log and
 * the evidence if the vote equivocates, or null for a duplicate or a vote of a non-validator.
 */
function tallyVote(
  rounds: ReadonlyMap<number, RoundState>,
  validators: ValidatorSet,
  height: number,
  vote: Vote,
): { rounds: ReadonlyMap<number, RoundState>; evidence: DuplicateVoteEvidence | null } | null {
  const power = validators.powers.get(vote.from)
  if (power === undefined) return null
  const rs = rounds.get(vote.round) ?? emptyRound(height, vote.round)
  const tally = vote.kind === 'prevote' ? rs.prevotes : rs.precommits
  const result = addVote(tally, vote, power)
  if (result.kind === 'duplicate') return null
  const next =
    vote.kind === 'prevote' ? { ...rs, prevotes: result.tally } : { ...rs, precommits: result.tally }
  return {
    rounds: new Map(rounds).set(vote.round, withSender(validators, next, vote.from)),
    evidence: result.kind === 'equivocation' ? result.evidence : null,
  }
}

/** Adds a vote of the current height to its round's tally; emits evidence on equivocation. */
function recordVote(c: Ctx, vote: Vote): boolean {
  const added = tallyVote(c.s.rounds, c.s.validators, c.s.height, vote)
  if (added === null) return false
  c.s.rounds = added.rounds
  if (added.evidence !== null) c.out.push({ type: 'evidence', evidence: added.evidence })
  return true
}

/** L53 reset, for a new height. */
function newHeight(
  c: Ctx,
  height: number,
  validators: readonly Validator[],
  skip: readonly ValidatorId[] = [],
): void {
  if (!Number.isInteger(height) || height < 1) throw new Error(`bad height ${height}`)
  const set = makeValidatorSet(validators)
  const prev = c.s.selector
  const lastHeight: LastHeight | null =
    c.s.height > 0 && c.s.height === height - 1
      ? { height: c.s.height, validators: c.s.validators, rounds: c.s.rounds }
      : null
  const selector =
    prev !== null && c.s.height === height - 1 && sameValidators(prev.validators, set.validators)
      ? incrementProposerPriority(prev, 1)
      : selectorForHeight(set.validators, height)
  c.s = {
    params: c.s.params,
    self: c.s.self,
    height,
    validators: set,
    selector,
    skip: skip.length === 0 ? NO_SKIP : new Set(skip),
    round: 0,
    step: 'propose',
    lockedValue: null,
    lockedRound: -1,
    validValue: null,
    validRound: -1,
    decision: null,
    awaitingValue: false,
    rounds: new Map(),
    lastHeight,
  }
}

function onStartHeight(c: Ctx, input: StartHeightInput): void {
  // Restarting the current height would forget what this node signed: a driver bug.
  if (c.s.height !== 0 && input.height <= c.s.height) {
    throw new Error(`startHeight ${input.height} while at height ${c.s.height}`)
  }
  newHeight(c, input.height, input.validators, input.skip)
  startRound(c, 0) // L10 (and L54)
}

function onProposal(c: Ctx, input: ProposalInput): boolean {
  const p = input.proposal
  if (!isActive(c.s) || p.height !== c.s.height) return false
  if (!Number.isInteger(p.round) || p.round < 0) return false
  if (!Number.isInteger(p.validRound) || p.validRound < -1 || p.validRound >= p.round) return false
  if (p.from !== proposerOf(c.s, p.round)) return false // "from proposer(h_p, r)"
  const rs = roundOf(c.s, p.round)
  if (rs.proposals.has(p.value)) return false
  putRound(c, p.round, withProposal(c.s, rs, p, input.valid))
  return true
}

function onVote(c: Ctx, input: VoteInput): boolean {
  const v = input.vote
  if (!Number.isInteger(v.round) || v.round < 0) return false
  // After the decision votes are still logged (for evidence); the rules are idle until startHeight.
  if (c.s.height > 0 && v.height === c.s.height) return recordVote(c, v)
  const last = c.s.lastHeight
  if (last === null || v.height !== last.height) return false
  // A late vote of the previous height: only checked for equivocation.
  const added = tallyVote(last.rounds, last.validators, last.height, v)
  if (added === null) return false
  c.s.lastHeight = { ...last, rounds: added.rounds }
  if (added.evidence !== null) c.out.push({ type: 'evidence', evidence: added.evidence })
  return true
}

function onTimeout(c: Ctx, input: TimeoutInput): boolean {
  const s = c.s
  if (!isActive(s) || input.height !== s.height || input.round !== s.round) return false
  switch (input.kind) {
    case 'propose': // L57-60
      if (s.step !== 'propose') return false
      castVote(c, 'prevote', null)
      c.s.step = 'prevote'
      return true
    case 'prevote': // L61-64
      if (s.step !== 'prevote') return false
      castVote(c, 'precommit', null)
      c.s.step = 'precommit'
      return true
    case 'precommit': // L65-67
      startRound(c, s.round + 1)
      return true
    default: {
      const unknown: never = input.kind
      throw new Error(`unknown timeout kind ${String(unknown)}`)
    }
  }
}

function onValueReady(c: Ctx, input: ValueReadyInput): boolean {
  const s = c.s
  if (!isActive(s) || !s.awaitingValue || input.height !== s.height || input.round !== s.round) return false
  if (s.step !== 'propose') return false
  c.s.awaitingValue = false
  signProposal(c, input.value, s.validRound) // L18-19: proposal <- getValue()
  return true
}

/**
 * StartRound(round), L11-21. timeoutPropose is scheduled by every validator, the proposer included (as
 * CometBFT's enterPropose does; the paper schedules it for the others only, L21). In the paper the
 * proposer never needs it, as its own proposal fires L22 or L28 at once; here it may wait in the propose
 * step: for an asynchronous getValue(), or after a restart that replayed its proposal with validRound vr
 * but lost the 2f+1 prevotes of round vr L28 needs. OnTimeoutPropose is a no-op once it has prevoted.
 */
function startRound(c: Ctx, round: number): void {
  c.s.round = round // L12
  c.s.step = 'propose' // L13
  c.s.awaitingValue = false
  scheduleTimeout(c, 'propose') // L21
  if (proposerOf(c.s, round) !== c.s.self) return // L14
  const signed = roundOf(c.s, round).signedProposal
  if (signed !== null) {
    c.out.push({ type: 'broadcastProposal', proposal: signed }) // already signed this round: same proposal
  } else if (c.s.validValue !== null) {
    signProposal(c, c.s.validValue, c.s.validRound) // L15-16, L19
  } else {
    // L18: getValue(), answered by a `valueReady` input.
    c.s.awaitingValue = true
    c.out.push({ type: 'requestValue', height: c.s.height, round })
  }
}

/** broadcast ⟨PROPOSAL, h_p, round_p, value, validRound⟩ (L19), persisted first. */
function signProposal(c: Ctx, value: ValueId, validRound: number): void {
  const rs = roundOf(c.s, c.s.round)
  if (rs.signedProposal !== null) {
    c.out.push({ type: 'broadcastProposal', proposal: rs.signedProposal })
    return
  }
  const proposal: Proposal = { height: c.s.height, round: c.s.round, value, validRound, from: c.s.self }
  c.out.push({ type: 'persist', record: { type: 'proposal', proposal } })
  c.out.push({ type: 'broadcastProposal', proposal })
  // The broadcast reaches this node too: the proposal enters its own log at once.
  putRound(c, c.s.round, { ...withProposal(c.s, rs, proposal, true), signedProposal: proposal })
}

/**
 * broadcast ⟨PREVOTE|PRECOMMIT, h_p, round_p, value⟩, persisted first. If this node already signed a
 * vote of this kind in this round (e.g. before a crash), that vote is sent again instead.
 */
function castVote(c: Ctx, kind: VoteKind, value: ValueId | null): void {
  const rs = roundOf(c.s, c.s.round)
  const signed = kind === 'prevote' ? rs.signedPrevote : rs.signedPrecommit
  if (signed !== null) {
    c.out.push({ type: 'broadcastVote', vote: signed })
    return
  }
  if (!c.s.validators.powers.has(c.s.self)) return // not a validator: follow, never sign
  const vote: Vote = { kind, height: c.s.height, round: c.s.round, value, from: c.s.self }
  c.out.push({ type: 'persist', record: { type: 'vote', vote } })
  c.out.push({ type: 'broadcastVote', vote })
  putRound(
    c,
    c.s.round,
    kind === 'prevote' ? { ...rs, signedPrevote: vote } : { ...rs, signedPrecommit: vote },
  )
  recordVote(c, vote) // the broadcast reaches this node too
}

function scheduleTimeout(c: Ctx, kind: TimeoutKind): void {
  c.out.push({
    type: 'scheduleTimeout',
    kind,
    height: c.s.height,
    round: c.s.round,
    durationMs: timeoutDuration(c.s.params, kind, c.s.round),
  })
}

/**
 * Fires the "upon" rules until none applies. Every rule either changes round_p/step_p, decides, or
 * sets its "for the first time" flag, so the loop ends.
 */
function runRules(c: Ctx): void {
  for (;;) {
    if (!isActive(c.s)) return
    if (upon49Decide(c)) return
    if (upon55RoundSkip(c)) continue
    if (upon22(c) || upon28(c) || upon34(c) || upon36(c) || upon44(c) || upon47(c)) continue
    return
  }
}

/** L49-54: a proposal and 2f+1 precommits for its value in any round r: decide. */
function upon49Decide(c: Ctx): boolean {
  const total = c.s.validators.total
  for (const [round, rs] of c.s.rounds) {
    if (!hasTwoThirds(rs.precommits.power, total)) continue
    for (const { proposal, valid } of rs.proposals.values()) {
      if (!valid) continue // L50
      if (!hasTwoThirds(powerFor(rs.precommits, proposal.value), total)) continue
      const decision: Decision = {
        height: c.s.height,
        round,
        value: proposal.value,
        certificate: votesFor(rs.precommits, proposal.value),
      }
      c.s.decision = decision // L51; L52-54 happen when the driver feeds startHeight(h + 1)
      c.s.awaitingValue = false
      c.out.push({ type: 'decide', ...decision })
      return true
    }
  }
  return false
}

/** L55-56: f+1 messages of a higher round: StartRound(round) (the highest such round). */
function upon55RoundSkip(c: Ctx): boolean {
  let target = -1
  for (const [round, rs] of c.s.rounds) {
    if (round > c.s.round && round > target && hasOneThird(rs.senderPower, c.s.validators.total))
      target = round
  }
  if (target < 0) return false
  startRound(c, target)
  return true
}

/** L22-27: a fresh proposal (validRound = -1) in the propose step. */
function upon22(c: Ctx): boolean {
  if (c.s.step !== 'propose') return false
  const rs = c.s.rounds.get(c.s.round)
  if (rs === undefined) return false
  for (const { proposal, valid } of rs.proposals.values()) {
    if (proposal.validRound !== -1) continue
    const v = proposal.value
    const accept = valid && (c.s.lockedRound === -1 || c.s.lockedValue === v) // L23
    castVote(c, 'prevote', accept ? v : null) // L24, L26
    c.s.step = 'prevote' // L27
    return true
  }
  return false
}

/** L28-33: a re-proposal with validRound vr < round_p backed by 2f+1 prevotes of round vr. */
function upon28(c: Ctx): boolean {
  if (c.s.step !== 'propose') return false
  const rs = c.s.rounds.get(c.s.round)
  if (rs === undefined) return false
  for (const { proposal, valid } of rs.proposals.values()) {
    const vr = proposal.validRound
    if (vr < 0 || vr >= c.s.round) continue
    const vrs = c.s.rounds.get(vr)
    if (vrs === undefined || !hasTwoThirds(powerFor(vrs.prevotes, proposal.value), c.s.validators.total))
      continue
    const v = proposal.value
    const accept = valid && (c.s.lockedRound <= vr || c.s.lockedValue === v) // L29
    castVote(c, 'prevote', accept ? v : null) // L30, L32
    c.s.step = 'prevote' // L33
    return true
  }
  return false
}

/** L34-35: 2f+1 prevotes of any value in the prevote step, for the first time: timeoutPrevote. */
function upon34(c: Ctx): boolean {
  if (c.s.step !== 'prevote') return false
  const rs = c.s.rounds.get(c.s.round)
  if (rs === undefined || rs.prevoteTimeoutScheduled) return false
  if (!hasTwoThirds(rs.prevotes.power, c.s.validators.total)) return false
  putRound(c, c.s.round, { ...rs, prevoteTimeoutScheduled: true })
  scheduleTimeout(c, 'prevote')
  return true
}

/** L36-43: a valid proposal and 2f+1 prevotes for it, step >= prevote, for the first time. */
function upon36(c: Ctx): boolean {
  if (c.s.step === 'propose') return false
  const rs = c.s.rounds.get(c.s.round)
  if (rs === undefined || rs.prevoteQuorumHandled) return false
  for (const { proposal, valid } of rs.proposals.values()) {
    if (!valid || !hasTwoThirds(powerFor(rs.prevotes, proposal.value), c.s.validators.total)) continue
    const v = proposal.value
    putRound(c, c.s.round, { ...rs, prevoteQuorumHandled: true })
    if (c.s.step === 'prevote') {
      c.s.lockedValue = v // L38
      c.s.lockedRound = c.s.round // L39
      castVote(c, 'precommit', v) // L40
      c.s.step = 'precommit' // L41
    }
    c.s.validValue = v // L42
    c.s.validRound = c.s.round // L43
    return true
  }
  return false
}

/** L44-46: 2f+1 prevotes for nil in the prevote step: precommit nil. */
function upon44(c: Ctx): boolean {
  if (c.s.step !== 'prevote') return false
  const rs = c.s.rounds.get(c.s.round)
  if (rs === undefined || !hasTwoThirds(powerFor(rs.prevotes, null), c.s.validators.total)) return false
  castVote(c, 'precommit', null) // L45
  c.s.step = 'precommit' // L46
  return true
}

/** L47-48: 2f+1 precommits of any value, for the first time: timeoutPrecommit. */
function upon47(c: Ctx): boolean {
  const rs = c.s.rounds.get(c.s.round)
  if (rs === undefined || rs.precommitTimeoutScheduled) return false
  if (!hasTwoThirds(rs.precommits.power, c.s.validators.total)) return false
  putRound(c, c.s.round, { ...rs, precommitTimeoutScheduled: true })
  scheduleTimeout(c, 'precommit')
  return true
}
