import type { TopicScoreParams } from '@libp2p/gossipsub/score'
import { type Codec, cborCodec, shape } from '../codec/cbor.ts'
import type { SignedIntent } from '../codec/intent.ts'
import { type ConsensusMessage, consensusMessageCodec } from '../consensus/messages.ts'
import { intentBatchCodec } from '../mempool/wire.ts'
import { fillBatchCodec, type SignedFill } from '../rollups/fill.ts'
import { healthReportCodec, type SignedHealthReport } from '../rollups/health-report.ts'
import type { SignedStakeMove } from '../staking/moves.ts'
import { stakeMoveCodec } from '../staking/wire.ts'

/**
 * The one table of gossip topics: name -> payload type -> codec -> queue bounds -> score.
 * Validators are supplied by the node (they need its state) through `TopicHandlers`, a mapped
 * type over this table, so a topic added here does not compile until it has a validator.
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

/** Payload type of each topic. */
export interface TopicPayloads {
  probe: Probe
  /** Signed ERC-7683 intents, one or many per message. */
  intents: SignedIntent[]
  /** A validator's signed measurement of one rollup. */
  health: SignedHealthReport
  /** Executors' signed claims that they filled intents, one or many per message (each validator checks
   * the receipts). */
  fills: SignedFill[]
  /** Tendermint: a signed proposal with its block, or a signed prevote / precommit. */
  consensus: ConsensusMessage
  /** One elastic stake move signed by its staker (a validator), waiting for a block. */
  stake: SignedStakeMove
}

export type TopicName = keyof TopicPayloads

/** Bounded queue in front of a topic's validator. */
export interface QueueOptions {
  /** Messages waiting for validation beyond this are IGNOREd with code QUEUE_FULL. */
  maxLength: number
  /** Validations of this topic running at once. */
  concurrency: number
}

export interface TopicSpec<T> {
  readonly name: TopicName
  readonly codec: Codec<T>
  readonly queue: QueueOptions
  /** Gossipsub v1.1 per-topic score parameters (merged over gossipsub's defaults). */
  readonly score: Partial<TopicScoreParams>
}

/**
 * Score defaults for our topics: REJECTed messages (P4) weigh heavily; mesh delivery
 * rate penalties (P3) are off because traffic is bursty and a quiet topic is not a fault.
 */
const BASE_SCORE: Partial<TopicScoreParams> = {
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

export const TOPICS: { readonly [K in TopicName]: TopicSpec<TopicPayloads[K]> } = {
  probe: { name: 'probe', codec: probeCodec, queue: { maxLength: 4096, concurrency: 64 }, score: BASE_SCORE },
  intents: {
    name: 'intents',
    codec: intentBatchCodec,
    queue: { maxLength: 1024, concurrency: 16 },
    score: BASE_SCORE,
  },
  health: {
    name: 'health',
    codec: healthReportCodec,
    queue: { maxLength: 1024, concurrency: 16 },
    score: BASE_SCORE,
  },
  fills: {
    name: 'fills',
    codec: fillBatchCodec,
    queue: { maxLength: 1024, concurrency: 16 },
    score: BASE_SCORE,
  },
  consensus: {
    name: 'consensus',
    codec: consensusMessageCodec,
    queue: { maxLength: 4096, concurrency: 32 },
    score: BASE_SCORE,
  },
  stake: {
    name: 'stake',
    codec: stakeMoveCodec,
    queue: { maxLength: 256, concurrency: 8 },
    score: BASE_SCORE,
  },
}

export const TOPIC_VERSION = 1

/** `/murmur/<networkId>/<name>/1` */
export function topicString(networkId: string, name: TopicName): string {
  return `/murmur/${networkId}/${name}/${TOPIC_VERSION}`
}

/** Inverse of `topicString`; undefined for anything that is not one of our topics. */
export function parseTopic(topic: string): { networkId: string; name: TopicName } | undefined {
  const m = /^\/murmur\/([a-z0-9][a-z0-9-]{0,62})\/([a-z-]+)\/(\d+)$/.exec(topic)
  if (m === null || Number(m[3]) !== TOPIC_VERSION || !Object.hasOwn(TOPICS, m[2]!)) return undefined
  return { networkId: m[1]!, name: m[2] as TopicName }
}

/** Request/response protocol ids share the topic scheme: `/murmur/<networkId>/<name>/1`. */
export function protocolString(networkId: string, name: string): string {
  return `/murmur/${networkId}/${name}/1`
}
