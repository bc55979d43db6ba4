/**
 * Storage of the application state (sublevel `app`, JSON values, big integers as decimal strings), written as batch
 * ops so that a block, its certificate, this state and the pool's transitions land in one `store.batch`:
 *   `meta`       -> {version, networkId, genesisHash, height, lastBlockHash, lastBlockTime, validators,
 *                    stakeNonces, commitPowers, signedAt, consensusSet, liveness, unjailNonces}
 *   `a/<id>`     -> open assignment
 *   `r/<id>`     -> released assignment (went back to pending; kept until re-assigned or its fill deadline)
 *   `d/<id>`     -> fillDeadline of a finished (filled or expired) intent, kept until that deadline passes
 *   `m/<id>`     -> stake move in force (staking/moves.ts); the stakers' used nonces are in `meta`
 *   `stake`      -> the stake book (stake-storage.ts), written by the blocks that change it
 *   `rewards`    -> epoch activity, accumulators, periods, community pool, last epochs (stake-storage.ts)
 */
import type { Address, Hex } from 'viem'
import { StorageError } from '../errors.ts'
import { type StakeMoveRecord, stakeMoveRecordToJson } from '../staking/moves.ts'
import { genesisState } from './genesis.ts'
import { isOffline } from './plan.ts'
import {
  type RewardsStateJson,
  rewardsStateFromJson,
  rewardsStateToJson,
  type StakeStateJson,
  stakeStateFromJson,
  stakeStateToJson,
} from './stake-storage.ts'
import { type BatchOp, prefixEnd, type Store } from './store.ts'
import {
  APP_STATE_VERSION,
  type AppGenesis,
  type AppState,
  type AssignmentState,
  cmp,
  sumPools,
  type ValidatorState,
} from './types.ts'

const META_KEY = 'meta'
const ASSIGNMENT_PREFIX = 'a/'
const DONE_PREFIX = 'd/'
const RELEASED_PREFIX = 'r/'
const MOVE_PREFIX = 'm/'
const STAKE_KEY = 'stake'
const REWARDS_KEY = 'rewards'
const LOAD_PAGE = 10_000

interface MetaJson {
  version: number
  networkId: string
  genesisHash: string
  height: string
  lastBlockHash: string
  lastBlockTime: number
  validators: Array<{
    address: string
    peerId: string
    pools: Record<string, string>
    jailed: boolean
    /** Unix seconds (decimal) or null. */
    jailedUntil: string | null
    tombstoned: boolean
  }>
  /** Staker -> highest used nonce (decimal). Absent in version 1. */
  stakeNonces?: Record<string, string>
  /** Validator -> power, of the set that decided block `height`. */
  commitPowers: Record<string, string>
  /** Validator -> last height whose carried commit holds its precommit. */
  signedAt: Record<string, string>
  /** Validator -> power, of the consensus set deciding block `height + 1`. */
  consensusSet: Record<string, string>
  /** Validator -> missed-blocks window: heights recorded since its reset, missed count, bits as hex. */
  liveness: Record<string, { recorded: number; missed: number; bits: string }>
  /** Validator -> highest used Unjail nonce (decimal). */
  unjailNonces: Record<string, string>
  /** Chain ids (decimal) of the pools whose concentration alarm is raised. */
  alarms?: string[]
  /**
   * Base-fee surge state by chain id (decimal): the calm samples (decimal wei) and the raising height or
   * null. Absent in stores written before surges: read as no history (state/surge.ts).
   */
  surges?: Record<string, { samples: string[]; since: string | null }>
  /** Validator -> power, of the consensus set before `consensusSet`; and the first height the latter decides. */
  priorSet?: Record<string, string>
  setSince?: string
  /** Double-signing punishments in the correlation window: [height, validator, power]. */
  slashes?: [string, string, string][]
}

function sortedRecord<V, J>(m: ReadonlyMap<string, V>, f: (v: V) => J): Record<string, J> {
  return Object.fromEntries([...m].sort(([a], [b]) => cmp(a, b)).map(([a, v]) => [a, f(v)]))
}

