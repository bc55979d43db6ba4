/**
 * The settlement sweep: the backstop that leaves no escrow opened for good (issue 13 item 5, issue 12
 * item 5). The fast paths act once, from memory, as blocks commit: the executor's claim of its FILL
 * leaves (rollups/claims.ts, a few bounded retries), the validators' relay of REFUND leaves and their
 * `refundExpired` turn (rollups/refunds.ts). A crash, a restart, an RPC that timed out past the last retry
 * or a validator syncing when the block came drops that one chance; the 30-minute crash soak left 170 of
 * 3,433 escrows open that way.
 *
 * The sweep works from what is durable instead: every `intervalMs` it walks the escrows this node saw
 * opened on an origin settler and not yet settled or refunded (the settlement watch's open index, written
 * as the `Open` event is read), and for each one opened at least `settleAfterMs` ago (plus this
 * validator's turn), after what this node's pool says of its intent:
 * - `filled` in block H: this node's executor claims its FILL leaves of H still opened (none are its own:
 *   nothing happens; the executor that filled claims on its node);
 * - `refunded` in block H: relays H's REFUND leaves still opened;
 * - anything else (expired, failed, never assigned) past `fillDeadline + refundGraceSec`: `refundExpired`,
 *   which anyone may send and which pays the user.
 * Every action reads `orderStatus` on the origin before it sends, so a sweep that races the fast path or
 * another validator's sweep sends nothing. An order whose intent this node does not know is left to the
 * nodes that do. Nothing is done while the node syncs (its pool lags its blocks).
 */
import type { Logger } from 'pino'
import type { Hex } from 'viem'
import type { IntentRecord } from '../mempool/record.ts'
import { cmp } from '../state/types.ts'
import type { OpenEscrow } from './settlement-watch.ts'

export interface SettlementSweepOptions {
  /** Pass period, ms. Default 10,000. */
  readonly intervalMs: number
  /** An escrow opened less than this long ago (this node's clock) is left to the fast paths. Default 30,000. */
  readonly settleAfterMs: number
  /** Genesis `params.refundGraceSec`. */
  readonly refundGraceSec: number
  /** Escrows looked at per pass; the next pass goes on after the last one. Default 512. */
  readonly batch: number
}

export const DEFAULT_SWEEP_OPTIONS: Omit<SettlementSweepOptions, 'refundGraceSec'> = {
  intervalMs: 10_000,
  settleAfterMs: 30_000,
  batch: 512,
}

/** Seconds past `fillDeadline + refundGraceSec` before `refundExpired` (block times run a little behind). */
const EXPIRED_MARGIN_SEC = 2

export interface SettlementSweepModules {
  /** The open index, paged by id (SettlementWatch.openEscrows). */
  readonly openEscrows: (after: string, limit: number) => Promise<OpenEscrow[]>
  /** This node's record of an intent (IntentPool.get). */
  readonly intent: (id: Hex) => Promise<IntentRecord | undefined>
  /** Claims this executor's leaves of block `height` still opened (RollupService.claimAgain). */
  readonly claim: (height: bigint) => Promise<void>
  /** Relays block `height`'s REFUND leaves still opened (RefundRelayer.relay). */
  readonly relayRefunds: (height: bigint) => Promise<unknown>
  /** `refundExpired(id)` on its origin if still opened (RefundRelayer.refundExpired). */
  readonly refundExpired: (id: Hex, originChainId: bigint) => Promise<unknown>
  /** Extra wait of this validator, ms (its index in the consensus set × a step): turns, not a stampede. */
  readonly turnMs: () => number
  /** True while the node should not act (syncing, not ready). */
  readonly busy: () => boolean
  readonly log: Logger
  /** Wall clock, unix ms. Default Date.now. */
  readonly now?: () => number
}

/** Wait between two validators' turns, ms. */
export const SWEEP_TURN_MS = 5_000

/**
 * This validator's extra wait: its index in the consensus set (sorted) × {@link SWEEP_TURN_MS}; a node
 * outside the set goes last.
 */
export function sweepTurnMs(consensusSet: Iterable<string>, self: string): number {
  const order = [...consensusSet].map((a) => a.toLowerCase()).sort()
  const i = order.indexOf(self.toLowerCase())
  return (i < 0 ? order.length : i) * SWEEP_TURN_MS
}

/** What one pass did (tests, logs). */
export interface SweepPass {
  readonly looked: number
  readonly claimed: bigint[]
  readonly relayed: bigint[]
  readonly expired: Hex[]
}

