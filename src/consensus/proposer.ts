/**
 * Proposer selection: CometBFT's weighted round robin (types/validator_set.go, IncrementProposerPriority).
 *
 * Each increment adds every validator's power to its priority, picks the validator with the highest
 * priority (ties: the smaller address) and subtracts the total power from it. Before a batch of
 * increments the priorities are rescaled so that max - min <= 2 * total and centred on their average,
 * which keeps them bounded. Over P = total power consecutive picks each validator proposes in
 * proportion to its power.
 *
 * How heights and rounds map to increments (as CometBFT does it, for a fixed validator set):
 * - genesis: zero priorities, one increment -> the selector of height 1 (NewValidatorSet increments once);
 * - every committed height adds one increment, whatever the number of rounds it took;
 * - round 0 of height h is proposed by the validator the height's last increment picked; round r > 0 by
 *   the one picked after `IncrementProposerPriority(r)` (one batch of r) applied to the height's selector.
 * So `proposer(validators, h, r)` is a pure function of (validators, h, r). The core keeps the selector
 * of its current height and derives the next height's with a single increment; it replays from genesis
 * only when it starts at an arbitrary height or the set changed (a changed set restarts from zero
 * priorities, unlike CometBFT's carry-over, which needs the priorities stored in the application state).
 * Priorities are bigint, so CometBFT's int64 clipping is not needed.
 */
import type { Validator, ValidatorId } from './types.ts'

/** CometBFT's PriorityWindowSizeFactor: priorities are rescaled so that max - min <= 2 * total. */
export const PRIORITY_WINDOW_SIZE_FACTOR = 2n

/** Priorities of a validator set after some increments, and who the last increment picked. */
export interface ProposerSelector {
  readonly validators: readonly Validator[]
  readonly priorities: readonly bigint[]
  readonly total: bigint
  /** The validator the last increment picked; `null` before the first increment. */
  readonly proposer: ValidatorId | null
}

/** Zero priorities (what CometBFT's genesis set has after centring), no proposer yet. */
export function initialSelector(validators: readonly Validator[]): ProposerSelector {
  if (validators.length === 0) throw new Error('empty validator set')
  const total = validators.reduce((sum, v) => sum + v.power, 0n)
  return { validators: [...validators], priorities: validators.map(() => 0n), total, proposer: null }
}

/** Floor division (Go's big.Int.Div for a positive divisor). */
function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b
  return a % b !== 0n && a < 0n ? q - 1n : q
}

/** CometBFT's IncrementProposerPriority(times): rescale, centre, then `times` increments. */
export function incrementProposerPriority(selector: ProposerSelector, times: number): ProposerSelector {
  if (!Number.isInteger(times) || times < 1)
    throw new Error(`cannot increment proposer priority ${times} times`)
  const { validators, total } = selector
  const prio = [...selector.priorities]
  // RescalePriorities(2 * total): divide by ceil(diff / diffMax) when the window is too wide.
  const diffMax = PRIORITY_WINDOW_SIZE_FACTOR * total
  let max = prio[0]!
  let min = prio[0]!
  for (const p of prio) {
    if (p > max) max = p
    if (p < min) min = p
  }
  const diff = max - min
  if (diff > diffMax) {
    const ratio = (diff + diffMax - 1n) / diffMax
    for (let i = 0; i < prio.length; i++) prio[i] = prio[i]! / ratio // Go's int64 division truncates
  }
  // shiftByAvgProposerPriority
  const avg = floorDiv(
    prio.reduce((sum, p) => sum + p, 0n),
    BigInt(prio.length),
  )
  for (let i = 0; i < prio.length; i++) prio[i] = prio[i]! - avg
  let chosen = 0
  for (let t = 0; t < times; t++) {
    chosen = 0
    for (let i = 0; i < prio.length; i++) {
      prio[i] = prio[i]! + validators[i]!.power
    }
    for (let i = 1; i < prio.length; i++) {
      const p = prio[i]!
      const best = prio[chosen]!
      if (p > best || (p === best && validators[i]!.id < validators[chosen]!.id)) chosen = i
    }
    prio[chosen] = prio[chosen]! - total
  }
  return { validators, priorities: prio, total, proposer: validators[chosen]!.id }
}

/** The selector of round 0 of `height` (>= 1) for a set fixed since genesis. O(height * n). */
export function selectorForHeight(validators: readonly Validator[], height: number): ProposerSelector {
  if (!Number.isInteger(height) || height < 1) throw new Error(`bad height ${height}`)
  let selector = initialSelector(validators)
  for (let h = 1; h <= height; h++) selector = incrementProposerPriority(selector, 1)
  return selector
}

/**
 * The proposer of `round` given the selector of round 0 of its height. O(round * n). With `skip`
 * (offline validators), the proposer of round r is the r-th pick, counting from 0, of the height's
 * sequence of single increments that is not skipped: an offline validator's turns go to the next in line,
 * and the priorities (hence the next heights' proposers) are unchanged. Skipping everyone skips no one.
 */
export function proposerAt(
  heightSelector: ProposerSelector,
  round: number,
  skip?: ReadonlySet<ValidatorId>,
): ValidatorId {
  if (skip !== undefined && skip.size > 0 && heightSelector.validators.some((v) => !skip.has(v.id))) {
    if (heightSelector.proposer === null) throw new Error('selector has not been incremented')
    let s = heightSelector
    let n = skip.has(s.proposer!) ? -1 : 0
    while (n < round) {
      s = incrementProposerPriority(s, 1)
      if (!skip.has(s.proposer!)) n++
    }
    return s.proposer!
  }
  if (round === 0) {
    if (heightSelector.proposer === null) throw new Error('selector has not been incremented')
    return heightSelector.proposer
  }
  return incrementProposerPriority(heightSelector, round).proposer!
}

/** proposer(h, r) of Algorithm 1 for a validator set fixed since genesis. */
export function proposer(validators: readonly Validator[], height: number, round: number): ValidatorId {
  return proposerAt(selectorForHeight(validators, height), round)
}
