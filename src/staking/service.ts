/**
 * Stake moves, Unjails and account messages in a node: the `stake` topic's validator, small in-memory sets
 * of signed moves and Unjails waiting for a block (consensus proposes from them), `POST /v1/stake-moves`
 * and `POST /v1/unjail`; account messages go to its {@link AccountMessagePool} (account-pool.ts). The sets are bounded, hold only messages whose signature was checked, and drop one
 * once a block commits it or the committed state makes it invalid. Nothing here is persisted: a message
 * lost in a restart is sent again by its signer.
 */
import type { Logger } from 'pino'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { Address, Hex } from 'viem'
import { CodecError, parseAddress, parseDecimal, parseHex, parseObject, UINT64_MAX } from '../codec/json.ts'
import type { TopicHandler } from '../p2p/host.ts'
import { ACCEPT, ignore, reject } from '../p2p/validation.ts'
import { type AccountMessageKey, AccountMessagePool, type AccountSubmitAnswer } from './account-pool.ts'
import { StakeLedger, type StakingState, validateStakeMove } from './ledger.ts'
import {
  findBadStakeMoveField,
  type RecoverFn,
  type SignedStakeMove,
  type StakeMove,
  type StakeMoveRejectCode,
  stakeMoveId,
} from './moves.ts'
import {
  checkUnjail,
  findBadUnjailField,
  type SignedUnjail,
  signedUnjailFromJson,
  type UnjailRejectCode,
  type UnjailState,
  unjailId,
  validateUnjail,
} from './unjail.ts'
import type { AccountMessage } from './validators.ts'
import { isAccountMessage, isUnjail, type StakeMessage } from './wire.ts'

export interface StakingServiceOptions {
  /** Most moves waiting for a block. */
  maxPending: number
  /** Most moves of one staker waiting for a block. */
  maxPendingPerStaker: number
  /** Ids of committed moves remembered (answers 200 and IGNOREs them as duplicates). */
  maxRecentCommitted: number
}

export const DEFAULT_STAKING_OPTIONS: StakingServiceOptions = {
  maxPending: 1024,
  maxPendingPerStaker: 32,
  maxRecentCommitted: 4096,
}

export interface StakingServiceModules {
  networkId: string
  /** The committed application state (consensus driver's `appState`). */
  state: () => StakingState & UnjailState
  /** Publishes on the `stake` topic; a failure (no peers yet) is logged, not fatal. */
  publish: (message: StakeMessage) => Promise<void>
  log: Logger
  registry?: Registry
  recover?: RecoverFn
  /** Unix milliseconds (default Date.now): an Unjail before its validator's jail time is TOO_EARLY. */
  now?: () => number
}

/** Answer of {@link StakingService.submitJson}: an HTTP status and its JSON body. */
export type StakeSubmitAnswer =
  | { status: 200 | 202; body: { id: Hex } }
  | { status: 400 | 503; body: { error: { code: string; message: string } }; retryAfterSec?: number }

/** Codes that prove the sender wrong (REJECT on gossip); every other refusal is IGNOREd. */
const PROVABLY_BAD: ReadonlySet<StakeMoveRejectCode | UnjailRejectCode> = new Set([
  'MALFORMED',
  'BAD_SIGNATURE',
])

/** Refusals of a pending Unjail that a later state can lift (the jail time passes): it stays pending. */
const UNJAIL_NOT_YET: ReadonlySet<UnjailRejectCode> = new Set(['TOO_EARLY'])

/** `{move, signature}` in the JSON conventions -> a signed move. Throws CodecError. */
export function signedStakeMoveFromJson(body: unknown): SignedStakeMove {
  const o = parseObject(body, '', ['move', 'signature'])
  const m = parseObject(o.move, 'move', [
    'staker',
    'fromChainId',
    'toChainId',
    'amount',
    'durationBlocks',
    'nonce',
  ])
  const move: StakeMove = {
    staker: parseAddress(m.staker, 'move.staker'),
    fromChainId: parseDecimal(m.fromChainId, 'move.fromChainId'),
    toChainId: parseDecimal(m.toChainId, 'move.toChainId'),
    amount: parseDecimal(m.amount, 'move.amount'),
    durationBlocks: parseDecimal(m.durationBlocks, 'move.durationBlocks', UINT64_MAX),
    nonce: parseDecimal(m.nonce, 'move.nonce'),
  }
  return { move, signature: parseHex(o.signature, 'signature', { bytes: 65 }) }
}

