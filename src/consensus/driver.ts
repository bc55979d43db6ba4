/**
 * The consensus driver: the async shell around the pure Tendermint core (core.ts). It owns the core state
 * and the application state, feeds the core its inputs one at a time (messages from gossip, its own
 * timeouts, the block it built), and performs the outputs in order (STYLE.md, Shape):
 *
 * - `persist`: sign, then append to the WAL and wait until it is durable (a failed write stops the node);
 * - `broadcastProposal` / `broadcastVote`: publish the signed message (persisted by the output before);
 * - `scheduleTimeout`: a timer whose expiry feeds a `timeout` input; every timer is cleared on a new height
 *   and on stop();
 * - `requestValue`: ask the application for a block (`prepareProposal`), answered later by a `valueReady`
 *   input; in round 0 an empty block waits for work (`notifyWork`) up to `minBlockIntervalMs` after the
 *   previous block;
 * - `decide`: `finalizeBlock`, then `commit` — the block store entry, its certificate and the WAL of the
 *   height pruned are handed to the application, which writes them with its own changes in ONE batch —
 *   then start the next height after `commitWaitMs` (default at once);
 * - `evidence`: kept (with the two signatures) and offered to the next `prepareProposal` of this node.
 *
 * The driver talks to the application only through consensus/abci.ts (ABCI++ shape) and knows blocks as
 * bytes with a hash: valid(v) of a received proposal is the application's `processProposal`. Messages of
 * future heights are buffered (bounded) and replayed when the height starts. A node that sees the network
 * ahead of it fetches blocks with their certificates (`fetchBlocks`, wired to `blocks-by-range`) and
 * applies them (`applySynced`: certificate, then `finalizeBlock` with the header checks of a synced block).
 * On start the driver asks the application for its head (`info`) and rebuilds the core from the WAL of the
 * next height (`restoreFromWal`), so it never signs twice.
 */
import type { Logger } from 'pino'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { Address, Hex, LocalAccount } from 'viem'
import { ignore, type ValidationResult } from '../p2p/validation.ts'
import { crashPoint } from '../state/crash-hook.ts'
import { dataDirFault } from '../state/data-dir-fault.ts'
import { type BatchOp, heightKey, type Store } from '../state/store.ts'
import type { AppInfo, Application, FinalizedBlock } from './abci.ts'
import {
  BLOCKS_BY_RANGE_MAX_BYTES,
  BLOCKS_BY_RANGE_PROTOCOL,
  blockHashOfBytes,
  type CommitCertificate,
  decodeCertificate,
  decodeStoredBlockParts,
  encodeCertificate,
  encodeStoredBlock,
  MAX_BLOCK_BYTES,
  MAX_BLOCKS_PER_RANGE,
  type SyncedBlock,
  type VoteEvidence,
  verifyCertificate,
} from './block.ts'
import { type ConsensusState, initialState, proposerOf, restoreFromWal, step } from './core.ts'
import { FutureBuffer, type FutureBufferOptions } from './future-buffer.ts'
import {
  CONSENSUS_MESSAGES_MAX_BYTES,
  type ConsensusMessage,
  MAX_CONSENSUS_MESSAGES,
  messageHeader,
  validateConsensusMessage,
} from './messages.ts'
import { BlockSync, type SyncOptions, type SyncRun } from './sync.ts'
import { AheadCheckLimiter } from './sync-peers.ts'
import {
  type ConsensusInput,
  type ConsensusOutput,
  type ConsensusParams,
  DEFAULT_CONSENSUS_PARAMS,
  type DecideOutput,
  type DuplicateVoteEvidence,
  type Proposal,
  type ScheduleTimeoutOutput,
  type Vote,
  type WalRecord,
} from './types.ts'
import {
  proposalBodyOf,
  type SignedProposal,
  type SignedVote,
  signProposal,
  signVote,
  toCoreProposal,
  toCoreVote,
  voteBodyOf,
  voteKey,
} from './votes.ts'
import { ConsensusWal, type WalEntry } from './wal.ts'

/** Options of a {@link ConsensusDriver}: plain data, defaults in {@link DEFAULT_CONSENSUS_DRIVER_OPTIONS}. */
export interface ConsensusDriverOptions {
  /** Round timeouts of the core. */
  readonly timeouts: ConsensusParams
  /**
   * The longest a proposer waits for something to put in a block (intents to assign, fills, re-routings,
   * evidence) before it proposes an empty one, counted from the previous block's time, milliseconds.
   * Blocks with work are proposed as soon as the previous height commits. The node sets it from genesis
   * `params.blockIntervalMs`.
   */
  readonly minBlockIntervalMs: number
  /** Wait between a commit and the start of the next height (CometBFT's timeout_commit), milliseconds. */
  readonly commitWaitMs: number
  /** Messages of future heights held until their height starts; beyond it they are dropped. */
  readonly maxBufferedMessages: number
  /** Byte bounds of the future-height buffer (total, per sending peer); see future-buffer.ts. */
  readonly futureBuffer: Partial<Omit<FutureBufferOptions, 'maxMessages'>>
  /** Block sync tuning beyond syncDelayMs and syncBatchBlocks (in flight, timeouts, bans); see sync.ts. */
  readonly sync: Partial<SyncOptions>
  /** Gossip validation IGNOREs messages further ahead. */
  readonly maxHeightsAhead: number
  /** Gossip validation IGNOREs messages further ahead of the current round. */
  readonly maxRoundsAhead: number
  /** After a message shows the network one block ahead, wait this long for our own decision, then sync. */
  readonly syncDelayMs: number
  /** Blocks asked for per `fetchBlocks` call. */
  readonly syncBatchBlocks: number
  readonly maxPendingEvidence: number
  /** Distinct blocks kept per height (a proposer flooding equivocating proposals cannot grow it). */
  readonly maxBlocksPerHeight: number
  /**
   * With no progress (height, round, step) for this long, ask peers for the signed messages of the height
   * (`fetchMessages`): what gossip delivered while this node was down or cut off.
   */
  readonly stuckFetchMs: number
  /**
   * A proposer in round 0 waits up to this long for the precommits of the previous height that online
   * validators have not delivered yet, so that the last commit its block carries names them (who is
   * online is read from the last commits). Milliseconds.
   */
  readonly lastCommitWaitMs: number
}

export const DEFAULT_CONSENSUS_DRIVER_OPTIONS: ConsensusDriverOptions = {
  timeouts: DEFAULT_CONSENSUS_PARAMS,
  minBlockIntervalMs: 500,
  commitWaitMs: 0,
  maxBufferedMessages: 10_000,
  futureBuffer: {},
  sync: {},
  maxHeightsAhead: 8,
  maxRoundsAhead: 32,
  syncDelayMs: 2_000,
  syncBatchBlocks: MAX_BLOCKS_PER_RANGE,
  maxPendingEvidence: 64,
  maxBlocksPerHeight: 64,
  stuckFetchMs: 6_000,
  lastCommitWaitMs: 50,
}

