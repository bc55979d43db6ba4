import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { type GossipSub, gossipsub, StrictNoSign } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { Libp2p } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { protocolString, topicString } from '../../src/p2p/topics.ts'
import { Cluster } from '../helpers/cluster.ts'
import { getJson, waitFor } from '../helpers/wait.ts'

// A hostile peer, in this test process, against a real node process.
describe('garbage from a peer', () => {
  let c: Cluster
  let evil: Libp2p<{ pubsub: GossipSub }>
  let target: string

  const hostile = () =>
    createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: {
        identify: identify(),
        pubsub: gossipsub({ globalSignaturePolicy: StrictNoSign, allowPublishToZeroTopicPeers: true }),
      },
    })

  beforeAll(async () => {
    c = await Cluster.create(1)
    await c.start(0)
    target = c.node(0).peerId
    evil = await hostile()
    await evil.dial(multiaddr(c.node(0).listen[0]!))
  }, 60_000)
  afterAll(async () => {
    await evil?.stop()
    await c?.close()
  })

  const scoreOf = async (peer: Libp2p) => {
    const peers = await getJson<Array<{ peerId: string; score: number }>>(`${c.node(0).api}/v1/peers`)
    return peers.find((p) => p.peerId === peer.peerId.toString())?.score
  }
  const myScore = () => scoreOf(evil)

  it('undecodable gossip is rejected, the node survives, and the sender score drops', async () => {
    const topic = topicString(c.net.genesis.networkId, 'probe')
    evil.services.pubsub.subscribe(topic)
    await waitFor('node to see our subscription', () =>
      evil.services.pubsub.getSubscribers(topic).some((p) => p.toString() === target),
    )
    expect(await myScore()).toBeGreaterThanOrEqual(0)
    for (let i = 0; i < 5; i++) {
      await evil.services.pubsub.publish(topic, new Uint8Array([1, 0xff, 0xfe, i, 0x00, 0x13]))
    }
    await waitFor('the sender score to go negative', async () => ((await myScore()) ?? 0) < 0)
    const metrics = await (await fetch(`${c.node(0).api}/metrics`)).text()
    expect(metrics).toMatch(
      /murmur_p2p_gossip_validation_total\{topic="probe",result="reject",code="DECODE"\} [1-9]/,
    )
    // The node is still running and answering.
    expect(c.node(0).child.exitCode).toBeNull()
    expect((await c.status(0)).peerId).toBe(target)
  })

  it('garbage on a request/response stream never crashes the node and lowers the score', async () => {
    // A peer of its own: the one above is graylisted by now, and a graylisted peer's streams are
    // refused before a byte is read (then banned), so its garbage would cost it nothing more.
    const junkPeer = await hostile()
    onTestFinished(() => junkPeer.stop())
    await junkPeer.dial(multiaddr(c.node(0).listen[0]!))
    const before = (await scoreOf(junkPeer)) ?? 0
    const proto = protocolString(c.net.genesis.networkId, 'status')
    for (const junk of [new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]), new Uint8Array([5, 9, 9, 9, 9, 9])]) {
      const stream = await junkPeer.dialProtocol(multiaddr(c.node(0).listen[0]!), proto)
      stream.send(junk)
      await stream.close().catch(() => {})
      // The node answers with an error frame or resets; either way it must not die.
      await lpStream(stream)
        .read({ signal: AbortSignal.timeout(5_000) })
        .catch(() => undefined)
    }
    await waitFor('the score to drop', async () => ((await scoreOf(junkPeer)) ?? 0) < before)
    // Still alive and serving.
    const status = await getJson<{ peerId: string }>(`${c.node(0).api}/v1/status`)
    expect(status.peerId).toBe(target)
    expect(c.node(0).child.exitCode).toBeNull()
  })

  it('a ban is followed by one heap compaction, quietMs after the last ban (src/node/reclaim.ts)', async () => {
    const api = c.node(0).api
    const bans = () => getJson<Array<{ peerId: string; sinceMs: number }>>(`${api}/v1/peers/bans`)
    const compactions = async () =>
      Number(
        /^murmur_memory_compactions_total (\d+)/m.exec(await (await fetch(`${api}/metrics`)).text())?.[1],
      )
    // The graylisted peers of the tests above are banned within about a second of their score's fall.
    await waitFor('a hostile peer banned', async () => (await bans()).length > 0, { timeoutMs: 30_000 })
    let seenAt = 0
    await waitFor(
      'the node to compact its heap after the bans',
      async () => {
        const n = await compactions()
        // Taken after the answer: the compaction happened before it.
        seenAt = Date.now()
        return n >= 1
      },
      { timeoutMs: 45_000 },
    )
    // Not before 15 s (DEFAULT_RECLAIM_OPTIONS.quietMs) without a ban.
    const before = (await bans()).filter((b) => b.sinceMs <= seenAt).map((b) => b.sinceMs)
    expect(before.length).toBeGreaterThan(0)
    expect(seenAt - Math.max(...before)).toBeGreaterThanOrEqual(15_000)
  }, 90_000)
})