/** A signed move in the JSON conventions (the body of `POST /v1/stake-moves`). */
export function signedStakeMoveToJson(s: SignedStakeMove) {
  const m = s.move
  return {
    move: {
      staker: m.staker,
      fromChainId: m.fromChainId.toString(),
      toChainId: m.toChainId.toString(),
      amount: m.amount.toString(),
      durationBlocks: m.durationBlocks.toString(),
      nonce: m.nonce.toString(),
    },
    signature: s.signature,
  }
}

export class StakingService {
  readonly opts: StakingServiceOptions
  readonly #m: StakingServiceModules
  /** Moves waiting for a block, by id, in arrival order. */
  readonly #pending = new Map<Hex, SignedStakeMove>()
  readonly #perStaker = new Map<Address, number>()
  /** Ids of recently committed moves, oldest first. */
  readonly #committed = new Set<Hex>()
  readonly #listeners = new Set<(message: StakeMessage) => void>()
  /** Unjails waiting for a block: one per validator (a higher nonce replaces it). */
  readonly #unjails = new Map<Address, { id: Hex; s: SignedUnjail }>()
  readonly #metrics: { received: Counter<'source' | 'outcome'> } | undefined
  /** Account messages waiting for a block. */
  readonly accounts: AccountMessagePool

  constructor(options: Partial<StakingServiceOptions>, modules: StakingServiceModules) {
    this.opts = { ...DEFAULT_STAKING_OPTIONS, ...options }
    this.#m = modules
    this.accounts = new AccountMessagePool(
      {},
      {
        networkId: modules.networkId,
        state: modules.state,
        publish: (m) => modules.publish(m),
        log: modules.log,
        ...(modules.recover === undefined ? {} : { recover: modules.recover }),
        onPending: (m) => {
          for (const l of this.#listeners) l(m)
        },
      },
    )
    const registry = modules.registry
    if (registry !== undefined) {
      this.#metrics = {
        received: new Counter({
          name: 'murmur_stake_moves_received_total',
          help: 'Stake moves received, by source (api, gossip) and outcome',
          labelNames: ['source', 'outcome'] as const,
          registers: [registry],
        }),
      }
      const pending: Gauge = new Gauge({
        name: 'murmur_stake_moves_pending',
        help: 'Stake moves waiting for a block',
        registers: [registry],
        collect: () => pending.set(this.#pending.size),
      })
    }
  }

  /** Moves waiting for a block, in arrival order (the proposer sorts and filters them). */
  pending(): SignedStakeMove[] {
    return [...this.#pending.values()]
  }

  /** Unjails waiting for a block, by validator (the proposer keeps the ones valid at its block time). */
  pendingUnjails(): SignedUnjail[] {
    return [...this.#unjails.values()].map((u) => u.s)
  }

  /** Account messages waiting for a block, in arrival order. */
  pendingAccountMessages(): AccountMessage[] {
    return this.accounts.pending()
  }

  /** True when the move, Unjail or account message is waiting for a block here. */
  has(id: Hex): boolean {
    return (
      this.#pending.has(id) || [...this.#unjails.values()].some((u) => u.id === id) || this.accounts.has(id)
    )
  }

  /** `POST /v1/transfers`, `/v1/delegations`, `/v1/undelegations`, `/v1/validators` (account-pool.ts). */
  submitAccountJson(key: AccountMessageKey, body: unknown): Promise<AccountSubmitAnswer> {
    return this.accounts.submitJson(key, body)
  }

  /** Called with each move or Unjail that becomes pending (consensus wakes a proposer waiting for work). */
  onPending(listener: (message: StakeMessage) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  #known(id: Hex): boolean {
    return this.#pending.has(id) || this.#committed.has(id) || this.#m.state().stakeMoves.has(id)
  }

  #unjailKnown(id: Hex, s: SignedUnjail): boolean {
    return this.#committed.has(id) || this.#unjails.get(s.unjail.validator)?.id === id
  }

  #nowSec(): bigint {
    return BigInt(Math.floor((this.#m.now ?? Date.now)() / 1000))
  }

  /** Holds a checked Unjail, unless one of its validator with a nonce as high is already held. */
  #addUnjail(id: Hex, s: SignedUnjail): boolean {
    const held = this.#unjails.get(s.unjail.validator)
    if (held !== undefined && held.s.unjail.nonce >= s.unjail.nonce) return false
    if (held === undefined && this.#unjails.size >= this.opts.maxPending) return false
    this.#unjails.set(s.unjail.validator, { id, s })
    for (const l of this.#listeners) l(s)
    return true
  }

  #full(staker: Address): boolean {
    return (
      this.#pending.size >= this.opts.maxPending ||
      (this.#perStaker.get(staker) ?? 0) >= this.opts.maxPendingPerStaker
    )
  }

  #add(id: Hex, s: SignedStakeMove): boolean {
    if (this.#pending.has(id) || this.#full(s.move.staker)) return false
    this.#pending.set(id, s)
    this.#perStaker.set(s.move.staker, (this.#perStaker.get(s.move.staker) ?? 0) + 1)
    for (const l of this.#listeners) l(s)
    return true
  }

  #drop(id: Hex): void {
    const s = this.#pending.get(id)
    if (s === undefined) return
    this.#pending.delete(id)
    const n = (this.#perStaker.get(s.move.staker) ?? 1) - 1
    if (n > 0) this.#perStaker.set(s.move.staker, n)
    else this.#perStaker.delete(s.move.staker)
  }

  #id(s: SignedStakeMove): Hex | undefined {
    if (findBadStakeMoveField(s) !== undefined) return undefined
    return stakeMoveId(this.#m.networkId, s.move)
  }

  /**
   * The `stake` topic handler: IGNORE `DUPLICATE` (pending or committed), `FULL`, and the refusals that
   * depend on this node's view of the state or clock (`NONCE_USED`, `UNKNOWN_STAKER`, `INSUFFICIENT_STAKE`,
   * `TOO_MANY_MOVES`, `NOT_JAILED`, `TOO_EARLY`, `TOMBSTONED`: it may be behind or ahead); REJECT
   * `MALFORMED` and `BAD_SIGNATURE`.
   */
  readonly topicHandler: TopicHandler<StakeMessage> = {
    validate: async (msg) => {
      if (isAccountMessage(msg)) {
        const v = await this.accounts.validateGossip(msg)
        return this.#count('gossip', v.ok ? ACCEPT : v.provable ? reject(v.code) : ignore(v.code))
      }
      if (isUnjail(msg)) return this.#validateUnjailGossip(msg)
      const id = this.#id(msg)
      if (id === undefined) return this.#count('gossip', reject('MALFORMED'))
      if (this.#known(id)) return this.#count('gossip', ignore('DUPLICATE'))
      if (this.#full(msg.move.staker)) return this.#count('gossip', ignore('FULL'))
      const v = await validateStakeMove(this.#m.state(), msg, undefined, this.#m.recover)
      if (v.ok) return this.#count('gossip', ACCEPT)
      return this.#count('gossip', PROVABLY_BAD.has(v.code) ? reject(v.code) : ignore(v.code))
    },
    onMessage: (msg) => {
      if (isAccountMessage(msg)) {
        this.accounts.onGossip(msg)
        return
      }
      if (isUnjail(msg)) {
        if (findBadUnjailField(msg) !== undefined) return
        const id = unjailId(this.#m.networkId, msg.unjail)
        if (!this.#unjailKnown(id, msg)) this.#addUnjail(id, msg)
        return
      }
      const id = this.#id(msg)
      if (id !== undefined && !this.#known(id)) this.#add(id, msg)
    },
  }

  async #validateUnjailGossip(msg: SignedUnjail) {
    if (findBadUnjailField(msg) !== undefined) return this.#count('gossip', reject('MALFORMED'))
    const id = unjailId(this.#m.networkId, msg.unjail)
    if (this.#unjailKnown(id, msg)) return this.#count('gossip', ignore('DUPLICATE'))
    const v = await validateUnjail(this.#m.state(), msg, this.#nowSec(), this.#m.recover)
    if (v.ok) return this.#count('gossip', ACCEPT)
    return this.#count('gossip', PROVABLY_BAD.has(v.code) ? reject(v.code) : ignore(v.code))
  }

  #count<T extends { result: string; code?: string }>(source: string, r: T): T {
    this.#metrics?.received.inc({ source, outcome: r.code ?? r.result })
    return r
  }

  /** `parse(body)`, or the 400 MALFORMED answer (counted) when it throws a CodecError. */
  #parse<T>(body: unknown, parse: (b: unknown) => T): { value: T } | StakeSubmitAnswer {
    try {
      return { value: parse(body) }
    } catch (err) {
      if (!(err instanceof CodecError)) throw err
      this.#metrics?.received.inc({ source: 'api', outcome: 'MALFORMED' })
      return { status: 400, body: { error: { code: 'MALFORMED', message: err.message } } }
    }
  }

  /**
   * `POST /v1/stake-moves` body `{move, signature}`: 202 `{id}` accepted (pending and published on the
   * `stake` topic); 200 `{id}` already pending or committed; 400 `{error}` with a StakeMoveRejectCode;
   * 503 when the pending set is full.
   */
  async submitJson(body: unknown): Promise<StakeSubmitAnswer> {
    const parsed = this.#parse(body, signedStakeMoveFromJson)
    if ('status' in parsed) return parsed
    const s = parsed.value
    const id = stakeMoveId(this.#m.networkId, s.move)
    if (this.#known(id)) {
      this.#metrics?.received.inc({ source: 'api', outcome: 'known' })
      return { status: 200, body: { id } }
    }
    const v = await validateStakeMove(this.#m.state(), s, undefined, this.#m.recover)
    if (!v.ok) {
      this.#metrics?.received.inc({ source: 'api', outcome: v.code })
      return { status: 400, body: { error: { code: v.code, message: v.message } } }
    }
    if (this.#known(id)) return { status: 200, body: { id } }
    if (!this.#add(id, s)) {
      this.#metrics?.received.inc({ source: 'api', outcome: 'FULL' })
      return {
        status: 503,
        body: { error: { code: 'OVERLOADED', message: 'too many stake moves waiting, retry later' } },
        retryAfterSec: 1,
      }
    }
    this.#metrics?.received.inc({ source: 'api', outcome: 'accepted' })
    this.#m.publish(s).catch((err) => this.#m.log.warn({ err, id }, 'publishing a stake move failed'))
    return { status: 202, body: { id } }
  }

  /**
   * `POST /v1/unjail` body `{unjail, signature}`: 202 `{id}` accepted (pending and published on the
   * `stake` topic); 200 `{id}` already pending or committed; 400 `{error}` with an UnjailRejectCode
   * (TOO_EARLY while the jail time, on this node's clock, is not over).
   */
  async submitUnjailJson(body: unknown): Promise<StakeSubmitAnswer> {
    const parsed = this.#parse(body, signedUnjailFromJson)
    if ('status' in parsed) return parsed
    const s = parsed.value
    const id = unjailId(this.#m.networkId, s.unjail)
    if (this.#unjailKnown(id, s)) return { status: 200, body: { id } }
    const v = await validateUnjail(this.#m.state(), s, this.#nowSec(), this.#m.recover)
    this.#metrics?.received.inc({ source: 'api', outcome: v.ok ? 'accepted' : v.code })
    if (!v.ok) return { status: 400, body: { error: { code: v.code, message: v.message } } }
    if (!this.#addUnjail(id, s)) {
      if (this.#unjailKnown(id, s)) return { status: 200, body: { id } }
      const code = this.#unjails.has(s.unjail.validator) ? 'NONCE_USED' : 'OVERLOADED'
      return code === 'NONCE_USED'
        ? { status: 400, body: { error: { code, message: 'an Unjail with a nonce as high is pending' } } }
        : { status: 503, body: { error: { code, message: 'too many Unjails waiting' } }, retryAfterSec: 1 }
    }
    this.#m.publish(s).catch((err) => this.#m.log.warn({ err, id }, 'publishing an unjail failed'))
    return { status: 202, body: { id } }
  }

  /**
   * After a commit: the block's moves and Unjails leave the pending sets (remembered as committed), and so
   * does every pending one the new state refuses (nonce used, stake no longer there, staker jailed, not
   * jailed any more, tombstoned, ...; an Unjail that is only early stays).
   */
  onCommit(
    block: {
      readonly stakeMoves: readonly SignedStakeMove[]
      readonly unjails?: readonly SignedUnjail[]
      readonly accountMessages?: readonly AccountMessage[]
    },
    state: StakingState & UnjailState,
  ): void {
    this.accounts.onCommit(block, state)
    for (const s of block.stakeMoves) {
      const id = stakeMoveId(this.#m.networkId, s.move)
      this.#drop(id)
      this.#committed.add(id)
    }
    for (const u of block.unjails ?? []) this.#committed.add(unjailId(this.#m.networkId, u.unjail))
    for (const [validator, { id, s }] of [...this.#unjails]) {
      const v = checkUnjail(state, s, this.#nowSec())
      if (this.#committed.has(id) || (!v.ok && !UNJAIL_NOT_YET.has(v.code))) this.#unjails.delete(validator)
    }
    while (this.#committed.size > this.opts.maxRecentCommitted) {
      const oldest = this.#committed.values().next().value
      if (oldest === undefined) break
      this.#committed.delete(oldest)
    }
    if (this.#pending.size === 0) return
    const ledger = new StakeLedger(state)
    ledger.expire(state.height + 1n)
    for (const [id, s] of [...this.#pending]) {
      const v = ledger.check(s)
      if (!v.ok) {
        this.#m.log.debug({ id, code: v.code, reason: v.message }, 'pending stake move dropped')
        this.#drop(id)
      }
    }
  }
}
