import { Level } from 'level'
import { StorageError } from '../errors.ts'

/**
 * The LevelDB layout of a node. Every sublevel is declared here, once, with its encodings.
 * A retired name is never reused: add a new one and list the old one in RETIRED_SUBLEVELS.
 *
 * Keys sort the way they are read: heights are fixed-width big-endian hex (see `heightKey`).
 */
export const SUBLEVELS = {
  /** Node metadata: schema version, network id. */
  meta: { keyEncoding: 'utf8', valueEncoding: 'json' },
  /** Peer book: peerId -> PeerRecord (see p2p/peer-book.ts). */
  peers: { keyEncoding: 'utf8', valueEncoding: 'json' },
  /** Peer bans: peerId -> BanRecord (p2p/bans.ts); expired ones kept so a repeat offence doubles. */
  bans: { keyEncoding: 'utf8', valueEncoding: 'json' },
  /** Intents: id (0x hex) -> IntentRecord (mempool). */
  intents: { keyEncoding: 'utf8', valueEncoding: 'view' },
  /** Secondary indexes of the intent pool, values empty: `<index>/<key>/<id>`. */
  intentIndex: { keyEncoding: 'utf8', valueEncoding: 'utf8' },
  /** Consensus write-ahead log: `<height>/<round>/<step>` -> signed record. */
  wal: { keyEncoding: 'utf8', valueEncoding: 'view' },
  /** Committed blocks by height key. */
  blocks: { keyEncoding: 'utf8', valueEncoding: 'view' },
  /** Application state (validators, pools, assignments). */
  app: { keyEncoding: 'utf8', valueEncoding: 'json' },
  /** Executor's own record of fills it sent, so it never fills twice. */
  fills: { keyEncoding: 'utf8', valueEncoding: 'json' },
  /** Settlement leaves per height and validator sets by hash (state/settlement.ts), for the settlement API. */
  settlement: { keyEncoding: 'utf8', valueEncoding: 'json' },
  /** What the origin settlers say of each order (rollups/settlement-watch.ts): `o/<id>`, cursors `c/<chainId>`. */
  orders: { keyEncoding: 'utf8', valueEncoding: 'json' },
} as const

/** Sublevel names that were used once and must never be reused. */
export const RETIRED_SUBLEVELS: readonly string[] = []

export type SublevelName = keyof typeof SUBLEVELS
export const SCHEMA_VERSION = 1

type Sub = ReturnType<Level<string, unknown>['sublevel']>

/** One put or del in an atomic batch over several sublevels. */
export type BatchOp =
  | { type: 'put'; sublevel: SublevelName; key: string; value: unknown }
  | { type: 'del'; sublevel: SublevelName; key: string }

/** Fixed-width big-endian key for a height, so lexicographic order = numeric order. */
export function heightKey(height: bigint | number): string {
  return BigInt(height).toString(16).padStart(16, '0')
}

/**
 * Options of a write. `sync: true` makes LevelDB fsync its log before the write resolves (classic-level's
 * `sync` option): what a power cut must not take back once the node acted on it (its own votes and
 * proposals, see consensus/wal.ts). Default false: the data reaches the OS and survives a process crash,
 * not a power cut; everything recoverable from peers stays on this cheaper path.
 */
export interface WriteOptions {
  readonly sync?: boolean
}

/** Default and hard maximum for range reads, so no caller loads an unbounded range by accident. */
export const DEFAULT_RANGE_LIMIT = 1000
export const MAX_RANGE_LIMIT = 100_000

/**
 * The node's one Level root. Repositories own their encodings on top of it;
 * absence is `undefined`, never a throw.
 */
export class Store {
  readonly db: Level<string, unknown>
  readonly #subs = new Map<SublevelName, Sub>()
  #onWriteFailure: ((err: StorageError) => void) | undefined

  constructor(location: string) {
    this.db = new Level<string, unknown>(location, { keyEncoding: 'utf8', valueEncoding: 'json' })
    for (const [name, enc] of Object.entries(SUBLEVELS)) {
      this.#subs.set(name as SublevelName, this.db.sublevel(name, enc) as unknown as Sub)
    }
  }

