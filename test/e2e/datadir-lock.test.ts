import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawnNode } from '../../devnet/process.ts'
import { Cluster } from '../helpers/cluster.ts'
import { waitFor } from '../helpers/wait.ts'

describe('two nodes on one data dir', () => {
  let c: Cluster
  beforeAll(async () => {
    c = await Cluster.create(2)
    await c.start(0)
    await c.start(1, { bootstrap: [c.node(0).listen[0]!] })
    await c.waitConnected([0, 1], 1)
  }, 60_000)
  afterAll(async () => c?.close())

  it('the second fails with a clear error and the first is unharmed', async () => {
    const n = c.net.nodes[0]!
    await expect(spawnNode({ dataDir: n.dataDir, genesisPath: c.net.genesisPath })).rejects.toThrow(
      /DATA_DIR_LOCKED: data dir .* is in use by another murmur node \(pid \d+\)/,
    )
    // The first still serves, is still connected, and still gossips.
    expect((await c.status(0)).peers).toBe(1)
    const p = await c.probe(0)
    await waitFor('node 1 to receive', () => c.received(1, p))
    expect(c.node(0).child.exitCode).toBeNull()
  })
})
