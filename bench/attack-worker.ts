// The attackers of the attack benchmark (bench/attack.ts), in a process of their own: their CPU (Noise
// over near-1 MiB messages, encoding) must not slow the benchmark's load generator, its clock or its
// rollup proxy, which would count against the nodes. Driven over IPC:
//   parent -> {type:'prepare', ...} (2 identities per slot, connected and silent), {type:'start'},
//             {type:'known', intents}, {type:'stop'} (the flood), {type:'exit'}
//   worker -> {type:'prepared'}, {type:'identity', peerId, firstMs} once an identity's first message
//             reached a node,
//             {type:'done', counts}, {type:'log', line}
import { type SignedIntent, type SignedIntentJson, signedIntentFromJson } from '../src/codec/intent.ts'
import { addCounts, emptyCounts, Flooder, type FloodSources } from '../test/helpers/flooder.ts'

interface Prepare {
  type: 'prepare'
  networkId: string
  /** Multiaddrs of the nodes, ending in /p2p/<id>. */
  targets: string[]
  /** Identities at once. */
  attackers: number
  /** Flood messages per second, all identities together. */
  messagesPerSec: number
  /** Stream opens per second, all identities and nodes together. */
  streamsPerSec: number
  /** Validly signed intents never sent (their signatures become wrong ones). */
  signed: SignedIntentJson[]
}

const TICK_MS = 50
const send = (m: unknown) => process.send!(m)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

let known: SignedIntent[] = []
let on = false
let driver: Promise<void> | undefined
const flooders: Flooder[] = []
/** Identities connected and silent, ready to take a spent one's place at once. */
const standby: Flooder[] = []
let cfg: Prepare | undefined
let sources: FloodSources | undefined
/** Identities are made one at a time (a key, a store, libp2p, dials): a burst of them would stall us. */
let making: Promise<unknown> = Promise.resolve()

function makeStandby(): Promise<unknown> {
  making = making.then(async () => {
    try {
      const f = await Flooder.start(cfg!.networkId, cfg!.targets, sources!)
      flooders.push(f)
      standby.push(f)
    } catch (err) {
      send({ type: 'log', line: `an attacker failed to start: ${(err as Error).message}` })
    }
  })
  return making
}

async function attack(s: Prepare): Promise<void> {
  const slots: Array<Flooder | undefined> = Array.from({ length: s.attackers }, () => undefined)
  const reported = new Set<string>()
  // Open loop on the clock, not per tick: a tick that comes late (a busy machine) sends what is due.
  // What falls due while no identity is live, and a backlog beyond a second's worth, is dropped.
  const t0 = Date.now()
  const issued = { msgs: 0, streams: 0 }
  let lastLog = t0
  let ticks = 0
  while (on) {
    ticks++
    for (const [i, f] of slots.entries()) {
      if (f !== undefined && f.firstMessageAtMs !== undefined && !reported.has(f.peerId)) {
        reported.add(f.peerId)
        send({ type: 'identity', peerId: f.peerId, firstMs: f.firstMessageAtMs })
      }
      // Hung up on by every node: this identity is spent, a fresh one (new keys) takes the slot.
      if (f !== undefined && f.firstMessageAtMs !== undefined && !f.connected()) slots[i] = undefined
      if (slots[i] === undefined && standby.length > 0) {
        slots[i] = standby.shift()
        void makeStandby()
      }
    }
    const live = slots.filter((f): f is Flooder => f !== undefined)
    const secs = (Date.now() - t0) / 1000
    const due = { msgs: 0, streams: 0 }
    for (const [k, rate] of [
      ['msgs', s.messagesPerSec],
      ['streams', s.streamsPerSec],
    ] as const) {
      const behind = Math.floor(secs * rate) - issued[k]
      due[k] = live.length === 0 ? 0 : Math.min(behind, Math.ceil(rate))
      issued[k] += behind - due[k] // dropped
    }
    if (live.length > 0) {
      const each = Math.floor(due.msgs / live.length)
      const eachStreams = Math.floor(due.streams / live.length / s.targets.length)
      issued.msgs += each * live.length
      issued.streams += eachStreams * live.length * s.targets.length
      for (const f of live) {
        f.send(each)
        f.openStreams(eachStreams)
      }
    }
    if (process.env['BENCH_DEBUG'] === '1' && Date.now() - lastLog >= 1000) {
      lastLog = Date.now()
      const c = live
        .map((f) => `${JSON.stringify(f.counts)} in flight ${f.inFlight} ${f.view()} ${f.lastError ?? ''}`)
        .join(' | ')
      const cpu = process.cpuUsage()
      send({
        type: 'log',
        line: `cpu ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s, ${ticks} ticks; ${live.length} live, ${standby.length} standby: ${c}`,
      })
    }
    await sleep(TICK_MS)
  }
}

process.on('message', async (m: { type: string }) => {
  if (m.type === 'prepare') {
    cfg = m as Prepare
    sources = { known: () => known, signed: cfg.signed.map(signedIntentFromJson) }
    for (let i = 0; i < 2 * cfg.attackers; i++) await makeStandby()
    send({ type: 'prepared', identities: standby.length })
  } else if (m.type === 'start') {
    on = true
    driver = attack(cfg!)
  } else if (m.type === 'known') {
    known = (m as unknown as { intents: SignedIntentJson[] }).intents.map(signedIntentFromJson)
  } else if (m.type === 'stop') {
    // The flood ends; the identities stay connected until `exit`, so that what the nodes do to the last
    // ones is still theirs to do.
    on = false
    await driver
    const counts = emptyCounts()
    for (const f of flooders) addCounts(counts, f.counts)
    send({ type: 'done', counts })
  } else if (m.type === 'exit') {
    await making
    for (const f of flooders.splice(0)) await f.stop().catch(() => {})
    process.exit(0)
  }
})

// The benchmark owns us: if it goes away, so do we.
process.on('disconnect', () => process.exit(0))
send({ type: 'ready' })
