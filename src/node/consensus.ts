import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { type Address, createPublicClient, type Hex, type LocalAccount, type PublicClient } from 'viem'
import { ApiError } from '../api/errors.ts'
import { MurmurApplication } from '../app/application.ts'
import { decodeOrderData, type GaslessCrossChainOrder, originDataOf } from '../codec/intent.ts'
import {
  BLOCKS_BY_RANGE_PROTOCOL,
  blockToJson,
  decodeBlock,
  MAX_BLOCKS_PER_RANGE,
} from '../consensus/block.ts'
import { ConsensusDriver, type ConsensusDriverOptions } from '../consensus/driver.ts'
import { CONSENSUS_MESSAGES_PROTOCOL, type ConsensusMessage } from '../consensus/messages.ts'
import { StatusPoller } from '../consensus/sync-peers.ts'
import { murmurSettlerAbi } from '../contracts/abi.ts'
import type { IntentPool } from '../mempool/pool.ts'
import type { P2PHost, TopicHandler } from '../p2p/host.ts'
import { STATUS_PROTOCOL } from '../p2p/protocols.ts'
import { type ExpectedOutput, FillBlocks, type FillVerdict, type SignedFill } from '../rollups/fill.ts'
import { observationOf } from '../rollups/observation.ts'
import { orderStatusReader } from '../rollups/refunds.ts'
import { type RpcTransport, rpcTransport } from '../rollups/rpc.ts'
import type { RollupsService } from '../rollups/service.ts'
import { ORDER_STATUS, type SettlementContracts, settlementContracts } from '../rollups/settlement.ts'
import type { StakingService } from '../staking/service.ts'
import { signedUnjailToJson, signUnjail } from '../staking/unjail.ts'
import { fillSettles } from '../state/plan.ts'
import type { SettlementSource } from '../state/settlement.ts'
import {
  leafFromJson,
  SETTLEMENT_LEAVES_PREFIX,
  SETTLEMENT_SET_PREFIX,
  type SettlementLeafJson,
  type SettlementRefund,
} from '../state/settlement.ts'
import { validatorsToJson } from '../state/storage.ts'
import { heightKey, type Store } from '../state/store.ts'
import { type AppState, expectedOutputOf } from '../state/types.ts'
import type { RefundVerdict } from '../state/validate.ts'
import type { Byzantine } from './byzantine.ts'
import type { Genesis } from './genesis.ts'
import type { TopicPayloads } from './topics.ts'

/** Fill verdicts kept (see ConsensusWiring#verifyFill). */
const MAX_FILL_VERDICTS = 50_000
/** Refund verdicts kept (see ConsensusWiring#verifyRefund). */
const MAX_REFUND_VERDICTS = 10_000
/** Every connected peer is asked its `status` this often (and once on connect): block sync's targets. */
const STATUS_POLL_MS = 2_000

export interface ConsensusWiringModules {
  genesis: Genesis
  store: Store
  /** The consensus WAL's journal file (consensus/wal-journal.ts), in the data dir. */
  walJournal?: string
  pool: IntentPool
  p2p: P2PHost<TopicPayloads>
  rollups: RollupsService
  /** Pending stake moves: the proposer takes them, commits drop them. */
  staking: StakingService
  account: Pick<LocalAccount, 'address' | 'signTypedData'>
  /** RPC URL per rollup, to check fills' receipts on this node's own RPC. */
  rpc: ReadonlyMap<number, string>
  /** Unsigned intents' orders opened on their origin settler, on this node's RPC (rollups/opened-orders.ts). */
  verifyOpened?: (id: Hex, order: GaslessCrossChainOrder) => Promise<FillVerdict>
  /** Sign and submit this validator's Unjail once a downtime jail is over (node/options.ts). */
  autoUnjail?: boolean
  log: Logger
  registry: Registry
  onFatal: (err: unknown) => void
  /** TEST ONLY (`--byzantine`, node/byzantine.ts): wraps the driver's application and broadcast. */
  byzantine?: Byzantine
}

/**
 * Consensus in a node: the driver (Tendermint core, WAL, blocks, apply) connected to the `consensus`
 * topic, the `blocks-by-range` and `consensus-messages` protocols, the health view and fills of the
 * rollups service, and the API routes `GET /v1/blocks/:height` and `GET /v1/validators`.
 */
