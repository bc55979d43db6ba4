/**
 * The persisted record of one intent in the pool, its state machine, its storage encoding, its
 * secondary index keys and the JSON body of `GET /v1/intents/:id` (INTERFACES.md). Pure: no I/O.
 *
 * Stored value (sublevel `intents`, key = id), version 1:
 *
 *   u8 RECORD_VERSION | u32 BE header length | header (UTF-8 JSON) | signed intent (encodeSignedIntent)
 *
 * The header holds only what changes (`receivedAtMs`, `state`, `assignment`, `fill`, `history`), big
 * integers as decimal strings. `user`, `nonce` and the deadlines are read back from the signed intent,
 * so they are stored once; the id is the key. A JSON header keeps the mutable part easy to evolve (one
 * more field is one more key) while the bulky immutable part stays in the compact wire form.
 */
import type { Address, Hex } from 'viem'
import {
  decodeSignedIntent,
  encodeSignedIntent,
  type GaslessCrossChainOrderJson,
  isOnchainIntent,
  orderToJson,
  type SignedIntent,
  signedIntentWireSize,
} from '../codec/intent.ts'
import { toDecimal } from '../codec/json.ts'
import { MurmurError, StorageError } from '../errors.ts'

/** Why the pool refuses an operation. BAD_TRANSITION is a programmer error upstream. */
export type MempoolErrorCode = 'BAD_TRANSITION' | 'UNKNOWN_INTENT' | 'CLOSED'

/** Errors of the intent pool. Tests assert on `code`. */
export class MempoolError extends MurmurError<MempoolErrorCode> {}

/** Lifecycle state of an intent. */
export type IntentState = 'pending' | 'assigned' | 'filled' | 'expired' | 'refunded' | 'failed'

/** Every state, in lifecycle order. */
export const INTENT_STATES: readonly IntentState[] = [
  'pending',
  'assigned',
  'filled',
  'expired',
  'refunded',
  'failed',
]

/** States an intent leaves only for `refunded` (an `expired` one whose order a block refunds). */
export const TERMINAL_STATES: ReadonlySet<IntentState> = new Set(['filled', 'expired', 'refunded', 'failed'])

/**
 * The allowed transitions. `assigned -> pending`: the rollup went down or the assignment's deadline
 * passed, the next block re-routes it; `assigned -> assigned`: direct re-assignment to another
 * chain/executor; `pending -> failed`: evicted from a full pool, or refused by a block;
 * `pending -> expired`: the fill deadline passed before any assignment. No `pending -> filled`: a fill
 * answers an assignment. `-> refunded`: the order was opened on its origin settler and not filled by its
 * fill deadline, and a block committed its REFUND leaf (INTERFACES.md, Intent lifecycle); from `pending`
 * (its assignment went back to pending after the open), `assigned`, or `expired` (the pool's own sweep
 * expires intents by its clock, usually before the block that refunds them).
 */
export const TRANSITIONS: Readonly<Record<IntentState, readonly IntentState[]>> = {
  pending: ['assigned', 'expired', 'refunded', 'failed'],
  assigned: ['pending', 'assigned', 'filled', 'expired', 'refunded', 'failed'],
  filled: [],
  expired: ['refunded'],
  refunded: [],
  failed: [],
}

/** True when `from -> to` is in {@link TRANSITIONS}. */
export function canTransition(from: IntentState, to: IntentState): boolean {
  return TRANSITIONS[from].includes(to)
}

/** True for filled, expired, refunded and failed. */
export function isTerminal(state: IntentState): boolean {
  return TERMINAL_STATES.has(state)
}

/** Where and by whom an intent is to be filled, as committed in block `height`. */
export interface Assignment {
  chainId: bigint
  executor: Address
  height: bigint
  /** Unix seconds by which the executor must fill. */
  deadline: number
}

/** The fill transaction that settled an intent. */
export interface Fill {
  chainId: bigint
  txHash: Hex
  blockNumber: bigint
}

/** One state change of an intent. */
export interface HistoryEntry {
  state: IntentState
  /** Unix milliseconds, local clock of this node. */
  atMs: number
  /** Height of the block that caused it, when a block did. */
  height?: bigint
  /** Why, when not obvious (`evicted`, `deadline`, `rollup-down`, ...). */
  reason?: string
}

