/**
 * Murmur's application behind the consensus engine (consensus/abci.ts): it owns the application state
 * (state/), builds blocks from the intent pool, the health reports, the verified fills and the pending
 * stake moves, judges proposed blocks, and commits a block's state changes and the pool's transitions in
 * the same LevelDB batch as the engine's records. The pure functions it calls (proposeBlock,
 * validateBlock, apply) do no I/O; this class is where the I/O around them lives.
 */
import type { Logger } from 'pino'
import type { Address, Hex } from 'viem'
import type {
  AppInfo,
  Application,
  ExtendVoteRequest,
  FinalizeBlockRequest,
  FinalizeBlockResponse,
  FinalizedBlock,
  PreparedProposal,
  PrepareProposalRequest,
  ProcessProposalRequest,
  ProcessProposalResponse,
  VerifyVoteExtensionRequest,
} from '../consensus/abci.ts'
import {
  type Block,
  type CommitCertificate,
  decodeBlock,
  encodeBlock,
  MAX_BLOCK_ASSIGNMENTS,
  MAX_BLOCK_FILLS,
  type SignedStakeMove,
  type SignedUnjail,
} from '../consensus/block.ts'
import type { Validator } from '../consensus/types.ts'
import { MAX_VOTE_EXTENSION_BYTES } from '../consensus/votes.ts'
import type { IntentPool, TransitionRequest } from '../mempool/pool.ts'
import { canTransition, type IntentState, isTerminal, MempoolError } from '../mempool/record.ts'
import type { SignedFill } from '../rollups/fill.ts'
import { type Balance, encodeExtension, MAX_BALANCES, type Observation } from '../rollups/observation.ts'
import type { AccountMessage } from '../staking/validators.ts'
import { apply } from '../state/apply.ts'
import { crashPoint } from '../state/crash-hook.ts'
import {
  activeValidators,
  extensionOf,
  fillSettles,
  missesAValidator,
  planMemo,
  settlementOrigins,
  skippedValidators,
} from '../state/plan.ts'
import { proposeBlock } from '../state/propose.ts'
import { refundsOf, settlementLeaves, settlementOps } from '../state/settlement.ts'
import { appStateOps, loadAppState } from '../state/storage.ts'
import type { BatchOp, Store } from '../state/store.ts'
import { type AppGenesis, type AppState, type AssignmentState, expectedOutputOf } from '../state/types.ts'
import { checkBlockHeader, type ValidateBlockContext, validateBlock } from '../state/validate.ts'

/** Options of a {@link MurmurApplication}: plain data, defaults in {@link DEFAULT_APPLICATION_OPTIONS}. */
export interface ApplicationOptions {
  readonly maxBlockAssignments: number
  readonly maxBlockFills: number
  /** Pending intents read from the pool per proposal. */
  readonly pendingScanLimit: number
}

export const DEFAULT_APPLICATION_OPTIONS: ApplicationOptions = {
  maxBlockAssignments: MAX_BLOCK_ASSIGNMENTS,
  maxBlockFills: MAX_BLOCK_FILLS,
  pendingScanLimit: 2 * MAX_BLOCK_ASSIGNMENTS,
}

/** Collaborators of a {@link MurmurApplication}. */
export interface ApplicationModules {
  readonly store: Store
  readonly pool: IntentPool
  readonly genesis: AppGenesis
  /** Receipt check of a fill on this node's own RPC (rollups/fill.ts `verifyFillReceipt`). */
  readonly verifyFill: ValidateBlockContext['verifyFill']
  /**
   * Whether a refund's order is opened on its origin settler, on this node's own RPC (validate.ts
   * `verifyRefund`). Absent: this node proposes no refunds and accepts no block with one.
   */
  readonly verifyRefund?: ValidateBlockContext['verifyRefund']
  /**
   * Whether the order of an unsigned intent (opened on chain by its user) is opened on its origin settler,
   * on this node's own RPC (validate.ts `verifyOpened`). Absent: no block assigning one the pool lacks is
   * accepted.
   */
  readonly verifyOpened?: ValidateBlockContext['verifyOpened']
  /**
   * This validator's own latest observation of each rollup (its health monitor), for its vote
   * extensions. Absent on a node that measures nothing: its precommits carry no observation.
   */
  readonly observe?: () => readonly Observation[] | Promise<readonly Observation[]>
  /**
   * This validator's own balances of the network's inventory tokens on the rollups it serves, for its
   * vote extensions: the router gives no executor a fill it could not pay. Absent: none reported (the
   * router then does not filter this executor by inventory).
   */
  readonly balances?: () => readonly Balance[] | Promise<readonly Balance[]>
  /** Fills announced on gossip and not yet committed. */
  readonly pendingFills: () => Iterable<SignedFill> | Promise<Iterable<SignedFill>>
  /** Signed stake moves waiting for a block, signatures already checked (staking/service.ts). */
  readonly pendingStakeMoves?: () => Iterable<SignedStakeMove> | Promise<Iterable<SignedStakeMove>>
  /** Signed Unjails waiting for a block, signatures already checked (staking/service.ts). */
  readonly pendingUnjails?: () => Iterable<SignedUnjail> | Promise<Iterable<SignedUnjail>>
  /** Signed account messages waiting for a block (staking/account-pool.ts). */
  readonly pendingAccountMessages?: () => Iterable<AccountMessage> | Promise<Iterable<AccountMessage>>
  readonly log: Logger
}

