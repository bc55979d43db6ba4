import type { TopicScoreParams } from '@libp2p/gossipsub/score'
import { type Codec, cborCodec, shape } from '../codec/cbor.ts'

/**
 * What the network layer knows of gossip topics: the shape of a topic table (name -> payload type ->
 * codec -> queue bounds -> score), default scores, the topic string scheme, and its own diagnostics
 * topic. The node's table of topics is assembled by the composition root (src/node/topics.ts) and
 * handed to P2PHost: the network carries bytes and knows no domain (STYLE.md, "Layers").
 *
 * Topic strings are `/murmur/<networkId>/<name>/1`, built and parsed only by `topicString`
 * and `parseTopic` below.
 */

/** Diagnostics message: used by `murmur` operators and the gossip benchmark to probe the mesh. */
export interface Probe {
  /** Publisher's sequence number. */
  seq: number
  /** Publisher's peer id, so receivers can attribute delivery latency. */
  origin: string
  /** Publisher's wall clock at publish, milliseconds with sub-ms precision (performance.timeOrigin + now). */
  sentAtMs: number
  /** Filler to reach the message size under test. */
  padding: Uint8Array
}

const PROBE_MAX_BYTES = 64 * 1024

export const probeCodec: Codec<Probe> = cborCodec<Probe>({
  version: 1,
  maxBytes: PROBE_MAX_BYTES,
  check(v) {
    const o = shape.object(v, 'probe')
    return {
      seq: shape.int(o['seq'], 'probe.seq'),
      origin: shape.string(o['origin'], 'probe.origin', 128),
      sentAtMs: (() => {
        const t = o['sentAtMs']
        if (typeof t !== 'number' || !Number.isFinite(t) || t < 0)
          throw new Error('probe.sentAtMs: expected a time')
        return t
      })(),
      padding: shape.bytes(o['padding'], 'probe.padding', PROBE_MAX_BYTES),
    }
  },
})

/** Bounded queue in front of a topic's validator. */
export interface QueueOptions {
  /** Messages waiting for validation beyond this are IGNOREd with code QUEUE_FULL. */
  maxLength: number
  /** Validations of this topic running at once. */
  concurrency: number
}

/** One row of a topic table: the topic `name` carries payloads of type T. */
export interface TopicSpec<T, N extends string = string> {
  readonly name: N
  readonly codec: Codec<T>
  readonly queue: QueueOptions
  /** Gossipsub v1.1 per-topic score parameters (merged over gossipsub's defaults). */
  readonly score: Partial<TopicScoreParams>
}

/**
 * A table of gossip topics for the payload map P (topic name -> payload type): one complete row per
 * topic, so a topic added to P does not compile until its codec, queue and score are given (and, through
 * `TopicHandlers<P>` in host.ts, its validator).
 */
export type TopicTable<P> = { readonly [K in keyof P & string]: TopicSpec<P[K], K> }

/**
 * Score defaults for our topics: REJECTed messages (P4) weigh heavily; mesh delivery
 * rate penalties (P3) are off because traffic is bursty and a quiet topic is not a fault.
 */
export const DEFAULT_TOPIC_SCORE: Partial<TopicScoreParams> = {
  topicWeight: 1,
  timeInMeshWeight: 0.01,
  timeInMeshQuantum: 1000,
  timeInMeshCap: 300,
  firstMessageDeliveriesWeight: 0.5,
  firstMessageDeliveriesDecay: 0.9,
  firstMessageDeliveriesCap: 20,
  meshMessageDeliveriesWeight: 0,
  meshFailurePenaltyWeight: 0,
  invalidMessageDeliveriesWeight: -20,
  invalidMessageDeliveriesDecay: 0.99,
}

/** The network's own diagnostics topic (docs/decisions.md, "`probe` topic"), a row of every table. */
export const PROBE_TOPIC: TopicSpec<Probe, 'probe'> = {
  name: 'probe',
  codec: probeCodec,
  queue: { maxLength: 4096, concurrency: 64 },
  score: DEFAULT_TOPIC_SCORE,
}

export const TOPIC_VERSION = 1

/** `/murmur/<networkId>/<name>/1` */
export function topicString(networkId: string, name: string): string {
  return `/murmur/${networkId}/${name}/${TOPIC_VERSION}`
}

/** Inverse of `topicString`; undefined for anything that is not one of the topics of `table`. */
export function parseTopic<P>(
  topic: string,
  table: TopicTable<P>,
): { networkId: string; name: keyof P & string } | undefined {
  const m = /^\/murmur\/([a-z0-9][a-z0-9-]{0,62})\/([a-z-]+)\/(\d+)$/.exec(topic)
  if (m === null || Number(m[3]) !== TOPIC_VERSION || !Object.hasOwn(table, m[2]!)) return undefined
  return { networkId: m[1]!, name: m[2] as keyof P & string }
}

/** Request/response protocol ids share the topic scheme: `/murmur/<networkId>/<name>/1`. */
export function protocolString(networkId: string, name: string): string {
  return `/murmur/${networkId}/${name}/1`
}
