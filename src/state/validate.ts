/** valid(v) of the Tendermint core (process proposal): a block checked against the state of the previous height. */
import type { Address, Hex } from 'viem'
import {
  type GaslessCrossChainOrder,
  isOnchainIntent,
  isOnchainNonce,
  type SignedIntent,
} from '../codec/intent.ts'
import {
  type Block,
  type BlockAssignment,
  MAX_BLOCK_ACCOUNT_MESSAGES,
  MAX_BLOCK_STAKE_MOVES,
  MAX_BLOCK_UNJAILS,
  verifyCertificate,
} from '../consensus/block.ts'
import { type Recover, verifyVoteSignature } from '../consensus/votes.ts'
import { recoverAddress } from '../crypto/recover.ts'
import {
  type ExpectedOutput,
  type FillVerdict,
  fillDigest,
  findBadFillField,
  type SignedFill,
} from '../rollups/fill.ts'
import { type RouteIntent, routeIntents } from '../rollups/router.ts'
import { stakeMoveOrdered } from '../staking/moves.ts'
import { checkUnjail } from '../staking/unjail.ts'
import { accountMessageOrdered, accountMessageSigner } from '../staking/wire-accounts.ts'
import { blockValidatorHashes } from './epoch.ts'
import {
  acceptIntent,
  assignmentDeadline,
  blockTimeSec,
  commitTime,
  evidenceKey,
  evidenceProblem,
  extensionOf,
  fillSettles,
  NO_PROFILES,
  type Planner,
  planBlock,
  rerouteOf,
  routeParamsOf,
  settlementOrigins,
  stakingBase,
  tombstonesEveryone,
} from './plan.ts'
import { refundsOf, type SettlementRefund, settlementLeaves, settlementRoot } from './settlement.ts'
import { type AppState, expectedOutputOf } from './types.ts'

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
  | 'BAD_LAST_COMMIT'
  | 'BAD_EVIDENCE'
  | 'BAD_STAKE_MOVE'
  | 'BAD_ACCOUNT_MESSAGE'
  | 'BAD_UNJAIL'
  | 'BAD_VALIDATORS_HASH'
  | 'BAD_SETTLEMENT_ROOT'
  | 'BAD_REFUND'
  | 'REFUND_INVALID'
  | 'REFUND_UNVERIFIED'
  | 'INTENT_UNVERIFIED'

export type BlockVerdict =
  | { readonly ok: true }
  | { readonly ok: false; readonly code: BlockRejectCode; readonly message: string }

const OK: BlockVerdict = Object.freeze({ ok: true })

function bad(code: BlockRejectCode, message: string): BlockVerdict {
  return { ok: false, code, message }
}

/** A refund's check on this validator's RPC (the verdicts of a fill's, see `verifyRefund`). */
export type RefundVerdict = FillVerdict

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
  /**
   * Whether the order of a refund the block claims is opened on its origin settler, on this validator's
   * own RPC (`orderStatus == 1`): 'valid' when it is, 'invalid' when it is settled or refunded, 'pending'
   * when not opened (yet, as this RPC sees it), 'unknown' when the RPC cannot tell. Only 'valid' is
   * accepted (REFUND_INVALID, else REFUND_UNVERIFIED). Absent: every refund is 'unknown', so a validator
   * without it accepts no block with refunds.
   */
  readonly verifyRefund?: (intentId: Hex, refund: SettlementRefund) => Promise<RefundVerdict>
  /**
   * Whether the order of an unsigned intent the block assigns (one its user opened on chain) is opened on
   * its origin settler, on this validator's own RPC (rollups/opened-orders.ts): 'valid' is accepted,
   * 'invalid' makes the block BAD_INTENT, 'pending' and 'unknown' INTENT_UNVERIFIED. Not asked for an
   * intent the local pool holds (`isKnownIntent`). Absent: every such intent is 'unknown'.
   */
  readonly verifyOpened?: (id: Hex, order: GaslessCrossChainOrder) => Promise<FillVerdict>
  /** True when the local pool holds (and so has verified) the intent: its signature is not checked again. */
  readonly isKnownIntent?: (id: Hex) => boolean
  readonly recover?: Recover
  /**
   * The block's plan: planBlock (the default) or a memo of it (plan.ts `planMemo`), which lets `apply`
   * reuse the plan made here when the block commits.
   */
  readonly plan?: Planner
}

