import type { Logger } from 'pino'
import { Gauge, type Registry } from 'prom-client'
import type { Address, Hex, LocalAccount } from 'viem'
import { decodeOrderData, originDataOf } from '../codec/intent.ts'
import type { IntentPool } from '../mempool/pool.ts'
import { PublishBatcher } from '../p2p/batcher.ts'
import type { P2PHost, TopicHandler } from '../p2p/host.ts'
import type { SettlementSource } from '../state/settlement.ts'
import type { Store } from '../state/store.ts'
import { ClaimRelayer } from './claims.ts'
import { Executor, ExecutorError, type ExecutorOptions } from './executor.ts'
import { MAX_FILL_BATCH, type SignedFill, validateFillBatch } from './fill.ts'
import { FillRelay } from './fill-relay.ts'
import { HealthMonitor, type HealthMonitorOptions } from './health-monitor.ts'
import { type SignedHealthReport, validateHealthReport } from './health-report.ts'
import { type GenesisRollup, HealthAggregator, type RollupRow, rollupRows } from './health-view.ts'
import { InventoryMonitor } from './inventory.ts'
import type { Balance } from './observation.ts'
import type { HealthView } from './router.ts'
import { SettlementFlow, settlementContracts } from './settlement.ts'

export interface RollupsServiceOptions {
  /** RPC URL per rollup this node watches and fills on (`--rollup CHAINID=URL`). */
  rollups: ReadonlyMap<number, string>
  monitor: Partial<Omit<HealthMonitorOptions, 'rollups'>>
  executor: Partial<Omit<ExecutorOptions, 'rollups'>>
  /**
   * Fills confirmed within this window leave in one `fills` message (the fills of one rollup block are
   * confirmed together). Default 20 ms.
   */
  fillPublishWindowMs?: number
}

/**
 * What the service reads of the network's genesis (node/genesis.ts's `Genesis` satisfies it): stated here
 * so that rollups/ does not import the composition root.
 */
export interface RollupsGenesis {
  readonly networkId: string
  readonly params: { readonly healthFreshnessMs: number; readonly maxClockSkewSec: number }
  readonly validators: readonly { readonly address: Address; readonly stake: bigint }[]
  /** `confirmations`: blocks after which a rollup block is final (genesis; default 0). */
  readonly rollups: readonly (GenesisRollup & { readonly confirmations: number })[]
}

export interface RollupsServiceModules {
  genesis: RollupsGenesis
  store: Store
  pool: IntentPool
  /** The host, with the topics this service publishes on. */
  p2p: P2PHost<{ health: SignedHealthReport; fills: SignedFill[] }>
  account: Pick<LocalAccount, 'address' | 'signTypedData' | 'signTransaction'>
  log: Logger
  registry: Registry
  /** Tokens the executor reports balances of on a chain (the asset table's); the native coin always. */
  inventoryTokens?: (chainId: bigint) => readonly Address[]
  /**
   * The committed consensus set (power by address): whose health reports are accepted and weighed, and
   * whether this node's validator publishes its own. Undefined (before consensus starts, or when absent):
   * the genesis set. A validator that joins later is in it only from its epoch boundary on.
   */
  validators?: () => ReadonlyMap<Address, bigint> | undefined
  now?: () => number
  /**
   * TEST ONLY (node/byzantine.ts `withhold-fills`): wraps the path this node's fills are announced by
   * (made pending here, then gossiped), to lose announcements on purpose.
   */
  wrapFillPublish?: (publish: (fill: SignedFill) => Promise<void>) => (fill: SignedFill) => Promise<void>
}

/**
 * Rollups in a node: the health monitor (signed reports on the `health` topic), the health view
 * (stake-weighted over validators' fresh reports), the `fills` topic, and the executor, which fills
 * every intent assigned to this node's validator on its destination rollup.
 */
export class RollupsService {
  readonly opts: RollupsServiceOptions
  readonly aggregator: HealthAggregator
  readonly #m: RollupsServiceModules
  readonly #genesisPowers: ReadonlyMap<Address, bigint>
  readonly #knownChains: ReadonlySet<bigint>
  #monitor: HealthMonitor | undefined
  #inventory: InventoryMonitor | undefined
  #executor: Executor | undefined
  #settlement: SettlementFlow | undefined
  #relay: FillRelay | undefined
  #claims: ClaimRelayer | undefined
  #unsubscribe: (() => void) | undefined
  /** Fills announced on gossip and not yet committed, by intent id (consensus takes them from here). */
  readonly pendingFills = new Map<Hex, SignedFill>()
  /** Open assignments (assigned, not yet filled) by intent id. */
  readonly #assigned = new Map<Hex, { chainId: bigint; executor: Address }>()
  #pruneTimer: NodeJS.Timeout | undefined
  readonly #fillListeners = new Set<(fill: SignedFill) => void>()
  readonly #fillPublisher: PublishBatcher<SignedFill>

