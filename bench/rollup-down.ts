// Time from a rollup's death (its anvil process stopped) to its state `down` in GET /v1/rollups on
// every node. Four node processes, three anvil rollups, five kills; prints each and the median.
//
//   npm run bench -- rollup-down [--nodes 4] [--runs 5]
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startRollups } from '../devnet/anvil.ts'
import { prepareNetwork } from '../devnet/network.ts'
import type { NodeProcess } from '../devnet/process.ts'
import { median, spawnNodes } from './lib.ts'

const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'rollup-down'),
  options: { nodes: { type: 'string', default: '4' }, runs: { type: 'string', default: '5' } },
})
const N = Number(values.nodes)
const RUNS = Number(values.runs)
const log = (s: string) => process.stderr.write(`${s}\n`)

const dir = await mkdtemp(join(tmpdir(), 'murmur-bench-down-'))
const net = await prepareNetwork({ dir, nodes: N })
log(`starting 3 anvil rollups and ${N} nodes...`)
const chains = await startRollups({
  count: 3,
  blockTimeSec: 1,
  accounts: net.nodes.map((n) => n.validatorPrivateKey),
})
const procs: NodeProcess[] = []
const status = async (p: NodeProcess, chainId: number) => {
  const rows = (await (await fetch(`${p.api}/v1/rollups`)).json()) as Array<{
    chainId: number
    status: string
  }>
  return rows.find((r) => r.chainId === chainId)?.status
}
const until = async (chainId: number, want: string, deadlineMs: number) => {
  const done = new Set<number>()
  while (done.size < procs.length && performance.now() < deadlineMs) {
    await Promise.all(
      procs.map(async (p, i) => {
        if (!done.has(i) && (await status(p, chainId)) === want) done.add(i)
      }),
    )
    if (done.size < procs.length) await new Promise((r) => setTimeout(r, 20))
  }
  return done.size === procs.length
}
try {
  const flags = new Map(chains.rollups.map((r) => [r.chainId, r.rpcUrl]))
  await spawnNodes(net, procs, flags)
  const times: number[] = []
  for (let run = 1; run <= RUNS; run++) {
    const r = chains.get(902)
    if (!(await until(902, 'up', performance.now() + 30_000))) throw new Error('902 never up on every node')
    const t0 = performance.now()
    await r.stop()
    const ok = await until(902, 'down', t0 + 30_000)
    const ms = performance.now() - t0
    log(
      `  run ${run}: ${ok ? `down on all ${N} nodes after ${ms.toFixed(0)} ms` : 'not down everywhere within 30 s'}`,
    )
    if (ok) times.push(ms)
    await r.start()
  }
  console.log(
    `rollup killed -> down on all ${N} nodes: median ${median(times).toFixed(0)} ms over ${times.length} runs (min ${Math.min(...times).toFixed(0)}, max ${Math.max(...times).toFixed(0)})`,
  )
} finally {
  await Promise.allSettled(procs.map((p) => p.stop()))
  await chains.stop()
  await rm(dir, { recursive: true, force: true })
}
