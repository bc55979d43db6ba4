/**
 * The executor: sends the fill transaction of each intent assigned to this validator, waits until it is
 * mined with enough confirmations, then signs and publishes the {@link Fill}.
 *
 * Never twice, even across crashes. The rules that make it so:
 * 1. persist before you send: the signed transaction (its hash and nonce) is in the `fills` sublevel
 *    before `eth_sendRawTransaction`; every version of a fill ever signed is recorded;
 * 2. a fill owns its nonce: every version of a fill's transaction uses the same nonce, so at most one of
 *    them can be mined; a fill moves to a new nonce only when its nonce was consumed by a transaction that
 *    is not one of its own (found by hash, or by scanning the account's transaction at that nonce for the
 *    intent id marker, see fill.ts);
 * 3. on start, {@link Executor.recover} resumes every fill not finished, looking on chain before ever
 *    sending again.
 *
 * Deadlines: a fill is only started while its assignment's deadline is more than `deadlineMarginSec`
 * away. Once a nonce is taken the fill is carried through: abandoning it would leave a nonce gap that
 * blocks every later fill of the account.
 */
import type { Logger } from 'pino'
import { Counter, Histogram, type Registry } from 'prom-client'
import {
  type Address,
  createPublicClient,
  type Hex,
  keccak256,
  type LocalAccount,
  type PublicClient,
} from 'viem'
import { MurmurError } from '../errors.ts'
import { crashPoint } from '../state/crash-hook.ts'
import { prefixEnd, type Store } from '../state/store.ts'
import { abortableDelay } from './delay.ts'
import { type ExpectedOutput, type Fill, fillCall, type SignedFill, signFill } from './fill.ts'
import { type RpcTransport, rpcTransport } from './rpc.ts'

export type ExecutorErrorCode =
  | 'UNKNOWN_CHAIN'
  | 'DEADLINE_PASSED'
  | 'CONFLICT'
  | 'SUPERSEDED'
  | 'REVERTED'
  | 'SEND_FAILED'
  | 'STOPPED'
  | 'CRASHED'
/** A fill that could not be (or must not be) carried out. */
export class ExecutorError extends MurmurError<ExecutorErrorCode> {}

/** A committed assignment of an intent to this validator. */
export interface Assignment {
  intentId: Hex
  chainId: bigint
  recipient: Address
  /** 0x0 for the native token. */
  outputToken: Address
  outputAmount: bigint
  /** Fill deadline, unix seconds. */
  deadline: number
  /** The destination's settler, when the rollup has settlement contracts: the fill is its `fill` call. */
  settler?: Address
  /** `abi.encode(order)` of the intent, what the settler's `fill` recomputes the order id from. */
  originData?: Hex
}

/** Where a fill stands. `failed`: reverted on chain, or refused by the RPC with no version of it known. */
export type FillState = 'sending' | 'sent' | 'confirmed' | 'failed'

/**
 * What a record sends. `fill` (the default, records written before kinds existed) pays an intent's
 * output; the others are the settlement transactions of issue 10, sent with the same guarantees (persist
 * before send, one nonce per job, the chain checked before any resend): `approve` lets a destination
 * settler pull an ERC-20 output, `open` escrows the user's input on origin (`openFor`), `claim` repays
 * the executor, `refund` pays a user back, `rotate` moves a light client to the next validator set.
 */
export type TxKind = 'fill' | 'approve' | 'open' | 'claim' | 'refund' | 'refund-expired' | 'rotate'

/** A settlement transaction to send exactly once (see {@link Executor.transact}). */
export interface TxJob {
  readonly kind: Exclude<TxKind, 'fill'>
  /** Unique within the kind: the intent id of an open, a hash of the leaves of a claim. */
  readonly id: Hex
  readonly chainId: bigint
  readonly call: { readonly to: Address; readonly value: bigint; readonly data: Hex }
}

/** A settlement transaction mined with enough blocks on top. */
export interface TxResult {
  readonly kind: TxKind
  readonly id: Hex
  readonly chainId: bigint
  readonly txHash: Hex
  readonly blockNumber: bigint
  readonly blockHash: Hex
}

/** The executor's durable record of one fill (JSON in the `fills` sublevel; bigints as decimal strings). */
export interface FillRecord {
  /** Absent: 'fill'. */
  kind?: TxKind
  /** The transaction of a settlement job (absent for a fill: `fillCall` of the record's output). */
  call?: { to: Address; value: string; data: Hex }
  /** The job's id: the intent id of a fill or an open. */
  intentId: Hex
  chainId: string
  recipient: Address
  outputToken: Address
  outputAmount: string
  deadline: number
  settler?: Address
  originData?: Hex
  /** The nonce every version of this fill's transaction uses. */
  nonce: string
  /** Gas limit of the transaction. */
  gas: string
  maxFeePerGas: string
  maxPriorityFeePerGas: string
  /** Hash of the latest version (the one in `raw`). */
  txHash: Hex
  /** Every version ever signed, oldest first: any of them may be the one mined. */
  txHashes: Hex[]
  /** The latest signed transaction, for rebroadcast. */
  raw: Hex
  state: FillState
  /** When the latest version was sent (or signed, while `sending`), unix ms. */
  sentAtMs: number
  /** Set once mined. */
  minedTxHash?: Hex
  blockNumber?: string
  /** Hash of the block the fill transaction is in, set once confirmed. */
  blockHash?: Hex
  /** The signed fill, once confirmed. Records written before fills named their block lack `blockHash`. */
  fill?: {
    fill: {
      intentId: Hex
      chainId: string
      txHash: Hex
      blockNumber: string
      blockHash?: Hex
      executor: Address
    }
    signature: Hex
  }
  /** True once the fill was handed to `publishFill` without error. */
  announced?: boolean
  error?: string
}

/** What {@link Executor.execute} resolves with. */
export interface FillResult {
  intentId: Hex
  chainId: bigint
  txHash: Hex
  blockNumber: bigint
  blockHash: Hex
  fill: SignedFill
  /** False when publishing failed; {@link Executor.recover} publishes it again. */
  announced: boolean
}

const NATIVE_ADDRESS: Address = '0x0000000000000000000000000000000000000000'

/** Fills started within this many ms share one base-fee read. */
const FEE_CACHE_MS = 250

