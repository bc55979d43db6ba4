/**
 * Derived views of the state and the plan of a block. The proposer (propose.ts), every validator (validate.ts)
 * and `apply` (apply.ts) share `planBlock`, so they derive the same re-routing set, pool view and health view
 * from (state, block): assignments must equal `routeIntents` over the block's own health reports exactly. Map
 * iteration order is never relied on (a state loaded from LevelDB iterates in key order, one built by `apply`
 * in insertion order): everything decided is sorted first.
 */
import type { Address, Hex } from 'viem'
import { decodeOrderData, intentId, MURMUR_ORDER_TYPEHASH, type SignedIntent } from '../codec/intent.ts'
import { type CommitCertificate, MAX_BLOCK_REASSIGNMENTS, type VoteEvidence } from '../consensus/block.ts'
import type { Validator } from '../consensus/types.ts'
import type { HealthReport } from '../rollups/health-report.ts'
import { aggregateReports, weightedMedian } from '../rollups/health-view.ts'
import { decodeExtension, observationReport, type VoteExtension } from '../rollups/observation.ts'
import {
  DEFAULT_ROUTE_PARAMS,
  type HealthView,
  type PoolMember,
  type PoolView,
  type RerouteReason,
  type RouteIntent,
  type RouteParams,
  type RouteProfile,
  rerouteCandidates,
} from '../rollups/router.ts'
import { StakeLedger } from '../staking/ledger.ts'
import { STAKE_MOVE_CONGESTED_BPS } from '../staking/moves.ts'
import { livenessAfter } from './liveness.ts'
import { type SurgeState, surgesAfter, surgingLevels } from './surge.ts'
import {
  type AppState,
  type AssignmentState,
  cmp,
  EVIDENCE_MAX_AGE_BLOCKS,
  type MissedWindow,
} from './types.ts'

/** No personal chain profiles yet (identity issue): the router sees none. */
export const NO_PROFILES: ReadonlyMap<string, RouteProfile> = new Map()
export const ROUTE_PARAMS = DEFAULT_ROUTE_PARAMS

const routeParams = new WeakMap<readonly bigint[], RouteParams>()

/**
 * The route parameters of blocks built on `state`: ROUTE_PARAMS with its alarmed pools (cached per list),
 * and the block's surging rollups (its plan's `surging`) when there are any.
 */
export function routeParamsOf(
  state: Pick<AppState, 'alarms'>,
  surging: ReadonlyMap<bigint, bigint> = NO_SURGES,
): RouteParams {
  let p = ROUTE_PARAMS
  if (state.alarms.length > 0) {
    p = routeParams.get(state.alarms) ?? { ...ROUTE_PARAMS, alarmed: new Set(state.alarms) }
    routeParams.set(state.alarms, p)
  }
  return surging.size === 0 ? p : { ...p, surging }
}

const NO_SURGES: ReadonlyMap<bigint, bigint> = new Map()

/**
 * The consensus validator set that decides block `state.height + 1`, by address: the epoch's set
 * (epoch.ts), jailed members included (they are skipped as proposers: `skippedValidators`).
 */
export function activeValidators(state: AppState): Validator[] {
  return [...state.consensusSet].sort(([a], [b]) => cmp(a, b)).map(([id, power]) => ({ id, power }))
}

/** Voting power by lowercase address of the consensus set. */
export function votingPowers(state: AppState): Map<Address, bigint> {
  return new Map(state.consensusSet)
}

/** Block time in unix seconds (the unit of deadlines). */
export function blockTimeSec(timeMs: number): bigint {
  return BigInt(Math.floor(timeMs / 1000))
}

/**
 * Pool members per rollup (members of the consensus set with stake there; jailed and offline ones left
 * out: they get no new work); `outstanding` counts `open`. With `balances` (commitBalances), a member that
 * reported balances gets an inventory per rollup: each reported balance there less the outputs of its
 * `open` assignments in that token (a fill mined but not yet committed counts twice: the view errs on
 * the side of never assigning what the executor cannot pay).
 */
