/**
 * The intent pool: one persisted {@link IntentRecord} per intent in LevelDB, its secondary indexes
 * written in the same atomic batch, and the in-memory views that must answer synchronously (`has`,
 * `isNonceUsed`, counts, the pending set, the eviction heap), loaded at open with bounded range reads.
 *
 * Every mutation runs under one lock: plan against the in-memory views, write one `store.batch()`,
 * then resolve and emit change events. The in-memory views run ahead of the disk only while that
 * batch is being written (so a concurrent duplicate is already `has`); a failed write rolls them back
 * and throws StorageError, which stops the node (STYLE.md: a failed durable write never carries on).
 */
import type { Logger } from 'pino'
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { Address, Hex } from 'viem'
import { type BatchOp, prefixEnd, type Store } from '../state/store.ts'
import { type EvictionEntry, EvictionQueue, spreadOf } from './eviction.ts'
import {
  applyTransition,
  DEADLINE_INDEX_PREFIX,
  decodeRecord,
  encodeRecord,
  fixedHex,
  INTENT_STATES,
  type IntentRecord,
  type IntentState,
  idOfIndexKey,
  intentBytes,
  intentNonceKey,
  isTerminal,
  MempoolError,
  NONCE_INDEX_PREFIX,
  newRecord,
  nonceIndexKey,
  nonceKey,
  recordIndexKeys,
  stateIndexPrefix,
  TERMINAL_INDEX_PREFIX,
  type TransitionDetails,
} from './record.ts'
import type { ValidIntent } from './validate.ts'

export { MempoolError, type MempoolErrorCode } from './record.ts'

/** Options of an {@link IntentPool}; plain data, every bound with a default. */
export interface IntentPoolOptions {
  /** Most non-terminal (pending + assigned) intents. Default 100 000. */
  maxCount?: number
  /** Most bytes of non-terminal intents, counted as their signed wire size. Default 64 MiB. */
  maxBytes?: number
  /** Most non-terminal intents of one user. Default 64. */
  maxPerUser?: number
  /**
   * A user holding this many non-terminal intents may still add more while there is room (up to
   * maxPerUser), but not by evicting others: fresh keys are free, so this bounds what one key buys in a
   * full pool, not what a spammer holds. Default 8 (a wallet has a handful open at once).
   */
  evictorMaxPerUser?: number
  /**
   * An origin chain holding this share of maxCount (basis points) may fill the rest of the pool while
   * there is room, but its newcomers may only evict intents of the same origin: one flooded rollup cannot
   * push every other rollup's users out. Default 5 000 (half the pool).
   */
  originQuotaBps?: number
  /** How long a terminal record stays readable (GET /v1/intents/:id) before pruning. Default 1 h. */
  retainTerminalMs?: number
  /**
   * Most terminal records retained; beyond it the oldest are pruned early. Default 100 000, which with
   * maxCount bounds what open() loads (measured ~30 µs per record).
   */
  maxTerminal?: number
  /** Interval between two sweeps (expiry, then pruning) once started. Default 1 000 ms. */
  sweepIntervalMs?: number
  /** Most expirations, and most prunes, in one sweep (one batch each). Default 10 000. */
  maxSweepPerRun?: number
  /** Entries per range read while loading at open. Default 10 000. */
  loadPageSize?: number
}

/** The options with every default filled in. */
export type ResolvedIntentPoolOptions = Required<IntentPoolOptions>

/** Defaults of {@link IntentPoolOptions}. */
export const DEFAULT_INTENT_POOL_OPTIONS: ResolvedIntentPoolOptions = {
  maxCount: 100_000,
  maxBytes: 64 * 1024 * 1024,
  maxPerUser: 64,
  evictorMaxPerUser: 8,
  originQuotaBps: 5_000,
  retainTerminalMs: 60 * 60 * 1000,
  maxTerminal: 100_000,
  sweepIntervalMs: 1_000,
  maxSweepPerRun: 10_000,
  loadPageSize: 10_000,
}

/** Collaborators of an {@link IntentPool}. */
export interface IntentPoolModules {
  log: Logger
  registry: Registry
  /** Wall clock, unix ms. Default Date.now. */
  now?: () => number
  /** Called when a sweep's durable write fails; the node stops. Default: log at fatal. */
  onFatal?: (err: unknown) => void
}

/** Why {@link IntentPool.add} refuses an intent. */
export type PoolRejectCode = 'NONCE_USED' | 'POOL_FULL' | 'USER_LIMIT'

/** A refused intent: NONCE_USED maps to the API's 400, POOL_FULL and USER_LIMIT to 503. */
export interface PoolRejection {
  code: PoolRejectCode
  message: string
}

