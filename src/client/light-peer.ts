import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { type GossipSub, gossipsub, StrictNoSign } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import type { Hex } from 'viem'
import { intentId, type SignedIntent } from '../codec/intent.ts'
import { intentBatchCodec } from '../mempool/wire.ts'
import { messageId } from '../p2p/host.ts'
import { topicString } from '../p2p/topics.ts'

/**
 * A wallet as a light libp2p peer: it dials one or more nodes, joins the `intents` topic and
 * publishes signed intents itself, without any HTTP API. Same transports, encryption, muxer and
 * gossipsub settings (no-sign mode, content-addressed ids) as a node.
 */
export class LightPeer {
  readonly libp2p: Libp2p<{ pubsub: GossipSub }>
  readonly topic: string

  private constructor(libp2p: Libp2p<{ pubsub: GossipSub }>, topic: string) {
    this.libp2p = libp2p
    this.topic = topic
  }

  /** Starts a peer, dials `nodes` (multiaddrs with /p2p/<id>), and waits until one of them hears us. */
  static async connect(opts: { networkId: string; nodes: string[]; timeoutMs?: number }): Promise<LightPeer> {
    const libp2p = await createLibp2p({
      addresses: { listen: [] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: {
        identify: identify(),
        pubsub: gossipsub({
          globalSignaturePolicy: StrictNoSign,
          msgIdFn: messageId,
          allowPublishToZeroTopicPeers: false,
        }),
      },
    })
    const topic = topicString(opts.networkId, 'intents')
    const peer = new LightPeer(libp2p, topic)
    try {
      libp2p.services.pubsub.subscribe(topic)
      await Promise.any(opts.nodes.map((a) => libp2p.dial(multiaddr(a))))
      const deadline = Date.now() + (opts.timeoutMs ?? 10_000)
      while (libp2p.services.pubsub.getSubscribers(topic).length === 0) {
        if (Date.now() > deadline) throw new Error('no node subscribed to the intents topic answered')
        await new Promise((r) => setTimeout(r, 50))
      }
      return peer
    } catch (err) {
      await libp2p.stop()
      throw err
    }
  }

  /** Publishes signed intents in one gossip message; returns their ids. */
  async publish(intents: SignedIntent[]): Promise<Hex[]> {
    await this.libp2p.services.pubsub.publish(this.topic, intentBatchCodec.encode(intents))
    return intents.map((i) => intentId(i.order))
  }

  async stop(): Promise<void> {
    await this.libp2p.stop()
  }
}