export function poolView(
  state: AppState,
  open: Iterable<AssignmentState>,
  offline: ReadonlySet<string> = NO_ONE,
  balances: ReadonlyMap<Address, ReadonlyMap<string, bigint>> = NO_BALANCES,
): PoolView {
  const count = new Map<string, number>()
  const owed = new Map<string, bigint>()
  for (const a of open) {
    const k = `${a.chainId}/${a.executor}`
    count.set(k, (count.get(k) ?? 0) + 1)
    const o = `${a.executor}/${a.chainId}/${a.outputToken.toLowerCase()}`
    owed.set(o, (owed.get(o) ?? 0n) + a.outputAmount)
  }
  const view = new Map<bigint, PoolMember[]>()
  for (const r of state.rollups) {
    const chainId = BigInt(r.chainId)
    const members: PoolMember[] = []
    for (const v of state.validators) {
      const stake = v.pools.get(chainId) ?? 0n
      if (v.jailed || stake <= 0n || offline.has(v.address) || !state.consensusSet.has(v.address)) continue
      const member: PoolMember = {
        validator: v.address,
        stake,
        outstanding: count.get(`${chainId}/${v.address}`) ?? 0,
      }
      const reported = balances.get(v.address)
      if (reported !== undefined) {
        const inventory = new Map<string, bigint>()
        const prefix = `${chainId}/`
        for (const [k, amount] of reported) {
          if (!k.startsWith(prefix)) continue
          const token = k.slice(prefix.length)
          const left = amount - (owed.get(`${v.address}/${k}`) ?? 0n)
          inventory.set(token, left > 0n ? left : 0n)
        }
        member.inventory = inventory
      }
      members.push(member)
    }
    view.set(chainId, members)
  }
  return view
}

export function routeOf(a: AssignmentState): RouteIntent {
  return {
    id: a.intentId,
    user: a.user,
    destinationChainIds: a.destinationChainIds,
    outputAmount: a.outputAmount,
    outputToken: a.outputToken,
    avoidExecutors: a.avoid,
  }
}

/**
 * How an assignment the block must move is routed again. Taken from an executor that is offline, gone
 * or late while its rollup is up, the first executor may still have its fill in flight: on a rollup
 * with settlement the intent stays on that rollup, whose settler takes one fill of an order
 * (`AlreadyFilled`), so the first fill to land is the only one, and `fillSettles` repays whoever made
 * it. Routed to another rollup, both could land (the crash soak saw intents filled on two rollups when
 * an executor was killed with its fill in flight). Only a rollup that is down lets the intent move to
 * another one; so does a rollup without settlement (nothing on chain stops a second fill there anyway).
 */
export function rerouteOf(
  state: Pick<AppState, 'rollups'>,
  a: AssignmentState,
  reason: string,
  settled: ReadonlySet<bigint> = settlementOrigins(state),
): RouteIntent {
  const route = { ...routeOf(a), avoidExecutors: avoidAfter(a, reason) }
  if (reason === 'ROLLUP_DOWN' || !settled.has(a.chainId)) return route
  return { ...route, destinationChainIds: [a.chainId] }
}

/**
 * The executors a moved assignment avoids: those it avoided, and the one it is taken from unless its
 * rollup is down. Offline, gone or late, that executor may have filled all the same (its announcement
 * lost, or made after a restart): the router does not give the intent back to it, and `fillSettles`
 * lets its fill, relayed by the next assignee or announced by itself, settle the assignment. Before,
 * only an offline executor was remembered, and a late one's fill that was never announced could settle
 * nothing: the intent was re-assigned at every deadline, every new fill reverting `AlreadyFilled`.
 */
export function avoidAfter(a: AssignmentState, reason: string): readonly Address[] {
  if (reason === 'ROLLUP_DOWN' || a.avoid.includes(a.executor)) return a.avoid
  return [...a.avoid, a.executor]
}

const NO_ONE: ReadonlySet<string> = new Set()
const NO_BALANCES: ReadonlyMap<Address, ReadonlyMap<string, bigint>> = new Map()

