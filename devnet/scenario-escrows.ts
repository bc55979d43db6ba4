/**
 * The settlement invariant of `devnet scenario load-spike` (issue 12, item 5): after the run, no escrow
 * is left open without a claim or a refund. Read black-box on the rollups themselves, through their RPC:
 * every `Open` event of each rollup's settler, then `orderStatus(id)` of each order (1 opened, 2 settled
 * to its executor, 3 refunded to its user). Nothing here asks a node.
 */
import { createPublicClient, type Hex, http, parseEventLogs } from 'viem'
import { murmurSettlerAbi } from '../src/contracts/abi.ts'
import { ORDER_STATUS } from '../src/rollups/settlement.ts'
import type { Invariant } from './scenario-checks.ts'

/** One rollup as `devnet.json` names it, with its settler. */
export interface EscrowRollup {
  chainId: number
  rpcUrl: string
  settler: Hex
}

/** One order opened on an origin settler, and its status when last read. */
export interface EscrowOrder {
  chainId: number
  id: Hex
  fillDeadline: number
  status: number
}

/** Every order opened on each rollup's settler, with its status now. */
export async function readEscrows(rollups: readonly EscrowRollup[]): Promise<EscrowOrder[]> {
  const per = await Promise.all(
    rollups.map(async (r) => {
      const client = createPublicClient({ transport: http(r.rpcUrl, { timeout: 10_000 }) })
      const logs = await client.getLogs({ address: r.settler, fromBlock: 0n, toBlock: 'latest' })
      const opens = parseEventLogs({ abi: murmurSettlerAbi, logs, eventName: 'Open' })
      const orders: EscrowOrder[] = []
      for (let i = 0; i < opens.length; i += 16) {
        const batch = opens.slice(i, i + 16)
        const statuses = await Promise.all(
          batch.map((e) =>
            client.readContract({
              address: r.settler,
              abi: murmurSettlerAbi,
              functionName: 'orderStatus',
              args: [e.args.orderId],
            }),
          ),
        )
        for (const [k, e] of batch.entries())
          orders.push({
            chainId: r.chainId,
            id: e.args.orderId,
            fillDeadline: Number(e.args.resolvedOrder.fillDeadline),
            status: Number(statuses[k]),
          })
      }
      return orders
    }),
  )
  return per.flat()
}

/** Counts by status. */
export function escrowCounts(orders: readonly EscrowOrder[]): {
  opened: number
  open: number
  settled: number
  refunded: number
} {
  const by = (s: number) => orders.filter((o) => o.status === s).length
  return {
    opened: orders.length,
    open: by(ORDER_STATUS.opened),
    settled: by(ORDER_STATUS.settled),
    refunded: by(ORDER_STATUS.refunded),
  }
}

/**
 * The `escrows-closed` verdict: every opened order settled or refunded. `waitedMs` is how long the
 * runner waited for the last claims and refunds.
 */
export function checkEscrowsClosed(orders: readonly EscrowOrder[], waitedMs: number): Invariant {
  const c = escrowCounts(orders)
  const open = orders.filter((o) => o.status === ORDER_STATUS.opened)
  const name = 'escrows-closed'
  if (c.opened === 0) return { name, passed: false, detail: 'no order was opened on any settler' }
  if (open.length > 0) {
    const list = open.slice(0, 4).map((o) => `${o.id.slice(0, 10)} on ${o.chainId}`)
    return {
      name,
      passed: false,
      detail:
        `${open.length} of ${c.opened} escrows still open after waiting ${(waitedMs / 1000).toFixed(1)} s ` +
        `(no claim, no refund): ${list.join('; ')}${open.length > 4 ? `; and ${open.length - 4} more` : ''}`,
    }
  }
  return {
    name,
    passed: true,
    detail:
      `all ${c.opened} escrows opened on the settlers are closed: ${c.settled} settled to their ` +
      `executor, ${c.refunded} refunded (waited ${(waitedMs / 1000).toFixed(1)} s)`,
  }
}

/**
 * The wall-clock deadline of the wait for `orders` still open: the last one's refund time (its fill
 * deadline plus the genesis refund grace) plus `marginMs`, at least `minMs` from now.
 */
export function escrowWaitDeadline(
  orders: readonly EscrowOrder[],
  refundGraceSec: number,
  nowMs: number,
  marginMs: number,
  minMs: number,
): number {
  const open = orders.filter((o) => o.status === ORDER_STATUS.opened)
  if (open.length === 0) return nowMs + minMs
  const refundAtMs = Math.max(0, ...open.map((o) => (o.fillDeadline + refundGraceSec) * 1000))
  return Math.max(nowMs + minMs, refundAtMs + marginMs)
}
