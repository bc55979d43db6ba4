import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  type ConsensusState,
  initialState,
  proposerOf,
  restoreFromWal,
  type StepResult,
  step,
} from '../src/consensus/core.ts'
import {
  incrementProposerPriority,
  initialSelector,
  proposer,
  proposerAt,
  selectorForHeight,
} from '../src/consensus/proposer.ts'
import {
  addVote,
  emptyTally,
  hasOneThird,
  hasTwoThirds,
  powerFor,
  votesFor,
} from '../src/consensus/quorum.ts'
import type {
  ConsensusInput,
  ConsensusOutput,
  ConsensusParams,
  Validator,
  ValueId,
  Vote,
  VoteKind,
  WalRecord,
} from '../src/consensus/types.ts'

const PARAMS: ConsensusParams = {
  timeoutProposeMs: 400,
  timeoutProposeDeltaMs: 100,
  timeoutPrevoteMs: 200,
  timeoutPrevoteDeltaMs: 50,
  timeoutPrecommitMs: 300,
  timeoutPrecommitDeltaMs: 10,
}

/** Four equal validators: proposers of height 1 are a, b, c, d for rounds 0..3 (ties by address). */
const FOUR: Validator[] = ['a', 'b', 'c', 'd'].map((id) => ({ id, power: 1n }))

/** What every node schedules when height 1 starts. */
const PROPOSE_TIMEOUT_1_0 = {
  type: 'scheduleTimeout',
  kind: 'propose',
  height: 1,
  round: 0,
  durationMs: 400,
} as const

function start(self: string, validators: readonly Validator[] = FOUR, height = 1): StepResult {
  return step(initialState(PARAMS, self), { type: 'startHeight', height, validators })
}

/** Feeds inputs in order; returns the final state and all outputs. */
function run(state: ConsensusState, inputs: readonly ConsensusInput[]): StepResult {
  const outputs: ConsensusOutput[] = []
  let s = state
  for (const input of inputs) {
    const r = step(s, input)
    s = r.state
    outputs.push(...r.outputs)
  }
  return { state: s, outputs }
}

function proposalIn(state: ConsensusState, round: number, value: ValueId, validRound = -1, valid = true) {
  return {
    type: 'proposal',
    proposal: { height: state.height, round, value, validRound, from: proposerOf(state, round) },
    valid,
  } as const satisfies ConsensusInput
}

function voteIn(kind: VoteKind, round: number, value: ValueId | null, from: string, height = 1) {
  return { type: 'vote', vote: { kind, height, round, value, from } } as const satisfies ConsensusInput
}

function signedVote(kind: VoteKind, round: number, value: ValueId | null, from: string): ConsensusOutput[] {
  const vote: Vote = { kind, height: 1, round, value, from }
  return [
    { type: 'persist', record: { type: 'vote', vote } },
    { type: 'broadcastVote', vote },
  ]
}

/** A state of validator `self` at `round`, step propose, with a lock (crafted: the state is plain data). */
function inRound(self: string, round: number, lock: { value: ValueId; round: number } | null = null) {
  const { state } = start(self)
  return {
    ...state,
    round,
    step: 'propose',
    lockedValue: lock?.value ?? null,
    lockedRound: lock?.round ?? -1,
    validValue: lock?.value ?? null,
    validRound: lock?.round ?? -1,
  } satisfies ConsensusState
}

describe('quorum', () => {
  it('needs strictly more than 2/3 and 1/3 of the power', () => {
    expect(hasTwoThirds(2n, 3n)).toBe(false)
    expect(hasTwoThirds(3n, 4n)).toBe(true)
    expect(hasTwoThirds(6n, 9n)).toBe(false)
    expect(hasTwoThirds(7n, 9n)).toBe(true)
    expect(hasOneThird(1n, 3n)).toBe(false)
    expect(hasOneThird(2n, 4n)).toBe(true)
    expect(hasOneThird(3n, 9n)).toBe(false)
  })

  it('de-duplicates per validator and reports equivocation once', () => {
    let tally = emptyTally(1, 0, 'prevote')
    const v = (value: ValueId | null, from = 'a'): Vote => ({
      kind: 'prevote',
      height: 1,
      round: 0,
      value,
      from,
    })
    const first = addVote(tally, v('x'), 5n)
    expect(first.kind).toBe('added')
    if (first.kind !== 'added') return
    tally = first.tally
    expect(addVote(tally, v('x'), 5n).kind).toBe('duplicate')
    const second = addVote(tally, v('y'), 5n)
    expect(second.kind).toBe('equivocation')
    if (second.kind !== 'equivocation') return
    expect(second.evidence).toEqual({ validator: 'a', first: v('x'), second: v('y') })
    tally = second.tally
    const third = addVote(tally, v(null), 5n)
    expect(third.kind).toBe('added') // counted for nil, no second evidence
    if (third.kind !== 'added') return
    tally = third.tally
    expect(tally.power).toBe(5n) // "∗" counts the validator once
    expect([powerFor(tally, 'x'), powerFor(tally, 'y'), powerFor(tally, null)]).toEqual([5n, 5n, 5n])
    expect(votesFor(tally, 'y')).toEqual([v('y')])
  })

  it('rejects a vote of another height, round or kind', () => {
    const tally = emptyTally(1, 0, 'prevote')
    expect(() =>
      addVote(tally, { kind: 'precommit', height: 1, round: 0, value: null, from: 'a' }, 1n),
    ).toThrow()
  })
})

