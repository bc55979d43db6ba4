// Agreement benchmark: four validator processes on loopback with three anvil rollups (1 s blocks).
//   1. intent accepted -> assignment committed, p50 / p99, at each offered rate (default 100 and 1000/s);
//   2. intent accepted -> filled on the rollup, p50 / p99 (at the lowest rate);
//   3. rollup killed -> every intent assigned to it re-assigned to a live rollup (median of --kills).
// Times come from node 0's /v1/events stream (its own clock): `pending` (accepted), `assigned`, `filled`.
//
//   npm run bench -- consensus [--rates 100,1000] [--seconds 10] [--kills 3] [--gossip] [--log-dir DIR]
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'
import { startRollups } from '../devnet/anvil.ts'
import { prepareNetwork } from '../devnet/network.ts'
import type { NodeProcess } from '../devnet/process.ts'
import { signedIntentToJson } from '../src/codec/intent.ts'
import { followEvents, median, percentile, presignIntents, spawnNodes } from './lib.ts'

const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'consensus'),
  options: {
    rates: { type: 'string', default: '100,1000' },
    seconds: { type: 'string', default: '10' },
    kills: { type: 'string', default: '3' },
    'log-dir': { type: 'string' },
    // Print the gossip messages node 1 (a node the load generator does not talk to) took in, by topic.
    gossip: { type: 'boolean', default: false },
  },
})
const RATES = values.rates.split(',').map(Number)
const SECONDS = Number(values.seconds)
const KILLS = Number(values.kills)
const log = (s: string) => process.stderr.write(`${s}\n`)

interface Ev {
  id: string
  state: string
  previous: string | null
  atMs: number
  reason?: string
  assignment: { chainId: string } | null
}
const events = new Map<string, Ev[]>()
const listeners = new Set<(e: Ev) => void>()