/** One intent as the pool keeps it. */
export interface IntentRecord {
  /** EIP-712 digest of the order. */
  id: Hex
  intent: SignedIntent
  /** Lowercase. */
  user: Address
  nonce: bigint
  /** Unix seconds. */
  openDeadline: number
  /** Unix seconds. */
  fillDeadline: number
  /** Unix milliseconds when this node first accepted it. */
  receivedAtMs: number
  state: IntentState
  assignment: Assignment | null
  fill: Fill | null
  /** Oldest first; the first entry is `pending` at `receivedAtMs`. Bounded by {@link MAX_HISTORY}. */
  history: HistoryEntry[]
}

/**
 * Most history entries kept per record. A flapping rollup could re-assign an intent once per block;
 * beyond the bound the oldest entries after the first are dropped.
 */
export const MAX_HISTORY = 64

/** Version byte of the stored record. */
export const RECORD_VERSION = 1

/** Header of the stored record (JSON). */
interface RecordHeader {
  receivedAtMs: number
  state: IntentState
  assignment: { chainId: string; executor: string; height: string; deadline: number } | null
  fill: { chainId: string; txHash: string; blockNumber: string } | null
  history: Array<{ state: IntentState; atMs: number; height?: string; reason?: string }>
}

/** Builds the record of a newly accepted intent. */
export function newRecord(id: Hex, intent: SignedIntent, receivedAtMs: number): IntentRecord {
  return {
    id,
    intent,
    user: intent.order.user.toLowerCase() as Address,
    nonce: intent.order.nonce,
    openDeadline: intent.order.openDeadline,
    fillDeadline: intent.order.fillDeadline,
    receivedAtMs,
    state: 'pending',
    assignment: null,
    fill: null,
    history: [{ state: 'pending', atMs: receivedAtMs }],
  }
}

/** What a transition carries besides its target state. */
export interface TransitionDetails {
  /** Required for `assigned`. */
  assignment?: Assignment
  /** Required for `filled`. */
  fill?: Fill
  /** Height of the block that causes the transition. */
  height?: bigint
  reason?: string
}

/**
 * The record after `to`, or a MempoolError BAD_TRANSITION when the table forbids it or the details it
 * needs are missing. `assigned` sets the assignment, `pending` clears it, `filled` sets the fill; the
 * others keep the last assignment, so a GET still shows where an expired intent was headed.
 */
export function applyTransition(
  record: IntentRecord,
  to: IntentState,
  details: TransitionDetails,
  atMs: number,
): IntentRecord {
  if (!canTransition(record.state, to)) {
    throw new MempoolError('BAD_TRANSITION', `intent ${record.id}: ${record.state} -> ${to} is not allowed`)
  }
  let assignment = record.assignment
  let fill = record.fill
  if (to === 'assigned') {
    if (details.assignment === undefined) {
      throw new MempoolError('BAD_TRANSITION', `intent ${record.id}: -> assigned needs an assignment`)
    }
    assignment = { ...details.assignment, executor: details.assignment.executor.toLowerCase() as Address }
  } else if (to === 'pending') {
    assignment = null
  } else if (to === 'filled') {
    if (details.fill === undefined) {
      throw new MempoolError('BAD_TRANSITION', `intent ${record.id}: -> filled needs a fill`)
    }
    fill = { ...details.fill, txHash: details.fill.txHash.toLowerCase() as Hex }
  }
  const entry: HistoryEntry = { state: to, atMs }
  if (details.height !== undefined) entry.height = details.height
  if (details.reason !== undefined) entry.reason = details.reason
  let history = [...record.history, entry]
  if (history.length > MAX_HISTORY)
    history = [history[0]!, ...history.slice(history.length - MAX_HISTORY + 1)]
  return { ...record, state: to, assignment, fill, history }
}

/** Bytes a record counts against the pool's byte bound: the wire size of its signed intent. */
export function intentBytes(intent: SignedIntent): number {
  return signedIntentWireSize(intent)
}

