/**
 * Opt-in soak of the consensus core on the simulated network (test/sim/network.ts): thousands of seeds.
 *
 *   SEEDS=5000 node scripts/soak-consensus.ts
 *   START=100000 SEEDS=20000 HEIGHTS=5 MAX_GST_MS=20000 node scripts/soak-consensus.ts
 *
 * Prints progress every PROGRESS seeds (default 500) and every failing seed with its scenario and
 * violations; exits 1 if any seed failed. Replay one with SEEDS=1 START=<seed> (same HEIGHTS/MAX_GST_MS).
 */
import { describeConfig, randomConfig, runSimulation } from '../test/sim/network.ts'

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${raw}`)
  return n
}

const seeds = intEnv('SEEDS', 5000)
const start = intEnv('START', 1)
const heights = intEnv('HEIGHTS', 3)
const maxGstMs = intEnv('MAX_GST_MS', 6000)
const progressEvery = Math.max(1, intEnv('PROGRESS', 500))

const out = (line: string) => process.stdout.write(`${line}\n`)
const began = performance.now()
const failed: number[] = []
let slowestAfterGstMs = 0
let maxRound = 0

out(`soak: seeds ${start}..${start + seeds - 1}, heights ${heights}, GST <= ${maxGstMs}ms`)
for (let i = 0; i < seeds; i++) {
  const seed = start + i
  const config = randomConfig(seed, { heights, maxGstMs })
  const result = runSimulation(config)
  if (result.finishedAtMs !== null)
    slowestAfterGstMs = Math.max(slowestAfterGstMs, result.finishedAtMs - config.gstMs)
  maxRound = Math.max(maxRound, result.stats.maxRound)
  if (result.violations.length > 0) {
    failed.push(seed)
    out(`FAIL seed ${seed}: ${describeConfig(config)}`)
    for (const v of result.violations.slice(0, 10)) out(`  ${v}`)
  }
  if ((i + 1) % progressEvery === 0 || i + 1 === seeds) {
    const s = ((performance.now() - began) / 1000).toFixed(1)
    out(`  ${i + 1}/${seeds} seeds, ${failed.length} failed, ${s}s`)
  }
}
out(
  `soak: ${seeds} seeds, ${failed.length} failed${failed.length > 0 ? ` (seeds ${failed.join(' ')})` : ''}; ` +
    `slowest finish ${slowestAfterGstMs}ms after GST, highest round ${maxRound}`,
)
process.exitCode = failed.length > 0 ? 1 : 0
