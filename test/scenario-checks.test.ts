import { describe, expect, it } from 'vitest'
import {
  checkBackAtHeight,
  checkHeightsAdvance,
  checkIntentsFilled,
  checkNoLostIntents,
  checkSameBlocks,
  detectFigures,
} from '../devnet/scenario-checks.ts'
import { heightsToCheck } from '../devnet/scenario-http.ts'
import {
  applyStep,
  type ExecutedStep,
  type IntentLookup,
  type NodeSample,
  type Observations,
  type SampleRound,
  WHOLE,
} from '../devnet/scenario-model.ts'
import { buildTimeline, SCENARIO_NAMES } from '../devnet/scenario-timelines.ts'

const PEERS = ['p0', 'p1', 'p2', 'p3']
const ADDRS = ['0xa0', '0xa1', '0xa2', '0xa3']
const BOUNDS = { stallBoundMs: 7_000, recoverBoundMs: 10_000, fillBoundMs: 30_000 }

/** A node answering with `height`, connected to `peers` (indexes). */
function up(
  node: number,
  height: number,
  peers: number[] = [0, 1, 2, 3].filter((p) => p !== node),
): NodeSample {
  return {
    node,
    up: true,
    height,
    blockHash: `0xh${height}`,
    peers: peers.length,
    peerIds: peers.map((p) => PEERS[p]!),
  }
}

/** Rounds every 500 ms from t=0 to `untilMs`; `at(t)` gives the four nodes' samples. */
function rounds(untilMs: number, at: (t: number) => NodeSample[]): SampleRound[] {
  const out: SampleRound[] = []
  for (let t = 0; t <= untilMs; t += 500) out.push({ atMs: t, nodes: at(t) })
  return out
}

function obs(over: Partial<Observations>): Observations {
  return {
    nodes: 4,
    powers: [10n, 10n, 10n, 10n],
    validatorAddresses: ADDRS,
    peerIds: PEERS,
    chainIds: [901, 902],
    startMs: 0,
    trafficEndMs: 20_000,
    endMs: 25_000,
    steps: [],
    rounds: [],
    intents: [],
    progress: new Map(),
    lookups: new Map(),
    blocks: [],
    blockRange: { from: 1, to: 0, sampled: false },
    ...over,
  }
}

const step = (
  cmd: ExecutedStep['cmd'],
  args: string[],
  startMs: number,
  doneMs = startMs + 100,
): ExecutedStep => ({
  atMs: startMs,
  cmd,
  args,
  startMs,
  doneMs,
})