/** Collaborators of a {@link ConsensusDriver}. */
export interface ConsensusDriverModules {
  readonly store: Store
  /** The WAL's journal file (wal-journal.ts): without it every vote waits for a synced LevelDB write. */
  readonly walJournal?: string
  /** The application behind the engine (consensus/abci.ts). */
  readonly app: Application
  /** Signed consensus messages are bound to this network (EIP-712 domain). */
  readonly networkId: string
  /** The validator key: signs proposals and votes. */
  readonly account: Pick<LocalAccount, 'address' | 'signTypedData'>
  /** Publishes on the `consensus` topic. A failure is logged, never fatal (gossip may have no peers yet). */
  readonly broadcast: (msg: ConsensusMessage) => void | Promise<void>
  /**
   * Subscribes to "something a block could carry arrived" (a pending intent, a verified fill, a stake
   * move): a proposer waiting for work builds its block then. Returns the unsubscribe function.
   */
  readonly workSignal?: (wake: () => void) => () => void
  /**
   * Blocks with certificates from height `from`, asked of `peer` (one that claimed the height in its
   * `status`, or sent a signed message past it): `blocks-by-range`. Without it the driver never syncs.
   */
  readonly fetchBlocks?: (from: bigint, count: number, peer: string) => Promise<readonly SyncedBlock[]>
  /**
   * The signed messages peers hold for `height`: `consensus-messages` (messages.ts), asked of one or more
   * peers. Each answer is validated like gossip. Without it a validator that missed votes (restarted after
   * its peers voted) relies on new rounds alone, which may never come when just 2/3 + 1 are up.
   */
  readonly fetchMessages?: (height: bigint) => Promise<readonly ConsensusMessage[]>
  /** Wall clock, unix milliseconds. Default Date.now. */
  readonly clock?: { now(): number }
  readonly log: Logger
  readonly registry: Registry
  /** A durable write failed (or another invariant broke): the driver has stopped; the node must stop. */
  readonly onFatal?: (err: unknown) => void
}

/** A committed block, as the engine's `onCommit` listeners see it (the application has its own events). */
export interface CommitEvent {
  readonly height: bigint
  readonly hash: Hex
  /** Unix milliseconds. */
  readonly time: number
  readonly certificate: CommitCertificate
  /** 'consensus' when this node decided it, 'sync' when it came from a peer with its certificate. */
  readonly source: 'consensus' | 'sync'
}

/** Outcome of {@link ConsensusDriver.applySynced}. */
export type ApplySyncedResult =
  | { readonly status: 'applied' }
  | { readonly status: 'known' }
  | { readonly status: 'rejected'; readonly code: string; readonly message: string }

/** performance.now() marks of the height under way (lcWait, lcBlocked: ms, -1 when not measured). */
interface Phase {
  start: number
  block: number
  judged: number
  decided: number
  lcWait: number
  lcBlocked: number
}

/** Where a height's time went, ms (the `ms` of the `block committed` log line). */
interface PhaseTimes {
  block: number
  judge: number
  votes: number
  commit: number
  lcWait?: number
  lcBlocked?: number
}

/** A block of the current height: its canonical bytes (the application decodes them) and its time. */
interface HeldBlock {
  readonly bytes: Uint8Array
  /** Unix ms, once the application built or accepted it (a precommit's timestamp must be later). */
  time?: number
}

/** What a signed vote carries besides the core's vote. */
interface VoteSig {
  readonly signature: Hex
  readonly timestampMs: number
  readonly extension: Uint8Array
}

const NO_EXTENSION: Uint8Array = new Uint8Array(0)

const METRIC_NAMES = [
  'murmur_consensus_height',
  'murmur_consensus_round',
  'murmur_consensus_commits_total',
  'murmur_consensus_invalid_proposals_total',
  'murmur_consensus_buffered_messages',
] as const

/** Size of a vote message on the wire, about (a proposal adds its block): future-buffer accounting. */
const VOTE_MESSAGE_BYTES = 200
/** Quiet time after the last synced block before the new height's messages are fetched (ms). */
const CATCH_UP_FETCH_MS = 200

function recordKey(r: WalRecord): string {
  if (r.type === 'vote') return voteKey(r.vote)
  const p = r.proposal
  return `proposal/${p.height}/${p.round}/${p.validRound}/${p.value}`
}

function proposalKey(p: Proposal): string {
  return recordKey({ type: 'proposal', proposal: p })
}

/**
 * Runs consensus for one node. `start()` restores and begins; feed it gossip with `validateMessage` (the
 * topic validator) and `onMessage` (after ACCEPT); serve `getBlocksRange` to syncing peers; `stop()` leaves
 * no timer and no task behind.
 */
export class ConsensusDriver {
  readonly options: ConsensusDriverOptions
  readonly #m: ConsensusDriverModules
  readonly #log: Logger
  readonly #wal: ConsensusWal
  readonly #self: Address
  readonly #networkId: string
  readonly #now: () => number

  #head: AppInfo | undefined
  /**
   * This node's clock when the head became the head (a commit or a synced block), for the empty-block
   * interval; undefined before the first one. The head's own time is BFT time, the median of the
   * precommits of the block BEFORE it, so it lags one height: measured from it, an idle network made a
   * block every half interval.
   */
  #headSetAtMs: number | undefined
  #powers: Map<string, bigint> = new Map()
  #prevPowers: Map<string, bigint> = new Map()
  #core: ConsensusState
  #chain: Promise<void> = Promise.resolve()
  #started = false
  #stopped = false
  #stopping: Promise<void> | undefined
  #restoredRecords = 0
  #fetches = 0

  readonly #timers = new Set<NodeJS.Timeout>()
  #startTimer: NodeJS.Timeout | undefined
  #stuckTimer: NodeJS.Timeout | undefined
  /** Fetches the height's messages once a sync ended (#fetchAfterSync). */
  #catchUpTimer: NodeJS.Timeout | undefined
  #lastProgress = ''
  #fetching = false
  readonly #inflight = new Set<Promise<unknown>>()

  /** Blocks of the current height by hash. */
  #blocks = new Map<Hex, HeldBlock>()
  /** Hashes judged valid at the current height. */
  #valid = new Set<Hex>()
  /** Vote signatures by vote key, per height (current and previous: certificates and evidence). */
  readonly #sigs = new Map<number, Map<string, VoteSig>>()
  /** This node's proposal signatures of the current height. */
  #proposalSigs = new Map<string, Hex>()
  /** Messages of future heights (bounded in bytes and per sender; validators only). */
  readonly #future: FutureBuffer<ConsensusMessage>
  /** Catch-up: block ranges from the peers that are ahead (sync.ts). */
  readonly #sync: BlockSync<SyncedBlock>
  /** Where applySynced's time went since start, ms (the 'caught up' log line). */
  readonly #syncTimes = { verify: 0, commit: 0, start: 0 }
  /** Signature checks of messages beyond maxHeightsAhead, per peer (they only feed #sync). */
  readonly #aheadChecks = new AheadCheckLimiter()
  readonly #evidence = new Map<string, VoteEvidence>()
  /** Signed messages of the current height (own and accepted), served to peers that missed them. */
  #heightLog = new Map<string, ConsensusMessage>()
  /**
   * The signed proposal of the head block (kept from the height's log when the next height starts): with
   * the head's precommits, what a peer one height behind needs to decide it when it never saw that
   * proposal (it restarted after precommitting, and the others already moved on).
   */
  #headProposal: Extract<ConsensusMessage, { type: 'proposal' }> | undefined
  readonly #listeners = new Set<(e: CommitEvent) => void>()
  /** A proposer waiting for work (see minBlockIntervalMs): woken by notifyWork() or its deadline. */
  readonly #workWaiters = new Set<() => void>()
  /** A proposer waiting for late precommits of the previous height (see lastCommitWaitMs). */
  readonly #precommitWaiters = new Set<() => void>()
  /** The highest height of a valid message from each validator (who is alive, for #waitForLastCommit). */
  readonly #heardAt = new Map<string, bigint>()
  /** The certificate of the head block (the base of the next block's last commit). */
  #lastCommit: CommitCertificate | undefined
  #unsubscribeWork: (() => void) | undefined
  /** When the current height started, its block was built or received, judged, decided (performance.now). */
  #phase: Phase = { start: 0, block: 0, judged: 0, decided: 0, lcWait: -1, lcBlocked: -1 }

