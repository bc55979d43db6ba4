/**
 * Opt-in crash durability soak (issue 13, item 5; devnet/crash-soak.ts): a 4-node devnet with 3 anvil
 * rollups under intent load, a node killed with SIGKILL every --kill-every seconds and restarted, every
 * node armed with the crash points of src/node/crash-hook.ts; then the black-box checks. Exit 1 on any
 * violation.
 *
 *   npm run soak:crash                                   # 30 minutes, a kill every 20 s
 *   npm run soak:crash -- --minutes 2 --kill-every 10 --report /tmp/soak.json
 *   npm run soak:crash -- --crash-at commit:0.01,fill:0.02 # other crash points ('' for none)
 *
 * Flags: --minutes N, --kill-every S, --rate R (intents/s), --crash-at SPEC, --seed N, --dir DIR (default a
 * fresh temporary one, removed after a passing run), --report FILE (the final JSON), --drain-max S.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { DEFAULT_CRASH_SOAK, runCrashSoak } from '../devnet/crash-soak.ts'

const USAGE = `usage: npm run soak:crash -- [--minutes N] [--kill-every S] [--rate R] [--crash-at SPEC]
         [--seed N] [--drain-max S] [--dir DIR] [--report FILE]
defaults: --minutes ${DEFAULT_CRASH_SOAK.durationMs / 60_000} --kill-every ${DEFAULT_CRASH_SOAK.killEveryMs / 1000} --rate ${DEFAULT_CRASH_SOAK.rate} --crash-at '${DEFAULT_CRASH_SOAK.crashAt}'
         --seed ${DEFAULT_CRASH_SOAK.seed} --drain-max ${DEFAULT_CRASH_SOAK.drainMaxMs / 1000}; exit 0 passed, 1 an invariant broke, 2 bad usage
`
let parsed: ReturnType<typeof parse>
function parse() {
  return parseArgs({
    options: {
      help: { type: 'boolean', short: 'h' },
      minutes: { type: 'string', default: String(DEFAULT_CRASH_SOAK.durationMs / 60_000) },
      'kill-every': { type: 'string', default: String(DEFAULT_CRASH_SOAK.killEveryMs / 1000) },
      rate: { type: 'string', default: String(DEFAULT_CRASH_SOAK.rate) },
      'crash-at': { type: 'string', default: DEFAULT_CRASH_SOAK.crashAt },
      seed: { type: 'string', default: String(DEFAULT_CRASH_SOAK.seed) },
      'drain-max': { type: 'string', default: String(DEFAULT_CRASH_SOAK.drainMaxMs / 1000) },
      dir: { type: 'string' },
      report: { type: 'string' },
    },
  })
}
try {
  parsed = parse()
} catch (err) {
  process.stderr.write(`soak-crash: ${(err as Error).message}\n${USAGE}`)
  process.exit(2)
}
const { values } = parsed
if (values.help === true) {
  process.stdout.write(USAGE)
  process.exit(0)
}

function positive(name: string, raw: string | undefined): number {
  const n = Number(raw)
  if (!(n > 0) || !Number.isFinite(n)) {
    process.stderr.write(`soak-crash: --${name} must be a positive number, got ${raw}\n`)
    process.exit(2)
  }
  return n
}

const dir = values.dir ?? (await mkdtemp(join(tmpdir(), 'murmur-soak-crash-')))
const ac = new AbortController()
const run = runCrashSoak({
  signal: ac.signal,
  dir,
  durationMs: Math.round(positive('minutes', values.minutes) * 60_000),
  killEveryMs: Math.round(positive('kill-every', values['kill-every']) * 1000),
  rate: positive('rate', values.rate),
  crashAt: values['crash-at'] ?? '',
  seed: Math.floor(positive('seed', values.seed)),
  drainMaxMs: Math.round(positive('drain-max', values['drain-max']) * 1000),
})
// Ctrl-C: the run stops the devnet (every node and anvil by its pid) at its next step; a second one
// exits at once.
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    if (ac.signal.aborted) process.exit(130)
    process.stderr.write('soak-crash: stopping (again to exit now)\n')
    ac.abort()
  })
const report = await run.catch((err: Error) => {
  process.stderr.write(`soak-crash: ${ac.signal.aborted ? 'stopped' : err.message} (devnet dir ${dir})\n`)
  process.exit(ac.signal.aborted ? 130 : 1)
})
const json = JSON.stringify(report, null, 2)
if (values.report !== undefined) await writeFile(values.report, `${json}\n`)
process.stdout.write(`${json}\n`)
process.stdout.write(`soak-crash: ${report.passed ? 'passed' : 'FAILED'} (devnet dir ${dir})\n`)
if (report.passed && values.dir === undefined) await rm(dir, { recursive: true, force: true })
process.exit(report.passed ? 0 : 1)
