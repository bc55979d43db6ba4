// Devnet start benchmark (issue 12, Measure): from launching `murmur devnet up` (what `npm start` runs)
// to the first intent settled on its origin rollup, as node 0's `/v1/events` reports it; also to the
// devnet's "up" line and to the first filled intent. Each run starts a fresh devnet in a temp dir, in its
// own process group, and stops it with SIGINT to that group.
//
//   npm run bench -- devnet-start [--runs 3]
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { followEvents } from '../devnet/sse.ts'
import { median } from './lib.ts'

const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'devnet-start'),
  options: { runs: { type: 'string', default: '3' } },
})
const RUNS = Number(values.runs)
const CLI = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts')

async function once(): Promise<{ upMs: number; filledMs: number; settledMs: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'murmur-bench-devnet-'))
  const t0 = performance.now()
  const child = spawn(process.execPath, [CLI, 'devnet', 'up', '--dir', dir, '--rate', '2'], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const ac = new AbortController()
  try {
    return await new Promise((resolve, reject) => {
      let upMs = 0
      let filledMs = 0
      let out = ''
      const timer = setTimeout(
        () => reject(new Error(`no settled intent after 180 s:\n${out.slice(-2000)}`)),
        180_000,
      )
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        const api = /node 0: api (http:\/\/\S+)/.exec(out)?.[1]
        if (upMs === 0 && out.includes('devnet: up.') && api !== undefined) {
          upMs = performance.now() - t0
          followEvents(api, ac.signal, (type, data) => {
            const e = data as { state?: string; settlement?: { state?: string } }
            if (type !== 'intent') return
            if (filledMs === 0 && e.state === 'filled') filledMs = performance.now() - t0
            if (e.settlement?.state === 'settled') {
              clearTimeout(timer)
              resolve({ upMs, filledMs, settledMs: performance.now() - t0 })
            }
          }).catch(reject)
        }
      })
      child.stderr.on('data', (d: Buffer) => {
        out += d.toString()
      })
      child.once('exit', (code) => reject(new Error(`devnet up exited (${code}):\n${out.slice(-2000)}`)))
    })
  } finally {
    ac.abort()
    if (child.exitCode === null && child.pid !== undefined) {
      const exited = new Promise((r) => child.once('exit', r))
      process.kill(-child.pid, 'SIGINT')
      await exited
    }
    await rm(dir, { recursive: true, force: true })
  }
}

const runs: Array<{ upMs: number; filledMs: number; settledMs: number }> = []
for (let i = 0; i < RUNS; i++) {
  const r = await once()
  runs.push(r)
  process.stderr.write(
    `run ${i + 1}: up ${(r.upMs / 1000).toFixed(1)} s, first filled ${(r.filledMs / 1000).toFixed(1)} s, first settled ${(r.settledMs / 1000).toFixed(1)} s\n`,
  )
}
const m = (k: 'upMs' | 'filledMs' | 'settledMs') => (median(runs.map((r) => r[k])) / 1000).toFixed(1)
console.log(
  `devnet start (${RUNS} runs, medians): up ${m('upMs')} s, first filled ${m('filledMs')} s, first settled ${m('settledMs')} s after launch`,
)