/** A committed block, as `onCommit` listeners see it. */
export interface CommitEvent {
  readonly height: bigint
  readonly hash: Hex
  readonly block: Block
  readonly certificate: CommitCertificate
  readonly state: AppState
  /** 'consensus' when this node decided it, 'sync' when it came from a peer with its certificate. */
  readonly source: 'consensus' | 'sync'
}

/** What finalizeBlock computed, carried to commit. */
interface Pending {
  readonly block: Block
  readonly bytes: Uint8Array
  readonly certificate: CommitCertificate
  readonly prev: AppState
  readonly next: AppState
  readonly transitions: readonly TransitionRequest[]
}

/**
 * The pool transitions of `reqs` that the pool can take, given each intent's state there (`stateOf`):
 * intents the pool does not hold, or holds as terminal, are skipped (but `expired -> refunded`: the pool's
 * own sweep expires intents by its clock, a block then refunds them); `-> pending` of an intent already
 * pending is dropped; `-> filled` of an intent the pool still has pending (it never saw the assignment)
 * goes through `assigned` first. The application state is the authority; the pool follows it.
 */
export function reconcileTransitions(
  reqs: readonly TransitionRequest[],
  stateOf: (id: Hex) => IntentState | undefined,
): TransitionRequest[] {
  const out: TransitionRequest[] = []
  const now = new Map<Hex, IntentState | undefined>()
  for (const r of reqs) {
    const s = now.has(r.id) ? now.get(r.id) : stateOf(r.id)
    if (s === undefined || (isTerminal(s) && !canTransition(s, r.to))) continue
    if (r.to === 'pending' && s !== 'assigned') continue
    if (r.to === 'filled' && s === 'pending') {
      if (r.assignment === undefined) continue
      const via: TransitionRequest = { id: r.id, to: 'assigned', assignment: r.assignment }
      if (r.height !== undefined) via.height = r.height
      out.push(via)
    }
    out.push(r)
    now.set(r.id, r.to)
  }
  return out
}

/** Proposals kept decoded for finalizeBlock: a few rounds of one height. */
const DECODED_BLOCKS = 8

/** Stands for a fill verdict still being fetched (see #fillsToPropose). */
const NOT_YET = Promise.resolve('pending' as const)
/**
 * How long a proposer waits for its RPC to say whether expiring orders are opened: unlike a fill, a refund
 * not in the block that expires its intent is never in a later one (the user then waits for the settler's
 * refundExpired), so the proposer waits for the answer, briefly. Refunds are rare; most blocks wait for none.
 */
const REFUND_CHECK_WAIT_MS = 1_000
/** Intents whose fill deadline is within this of the proposer's clock are checked (BFT time trails it). */
const REFUND_CHECK_AHEAD_SEC = 2n

/** A Buffer over the same memory (no copy). */
function viewOf(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength)
}

/** A block worth proposing before the empty-block interval: it changes more than the height. */
function hasWork(b: Block): boolean {
  return (
    b.assignments.length > 0 ||
    b.reassignments.length > 0 ||
    b.fills.length > 0 ||
    b.evidence.length > 0 ||
    b.stakeMoves.length > 0 ||
    b.unjails.length > 0 ||
    (b.refunds?.length ?? 0) > 0 ||
    (b.accountMessages?.length ?? 0) > 0
  )
}

function reject(code: string, message: string): { accept: false; code: string; message: string } {
  return { accept: false, code, message }
}

