/**
 * ECDSA (secp256k1) address recovery. Native libsecp256k1 through the `secp256k1` package's N-API
 * binding when it loads, else viem's pure-JS recovery (@noble/curves). Both backends apply the same
 * checks first, so they accept and reject the same signatures.
 */

import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { type Address, type Hex, recoverAddress as viemRecoverAddress } from 'viem'
import { MurmurError } from '../errors.ts'
import { keccak256Bytes } from './keccak.ts'
import { loadNativeSecp256k1, nativeLoadError, PURE_JS_AT_START } from './native.ts'

export type SignatureErrorCode =
  | 'BAD_LENGTH'
  | 'BAD_ENCODING'
  | 'BAD_RECOVERY_ID'
  | 'BAD_SCALAR'
  | 'HIGH_S'
  | 'RECOVER_FAILED'

/** A signature or digest that cannot yield a signer. */
export class SignatureError extends MurmurError<SignatureErrorCode> {}

/** Which implementation recovers addresses. */
export type RecoverBackend = 'native' | 'js'

/** secp256k1 group order n. */
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
/** Largest s allowed by EIP-2 (homestead): s <= n/2, which rules out the malleable twin. */
const HALF_N = SECP256K1_N >> 1n

let backend: RecoverBackend = PURE_JS_AT_START ? 'js' : loadNativeSecp256k1() !== undefined ? 'native' : 'js'

/** The backend {@link recoverAddress} uses now. */
export function recoverBackend(): RecoverBackend {
  return backend
}

/** True when the native binding can be loaded. */
export function nativeRecoverAvailable(): boolean {
  return loadNativeSecp256k1() !== undefined
}

/**
 * Forces a backend (tests, benchmarks, `MURMUR_PURE_JS_CRYPTO=1` does the same for 'js' at startup).
 * Asking for 'native' when the binding cannot load is a programmer error.
 */
export function setRecoverBackend(next: RecoverBackend): void {
  if (next === 'native' && loadNativeSecp256k1() === undefined) {
    throw new Error('native secp256k1 binding is not available', { cause: nativeLoadError() })
  }
  backend = next
}

const HEX_RE = /^0x[0-9a-fA-F]*$/

function toBytes(value: Uint8Array | Hex, what: string, len: number): Uint8Array {
  if (value instanceof Uint8Array) {
    if (value.length !== len) throw new SignatureError('BAD_LENGTH', `${what}: expected ${len} bytes`)
    return value
  }
  if (typeof value !== 'string' || !HEX_RE.test(value) || value.length % 2 !== 0) {
    throw new SignatureError('BAD_ENCODING', `${what}: expected 0x-prefixed hex`)
  }
  if (value.length !== 2 + 2 * len) throw new SignatureError('BAD_LENGTH', `${what}: expected ${len} bytes`)
  return Buffer.from(value.slice(2), 'hex')
}

function word(bytes: Uint8Array, at: number): bigint {
  const v = new DataView(bytes.buffer, bytes.byteOffset + at, 32)
  return (
    (v.getBigUint64(0) << 192n) |
    (v.getBigUint64(8) << 128n) |
    (v.getBigUint64(16) << 64n) |
    v.getBigUint64(24)
  )
}

/** A 65-byte signature, checked: r, s in range, s low (EIP-2), v in {0, 1, 27, 28}. */
interface ParsedSignature {
  digest: Uint8Array
  /** r || s */
  rs: Uint8Array
  recid: 0 | 1
}

function parse(digest: Uint8Array | Hex, signature: Uint8Array | Hex): ParsedSignature {
  const d = toBytes(digest, 'digest', 32)
  const sig = toBytes(signature, 'signature', 65)
  const v = sig[64]
  const recid = v === 0 || v === 27 ? 0 : v === 1 || v === 28 ? 1 : undefined
  if (recid === undefined)
    throw new SignatureError('BAD_RECOVERY_ID', `signature: v=${v}, expected 27/28 or 0/1`)
  const r = word(sig, 0)
  const s = word(sig, 32)
  if (r === 0n || r >= SECP256K1_N) throw new SignatureError('BAD_SCALAR', 'signature: r out of range')
  if (s === 0n) throw new SignatureError('BAD_SCALAR', 'signature: s out of range')
  if (s > HALF_N) throw new SignatureError('HIGH_S', 'signature: s > n/2 (malleable, EIP-2)')
  return { digest: d, rs: sig.subarray(0, 64), recid }
}