export class ConsensusWiring {
  readonly driver: ConsensusDriver
  /** The application behind the driver: its state, its commit events. */
  readonly app: MurmurApplication
  readonly #m: ConsensusWiringModules
  readonly #clients = new Map<bigint, FillBlocks>()
  /** Plain RPC clients by chain id (origin settlers' `orderStatus`). */
  readonly #rpcClients = new Map<bigint, PublicClient>()
  /** Settlement contracts by chain id (genesis `rollups[].settlement`). */
  readonly #contracts: ReadonlyMap<bigint, SettlementContracts>
  /** The Unjail this node sent for its validator: for which jail, at which height. */
  #unjailSent: { until: bigint; height: bigint } | undefined
  readonly #transports: RpcTransport[] = []
  readonly #unsubscribe: Array<() => void> = []
  /** Fill verdicts by fill and expected output (see #verifyFill). */
  readonly #verdicts = new Map<string, Promise<FillVerdict>>()
  /** Origin settlers' `orderStatus` readers by chain id (rollups with settlement and an RPC here). */
  readonly #orderStatus = new Map<bigint, (id: Hex) => Promise<number>>()
  /** Refund verdicts by intent id (see #verifyRefund). */
  readonly #refundVerdicts = new Map<Hex, Promise<RefundVerdict>>()
  #status: StatusPoller | undefined
  /** Publishes on the `consensus` topic (the honest path; fork-after-restart sends through it). */
  readonly #broadcast: (msg: ConsensusMessage) => Promise<void>
  #stopped = false