/** `signedAt` once the commit `lastCommit` (carried by the next block) is counted. */
export function signedAtAfter(
  state: AppState,
  lastCommit: CommitCertificate | null,
): ReadonlyMap<Address, bigint> {
  if (lastCommit === null || lastCommit.precommits.length === 0) return state.signedAt
  const next = new Map(state.signedAt)
  for (const p of lastCommit.precommits) next.set(p.validator, lastCommit.height)
  return next
}

/** True when none of the last `offlineAfterBlocks` commits carried by blocks up to `height` holds its precommit. */
export function isOffline(
  state: AppState,
  address: Address,
  height: bigint,
  signedAt: ReadonlyMap<Address, bigint> = state.signedAt,
): boolean {
  return (signedAt.get(address) ?? 0n) < height - BigInt(state.params.offlineAfterBlocks)
}

/**
 * True when `lastCommit` (carried by block `state.height + 1`) lacks the precommit of a member of the
 * consensus set that is neither jailed nor tombstoned nor offline yet: a step towards finding it offline.
 * Such a block is worth proposing before the empty-block interval, so that a dead validator's proposer
 * turns and assignments move after `offlineAfterBlocks` back-to-back blocks, not after that many idle
 * intervals. Once it is offline the network keeps its normal pace: racing on would fill its
 * missed-blocks window in seconds and jail a validator that is only restarting (docs/decisions.md,
 * "Offline is fast, jailing is slow").
 */
export function missesAValidator(state: AppState, lastCommit: CommitCertificate | null): boolean {
  if (lastCommit === null) return false
  const signed = new Set<string>(lastCommit.precommits.map((p) => p.validator))
  const out = new Set(state.validators.filter((v) => v.jailed || v.tombstoned).map((v) => v.address))
  for (const address of state.consensusSet.keys()) {
    if (signed.has(address) || out.has(address)) continue
    if (!isOffline(state, address, state.height)) return true
  }
  return false
}

/**
 * Members of the consensus set, not jailed, offline after block `height`: none of the last
 * `offlineAfterBlocks` commits that blocks up to `height` carried (heights `height - 1` down to
 * `height - offlineAfterBlocks`) holds their precommit. At the start of the chain nobody is offline yet.
 */
export function offlineValidators(
  state: AppState,
  height: bigint,
  signedAt: ReadonlyMap<Address, bigint> = state.signedAt,
): Set<Address> {
  const out = new Set<Address>()
  const jailed = new Set(state.validators.filter((v) => v.jailed).map((v) => v.address))
  for (const address of state.consensusSet.keys()) {
    if (jailed.has(address)) continue
    if (isOffline(state, address, height, signedAt)) out.add(address)
  }
  return out
}

/**
 * Members of the consensus set skipped as proposers of block `state.height + 1` (`AppInfo.offline`): the
 * offline ones and the jailed ones (they keep voting until the epoch ends), in address order.
 */
export function skippedValidators(state: AppState): Address[] {
  const out = offlineValidators(state, state.height)
  for (const v of state.validators) if (v.jailed && state.consensusSet.has(v.address)) out.add(v.address)
  return [...out].sort(cmp)
}

/**
 * The health view a block routes over: the stake-weighted median of the rollup observations the vote
 * extensions of its last commit carry (weights: the powers that decided the previous block). A rollup is
 * down when observations carrying more than 1/3 of that power say so, or nobody observed it. Height 1 has
 * no last commit: every rollup is down, nothing is routed.
 */
export function commitView(state: AppState, lastCommit: CommitCertificate | null): HealthView {
  const reports: HealthReport[] = []
  for (const p of lastCommit?.precommits ?? []) {
    const e = extensionOf(p.extension)
    for (const o of e?.observations ?? []) reports.push(observationReport(p.validator, p.timestampMs, o))
  }
  return aggregateReports(reports, state.commitPowers, state.rollups)
}

/** Extensions remembered by {@link extensionOf}: a few heights' worth of precommits. */
const EXTENSION_CACHE_SIZE = 256
const extensions = new Map<string, VoteExtension | undefined>()

