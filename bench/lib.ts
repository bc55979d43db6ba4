// Shared helpers of the benchmarks: pre-signed intents (native secp256k1, so that signing does not
// dominate the run), percentiles, metric scraping.
import { type ChildProcess, fork } from 'node:child_process'
import { createRequire } from 'node:module'
import { type Hex, hexToBytes, toHex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import type { PreparedNetwork } from '../devnet/network.ts'
import { type NodeProcess, spawnNode } from '../devnet/process.ts'
import { buildOrder, intentId, type SignedIntent } from '../src/codec/intent.ts'

const require = createRequire(import.meta.url)
const secp = require('secp256k1/bindings') as {
  ecdsaSign(msg32: Uint8Array, key: Uint8Array): { signature: Uint8Array; recid: number }
}

/** `count` valid intents from `users` distinct wallets, deadlines `fillInSec` ahead. */
export function presignIntents(
  count: number,
  opts: { users?: number; chains?: bigint[]; fillInSec?: number } = {},
): Array<{ id: Hex; intent: SignedIntent }> {
  // Fresh wallets on every call, so repeated phases never hit the pool's per-user limit.
  const seed = BigInt(Math.floor(Math.random() * 2 ** 48)) << 64n
  const users = Array.from({ length: opts.users ?? Math.max(1, Math.ceil(count / 32)) }, (_, i) => {
    const key = toHex(seed + BigInt(i + 1) * 0x9e3779b97f4a7c15n + 12345n, { size: 32 })
    return { key: hexToBytes(key), address: privateKeyToAccount(key).address }
  })
  const now = Math.floor(Date.now() / 1000)
  const nonceBase = BigInt(Date.now()) * 1_000_000n
  const out: Array<{ id: Hex; intent: SignedIntent }> = []
  for (let i = 0; i < count; i++) {
    const u = users[i % users.length]!
    const order = buildOrder({
      user: u.address,
      nonce: nonceBase + BigInt(i),
      originChainId: 901n,
      openDeadline: now + 600,
      fillDeadline: now + (opts.fillInSec ?? 3600),
      inputAmount: 1000n,
      outputAmount: 990n,
      destinationChainIds: opts.chains ?? [901n, 902n],
    })
    const id = intentId(order)
    const { signature, recid } = secp.ecdsaSign(hexToBytes(id), u.key)
    const sig = new Uint8Array(65)
    sig.set(signature)
    sig[64] = 27 + recid
    out.push({ id, intent: { order, signature: toHex(sig) } })
  }
  return out
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

export function median(xs: number[]): number {
  return percentile(
    [...xs].sort((a, b) => a - b),
    50,
  )
}

/** Sum of a Prometheus metric's samples whose labels contain every `match` pair. */
export async function scrape(api: string, name: string, match: Record<string, string> = {}): Promise<number> {
  return metricIn(await (await fetch(`${api}/metrics`)).text(), name, match)
}

/** The sum of metric `name`'s samples (labels matching `match`) in a Prometheus text answer. */
export function metricIn(text: string, name: string, match: Record<string, string> = {}): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const m = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const labels = m[2] ?? ''
    if (Object.entries(match).every(([k, v]) => labels.includes(`${k}="${v}"`))) sum += Number(m[3])
  }
  return sum
}

/** Runs `fn` over `items` with at most `concurrency` in flight. */
export async function pool<T>(items: T[], concurrency: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await fn(items[next++]!)
    }),
  )
}

export { followEvents } from '../devnet/sse.ts'

/**
 * Starts one `murmur node` process per node of `net`, node 0 first and the others bootstrapping from
 * it, each watching `rollups`. Processes are appended to `into` as they start, so the caller's
 * cleanup stops every one that did start, even if a later one fails.
 */
export async function spawnNodes(
  net: PreparedNetwork,
  into: NodeProcess[],
  rollups: Map<number, string> = new Map(),
  opts: { logDir?: string } = {},
): Promise<void> {
  for (const [i, n] of net.nodes.entries()) {
    into.push(
      await spawnNode({
        dataDir: n.dataDir,
        genesisPath: net.genesisPath,
        rollups,
        bootstrap: into.length > 0 ? [into[0]!.listen[0]!] : [],
        logLevel: opts.logDir === undefined ? 'warn' : 'debug',
        ...(opts.logDir === undefined ? {} : { logFile: `${opts.logDir}/node${i}.log` }),
      }),
    )
  }
}

/** A forked helper process of a benchmark and its messages, taken in order by type. */
export interface Worker {
  child: ChildProcess
  /** The next message of `type` from the worker (one already received, or the next to come). */
  next<T>(type: string): Promise<T>
}

/** Forks `file` with `args` (IPC on, its output on ours); `BENCH_PROFILE=DIR` CPU-profiles it there. */
export function forkWorker(file: string, args: string[] = []): Worker {
  const execArgv = process.env['BENCH_PROFILE']
    ? ['--cpu-prof', `--cpu-prof-dir=${process.env['BENCH_PROFILE']}`]
    : []
  const child = fork(file, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv })
  const waiting = new Map<string, Array<(m: unknown) => void>>()
  const queued = new Map<string, unknown[]>()
  child.on('message', (m: { type: string }) => {
    const w = waiting.get(m.type)?.shift()
    if (w) w(m)
    else queued.set(m.type, [...(queued.get(m.type) ?? []), m])
  })
  return {
    child,
    next<T>(type: string): Promise<T> {
      const q = queued.get(type)
      if (q && q.length > 0) return Promise.resolve(q.shift() as T)
      return new Promise<T>((resolve) => waiting.set(type, [...(waiting.get(type) ?? []), resolve as never]))
    },
  }
}
