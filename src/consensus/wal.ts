/**
 * The consensus write-ahead log (ARCHITECTURE.md, Consensus: "a validator persists every vote it signs
 * before sending it"), on the Store's `wal` sublevel.
 *
 * One entry per message this node signed: the core's record, its signature (EIP-712 signatures are
 * deterministic, RFC 6979, so a restarted node re-sends the very same bytes) and, for a proposal or a
 * non-nil precommit, the encoded block: a restarted node must be able to re-send its proposal, and to
 * re-propose the value it is locked on (the core's lock is its highest non-nil precommit).
 *
 * Keys `<height 16 hex>/<round 8 hex>/<step>` (step 0 proposal, 1 prevote, 2 precommit) sort the way they are
 * read: `load(height)` is one bounded range, `prune(below)` one range of keys. At most one entry exists per
 * key: the core never signs twice for one height/round/step.
 *
 * Durable and bounded (docs/decisions.md, "WAL"): an append is durable before it resolves, since a vote
 * lost in a power cut after it was sent lets the rebooted node sign a conflicting one, and no peer can
 * give it back. With a journal (wal-journal.ts; every node has one) the entry is fdatasynced into the
 * journal and written to LevelDB without a sync; without one, LevelDB fsyncs it (`sync: true`). A height
 * holds at most {@link MAX_WAL_ENTRIES_PER_HEIGHT} entries and {@link MAX_WAL_BYTES_PER_HEIGHT} bytes;
 * past either bound an append is refused (StorageError `WAL_FULL`, which stops the node), never made
 * room for: dropping an older record of the height would forget a vote or the lock. An append over a
 * record of its height, or next to records of its height this process never loaded (the core would not
 * know what they say), is refused as `WAL_CONFLICT`.
 */
import { decode as cborDecode, encode as cborEncode } from 'cborg'
import type { Hex } from 'viem'
import { bytesToAddress, bytesToHex, bytesToUint, hexToRaw, uintToBytes } from '../codec/bytes.ts'
import { StorageError } from '../errors.ts'
import { crashPoint } from '../state/crash-hook.ts'
import { type BatchOp, heightKey, type Store } from '../state/store.ts'
import type { WalRecord } from './types.ts'
import { WalJournal } from './wal-journal.ts'

/** What the WAL keeps of one signed message. */
export interface WalEntry {
  readonly record: WalRecord
  /** 65-byte signature of the record's EIP-712 form. */
  readonly signature: Hex
  /** The encoded block of a proposal or of a non-nil precommit. */
  readonly block?: Uint8Array
  /** A vote's signed timestamp (unix ms) and extension, so a restarted node re-sends the same vote. */
  readonly timestampMs?: number
  readonly extension?: Uint8Array
}

/**
 * Most entries one height may hold: 3 per round (proposal, prevote, precommit) for 10,000 rounds. A round
 * lasts at least timeoutPrecommit(r) = 1 s + 0.5 s * r by default, so round 10,000 comes after some 290
 * days at one height: the bound only stops a runaway (a bug, a disk being filled), never a live network.
 */
export const MAX_WAL_ENTRIES_PER_HEIGHT = 30_000

/**
 * Most bytes (encoded entries) one height may hold: 256 MiB, room for 128 rounds in each of which this node
 * both proposed and precommitted a full block (MAX_BLOCK_BYTES, 1 MiB); round 128 comes after at least
 * 70 minutes at one height by default, and a node proposes in one round of n. Sized so that `load` after a
 * restart holds the height in memory without trouble; it bounds the disk the WAL may take.
 */
export const MAX_WAL_BYTES_PER_HEIGHT = 256 * 1024 * 1024

/** Bounds of one WAL (tests give small ones; the node uses the defaults). */
export interface WalLimits {
  /** Default {@link MAX_WAL_ENTRIES_PER_HEIGHT}. */
  readonly maxEntriesPerHeight?: number
  /** Default {@link MAX_WAL_BYTES_PER_HEIGHT}. */
  readonly maxBytesPerHeight?: number
  /** The journal file (wal-journal.ts); without one every append is a synced LevelDB write. */
  readonly journal?: string
  /** Size of a new journal file; default JOURNAL_BYTES. */
  readonly journalBytes?: number
}

/** Rows per range read while loading a height (entries may carry whole blocks). */
const READ_PAGE = 256

const STEP_CODE = { proposal: 0, prevote: 1, precommit: 2 } as const