/**
 * A decoded vote extension; undefined for one that does not decode (validateBlock refuses such a commit).
 * Remembered by content: every extension of a commit is decoded on arrival (verifyVoteExtension), then
 * again by validateBlock and, twice per plan, by commitView and commitBalances, and the envelope's canonical
 * check re-encodes it several times. Decoding is a pure function of the bytes, so the cached value is the
 * one a decode would give (callers never mutate it: VoteExtension is readonly).
 */
export function extensionOf(bytes: Uint8Array): VoteExtension | undefined {
  if (bytes.length === 0) return NO_EXTENSION
  const key = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')
  if (extensions.has(key)) return extensions.get(key)
  let e: VoteExtension | undefined
  try {
    e = decodeExtension(bytes)
  } catch {
    e = undefined
  }
  // Insertion order is age: the oldest goes first.
  if (extensions.size >= EXTENSION_CACHE_SIZE) extensions.delete(extensions.keys().next().value!)
  extensions.set(key, e)
  return e
}

const NO_EXTENSION: VoteExtension = Object.freeze({
  observations: Object.freeze([]),
  balances: Object.freeze([]),
})

/**
 * What each executor reported it holds, from the vote extensions of `lastCommit`: by validator, then
 * `chainId/token` (lowercase). A validator that reported no balances is absent (not filtered by them).
 */
export function commitBalances(
  lastCommit: CommitCertificate | null,
): ReadonlyMap<Address, ReadonlyMap<string, bigint>> {
  const out = new Map<Address, Map<string, bigint>>()
  for (const p of lastCommit?.precommits ?? []) {
    const e = extensionOf(p.extension)
    if (e === undefined || e.balances.length === 0) continue
    out.set(p.validator, new Map(e.balances.map((b) => [`${b.chainId}/${b.token}`, b.amount])))
  }
  return out
}

/**
 * BFT time (CometBFT's MedianTime): the stake-weighted median of the last commit's precommit timestamps,
 * and at least 1 ms after the parent (honest validators stamp their precommits later than the block they
 * commit, so the median already is). Undefined at height 1 (no commit): the proposer's clock, checked
 * against the validators' clocks, is used there.
 */
export function commitTime(state: AppState, lastCommit: CommitCertificate | null): number | undefined {
  if (lastCommit === null) return undefined
  const median = weightedMedian(
    lastCommit.precommits.map((p) => ({
      value: p.timestampMs,
      weight: state.commitPowers.get(p.validator) ?? 0n,
      tiebreak: p.validator,
    })),
  )
  return Math.max(median ?? 0, state.lastBlockTime + 1)
}

/** min(block time + fillTimeoutSec, the intent's fillDeadline), unix seconds. */
export function assignmentDeadline(state: AppState, timeSec: bigint, fillDeadline: bigint): bigint {
  const byTimeout = timeSec + BigInt(state.params.fillTimeoutSec)
  return byTimeout < fillDeadline ? byTimeout : fillDeadline
}

/** What a block decides before its new assignments, derived the same way by proposer and validators. */
export interface BlockPlan {
  readonly view: HealthView
  /** Validators offline once the block's last commit is counted: no new work, their open work moves. */
  readonly offline: ReadonlySet<Address>
  /** `state.signedAt` with the block's last commit counted. */
  readonly signedAt: ReadonlyMap<Address, bigint>
  /** The missed-blocks windows with the block's last commit recorded (liveness.ts). */
  readonly liveness: ReadonlyMap<Address, MissedWindow>
  /** Validators the block jails for downtime (address order): their window fell below the minimum. */
  readonly downtime: readonly Address[]
  readonly timeSec: bigint
  /** Open assignments (not filled in this block) whose intent's fill deadline passed, in id order. */
  readonly expired: readonly Hex[]
  /** Released assignments (state `released`) whose intent's fill deadline passed, in id order. */
  readonly lapsed: readonly Hex[]
  /**
   * The intents of `expired` and `lapsed` whose origin rollup has settlement contracts: the ones the block
   * may refund (its `refunds`, each checked opened on the origin settler). The others just expire.
   */
  readonly refundable: ReadonlySet<Hex>
  /** Assignments this block must route again, in id order, at most MAX_BLOCK_REASSIGNMENTS. */
  readonly reroute: readonly { intentId: Hex; reason: RerouteReason }[]
  /** The router's pool view: active validators' stakes, outstanding = assignments that stay. */
  readonly pools: PoolView
  /** The surge state after this block (state/surge.ts), from the state's and this block's view. */
  readonly surges: SurgeState
  /** Rollups surging in this block, with their level in bps of their baseline: the router detours. */
  readonly surging: ReadonlyMap<bigint, bigint>
}

