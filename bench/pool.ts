/**
 * Intent pool write throughput: `addMany` in batches of 1, 10, 100 and 1000 pre-signed intents, each
 * run on a fresh LevelDB in a temp dir, every batch awaited (durable) before the next. Prints intents
 * per second, median of the runs; never passes or fails on time.
 * Run: `node bench/pool.ts [runs] [intentsPerRun]`.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import type { Hex } from 'viem'
import { privateKeyToAccount, sign } from 'viem/accounts'
import { buildOrder, intentId } from '../src/codec/intent.ts'
import { IntentPool } from '../src/mempool/pool.ts'
import { type ValidIntent, validateIntent } from '../src/mempool/validate.ts'
import { Store } from '../src/state/store.ts'

const RUNS = Number(process.argv[2] ?? 3)
const N = Number(process.argv[3] ?? 6000)
const USERS = 200
const NOW = Math.floor(Date.now() / 1000)

async function makeIntents(): Promise<ValidIntent[]> {
  const keys = Array.from(
    { length: USERS },
    (_, u) => `0x${(BigInt(u) + 1000n).toString(16).padStart(64, '0')}` as Hex,
  )
  const users = keys.map((k) => privateKeyToAccount(k).address)
  const out: ValidIntent[] = []
  for (let i = 0; i < N; i++) {
    const u = i % USERS
    const order = buildOrder({
      user: users[u]!,
      nonce: BigInt(i),
      originChainId: 900n,
      openDeadline: NOW + 600,
      fillDeadline: NOW + 3600 + (i % 600),
      inputAmount: 10n ** 18n,
      outputAmount: 10n ** 18n - 1000n,
      destinationChainIds: [901n, 902n],
    })
    const id = intentId(order)
    // Signing the digest directly: the same signature signTypedData makes, without its generic hashing.
    const signature = (await sign({ hash: id, privateKey: keys[u]!, to: 'hex' })).toLowerCase() as Hex
    out.push({ ok: true, id, order, signature, data: undefined as never })
  }
  // Prove the signatures are real on a sample.
  for (const v of out.slice(0, 20)) {
    const r = await validateIntent(v, {
      nowSec: NOW,
      maxClockSkewSec: 30,
      knownChainIds: new Set([901n, 902n]),
    })
    if (!r.ok || r.id !== v.id) throw new Error(`bench intent invalid: ${r.ok ? 'id' : r.message}`)
  }
  return out
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

async function withPool<T>(fn: (pool: IntentPool) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'murmur-bench-pool-'))
  const store = new Store(join(dir, 'db'))
  await store.open()
  const pool = await IntentPool.open(
    store,
    { maxPerUser: N },
    { log: pino({ level: 'silent' }), registry: new Registry() },
  )
  try {
    return await fn(pool)
  } finally {
    await pool.close()
    await store.close()
    await rm(dir, { recursive: true, force: true })
  }
}

/** Intents per second of adding all intents with `write`. */
async function rate(intents: ValidIntent[], write: (pool: IntentPool) => Promise<number>): Promise<number> {
  return withPool(async (pool) => {
    const start = performance.now()
    const added = await write(pool)
    const ms = performance.now() - start
    if (added !== intents.length) throw new Error(`added ${added} of ${intents.length}`)
    return (intents.length / ms) * 1000
  })
}

async function measure(name: string, intents: ValidIntent[], write: (pool: IntentPool) => Promise<number>) {
  const runs: number[] = []
  for (let r = 0; r < RUNS; r++) runs.push(await rate(intents, write))
  const med = median(runs)
  console.log(
    `${name.padEnd(30)} ${Math.round(med).toString().padStart(8)} intents/s   (runs: ${runs.map((x) => Math.round(x)).join(' ')})`,
  )
}

async function main(): Promise<void> {
  const t0 = performance.now()
  const intents = await makeIntents()
  console.log(
    `node ${process.version}, ${availableParallelism()} cores, ${N} intents per run (${USERS} users), ` +
      `${RUNS} runs, median; signed in ${Math.round(performance.now() - t0)} ms`,
  )
  for (const batch of [1, 10, 100, 1000]) {
    await measure(`addMany, batches of ${batch}`, intents, async (pool) => {
      let added = 0
      for (let i = 0; i < intents.length; i += batch) {
        for (const r of await pool.addMany(intents.slice(i, i + batch))) if (r === 'added') added++
      }
      return added
    })
  }
  // For scale: single add() calls with 64 in flight; they queue behind one lock, one batch each.
  await measure('add(), 64 in flight', intents, async (pool) => {
    let next = 0
    let added = 0
    const worker = async () => {
      while (next < intents.length) if ((await pool.add(intents[next++]!)) === 'added') added++
    }
    await Promise.all(Array.from({ length: 64 }, worker))
    return added
  })
}

await main()
