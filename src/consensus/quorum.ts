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

/**
 * Votes of one (height, round, kind). As in the paper, "2f+1 ⟨PRECOMMIT, h, r, id(v)⟩" is the power of the
 * distinct validators that sent a precommit for id(v): a validator that votes for two values counts for
 * both (it is Byzantine, and quorum intersection still holds because honest validators vote once).
 * Counting only its first vote would be unsafe for liveness: a node that saw a Byzantine vote for w first
 * could never count the certificate for v that the others decided on. "2f+1 ⟨…, ∗⟩" counts each validator
 * once. A second value from one validator is equivocation, reported once per validator and tally.
 */
export interface VoteTally {
  readonly height: number
  readonly round: number
  readonly kind: VoteKind
  /** First vote of each validator, in arrival order. */
  readonly first: ReadonlyMap<ValidatorId, Vote>
  /** Votes for each value (`null`: nil), by validator, in arrival order. */
  readonly byValue: ReadonlyMap<ValueId | null, ReadonlyMap<ValidatorId, Vote>>
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
    first: new Map(),
    byValue: new Map(),
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
 * Adds a vote of a validator with `power`. Never mutates `tally`. The same (validator, value) twice is
 * a duplicate. A new value from a validator that already voted is counted for that value and, the
 * first time only, returned as equivocation with evidence (its first vote and this one).
 */
export function addVote(tally: VoteTally, vote: Vote, power: bigint): AddVoteResult {
  if (vote.height !== tally.height || vote.round !== tally.round || vote.kind !== tally.kind) {
    throw new Error(`vote ${vote.kind} ${vote.height}/${vote.round} does not belong to this tally`)
  }
  const forValue = tally.byValue.get(vote.value)
  if (forValue?.has(vote.from)) return { kind: 'duplicate' }
  const byValue = new Map(tally.byValue).set(vote.value, new Map(forValue).set(vote.from, vote))
  const powerByValue = new Map(tally.powerByValue).set(vote.value, powerFor(tally, vote.value) + power)
  const first = tally.first.get(vote.from)
  if (first === undefined) {
    return {
      kind: 'added',
      tally: {
        ...tally,
        first: new Map(tally.first).set(vote.from, vote),
        byValue,
        powerByValue,
        power: tally.power + power,
      },
    }
  }
  if (tally.equivocators.has(vote.from)) return { kind: 'added', tally: { ...tally, byValue, powerByValue } }
  return {
    kind: 'equivocation',
    tally: { ...tally, byValue, powerByValue, equivocators: new Set(tally.equivocators).add(vote.from) },
    evidence: { validator: vote.from, first, second: vote },
  }
}

/** Power of the distinct validators that voted for `value` (`null`: nil). */
export function powerFor(tally: VoteTally, value: ValueId | null): bigint {
  return tally.powerByValue.get(value) ?? 0n
}

/** The votes for `value`, one per validator, in arrival order. */
export function votesFor(tally: VoteTally, value: ValueId | null): Vote[] {
  return [...(tally.byValue.get(value)?.values() ?? [])]
}