/**
 * The plan of a block at `time` carrying `lastCommit`, once the intents of `filled` are settled: the
 * health view of its last commit, who is offline, which open assignments expire, which are re-routed
 * (rollup down or missing from the view, deadline passed, executor offline or gone: rollups/router.ts
 * `rerouteCandidates`), the pool view, and the missed-blocks windows with who they jail. Validators and
 * routing weights are the pre-block state's: evidence and jailing in a block take effect after it.
 */
export function planBlock(
  state: AppState,
  time: number,
  lastCommit: CommitCertificate | null,
  filled: ReadonlySet<string>,
): BlockPlan {
  const view = commitView(state, lastCommit)
  const signedAt = signedAtAfter(state, lastCommit)
  const { liveness, downtime } = livenessAfter(state, lastCommit)
  const offline = offlineValidators(state, state.height + 1n, signedAt)
  const timeSec = blockTimeSec(time)
  const expired: Hex[] = []
  const live: AssignmentState[] = []
  for (const a of [...state.assignments.values()].sort((x, y) => cmp(x.intentId, y.intentId))) {
    if (filled.has(a.intentId)) continue
    if (a.fillDeadline < timeSec) expired.push(a.intentId)
    else live.push(a)
  }
  const lapsed = [...state.released.values()]
    .filter((a) => a.fillDeadline < timeSec)
    .map((a) => a.intentId)
    .sort(cmp)
  const settled = settlementOrigins(state)
  const refundable = new Set<Hex>()
  for (const id of [...expired, ...lapsed]) {
    const a = state.assignments.get(id) ?? state.released.get(id)!
    if (settled.has(a.originChainId)) refundable.add(id)
  }
  const reroute = rerouteCandidates(live, view, timeSec, poolView(state, [], offline), offline).slice(
    0,
    MAX_BLOCK_REASSIGNMENTS,
  )
  const moving = new Set<string>(reroute.map((r) => r.intentId))
  const surges = surgesAfter(state, view, state.height + 1n)
  return {
    surges,
    surging: surgingLevels(surges, view),
    view,
    offline,
    signedAt,
    liveness,
    downtime,
    timeSec,
    expired,
    lapsed,
    refundable,
    reroute,
    pools: poolView(
      state,
      live.filter((a) => !moving.has(a.intentId)),
      offline,
      commitBalances(lastCommit),
    ),
  }
}

/** {@link planBlock}'s signature: validateBlock and apply take one (default planBlock). */
export type Planner = typeof planBlock

/** Plans one memo keeps for its state: a height's proposals (one per round) and their apply. */
const PLAN_MEMO_SIZE = 8

/**
 * A {@link planBlock} that remembers the plans it made over its latest state, so that a node plans each
 * block once: validateBlock plans a proposal, then apply plans the same block again when it commits. Entries
 * match on the state and the last commit by identity (both are immutable values; a block decoded twice has
 * two commit objects, so it is planned twice, never mixed up with another), on the time, and on the
 * contents of `filled`. A call on another state forgets the previous state's plans. A hit returns the
 * object planBlock returned the first time: plans are read-only to their users.
 */
export function planMemo(): Planner {
  let of: AppState | undefined
  let memo: { time: number; lastCommit: CommitCertificate | null; filled: string; plan: BlockPlan }[] = []
  return (state, time, lastCommit, filled) => {
    if (state !== of) {
      of = state
      memo = []
    }
    const key = [...filled].sort().join(',')
    const hit = memo.find((m) => m.time === time && m.lastCommit === lastCommit && m.filled === key)
    if (hit !== undefined) return hit.plan
    const plan = planBlock(state, time, lastCommit, filled)
    if (memo.length >= PLAN_MEMO_SIZE) memo.shift()
    memo.push({ time, lastCommit, filled: key, plan })
    return plan
  }
}

