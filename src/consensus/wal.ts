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
 */
import { decode as cborDecode, encode as cborEncode } from 'cborg'
import type { Hex } from 'viem'
import { bytesToAddress, bytesToHex, bytesToUint, hexToRaw, uintToBytes } from '../codec/bytes.ts'
import { StorageError } from '../errors.ts'
import { type BatchOp, heightKey, type Store } from '../state/store.ts'
import type { WalRecord } from './types.ts'

/** What the WAL keeps of one signed message. */
export interface WalEntry {
  readonly record: WalRecord
  /** 65-byte signature of the record's EIP-712 form. */
  readonly signature: Hex
  /** The encoded block of a proposal or of a non-nil precommit. */
  readonly block?: Uint8Array
}

/** Most entries one height may hold before `load` refuses (one per round and step: far above any real run). */
export const MAX_WAL_ENTRIES_PER_HEIGHT = 30_000

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
  ])
}

function decodeEntry(key: string, bytes: Uint8Array): WalEntry {
  try {
    const a = cborDecode(bytes, { strict: true }) as unknown[]
    if (!Array.isArray(a) || a.length !== 8) throw new Error('expected 8 fields')
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
    return block === undefined ? { record, signature } : { record, signature, block }
  } catch (err) {
    throw new StorageError('CORRUPT', `WAL entry ${key}: ${(err as Error).message}`, { cause: err })
  }
}

/** The WAL of one node. Every write is awaited durable before the driver speaks. */
export class ConsensusWal {
  readonly #store: Store
  /**
   * Keys this process wrote or loaded. Every entry of an older height was deleted by the commit batch of
   * that height, so these are all the WAL holds, and pruning needs no read of the WAL (whose entries carry
   * whole blocks).
   */
  readonly #keys = new Set<string>()

  constructor(store: Store) {
    this.#store = store
  }

  /** Appends an entry; resolves once it is written. A failure is a StorageError: the node stops. */
  async append(entry: WalEntry): Promise<void> {
    const key = walKey(entry.record)
    await this.#store.put('wal', key, encodeEntry(entry))
    this.#keys.add(key)
  }

  /** The entries of `height`, in round then step order. */
  async load(height: number | bigint): Promise<WalEntry[]> {
    const prefix = `${heightKey(height)}/`
    const rows = await this.#store.range<Uint8Array>('wal', {
      gte: prefix,
      lt: `${heightKey(BigInt(height) + 1n)}/`,
      limit: MAX_WAL_ENTRIES_PER_HEIGHT,
    })
    const entries = rows.map(([k, v]) => decodeEntry(k, v))
    for (const [k] of rows) this.#keys.add(k)
    return entries
  }

  /** Batch ops deleting every entry below `height` (to join the commit batch of `height - 1`). */
  async pruneOps(belowHeight: number | bigint): Promise<BatchOp[]> {
    const lt = `${heightKey(belowHeight)}/`
    const ops: BatchOp[] = []
    for (const key of this.#keys) {
      if (key >= lt) continue
      ops.push({ type: 'del', sublevel: 'wal', key })
      this.#keys.delete(key)
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
    const ops = await this.scanPruneOps(belowHeight)
    for (const op of ops) this.#keys.delete(op.key)
    await this.#store.batch(ops)
    return ops.length
  }
}
