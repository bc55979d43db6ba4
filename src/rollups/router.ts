/**
 * The router: which rollup and which executor handle each pending intent (ARCHITECTURE.md, Routing).
 *
 * A pure, deterministic function of its inputs. Every node (proposer and validators) runs it over
 * the health snapshot carried in a block and must get the same answer, so:
 * - all arithmetic that decides anything is bigint; Number inputs (bps, ms) are truncated to
 *   non-negative integers and converted before use;
 * - intents are processed in id order, rollups in chain id order, pool members in address order,
 *   so neither the order of the input array nor the insertion order of any Map matters;
 * - every tie has a rule: cost ties go to the lower chain id, executor ties to the lower address.
 */
import type { Address, Hex } from 'viem'

export type RollupStatus = 'up' | 'degraded' | 'down'
export type RollupType = 'optimistic' | 'zk'

/** One intent as the router sees it. */
export interface RouteIntent {
  /** EIP-712 digest of the order (bytes32). */
  id: Hex
  user: Address
  /** Allowed destinations; empty means any rollup of the network. */
  destinationChainIds: readonly bigint[]
  outputAmount: bigint
  /** 0x000…0 is the chain's native token. */
  outputToken: Address
  /** Gas of the fill; the params' default for the token kind when absent or not positive. */
  gasEstimate?: bigint
  /** Executors this intent must not go to (taken from them for being offline). Lowercase. */
  avoidExecutors?: readonly Address[]
}

/** Aggregated health of one rollup in the block's snapshot. */
export interface RollupHealth {
  status: RollupStatus
  gasUsedRatioBps: number
  baseFeeWei: bigint
  blockTimeMs: number
  latencyMs: number
  gasLimit: bigint
  gasUsed: bigint
  type: RollupType
  securityBps: number
}

/** Health by chain id. A rollup missing from the view is not a candidate. */
export type HealthView = ReadonlyMap<bigint, RollupHealth>

/** A user's personal chain profile, as far as routing is concerned. */
export interface RouteProfile {
  /** A cost bonus, not a filter. */
  preferredChainIds: readonly bigint[]
  /** A hard filter. */
  avoidChainIds: readonly bigint[]
  /** A cost bonus for rollups of this type, not a filter. */
  preferredType: '' | RollupType
  /**
   * Upper bound of the fill's fee (baseFee × gas) in bps of the output amount; 0 means no limit.
   * Only applied to native-token outputs: fee and amount are then in the same unit.
   */
  maxFeeBps: number
}

/** A validator serving a rollup (not jailed). */
export interface PoolMember {
  validator: Address
  stake: bigint
  /** Open assignments of this validator on this rollup, before this batch. */
  outstanding: number
  /**
   * What it can still pay on this rollup, by lowercase token address (its reported balance less the
   * outputs of its open assignments there). Absent: it reported no balances, and is not filtered by them;
   * present: a token missing from it is a balance of 0.
   */
  inventory?: ReadonlyMap<string, bigint>
}

/** Pool members by chain id. */
export type PoolView = ReadonlyMap<bigint, readonly PoolMember[]>

/** Integer weights of the four cost terms. */
export interface RouteWeights {
  fee: number | bigint
  latency: number | bigint
  security: number | bigint
  load: number | bigint
}

