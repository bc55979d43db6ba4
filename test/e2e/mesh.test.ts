import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Cluster } from '../helpers/cluster.ts'
import { waitFor } from '../helpers/wait.ts'

// Five `murmur node start` processes over TCP on 127.0.0.1.
describe('five node processes', () => {
  let c: Cluster
  beforeAll(async () => {
    c = await Cluster.create(5)
    const boot = await c.start(0)
    // Everyone else knows only node 0; they find each other by peer exchange.
    await Promise.all([1, 2, 3, 4].map((i) => c.start(i, { bootstrap: [boot.listen[0]!] })))
  }, 60_000)
  afterAll(async () => c?.close())

  it('form a full mesh from one bootstrap node', async () => {
    await c.waitConnected([0, 1, 2, 3, 4], 4)
  })

  it('deliver a message published on one node to all the others', async () => {
    await c.waitConnected([0, 1, 2, 3, 4], 4)
    const p = await c.probe(2)
    for (const i of [0, 1, 3, 4]) {
      await waitFor(`node ${i} to receive probe ${p.seq}`, () => c.received(i, p), { timeoutMs: 10_000 })
    }
    // The publisher does not deliver to itself.
    expect(await c.received(2, p)).toBe(false)
  })

  it('a restarted node rejoins from its peer book while every bootstrap node is down', async () => {
    await c.waitConnected([0, 1, 2, 3, 4], 4)
    const bootAddr = c.node(0).listen[0]!
    await c.stop(3)
    await c.stop(0)
    // Node 3 is told only about the dead bootstrap node.
    await c.start(3, { bootstrap: [bootAddr] })
    await c.waitConnected([3], 3)
    const peers = new Set((await c.peers(3)).map((p) => p.peerId))
    for (const i of [1, 2, 4]) expect(peers.has(c.net.nodes[i]!.peerId)).toBe(true)
    const p = await c.probe(3)
    for (const i of [1, 2, 4]) {
      await waitFor(`node ${i} to receive probe from restarted node`, () => c.received(i, p), {
        timeoutMs: 10_000,
      })
    }
  })
})