/** Outcome of adding one intent: written, already there (by id), or refused. */
export type AddResult = 'added' | 'known' | PoolRejection

/** The intent to add: a {@link ValidIntent} from validation (only id, order and signature are read). */
export type AddableIntent = Pick<ValidIntent, 'id' | 'order' | 'signature'>

/** One transition of {@link IntentPool.transitionMany}. */
export interface TransitionRequest extends TransitionDetails {
  id: Hex
  to: IntentState
}

/** A state change, emitted after the batch that made it is written. */
export interface IntentChange {
  id: Hex
  state: IntentState
  /** null when the intent was just added. */
  previous: IntentState | null
  /** Unix ms. */
  atMs: number
  user: Address
  height?: bigint
  reason?: string
  assignment: IntentRecord['assignment']
  fill: IntentRecord['fill']
}

/** Listener of {@link IntentPool.onChange}. */
export type IntentChangeListener = (change: IntentChange) => void

/** Counts of the pool, from memory. */
export interface IntentPoolStats {
  /** Non-terminal intents. */
  count: number
  /** Bytes of non-terminal intents. */
  bytes: number
  byState: Record<IntentState, number>
  /** (user, nonce) pairs ever seen, pruned intents included. */
  nonces: number
}

/** What memory knows of one record; enough to decide bounds, eviction, expiry and pruning. */
interface Meta {
  state: IntentState
  user: Address
  nonceKey: string
  fillDeadline: number
  receivedAtMs: number
  bytes: number
  /** Origin chain id, decimal: the per-origin quota's key. */
  origin: string
  /** What it pays (eviction.ts): the eviction order's key. */
  spread: bigint
}

/** One planned change of a record inside a write. */
interface Touched {
  before: IntentRecord | undefined
  after: IntentRecord | undefined
  meta: Meta | undefined
}

/** A write being planned: touched records, the undo log of the in-memory views, events to emit. */
interface Txn {
  touched: Map<Hex, Touched>
  undo: Array<() => void>
  events: IntentChange[]
  added: number
  evicted: number
  pruned: number
}

const EVICTED_REASON = 'evicted'
const EXPIRED_REASON = 'deadline'

function metaOf(r: IntentRecord): Meta {
  return {
    state: r.state,
    user: r.user,
    nonceKey: intentNonceKey(r.intent),
    fillDeadline: r.fillDeadline,
    receivedAtMs: r.receivedAtMs,
    bytes: intentBytes(r.intent),
    origin: r.intent.order.originChainId.toString(),
    spread: spreadOf(r.intent.order),
  }
}

/**
 * The pool of intents. Open it with {@link IntentPool.open}; every write is durable when its promise
 * resolves, and every state change is announced to {@link onChange} listeners after that.
 */
export class IntentPool {
  readonly options: ResolvedIntentPoolOptions
  readonly #store: Store
  readonly #log: Logger
  readonly #registry: Registry
  readonly #now: () => number
  readonly #onFatal: (err: unknown) => void

  /** Every record present in the store (non-terminal and retained terminal). */
  readonly #meta = new Map<Hex, Meta>()
  /**
   * The records written last, as written (records are immutable values): a transition reads the record it
   * changes, and under load the intents of a block were added or moved a moment before. Reading them back
   * from LevelDB took about 10 ms of every commit at 100 intents/s.
   */
  readonly #recent = new Map<Hex, IntentRecord>()
  readonly #byState = new Map<IntentState, Set<Hex>>(INTENT_STATES.map((s) => [s, new Set<Hex>()]))
  /** Every (user, nonce) ever accepted: the in-memory copy of the `u/` index. */
  readonly #nonces = new Set<string>()
  /** Non-terminal intents per user. */
  readonly #perUser = new Map<Address, number>()
  /** Non-terminal intents per origin chain. */
  readonly #perOrigin = new Map<string, number>()
  readonly #queue = new EvictionQueue()
  #count = 0
  #bytes = 0

  readonly #listeners = new Set<IntentChangeListener>()
  #lock: Promise<unknown> = Promise.resolve()
  #timer: ReturnType<typeof setTimeout> | undefined
  #sweeping: Promise<void> | undefined
  #closed = false

