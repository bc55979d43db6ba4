import { describe, expect, it } from 'vitest'
import {
  type Behaviour,
  defaultTerminationBoundMs,
  describeConfig,
  randomConfig,
  runSimulation,
  SIM_PARAMS,
  type SimConfig,
  type SimResult,
} from './sim/network.ts'

/** Seeds run in CI; `scripts/soak-consensus.ts` runs thousands. */
const SEEDS = Number(process.env.CONSENSUS_SIM_SEEDS ?? 300)

function failure(r: SimResult): string {
  return `${describeConfig(r.config)}\n  ${r.violations.slice(0, 8).join('\n  ')}`
}

/** A calm scenario (GST at 0, no faults) to adapt in targeted tests. */
function calm(seed: number, behaviours: readonly Behaviour[], overrides: Partial<SimConfig> = {}): SimConfig {
  return {
    seed,
    validators: behaviours.map((behaviour, i) => ({ id: `v${i}`, power: 1n, behaviour })),
    heights: 3,
    gstMs: 0,
    preGstMaxDelayMs: 0,
    preGstDropRate: 0,
    preGstPrecommitExtraDelayMs: 0,
    postGstMaxDelayMs: 50,
    partitions: [],
    crashes: [],
    params: SIM_PARAMS,
    gossipIntervalMs: 250,
    valueDelayMaxMs: 10,
    terminationBoundMs: defaultTerminationBoundMs(3),
    ...overrides,
  }
}

