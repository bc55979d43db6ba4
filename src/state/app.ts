/**
 * The application state machine (ARCHITECTURE.md, "src/state"): what committed blocks decide — validators
 * and their stake pools, open assignments, finished intents — and the pure functions over it:
 *
 * - `proposeBlock(state, pending, reports, fills, nowMs, opts)`: the proposer's block;
 * - `validateBlock(state, block, ctx)`: valid(v) of the Tendermint core (async only for signature recovery
 *   and the injected fill receipt check);
 * - `apply(state, block)`: the next state and the intent pool transitions the block implies. No I/O.
 *
 * All three share `planBlock`, so the proposer and every validator derive the same re-routing set, pool
 * view and health view from (state, block): assignments must equal `routeIntents` over the block's own
 * health reports exactly. Map iteration order is never relied on (a state loaded from LevelDB iterates in
 * key order, one built by `apply` in insertion order): everything decided is sorted first.
 *
 * Storage (sublevel `app`, JSON values, big integers as decimal strings), written as batch ops so that a
 * block, its certificate, this state and the pool's transitions land in one `store.batch`:
 *   `meta`       -> {version, networkId, genesisHash, height, lastBlockHash, lastBlockTime, validators}
 *   `a/<id>`     -> open assignment
 *   `d/<id>`     -> fillDeadline of a finished (filled or expired) intent, kept until that deadline passes
 *   `m/<id>`     -> stake move in force (staking/moves.ts); the stakers' used nonces are in `meta`
 */
import type { Address, Hex } from 'viem'
import { stringToBytes } from 'viem'
import { decodeOrderData, intentId, MURMUR_ORDER_TYPEHASH, type SignedIntent } from '../codec/intent.ts'
import {
  type Block,
  type BlockAssignment,
  type BlockFill,
  blockHash,
  MAX_BLOCK_ASSIGNMENTS,
  MAX_BLOCK_EVIDENCE,
  MAX_BLOCK_FILLS,
  MAX_BLOCK_HEALTH_REPORTS,
  MAX_BLOCK_REASSIGNMENTS,
  MAX_BLOCK_STAKE_MOVES,
  type SignedStakeMove,
  type VoteEvidence,
} from '../consensus/block.ts'
import { type Recover, verifyVoteSignature } from '../consensus/signing.ts'
import type { Validator } from '../consensus/types.ts'
import { keccak256Bytes } from '../crypto/keccak.ts'
import { recoverAddress } from '../crypto/recover.ts'
import { StorageError } from '../errors.ts'
import type { TransitionRequest } from '../mempool/pool.ts'
import type { Assignment as PoolAssignment } from '../mempool/record.ts'
import {
  type ExpectedOutput,
  type FillVerdict,
  fillDigest,
  findBadFillField,
  type SignedFill,
} from '../rollups/fill.ts'
import {
  findBadReportField,
  gasRatioBps,
  healthReportDigest,
  type SignedHealthReport,
} from '../rollups/health-report.ts'
import {
  aggregateHealth,
  type GenesisRollup,
  type HealthWindow,
  selectFreshReports,
} from '../rollups/health-view.ts'
import {
  DEFAULT_ROUTE_PARAMS,
  type HealthView,
  type PoolMember,
  type PoolView,
  type RerouteReason,
  type RouteIntent,
  type RouteProfile,
  rerouteCandidates,
  routeIntents,
} from '../rollups/router.ts'
import {
  STAKE_MOVE_CONGESTED_BPS,
  StakeLedger,
  type StakeMoveRecord,
  sortStakeMoves,
  stakeMoveOrdered,
  stakeMoveRecordToJson,
} from '../staking/moves.ts'
import { type BatchOp, prefixEnd, type Store } from './store.ts'

/** Network parameters the state machine reads (genesis `params`). */
export interface AppParams {
  readonly maxClockSkewSec: number
  readonly blockIntervalMs: number
  readonly healthFreshnessMs: number
  readonly fillTimeoutSec: number
}

/** What the state machine needs of a genesis (`Genesis` of node/genesis.ts fits). */
export interface AppGenesis {
  readonly networkId: string
  /** Unix seconds. */
  readonly genesisTime: number
  readonly validators: readonly {
    readonly address: string
    readonly peerId: string
    readonly stake: bigint
    readonly pools: readonly number[]
  }[]
  readonly delegations: readonly {
    readonly delegator: string
    readonly validator: string
    readonly amount: bigint
    readonly chainId: number
  }[]
  readonly rollups: readonly GenesisRollup[]
  readonly params: AppParams
}

/** A validator as the state knows it (`GET /v1/validators`). */
export interface ValidatorState {
  /** Lowercase. */
  readonly address: Address
  readonly peerId: string
  /** Bonded stake: the sum of its pools. Counts for consensus unless jailed. */
  readonly power: bigint
  /** Stake per rollup it serves (chain id -> stake). */
  readonly pools: ReadonlyMap<bigint, bigint>
  readonly jailed: boolean
}

/** An open assignment, with what re-routing and fill checks need of its intent. */
export interface AssignmentState {
  readonly intentId: Hex
  readonly chainId: bigint
  readonly executor: Address
  /** Unix seconds: after it the assignment is re-routed. */
  readonly deadline: bigint
  /** Block that made (or last moved) it. */
  readonly height: bigint
  readonly user: Address
  readonly destinationChainIds: readonly bigint[]
  readonly outputToken: Address
  readonly outputAmount: bigint
  readonly recipient: Address
  /** The intent's own fill deadline, unix seconds: after it the intent expires. */
  readonly fillDeadline: bigint
}

/** The application state after `height` blocks. */
/** What a fill of assignment `a` must deliver (rollups/fill.ts `verifyFillReceipt`). */
export function expectedOutputOf(a: AssignmentState): ExpectedOutput {
  return { recipient: a.recipient, outputToken: a.outputToken, outputAmount: a.outputAmount }
}

export interface AppState {
  readonly networkId: string
  readonly genesisHash: Hex
  readonly height: bigint
  /** The genesis hash at height 0. */
  readonly lastBlockHash: Hex
  /** Unix milliseconds; genesisTime × 1000 at height 0. */
  readonly lastBlockTime: number
  /** Sorted by address. */
  readonly validators: readonly ValidatorState[]
  readonly assignments: ReadonlyMap<Hex, AssignmentState>
  /** Filled or expired intents -> their fill deadline; an intent here is never assigned again. */
  readonly done: ReadonlyMap<Hex, bigint>
  /** Elastic stake moves in force, by id (staking/moves.ts). */
  readonly stakeMoves: ReadonlyMap<Hex, StakeMoveRecord>
  /** Highest stake move nonce used by each staker. */
  readonly stakeNonces: ReadonlyMap<Address, bigint>
  readonly rollups: readonly GenesisRollup[]
  readonly params: AppParams
}