/**
 * Why an unsigned intent cannot be an order opened on chain, judged on the state alone: its nonce is not
 * in the `open` range (bit 255), or its origin has no settlement contracts, or it names another settler.
 */
function unsignedIntentProblem(state: AppState, intent: SignedIntent): string | undefined {
  const { order } = intent
  if (!isOnchainNonce(order.nonce)) return 'unsigned, and its nonce is not one of an order opened on chain'
  const settler = state.rollups.find((r) => BigInt(r.chainId) === order.originChainId)?.settlement?.settler
  if (settler === undefined) return `unsigned, and chain ${order.originChainId} has no settlement contracts`
  if (settler.toLowerCase() !== order.originSettler)
    return `unsigned, and not of the settler of ${order.originChainId}`
  return undefined
}

/**
 * The checks that need nothing but the state: height, parent hash, time after the parent's, proposer a
 * member of the consensus set, the validator-set hashes (epoch.ts). What a syncing node checks besides
 * the certificate.
 */
export function checkBlockHeader(state: AppState, block: Block): BlockVerdict {
  if (block.height !== state.height + 1n)
    return bad('BAD_HEIGHT', `block ${block.height} on state ${state.height}`)
  if (block.parentHash !== state.lastBlockHash) return bad('BAD_PARENT', `parent ${block.parentHash}`)
  if (!(block.time > state.lastBlockTime))
    return bad('BAD_TIME', `time ${block.time} <= parent ${state.lastBlockTime}`)
  if (!state.consensusSet.has(block.proposer))
    return bad('BAD_PROPOSER', `${block.proposer} is not a validator`)
  const want = blockValidatorHashes(state, block.height)
  if (block.validatorsHash !== want.validatorsHash)
    return bad(
      'BAD_VALIDATORS_HASH',
      `validatorsHash ${block.validatorsHash}, the set signing is ${want.validatorsHash}`,
    )
  if (block.nextValidatorsHash !== want.nextValidatorsHash)
    return bad(
      'BAD_VALIDATORS_HASH',
      `nextValidatorsHash ${block.nextValidatorsHash}, the next set is ${want.nextValidatorsHash}`,
    )
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
 * valid(v) (ARCHITECTURE.md, Consensus): the header; the last commit (null at height 1, else precommits of
 * more than 2/3 of the powers that decided the parent, for the parent, each with a vote extension that
 * decodes); the time: the commit's BFT time (`commitTime`), or at height 1 within the clock skew of
 * `ctx.nowMs`; each intent in at most one list; every new
 * intent valid (signed by its user, or unsigned and opened on its origin settler by `ctx.verifyOpened`; a
 * Murmur order, known chains, fill deadline ahead) and neither assigned nor finished; assignments and reassignments exactly `routeIntents` over the block's health view (with
 * the same re-routing set and pool view as `planBlock`); fills of open assignments, by the assigned
 * executor, signed, and 'valid' by `ctx.verifyFill` (this validator's own check); evidence well formed,
 * signed, never twice the same (validator, height, round, kind) nor two against one validator, never of a
 * tombstoned validator; Unjails in validator order, each valid at the block's time (`checkUnjail`), not of
 * a validator the block accuses, signed by the validator; stake moves in (staker, nonce) order, each valid on the state left by the evidence, the loans due
 * and the moves before it (so two moves of one staker must both be covered), and signed by its staker.
 * Refunds in intent id order, each an intent the block expires (`plan.refundable`: its origin has
 * settlement contracts) and 'valid' by `ctx.verifyRefund` (its order opened on the origin settler, on
 * this validator's own RPC). Then `settlementRoot`: the root of the fills' FILL leaves and the refunds'
 * REFUND leaves (settlement.ts), checked last. Returns the first failure.
 */
export async function validateBlock(
  state: AppState,
  block: Block,
  ctx: ValidateBlockContext,
): Promise<BlockVerdict> {
  const head = checkBlockHeader(state, block)
  if (!head.ok) return head
  const lc = block.lastCommit
  if (block.height === 1n) {
    if (lc !== null) return bad('BAD_LAST_COMMIT', 'block 1 carries a last commit')
    const skewMs = state.params.maxClockSkewSec * 1000
    if (Math.abs(block.time - ctx.nowMs) > skewMs)
      return bad('CLOCK_SKEW', `time ${block.time}, local clock ${ctx.nowMs}`)
  } else {
    if (lc === null) return bad('BAD_LAST_COMMIT', `block ${block.height} carries no last commit`)
    if (lc.height !== state.height || lc.blockHash !== state.lastBlockHash)
      return bad('BAD_LAST_COMMIT', `last commit of ${lc.height}/${lc.blockHash}, not of the parent`)
    for (const p of lc.precommits) {
      if (extensionOf(p.extension) === undefined)
        return bad('BAD_LAST_COMMIT', `vote extension of ${p.validator} does not decode`)
    }
    const expected = commitTime(state, lc)
    if (block.time !== expected)
      return bad('BAD_TIME', `time ${block.time}, the last commit's BFT time is ${expected}`)
  }
  if (block.intents.length !== block.assignments.length)
    return bad('BAD_INTENT', 'intents do not align with assignments')
  const timeSec = blockTimeSec(block.time)

  const ids = new Set<string>()
  for (const id of [
    ...block.assignments.map((a) => a.intentId),
    ...block.reassignments.map((a) => a.intentId),
    ...block.fills.map((f) => f.intentId),
    ...(block.refunds ?? []),
  ]) {
    if (ids.has(id)) return bad('DUPLICATE_INTENT', `intent ${id} appears twice`)
    ids.add(id)
  }

  let last = ''
  for (const f of block.fills) {
    if (f.intentId <= last) return bad('BAD_FILL', 'fills not in intent id order')
    last = f.intentId
    if (findBadFillField(f) !== undefined) return bad('BAD_FILL', `fill of ${f.intentId} is malformed`)
    const a = state.assignments.get(f.intentId)
    if (a === undefined) return bad('BAD_FILL', `fill of ${f.intentId}: no open assignment`)
    if (!fillSettles(state, a, f))
      return bad(
        'BAD_FILL',
        `fill of ${f.intentId} by ${f.executor} on ${f.chainId}, assigned ${a.executor} on ${a.chainId}`,
      )
  }

  const accused = new Map<string, bigint>()
  const keys = new Set<string>()
  for (const e of block.evidence) {
    const problem = evidenceProblem(state, block.height, e)
    if (problem !== undefined) return bad('BAD_EVIDENCE', problem)
    if (keys.has(evidenceKey(e)))
      return bad('BAD_EVIDENCE', `the same evidence against ${e.first.validator} twice`)
    keys.add(evidenceKey(e))
    if (accused.has(e.first.validator)) return bad('BAD_EVIDENCE', `${e.first.validator} accused twice`)
    accused.set(e.first.validator, e.first.height)
  }
  if (tombstonesEveryone(state, accused))
    return bad('BAD_EVIDENCE', 'evidence would tombstone every validator')

  if (block.unjails.length > MAX_BLOCK_UNJAILS)
    return bad('BAD_UNJAIL', `more than ${MAX_BLOCK_UNJAILS} unjails`)
  const unjailIds: Hex[] = []
  for (const [i, u] of block.unjails.entries()) {
    if (i > 0 && !(block.unjails[i - 1]!.unjail.validator < u.unjail.validator))
      return bad('BAD_UNJAIL', 'unjails not in strictly increasing validator order')
    if (accused.has(u.unjail.validator))
      return bad('BAD_UNJAIL', `${u.unjail.validator} is accused of double signing in the same block`)
    const v = checkUnjail(state, u, timeSec)
    if (!v.ok) return bad('BAD_UNJAIL', `unjail of ${u.unjail.validator}: ${v.code}: ${v.message}`)
    unjailIds.push(v.id)
  }

  const plan = (ctx.plan ?? planBlock)(state, block.time, lc, new Set(block.fills.map((f) => f.intentId)))
  const refunds = block.refunds ?? []
  for (const [i, id] of refunds.entries()) {
    if (i > 0 && !(refunds[i - 1]! < id)) return bad('BAD_REFUND', 'refunds not in intent id order')
    if (!plan.refundable.has(id))
      return bad(
        'BAD_REFUND',
        `refund of ${id}: not an intent this block expires on a rollup with settlement`,
      )
  }

  if (block.stakeMoves.length > MAX_BLOCK_STAKE_MOVES)
    return bad('BAD_STAKE_MOVE', `more than ${MAX_BLOCK_STAKE_MOVES} stake moves`)
  const ledger = stakingBase(state, block.height, accused, plan.downtime, block.proposer)
  const moveIds: Hex[] = []
  for (const [i, s] of block.stakeMoves.entries()) {
    if (i > 0 && !stakeMoveOrdered(block.stakeMoves[i - 1]!.move, s.move))
      return bad('BAD_STAKE_MOVE', 'stake moves not in (staker, nonce) order')
    const v = ledger.check(s)
    if (!v.ok) return bad('BAD_STAKE_MOVE', `stake move ${i} of ${s.move.staker}: ${v.code}: ${v.message}`)
    ledger.apply(v.id, s.move, block.height, false)
    moveIds.push(v.id)
  }
  // Unjails free their validators before the account messages, as apply runs them.
  for (const u of block.unjails) ledger.free(u.unjail.validator)
  const messages = block.accountMessages ?? []
  if (messages.length > MAX_BLOCK_ACCOUNT_MESSAGES)
    return bad('BAD_ACCOUNT_MESSAGE', `more than ${MAX_BLOCK_ACCOUNT_MESSAGES} account messages`)
  const messageIds: Hex[] = []
  for (const [i, m] of messages.entries()) {
    if (i > 0 && !accountMessageOrdered(messages[i - 1]!, m))
      return bad('BAD_ACCOUNT_MESSAGE', 'account messages not in (signer, nonce) order')
    const v = ledger.checkMessage(m)
    if (!v.ok)
      return bad(
        'BAD_ACCOUNT_MESSAGE',
        `account message ${i} of ${accountMessageSigner(m)}: ${v.code}: ${v.message}`,
      )
    ledger.applyMessage(m)
    messageIds.push(v.id)
  }

  const fresh: RouteIntent[] = []
  for (const [i, a] of block.assignments.entries()) {
    const r = acceptIntent(state, a.intentId, block.intents[i]!, timeSec)
    if (!r.ok) return bad('BAD_INTENT', r.why)
    fresh.push(r.route)
  }

  const moving = plan.reroute.map((c) => state.assignments.get(c.intentId)!)
  const settled = settlementOrigins(state)
  const movingIds = new Set<string>(moving.map((m) => m.intentId))
  const routed = routeIntents(
    [...fresh, ...plan.reroute.map((c, i) => rerouteOf(state, moving[i]!, c.reason, settled))],
    plan.view,
    NO_PROFILES,
    plan.pools,
    routeParamsOf(state, plan.surging),
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
  if (lc !== null) {
    checks.push(
      verifyCertificate(
        lc,
        state.commitPowers,
        lc.height,
        lc.round,
        lc.blockHash,
        state.networkId,
        recover,
      ).then((v) => (v.ok ? OK : bad('BAD_LAST_COMMIT', `last commit: ${v.code}: ${v.message}`))),
    )
  }
  for (const [i, a] of block.assignments.entries()) {
    const it = block.intents[i]!
    if (isOnchainIntent(it)) {
      const problem = unsignedIntentProblem(state, it)
      if (problem !== undefined) return bad('BAD_INTENT', `intent ${a.intentId}: ${problem}`)
      if (ctx.isKnownIntent?.(a.intentId)) continue
      const verify = ctx.verifyOpened ?? (async (): Promise<FillVerdict> => 'unknown')
      checks.push(
        verify(a.intentId, it.order)
          .catch((): FillVerdict => 'unknown')
          .then((v) =>
            v === 'valid'
              ? OK
              : v === 'invalid'
                ? bad(
                    'BAD_INTENT',
                    `intent ${a.intentId}: unsigned, and its order is not opened on its origin`,
                  )
                : bad(
                    'INTENT_UNVERIFIED',
                    `intent ${a.intentId}: not verified opened on its origin here (${v})`,
                  ),
          ),
      )
      continue
    }
    if (ctx.isKnownIntent?.(a.intentId)) continue
    checks.push(
      signedBy(a.intentId, it.signature, it.order.user).then((ok) =>
        ok ? OK : bad('BAD_INTENT', `intent ${a.intentId} is not signed by its user`),
      ),
    )
  }
  for (const f of block.fills) {
    const { signature, ...fill } = f
    const a = state.assignments.get(f.intentId)!
    // Signed by its executor, or relayed by the assignee (its own fill reverted AlreadyFilled): the
    // signature says who vouches for the fill, the receipt check below whether it happened.
    checks.push(
      Promise.resolve()
        .then(() => recover(fillDigest(state.networkId, fill), signature))
        .then((who) => who === f.executor || who === a.executor)
        .catch(() => false)
        .then((ok) =>
          ok
            ? OK
            : bad('BAD_FILL', `fill of ${f.intentId} is signed by neither ${f.executor} nor ${a.executor}`),
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
  const refundTerms = refundsOf(state, refunds)
  for (const r of refundTerms) {
    const verify = ctx.verifyRefund ?? (async (): Promise<RefundVerdict> => 'unknown')
    checks.push(
      verify(r.orderId, r)
        .catch((): RefundVerdict => 'unknown')
        .then((v) =>
          v === 'valid'
            ? OK
            : v === 'invalid'
              ? bad('REFUND_INVALID', `refund of ${r.orderId}: its order is settled or refunded on origin`)
              : bad('REFUND_UNVERIFIED', `refund of ${r.orderId}: not verified opened here (${v})`),
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
  for (const [i, m] of messages.entries()) {
    const signer = accountMessageSigner(m)
    checks.push(
      signedBy(messageIds[i]!, m.signature, signer).then((ok) =>
        ok ? OK : bad('BAD_ACCOUNT_MESSAGE', `account message ${messageIds[i]} is not signed by ${signer}`),
      ),
    )
  }
  for (const [i, u] of block.unjails.entries()) {
    checks.push(
      signedBy(unjailIds[i]!, u.signature, u.unjail.validator).then((ok) =>
        ok ? OK : bad('BAD_UNJAIL', `unjail ${unjailIds[i]} is not signed by ${u.unjail.validator}`),
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
  // Last, so that a block with a bad fill is refused for the fill (its root is wrong too).
  const root = settlementRoot(settlementLeaves(state, block.fills, refundTerms))
  if (block.settlementRoot !== root)
    return bad(
      'BAD_SETTLEMENT_ROOT',
      `settlementRoot ${block.settlementRoot}, the block's leaves give ${root}`,
    )
  return OK
}