function bigintMap(r: Record<string, string>): Map<Address, bigint> {
  return new Map(Object.entries(r).map(([a, n]) => [a as Address, BigInt(n)] as const))
}

interface StakeMoveJson {
  staker: string
  validator?: string
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
  originChainId: string
  fillDeadline: string
  inputToken: string
  inputAmount: string
  avoid?: string[]
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
      jailedUntil: v.jailedUntil === null ? null : v.jailedUntil.toString(),
      tombstoned: v.tombstoned,
    })),
    stakeNonces: sortedRecord(s.stakeNonces, String),
    commitPowers: sortedRecord(s.commitPowers, String),
    signedAt: sortedRecord(s.signedAt, String),
    consensusSet: sortedRecord(s.consensusSet, String),
    liveness: sortedRecord(s.liveness, (w) => ({
      recorded: w.recorded,
      missed: w.missed,
      bits: Buffer.from(w.bits).toString('hex'),
    })),
    unjailNonces: sortedRecord(s.unjailNonces, String),
    alarms: s.alarms.map(String),
    surges: Object.fromEntries(
      [...s.surges]
        .sort(([a], [b]) => cmp(a, b))
        .map(([c, r]) => [
          c.toString(),
          { samples: r.samples.map(String), since: r.since?.toString() ?? null },
        ]),
    ),
    priorSet: sortedRecord(s.priorSet, String),
    setSince: s.setSince.toString(),
    slashes: s.slashes.map((r) => [r.height.toString(), r.validator, r.power.toString()]),
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
    ...(j.validator === undefined ? {} : { validator: j.validator as Address }),
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
    originChainId: a.originChainId.toString(),
    fillDeadline: a.fillDeadline.toString(),
    inputToken: a.inputToken,
    inputAmount: a.inputAmount.toString(),
    ...(a.avoid.length === 0 ? {} : { avoid: [...a.avoid] }),
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
    originChainId: BigInt(j.originChainId),
    fillDeadline: BigInt(j.fillDeadline),
    inputToken: j.inputToken as Address,
    inputAmount: BigInt(j.inputAmount),
    avoid: (j.avoid ?? []) as Address[],
  }
}

/**
 * The batch ops that turn the stored `prev` into `next`: the meta record, and only the assignments
 * (open and released), finished intents and stake moves that changed (unchanged entries are the same objects, as `apply`
 * shares them).
 */