function nativeRecover(p: ParsedSignature): Address {
  const lib = loadNativeSecp256k1()
  if (lib === undefined) throw new Error('native secp256k1 binding is not loaded')
  let pub: Uint8Array
  try {
    pub = lib.ecdsaRecover(p.rs, p.recid, p.digest, false)
  } catch (err) {
    throw new SignatureError('RECOVER_FAILED', 'signature: no public key recovers from it', { cause: err })
  }
  // Address = last 20 bytes of keccak256 of the 64-byte public key (without the 0x04 prefix).
  const h = keccak256Bytes(pub.subarray(1))
  return `0x${Buffer.from(h.buffer, h.byteOffset + 12, 20).toString('hex')}`
}

async function jsRecover(p: ParsedSignature): Promise<Address> {
  const sig = Buffer.alloc(65)
  sig.set(p.rs, 0)
  sig[64] = 27 + p.recid
  try {
    const addr = await viemRecoverAddress({
      hash: `0x${Buffer.from(p.digest).toString('hex')}`,
      signature: `0x${sig.toString('hex')}`,
    })
    return addr.toLowerCase() as Address
  } catch (err) {
    throw new SignatureError('RECOVER_FAILED', 'signature: no public key recovers from it', { cause: err })
  }
}

/**
 * Address (lowercase) whose key made `signature` (65 bytes r || s || v) over the 32-byte `digest`.
 * Rejects with SignatureError: BAD_LENGTH, BAD_ENCODING, BAD_RECOVERY_ID, BAD_SCALAR, HIGH_S,
 * RECOVER_FAILED.
 */
export async function recoverAddress(
  digest: Uint8Array | Hex,
  signature: Uint8Array | Hex,
): Promise<Address> {
  const key = memoKey(digest, signature)
  const held = key === undefined ? undefined : recovered.get(key)
  if (held !== undefined) {
    memoHits++
    return held
  }
  const p = parse(digest, signature)
  const signer = backend === 'native' ? nativeRecover(p) : await jsRecover(p)
  if (key !== undefined) remember(key, signer)
  return signer
}

/**
 * Signers recovered lately, by digest and signature (hex as given). The same signature is checked more
 * than once: a gossiped intent, fill or health report again in the block that carries it, a health
 * report in several consecutive blocks. Recovery is a pure function of its inputs, so a hit is exact.
 */
const recovered = new Map<string, Address>()
const MAX_RECOVERED = 16_384
let memoHits = 0

/** Signers held by the memo of {@link recoverAddress}, and how many recoveries it answered. */
export function recoverMemo(): { size: number; hits: number } {
  return { size: recovered.size, hits: memoHits }
}

function memoKey(digest: Uint8Array | Hex, signature: Uint8Array | Hex): string | undefined {
  return typeof digest === 'string' && typeof signature === 'string' ? digest + signature : undefined
}

function remember(key: string, signer: Address): void {
  recovered.set(key, signer)
  if (recovered.size > MAX_RECOVERED) recovered.delete(recovered.keys().next().value!)
}

/** {@link recoverAddress} on the native backend, synchronously; throws if the binding is missing. */
export function recoverAddressNative(digest: Uint8Array | Hex, signature: Uint8Array | Hex): Address {
  if (loadNativeSecp256k1() === undefined) throw new Error('native secp256k1 binding is not available')
  return nativeRecover(parse(digest, signature))
}

/** {@link recoverAddress} on the pure-JS backend, whatever the active backend is. */
export function recoverAddressPureJs(
  digest: Uint8Array | Hex,
  signature: Uint8Array | Hex,
): Promise<Address> {
  try {
    return jsRecover(parse(digest, signature))
  } catch (err) {
    return Promise.reject(err)
  }
}