/** The application of a Murmur node (consensus/abci.ts `Application`). */
export class MurmurApplication implements Application {
  readonly options: ApplicationOptions
  readonly #m: ApplicationModules
  readonly #log: Logger
  #state: AppState | undefined
  #chainSet: ReadonlySet<bigint> | undefined
  readonly #listeners = new Set<(e: CommitEvent) => void>()
  /**
   * Proposals processProposal decoded, by hash: finalizeBlock of the decided one takes the block from here
   * instead of decoding it again (decoding checks the canonical form by encoding the block anew), and with
   * it the plan `#planner` made for it.
   */
  readonly #decoded = new Map<Hex, { readonly bytes: Uint8Array; readonly block: Block }>()
  /** planBlock remembered over the current state: validateBlock's plan of a block is apply's. */
  readonly #planner = planMemo()

  constructor(options: Partial<ApplicationOptions>, modules: ApplicationModules) {
    this.options = { ...DEFAULT_APPLICATION_OPTIONS, ...options }
    this.#m = modules
    this.#log = modules.log.child({ module: 'app' })
  }

  /** The state after the last commit. */
  /** Whether the state is loaded (`state` throws until then). */
  get ready(): boolean {
    return this.#state !== undefined
  }

  get state(): AppState {
    if (this.#state === undefined) throw new Error('application not started')
    return this.#state
  }

  /**
   * Calls `listener` after every commit (decided here or synced). Returns the unsubscribe function. The
   * pool's change events for the block's transitions fire first (when the commit batch is written), then
   * `state` moves, then this.
   */
  onCommit(listener: (e: CommitEvent) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  async info(): Promise<AppInfo> {
    const s = await loadAppState(this.#m.store, this.#m.genesis)
    this.#state = s
    return this.#infoOf(s)
  }

  #infoOf(s: AppState): AppInfo {
    return {
      height: s.height,
      lastBlockHash: s.lastBlockHash,
      lastBlockTime: s.lastBlockTime,
      validators: activeValidators(s),
      offline: skippedValidators(s),
    }
  }

  /**
   * getValue() (L18): a block over the pool's pending intents, held reports, verified fills, evidence and
   * pending stake moves.
   */
  async prepareProposal(req: PrepareProposalRequest): Promise<PreparedProposal> {
    const state = this.state
    if (req.height !== state.height + 1n)
      throw new Error(`prepareProposal at ${req.height} on state ${state.height}`)
    const [pending, fills, stakeMoves, unjails, opened, accountMessages] = await Promise.all([
      this.#m.pool.pending(this.options.pendingScanLimit),
      this.#fillsToPropose(state),
      this.#m.pendingStakeMoves?.() ?? [],
      this.#m.pendingUnjails?.() ?? [],
      this.#openedOrders(state, req.nowMs),
      this.#m.pendingAccountMessages?.() ?? [],
    ])
    const lastCommit = req.awaitLastCommit === undefined ? req.lastCommit : await req.awaitLastCommit()
    const block = proposeBlock(this.state, pending, lastCommit ?? null, fills, req.nowMs, {
      proposer: req.proposer as Address,
      round: req.round,
      evidence: req.misbehavior,
      maxAssignments: this.options.maxBlockAssignments,
      maxFills: this.options.maxBlockFills,
      stakeMoves,
      unjails,
      opened,
      accountMessages,
    })
    const work = hasWork(block) || missesAValidator(this.state, lastCommit ?? null)
    return { bytes: encodeBlock(block), hasWork: work, time: block.time }
  }

  /**
   * Intents about to expire on a rollup with settlement whose orders this node's RPC says are opened on
   * their origin settler (`verifyRefund` 'valid'): the block that expires them refunds them.
   */
  async #openedOrders(app: AppState, nowMs: number): Promise<ReadonlySet<Hex>> {
    const verify = this.#m.verifyRefund
    if (verify === undefined) return new Set()
    const origins = settlementOrigins(app)
    const horizon = BigInt(Math.floor(nowMs / 1000)) + REFUND_CHECK_AHEAD_SEC
    const due = [...app.assignments.values(), ...app.released.values()].filter(
      (a) => a.fillDeadline < horizon && origins.has(a.originChainId),
    )
    if (due.length === 0) return new Set()
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<'unknown'>((resolve) => {
      timer = setTimeout(() => resolve('unknown'), REFUND_CHECK_WAIT_MS)
    })
    try {
      const verdicts = await Promise.all(
        refundsOf(
          app,
          due.map((a) => a.intentId),
        ).map((r) => Promise.race([verify(r.orderId, r), late]).catch(() => 'unknown' as const)),
      )
      return new Set(due.filter((_, i) => verdicts[i] === 'valid').map((a) => a.intentId))
    } finally {
      clearTimeout(timer)
    }
  }

  /** Pending fills of open assignments by the assigned executor that this node's RPC confirms. */
  async #fillsToPropose(app: AppState): Promise<SignedFill[]> {
    const candidates: Array<{ fill: SignedFill; a: AssignmentState }> = []
    const seen = new Set<string>()
    for (const f of await this.#m.pendingFills()) {
      if (candidates.length >= this.options.maxBlockFills) break
      const a = app.assignments.get(f.fill.intentId)
      if (a === undefined || seen.has(f.fill.intentId)) continue
      if (!fillSettles(app, a, f.fill)) continue
      seen.add(f.fill.intentId)
      candidates.push({ fill: f, a })
    }
    // Only verdicts already known: a proposer does not hold its block for an RPC round trip. The fills
    // topic starts each check on arrival and wakes the proposer (notifyWork) when one comes out valid.
    // (Promise.race settles with `p` when `p` has already settled: its reaction is queued first.)
    const verdicts = await Promise.all(
      candidates.map(({ fill, a }) => {
        const p = this.#m.verifyFill(fill, expectedOutputOf(a))
        p.catch(() => {})
        return Promise.race([p, NOT_YET]).catch(() => 'unknown' as const)
      }),
    )
    return candidates.filter((_, i) => verdicts[i] === 'valid').map((c) => c.fill)
  }