describe('proposer selection (CometBFT weighted round robin)', () => {
  it('matches CometBFT TestProposerSelection1 (foo 1000, bar 300, baz 330)', () => {
    const vals = [
      { id: 'foo', power: 1000n },
      { id: 'bar', power: 300n },
      { id: 'baz', power: 330n },
    ]
    // Test vector of cometbft types/validator_set_test.go.
    const expected =
      'foo baz foo bar foo foo baz foo bar foo foo baz foo foo bar foo baz foo foo bar foo foo baz foo bar ' +
      'foo foo baz foo bar foo foo baz foo foo bar foo baz foo foo bar foo baz foo foo bar foo baz foo foo ' +
      'bar foo baz foo foo foo baz bar foo foo foo baz foo bar foo foo baz foo bar foo foo baz foo bar foo ' +
      'foo baz foo bar foo foo baz foo foo bar foo baz foo foo bar foo baz foo foo bar foo baz foo foo'
    let s = selectorForHeight(vals, 1)
    const got: string[] = []
    for (let i = 0; i < 99; i++) {
      got.push(s.proposer!)
      s = incrementProposerPriority(s, 1)
    }
    expect(got.join(' ')).toBe(expected)
  })

  it('breaks ties by the smaller address and rotates through equal validators', () => {
    expect([0, 1, 2, 3, 4].map((r) => proposer(FOUR, 1, r))).toEqual(['a', 'b', 'c', 'd', 'a'])
    expect([1, 2, 3, 4, 5].map((h) => proposer(FOUR, h, 0))).toEqual(['a', 'b', 'c', 'd', 'a'])
  })

  it('is deterministic and the core derives each height from the previous one', () => {
    const vals = [
      { id: 'x', power: 7n },
      { id: 'y', power: 2n },
      { id: 'z', power: 4n },
    ]
    let state = initialState(PARAMS, 'x')
    for (let h = 1; h <= 6; h++)
      state = step(state, { type: 'startHeight', height: h, validators: vals }).state
    expect(state.selector).toEqual(selectorForHeight(vals, 6))
    for (let r = 0; r < 10; r++) expect(proposerOf(state, r)).toBe(proposer(vals, 6, r))
  })

  it('gives each validator a share of proposals proportional to its power', () => {
    const powers = fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 7 })
    fc.assert(
      fc.property(powers, fc.integer({ min: 1, max: 3 }), (ps, cycles) => {
        const vals = ps.map((p, i) => ({ id: `v${i}`, power: BigInt(p) }))
        const total = vals.reduce((a, v) => a + v.power, 0n)
        const counts = new Map<string, bigint>()
        let s = selectorForHeight(vals, 1)
        const picks = Number(total) * cycles
        for (let k = 1; k <= picks; k++) {
          counts.set(s.proposer!, (counts.get(s.proposer!) ?? 0n) + 1n)
          s = incrementProposerPriority(s, 1)
          for (const v of vals) {
            // Any prefix: the count stays within 2 proposals of k * power / total (measured: ~1.08).
            const deviation = (counts.get(v.id) ?? 0n) * total - BigInt(k) * v.power
            expect(deviation < 2n * total && deviation > -2n * total).toBe(true)
          }
        }
        // Whole cycles of `total` picks: exactly `power` proposals each per cycle.
        for (const v of vals) expect(counts.get(v.id) ?? 0n).toBe(v.power * BigInt(cycles))
      }),
      { numRuns: 150 },
    )
  })

  it('rescales a too-wide priority window before incrementing', () => {
    const vals = [
      { id: 'a', power: 1n },
      { id: 'b', power: 1n },
    ]
    const wide = { ...initialSelector(vals), priorities: [100n, -100n] }
    const s = incrementProposerPriority(wide, 1)
    // diff 200 > 2 * total = 4: divide by ceil(200 / 4) = 50 -> [2, -2], +1 each -> [3, -1], a picked.
    expect(s.proposer).toBe('a')
    expect(s.priorities).toEqual([1n, -1n])
    expect(proposerAt(s, 0)).toBe('a')
  })
})