function stepOf(r: WalRecord): 0 | 1 | 2 {
  return r.type === 'proposal' ? STEP_CODE.proposal : STEP_CODE[r.vote.kind]
}

/** `<height>/<round>/<step>` */
export function walKey(r: WalRecord): string {
  const m = r.type === 'proposal' ? r.proposal : r.vote
  return `${heightKey(m.height)}/${m.round.toString(16).padStart(8, '0')}/${stepOf(r)}`
}

function encodeEntry(e: WalEntry): Uint8Array {
  const r = e.record
  const m = r.type === 'proposal' ? r.proposal : r.vote
  const value = m.value === null ? new Uint8Array(0) : hexToRaw(m.value as Hex)
  return cborEncode([
    stepOf(r),
    uintToBytes(BigInt(m.height)),
    m.round,
    value,
    r.type === 'proposal' ? r.proposal.validRound : -1,
    hexToRaw(m.from as Hex),
    hexToRaw(e.signature),
    e.block ?? null,
    e.timestampMs ?? 0,
    e.extension ?? new Uint8Array(0),
  ])
}

function decodeEntry(key: string, bytes: Uint8Array): WalEntry {
  try {
    const a = cborDecode(bytes, { strict: true }) as unknown[]
    if (!Array.isArray(a) || a.length !== 10) throw new Error('expected 10 fields')
    const step = a[0] as number
    const height = Number(bytesToUint(a[1], 'height', 8))
    const round = a[2] as number
    const raw = a[3] as Uint8Array
    const value = raw.length === 0 ? null : bytesToHex(raw, 'value', 32)
    const from = bytesToAddress(a[5], 'from')
    const signature = bytesToHex(a[6], 'signature', 65)
    const block = a[7] === null ? undefined : (a[7] as Uint8Array)
    let record: WalRecord
    if (step === STEP_CODE.proposal) {
      if (value === null) throw new Error('proposal without value')
      record = { type: 'proposal', proposal: { height, round, value, validRound: a[4] as number, from } }
    } else if (step === STEP_CODE.prevote || step === STEP_CODE.precommit) {
      record = {
        type: 'vote',
        vote: { kind: step === 1 ? 'prevote' : 'precommit', height, round, value, from },
      }
    } else {
      throw new Error(`unknown step ${step}`)
    }
    if (walKey(record) !== key) throw new Error('key does not match the record')
    const timestampMs = a[8] as number
    const extension = a[9] as Uint8Array
    if (!Number.isSafeInteger(timestampMs) || !(extension instanceof Uint8Array))
      throw new Error('bad timestamp or extension')
    // Entries without a stamp (a vote signed with timestamp 0 and no extension) read back as written.
    const stamp =
      record.type === 'vote' && (timestampMs !== 0 || extension.length > 0) ? { timestampMs, extension } : {}
    return block === undefined ? { record, signature, ...stamp } : { record, signature, block, ...stamp }
  } catch (err) {
    throw new StorageError('CORRUPT', `WAL entry ${key}: ${(err as Error).message}`, { cause: err })
  }
}

/** What the WAL holds of one height: the size of each entry by key. */
interface HeightTally {
  readonly sizes: Map<string, number>
  bytes: number
  /** Found on disk when this process opened the WAL, not loaded: the core does not know these entries. */
  foreign: boolean
}

/** The WAL of one node. Every append is durable before it resolves, so the driver may speak. */
export class ConsensusWal {
  readonly #store: Store
  readonly #maxEntries: number
  readonly #maxBytes: number
  readonly #journalPath: string | undefined
  readonly #journalBytes: number | undefined
  #journal: WalJournal | undefined
  /**
   * By height key, what the WAL holds of that height: what was on disk when this process opened the WAL
   * (one scan), then what it wrote or loaded. Every entry of an older height is deleted by the commit batch
   * of that height, so these are all the WAL holds: an append needs no read, and pruning no read of the
   * WAL (whose entries carry whole blocks).
   */
  readonly #tallies = new Map<string, HeightTally>()
  #opened: Promise<void> | undefined
  #isOpen = false
  /** LevelDB writes of journaled entries not yet done (awaited before a prune or a synced write). */
  readonly #writing = new Set<Promise<void>>()
  #writeError: unknown

