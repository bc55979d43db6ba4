import { join } from 'node:path'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LightPeer } from '../../src/client/light-peer.ts'
import { IntentPool } from '../../src/mempool/pool.ts'
import { Store } from '../../src/state/store.ts'
import { Cluster } from '../helpers/cluster.ts'
import { makeIntent, wallet } from '../helpers/intents.ts'
import { postJson, waitFor } from '../helpers/wait.ts'

const ALL = [0, 1, 2, 3, 4]

// Five `murmur node start` processes over TCP on 127.0.0.1.
describe('mempool across five node processes', () => {
  let c: Cluster
  const state = async (i: number, id: string) => {
    const res = await fetch(`${c.node(i).api}/v1/intents/${id}`)
    return res.status === 200 ? ((await res.json()) as { state: string }).state : res.status
  }
  const pendingEverywhere = async (id: string, nodes = ALL) => {
    for (const i of nodes)
      await waitFor(`intent pending on node ${i}`, async () => (await state(i, id)) === 'pending')
  }

  beforeAll(async () => {
    c = await Cluster.create(5)
    const boot = await c.start(0)
    await Promise.all([1, 2, 3, 4].map((i) => c.start(i, { bootstrap: [boot.listen[0]!] })))
    await c.waitConnected(ALL, 4)
  }, 90_000)
  afterAll(async () => c?.close())

  it('an intent submitted to one node is pending on all five', async () => {
    const { id, body } = await makeIntent(wallet())
    const r = await postJson<{ id: string }>(`${c.node(0).api}/v1/intents`, body)
    expect(r.status).toBe(202)
    expect(r.body.id).toBe(id)
    await pendingEverywhere(id)
    // Idempotent: the same intent again, on any node, is 200 with the same id.
    const again = await postJson<{ id: string }>(`${c.node(3).api}/v1/intents`, body)
    expect(again).toEqual({ status: 200, body: { id } })
  })

  it('what a node acknowledged survives kill -9', async () => {
    const { id, body } = await makeIntent(wallet())
    const r = await postJson(`${c.node(1).api}/v1/intents`, body)
    expect(r.status).toBe(202)
    await c.node(1).kill9()
    // Read the dead node's own database: the intent is there, whatever its peers know.
    const store = new Store(join(c.net.nodes[1]!.dataDir, 'db'))
    await store.open()
    try {
      const pool = await IntentPool.open(
        store,
        {},
        { log: pino({ level: 'silent' }), registry: new Registry() },
      )
      expect(pool.has(id)).toBe(true)
      expect((await pool.get(id))?.state).toBe('pending')
    } finally {
      await store.close()
    }
    c.procs[1] = undefined
    await c.start(1, { bootstrap: [c.node(0).listen[0]!] })
    expect(await state(1, id)).toBe('pending')
    await c.waitConnected([1], 4)
  })

  it('what a node acknowledged alone and then died with reaches every peer once it is back', async () => {
    const ids = c.net.nodes.map((n) => n.peerId)
    const others = [0, 2, 3, 4]
    await c.partition(
      1,
      others.map((j) => ids[j]!),
    )
    await Promise.all(others.map((i) => c.partition(i, [ids[1]!])))
    await waitFor('node 1 alone', async () => (await c.status(1)).peers === 0)
    const { id, body } = await makeIntent(wallet())
    expect((await postJson(`${c.node(1).api}/v1/intents`, body)).status).toBe(202)
    await c.node(1).kill9()
    c.procs[1] = undefined
    await Promise.all(others.map((i) => c.partition(i, [])))
    for (const i of others) expect(await state(i, id)).toBe(404)
    // Gossip never re-sends it: the peers pull it from node 1's pool when it connects again, not in the
    // periodic turn (15 s a peer).
    await c.start(1, { bootstrap: [c.node(0).listen[0]!] })
    for (const i of others)
      await waitFor(`intent pending on node ${i}`, async () => (await state(i, id)) === 'pending', {
        timeoutMs: 10_000,
      })
    await c.waitConnected([1], 4)
  })

  it('a replay of (user, nonce) with different content is refused everywhere', async () => {
    const w = wallet()
    const first = await makeIntent(w, { nonce: 777n })
    expect((await postJson(`${c.node(2).api}/v1/intents`, first.body)).status).toBe(202)
    await pendingEverywhere(first.id)
    const replay = await makeIntent(w, { nonce: 777n, outputAmount: 1n })
    expect(replay.id).not.toBe(first.id)
    for (const i of ALL) {
      const r = await postJson<{ error: { code: string } }>(`${c.node(i).api}/v1/intents`, replay.body)
      expect(r.status).toBe(400)
      expect(r.body.error.code).toBe('NONCE_USED')
    }
    // Straight onto the gossip topic: no node takes it either.
    const light = await LightPeer.connect({
      networkId: c.net.genesis.networkId,
      nodes: [c.node(4).listen[0]!],
    })
    try {
      await light.publish([replay.intent])
      const marker = await makeIntent(wallet())
      await light.publish([marker.intent])
      // Once a later message from the same peer is everywhere, the replay had its chance.
      await pendingEverywhere(marker.id)
      for (const i of ALL) expect(await state(i, replay.id)).toBe(404)
    } finally {
      await light.stop()
    }
  })

  it('a wallet as a light libp2p peer publishes on the topic itself', async () => {
    const light = await LightPeer.connect({
      networkId: c.net.genesis.networkId,
      nodes: [c.node(2).listen[0]!],
    })
    try {
      const a = await makeIntent(wallet())
      const b = await makeIntent(wallet())
      const ids = await light.publish([a.intent, b.intent])
      expect(ids).toEqual([a.id, b.id])
      await pendingEverywhere(a.id)
      await pendingEverywhere(b.id)
    } finally {
      await light.stop()
    }
  })

  it('a REJECTed intents message lowers the sender score', async () => {
    const light = await LightPeer.connect({
      networkId: c.net.genesis.networkId,
      nodes: [c.node(0).listen[0]!],
    })
    try {
      const me = light.libp2p.peerId.toString()
      const score = async () => (await c.peers(0)).find((p) => p.peerId === me)?.score ?? 0
      const forged = await makeIntent(wallet())
      // A signature by someone else: BAD_SIGNATURE, provably wrong, REJECT.
      const other = await makeIntent(wallet(), { nonce: forged.order.nonce })
      await light.publish([{ order: forged.order, signature: other.intent.signature }])
      await waitFor('score to drop', async () => (await score()) < 0)
      expect(await state(0, forged.id)).toBe(404)
      const metrics = await (await fetch(`${c.node(0).api}/metrics`)).text()
      expect(metrics).toMatch(
        /murmur_p2p_gossip_validation_total\{topic="intents",result="reject",code="BAD_SIGNATURE"\} [1-9]/,
      )
    } finally {
      await light.stop()
    }
  })

  it('after a 2|3 partition heals, every node holds the union', async () => {
    const left = [0, 1]
    const right = [2, 3, 4]
    const ids = c.net.nodes.map((n) => n.peerId)
    await Promise.all(
      left.map((i) =>
        c.partition(
          i,
          right.map((j) => ids[j]!),
        ),
      ),
    )
    await Promise.all(
      right.map((i) =>
        c.partition(
          i,
          left.map((j) => ids[j]!),
        ),
      ),
    )
    await waitFor(
      'sides to disconnect',
      async () => (await c.status(0)).peers === 1 && (await c.status(2)).peers === 2,
    )

    const l = await makeIntent(wallet())
    const r = await makeIntent(wallet())
    expect((await postJson(`${c.node(0).api}/v1/intents`, l.body)).status).toBe(202)
    expect((await postJson(`${c.node(3).api}/v1/intents`, r.body)).status).toBe(202)
    await pendingEverywhere(l.id, left)
    await pendingEverywhere(r.id, right)
    for (const i of left) expect(await state(i, r.id)).toBe(404)
    for (const i of right) expect(await state(i, l.id)).toBe(404)

    await Promise.all(ALL.map((i) => c.partition(i, [])))
    await pendingEverywhere(l.id)
    await pendingEverywhere(r.id)
  })
})
