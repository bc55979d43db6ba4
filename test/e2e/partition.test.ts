import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Cluster } from '../helpers/cluster.ts'
import { waitFor } from '../helpers/wait.ts'

describe('admin partition endpoint', () => {
  let c: Cluster
  beforeAll(async () => {
    c = await Cluster.create(3)
    const boot = await c.start(0)
    await Promise.all([1, 2].map((i) => c.start(i, { bootstrap: [boot.listen[0]!] })))
    await c.waitConnected([0, 1, 2], 2)
  }, 60_000)
  afterAll(async () => c?.close())

  it('a node cut off stops receiving and, once healed, receives again', async () => {
    const [a, b, cc] = c.net.nodes.map((n) => n.peerId) as [string, string, string]
    // Cut node 2 off from 0 and 1, on both sides as the devnet does.
    await c.partition(2, [a, b])
    await c.partition(0, [cc])
    await c.partition(1, [cc])
    await waitFor('node 2 to lose its peers', async () => (await c.status(2)).peers === 0)

    const p1 = await c.probe(0)
    await waitFor('node 1 to receive the probe', () => c.received(1, p1))
    // Node 2 has no connection left, so nothing can reach it; and none comes back while denied.
    expect(await c.received(2, p1)).toBe(false)
    expect((await c.status(2)).peers).toBe(0)

    await c.partition(0, [])
    await c.partition(1, [])
    await c.partition(2, [])
    await c.waitConnected([2], 2)
    // Traffic keeps flowing, as on a live network: node 0 publishes a probe every 500 ms until node 2
    // has one of them (right after a heal the gossip mesh and subscriptions are still re-forming).
    const sent: Array<{ origin: string; seq: number }> = []
    await waitFor(
      'node 2 to receive after heal',
      async () => {
        sent.push(await c.probe(0))
        for (const p of sent) if (await c.received(2, p)) return true
        return false
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    )
  })

  it('refuses a malformed partition body with a coded error', async () => {
    const res = await fetch(`${c.node(0).api}/admin/v1/partition`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ deny: 'everyone' }),
    })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('MALFORMED')
  })
})