const dir = await mkdtemp(join(tmpdir(), 'murmur-bench-consensus-'))
const net = await prepareNetwork({ dir, nodes: 4 })
log('starting 3 anvil rollups (1 s blocks) and 4 validator processes...')
const chains = await startRollups({
  count: 3,
  blockTimeSec: 1,
  accounts: net.nodes.map((n) => n.validatorPrivateKey),
})
const procs: NodeProcess[] = []
const ac = new AbortController()
try {
  const flags = new Map(chains.rollups.map((r) => [r.chainId, r.rpcUrl]))
  await spawnNodes(net, procs, flags, { logDir: values['log-dir'] })
  const api = procs[0]!.api
  await followEvents(api, ac.signal, (type, data) => {
    if (type !== 'intent') return
    const e = data as Ev
    const l = events.get(e.id) ?? []
    l.push(e)
    events.set(e.id, l)
    for (const f of listeners) f(e)
  })
  // Wait for the chain to run: a few heights.
  for (;;) {
    const s = (await (await fetch(`${api}/v1/status`)).json()) as { height: number }
    if (s.height >= 3) break
    await new Promise((r) => setTimeout(r, 200))
  }
  const at = (id: string, state: string) => events.get(id)?.find((e) => e.state === state)?.atMs
  const client = new Pool(api, { connections: 16 })
  const submit = async (rate: number, total: number) => {
    const set = presignIntents(total, { chains: [901n, 902n, 903n] }).map((x) => ({
      id: x.id,
      body: JSON.stringify(signedIntentToJson(x.intent)),
    }))
    const t0 = performance.now()
    let sent = 0
    const inflight = new Set<Promise<void>>()
    while (sent < total) {
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate))
      while (sent < due) {
        const x = set[sent++]!
        const p = client
          .request({
            path: '/v1/intents',
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: x.body,
          })
          .then((r) => r.body.dump())
          .catch(() => {})
        inflight.add(p)
        p.finally(() => inflight.delete(p))
      }
      await new Promise((r) => setTimeout(r, 5))
    }
    await Promise.all(inflight)
    return set.map((x) => x.id)
  }
  console.log(
    `agreement benchmark: 4 validator processes, 3 anvil rollups (1 s blocks), ${availableParallelism()} cores`,
  )
  // An idle network's cost: CPU time of each node process over 5 s (Linux /proc; skipped elsewhere).
  const cpuSeconds = (pid: number) => {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return (Number(f[11]) + Number(f[12])) / 100
  }
  const hasProc = existsSync('/proc/self/stat')
  if (hasProc) {
    const before = procs.map((p) => cpuSeconds(p.pid))
    await new Promise((r) => setTimeout(r, 5000))
    const share = procs.map((p, i) => (cpuSeconds(p.pid) - before[i]!) / 5)
    console.log(
      `  idle: each node process uses ${share.map((x) => `${(x * 100).toFixed(0)} %`).join(', ')} of a core`,
    )
  }
  /** Gossip messages validated by node 1, by topic (counter values of its /metrics). */
  const gossipCounts = async () => {
    const text = await (await fetch(`${procs[1]!.api}/metrics`)).text()
    const out = new Map<string, number>()
    for (const m of text.matchAll(/^murmur_p2p_gossip_validation_total\{([^}]*)\} (\S+)$/gm)) {
      const topic = /topic="([^"]*)"/.exec(m[1]!)?.[1] ?? '?'
      out.set(topic, (out.get(topic) ?? 0) + Number(m[2]))
    }
    return out
  }
  for (const [k, rate] of RATES.entries()) {
    log(`  offering ${rate} intents/s for ${SECONDS} s...`)
    const gossipBefore = values.gossip ? await gossipCounts() : undefined
    const cpuBefore = hasProc ? procs.map((p) => cpuSeconds(p.pid)) : []
    const t0 = performance.now()
    const ids = await submit(rate, rate * SECONDS)
    const deadline = performance.now() + 60_000
    const final = new Set(['filled', 'expired', 'failed'])
    while (performance.now() < deadline) {
      const assigned = ids.filter((id) => at(id, 'assigned') !== undefined).length
      const done =
        k === 0
          ? ids.filter((id) => (events.get(id) ?? []).some((e) => final.has(e.state))).length
          : ids.length
      if (assigned === ids.length && done === ids.length) break
      await new Promise((r) => setTimeout(r, 200))
    }
    if (gossipBefore !== undefined) {
      const after = await gossipCounts()
      const sec = (performance.now() - t0) / 1000
      const parts = [...after]
        .map(([t, n]) => [t, n - (gossipBefore.get(t) ?? 0)] as const)
        .sort((a, b) => b[1] - a[1])
        .map(([t, n]) => `${t} ${(n / sec).toFixed(0)}/s`)
      console.log(`  ${rate}/s: gossip messages in at node 1 over ${sec.toFixed(1)} s: ${parts.join(', ')}`)
    }
    if (hasProc) {
      const used = procs.reduce((sum, p, i) => sum + cpuSeconds(p.pid) - cpuBefore[i]!, 0)
      const what = k === 0 ? 'until every intent ended' : 'until every intent was assigned'
      console.log(
        `  ${rate}/s: node CPU ${what}: ${((used * 1000) / ids.length).toFixed(2)} ms per intent (4 nodes together, idle share included)`,
      )
    }
    // What the node took in: the offered rate is not reached when node 0 answers more slowly.
    const accepted = ids.map((id) => at(id, 'pending')).filter((t) => t !== undefined)
    const spanSec = (Math.max(...accepted) - Math.min(...accepted)) / 1000
    console.log(
      `  ${rate}/s offered: ${accepted.length} accepted by node 0 over ${spanSec.toFixed(1)} s (${(accepted.length / Math.max(spanSec, 1e-3)).toFixed(0)}/s)`,
    )
    const toAssigned = ids
      .map((id) => (at(id, 'assigned') ?? Number.NaN) - (at(id, 'pending') ?? Number.NaN))
      .filter((x) => Number.isFinite(x))
      .sort((a, b) => a - b)
    console.log(
      `  ${rate}/s: accepted -> assignment committed: p50 ${percentile(toAssigned, 50).toFixed(0)} ms, p99 ${percentile(toAssigned, 99).toFixed(0)} ms (${toAssigned.length}/${ids.length} assigned)`,
    )
    if (k === 0) {
      const toFilled = ids
        .map((id) => (at(id, 'filled') ?? Number.NaN) - (at(id, 'pending') ?? Number.NaN))
        .filter((x) => Number.isFinite(x))
        .sort((a, b) => a - b)
      console.log(
        `  ${rate}/s: accepted -> filled on the rollup: p50 ${percentile(toFilled, 50).toFixed(0)} ms, p99 ${percentile(toFilled, 99).toFixed(0)} ms (${toFilled.length}/${ids.length} filled)`,
      )
    }
  }
  // Failover: keep intents flowing, kill a rollup, time until nothing is assigned to it any more.
  const times: number[] = []
  for (let kill = 1; kill <= KILLS; kill++) {
    const victim = chains.rollups[kill % chains.rollups.length]!
    const victimId = String(victim.chainId)
    // Open assignments on the victim, from the last event of every intent seen so far.
    const onVictim = () => {
      let n = 0
      for (const l of events.values()) {
        const last = l[l.length - 1]!
        if (last.state === 'assigned' && last.assignment?.chainId === victimId) n++
      }
      return n
    }
    const load = submit(100, 100 * 6)
    // Let assignments to the victim build up before the kill.
    const wait0 = Date.now()
    while (onVictim() < 10 && Date.now() - wait0 < 15_000) await new Promise((r) => setTimeout(r, 20))
    const before = onVictim()
    const t0 = Date.now()
    await victim.stop()
    while (onVictim() > 0 && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 20))
    const ms = Date.now() - t0
    await load
    log(`  kill ${kill}: rollup ${victimId} had ${before} open assignments; all re-assigned after ${ms} ms`)
    if (before > 0) times.push(ms)
    await victim.start()
    await new Promise((r) => setTimeout(r, 3000))
  }
  console.log(
    `  rollup killed -> all its open intents re-assigned: median ${median(times).toFixed(0)} ms over ${times.length} kills`,
  )
  await client.close()
} finally {
  ac.abort()
  await Promise.allSettled(procs.map((p) => p.stop()))
  await chains.stop()
  await rm(dir, { recursive: true, force: true })
}
// Every process and server this benchmark started is stopped above, by pid; something in this process (not
// yet found: it appears only after a rollup kill/restart) keeps the event loop busy, so leave explicitly.
process.exit(process.exitCode ?? 0)
