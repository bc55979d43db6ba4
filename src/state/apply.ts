/** apply(state, block): the next state and the intent pool transitions a committed block implies. No I/O. */
import type { Address, Hex } from 'viem'
import { decodeOrderData } from '../codec/intent.ts'
import { type Block, blockHash } from '../consensus/block.ts'
import type { TransitionRequest } from '../mempool/pool.ts'
import type { Assignment as PoolAssignment } from '../mempool/record.ts'
import type { RerouteReason } from '../rollups/router.ts'
import type { StakeLedger } from '../staking/ledger.ts'
import { checkUnjail } from '../staking/unjail.ts'
import { economyAfter, type SettledFill, slashesAfter } from './economy.ts'
import { isEpochBoundary, nextConsensusSet } from './epoch.ts'
import {
  avoidAfter,
  congested,
  evidenceProblem,
  fillSettles,
  type Planner,
  planBlock,
  stakingBase,
} from './plan.ts'
import { type AppState, type AssignmentState, cmp, sumPools, type ValidatorState } from './types.ts'

export interface ApplyResult {
  readonly state: AppState
  /** For IntentPool.transitionMany, in order; at most one per intent. */
  readonly intentTransitions: TransitionRequest[]
}

const REROUTE_REASON: { readonly [K in RerouteReason]: string } = {
  ROLLUP_DOWN: 'rollup-down',
  DEADLINE_PASSED: 'fill-timeout',
  EXECUTOR_OFFLINE: 'executor-offline',
  EXECUTOR_GONE: 'executor-gone',
}

function poolAssignment(a: AssignmentState): PoolAssignment {
  return { chainId: a.chainId, executor: a.executor, height: a.height, deadline: Number(a.deadline) }
}

/**
 * The state after `block` (which validateBlock, or a commit certificate, vouches for) and the intent pool
 * transitions it implies, in this order: fills settle their assignments (`assigned -> filled`); open and
 * released assignments whose intent's fill deadline passed expire (`-> expired`), or, when the block
 * refunds them (`refunds`, within the plan's `refundable`), are refunded (`-> refunded`); the plan's
 * re-routing set moves (`assigned -> assigned`) or, without a route in the block, goes back
 * (`assigned -> pending`, the assignment kept as released); new assignments (`pending -> assigned`,
 * no longer released); evidence slashes each accused validator by `slashDoubleSignBps`
 * (every pool and loan, floor of what it keeps) and tombstones it; the missed-blocks windows, with the
 * block's last commit recorded, jail for downtime until block time + `downtimeJailSec` (slashing
 * `slashDowntimeBps`); stake loans due at this height return, then the block's stake moves apply
 * (staking/moves.ts); Unjails free their validators (window reset); at an epoch boundary the consensus
 * set is taken anew (epoch.ts); finished intents are forgotten once their fill deadline passed. Pure: never mutates
 * `state`, no I/O. Items a valid block cannot hold (a fill without assignment, ...) are skipped, so the
 * result is defined for every block. `hash` is the block's hash when the caller has it; `planner` plans
 * the block (planBlock, or a memo of it that already holds validateBlock's plan).
 */