  constructor(store: Store, limits: WalLimits = {}) {
    this.#store = store
    this.#maxEntries = limits.maxEntriesPerHeight ?? MAX_WAL_ENTRIES_PER_HEIGHT
    this.#maxBytes = limits.maxBytesPerHeight ?? MAX_WAL_BYTES_PER_HEIGHT
    this.#journalPath = limits.journal
    this.#journalBytes = limits.journalBytes
  }

  /**
   * Appends an entry; resolves once it is durable (fdatasynced into the journal, or fsynced by LevelDB).
   * Refuses (StorageError `WAL_FULL`) past the bounds of the height and (`WAL_CONFLICT`) over a record
   * it holds or next to records of the height that were never loaded. A failure is a StorageError: the
   * node stops.
   */
  async append(entry: WalEntry): Promise<void> {
    const key = walKey(entry.record)
    const hk = key.slice(0, key.indexOf('/'))
    const value = encodeEntry(entry)
    // Once open, no await before the journal write: the entry is durable in the caller's turn.
    if (!this.#isOpen) await this.open()
    const tally = this.#tallyOf(hk)
    if (this.#writeError !== undefined) throw this.#writeError
    if (tally.foreign) {
      throw new StorageError(
        'WAL_CONFLICT',
        `WAL holds ${tally.sizes.size} entries of height key ${hk} that were never loaded: refusing ${key}`,
      )
    }
    if (tally.sizes.has(key)) {
      throw new StorageError('WAL_CONFLICT', `WAL already holds ${key}: refusing to overwrite it`)
    }
    if (tally.sizes.size + 1 > this.#maxEntries || tally.bytes + value.length > this.#maxBytes) {
      throw new StorageError(
        'WAL_FULL',
        `WAL full at height key ${hk} (${tally.sizes.size} entries, ${tally.bytes} bytes; bounds ` +
          `${this.#maxEntries}, ${this.#maxBytes}): refusing ${key} (${value.length} bytes)`,
      )
    }
    // Counted before the write, and kept if it fails: whether a failed write landed is unknown, so the key
    // is never written again (the node stops anyway).
    tally.sizes.set(key, value.length)
    tally.bytes += value.length
    const journal = this.#journal
    if (journal === undefined || !journal.fits(WalJournal.sizeOf(key, value))) {
      // No journal, or no room left in it: one synced LevelDB write makes this entry and every earlier
      // one durable there, and the journal starts over.
      await this.#settle()
      await this.#store.put('wal', key, value, { sync: true })
      journal?.rewind()
    } else {
      journal.write(key, value)
      const w = this.#store.put('wal', key, value).then(
        () => {
          this.#writing.delete(w)
        },
        (err: unknown) => {
          this.#writing.delete(w)
          this.#writeError ??= err
        },
      )
      this.#writing.add(w)
    }
    crashPoint('wal')
  }

  /** Waits for the LevelDB writes of journaled entries; throws the first that failed. */
  async #settle(): Promise<void> {
    while (this.#writing.size > 0) await Promise.all([...this.#writing])
    if (this.#writeError !== undefined) throw this.#writeError
  }

  /**
   * Once per process (append and load call it): opens the journal and writes what it recovered back into LevelDB (synced) where
   * LevelDB lost it (a power cut after the journal's fdatasync), then tallies every height the WAL holds.
   */
  open(): Promise<void> {
    this.#opened ??= (async () => {
      if (this.#journalPath !== undefined) {
        const journal = WalJournal.open(this.#journalPath, this.#journalBytes)
        const recovered = new Map(journal.recovered.map((r) => [r.key, r.value] as const))
        const keys = [...recovered.keys()]
        const held = keys.length === 0 ? [] : await this.#store.getMany<Uint8Array>('wal', keys)
        const lost: BatchOp[] = keys
          .filter((_, i) => held[i] === undefined)
          .map((key) => ({ type: 'put', sublevel: 'wal', key, value: recovered.get(key)! }))
        // Synced before the journal is written over from its start.
        if (lost.length > 0) await this.#store.batch(lost, { sync: true })
        this.#journal = journal
      }
      let gte = ''
      for (;;) {
        const rows = await this.#store.range<Uint8Array>('wal', { gte, lt: '\uffff', limit: READ_PAGE })
        for (const [k, v] of rows) {
          const hk = k.slice(0, k.indexOf('/'))
          let t = this.#tallies.get(hk)
          if (t === undefined) {
            t = { sizes: new Map(), bytes: 0, foreign: true }
            this.#tallies.set(hk, t)
          }
          t.sizes.set(k, v.length)
          t.bytes += v.length
        }
        if (rows.length < READ_PAGE) break
        gte = `${rows[rows.length - 1]![0]}\u0000`
      }
      this.#isOpen = true
    })()
    return this.#opened
  }

  /** Closes the journal (the LevelDB writes under way are waited for). */
  async close(): Promise<void> {
    await this.#settle().catch(() => {})
    this.#journal?.close()
    this.#journal = undefined
  }

  /**
   * The entries of `height`, in round then step order. A height holding more than the bounds was not
   * written by this WAL: StorageError `CORRUPT`, rather than a part of it (which could miss the lock).
   */
  async load(height: number | bigint): Promise<WalEntry[]> {
    const hk = heightKey(height)
    await this.open()
    await this.#settle()
    const entries: WalEntry[] = []
    const tally = await this.#read(hk, (k, v) => entries.push(decodeEntry(k, v)))
    this.#tallies.set(hk, tally)
    return entries
  }

  /** Batch ops deleting every entry below `height` (to join the commit batch of `height - 1`). */
  async pruneOps(belowHeight: number | bigint): Promise<BatchOp[]> {
    const below = heightKey(belowHeight)
    // A delete must not overtake the put it deletes (LevelDB jobs run on several threads).
    await this.#settle()
    const ops: BatchOp[] = []
    for (const [hk, tally] of this.#tallies) {
      if (hk >= below) continue
      for (const key of tally.sizes.keys()) ops.push({ type: 'del', sublevel: 'wal', key })
      this.#tallies.delete(hk)
    }
    return ops
  }

  /** {@link pruneOps} by a scan of the WAL itself: every entry below `height`, whoever wrote it. */
  async scanPruneOps(belowHeight: number | bigint): Promise<BatchOp[]> {
    const ops: BatchOp[] = []
    const lt = `${heightKey(belowHeight)}/`
    let gte = ''
    for (;;) {
      const rows = await this.#store.range<Uint8Array>('wal', { gte, lt, limit: 10_000 })
      for (const [key] of rows) ops.push({ type: 'del', sublevel: 'wal', key })
      if (rows.length < 10_000) return ops
      gte = `${rows[rows.length - 1]![0]}\u0000`
    }
  }

  /** Deletes every entry below `height`; returns how many. */
  async prune(belowHeight: number | bigint): Promise<number> {
    await this.#settle()
    const ops = await this.scanPruneOps(belowHeight)
    const below = heightKey(belowHeight)
    for (const hk of this.#tallies.keys()) if (hk < below) this.#tallies.delete(hk)
    await this.#store.batch(ops)
    return ops.length
  }

  /**
   * True when the WAL holds entries of `height` that this process found on disk and has not loaded (see
   * the driver's #startNext). False before the WAL is open: start() loads its height first.
   */
  holdsUnloaded(height: number | bigint): boolean {
    return this.#tallies.get(heightKey(height))?.foreign === true
  }

  /** What the WAL holds of a height (after open(): the scan found every height on disk). */
  #tallyOf(hk: string): HeightTally {
    let t = this.#tallies.get(hk)
    if (t === undefined) {
      t = { sizes: new Map(), bytes: 0, foreign: false }
      this.#tallies.set(hk, t)
    }
    return t
  }

  /** Reads one height page by page, refusing it (CORRUPT) as soon as it passes a bound. */
  async #read(hk: string, onRow?: (key: string, value: Uint8Array) => void): Promise<HeightTally> {
    const tally: HeightTally = { sizes: new Map(), bytes: 0, foreign: false }
    const lt = `${heightKey(BigInt(`0x${hk}`) + 1n)}/`
    let gte = `${hk}/`
    for (;;) {
      const rows = await this.#store.range<Uint8Array>('wal', { gte, lt, limit: READ_PAGE })
      for (const [k, v] of rows) {
        tally.sizes.set(k, v.length)
        tally.bytes += v.length
        if (tally.sizes.size > this.#maxEntries || tally.bytes > this.#maxBytes) {
          throw new StorageError(
            'CORRUPT',
            `WAL height key ${hk} holds more than ${this.#maxEntries} entries or ${this.#maxBytes} bytes`,
          )
        }
        onRow?.(k, v)
      }
      if (rows.length < READ_PAGE) return tally
      gte = `${rows[rows.length - 1]![0]}\u0000`
    }
  }
}
