// Mempool benchmark. Prints figures; never fails on a time.
//
//   npm run bench -- mempool [--intents 20000] [--rates 500,1000,1500,2000] [--seconds 5] [--runs 3]
//
// 1. One node process: CPU per accepted intent (node process, read from its /metrics) against the raw
//    cost of one native signature recovery measured here, accepted intents/s over HTTP and over gossip.
// 2. Five node processes: intents/s pending on all five, and p50/p99 time from submission until
//    pending everywhere (from each node's /v1/events stream).
import { mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'
import { hexToBytes } from 'viem'
import { prepareNetwork } from '../devnet/network.ts'
import { type NodeProcess, spawnNode } from '../devnet/process.ts'
import { LightPeer } from '../src/client/light-peer.ts'
import { signedIntentToJson } from '../src/codec/intent.ts'
import { recoverAddressNative } from '../src/crypto/recover.ts'
import { followEvents, median, percentile, pool, presignIntents, scrape } from './lib.ts'

const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'mempool'),
  options: {
    intents: { type: 'string', default: '20000' },
    rates: { type: 'string', default: '500,1000,1500,2000' },
    seconds: { type: 'string', default: '5' },
    runs: { type: 'string', default: '3' },
    only: { type: 'string', default: 'single,five' },
  },
})
const N = Number(values.intents)
const RUNS = Number(values.runs)
const SECONDS = Number(values.seconds)
const log = (s: string) => process.stderr.write(`${s}\n`)