/** Options of an {@link Executor}. */
export interface ExecutorOptions {
  /** RPC URL of each rollup this validator fills on, by chain id. */
  rollups: ReadonlyMap<number, string>
  /** Blocks on top of (and including) the fill's block before the fill is announced. Default 1. */
  confirmations?: number
  /**
   * Genesis `rollups[].confirmations` by chain id: a fill is announced only once `head - blockNumber`
   * reaches it on this chain, when validators count its block final (rollups/fill.ts `FillBlocks`); a
   * fill announced earlier would only be checked as 'pending'. Chains not listed: 0.
   */
  rollupConfirmations?: ReadonlyMap<number, number>
  /** Timeout of one RPC request. Default 5 000 ms. */
  rpcTimeoutMs?: number
  /** Priority fee; maxFeePerGas = 2 × base fee + tip. Default 1 gwei. */
  tipWei?: bigint
  /** Interval of receipt and confirmation polls. Default 250 ms. */
  receiptPollMs?: number
  /** A version pending this long gets replaced at the same nonce with higher fees. Default 6 000 ms. */
  stuckAfterMs?: number
  /** Backoff of retryable errors: base, doubling up to max. Defaults 100 and 2 000 ms. */
  retryBaseMs?: number
  retryMaxMs?: number
  /** Non-retryable RPC refusals of a send before the fill fails. Default 3. */
  maxSendRefusals?: number
  /** A fill is not started within this many seconds of its deadline. Default 2. */
  deadlineMarginSec?: number
  /** Gas limit = estimate × (10 000 + margin) / 10 000. Default 2 000 (20 %). */
  gasMarginBps?: number
}

/** Defaults of {@link ExecutorOptions}. */
export const DEFAULT_EXECUTOR_OPTIONS: Omit<Required<ExecutorOptions>, 'rollups'> = {
  confirmations: 1,
  rollupConfirmations: new Map(),
  rpcTimeoutMs: 5_000,
  tipWei: 1_000_000_000n,
  receiptPollMs: 250,
  stuckAfterMs: 6_000,
  retryBaseMs: 100,
  retryMaxMs: 2_000,
  maxSendRefusals: 3,
  deadlineMarginSec: 2,
  gasMarginBps: 2_000,
}

/** Test hooks standing in for a crash at the two dangerous points. A hook that throws kills the executor. */
export interface ExecutorFaults {
  /** After the `sending` record is durable, before `eth_sendRawTransaction`. */
  beforeSend?(record: Readonly<FillRecord>): void
  /** Right after `eth_sendRawTransaction` answered, before the record says `sent`. */
  afterSend?(record: Readonly<FillRecord>): void
}

/** Collaborators of an {@link Executor}. */
export interface ExecutorModules {
  /** Records live in the `fills` sublevel. */
  store: Store
  /** The validator's key: signs fill transactions and fills. */
  account: Pick<LocalAccount, 'address' | 'signTransaction' | 'signTypedData'>
  log: Logger
  registry: Registry
  networkId: string
  /** Gossips a signed fill. A rejection leaves the fill unannounced until the next {@link Executor.recover}. */
  publishFill: (fill: SignedFill) => void | Promise<void>
  /** Wall clock, unix ms. Default Date.now. */
  now?: () => number
  faults?: ExecutorFaults
}

// Layout of the `fills` sublevel: `r/<intentId>` -> FillRecord; `o/<intentId>` -> {chainId, nonce} for
// every fill not finished (not yet confirmed and announced, and not failed), so recovery reads only those.
const RECORD_PREFIX = 'r/'
const OPEN_PREFIX = 'o/'

/**
 * Key of a record below the prefixes: the intent id of a fill, `<kind>/<chainId>/<id>` of a settlement job
 * (a job is one transaction on one chain: the same id on two chains is two jobs).
 */
function jobKey(kind: TxKind | undefined, id: Hex, chainId: bigint | string): string {
  const lower = id.toLowerCase()
  return kind === undefined || kind === 'fill' ? lower : `${kind}/${chainId}/${lower}`
}

interface OpenEntry {
  chainId: string
  nonce: string
}

interface Chain {
  chainId: bigint
  client: PublicClient
  /** Next nonce to hand out; undefined until synced (and after a nonce error). */
  next: bigint | undefined
  /** Serialises nonce allocation and first sends on this chain. */
  lock: Promise<void>
  /** Latest base fee, asked at most once per FEE_CACHE_MS (performance.now) for all fills started then. */
  baseFee: { atMs: number; value: Promise<bigint> } | undefined
  /** Highest block number seen by the head watch. */
  head: bigint | undefined
  /** The head watch running for the fills waiting on this chain: resolves at the next new head. */
  nextHead: Promise<void> | undefined
}

/** A fill waits at most this many polls for a new head before it looks at the chain anyway. */
const HEAD_WAIT_POLLS = 4

type SendErrorKind = 'known' | 'nonce' | 'underpriced' | 'network' | 'refused'

/** The node refused a transaction for a reason that will not go away by waiting (bad funds, bad gas). */
class SendRefused extends Error {
  constructor(cause: unknown) {
    super(`send refused: ${(cause as Error)?.message ?? String(cause)}`, { cause })
  }
}

/** Classifies an RPC error of a send by the node's message (geth, reth and anvil wordings). */
function classifySendError(err: unknown): SendErrorKind {
  const parts: string[] = []
  let e: unknown = err
  for (let i = 0; i < 8 && e !== undefined && e !== null; i++) {
    const x = e as {
      message?: unknown
      details?: unknown
      shortMessage?: unknown
      name?: unknown
      cause?: unknown
    }
    parts.push(
      String(x.message ?? ''),
      String(x.details ?? ''),
      String(x.shortMessage ?? ''),
      String(x.name ?? ''),
    )
    e = x.cause
  }
  const text = parts.join(' | ').toLowerCase()
  if (/already known|already imported|known transaction/.test(text)) return 'known'
  if (/nonce too low|nonce has already been used|nonce too high/.test(text)) return 'nonce'
  if (
    /underpriced|fee cap less than|max fee per gas less than|fee too low|transaction is outdated/.test(text)
  ) {
    return 'underpriced'
  }
  if (
    /httprequesterror|timeouterror|fetch failed|econnrefused|econnreset|socket|network|timed out|took too long|aborted/.test(
      text,
    )
  ) {
    return 'network'
  }
  return 'refused'
}

/** Any failure talking to the RPC (not a refusal of a transaction). */
function isNetworkError(err: unknown): boolean {
  return !(err instanceof MurmurError) && classifySendError(err) === 'network'
}

function counter<L extends string>(registry: Registry, name: string, help: string, labels: L[]): Counter<L> {
  return (
    (registry.getSingleMetric(name) as Counter<L> | undefined) ??
    new Counter({ name, help, labelNames: labels, registers: [registry] })
  )
}

/**
 * Fills assignments on the rollups, exactly once. `execute` is idempotent: the same intent executed again
 * (concurrently, later, or by a new Executor on the same store after a crash) resolves with the same fill.
 */