export interface RouteParams {
  weights: RouteWeights
  /**
   * Pools (chain ids) whose concentration alarm is raised (AppState.alarms): they get no new
   * assignments; an intent only they could serve is unroutable with POOL_ALARMED.
   */
  alarmed?: ReadonlySet<bigint>
  /**
   * Rollups whose base fee surges (state/surge.ts), with their level (base fee in bps of their own
   * baseline): the last filter. An intent with another candidate left never goes to one of them; one
   * that only surging rollups can serve goes to the least surging (lowest level), never left unrouted.
   */
  surging?: ReadonlyMap<bigint, bigint>
  /** Default gas of a native-token fill. */
  fillGasNative: bigint
  /** Default gas of an ERC-20 fill. */
  fillGasErc20: bigint
  /** A batch may use this many blocks' worth of a rollup's spare gas. */
  capacityWindowBlocks: number | bigint
  /** Cost surcharge of a degraded rollup, in bps of its cost. */
  degradedPenaltyBps: number
  /** Cost discount of a chain in the profile's preferredChainIds, in bps. */
  preferredChainBonusBps: number
  /** Cost discount of a rollup of the profile's preferredType, in bps. */
  preferredTypeBonusBps: number
  /** Extra security cost of an optimistic rollup (fraud-proof window before finality), in bps. */
  optimisticPenaltyBps: number
}

export const DEFAULT_ROUTE_PARAMS: RouteParams = {
  weights: { fee: 4, latency: 2, security: 1, load: 3 },
  fillGasNative: 21_000n,
  fillGasErc20: 65_000n,
  capacityWindowBlocks: 1,
  degradedPenaltyBps: 5_000,
  preferredChainBonusBps: 2_000,
  preferredTypeBonusBps: 1_000,
  optimisticPenaltyBps: 1_000,
}

export interface RouteAssignment {
  intentId: Hex
  chainId: bigint
  executor: Address
}

/**
 * Why an intent got no assignment: the first filter that left no candidate, in this order.
 * DUPLICATE_ID: the id was already routed in this batch.
 */
export type UnroutableReason =
  | 'DUPLICATE_ID'
  | 'NO_KNOWN_DESTINATION'
  | 'ALL_AVOIDED'
  | 'ALL_DOWN'
  | 'POOL_ALARMED'
  | 'NO_EXECUTOR'
  | 'NO_INVENTORY'
  | 'FEE_LIMIT'
  | 'NO_CAPACITY'

export interface RouteResult {
  /** In intent id order. */
  assignments: RouteAssignment[]
  /** In intent id order. */
  unroutable: Array<{ intentId: Hex; reason: UnroutableReason }>
}

/** Fixed point of every cost term: SCALE = 100 %. Fine enough that one fill moves the load term. */
const SCALE = 1_000_000_000n
const BPS = 10_000n
const NATIVE_TOKEN = '0x0000000000000000000000000000000000000000'

/** Non-negative integer from a small Number (bps, ms); anything else becomes 0. */
function int(x: number | bigint): bigint {
  if (typeof x === 'bigint') return x < 0n ? 0n : x
  return Number.isFinite(x) && x > 0 ? BigInt(Math.trunc(x)) : 0n
}

function minBig(a: bigint, b: bigint): bigint {
  return a < b ? a : b
}

function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function cmpBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}

interface ResolvedParams {
  wFee: bigint
  wLatency: bigint
  wSecurity: bigint
  wLoad: bigint
  fillGasNative: bigint
  fillGasErc20: bigint
  windowBlocks: bigint
  degradedPenaltyBps: bigint
  preferredChainBonusBps: bigint
  preferredTypeBonusBps: bigint
  optimisticPenaltyBps: bigint
}

function resolveParams(params: Partial<RouteParams>): ResolvedParams {
  const p = { ...DEFAULT_ROUTE_PARAMS, ...params }
  const w = { ...DEFAULT_ROUTE_PARAMS.weights, ...params.weights }
  for (const [name, v] of Object.entries(w)) {
    if (typeof v === 'number' ? !Number.isSafeInteger(v) || v < 0 : v < 0n) {
      throw new RangeError(`route weight ${name} must be a non-negative integer, got ${v}`)
    }
  }
  const windowBlocks = int(p.capacityWindowBlocks)
  if (windowBlocks < 1n) throw new RangeError('capacityWindowBlocks must be at least 1')
  if (p.fillGasNative <= 0n || p.fillGasErc20 <= 0n) throw new RangeError('fill gas must be positive')
  return {
    wFee: BigInt(w.fee),
    wLatency: BigInt(w.latency),
    wSecurity: BigInt(w.security),
    wLoad: BigInt(w.load),
    fillGasNative: p.fillGasNative,
    fillGasErc20: p.fillGasErc20,
    windowBlocks,
    degradedPenaltyBps: int(p.degradedPenaltyBps),
    preferredChainBonusBps: minBig(int(p.preferredChainBonusBps), BPS),
    preferredTypeBonusBps: minBig(int(p.preferredTypeBonusBps), BPS),
    optimisticPenaltyBps: int(p.optimisticPenaltyBps),
  }
}