export function apply(state: AppState, block: Block, hash?: Hex, planner: Planner = planBlock): ApplyResult {
  const height = block.height
  const transitions: TransitionRequest[] = []
  const assignments = new Map(state.assignments)
  const released = new Map(state.released)
  const done = new Map(state.done)

  const filled = new Set<string>()
  const settled: SettledFill[] = []
  for (const f of block.fills) {
    const a = assignments.get(f.intentId)
    if (a === undefined || !fillSettles(state, a, f)) continue
    settled.push({
      chainId: f.chainId,
      value: a.outputAmount,
      settles: state.rollups.some((r) => BigInt(r.chainId) === a.originChainId && r.settlement !== undefined),
    })
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

  const plan = planner(state, block.time, block.lastCommit, filled)
  const refunded = new Set<string>((block.refunds ?? []).filter((id) => plan.refundable.has(id)))
  for (const id of [...plan.expired, ...plan.lapsed]) {
    const a = assignments.get(id) ?? released.get(id)!
    assignments.delete(id)
    released.delete(id)
    done.set(id, a.fillDeadline)
    transitions.push(
      refunded.has(id)
        ? { id, to: 'refunded', height, reason: 'refund' }
        : { id, to: 'expired', height, reason: 'deadline' },
    )
  }
  const moved = new Map(block.reassignments.map((r) => [r.intentId, r]))
  for (const c of plan.reroute) {
    const a = assignments.get(c.intentId)!
    const r = moved.get(c.intentId)
    if (r === undefined) {
      assignments.delete(c.intentId)
      released.set(c.intentId, a)
      transitions.push({ id: c.intentId, to: 'pending', height, reason: REROUTE_REASON[c.reason] })
      continue
    }
    const next: AssignmentState = {
      ...a,
      chainId: r.chainId,
      executor: r.executor,
      deadline: r.deadline,
      height,
      avoid: avoidAfter(a, c.reason),
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
      originChainId: intent.order.originChainId,
      fillDeadline: BigInt(intent.order.fillDeadline),
      inputToken: data.inputToken,
      inputAmount: data.inputAmount,
      avoid: [],
    }
    assignments.set(a.intentId, next)
    released.delete(a.intentId)
    transitions.push({ id: a.intentId, to: 'assigned', assignment: poolAssignment(next), height })
  }

  const accused = new Map<string, bigint>()
  for (const e of block.evidence)
    if (evidenceProblem(state, height, e) === undefined) accused.set(e.first.validator, e.first.height)
  const downtime = new Set<string>(plan.downtime.filter((d) => !accused.has(d)))
  const ledger = stakingBase(state, height, accused, downtime, block.proposer)
  for (const s of block.stakeMoves) {
    const v = ledger.check(s)
    if (v.ok) ledger.apply(v.id, s.move, height, congested(plan.view, s.move.toChainId))
  }
  const unjailNonces = new Map(state.unjailNonces)
  const freed = new Set<string>()
  for (const u of block.unjails) {
    if (accused.has(u.unjail.validator) || !checkUnjail(state, u, plan.timeSec).ok) continue
    freed.add(u.unjail.validator)
    ledger.free(u.unjail.validator)
    unjailNonces.set(u.unjail.validator, u.unjail.nonce)
  }
  for (const m of block.accountMessages ?? []) if (ledger.checkMessage(m).ok) ledger.applyMessage(m)
  if (isEpochBoundary(state, height)) ledger.epochBoundary()
  const jailedUntil = plan.timeSec + BigInt(state.params.downtimeJailSec)
  const validators = validatorsAfter(state, ledger, (v) => {
    if (accused.has(v.address)) return { ...v, jailed: true, jailedUntil: null, tombstoned: true }
    if (downtime.has(v.address)) return { ...v, jailed: true, jailedUntil }
    if (freed.has(v.address)) return { ...v, jailed: false, jailedUntil: null }
    return v
  })
  // A window starts again when its validator is jailed, tombstoned or freed.
  const liveness = new Map(plan.liveness)
  for (const a of [...accused.keys(), ...downtime, ...freed]) liveness.delete(a as Address)

  const timeSec = plan.timeSec
  for (const [id, fillDeadline] of [...done]) if (fillDeadline < timeSec) done.delete(id)
  const consensusSet = nextConsensusSet(state, height)
  const { rewards, alarms } = economyAfter(state, height, ledger, settled, validators, consensusSet)

  return {
    state: {
      ...state,
      height,
      lastBlockHash: hash ?? blockHash(block),
      lastBlockTime: block.time,
      validators,
      assignments,
      released: released.size === 0 && state.released.size === 0 ? state.released : released,
      done,
      stakeMoves: ledger.moves,
      stakeNonces: ledger.nonces,
      stake: ledger.changed ? ledger.book.state() : state.stake,
      rewards,
      alarms,
      surges: plan.surges,
      slashes: slashesAfter(state, height, accused.keys()),
      commitPowers: state.consensusSet,
      signedAt: plan.signedAt,
      consensusSet,
      ...(consensusSet === state.consensusSet ? {} : { priorSet: state.consensusSet, setSince: height + 1n }),
      liveness,
      unjailNonces: freed.size === 0 ? state.unjailNonces : unjailNonces,
    },
    intentTransitions: transitions,
  }
}

function samePools(a: ReadonlyMap<bigint, bigint>, b: ReadonlyMap<bigint, bigint> | undefined): boolean {
  if (b === undefined) return a.size === 0
  if (a.size !== b.size) return false
  for (const [c, x] of a) if (b.get(c) !== x) return false
  return true
}

/**
 * The validators after a block, by address: every validator of the stake book (those a CreateValidator
 * made join, not jailed), each with its pools as the book's delegations leave them (power their sum),
 * then `status` (jailing, freeing) applied. Validators the block leaves unchanged keep their objects.
 */
export function validatorsAfter(
  state: AppState,
  ledger: StakeLedger,
  status: (v: ValidatorState) => ValidatorState,
): readonly ValidatorState[] {
  const pools = ledger.changed ? ledger.pools() : undefined
  const known = new Map(state.validators.map((v) => [v.address, v]))
  const out: ValidatorState[] = []
  let changed = false
  for (const r of ledger.book.validators.values()) {
    let v = known.get(r.address)
    if (v === undefined) {
      const p = pools?.get(r.address) ?? new Map<bigint, bigint>()
      v = {
        address: r.address,
        peerId: r.peerId,
        power: sumPools(p),
        pools: p,
        jailed: false,
        jailedUntil: null,
        tombstoned: false,
      }
    } else if (pools !== undefined && !samePools(v.pools, pools.get(r.address))) {
      const p = pools.get(r.address) ?? new Map<bigint, bigint>()
      v = { ...v, pools: p, power: sumPools(p) }
    }
    const w = status(v)
    if (w !== known.get(r.address)) changed = true
    out.push(w)
  }
  if (!changed && out.length === state.validators.length) return state.validators
  return out.sort((a, b) => cmp(a.address, b.address))
}
