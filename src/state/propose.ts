/** The proposer's block (prepare proposal): pure and deterministic over the state and what the node holds. */
import type { Address, Hex } from 'viem'
import type { SignedIntent } from '../codec/intent.ts'
import {
  type Block,
  type BlockAssignment,
  type BlockFill,
  type CommitCertificate,
  MAX_BLOCK_ACCOUNT_MESSAGES,
  MAX_BLOCK_ASSIGNMENTS,
  MAX_BLOCK_EVIDENCE,
  MAX_BLOCK_FILLS,
  MAX_BLOCK_REFUNDS,
  MAX_BLOCK_STAKE_MOVES,
  MAX_BLOCK_UNJAILS,
  type SignedStakeMove,
  type SignedUnjail,
  type VoteEvidence,
} from '../consensus/block.ts'
import { findBadFillField, type SignedFill } from '../rollups/fill.ts'
import { type RouteIntent, routeIntents } from '../rollups/router.ts'
import { sortStakeMoves } from '../staking/moves.ts'
import { checkUnjail } from '../staking/unjail.ts'
import type { AccountMessage } from '../staking/validators.ts'
import { sortAccountMessages } from '../staking/wire-accounts.ts'
import { blockValidatorHashes } from './epoch.ts'
import {
  acceptIntent,
  assignmentDeadline,
  blockTimeSec,
  commitTime,
  evidenceKey,
  evidenceProblem,
  fillSettles,
  NO_PROFILES,
  planBlock,
  rerouteOf,
  routeParamsOf,
  settlementOrigins,
  stakingBase,
  tombstonesEveryone,
} from './plan.ts'
import { refundsOf, settlementLeaves, settlementRoot } from './settlement.ts'
import { type AppState, cmp } from './types.ts'

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
  /**
   * Pending Unjails whose signatures the caller verified (the staking service does on arrival); those
   * valid at the block's time go into the block, one per validator, at most MAX_BLOCK_UNJAILS.
   */
  readonly unjails?: Iterable<SignedUnjail>
  /** Signed account messages waiting for a block (checked in block order; those refused are left out). */
  readonly accountMessages?: Iterable<AccountMessage>
  /**
   * Intents whose orders the caller found opened on their origin settler (its own RPC, `orderStatus == 1`):
   * those the block expires on a rollup with settlement (`plan.refundable`) are its refunds.
   */
  readonly opened?: ReadonlySet<Hex>
}

/**
 * The proposer's block at height `state.height + 1`, carrying `lastCommit` (the commit of the head; null
 * at height 1), at the commit's BFT time (`commitTime`; at height 1 max(nowMs, parent time + 1)), routed
 * over the commit's health view (`commitView`):
 * - fills of open assignments, by their assigned executor, one per intent (the caller passes fills it
 *   verified on its own RPC);
 * - assignments: `pending` in the given order (at most maxAssignments) that are valid and unassigned,
 *   routed together with the assignments to re-route by `routeIntents` over the block's health view;
 *   intents that find no route stay pending, re-routed ones without a route go back to pending;
 * - evidence that still applies (one per validator, never of a tombstoned one);
 * - Unjails valid at the block's time (jail over, not tombstoned, not accused in the block), in validator
 *   order;
 * - `validatorsHash` / `nextValidatorsHash` of the set signing it and of the next one (epoch.ts);
 * - refunds: the intents the block expires on a rollup with settlement whose orders `opts.opened` holds,
 *   in intent id order;
 * - `settlementRoot`: the root of the fills' FILL leaves and the refunds' REFUND leaves (settlement.ts);
 * - stake moves: `opts.stakeMoves` in (staker, nonce) order, each kept when valid on the state left by the
 *   evidence, the loans due and the moves kept before it (staking/moves.ts).
 * Pure and deterministic.
 */