describe('scenario invariants', () => {
  it('same-blocks: one hash per height passes, two hashes at a height fail naming it', () => {
    const same = obs({
      blocks: [1, 2, 3].map((height) => ({
        height,
        hashes: [`0x${height}`, `0x${height}`, `0x${height}`, null],
      })),
      blockRange: { from: 1, to: 3, sampled: false },
    })
    expect(checkSameBlocks(same).passed).toBe(true)
    const fork = obs({
      blocks: [
        { height: 1, hashes: ['0x1', '0x1', '0x1', '0x1'] },
        { height: 2, hashes: ['0x2', '0x2', '0xbad', '0xbad'] },
      ],
    })
    const v = checkSameBlocks(fork)
    expect(v.passed).toBe(false)
    expect(v.detail).toMatch(/height 2: 0x2 on nodes 0,1 vs 0xbad on nodes 2,3/)
  })

  it('same-blocks: a node missing a block below the height it reported fails', () => {
    const o = obs({
      rounds: [{ atMs: 0, nodes: [up(0, 5), up(1, 5), up(2, 5), up(3, 5)] }],
      blocks: [{ height: 4, hashes: ['0x4', '0x4', '0x4', null] }],
    })
    expect(checkSameBlocks(o).detail).toMatch(/node 3 has no block 4/)
  })

  it('heights-advance: a stall while all are connected fails; the same stall in a 2|2 split does not count', () => {
    const stuck = (t: number) => (t < 4_000 ? Math.floor(t / 500) : 8)
    const connected = obs({ rounds: rounds(20_000, (t) => [0, 1, 2, 3].map((n) => up(n, stuck(t)))) })
    const v = checkHeightsAdvance(connected, BOUNDS)
    expect(v.invariant.passed).toBe(false)
    expect(v.invariant.detail).toMatch(/stuck at height 8 for 16.0 s/)
    // Nodes 0,1 reach each other, and 2,3: no group holds more than 2/3 of the stake.
    const halves = obs({
      rounds: rounds(20_000, (t) =>
        t < 4_000
          ? [0, 1, 2, 3].map((n) => up(n, stuck(t)))
          : [up(0, 8, [1]), up(1, 8, [0]), up(2, 8, [3]), up(3, 8, [2])],
      ),
    })
    expect(checkHeightsAdvance(halves, BOUNDS).invariant.passed).toBe(true)
    // Three of four connected is a quorum: the stall counts again.
    const threeOfFour = obs({
      rounds: rounds(20_000, (t) => [
        up(0, stuck(t), [1, 2]),
        up(1, stuck(t), [0]),
        up(2, stuck(t), [0]),
        { node: 3, up: false },
      ]),
    })
    expect(checkHeightsAdvance(threeOfFour, BOUNDS).invariant.passed).toBe(false)
  })

  it('back-at-height: a restarted node stuck below the network height fails, one that catches up passes', () => {
    const steps = [step('kill', ['3'], 1_000), step('restart', ['3'], 5_000, 6_000)]
    const height = (t: number) => 10 + Math.floor(t / 500)
    const stuck = obs({
      steps,
      rounds: rounds(20_000, (t) => [
        up(0, height(t)),
        up(1, height(t)),
        up(2, height(t)),
        t < 1_000 ? up(3, height(t)) : t < 6_000 ? { node: 3, up: false } : up(3, 12),
      ]),
    })
    const v = checkBackAtHeight(stuck, BOUNDS)
    expect(v.invariant.passed).toBe(false)
    expect(v.invariant.detail).toMatch(
      /after restart 3: node 3 never reached height 22 \(last seen at 12 while the network was at 50/,
    )
    const caughtUp = obs({
      steps,
      rounds: rounds(20_000, (t) =>
        [0, 1, 2, 3].map((n) =>
          n === 3 && t >= 1_000 && t < 6_000
            ? { node: 3, up: false }
            : up(n, n === 3 && t < 8_000 ? 12 : height(t)),
        ),
      ),
    })
    const ok = checkBackAtHeight(caughtUp, BOUNDS)
    expect(ok.invariant.passed).toBe(true)
    expect(ok.recoverMs).toBe(2_000)
    // The kill was seen once no running node listed node 3 as a peer.
    const seen = detectFigures(
      obs({
        steps,
        rounds: rounds(20_000, (t) =>
          [0, 1, 2]
            .map((n) =>
              up(n, 1, t < 2_000 ? [0, 1, 2, 3].filter((p) => p !== n) : [0, 1, 2].filter((p) => p !== n)),
            )
            .concat([{ node: 3, up: false }]),
        ),
      }),
    )
    expect(seen.detectMs).toBe(1_000)
  })

  it('no-lost-intents and intents-filled: a 202 no node knows fails both; a known filled one passes', () => {
    const id = `0x${'11'.repeat(32)}` as const
    const lost = `0x${'22'.repeat(32)}` as const
    const base = {
      rounds: rounds(10_000, () => [0, 1, 2, 3].map((n) => up(n, 5))),
      intents: [
        { id, node: 0, sentAtMs: 1_000, chains: [901], status: 202 as const },
        { id: lost, node: 1, sentAtMs: 2_000, chains: [], status: 202 as const },
      ],
      lookups: new Map<string, IntentLookup[]>([
        [id, [0, 1, 2, 3].map((node) => ({ node, result: 'known' as const, state: 'filled' }))],
        [
          lost,
          [0, 1, 2, 3].map((node) => ({
            node,
            result: node === 2 ? ('unreachable' as const) : ('missing' as const),
          })),
        ],
      ]),
      progress: new Map([[id, { state: 'filled', filledAtMs: 2_500 }]]),
    }
    const v = checkNoLostIntents(obs(base))
    expect(v.passed).toBe(false)
    expect(v.detail).toMatch(
      /0x22222222 \(202 from node 1 at \+2.0 s\): node 0 missing, node 1 missing, node 2 unreachable/,
    )
    expect(v.detail).not.toMatch(/0x11111111/)
    const f = checkIntentsFilled(obs(base), BOUNDS)
    expect(f.invariant.passed).toBe(false)
    expect(f.invariant.detail).toMatch(/1 of 2 accepted intents not filled/)
    const only = obs({ ...base, intents: [base.intents[0]!] })
    expect(checkNoLostIntents(only).passed).toBe(true)
    expect(checkIntentsFilled(only, BOUNDS).invariant.passed).toBe(true)
    // Filled, but 40 s after the network could: late.
    const late = obs({ ...only, progress: new Map([[id, { state: 'filled', filledAtMs: 41_000 }]]) })
    expect(checkIntentsFilled(late, BOUNDS).invariant.detail).toMatch(/filled 40.0 s after it could be/)
  })
})

describe('scenario timelines', () => {
  it.each(SCENARIO_NAMES)('%s replays from its seed and leaves the network whole', (name) => {
    for (const short of [true, false]) {
      const p = { nodes: 4, chainIds: [901, 902, 903], seed: 42, short }
      const tl = buildTimeline(name, p)
      expect(buildTimeline(name, p)).toEqual(tl)
      expect(tl.steps.length).toBeGreaterThan(0)
      let t = WHOLE
      for (const s of tl.steps) t = applyStep(t, s, p.chainIds)
      expect([t.down.size, t.groups, t.rollupsDown.size]).toEqual([0, null, 0])
      const at = tl.steps.map((s) => s.atMs)
      expect(at).toEqual([...at].sort((a, b) => a - b))
      expect(tl.endMs).toBeGreaterThan(at.at(-1)!)
    }
  })

  it('churn never has two nodes down at once and --duration-ms scales the plan', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const tl = buildTimeline('churn', { nodes: 4, chainIds: [901], seed, short: false })
      let t = WHOLE
      for (const s of tl.steps) {
        t = applyStep(t, s, [901])
        expect(t.down.size).toBeLessThanOrEqual(1)
      }
    }
    const scaled = buildTimeline('validator-crash', {
      nodes: 4,
      chainIds: [901],
      seed: 1,
      short: true,
      durationMs: 5_500,
    })
    expect(scaled.endMs).toBe(5_500)
    expect(scaled.steps[0]!.atMs).toBe(1_500)
  })

  it('long chains are sampled, keeping both ends and the heights around each fault', () => {
    expect(heightsToCheck(50, 300, [])).toEqual({
      heights: Array.from({ length: 50 }, (_, i) => i + 1),
      sampled: false,
    })
    const { heights, sampled } = heightsToCheck(10_000, 300, [4_321])
    expect(sampled).toBe(true)
    expect(heights.length).toBeLessThanOrEqual(330)
    for (const h of [1, 5, 4_319, 4_323, 9_981, 10_000]) expect(heights).toContain(h)
  })
})