async function cluster(n: number) {
  const dir = await mkdtemp(join(tmpdir(), 'murmur-bench-'))
  const net = await prepareNetwork({ dir, nodes: n })
  const procs: NodeProcess[] = []
  procs.push(
    await spawnNode({ dataDir: net.nodes[0]!.dataDir, genesisPath: net.genesisPath, logLevel: 'warn' }),
  )
  for (let i = 1; i < n; i++) {
    procs.push(
      await spawnNode({
        dataDir: net.nodes[i]!.dataDir,
        genesisPath: net.genesisPath,
        bootstrap: [procs[0]!.listen[0]!],
        logLevel: 'warn',
      }),
    )
  }
  for (const p of procs) {
    for (let t = 0; t < 300; t++) {
      const s = (await (await fetch(`${p.api}/v1/status`)).json()) as { peers: number }
      if (s.peers >= n - 1) break
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  return {
    net,
    procs,
    async close() {
      await Promise.allSettled(procs.map((p) => p.stop()))
      await rm(dir, { recursive: true, force: true })
    },
  }
}

const cpuSec = (api: string) => scrape(api, 'murmur_process_cpu_seconds_total')

function rawRecoverUs(): number {
  const sample = presignIntents(2000, { users: 50 })
  const digests = sample.map((s) => hexToBytes(s.id))
  const sigs = sample.map((s) => hexToBytes(s.intent.signature))
  const start = process.cpuUsage()
  for (let r = 0; r < 3; r++)
    for (let i = 0; i < digests.length; i++) recoverAddressNative(digests[i]!, sigs[i]!)
  const used = process.cpuUsage(start)
  return (used.user + used.system) / (3 * digests.length)
}

async function single() {
  const results = {
    http: [] as number[],
    httpCpuUs: [] as number[],
    gossip: [] as number[],
    gossipCpuUs: [] as number[],
    rawUs: [] as number[],
  }
  for (let run = 1; run <= RUNS; run++) {
    const c = await cluster(1)
    try {
      const api = c.procs[0]!.api
      log(`single node, run ${run}/${RUNS}: signing ${2 * N} intents...`)
      const httpSet = presignIntents(N).map((x) => JSON.stringify(signedIntentToJson(x.intent)))
      const gossipSet = presignIntents(N)
      results.rawUs.push(rawRecoverUs())

      const cpu0 = await cpuSec(api)
      const t0 = performance.now()
      let accepted = 0
      // undici's Pool: far less client CPU per request than fetch, which matters on 2 cores.
      const client = new Pool(api, { connections: 32 })
      await pool(httpSet, 64, async (body) => {
        const res = await client.request({
          path: '/v1/intents',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        })
        await res.body.dump()
        if (res.statusCode === 202) accepted++
      })
      await client.close()
      const secs = (performance.now() - t0) / 1000
      const cpu1 = await cpuSec(api)
      results.http.push(accepted / secs)
      results.httpCpuUs.push(((cpu1 - cpu0) * 1e6) / accepted)
      log(`  http: ${accepted} accepted in ${secs.toFixed(2)} s`)

      const light = await LightPeer.connect({
        networkId: c.net.genesis.networkId,
        nodes: [c.procs[0]!.listen[0]!],
      })
      const before = await scrape(api, 'murmur_mempool_submitted_total', {
        source: 'gossip',
        outcome: 'added',
      })
      const g0 = performance.now()
      const gcpu0 = await cpuSec(api)
      for (let i = 0; i < gossipSet.length; i += 256)
        await light.publish(gossipSet.slice(i, i + 256).map((x) => x.intent))
      let added = 0
      while (added < N) {
        added =
          (await scrape(api, 'murmur_mempool_submitted_total', { source: 'gossip', outcome: 'added' })) -
          before
        if (performance.now() - g0 > 120_000) break
        await new Promise((r) => setTimeout(r, 20))
      }
      const gsecs = (performance.now() - g0) / 1000
      const gcpu1 = await cpuSec(api)
      results.gossip.push(added / gsecs)
      results.gossipCpuUs.push(((gcpu1 - gcpu0) * 1e6) / Math.max(1, added))
      log(`  gossip: ${added} added in ${gsecs.toFixed(2)} s`)
      await light.stop()
    } finally {
      await c.close()
    }
  }
  const raw = median(results.rawUs)
  console.log(`one node (${availableParallelism()} cores), median of ${RUNS} runs of ${N} intents:`)
  console.log(`  raw native signature recovery: ${raw.toFixed(1)} us CPU`)
  console.log(
    `  HTTP:   ${median(results.http).toFixed(0)} intents/s accepted; ${median(results.httpCpuUs).toFixed(0)} us CPU per intent = ${(median(results.httpCpuUs) / raw).toFixed(1)}x raw recovery`,
  )
  console.log(
    `  gossip: ${median(results.gossip).toFixed(0)} intents/s accepted; ${median(results.gossipCpuUs).toFixed(0)} us CPU per intent = ${(median(results.gossipCpuUs) / raw).toFixed(1)}x raw recovery`,
  )
}

async function five() {
  const rates = values.rates.split(',').map(Number)
  const c = await cluster(5)
  const seen = new Map<string, number[]>()
  const aborts: AbortController[] = []
  try {
    // One SSE stream per node: time each intent became pending there (node clock, same machine).
    for (const p of c.procs) {
      const ac = new AbortController()
      aborts.push(ac)
      await followEvents(p.api, ac.signal, (type, data) => {
        const e = data as { id: string; previous: string | null; atMs: number }
        if (type !== 'intent' || e.previous !== null) return
        const l = seen.get(e.id) ?? []
        l.push(e.atMs)
        seen.set(e.id, l)
      })
    }
    console.log(
      `five node processes (${availableParallelism()} cores), ${SECONDS} s per rate, HTTP round-robin:`,
    )
    for (const rate of rates) {
      const total = rate * SECONDS
      log(`  rate ${rate}/s: signing ${total} intents...`)
      const set = presignIntents(total).map((x) => ({
        id: x.id,
        body: JSON.stringify(signedIntentToJson(x.intent)),
      }))
      const sentAt = new Map<string, number>()
      const ackMs: number[] = []
      const cpuBefore = await Promise.all(c.procs.map((p) => cpuSec(p.api)))
      const benchCpu0 = process.cpuUsage()
      const t0 = performance.now()
      let sent = 0
      const inflight = new Set<Promise<void>>()
      while (sent < total) {
        const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate))
        while (sent < due) {
          const x = set[sent]!
          const api = c.procs[sent % c.procs.length]!.api
          sent++
          sentAt.set(x.id, performance.timeOrigin + performance.now())
          const p = fetch(`${api}/v1/intents`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: x.body,
          })
            .then((r) => r.arrayBuffer())
            .then(() => {
              ackMs.push(performance.timeOrigin + performance.now() - sentAt.get(x.id)!)
            })
            .catch(() => {})
          inflight.add(p)
          p.finally(() => inflight.delete(p))
        }
        await new Promise((r) => setTimeout(r, 2))
      }
      await Promise.all(inflight)
      const phaseSecs = (performance.now() - t0) / 1000
      const cpuAfter = await Promise.all(c.procs.map((p) => cpuSec(p.api)))
      const nodesCpu = cpuAfter.reduce((a, v, i) => a + v - cpuBefore[i]!, 0) / phaseSecs
      const bc = process.cpuUsage(benchCpu0)
      const deadline = performance.now() + 5_000
      const everywhere = () => set.filter((x) => (seen.get(x.id)?.length ?? 0) >= c.procs.length).length
      while (everywhere() < total && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      const lat = set
        .filter((x) => (seen.get(x.id)?.length ?? 0) >= c.procs.length)
        .map((x) => Math.max(...seen.get(x.id)!) - sentAt.get(x.id)!)
        .sort((a, b) => a - b)
      const span = Math.max(
        SECONDS,
        (Math.max(...set.map((x) => Math.max(...(seen.get(x.id) ?? [0])))) - (performance.timeOrigin + t0)) /
          1000,
      )
      console.log(
        `  offered ${rate}/s: ${(lat.length / span).toFixed(0)} intents/s pending on all 5 (${lat.length}/${total}), p50 ${percentile(lat, 50).toFixed(0)} ms, p99 ${percentile(lat, 99).toFixed(0)} ms; HTTP 202 p50 ${percentile(
          ackMs.sort((a, b) => a - b),
          50,
        ).toFixed(
          0,
        )} ms; CPU: nodes ${nodesCpu.toFixed(2)} cores, load generator ${((bc.user + bc.system) / 1e6 / phaseSecs).toFixed(2)} cores`,
      )
    }
  } finally {
    for (const a of aborts) a.abort()
    await c.close()
  }
}

if (values.only.includes('single')) await single()
if (values.only.includes('five')) await five()