export function proposeBlock(
  state: AppState,
  pending: readonly PendingIntent[],
  lastCommit: CommitCertificate | null,
  fills: Iterable<SignedFill>,
  nowMs: number,
  opts: ProposeOptions,
): Block {
  const time = commitTime(state, lastCommit) ?? Math.max(Math.floor(nowMs), state.lastBlockTime + 1)
  const height = state.height + 1n
  const timeSec = blockTimeSec(time)

  const chosen = new Map<Hex, BlockFill>()
  for (const { fill, signature } of fills) {
    if (findBadFillField(fill) !== undefined || chosen.has(fill.intentId)) continue
    const a = state.assignments.get(fill.intentId)
    if (a === undefined || !fillSettles(state, a, fill)) continue
    chosen.set(fill.intentId, { ...fill, signature })
  }
  const blockFills = [...chosen.values()]
    .sort((x, y) => cmp(x.intentId, y.intentId))
    .slice(0, Math.min(opts.maxFills ?? MAX_BLOCK_FILLS, MAX_BLOCK_FILLS))

  const plan = planBlock(state, time, lastCommit, new Set(blockFills.map((f) => f.intentId)))
  const maxAssignments = Math.min(opts.maxAssignments ?? MAX_BLOCK_ASSIGNMENTS, MAX_BLOCK_ASSIGNMENTS)
  const fresh = new Map<Hex, { intent: SignedIntent; route: RouteIntent; fillDeadline: bigint }>()
  for (const p of pending) {
    if (fresh.size >= maxAssignments) break
    if (fresh.has(p.id)) continue
    const r = acceptIntent(state, p.id, p.intent, timeSec)
    if (r.ok) fresh.set(p.id, { intent: p.intent, route: r.route, fillDeadline: r.fillDeadline })
  }
  const moving = new Map(plan.reroute.map((c) => [c.intentId, state.assignments.get(c.intentId)!]))
  const settled = settlementOrigins(state)
  const routed = routeIntents(
    [
      ...[...fresh.values()].map((f) => f.route),
      ...plan.reroute.map((c) => rerouteOf(state, moving.get(c.intentId)!, c.reason, settled)),
    ],
    plan.view,
    NO_PROFILES,
    plan.pools,
    routeParamsOf(state, plan.surging),
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
  const accused = new Map<string, bigint>()
  const keys = new Set<string>()
  for (const e of opts.evidence ?? []) {
    if (evidence.length >= MAX_BLOCK_EVIDENCE) break
    if (accused.has(e.first.validator) || keys.has(evidenceKey(e))) continue
    if (evidenceProblem(state, height, e) !== undefined) continue
    accused.set(e.first.validator, e.first.height)
    if (tombstonesEveryone(state, accused)) {
      accused.delete(e.first.validator) // never tombstone the last validator
      break
    }
    keys.add(evidenceKey(e))
    evidence.push(e)
  }

  const unjails: SignedUnjail[] = []
  const freed = new Set<string>()
  for (const u of [...(opts.unjails ?? [])].sort(
    (x, y) => cmp(x.unjail.validator, y.unjail.validator) || cmp(x.unjail.nonce, y.unjail.nonce),
  )) {
    if (unjails.length >= MAX_BLOCK_UNJAILS) break
    if (freed.has(u.unjail.validator) || accused.has(u.unjail.validator)) continue
    if (!checkUnjail(state, u, timeSec).ok) continue
    freed.add(u.unjail.validator)
    unjails.push(u)
  }

  const ledger = stakingBase(state, height, accused, plan.downtime, opts.proposer.toLowerCase() as Address)
  const stakeMoves: SignedStakeMove[] = []
  for (const s of sortStakeMoves(state.networkId, opts.stakeMoves ?? [])) {
    if (stakeMoves.length >= MAX_BLOCK_STAKE_MOVES) break
    const v = ledger.check(s)
    if (!v.ok) continue
    ledger.apply(v.id, s.move, height, false)
    stakeMoves.push(s)
  }
  for (const u of unjails) ledger.free(u.unjail.validator)
  const accountMessages: AccountMessage[] = []
  for (const m of sortAccountMessages(state.networkId, opts.accountMessages ?? [])) {
    if (accountMessages.length >= MAX_BLOCK_ACCOUNT_MESSAGES) break
    if (!ledger.checkMessage(m).ok) continue
    ledger.applyMessage(m)
    accountMessages.push(m)
  }

  const refunds = [...plan.refundable]
    .filter((id) => opts.opened?.has(id) === true)
    .sort(cmp)
    .slice(0, MAX_BLOCK_REFUNDS)

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
    lastCommit,
    unjails,
    ...(refunds.length === 0 ? {} : { refunds }),
    ...(accountMessages.length === 0 ? {} : { accountMessages }),
    ...blockValidatorHashes(state, height),
    settlementRoot: settlementRoot(settlementLeaves(state, blockFills, refundsOf(state, refunds))),
  }
}