/** Encodes a record for the `intents` sublevel (layout in the module comment). */
export function encodeRecord(record: IntentRecord): Uint8Array {
  const header: RecordHeader = {
    receivedAtMs: record.receivedAtMs,
    state: record.state,
    assignment:
      record.assignment === null
        ? null
        : {
            chainId: toDecimal(record.assignment.chainId),
            executor: record.assignment.executor,
            height: toDecimal(record.assignment.height),
            deadline: record.assignment.deadline,
          },
    fill:
      record.fill === null
        ? null
        : {
            chainId: toDecimal(record.fill.chainId),
            txHash: record.fill.txHash,
            blockNumber: toDecimal(record.fill.blockNumber),
          },
    history: record.history.map((h) => {
      const e: RecordHeader['history'][number] = { state: h.state, atMs: h.atMs }
      if (h.height !== undefined) e.height = toDecimal(h.height)
      if (h.reason !== undefined) e.reason = h.reason
      return e
    }),
  }
  const head = Buffer.from(JSON.stringify(header), 'utf8')
  const wire = encodeSignedIntent(record.intent)
  const out = Buffer.allocUnsafe(5 + head.length + wire.length)
  out[0] = RECORD_VERSION
  out.writeUInt32BE(head.length, 1)
  out.set(head, 5)
  out.set(wire, 5 + head.length)
  return new Uint8Array(out.buffer, out.byteOffset, out.length)
}

/** Decodes {@link encodeRecord}'s output. Throws StorageError CORRUPT on anything else. */
export function decodeRecord(id: string, bytes: Uint8Array): IntentRecord {
  try {
    if (bytes[0] !== RECORD_VERSION) throw new Error(`unknown record version ${bytes[0]}`)
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    const headLen = view.getUint32(1)
    const header = JSON.parse(
      Buffer.from(bytes.buffer, bytes.byteOffset + 5, headLen).toString('utf8'),
    ) as RecordHeader
    const intent = decodeSignedIntent(bytes.subarray(5 + headLen))
    const a = header.assignment
    const f = header.fill
    return {
      id: id as Hex,
      intent,
      user: intent.order.user,
      nonce: intent.order.nonce,
      openDeadline: intent.order.openDeadline,
      fillDeadline: intent.order.fillDeadline,
      receivedAtMs: header.receivedAtMs,
      state: header.state,
      assignment:
        a === null
          ? null
          : {
              chainId: BigInt(a.chainId),
              executor: a.executor as Address,
              height: BigInt(a.height),
              deadline: a.deadline,
            },
      fill:
        f === null
          ? null
          : { chainId: BigInt(f.chainId), txHash: f.txHash as Hex, blockNumber: BigInt(f.blockNumber) },
      history: header.history.map((h) => {
        const e: HistoryEntry = { state: h.state, atMs: h.atMs }
        if (h.height !== undefined) e.height = BigInt(h.height)
        if (h.reason !== undefined) e.reason = h.reason
        return e
      }),
    }
  } catch (err) {
    throw new StorageError('CORRUPT', `intent record ${id}: ${(err as Error).message}`, { cause: err })
  }
}

// Secondary indexes (sublevel `intentIndex`), written in the same batch as the record:
//   s/<state>/<receivedAtMs hex16>/<id>  -> ''   every record, by state then arrival
//   u/<user>/<nonce hex64>               -> id   every intent ever accepted; kept after pruning
//   u/<user>/<nonce hex64>/<chainId hex> -> id   the same, for an order opened on chain (intentNonceKey)
//   d/<fillDeadline hex8>/<id>           -> ''   non-terminal records, by fill deadline
//   t/<terminal atMs hex16>/<id>         -> ''   terminal records, by when they became terminal
// Fixed-width hex makes lexicographic order numeric order.

/** Fixed-width lowercase hex of a non-negative integer. */
export function fixedHex(n: bigint | number, width: number): string {
  return BigInt(n).toString(16).padStart(width, '0')
}

/** Prefix of the by-state index for one state. */
export function stateIndexPrefix(state: IntentState): string {
  return `s/${state}/`
}

/** By-state index key. */
export function stateIndexKey(state: IntentState, receivedAtMs: number, id: string): string {
  return `s/${state}/${fixedHex(receivedAtMs, 16)}/${id}`
}

/** The (user, nonce) part shared by the index key and the in-memory nonce set. */
export function nonceKey(user: string, nonce: bigint): string {
  return `${user.toLowerCase()}/${fixedHex(nonce, 64)}`
}

