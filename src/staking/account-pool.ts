/**
 * Signed account messages (Transfer, Delegate, Undelegate, CreateValidator) waiting for a block in a node:
 * a bounded in-memory set of messages whose fields, state checks and signature passed against the
 * committed state, fed by the API (`POST /v1/transfers`, `/v1/delegations`, `/v1/undelegations`,
 * `/v1/validators`) and the `stake` topic; the proposer takes them (proposeBlock runs them in block order
 * and leaves out those the block's own order refuses). A message leaves the set when a block commits it
 * or the committed state refuses it. Nothing here is persisted: a message lost in a restart is sent again
 * by its signer.
 */
import type { Logger } from 'pino'
import type { Address, Hex } from 'viem'
import { CodecError } from '../codec/json.ts'
import { StakeLedger, type StakingState } from './ledger.ts'
import type { RecoverFn } from './moves.ts'
import { type AccountMessage, type AccountMessageRejectCode, validateAccountMessage } from './validators.ts'
import {
  ACCOUNT_MESSAGE_KINDS,
  accountMessageFromJson,
  accountMessageId,
  accountMessageSigner,
} from './wire-accounts.ts'

/** Answer of a submission: an HTTP status and its JSON body. */
export type AccountSubmitAnswer =
  | { status: 200 | 202; body: { id: Hex } }
  | { status: 400 | 503; body: { error: { code: string; message: string } }; retryAfterSec?: number }

/** The route body key of each kind (`{transfer, signature}` ...). */
export type AccountMessageKey = 'transfer' | 'delegate' | 'undelegate' | 'createValidator'

export interface AccountPoolOptions {
  /** Most messages waiting for a block. */
  maxPending: number
  /** Most messages of one signer waiting for a block. */
  maxPendingPerSigner: number
  /** Ids of committed messages remembered (answers 200 and IGNOREs them as duplicates). */
  maxRecentCommitted: number
}

export const DEFAULT_ACCOUNT_POOL_OPTIONS: AccountPoolOptions = {
  maxPending: 4096,
  maxPendingPerSigner: 32,
  maxRecentCommitted: 8192,
}

export interface AccountPoolModules {
  networkId: string
  /** The committed application state. */
  state: () => StakingState
  /** Publishes on the `stake` topic; a failure (no peers yet) is logged. */
  publish: (m: AccountMessage) => Promise<void>
  log: Logger
  recover?: RecoverFn
  /** Called with each message that becomes pending (wakes a proposer waiting for work). */
  onPending?: (m: AccountMessage) => void
}

/** Refusals that prove the sender wrong (REJECT on gossip); the rest depend on this node's state view. */
const PROVABLY_BAD: ReadonlySet<string> = new Set(['MALFORMED', 'BAD_SIGNATURE', 'BAD_PEER_ID'])

/**
 * The gossip verdict on an account message: accept, or a refusal that either proves the sender wrong
 * (`provable`: REJECT) or depends on this node's view of the state (IGNORE).
 */
export type GossipVerdict =
  | { readonly ok: true }
  | { readonly ok: false; readonly code: string; readonly provable: boolean }

export class AccountMessagePool {
  readonly opts: AccountPoolOptions
  readonly #m: AccountPoolModules
  readonly #pending = new Map<Hex, AccountMessage>()
  readonly #perSigner = new Map<Address, number>()
  readonly #committed = new Set<Hex>()

  constructor(options: Partial<AccountPoolOptions>, modules: AccountPoolModules) {
    this.opts = { ...DEFAULT_ACCOUNT_POOL_OPTIONS, ...options }
    this.#m = modules
  }

  /** Messages waiting for a block, in arrival order. */
  pending(): AccountMessage[] {
    return [...this.#pending.values()]
  }

  get size(): number {
    return this.#pending.size
  }

  has(id: Hex): boolean {
    return this.#pending.has(id)
  }

  #known(id: Hex): boolean {
    return this.#pending.has(id) || this.#committed.has(id)
  }

  #full(signer: Address): boolean {
    return (
      this.#pending.size >= this.opts.maxPending ||
      (this.#perSigner.get(signer) ?? 0) >= this.opts.maxPendingPerSigner
    )
  }

