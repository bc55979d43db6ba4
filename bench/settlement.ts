// Settlement benchmark (issue 10): four validator processes on loopback, three anvil rollups (1 s blocks)
// with the settlement contracts and the devnet's test token (devnet/settlement.ts). Wallets send ERC-20
// intents at each offered rate; every intent is opened on its origin (escrow), filled through the
// destination settler, and claimed by its executor against the block's commit certificate.
//   1. accepted -> filled and accepted -> settled, p50 / p99, and filled -> settled in block times (goal:
//      settled within 3 block times of the fill);
//   2. intents/s through open, fill and claim: settled intents per second over the run.
// Times come from node 0's /v1/events (its own clock): `pending` (accepted), `filled`, and the settlement
// events `{id, settlement: {state: 'settled'}}` (stamped on arrival).
//
//   npm run bench -- settlement [--rates 2,10] [--seconds 10] [--wallets 8] [--log-dir DIR]
import { mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { Address, Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { startRollups } from '../devnet/anvil.ts'
import { prepareNetwork } from '../devnet/network.ts'
import type { NodeProcess } from '../devnet/process.ts'
import { erc20Intent, setupDevnetSettlement } from '../devnet/settlement.ts'
import { MurmurClient } from '../src/client/index.ts'
import { signOrder } from '../src/codec/intent.ts'
import { followEvents, percentile, spawnNodes } from './lib.ts'

const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'settlement'),
  options: {
    rates: { type: 'string', default: '2,10' },
    seconds: { type: 'string', default: '10' },
    wallets: { type: 'string', default: '8' },
    'log-dir': { type: 'string' },
  },
})
const RATES = values.rates.split(',').map(Number)
const SECONDS = Number(values.seconds)
const WALLETS = Number(values.wallets)
const BLOCK_MS = 1000
const log = (s: string) => process.stderr.write(`${s}\n`)

const dir = await mkdtemp(join(tmpdir(), 'murmur-bench-settlement-'))
const net = await prepareNetwork({ dir, nodes: 4 })
const walletKeys = Array.from({ length: WALLETS }, () => generatePrivateKey())
const wallets = walletKeys.map((k) => privateKeyToAccount(k))
const deployer = generatePrivateKey()
log('starting 3 anvil rollups (1 s blocks), deploying the contracts, 4 validator processes...')
const chains = await startRollups({
  count: 3,
  blockTimeSec: 1,
  accounts: [...net.nodes.map((n) => n.validatorPrivateKey), deployer, ...walletKeys],
})
const procs: NodeProcess[] = []
const ac = new AbortController()
try {
  const flags = new Map(chains.rollups.map((r) => [r.chainId, r.rpcUrl]))
  const { record } = await setupDevnetSettlement({
    genesisPath: net.genesisPath,
    genesis: net.genesis,
    rpcUrls: flags,
    deployerKey: deployer,
    wallets,
    walletKeys,
    executors: net.nodes.map((n) => n.address),
    out: log,
  })
  await spawnNodes(net, procs, flags, {
    ...(values['log-dir'] === undefined ? {} : { logDir: values['log-dir'] }),
  })
  const api = procs[0]!.api
  const accepted = new Map<string, number>()
  const filled = new Map<string, number>()
  const settled = new Map<string, number>()
  await followEvents(api, ac.signal, (type, data) => {
    if (type !== 'intent') return
    const e = data as { id: string; state?: string; atMs?: number; settlement?: { state: string } }
    if (e.settlement !== undefined) {
      if (e.settlement.state === 'settled' && !settled.has(e.id)) settled.set(e.id, Date.now())
      return
    }
    if (e.state === 'pending' && !accepted.has(e.id)) accepted.set(e.id, e.atMs!)
    if (e.state === 'filled' && !filled.has(e.id)) filled.set(e.id, e.atMs!)
  })
  for (;;) {
    const s = (await (await fetch(`${api}/v1/status`)).json()) as { height: number }
    if (s.height >= 3) break
    await new Promise((r) => setTimeout(r, 200))
  }
  console.log(
    `settlement benchmark: 4 validator processes, 3 anvil rollups (1 s blocks) with settlement contracts, ${availableParallelism()} cores`,
  )
  const client = new MurmurClient(api)
  let n = 0
  for (const rate of RATES) {
    const total = rate * SECONDS
    log(`  offering ${rate} ERC-20 intents/s for ${SECONDS} s...`)
    // Signed ahead, so the offered rate is not limited by signing.
    const signed = await Promise.all(
      Array.from({ length: total }, async (_, i) => {
        const w = wallets[i % wallets.length]!
        const to = privateKeyToAccount(generatePrivateKey()).address.toLowerCase() as Address
        const order = MurmurClient.order(w.address, erc20Intent(record, to, [], n++))
        return { order, signature: await signOrder(w, order) }
      }),
    )
    const ids: Hex[] = []
    const t0 = performance.now()
    for (let i = 0; i < total; i++) {
      const due = t0 + (i * 1000) / rate
      const wait = due - performance.now()
      if (wait > 0) await new Promise((r) => setTimeout(r, wait))
      const s = signed[i]!
      ids.push((await client.submit(s.order, s.signature)).id)
    }
    const deadline = Date.now() + 90_000
    while (Date.now() < deadline && !ids.every((id) => settled.has(id)))
      await new Promise((r) => setTimeout(r, 200))
    const toFilled = ids
      .filter((id) => filled.has(id) && accepted.has(id))
      .map((id) => filled.get(id)! - accepted.get(id)!)
    const toSettled = ids
      .filter((id) => settled.has(id) && accepted.has(id))
      .map((id) => settled.get(id)! - accepted.get(id)!)
    const fillToSettle = ids
      .filter((id) => settled.has(id) && filled.has(id))
      .map((id) => settled.get(id)! - filled.get(id)!)
    const sort = (xs: number[]) => xs.sort((a, b) => a - b)
    sort(toFilled)
    sort(toSettled)
    sort(fillToSettle)
    const first = Math.min(...ids.map((id) => accepted.get(id) ?? Number.POSITIVE_INFINITY))
    const last = Math.max(...ids.filter((id) => settled.has(id)).map((id) => settled.get(id)!))
    const p = (xs: number[], q: number) => (xs.length === 0 ? Number.NaN : percentile(xs, q))
    console.log(
      `  ${rate}/s: accepted -> filled p50 ${p(toFilled, 50).toFixed(0)} ms, p99 ${p(toFilled, 99).toFixed(0)} ms; ` +
        `accepted -> settled p50 ${p(toSettled, 50).toFixed(0)} ms, p99 ${p(toSettled, 99).toFixed(0)} ms ` +
        `(${toSettled.length}/${ids.length} settled)`,
    )
    console.log(
      `  ${rate}/s: filled -> settled p50 ${(p(fillToSettle, 50) / BLOCK_MS).toFixed(2)} block times, p99 ${(p(fillToSettle, 99) / BLOCK_MS).toFixed(2)}; ` +
        `throughput ${((toSettled.length * 1000) / (last - first)).toFixed(2)} settled intents/s`,
    )
  }
} finally {
  ac.abort()
  await Promise.allSettled(procs.map((p) => p.stop(5_000)))
  await chains.stop()
  await rm(dir, { recursive: true, force: true })
}
// Every process this benchmark started is stopped above, by pid; the SSE reader and keep-alive sockets of
// this process may still hold the event loop, so leave explicitly.
process.exit(process.exitCode ?? 0)