/** Why a {@link RecoverPool} could not answer. */
export type RecoverPoolErrorCode = 'OVERLOADED' | 'CLOSED' | 'WORKER_FAILED'
/** The pool refused or lost a recovery; not the signature's fault. */
export class RecoverPoolError extends MurmurError<RecoverPoolErrorCode> {}

/** Options of a {@link RecoverPool}. */
export interface RecoverPoolOptions {
  /** Worker threads. Default: available cores minus one, at least one. */
  size?: number
  /** Most recoveries sent to a worker in one message. Default 64. */
  maxBatch?: number
  /** Most recoveries waiting for a worker; beyond it `recover` rejects OVERLOADED. Default 10 000. */
  maxQueued?: number
  /** Backend the workers use. Default: the active backend of this thread. */
  backend?: RecoverBackend
  /** Worker entry point. Default: `recover-worker.ts`; tests point it at a failing script. */
  workerUrl?: URL
}

/** One recovery as sent to a worker. */
export interface RecoverRequest {
  digest: Uint8Array | Hex
  signature: Uint8Array | Hex
}

/** A worker's answer for one recovery: the address, or the error's code and message. */
export type RecoverReply = Address | { code: string; message: string }

interface Job extends RecoverRequest {
  resolve(address: Address): void
  reject(err: Error): void
}

interface PoolWorker {
  worker: Worker
  inflight: Map<number, Job[]>
  dead: boolean
}

/** Batches in flight per worker: one being worked on, one ready behind it. */
const PIPELINE_DEPTH = 2
/** Worker failures in a row, with no answer in between, after which the pool gives up. */
const MAX_FAILURE_STREAK = 3

/**
 * Recovers signatures on worker threads so the event loop (HTTP API, gossip) stays responsive under
 * load. Requests are queued (bounded) and sent in batches; under load batches grow by themselves.
 * Call `close()` when done.
 */
export class RecoverPool {
  readonly size: number
  readonly #maxBatch: number
  readonly #maxQueued: number
  readonly #backend: RecoverBackend
  readonly #workerUrl: URL
  readonly #workers: PoolWorker[] = []
  #queue: Job[] = []
  #nextBatchId = 0
  #closed = false
  #flushScheduled = false
  #failureStreak = 0
  /** Set when workers keep dying (e.g. cannot load): the pool refuses all work. */
  #broken: RecoverPoolError | undefined

  constructor(options: RecoverPoolOptions = {}) {
    this.size = Math.max(1, options.size ?? availableParallelism() - 1)
    this.#maxBatch = Math.max(1, options.maxBatch ?? 64)
    this.#maxQueued = options.maxQueued ?? 10_000
    this.#backend = options.backend ?? backend
    this.#workerUrl = options.workerUrl ?? new URL('./recover-worker.ts', import.meta.url)
    for (let i = 0; i < this.size; i++) this.#workers.push(this.#spawn())
  }

  /** True once workers kept failing and the pool gave up; every `recover` then rejects WORKER_FAILED. */
  get failed(): boolean {
    return this.#broken !== undefined
  }

  /** Recoveries waiting for a worker. */
  get queued(): number {
    return this.#queue.length
  }

