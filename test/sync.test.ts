/**
 * Catch-up from any distance, in process: real ConsensusDrivers over the byte-carrying test bus
 * (test/sim/driver-bus.ts). A validator stopped while the other three commit hundreds of heights restarts
 * from its store and must reach the network's height through the protocol alone (signed gossip of later
 * heights or `status` answers, then `blocks-by-range`), then take part in consensus again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ConsensusParams } from '../src/consensus/types.ts'
import { testNetwork } from './helpers/consensus-net.ts'
import { waitFor } from './helpers/wait.ts'
import { type BusNode, DriverBus } from './sim/driver-bus.ts'

/** Short rounds: a round whose proposer is the stopped validator times out fast. */
const FAST: ConsensusParams = {
  timeoutProposeMs: 150,
  timeoutProposeDeltaMs: 50,
  timeoutPrevoteMs: 100,
  timeoutPrevoteDeltaMs: 50,
  timeoutPrecommitMs: 100,
  timeoutPrecommitDeltaMs: 50,
}
/** Empty blocks back to back: heights as fast as the machine goes. */
const DRIVER = { timeouts: FAST, minBlockIntervalMs: 0 }
const BEHIND = 500n

function maxHeight(nodes: BusNode[]): bigint {
  let m = 0n
  for (const n of nodes) if (n.driver.height > m) m = n.driver.height
  return m
}

describe('block sync: a validator 500 heights behind catches up in process', () => {
  const bus = new DriverBus(testNetwork('sync-test', 7919n, 2))
  const nodes: BusNode[] = []

  beforeAll(async () => {
    for (let i = 0; i < 4; i++) nodes.push(await bus.start(i, { driver: DRIVER }))
  })
  afterAll(() => bus.close())

  it('by the signed gossip of later heights alone (no status answers), then joins the rounds', async () => {
    await waitFor('a few heights with all four', () => nodes.every((n) => n.driver.height >= 3n))
    const lagging = nodes[3]!
    await bus.stop(lagging)
    const stoppedAt = lagging.driver.height
    const live = bus.running()
    await waitFor(`the three ${BEHIND} heights further`, () => maxHeight(live) >= stoppedAt + BEHIND, {
      timeoutMs: 240_000,
      intervalMs: 250,
    })

    const node = await bus.start(3, { dir: lagging.dir, driver: DRIVER })
    nodes[3] = node
    expect(node.driver.height).toBe(stoppedAt)
    const bySource = { sync: 0, consensus: 0 }
    node.driver.onCommit((e) => {
      bySource[e.source]++
    })
    const t0 = performance.now()
    let sawSyncing = false
    const target = maxHeight(live)
    await waitFor(
      'the restarted validator at the network height',
      () => {
        sawSyncing ||= node.driver.syncing
        return node.driver.height >= target
      },
      { timeoutMs: 60_000, intervalMs: 20 },
    )
    const ms = performance.now() - t0
    const run = node.driver.lastSyncRun
    const r = (x: number | undefined) => Math.round(x ?? Number.NaN)
    console.log(
      `in-process catch-up: ${node.driver.height - stoppedAt} heights in ${r(ms)} ms ` +
        `(${node.driver.syncStats.requests} range requests, ${node.driver.syncStats.applied} applied; ` +
        `first block after ${r(run?.firstBlockMs)} ms; applying ${r(run?.applyMs)} ms: verify ` +
        `${r(run?.verifyMs)}, commit ${r(run?.commitMs)}, next height ${r(run?.startMs)})`,
    )
    expect(sawSyncing).toBe(true)
    expect(bySource.sync).toBeGreaterThanOrEqual(Number(BEHIND) - 10)
    expect(node.driver.syncStats.rejected).toBe(0)
    // Then it decides heights itself again, in step with the others, and says it is no longer syncing.
    await waitFor('a block the restarted validator decided itself', () => bySource.consensus >= 2, {
      timeoutMs: 30_000,
    })
    await waitFor('syncing false once in step', () => !node.driver.syncing)
    const h = node.driver.height
    const hashes = await Promise.all(bus.running().map((n) => n.driver.getBlock(h)))
    expect(new Set(hashes.map((b) => b?.hash)).size).toBe(1)
  }, 360_000)

  it('by status answers alone when it hears no gossip at all', async () => {
    const lagging = nodes[3]!
    await bus.stop(lagging)
    const stoppedAt = lagging.driver.height
    const live = bus.running()
    await waitFor('the three 40 heights further', () => maxHeight(live) >= stoppedAt + 40n, {
      timeoutMs: 60_000,
    })
    bus.deaf.add(3) // no gossip reaches it: only its status polls tell it where the network is
    try {
      const node = await bus.start(3, { dir: lagging.dir, driver: DRIVER, statusPollMs: 300 })
      nodes[3] = node
      const target = maxHeight(live)
      await waitFor('caught up by status and blocks-by-range', () => node.driver.height >= target, {
        timeoutMs: 30_000,
      })
      expect(node.driver.networkHeight).toBeGreaterThanOrEqual(target)
    } finally {
      bus.deaf.delete(3)
    }
  }, 120_000)
})
