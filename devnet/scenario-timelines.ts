/**
 * The named devnet scenarios as timelines of fault commands (the verbs of `murmur devnet <verb>`).
 *
 * A timeline is data: when each fault happens, relative to the start of the run. The runner
 * (scenario.ts) plays it against a running devnet; the checker (scenario-checks.ts) judges what the
 * nodes' HTTP APIs showed meanwhile. Every timeline ends with the network whole again (every node
 * running, no partition, every rollup up), so that recovery can be measured after the last fault.
 */

/** The fault commands of `Devnet.control`. */
export type FaultCmd = 'kill' | 'restart' | 'partition' | 'heal' | 'rollup-down' | 'rollup-up' | 'spike'

/**
 * One fault command, planned at `atMs` after the start of the run. The runner keeps the planned gap
 * between two faults from the moment the previous command returned, so a slow command (a restart on a
 * loaded machine) delays what follows rather than shortening it.
 */
export interface FaultStep {
  atMs: number
  cmd: FaultCmd
  args: string[]
  /**
   * Before this step, wait (bounded) until every running validator signs again in its own latest
   * commit: the next fault then hits a whole network, not one still taking a restarted node back.
   */
  settle?: boolean
}

/** A scenario's plan: its faults, and how long the run lasts after the last one (traffic goes on). */
export interface Timeline {
  steps: FaultStep[]
  /** When intent traffic stops, ms after the start; after it the runner only waits and checks. */
  endMs: number
}

/** Names accepted by `murmur devnet scenario NAME`. */
export const SCENARIO_NAMES = [
  'validator-crash',
  'churn',
  'partition-heal',
  'rollup-outage',
  'load-spike',
] as const
export type ScenarioName = (typeof SCENARIO_NAMES)[number]

/** What a timeline depends on. */
export interface TimelineParams {
  nodes: number
  /** Chain ids of the devnet's rollups. */
  chainIds: number[]
  seed: number
  /** The CI timeline: faults of a few seconds, so a run takes about 20-30 s. */
  short: boolean
  /** When set, the chosen timeline is scaled so that its traffic ends at this many ms. */
  durationMs?: number
}

/**
 * A small seeded PRNG (splitmix32), so `--seed N` replays the same churn. Not for keys.
 * Returns a function giving uniform numbers in [0, 1).
 */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x9e3779b9) >>> 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad)
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97)
    return ((z ^ (z >>> 15)) >>> 0) / 4294967296
  }
}

/** Uniform integer in [lo, hi]. */
function between(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1))
}

/**
 * Baseline first (no fault: the pace and fill latency the faults are compared with), then the faults.
 * `d` picks a duration by mode: the default shows something real (tens of seconds), short is for CI.
 */
export function buildTimeline(name: ScenarioName, p: TimelineParams): Timeline {
  if (p.nodes < 2) throw new Error('a scenario needs at least two nodes')
  const rand = seededRandom(p.seed)
  const d = (full: number, short: number) => (p.short ? short : full)
  const node = () => String(between(rand, 0, p.nodes - 1))
  const steps: FaultStep[] = []
  let t = d(5_000, 3_000)
  // The short (CI) timelines run one fault at a time on a whole network; the default ones do not wait,
  // so a fault can land while the previous one is still healing.
  const at = (cmd: FaultCmd, args: string[] = []) => {
    const prev = steps.at(-1)
    // A new fault, not the end of the previous one (heal, rollup-up, restart after a kill).
    const starts =
      ['kill', 'partition', 'rollup-down'].includes(cmd) ||
      (cmd === 'restart' && !(prev?.cmd === 'kill' && prev.args[0] === args[0]))
    steps.push({ atMs: t, cmd, args, ...(p.short && prev !== undefined && starts ? { settle: true } : {}) })
  }
  switch (name) {
    case 'validator-crash': {
      // One validator dies (kill -9) and comes back: long enough away that catching up needs sync.
      const victim = node()
      at('kill', [victim])
      t += d(30_000, 3_000)
      at('restart', [victim])
      t += d(15_000, 5_000)
      break
    }
    case 'churn': {
      // One node at a time (so more than 2/3 of stake stays up with 4 equal validators): crashes
      // (kill -9, later restart) and graceful restarts, at random, several times.
      const rounds = d(6, 3)
      let last = -1
      for (let r = 0; r < rounds; r++) {
        let victim = between(rand, 0, p.nodes - 1)
        if (victim === last) victim = (victim + 1) % p.nodes
        last = victim
        if (rand() < 0.7) {
          at('kill', [String(victim)])
          t += p.short ? between(rand, 1_500, 2_500) : between(rand, 5_000, 20_000)
        }
        at('restart', [String(victim)])
        t += p.short ? between(rand, 2_000, 3_000) : between(rand, 5_000, 10_000)
      }
      t += d(5_000, 1_000)
      break
    }
    case 'partition-heal': {
      const half = Math.floor(p.nodes / 2)
      const all = Array.from({ length: p.nodes }, (_, i) => i)
      // Halves: no side holds more than 2/3, heights must stop, then resume after the heal with one
      // chain. (A healed connection asks its peer for the height's signed messages at once: before,
      // the votes sent during the split came back only with the 6 s stuck-round fetch, a ~10 s stall.)
      at('partition', [all.slice(0, half).join(','), all.slice(half).join(',')])
      t += d(15_000, 3_000)
      at('heal')
      t += d(10_000, 4_000)
      // One node cut off, twice (two different nodes): the majority goes on without it, and the node
      // must catch up after the heal.
      const first = Number(node())
      const second = (first + 1 + between(rand, 0, p.nodes - 2)) % p.nodes
      for (const alone of [first, second]) {
        at('partition', [String(alone), all.filter((i) => i !== alone).join(',')])
        t += d(20_000, 3_000)
        at('heal')
        t += d(15_000, 4_000)
      }
      break
    }
    case 'rollup-outage': {
      // One rollup stops answering: its intents wait or move to another rollup, then it returns.
      const chain = String(p.chainIds[between(rand, 0, p.chainIds.length - 1)]!)
      at('rollup-down', [chain])
      t += d(30_000, 6_000)
      at('rollup-up', [chain])
      t += d(20_000, 5_000)
      break
    }
    case 'load-spike': {
      // A quiet baseline long enough for its fill latency to mean something, then the devnet's wallets
      // send at many times the normal rate for a while (`devnet spike RATE SECONDS`), then calm again:
      // the intents of the spike must all be filled, and every escrow claimed or refunded.
      t = d(20_000, 6_000)
      const seconds = d(30, 4)
      at('spike', [String(d(40, 10)), String(seconds)])
      t += seconds * 1000 + d(30_000, 4_000)
      break
    }
    default: {
      const never: never = name
      throw new Error(`unknown scenario ${String(never)}`)
    }
  }
  const timeline = { steps, endMs: t }
  return p.durationMs === undefined ? timeline : scaleTimeline(timeline, p.durationMs)
}

/**
 * Stretches or squeezes a timeline so that it ends at `durationMs` (order and shape kept; a spike's
 * SECONDS scale with it, at least one).
 */
export function scaleTimeline(tl: Timeline, durationMs: number): Timeline {
  const k = durationMs / tl.endMs
  const args = (s: FaultStep) =>
    s.cmd === 'spike' ? [s.args[0]!, String(Math.max(1, Math.round(Number(s.args[1]) * k)))] : s.args
  return {
    steps: tl.steps.map((s) => ({ ...s, atMs: Math.round(s.atMs * k), args: args(s) })),
    endMs: durationMs,
  }
}
