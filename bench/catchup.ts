// Restart after being away: time for a validator process to be back at the network's height. Four node
// processes on loopback; validator 3 holds a sliver of the stake (the other three are far past 2/3 and
// it is never the proposer, so its absence does not slow the others). For each time away, node 3 is
// killed (SIGKILL), the others commit the heights a network makes in that time at `--pace` heights/s,
// node 3 is restarted, and we measure until its GET /v1/status height reaches the network's height as it
// was at the restart ("caught up") and until it is within one height of the moving head ("in step").
//
// The heights are produced faster than real time (genesis blockIntervalMs `--interval`): ten minutes
// away at 2 heights/s (the default 500 ms block interval, idle) is 1,200 heights, made in a few minutes.
//
//   npm run bench -- catchup [--away 30,120,600] [--pace 2] [--interval 20]
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { prepareNetwork } from '../devnet/network.ts'
import { type NodeProcess, spawnNode } from '../devnet/process.ts'

const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'catchup'),
  options: {
    away: { type: 'string', default: '30,120,600' },
    pace: { type: 'string', default: '2' },
    interval: { type: 'string', default: '20' },
  },
})
const AWAY = values.away.split(',').map(Number)
const PACE = Number(values.pace)
const log = (s: string) => process.stderr.write(`${s}\n`)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Status {
  height: number
  syncing: boolean
  peers: number
}
const status = async (p: NodeProcess): Promise<Status> =>
  (await fetch(`${p.api}/v1/status`, { signal: AbortSignal.timeout(5_000) })).json() as Promise<Status>

const dir = await mkdtemp(join(tmpdir(), 'murmur-bench-catchup-'))
const net = await prepareNetwork({
  dir,
  nodes: 4,
  params: { blockIntervalMs: Number(values.interval) } as never,
})
const g = JSON.parse(await readFile(net.genesisPath, 'utf8'))
g.validators[3].stake = '1'
await writeFile(net.genesisPath, JSON.stringify(g, null, 2))
const logFile = (i: number) => join(dir, `node-${i}.log`)
const procs: Array<NodeProcess | undefined> = []
const start = async (i: number, bootstrap: string[]) => {
  const p = await spawnNode({
    dataDir: net.nodes[i]!.dataDir,
    genesisPath: net.genesisPath,
    bootstrap,
    logFile: logFile(i),
  })
  procs[i] = p
  return p
}

/**
 * The 'caught up' line of node 3's log since `fromLine` that applied the most blocks (the catch-up; small
 * ones may follow it): where its time went.
 */
async function caughtUpLine(fromLine: number): Promise<Record<string, unknown> | undefined> {
  let best: Record<string, unknown> | undefined
  for (const l of (await readFile(logFile(3), 'utf8')).split('\n').slice(fromLine)) {
    if (!l.includes('"caught up"')) continue
    const o = JSON.parse(l) as Record<string, unknown>
    if (best === undefined || Number(o['applied']) > Number(best['applied'])) best = o
  }
  return best
}
const logLines = async () => (await readFile(logFile(3), 'utf8')).split('\n').length - 1

const rows: Array<Record<string, unknown>> = []
try {
  const boot = await start(0, [])
  const bootAddr = [boot.listen[0]!]
  await start(1, bootAddr)
  await start(2, bootAddr)
  await start(3, bootAddr)
  while ((await status(procs[3]!)).height < 3) await sleep(100)
  for (const away of AWAY) {
    const heights = Math.round(away * PACE)
    await procs[3]!.kill9()
    procs[3] = undefined
    const h0 = (await status(boot)).height
    const tProduce = performance.now()
    while ((await status(boot)).height < h0 + heights) await sleep(200)
    const produceS = (performance.now() - tProduce) / 1000
    const fromLine = await logLines()
    const tSpawn = performance.now()
    const late = await start(3, bootAddr)
    const tStarted = performance.now()
    const target = (await status(boot)).height
    let sawSyncing = false
    let caughtUpMs = Number.NaN
    let inStepMs = Number.NaN
    const deadline = tStarted + 120_000
    while (performance.now() < deadline) {
      const [s, b] = await Promise.all([status(late), status(boot)])
      sawSyncing ||= s.syncing
      const t = performance.now() - tStarted
      if (Number.isNaN(caughtUpMs) && s.height >= target) caughtUpMs = t
      if (!Number.isNaN(caughtUpMs) && b.height - s.height <= 1 && !s.syncing) {
        inStepMs = t
        break
      }
      await sleep(20)
    }
    const line = await caughtUpLine(fromLine)
    const row = {
      awaySec: away,
      heights: target - h0,
      producedInSec: Number(produceS.toFixed(1)),
      processStartMs: Math.round(tStarted - tSpawn),
      caughtUpMs: Math.round(caughtUpMs),
      inStepMs: Math.round(inStepMs),
      sawSyncing,
      sync: line && {
        applied: line['applied'],
        requests: line['requests'],
        firstBlockMs: line['firstBlockMs'],
        ms: line['ms'],
        applyMs: line['applyMs'],
        verifyMs: line['verifyMs'],
        commitMs: line['commitMs'],
        startMs: line['startMs'],
      },
    }
    rows.push(row)
    log(JSON.stringify(row))
  }
  console.log('\ncatch-up after being away (ms after the restarted process printed its start line)')
  console.log(
    'away   heights  caught up  in step  (process start)  sync: applied/requests, apply ms (verify/commit/next)',
  )
  for (const r of rows) {
    const s = r['sync'] as Record<string, unknown> | undefined
    console.log(
      `${String(r['awaySec']).padStart(4)} s ${String(r['heights']).padStart(8)} ${String(r['caughtUpMs']).padStart(8)} ms ${String(r['inStepMs']).padStart(6)} ms ${String(r['processStartMs']).padStart(10)} ms      ` +
        (s === undefined
          ? '-'
          : `${s['applied']}/${s['requests']}, ${s['applyMs']} (${s['verifyMs']}/${s['commitMs']}/${s['startMs']})`),
    )
  }
} finally {
  await Promise.allSettled(procs.map((p) => p?.stop(5_000)))
  await rm(dir, { recursive: true, force: true })
}