/** Per-rollup figures fixed for the whole batch, plus what the batch has used so far. */
interface Lane {
  chainId: bigint
  health: RollupHealth
  down: boolean
  /** Members with positive stake, by address. */
  pool: PoolMember[]
  /** (gasLimit - gasUsed) × window; the batch never assigns more. */
  spareGas: bigint
  usedGas: bigint
  /** Static part of the cost (fee, security), already weighted. */
  staticCost: bigint
  /** gasUsedRatio in SCALE units. */
  baseLoad: bigint
  latencyMs: bigint
  blockTimeMs: bigint
  /** Highest (rpc latency + 2 block times) of the usable rollups: the latency term's 100 %. */
  latencyNorm: bigint
  /** Assignments of this batch by executor (lowercase address). */
  assigned: Map<string, bigint>
  /** Outputs this batch has given each executor to pay, by `executor/token` (lowercase). */
  spent: Map<string, bigint>
}

/** True when `m` can pay `amount` of `token` on its lane, after what this batch already gave it. */
function canPay(lane: Lane, m: PoolMember, token: string, amount: bigint): boolean {
  if (m.inventory === undefined) return true
  const spent = lane.spent.get(`${m.validator.toLowerCase()}/${token}`) ?? 0n
  return (m.inventory.get(token) ?? 0n) - spent >= amount
}

function buildLanes(view: HealthView, pools: PoolView, p: ResolvedParams): Map<bigint, Lane> {
  const chainIds = [...view.keys()].sort(cmpBig)
  // Normalisers over the usable rollups of the snapshot, so a term is in SCALE units of the worst.
  let maxBaseFee = 0n
  let maxLatency = 0n
  for (const id of chainIds) {
    const h = view.get(id)!
    if (h.status === 'down') continue
    if (h.baseFeeWei > maxBaseFee) maxBaseFee = h.baseFeeWei
    // Worst expected latency of this rollup: its RPC latency plus two blocks (fully loaded).
    const lat = int(h.latencyMs) + 2n * int(h.blockTimeMs)
    if (lat > maxLatency) maxLatency = lat
  }
  const lanes = new Map<bigint, Lane>()
  for (const chainId of chainIds) {
    const h = view.get(chainId)!
    const pool = (pools.get(chainId) ?? [])
      .filter((m) => m.stake > 0n)
      .sort(
        (a, b) =>
          cmpStr(a.validator.toLowerCase(), b.validator.toLowerCase()) || cmpStr(a.validator, b.validator),
      )
    const free = h.gasLimit > h.gasUsed ? h.gasLimit - h.gasUsed : 0n
    const fee = maxBaseFee > 0n && h.baseFeeWei > 0n ? (h.baseFeeWei * SCALE) / maxBaseFee : 0n
    const security =
      ((BPS - minBig(int(h.securityBps), BPS)) * SCALE) / BPS +
      (h.type === 'optimistic' ? (p.optimisticPenaltyBps * SCALE) / BPS : 0n)
    lanes.set(chainId, {
      chainId,
      health: h,
      down: h.status === 'down',
      pool,
      spareGas: free * p.windowBlocks,
      usedGas: 0n,
      staticCost: p.wFee * fee + p.wSecurity * security,
      baseLoad: (minBig(int(h.gasUsedRatioBps), BPS) * SCALE) / BPS,
      latencyMs: int(h.latencyMs),
      blockTimeMs: int(h.blockTimeMs),
      latencyNorm: maxLatency,
      assigned: new Map(),
      spent: new Map(),
    })
  }
  return lanes
}