  async open(): Promise<void> {
    try {
      await this.db.open()
    } catch (err) {
      throw new StorageError('WRITE_FAILED', `cannot open database: ${(err as Error).message}`, {
        cause: err,
      })
    }
    const version = await this.get<number>('meta', 'schemaVersion')
    if (version === undefined) await this.put('meta', 'schemaVersion', SCHEMA_VERSION)
    else if (version !== SCHEMA_VERSION) {
      throw new StorageError('CORRUPT', `database schema ${version}, this node reads ${SCHEMA_VERSION}`)
    }
  }

  async close(): Promise<void> {
    if (this.db.status === 'open' || this.db.status === 'opening') await this.db.close()
  }

  /**
   * `listener` hears of every write that fails, whoever's write it was, before that write's caller sees
   * the error: the node stops on the first one that says its data dir cannot be written (a full disk
   * fails every later write too).
   */
  onWriteFailure(listener: (err: StorageError) => void): void {
    this.#onWriteFailure = listener
  }

  sub(name: SublevelName): Sub {
    const s = this.#subs.get(name)
    if (s === undefined) throw new Error(`undeclared sublevel ${name}`)
    return s
  }

  async get<T>(sublevel: SublevelName, key: string): Promise<T | undefined> {
    return (await this.sub(sublevel).get(key)) as T | undefined
  }

  async getMany<T>(sublevel: SublevelName, keys: string[]): Promise<Array<T | undefined>> {
    return (await this.sub(sublevel).getMany(keys)) as Array<T | undefined>
  }

  async put(sublevel: SublevelName, key: string, value: unknown, opts?: WriteOptions): Promise<void> {
    await this.batch([{ type: 'put', sublevel, key, value }], opts)
  }

  async del(sublevel: SublevelName, key: string, opts?: WriteOptions): Promise<void> {
    await this.batch([{ type: 'del', sublevel, key }], opts)
  }

  /**
   * Atomic write over any number of sublevels: all of it lands or none of it does.
   * A failed durable write is a StorageError; callers on the critical path stop the node.
   * With `opts.sync` it resolves only once LevelDB has fsynced it (see {@link WriteOptions}).
   */
  async batch(ops: BatchOp[], opts?: WriteOptions): Promise<void> {
    if (ops.length === 0) return
    const chained = this.db.batch()
    for (const op of ops) {
      if (op.type === 'put')
        chained.put(op.key, op.value as never, { sublevel: this.sub(op.sublevel) as never })
      else chained.del(op.key, { sublevel: this.sub(op.sublevel) as never })
    }
    try {
      await chained.write({ sync: opts?.sync === true })
    } catch (err) {
      const failed = new StorageError(
        'WRITE_FAILED',
        `batch of ${ops.length} failed: ${(err as Error).message}`,
        {
          cause: err,
        },
      )
      this.#onWriteFailure?.(failed)
      throw failed
    }
  }

  /**
   * Bounded range read: `gte` inclusive, `lt` exclusive, at most `limit` entries
   * (default DEFAULT_RANGE_LIMIT, never above MAX_RANGE_LIMIT).
   */
  async range<T>(
    sublevel: SublevelName,
    opts: { gte: string; lt: string; limit?: number; reverse?: boolean },
  ): Promise<Array<[string, T]>> {
    const limit = Math.min(opts.limit ?? DEFAULT_RANGE_LIMIT, MAX_RANGE_LIMIT)
    const out: Array<[string, T]> = []
    for await (const [k, v] of this.sub(sublevel).iterator({
      gte: opts.gte,
      lt: opts.lt,
      limit,
      reverse: opts.reverse ?? false,
    })) {
      out.push([k as string, v as T])
    }
    return out
  }
}

/** Upper bound for a prefix scan: every key starting with `prefix` is < prefixEnd(prefix). */
export function prefixEnd(prefix: string): string {
  return prefix + '\uffff'
}
