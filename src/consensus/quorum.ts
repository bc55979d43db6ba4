/**
 * Validator sets and vote tallies. All weights are bigint: every node must compute the same answer.
 * A tally covers one (height, round, kind); it counts the first vote of each validator and reports a
 * conflicting second vote as equivocation, once per validator.
 */
import type { DuplicateVoteEvidence, Validator, ValidatorId, ValueId, Vote, VoteKind } from './types.ts'

/** A validator set with its power index and total power. */
export interface ValidatorSet {
  readonly validators: readonly Validator[]
  readonly powers: ReadonlyMap<ValidatorId, bigint>
  readonly total: bigint
}

/** Builds a validator set. Duplicate ids, non-positive powers and an empty set are programmer errors. */
export function makeValidatorSet(validators: readonly Validator[]): ValidatorSet {
  if (validators.length === 0) throw new Error('empty validator set')
  const powers = new Map<ValidatorId, bigint>()
  let total = 0n
  for (const v of validators) {
    if (v.power <= 0n) throw new Error(`validator ${v.id} has non-positive power ${v.power}`)
    if (powers.has(v.id)) throw new Error(`duplicate validator ${v.id}`)
    powers.set(v.id, v.power)
    total += v.power
  }
  return { validators: [...validators], powers, total }
}

/** True when both sets hold the same validators with the same powers, in the same order. */
export function sameValidators(a: readonly Validator[], b: readonly Validator[]): boolean {
  if (a.length !== b.length) return false
  return a.every((v, i) => v.id === b[i]!.id && v.power === b[i]!.power)
}

/** 2f+1: more than two thirds of the total power. */
export function hasTwoThirds(weight: bigint, total: bigint): boolean {
  return weight * 3n > total * 2n
}

/** f+1: more than one third of the total power. */
export function hasOneThird(weight: bigint, total: bigint): boolean {
  return weight * 3n > total
}

/** Votes of one (height, round, kind), keyed by value (`null` is nil). */
export interface VoteTally {
  readonly height: number
  readonly round: number
  readonly kind: VoteKind
  /** First vote of each validator, in arrival order. */
  readonly votes: ReadonlyMap<ValidatorId, Vote>
  readonly powerByValue: ReadonlyMap<ValueId | null, bigint>
  /** Power of all distinct validators that voted, whatever the value (the paper's "2f+1 ⟨…, ∗⟩"). */
  readonly power: bigint
  /** Validators already reported for equivocating in this tally. */
  readonly equivocators: ReadonlySet<ValidatorId>
}

export function emptyTally(height: number, round: number, kind: VoteKind): VoteTally {
  return {
    height,
    round,
    kind,
    votes: new Map(),
    powerByValue: new Map(),
    power: 0n,
    equivocators: new Set(),
  }
}

export type AddVoteResult =
  | { readonly kind: 'added'; readonly tally: VoteTally }
  | { readonly kind: 'duplicate' }
  | { readonly kind: 'equivocation'; readonly tally: VoteTally; readonly evidence: DuplicateVoteEvidence }

/**
 * Adds a vote of a validator with `power`. Never mutates `tally`. A second vote with the same value is
 * a duplicate; with a different value it is equivocation: it is not counted, and evidence is returned
 * the first time only (later conflicting votes of the same validator are reported as duplicates).
 */
export function addVote(tally: VoteTally, vote: Vote, power: bigint): AddVoteResult {
  if (vote.height !== tally.height || vote.round !== tally.round || vote.kind !== tally.kind) {
    throw new Error(`vote ${vote.kind} ${vote.height}/${vote.round} does not belong to this tally`)
  }
  const first = tally.votes.get(vote.from)
  if (first !== undefined) {
    if (first.value === vote.value || tally.equivocators.has(vote.from)) return { kind: 'duplicate' }
    const equivocators = new Set(tally.equivocators).add(vote.from)
    return {
      kind: 'equivocation',
      tally: { ...tally, equivocators },
      evidence: { validator: vote.from, first, second: vote },
    }
  }
  const votes = new Map(tally.votes).set(vote.from, vote)
  const powerByValue = new Map(tally.powerByValue)
  powerByValue.set(vote.value, (powerByValue.get(vote.value) ?? 0n) + power)
  return { kind: 'added', tally: { ...tally, votes, powerByValue, power: tally.power + power } }
}

/** Power of the votes for `value` (`null`: nil). */
export function powerFor(tally: VoteTally, value: ValueId | null): bigint {
  return tally.powerByValue.get(value) ?? 0n
}

/** The votes for `value`, in arrival order. */
export function votesFor(tally: VoteTally, value: ValueId | null): Vote[] {
  return [...tally.votes.values()].filter((v) => v.value === value)
}
