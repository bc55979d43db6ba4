/**
 * An inconsistent RPC is down (issue 13, item 8), against one real anvil: the health monitor of a node
 * configured for chain 951 talks to an anvil that answers chain id 950 (down, `wrong_chain`, logged as an
 * error with both ids) until `anvil_setChainId` makes it right (up again); then the head is rewound with
 * `evm_revert` beyond `maxReorgDepth` (down, `head_backwards`, logged with the numbers, up again after
 * `inconsistentHoldMs`) and within it (a reorg: never down).
 */
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Rollup, startRollup } from '../devnet/anvil.ts'
import { HealthMonitor } from '../src/rollups/health-monitor.ts'
import type { SignedHealthReport } from '../src/rollups/health-report.ts'
import { rpc as call } from './helpers/settlement-env.ts'
import { waitFor } from './helpers/wait.ts'

const CONFIGURED = 951
const DEPTH = 5

async function rpc<T>(url: string, method: string, params: unknown[] = []): Promise<T> {
  return (await call(url, method, params)) as T
}

describe('health monitor: an inconsistent RPC is down', () => {
  let anvil: Rollup
  let monitor: HealthMonitor
  const published: SignedHealthReport[] = []
  const logs: Array<Record<string, unknown>> = []
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line.trim() !== '') logs.push(JSON.parse(line))
      done()
    },
  })
  const local = () => monitor.local().get(BigInt(CONFIGURED))
  const head = async () => BigInt(await rpc<string>(anvil.rpcUrl, 'eth_blockNumber'))
  const reportsSince = (ms: number) => published.filter((s) => s.report.timestampMs >= BigInt(ms))

  beforeAll(async () => {
    // Another chain id than the node is configured with: a wrong URL in the node's config.
    anvil = await startRollup({ chainId: 950, blockTimeSec: 1 })
    monitor = new HealthMonitor(
      {
        rollups: new Map([[CONFIGURED, anvil.rpcUrl]]),
        pollMs: 100,
        maxReorgDepth: DEPTH,
        inconsistentHoldMs: 1_500,
      },
      {
        log: pino({ level: 'info' }, sink),
        registry: new Registry(),
        account: privateKeyToAccount(generatePrivateKey()),
        networkId: 'consistency-test',
        publish: (s) => {
          published.push(s)
        },
      },
    )
    monitor.start()
  })

  afterAll(async () => {
    await monitor?.stop()
    await anvil?.close()
  })

  it('a wrong chain id is down, says so loudly, and recovers once the chain id is right', async () => {
    await waitFor('a down report', () => published.find((s) => s.report.status === 2))
    expect(local()).toMatchObject({ status: 'down', reason: 'wrong_chain' })
    // It answers, fast: without the chain id check this rollup would look healthy.
    await waitFor('two blocks on the wrong chain', async () => (await head()) >= 2n, { timeoutMs: 10_000 })
    expect(local()).toMatchObject({ status: 'down', reason: 'wrong_chain' })
    const error = logs.find((l) => l.level === 50 && l.answeredChainId === 950)
    expect(error).toMatchObject({ chainId: CONFIGURED, answeredChainId: 950 })
    expect(String(error!.msg)).toMatch(/another chain id/)

    await rpc(anvil.upstreamUrl!, 'anvil_setChainId', [CONFIGURED])
    const fixed = Date.now()
    await waitFor('up on the right chain id', () => local()?.status === 'up', { timeoutMs: 10_000 })
    const up = await waitFor('an up report', () => reportsSince(fixed).find((s) => s.report.status === 0))
    console.log(`wrong chain id fixed -> up report: ${Number(up.report.timestampMs) - fixed} ms`)
  })

  it('a head gone back beyond maxReorgDepth is down with the numbers logged, and up again after the hold', async () => {
    const snapshot = await rpc<string>(anvil.upstreamUrl!, 'evm_snapshot')
    const base = await head()
    await rpc(anvil.upstreamUrl!, 'anvil_mine', [`0x${(3 * DEPTH).toString(16)}`])
    const peak = await head()
    await waitFor('the monitor at the peak', () => (local()?.blockNumber ?? 0n) >= peak)
    expect(local()?.status).toBe('up')
    await rpc(anvil.upstreamUrl!, 'evm_revert', [snapshot])
    const reverted = Date.now()
    const down = await waitFor('down after the rewind', () =>
      local()?.status === 'down' ? local() : undefined,
    )
    expect(down.reason).toBe('head_backwards')
    expect(down.blockNumber).toBeLessThan(peak - BigInt(DEPTH))
    const downReport = await waitFor('a down report', () =>
      reportsSince(reverted).find((s) => s.report.status === 2),
    )
    const error = logs.find((l) => l.level === 50 && l.maxReorgDepth === DEPTH)
    expect(error).toMatchObject({ chainId: CONFIGURED, from: Number(peak) })
    expect(BigInt(error!.to as number)).toBeLessThanOrEqual(base + 1n)
    // Consistent again (the chain moves on from its new head): up after the hold.
    await waitFor('up again', () => local()?.status === 'up', { timeoutMs: 10_000 })
    expect(Date.now() - reverted).toBeGreaterThanOrEqual(1_500)
    console.log(
      `rewind -> down report: ${Number(downReport.report.timestampMs) - reverted} ms; rewind -> up: ${Date.now() - reverted} ms`,
    )
  })

  it('a head gone back within maxReorgDepth is a reorg: never down', async () => {
    const snapshot = await rpc<string>(anvil.upstreamUrl!, 'evm_snapshot')
    await rpc(anvil.upstreamUrl!, 'anvil_mine', [`0x${(DEPTH - 2).toString(16)}`])
    const peak = await head()
    await waitFor('the monitor at the peak', () => (local()?.blockNumber ?? 0n) >= peak)
    const since = Date.now()
    await rpc(anvil.upstreamUrl!, 'evm_revert', [snapshot])
    await waitFor('the monitor past the shallow rewind', () => (local()?.blockNumber ?? peak) < peak)
    // Reports published after the monitor saw the rewind: none of them down.
    const seenAt = Date.now()
    await waitFor('two reports after the rewind', () => reportsSince(seenAt).length >= 2, {
      timeoutMs: 10_000,
    })
    expect(reportsSince(since).filter((s) => s.report.status === 2)).toEqual([])
    expect(local()?.status).toBe('up')
    expect(logs.some((l) => l.msg === 'rollup head went back within the allowed reorg depth')).toBe(true)
  })
})
