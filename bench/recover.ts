/**
 * Signature recovery throughput: native libsecp256k1 vs viem's pure JS, one core each, plus the worker
 * pool over all cores and the intent id hash for scale. Prints figures (median of several runs); never
 * passes or fails on time. Run: `node bench/recover.ts [runs] [msPerRun]`.
 */
import { availableParallelism } from 'node:os'
import { type Hex, recoverAddress as viemRecoverAddress } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { buildOrder, intentId, signOrder } from '../src/codec/intent.ts'
import {
  nativeRecoverAvailable,
  RecoverPool,
  recoverAddressNative,
  recoverAddressPureJs,
} from '../src/crypto/recover.ts'

const RUNS = Number(process.argv[2] ?? 5)
const MS_PER_RUN = Number(process.argv[3] ?? 1000)
const SAMPLES = 64

interface Sample {
  digest: Hex
  signature: Hex
  address: Hex
}

async function makeSamples(): Promise<Sample[]> {
  const out: Sample[] = []
  for (let i = 0; i < SAMPLES; i++) {
    const account = privateKeyToAccount(`0x${(BigInt(i) * 104729n + 12345n).toString(16).padStart(64, '0')}`)
    const order = buildOrder({
      user: account.address,
      nonce: BigInt(i),
      originChainId: 900n,
      openDeadline: 2_000_000_000,
      fillDeadline: 2_000_000_600,
      inputAmount: 10n ** 18n,
      outputAmount: 10n ** 18n,
      destinationChainIds: [901n],
    })
    out.push({ digest: intentId(order), signature: await signOrder(account, order), address: order.user })
  }
  return out
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** Operations per second of `op`, run for about `ms`, after a warm-up. */
async function rate(op: (i: number) => unknown | Promise<unknown>, ms: number): Promise<number> {
  for (let i = 0; i < 200; i++) await op(i)
  let n = 0
  const start = performance.now()
  let elapsed = 0
  while (elapsed < ms) {
    for (let k = 0; k < 50; k++) await op(n++)
    elapsed = performance.now() - start
  }
  return (n / elapsed) * 1000
}

async function measure(name: string, op: (i: number) => unknown | Promise<unknown>): Promise<number> {
  const runs: number[] = []
  for (let r = 0; r < RUNS; r++) runs.push(await rate(op, MS_PER_RUN))
  const med = median(runs)
  const spread = runs.map((x) => Math.round(x)).join(' ')
  console.log(
    `${name.padEnd(34)} ${Math.round(med).toString().padStart(8)} /s   (${(1e6 / med).toFixed(1)} µs/op; runs: ${spread})`,
  )
  return med
}

async function main(): Promise<void> {
  const samples = await makeSamples()
  const pick = (i: number) => samples[i % SAMPLES]!
  // Check correctness once before timing anything.
  for (const s of samples) {
    if (recoverAddressNative(s.digest, s.signature) !== s.address)
      throw new Error('native recovered the wrong address')
    if ((await recoverAddressPureJs(s.digest, s.signature)) !== s.address)
      throw new Error('js recovered the wrong address')
  }

  console.log(
    `node ${process.version}, ${availableParallelism()} cores, ${RUNS} runs x ${MS_PER_RUN} ms, median`,
  )
  console.log(`native binding available: ${nativeRecoverAvailable()}`)
  const native = await measure('recover native (1 core)', (i) => {
    const s = pick(i)
    return recoverAddressNative(s.digest, s.signature)
  })
  const js = await measure('recover pure JS, ours (1 core)', (i) => {
    const s = pick(i)
    return recoverAddressPureJs(s.digest, s.signature)
  })
  await measure('recover viem.recoverAddress (1 core)', (i) => {
    const s = pick(i)
    return viemRecoverAddress({ hash: s.digest, signature: s.signature })
  })
  console.log(`native / pure JS: ${(native / js).toFixed(1)}x`)

  const pool = new RecoverPool()
  try {
    await Promise.all(samples.map((s) => pool.recover(s.digest, s.signature))) // start the workers
    const batch = 512
    const poolRuns: number[] = []
    for (let r = 0; r < RUNS; r++) {
      let n = 0
      const start = performance.now()
      while (performance.now() - start < MS_PER_RUN) {
        await Promise.all(
          Array.from({ length: batch }, (_, k) => pool.recover(pick(k).digest, pick(k).signature)),
        )
        n += batch
      }
      poolRuns.push((n / (performance.now() - start)) * 1000)
    }
    console.log(
      `${`RecoverPool (${pool.size} workers)`.padEnd(34)} ${Math.round(median(poolRuns)).toString().padStart(8)} /s   (runs: ${poolRuns.map(Math.round).join(' ')})`,
    )
  } finally {
    await pool.close()
  }

  const orders = samples.map((_, i) =>
    buildOrder({
      user: samples[i]!.address,
      nonce: BigInt(i),
      originChainId: 900n,
      openDeadline: 2_000_000_000,
      fillDeadline: 2_000_000_600,
      inputAmount: 1n,
      outputAmount: 1n,
    }),
  )
  await measure('intentId (EIP-712 digest)', (i) => intentId(orders[i % SAMPLES]!))
}

await main()