export function appStateOps(prev: AppState | undefined, next: AppState): BatchOp[] {
  const ops: BatchOp[] = [{ type: 'put', sublevel: 'app', key: META_KEY, value: metaJson(next) }]
  if (prev?.stake !== next.stake)
    ops.push({ type: 'put', sublevel: 'app', key: STAKE_KEY, value: stakeStateToJson(next.stake) })
  if (prev?.rewards !== next.rewards)
    ops.push({ type: 'put', sublevel: 'app', key: REWARDS_KEY, value: rewardsStateToJson(next.rewards) })
  const prevDone = prev?.done ?? new Map<Hex, bigint>()
  assignmentOps(ops, ASSIGNMENT_PREFIX, prev?.assignments, next.assignments)
  assignmentOps(ops, RELEASED_PREFIX, prev?.released, next.released)
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

/** Puts of the entries of `next` that are not the same object in `prev`, deletes of those gone. */
function assignmentOps(
  ops: BatchOp[],
  prefix: string,
  prev: ReadonlyMap<Hex, AssignmentState> | undefined,
  next: ReadonlyMap<Hex, AssignmentState>,
): void {
  if (prev === next) return
  for (const [id, a] of next) {
    if (prev?.get(id) !== a)
      ops.push({ type: 'put', sublevel: 'app', key: prefix + id, value: assignmentToJson(a) })
  }
  for (const id of prev?.keys() ?? []) {
    if (!next.has(id)) ops.push({ type: 'del', sublevel: 'app', key: prefix + id })
  }
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
  if (meta.version !== APP_STATE_VERSION)
    throw new StorageError(
      'CORRUPT',
      `app state version ${meta.version}, this node reads ${APP_STATE_VERSION}: start from an empty data dir`,
    )
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
    const released = new Map<Hex, AssignmentState>()
    await scan(store, RELEASED_PREFIX, (k, v) => {
      const id = k.slice(RELEASED_PREFIX.length) as Hex
      released.set(id, assignmentFromJson(id, v as AssignmentJson))
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
    const stakeNonces = bigintMap(meta.stakeNonces ?? {})
    const stakeJson = await store.get<StakeStateJson>('app', STAKE_KEY)
    const stake = stakeJson === undefined ? base.stake : stakeStateFromJson(stakeJson, base.stake)
    const rewardsJson = await store.get<RewardsStateJson>('app', REWARDS_KEY)
    const rewards = rewardsJson === undefined ? base.rewards : rewardsStateFromJson(rewardsJson)
    const validators = meta.validators
      .map((v): ValidatorState => {
        const pools = new Map(Object.entries(v.pools).map(([c, s]) => [BigInt(c), BigInt(s)] as const))
        return {
          address: v.address as Address,
          peerId: v.peerId,
          power: sumPools(pools),
          pools,
          jailed: v.jailed,
          jailedUntil: v.jailedUntil === null ? null : BigInt(v.jailedUntil),
          tombstoned: v.tombstoned,
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
      released,
      done,
      stakeMoves,
      stakeNonces,
      stake,
      rewards,
      alarms: (meta.alarms ?? []).map((c) => BigInt(c)),
      surges: new Map(
        Object.entries(meta.surges ?? {}).map(([c, r]) => [
          BigInt(c),
          { samples: r.samples.map((x) => BigInt(x)), since: r.since === null ? null : BigInt(r.since) },
        ]),
      ),
      priorSet: meta.priorSet === undefined ? base.priorSet : bigintMap(meta.priorSet),
      setSince: meta.setSince === undefined ? base.setSince : BigInt(meta.setSince),
      slashes: (meta.slashes ?? []).map(([h, v, p]) => ({
        height: BigInt(h),
        validator: v as Address,
        power: BigInt(p),
      })),
      commitPowers: bigintMap(meta.commitPowers),
      signedAt: bigintMap(meta.signedAt),
      consensusSet: bigintMap(meta.consensusSet),
      liveness: new Map(
        Object.entries(meta.liveness).map(([a, w]) => {
          const bits = Uint8Array.from(Buffer.from(w.bits, 'hex'))
          if (bits.length !== Math.ceil(base.params.signedBlocksWindow / 8))
            throw new Error(`liveness of ${a}`)
          return [a as Address, { recorded: w.recorded, missed: w.missed, bits }] as const
        }),
      ),
      unjailNonces: bigintMap(meta.unjailNonces),
    }
  } catch (err) {
    throw new StorageError('CORRUPT', `app state does not parse: ${(err as Error).message}`, { cause: err })
  }
}

/**
 * The body of `GET /v1/validators` (INTERFACES.md): `jailedUntil` in unix seconds or null, `online` when
 * one of the last `offlineAfterBlocks` commits holds its precommit, `missedBlocks` in its current window.
 */
export function validatorsToJson(state: AppState) {
  return state.validators.map((v) => ({
    address: v.address,
    peerId: v.peerId,
    power: v.power.toString(),
    pools: Object.fromEntries(
      [...v.pools].sort(([a], [b]) => cmp(a, b)).map(([c, s]) => [c.toString(), s.toString()]),
    ),
    jailed: v.jailed,
    jailedUntil: v.jailedUntil === null ? null : Number(v.jailedUntil),
    tombstoned: v.tombstoned,
    online: !isOffline(state, v.address, state.height),
    missedBlocks: state.liveness.get(v.address)?.missed ?? 0,
  }))
}
