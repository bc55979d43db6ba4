// Reads vitest JSON reports and prints the CI summary line "N passed, N failed".
//
//   node .ci/summary.mjs crashed REPORT      prints the test files whose worker died before their
//                                            tests finished (tests left "pending"), one per line
//   node .ci/summary.mjs count REPORT [RERUN] prints the summary; with RERUN, the files re-run there
//                                            are counted from RERUN instead of REPORT
//
// A test that never finished counts as failed: a file whose worker died must never read as green.
import { readFileSync, existsSync } from 'node:fs'

const [mode, first, rerun] = process.argv.slice(2)
const load = (p) => JSON.parse(readFileSync(p, 'utf8'))
const unfinished = (file) => file.assertionResults.some((a) => a.status === 'pending')

function tally(files) {
  let passed = 0
  let failed = 0
  for (const f of files) {
    for (const a of f.assertionResults) {
      if (a.status === 'passed') passed++
      else if (a.status === 'failed' || a.status === 'pending') failed++
    }
    // A file that failed before any test ran (import error) has no assertion results.
    if (f.status === 'failed' && f.assertionResults.length === 0) failed++
  }
  return { passed, failed }
}

const report = load(first)
if (mode === 'crashed') {
  for (const f of report.testResults) if (unfinished(f)) console.log(f.name)
} else if (mode === 'count') {
  let files = report.testResults
  if (rerun && existsSync(rerun)) {
    const again = load(rerun).testResults
    const names = new Set(again.map((f) => f.name))
    files = files.filter((f) => !names.has(f.name)).concat(again)
  }
  const { passed, failed } = tally(files)
  console.log(`${passed} passed, ${failed} failed`)
  process.exitCode = failed > 0 ? 1 : 0
} else {
  console.error('usage: summary.mjs crashed|count REPORT [RERUN]')
  process.exitCode = 2
}