  /** Same contract as {@link recoverAddress}; also rejects RecoverPoolError. */
  recover(digest: Uint8Array | Hex, signature: Uint8Array | Hex): Promise<Address> {
    if (this.#closed) return Promise.reject(new RecoverPoolError('CLOSED', 'recover pool is closed'))
    if (this.#broken !== undefined) return Promise.reject(this.#broken)
    if (this.#queue.length >= this.#maxQueued) {
      return Promise.reject(new RecoverPoolError('OVERLOADED', 'recover pool queue is full'))
    }
    return new Promise<Address>((resolve, reject) => {
      this.#queue.push({ digest, signature, resolve, reject })
      if (!this.#flushScheduled) {
        this.#flushScheduled = true
        // Let the current tick add more work so it leaves as one batch.
        setImmediate(() => {
          this.#flushScheduled = false
          this.#dispatch()
        })
      }
    })
  }

  /** Stops the workers; pending recoveries reject CLOSED. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const closed = new RecoverPoolError('CLOSED', 'recover pool is closed')
    for (const job of this.#queue) job.reject(closed)
    this.#queue = []
    await Promise.all(
      this.#workers.map(async (w) => {
        for (const jobs of w.inflight.values()) for (const job of jobs) job.reject(closed)
        w.inflight.clear()
        await w.worker.terminate()
      }),
    )
  }

  #spawn(): PoolWorker {
    const worker = new Worker(this.#workerUrl, { workerData: { backend: this.#backend } })
    const pw: PoolWorker = { worker, inflight: new Map(), dead: false }
    worker.on('message', (msg: { id: number; replies: RecoverReply[] }) => {
      this.#failureStreak = 0
      const jobs = pw.inflight.get(msg.id)
      if (jobs === undefined) return
      pw.inflight.delete(msg.id)
      jobs.forEach((job, i) => {
        const reply = msg.replies[i]
        if (typeof reply === 'string') {
          const key = memoKey(job.digest, job.signature)
          if (key !== undefined) remember(key, reply)
          job.resolve(reply)
        } else if (reply !== undefined && isSignatureErrorCode(reply.code)) {
          job.reject(new SignatureError(reply.code, reply.message))
        } else job.reject(new Error(`recover worker: ${reply?.message ?? 'no reply'}`))
      })
      this.#dispatch()
    })
    const fail = (err: unknown) => {
      // 'error' is followed by 'exit'; count the death once.
      if (this.#closed || pw.dead) return
      pw.dead = true
      const lost = new RecoverPoolError('WORKER_FAILED', 'recover worker failed', { cause: err })
      for (const jobs of pw.inflight.values()) for (const job of jobs) job.reject(lost)
      pw.inflight.clear()
      const i = this.#workers.indexOf(pw)
      if (++this.#failureStreak > MAX_FAILURE_STREAK) {
        // Respawning a worker that cannot start would spin forever.
        this.#broken = lost
        for (const job of this.#queue) job.reject(lost)
        this.#queue = []
        if (i >= 0) this.#workers.splice(i, 1)
        return
      }
      if (i >= 0) this.#workers[i] = this.#spawn()
      this.#dispatch()
    }
    worker.on('error', fail)
    worker.on('exit', (code) => fail(new Error(`exit code ${code}`)))
    return pw
  }

  #dispatch(): void {
    for (const pw of this.#workers) {
      while (this.#queue.length > 0 && pw.inflight.size < PIPELINE_DEPTH) {
        const jobs = this.#queue.splice(0, this.#maxBatch)
        const id = this.#nextBatchId++
        pw.inflight.set(id, jobs)
        pw.worker.postMessage({
          id,
          requests: jobs.map((j) => ({ digest: j.digest, signature: j.signature })),
        })
      }
    }
  }
}

const SIGNATURE_ERROR_CODES: ReadonlySet<string> = new Set<SignatureErrorCode>([
  'BAD_LENGTH',
  'BAD_ENCODING',
  'BAD_RECOVERY_ID',
  'BAD_SCALAR',
  'HIGH_S',
  'RECOVER_FAILED',
])

function isSignatureErrorCode(code: string): code is SignatureErrorCode {
  return SIGNATURE_ERROR_CODES.has(code)
}

/** Answers one batch of recoveries; the body of the worker thread. */
export async function answerRecoverBatch(requests: readonly RecoverRequest[]): Promise<RecoverReply[]> {
  const replies: RecoverReply[] = []
  for (const r of requests) {
    try {
      replies.push(await recoverAddress(r.digest, r.signature))
    } catch (err) {
      const code = err instanceof SignatureError ? err.code : 'INTERNAL'
      replies.push({ code, message: err instanceof Error ? err.message : String(err) })
    }
  }
  return replies
}
