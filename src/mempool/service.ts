import type { PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'
import { Counter, Histogram, type Registry } from 'prom-client'
import type { Address, Hex } from 'viem'
import {
  type GaslessCrossChainOrder,
  intentId,
  NO_SIGNATURE,
  type SignedIntent,
  signedIntentFromJson,
} from '../codec/intent.ts'
import { RecoverPool } from '../crypto/recover.ts'
import { PublishBatcher } from '../p2p/batcher.ts'
import type { P2PHost, TopicHandler } from '../p2p/host.ts'
import { ACCEPT, ignore, reject, type ValidationResult } from '../p2p/validation.ts'
import type { AssetTable } from '../state/assets.ts'
import type { IntentPool, PoolRejection } from './pool.ts'
import {
  type IntentRejectCode,
  type IntentValidation,
  type OpenedVerdict,
  type ValidateIntentContext,
  type ValidIntent,
  validateIntent,
  validateIntentJson,
} from './validate.ts'
import {
  MEMPOOL_GET_MAX,
  MEMPOOL_GET_PROTOCOL,
  MEMPOOL_IDS_PAGE,
  MEMPOOL_IDS_PROTOCOL,
  packIds,
  unpackIds,
} from './wire.ts'

export interface MempoolServiceOptions {
  /** Intents accepted over HTTP but not yet durable beyond this: 503 with Retry-After. */
  maxInFlight: number
  /** Gossip batching window: intents accepted within it leave in one message, milliseconds. */
  publishWindowMs: number
  /** Most intents in one gossip message. */
  maxPublishBatch: number
  /**
   * Reconcile with one peer this often, milliseconds, taking the connected peers in turn (and with every
   * new peer, again after {@link CONNECT_RETRY_MS} when that first pull fails).
   */
  reconcileIntervalMs: number
  /** Worker threads for signature recovery (0 = recover on the main thread). */
  recoverWorkers: number
}

/** A first pull from a new peer that failed is tried again after this, ms. */
export const CONNECT_RETRY_MS = 2_000

export const DEFAULT_MEMPOOL_SERVICE_OPTIONS: MempoolServiceOptions = {
  maxInFlight: 20_000,
  publishWindowMs: 10,
  maxPublishBatch: 512,
  reconcileIntervalMs: 15_000,
  recoverWorkers: 1,
}

export interface MempoolServiceModules {
  pool: IntentPool
  /** The host, with the topic this service publishes on. */
  p2p: P2PHost<{ intents: SignedIntent[] }>
  log: Logger
  registry: Registry
  knownChainIds: ReadonlySet<bigint>
  /** The genesis asset table (ambiguous outputs and thin spreads are refused). */
  assets?: AssetTable
  /** Settlers of the rollups with settlement contracts, by chain id (lowercase). */
  settlers?: ReadonlyMap<bigint, Address>
  /** Pools alarmed in the committed state (read at each submission). */
  alarmedChainIds?: () => ReadonlySet<bigint>
  /**
   * Whether an unsigned intent's order is opened on its origin settler, on this node's RPC
   * (rollups/opened-orders.ts). Absent: unsigned intents are UNVERIFIED.
   */
  verifyOpened?: (id: Hex, order: GaslessCrossChainOrder) => Promise<OpenedVerdict>
  maxClockSkewSec: number
  now?: () => number
}

/** Codes that prove the relaying peer did not validate: its message is REJECTed. */
const PROVABLY_BAD: ReadonlySet<IntentRejectCode> = new Set([
  'MALFORMED',
  'BAD_SIGNATURE',
  'UNKNOWN_CHAIN',
  'TOO_LARGE',
  // The asset table is the genesis's: every node decides these alike.
  'UNPROFITABLE',
  'AMBIGUOUS_OUTPUT',
  'UNSETTLEABLE',
])

export type SubmitAnswer =
  | { status: 202 | 200; body: { id: Hex } }
  | { status: 400; body: { error: { code: IntentRejectCode; message: string } } }
  | {
      status: 503
      body: { error: { code: 'OVERLOADED' | 'POOL_FULL' | 'USER_LIMIT'; message: string } }
      retryAfterSec: number
    }

/**
 * The intent path of a node: HTTP submissions and gossip in, durable pool, gossip out, and
 * reconciliation with peers (`mempool-ids` / `mempool-get`) so no pending intent stays on one side
 * of a healed partition.
 *
 * Writes are group-committed: intents validated while a LevelDB batch is in flight wait for the next
 * batch, so under load one write carries many intents. Nothing is answered 202 or relayed before its
 * batch is durable.
 */
export class MempoolService {
  readonly opts: MempoolServiceOptions
  readonly #m: MempoolServiceModules
  readonly #recoverPool: RecoverPool | undefined
  #inFlight = 0
  #writeQueue: Array<{
    intent: ValidIntent
    resolve: (r: 'added' | 'known' | PoolRejection) => void
    reject: (e: Error) => void
  }> = []
  #writing = false
  readonly #publisher: PublishBatcher<SignedIntent>
  #reconcileTimer: NodeJS.Timeout | undefined
  #reconciling = new Set<string>()
  #stopped = false
  readonly #metrics
  /** The connected peer pulled last by the periodic reconciliation (peers are taken in id order). */
  #lastPulled = ''
  readonly #retries = new Set<NodeJS.Timeout>()
  readonly #onConnect = (evt: CustomEvent<PeerId>) => {
    // A peer that just started may not serve mempool-ids yet (it registers after its host starts): its
    // pool, with what it acknowledged before a crash, is pulled again a moment later.
    const peer = evt.detail
    void this.reconcileWith(peer).catch(() => {
      if (this.#stopped) return
      const t = setTimeout(() => {
        this.#retries.delete(t)
        void this.reconcileWith(peer).catch(() => {})
      }, CONNECT_RETRY_MS)
      t.unref()
      this.#retries.add(t)
    })
  }

  constructor(options: Partial<MempoolServiceOptions>, modules: MempoolServiceModules) {
    this.opts = { ...DEFAULT_MEMPOOL_SERVICE_OPTIONS, ...options }
    this.#m = modules
    this.#recoverPool =
      this.opts.recoverWorkers > 0 ? new RecoverPool({ size: this.opts.recoverWorkers }) : undefined
    this.#publisher = new PublishBatcher(
      { windowMs: this.opts.publishWindowMs, max: this.opts.maxPublishBatch },
      async (batch) => {
        this.#metrics.publishBatch.observe(batch.length)
        await this.#m.p2p.publish('intents', batch).catch((err: Error) => {
          this.#m.log.warn({ err: err.message, intents: batch.length }, 'intent publish failed')
        })
      },
    )
    const r = modules.registry
    this.#metrics = {
      submitted: new Counter({
        name: 'murmur_mempool_submitted_total',
        help: 'Intents received, by source (api, chain, gossip, reconcile) and outcome (added, known, or a reject code)',
        labelNames: ['source', 'outcome'] as const,
        registers: [r],
      }),
      writeBatch: new Histogram({
        name: 'murmur_mempool_write_batch_intents',
        help: 'Intents per durable write',
        buckets: [1, 4, 16, 64, 256, 1024, 4096],
        registers: [r],
      }),
      publishBatch: new Histogram({
        name: 'murmur_mempool_publish_batch_intents',
        help: 'Intents per gossip message published',
        buckets: [1, 4, 16, 64, 256, 1024],
        registers: [r],
      }),
    }
  }

  #now(): number {
    return (this.#m.now ?? Date.now)()
  }

  #ctx(): ValidateIntentContext {
    const pool = this.#m.pool
    const ctx: ValidateIntentContext = {
      nowSec: Math.floor(this.#now() / 1000),
      maxClockSkewSec: this.#m.maxClockSkewSec,
      knownChainIds: this.#m.knownChainIds,
      isNonceUsed: (user, nonce) => pool.isNonceUsed(user, nonce),
      ...(this.#m.assets === undefined ? {} : { assets: this.#m.assets }),
      ...(this.#m.settlers === undefined ? {} : { settlerOf: (c: bigint) => this.#m.settlers!.get(c) }),
      ...(this.#m.verifyOpened === undefined ? {} : { verifyOpened: this.#m.verifyOpened }),
      ...(this.#m.alarmedChainIds === undefined ? {} : { alarmedChainIds: this.#m.alarmedChainIds() }),
    }
    const rp = this.#recoverPool
    if (rp !== undefined) ctx.recover = (digest, sig) => rp.recover(digest, sig)
    return ctx
  }

  async start(): Promise<void> {
    const p2p = this.#m.p2p
    await p2p.handle(MEMPOOL_IDS_PROTOCOL, (req) => {
      const after = req.after.length === 0 ? '' : unpackIds(req.after)[0]!
      const ids = this.#m.pool
        .pendingIds()
        .filter((id) => id > after)
        .sort()
      return { ids: packIds(ids.slice(0, MEMPOOL_IDS_PAGE)), more: ids.length > MEMPOOL_IDS_PAGE }
    })
    await p2p.handle(MEMPOOL_GET_PROTOCOL, async (req) => {
      const out: SignedIntent[] = []
      for (const id of unpackIds(req.ids)) {
        const rec = await this.#m.pool.get(id)
        if (rec !== undefined) out.push(rec.intent)
      }
      return out
    })
    p2p.libp2p.addEventListener('peer:connect', this.#onConnect)
    this.#reconcileTimer = setInterval(() => {
      // In turn, not at random: every peer's pool is pulled within (peers × interval).
      const peers = p2p.libp2p.getPeers().sort((a, b) => (a.toString() < b.toString() ? -1 : 1))
      const peer = peers.find((p) => p.toString() > this.#lastPulled) ?? peers[0]
      if (peer === undefined) return
      this.#lastPulled = peer.toString()
      void this.reconcileWith(peer).catch(() => {})
    }, this.opts.reconcileIntervalMs)
  }

  async stop(): Promise<void> {
    this.#stopped = true
    clearInterval(this.#reconcileTimer)
    for (const t of this.#retries) clearTimeout(t)
    this.#retries.clear()
    this.#publisher.cancel(new Error('stopped'))
    this.#m.p2p.libp2p.removeEventListener('peer:connect', this.#onConnect)
    await this.#recoverPool?.close()
  }

  /** `POST /v1/intents`: validate, persist, relay. Never throws for bad input. */
  async submitJson(body: unknown): Promise<SubmitAnswer> {
    return this.#submit(
      'api',
      (ctx) => validateIntentJson(body, ctx),
      () => signedIntentFromJson(body).order,
    )
  }

  /**
   * An order its user opened on chain, as the settlement watch read it from the origin settler's `Open`
   * event: validated as an unsigned intent (its proof is `orderStatus` on this node's RPC), persisted and
   * gossiped like a submitted one. Every node sees the event, so `known` (200) is the usual answer.
   */
  async submitOpened(order: GaslessCrossChainOrder): Promise<SubmitAnswer> {
    const intent: SignedIntent = { order, signature: NO_SIGNATURE }
    // Held already (the usual case): no RPC read for it.
    const id = intentId(order)
    if (this.#m.pool.has(id)) {
      this.#metrics.submitted.inc({ source: 'chain', outcome: 'known' })
      return { status: 200, body: { id } }
    }
    return this.#submit(
      'chain',
      (ctx) => validateIntent(intent, ctx),
      () => order,
    )
  }

  async #submit(
    source: 'api' | 'chain',
    validate: (ctx: ValidateIntentContext) => Promise<IntentValidation>,
    orderOf: () => GaslessCrossChainOrder,
  ): Promise<SubmitAnswer> {
    if (this.#inFlight >= this.opts.maxInFlight || this.#stopped) {
      this.#metrics.submitted.inc({ source, outcome: 'OVERLOADED' })
      return {
        status: 503,
        body: { error: { code: 'OVERLOADED', message: 'intent queue is full, retry later' } },
        retryAfterSec: 1,
      }
    }
    this.#inFlight++
    try {
      const v = await validate(this.#ctx())
      if (!v.ok) {
        if (v.code === 'NONCE_USED') {
          // The same intent sent again uses its own nonce: that is idempotence, not a replay.
          const id = intentId(orderOf())
          if (this.#m.pool.has(id)) {
            this.#metrics.submitted.inc({ source, outcome: 'known' })
            return { status: 200, body: { id } }
          }
        }
        this.#metrics.submitted.inc({ source, outcome: v.code })
        return { status: 400, body: { error: { code: v.code, message: v.message } } }
      }
      if (this.#m.pool.has(v.id)) {
        this.#metrics.submitted.inc({ source, outcome: 'known' })
        return { status: 200, body: { id: v.id } }
      }
      const r = await this.#persist(v)
      if (typeof r !== 'string') {
        // Refused by the pool: said so, never a 200 for an intent the pool does not hold.
        this.#metrics.submitted.inc({ source, outcome: r.code })
        if (r.code === 'NONCE_USED') {
          return { status: 400, body: { error: { code: 'NONCE_USED', message: r.message } } }
        }
        return { status: 503, body: { error: { code: r.code, message: r.message } }, retryAfterSec: 5 }
      }
      this.#metrics.submitted.inc({ source, outcome: r })
      if (r === 'added') this.#relay({ order: v.order, signature: v.signature })
      return { status: r === 'added' ? 202 : 200, body: { id: v.id } }
    } catch (err) {
      if ((err as { code?: string }).code === 'OVERLOADED') {
        return {
          status: 503,
          body: { error: { code: 'OVERLOADED', message: 'signature queue is full' } },
          retryAfterSec: 1,
        }
      }
      throw err
    } finally {
      this.#inFlight--
    }
  }

  /** Validates a batch from a peer (gossip or reconciliation); persists the new ones. */
  async #ingest(
    batch: SignedIntent[],
    source: 'gossip' | 'reconcile',
  ): Promise<ValidationResult & { added?: number }> {
    const ctx = this.#ctx()
    const fresh: Array<{ intent: SignedIntent; id: Hex }> = []
    const seen = new Set<string>()
    // Dedupe by content id before any signature check.
    for (const intent of batch) {
      let id: Hex
      try {
        id = intentId(intent.order)
      } catch {
        this.#metrics.submitted.inc({ source, outcome: 'MALFORMED' })
        return reject('MALFORMED')
      }
      if (seen.has(id) || this.#m.pool.has(id)) continue
      seen.add(id)
      fresh.push({ intent, id })
    }
    if (fresh.length === 0) {
      this.#metrics.submitted.inc({ source, outcome: 'known' }, batch.length)
      return ignore('DUPLICATE')
    }
    const results = await Promise.all(fresh.map((f) => validateIntent(f.intent, ctx, f.id)))
    const bad = results.find((r) => !r.ok && PROVABLY_BAD.has(r.code))
    if (bad !== undefined && !bad.ok) {
      this.#metrics.submitted.inc({ source, outcome: bad.code })
      return reject(bad.code)
    }
    const valid = results.filter((r): r is ValidIntent => r.ok)
    for (const r of results) if (!r.ok) this.#metrics.submitted.inc({ source, outcome: r.code })
    if (valid.length === 0) return ignore('NOTHING_NEW')
    const added = await Promise.all(valid.map((v) => this.#persist(v)))
    const n = added.filter((a) => a === 'added').length
    this.#metrics.submitted.inc({ source, outcome: 'added' }, n)
    for (const a of added) if (typeof a !== 'string') this.#metrics.submitted.inc({ source, outcome: a.code })
    return n > 0 ? { ...ACCEPT, added: n } : ignore('DUPLICATE')
  }

  /** The `intents` topic handler. Durable before ACCEPT, so what we relay survives a crash. */
  readonly topicHandler: TopicHandler<SignedIntent[]> = {
    validate: async (batch) => {
      const r = await this.#ingest(batch, 'gossip')
      return r.result === 'ACCEPT' ? ACCEPT : r
    },
  }

  /** Group commit: one LevelDB batch for everything validated while the previous write ran. */
  #persist(intent: ValidIntent): Promise<'added' | 'known' | PoolRejection> {
    return new Promise((resolve, reject) => {
      this.#writeQueue.push({ intent, resolve, reject })
      if (!this.#writing) void this.#drainWrites()
    })
  }

  async #drainWrites(): Promise<void> {
    this.#writing = true
    try {
      while (this.#writeQueue.length > 0) {
        // Let the current tick add to the batch.
        await new Promise((r) => setImmediate(r))
        const jobs = this.#writeQueue.splice(0, 4096)
        this.#metrics.writeBatch.observe(jobs.length)
        try {
          const results = await this.#m.pool.addMany(jobs.map((j) => j.intent))
          for (const [i, j] of jobs.entries()) j.resolve(results[i]!)
        } catch (err) {
          // A failed durable write stops the node (STYLE.md); callers see the error.
          this.#m.log.fatal({ err }, 'intent pool write failed')
          for (const j of jobs) j.reject(err as Error)
        }
      }
    } finally {
      this.#writing = false
    }
  }

  #relay(intent: SignedIntent): void {
    // Not lost when the publish fails: peers reconcile pools (mempool-ids / mempool-get).
    this.#publisher.add(intent).catch(() => {})
  }

  /** Fetches the peer's pending ids, then the intents we lack. Returns how many were added. */
  async reconcileWith(peer: PeerId): Promise<number> {
    const key = peer.toString()
    if (this.#reconciling.has(key) || this.#stopped) return 0
    this.#reconciling.add(key)
    try {
      const rr = this.#m.p2p.reqresp
      const missing: Hex[] = []
      let after: Uint8Array = new Uint8Array()
      for (let page = 0; page < 64; page++) {
        const res = await rr.request(peer, MEMPOOL_IDS_PROTOCOL, { after })
        const ids = unpackIds(res.ids)
        for (const id of ids) if (!this.#m.pool.has(id)) missing.push(id)
        if (!res.more || ids.length === 0) break
        after = packIds([ids[ids.length - 1]!])
      }
      let added = 0
      for (let i = 0; i < missing.length; i += MEMPOOL_GET_MAX) {
        const batch = await rr.request(peer, MEMPOOL_GET_PROTOCOL, {
          ids: packIds(missing.slice(i, i + MEMPOOL_GET_MAX)),
        })
        const r = await this.#ingest(batch, 'reconcile')
        if (r.result === 'REJECT') {
          this.#m.p2p.penalize(key, `mempool-get:${r.code}`)
          break
        }
        added += r.added ?? 0
      }
      if (added > 0) this.#m.log.info({ peer: key, added }, 'reconciled mempool')
      return added
    } finally {
      this.#reconciling.delete(key)
    }
  }
}
