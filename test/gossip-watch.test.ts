/**
 * The gossip stream watch (src/p2p/gossip-watch.ts): a connected peer that gossipsub lost its outbound
 * stream to gets reconnected, and gossip flows again.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Libp2p, PeerId } from '@libp2p/interface'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import { ProbeService } from '../src/node/probe.ts'
import { GossipWatch, gossipInternals } from '../src/p2p/gossip-watch.ts'
import { P2PHost } from '../src/p2p/host.ts'
import { PROBE_TOPIC, type Probe } from '../src/p2p/topics.ts'
import { Store } from '../src/state/store.ts'
import { waitFor } from './helpers/wait.ts'

const log = pino({ level: process.env['MURMUR_TEST_LOG'] ?? 'silent' })

describe('GossipWatch.check', () => {
  const peer = (id: string) => ({ toString: () => id }) as unknown as PeerId
  function fake(connected: string[]) {
    const hungUp: string[] = []
    const libp2p = {
      getPeers: () => connected.map(peer),
      hangUp: async (p: PeerId) => {
        hungUp.push(p.toString())
      },
    } as unknown as Libp2p
    return { libp2p, hungUp }
  }

  it('hangs up on a gossip peer without an outbound stream only after the grace, once', () => {
    const { libp2p, hungUp } = fake(['a', 'b', 'light'])
    const w = new GossipWatch({ intervalMs: 1000, graceMs: 5000 }, { libp2p, log })
    // a: gossip peer with a stream; b: gossip peer without one; light: connected, not a gossip peer.
    const g = {
      peers: new Map([
        ['a', peer('a')],
        ['b', peer('b')],
      ]),
      streamsOutbound: new Map([['a', {}]]),
    }
    expect(w.check(g, 0)).toEqual([])
    expect(w.check(g, 4999)).toEqual([])
    expect(w.check(g, 5000)).toEqual(['b'])
    expect(hungUp).toEqual(['b'])
    // Still connected and still without a stream (the hang-up not done yet): a new grace starts.
    expect(w.check(g, 5001)).toEqual([])
    expect(w.check(g, 9000)).toEqual([])
  })

  it('forgets a peer whose stream came back or that disconnected', () => {
    const { libp2p, hungUp } = fake(['b'])
    const w = new GossipWatch({ intervalMs: 1000, graceMs: 5000 }, { libp2p, log })
    const streams = new Map<string, unknown>()
    const g = { peers: new Map([['b', peer('b')]]), streamsOutbound: streams }
    w.check(g, 0)
    streams.set('b', {})
    w.check(g, 3000)
    streams.delete('b')
    expect(w.check(g, 6000)).toEqual([]) // missing again since 6000, not since 0
    expect(w.check(g, 10_999)).toEqual([])
    expect(w.check(g, 11_000)).toEqual(['b'])
    expect(hungUp).toEqual(['b'])
  })
})

describe('two hosts, one outbound gossip stream closed under a live connection', () => {
  const cleanup: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c()
  })

  async function host(
    name: string,
    watch: { intervalMs: number; graceMs: number },
    bootstrap: string[] = [],
  ) {
    const dir = await mkdtemp(join(tmpdir(), `murmur-gossip-watch-${name}-`))
    const store = new Store(join(dir, 'db'))
    await store.open()
    const registry = new Registry()
    const probes = new ProbeService(registry)
    const h = new P2PHost<{ probe: Probe }>(
      {
        networkId: 'gossip-watch',
        listen: ['/ip4/127.0.0.1/tcp/0'],
        meshDegree: 6,
        peerManager: { bootstrap, heartbeatMs: 200, backoffBaseMs: 100, backoffMaxMs: 500 },
        badRequestPenalty: 10,
        gossipWatch: watch,
      },
      {
        topics: { probe: PROBE_TOPIC },
        privateKey: await generateKeyPair('Ed25519'),
        store,
        log: log.child({ host: name }),
        registry,
        head: () => ({ height: 0, blockHash: `0x${'0'.repeat(64)}` }),
      },
    )
    await h.start({ probe: probes })
    cleanup.push(async () => {
      await h.stop()
      await store.close()
      await rm(dir, { recursive: true, force: true })
    })
    return { h, probes, registry }
  }

  /** A publishes probes until B has received one of them. */
  async function gossipFlows(a: P2PHost<{ probe: Probe }>, b: ProbeService, what: string, timeoutMs: number) {
    const origin = a.peerId
    await waitFor(
      what,
      async () => {
        await a.publish('probe', {
          seq: Date.now(),
          origin,
          sentAtMs: Date.now(),
          padding: new Uint8Array(8),
        })
        return b.recent(origin).length > 0
      },
      { timeoutMs, intervalMs: 250 },
    )
  }

  it('the watch reconnects and gossip from A reaches B again', async () => {
    const watch = { intervalMs: 200, graceMs: 600 }
    const b = await host('b', watch)
    const a = await host('a', watch, [b.h.libp2p.getMultiaddrs()[0]!.toString()])
    await gossipFlows(a.h, b.probes, 'a first probe from A at B', 20_000)

    const g = gossipInternals(a.h.libp2p.services['pubsub'])
    expect(g, 'gossipsub keeps peers and streamsOutbound maps (the watch reads them)').toBeDefined()
    const idB = b.h.peerId
    // A reset of the stream alone, as when the connection it ran on was a pruned duplicate.
    const stream = g!.streamsOutbound.get(idB) as { rawStream: { abort(err: Error): void } }
    expect(stream).toBeDefined()
    stream.rawStream.abort(new Error('reset by the test'))
    await waitFor('A to drop the closed stream', () => !g!.streamsOutbound.has(idB))
    expect(a.h.libp2p.getPeers().map(String)).toContain(idB) // still connected
    const seen = b.probes.recent(a.h.peerId).length

    await waitFor('A to have an outbound stream to B again', () => g!.streamsOutbound.has(idB), {
      timeoutMs: 20_000,
    })
    await waitFor(
      'a new probe from A at B',
      async () => {
        await a.h.publish('probe', {
          seq: Date.now(),
          origin: a.h.peerId,
          sentAtMs: Date.now(),
          padding: new Uint8Array(8),
        })
        return b.probes.recent(a.h.peerId).length > seen
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    )
    expect(await a.registry.getSingleMetricAsString('murmur_p2p_gossip_repairs_total')).toMatch(/ 1$/m)
  }, 60_000)
})