/**
 * Cost of one more fill of `gas` on `lane`, lower is better. The load and latency terms use the
 * load after this fill, so a rollup gets dearer with every assignment of the batch: that is what
 * spreads a burst over the rollups.
 */
function laneCost(lane: Lane, gas: bigint, p: ResolvedParams, profile: RouteProfile | undefined): bigint {
  // Share of the window's free gas in use after this fill, on top of the reported utilisation.
  const batchShare = lane.spareGas > 0n ? ((lane.usedGas + gas) * SCALE) / lane.spareGas : SCALE
  const load = lane.baseLoad + ((SCALE - lane.baseLoad) * minBig(batchShare, SCALE)) / SCALE
  // Expected latency: RPC latency plus one block, plus up to one more block as the rollup fills up.
  const expectedMsScaled = lane.latencyMs * SCALE + lane.blockTimeMs * (SCALE + load)
  const latency = lane.latencyNorm > 0n ? expectedMsScaled / lane.latencyNorm : 0n
  let cost = lane.staticCost + p.wLatency * latency + p.wLoad * load
  if (lane.health.status === 'degraded') cost = (cost * (BPS + p.degradedPenaltyBps)) / BPS
  if (profile) {
    if (profile.preferredChainIds.includes(lane.chainId))
      cost = (cost * (BPS - p.preferredChainBonusBps)) / BPS
    if (profile.preferredType !== '' && profile.preferredType === lane.health.type) {
      cost = (cost * (BPS - p.preferredTypeBonusBps)) / BPS
    }
  }
  return cost
}

/**
 * The pool member with the least work per stake: minimises (outstanding + assigned in this batch + 1)
 * / stake, compared exactly by cross-multiplication; ties go to the lower address.
 */
function pickExecutor(lane: Lane, intent: RouteIntent, avoid: readonly Address[] = []): PoolMember {
  let best: PoolMember | undefined
  let bestWork = 0n
  const token = intent.outputToken.toLowerCase()
  for (const m of lane.pool) {
    if (avoid.length > 0 && avoid.includes(m.validator.toLowerCase() as Address)) continue
    if (!canPay(lane, m, token, intent.outputAmount)) continue
    const work = int(m.outstanding) + (lane.assigned.get(m.validator.toLowerCase()) ?? 0n) + 1n
    // work / stake < bestWork / best.stake  <=>  work * best.stake < bestWork * stake
    if (best === undefined || work * best.stake < bestWork * m.stake) {
      best = m
      bestWork = work
    }
  }
  if (best === undefined) throw new Error('pickExecutor on a lane without pool')
  return best
}

/**
 * The surge detour over a non-empty candidate list: the calm candidates when there is one, else the
 * surging ones at the lowest level (the cost then decides among equals). Never empty.
 */
function leastSurging(candidates: Lane[], surging: ReadonlyMap<bigint, bigint>): Lane[] {
  const calm = candidates.filter((l) => !surging.has(l.chainId))
  if (calm.length > 0) return calm
  let low: bigint | undefined
  for (const l of candidates) {
    const level = surging.get(l.chainId)!
    if (low === undefined || level < low) low = level
  }
  return candidates.filter((l) => surging.get(l.chainId) === low)
}

function lookupProfile(profiles: ReadonlyMap<string, RouteProfile>, user: Address): RouteProfile | undefined {
  return profiles.get(user) ?? profiles.get(user.toLowerCase())
}