describe('proposer skip (offline validators)', () => {
  const setArb = fc
    .array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 7 })
    .map((ps) => ps.map((p, i) => ({ id: `v${i}`, power: BigInt(p) })))
  const caseArb = setArb.chain((vals) =>
    fc.record({
      vals: fc.constant(vals),
      height: fc.integer({ min: 1, max: 12 }),
      skip: fc.subarray(vals.map((v) => v.id)),
      round: fc.integer({ min: 0, max: 12 }),
    }),
  )

  it('never returns a skipped validator, unless every one is skipped (then it skips no one)', () => {
    fc.assert(
      fc.property(caseArb, ({ vals, height, skip, round }) => {
        const sel = selectorForHeight(vals, height)
        const p = proposerAt(sel, round, new Set(skip))
        if (skip.length < vals.length) expect(skip).not.toContain(p)
        else expect(p).toBe(proposerAt(sel, round))
      }),
      { numRuns: 400 },
    )
  })

  it('is the old proposer with an empty skip set, or one naming no validator', () => {
    fc.assert(
      fc.property(caseArb, ({ vals, height, round }) => {
        const sel = selectorForHeight(vals, height)
        const old = proposer(vals, height, round)
        expect(proposerAt(sel, round, new Set())).toBe(old)
        expect(proposerAt(sel, round, undefined)).toBe(old)
        expect(proposerAt(sel, round, new Set(['not-a-validator']))).toBe(old)
      }),
      { numRuns: 300 },
    )
  })

  it("gives a skipped validator's turns to the next in line: rounds are the non-skipped picks in order", () => {
    fc.assert(
      fc.property(caseArb, ({ vals, height, skip }) => {
        fc.pre(skip.length < vals.length)
        const sel = selectorForHeight(vals, height)
        const skipped = new Set(skip)
        // The height's sequence of single increments, skipped validators left out.
        const line: string[] = []
        for (let s = sel; line.length < 8; s = incrementProposerPriority(s, 1))
          if (!skipped.has(s.proposer!)) line.push(s.proposer!)
        expect([0, 1, 2, 3, 4, 5, 6, 7].map((r) => proposerAt(sel, r, skipped))).toEqual(line)
      }),
      { numRuns: 300 },
    )
    // Four equal validators, height 1 (a, b, c, d, a, ...): without b, rounds go a, c, d, a, c.
    const sel = selectorForHeight(FOUR, 1)
    expect([0, 1, 2, 3, 4].map((r) => proposerAt(sel, r, new Set(['b'])))).toEqual(['a', 'c', 'd', 'a', 'c'])
    expect([0, 1, 2].map((r) => proposerAt(sel, r, new Set(['a', 'c'])))).toEqual(['b', 'd', 'b'])
  })

  it('is deterministic: the same inputs (in any set order) give the same proposer; the selector is not changed', () => {
    fc.assert(
      fc.property(caseArb, ({ vals, height, skip, round }) => {
        const sel = selectorForHeight(vals, height)
        const copy = structuredClone(sel)
        const p = proposerAt(sel, round, new Set(skip))
        expect(proposerAt(sel, round, new Set([...skip].reverse()))).toBe(p)
        expect(proposerAt(selectorForHeight(vals, height), round, new Set(skip))).toBe(p)
        expect(sel).toEqual(copy)
      }),
      { numRuns: 200 },
    )
  })

  it('the core with startHeight.skip does not wait for a skipped proposer', () => {
    const timeout = PROPOSE_TIMEOUT_1_0
    const startSkipping = (self: string, skip: string[]) =>
      step(initialState(PARAMS, self), { type: 'startHeight', height: 1, validators: FOUR, skip })
    // Without skip, a proposes round 0 and b waits; with a offline, b asks for a value at once.
    expect(start('b').outputs).toEqual([timeout])
    const b = startSkipping('b', ['a'])
    expect(b.outputs).toEqual([timeout, { type: 'requestValue', height: 1, round: 0 }])
    expect(startSkipping('a', ['a']).outputs).toEqual([timeout]) // it still votes, it does not propose
    // Every node derives the same proposer: c takes b's proposal and ignores one from a.
    const c = startSkipping('c', ['a']).state
    expect(proposerOf(c, 0)).toBe('b')
    expect([1, 2, 3].map((r) => proposerOf(c, r))).toEqual(['c', 'd', 'b'])
    const fromB = proposalIn(c, 0, 'X')
    expect(fromB.proposal.from).toBe('b')
    expect(step(c, { ...fromB, proposal: { ...fromB.proposal, from: 'a' } }).state).toBe(c)
    expect(step(c, fromB).outputs).toEqual(signedVote('prevote', 0, 'X', 'c'))
    // The skip set is the height's: the next height starts from its own (none here), priorities unchanged.
    const next = step(c, { type: 'startHeight', height: 2, validators: FOUR }).state
    expect(next.skip.size).toBe(0)
    expect(proposerOf(next, 0)).toBe(proposer(FOUR, 2, 0))
    expect(next.selector).toEqual(selectorForHeight(FOUR, 2))
    // A node restored from its WAL uses the same skip set.
    const restored = restoreFromWal(PARAMS, 'c', 1, FOUR, [], ['a'])
    expect(proposerOf(restored.state, 0)).toBe('b')
  })
})