  constructor(options: Partial<RollupsServiceOptions>, modules: RollupsServiceModules) {
    this.opts = { rollups: new Map(), monitor: {}, executor: {}, ...options }
    this.#m = modules
    this.#fillPublisher = new PublishBatcher(
      { windowMs: options.fillPublishWindowMs ?? 20, max: MAX_FILL_BATCH },
      (fills) => modules.p2p.publish('fills', fills),
    )
    const g = modules.genesis
    this.aggregator = new HealthAggregator({
      freshnessMs: g.params.healthFreshnessMs,
      maxSkewMs: g.params.maxClockSkewSec * 1000,
    })
    this.#genesisPowers = new Map(g.validators.map((v) => [v.address, v.stake]))
    this.#knownChains = new Set(g.rollups.map((r) => BigInt(r.chainId)))
    const assigned = new Gauge({
      name: 'murmur_rollups_assigned_intents',
      help: 'Intents assigned and not yet filled, by destination chain',
      labelNames: ['chain'] as const,
      registers: [modules.registry],
      collect: () => {
        assigned.reset()
        for (const [c, n] of this.#openByChain()) assigned.set({ chain: c.toString() }, n)
      },
    })
  }

  #now(): number {
    return (this.#m.now ?? Date.now)()
  }

  #powers(): ReadonlyMap<Address, bigint> {
    return this.#m.validators?.() ?? this.#genesisPowers
  }

  /** The `health` topic handler. */
  readonly healthHandler: TopicHandler<SignedHealthReport> = {
    validate: (msg) =>
      validateHealthReport(msg, {
        networkId: this.#m.genesis.networkId,
        validators: this.#powers(),
        nowMs: this.#now(),
        freshnessMs: this.aggregator.window.freshnessMs,
        maxSkewMs: this.aggregator.window.maxSkewMs,
        lastSeen: (v, c) => this.aggregator.lastSeen(v, c),
        knownChains: this.#knownChains,
      }),
    onMessage: (msg) => {
      this.aggregator.add(msg)
    },
  }

  /** The `fills` topic handler: fills of intents assigned here, each signed by its executor. */
  readonly fillsHandler: TopicHandler<SignedFill[]> = {
    validate: (msg) =>
      validateFillBatch(
        msg,
        {
          networkId: this.#m.genesis.networkId,
          assignment: (id) => this.#assigned.get(id),
          isKnown: (f) => this.pendingFills.has(f.intentId),
          // A validator may announce its own fill of an intent that moved away from it (a restart).
          isValidator: (a) => this.#powers().has(a),
        },
        (fills) => this.#acceptedFills.set(msg, fills),
      ),
    onMessage: (msg) => {
      for (const f of this.#acceptedFills.get(msg) ?? []) this.#addPendingFill(f)
      this.#acceptedFills.delete(msg)
    },
  }
  /** The new, valid fills of each accepted message, from validation to delivery. */
  readonly #acceptedFills = new WeakMap<readonly SignedFill[], SignedFill[]>()

  /** Called with each fill that becomes pending (consensus wakes a proposer waiting for work). */
  onPendingFill(listener: (fill: SignedFill) => void): () => void {
    this.#fillListeners.add(listener)
    return () => this.#fillListeners.delete(listener)
  }

  #addPendingFill(fill: SignedFill): void {
    this.pendingFills.set(fill.fill.intentId, fill)
    // A listener's failure must not stop the fill's announcement (the caller publishes it next).
    for (const l of this.#fillListeners) {
      try {
        l(fill)
      } catch (err) {
        this.#m.log.warn({ err, intentId: fill.fill.intentId }, 'a pending-fill listener failed')
      }
    }
  }

  /** Open assignments per destination chain. */
  #openByChain(): Map<bigint, number> {
    const counts = new Map<bigint, number>()
    for (const a of this.#assigned.values()) counts.set(a.chainId, (counts.get(a.chainId) ?? 0) + 1)
    return counts
  }

  async start(): Promise<void> {
    const m = this.#m
    const me = m.account.address.toLowerCase() as Address
    // Track assignments (from committed blocks) and hand ours to the executor.
    this.#unsubscribe = m.pool.onChange((c) => {
      this.#assigned.delete(c.id)
      if (c.state !== 'assigned' || c.assignment === null) {
        if (c.state === 'filled' || c.state === 'expired' || c.state === 'failed')
          this.pendingFills.delete(c.id)
        return
      }
      const a = c.assignment
      this.#assigned.set(c.id, { chainId: a.chainId, executor: a.executor.toLowerCase() as Address })
      if (a.executor.toLowerCase() === me)
        void this.#execute(c.id, a.chainId, a.deadline, c.reason !== undefined)
    })
    if (this.opts.rollups.size > 0) {
      const announce = async (fill: SignedFill) => {
        this.#addPendingFill(fill)
        await this.#fillPublisher.add(fill)
      }
      const publishFill = m.wrapFillPublish?.(announce) ?? announce
      this.#executor = new Executor(
        {
          rollupConfirmations: new Map(m.genesis.rollups.map((r) => [Number(r.chainId), r.confirmations])),
          ...this.opts.executor,
          rollups: this.opts.rollups,
        },
        {
          store: m.store,
          account: m.account,
          log: m.log.child({ module: 'executor' }),
          registry: m.registry,
          networkId: m.genesis.networkId,
          publishFill,
        },
      )
      // A restart finishes what a crash interrupted, checking the chain before any resend.
      void this.#executor.recover().catch((err) => m.log.error({ err }, 'executor recovery failed'))
      const contracts = settlementContracts(m.genesis.rollups)
      this.#settlement = new SettlementFlow({
        contracts,
        rpc: this.opts.rollups,
        executor: this.#executor,
        log: m.log.child({ module: 'settlement' }),
      })
      const finality = new Map(m.genesis.rollups.map((r) => [BigInt(r.chainId), BigInt(r.confirmations)]))
      const flow = this.#settlement
      this.#relay = new FillRelay(
        {},
        {
          client: (c) => flow.reader(c),
          settler: (c) => flow.settlerOf(c),
          confirmations: (c) => finality.get(c) ?? 0n,
          account: m.account,
          networkId: m.genesis.networkId,
          publish: publishFill,
          log: m.log.child({ module: 'fill-relay' }),
        },
      )
      for (const r of m.genesis.rollups)
        if (r.settlement === undefined)
          m.log.warn(
            { chainId: String(r.chainId), name: r.name },
            'rollup without settlement contracts: its fills are paid by the executor and nothing is escrowed',
          )
      this.#monitor = new HealthMonitor(
        { ...this.opts.monitor, rollups: this.opts.rollups },
        {
          log: m.log.child({ module: 'health' }),
          registry: m.registry,
          account: m.account,
          networkId: m.genesis.networkId,
          publish: async (report) => {
            this.aggregator.add(report)
            // Outside the set (a full node, a candidate before its boundary) the others REJECT the report
            // as NOT_VALIDATOR, and their peer scores would soon cut this node off the gossip.
            if (this.#powers().has(me)) await m.p2p.publish('health', report)
          },
        },
      )
      this.#monitor.start()
      this.#inventory = new InventoryMonitor(
        { rollups: this.opts.rollups },
        {
          address: m.account.address,
          tokens: m.inventoryTokens ?? (() => []),
          log: m.log.child({ module: 'inventory' }),
        },
      )
      this.#inventory.start()
    }
    this.#pruneTimer = setInterval(() => this.aggregator.prune(this.#now()), 5_000)
  }

  /**
   * Fills an assignment of ours. On a rollup with a settler, an order its settler records as filled
   * already (by an executor the intent moved away from, whose announcement was lost) is not filled again:
   * that fill is relayed (rollups/fill-relay.ts). Looked at before anything is sent for a re-assignment,
   * and after our fill failed (it reverts `AlreadyFilled`, or its gas estimate does) for any assignment.
   */
  async #execute(id: Hex, chainId: bigint, deadline: number, rerouted: boolean): Promise<void> {
    const ex = this.#executor
    if (ex === undefined) {
      this.#m.log.warn(
        { intent: id, chainId: chainId.toString() },
        'assigned to us but this node has no RPC for that rollup',
      )
      return
    }
    try {
      const rec = await this.#m.pool.get(id)
      if (rec === undefined) return
      const order = rec.intent.order
      const data = decodeOrderData(order.orderData)
      const flow = this.#settlement
      const settler = flow?.settlerOf(chainId)
      if (settler !== undefined && rerouted && (await ex.record(id))?.chainId !== chainId.toString()) {
        // A failed look is no reason not to fill: the settler refuses a second fill anyway.
        const relayed = await this.#relay!.relayIfFilled(id, chainId).catch(() => undefined)
        if (relayed !== undefined) return
      }
      // Escrow first: the output is paid only for an order whose input is held on its origin.
      await flow?.ensureOpened(id, rec.intent)
      if (settler !== undefined) await flow!.ensureAllowance(chainId, data.outputToken, data.outputAmount)
      // The open took a block or two: a re-assignment meanwhile means another executor fills it. Stop
      // before sending (a fill already on record is carried on by recover(), never abandoned mid-way).
      const now = this.#assigned.get(id)
      const me = this.#m.account.address.toLowerCase()
      if (
        (now === undefined || now.executor !== me || now.chainId !== chainId) &&
        (await ex.record(id)) === undefined
      ) {
        this.#m.log.info({ intent: id }, 're-assigned before its fill was sent: not filling')
        return
      }
      await ex.execute({
        intentId: id,
        chainId,
        recipient: data.recipient,
        outputToken: data.outputToken,
        outputAmount: data.outputAmount,
        deadline,
        ...(settler === undefined ? {} : { settler, originData: originDataOf(order) }),
      })
    } catch (err) {
      if (err instanceof ExecutorError && (err.code === 'REVERTED' || err.code === 'SEND_FAILED')) {
        const relayed = await this.#relay?.relayIfFilled(id, chainId).catch((e: unknown) => {
          this.#m.log.warn({ intent: id, err: (e as Error).message }, 'relaying an unannounced fill failed')
          return undefined
        })
        if (relayed !== undefined) return
      }
      this.#m.log.warn({ intent: id, err: (err as Error).message }, 'fill failed')
    }
  }

  /**
   * Starts claiming this executor's repayments (rollups/claims.ts) from the node's committed blocks; call
   * {@link committed} for each new commit. Nothing happens on a node without RPCs or settlement contracts.
   */
  startClaims(
    source: SettlementSource,
    epochBlocks: number,
    head: () => bigint,
    opts: { rescan?: boolean } = {},
  ): void {
    const ex = this.#executor
    const contracts = settlementContracts(this.#m.genesis.rollups)
    if (ex === undefined || contracts.size === 0 || this.#claims !== undefined) return
    this.#claims = new ClaimRelayer({
      contracts,
      rpc: this.opts.rollups,
      executor: ex,
      source,
      epochBlocks,
      head,
      log: this.#m.log.child({ module: 'claims' }),
    })
    if (opts.rescan ?? true) this.#claims.start()
  }

  /** Block `height` is committed (claims of this executor's fills in it). */
  committed(height: bigint): void {
    this.#claims?.committed(height)
  }

  /** Claims this executor's leaves of block `height` still opened, once (the settlement sweep). */
  async claimAgain(height: bigint): Promise<void> {
    await this.#claims?.claimAgain(height)
  }

  /** This node's executor (its settlement jobs, e.g. relayed refunds); undefined before start or without RPCs. */
  get executor(): Executor | undefined {
    return this.#executor
  }

  /** This node's latest balances on the rollups it has an RPC for (none without RPCs). */
  balances(): Balance[] {
    return this.#inventory?.balances() ?? []
  }

  async stop(): Promise<void> {
    clearInterval(this.#pruneTimer)
    await this.#claims?.stop()
    await this.#settlement?.stop()
    await this.#inventory?.stop()
    this.#unsubscribe?.()
    this.#relay?.stop()
    // Fills confirmed but not yet published stay unannounced in the executor's records: recover() sends them.
    this.#fillPublisher.cancel(new Error('stopping'))
    await this.#monitor?.stop()
    await this.#executor?.stop()
  }

  /** The network's view of every rollup, from validators' fresh reports. */
  view(nowMs = this.#now()): HealthView {
    return this.aggregator.view(nowMs, this.#powers(), this.#m.genesis.rollups)
  }

  /** `GET /v1/rollups`; `surging`: the committed state's surging rollups (state/surge.ts `surgingChains`). */
  rows(surging?: ReadonlySet<bigint>): RollupRow[] {
    return rollupRows(this.view(), this.#m.genesis.rollups, this.#openByChain(), surging)
  }
}