/** A total order on intents: by id, then by every other field (only matters for duplicate ids). */
function intentKey(i: RouteIntent): string {
  return [
    i.id.toLowerCase(),
    i.user.toLowerCase(),
    i.outputToken.toLowerCase(),
    i.outputAmount.toString(),
    String(i.gasEstimate ?? ''),
    i.destinationChainIds.map(String).join(','),
    // Raw spellings last, so intents differing only in letter case still have a fixed order.
    i.id,
    i.user,
    i.outputToken,
  ].join('|')
}

/**
 * Routes a batch of intents (ARCHITECTURE.md, Routing).
 *
 * Candidates of an intent: its allowed destinations that are in the view, minus the profile's
 * avoided chains, minus rollups that are down, minus rollups without a staked pool member, minus
 * rollups where no such member can pay the output (its inventory, less what this batch gave it), minus
 * rollups whose fee exceeds the profile's maxFeeBps (native outputs only), minus rollups without
 * spare capacity left for this fill; then, when some are surging (`params.surging`), the calm ones, or
 * the least surging when all are. Among them the lowest cost wins (ties: lower chain id).
 *
 * Cost = wFee·fee + wLatency·latency + wSecurity·security + wLoad·load, each term in units of 1e-9:
 * fee = baseFee / highest baseFee of the usable rollups; latency = (rpc latency + block time ×
 * (1 + load)) / highest (rpc latency + 2 block times); security = (1 − securityBps) plus
 * optimisticPenaltyBps for optimistic rollups; load = reported gas used ratio, raised by the share
 * of the window's free gas this batch has assigned. Degraded rollups cost degradedPenaltyBps more;
 * the profile's preferred chains and preferred type cost their bonus bps less.
 *
 * Capacity: a rollup takes at most (gasLimit − gasUsed) × capacityWindowBlocks gas of fills per
 * batch. A fill's gas is the intent's gasEstimate, or fillGasNative / fillGasErc20.
 */
export function routeIntents(
  intents: readonly RouteIntent[],
  view: HealthView,
  profiles: ReadonlyMap<string, RouteProfile>,
  pools: PoolView,
  params: Partial<RouteParams> = {},
): RouteResult {
  const p = resolveParams(params)
  const alarmed = params.alarmed ?? new Set<bigint>()
  const surging = params.surging ?? new Map<bigint, bigint>()
  const lanes = buildLanes(view, pools, p)
  const laneList = [...lanes.values()] // chain id order
  const sorted = intents
    .map((intent) => ({ intent, key: intentKey(intent) }))
    .sort((a, b) => cmpStr(a.key, b.key))
  const result: RouteResult = { assignments: [], unroutable: [] }
  const seen = new Set<string>()

  for (const { intent } of sorted) {
    const idKey = intent.id.toLowerCase()
    if (seen.has(idKey)) {
      result.unroutable.push({ intentId: intent.id, reason: 'DUPLICATE_ID' })
      continue
    }
    seen.add(idKey)
    const profile = lookupProfile(profiles, intent.user)
    const native = intent.outputToken.toLowerCase() === NATIVE_TOKEN
    const gas =
      intent.gasEstimate !== undefined && intent.gasEstimate > 0n
        ? intent.gasEstimate
        : native
          ? p.fillGasNative
          : p.fillGasErc20

    let candidates =
      intent.destinationChainIds.length === 0
        ? laneList
        : laneList.filter((l) => intent.destinationChainIds.includes(l.chainId))
    let reason: UnroutableReason | undefined
    const narrow = (why: UnroutableReason, keep: (l: Lane) => boolean): void => {
      if (reason !== undefined) return
      candidates = candidates.filter(keep)
      if (candidates.length === 0) reason = why
    }
    if (candidates.length === 0) reason = 'NO_KNOWN_DESTINATION'
    if (profile) narrow('ALL_AVOIDED', (l) => !profile.avoidChainIds.includes(l.chainId))
    narrow('ALL_DOWN', (l) => !l.down)
    if (alarmed.size > 0) narrow('POOL_ALARMED', (l) => !alarmed.has(l.chainId))
    const avoid = intent.avoidExecutors ?? []
    narrow('NO_EXECUTOR', (l) => l.pool.some((m) => !avoid.includes(m.validator.toLowerCase() as Address)))
    const token = intent.outputToken.toLowerCase()
    narrow('NO_INVENTORY', (l) =>
      l.pool.some(
        (m) =>
          !avoid.includes(m.validator.toLowerCase() as Address) && canPay(l, m, token, intent.outputAmount),
      ),
    )
    const maxFeeBps = profile ? int(profile.maxFeeBps) : 0n
    if (native && maxFeeBps > 0n) {
      narrow('FEE_LIMIT', (l) => l.health.baseFeeWei * gas * BPS <= intent.outputAmount * maxFeeBps)
    }
    narrow('NO_CAPACITY', (l) => l.usedGas + gas <= l.spareGas)
    if (reason !== undefined) {
      result.unroutable.push({ intentId: intent.id, reason })
      continue
    }
    if (surging.size > 0) candidates = leastSurging(candidates, surging)

    let best: Lane | undefined
    let bestCost = 0n
    for (const lane of candidates) {
      const cost = laneCost(lane, gas, p, profile)
      if (best === undefined || cost < bestCost) {
        best = lane
        bestCost = cost
      }
    }
    const lane = best!
    const executor = pickExecutor(lane, intent, avoid)
    const key = executor.validator.toLowerCase()
    lane.assigned.set(key, (lane.assigned.get(key) ?? 0n) + 1n)
    const spentKey = `${key}/${token}`
    lane.spent.set(spentKey, (lane.spent.get(spentKey) ?? 0n) + intent.outputAmount)
    lane.usedGas += gas
    result.assignments.push({ intentId: intent.id, chainId: lane.chainId, executor: executor.validator })
  }
  return result
}