describe('Tendermint core transitions (Algorithm 1)', () => {
  it('L10-21 StartRound: everyone schedules timeoutPropose; the proposer asks for a value', () => {
    const timeout = PROPOSE_TIMEOUT_1_0
    expect(start('d').outputs).toEqual([timeout])
    const { state, outputs } = start('a')
    expect(outputs).toEqual([timeout, { type: 'requestValue', height: 1, round: 0 }])
    const proposal = { height: 1, round: 0, value: 'X', validRound: -1, from: 'a' }
    // L19 then L22 on its own proposal: persist before each broadcast.
    expect(step(state, { type: 'valueReady', height: 1, round: 0, value: 'X' }).outputs).toEqual([
      { type: 'persist', record: { type: 'proposal', proposal } },
      { type: 'broadcastProposal', proposal },
      ...signedVote('prevote', 0, 'X', 'a'),
    ])
    // A late answer for another round is ignored.
    expect(step(state, { type: 'valueReady', height: 1, round: 1, value: 'X' }).state).toBe(state)
  })

  it('L15-16: a proposer with a valid value re-proposes it with its validRound', () => {
    expect(proposer(FOUR, 1, 4)).toBe('a')
    const state = { ...inRound('a', 3, { value: 'V', round: 2 }), step: 'precommit' } satisfies ConsensusState
    const proposal = { height: 1, round: 4, value: 'V', validRound: 2, from: 'a' }
    const { outputs } = step(state, { type: 'timeout', kind: 'precommit', height: 1, round: 3 })
    expect(outputs).toEqual([
      { type: 'scheduleTimeout', kind: 'propose', height: 1, round: 4, durationMs: 800 },
      { type: 'persist', record: { type: 'proposal', proposal } },
      { type: 'broadcastProposal', proposal },
    ])
  })

  describe('L22-27: proposal with validRound -1 in the propose step', () => {
    const cases: {
      name: string
      lock: { value: ValueId; round: number } | null
      valid: boolean
      want: ValueId | null
    }[] = [
      { name: 'unlocked, valid -> id(v)', lock: null, valid: true, want: 'X' },
      { name: 'unlocked, invalid -> nil', lock: null, valid: false, want: null },
      { name: 'locked on v, valid -> id(v)', lock: { value: 'X', round: 0 }, valid: true, want: 'X' },
      { name: 'locked on another value -> nil', lock: { value: 'Y', round: 0 }, valid: true, want: null },
      { name: 'locked on v, invalid -> nil', lock: { value: 'X', round: 0 }, valid: false, want: null },
    ]
    it.each(cases)('$name', ({ lock, valid, want }) => {
      const state = inRound('d', 1, lock)
      const { state: next, outputs } = step(state, proposalIn(state, 1, 'X', -1, valid))
      expect(outputs).toEqual(signedVote('prevote', 1, want, 'd'))
      expect(next.step).toBe('prevote')
    })

    it('ignores a proposal not from proposer(h, r), and one outside the propose step', () => {
      const state = inRound('d', 1)
      const forged = {
        type: 'proposal',
        proposal: { height: 1, round: 1, value: 'X', validRound: -1, from: 'c' },
        valid: true,
      } as const
      expect(step(state, forged).state).toBe(state)
      const prevoting = { ...state, step: 'prevote' } satisfies ConsensusState
      expect(step(prevoting, proposalIn(state, 1, 'X')).outputs).toEqual([])
    })
  })

  describe('L28-33: re-proposal with 2f+1 prevotes at vr < round respects the lock', () => {
    const quorumAtVr = ['b', 'c', 'd'].map((from) => voteIn('prevote', 1, 'X', from))
    const cases: {
      name: string
      lock: { value: ValueId; round: number } | null
      valid: boolean
      want: ValueId | null
    }[] = [
      { name: 'unlocked -> id(v)', lock: null, valid: true, want: 'X' },
      {
        name: 'locked on another value at a round <= vr -> id(v)',
        lock: { value: 'Y', round: 0 },
        valid: true,
        want: 'X',
      },
      {
        name: 'locked on another value at vr itself -> id(v)',
        lock: { value: 'Y', round: 1 },
        valid: true,
        want: 'X',
      },
      {
        name: 'locked on another value after vr -> nil',
        lock: { value: 'Y', round: 2 },
        valid: true,
        want: null,
      },
      { name: 'locked on v after vr -> id(v)', lock: { value: 'X', round: 2 }, valid: true, want: 'X' },
      { name: 'invalid -> nil', lock: null, valid: false, want: null },
    ]
    it.each(cases)('$name', ({ lock, valid, want }) => {
      const state = inRound('a', 3, lock)
      const { state: next, outputs } = run(state, [...quorumAtVr, proposalIn(state, 3, 'X', 1, valid)])
      expect(outputs).toEqual(signedVote('prevote', 3, want, 'a'))
      expect(next.step).toBe('prevote')
    })

    it('waits for the 2f+1 prevotes of round vr', () => {
      const state = inRound('a', 3)
      const early = run(state, [proposalIn(state, 3, 'X', 1), ...quorumAtVr.slice(0, 2)])
      expect(early.outputs).toEqual([])
      expect(early.state.step).toBe('propose')
      expect(step(early.state, quorumAtVr[2]!).outputs).toEqual(signedVote('prevote', 3, 'X', 'a'))
    })
  })

  it('L34-35 and L61-64: 2f+1 prevotes for anything schedule timeoutPrevote once; it precommits nil', () => {
    const s0 = start('d').state
    const { state, outputs } = run(s0, [
      proposalIn(s0, 0, 'X'),
      voteIn('prevote', 0, null, 'a'),
      voteIn('prevote', 0, 'Y', 'b'),
      voteIn('prevote', 0, 'X', 'c'),
    ])
    expect(outputs.filter((o) => o.type === 'scheduleTimeout')).toEqual([
      { type: 'scheduleTimeout', kind: 'prevote', height: 1, round: 0, durationMs: 200 },
    ])
    expect(state.step).toBe('prevote')
    const stale = { type: 'timeout', kind: 'prevote', height: 1, round: 1 } as const
    expect(step(state, stale).state).toBe(state)
    const fired = step(state, { ...stale, round: 0 })
    expect(fired.outputs).toEqual(signedVote('precommit', 0, null, 'd'))
    expect(fired.state.step).toBe('precommit')
  })

  it('L57-60: timeoutPropose prevotes nil', () => {
    const { state } = start('d')
    const r = step(state, { type: 'timeout', kind: 'propose', height: 1, round: 0 })
    expect(r.outputs).toEqual(signedVote('prevote', 0, null, 'd'))
    expect(r.state.step).toBe('prevote')
    expect(step(r.state, { type: 'timeout', kind: 'propose', height: 1, round: 0 }).outputs).toEqual([])
  })

  it('L36-43: a valid proposal with 2f+1 prevotes locks and precommits it', () => {
    const s0 = start('d').state
    const { state, outputs } = run(s0, [
      proposalIn(s0, 0, 'X'),
      voteIn('prevote', 0, 'X', 'a'),
      voteIn('prevote', 0, 'X', 'b'),
    ])
    expect(outputs.slice(-2)).toEqual(signedVote('precommit', 0, 'X', 'd'))
    expect(state).toMatchObject({
      step: 'precommit',
      lockedValue: 'X',
      lockedRound: 0,
      validValue: 'X',
      validRound: 0,
    })
    // "for the first time": a fourth prevote changes nothing.
    expect(step(state, voteIn('prevote', 0, 'X', 'c')).outputs).toEqual([])
  })

  it('L36 in the precommit step only updates validValue (no lock, no second precommit)', () => {
    const s0 = start('d').state
    const afterTimeout = run(s0, [
      proposalIn(s0, 0, 'X'),
      voteIn('prevote', 0, null, 'a'),
      voteIn('prevote', 0, 'X', 'b'),
      { type: 'timeout', kind: 'prevote', height: 1, round: 0 },
    ]).state
    expect(afterTimeout.step).toBe('precommit')
    const { state, outputs } = step(afterTimeout, voteIn('prevote', 0, 'X', 'c'))
    expect(outputs).toEqual([])
    expect(state).toMatchObject({ lockedValue: null, lockedRound: -1, validValue: 'X', validRound: 0 })
  })

  it('L44-46: 2f+1 prevotes for nil precommit nil', () => {
    const s0 = start('d').state
    const { state, outputs } = run(s0, [
      proposalIn(s0, 0, 'X', -1, false),
      voteIn('prevote', 0, null, 'a'),
      voteIn('prevote', 0, null, 'b'),
    ])
    expect(outputs.slice(0, 2)).toEqual(signedVote('prevote', 0, null, 'd'))
    expect(outputs.slice(-2)).toEqual(signedVote('precommit', 0, null, 'd'))
    expect(state.step).toBe('precommit')
  })

  it('L47-48 and L65-67: 2f+1 precommits for anything schedule timeoutPrecommit once; it starts round + 1', () => {
    const s0 = start('d').state
    const { state, outputs } = run(s0, [
      voteIn('precommit', 0, null, 'a'),
      voteIn('precommit', 0, 'X', 'b'),
      voteIn('precommit', 0, 'Y', 'c'),
      voteIn('precommit', 0, 'Y', 'd'),
    ])
    expect(outputs).toEqual([
      { type: 'scheduleTimeout', kind: 'precommit', height: 1, round: 0, durationMs: 300 },
    ])
    expect(state.step).toBe('propose') // L47 fires in any step
    const next = step(state, { type: 'timeout', kind: 'precommit', height: 1, round: 0 })
    expect(next.state).toMatchObject({ round: 1, step: 'propose' })
    expect(next.outputs).toEqual([
      { type: 'scheduleTimeout', kind: 'propose', height: 1, round: 1, durationMs: 500 },
    ])
  })

  it('L55-56: f+1 power of messages from a higher round skips to it (> 1/3, not = 1/3)', () => {
    const vals = [
      { id: 'a', power: 1n },
      { id: 'b', power: 1n },
      { id: 'c', power: 1n },
      { id: 'd', power: 3n },
    ]
    const s0 = start('b', vals).state
    expect(proposerOf(s0, 7)).toBe('a')
    const third = run(s0, [voteIn('prevote', 5, null, 'a'), voteIn('precommit', 5, 'X', 'c')])
    expect(third.state.round).toBe(0) // 2 of 6: exactly one third
    expect(step(third.state, voteIn('prevote', 5, null, 'a')).state).toBe(third.state) // duplicate
    const skipped = step(third.state, voteIn('prevote', 7, 'Z', 'd'))
    expect(skipped.state).toMatchObject({ round: 7, step: 'propose' }) // d alone has 3 of 6
    expect(skipped.outputs).toEqual([
      { type: 'scheduleTimeout', kind: 'propose', height: 1, round: 7, durationMs: 1100 },
    ])
    // A proposal is a message too (four equal validators: c proposes round 2).
    const e0 = start('d').state
    const viaProposal = step(e0, proposalIn(e0, 2, 'X'))
    expect(viaProposal.state.round).toBe(0) // 1 of 4
    expect(step(viaProposal.state, voteIn('precommit', 2, null, 'b')).state.round).toBe(2) // 2 of 4
  })

  it('L49-54: a proposal and 2f+1 precommits for it in any round decide, with the certificate', () => {
    const s0 = start('d').state
    const precommits = ['a', 'b', 'c'].map((from) => voteIn('precommit', 2, 'X', from))
    const { state, outputs } = run(s0, [...precommits, proposalIn(s0, 2, 'X')])
    const decide = outputs.find((o) => o.type === 'decide')
    expect(decide).toEqual({
      type: 'decide',
      height: 1,
      round: 2,
      value: 'X',
      certificate: precommits.map((p) => p.vote),
    })
    expect(outputs.at(-1)).toEqual(decide) // nothing after the decision
    expect(state.decision?.value).toBe('X')
    // Decided: the height is over until the driver starts the next one (votes are only logged).
    expect(step(state, voteIn('prevote', 2, 'X', 'a')).outputs).toEqual([])
    expect(step(state, { type: 'timeout', kind: 'precommit', height: 1, round: 2 }).state).toBe(state)
    expect(() => step(state, { type: 'startHeight', height: 1, validators: FOUR })).toThrow()
    const next = step(state, { type: 'startHeight', height: 2, validators: FOUR })
    expect(next.state).toMatchObject({ height: 2, round: 0, decision: null, lockedRound: -1, validRound: -1 })
  })

  it('L50: an invalid value is never decided', () => {
    const s0 = start('d').state
    const { outputs, state } = run(s0, [
      proposalIn(s0, 0, 'X', -1, false),
      ...['a', 'b', 'c'].map((from) => voteIn('precommit', 0, 'X', from)),
    ])
    expect(outputs.some((o) => o.type === 'decide')).toBe(false)
    expect(state.decision).toBeNull()
  })

  it('ignores messages of other heights and of non-validators', () => {
    const { state } = start('d')
    expect(step(state, voteIn('prevote', 0, 'X', 'a', 2)).state).toBe(state)
    expect(step(state, voteIn('prevote', 0, 'X', 'mallory')).state).toBe(state)
  })

  it('reports an equivocating validator once, as evidence', () => {
    const { state } = start('d')
    const { outputs } = run(state, [
      voteIn('prevote', 0, 'X', 'b'),
      voteIn('prevote', 0, 'Y', 'b'),
      voteIn('prevote', 0, 'Y', 'b'),
      voteIn('prevote', 0, null, 'b'),
    ])
    expect(outputs).toEqual([
      {
        type: 'evidence',
        evidence: {
          validator: 'b',
          first: { kind: 'prevote', height: 1, round: 0, value: 'X', from: 'b' },
          second: { kind: 'prevote', height: 1, round: 0, value: 'Y', from: 'b' },
        },
      },
    ])
  })

  it('checks late votes of the previous height for equivocation, and nothing else', () => {
    const s0 = start('d').state
    const h1 = run(s0, [voteIn('precommit', 0, 'X', 'b')]).state
    const h2 = step(h1, { type: 'startHeight', height: 2, validators: FOUR }).state
    const late = step(h2, voteIn('precommit', 0, 'Y', 'b'))
    expect(late.outputs).toEqual([
      {
        type: 'evidence',
        evidence: {
          validator: 'b',
          first: { kind: 'precommit', height: 1, round: 0, value: 'X', from: 'b' },
          second: { kind: 'precommit', height: 1, round: 0, value: 'Y', from: 'b' },
        },
      },
    ])
    expect(late.state.rounds).toBe(h2.rounds) // the current height is untouched
    expect(step(late.state, voteIn('precommit', 0, 'Y', 'c', 0)).state).toBe(late.state)
  })

  it('re-sends what it signed instead of signing a different value for the same step', () => {
    const s0 = start('d').state
    const prevoted = run(s0, [proposalIn(s0, 0, 'X')]).state
    // Force the propose step back (as after a crash without restore): the timeout would prevote nil.
    const rewound = { ...prevoted, step: 'propose' } satisfies ConsensusState
    const { outputs } = step(rewound, { type: 'timeout', kind: 'propose', height: 1, round: 0 })
    expect(outputs).toEqual([
      { type: 'broadcastVote', vote: { kind: 'prevote', height: 1, round: 0, value: 'X', from: 'd' } },
    ])
  })

  it('restoreFromWal rebuilds the lock and what was signed, and resumes the round', () => {
    const wal: WalRecord[] = [
      { type: 'vote', vote: { kind: 'prevote', height: 1, round: 1, value: 'X', from: 'd' } },
      { type: 'vote', vote: { kind: 'precommit', height: 1, round: 1, value: 'X', from: 'd' } },
      { type: 'vote', vote: { kind: 'prevote', height: 1, round: 2, value: null, from: 'd' } },
      { type: 'vote', vote: { kind: 'prevote', height: 0, round: 0, value: 'OLD', from: 'd' } },
    ]
    const { state, outputs } = restoreFromWal(PARAMS, 'd', 1, FOUR, wal)
    expect(state).toMatchObject({ height: 1, round: 2, step: 'prevote', lockedValue: 'X', lockedRound: 1 })
    expect(outputs).toEqual(
      wal.slice(0, 3).map((r) => ({ type: 'broadcastVote', vote: r.type === 'vote' ? r.vote : null })),
    )
    // Locked on X since round 1: a fresh proposal of Y in round 4 (proposer a) is prevoted nil.
    const r4 = { ...state, round: 4, step: 'propose' } satisfies ConsensusState
    expect(step(r4, proposalIn(r4, 4, 'Y')).outputs).toEqual(signedVote('prevote', 4, null, 'd'))
  })

  it('restoreFromWal re-sends a signed proposal rather than asking for a new value', () => {
    const proposal = { height: 1, round: 0, value: 'P', validRound: -1, from: 'a' }
    const { state, outputs } = restoreFromWal(PARAMS, 'a', 1, FOUR, [{ type: 'proposal', proposal }])
    expect(outputs).toEqual([
      { type: 'scheduleTimeout', kind: 'propose', height: 1, round: 0, durationMs: 400 },
      { type: 'broadcastProposal', proposal },
      ...signedVote('prevote', 0, 'P', 'a'), // L22 on its own proposal, never signed before
    ])
    expect(state.step).toBe('prevote')
  })

  it('a restored proposer whose re-proposal lost its 2f+1 prevotes of vr times out instead of stalling', () => {
    // Regression (sim seed 109339, heights 5, GST <= 20 s): the proposer of round 2 re-proposed a value
    // with validRound 1, crashed, and after the restart nobody could resend the round-1 prevotes (two
    // were Byzantine). Without its own timeoutPropose it waited in the propose step forever.
    const proposal = { height: 1, round: 2, value: 'V', validRound: 1, from: 'c' }
    const { state, outputs } = restoreFromWal(PARAMS, 'c', 1, FOUR, [{ type: 'proposal', proposal }])
    expect(state).toMatchObject({ round: 2, step: 'propose' })
    expect(outputs).toContainEqual({
      type: 'scheduleTimeout',
      kind: 'propose',
      height: 1,
      round: 2,
      durationMs: 600,
    })
    const timedOut = step(state, { type: 'timeout', kind: 'propose', height: 1, round: 2 })
    expect(timedOut.outputs).toEqual(signedVote('prevote', 2, null, 'c'))
  })

  it('never mutates the state it is given', () => {
    const s0 = start('d').state
    const snapshot = structuredClone(s0)
    run(s0, [proposalIn(s0, 0, 'X'), voteIn('prevote', 0, 'X', 'a'), voteIn('prevote', 0, 'X', 'b')])
    expect(s0).toEqual(snapshot)
  })
})