  readonly #metrics: {
    height: Gauge
    round: Gauge
    commits: Counter<'source'>
    invalid: Counter<'code'>
    buffered: Gauge
  }

  constructor(options: Partial<ConsensusDriverOptions>, modules: ConsensusDriverModules) {
    this.options = { ...DEFAULT_CONSENSUS_DRIVER_OPTIONS, ...options }
    this.#m = modules
    this.#log = modules.log.child({ module: 'consensus' })
    this.#wal = new ConsensusWal(
      modules.store,
      modules.walJournal === undefined ? {} : { journal: modules.walJournal },
    )
    this.#self = modules.account.address.toLowerCase() as Address
    this.#networkId = modules.networkId
    const clock = modules.clock
    this.#now = clock ? () => clock.now() : Date.now
    this.#core = initialState(this.options.timeouts, this.#self)
    const registers = [modules.registry]
    this.#future = new FutureBuffer({
      ...this.options.futureBuffer,
      maxMessages: this.options.maxBufferedMessages,
    })
    const fetchBlocks = modules.fetchBlocks
    this.#sync = new BlockSync<SyncedBlock>(
      {
        syncDelayMs: this.options.syncDelayMs,
        batchBlocks: Math.max(1, Math.min(this.options.syncBatchBlocks, MAX_BLOCKS_PER_RANGE)),
        // More streams than a peer serves at once are refused (and the peer rests for nothing).
        maxInflightPerPeer: BLOCKS_BY_RANGE_PROTOCOL.maxInboundStreams,
        ...this.options.sync,
      },
      {
        fetch: (peer, from, count) =>
          fetchBlocks === undefined
            ? Promise.reject(new Error('no fetchBlocks'))
            : fetchBlocks(from, count, peer),
        apply: (b) => this.applySynced(b.bytes, b.certificate),
        heightOf: (b) => b.certificate.height,
        localHeight: () => this.#head?.height ?? 0n,
        log: this.#log.child({ part: 'sync' }),
        now: this.#now,
        report: () => {
          const t = this.#syncTimes
          return {
            verifyMs: Math.round(t.verify),
            commitMs: Math.round(t.commit),
            startMs: Math.round(t.start),
          }
        },
      },
    )
    const futureCount = () => this.#future.size
    this.#metrics = {
      height: new Gauge({ name: 'murmur_consensus_height', help: 'Last committed height', registers }),
      round: new Gauge({
        name: 'murmur_consensus_round',
        help: 'Current round of the height being decided',
        registers,
      }),
      commits: new Counter({
        name: 'murmur_consensus_commits_total',
        help: 'Blocks committed, by source (consensus or sync)',
        labelNames: ['source'],
        registers,
      }),
      invalid: new Counter({
        name: 'murmur_consensus_invalid_proposals_total',
        help: 'Proposed blocks judged invalid, by reason',
        labelNames: ['code'],
        registers,
      }),
      buffered: new Gauge({
        name: 'murmur_consensus_buffered_messages',
        help: 'Messages of future heights held until their height starts',
        registers,
        collect() {
          this.set(futureCount())
        },
      }),
    }
  }

  // --- lifecycle -----------------------------------------------------------------------------------

  /** Loads the application state, rebuilds the core from the WAL of the next height, and begins. */
  async start(): Promise<void> {
    if (this.#started || this.#stopped) throw new Error('consensus driver already started or stopped')
    this.#started = true
    this.#unsubscribeWork = this.#m.workSignal?.(() => this.notifyWork())
    const info = await this.#m.app.info()
    this.#setHead(info)
    this.#lastCommit = info.height > 0n ? (await this.getBlock(info.height))?.certificate : undefined
    await this.#run(async () => {
      const height = info.height + 1n
      const entries = await this.#wal.load(height)
      this.#resetHeightCaches(Number(height))
      const result = this.#restore(Number(height), info, entries)
      this.#core = result.state
      this.#restoredRecords = entries.length
      this.#log.info({ height, walRecords: entries.length }, 'consensus started')
      await this.#perform(result.outputs)
      this.#replayFuture()
    })
    this.#watchProgress()
  }

  /**
   * Stops: clears every timer, waits for the task in progress and the blocks being built, judged or
   * fetched, and unregisters the metrics. Idempotent; safe before start() and after a fatal error.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#stopped = true
      this.#unsubscribeWork?.()
      this.#clearAllTimers()
      this.notifyWork()
      for (const w of [...this.#precommitWaiters]) w()
      await this.#sync.stop()
      await this.#chain
      while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight])
      await this.#wal.close()
      this.#clearAllTimers()
      for (const name of METRIC_NAMES) this.#m.registry.removeSingleMetric(name)
      this.#listeners.clear()
      if (this.#started) this.#log.info({ height: this.#head?.height }, 'consensus stopped')
    })()
    return this.#stopping
  }

  /**
   * Something a block could carry arrived (a pending intent, a fill): a proposer waiting for work builds
   * its block now instead of at the empty-block deadline.
   */
  notifyWork(): void {
    if (this.#workWaiters.size === 0) return
    const waiters = [...this.#workWaiters]
    this.#workWaiters.clear()
    for (const w of waiters) w()
  }

  // --- views ---------------------------------------------------------------------------------------

  /**
   * True while this node fetches or applies blocks from peers, or knows the network to be two or more
   * heights past its own (it will sync): `syncing` in `GET /v1/status`.
   */
  get syncing(): boolean {
    return this.#head !== undefined && this.#sync.syncing
  }

  /** Highest height a peer claims to have committed (status answers, signed messages): sync's target. */
  get networkHeight(): bigint {
    return this.#sync.networkHeight
  }

  /** Blocks applied from peers, answers that failed verification, range requests sent (since start). */
  get syncStats(): Readonly<BlockSync<SyncedBlock>['stats']> {
    return this.#sync.stats
  }

  /** The last catch-up (or the one under way) and where applySynced's time went since start, ms. */
  get lastSyncRun(): (SyncRun & { verifyMs: number; commitMs: number; startMs: number }) | undefined {
    const r = this.#sync.lastRun
    const t = this.#syncTimes
    return r && { ...r, verifyMs: t.verify, commitMs: t.commit, startMs: t.start }
  }

  /** A peer's `status` says it committed `height` (node wiring polls connected peers). */
  notePeerHeight(peer: string, height: bigint): void {
    if (this.#started && !this.#stopped) this.#sync.notePeerHeight(peer, height)
  }

  /** The highest height a connected peer is known to have committed (status or signed messages). */
  peerHeight(peer: string): bigint | undefined {
    return this.#sync.peerHeight(peer)
  }

  /** The peer disconnected: block sync stops counting on it. */
  removePeer(peer: string): void {
    this.#sync.removePeer(peer)
  }

  /** Last committed height. */
  get height(): bigint {
    return this.#state().height
  }

  /** Height the core is deciding (or has decided and waits to leave). */
  get consensusHeight(): number {
    return this.#core.height
  }

  /** Current round of the core. */
  get round(): number {
    return this.#core.round
  }

  /** Completed `fetchMessages` rounds (no progress for stuckFetchMs, messages asked of peers). */
  get messageFetches(): number {
    return this.#fetches
  }

  /** Step of the core in its current round. */
  get step(): ConsensusState['step'] {
    return this.#core.step
  }

  /** WAL records replayed by the last start(). */
  get restoredRecords(): number {
    return this.#restoredRecords
  }

  /** Head of the chain: last committed height, its hash and time (unix ms). */
  /** Whether `start()` has loaded the application's head (until then `head()` throws). */
  get ready(): boolean {
    return this.#head !== undefined
  }

  head(): { height: bigint; hash: Hex; time: number } {
    const s = this.#state()
    return { height: s.height, hash: s.lastBlockHash, time: s.lastBlockTime }
  }

  /** A committed block with its certificate and hash, or undefined. */
  async getBlock(height: bigint): Promise<(SyncedBlock & { hash: Hex }) | undefined> {
    const v = await this.#m.store.get<Uint8Array>('blocks', heightKey(height))
    if (v === undefined) return undefined
    const { blockBytes, certBytes } = decodeStoredBlockParts(v)
    return {
      bytes: blockBytes,
      certificate: decodeCertificate(certBytes),
      hash: blockHashOfBytes(blockBytes),
    }
  }

  /**
   * Committed blocks with certificates from `from`, in order, at most `count` (and MAX_BLOCKS_PER_RANGE),
   * stopping at the first missing height or once BLOCKS_BY_RANGE_MAX_BYTES would be passed (at least one
   * block). The `blocks-by-range` handler.
   */
  async getBlocksRange(from: bigint, count: number): Promise<SyncedBlock[]> {
    const n = Math.max(0, Math.min(Math.floor(count), MAX_BLOCKS_PER_RANGE))
    if (n === 0 || from < 1n) return []
    const rows = await this.#m.store.range<Uint8Array>('blocks', {
      gte: heightKey(from),
      lt: heightKey(from + BigInt(n)),
      limit: n,
    })
    const out: SyncedBlock[] = []
    let bytes = 0
    let expected = from
    for (const [key, value] of rows) {
      if (key !== heightKey(expected)) break
      const { blockBytes, certBytes } = decodeStoredBlockParts(value)
      bytes += blockBytes.length + certBytes.length
      if (out.length > 0 && bytes > BLOCKS_BY_RANGE_MAX_BYTES) break
      out.push({ bytes: blockBytes, certificate: decodeCertificate(certBytes) })
      expected++
    }
    return out
  }

  /**
   * The signed proposals and votes this node holds for `height` while it is deciding it, votes first, then
   * proposals newest round first within CONSENSUS_MESSAGES_MAX_BYTES; for the head's height, the
   * precommits of its commit; nothing for other heights (a peer further behind syncs blocks). The
   * `consensus-messages` handler.
   */
  getConsensusMessages(height: bigint): ConsensusMessage[] {
    if (!this.#started) return []
    const head = this.#head
    if (head !== undefined && height === head.height && height > 0n) return this.#commitMessages(head)
    if (height !== BigInt(this.#core.height)) return []
    const votes: ConsensusMessage[] = []
    const proposals: Array<Extract<ConsensusMessage, { type: 'proposal' }>> = []
    for (const m of this.#heightLog.values()) {
      if (m.type === 'vote') votes.push(m)
      else proposals.push(m)
    }
    let bytes = votes.length * 200
    const out = votes.slice(0, MAX_CONSENSUS_MESSAGES)
    for (const p of proposals.sort((a, b) => b.proposal.round - a.proposal.round)) {
      bytes += (this.#blocks.get(p.proposal.blockHash)?.bytes.length ?? MAX_BLOCK_BYTES) + 200
      if (bytes > CONSENSUS_MESSAGES_MAX_BYTES || out.length >= MAX_CONSENSUS_MESSAGES) break
      out.push(p)
    }
    return out
  }

  /**
   * The precommits of the head's commit as consensus messages, after the head's signed proposal (with its
   * block) when this node saw it: what a peer one height behind (it missed the last precommits, e.g. it
   * restarted right after its own precommit) needs to decide that height, even when the others already
   * moved on and stall (CometBFT's reactor sends a lagging peer the commit the same way). A peer that still
   * lacks the block syncs it (block sync, once status answers show this node ahead).
   */
  #commitMessages(head: AppInfo): ConsensusMessage[] {
    const lc = this.#collectLastCommit(head)
    if (lc === undefined) return []
    const proposal =
      this.#headProposal !== undefined && this.#headProposal.proposal.height === head.height
        ? [this.#headProposal]
        : []
    const votes: ConsensusMessage[] = lc.precommits.slice(0, MAX_CONSENSUS_MESSAGES - 1).map((p) => ({
      type: 'vote',
      vote: {
        kind: 'precommit',
        height: lc.height,
        round: lc.round,
        blockHash: lc.blockHash,
        timestampMs: p.timestampMs,
        extension: p.extension,
        validator: p.validator,
        signature: p.signature,
      },
    }))
    // The proposal first: a peer that feeds them in order has the value before its quorum.
    return [...proposal, ...votes]
  }

  /**
   * Calls `listener` after every commit (decided here or synced). Returns the unsubscribe function. The
   * pool's change events for the block's transitions fire first (when the commit batch is written), then
   * `height`/`appState` move, then this.
   */
  onCommit(listener: (e: CommitEvent) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  // --- network -------------------------------------------------------------------------------------

  /**
   * The `consensus` topic validator (messages.ts `validateConsensusMessage` against this node's view). A
   * message beyond maxHeightsAhead is IGNOREd (not buffered, not relayed), but when its signer is a
   * current validator and its signature verifies (checked at most once a second per peer `from`), it
   * shows the network ahead: block sync asks `from` for the blocks.
   */
  async validateMessage(msg: ConsensusMessage, from?: string): Promise<ValidationResult> {
    const head = this.#head
    if (head === undefined || this.#core.height === 0) return ignore('NOT_READY')
    const height = head.height + 1n
    const deciding = this.#core.height === Number(height) && this.#core.decision === null
    const core = this.#core
    const ctx = {
      networkId: this.#networkId,
      height,
      round: deciding ? core.round : 0,
      validators: this.#powers,
      previousValidators: this.#prevPowers,
      maxHeightsAhead: this.options.maxHeightsAhead,
      maxRoundsAhead: this.options.maxRoundsAhead,
      proposer: deciding ? (r: number) => proposerOf(core, r) : undefined,
      verifyExtension: (v: SignedVote) =>
        this.#m.app.verifyVoteExtension({
          height: v.height,
          round: v.round,
          hash: v.blockHash as Hex,
          validator: v.validator,
          extension: v.extension,
        }),
    }
    const r = await validateConsensusMessage(msg, ctx)
    if (r.result === 'IGNORE' && r.code === 'FUTURE_HEIGHT' && from !== undefined) {
      await this.#checkFarAhead(msg, from, ctx)
    }
    return r
  }

  /** See validateMessage: a far-future message, verified at a bounded cost, raises the peer's height. */
  async #checkFarAhead(
    msg: ConsensusMessage,
    from: string,
    ctx: Parameters<typeof validateConsensusMessage>[1],
  ): Promise<void> {
    const { height } = messageHeader(msg)
    // Already known to be there: nothing to learn, nothing to verify.
    if (height - 1n <= this.#sync.networkHeight || !this.#aheadChecks.allow(from, this.#now())) return
    const far = { ...ctx, maxHeightsAhead: Number.MAX_SAFE_INTEGER, maxRoundsAhead: Number.MAX_SAFE_INTEGER }
    const v = await validateConsensusMessage(msg, far)
    if (v.result === 'ACCEPT') this.notePeerHeight(from, height - 1n)
  }

  /**
   * A peer (re)connected, e.g. a partition healed: the signed messages it holds for the height being
   * decided may be the ones this node missed while cut off (gossip does not re-send them). Ask now rather
   * than after stuckFetchMs without progress.
   */
  onPeerConnected(): void {
    if (!this.#started || this.#stopped) return
    const c = this.#core
    if (c.height > 0 && c.decision === null) this.#fetchMissing(BigInt(c.height))
  }

  /** A message the topic validator ACCEPTed; `from` names the sending peer (for sync). */
  onMessage(msg: ConsensusMessage, from?: string): void {
    if (!this.#started || this.#stopped || this.#core.height === 0) return
    this.#accept(msg, from)
  }

  /**
   * Applies a block fetched from a peer: its certificate must carry > 2/3 of the power of the current
   * validators for the hash of `bytes` at the next height, and the application must accept its header
   * (`finalizeBlock` of a synced block); then it is committed like a decided one, and consensus moves to
   * the next height.
   */
  applySynced(bytes: Uint8Array, certificate: CommitCertificate): Promise<ApplySyncedResult> {
    const rejected = (code: string, message: string): ApplySyncedResult => ({
      status: 'rejected',
      code,
      message,
    })
    return this.#run(async (): Promise<ApplySyncedResult> => {
      if (this.#stopped) return rejected('STOPPED', 'driver stopped')
      const head = this.#state()
      if (certificate.height <= head.height) return { status: 'known' }
      if (certificate.height !== head.height + 1n)
        return rejected('GAP', `block ${certificate.height} on head ${head.height}`)
      let hash: Hex
      try {
        // The hash of a block is its header's: bytes whose header does not decode have none.
        hash = blockHashOfBytes(bytes)
      } catch (err) {
        return rejected('MALFORMED', (err as Error).message)
      }
      const t0 = performance.now()
      const v = await verifyCertificate(
        certificate,
        this.#powers,
        certificate.height,
        certificate.round,
        hash,
        this.#networkId,
      )
      if (!v.ok) return rejected(v.code, v.message)
      const t1 = performance.now()
      try {
        const r = await this.#commit(bytes, certificate, hash, 'sync')
        if (!r.ok) return rejected(r.code, r.message)
        if (this.#startTimer !== undefined) {
          clearTimeout(this.#startTimer)
          this.#startTimer = undefined
        }
        const t2 = performance.now()
        await this.#startNext()
        this.#fetchAfterSync()
        const t = this.#syncTimes
        t.verify += t1 - t0
        t.commit += t2 - t1
        t.start += performance.now() - t2
      } catch (err) {
        this.#fatal(err) // a failed durable write stops the node, as on the consensus path
        throw err
      }
      return { status: 'applied' }
    })
  }

  // --- internals: the task chain -------------------------------------------------------------------

  #state(): AppInfo {
    if (this.#head === undefined) throw new Error('consensus driver not started')
    return this.#head
  }

  #setHead(head: AppInfo): void {
    const powers = new Map(head.validators.map((v) => [v.id, v.power]))
    this.#prevPowers = this.#head === undefined ? powers : this.#powers
    if (this.#head !== undefined) this.#headSetAtMs = this.#now()
    this.#head = head
    this.#powers = powers
    this.#metrics.height.set(Number(head.height))
  }

  /** Runs `fn` after every earlier task; tasks never interleave. */
  #run<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(fn)
    this.#chain = run.then(
      () => undefined,
      () => undefined,
    )
    return run
  }

  #task(fn: () => Promise<void>): void {
    if (this.#stopped) return
    this.#run(async () => {
      if (!this.#stopped) await fn()
    }).catch((err) => this.#fatal(err))
  }

  #enqueue(input: ConsensusInput): void {
    this.#task(() => this.#process(input))
  }

  #track(p: Promise<unknown>): void {
    this.#inflight.add(p)
    void p.finally(() => this.#inflight.delete(p))
  }

  #fatal(err: unknown): void {
    if (this.#stopped) return
    // A data dir that cannot be written is the operator's to fix, not a bug: its cause, no stack (the
    // node says it in one line).
    const fault = dataDirFault(err, '', '')
    this.#log.fatal(
      fault === undefined ? { err } : { error: (err as Error).message },
      'consensus driver failed; stopping',
    )
    this.#stopped = true
    this.#clearAllTimers()
    this.#m.onFatal?.(err)
  }

  async #process(input: ConsensusInput): Promise<void> {
    const result = step(this.#core, input)
    this.#core = result.state
    this.#metrics.round.set(this.#core.round)
    await this.#perform(result.outputs)
  }

  async #perform(outputs: readonly ConsensusOutput[]): Promise<void> {
    for (const o of outputs) {
      if (this.#stopped) return
      switch (o.type) {
        case 'persist':
          await this.#persist(o.record)
          break
        case 'broadcastProposal':
          await this.#broadcastProposal(o.proposal)
          break
        case 'broadcastVote':
          await this.#broadcastVote(o.vote)
          break
        case 'scheduleTimeout':
          this.#schedule(o)
          break
        case 'requestValue':
          this.#requestValue(o.height, o.round)
          break
        case 'decide':
          await this.#decide(o)
          break
        case 'evidence':
          this.#addEvidence(o.evidence)
          break
        default: {
          const unknown: never = o
          throw new Error(`unknown consensus output ${JSON.stringify(unknown)}`)
        }
      }
    }
  }

  // --- outputs -------------------------------------------------------------------------------------

  async #sign(record: WalRecord): Promise<Hex> {
    if (record.type === 'proposal') {
      const key = proposalKey(record.proposal)
      const held = this.#proposalSigs.get(key)
      if (held !== undefined) return held
      const signed = await signProposal(this.#m.account, this.#networkId, proposalBodyOf(record.proposal))
      this.#proposalSigs.set(key, signed.signature)
      return signed.signature
    }
    return (await this.#signVote(record.vote)).signature
  }

  /**
   * This node's signature of a vote, made once per vote: its timestamp is the clock (a precommit for a
   * block later than the block's time, so the next block's BFT time follows its parent's), and a non-nil
   * precommit carries the application's vote extension.
   */
  async #signVote(v: Vote): Promise<VoteSig> {
    const held = this.#sigsOf(v.height).get(voteKey(v))
    if (held !== undefined) return held
    let timestampMs = this.#now()
    let extension = NO_EXTENSION
    if (v.kind === 'precommit' && v.value !== null) {
      const blockTime = this.#blocks.get(v.value as Hex)?.time
      if (blockTime !== undefined && timestampMs <= blockTime) timestampMs = blockTime + 1
      extension = await this.#m.app.extendVote({
        height: BigInt(v.height),
        round: v.round,
        hash: v.value as Hex,
      })
    }
    const signed = await signVote(this.#m.account, this.#networkId, {
      ...voteBodyOf(v),
      timestampMs,
      extension,
    })
    const sig: VoteSig = { signature: signed.signature, timestampMs, extension }
    this.#sigsOf(v.height).set(voteKey(v), sig)
    return sig
  }

  /** Persist before you speak: the signed record (and the block it commits to) is durable before it is sent. */
  async #persist(record: WalRecord): Promise<void> {
    const signature = await this.#sign(record)
    const stamp =
      record.type === 'vote' ? this.#sigsOf(record.vote.height).get(voteKey(record.vote)) : undefined
    const value =
      record.type === 'proposal'
        ? record.proposal.value
        : record.vote.kind === 'precommit'
          ? record.vote.value
          : null
    const block = value === null ? undefined : this.#blocks.get(value as Hex)?.bytes
    await this.#wal.append({
      record,
      signature,
      ...(block === undefined ? {} : { block }),
      ...(stamp === undefined ? {} : { timestampMs: stamp.timestampMs, extension: stamp.extension }),
    })
  }

  async #broadcastProposal(p: Proposal): Promise<void> {
    const held = this.#blocks.get(p.value as Hex)
    if (held === undefined) {
      this.#log.error({ height: p.height, round: p.round, value: p.value }, 'no block for own proposal')
      return
    }
    const signature = await this.#sign({ type: 'proposal', proposal: p })
    await this.#send({
      type: 'proposal',
      proposal: { ...proposalBodyOf(p), validator: this.#self, signature },
      block: held.bytes,
    })
  }

  async #broadcastVote(v: Vote): Promise<void> {
    const s = await this.#signVote(v)
    await this.#send({
      type: 'vote',
      vote: {
        ...voteBodyOf(v),
        timestampMs: s.timestampMs,
        extension: s.extension,
        validator: v.from as Address,
        signature: s.signature,
      },
    })
  }

  async #send(msg: ConsensusMessage): Promise<void> {
    this.#keep(msg)
    try {
      await this.#m.broadcast(msg)
    } catch (err) {
      this.#log.warn({ err, type: msg.type }, 'consensus broadcast failed')
    }
  }

  #schedule(o: ScheduleTimeoutOutput): void {
    if (this.#stopped) return
    const t = setTimeout(() => {
      this.#timers.delete(t)
      this.#enqueue({ type: 'timeout', kind: o.kind, height: o.height, round: o.round })
    }, o.durationMs)
    this.#timers.add(t)
  }

  /** Resolves on notifyWork(), after `ms`, or on stop(); never rejects. */
  #waitForWork(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.#workWaiters.delete(done)
        resolve()
      }
      const timer = setTimeout(done, Math.max(0, ms))
      this.#workWaiters.add(done)
    })
  }

  #requestValue(height: number, round: number): void {
    this.#track(
      this.#build(height, round).then(
        (hash) => {
          if (hash === undefined) return
          this.#phase.block ||= performance.now()
          this.#phase.judged ||= this.#phase.block
          this.#enqueue({ type: 'valueReady', height, round, value: hash })
        },
        (err) => this.#log.error({ err, height, round }, 'building a block failed'),
      ),
    )
  }

  /**
   * getValue() (L18): the application's block (`prepareProposal`). In round 0 an empty block waits for
   * work until minBlockIntervalMs after the previous block (CometBFT's create_empty_blocks_interval): a
   * busy network commits block after block, an idle one every interval.
   */
  async #build(height: number, round: number): Promise<Hex | undefined> {
    let bytes: Uint8Array
    let time: number
    // Late precommits of the head are waited for (round 0) while the application does its I/O.
    const phase = this.#phase
    const t0 = performance.now()
    const waited =
      round === 0
        ? this.#waitForLastCommit(this.#state()).then(() => {
            phase.lcWait = performance.now() - t0
          })
        : Promise.resolve()
    for (;;) {
      const head = this.#state()
      if (BigInt(height) !== head.height + 1n) return undefined
      const prepared = await this.#m.app.prepareProposal({
        height: BigInt(height),
        round,
        proposer: this.#self,
        nowMs: this.#now(),
        misbehavior: [...this.#evidence.values()],
        lastCommit: this.#collectLastCommit(head),
        awaitLastCommit: async () => {
          const a = performance.now()
          await waited
          if (round === 0) phase.lcBlocked = performance.now() - a
          return this.#collectLastCommit(head)
        },
      })
      if (this.#stopped || this.#head !== head || this.#core.height !== height) return undefined
      bytes = prepared.bytes
      time = prepared.time
      const idleUntil = (this.#headSetAtMs ?? head.lastBlockTime) + this.options.minBlockIntervalMs
      if (round > 0 || prepared.hasWork || this.#now() >= idleUntil) break
      await this.#waitForWork(idleUntil - this.#now())
    }
    const hash = blockHashOfBytes(bytes)
    this.#blocks.set(hash, { bytes, time })
    this.#valid.add(hash)
    this.#log.debug({ height, round, hash, bytes: bytes.length }, 'block built')
    return hash
  }

  /**
   * The commit of the head as this node holds it now: the head's certificate and every other precommit of
   * a validator of that height for the same block and round that arrived since (late precommits).
   */
  #collectLastCommit(head: AppInfo): CommitCertificate | undefined {
    const base = this.#lastCommit
    if (base === undefined || base.height !== head.height) return undefined
    const sigs = this.#sigs.get(Number(head.height))
    if (sigs === undefined) return base
    const have = new Map(base.precommits.map((p) => [p.validator, p] as const))
    const prefix = `precommit/${head.height}/${base.round}/`
    const suffix = `/${base.blockHash}`
    for (const [key, s] of sigs) {
      if (!key.startsWith(prefix) || !key.endsWith(suffix)) continue
      const validator = key.slice(prefix.length, key.length - suffix.length) as Address
      if (have.has(validator) || !this.#prevPowers.has(validator)) continue
      have.set(validator, { validator, ...s })
    }
    if (have.size === base.precommits.length) return base
    return { ...base, precommits: [...have.values()].sort((a, b) => (a.validator < b.validator ? -1 : 1)) }
  }

  /**
   * Waits (up to lastCommitWaitMs) until the precommit of the head is held from every validator that is
   * online, or that is offline but was heard from at the head's height (it is back: waiting for it is what
   * lets a block carry its precommit and so bring it back online). A validator that stays silent is not
   * waited for, so a dead one costs no time.
   */
  async #waitForLastCommit(head: AppInfo): Promise<void> {
    const deadline = this.#now() + this.options.lastCommitWaitMs
    const offline = new Set(head.offline)
    const awaited = (v: string) => !offline.has(v) || (this.#heardAt.get(v) ?? 0n) >= head.height
    for (;;) {
      const lc = this.#collectLastCommit(head)
      if (lc === undefined || this.#stopped || this.#head !== head) return
      const signed = new Set(lc.precommits.map((p) => p.validator))
      const missing = [...this.#prevPowers.keys()].some((v) => awaited(v) && !signed.has(v as Address))
      const left = deadline - this.#now()
      if (!missing || left <= 0) return
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer)
          this.#precommitWaiters.delete(done)
          resolve()
        }
        const timer = setTimeout(done, left)
        this.#precommitWaiters.add(done)
      })
    }
  }

  async #decide(o: DecideOutput): Promise<void> {
    this.#phase.decided = performance.now()
    const held = this.#blocks.get(o.value as Hex)
    if (held === undefined) throw new Error(`decided ${o.value} at ${o.height} without its block`)
    const sigs = this.#sigsOf(o.height)
    const precommits = o.certificate
      .map((v) => {
        const s = sigs.get(voteKey(v))
        if (s === undefined) throw new Error(`no signature for precommit of ${v.from} at ${o.height}`)
        return {
          validator: v.from as Address,
          signature: s.signature,
          timestampMs: s.timestampMs,
          extension: s.extension,
        }
      })
      .sort((a, b) => (a.validator < b.validator ? -1 : 1))
    const certificate: CommitCertificate = {
      height: BigInt(o.height),
      round: o.round,
      blockHash: o.value as Hex,
      precommits,
    }
    const r = await this.#commit(held.bytes, certificate, o.value as Hex, 'consensus')
    // A decided block the application cannot execute: the network committed something this node's
    // application disagrees with. Never carry on from a state that is not the network's.
    if (!r.ok)
      throw new Error(`decided block ${o.value} at ${o.height} not executable: ${r.code}: ${r.message}`)
    this.#scheduleStart(this.options.commitWaitMs)
  }

  /**
   * Commits a block: `finalizeBlock`, then the application writes the block store entry, the certificate
   * and the pruned WAL of the height with its own changes in one batch (`commit`); then the head, the
   * validator set and the evidence held move, and listeners hear of it.
   */
  async #commit(
    bytes: Uint8Array,
    certificate: CommitCertificate,
    hash: Hex,
    source: CommitEvent['source'],
  ): Promise<{ ok: true } | { ok: false; code: string; message: string }> {
    const height = certificate.height
    const f = await this.#m.app.finalizeBlock({ height, bytes, hash, certificate, source })
    if (!f.ok) return f
    const ops: BatchOp[] = [
      {
        type: 'put',
        sublevel: 'blocks',
        key: heightKey(height),
        value: encodeStoredBlock(bytes, encodeCertificate(certificate)),
      },
      ...(await this.#wal.pruneOps(height + 1n)),
    ]
    await this.#m.app.commit(f, ops)
    crashPoint('committed')
    this.#setHead({
      height,
      lastBlockHash: hash,
      lastBlockTime: f.time,
      validators: f.validators,
      offline: f.offline,
    })
    this.#lastCommit = certificate
    // Evidence always removes its validator from the set (jail): what the block carried is spent.
    for (const v of [...this.#evidence.keys()]) if (!this.#powers.has(v)) this.#evidence.delete(v)
    this.#metrics.commits.inc({ source })
    this.#log.info(
      {
        height,
        round: certificate.round,
        hash,
        bytes: bytes.length,
        source,
        ms: source === 'consensus' ? this.#phaseTimes() : undefined,
      },
      'block committed',
    )
    const event: CommitEvent = { height, hash, time: f.time, certificate, source }
    for (const l of this.#listeners) {
      try {
        l(event)
      } catch (err) {
        this.#log.error({ err }, 'commit listener threw')
      }
    }
    this.#afterCommit(f)
    return { ok: true }
  }

  #afterCommit(f: FinalizedBlock): void {
    try {
      this.#m.app.afterCommit?.(f)
    } catch (err) {
      this.#log.error({ err }, 'application afterCommit threw')
    }
  }

  #scheduleStart(delayMs: number): void {
    if (this.#stopped) return
    if (this.#startTimer !== undefined) clearTimeout(this.#startTimer)
    this.#startTimer = setTimeout(() => {
      this.#startTimer = undefined
      this.#task(() => this.#startNext())
    }, delayMs)
  }

  /** The core at `height` rebuilt from what this node signed there (its WAL entries), which it keeps. */
  #restore(height: number, head: AppInfo, entries: readonly WalEntry[]): ReturnType<typeof restoreFromWal> {
    for (const e of entries) this.#remember(e)
    return restoreFromWal(
      this.options.timeouts,
      this.#self,
      height,
      head.validators,
      entries.map((e) => e.record),
      head.offline,
    )
  }

  /** startHeight(last committed + 1) with the validators the last block left (L52-54, L10). */
  async #startNext(): Promise<void> {
    const head = this.#state()
    const height = Number(head.height + 1n)
    if (this.#core.height >= height) return
    this.#clearRoundTimers()
    this.#resetHeightCaches(height)
    this.#phase = { start: performance.now(), block: 0, judged: 0, decided: 0, lcWait: -1, lcBlocked: -1 }
    // The WAL holds what this node signed at this height before a restart that found its store further
    // back (a power cut took LevelDB's unsynced commits, the journal gave the votes back): resume from them,
    // as start() does, rather than sign again.
    const signed = this.#wal.holdsUnloaded(height) ? await this.#wal.load(height) : []
    if (signed.length > 0)
      this.#log.warn(
        { height, walRecords: signed.length },
        'resuming a height from records signed before a restart',
      )
    const result =
      signed.length > 0
        ? this.#restore(height, head, signed)
        : step(this.#core, {
            type: 'startHeight',
            height,
            validators: head.validators,
            skip: head.offline,
          })
    this.#core = result.state
    this.#metrics.round.set(0)
    await this.#perform(result.outputs)
    this.#replayFuture()
  }

  #addEvidence(ev: DuplicateVoteEvidence): void {
    if (this.#evidence.size >= this.options.maxPendingEvidence || this.#evidence.has(ev.validator)) return
    const sigs = this.#sigsOf(ev.first.height)
    const a = sigs.get(voteKey(ev.first))
    const b = sigs.get(voteKey(ev.second))
    if (a === undefined || b === undefined) return
    const signed = (v: Vote, s: VoteSig): SignedVote => ({
      ...voteBodyOf(v),
      timestampMs: s.timestampMs,
      extension: s.extension,
      validator: v.from as Address,
      signature: s.signature,
    })
    this.#evidence.set(ev.validator, { first: signed(ev.first, a), second: signed(ev.second, b) })
    this.#log.warn(
      { validator: ev.validator, height: ev.first.height, round: ev.first.round },
      'equivocation',
    )
  }

  // --- inputs from the network ---------------------------------------------------------------------

  #accept(msg: ConsensusMessage, from: string | undefined): void {
    const { height, validator } = messageHeader(msg)
    if (height > (this.#heardAt.get(validator) ?? 0n)) this.#heardAt.set(validator, height)
    const current = BigInt(this.#core.height)
    if (height > current) {
      this.#buffer(height, msg, from, validator)
      // Its signer committed height - 1; the peer that relayed it accepted it, so it is close (sync.ts).
      if (from !== undefined) this.notePeerHeight(from, height - 1n)
      return
    }
    if (height < current - 1n) return
    if (height === current) this.#keep(msg)
    if (msg.type === 'vote') {
      const v = toCoreVote(msg.vote)
      const sigs = this.#sigsOf(v.height)
      const key = voteKey(v)
      if (!sigs.has(key))
        sigs.set(key, {
          signature: msg.vote.signature,
          timestampMs: msg.vote.timestampMs,
          extension: msg.vote.extension,
        })
      if (height === current - 1n && v.kind === 'precommit' && this.#precommitWaiters.size > 0) {
        for (const w of [...this.#precommitWaiters]) w()
      }
      this.#enqueue({ type: 'vote', vote: v })
      return
    }
    if (height === current) this.#onProposal(msg)
  }

  #onProposal(msg: Extract<ConsensusMessage, { type: 'proposal' }>): void {
    const hash = msg.proposal.blockHash
    const height = msg.proposal.height
    this.#phase.block ||= performance.now()
    if (!this.#blocks.has(hash)) {
      if (this.#blocks.size >= this.options.maxBlocksPerHeight) return
      this.#blocks.set(hash, { bytes: msg.block })
    }
    const blocks = this.#blocks
    this.#track(
      this.#judge(msg.proposal, blocks).then(
        (valid) => {
          if (this.#blocks === blocks) this.#phase.judged ||= performance.now()
          if (this.#stopped || this.#blocks !== blocks || BigInt(this.#core.height) !== height) return
          this.#enqueue({ type: 'proposal', proposal: toCoreProposal(msg.proposal), valid })
        },
        (err) => this.#log.error({ err, hash }, 'judging a proposal failed'),
      ),
    )
  }

  /**
   * Where the height's time went, in ms: waiting for a block (built here or received), judging it, the
   * votes until the decision, and the commit.
   */
  #phaseTimes(): PhaseTimes {
    const p = this.#phase
    const r = (x: number) => Math.round(x)
    const block = p.block || p.decided
    const judged = p.judged || block
    const times: PhaseTimes = {
      block: r(block - p.start),
      judge: r(judged - block),
      votes: r(p.decided - judged),
      commit: r(performance.now() - p.decided),
    }
    // A proposer of round 0: how long it waited for late precommits, and how much of that its
    // prepareProposal spent blocked on them (the rest overlapped the application's I/O).
    if (p.lcWait >= 0) times.lcWait = r(p.lcWait)
    if (p.lcBlocked >= 0) times.lcBlocked = r(p.lcBlocked)
    return times
  }

  /** valid(v): the application's processProposal; only successes are cached. */
  async #judge(p: SignedProposal, blocks: Map<Hex, HeldBlock>): Promise<boolean> {
    const hash = p.blockHash
    if (this.#valid.has(hash)) return true
    const held = blocks.get(hash)
    const head = this.#state()
    if (held === undefined || p.height !== head.height + 1n) return false
    const verdict = await this.#m.app.processProposal({
      height: p.height,
      round: p.round,
      bytes: held.bytes,
      hash,
      proposer: p.validator,
      nowMs: this.#now(),
    })
    if (verdict.accept) {
      held.time = verdict.time
      if (this.#blocks === blocks) this.#valid.add(hash)
      return true
    }
    this.#metrics.invalid.inc({ code: verdict.code })
    return false
  }

  /** Keeps a message of the current height for `getConsensusMessages` (bounded). */
  #keep(msg: ConsensusMessage): void {
    const { height } = messageHeader(msg)
    if (height !== BigInt(this.#core.height) || this.#heightLog.size >= MAX_CONSENSUS_MESSAGES) return
    const key =
      msg.type === 'vote'
        ? `v/${voteKey(toCoreVote(msg.vote))}`
        : `p/${proposalKey(toCoreProposal(msg.proposal))}`
    if (!this.#heightLog.has(key)) this.#heightLog.set(key, msg)
  }

  /**
   * Every stuckFetchMs: when (height, round, step) did not change over the last interval and the height is
   * undecided, fetch the height's messages from peers and feed those that validate.
   */
  #watchProgress(): void {
    if (this.#m.fetchMessages === undefined || this.#stopped) return
    this.#stuckTimer = setTimeout(() => {
      this.#stuckTimer = undefined
      const c = this.#core
      const progress = `${c.height}/${c.round}/${c.step}/${c.decision === null ? '' : 'decided'}`
      if (progress === this.#lastProgress && c.decision === null) this.#fetchMissing(BigInt(c.height))
      this.#lastProgress = progress
      this.#watchProgress()
    }, this.options.stuckFetchMs)
  }

  /**
   * After a synced block: once no other synced block followed for CATCH_UP_FETCH_MS (the sync ended),
   * fetch the new height's messages. Its proposal and votes were gossiped while this node was away or
   * syncing, and gossip does not send them again.
   */
  #fetchAfterSync(): void {
    if (this.#catchUpTimer !== undefined) clearTimeout(this.#catchUpTimer)
    this.#catchUpTimer = setTimeout(() => {
      this.#catchUpTimer = undefined
      const c = this.#core
      // Still syncing (a slow disk spaced two synced blocks more than the wait): the next one re-arms it.
      if (this.#sync.syncing) return
      if (!this.#stopped && c.height > 0 && c.decision === null) this.#fetchMissing(BigInt(c.height))
    }, CATCH_UP_FETCH_MS)
  }

  #fetchMissing(height: bigint): void {
    const fetchMessages = this.#m.fetchMessages
    if (fetchMessages === undefined || this.#fetching || this.#stopped) return
    this.#fetching = true
    const run = async () => {
      try {
        const msgs = await fetchMessages(height)
        let accepted = 0
        for (const msg of msgs) {
          if (this.#stopped || BigInt(this.#core.height) !== height) return
          const r = await this.validateMessage(msg)
          if (r.result !== 'ACCEPT') continue
          this.#accept(msg, undefined)
          accepted++
        }
        this.#fetches++
        this.#log.debug({ height, received: msgs.length, accepted }, 'fetched consensus messages')
      } catch (err) {
        this.#log.warn({ err, height }, 'fetching consensus messages failed')
      } finally {
        this.#fetching = false
      }
    }
    this.#track(run())
  }

  #buffer(height: bigint, msg: ConsensusMessage, from: string | undefined, signer: string): void {
    const bytes =
      msg.type === 'vote'
        ? VOTE_MESSAGE_BYTES + msg.vote.extension.length
        : msg.block.length + VOTE_MESSAGE_BYTES
    const powers = this.#powers
    this.#future.add(height, msg, from, signer, bytes, (a) => (powers.get(a) ?? 0n) > 0n)
  }

  #replayFuture(): void {
    for (const { msg, from } of this.#future.take(BigInt(this.#core.height))) this.#accept(msg, from)
  }

  // --- caches and timers ---------------------------------------------------------------------------

  #sigsOf(height: number): Map<string, VoteSig> {
    let m = this.#sigs.get(height)
    if (m === undefined) {
      m = new Map()
      this.#sigs.set(height, m)
    }
    return m
  }

  /** A new height: blocks, verdicts and own proposal signatures of older heights go; vote signatures of the
   * previous height stay (late precommits, evidence). */
  #resetHeightCaches(height: number): void {
    const head = this.#head
    if (head !== undefined && head.height === BigInt(height - 1)) {
      for (const m of this.#heightLog.values())
        if (
          m.type === 'proposal' &&
          m.proposal.height === head.height &&
          m.proposal.blockHash === head.lastBlockHash
        )
          this.#headProposal = m
    }
    if (this.#headProposal !== undefined && this.#headProposal.proposal.height !== head?.height)
      this.#headProposal = undefined
    this.#blocks = new Map()
    this.#valid = new Set()
    this.#heightLog = new Map()
    this.#proposalSigs = new Map()
    for (const h of [...this.#sigs.keys()]) if (h < height - 1) this.#sigs.delete(h)
  }

  /** Takes back what a WAL entry holds: the block it commits to and its signature. */
  #remember(e: WalEntry): void {
    if (e.block !== undefined) {
      const hash = blockHashOfBytes(e.block)
      this.#blocks.set(hash, { bytes: e.block })
      this.#valid.add(hash)
    }
    if (e.record.type === 'proposal') this.#proposalSigs.set(proposalKey(e.record.proposal), e.signature)
    else
      this.#sigsOf(e.record.vote.height).set(voteKey(e.record.vote), {
        signature: e.signature,
        timestampMs: e.timestampMs ?? 0,
        extension: e.extension ?? NO_EXTENSION,
      })
  }

  #clearRoundTimers(): void {
    for (const t of this.#timers) clearTimeout(t)
    this.#timers.clear()
  }

  #clearAllTimers(): void {
    this.#clearRoundTimers()
    if (this.#startTimer !== undefined) clearTimeout(this.#startTimer)
    this.#startTimer = undefined
    if (this.#stuckTimer !== undefined) clearTimeout(this.#stuckTimer)
    this.#stuckTimer = undefined
    if (this.#catchUpTimer !== undefined) clearTimeout(this.#catchUpTimer)
    this.#catchUpTimer = undefined
  }
}
