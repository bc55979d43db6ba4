import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { Counter, collectDefaultMetrics, Registry } from 'prom-client'
import type { Hex } from 'viem'
import { dashboardRoutes } from '../api/dashboard.ts'
import { intentRoutes, type SettlementView } from '../api/intents.ts'
import { DEFAULT_API_LIMITS } from '../api/limits.ts'
import { ApiServer, isLoopback } from '../api/server.ts'
import { settlementRoutes } from '../api/settlement.ts'
import { stakingRoutes } from '../api/staking.ts'
import type { GaslessCrossChainOrder } from '../codec/intent.ts'
import { ConfigError } from '../errors.ts'
import { loadKeys, type NodeKeys } from '../identity/keys.ts'
import { IntentPool } from '../mempool/pool.ts'
import { MempoolService } from '../mempool/service.ts'
import { P2PHost } from '../p2p/host.ts'
import { OpenedOrders } from '../rollups/opened-orders.ts'
import { RefundRelayer, refundOrigins } from '../rollups/refunds.ts'
import { RollupsService } from '../rollups/service.ts'
import { settlementContracts } from '../rollups/settlement.ts'
import { SettlementSweep, sweepTurnMs } from '../rollups/settlement-sweep.ts'
import { pickupThrough, SettlementWatch } from '../rollups/settlement-watch.ts'
import { StakingService } from '../staking/service.ts'
import { AssetTable } from '../state/assets.ts'
import { CRASH_ENV, parseCrashSpec } from '../state/crash-hook.ts'
import { type DataDirError, dataDirFault } from '../state/data-dir-fault.ts'
import { Store } from '../state/store.ts'
import { surgingChains } from '../state/surge.ts'
import { BYZANTINE_ENV, Byzantine } from './byzantine.ts'
import { ConsensusWiring } from './consensus.ts'
import { type Genesis, loadGenesis } from './genesis.ts'
import { DataDirLock } from './lock.ts'
import { createLogger } from './logger.ts'
import { DEFAULT_NODE_OPTIONS, type NodeOptions } from './options.ts'
import { ProbeService } from './probe.ts'
import { MemoryReclaim } from './reclaim.ts'
import { alarmedSet, registerStakingMetrics } from './staking-metrics.ts'
import { TOPICS, type TopicPayloads } from './topics.ts'

/** Something the composition root starts and stops. */
interface Component {
  readonly name: string
  stop(): Promise<void>
}

/**
 * The composition root: builds every component in order, starts them, and stops them in
 * reverse. `stop()` is idempotent and leaves no timer or socket behind.
 */
export class MurmurNode {
  readonly opts: NodeOptions
  readonly log: Logger
  readonly registry = new Registry()
  readonly abort = new AbortController()
  #started: Component[] = []
  #stopping: Promise<void> | undefined
  #keys: NodeKeys | undefined
  #genesis: Genesis | undefined
  #store: Store | undefined
  #p2p: P2PHost<TopicPayloads> | undefined
  #api: ApiServer | undefined
  #pool: IntentPool | undefined
  #mempool: MempoolService | undefined
  #rollups: RollupsService | undefined
  #consensus: ConsensusWiring | undefined
  #staking: StakingService | undefined
  readonly probes = new ProbeService(this.registry)
  /** Set by the first fatal error: the node is on its way out (exit 1). */
  #fatal: unknown

  constructor(options: Partial<NodeOptions> & Pick<NodeOptions, 'dataDir' | 'genesisPath'>, log?: Logger) {
    this.opts = { ...DEFAULT_NODE_OPTIONS, ...options }
    this.log = log ?? createLogger({ level: this.opts.logLevel, file: this.opts.logFile })
    collectDefaultMetrics({ register: this.registry, prefix: 'murmur_' })
  }