/** An assignment in force: the failover hook needs where it went and until when it may be filled. */
export interface OpenAssignment {
  intentId: Hex
  chainId: bigint
  executor: Address
  /** Fill deadline, unix seconds. */
  deadline: bigint | number
}

export type RerouteReason = 'ROLLUP_DOWN' | 'DEADLINE_PASSED' | 'EXECUTOR_OFFLINE' | 'EXECUTOR_GONE'

/**
 * Assignments the next block must route again (ARCHITECTURE.md, Self-healing): the rollup is down
 * or has no report in the view, the fill deadline has passed (now > deadline), the executor is
 * `offline` (missing from the last commits), or — when `pools` is given — the executor no longer
 * serves that rollup. Result in intent id order.
 */
export function rerouteCandidates(
  assigned: readonly OpenAssignment[],
  view: HealthView,
  nowSec: bigint | number,
  pools?: PoolView,
  offline?: ReadonlySet<string>,
): Array<{ intentId: Hex; reason: RerouteReason }> {
  const now = BigInt(nowSec)
  const out: Array<{ intentId: Hex; reason: RerouteReason }> = []
  for (const a of assigned) {
    const health = view.get(a.chainId)
    let reason: RerouteReason | undefined
    if (health === undefined || health.status === 'down') reason = 'ROLLUP_DOWN'
    else if (now > BigInt(a.deadline)) reason = 'DEADLINE_PASSED'
    else if (offline?.has(a.executor.toLowerCase())) reason = 'EXECUTOR_OFFLINE'
    else if (pools) {
      const exec = a.executor.toLowerCase()
      const serving = (pools.get(a.chainId) ?? []).some(
        (m) => m.stake > 0n && m.validator.toLowerCase() === exec,
      )
      if (!serving) reason = 'EXECUTOR_GONE'
    }
    if (reason !== undefined) out.push({ intentId: a.intentId, reason })
  }
  return out.sort(
    (x, y) => cmpStr(x.intentId.toLowerCase(), y.intentId.toLowerCase()) || cmpStr(x.intentId, y.intentId),
  )
}
