// One process of the gossip benchmark. Modes:
//   murmur      - our P2PHost: no-sign gossipsub, content ids, topic table, codec, validation adapter
//   bare-nosign - libp2p + gossipsub with the same transports and StrictNoSign, raw bytes, nothing of ours
//   bare-sign   - the same with gossipsub's default message signing
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { type GossipSub, gossipsub, StrictNoSign, StrictSign } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { TOPICS } from '../src/node/topics.ts'
import { P2PHost } from '../src/p2p/host.ts'
import { probeCodec, topicString } from '../src/p2p/topics.ts'
import { ACCEPT, ignore } from '../src/p2p/validation.ts'
import { Store } from '../src/state/store.ts'

type Mode = 'murmur' | 'bare-nosign' | 'bare-sign'
const mode = process.argv[2] as Mode
const index = Number(process.argv[3])
const networkId = 'bench'
const now = () => performance.timeOrigin + performance.now()

// Received: flattened [origin, seq, latency in microseconds].
const received: number[] = []
const record = (origin: number, seq: number, sentAt: number) => {
  received.push(origin, seq, Math.round((now() - sentAt) * 1000))
}

let publish: (seq: number, size: number) => Promise<void>
let pubsub: GossipSub
let topic: string
let stop: () => Promise<void>
let libp2p: Libp2p

if (mode === 'murmur') {
  const dir = await mkdtemp(join(tmpdir(), 'murmur-bench-'))
  const store = new Store(join(dir, 'db'))
  await store.open()
  const { generateKeyPair } = await import('@libp2p/crypto/keys')
  const host = new P2PHost(
    { networkId, peerManager: { targetPeers: 0 } },
    {
      topics: TOPICS,
      privateKey: await generateKeyPair('Ed25519'),
      store,
      log: pino({ level: 'warn' }),
      registry: new Registry(),
      head: () => ({ height: 0, blockHash: '0x' }),
    },
  )
  await host.start({
    probe: {
      validate: (m) => (now() - m.sentAtMs > 60_000 ? ignore('STALE') : ACCEPT),
      onMessage: (m) => record(Number(m.origin), m.seq, m.sentAtMs),
    },
    intents: { validate: () => ignore('UNUSED') },
    health: { validate: () => ignore('UNUSED') },
    fills: { validate: () => ignore('UNUSED') },
    consensus: { validate: () => ignore('UNUSED') },
    stake: { validate: () => ignore('UNUSED') },
  })
  libp2p = host.libp2p as unknown as Libp2p
  pubsub = host.libp2p.services.pubsub
  topic = topicString(networkId, 'probe')
  // Padding chosen so the encoded probe is the requested size.
  const overhead =
    probeCodec.encode({ seq: 1e9, origin: String(index), sentAtMs: now(), padding: new Uint8Array(256) })
      .length - 256
  publish = async (seq, size) => {
    await host.publish('probe', {
      seq,
      origin: String(index),
      sentAtMs: now(),
      padding: new Uint8Array(Math.max(0, size - overhead)),
    })
  }
  stop = async () => {
    await host.stop()
    await store.close()
    await rm(dir, { recursive: true, force: true })
  }
} else {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({
        globalSignaturePolicy: mode === 'bare-sign' ? StrictSign : StrictNoSign,
        allowPublishToZeroTopicPeers: true,
        ...(mode === 'bare-nosign'
          ? {
              msgIdFn: async (m) =>
                new Uint8Array(await crypto.subtle.digest('SHA-256', m.data)).subarray(0, 20),
            }
          : {}),
      }),
    },
  })
  libp2p = node as unknown as Libp2p
  pubsub = node.services.pubsub
  topic = 'bench'
  pubsub.subscribe(topic)
  pubsub.addEventListener('message', (evt) => {
    const d = evt.detail.data
    const v = new DataView(d.buffer, d.byteOffset, d.byteLength)
    record(v.getUint32(0), v.getUint32(4), v.getFloat64(8))
  })
  publish = async (seq, size) => {
    const buf = new Uint8Array(Math.max(16, size))
    const v = new DataView(buf.buffer)
    v.setUint32(0, index)
    v.setUint32(4, seq)
    v.setFloat64(8, now())
    await pubsub.publish(topic, buf)
  }
  stop = async () => node.stop()
}

const send = (m: unknown) => process.send!(m)
let running: Promise<void> | undefined

process.on('message', async (msg: { type: string; [k: string]: unknown }) => {
  if (msg.type === 'connect') {
    for (const a of msg['addrs'] as string[]) await libp2p.dial(multiaddr(a)).catch(() => {})
    const want = Number(msg['peers'])
    const deadline = Date.now() + 30_000
    while (Date.now() < deadline) {
      const subs = pubsub.getSubscribers(topic).length
      const mesh = (pubsub as unknown as { getMeshPeers(t: string): string[] }).getMeshPeers(topic).length
      if (subs >= want && mesh >= Math.min(want, 4)) break
      await new Promise((r) => setTimeout(r, 50))
    }
    send({ type: 'meshReady' })
  } else if (msg.type === 'run') {
    // Open-loop publishing at a fixed rate (token bucket on a 5 ms tick), seq offset by phase.
    const rate = Number(msg['rate'])
    const durationMs = Number(msg['durationMs'])
    const size = Number(msg['size'])
    const base = Number(msg['phase']) * 1_000_000
    running = (async () => {
      const start = now()
      let sent = 0
      let inFlight = 0
      while (now() - start < durationMs) {
        const due = Math.floor(((now() - start) / 1000) * rate)
        // Open loop: do not wait for a publish before the next; cap what is outstanding.
        while (sent < due && inFlight < 20_000) {
          inFlight++
          publish(base + ++sent, size)
            .catch(() => {})
            .finally(() => inFlight--)
        }
        await new Promise((r) => setTimeout(r, 5))
      }
      send({ type: 'done', sent })
    })()
  } else if (msg.type === 'report') {
    send({ type: 'report', received: received.splice(0) })
  } else if (msg.type === 'exit') {
    await running
    await stop()
    process.exit(0)
  }
})

// The driver owns us: if it goes away, so do we.
process.on('disconnect', () => process.exit(0))

send({ type: 'ready', addr: libp2p.getMultiaddrs()[0]!.toString() })