export class Executor {
  readonly options: Omit<Required<ExecutorOptions>, 'rollups'> & Pick<ExecutorOptions, 'rollups'>
  readonly #m: ExecutorModules
  readonly #log: Logger
  readonly #now: () => number
  readonly #address: Address
  readonly #chains = new Map<bigint, Chain>()
  readonly #inflight = new Map<string, Promise<FillResult>>()
  readonly #abort = new AbortController()
  readonly #transports: RpcTransport[] = []
  #crashed = false
  readonly #metrics: {
    fills: Counter<'chain_id' | 'result'>
    sends: Counter<'chain_id' | 'kind'>
    sendErrors: Counter<'chain_id' | 'reason'>
    duration: Histogram<'chain_id'>
  }

  constructor(options: ExecutorOptions, modules: ExecutorModules) {
    this.options = { ...DEFAULT_EXECUTOR_OPTIONS, ...options }
    if (!Number.isInteger(this.options.confirmations) || this.options.confirmations < 1) {
      throw new RangeError('confirmations must be a positive integer')
    }
    this.#m = modules
    this.#log = modules.log.child({ module: 'executor' })
    this.#now = modules.now ?? Date.now
    this.#address = modules.account.address.toLowerCase() as Address
    for (const [chainId, url] of options.rollups) {
      // Concurrent fills poll and send at once: their calls of one tick go as one JSON-RPC batch.
      const rpc = rpcTransport(url, {
        timeout: this.options.rpcTimeoutMs,
        retryCount: 0,
        batch: { batchSize: 128, wait: 0 },
        fetchOptions: { signal: this.#abort.signal },
      })
      this.#transports.push(rpc)
      this.#chains.set(BigInt(chainId), {
        chainId: BigInt(chainId),
        client: createPublicClient({ transport: rpc.transport }),
        next: undefined,
        lock: Promise.resolve(),
        baseFee: undefined,
        head: undefined,
        nextHead: undefined,
      })
    }
    const r = modules.registry
    const durationName = 'murmur_rollups_fill_duration_ms'
    this.#metrics = {
      fills: counter(r, 'murmur_rollups_fills_total', 'Fills finished, by result', ['chain_id', 'result']),
      sends: counter(r, 'murmur_rollups_fill_txs_sent_total', 'Fill transactions sent, by kind', [
        'chain_id',
        'kind',
      ]),
      sendErrors: counter(r, 'murmur_rollups_fill_send_errors_total', 'Failed fill sends, by reason', [
        'chain_id',
        'reason',
      ]),
      duration:
        (r.getSingleMetric(durationName) as Histogram<'chain_id'> | undefined) ??
        new Histogram({
          name: durationName,
          help: 'From first send to confirmation, ms',
          labelNames: ['chain_id'],
          buckets: [250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000],
          registers: [r],
        }),
    }
  }

  /** The executor's address (lowercase). */
  get address(): Address {
    return this.#address
  }

  /**
   * Fills an assignment, or resolves with the fill already made for it. Rejects ExecutorError:
   * UNKNOWN_CHAIN, DEADLINE_PASSED (not started), CONFLICT (a fill of this intent exists on another chain),
   * REVERTED, SEND_FAILED, STOPPED.
   */
  execute(assignment: Assignment): Promise<FillResult> {
    const id = assignment.intentId.toLowerCase() as Hex
    // Keyed by chain too: a re-assignment to another rollup must not wait on the old fill's loop.
    const key = `${assignment.chainId}/${id}`
    const running = this.#inflight.get(key)
    if (running !== undefined) return running
    const p = this.#execute({ ...assignment, intentId: id }).finally(() => this.#inflight.delete(key))
    this.#inflight.set(key, p)
    return p
  }

  /** Fills abandoned because consensus re-assigned their intent to another rollup: `chainId/intentId`. */
  readonly #superseded = new Set<string>()

  /**
   * Resumes every fill not finished (after a crash or restart): looks for its transactions on chain before
   * sending anything, then carries it to confirmation, and publishes confirmed fills never announced.
   * Resolves with the outcome of each, by intent id.
   */
  async recover(): Promise<Map<Hex, PromiseSettledResult<FillResult>>> {
    const open = await this.#m.store.range<OpenEntry>('fills', {
      gte: OPEN_PREFIX,
      lt: prefixEnd(OPEN_PREFIX),
      limit: 100_000,
    })
    // Settlement jobs (keys `<kind>/<id>`) are resumed by transact(), from their records, below.
    const fills = open.filter(([k]) => !k.slice(OPEN_PREFIX.length).includes('/'))
    const jobs = open.filter(([k]) => k.slice(OPEN_PREFIX.length).includes('/'))
    const ids = fills.map(([k]) => k.slice(OPEN_PREFIX.length) as Hex)
    if (open.length > 0)
      this.#log.info({ fills: ids.length, jobs: jobs.length }, 'recovering unfinished fills')
    for (const [k] of jobs) void this.#resumeJob(k.slice(OPEN_PREFIX.length)).catch(() => {})
    const settled = await Promise.allSettled(
      fills.map(([k, entry]) => {
        const id = k.slice(OPEN_PREFIX.length) as Hex
        const key = `${entry.chainId}/${id}`
        const running = this.#inflight.get(key)
        if (running !== undefined) return running
        const p = this.#resume(id).finally(() => this.#inflight.delete(key))
        this.#inflight.set(key, p)
        return p
      }),
    )
    return new Map(ids.map((id, i) => [id, settled[i]!]))
  }

  /** In-flight settlement jobs by key. */
  readonly #jobs = new Map<string, Promise<TxResult>>()

  /**
   * Sends a settlement transaction exactly once and resolves when it is mined with enough blocks on top
   * (rejects REVERTED when it reverted, SEND_FAILED when the RPC refused it). Idempotent like
   * {@link execute}: the same job again, concurrently or after a crash, resolves with the same transaction.
   */
  transact(job: TxJob): Promise<TxResult> {
    const key = jobKey(job.kind, job.id, job.chainId)
    const running = this.#jobs.get(key)
    if (running !== undefined) return running
    const p = (async () => {
      this.#checkAlive()
      const chain = this.#chains.get(job.chainId)
      if (chain === undefined) throw new ExecutorError('UNKNOWN_CHAIN', `no RPC for chain ${job.chainId}`)
      let rec = await this.#m.store.get<FillRecord>('fills', RECORD_PREFIX + key)
      rec ??= await this.#withRetry(chain, () => this.#startJob(chain, job))
      return this.#asTx(await this.#drive(chain, rec))
    })().finally(() => this.#jobs.delete(key))
    this.#jobs.set(key, p)
    return p
  }

  /** The record of a settlement job, if any. */
  async jobRecord(kind: Exclude<TxKind, 'fill'>, chainId: bigint, id: Hex): Promise<FillRecord | undefined> {
    return this.#m.store.get<FillRecord>('fills', RECORD_PREFIX + jobKey(kind, id, chainId))
  }

  async #resumeJob(key: string): Promise<TxResult> {
    const running = this.#jobs.get(key)
    if (running !== undefined) return running
    const p = (async () => {
      const rec = await this.#m.store.get<FillRecord>('fills', RECORD_PREFIX + key)
      if (rec === undefined) throw new Error(`open job ${key} has no record`)
      const chain = this.#chains.get(BigInt(rec.chainId))
      if (chain === undefined) throw new ExecutorError('UNKNOWN_CHAIN', `no RPC for chain ${rec.chainId}`)
      return this.#asTx(await this.#drive(chain, rec))
    })().finally(() => this.#jobs.delete(key))
    this.#jobs.set(key, p)
    p.catch((err: unknown) =>
      this.#log.warn({ job: key, err: (err as Error).message }, 'settlement job failed'),
    )
    return p
  }

  #asTx(r: FillResult | TxResult): TxResult {
    if ('kind' in r) return r
    throw new Error('a settlement job drove a fill record')
  }

  /** The stored record of an intent's fill, if any. */
  async record(intentId: Hex): Promise<FillRecord | undefined> {
    return this.#m.store.get<FillRecord>('fills', RECORD_PREFIX + intentId.toLowerCase())
  }

  /** Stops: pending executions reject STOPPED (their records stay for {@link recover}). */
  async stop(): Promise<void> {
    this.#abort.abort()
    await Promise.allSettled([...this.#inflight.values()])
    await Promise.all(this.#transports.splice(0).map((t) => t.close()))
  }

  async #execute(a: Assignment): Promise<FillResult> {
    const r = await this.#executeAny(a)
    if ('kind' in r) throw new Error('a fill drove a settlement record')
    return r
  }

  async #executeAny(a: Assignment): Promise<FillResult | TxResult> {
    this.#checkAlive()
    const chain = this.#chains.get(a.chainId)
    if (chain === undefined) throw new ExecutorError('UNKNOWN_CHAIN', `no RPC for chain ${a.chainId}`)
    let rec = await this.record(a.intentId)
    if (rec !== undefined && BigInt(rec.chainId) !== a.chainId) {
      if (rec.state === 'confirmed') {
        throw new ExecutorError(
          'CONFLICT',
          `intent ${a.intentId} already has a fill on chain ${rec.chainId}, not filling on ${a.chainId}`,
        )
      }
      // Consensus re-assigned the intent (its rollup went down, or the deadline passed): the committed
      // assignment is the new one. The old fill is abandoned; should its transaction still land on the
      // old rollup later, the executor pays twice, the user is never paid twice by the network's record.
      this.#log.warn(
        { intentId: a.intentId, from: rec.chainId, to: a.chainId.toString() },
        're-assigned to another rollup; abandoning the fill on the old one',
      )
      this.#superseded.add(`${rec.chainId}/${a.intentId}`)
      rec = undefined
    }
    // The intent may come back to a rollup it was taken from: a fill started now is not superseded.
    if (rec === undefined) this.#superseded.delete(`${a.chainId}/${a.intentId}`)
    // Assigned (again) a fill we confirmed already: our announcement may never have reached the network,
    // so it goes out once more (receivers dedupe), or the intent would be re-assigned at every deadline.
    if (rec?.state === 'confirmed' && (rec.kind ?? 'fill') === 'fill') rec.announced = false
    if (rec === undefined) {
      if (this.#now() / 1000 > a.deadline - this.options.deadlineMarginSec) {
        throw new ExecutorError('DEADLINE_PASSED', `deadline of ${a.intentId} is too close or passed`)
      }
      rec = await this.#withRetry(chain, () => this.#startNew(chain, a))
    }
    return this.#drive(chain, rec)
  }

  async #resume(intentId: Hex): Promise<FillResult> {
    const r = await this.#resumeAny(intentId)
    if ('kind' in r) throw new Error('a fill drove a settlement record')
    return r
  }

  async #resumeAny(intentId: Hex): Promise<FillResult | TxResult> {
    this.#checkAlive()
    const rec = await this.record(intentId)
    if (rec === undefined) throw new Error(`open fill ${intentId} has no record`)
    const chain = this.#chains.get(BigInt(rec.chainId))
    if (chain === undefined) throw new ExecutorError('UNKNOWN_CHAIN', `no RPC for chain ${rec.chainId}`)
    return this.#drive(chain, rec)
  }

  #checkAlive(): void {
    if (this.#crashed) throw new ExecutorError('CRASHED', 'executor crashed (fault injected)')
    if (this.#abort.signal.aborted) throw new ExecutorError('STOPPED', 'executor stopped')
  }

  // -------------------------------------------------------------------------------------------------
  // Records.

  async #save(rec: FillRecord): Promise<void> {
    // An abandoned fill's loop may be mid-step when the re-assignment's record is written: it must not
    // write its own record over it.
    const isFill = rec.kind === undefined || rec.kind === 'fill'
    if (isFill && this.#superseded.has(`${rec.chainId}/${rec.intentId}`)) {
      throw new ExecutorError('SUPERSEDED', `fill of ${rec.intentId} on ${rec.chainId} superseded`)
    }
    const key = jobKey(rec.kind, rec.intentId, rec.chainId)
    const open = !(rec.state === 'failed' || (rec.state === 'confirmed' && rec.announced === true))
    await this.#m.store.batch([
      { type: 'put', sublevel: 'fills', key: RECORD_PREFIX + key, value: rec },
      open
        ? {
            type: 'put',
            sublevel: 'fills',
            key: OPEN_PREFIX + key,
            value: { chainId: rec.chainId, nonce: rec.nonce } satisfies OpenEntry,
          }
        : { type: 'del', sublevel: 'fills', key: OPEN_PREFIX + key },
    ])
  }

  /** Highest nonce held by an unfinished fill on `chainId`, or -1. */
  async #maxOpenNonce(chainId: bigint): Promise<bigint> {
    const open = await this.#m.store.range<OpenEntry>('fills', {
      gte: OPEN_PREFIX,
      lt: prefixEnd(OPEN_PREFIX),
      limit: 100_000,
    })
    let max = -1n
    for (const [, e] of open)
      if (BigInt(e.chainId) === chainId && BigInt(e.nonce) > max) max = BigInt(e.nonce)
    return max
  }

  // -------------------------------------------------------------------------------------------------
  // Nonces and signing.

  /** Runs `fn` holding the chain's lock (nonce allocation and the record that holds the nonce). */
  async #locked<T>(chain: Chain, fn: () => Promise<T>): Promise<T> {
    const prev = chain.lock
    let release!: () => void
    chain.lock = new Promise<void>((r) => {
      release = r
    })
    await prev
    try {
      return await fn()
    } finally {
      release()
    }
  }

  /** Next nonce: the node's pending count, but never one an unfinished fill of ours already holds. */
  async #allocateNonce(chain: Chain): Promise<bigint> {
    if (chain.next === undefined) {
      const pending = BigInt(
        await chain.client.getTransactionCount({ address: this.#address, blockTag: 'pending' }),
      )
      const held = (await this.#maxOpenNonce(chain.chainId)) + 1n
      chain.next = pending > held ? pending : held
      this.#log.debug({ chainId: chain.chainId, next: chain.next }, 'nonce synced')
    }
    const n = chain.next
    chain.next = n + 1n
    return n
  }

  /** The latest block's base fee, shared by the fills started within FEE_CACHE_MS. */
  #baseFee(chain: Chain): Promise<bigint> {
    const now = performance.now()
    const held = chain.baseFee
    if (held !== undefined && now - held.atMs < FEE_CACHE_MS) return held.value
    const value = chain.client.getBlock({ blockTag: 'latest' }).then((b) => b.baseFeePerGas ?? 0n)
    chain.baseFee = { atMs: now, value }
    value.catch(() => {
      if (chain.baseFee?.value === value) chain.baseFee = undefined
    })
    return value
  }

  async #fees(chain: Chain, floor?: { maxFeePerGas: bigint; maxPriorityFeePerGas: bigint }) {
    const base = floor === undefined ? await this.#baseFee(chain) : await this.#freshBaseFee(chain)
    let tip = this.options.tipWei
    let maxFee = 2n * base + tip
    if (floor !== undefined) {
      // A replacement at the same nonce must raise both fees (geth: by at least 10 %).
      const minTip = (floor.maxPriorityFeePerGas * 1125n) / 1000n + 1n
      const minFee = (floor.maxFeePerGas * 1125n) / 1000n + 1n
      if (tip < minTip) tip = minTip
      if (maxFee < minFee) maxFee = minFee
      if (maxFee < tip) maxFee = tip
    }
    return { maxFeePerGas: maxFee, maxPriorityFeePerGas: tip, baseFee: base }
  }

  /** A replacement prices against the head now, not a cached figure. */
  async #freshBaseFee(chain: Chain): Promise<bigint> {
    chain.baseFee = undefined
    return this.#baseFee(chain)
  }

  async #sign(
    chain: Chain,
    rec: Pick<
      FillRecord,
      'kind' | 'call' | 'intentId' | 'recipient' | 'outputToken' | 'outputAmount' | 'settler' | 'originData'
    >,
    nonce: bigint,
    gas: bigint,
    fees: { maxFeePerGas: bigint; maxPriorityFeePerGas: bigint },
  ): Promise<{ raw: Hex; hash: Hex }> {
    const call = this.#callOf(rec)
    const raw = await this.#m.account.signTransaction({
      type: 'eip1559',
      chainId: Number(chain.chainId),
      nonce: Number(nonce),
      to: call.to,
      value: call.value,
      data: call.data,
      gas,
      maxFeePerGas: fees.maxFeePerGas,
      maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
    })
    return { raw, hash: keccak256(raw) }
  }

  #expected(
    rec: Pick<FillRecord, 'recipient' | 'outputToken' | 'outputAmount' | 'settler' | 'originData'>,
  ): ExpectedOutput {
    return {
      recipient: rec.recipient,
      outputToken: rec.outputToken,
      outputAmount: BigInt(rec.outputAmount),
      ...(rec.settler === undefined ? {} : { settler: rec.settler, originData: rec.originData ?? '0x' }),
    }
  }

  /** The transaction a record sends: its job's call, or the fill of its output. */
  #callOf(
    rec: Pick<
      FillRecord,
      'call' | 'intentId' | 'recipient' | 'outputToken' | 'outputAmount' | 'settler' | 'originData'
    >,
  ): { to: Address; value: bigint; data: Hex } {
    if (rec.call !== undefined) return { to: rec.call.to, value: BigInt(rec.call.value), data: rec.call.data }
    return fillCall(rec.intentId, this.#expected(rec))
  }

  // -------------------------------------------------------------------------------------------------
  // Sending.

  /** First version of a new fill: estimate, take a nonce, sign, persist, send. */
  async #startNew(chain: Chain, a: Assignment): Promise<FillRecord> {
    const base = {
      intentId: a.intentId,
      recipient: a.recipient.toLowerCase() as Address,
      outputToken: a.outputToken.toLowerCase() as Address,
      outputAmount: a.outputAmount.toString(),
      ...(a.settler === undefined
        ? {}
        : { settler: a.settler.toLowerCase() as Address, originData: a.originData ?? ('0x' as Hex) }),
    }
    const call = this.#callOf(base)
    // Estimated before a nonce is taken, so a fill that cannot work (no funds, reverting) holds no nonce.
    const estimate = await chain.client.estimateGas({ account: this.#address, ...call })
    const gas = (estimate * BigInt(10_000 + this.options.gasMarginBps)) / 10_000n
    // The lock covers the nonce and the durable record; the send happens outside it, so the fills of one
    // block go out together (a node holds a later nonce until the earlier one arrives).
    const started = await this.#locked(chain, async () => {
      // Another execute of the same intent on this chain may have won the race to the lock. A record on
      // another chain is the fill this re-assignment abandoned: the new one replaces it.
      const existing = await this.record(a.intentId)
      if (existing !== undefined && existing.chainId === a.chainId.toString()) {
        return { rec: existing, fresh: false }
      }
      const fees = await this.#fees(chain)
      const nonce = await this.#allocateNonce(chain)
      let signed: { raw: Hex; hash: Hex }
      let rec: FillRecord
      try {
        signed = await this.#sign(chain, base, nonce, gas, fees)
        rec = this.#newRecord(a, base, nonce, gas, fees, signed)
        await this.#save(rec)
      } catch (err) {
        // The nonce is not held by any record: resync so it is handed out again, not left as a gap.
        chain.next = undefined
        throw err
      }
      return { rec, fresh: true }
    })
    const { rec, fresh } = started
    if (fresh) {
      this.#log.info(
        { intentId: a.intentId, chainId: a.chainId, nonce: rec.nonce, txHash: rec.txHash },
        'sending fill',
      )
      await this.#send(chain, rec, 'first')
    }
    return rec
  }

  /** First version of a settlement job: estimate, take a nonce, sign, persist, send (as {@link #startNew}). */
  async #startJob(chain: Chain, job: TxJob): Promise<FillRecord> {
    const call = { to: job.call.to.toLowerCase() as Address, value: job.call.value, data: job.call.data }
    const estimate = await chain.client.estimateGas({ account: this.#address, ...call })
    const gas = (estimate * BigInt(10_000 + this.options.gasMarginBps)) / 10_000n
    const key = jobKey(job.kind, job.id, job.chainId)
    const started = await this.#locked(chain, async () => {
      const existing = await this.#m.store.get<FillRecord>('fills', RECORD_PREFIX + key)
      if (existing !== undefined) return { rec: existing, fresh: false }
      const fees = await this.#fees(chain)
      const nonce = await this.#allocateNonce(chain)
      const base = {
        kind: job.kind,
        call: { to: call.to, value: call.value.toString(), data: call.data },
        intentId: job.id.toLowerCase() as Hex,
        recipient: call.to,
        outputToken: NATIVE_ADDRESS,
        outputAmount: '0',
      }
      let rec: FillRecord
      try {
        const signed = await this.#sign(chain, base, nonce, gas, fees)
        rec = {
          ...this.#newRecord({ chainId: job.chainId, deadline: 0 }, base, nonce, gas, fees, signed),
          ...base,
        }
        await this.#save(rec)
      } catch (err) {
        chain.next = undefined
        throw err
      }
      return { rec, fresh: true }
    })
    if (started.fresh) {
      this.#log.info(
        { kind: job.kind, id: job.id, chainId: job.chainId, txHash: started.rec.txHash },
        'sending',
      )
      await this.#send(chain, started.rec, 'first')
    }
    return started.rec
  }

  #newRecord(
    a: Pick<Assignment, 'chainId' | 'deadline'>,
    base: Pick<FillRecord, 'intentId' | 'recipient' | 'outputToken' | 'outputAmount'>,
    nonce: bigint,
    gas: bigint,
    fees: { maxFeePerGas: bigint; maxPriorityFeePerGas: bigint },
    { raw, hash }: { raw: Hex; hash: Hex },
  ): FillRecord {
    return {
      ...base,
      chainId: a.chainId.toString(),
      deadline: a.deadline,
      nonce: nonce.toString(),
      gas: gas.toString(),
      maxFeePerGas: fees.maxFeePerGas.toString(),
      maxPriorityFeePerGas: fees.maxPriorityFeePerGas.toString(),
      txHash: hash,
      txHashes: [hash],
      raw,
      state: 'sending',
      sentAtMs: this.#now(),
    }
  }

  /**
   * Sends `rec.raw` (already persisted). Resolves when the node holds it (accepted now or before);
   * rejects with the RPC error otherwise (the caller's loop decides what it means).
   */
  async #send(chain: Chain, rec: FillRecord, kind: 'first' | 'resend' | 'replace'): Promise<void> {
    this.#fault('beforeSend', rec)
    crashPoint(rec.kind ?? 'fill')
    const label = String(chain.chainId)
    try {
      await chain.client.sendRawTransaction({ serializedTransaction: rec.raw })
    } catch (err) {
      const reason = classifySendError(err)
      this.#metrics.sendErrors.inc({ chain_id: label, reason })
      if (reason !== 'known') {
        if (reason === 'nonce') chain.next = undefined
        throw reason === 'refused' ? new SendRefused(err) : err
      }
    }
    this.#metrics.sends.inc({ chain_id: label, kind })
    this.#fault('afterSend', rec)
    crashPoint(rec.kind ?? 'fill')
    // In memory only: the version sent is on record already, and a `sending` record is looked up on chain
    // before anything is sent again, exactly as a `sent` one. The next write (pending seen, confirmed)
    // carries the state.
    rec.state = 'sent'
    rec.sentAtMs = this.#now()
  }

  #fault(point: keyof ExecutorFaults, rec: FillRecord): void {
    const hook = this.#m.faults?.[point]
    if (hook === undefined) return
    try {
      hook(rec)
    } catch (err) {
      this.#crashed = true
      throw new ExecutorError('CRASHED', `fault injected at ${point}`, { cause: err })
    }
  }

  // -------------------------------------------------------------------------------------------------
  // The state machine of one fill.

  /** Carries a fill from wherever it stands to confirmed and announced. */
  async #drive(chain: Chain, rec: FillRecord): Promise<FillResult | TxResult> {
    let refusals = 0
    let attempt = 0
    for (;;) {
      this.#checkAlive()
      if (this.#superseded.has(`${rec.chainId}/${rec.intentId}`)) {
        throw new ExecutorError(
          'SUPERSEDED',
          `fill of ${rec.intentId} on ${rec.chainId} superseded by a re-assignment`,
        )
      }
      try {
        const step = await this.#step(chain, rec)
        if (step.done) return step.result
        attempt = 0
        if (step.wait) await this.#nextHead(chain)
      } catch (err) {
        // ExecutorError, StorageError (a failed durable write stops the node): not ours to retry.
        if (err instanceof MurmurError) throw err
        // Only a send refused after steps 1-2 found no version of ours known to the node may fail the
        // fill; any other error (a read the node did not like) is retried.
        if (err instanceof SendRefused && ++refusals > this.options.maxSendRefusals) {
          return this.#fail(chain, rec, err.cause)
        }
        const kind =
          err instanceof SendRefused ? 'refused' : isNetworkError(err) ? 'network' : classifySendError(err)
        if (kind === 'nonce') chain.next = undefined
        const backoff = Math.min(
          this.options.retryMaxMs,
          this.options.retryBaseMs * 2 ** Math.min(attempt++, 16),
        )
        this.#log.debug(
          { intentId: rec.intentId, kind, err: (err as Error).message },
          'fill step failed, retrying',
        )
        await this.#delay(backoff)
      }
    }
  }

  /** One look at the chain and at most one action. */
  async #step(
    chain: Chain,
    rec: FillRecord,
  ): Promise<{ done: true; result: FillResult | TxResult } | { done: false; wait: boolean }> {
    if (rec.kind !== undefined && rec.kind !== 'fill' && rec.state === 'confirmed') {
      return {
        done: true,
        result: {
          kind: rec.kind,
          id: rec.intentId,
          chainId: BigInt(rec.chainId),
          txHash: rec.minedTxHash!,
          blockNumber: BigInt(rec.blockNumber!),
          blockHash: rec.blockHash!,
        },
      }
    }
    // A record confirmed before fills named their block hash is confirmed again from its receipt.
    if (rec.state === 'confirmed' && rec.fill?.fill.blockHash !== undefined)
      return { done: true, result: await this.#announce(rec) }
    if (rec.state === 'failed') {
      throw new ExecutorError(
        rec.error === 'reverted' ? 'REVERTED' : 'SEND_FAILED',
        `fill of ${rec.intentId} failed`,
      )
    }
    const client = chain.client
    // 1. Is any version mined?
    for (const hash of [...rec.txHashes].reverse()) {
      const receipt = await client.getTransactionReceipt({ hash }).catch((err: unknown) => {
        if (isNetworkError(err)) throw err
        return undefined
      })
      if (receipt === undefined) continue
      if (receipt.status !== 'success') {
        rec.minedTxHash = hash
        rec.blockNumber = receipt.blockNumber.toString()
        rec.state = 'failed'
        rec.error = 'reverted'
        await this.#save(rec)
        this.#metrics.fills.inc({ chain_id: String(chain.chainId), result: 'reverted' })
        throw new ExecutorError('REVERTED', `fill ${hash} of ${rec.intentId} reverted`)
      }
      const head = await client.getBlockNumber({ cacheTime: 0 })
      if (head - receipt.blockNumber < this.#blocksOnTop(chain)) return { done: false, wait: true }
      const block = { number: receipt.blockNumber, hash: receipt.blockHash.toLowerCase() as Hex }
      return { done: true, result: await this.#confirm(chain, rec, hash, block) }
    }
    // 2. Is a version pending in the node's pool?
    let pending = false
    for (const hash of rec.txHashes) {
      const tx = await client.getTransaction({ hash }).catch((err: unknown) => {
        if (isNetworkError(err)) throw err
        return undefined
      })
      if (tx !== undefined) {
        pending = true
        break
      }
    }
    if (pending) {
      if (rec.state === 'sending') {
        rec.state = 'sent'
        await this.#save(rec)
      }
      if (this.#now() - rec.sentAtMs > this.options.stuckAfterMs) await this.#replace(chain, rec, true)
      return { done: false, wait: true }
    }
    // 3. None of ours is known to the node. Was our nonce consumed?
    const nonce = BigInt(rec.nonce)
    const mined = BigInt(await client.getTransactionCount({ address: this.#address, blockTag: 'latest' }))
    if (mined > nonce) {
      const found = await this.#txAtNonce(chain, nonce)
      const call = this.#callOf(rec)
      if (
        found !== undefined &&
        (found.to ?? '').toLowerCase() === call.to &&
        found.value === call.value &&
        found.input.toLowerCase() === call.data
      ) {
        // Ours (a version whose hash we lost): adopt it; the next step sees it mined.
        this.#log.warn({ intentId: rec.intentId, txHash: found.hash, nonce }, 'found own fill by nonce scan')
        rec.txHashes.push(found.hash)
        rec.txHash = found.hash
        await this.#save(rec)
        return { done: false, wait: false }
      }
      // Consumed by a transaction that is not ours, and no version of ours is known: none can ever be
      // mined, so the fill takes a new nonce.
      this.#log.warn({ intentId: rec.intentId, nonce, by: found?.hash }, 'fill nonce consumed by another tx')
      await this.#locked(chain, async () => {
        chain.next = undefined
        const next = await this.#allocateNonce(chain)
        await this.#resign(chain, rec, next, undefined)
        await this.#send(chain, rec, 'resend')
      })
      return { done: false, wait: true }
    }
    // 4. The nonce is free and no version is known: never sent (crash before the send) or dropped. Send the
    // latest version again, re-signed at the same nonce when the fees no longer cover the base fee.
    await this.#replace(chain, rec, false)
    return { done: false, wait: true }
  }

  /** (Re)sends at the fill's own nonce: the same transaction when its fees still do, else a re-signed one. */
  async #replace(chain: Chain, rec: FillRecord, bump: boolean): Promise<void> {
    const current = {
      maxFeePerGas: BigInt(rec.maxFeePerGas),
      maxPriorityFeePerGas: BigInt(rec.maxPriorityFeePerGas),
    }
    const fees = await this.#fees(chain, bump ? current : undefined)
    const stillCovers = current.maxFeePerGas >= fees.baseFee + current.maxPriorityFeePerGas
    if (!bump && stillCovers) {
      await this.#send(chain, rec, 'resend')
      return
    }
    this.#log.info(
      { intentId: rec.intentId, nonce: rec.nonce, maxFeePerGas: fees.maxFeePerGas, bump },
      're-signing fill at its nonce',
    )
    await this.#resign(chain, rec, BigInt(rec.nonce), bump ? current : undefined)
    await this.#send(chain, rec, bump ? 'replace' : 'resend')
  }

  /** Signs a new version at `nonce` and persists it (before any send). */
  async #resign(
    chain: Chain,
    rec: FillRecord,
    nonce: bigint,
    floor: { maxFeePerGas: bigint; maxPriorityFeePerGas: bigint } | undefined,
  ): Promise<void> {
    const fees = await this.#fees(chain, floor)
    const { raw, hash } = await this.#sign(chain, rec, nonce, BigInt(rec.gas), fees)
    rec.nonce = nonce.toString()
    rec.maxFeePerGas = fees.maxFeePerGas.toString()
    rec.maxPriorityFeePerGas = fees.maxPriorityFeePerGas.toString()
    rec.raw = raw
    rec.txHash = hash
    if (!rec.txHashes.includes(hash)) rec.txHashes.push(hash)
    rec.state = 'sending'
    rec.sentAtMs = this.#now()
    await this.#save(rec)
  }

  /**
   * The account's transaction at `nonce` (mined): binary search for the first block whose nonce count
   * exceeds it, then that block's transactions.
   */
  async #txAtNonce(
    chain: Chain,
    nonce: bigint,
  ): Promise<{ hash: Hex; to: Address | null; value: bigint; input: Hex } | undefined> {
    const client = chain.client
    let lo = 0n
    let hi = await client.getBlockNumber({ cacheTime: 0 })
    const countAt = async (b: bigint) =>
      BigInt(await client.getTransactionCount({ address: this.#address, blockNumber: b }))
    if ((await countAt(hi)) <= nonce) return undefined
    while (lo < hi) {
      const mid = (lo + hi) / 2n
      if ((await countAt(mid)) > nonce) hi = mid
      else lo = mid + 1n
    }
    const block = await client.getBlock({ blockNumber: lo, includeTransactions: true })
    const tx = block.transactions.find(
      (t) => t.from.toLowerCase() === this.#address && BigInt(t.nonce) === nonce,
    )
    if (tx === undefined) return undefined
    return { hash: tx.hash, to: tx.to, value: tx.value, input: tx.input }
  }

  /**
   * Blocks needed on top of a fill's block before it is announced: the executor's own margin
   * (`confirmations` counts the fill's block) or the rollup's finality, whichever is more.
   */
  #blocksOnTop(chain: Chain): bigint {
    const own = BigInt(this.options.confirmations) - 1n
    const final = BigInt(this.options.rollupConfirmations.get(Number(chain.chainId)) ?? 0)
    return own > final ? own : final
  }

  async #confirm(
    chain: Chain,
    rec: FillRecord,
    txHash: Hex,
    block: { number: bigint; hash: Hex },
  ): Promise<FillResult | TxResult> {
    const blockNumber = block.number
    if (rec.kind !== undefined && rec.kind !== 'fill') {
      rec.state = 'confirmed'
      rec.minedTxHash = txHash
      rec.blockNumber = blockNumber.toString()
      rec.blockHash = block.hash
      rec.announced = true // nothing to announce: closes the record
      await this.#save(rec)
      this.#log.info(
        { kind: rec.kind, id: rec.intentId, chainId: rec.chainId, txHash },
        'settlement tx confirmed',
      )
      return {
        kind: rec.kind,
        id: rec.intentId,
        chainId: chain.chainId,
        txHash,
        blockNumber,
        blockHash: block.hash,
      }
    }
    // The hash of the block the receipt is in: the fill names the block it means, so validators can
    // tell a reorg (another block at that number) from a fill they cannot see yet.
    const fill: Fill = {
      intentId: rec.intentId,
      chainId: BigInt(rec.chainId),
      txHash,
      blockNumber,
      blockHash: block.hash,
      executor: this.#address,
    }
    const signed = await signFill(this.#m.account, this.#m.networkId, fill)
    rec.state = 'confirmed'
    rec.minedTxHash = txHash
    rec.blockNumber = blockNumber.toString()
    rec.blockHash = block.hash
    rec.announced = false
    rec.fill = {
      fill: { ...fill, chainId: rec.chainId, blockNumber: blockNumber.toString() },
      signature: signed.signature,
    }
    this.#metrics.fills.inc({ chain_id: String(chain.chainId), result: 'confirmed' })
    this.#metrics.duration.observe(
      { chain_id: String(chain.chainId) },
      Math.max(0, this.#now() - rec.sentAtMs),
    )
    this.#log.info(
      { intentId: rec.intentId, chainId: rec.chainId, txHash, blockNumber, blockHash: block.hash },
      'fill confirmed',
    )
    // One write for confirmed and announced: a crash before it leaves the record as it was (`sending`),
    // and recovery finds the receipt, confirms and announces again (receivers dedupe).
    return this.#announce(rec, true)
  }

  /**
   * Publishes a confirmed fill (once more, if it was announced before: receivers dedupe). `unsaved`: the
   * record's confirmation is not written yet; it is, announced or not.
   */
  async #announce(rec: FillRecord, unsaved = false): Promise<FillResult> {
    const f = rec.fill!
    const signed: SignedFill = {
      fill: {
        ...f.fill,
        chainId: BigInt(f.fill.chainId),
        blockNumber: BigInt(f.fill.blockNumber),
        blockHash: f.fill.blockHash!,
      },
      signature: f.signature,
    }
    let announced = rec.announced === true
    if (!announced) {
      try {
        await this.#m.publishFill(signed)
        announced = true
        rec.announced = true
      } catch (err) {
        this.#log.warn({ err, intentId: rec.intentId }, 'publishing a fill failed; recover() retries')
      }
      if (announced || unsaved) await this.#save(rec)
    }
    return {
      intentId: rec.intentId,
      chainId: signed.fill.chainId,
      txHash: signed.fill.txHash,
      blockNumber: signed.fill.blockNumber,
      blockHash: signed.fill.blockHash,
      fill: signed,
      announced,
    }
  }

  async #fail(chain: Chain, rec: FillRecord, err: unknown): Promise<never> {
    // Only reached from a refusal with no version known to the node (steps 1-2 came first), so none can
    // be mined. The nonce is released: resync before the next allocation.
    rec.state = 'failed'
    rec.error = (err as Error).message?.slice(0, 500) ?? String(err)
    await this.#save(rec)
    chain.next = undefined
    this.#metrics.fills.inc({ chain_id: String(chain.chainId), result: 'failed' })
    this.#log.error({ intentId: rec.intentId, err: rec.error }, 'fill failed')
    throw new ExecutorError('SEND_FAILED', `fill of ${rec.intentId} refused: ${rec.error}`, { cause: err })
  }

  async #withRetry<T>(chain: Chain, fn: () => Promise<T>): Promise<T> {
    let attempt = 0
    for (;;) {
      this.#checkAlive()
      try {
        return await fn()
      } catch (err) {
        if (err instanceof MurmurError) throw err
        const kind =
          err instanceof SendRefused ? 'refused' : isNetworkError(err) ? 'network' : classifySendError(err)
        if (kind === 'refused' && attempt >= this.options.maxSendRefusals) {
          throw new ExecutorError('SEND_FAILED', `fill refused: ${(err as Error).message}`, { cause: err })
        }
        if (kind === 'nonce') chain.next = undefined
        const backoff = Math.min(
          this.options.retryMaxMs,
          this.options.retryBaseMs * 2 ** Math.min(attempt++, 16),
        )
        this.#log.debug(
          { chainId: chain.chainId, kind, err: (err as Error).message },
          'fill start failed, retrying',
        )
        await this.#delay(backoff)
      }
    }
  }

  /**
   * Resolves when the chain has a new head (or after HEAD_WAIT_POLLS polls without one, so a stalled
   * chain is still looked at: stuck or dropped transactions). One watch per chain polls the block number
   * every receiptPollMs for every fill waiting on it; the fills then look at their receipts together, in
   * one JSON-RPC batch, instead of each polling on its own timer.
   */
  #nextHead(chain: Chain): Promise<void> {
    chain.nextHead ??= (async () => {
      try {
        for (let i = 0; i < HEAD_WAIT_POLLS && !this.#abort.signal.aborted; i++) {
          await this.#delay(this.options.receiptPollMs)
          const n = await chain.client.getBlockNumber({ cacheTime: 0 }).catch(() => undefined)
          if (n !== undefined && (chain.head === undefined || n > chain.head)) {
            chain.head = n
            return
          }
        }
      } finally {
        chain.nextHead = undefined
      }
    })()
    return chain.nextHead
  }

  #delay(ms: number): Promise<void> {
    return abortableDelay(ms, this.#abort.signal)
  }
}