  get keys(): NodeKeys {
    if (this.#keys === undefined) throw new Error('node not started')
    return this.#keys
  }
  get genesis(): Genesis {
    if (this.#genesis === undefined) throw new Error('node not started')
    return this.#genesis
  }
  get store(): Store {
    if (this.#store === undefined) throw new Error('node not started')
    return this.#store
  }
  get p2p(): P2PHost<TopicPayloads> {
    if (this.#p2p === undefined) throw new Error('node not started')
    return this.#p2p
  }
  get pool(): IntentPool {
    if (this.#pool === undefined) throw new Error('node not started')
    return this.#pool
  }
  get mempool(): MempoolService {
    if (this.#mempool === undefined) throw new Error('node not started')
    return this.#mempool
  }
  get consensus(): ConsensusWiring {
    if (this.#consensus === undefined) throw new Error('node not started')
    return this.#consensus
  }
  get rollups(): RollupsService {
    if (this.#rollups === undefined) throw new Error('node not started')
    return this.#rollups
  }
  get staking(): StakingService {
    if (this.#staking === undefined) throw new Error('node not started')
    return this.#staking
  }
  /** The API's bound address (port resolved when 0 was asked). */
  get apiAddress(): { host: string; port: number } | undefined {
    return this.#api?.address
  }

  /** Head of the committed chain (height 0 and the genesis hash before the first block). */
  head(): { height: number; blockHash: string } {
    // Before consensus has loaded its head (p2p answers `status` from its start): height 0.
    if (this.#consensus === undefined || !this.#consensus.driver.ready)
      return { height: 0, blockHash: '0x' + '0'.repeat(64) }
    const h = this.#consensus.driver.head()
    return { height: Number(h.height), blockHash: h.hash }
  }

  async start(): Promise<void> {
    try {
      await this.#startAll()
    } catch (err) {
      await this.stop()
      // A data dir that cannot be written (full, read-only): one line naming it and the cause.
      throw dataDirFault(err, this.opts.dataDir, 'at start') ?? err
    }
  }

  /**
   * A failed durable write or a broken invariant: never carry on (STYLE.md). Stops the node and exits
   * 1, once. A data dir that cannot be written is said in one line on stderr (which dir, why, what to
   * do), without a stack: it is the operator's to fix, not a bug; the store is left as LevelDB left it
   * (every acknowledged write in it).
   */
  #fail(err: unknown, what: string): void {
    if (this.#fatal !== undefined) return
    const fault: DataDirError | undefined = dataDirFault(err, this.opts.dataDir, 'while writing')
    // Writes that fail because a normal stop closed the store are not faults.
    if (this.#stopping !== undefined && fault === undefined) return
    this.#fatal = fault ?? err
    if (fault !== undefined) {
      this.log.fatal({ code: fault.code, dataDir: this.opts.dataDir }, fault.message)
      process.stderr.write(`murmur: ${fault.code}: ${fault.message}\n`)
    } else this.log.fatal({ err }, what)
    void this.stop().finally(() => process.exit(1))
  }

  async #startAll(): Promise<void> {
    const o = this.opts
    if (o.admin && o.api !== undefined && !isLoopback(o.api.host)) {
      throw new ConfigError('BAD_OPTION', `--admin needs a loopback --api address, not ${o.api.host}`)
    }
    if (o.byzantine.size > 0 && process.env[BYZANTINE_ENV] !== '1')
      throw new ConfigError('BAD_OPTION', `byzantine modes are test-only: set ${BYZANTINE_ENV}=1`)
    // Test-only crash points (crash-hook.ts): a bad MURMUR_TEST_CRASH_AT refuses to start.
    try {
      parseCrashSpec(process.env[CRASH_ENV] ?? '')
    } catch (err) {
      throw new ConfigError('BAD_OPTION', (err as Error).message)
    }
    await mkdir(o.dataDir, { recursive: true, mode: 0o700 })
    const lock = new DataDirLock(o.dataDir)
    await lock.acquire()
    this.#started.push({ name: 'lock', stop: () => lock.release() })

    this.#genesis = await loadGenesis(o.genesisPath)
    this.#keys = await loadKeys(o.dataDir, { create: true })

    const store = new Store(join(o.dataDir, 'db'))
    await store.open()
    store.onWriteFailure((err) => {
      // Only a data dir that cannot be written stops the node from here; other failed writes are their
      // caller's to handle (the consensus and pool ones stop it through onFatal).
      if (dataDirFault(err, o.dataDir, '') !== undefined) this.#fail(err, 'store write failed')
    })
    this.#store = store
    this.#started.push({ name: 'store', stop: () => store.close() })

    const compactions = new Counter({
      name: 'murmur_memory_compactions_total',
      help: 'Major GCs the node asked for once bans stopped (node/reclaim.ts; needs --expose-gc)',
      registers: [this.registry],
    })
    const reclaim = new MemoryReclaim(
      {},
      { log: this.log.child({ module: 'memory' }), onReclaim: () => compactions.inc() },
    )
    this.#started.push({ name: 'memory reclaim', stop: async () => reclaim.stop() })
    const p2p = new P2PHost(
      {
        ...o.p2p,
        networkId: this.#genesis.networkId,
        listen: o.listen,
        peerManager: { ...o.p2p.peerManager, bootstrap: o.bootstrap },
      },
      {
        topics: TOPICS,
        privateKey: this.#keys.nodeKey,
        store,
        log: this.log.child({ module: 'p2p' }),
        registry: this.registry,
        head: () => this.head(),
        // Validators of the current set (genesis until consensus has its state) are graylisted by a low
        // score, never banned (bans.ts).
        isProtected: (peer) => {
          const app = this.#consensus?.app
          const validators = app?.ready === true ? app.state.validators : (this.#genesis?.validators ?? [])
          return validators.some((v) => v.peerId === peer)
        },
        onBan: () => reclaim.banned(),
      },
    )
    const pool = await IntentPool.open(store, o.mempool.pool, {
      log: this.log.child({ module: 'mempool' }),
      registry: this.registry,
      onFatal: (err) => this.#fail(err, 'intent pool write failed; stopping the node'),
    })
    this.#pool = pool
    this.#started.push({ name: 'pool', stop: () => pool.stop() })
    const assets = new AssetTable(
      this.#genesis.assets,
      this.#genesis.rollups.map((r) => BigInt(r.chainId)),
    )
    // Proof of the orders users open on chain (unsigned intents): the mempool's and the blocks' check.
    const opened = OpenedOrders.connect(this.#genesis.rollups, o.rollups)
    this.#started.push({ name: 'opened orders', stop: () => opened.close() })
    const verifyOpened = (id: Hex, order: GaslessCrossChainOrder) => opened.verify(id, order)
    const mempool = new MempoolService(o.mempool.service, {
      pool,
      p2p,
      log: this.log.child({ module: 'mempool' }),
      registry: this.registry,
      knownChainIds: new Set(this.#genesis.rollups.map((r) => BigInt(r.chainId))),
      assets,
      settlers: new Map([...settlementContracts(this.#genesis.rollups)].map(([c, x]) => [c, x.settler])),
      // Before consensus has loaded its state (a restart) no pool is known to be alarmed.
      alarmedChainIds: () =>
        this.#consensus?.app.ready === true ? alarmedSet(this.#consensus.app.state) : new Set(),
      verifyOpened,
      maxClockSkewSec: this.#genesis.params.maxClockSkewSec,
    })
    this.#mempool = mempool

    // TEST ONLY (--byzantine): a validator that misbehaves on purpose, at a few seams (node/byzantine.ts).
    const byzantine =
      o.byzantine.size === 0
        ? undefined
        : new Byzantine(o.byzantine, {
            account: this.#keys.validator,
            networkId: this.#genesis.networkId,
            targetChainId: BigInt(Math.min(...this.#genesis.rollups.map((r) => r.chainId))),
            log: this.log,
          })
    const rollups = new RollupsService(
      { rollups: o.rollups },
      {
        genesis: this.#genesis,
        store,
        pool,
        p2p: byzantine === undefined ? p2p : byzantine.wrapHealthHost(p2p),
        account: this.#keys.validator,
        log: this.log.child({ module: 'rollups' }),
        registry: this.registry,
        inventoryTokens: (chainId) => assets.inventoryTokens(chainId),
        // Gossip starts before consensus has loaded its state: until then, the genesis set.
        validators: () => (this.#consensus?.app.ready ? this.#consensus.app.state.consensusSet : undefined),
        ...(byzantine === undefined ? {} : { wrapFillPublish: (p) => byzantine.wrapFillPublish(p) ?? p }),
      },
    )
    this.#rollups = rollups

    const staking = new StakingService(
      {},
      {
        networkId: this.#genesis.networkId,
        // Called only once consensus exists (gossip and the API start after it).
        state: () => this.consensus.app.state,
        publish: async (move) => {
          await p2p.publish('stake', move)
        },
        log: this.log.child({ module: 'staking' }),
        registry: this.registry,
      },
    )
    this.#staking = staking

    registerStakingMetrics(this.registry, () => this.consensus.app.state)
    const consensus = new ConsensusWiring(o.consensus, {
      genesis: this.#genesis,
      store,
      walJournal: join(o.dataDir, 'wal-journal'),
      pool,
      p2p,
      rollups,
      staking,
      account: this.#keys.validator,
      rpc: o.rollups,
      verifyOpened,
      autoUnjail: o.autoUnjail,
      ...(byzantine === undefined ? {} : { byzantine }),
      log: this.log.child({ module: 'consensus' }),
      registry: this.registry,
      onFatal: (err) => this.#fail(err, 'consensus stopped; stopping the node'),
    })
    this.#consensus = consensus

    this.#p2p = p2p
    this.#started.push({ name: 'p2p', stop: () => p2p.stop() })
    await p2p.start({
      probe: this.probes,
      intents: mempool.topicHandler,
      health: rollups.healthHandler,
      fills: rollups.fillsHandler,
      consensus: consensus.topicHandler,
      stake: staking.topicHandler,
    })
    this.#started.push({ name: 'mempool', stop: () => mempool.stop() })
    await mempool.start()
    pool.start()
    this.#started.push({ name: 'rollups', stop: () => rollups.stop() })
    await rollups.start()
    this.#started.push({ name: 'consensus', stop: () => consensus.stop() })
    await consensus.start()
    // What the origin settlers say of each order: the API's `settlement` and its `intent` events.
    const contracts = settlementContracts(this.#genesis.rollups)
    const watch = new SettlementWatch(
      {},
      {
        contracts,
        rpc: o.rollups,
        store,
        log: this.log.child({ module: 'orders' }),
        // Orders users open on chain enter the mempool from their `Open` event.
        onOpen: pickupThrough(mempool, this.log.child({ module: 'orders' })),
      },
    )
    watch.start()
    this.#started.push({ name: 'settlement watch', stop: () => watch.stop() })
    const settlementView: SettlementView = {
      of: async (rec) => {
        if (!contracts.has(rec.intent.order.originChainId)) return null
        const s = await watch.get(rec.id)
        const filled = rec.history.find((h) => h.state === 'filled')
        return {
          state: s?.state === 'opened' && rec.state === 'filled' ? 'filled' : (s?.state ?? 'none'),
          openTx: s?.openTx ?? null,
          fillTx: rec.fill?.txHash ?? null,
          claimTx: s?.claimTx ?? null,
          refundTx: s?.refundTx ?? null,
          height: filled?.height?.toString() ?? null,
        }
      },
      onChange: (listener) =>
        watch.onChange((id, s) =>
          listener(id, {
            state: s.state,
            openTx: s.openTx,
            fillTx: null,
            claimTx: s.claimTx,
            refundTx: s.refundTx,
            height: null,
          }),
        ),
    }
    // Repayments of this executor's fills, claimed as their blocks commit (TEST ONLY no-fast-settlement:
    // not as they commit, nor at start; the sweep below does it).
    const fast = byzantine?.fastSettlement ?? true
    rollups.startClaims(
      consensus.settlementSource(),
      this.#genesis.params.epochBlocks,
      () => consensus.app.state.height,
      { rescan: fast },
    )
    if (fast) consensus.app.onCommit((e) => rollups.committed(e.height))

    // Validators relay the refunds of committed blocks (rollups/refunds.ts) through the executor.
    const { origins, close } = refundOrigins(this.#genesis.rollups, o.rollups)
    const refunds = new RefundRelayer(
      {
        blockIntervalMs: this.#genesis.params.blockIntervalMs,
        refundGraceSec: this.#genesis.params.refundGraceSec,
      },
      {
        self: this.#keys.validator.address,
        source: consensus.settlementSource(),
        origins,
        transact: (job) => rollups.executor?.transact(job),
        epochBlocks: this.#genesis.params.epochBlocks,
        log: this.log.child({ module: 'refunds' }),
      },
    )
    const unsubscribeRefunds = consensus.app.onCommit((e) => {
      if (!consensus.driver.syncing && fast) refunds.onCommit(e)
    })
    // The backstop: an escrow its expiry block did not refund is refunded by refundExpired after grace.
    const unsubscribeExpired = pool.onChange((c) => {
      if (c.state !== 'expired' || !consensus.app.ready || !fast) return
      void pool.get(c.id).then((rec) => {
        if (rec === undefined) return
        refunds.onExpired({
          id: c.id,
          originChainId: rec.intent.order.originChainId,
          fillDeadlineSec: BigInt(rec.intent.order.fillDeadline),
          consensusSet: consensus.app.state.consensusSet,
        })
      })
    })
    // The backstop of both: escrows still opened after the fast paths are looked at again from the store.
    const self = this.#keys.validator.address
    const sweep = new SettlementSweep(
      { ...o.sweep, refundGraceSec: this.#genesis.params.refundGraceSec },
      {
        openEscrows: (after, limit) => watch.openEscrows(after, limit),
        intent: (id) => pool.get(id),
        claim: (height) => rollups.claimAgain(height),
        relayRefunds: (height) => refunds.relay(height),
        refundExpired: (id, chainId) => refunds.refundExpired(id, chainId),
        turnMs: () => sweepTurnMs(consensus.app.state.consensusSet.keys(), self),
        busy: () => consensus.driver.syncing || !consensus.app.ready,
        log: this.log.child({ module: 'sweep' }),
      },
    )
    sweep.start()
    this.#started.push({
      name: 'refunds',
      stop: async () => {
        unsubscribeRefunds()
        unsubscribeExpired()
        await sweep.stop()
        await refunds.stop()
        await close()
      },
    })

    if (o.api !== undefined) {
      const api = new ApiServer(
        { ...o.api, admin: o.admin, limits: o.apiLimits },
        {
          node: this,
          log: this.log.child({ module: 'api' }),
          routes: [
            intentRoutes(
              mempool,
              pool,
              (listener) =>
                consensus.app.onCommit((e) =>
                  listener({
                    height: e.height.toString(),
                    hash: e.hash,
                    round: e.block.round,
                    assignments: e.block.assignments.length,
                    fills: e.block.fills.length,
                  }),
                ),
              settlementView,
              { ...DEFAULT_API_LIMITS, ...o.apiLimits },
            ),
            (app) => app.get('/v1/rollups', async () => rollups.rows(surgingChains(consensus.app.state))),
            consensus.routes(),
            settlementRoutes(consensus.settlementSource()),
            stakingRoutes(staking, () => consensus.app.state),
            ...(o.dashboard
              ? [
                  dashboardRoutes({
                    intentEvents: (listener) => {
                      const offPool = pool.onChange((c) => listener(c))
                      const offSettlement = settlementView.onChange((id, st) =>
                        listener({ id, settlement: st }),
                      )
                      return () => {
                        offPool()
                        offSettlement()
                      }
                    },
                    peerHeight: (peer) => consensus.driver.peerHeight(peer),
                  }),
                ]
              : []),
          ],
        },
      )
      this.#api = api
      this.#started.push({ name: 'api', stop: () => api.stop() })
      await api.start()
    }
    this.log.info(
      {
        peerId: this.#keys.peerId,
        validator: this.#keys.validator.address.toLowerCase(),
        networkId: this.#genesis.networkId,
        listen: p2p.libp2p.getMultiaddrs().map(String),
        api: this.#api?.url,
      },
      'node started',
    )
  }

  /** Stops every started component in reverse order; safe to call more than once. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.abort.abort()
      for (const c of this.#started.reverse()) {
        try {
          await c.stop()
        } catch (err) {
          // After a data dir fault every write fails: said once already, no stack for each component.
          if (this.#fatal !== undefined && dataDirFault(err, this.opts.dataDir, '') !== undefined)
            this.log.warn({ component: c.name, error: (err as Error).message }, 'stop could not write')
          else this.log.error({ component: c.name, err }, 'stop failed')
        }
      }
      this.#started = []
      this.log.info('node stopped')
      this.log.flush?.()
    })()
    return this.#stopping
  }

  /** `GET /v1/status` */
  status() {
    const head = this.head()
    return {
      peerId: this.keys.peerId,
      validator: this.keys.validator.address.toLowerCase(),
      networkId: this.genesis.networkId,
      height: head.height,
      blockHash: head.blockHash,
      peers: this.p2p.libp2p.getPeers().length,
      syncing: this.#consensus?.driver.syncing ?? false,
      // Where the height being decided is: diagnostics for a network that does not commit.
      round: this.#consensus?.driver.round ?? 0,
      step: this.#consensus?.driver.step ?? 'propose',
      version: this.p2p.status().version,
      listen: this.p2p.libp2p.getMultiaddrs().map(String),
    }
  }
}