  constructor(options: Partial<ConsensusDriverOptions>, modules: ConsensusWiringModules) {
    this.#m = modules
    this.#contracts = settlementContracts(modules.genesis.rollups)
    const finality = new Map(modules.genesis.rollups.map((r) => [r.chainId, BigInt(r.confirmations)]))
    for (const [chainId, url] of modules.rpc) {
      // Receipts of many fills are asked at once: JSON-RPC batches, one HTTP request each.
      const rpc = rpcTransport(url, { timeout: 5_000, retryCount: 0, batch: { batchSize: 256, wait: 2 } })
      this.#transports.push(rpc)
      const client = createPublicClient({ transport: rpc.transport }) as PublicClient
      this.#rpcClients.set(BigInt(chainId), client)
      this.#clients.set(
        BigInt(chainId),
        new FillBlocks(client, { confirmations: finality.get(chainId) ?? 0n }),
      )
      const settlement = modules.genesis.rollups.find((r) => r.chainId === chainId)?.settlement
      if (settlement !== undefined)
        this.#orderStatus.set(
          BigInt(chainId),
          orderStatusReader(client, settlement.settler as Address, finality.get(chainId) ?? 0n),
        )
    }
    const g = modules.genesis
    this.app = new MurmurApplication(
      {},
      {
        store: modules.store,
        pool: modules.pool,
        genesis: g,
        verifyFill: (fill, expected) => this.#verifyFill(fill, expected),
        verifyRefund: (id, refund) => this.#verifyRefund(id, refund),
        ...(modules.verifyOpened === undefined ? {} : { verifyOpened: modules.verifyOpened }),
        // The fresh reports this node's own monitor signed: its observation of every rollup.
        observe: () => {
          const self = modules.account.address.toLowerCase()
          // Over the set that decides the next block: a validator that joined later observes too.
          return modules.rollups.aggregator
            .reportsUsed(Date.now(), this.app.state.consensusSet, g.rollups)
            .filter((s) => s.report.validator === self)
            .map((s) => observationOf(s.report))
        },
        balances: () => modules.rollups.balances(),
        pendingFills: () => modules.rollups.pendingFills.values(),
        pendingStakeMoves: () => modules.staking.pending(),
        pendingUnjails: () => modules.staking.pendingUnjails(),
        pendingAccountMessages: () => modules.staking.pendingAccountMessages(),
        log: modules.log,
      },
    )
    const broadcast = async (msg: ConsensusMessage) => {
      await modules.p2p.publish('consensus', msg)
    }
    this.#broadcast = broadcast
    const byz = modules.byzantine
    this.driver = new ConsensusDriver(
      { minBlockIntervalMs: g.params.blockIntervalMs, ...options },
      {
        store: modules.store,
        ...(modules.walJournal === undefined ? {} : { walJournal: modules.walJournal }),
        app: byz === undefined ? this.app : byz.wrapApp(this.app),
        networkId: g.networkId,
        account: modules.account,
        broadcast: byz === undefined ? broadcast : byz.wrapBroadcast(broadcast),
        workSignal: (wake) =>
          modules.pool.onChange((c) => {
            if (c.state === 'pending') wake()
          }),
        fetchBlocks: async (from, count, peer) => {
          const target = this.#peer(peer)
          if (target === undefined) return []
          return modules.p2p.reqresp.request(target, BLOCKS_BY_RANGE_PROTOCOL, {
            from,
            count: Math.min(count, MAX_BLOCKS_PER_RANGE),
          })
        },
        fetchMessages: async (height) => {
          const peers = modules.p2p.libp2p.getPeers().slice(0, 3)
          const answers = await Promise.allSettled(
            peers.map((p) => modules.p2p.reqresp.request(p, CONSENSUS_MESSAGES_PROTOCOL, { height })),
          )
          return answers.flatMap((a) => (a.status === 'fulfilled' ? a.value : []))
        },
        log: modules.log,
        registry: modules.registry,
        onFatal: modules.onFatal,
      },
    )
  }

  /**
   * FillBlocks.verify on this node's RPC, at most once per fill: definite verdicts are kept (a final
   * block does not change), concurrent asks share one request, 'pending' and 'unknown' are asked again.
   */
  #verifyFill(fill: SignedFill, expected: ExpectedOutput): Promise<FillVerdict> {
    const f = fill.fill
    const key = `${f.chainId}/${f.txHash}/${f.intentId}/${f.blockNumber}/${f.blockHash}/${f.executor}/${expected.recipient}/${expected.outputToken}/${expected.outputAmount}`
    const held = this.#verdicts.get(key)
    if (held !== undefined) return held
    const blocks = this.#clients.get(f.chainId)
    if (blocks === undefined) return Promise.resolve('unknown')
    const p = this.#checkFill(blocks, fill, expected).catch(() => 'unknown' as const)
    this.#verdicts.set(key, p)
    if (this.#verdicts.size > MAX_FILL_VERDICTS) {
      const oldest = this.#verdicts.keys().next().value
      if (oldest !== undefined) this.#verdicts.delete(oldest)
    }
    void p.then((v) => {
      if (v === 'unknown' || v === 'pending') this.#verdicts.delete(key)
    })
    return p
  }

  /**
   * A fill's check on this node's RPCs. With settlement contracts (issue 10): the order is opened on its
   * origin settler (`orderStatus` 1; not yet: 'pending'; settled or refunded: 'invalid'), and on the
   * destination the fill is the settler's `fill` call proven by its `OutputFilled` event (rollups/fill.ts).
   */
  async #checkFill(blocks: FillBlocks, fill: SignedFill, expected: ExpectedOutput): Promise<FillVerdict> {
    const f = fill.fill
    const dest = this.#contracts.get(f.chainId)
    let order: GaslessCrossChainOrder | undefined
    if (dest !== undefined || this.#contracts.size > 0)
      order = (await this.#m.pool.get(f.intentId))?.intent.order
    if (dest !== undefined && order === undefined) return 'unknown'
    if (order !== undefined && this.#contracts.has(order.originChainId)) {
      // The same read refunds use: `orderStatus` at the origin's final block.
      const read = this.#orderStatus.get(order.originChainId)
      if (read === undefined) return 'unknown'
      const status = await read(f.intentId)
      if (status === ORDER_STATUS.none) return 'pending'
      if (status !== ORDER_STATUS.opened) return 'invalid'
    }
    const full =
      dest === undefined ? expected : { ...expected, settler: dest.settler, originData: originDataOf(order!) }
    return blocks.verify(f, full)
  }

  /**
   * A refund's order on its origin settler, on this node's RPC, at a block final for that rollup:
   * `orderStatus` 1 (opened) 'valid', 2 or 3 (settled, refunded) 'invalid', 0 'pending' (not opened as this
   * RPC sees it), no RPC or a failed read 'unknown'. Definite verdicts are kept (an order leaves `opened`
   * only by the settlement the block itself certifies), concurrent asks share one read.
   */
  #verifyRefund(id: Hex, refund: SettlementRefund): Promise<RefundVerdict> {
    const held = this.#refundVerdicts.get(id)
    if (held !== undefined) return held
    const read = this.#orderStatus.get(refund.originChainId)
    if (read === undefined) return Promise.resolve('unknown')
    const p = read(id)
      .then(async (status): Promise<RefundVerdict> => {
        if (status !== 1) return status === 0 ? 'pending' : 'invalid'
        // A fill mined before the deadline but not committed in time: the recipient has the output, so the
        // network certifies no refund on top of it (docs/decisions.md, known limits of refunds).
        return (await this.#filledSomewhere(id)) ? 'invalid' : 'valid'
      })
      .catch((): RefundVerdict => 'unknown')
    this.#refundVerdicts.set(id, p)
    if (this.#refundVerdicts.size > MAX_REFUND_VERDICTS) {
      const oldest = this.#refundVerdicts.keys().next().value
      if (oldest !== undefined) this.#refundVerdicts.delete(oldest)
    }
    void p.then((v) => {
      if (v === 'unknown' || v === 'pending') this.#refundVerdicts.delete(id)
    })
    return p
  }

  /** True when a settler of one of the order's destinations records a filler for it. */
  async #filledSomewhere(id: Hex): Promise<boolean> {
    const order = (await this.#m.pool.get(id))?.intent.order
    if (order === undefined) throw new Error(`refund of ${id}: the intent is not in the pool`)
    const listed = decodeOrderData(order.orderData).destinationChainIds
    const chains = listed.length > 0 ? listed : [...this.#contracts.keys()]
    for (const c of chains) {
      const dest = this.#contracts.get(c)
      const client = this.#rpcClients.get(c)
      if (dest === undefined) continue
      if (client === undefined) throw new Error(`refund of ${id}: no RPC for destination ${c}`)
      const filler = await client.readContract({
        address: dest.settler,
        abi: murmurSettlerAbi,
        functionName: 'filledBy',
        args: [id],
      })
      if (!/^0x0{40}$/i.test(filler)) return true
    }
    return false
  }

  /** A fill that arrives is checked at once: proposers include fills whose check is done. */
  #prefetchFill(fill: SignedFill): void {
    // Before the state is loaded (an executor's recovery announces its confirmed fills at once) there
    // is nothing to check against; proposals check their fills anyway. Throwing here aborted the
    // announcement, and the network filled the intent a second time elsewhere (the crash soak).
    if (!this.app.ready) return
    const a = this.app.state.assignments.get(fill.fill.intentId)
    if (a === undefined || !fillSettles(this.app.state, a, fill.fill)) return
    void this.#verifyFill(fill, expectedOutputOf(a)).then((v) => {
      // A proposer waiting for work proposes it now (it only takes fills whose check is done).
      if (v === 'valid') this.driver.notifyWork()
    })
  }

  #peer(peer: string | undefined): PeerId | undefined {
    const peers = this.#m.p2p.libp2p.getPeers()
    if (peer !== undefined) {
      const found = peers.find((p) => p.toString() === peer)
      if (found !== undefined) return found
      try {
        return peerIdFromString(peer)
      } catch {
        // fall through to a random peer
      }
    }
    return peers[Math.floor(Math.random() * peers.length)]
  }

  /** The `consensus` topic handler. */
  readonly topicHandler: TopicHandler<ConsensusMessage> = {
    validate: (msg, from) => this.driver.validateMessage(msg, from.toString()),
    onMessage: (msg, from) => this.driver.onMessage(msg, from.toString()),
  }

  /** Registers the protocols, then starts the driver (WAL replay, then rounds). */
  async start(): Promise<void> {
    const p2p = this.#m.p2p
    await p2p.handle(BLOCKS_BY_RANGE_PROTOCOL, (req) =>
      this.driver.getBlocksRange(req.from, Math.min(req.count, MAX_BLOCKS_PER_RANGE)),
    )
    await p2p.handle(CONSENSUS_MESSAGES_PROTOCOL, (req) => this.driver.getConsensusMessages(req.height))
    // A proposer with nothing to propose waits for fills before it proposes an empty block.
    // (The driver itself listens to the pool for new pending intents.)
    this.#unsubscribe.push(
      this.#m.rollups.onPendingFill((fill) => {
        this.#prefetchFill(fill)
      }),
      this.#m.staking.onPending(() => this.driver.notifyWork()),
      this.app.onCommit((e) => {
        this.#m.staking.onCommit(e.block, e.state)
        this.#maybeUnjail(e.state, e.block.time)
      }),
    )
    // fork-after-restart (TEST ONLY): the record of what this validator signed is gone before the start.
    await this.#m.byzantine?.forgetWal(this.#m.store, this.#m.walJournal)
    await this.driver.start()
    this.#startStatusPoll()
    const byz = this.#m.byzantine
    if (byz?.modes.has('fork-after-restart') === true) {
      const head = await this.driver.getBlock(this.driver.head().height)
      void byz
        .signForks(this.#broadcast, head?.certificate, {
          times: 10,
          everyMs: 1_000,
          stopped: () => this.#stopped,
        })
        .catch((err) => this.#m.log.warn({ err }, 'byzantine forks failed'))
    }
  }

  /** Peers' heights for block sync: `status` of every connected peer, periodically and on connect. */
  #startStatusPoll(): void {
    const p2p = this.#m.p2p
    const poller = new StatusPoller(STATUS_POLL_MS, {
      peers: () => p2p.libp2p.getPeers().map(String),
      ask: async (peer) => {
        const head = this.driver.head()
        const s = await p2p.reqresp.request(peerIdFromString(peer), STATUS_PROTOCOL, {
          height: Number(head.height),
        })
        return BigInt(s.height)
      },
      onHeight: (peer, height) => this.driver.notePeerHeight(peer, height),
      log: this.#m.log,
    })
    const onConnect = (e: CustomEvent<PeerId>) => {
      poller.connected(e.detail.toString())
      this.driver.onPeerConnected()
    }
    const onDisconnect = (e: CustomEvent<PeerId>) => this.driver.removePeer(e.detail.toString())
    p2p.libp2p.addEventListener('peer:connect', onConnect)
    p2p.libp2p.addEventListener('peer:disconnect', onDisconnect)
    this.#unsubscribe.push(() => {
      p2p.libp2p.removeEventListener('peer:connect', onConnect)
      p2p.libp2p.removeEventListener('peer:disconnect', onDisconnect)
    })
    this.#status = poller
    poller.start()
  }

  /**
   * After a commit: when this node's validator is jailed for downtime (not tombstoned), the jail time is
   * over by the block's time and the node is in step, sign its Unjail and submit it like `POST
   * /v1/unjail` would (gossiped, then carried by a block). Once per jail; again after 20 blocks if it has
   * not taken effect (a lost gossip message, a refusal).
   */
  #maybeUnjail(state: AppState, blockTimeMs: number): void {
    if (this.#m.autoUnjail !== true || this.driver.syncing) return
    const self = this.#m.account.address.toLowerCase() as Address
    const v = state.validators.find((x) => x.address === self)
    if (v === undefined || !v.jailed || v.tombstoned || v.jailedUntil === null) return
    if (BigInt(Math.floor(blockTimeMs / 1000)) < v.jailedUntil) return
    const sent = this.#unjailSent
    if (sent !== undefined && sent.until === v.jailedUntil && state.height < sent.height + 20n) return
    this.#unjailSent = { until: v.jailedUntil, height: state.height }
    const nonce = (state.unjailNonces.get(self) ?? 0n) + 1n
    void signUnjail(this.#m.account, this.#m.genesis.networkId, { validator: self, nonce })
      .then((s) => this.#m.staking.submitUnjailJson(signedUnjailToJson(s)))
      .then((a) =>
        this.#m.log.info({ status: a.status, body: a.body, nonce }, "sent this validator's Unjail"),
      )
      .catch((err) => this.#m.log.warn({ err }, "sending this validator's Unjail failed"))
  }

  async stop(): Promise<void> {
    this.#stopped = true
    for (const u of this.#unsubscribe.splice(0)) u()
    await this.#status?.stop()
    await this.driver.stop()
    await Promise.all(this.#transports.map((t) => t.close()))
  }

  /** What `GET /v1/settlement/:height` reads: stored blocks, and the `settlement` records of their commits. */
  settlementSource(): SettlementSource {
    const store = this.#m.store
    return {
      block: (height) => this.driver.getBlock(height),
      leaves: async (height) =>
        (
          (await store.get<SettlementLeafJson[]>(
            'settlement',
            SETTLEMENT_LEAVES_PREFIX + heightKey(height),
          )) ?? []
        ).map(leafFromJson),
      validatorSet: async (hash) => {
        const v = await store.get<{ validators: Address[]; powers: string[] }>(
          'settlement',
          SETTLEMENT_SET_PREFIX + hash,
        )
        return v === undefined
          ? undefined
          : { validators: v.validators, powers: v.powers.map((p) => BigInt(p)) }
      },
    }
  }

  /** `GET /v1/blocks/:height` and `GET /v1/validators`. */
  routes() {
    return (app: FastifyInstance): void => {
      app.get<{ Params: { height: string } }>('/v1/blocks/:height', async (req) => {
        if (!/^[0-9]{1,19}$/.test(req.params.height)) {
          throw new ApiError(400, 'MALFORMED', 'height must be a decimal integer')
        }
        const b = await this.driver.getBlock(BigInt(req.params.height))
        if (b === undefined) throw new ApiError(404, 'NOT_FOUND', `no block at height ${req.params.height}`)
        return blockToJson(decodeBlock(b.bytes), b.hash, b.certificate, this.#m.genesis.networkId)
      })
      app.get('/v1/validators', async () => validatorsToJson(this.app.state))
    }
  }
}
