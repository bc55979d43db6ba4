// Healing benchmark: four validator processes on loopback with two anvil rollups (1 s blocks).
//   1. heights per second with all four validators live, then with one killed (SIGKILL), measured once
//      the dead one is offline (after the detection window); the ratio is the pace kept;
//   2. a killed validator's open assignments: time from the kill until none is left with it (node 0's
//      API), over --runs kills (the victim is restarted and caught up between runs).
// Every figure comes from node 0's HTTP API (its clock).
//
//   npm run bench -- healing [--runs 3] [--seconds 10] [--log-dir DIR]
import { mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { privateKeyToAccount } from 'viem/accounts'
import { startRollups } from '../devnet/anvil.ts'
import { prepareNetwork } from '../devnet/network.ts'
import { type NodeProcess, spawnNode } from '../devnet/process.ts'
import { MurmurClient } from '../src/client/index.ts'
import { median, spawnNodes } from './lib.ts'

const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'healing'),
  options: {
    runs: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '10' },
    'log-dir': { type: 'string' },
  },
})
const RUNS = Number(values.runs)
const SECONDS = Number(values.seconds)
const log = (s: string) => process.stderr.write(`${s}\n`)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const dir = await mkdtemp(join(tmpdir(), 'murmur-bench-healing-'))
// A missed-blocks window far longer than the runs: the killed validator comes back online, not jailed
// (a 10 s absence misses about 40 of the default window of 100 and would be jailed after a few runs).
const net = await prepareNetwork({ dir, nodes: 4, params: { signedBlocksWindow: 100_000 } })
log('starting 2 anvil rollups (1 s blocks) and 4 validator processes...')
const chains = await startRollups({
  count: 2,
  blockTimeSec: 1,
  accounts: net.nodes.map((n) => n.validatorPrivateKey),
})
const procs: NodeProcess[] = []
const flags = new Map(chains.rollups.map((r) => [r.chainId, r.rpcUrl]))
let seq = 1
const key = () => `0x${(0xbe00n * 1_000_000n + BigInt(seq++)).toString(16).padStart(64, '0')}` as const
const wallet = () => privateKeyToAccount(key())

try {
  await spawnNodes(net, procs, flags, { logDir: values['log-dir'] })
  const api = procs[0]!.api
  const get = async <T>(path: string) => (await (await fetch(`${api}${path}`)).json()) as T
  const height = async () => (await get<{ height: number }>('/v1/status')).height
  const pace = async () => {
    const h0 = await height()
    const t0 = performance.now()
    await sleep(SECONDS * 1000)
    return ((await height()) - h0) / ((performance.now() - t0) / 1000)
  }
  while ((await height()) < 3) await sleep(200)
  console.log(
    `healing benchmark: 4 validator processes, 2 anvil rollups (1 s blocks), ${availableParallelism()} cores`,
  )
  const client = new MurmurClient(api)
  const victim = net.nodes[3]!
  const live: number[] = []
  const dead: number[] = []
  const moves: number[] = []
  for (let run = 1; run <= RUNS; run++) {
    live.push(await pace())
    // Load until the victim holds open assignments, then kill it.
    const sent: string[] = []
    let held: string[] = []
    for (let tries = 0; held.length === 0 && tries < 200; tries++) {
      for (let k = 0; k < 4; k++)
        sent.push(
          (
            await client.send(wallet(), {
              to: wallet().address,
              amount: 1_000_000_000n,
              chains: [901n, 902n],
            })
          ).id,
        )
      const views = await Promise.all(
        sent.map((id) =>
          get<{ state: string; assignment: { executor: string } | null }>(`/v1/intents/${id}`),
        ),
      )
      held = sent.filter(
        (_, i) => views[i]!.state === 'assigned' && views[i]!.assignment?.executor === victim.address,
      )
      await sleep(50)
    }
    await procs[3]!.kill9()
    const killedAt = performance.now()
    for (;;) {
      const views = await Promise.all(
        held.map((id) => get<{ assignment: { executor: string } | null }>(`/v1/intents/${id}`)),
      )
      if (views.every((v) => v.assignment === null || v.assignment.executor !== victim.address)) break
      if (performance.now() - killedAt > 120_000) throw new Error('open assignments never moved')
      await sleep(20)
    }
    moves.push(performance.now() - killedAt)
    await sleep(2000) // past the detection window: the dead validator is skipped
    dead.push(await pace())
    log(
      `  run ${run}: ${live.at(-1)!.toFixed(2)} heights/s live, ${dead.at(-1)!.toFixed(2)} with one dead; ` +
        `${held.length} open assignment(s) of the dead validator moved after ${moves.at(-1)!.toFixed(0)} ms`,
    )
    // Bring it back and let it catch up before the next run.
    procs[3] = await spawnNode({
      dataDir: victim.dataDir,
      genesisPath: net.genesisPath,
      rollups: flags,
      bootstrap: [procs[0]!.listen[0]!],
      logLevel: 'warn',
    })
    const target = await height()
    const back = procs[3]!.api
    for (const t0 = performance.now(); ; ) {
      const s = (await (await fetch(`${back}/v1/status`)).json()) as { height: number }
      if (s.height >= target) break
      if (performance.now() - t0 > 120_000) throw new Error('the restarted validator never caught up')
      await sleep(100)
    }
    await sleep(5000) // it signs again: online
  }
  const l = median(live)
  const d = median(dead)
  console.log(
    `  heights/s, all four live: median ${l.toFixed(2)} (${live.map((x) => x.toFixed(2)).join(', ')})`,
  )
  console.log(`  heights/s, one dead: median ${d.toFixed(2)} (${dead.map((x) => x.toFixed(2)).join(', ')})`)
  console.log(`  pace kept with one dead: ${((d / l) * 100).toFixed(0)} % (goal >= 80 %)`)
  console.log(
    `  killed validator's open assignments moved: median ${median(moves).toFixed(0)} ms over ${moves.length} kills (goal < 5 s)`,
  )
} finally {
  await Promise.allSettled(procs.map((p) => p.stop()))
  await chains.stop()
  await rm(dir, { recursive: true, force: true })
}
process.exit(0)
