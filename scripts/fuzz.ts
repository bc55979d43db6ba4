// `npm run fuzz`: the fuzz slice (test/fuzz/) with many cases per target (issue 13, item 6). CI runs the
// same files with the small default of FUZZ_RUNS; this run sets FUZZ_RUNS (default 2000, at least
// 100,000 cases over all targets), collects each target's case count and time (FUZZ_REPORT, written by
// test/fuzz/harness.ts) and prints them with the total. Extra arguments go to vitest (a file filter).
// The exit status is vitest's: non-zero when a fuzzer found a failing input (it prints the input and the
// fast-check seed that replays it).
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const VITEST = join(import.meta.dirname, '..', 'node_modules', 'vitest', 'vitest.mjs')
const runs = process.env['FUZZ_RUNS'] ?? '2000'
const dir = mkdtempSync(join(tmpdir(), 'murmur-fuzz-report-'))
const report = join(dir, 'report.jsonl')
const args = process.argv.slice(2)
const files = args.some((a) => !a.startsWith('-')) ? args : ['test/fuzz/', ...args]

const t0 = Date.now()
const code = await new Promise<number>((resolve) => {
  const child = spawn(process.execPath, [VITEST, 'run', '--project', 'suite', ...files], {
    stdio: 'inherit',
    env: { ...process.env, FUZZ_RUNS: runs, FUZZ_REPORT: report },
  })
  const stop = (sig: NodeJS.Signals) => () => child.kill(sig)
  process.once('SIGINT', stop('SIGINT'))
  process.once('SIGTERM', stop('SIGTERM'))
  child.once('exit', (c, signal) => resolve(c ?? (signal === null ? 1 : 128)))
})
const wallMs = Date.now() - t0

let rows: Array<{ target: string; cases: number; ms: number }> = []
try {
  rows = readFileSync(report, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { target: string; cases: number; ms: number })
} catch {
  // No target finished (vitest failed before any): nothing to print but the status.
}
rmSync(dir, { recursive: true, force: true })
const width = Math.max(6, ...rows.map((r) => r.target.length))
process.stdout.write(`\nfuzz targets (FUZZ_RUNS=${runs}):\n`)
process.stdout.write(`${'target'.padEnd(width)}  ${'cases'.padStart(9)}  ${'time s'.padStart(8)}\n`)
for (const r of rows) {
  process.stdout.write(
    `${r.target.padEnd(width)}  ${String(r.cases).padStart(9)}  ${(r.ms / 1000).toFixed(1).padStart(8)}\n`,
  )
}
const total = rows.reduce((s, r) => s + r.cases, 0)
process.stdout.write(
  `${'total'.padEnd(width)}  ${String(total).padStart(9)}  ${(rows.reduce((s, r) => s + r.ms, 0) / 1000).toFixed(1).padStart(8)}` +
    ` (wall ${(wallMs / 1000).toFixed(0)} s, ${rows.length} targets, vitest exit ${code})\n`,
)
process.exitCode = code