  readonly #metrics: {
    transitions: Counter<'state'>
    rejected: Counter<'reason'>
    pruned: Counter
    evicted: Counter
    writeSeconds: Histogram<'kind'>
    intents: Gauge<'state'>
    bytes: Gauge
  }

  private constructor(store: Store, options: IntentPoolOptions, modules: IntentPoolModules) {
    this.options = { ...DEFAULT_INTENT_POOL_OPTIONS, ...options }
    this.#store = store
    this.#log = modules.log.child({ module: 'mempool' })
    this.#registry = modules.registry
    this.#now = modules.now ?? Date.now
    this.#onFatal = modules.onFatal ?? ((err) => this.#log.fatal({ err }, 'intent pool write failed'))
    const registers = [modules.registry]
    const byState = this.#byState
    const nonTerminalBytes = () => this.#bytes
    this.#metrics = {
      transitions: new Counter({
        name: 'murmur_mempool_transitions_total',
        help: 'Intent state changes, by the state entered (pending counts additions)',
        labelNames: ['state'],
        registers,
      }),
      rejected: new Counter({
        name: 'murmur_mempool_rejected_total',
        help: 'Intents the pool refused or already had, by reason',
        labelNames: ['reason'],
        registers,
      }),
      pruned: new Counter({
        name: 'murmur_mempool_pruned_total',
        help: 'Terminal records deleted after their retention',
        registers,
      }),
      evicted: new Counter({
        name: 'murmur_mempool_evicted_total',
        help: 'Pending intents evicted (-> failed) to make room for ones paying a larger spread',
        registers,
      }),
      writeSeconds: new Histogram({
        name: 'murmur_mempool_write_seconds',
        help: 'Duration of the pool batch writes, by kind',
        labelNames: ['kind'],
        buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
        registers,
      }),
      intents: new Gauge({
        name: 'murmur_mempool_pool_intents',
        help: 'Intents held by the pool, by state (terminal ones until pruned)',
        labelNames: ['state'],
        registers,
        collect() {
          for (const [state, ids] of byState) this.set({ state }, ids.size)
        },
      }),
      bytes: new Gauge({
        name: 'murmur_mempool_pool_bytes',
        help: 'Signed wire bytes of the non-terminal intents of the pool',
        registers,
        collect() {
          this.set(nonTerminalBytes())
        },
      }),
    }
  }

  /**
   * Opens the pool over an open store: loads the in-memory views from the `intents` records and the
   * `u/` index, page by page with bounded range reads.
   */
  static async open(
    store: Store,
    options: IntentPoolOptions,
    modules: IntentPoolModules,
  ): Promise<IntentPool> {
    const pool = new IntentPool(store, options, modules)
    await pool.#load()
    return pool
  }

  async #load(): Promise<void> {
    const page = this.options.loadPageSize
    const started = this.#now()
    await this.#scan(
      'intents',
      '0x',
      (key, value) => {
        const meta = metaOf(decodeRecord(key, value as Uint8Array))
        this.#insertMeta(key as Hex, meta)
      },
      page,
    )
    await this.#scan(
      'intentIndex',
      NONCE_INDEX_PREFIX,
      (key) => {
        this.#nonces.add(key.slice(NONCE_INDEX_PREFIX.length))
      },
      page,
    )
    this.#log.info(
      {
        intents: this.#meta.size,
        pending: this.#byState.get('pending')!.size,
        nonces: this.#nonces.size,
        ms: this.#now() - started,
      },
      'intent pool loaded',
    )
  }

  async #scan(
    sublevel: 'intents' | 'intentIndex',
    prefix: string,
    each: (key: string, value: unknown) => void,
    limit: number,
  ): Promise<void> {
    // Bounded pages like Store.range, drained with nextv: a promise per chunk rather than per entry
    // halves the load time of a large pool (measured: 50 000 records, 660 -> 330 ms).
    let gte = prefix
    const lt = prefixEnd(prefix)
    for (;;) {
      const it = this.#store.sub(sublevel).iterator({ gte, lt, limit })
      let n = 0
      let last: string | undefined
      try {
        for (;;) {
          const chunk = await it.nextv(1000)
          if (chunk.length === 0) break
          for (const [k, v] of chunk) each(k as string, v)
          n += chunk.length
          last = chunk[chunk.length - 1]![0] as string
        }
      } finally {
        await it.close()
      }
      if (n < limit || last === undefined) return
      gte = `${last}\u0000`
    }
  }

  // --- synchronous views --------------------------------------------------------------------------

  /** True when the pool holds a record of `id` (non-terminal, or terminal and not yet pruned). */
  has(id: Hex | string): boolean {
    return this.#meta.has(id as Hex)
  }

  /** True when (user, nonce) was accepted before, pruned intents included. For validation. */
  isNonceUsed(user: Address | string, nonce: bigint): boolean {
    return this.#nonces.has(nonceKey(user, nonce))
  }

  /** Current state of `id`, from memory; undefined when unknown or pruned. */
  stateOf(id: Hex | string): IntentState | undefined {
    return this.#meta.get(id as Hex)?.state
  }

  /** Ids of the pending intents, in no particular order (see {@link pending} for proposal order). */
  pendingIds(): Hex[] {
    return [...this.#byState.get('pending')!]
  }

  /** Counts and bytes, from memory. */
  stats(): IntentPoolStats {
    const byState = {} as Record<IntentState, number>
    for (const [s, ids] of this.#byState) byState[s] = ids.size
    return { count: this.#count, bytes: this.#bytes, byState, nonces: this.#nonces.size }
  }

  /** Number of non-terminal intents of `user`. */
  userCount(user: Address | string): number {
    return this.#perUser.get(user.toLowerCase() as Address) ?? 0
  }

  // --- reads ---------------------------------------------------------------------------------------

  /** The record of `id`, or undefined. */
  async get(id: Hex | string): Promise<IntentRecord | undefined> {
    const v = await this.#store.get<Uint8Array>('intents', id)
    return v === undefined ? undefined : decodeRecord(id, v)
  }

  /** The records of `ids`, undefined where absent; one read. */
  async getMany(ids: readonly (Hex | string)[]): Promise<Array<IntentRecord | undefined>> {
    if (ids.length === 0) return []
    const vs = await this.#store.getMany<Uint8Array>('intents', [...ids])
    return vs.map((v, i) => (v === undefined ? undefined : decodeRecord(ids[i]!, v)))
  }

  /** Up to `limit` pending records ordered by receivedAt then id: the input of a block proposal. */
  async pending(limit: number): Promise<IntentRecord[]> {
    const pendingIds = this.#byState.get('pending')!
    let ids: Hex[]
    if (pendingIds.size <= 4 * limit) {
      // From memory, in the index's order (receivedAt, then id): a proposer asks at every height.
      ids = [...pendingIds]
        .map((id) => ({ id, at: this.#meta.get(id)!.receivedAtMs }))
        .sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
        .slice(0, limit)
        .map((x) => x.id)
    } else {
      ids = await this.idsByState('pending', limit)
    }
    // Durable records only: from the write-through cache, the rest in one read.
    const out = ids.map((id) => this.#recent.get(id))
    const missing = ids.filter((_, i) => out[i] === undefined)
    const read = await this.getMany(missing)
    let j = 0
    for (let i = 0; i < out.length; i++) if (out[i] === undefined) out[i] = read[j++]
    return out.filter((r): r is IntentRecord => r !== undefined && r.state === 'pending')
  }

  /** Up to `limit` ids in `state`, by receivedAt then id, from the `s/` index. */
  async idsByState(state: IntentState, limit: number): Promise<Hex[]> {
    const prefix = stateIndexPrefix(state)
    const rows = await this.#store.range<string>('intentIndex', { gte: prefix, lt: prefixEnd(prefix), limit })
    return rows.map(([k]) => idOfIndexKey(k))
  }

  /** The id that used (user, nonce), from the durable `u/` index (pruned intents included). */
  async idByNonce(user: Address | string, nonce: bigint): Promise<Hex | undefined> {
    const v = await this.#store.get<string>('intentIndex', nonceIndexKey(user, nonce))
    return v === undefined ? undefined : (v as Hex)
  }

  /** Up to `limit` non-terminal ids whose fillDeadline is before `beforeSec`, earliest first. */
  async idsByDeadline(beforeSec: number, limit: number): Promise<Hex[]> {
    const rows = await this.#store.range<string>('intentIndex', {
      gte: DEADLINE_INDEX_PREFIX,
      lt: DEADLINE_INDEX_PREFIX + fixedHex(clampUint32(beforeSec), 8),
      limit,
    })
    return rows.map(([k]) => idOfIndexKey(k))
  }

  // --- writes --------------------------------------------------------------------------------------

  /** Adds one validated intent; resolves once it is durably written. See {@link addMany}. */
  async add(intent: AddableIntent): Promise<AddResult> {
    const [r] = await this.addMany([intent])
    return r!
  }

  /**
   * Adds validated intents in one batch; resolves, once the batch is written, with one result per
   * input in order. Per intent: `known` if the id is held; NONCE_USED if (user, nonce) was used;
   * USER_LIMIT at the per-user bound; when the pool is full, the pending intents paying the least
   * spread are evicted (-> failed, reason `evicted`) if the new one pays more and its user and origin
   * quotas allow it (see {@link IntentPoolOptions}), else POOL_FULL. Earlier inputs count against later ones.
   */
  async addMany(intents: readonly AddableIntent[]): Promise<AddResult[]> {
    return this.#exclusive(async () => {
      const txn = newTxn()
      const results: AddResult[] = []
      const atMs = this.#now()
      try {
        for (const intent of intents) results.push(await this.#planAdd(txn, intent, atMs))
        await this.#commit(txn, [], 'add')
      } catch (err) {
        this.#rollback(txn)
        throw err
      }
      for (const r of results) if (r !== 'added') this.#metrics.rejected.inc({ reason: rejectLabel(r) })
      if (txn.evicted > 0) this.#metrics.evicted.inc(txn.evicted)
      this.#emit(txn)
      return results
    })
  }

  /** Applies one transition; see {@link transitionMany}. */
  async transition(id: Hex, to: IntentState, details: TransitionDetails = {}): Promise<IntentRecord> {
    const [r] = await this.transitionMany([{ id, to, ...details }])
    return r!
  }

  /**
   * Applies transitions in order, all in one batch together with `extraOps` (e.g. the block's own
   * writes), and returns the new records. All or nothing: an unknown id throws MempoolError
   * UNKNOWN_INTENT, a transition outside the table (or without its assignment/fill) BAD_TRANSITION,
   * and nothing is written.
   */
  async transitionMany(
    requests: readonly TransitionRequest[],
    opts: { extraOps?: BatchOp[] } = {},
  ): Promise<IntentRecord[]> {
    return this.#exclusive(async () => {
      const txn = newTxn()
      const atMs = this.#now()
      const out: IntentRecord[] = []
      try {
        await this.#preload(
          txn,
          requests.map((r) => r.id),
        )
        for (const req of requests) {
          const { id, to, ...details } = req
          out.push(this.#planTransition(txn, id, to, details, atMs))
        }
        await this.#commit(txn, opts.extraOps ?? [], 'transition')
      } catch (err) {
        this.#rollback(txn)
        throw err
      }
      this.#emit(txn)
      return out
    })
  }

  /**
   * The expiry sweep: non-terminal intents whose fillDeadline is before `nowSec` become `expired`
   * (reason `deadline`), at most `maxSweepPerRun`, earliest first, in one batch. Returns their ids.
   */
  async expireDue(nowSec: number): Promise<Hex[]> {
    return this.#exclusive(async () => {
      const ids = await this.idsByDeadline(nowSec, this.options.maxSweepPerRun)
      if (ids.length === 0) return []
      const txn = newTxn()
      const atMs = this.#now()
      try {
        await this.#preload(txn, ids)
        for (const id of ids) this.#planTransition(txn, id, 'expired', { reason: EXPIRED_REASON }, atMs)
        await this.#commit(txn, [], 'expire')
      } catch (err) {
        this.#rollback(txn)
        throw err
      }
      this.#emit(txn)
      return ids
    })
  }

  /**
   * Deletes terminal records that became terminal more than `retainTerminalMs` before `nowMs`, then
   * the oldest ones beyond `maxTerminal`; at most `maxSweepPerRun` in one batch. The (user, nonce)
   * index stays: a pruned intent's nonce remains used. Returns the pruned ids.
   */
  async pruneTerminal(nowMs: number): Promise<Hex[]> {
    return this.#exclusive(async () => {
      const max = this.options.maxSweepPerRun
      const cutoff = nowMs - this.options.retainTerminalMs
      const ids =
        cutoff > 0
          ? (
              await this.#store.range<string>('intentIndex', {
                gte: TERMINAL_INDEX_PREFIX,
                lt: TERMINAL_INDEX_PREFIX + fixedHex(cutoff, 16),
                limit: max,
              })
            ).map(([k]) => idOfIndexKey(k))
          : []
      const excess = this.#terminalCount() - ids.length - this.options.maxTerminal
      if (excess > 0 && ids.length < max) {
        // The oldest terminal records start the `t/` index, the age-pruned ones first among them.
        const rows = await this.#store.range<string>('intentIndex', {
          gte: TERMINAL_INDEX_PREFIX,
          lt: prefixEnd(TERMINAL_INDEX_PREFIX),
          limit: Math.min(ids.length + excess, max),
        })
        for (const [k] of rows.slice(ids.length)) ids.push(idOfIndexKey(k))
      }
      if (ids.length === 0) return []
      const txn = newTxn()
      try {
        await this.#preload(txn, ids)
        for (const id of ids) {
          const t = this.#touch(txn, id)
          if (t.after === undefined || !isTerminal(t.after.state)) {
            throw new Error(`pruning ${id}: not a terminal record`)
          }
          this.#setMeta(txn, id, t, undefined)
          t.after = undefined
          txn.pruned++
        }
        await this.#commit(txn, [], 'prune')
      } catch (err) {
        this.#rollback(txn)
        throw err
      }
      this.#metrics.pruned.inc(ids.length)
      return ids
    })
  }

  /** One sweep at the module clock: {@link expireDue}, then {@link pruneTerminal}. */
  async sweep(): Promise<{ expired: number; pruned: number }> {
    const nowMs = this.#now()
    const expired = await this.expireDue(Math.floor(nowMs / 1000))
    const pruned = await this.pruneTerminal(nowMs)
    return { expired: expired.length, pruned: pruned.length }
  }

  /** Starts sweeping every `sweepIntervalMs` (the next run is scheduled when the last one ends). */
  start(): void {
    if (this.#timer !== undefined || this.#closed) return
    const tick = () => {
      this.#sweeping = this.sweep()
        .then(
          (r) => {
            if (r.expired > 0 || r.pruned > 0) this.#log.debug(r, 'intent pool swept')
          },
          (err) => this.#onFatal(err),
        )
        .finally(() => {
          this.#sweeping = undefined
          if (this.#timer !== undefined) this.#timer = setTimeout(tick, this.options.sweepIntervalMs)
        })
    }
    this.#timer = setTimeout(tick, this.options.sweepIntervalMs)
  }

  /** Stops sweeping; resolves when no sweep is running and no timer is left. */
  async stop(): Promise<void> {
    const t = this.#timer
    this.#timer = undefined
    if (t !== undefined) clearTimeout(t)
    await this.#sweeping
  }

  /** True while the sweep timer is armed. */
  get running(): boolean {
    return this.#timer !== undefined
  }

  /**
   * Stops the sweeper, waits for writes in flight, and unregisters the metrics. Later writes throw
   * MempoolError CLOSED. The store belongs to the caller and stays open.
   */
  async close(): Promise<void> {
    await this.stop()
    this.#closed = true
    await this.#lock.catch(() => {})
    for (const name of [
      'murmur_mempool_transitions_total',
      'murmur_mempool_rejected_total',
      'murmur_mempool_pruned_total',
      'murmur_mempool_evicted_total',
      'murmur_mempool_write_seconds',
      'murmur_mempool_pool_intents',
      'murmur_mempool_pool_bytes',
    ]) {
      this.#registry.removeSingleMetric(name)
    }
    this.#listeners.clear()
  }

  /**
   * Calls `listener` with every state change, after the batch that made it is written, in order.
   * Returns the function that unsubscribes. A throwing listener is logged, never propagated.
   */
  onChange(listener: IntentChangeListener): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  // --- planning ------------------------------------------------------------------------------------

  async #planAdd(txn: Txn, intent: AddableIntent, atMs: number): Promise<AddResult> {
    const { id, order } = intent
    if (this.#meta.has(id)) return 'known'
    const user = order.user.toLowerCase() as Address
    const nk = intentNonceKey(intent)
    if (this.#nonces.has(nk)) {
      return { code: 'NONCE_USED', message: `order.nonce: ${order.nonce} already used by ${user}` }
    }
    if ((this.#perUser.get(user) ?? 0) >= this.options.maxPerUser) {
      return {
        code: 'USER_LIMIT',
        message: `user ${user} has ${this.options.maxPerUser} open intents, the most allowed`,
      }
    }
    const record = newRecord(id, { order, signature: intent.signature }, atMs)
    const meta = metaOf(record)
    const victims = this.#pickVictims(meta, id)
    if (typeof victims === 'string') return { code: 'POOL_FULL', message: victims }
    for (const victim of victims) {
      await this.#preload(txn, [victim])
      this.#planTransition(txn, victim, 'failed', { reason: EVICTED_REASON }, atMs)
      txn.evicted++
    }
    const t = this.#touch(txn, id)
    t.after = record
    this.#setMeta(txn, id, t, meta)
    this.#nonces.add(nk)
    txn.undo.push(() => this.#nonces.delete(nk))
    txn.added++
    txn.events.push(changeOf(record, null))
    return 'added'
  }

  /**
   * The pending intents to evict so that `m` fits, in eviction order (eviction.ts), each paying less than
   * `m`; or why it cannot: the pool is full of intents paying as much, or `m`'s user or origin is at its
   * quota (an origin at quota may only displace its own origin's intents).
   */
  #pickVictims(m: Meta, id: Hex): Hex[] | string {
    const { maxCount, maxBytes, evictorMaxPerUser, originQuotaBps } = this.options
    let count = this.#count
    let total = this.#bytes
    if (count + 1 <= maxCount && total + m.bytes <= maxBytes) return []
    if ((this.#perUser.get(m.user) ?? 0) >= evictorMaxPerUser) {
      return `pool full, and user ${m.user} holds ${evictorMaxPerUser} or more open intents: it cannot evict others`
    }
    const originAtQuota =
      (this.#perOrigin.get(m.origin) ?? 0) * 10_000 >= maxCount * originQuotaBps ? m.origin : undefined
    const newcomer: EvictionEntry = { spread: m.spread, fillDeadline: m.fillDeadline, id, origin: m.origin }
    const popped: EvictionEntry[] = []
    const victims: Hex[] = []
    let ok = false
    for (;;) {
      if (count + 1 <= maxCount && total + m.bytes <= maxBytes) {
        ok = true
        break
      }
      const top = this.#queue.pop(originAtQuota)
      if (top === undefined) break
      popped.push(top)
      const v = this.#meta.get(top.id)
      if (v === undefined || v.state !== 'pending') continue // stale entry
      // Paying the same buys no place: only a larger spread displaces.
      if (top.spread >= newcomer.spread) break
      victims.push(top.id)
      count--
      total -= v.bytes
    }
    // Victims are re-pushed too: they leave `pending` when planned, and a rollback brings them back.
    for (const p of popped) if (this.#meta.get(p.id)?.state === 'pending') this.#queue.push(p)
    if (ok) return victims
    return originAtQuota === undefined
      ? 'pool full of intents paying at least this spread'
      : `pool full, and origin ${m.origin} holds its quota of it: only its own intents paying less can be evicted`
  }

  #planTransition(
    txn: Txn,
    id: Hex,
    to: IntentState,
    details: TransitionDetails,
    atMs: number,
  ): IntentRecord {
    const t = this.#touch(txn, id)
    if (t.after === undefined) throw new MempoolError('UNKNOWN_INTENT', `intent ${id} is not in the pool`)
    const previous = t.after.state
    const next = applyTransition(t.after, to, details, atMs)
    t.after = next
    this.#setMeta(txn, id, t, { ...t.meta!, state: to })
    txn.events.push(changeOf(next, previous, details))
    return next
  }

  /** Reads the records of `ids` not yet touched by `txn` into it, in one read. */
  async #preload(txn: Txn, ids: readonly Hex[]): Promise<void> {
    const missing: Hex[] = []
    for (const id of new Set(ids)) {
      if (txn.touched.has(id) || !this.#meta.has(id)) continue
      const r = this.#recent.get(id)
      if (r === undefined) missing.push(id)
      else txn.touched.set(id, { before: r, after: r, meta: this.#meta.get(id) })
    }
    const records = await this.getMany(missing)
    for (let i = 0; i < missing.length; i++) {
      const r = records[i]
      const id = missing[i]!
      if (r === undefined) throw new Error(`intent ${id} is in memory but not in the store`)
      txn.touched.set(id, { before: r, after: r, meta: this.#meta.get(id) })
    }
  }

  /** The txn entry of `id`; an id never seen by the txn is absent from the store. */
  #touch(txn: Txn, id: Hex): Touched {
    let t = txn.touched.get(id)
    if (t === undefined) {
      if (this.#meta.has(id)) throw new Error(`intent ${id} touched without being preloaded`)
      t = { before: undefined, after: undefined, meta: undefined }
      txn.touched.set(id, t)
    }
    return t
  }

  /** Moves `id` from `t.meta` to `next` in every in-memory view, with the undo step. */
  #setMeta(txn: Txn, id: Hex, t: Touched, next: Meta | undefined): void {
    const prev = t.meta
    if (prev !== undefined) this.#removeMeta(id, prev)
    if (next !== undefined) this.#insertMeta(id, next)
    t.meta = next
    txn.undo.push(() => {
      if (next !== undefined) this.#removeMeta(id, next)
      if (prev !== undefined) this.#insertMeta(id, prev)
      t.meta = prev
    })
  }

  #insertMeta(id: Hex, m: Meta): void {
    this.#meta.set(id, m)
    this.#byState.get(m.state)!.add(id)
    if (!isTerminal(m.state)) {
      this.#count++
      this.#bytes += m.bytes
      this.#perUser.set(m.user, (this.#perUser.get(m.user) ?? 0) + 1)
      this.#perOrigin.set(m.origin, (this.#perOrigin.get(m.origin) ?? 0) + 1)
    }
    if (m.state === 'pending') this.#pushQueue(id, m)
  }

  #removeMeta(id: Hex, m: Meta): void {
    this.#meta.delete(id)
    this.#byState.get(m.state)!.delete(id)
    if (!isTerminal(m.state)) {
      this.#count--
      this.#bytes -= m.bytes
      const n = (this.#perUser.get(m.user) ?? 0) - 1
      if (n > 0) this.#perUser.set(m.user, n)
      else this.#perUser.delete(m.user)
      const o = (this.#perOrigin.get(m.origin) ?? 0) - 1
      if (o > 0) this.#perOrigin.set(m.origin, o)
      else this.#perOrigin.delete(m.origin)
    }
  }

  #pushQueue(id: Hex, m: Meta): void {
    const entry = (i: Hex, x: Meta): EvictionEntry => ({
      spread: x.spread,
      fillDeadline: x.fillDeadline,
      id: i,
      origin: x.origin,
    })
    const pending = this.#byState.get('pending')!
    if (this.#queue.size > 2 * pending.size + 1024) {
      this.#queue.clear()
      for (const pid of pending) this.#queue.push(entry(pid, this.#meta.get(pid)!))
    }
    this.#queue.push(entry(id, m))
  }

  #terminalCount(): number {
    return this.#meta.size - this.#count
  }

  #rollback(txn: Txn): void {
    for (let i = txn.undo.length - 1; i >= 0; i--) txn.undo[i]!()
    txn.undo.length = 0
  }

  // --- writing -------------------------------------------------------------------------------------

  /** Writes every touched record and the index changes it implies, plus `extra`, in one batch. */
  async #commit(txn: Txn, extra: BatchOp[], kind: string): Promise<void> {
    const ops: BatchOp[] = []
    for (const [id, { before, after }] of txn.touched) {
      if (before === after) continue
      const oldKeys = before === undefined ? [] : recordIndexKeys(before)
      const newKeys = after === undefined ? [] : recordIndexKeys(after)
      for (const k of oldKeys) {
        if (!newKeys.includes(k)) ops.push({ type: 'del', sublevel: 'intentIndex', key: k })
      }
      for (const k of newKeys) {
        if (!oldKeys.includes(k)) ops.push({ type: 'put', sublevel: 'intentIndex', key: k, value: '' })
      }
      if (before === undefined && after !== undefined) {
        ops.push({
          type: 'put',
          sublevel: 'intentIndex',
          key: NONCE_INDEX_PREFIX + intentNonceKey(after.intent),
          value: id,
        })
      }
      if (after === undefined) ops.push({ type: 'del', sublevel: 'intents', key: id })
      else ops.push({ type: 'put', sublevel: 'intents', key: id, value: encodeRecord(after) })
    }
    ops.push(...extra)
    if (ops.length === 0) return
    const end = this.#metrics.writeSeconds.startTimer({ kind })
    await this.#store.batch(ops)
    end()
    for (const [id, { after }] of txn.touched) {
      this.#recent.delete(id)
      if (after === undefined) continue
      this.#recent.set(id, after)
      if (this.#recent.size > RECENT_RECORDS) this.#recent.delete(this.#recent.keys().next().value!)
    }
  }

  #emit(txn: Txn): void {
    for (const e of txn.events) {
      this.#metrics.transitions.inc({ state: e.state })
      for (const l of this.#listeners) {
        try {
          l(e)
        } catch (err) {
          this.#log.error({ err, id: e.id }, 'intent change listener threw')
        }
      }
    }
  }

  /** Runs `fn` after every earlier write has settled; writes never interleave. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new MempoolError('CLOSED', 'intent pool is closed'))
    const run = this.#lock.then(fn, fn)
    this.#lock = run.catch(() => {})
    return run
  }
}

/** Records kept by the pool's write-through cache. */
const RECENT_RECORDS = 8192

function newTxn(): Txn {
  return { touched: new Map(), undo: [], events: [], added: 0, evicted: 0, pruned: 0 }
}

function changeOf(r: IntentRecord, previous: IntentState | null, d: TransitionDetails = {}): IntentChange {
  const c: IntentChange = {
    id: r.id,
    state: r.state,
    previous,
    atMs: r.history[r.history.length - 1]!.atMs,
    user: r.user,
    assignment: r.assignment,
    fill: r.fill,
  }
  if (d.height !== undefined) c.height = d.height
  if (d.reason !== undefined) c.reason = d.reason
  return c
}

function rejectLabel(r: AddResult): string {
  return typeof r === 'string' ? r : r.code
}

function clampUint32(n: number): number {
  return Math.max(0, Math.min(0xffff_ffff, Math.floor(n)))
}