/** Chain ids of the rollups with settlement contracts in the genesis (escrow, claims, refunds). */
export function settlementOrigins(state: Pick<AppState, 'rollups'>): ReadonlySet<bigint> {
  return new Set(state.rollups.filter((r) => r.settlement !== undefined).map((r) => BigInt(r.chainId)))
}

/** A new intent as the router sees it, or why it cannot be assigned in a block at `timeSec`. */
export function acceptIntent(
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
  const economics = state.assets.check({ originChainId: order.originChainId, ...data })
  if (!economics.ok) return { ok: false, why: `intent ${id}: ${economics.code}: ${economics.message}` }
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

/** The evidence itself (validator, height, round, kind): what is punished once. */
export function evidenceKey(e: VoteEvidence): string {
  return `${e.first.validator}/${e.first.height}/${e.first.round}/${e.first.kind}`
}

/**
 * Why evidence cannot go into a block at `height`, or undefined. Signatures are checked separately. The
 * guard is the tombstone, not the jail: a validator jailed for downtime that equivocated is still
 * slashed, once; a tombstoned one never again.
 */
export function evidenceProblem(state: AppState, height: bigint, e: VoteEvidence): string | undefined {
  const { first: a, second: b } = e
  if (a.validator !== b.validator) return 'votes of different validators'
  if (a.kind !== b.kind || a.height !== b.height || a.round !== b.round) return 'votes for different steps'
  if (a.blockHash === b.blockHash) return 'votes for the same value'
  if (a.height >= height || a.height + EVIDENCE_MAX_AGE_BLOCKS < height)
    return `evidence of height ${a.height} is out of range`
  const v = state.validators.find((x) => x.address === a.validator)
  if (v === undefined) return `${a.validator} is not a validator`
  if (v.tombstoned) return `${a.validator} is tombstoned: its double signing was punished`
  return undefined
}

/** True when tombstoning `accused` leaves no validator with power that is not tombstoned. */
export function tombstonesEveryone(
  state: AppState,
  accused: { has(a: string): boolean; readonly size: number },
): boolean {
  return (
    accused.size > 0 &&
    !state.validators.some((v) => !v.tombstoned && v.power > 0n && !accused.has(v.address))
  )
}

/**
 * The share (basis points) of its stake that `validator`'s double signing costs in the block at `height`:
 * `slashDoubleSignBps` × (1 + `correlationMultiplier` × the share of the consensus set's power held by the
 * *other* validators punished for double signing within the last `correlationWindowBlocks`, this block's
 * other accused included), capped at 10000. A lone equivocation pays the base rate; equivocations that
 * happen together, as a coordinated attack or a shared bad setup does, pay more the more stake is in them
 * (Ethereum's correlation penalty, learned from; the own share is left out so a small set is not ruinous
 * for a single mistake).
 */
export function doubleSignSlashBps(
  state: AppState,
  height: bigint,
  accused: Iterable<string>,
  validator: string,
): number {
  const base = BigInt(state.params.slashDoubleSignBps)
  const multiplier = BigInt(state.params.correlationMultiplier ?? DEFAULT_CORRELATION_MULTIPLIER)
  let total = 0n
  for (const p of state.consensusSet.values()) total += p
  if (multiplier === 0n || total === 0n) return Number(base)
  const window = BigInt(state.params.correlationWindowBlocks ?? DEFAULT_CORRELATION_WINDOW_BLOCKS)
  let others = 0n
  for (const r of state.slashes)
    if (r.height + window > height && r.validator !== validator) others += r.power
  for (const a of accused) if (a !== validator) others += state.consensusSet.get(a as Address) ?? 0n
  const bps = (base * (total + multiplier * others)) / total
  return Number(bps > 10_000n ? 10_000n : bps)
}

/**
 * The staking ledger of the block at `height` before its own moves: the validators its evidence accuses
 * (address -> height of the double vote) slashed by {@link doubleSignSlashBps} and jailed, with
 * `whistleblowerRewardBps` of what each such slash burns paid to the block's `proposer` (who included the
 * evidence); those its missed-blocks windows jail (`downtime`) slashed by `slashDowntimeBps` and jailed;
 * the loans due at `height` returned. A slash reaches the stake unbonding since the infraction: the double
 * vote's height, or for downtime the start of the missed-blocks window. Proposer, validators and `apply`
 * run the block's moves and account messages over it, in block order.
 */
export function stakingBase(
  state: AppState,
  height: bigint,
  accused: ReadonlyMap<string, bigint>,
  downtime: Iterable<string> = [],
  proposer?: Address,
): StakeLedger {
  const ledger = new StakeLedger({ ...state, powerAt: (v, h) => powerAt(state, v, h) }, height)
  if (accused.size > 0) {
    const share = BigInt(state.params.whistleblowerRewardBps ?? DEFAULT_WHISTLEBLOWER_REWARD_BPS)
    for (const [a, at] of accused) {
      const bps = doubleSignSlashBps(state, height, accused.keys(), a)
      const burned = ledger.punish(a as Address, bps, at)
      if (proposer !== undefined && proposer !== a) ledger.credit(proposer, (burned * share) / 10_000n)
    }
  }
  const windowStart = height - BigInt(state.params.signedBlocksWindow)
  for (const d of downtime)
    if (!accused.has(d)) ledger.punish(d as Address, state.params.slashDowntimeBps, windowStart)
  ledger.expire(height)
  return ledger
}

/**
 * `validator`'s consensus power at `height` (what voted then): the current set's from `setSince` on, the
 * prior set's before (evidence is at most EVIDENCE_MAX_AGE_BLOCKS old; with epochs shorter than that an
 * older infraction is judged by the prior set, an approximation). Undefined when it was not in the set.
 */
export function powerAt(state: AppState, validator: Address, height: bigint): bigint | undefined {
  return (height >= state.setSince ? state.consensusSet : state.priorSet).get(validator)
}

/** Default `whistleblowerRewardBps`: the proposer including evidence gets 10 % of what the slash burns. */
export const DEFAULT_WHISTLEBLOWER_REWARD_BPS = 1_000
/** Default `correlationMultiplier` (Ethereum's PROPORTIONAL_SLASHING_MULTIPLIER is 3). */
export const DEFAULT_CORRELATION_MULTIPLIER = 3
/** Default `correlationWindowBlocks`: double signings this many blocks apart add up. */
export const DEFAULT_CORRELATION_WINDOW_BLOCKS = 1_000

/** The target of a move is congested in the block's health view (ARCHITECTURE.md: double rewards). */
export function congested(view: HealthView, chainId: bigint): boolean {
  const h = view.get(chainId)
  return h !== undefined && h.gasUsedRatioBps >= STAKE_MOVE_CONGESTED_BPS
}

/**
 * Whether a fill by `executor` on `chainId` settles assignment `a`: by its executor on its chain; or, on a
 * rollup with a settler among the intent's destinations, by any validator (an executor the intent was
 * taken from, `a.avoid`, included). The settler records at most one fill of an order per chain and names
 * its filler, so the fill on chain is the one that paid the recipient whoever made it, and it is that
 * executor the FILL leaf repays (a later assignee's fill reverts `AlreadyFilled`). Limiting it to `avoid`
 * left a fill stranded when the assignment had moved for `ROLLUP_DOWN` (not remembered in `avoid`): the
 * filler's transaction landed as the rollup came back, nobody could settle it, and the intent was
 * re-assigned at every deadline (netns rollup-outage scenario, session 9; docs/decisions.md).
 */
export function fillSettles(
  state: Pick<AppState, 'rollups' | 'validators'>,
  a: AssignmentState,
  fill: { readonly chainId: bigint; readonly executor: Address },
): boolean {
  if (a.chainId === fill.chainId && a.executor === fill.executor) return true
  if (a.destinationChainIds.length > 0 && !a.destinationChainIds.includes(fill.chainId)) return false
  if (!state.rollups.some((r) => BigInt(r.chainId) === fill.chainId && r.settlement !== undefined))
    return false
  return a.avoid.includes(fill.executor) || state.validators.some((v) => v.address === fill.executor)
}