/** Walks the open escrows and sends what the fast paths missed (see the module comment). */
export class SettlementSweep {
  readonly #o: SettlementSweepOptions
  readonly #m: SettlementSweepModules
  #after = ''
  #timer: NodeJS.Timeout | undefined
  #running: Promise<SweepPass> | undefined
  #stopped = false

  constructor(
    options: Partial<SettlementSweepOptions> & Pick<SettlementSweepOptions, 'refundGraceSec'>,
    modules: SettlementSweepModules,
  ) {
    this.#o = { ...DEFAULT_SWEEP_OPTIONS, ...options }
    this.#m = modules
  }

  start(): void {
    if (this.#timer !== undefined || this.#stopped) return
    this.#timer = setInterval(() => {
      if (this.#running !== undefined) return
      this.#running = this.pass()
        .catch((err: unknown) => {
          this.#m.log.warn({ err: (err as Error).message }, 'settlement sweep failed')
          return { looked: 0, claimed: [], relayed: [], expired: [] }
        })
        .finally(() => {
          this.#running = undefined
        })
    }, this.#o.intervalMs)
    this.#timer.unref()
  }

  async stop(): Promise<void> {
    this.#stopped = true
    clearInterval(this.#timer)
    this.#timer = undefined
    await this.#running
  }

  /** One pass over the next {@link SettlementSweepOptions.batch} open escrows. */
  async pass(): Promise<SweepPass> {
    const out = { looked: 0, claimed: [] as bigint[], relayed: [] as bigint[], expired: [] as Hex[] }
    if (this.#m.busy()) return out
    const rows = await this.#m.openEscrows(this.#after, this.#o.batch)
    this.#after = rows.length < this.#o.batch ? '' : rows[rows.length - 1]!.id
    const nowMs = (this.#m.now ?? Date.now)()
    const due = nowMs - this.#o.settleAfterMs - this.#m.turnMs()
    const claims = new Set<bigint>()
    const refunds = new Set<bigint>()
    const expired: Array<{ id: Hex; chainId: bigint }> = []
    for (const e of rows) {
      if (e.seenAtMs > due) continue
      const rec = await this.#m.intent(e.id)
      if (rec === undefined) continue
      out.looked++
      const height = heightOf(rec)
      if (rec.state === 'filled') {
        if (height !== undefined) claims.add(height)
      } else if (rec.state === 'refunded' && height !== undefined) {
        refunds.add(height)
      } else if (nowMs / 1000 > rec.fillDeadline + this.#o.refundGraceSec + EXPIRED_MARGIN_SEC) {
        expired.push({ id: e.id, chainId: BigInt(e.chainId) })
      }
    }
    for (const h of [...claims].sort(cmp)) {
      if (this.#stopped || this.#m.busy()) return out
      await this.#m.claim(h).then(
        () => out.claimed.push(h),
        (err: unknown) => this.#warn('claim', { height: h.toString() }, err),
      )
    }
    for (const h of [...refunds].sort(cmp)) {
      if (this.#stopped || this.#m.busy()) return out
      await this.#m.relayRefunds(h).then(
        () => out.relayed.push(h),
        (err: unknown) => this.#warn('refund relay', { height: h.toString() }, err),
      )
    }
    for (const x of expired) {
      if (this.#stopped || this.#m.busy()) return out
      await this.#m.refundExpired(x.id, x.chainId).then(
        () => out.expired.push(x.id),
        (err: unknown) => this.#warn('refundExpired', { intent: x.id }, err),
      )
    }
    // What was sent is logged where it is sent (claimed repayment, refund relayed, expired order refunded).
    if (claims.size + refunds.size + expired.length > 0)
      this.#m.log.debug(
        {
          claims: out.claimed.map(String),
          refunds: out.relayed.map(String),
          expired: out.expired.length,
        },
        'settlement sweep: escrows still opened after the fast paths were looked at again',
      )
    return out
  }

  #warn(what: string, fields: Record<string, string>, err: unknown): void {
    this.#m.log.warn({ ...fields, err: (err as Error).message }, `settlement sweep: ${what} failed`)
  }
}

/** The height of the block that made the record what it is now (its last history entry with one). */
function heightOf(rec: IntentRecord): bigint | undefined {
  for (let i = rec.history.length - 1; i >= 0; i--) {
    const h = rec.history[i]!
    if (h.state === rec.state && h.height !== undefined) return h.height
  }
  return undefined
}