/**
 * Version of the stored state layout. 2 added stake moves (`m/<id>`) and `meta.stakeNonces`; a version 1
 * state (blocks then could not carry moves) loads with none.
 */
export const APP_STATE_VERSION = 2
/** Evidence older than this many blocks is no longer accepted. */
export const EVIDENCE_MAX_AGE_BLOCKS = 100n

const NO_PROFILES: ReadonlyMap<string, RouteProfile> = new Map()
const ROUTE_PARAMS = DEFAULT_ROUTE_PARAMS

function cmp(a: string | bigint, b: string | bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function toHex(bytes: Uint8Array): Hex {
  return `0x${Buffer.from(bytes).toString('hex')}`
}

// ---------------------------------------------------------------------------------------------------
// Genesis.

/** keccak256 of a canonical JSON form of the genesis: the parent hash of block 1. */
export function genesisHash(g: AppGenesis): Hex {
  const canonical = [
    g.networkId,
    g.genesisTime,
    [...g.validators]
      .map((v) => [v.address.toLowerCase(), v.peerId, v.stake.toString(), [...v.pools].sort((a, b) => a - b)])
      .sort((a, b) => cmp(a[0] as string, b[0] as string)),
    g.delegations.map((d) => [
      d.delegator.toLowerCase(),
      d.validator.toLowerCase(),
      d.amount.toString(),
      d.chainId,
    ]),
    [...g.rollups]
      .map((r) => [String(r.chainId), r.name, r.type, r.securityBps])
      .sort((a, b) => cmp(BigInt(a[0] as string), BigInt(b[0] as string))),
    [g.params.maxClockSkewSec, g.params.blockIntervalMs, g.params.healthFreshnessMs, g.params.fillTimeoutSec],
  ]
  return toHex(keccak256Bytes(stringToBytes(JSON.stringify(canonical))))
}

function sumPools(pools: ReadonlyMap<bigint, bigint>): bigint {
  let s = 0n
  for (const v of pools.values()) s += v
  return s
}

/**
 * The state at height 0. A validator's own stake is spread evenly over its pools (the remainder of the
 * division goes to its lowest chain id); a delegation adds to one pool. Power is the sum of the pools.
 */
export function genesisState(g: AppGenesis): AppState {
  const pools = new Map<string, Map<bigint, bigint>>()
  for (const v of g.validators) {
    const chains = [...new Set(v.pools.map((c) => BigInt(c)))].sort(cmp)
    const n = BigInt(chains.length)
    const share = n === 0n ? 0n : v.stake / n
    const rem = n === 0n ? 0n : v.stake % n
    pools.set(v.address.toLowerCase(), new Map(chains.map((c, i) => [c, share + (i === 0 ? rem : 0n)])))
  }
  for (const d of g.delegations) {
    const p = pools.get(d.validator.toLowerCase())
    if (p === undefined) continue
    const c = BigInt(d.chainId)
    p.set(c, (p.get(c) ?? 0n) + d.amount)
  }
  const validators = g.validators
    .map((v): ValidatorState => {
      const address = v.address.toLowerCase() as Address
      const p = pools.get(address)!
      return { address, peerId: v.peerId, power: sumPools(p), pools: p, jailed: false }
    })
    .sort((a, b) => cmp(a.address, b.address))
  const hash = genesisHash(g)
  return {
    networkId: g.networkId,
    genesisHash: hash,
    height: 0n,
    lastBlockHash: hash,
    lastBlockTime: g.genesisTime * 1000,
    validators,
    assignments: new Map(),
    done: new Map(),
    stakeMoves: new Map(),
    stakeNonces: new Map(),
    rollups: g.rollups,
    params: g.params,
  }
}

// ---------------------------------------------------------------------------------------------------
// Derived views.

/** The consensus validator set: validators not jailed with positive power, by address. */
export function activeValidators(state: AppState): Validator[] {
  return state.validators
    .filter((v) => !v.jailed && v.power > 0n)
    .map((v) => ({ id: v.address, power: v.power }))
}

/** Voting power by lowercase address of the active validators. */
export function votingPowers(state: AppState): Map<Address, bigint> {
  return new Map(activeValidators(state).map((v) => [v.id as Address, v.power]))
}

/** Which health reports count, from the network params. */
export function healthWindow(state: AppState): HealthWindow {
  return { freshnessMs: state.params.healthFreshnessMs, maxSkewMs: state.params.maxClockSkewSec * 1000 }
}

/** Block time in unix seconds (the unit of deadlines). */
export function blockTimeSec(timeMs: number): bigint {
  return BigInt(Math.floor(timeMs / 1000))
}

/** Pool members per rollup (active validators with stake there); `outstanding` counts `open`. */
function poolView(state: AppState, open: Iterable<AssignmentState>): PoolView {
  const count = new Map<string, number>()
  for (const a of open) {
    const k = `${a.chainId}/${a.executor}`
    count.set(k, (count.get(k) ?? 0) + 1)
  }
  const view = new Map<bigint, PoolMember[]>()
  for (const r of state.rollups) {
    const chainId = BigInt(r.chainId)
    const members: PoolMember[] = []
    for (const v of state.validators) {
      const stake = v.pools.get(chainId) ?? 0n
      if (v.jailed || stake <= 0n) continue
      members.push({ validator: v.address, stake, outstanding: count.get(`${chainId}/${v.address}`) ?? 0 })
    }
    view.set(chainId, members)
  }
  return view
}

function routeOf(a: AssignmentState): RouteIntent {
  return {
    id: a.intentId,
    user: a.user,
    destinationChainIds: a.destinationChainIds,
    outputAmount: a.outputAmount,
    outputToken: a.outputToken,
  }
}

/** min(block time + fillTimeoutSec, the intent's fillDeadline), unix seconds. */
export function assignmentDeadline(state: AppState, timeSec: bigint, fillDeadline: bigint): bigint {
  const byTimeout = timeSec + BigInt(state.params.fillTimeoutSec)
  return byTimeout < fillDeadline ? byTimeout : fillDeadline
}

/** What a block decides before its new assignments, derived the same way by proposer and validators. */
export interface BlockPlan {
  readonly view: HealthView
  readonly timeSec: bigint
  /** Open assignments (not filled in this block) whose intent's fill deadline passed, in id order. */
  readonly expired: readonly Hex[]
  /** Assignments this block must route again, in id order, at most MAX_BLOCK_REASSIGNMENTS. */
  readonly reroute: readonly { intentId: Hex; reason: RerouteReason }[]
  /** The router's pool view: active validators' stakes, outstanding = assignments that stay. */
  readonly pools: PoolView
}

/**
 * The plan of a block at `time` over `reports` (the block's health reports), once the intents of
 * `filled` are settled: which open assignments expire, which are re-routed (rollup down or missing from
 * the view, deadline passed, executor gone: rollups/router.ts `rerouteCandidates`), and the pool view.
 * Validators and routing weights are the pre-block state's: evidence in a block takes effect after it.
 */
export function planBlock(
  state: AppState,
  time: number,
  reports: readonly SignedHealthReport[],
  filled: ReadonlySet<string>,
): BlockPlan {
  const view = aggregateHealth(reports, time, votingPowers(state), state.rollups, healthWindow(state))
  const timeSec = blockTimeSec(time)
  const expired: Hex[] = []
  const live: AssignmentState[] = []
  for (const a of [...state.assignments.values()].sort((x, y) => cmp(x.intentId, y.intentId))) {
    if (filled.has(a.intentId)) continue
    if (a.fillDeadline < timeSec) expired.push(a.intentId)
    else live.push(a)
  }
  const reroute = rerouteCandidates(live, view, timeSec, poolView(state, [])).slice(
    0,
    MAX_BLOCK_REASSIGNMENTS,
  )
  const moving = new Set<string>(reroute.map((r) => r.intentId))
  return {
    view,
    timeSec,
    expired,
    reroute,
    pools: poolView(
      state,
      live.filter((a) => !moving.has(a.intentId)),
    ),
  }
}

/** A health report whose fields are in range and consistent (the checks gossip validation makes). */
function consistentReport(s: SignedHealthReport): boolean {
  const r = s.report
  return (
    findBadReportField(r) === undefined &&
    r.gasUsed <= r.gasLimit &&
    r.gasUsedRatioBps === gasRatioBps(r.gasUsed, r.gasLimit) &&
    typeof s.signature === 'string' &&
    /^0x[0-9a-f]{130}$/.test(s.signature)
  )
}

/** A new intent as the router sees it, or why it cannot be assigned in a block at `timeSec`. */
function acceptIntent(
  state: AppState,
  id: Hex,
  intent: SignedIntent,
  timeSec: bigint,
): { ok: true; route: RouteIntent; recipient: Address; fillDeadline: bigint } | { ok: false; why: string } {
  if (state.assignments.has(id)) return { ok: false, why: `intent ${id} is already assigned` }
  if (state.done.has(id)) return { ok: false, why: `intent ${id} is already filled or expired` }
  const order = intent.order
  let computed: Hex
  try {
    computed = intentId(order)
  } catch {
    return { ok: false, why: `intent ${id}: malformed order` }
  }
  if (computed !== id) return { ok: false, why: `intent ${id}: the order's id is ${computed}` }
  if (order.fillDeadline <= order.openDeadline)
    return { ok: false, why: `intent ${id}: fillDeadline <= openDeadline` }
  if (BigInt(order.fillDeadline) <= timeSec) return { ok: false, why: `intent ${id}: fill deadline passed` }
  if (order.orderDataType !== MURMUR_ORDER_TYPEHASH)
    return { ok: false, why: `intent ${id}: not a MurmurOrder` }
  let data: ReturnType<typeof decodeOrderData>
  try {
    data = decodeOrderData(order.orderData)
  } catch {
    return { ok: false, why: `intent ${id}: orderData does not decode` }
  }
  const known = new Set(state.rollups.map((r) => BigInt(r.chainId)))
  if (!data.destinationChainIds.every((c) => known.has(c)))
    return { ok: false, why: `intent ${id}: unknown chain` }
  return {
    ok: true,
    route: {
      id,
      user: order.user,
      destinationChainIds: data.destinationChainIds,
      outputAmount: data.outputAmount,
      outputToken: data.outputToken,
    },
    recipient: data.recipient,
    fillDeadline: BigInt(order.fillDeadline),
  }
}

/** Why evidence cannot go into a block at `height`, or undefined. Signatures are checked separately. */
function evidenceProblem(state: AppState, height: bigint, e: VoteEvidence): string | undefined {
  const { first: a, second: b } = e
  if (a.validator !== b.validator) return 'votes of different validators'
  if (a.kind !== b.kind || a.height !== b.height || a.round !== b.round) return 'votes for different steps'
  if (a.blockHash === b.blockHash) return 'votes for the same value'
  if (a.height >= height || a.height + EVIDENCE_MAX_AGE_BLOCKS < height)
    return `evidence of height ${a.height} is out of range`
  const v = state.validators.find((x) => x.address === a.validator)
  if (v === undefined || v.jailed || v.power <= 0n) return `${a.validator} is not an active validator`
  return undefined
}

/**
 * The staking ledger of the block at `height` before its own moves: the validators its evidence accuses
 * jailed (pools and loans halved), the loans due at `height` returned. Proposer, validators and `apply`
 * run the block's moves over it, in block order.
 */
function stakingBase(state: AppState, height: bigint, accused: Iterable<string>): StakeLedger {
  const ledger = new StakeLedger(state)
  for (const a of accused) ledger.jail(a as Address)
  ledger.expire(height)
  return ledger
}

/** The target of a move is congested in the block's health view (ARCHITECTURE.md: double rewards). */
function congested(view: HealthView, chainId: bigint): boolean {
  const h = view.get(chainId)
  return h !== undefined && h.gasUsedRatioBps >= STAKE_MOVE_CONGESTED_BPS
}

// ---------------------------------------------------------------------------------------------------
// Proposing.

/** An intent from the pool (an IntentRecord fits). */
export interface PendingIntent {
  readonly id: Hex
  readonly intent: SignedIntent
}

export interface ProposeOptions {
  /** This validator's address (lowercase). */
  readonly proposer: Address
  readonly round: number
  /** Equivocations seen; those that still apply go into the block. */
  readonly evidence?: readonly VoteEvidence[]
  /** Default MAX_BLOCK_ASSIGNMENTS. */
  readonly maxAssignments?: number
  /** Default MAX_BLOCK_FILLS. */
  readonly maxFills?: number
  /**
   * Pending stake moves whose signatures the caller verified (the staking service does on arrival); the
   * ones valid on the state go into the block, at most MAX_BLOCK_STAKE_MOVES.
   */
  readonly stakeMoves?: Iterable<SignedStakeMove>
}

/**
 * The proposer's block at height `state.height + 1`, time max(nowMs, parent time + 1):
 * - health reports: the fresh, consistent ones, one per (chain, validator), canonical order;
 * - fills of open assignments, by their assigned executor, one per intent (the caller passes fills it
 *   verified on its own RPC);
 * - assignments: `pending` in the given order (at most maxAssignments) that are valid and unassigned,
 *   routed together with the assignments to re-route by `routeIntents` over the block's health view;
 *   intents that find no route stay pending, re-routed ones without a route go back to pending;
 * - evidence that still applies;
 * - stake moves: `opts.stakeMoves` in (staker, nonce) order, each kept when valid on the state left by the
 *   evidence, the loans due and the moves kept before it (staking/moves.ts).
 * Pure and deterministic.
 */
export function proposeBlock(
  state: AppState,
  pending: readonly PendingIntent[],
  reports: Iterable<SignedHealthReport>,
  fills: Iterable<SignedFill>,
  nowMs: number,
  opts: ProposeOptions,
): Block {
  const time = Math.max(Math.floor(nowMs), state.lastBlockTime + 1)
  const height = state.height + 1n
  const timeSec = blockTimeSec(time)
  const powers = votingPowers(state)
  const healthReports = selectFreshReports(
    [...reports].filter(consistentReport),
    time,
    powers,
    state.rollups,
    healthWindow(state),
  ).slice(0, MAX_BLOCK_HEALTH_REPORTS)

  const chosen = new Map<Hex, BlockFill>()
  for (const { fill, signature } of fills) {
    if (findBadFillField(fill) !== undefined || chosen.has(fill.intentId)) continue
    const a = state.assignments.get(fill.intentId)
    if (a === undefined || a.chainId !== fill.chainId || a.executor !== fill.executor) continue
    chosen.set(fill.intentId, { ...fill, signature })
  }
  const blockFills = [...chosen.values()]
    .sort((x, y) => cmp(x.intentId, y.intentId))
    .slice(0, Math.min(opts.maxFills ?? MAX_BLOCK_FILLS, MAX_BLOCK_FILLS))

  const plan = planBlock(state, time, healthReports, new Set(blockFills.map((f) => f.intentId)))
  const maxAssignments = Math.min(opts.maxAssignments ?? MAX_BLOCK_ASSIGNMENTS, MAX_BLOCK_ASSIGNMENTS)
  const fresh = new Map<Hex, { intent: SignedIntent; route: RouteIntent; fillDeadline: bigint }>()
  for (const p of pending) {
    if (fresh.size >= maxAssignments) break
    if (fresh.has(p.id)) continue
    const r = acceptIntent(state, p.id, p.intent, timeSec)
    if (r.ok) fresh.set(p.id, { intent: p.intent, route: r.route, fillDeadline: r.fillDeadline })
  }
  const moving = new Map(plan.reroute.map((c) => [c.intentId, state.assignments.get(c.intentId)!]))
  const routed = routeIntents(
    [...[...fresh.values()].map((f) => f.route), ...[...moving.values()].map(routeOf)],
    plan.view,
    NO_PROFILES,
    plan.pools,
    ROUTE_PARAMS,
  )
  const assignments: BlockAssignment[] = []
  const intents: SignedIntent[] = []
  const reassignments: BlockAssignment[] = []
  for (const r of routed.assignments) {
    const executor = r.executor.toLowerCase() as Address
    const f = fresh.get(r.intentId)
    if (f !== undefined) {
      assignments.push({
        intentId: r.intentId,
        chainId: r.chainId,
        executor,
        deadline: assignmentDeadline(state, timeSec, f.fillDeadline),
      })
      intents.push(f.intent)
      continue
    }
    const m = moving.get(r.intentId)!
    reassignments.push({
      intentId: r.intentId,
      chainId: r.chainId,
      executor,
      deadline: assignmentDeadline(state, timeSec, m.fillDeadline),
    })
  }

  const evidence: VoteEvidence[] = []
  const accused = new Set<string>()
  for (const e of opts.evidence ?? []) {
    if (evidence.length >= MAX_BLOCK_EVIDENCE) break
    if (accused.has(e.first.validator) || evidenceProblem(state, height, e) !== undefined) continue
    if (activeValidators(state).length - accused.size <= 1) break // never jail the last validator
    accused.add(e.first.validator)
    evidence.push(e)
  }

  const ledger = stakingBase(state, height, accused)
  const stakeMoves: SignedStakeMove[] = []
  for (const s of sortStakeMoves(state.networkId, opts.stakeMoves ?? [])) {
    if (stakeMoves.length >= MAX_BLOCK_STAKE_MOVES) break
    const v = ledger.check(s)
    if (!v.ok) continue
    ledger.apply(v.id, s.move, height, false)
    stakeMoves.push(s)
  }

  return {
    height,
    round: opts.round,
    proposer: opts.proposer.toLowerCase() as Address,
    time,
    parentHash: state.lastBlockHash,
    assignments,
    intents,
    reassignments,
    fills: blockFills,
    stakeMoves,
    evidence,
    healthReports,
  }
}

// ---------------------------------------------------------------------------------------------------
// Validating.

/** Why a block is not valid(v). */
export type BlockRejectCode =
  | 'BAD_HEIGHT'
  | 'BAD_PARENT'
  | 'BAD_TIME'
  | 'CLOCK_SKEW'
  | 'BAD_PROPOSER'
  | 'DUPLICATE_INTENT'
  | 'BAD_INTENT'
  | 'ROUTE_MISMATCH'
  | 'BAD_FILL'
  | 'FILL_INVALID'
  | 'FILL_UNVERIFIED'
  | 'BAD_HEALTH_REPORT'
  | 'BAD_EVIDENCE'
  | 'BAD_STAKE_MOVE'

export type BlockVerdict =
  | { readonly ok: true }
  | { readonly ok: false; readonly code: BlockRejectCode; readonly message: string }

const OK: BlockVerdict = Object.freeze({ ok: true })

function bad(code: BlockRejectCode, message: string): BlockVerdict {
  return { ok: false, code, message }
}

/** What validateBlock needs besides the state and the block. */
export interface ValidateBlockContext {
  /** This validator's clock, unix milliseconds. */
  readonly nowMs: number
  /**
   * The fill's receipt on this validator's own RPC of `fill.chainId` (rollups/fill.ts `FillBlocks`).
   * Only 'valid' is accepted: 'invalid' makes the block FILL_INVALID, 'pending' and 'unknown' (block not
   * final yet, RPC unreachable) FILL_UNVERIFIED, so no fill counts on the proposer's word.
   */
  readonly verifyFill: (fill: SignedFill, expected: ExpectedOutput) => Promise<FillVerdict>
  /** True when the local pool holds (and so has verified) the intent: its signature is not checked again. */
  readonly isKnownIntent?: (id: Hex) => boolean
  readonly recover?: Recover
}

/**
 * The checks that need nothing but the state: height, parent hash, time after the parent's, proposer an
 * active validator. What a syncing node checks besides the certificate.
 */
export function checkBlockHeader(state: AppState, block: Block): BlockVerdict {
  if (block.height !== state.height + 1n)
    return bad('BAD_HEIGHT', `block ${block.height} on state ${state.height}`)
  if (block.parentHash !== state.lastBlockHash) return bad('BAD_PARENT', `parent ${block.parentHash}`)
  if (!(block.time > state.lastBlockTime))
    return bad('BAD_TIME', `time ${block.time} <= parent ${state.lastBlockTime}`)
  if (!votingPowers(state).has(block.proposer))
    return bad('BAD_PROPOSER', `${block.proposer} is not a validator`)
  return OK
}

function sameAssignment(a: BlockAssignment, b: BlockAssignment): boolean {
  return (
    a.intentId === b.intentId &&
    a.chainId === b.chainId &&
    a.executor === b.executor &&
    a.deadline === b.deadline
  )
}

/**
 * valid(v) (ARCHITECTURE.md, Consensus): the header; the time within the clock skew of `ctx.nowMs`; each
 * intent in at most one list; health reports fresh, consistent, from
 * validators, one per (chain, validator) in canonical order, and signed by their validator; every new
 * intent valid (signed by its user, a Murmur order, known chains, fill deadline ahead) and neither assigned
 * nor finished; assignments and reassignments exactly `routeIntents` over the block's health view (with
 * the same re-routing set and pool view as `planBlock`); fills of open assignments, by the assigned
 * executor, signed, and 'valid' by `ctx.verifyFill` (this validator's own check); evidence of active validators, well formed and
 * signed; stake moves in (staker, nonce) order, each valid on the state left by the evidence, the loans due
 * and the moves before it (so two moves of one staker must both be covered), and signed by its staker.
 * Returns the first failure.
 */
export async function validateBlock(
  state: AppState,
  block: Block,
  ctx: ValidateBlockContext,
): Promise<BlockVerdict> {
  const head = checkBlockHeader(state, block)
  if (!head.ok) return head
  const skewMs = state.params.maxClockSkewSec * 1000
  if (Math.abs(block.time - ctx.nowMs) > skewMs)
    return bad('CLOCK_SKEW', `time ${block.time}, local clock ${ctx.nowMs}`)
  if (block.intents.length !== block.assignments.length)
    return bad('BAD_INTENT', 'intents do not align with assignments')
  const timeSec = blockTimeSec(block.time)

  const ids = new Set<string>()
  for (const id of [
    ...block.assignments.map((a) => a.intentId),
    ...block.reassignments.map((a) => a.intentId),
    ...block.fills.map((f) => f.intentId),
  ]) {
    if (ids.has(id)) return bad('DUPLICATE_INTENT', `intent ${id} appears twice`)
    ids.add(id)
  }

  const powers = votingPowers(state)
  for (const r of block.healthReports) {
    if (!consistentReport(r))
      return bad('BAD_HEALTH_REPORT', `report of ${r.report.validator} is inconsistent`)
  }
  const canonical = selectFreshReports(
    block.healthReports,
    block.time,
    powers,
    state.rollups,
    healthWindow(state),
  )
  if (
    canonical.length !== block.healthReports.length ||
    canonical.some((r, i) => r !== block.healthReports[i])
  ) {
    return bad(
      'BAD_HEALTH_REPORT',
      'health reports are not fresh validator reports, one per chain and validator, in order',
    )
  }

  let last = ''
  for (const f of block.fills) {
    if (f.intentId <= last) return bad('BAD_FILL', 'fills not in intent id order')
    last = f.intentId
    if (findBadFillField(f) !== undefined) return bad('BAD_FILL', `fill of ${f.intentId} is malformed`)
    const a = state.assignments.get(f.intentId)
    if (a === undefined) return bad('BAD_FILL', `fill of ${f.intentId}: no open assignment`)
    if (a.chainId !== f.chainId)
      return bad('BAD_FILL', `fill of ${f.intentId} on ${f.chainId}, assigned ${a.chainId}`)
    if (a.executor !== f.executor)
      return bad('BAD_FILL', `fill of ${f.intentId} by ${f.executor}, assigned ${a.executor}`)
  }

  const accused = new Set<string>()
  for (const e of block.evidence) {
    const problem = evidenceProblem(state, block.height, e)
    if (problem !== undefined) return bad('BAD_EVIDENCE', problem)
    if (accused.has(e.first.validator)) return bad('BAD_EVIDENCE', `${e.first.validator} accused twice`)
    accused.add(e.first.validator)
  }
  if (accused.size > 0 && accused.size >= powers.size)
    return bad('BAD_EVIDENCE', 'evidence would jail every validator')

  if (block.stakeMoves.length > MAX_BLOCK_STAKE_MOVES)
    return bad('BAD_STAKE_MOVE', `more than ${MAX_BLOCK_STAKE_MOVES} stake moves`)
  const ledger = stakingBase(state, block.height, accused)
  const moveIds: Hex[] = []
  for (const [i, s] of block.stakeMoves.entries()) {
    if (i > 0 && !stakeMoveOrdered(block.stakeMoves[i - 1]!.move, s.move))
      return bad('BAD_STAKE_MOVE', 'stake moves not in (staker, nonce) order')
    const v = ledger.check(s)
    if (!v.ok) return bad('BAD_STAKE_MOVE', `stake move ${i} of ${s.move.staker}: ${v.code}: ${v.message}`)
    ledger.apply(v.id, s.move, block.height, false)
    moveIds.push(v.id)
  }

  const fresh: RouteIntent[] = []
  for (const [i, a] of block.assignments.entries()) {
    const r = acceptIntent(state, a.intentId, block.intents[i]!, timeSec)
    if (!r.ok) return bad('BAD_INTENT', r.why)
    fresh.push(r.route)
  }

  const plan = planBlock(state, block.time, block.healthReports, new Set(block.fills.map((f) => f.intentId)))
  const moving = plan.reroute.map((c) => state.assignments.get(c.intentId)!)
  const movingIds = new Set<string>(moving.map((m) => m.intentId))
  const routed = routeIntents(
    [...fresh, ...moving.map(routeOf)],
    plan.view,
    NO_PROFILES,
    plan.pools,
    ROUTE_PARAMS,
  )
  const expectedNew: BlockAssignment[] = []
  const expectedMoved: BlockAssignment[] = []
  const freshDeadline = new Map(
    block.intents.map((it, i) => [block.assignments[i]!.intentId, BigInt(it.order.fillDeadline)]),
  )
  for (const r of routed.assignments) {
    const executor = r.executor.toLowerCase() as Address
    if (movingIds.has(r.intentId)) {
      const m = state.assignments.get(r.intentId)!
      expectedMoved.push({
        intentId: r.intentId,
        chainId: r.chainId,
        executor,
        deadline: assignmentDeadline(state, timeSec, m.fillDeadline),
      })
    } else {
      const fd = freshDeadline.get(r.intentId)!
      expectedNew.push({
        intentId: r.intentId,
        chainId: r.chainId,
        executor,
        deadline: assignmentDeadline(state, timeSec, fd),
      })
    }
  }
  const unroutedNew = routed.unroutable.find((u) => !movingIds.has(u.intentId))
  if (unroutedNew !== undefined)
    return bad('ROUTE_MISMATCH', `intent ${unroutedNew.intentId} has no route (${unroutedNew.reason})`)
  if (
    expectedNew.length !== block.assignments.length ||
    expectedNew.some((e, i) => !sameAssignment(e, block.assignments[i]!))
  ) {
    return bad('ROUTE_MISMATCH', 'assignments differ from the router output over the block health view')
  }
  if (
    expectedMoved.length !== block.reassignments.length ||
    expectedMoved.some((e, i) => !sameAssignment(e, block.reassignments[i]!))
  ) {
    return bad('ROUTE_MISMATCH', 'reassignments differ from the router output over the block health view')
  }

  // Signatures and receipts last: the expensive part. All in parallel; the first failure in block order wins.
  const recover = ctx.recover ?? recoverAddress
  const signedBy = async (digest: Hex, signature: Hex, who: string): Promise<boolean> => {
    try {
      return (await recover(digest, signature)) === who
    } catch {
      return false
    }
  }
  const checks: Promise<BlockVerdict>[] = []
  for (const s of block.healthReports) {
    checks.push(
      signedBy(healthReportDigest(state.networkId, s.report), s.signature, s.report.validator).then((ok) =>
        ok
          ? OK
          : bad(
              'BAD_HEALTH_REPORT',
              `report of ${s.report.validator} on ${s.report.chainId} is not signed by it`,
            ),
      ),
    )
  }
  for (const [i, a] of block.assignments.entries()) {
    if (ctx.isKnownIntent?.(a.intentId)) continue
    const it = block.intents[i]!
    checks.push(
      signedBy(a.intentId, it.signature, it.order.user).then((ok) =>
        ok ? OK : bad('BAD_INTENT', `intent ${a.intentId} is not signed by its user`),
      ),
    )
  }
  for (const f of block.fills) {
    const { signature, ...fill } = f
    const a = state.assignments.get(f.intentId)!
    checks.push(
      signedBy(fillDigest(state.networkId, fill), signature, f.executor).then((ok) =>
        ok ? OK : bad('BAD_FILL', `fill of ${f.intentId} is not signed by ${f.executor}`),
      ),
    )
    const expected = expectedOutputOf(a)
    checks.push(
      ctx
        .verifyFill({ fill, signature }, expected)
        .catch((): FillVerdict => 'unknown')
        .then((v) =>
          v === 'valid'
            ? OK
            : v === 'invalid'
              ? bad('FILL_INVALID', `fill of ${f.intentId}: the rollup contradicts it`)
              : bad('FILL_UNVERIFIED', `fill of ${f.intentId}: not verified here (${v})`),
        ),
    )
  }
  for (const [i, s] of block.stakeMoves.entries()) {
    checks.push(
      signedBy(moveIds[i]!, s.signature, s.move.staker).then((ok) =>
        ok ? OK : bad('BAD_STAKE_MOVE', `stake move ${moveIds[i]} is not signed by ${s.move.staker}`),
      ),
    )
  }
  for (const e of block.evidence) {
    checks.push(
      Promise.all([
        verifyVoteSignature(state.networkId, e.first, recover),
        verifyVoteSignature(state.networkId, e.second, recover),
      ]).then(([a, b]) =>
        a && b ? OK : bad('BAD_EVIDENCE', `evidence against ${e.first.validator} is not signed by it`),
      ),
    )
  }
  for (const v of await Promise.all(checks)) if (!v.ok) return v
  return OK
}

// ---------------------------------------------------------------------------------------------------
// Applying.

export interface ApplyResult {
  readonly state: AppState
  /** For IntentPool.transitionMany, in order; at most one per intent. */
  readonly intentTransitions: TransitionRequest[]
}

const REROUTE_REASON: { readonly [K in RerouteReason]: string } = {
  ROLLUP_DOWN: 'rollup-down',
  DEADLINE_PASSED: 'fill-timeout',
  EXECUTOR_GONE: 'executor-gone',
}

function poolAssignment(a: AssignmentState): PoolAssignment {
  return { chainId: a.chainId, executor: a.executor, height: a.height, deadline: Number(a.deadline) }
}

/**
 * The state after `block` (which validateBlock, or a commit certificate, vouches for) and the intent pool
 * transitions it implies, in this order: fills settle their assignments (`assigned -> filled`); open
 * assignments whose intent's fill deadline passed expire (`-> expired`); the plan's re-routing set moves
 * (`assigned -> assigned`) or, without a route in the block, goes back (`assigned -> pending`); new
 * assignments (`pending -> assigned`); evidence jails each accused validator and halves each of its pools
 * and loans (floor, bigint); stake loans due at this height return, then the block's stake moves apply
 * (staking/moves.ts); finished intents are forgotten once their fill deadline passed. Pure: never mutates
 * `state`, no I/O. Items a valid block cannot hold (a fill without assignment, ...) are skipped, so the
 * result is defined for every block. `hash` is the block's hash when the caller has it.
 */
export function apply(state: AppState, block: Block, hash?: Hex): ApplyResult {
  const height = block.height
  const transitions: TransitionRequest[] = []
  const assignments = new Map(state.assignments)
  const done = new Map(state.done)

  const filled = new Set<string>()
  for (const f of block.fills) {
    const a = assignments.get(f.intentId)
    if (a === undefined || a.chainId !== f.chainId || a.executor !== f.executor) continue
    assignments.delete(f.intentId)
    done.set(f.intentId, a.fillDeadline)
    filled.add(f.intentId)
    transitions.push({
      id: f.intentId,
      to: 'filled',
      fill: { chainId: f.chainId, txHash: f.txHash, blockNumber: f.blockNumber },
      assignment: poolAssignment(a),
      height,
    })
  }

  const plan = planBlock(state, block.time, block.healthReports, filled)
  for (const id of plan.expired) {
    const a = assignments.get(id)!
    assignments.delete(id)
    done.set(id, a.fillDeadline)
    transitions.push({ id, to: 'expired', height, reason: 'deadline' })
  }
  const moved = new Map(block.reassignments.map((r) => [r.intentId, r]))
  for (const c of plan.reroute) {
    const a = assignments.get(c.intentId)!
    const r = moved.get(c.intentId)
    if (r === undefined) {
      assignments.delete(c.intentId)
      transitions.push({ id: c.intentId, to: 'pending', height, reason: REROUTE_REASON[c.reason] })
      continue
    }
    const next: AssignmentState = {
      ...a,
      chainId: r.chainId,
      executor: r.executor,
      deadline: r.deadline,
      height,
    }
    assignments.set(c.intentId, next)
    transitions.push({
      id: c.intentId,
      to: 'assigned',
      assignment: poolAssignment(next),
      height,
      reason: REROUTE_REASON[c.reason],
    })
  }

  for (const [i, a] of block.assignments.entries()) {
    const intent = block.intents[i]
    if (intent === undefined || assignments.has(a.intentId) || done.has(a.intentId)) continue
    let data: ReturnType<typeof decodeOrderData>
    try {
      data = decodeOrderData(intent.order.orderData)
    } catch {
      continue
    }
    const next: AssignmentState = {
      intentId: a.intentId,
      chainId: a.chainId,
      executor: a.executor,
      deadline: a.deadline,
      height,
      user: intent.order.user,
      destinationChainIds: data.destinationChainIds,
      outputToken: data.outputToken,
      outputAmount: data.outputAmount,
      recipient: data.recipient,
      fillDeadline: BigInt(intent.order.fillDeadline),
    }
    assignments.set(a.intentId, next)
    transitions.push({ id: a.intentId, to: 'assigned', assignment: poolAssignment(next), height })
  }

  const ledger = stakingBase(
    state,
    height,
    block.evidence.map((e) => e.first.validator),
  )
  for (const s of block.stakeMoves) {
    const v = ledger.check(s)
    if (v.ok) ledger.apply(v.id, s.move, height, congested(plan.view, s.move.toChainId))
  }
  const changed = ledger.changes()
  const validators =
    changed.size === 0
      ? state.validators
      : state.validators.map((v): ValidatorState => {
          const c = changed.get(v.address)
          if (c === undefined) return v
          const pools = new Map(c.pools)
          return { ...v, pools, power: sumPools(pools), jailed: c.jailed }
        })

  const timeSec = plan.timeSec
  for (const [id, fillDeadline] of [...done]) if (fillDeadline < timeSec) done.delete(id)

  return {
    state: {
      ...state,
      height,
      lastBlockHash: hash ?? blockHash(block),
      lastBlockTime: block.time,
      validators,
      assignments,
      done,
      stakeMoves: ledger.moves,
      stakeNonces: ledger.nonces,
    },
    intentTransitions: transitions,
  }
}

// ---------------------------------------------------------------------------------------------------
// Storage.

const META_KEY = 'meta'
const ASSIGNMENT_PREFIX = 'a/'
const DONE_PREFIX = 'd/'
const MOVE_PREFIX = 'm/'
const LOAD_PAGE = 10_000

interface MetaJson {
  version: number
  networkId: string
  genesisHash: string
  height: string
  lastBlockHash: string
  lastBlockTime: number
  validators: Array<{ address: string; peerId: string; pools: Record<string, string>; jailed: boolean }>
  /** Staker -> highest used nonce (decimal). Absent in version 1. */
  stakeNonces?: Record<string, string>
}

interface StakeMoveJson {
  staker: string
  fromChainId: string
  toChainId: string
  amount: string
  height: string
  untilHeight: string
  targetCongested: boolean
}

interface AssignmentJson {
  chainId: string
  executor: string
  deadline: string
  height: string
  user: string
  destinationChainIds: string[]
  outputToken: string
  outputAmount: string
  recipient: string
  fillDeadline: string
}

function metaJson(s: AppState): MetaJson {
  return {
    version: APP_STATE_VERSION,
    networkId: s.networkId,
    genesisHash: s.genesisHash,
    height: s.height.toString(),
    lastBlockHash: s.lastBlockHash,
    lastBlockTime: s.lastBlockTime,
    validators: s.validators.map((v) => ({
      address: v.address,
      peerId: v.peerId,
      pools: Object.fromEntries([...v.pools].map(([c, stake]) => [c.toString(), stake.toString()])),
      jailed: v.jailed,
    })),
    stakeNonces: Object.fromEntries(
      [...s.stakeNonces].sort(([a], [b]) => cmp(a, b)).map(([a, n]) => [a, n.toString()]),
    ),
  }
}

function moveToJson(m: StakeMoveRecord): StakeMoveJson {
  // Stored under its id: the record without it.
  const { id: _, ...rest } = stakeMoveRecordToJson(m)
  return rest
}

function moveFromJson(id: Hex, j: StakeMoveJson): StakeMoveRecord {
  if (typeof j.targetCongested !== 'boolean') throw new Error(`stake move ${id}: targetCongested`)
  return {
    id,
    staker: j.staker as Address,
    fromChainId: BigInt(j.fromChainId),
    toChainId: BigInt(j.toChainId),
    amount: BigInt(j.amount),
    height: BigInt(j.height),
    untilHeight: BigInt(j.untilHeight),
    targetCongested: j.targetCongested,
  }
}

function assignmentToJson(a: AssignmentState): AssignmentJson {
  return {
    chainId: a.chainId.toString(),
    executor: a.executor,
    deadline: a.deadline.toString(),
    height: a.height.toString(),
    user: a.user,
    destinationChainIds: a.destinationChainIds.map(String),
    outputToken: a.outputToken,
    outputAmount: a.outputAmount.toString(),
    recipient: a.recipient,
    fillDeadline: a.fillDeadline.toString(),
  }
}

function assignmentFromJson(id: Hex, j: AssignmentJson): AssignmentState {
  return {
    intentId: id,
    chainId: BigInt(j.chainId),
    executor: j.executor as Address,
    deadline: BigInt(j.deadline),
    height: BigInt(j.height),
    user: j.user as Address,
    destinationChainIds: j.destinationChainIds.map((c) => BigInt(c)),
    outputToken: j.outputToken as Address,
    outputAmount: BigInt(j.outputAmount),
    recipient: j.recipient as Address,
    fillDeadline: BigInt(j.fillDeadline),
  }
}

/**
 * The batch ops that turn the stored `prev` into `next`: the meta record, and only the assignments,
 * finished intents and stake moves that changed (unchanged entries are the same objects, as `apply`
 * shares them).
 */
export function appStateOps(prev: AppState | undefined, next: AppState): BatchOp[] {
  const ops: BatchOp[] = [{ type: 'put', sublevel: 'app', key: META_KEY, value: metaJson(next) }]
  const prevAssignments = prev?.assignments ?? new Map<Hex, AssignmentState>()
  const prevDone = prev?.done ?? new Map<Hex, bigint>()
  for (const [id, a] of next.assignments) {
    if (prevAssignments.get(id) !== a)
      ops.push({ type: 'put', sublevel: 'app', key: ASSIGNMENT_PREFIX + id, value: assignmentToJson(a) })
  }
  for (const id of prevAssignments.keys()) {
    if (!next.assignments.has(id)) ops.push({ type: 'del', sublevel: 'app', key: ASSIGNMENT_PREFIX + id })
  }
  for (const [id, d] of next.done) {
    if (prevDone.get(id) !== d)
      ops.push({ type: 'put', sublevel: 'app', key: DONE_PREFIX + id, value: d.toString() })
  }
  for (const id of prevDone.keys()) {
    if (!next.done.has(id)) ops.push({ type: 'del', sublevel: 'app', key: DONE_PREFIX + id })
  }
  const prevMoves = prev?.stakeMoves ?? new Map<Hex, StakeMoveRecord>()
  if (prevMoves !== next.stakeMoves) {
    for (const [id, m] of next.stakeMoves) {
      if (prevMoves.get(id) !== m)
        ops.push({ type: 'put', sublevel: 'app', key: MOVE_PREFIX + id, value: moveToJson(m) })
    }
    for (const id of prevMoves.keys()) {
      if (!next.stakeMoves.has(id)) ops.push({ type: 'del', sublevel: 'app', key: MOVE_PREFIX + id })
    }
  }
  return ops
}

async function scan(
  store: Store,
  prefix: string,
  each: (key: string, value: unknown) => void,
): Promise<void> {
  let gte = prefix
  const lt = prefixEnd(prefix)
  for (;;) {
    const rows = await store.range<unknown>('app', { gte, lt, limit: LOAD_PAGE })
    for (const [k, v] of rows) each(k, v)
    if (rows.length < LOAD_PAGE) return
    gte = `${rows[rows.length - 1]![0]}\u0000`
  }
}

/**
 * The stored state, or the genesis state when nothing is stored. Throws StorageError CORRUPT when the
 * store belongs to another network or genesis, or does not parse.
 */
export async function loadAppState(store: Store, genesis: AppGenesis): Promise<AppState> {
  const base = genesisState(genesis)
  const meta = await store.get<MetaJson>('app', META_KEY)
  if (meta === undefined) return base
  if (meta.version !== APP_STATE_VERSION && meta.version !== 1)
    throw new StorageError('CORRUPT', `app state version ${meta.version}`)
  if (meta.networkId !== base.networkId || meta.genesisHash !== base.genesisHash) {
    throw new StorageError(
      'CORRUPT',
      `app state of network ${meta.networkId} (${meta.genesisHash}), not of this genesis`,
    )
  }
  try {
    const assignments = new Map<Hex, AssignmentState>()
    await scan(store, ASSIGNMENT_PREFIX, (k, v) => {
      const id = k.slice(ASSIGNMENT_PREFIX.length) as Hex
      assignments.set(id, assignmentFromJson(id, v as AssignmentJson))
    })
    const done = new Map<Hex, bigint>()
    await scan(store, DONE_PREFIX, (k, v) => {
      done.set(k.slice(DONE_PREFIX.length) as Hex, BigInt(v as string))
    })
    const stakeMoves = new Map<Hex, StakeMoveRecord>()
    await scan(store, MOVE_PREFIX, (k, v) => {
      const id = k.slice(MOVE_PREFIX.length) as Hex
      stakeMoves.set(id, moveFromJson(id, v as StakeMoveJson))
    })
    const stakeNonces = new Map(
      Object.entries(meta.stakeNonces ?? {}).map(([a, n]) => [a as Address, BigInt(n)] as const),
    )
    const validators = meta.validators
      .map((v): ValidatorState => {
        const pools = new Map(Object.entries(v.pools).map(([c, s]) => [BigInt(c), BigInt(s)] as const))
        return {
          address: v.address as Address,
          peerId: v.peerId,
          power: sumPools(pools),
          pools,
          jailed: v.jailed,
        }
      })
      .sort((a, b) => cmp(a.address, b.address))
    return {
      ...base,
      height: BigInt(meta.height),
      lastBlockHash: meta.lastBlockHash as Hex,
      lastBlockTime: meta.lastBlockTime,
      validators,
      assignments,
      done,
      stakeMoves,
      stakeNonces,
    }
  } catch (err) {
    throw new StorageError('CORRUPT', `app state does not parse: ${(err as Error).message}`, { cause: err })
  }
}

/** The body of `GET /v1/validators` (INTERFACES.md). */
export function validatorsToJson(state: AppState) {
  return state.validators.map((v) => ({
    address: v.address,
    peerId: v.peerId,
    power: v.power.toString(),
    pools: Object.fromEntries(
      [...v.pools].sort(([a], [b]) => cmp(a, b)).map(([c, s]) => [c.toString(), s.toString()]),
    ),
    jailed: v.jailed,
  }))
}
