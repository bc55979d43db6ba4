/**
 * The node's one table of gossip topics: name -> payload type -> codec -> queue bounds -> score. It is
 * assembled here, in the composition root, because it names every domain's wire type; the network layer
 * (p2p/) only knows the shape of such a table. Validators are supplied by the node (they need its state)
 * through `TopicHandlers<TopicPayloads>`, so a topic added here does not compile until it has one.
 */
import type { SignedIntent } from '../codec/intent.ts'
import { type ConsensusMessage, consensusMessageCodec } from '../consensus/messages.ts'
import { intentBatchCodec } from '../mempool/wire.ts'
import { DEFAULT_TOPIC_SCORE, PROBE_TOPIC, type Probe, type TopicTable } from '../p2p/topics.ts'
import { fillBatchCodec, type SignedFill } from '../rollups/fill.ts'
import { healthReportCodec, type SignedHealthReport } from '../rollups/health-report.ts'
import { type StakeMessage, stakeMoveCodec } from '../staking/wire.ts'

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
  /** One elastic stake move signed by its staker, or one Unjail signed by its validator, waiting for a block. */
  stake: StakeMessage
}

export type TopicName = keyof TopicPayloads

/** Every topic of the node. */
export const TOPICS: TopicTable<TopicPayloads> = {
  probe: PROBE_TOPIC,
  intents: {
    name: 'intents',
    codec: intentBatchCodec,
    queue: { maxLength: 1024, concurrency: 16 },
    score: DEFAULT_TOPIC_SCORE,
  },
  health: {
    name: 'health',
    codec: healthReportCodec,
    queue: { maxLength: 1024, concurrency: 16 },
    score: DEFAULT_TOPIC_SCORE,
  },
  fills: {
    name: 'fills',
    codec: fillBatchCodec,
    queue: { maxLength: 1024, concurrency: 16 },
    score: DEFAULT_TOPIC_SCORE,
  },
  consensus: {
    name: 'consensus',
    codec: consensusMessageCodec,
    queue: { maxLength: 4096, concurrency: 32 },
    score: DEFAULT_TOPIC_SCORE,
  },
  stake: {
    name: 'stake',
    codec: stakeMoveCodec,
    queue: { maxLength: 256, concurrency: 8 },
    score: DEFAULT_TOPIC_SCORE,
  },
}