describe('safety properties of the core under arbitrary inputs and crashes', () => {
  type Action =
    | { kind: 'proposal'; round: number; value: ValueId; validRound: number; valid: boolean }
    | { kind: 'vote'; vote: VoteKind; round: number; value: ValueId | null; from: string }
    | { kind: 'timeout'; timeout: 'propose' | 'prevote' | 'precommit'; round: number }
    | { kind: 'valueReady'; round: number; value: ValueId }
    | { kind: 'crash' }
  const round = fc.integer({ min: 0, max: 3 })
  const value = fc.constantFrom('X', 'Y', 'Z')
  const action: fc.Arbitrary<Action> = fc.oneof(
    fc.record({
      kind: fc.constant('proposal' as const),
      round,
      value,
      validRound: fc.integer({ min: -1, max: 2 }),
      valid: fc.boolean(),
    }),
    fc.record({
      kind: fc.constant('vote' as const),
      vote: fc.constantFrom('prevote' as const, 'precommit' as const),
      round,
      value: fc.option(value, { nil: null }),
      from: fc.constantFrom('b', 'c', 'd'),
    }),
    fc.record({
      kind: fc.constant('timeout' as const),
      timeout: fc.constantFrom('propose' as const, 'prevote' as const, 'precommit' as const),
      round,
    }),
    fc.record({ kind: fc.constant('valueReady' as const), round, value }),
    fc.record({ kind: fc.constant('crash' as const) }),
  )

  it('persists before broadcasting and never signs two values for one height/round/step', () => {
    fc.assert(
      fc.property(fc.array(action, { maxLength: 60 }), (actions) => {
        const wal: WalRecord[] = []
        const signed = new Map<string, string>()
        const persisted = new Set<string>()
        let state = start('a').state
        const perform = (outputs: readonly ConsensusOutput[]) => {
          for (const o of outputs) {
            if (o.type === 'persist') {
              wal.push(o.record)
              const r = o.record
              const [slot, val] =
                r.type === 'proposal'
                  ? [`proposal/${r.proposal.round}`, `${r.proposal.value}@${r.proposal.validRound}`]
                  : [`${r.vote.kind}/${r.vote.round}`, String(r.vote.value)]
              expect(signed.get(slot) ?? val, `signed ${slot} twice`).toBe(val)
              signed.set(slot, val)
              persisted.add(JSON.stringify(r.type === 'proposal' ? r.proposal : r.vote))
            } else if (o.type === 'broadcastVote' || o.type === 'broadcastProposal') {
              const msg = o.type === 'broadcastVote' ? o.vote : o.proposal
              expect(persisted.has(JSON.stringify(msg)), 'broadcast before persist').toBe(true)
            }
          }
        }
        for (const a of actions) {
          if (a.kind === 'crash') {
            const before = { lockedValue: state.lockedValue, lockedRound: state.lockedRound }
            const restored = restoreFromWal(PARAMS, 'a', 1, FOUR, wal)
            perform(restored.outputs)
            state = restored.state
            expect({ lockedValue: state.lockedValue, lockedRound: state.lockedRound }).toEqual(before)
            continue
          }
          const input: ConsensusInput =
            a.kind === 'proposal'
              ? {
                  type: 'proposal',
                  proposal: {
                    height: 1,
                    round: a.round,
                    value: a.value,
                    validRound: a.validRound,
                    from: proposerOf(state, a.round),
                  },
                  valid: a.valid,
                }
              : a.kind === 'vote'
                ? voteIn(a.vote, a.round, a.value, a.from)
                : a.kind === 'timeout'
                  ? { type: 'timeout', kind: a.timeout, height: 1, round: a.round }
                  : { type: 'valueReady', height: 1, round: a.round, value: a.value }
          const r = step(state, input)
          perform(r.outputs)
          state = r.state
        }
      }),
      { numRuns: 400 },
    )
  })
})
