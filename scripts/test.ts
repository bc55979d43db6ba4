// `npm test`: the two vitest projects of vitest.config.ts at once, each one file at a time: the suite
// (unit, property and small process-level files) beside the networks (validator networks with anvil
// rollups), so at most one network runs at a time, next to at most one suite file. Vitest itself runs
// projects with different worker counts one after the other, which made CI take 25 minutes.
//
// With a file filter or `--project` the arguments go to one plain `vitest run`. A
// `--outputFile.json=FILE` is given to each project as its own file, and the two reports are merged
// into FILE when both are done (.ci/run reads it). The exit status is non-zero when either run failed.
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const VITEST = join(import.meta.dirname, '..', 'node_modules', 'vitest', 'vitest.mjs')
const PROJECTS = ['suite', 'networks'] as const
const args = process.argv.slice(2)
const OUTPUT = '--outputFile.json='

function run(argv: string[], label?: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [VITEST, 'run', ...argv], {
      stdio: label === undefined ? 'inherit' : ['ignore', 'pipe', 'pipe'],
    })
    if (label !== undefined) {
      // Whole lines only, so the two projects' output interleaves by line, never inside one.
      for (const [from, to] of [
        [child.stdout!, process.stdout],
        [child.stderr!, process.stderr],
      ] as const) {
        let rest = ''
        from.on('data', (d: Buffer) => {
          const text = rest + d.toString()
          const cut = text.lastIndexOf('\n') + 1
          to.write(text.slice(0, cut))
          rest = text.slice(cut)
        })
        from.on('end', () => {
          if (rest !== '') to.write(`${rest}\n`)
        })
      }
    }
    const stop = (sig: NodeJS.Signals) => () => child.kill(sig)
    process.once('SIGINT', stop('SIGINT'))
    process.once('SIGTERM', stop('SIGTERM'))
    child.once('exit', (code, signal) => resolve(code ?? (signal === null ? 1 : 128)))
  })
}

const filtered = args.some((a) => !a.startsWith('-')) || args.some((a) => a.startsWith('--project'))
if (filtered) {
  process.exitCode = await run(args)
} else {
  const output = args.find((a) => a.startsWith(OUTPUT))?.slice(OUTPUT.length)
  const own = (p: string) => (output === undefined ? undefined : output.replace(/(\.json)?$/, `.${p}.json`))
  const codes = await Promise.all(
    PROJECTS.map((p) => {
      const file = own(p)
      const argv = args.map((a) => (a.startsWith(OUTPUT) && file !== undefined ? `${OUTPUT}${file}` : a))
      return run(['--project', p, ...argv], p)
    }),
  )
  if (output !== undefined) {
    const reports = PROJECTS.map(own)
      .filter((f): f is string => f !== undefined && existsSync(f))
      .map((f) => {
        const r = JSON.parse(readFileSync(f, 'utf8')) as { testResults: unknown[] } & Record<string, unknown>
        rmSync(f)
        return r
      })
    if (reports.length > 0) {
      const merged = { ...reports[0], testResults: reports.flatMap((r) => r.testResults) }
      for (const key of Object.keys(reports[0]!))
        if (key.startsWith('num') && reports.every((r) => typeof r[key] === 'number'))
          (merged as Record<string, unknown>)[key] = reports.reduce((s, r) => s + (r[key] as number), 0)
      writeFileSync(output, JSON.stringify(merged))
    }
  }
  process.exitCode = codes.some((c) => c !== 0) ? 1 : 0
}