  #add(id: Hex, m: AccountMessage): boolean {
    const signer = accountMessageSigner(m)
    if (this.#pending.has(id) || this.#full(signer)) return false
    this.#pending.set(id, m)
    this.#perSigner.set(signer, (this.#perSigner.get(signer) ?? 0) + 1)
    this.#m.onPending?.(m)
    return true
  }

  #drop(id: Hex): void {
    const m = this.#pending.get(id)
    if (m === undefined) return
    this.#pending.delete(id)
    const signer = accountMessageSigner(m)
    const n = (this.#perSigner.get(signer) ?? 1) - 1
    if (n > 0) this.#perSigner.set(signer, n)
    else this.#perSigner.delete(signer)
  }

  /** Every check against the committed state, then the signature. */
  async #validate(m: AccountMessage) {
    const ledger = new StakeLedger(this.#m.state())
    return validateAccountMessage(ledger.book, m, this.#m.recover)
  }

  /** The `stake` topic's verdict on an account message (fields were checked by the codec). */
  async validateGossip(m: AccountMessage): Promise<GossipVerdict> {
    const id = accountMessageId(this.#m.networkId, m)
    if (this.#known(id)) return { ok: false, code: 'DUPLICATE', provable: false }
    if (this.#full(accountMessageSigner(m))) return { ok: false, code: 'FULL', provable: false }
    const v = await this.#validate(m)
    if (v.ok) return { ok: true }
    return { ok: false, code: v.code, provable: PROVABLY_BAD.has(v.code) }
  }

  /** A gossiped message the topic accepted. */
  onGossip(m: AccountMessage): void {
    const id = accountMessageId(this.#m.networkId, m)
    if (!this.#known(id)) this.#add(id, m)
  }

  /**
   * The POST route of `key`: 202 `{id}` accepted (pending and published); 200 `{id}` already pending or
   * recently committed; 400 with an AccountMessageRejectCode (or MALFORMED for a body that does not
   * parse); 503 when the pending set is full.
   */
  async submitJson(key: AccountMessageKey, body: unknown): Promise<AccountSubmitAnswer> {
    const kind = ACCOUNT_MESSAGE_KINDS.find((k) => k.key === key)
    if (kind === undefined) throw new Error(`no account message kind ${key}`)
    let m: AccountMessage
    try {
      m = accountMessageFromJson(kind, body)
    } catch (err) {
      if (!(err instanceof CodecError)) throw err
      return { status: 400, body: { error: { code: 'MALFORMED', message: err.message } } }
    }
    const id = accountMessageId(this.#m.networkId, m)
    if (this.#known(id)) return { status: 200, body: { id } }
    const v = await this.#validate(m)
    if (!v.ok) return { status: 400, body: { error: { code: v.code, message: v.message } } }
    if (this.#known(id)) return { status: 200, body: { id } }
    if (!this.#add(id, m))
      return {
        status: 503,
        body: { error: { code: 'OVERLOADED', message: 'too many account messages waiting, retry later' } },
        retryAfterSec: 1,
      }
    this.#m.publish(m).catch((err) => this.#m.log.warn({ err, id }, 'publishing an account message failed'))
    return { status: 202, body: { id } }
  }

  /**
   * After a commit: the block's messages leave the set (remembered as committed), and so does every
   * pending one the new state refuses (nonce used, balance gone, ...).
   */
  onCommit(block: { readonly accountMessages?: readonly AccountMessage[] }, state: StakingState): void {
    for (const m of block.accountMessages ?? []) {
      const id = accountMessageId(this.#m.networkId, m)
      this.#drop(id)
      this.#committed.add(id)
    }
    while (this.#committed.size > this.opts.maxRecentCommitted) {
      const oldest = this.#committed.values().next().value
      if (oldest === undefined) break
      this.#committed.delete(oldest)
    }
    if (this.#pending.size === 0) return
    const ledger = new StakeLedger(state)
    for (const [id, m] of [...this.#pending]) {
      const v: { ok: true } | { ok: false; code: AccountMessageRejectCode; message: string } =
        ledger.checkMessage(m)
      // RATE_LIMITED is per block: a fresh ledger never says it, and a later block may take the message.
      if (!v.ok) {
        this.#m.log.debug({ id, code: v.code, reason: v.message }, 'pending account message dropped')
        this.#drop(id)
      }
    }
  }
}
