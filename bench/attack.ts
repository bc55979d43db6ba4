// Attack benchmark (issue 13's report goals): honest throughput under a 10x flood from several
// identities at once, each attacker's disconnect time, and the attacked nodes' memory a minute after.
// Prints figures; never fails on a time.
//
//   npm run bench -- attack [--runs 1] [--nodes 2] [--rate 10] [--flood 12] [--attackers 3]
//                           [--streams 200] [--warmup 10] [--baseline 20] [--attack 20] [--after 60]
//                           [--log-dir DIR]
//
// Per run: `--nodes` validator processes (the node's own process, so its memory is its own; read
// from its /metrics) and one anvil rollup (1 s blocks). Honest wallets post signed intents at `--rate`
// per second, round robin over the nodes' HTTP APIs, through every phase: warm-up, baseline, attack,
// after. Throughput is the honest intents whose assignment was committed (node 0's /v1/events) within a
// phase, per second; latency is from the POST to that commit. In the attack phase `--attackers`
// identities at once (test/helpers/flooder.ts: each its own key and connections to every node) publish
// on the intents topic, together `--flood` times the honest rate, and each opens its share of
// `--streams` status streams a second. An identity that every node has hung up on is replaced by a
// fresh one (a Sybil with new keys, on standby so there is no gap), so the flood lasts the whole
// phase. The attackers run in processes of their own (bench/attack-worker.ts, one per slot). When each was banned and
// disconnected is read from the nodes' `/v1/peers/bans` and `/v1/peers`, polled every 100 ms.
// Memory is read once at each phase's end and, for the baseline and the after phase, once a second over
// their last 10 s: one reading can land just before a major GC (V8's old space is a sawtooth), so the
// medians of those two windows are compared as well.
import { mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'
import { startRollups } from '../devnet/anvil.ts'
import { prepareNetwork } from '../devnet/network.ts'
import type { NodeProcess } from '../devnet/process.ts'
import { type SignedIntent, signedIntentToJson } from '../src/codec/intent.ts'
import { addCounts, emptyCounts, type FloodCounts } from '../test/helpers/flooder.ts'
import {
  followEvents,
  forkWorker,
  median,
  metricIn,
  percentile,
  presignIntents,
  spawnNodes,
  type Worker,
} from './lib.ts'

const WORKER = fileURLToPath(new URL('./attack-worker.ts', import.meta.url))

const { values } = parseArgs({
  args: process.argv.slice(3),
  options: {
    runs: { type: 'string', default: '1' },
    nodes: { type: 'string', default: '2' },
    rate: { type: 'string', default: '10' },
    flood: { type: 'string', default: '12' },
    attackers: { type: 'string', default: '3' },
    streams: { type: 'string', default: '200' },
    warmup: { type: 'string', default: '10' },
    baseline: { type: 'string', default: '20' },
    attack: { type: 'string', default: '20' },
    after: { type: 'string', default: '60' },
    // The nodes' debug logs, node<i>.log, for diagnosis.
    'log-dir': { type: 'string' },
  },
})
const RUNS = Number(values.runs)
const NODES = Number(values.nodes)
const RATE = Number(values.rate)
const FLOOD = Number(values.flood)
const ATTACKERS = Number(values.attackers)
const STREAMS = Number(values.streams)
const SEC = {
  warmup: Number(values.warmup),
  baseline: Number(values.baseline),
  attack: Number(values.attack),
  after: Number(values.after),
}
if (!(SEC.baseline >= 10 && SEC.after >= 10)) {
  process.stderr.write(
    'attack: --baseline and --after must be at least 10 (s): memory is read over their last 10 s\n',
  )
  process.exit(2)
}
const log = (s: string) => process.stderr.write(`${s}\n`)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const getJson = async <T>(url: string): Promise<T> =>
  (await (await fetch(url, { signal: AbortSignal.timeout(5_000) })).json()) as T

/** A node's own figures (prom-client's default metrics of the node process), and when they were read. */
interface Memory {
  rssMb: number
  heapMb: number
  /** V8's heap as committed (used or not) and the memory of buffers outside it (ArrayBuffers). */
  heapTotalMb: number
  externalMb: number
  cpuSec: number
  atMs: number
}
const memory = async (api: string): Promise<Memory> => {
  // One scrape per reading: its figures are of one moment.
  const text = await (await fetch(`${api}/metrics`)).text()
  const mb = (name: string) => metricIn(text, name) / 2 ** 20
  return {
    rssMb: mb('murmur_process_resident_memory_bytes'),
    heapMb: mb('murmur_nodejs_heap_size_used_bytes'),
    heapTotalMb: mb('murmur_nodejs_heap_size_total_bytes'),
    externalMb: mb('murmur_nodejs_external_memory_bytes'),
    cpuSec: metricIn(text, 'murmur_process_cpu_seconds_total'),
    atMs: Date.now(),
  }
}
/** Readings a second apart over the last seconds of the baseline and of the after phase. */
const WINDOW_SEC = 10

/** Cores a node used between samples `a` and `b`. */
const cores = (m: Memory[], a: number, b: number) =>
  (m[b]!.cpuSec - m[a]!.cpuSec) / ((m[b]!.atMs - m[a]!.atMs) / 1000)

/** One attacker identity's fate, as the nodes' APIs told it. */
interface Fate {
  peerId: string
  firstMs: number
  /** Per node: first poll that no longer listed it among the peers, after it had been listed. */
  goneAt: Array<number | undefined>
  seen: boolean[]
  /** Per node: the ban's `sinceMs`. */
  bannedAt: Array<number | undefined>
}

interface RunResult {
  baselinePerSec: number
  attackPerSec: number
  afterPerSec: number
  latency: Record<'baseline' | 'attack' | 'after', { p50: number; p99: number; missing: number }>
  /** ms from each identity's first message to its disconnect from the last node (max over nodes). */
  disconnectMs: number[]
  bannedMs: number[]
  neverDisconnected: number
  identities: number
  floodPerSec: number
  streamsPerSec: number
  /** Per node: baseline start, baseline end, attack end, after. */
  mem: Memory[][]
  /** Per node: the readings of the baseline's and the after phase's last {@link WINDOW_SEC} seconds. */
  windows: { baseline: Memory[][]; after: Memory[][] }
  refused: number
  counts: FloodCounts
}

async function run(k: number): Promise<RunResult> {
  const dir = await mkdtemp(join(tmpdir(), 'murmur-bench-attack-'))
  const net = await prepareNetwork({
    dir,
    nodes: NODES,
    rollups: [{ chainId: 901, name: 'rollup-901', type: 'optimistic', securityBps: 8000 }],
  })
  const chains = await startRollups({
    count: 1,
    blockTimeSec: 1,
    accounts: net.nodes.map((n) => n.validatorPrivateKey),
  })
  const procs: NodeProcess[] = []
  const workers: Worker[] = []
  const ac = new AbortController()
  const clients: Pool[] = []
  try {
    // Anvil's own URL, not the devnet's proxy: the proxy runs in this process, and a stall here would
    // read as the rollup's RPC failing (the nodes then mark it down and assign nothing).
    const rpc = new Map(chains.rollups.map((r) => [r.chainId, r.upstreamUrl ?? r.rpcUrl]))
    await spawnNodes(net, procs, rpc, { logDir: values['log-dir'] })
    const apis = procs.map((p) => p.api)
    for (;;) {
      const s = await getJson<{ height: number; peers: number }>(`${apis[0]}/v1/status`)
      if (s.height >= 3 && s.peers >= NODES - 1) break
      await sleep(200)
    }
    const assignedAt = new Map<string, number>()
    await followEvents(apis[0]!, ac.signal, (type, data) => {
      const e = data as { id: string; state: string; atMs: number }
      if (type === 'intent' && e.state === 'assigned' && !assignedAt.has(e.id)) assignedAt.set(e.id, e.atMs)
    })

    // The attackers' identities are made and connected (silent) before the warm-up, so that the
    // baseline runs with the same peers as the attack and the flood starts at full rate.
    // One process per identity slot, as attackers on hosts of their own: on this machine one process
    // flooding for all three fell behind its own clock (one loop turn a second), well short of 10x.
    const fates = new Map<string, Fate>()
    const signed = presignIntents(64 * ATTACKERS, { chains: [901n] }).map((x) => signedIntentToJson(x.intent))
    for (let i = 0; i < ATTACKERS; i++) {
      const worker = forkWorker(WORKER)
      workers.push(worker)
      await worker.next('ready')
      worker.child.on('message', (m: { type: string; peerId?: string; firstMs?: number; line?: string }) => {
        if (m.type === 'log') log(`  attacker process ${i}: ${m.line}`)
        if (m.type !== 'identity') return
        fates.set(m.peerId!, {
          peerId: m.peerId!,
          firstMs: m.firstMs!,
          goneAt: procs.map(() => undefined),
          seen: procs.map(() => false),
          bannedAt: procs.map(() => undefined),
        })
      })
      worker.child.send({
        type: 'prepare',
        networkId: net.genesis.networkId,
        targets: procs.map((p) => p.listen[0]!),
        attackers: 1,
        messagesPerSec: (FLOOD * RATE) / ATTACKERS,
        streamsPerSec: STREAMS / ATTACKERS,
        signed: signed.slice(i * 64, (i + 1) * 64),
      })
    }
    await Promise.all(workers.map((w) => w.next('prepared')))
    const shareKnown = () => {
      const intents = accepted.slice(-256).map(signedIntentToJson)
      for (const w of workers) w.child.send({ type: 'known', intents })
    }
    const knownTimer = setInterval(shareKnown, 1_000)

    // Honest load, open loop, for the whole run: intents signed ahead (fresh wallets each).
    const total = Math.ceil(RATE * (SEC.warmup + SEC.baseline + SEC.attack + SEC.after + 5))
    const honest = presignIntents(total, { chains: [901n], users: Math.ceil(total / 8) })
    const sentAt = new Map<string, number>()
    const accepted: SignedIntent[] = []
    let refused = 0
    for (const a of apis) clients.push(new Pool(a, { connections: 8 }))
    let loadOn = true
    const load = (async () => {
      const t0 = Date.now()
      const inflight = new Set<Promise<void>>()
      let sent = 0
      while (loadOn && sent < total) {
        const due = Math.min(total, Math.floor(((Date.now() - t0) / 1000) * RATE))
        while (sent < due) {
          const x = honest[sent]!
          const client = clients[sent % clients.length]!
          sent++
          sentAt.set(x.id, Date.now())
          const p = client
            .request({
              path: '/v1/intents',
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify(signedIntentToJson(x.intent)),
            })
            .then(async (r) => {
              await r.body.dump()
              if (r.statusCode === 202) accepted.push(x.intent)
              else refused++
            })
            .catch(() => {
              refused++
            })
          inflight.add(p)
          p.finally(() => inflight.delete(p))
        }
        await sleep(5)
      }
      await Promise.all(inflight)
    })()

    const mem: Memory[][] = procs.map(() => [])
    const sampleMem = async () => {
      for (const [i, a] of apis.entries()) mem[i]!.push(await memory(a))
      const heights = await Promise.all(apis.map((a) => getJson<{ height: number }>(`${a}/v1/status`)))
      log(`  heights ${heights.map((h) => h.height).join(', ')}`)
    }
    /** One reading a second per node for WINDOW_SEC seconds (ends about when the phase does). */
    const sampleWindow = async (): Promise<Memory[][]> => {
      const w: Memory[][] = procs.map(() => [])
      const t0 = Date.now()
      for (let s = 0; s < WINDOW_SEC; s++) {
        await sleep(Math.max(0, t0 + s * 1000 - Date.now()))
        const read = await Promise.all(apis.map((a) => memory(a)))
        for (const [i, m] of read.entries()) w[i]!.push(m)
      }
      await sleep(Math.max(0, t0 + WINDOW_SEC * 1000 - Date.now()))
      return w
    }
    log(`run ${k}: warm-up ${SEC.warmup} s (load average ${loadavg()[0]!.toFixed(1)})`)
    await sleep(SEC.warmup * 1000)
    await sampleMem()
    const tBase = Date.now()
    log(`run ${k}: baseline ${SEC.baseline} s`)
    await sleep(Math.max(0, tBase + (SEC.baseline - WINDOW_SEC) * 1000 - Date.now()))
    const baselineWindow = await sampleWindow()
    await sampleMem()

    // The attack.
    const tAttack = Date.now()
    log(`run ${k}: attack ${SEC.attack} s (${ATTACKERS} identities at once, ${FLOOD}x the honest rate)`)
    for (const w of workers) w.child.send({ type: 'start' })
    // The watch: black box, through each node's API.
    let watchOn = true
    const watch = (async () => {
      while (watchOn) {
        await Promise.all(
          apis.map(async (a, n) => {
            const [peers, bans] = await Promise.all([
              getJson<Array<{ peerId: string }>>(`${a}/v1/peers`),
              getJson<Array<{ peerId: string; sinceMs: number }>>(`${a}/v1/peers/bans`),
            ])
            const now = Date.now()
            const listed = new Set(peers.map((p) => p.peerId))
            for (const f of fates.values()) {
              if (listed.has(f.peerId)) f.seen[n] = true
              else if (f.seen[n] && f.goneAt[n] === undefined) f.goneAt[n] = now
              const b = bans.find((x) => x.peerId === f.peerId)
              if (b !== undefined) f.bannedAt[n] ??= b.sinceMs
            }
          }),
        ).catch(() => {})
        await sleep(100)
      }
    })()
    await sleep(SEC.attack * 1000)
    clearInterval(knownTimer)
    for (const w of workers) w.child.send({ type: 'stop' })
    const counts = emptyCounts()
    for (const w of workers) {
      addCounts(counts, (await w.next<{ counts: FloodCounts }>('done')).counts)
    }
    const tAfter = Date.now()
    await sampleMem()
    // The last identities: the watch goes on until they are gone too (or 10 s), then they stop.
    const deadline = Date.now() + 10_000
    const left = () => [...fates.values()].some((f) => f.goneAt.some((g, n) => g === undefined && f.seen[n]))
    while (Date.now() < deadline && left()) await sleep(100)
    watchOn = false
    await watch
    await Promise.all(
      workers.map((w) => {
        w.child.send({ type: 'exit' })
        return new Promise((r) => w.child.once('exit', r))
      }),
    )
    const floodSent = counts.garbage + counts.badSig + counts.replay + counts.big
    log(`run ${k}: after ${SEC.after} s (load average ${loadavg()[0]!.toFixed(1)})`)
    await sleep(Math.max(0, tAfter + (SEC.after - WINDOW_SEC) * 1000 - Date.now()))
    const afterWindow = await sampleWindow()
    await sampleMem()
    const tEnd = Date.now()
    loadOn = false
    await load
    // Grace for the last assignments of the after window's intents.
    await sleep(5_000)

    const window = (from: number, to: number) => {
      let committed = 0
      for (const [id, at] of assignedAt) if (sentAt.has(id) && at >= from && at < to) committed++
      const lat: number[] = []
      let missing = 0
      for (const [id, s] of sentAt) {
        if (s < from || s >= to) continue
        const at = assignedAt.get(id)
        if (at === undefined) missing++
        else lat.push(at - s)
      }
      lat.sort((a, b) => a - b)
      return {
        perSec: (committed * 1000) / (to - from),
        p50: percentile(lat, 50),
        p99: percentile(lat, 99),
        missing,
      }
    }
    const b = window(tBase, tAttack)
    const a = window(tAttack, tAfter)
    const af = window(tAfter, tEnd)
    const fateList = [...fates.values()]
    const gone = (f: Fate) =>
      f.goneAt.every((g, n) => g !== undefined || !f.seen[n]) && f.seen.some((s) => s)
        ? Math.max(...f.goneAt.filter((g): g is number => g !== undefined)) - f.firstMs
        : undefined
    const disconnectMs = fateList.map(gone).filter((x): x is number => x !== undefined)
    const bannedMs = fateList.flatMap((f) =>
      f.bannedAt.filter((x): x is number => x !== undefined).map((x) => x - f.firstMs),
    )
    const attackSecs = (tAfter - tAttack) / 1000
    for (const f of fateList)
      log(
        `  attacker ${f.peerId.slice(-8)}: banned ${f.bannedAt.map((x) => (x === undefined ? '-' : `${x - f.firstMs} ms`)).join(', ')}; gone ${f.goneAt.map((x) => (x === undefined ? '-' : `${x - f.firstMs} ms`)).join(', ')} after its first message`,
      )
    return {
      baselinePerSec: b.perSec,
      attackPerSec: a.perSec,
      afterPerSec: af.perSec,
      latency: {
        baseline: { p50: b.p50, p99: b.p99, missing: b.missing },
        attack: { p50: a.p50, p99: a.p99, missing: a.missing },
        after: { p50: af.p50, p99: af.p99, missing: af.missing },
      },
      disconnectMs,
      bannedMs,
      neverDisconnected: fateList.length - disconnectMs.length,
      identities: fateList.length,
      floodPerSec: floodSent / attackSecs,
      streamsPerSec: counts.streams / attackSecs,
      counts,
      mem,
      windows: { baseline: baselineWindow, after: afterWindow },
      refused,
    }
  } finally {
    ac.abort()
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL')
    for (const c of clients) await c.close().catch(() => {})
    await Promise.allSettled(procs.map((p) => p.stop()))
    await chains.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

const fmt = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a')
/** Per node: the median RSS of the after window over that of the baseline window, in %. */
const windowRatios = (r: RunResult) =>
  r.windows.after.map(
    (a, i) => (median(a.map((m) => m.rssMb)) / median(r.windows.baseline[i]!.map((m) => m.rssMb))) * 100,
  )
const span = (ms: Memory[], f: (m: Memory) => number) =>
  `${fmt(Math.min(...ms.map(f)))}-${fmt(Math.max(...ms.map(f)))}`
const results: RunResult[] = []
for (let k = 1; k <= RUNS; k++) {
  const r = await run(k)
  results.push(r)
  const ratio = r.attackPerSec / r.baselinePerSec
  console.log(
    `run ${k}: honest ${fmt(r.baselinePerSec, 1)}/s baseline, ${fmt(r.attackPerSec, 1)}/s under attack (${fmt(ratio * 100)} %), ${fmt(r.afterPerSec, 1)}/s after; latency p50/p99 ${fmt(r.latency.baseline.p50)}/${fmt(r.latency.baseline.p99)} ms baseline, ${fmt(r.latency.attack.p50)}/${fmt(r.latency.attack.p99)} ms attack, ${fmt(r.latency.after.p50)}/${fmt(r.latency.after.p99)} ms after; not committed ${r.latency.baseline.missing}/${r.latency.attack.missing}/${r.latency.after.missing}; refused ${r.refused}`,
  )
  console.log(
    `run ${k}: flood ${fmt(r.floodPerSec)} msgs/s (${fmt(r.floodPerSec / RATE, 1)}x honest) (garbage ${r.counts.garbage}, wrong signatures ${r.counts.badSig}, replays ${r.counts.replay}, near 1 MiB ${r.counts.big}; ${r.counts.unsent} found no recipient) + ${fmt(r.streamsPerSec)} stream opens/s from ${r.identities} identities (${ATTACKERS} at once); disconnected from every node ${fmt(median(r.disconnectMs))} ms median, ${fmt(Math.max(...r.disconnectMs))} ms max after their first message; banned ${fmt(median(r.bannedMs))} ms median, ${fmt(Math.max(...r.bannedMs))} ms max; never disconnected ${r.neverDisconnected}`,
  )
  for (const [i, m] of r.mem.entries())
    console.log(
      `run ${k}: node ${i} RSS ${m.map((x) => fmt(x.rssMb)).join(' -> ')} MB, heap ${m.map((x) => fmt(x.heapMb)).join(' -> ')} MB (baseline start, baseline end, attack end, ${SEC.after} s after); after/baseline RSS ${fmt((m[3]!.rssMb / m[1]!.rssMb) * 100)} %; CPU ${fmt(cores(m, 0, 1), 2)} cores baseline, ${fmt(cores(m, 1, 2), 2)} attack, ${fmt(cores(m, 2, 3), 2)} after`,
    )
  for (const [i, ratio] of windowRatios(r).entries()) {
    const b = r.windows.baseline[i]!
    const a = r.windows.after[i]!
    console.log(
      `run ${k}: node ${i} last ${WINDOW_SEC} s of baseline / of after: RSS median ${fmt(median(b.map((x) => x.rssMb)))} / ${fmt(median(a.map((x) => x.rssMb)))} MB (${fmt(ratio)} %), RSS ${span(b, (x) => x.rssMb)} / ${span(a, (x) => x.rssMb)} MB, heap used ${span(b, (x) => x.heapMb)} / ${span(a, (x) => x.heapMb)} MB, heap committed ${span(b, (x) => x.heapTotalMb)} / ${span(a, (x) => x.heapTotalMb)} MB, external ${span(b, (x) => x.externalMb)} / ${span(a, (x) => x.externalMb)} MB`,
    )
  }
}
const all = (f: (r: RunResult) => number) => median(results.map(f))
console.log(
  `attack benchmark (${NODES} validator processes, 1 anvil rollup, ${availableParallelism()} cores), median of ${RUNS} runs:`,
)
console.log(
  `  honest throughput under attack / baseline: ${fmt(all((r) => (r.attackPerSec / r.baselinePerSec) * 100))} % (runs: ${results.map((r) => `${fmt((r.attackPerSec / r.baselinePerSec) * 100)} %`).join(', ')}; ${fmt(
    all((r) => r.baselinePerSec),
    1,
  )}/s baseline); latency p50/p99 baseline ${fmt(all((r) => r.latency.baseline.p50))}/${fmt(all((r) => r.latency.baseline.p99))} ms, attack ${fmt(all((r) => r.latency.attack.p50))}/${fmt(all((r) => r.latency.attack.p99))} ms`,
)
console.log(
  `  flood ${fmt(
    all((r) => r.floodPerSec / RATE),
    1,
  )}x the honest rate; attacker disconnected (every node) median ${fmt(median(results.flatMap((r) => r.disconnectMs)))} ms, max ${fmt(Math.max(...results.flatMap((r) => r.disconnectMs)))} ms over ${results.reduce((s, r) => s + r.identities, 0)} identities; never disconnected ${results.reduce((s, r) => s + r.neverDisconnected, 0)}`,
)
console.log(
  `  RSS ${SEC.after} s after the attack / baseline: ${results
    .map((r) => r.mem.map((m) => `${fmt((m[3]!.rssMb / m[1]!.rssMb) * 100)} %`).join(' '))
    .join('; ')} (per run, per node); at the attack's end ${results
    .map((r) => r.mem.map((m) => `${fmt((m[2]!.rssMb / m[1]!.rssMb) * 100)} %`).join(' '))
    .join('; ')}`,
)
console.log(
  `  RSS median of the last ${WINDOW_SEC} s of after / of baseline: ${fmt(median(results.flatMap(windowRatios)))} % (${results
    .map((r) =>
      windowRatios(r)
        .map((x) => `${fmt(x)} %`)
        .join(' '),
    )
    .join('; ')})`,
)