  /** valid(v): validateBlock against the state of the previous height. */
  async processProposal(req: ProcessProposalRequest): Promise<ProcessProposalResponse> {
    const state = this.state
    let block: Block
    try {
      block = decodeBlock(req.bytes)
    } catch (err) {
      return reject('MALFORMED', (err as Error).message)
    }
    if (block.height !== req.height)
      return reject('BAD_HEIGHT', `block ${block.height} in a proposal of ${req.height}`)
    this.#keepDecoded(req.hash, req.bytes, block)
    const pool = this.#m.pool
    const verdict = await validateBlock(state, block, {
      nowMs: req.nowMs,
      plan: this.#planner,
      verifyFill: this.#m.verifyFill,
      ...(this.#m.verifyRefund === undefined ? {} : { verifyRefund: this.#m.verifyRefund }),
      ...(this.#m.verifyOpened === undefined ? {} : { verifyOpened: this.#m.verifyOpened }),
      isKnownIntent: (id) => pool.has(id),
    })
    if (verdict.ok) return { accept: true, time: block.time }
    this.#log.warn(
      {
        height: block.height,
        hash: req.hash,
        proposer: block.proposer,
        code: verdict.code,
        reason: verdict.message,
      },
      'invalid block proposed',
    )
    return reject(verdict.code, verdict.message)
  }

  #keepDecoded(hash: Hex, bytes: Uint8Array, block: Block): void {
    if (this.#decoded.size >= DECODED_BLOCKS) this.#decoded.delete(this.#decoded.keys().next().value!)
    this.#decoded.set(hash, { bytes, block })
  }

  /** The block of `bytes`, decoded by processProposal already when it judged the proposal `hash`. */
  #blockOf(hash: Hex, bytes: Uint8Array): Block {
    const d = this.#decoded.get(hash)
    // The bytes are compared too: a hash names the bytes only if the caller computed it from them.
    if (d !== undefined && (d.bytes === bytes || viewOf(d.bytes).equals(viewOf(bytes)))) return d.block
    return decodeBlock(bytes)
  }