/**
 * The replay key the pool keeps for an intent: (user, nonce) for a signed one; for an order opened on
 * chain (unsigned) its origin chain too, since its nonce is the counter of that origin's settler and two
 * settlers give one user the same nonce (`u/<user>/<nonce>/<chainId hex>`).
 */
export function intentNonceKey(intent: SignedIntent): string {
  const base = nonceKey(intent.order.user, intent.order.nonce)
  return isOnchainIntent(intent) ? `${base}/${intent.order.originChainId.toString(16)}` : base
}

/** Prefix of the (user, nonce) index. */
export const NONCE_INDEX_PREFIX = 'u/'

/** (user, nonce) index key; its value is the id. */
export function nonceIndexKey(user: string, nonce: bigint): string {
  return NONCE_INDEX_PREFIX + nonceKey(user, nonce)
}

/** Prefix of the fill-deadline index. */
export const DEADLINE_INDEX_PREFIX = 'd/'

/** Fill-deadline index key (non-terminal records only). */
export function deadlineIndexKey(fillDeadline: number, id: string): string {
  return `d/${fixedHex(fillDeadline, 8)}/${id}`
}

/** Prefix of the terminal-time index. */
export const TERMINAL_INDEX_PREFIX = 't/'

/** Terminal-time index key (terminal records only). */
export function terminalIndexKey(atMs: number, id: string): string {
  return `t/${fixedHex(atMs, 16)}/${id}`
}

/** The id at the end of an index key (`.../<id>`). */
export function idOfIndexKey(key: string): Hex {
  return key.slice(key.lastIndexOf('/') + 1) as Hex
}

/** When a terminal record became terminal: the time of its last history entry. */
export function terminalAtMs(record: IntentRecord): number | null {
  return isTerminal(record.state) ? record.history[record.history.length - 1]!.atMs : null
}

/** The by-state, deadline and terminal index keys of a record (not the nonce key, which is forever). */
export function recordIndexKeys(record: IntentRecord): string[] {
  const keys = [stateIndexKey(record.state, record.receivedAtMs, record.id)]
  const t = terminalAtMs(record)
  if (t === null) keys.push(deadlineIndexKey(record.fillDeadline, record.id))
  else keys.push(terminalIndexKey(t, record.id))
  return keys
}

/** JSON form of an {@link Assignment}. */
export interface AssignmentJson {
  chainId: string
  executor: string
  height: string
  /** Unix seconds. */
  deadline: number
}

/** JSON form of a {@link Fill}. */
export interface FillJson {
  chainId: string
  txHash: string
  blockNumber: string
}

/** JSON form of a {@link HistoryEntry}; `atMs` is unix milliseconds, as its name says. */
export interface HistoryEntryJson {
  state: IntentState
  atMs: number
  height?: string
  reason?: string
}

/** Body of `GET /v1/intents/:id`. */
export interface IntentRecordJson {
  id: string
  state: IntentState
  order: GaslessCrossChainOrderJson
  signature: string
  assignment: AssignmentJson | null
  fill: FillJson | null
  history: HistoryEntryJson[]
}

/**
 * The `GET /v1/intents/:id` body: uint256 and heights as decimal strings, lowercase hex, deadlines in
 * unix seconds, history times in unix milliseconds (`atMs`).
 */
export function toJson(record: IntentRecord): IntentRecordJson {
  const a = record.assignment
  const f = record.fill
  return {
    id: record.id,
    state: record.state,
    order: orderToJson(record.intent.order),
    signature: record.intent.signature,
    assignment:
      a === null
        ? null
        : {
            chainId: toDecimal(a.chainId),
            executor: a.executor.toLowerCase(),
            height: toDecimal(a.height),
            deadline: a.deadline,
          },
    fill:
      f === null
        ? null
        : {
            chainId: toDecimal(f.chainId),
            txHash: f.txHash.toLowerCase(),
            blockNumber: toDecimal(f.blockNumber),
          },
    history: record.history.map((h) => {
      const e: HistoryEntryJson = { state: h.state, atMs: h.atMs }
      if (h.height !== undefined) e.height = toDecimal(h.height)
      if (h.reason !== undefined) e.reason = h.reason
      return e
    }),
  }
}
