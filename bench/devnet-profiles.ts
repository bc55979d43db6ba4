// Mixed-profile devnet benchmark (issue 12, item 4): `murmur devnet up --rollups N --profile mixed` from
// launch to its "up" line and to the first filled intent (node 0's `/v1/events`), the intents filled per
// destination rollup kind over a window that starts at the first fill, and the CPU and RSS of the N anvil processes over that window
// (/proc/<pid>/stat utime+stime, /proc/<pid>/status VmRSS; the pids come from devnet.json). Each run
// starts a fresh devnet in a temp dir in its own process group and stops it with SIGINT to that group.
//
//   npm run bench -- devnet-profiles [--rollups 16] [--runs 1] [--window-s 30]
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import type { DevnetState } from '../devnet/devnet.ts'
import { followEvents } from '../devnet/sse.ts'
import { median } from './lib.ts'

const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'devnet-profiles'),
  options: {
    rollups: { type: 'string', default: '16' },
    runs: { type: 'string', default: '1' },
    'window-s': { type: 'string', default: '30' },
  },
})
const ROLLUPS = Number(values.rollups)
const RUNS = Number(values.runs)
const WINDOW_MS = Number(values['window-s']) * 1000
const CLI = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts')
/** Clock ticks per second of /proc/<pid>/stat on Linux. */
const HZ = 100

async function cpuTicks(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(f[11]) + Number(f[12])
}
async function rssMb(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? 0) / 1024
}

interface Run {
  upMs: number
  filledMs: number
  filledInWindow: number
  filledByKind: Record<string, number>
  anvilCpuPct: number
  anvilCpuPctByKind: Record<string, number>
  anvilRssMb: number
}

async function once(): Promise<Run> {
  const dir = await mkdtemp(join(tmpdir(), 'murmur-bench-profiles-'))
  const t0 = performance.now()
  const args = [
    'devnet',
    'up',
    '--dir',
    dir,
    '--rollups',
    String(ROLLUPS),
    '--profile',
    'mixed',
    '--rate',
    '2',
  ]
  const child = spawn(process.execPath, [CLI, ...args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  const ac = new AbortController()
  let out = ''
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString()
  })
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString()
  })
  const exited = new Promise((r) => child.once('exit', r))
  try {
    const deadline = Date.now() + 300_000
    while (!out.includes('devnet: up.')) {
      if (child.exitCode !== null || Date.now() > deadline)
        throw new Error(`devnet did not come up:\n${out.slice(-2000)}`)
      await delay(100)
    }
    const upMs = performance.now() - t0
    const state = JSON.parse(await readFile(join(dir, 'devnet.json'), 'utf8')) as DevnetState
    const kindOf = new Map(state.rollups.map((r) => [String(r.chainId), r.kind ?? '?']))
    let filledMs = 0
    let counting = false
    const filledByKind: Record<string, number> = {}
    let filledInWindow = 0
    await followEvents(state.nodes[0]!.api!, ac.signal, (type, data) => {
      const e = data as { state?: string; fill?: { chainId?: string } }
      if (type !== 'intent' || e.state !== 'filled') return
      if (filledMs === 0) filledMs = performance.now() - t0
      if (!counting) return
      filledInWindow++
      const k = kindOf.get(String(e.fill?.chainId)) ?? 'unknown'
      filledByKind[k] = (filledByKind[k] ?? 0) + 1
    })
    // The window starts at the first fill (a 16-rollup devnet needs a while after its "up" line).
    const firstBy = Date.now() + 240_000
    while (filledMs === 0) {
      if (Date.now() > firstBy) throw new Error('no intent filled 240 s after the devnet was up')
      await delay(200)
    }
    const pids = state.rollups.map((r) => r.pid!)
    const before = await Promise.all(pids.map(cpuTicks))
    counting = true
    const w0 = performance.now()
    await delay(WINDOW_MS)
    const after = await Promise.all(pids.map(cpuTicks))
    const secs = (performance.now() - w0) / 1000
    counting = false
    const rss = await Promise.all(pids.map(rssMb))
    const pct = pids.map((_, i) => ((after[i]! - before[i]!) / HZ / secs) * 100)
    const byKind: Record<string, number> = {}
    for (const [i, r] of state.rollups.entries()) {
      const k = r.kind ?? '?'
      byKind[k] = Math.round(((byKind[k] ?? 0) + pct[i]!) * 10) / 10
    }
    return {
      upMs,
      filledMs,
      filledInWindow,
      filledByKind,
      anvilCpuPct: Math.round(pct.reduce((a, b) => a + b, 0) * 10) / 10,
      anvilCpuPctByKind: byKind,
      anvilRssMb: Math.round(rss.reduce((a, b) => a + b, 0)),
    }
  } finally {
    ac.abort()
    if (child.exitCode === null && child.pid !== undefined) {
      process.kill(-child.pid, 'SIGINT')
      await exited
    }
    await rm(dir, { recursive: true, force: true })
  }
}

const runs: Run[] = []
for (let i = 0; i < RUNS; i++) {
  const r = await once()
  runs.push(r)
  process.stderr.write(`run ${i + 1}: ${JSON.stringify(r)}\n`)
}
const m = (f: (r: Run) => number) => median(runs.map(f))
console.log(
  `devnet --rollups ${ROLLUPS} --profile mixed (${RUNS} runs, medians): up ${(m((r) => r.upMs) / 1000).toFixed(1)} s, ` +
    `first filled ${(m((r) => r.filledMs) / 1000).toFixed(1)} s after launch; ${m((r) => r.filledInWindow)} filled in ` +
    `${WINDOW_MS / 1000} s; ${ROLLUPS} anvils ${m((r) => r.anvilCpuPct).toFixed(1)} % CPU (of one core), ` +
    `${m((r) => r.anvilRssMb)} MB RSS`,
)