describe('Tendermint on a simulated network', () => {
  it(`keeps agreement, validity, termination after GST and valid certificates over ${SEEDS} seeds`, () => {
    const failures: string[] = []
    const coverage = {
      byzantine: 0,
      equivocation: 0,
      invalidProposals: 0,
      silent: 0,
      partitions: 0,
      restarts: 0,
      drops: 0,
      laterRounds: 0,
      unequalStakes: 0,
      evidence: 0,
      blockSync: 0,
    }
    let latest = 0
    for (let seed = 1; seed <= SEEDS; seed++) {
      const config = randomConfig(seed)
      const r = runSimulation(config)
      if (r.violations.length > 0) failures.push(failure(r))
      if (r.finishedAtMs !== null) latest = Math.max(latest, r.finishedAtMs - config.gstMs)
      const vals = config.validators
      if (vals.some((v) => v.behaviour !== 'honest')) coverage.byzantine++
      if (vals.some((v) => v.behaviour === 'silent')) coverage.silent++
      if (r.stats.equivocations > 0) coverage.equivocation++
      if (r.stats.invalidProposals > 0) coverage.invalidProposals++
      if (config.partitions.length > 0) coverage.partitions++
      if (r.stats.restarts > 0) coverage.restarts++
      if (config.preGstDropRate > 0 && config.gstMs > 0) coverage.drops++
      if (r.stats.maxRound > 0) coverage.laterRounds++
      if (new Set(vals.map((v) => v.power)).size > 1) coverage.unequalStakes++
      if ([...r.evidence.values()].some((e) => e.length > 0)) coverage.evidence++
      if (r.stats.synced > 0) coverage.blockSync++
    }
    expect(failures, failures.join('\n')).toEqual([])
    // The scenarios really exercise the faults they claim to.
    for (const [fault, seeds] of Object.entries(coverage)) {
      expect(seeds, `${fault} occurred in only ${seeds} of ${SEEDS} seeds`).toBeGreaterThanOrEqual(SEEDS / 20)
    }
    expect(latest).toBeLessThanOrEqual(defaultTerminationBoundMs(3))
  })

  it('replays a seed exactly', () => {
    for (const seed of [7, 42, 1234]) {
      const a = runSimulation(randomConfig(seed))
      const b = runSimulation(randomConfig(seed))
      expect(b.decisions, `seed ${seed}`).toEqual(a.decisions)
      expect(b.decidedAtMs, `seed ${seed}`).toEqual(a.decidedAtMs)
      expect(b.stats, `seed ${seed}`).toEqual(a.stats)
    }
  })

  it('every honest validator records evidence against an equivocating validator', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const r = runSimulation(calm(seed, ['honest', 'honest', 'honest', 'equivocate']))
      expect(r.violations, failure(r)).toEqual([])
      for (const [id, evidence] of r.evidence) {
        expect(
          evidence.some((e) => e.validator === 'v3'),
          `seed ${seed}: ${id} holds no evidence against v3`,
        ).toBe(true)
      }
    }
  })

  it('never decides the invalid values a Byzantine proposer offers', () => {
    let offered = 0
    for (let seed = 1; seed <= 20; seed++) {
      const r = runSimulation(calm(seed, ['invalid', 'honest', 'honest', 'honest', 'honest'], { heights: 5 }))
      expect(r.violations, failure(r)).toEqual([])
      offered += r.stats.invalidProposals
      for (const decisions of r.decisions.values()) {
        for (const d of decisions.values()) expect(d.value.startsWith('bad/'), `seed ${seed}`).toBe(false)
      }
    }
    expect(offered).toBeGreaterThan(0)
  })

  it('makes no progress while partitioned without a quorum, and decides after the heal', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const config = calm(seed, ['honest', 'honest', 'honest', 'honest'], {
        gstMs: 3000,
        preGstMaxDelayMs: 50,
        partitions: [
          {
            startMs: 0,
            endMs: 3000,
            groups: [
              [0, 1],
              [2, 3],
            ],
          },
        ],
      })
      const r = runSimulation(config)
      expect(r.violations, failure(r)).toEqual([])
      for (const [id, times] of r.decidedAtMs) {
        for (const t of times.values())
          expect(t, `seed ${seed}: ${id} decided during the partition`).toBeGreaterThan(3000)
      }
    }
  })

  it('a validator that crashes right after a WAL write restarts without equivocating', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const config = calm(seed, ['honest', 'honest', 'honest', 'honest', 'honest'], {
        heights: 8,
        gstMs: 4000,
        preGstMaxDelayMs: 100,
        crashes: [
          { node: 1, atMs: 20 + seed * 30, restartMs: 2000, afterPersist: true },
          { node: 3, atMs: 300, restartMs: 1200, afterPersist: false },
        ],
        terminationBoundMs: defaultTerminationBoundMs(8),
      })
      const r = runSimulation(config)
      expect(r.violations, failure(r)).toEqual([])
      expect(r.stats.restarts, `seed ${seed}`).toBe(2)
      expect(r.stats.crashesAfterPersist, `seed ${seed}`).toBe(1)
    }
  })

  it('a validator down for many heights catches up by block sync through the links, despite a liar', () => {
    let rejected = 0
    for (let seed = 1; seed <= 10; seed++) {
      const heights = 30
      const config = calm(seed, ['honest', 'honest', 'honest', 'honest', 'honest', 'invalid'], {
        heights,
        gstMs: 500,
        // Node 4 is down from the start until long after the others are done with most heights.
        crashes: [{ node: 4, atMs: 0, restartMs: 20_000, afterPersist: false }],
        terminationBoundMs: 20_000 + defaultTerminationBoundMs(heights),
      })
      const r = runSimulation(config)
      expect(r.violations, failure(r)).toEqual([])
      const decided = r.decidedAtMs.get('v4')!
      expect(decided.size, `seed ${seed}`).toBe(heights)
      // Almost all its heights came by sync after the restart, and quickly (virtual time).
      expect(r.stats.synced, `seed ${seed}`).toBeGreaterThanOrEqual(heights - 5)
      const last = Math.max(...decided.values())
      expect(last - 20_000, `seed ${seed}: catch-up took ${last - 20_000} ms`).toBeLessThan(3_000)
      rejected += r.stats.syncRejected
    }
    // The liar's forged certificates were offered and refused.
    expect(rejected).toBeGreaterThan(0)
  })

  it('the checks catch a validator that loses its WAL (amnesia) and equivocates', () => {
    const caught: number[] = []
    for (let seed = 1; seed <= 60; seed++) {
      const r = runSimulation({ ...randomConfig(seed), loseWalOnCrash: true })
      if (r.violations.some((v) => v.includes('signed') && v.includes('twice'))) caught.push(seed)
    }
    expect(caught.length).toBeGreaterThan(0)
  })
})