  /**
   * This validator's observation of every rollup it measures (its own latest health reports) and its own
   * balances, carried by its precommit: the next block's health view is the median over the commit's
   * extensions, and its pool view knows what each executor can pay.
   */
  async extendVote(_req: ExtendVoteRequest): Promise<Uint8Array> {
    const known = this.#chains
    const own = (await this.#m.observe?.()) ?? []
    const balances = ((await this.#m.balances?.()) ?? [])
      .filter((b) => known.has(b.chainId))
      .slice(0, MAX_BALANCES)
    const observations = own.filter((o) => known.has(o.chainId))
    const bytes = encodeExtension({ observations, balances })
    // Observations first: balances that would not fit are left out (the executor then gets no work).
    return bytes.length <= MAX_VOTE_EXTENSION_BYTES ? bytes : encodeExtension({ observations, balances: [] })
  }

  /** An extension is a canonical list of observations (and balances) of rollups of this network. */
  async verifyVoteExtension(req: VerifyVoteExtensionRequest): Promise<boolean> {
    // Decoded once: the next block's validation and plan read the same extension (plan.ts `extensionOf`).
    const e = extensionOf(req.extension)
    if (e === undefined) return false
    return (
      e.observations.every((o) => this.#chains.has(o.chainId)) &&
      e.balances.every((b) => this.#chains.has(b.chainId))
    )
  }

  get #chains(): ReadonlySet<bigint> {
    this.#chainSet ??= new Set(this.#m.genesis.rollups.map((r) => BigInt(r.chainId)))
    return this.#chainSet
  }

  async finalizeBlock(req: FinalizeBlockRequest): Promise<FinalizeBlockResponse> {
    const prev = this.state
    let block: Block
    try {
      block = this.#blockOf(req.hash, req.bytes)
    } catch (err) {
      return { ok: false, code: 'MALFORMED', message: (err as Error).message }
    }
    if (block.height !== req.height)
      return { ok: false, code: 'BAD_HEIGHT', message: `block ${block.height} committed as ${req.height}` }
    if (req.source === 'sync') {
      const head = checkBlockHeader(prev, block)
      if (!head.ok) return { ok: false, code: head.code, message: head.message }
    }
    const { state: next, intentTransitions } = apply(prev, block, req.hash, this.#planner)
    const app: Pending = {
      block,
      bytes: req.bytes,
      certificate: req.certificate,
      prev,
      next,
      transitions: intentTransitions,
    }
    return {
      ok: true,
      height: next.height,
      hash: req.hash,
      time: next.lastBlockTime,
      validators: activeValidators(next) as readonly Validator[],
      offline: skippedValidators(next),
      source: req.source,
      app,
    }
  }

  /**
   * Commits a finalized block: the engine's records, the application state changes and the pool
   * transitions, in one batch. Intents of the block the pool lacks are added first (as pending: harmless
   * if the commit then fails), so the pool can follow the state.
   */
  async commit(f: FinalizedBlock, engineOps: readonly BatchOp[]): Promise<void> {
    const { block, prev, next, transitions } = f.app as Pending
    if (prev !== this.#state) throw new Error(`commit of ${f.height} on a state that moved`)
    const pool = this.#m.pool
    const missing = block.assignments
      .map((a, i) => ({
        id: a.intentId,
        order: block.intents[i]!.order,
        signature: block.intents[i]!.signature,
      }))
      .filter((x) => !pool.has(x.id))
    if (missing.length > 0) {
      try {
        await pool.addMany(missing)
      } catch (err) {
        if (!(err instanceof MempoolError)) throw err
        this.#log.warn({ err, height: block.height }, 'could not add the block intents to the pool')
      }
    }
    // The block's settlement leaves need the assignments of `prev`: kept now for GET /v1/settlement/:height.
    const ops: BatchOp[] = [
      ...engineOps,
      ...appStateOps(prev, next),
      ...settlementOps(prev, block, settlementLeaves(prev, block.fills, refundsOf(prev, block.refunds))),
    ]
    crashPoint('commit')
    for (let attempt = 1; ; attempt++) {
      // The pool's own sweeper may move an intent between planning and writing: plan again, then give up
      // on the pool (never on the block: the application state is the authority).
      const reqs = reconcileTransitions(transitions, (id) => pool.stateOf(id))
      try {
        await pool.transitionMany(reqs, { extraOps: ops })
        break
      } catch (err) {
        if (!(err instanceof MempoolError) || err.code === 'CLOSED') throw err
        if (attempt < 3) continue
        this.#log.error({ err, height: block.height }, 'pool transitions dropped; committing the block alone')
        await this.#m.store.batch(ops)
        break
      }
    }
    this.#state = next
    for (const [hash, d] of this.#decoded) if (d.block.height <= next.height) this.#decoded.delete(hash)
    this.#log.debug(
      {
        height: block.height,
        assignments: block.assignments.length,
        reassignments: block.reassignments.length,
        fills: block.fills.length,
        evidence: block.evidence.length,
      },
      'block applied',
    )
  }

  afterCommit(f: FinalizedBlock): void {
    const { block, next, certificate } = f.app as Pending
    const event: CommitEvent = {
      height: f.height,
      hash: f.hash,
      block,
      certificate,
      state: next,
      source: f.source,
    }
    for (const l of this.#listeners) {
      try {
        l(event)
      } catch (err) {
        this.#log.error({ err }, 'commit listener threw')
      }
    }
  }
}
