/**
 * What the origin settlers say of each order (issue 10; INTERFACES.md, Intent lifecycle): every node reads
 * the `Open`, `Settled` and `Refunded` events of the settler of each rollup with settlement contracts, a
 * block range at a time, and keeps per order its settlement state (`opened` -> `settled` | `refunded`) with
 * the transactions, for `GET /v1/intents/:id` (`settlement`) and the `intent` events of `GET /v1/events`.
 * A fact of the chains, not of consensus: each node reads it from its own RPC.
 *
 * An `Open` of an order its user opened herself (`open`: nonce with bit 255, no signature anywhere) is
 * also picked up: the gasless order is decoded from `fillInstructions[0].originData`, its id checked
 * against the event's, and it goes to the mempool (`onOpen`, the mempool service's normal path, so it is
 * gossiped) as an unsigned intent (docs/decisions.md, "Orders opened on chain"). Every node sees the
 * event, so the mempool usually holds it already. A pickup the mempool cannot verify yet (its RPC's final
 * block is behind the event) is kept (`p/<id>`, written before the cursor moves) and tried again each
 * poll until its fill deadline.
 */
import type { Logger } from 'pino'
import { createPublicClient, type Hex, type PublicClient } from 'viem'
import {
  type GaslessCrossChainOrder,
  intentId,
  isOnchainNonce,
  orderFromOriginData,
} from '../codec/intent.ts'
import { murmurSettlerAbi } from '../contracts/abi.ts'
import type { SubmitAnswer } from '../mempool/service.ts'
import { prefixEnd, type Store } from '../state/store.ts'
import { type RpcTransport, rpcTransport } from './rpc.ts'
import type { SettlementContracts } from './settlement.ts'

/** An order's settlement as its origin settler recorded it. */
export interface OrderSettlement {
  readonly state: 'opened' | 'settled' | 'refunded'
  readonly chainId: string
  readonly openTx: Hex | null
  readonly claimTx: Hex | null
  readonly refundTx: Hex | null
}

export interface SettlementWatchOptions {
  /** Poll period, ms. Default 1,000. */
  readonly intervalMs: number
  /** Most blocks one `eth_getLogs` covers. Default 2,000. */
  readonly maxRange: bigint
}

export interface SettlementWatchModules {
  readonly contracts: ReadonlyMap<bigint, SettlementContracts>
  readonly rpc: ReadonlyMap<number, string>
  readonly store: Store
  readonly log: Logger
  /**
   * An order opened on chain by its user, for the mempool: 'done' when it is held now or refused for good,
   * 'retry' when it could not be verified yet. Absent: nothing is picked up.
   */
  readonly onOpen?: (order: GaslessCrossChainOrder) => Promise<'done' | 'retry'>
  /** Wall clock, unix ms (a pickup past its fill deadline is dropped). Default Date.now. */
  readonly now?: () => number
}

/** An escrow still opened on its origin settler, as the open index keeps it. */
export interface OpenEscrow {
  readonly id: Hex
  readonly chainId: string
  /** When this node saw its `Open` event (its local clock, unix ms). */
  readonly seenAtMs: number
}

/** Pickups tried per poll. */
const MAX_PICKUPS_PER_POLL = 256

/**
 * `onOpen` through the mempool service (`submitOpened`): held or refused is 'done', not verifiable yet
 * (UNVERIFIED) or overloaded is 'retry'.
 */
export function pickupThrough(
  mempool: { submitOpened(order: GaslessCrossChainOrder): Promise<SubmitAnswer> },
  log: Logger,
): (order: GaslessCrossChainOrder) => Promise<'done' | 'retry'> {
  return async (order) => {
    const a = await mempool.submitOpened(order)
    if (a.status === 503) return 'retry'
    if (a.status === 400) {
      if (a.body.error.code === 'UNVERIFIED') return 'retry'
      log.warn({ intent: intentId(order), ...a.body.error }, 'order opened on chain refused by the mempool')
    } else if (a.status === 202) log.info({ intent: a.body.id }, 'order opened on chain picked up')
    return 'done'
  }
}

const ORDER_PREFIX = 'o/'
/**
 * Orders opened and neither settled nor refunded yet: `x/<id>` -> {@link OpenEscrow}. Written with the
 * order's `o/` record; what the settlement sweep (rollups/settlement-sweep.ts) walks.
 */
const OPEN_PREFIX = 'x/'
/** Set once every `o/` order still opened has its `x/` entry (stores written before the index). */
const OPEN_INDEX_BUILT = 'm/open-index'
const CURSOR_PREFIX = 'c/'
/** Orders opened on chain waiting for the mempool: `p/<id>` -> originData. */
const PICKUP_PREFIX = 'p/'
const EVENTS = murmurSettlerAbi.filter(
  (x) => x.type === 'event' && (x.name === 'Open' || x.name === 'Settled' || x.name === 'Refunded'),
)

/** Follows the settlers' events; `get(id)` answers from the node's store. */
export class SettlementWatch {
  readonly #o: SettlementWatchOptions
  readonly #m: SettlementWatchModules
  readonly #clients = new Map<bigint, PublicClient>()
  readonly #transports: RpcTransport[] = []
  readonly #listeners = new Set<(id: Hex, s: OrderSettlement) => void>()
  #timer: NodeJS.Timeout | undefined
  #polling = false

  constructor(options: Partial<SettlementWatchOptions>, modules: SettlementWatchModules) {
    this.#o = { intervalMs: 1_000, maxRange: 2_000n, ...options }
    this.#m = modules
    for (const [chainId, url] of modules.rpc) {
      if (!modules.contracts.has(BigInt(chainId))) continue
      const rpc = rpcTransport(url, { timeout: 5_000, retryCount: 0 }, 2)
      this.#transports.push(rpc)
      this.#clients.set(BigInt(chainId), createPublicClient({ transport: rpc.transport }) as PublicClient)
    }
  }

  start(): void {
    if (this.#timer !== undefined || this.#clients.size === 0) return
    this.#timer = setInterval(() => void this.poll(), this.#o.intervalMs)
    this.#timer.unref()
    void this.poll()
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    await Promise.all(this.#transports.splice(0).map((t) => t.close()))
  }

  /** Listens to settlement changes; returns the unsubscribe function. */
  onChange(listener: (id: Hex, s: OrderSettlement) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  /** What the settler recorded of order `id`, if anything. */
  get(id: Hex): Promise<OrderSettlement | undefined> {
    return this.#m.store.get<OrderSettlement>('orders', ORDER_PREFIX + id.toLowerCase())
  }

  /**
   * Up to `limit` escrows still opened, by id after `after` (the sweep pages with the last id it got).
   */
  async openEscrows(after: string, limit: number): Promise<OpenEscrow[]> {
    await this.#indexed
    const rows = await this.#m.store.range<Omit<OpenEscrow, 'id'>>('orders', {
      gte: OPEN_PREFIX + (after === '' ? '' : `${after.toLowerCase()}\u0000`),
      lt: prefixEnd(OPEN_PREFIX),
      limit,
    })
    return rows.map(([k, v]) => ({ id: k.slice(OPEN_PREFIX.length) as Hex, ...v }))
  }

  #indexed: Promise<void> | undefined

  /** Builds the open index of a store written before it existed (once). */
  async #buildOpenIndex(): Promise<void> {
    if ((await this.#m.store.get('orders', OPEN_INDEX_BUILT)) !== undefined) return
    const now = (this.#m.now ?? Date.now)()
    let gte = ORDER_PREFIX
    let built = 0
    for (;;) {
      const rows = await this.#m.store.range<OrderSettlement>('orders', {
        gte,
        lt: prefixEnd(ORDER_PREFIX),
        limit: 1_000,
      })
      const ops = rows
        .filter(([, v]) => v.state === 'opened')
        .map(([k, v]) => ({
          type: 'put' as const,
          sublevel: 'orders' as const,
          key: OPEN_PREFIX + k.slice(ORDER_PREFIX.length),
          value: { chainId: v.chainId, seenAtMs: now },
        }))
      if (ops.length > 0) await this.#m.store.batch(ops)
      built += ops.length
      if (rows.length < 1_000) break
      gte = `${rows[rows.length - 1]![0]}\u0000`
    }
    await this.#m.store.put('orders', OPEN_INDEX_BUILT, { built })
    if (built > 0) this.#m.log.info({ open: built }, 'indexed the escrows still opened')
  }

  /** One pass over every settler (skipped while the previous one runs). */
  async poll(): Promise<void> {
    if (this.#polling) return
    this.#polling = true
    try {
      this.#indexed ??= this.#buildOpenIndex()
      await this.#indexed
      await Promise.all([...this.#clients].map(([c, client]) => this.#pollChain(c, client)))
      if (this.#m.onOpen !== undefined) await this.#pickUp(this.#m.onOpen)
    } finally {
      this.#polling = false
    }
  }

  async #pollChain(chainId: bigint, client: PublicClient): Promise<void> {
    const settler = this.#m.contracts.get(chainId)!.settler
    try {
      const head = await client.getBlockNumber({ cacheTime: 0 })
      const cursor = (await this.#m.store.get<string>('orders', CURSOR_PREFIX + chainId)) ?? '-1'
      let from = BigInt(cursor) + 1n
      while (from <= head) {
        const to = from + this.#o.maxRange - 1n < head ? from + this.#o.maxRange - 1n : head
        const logs = await client.getLogs({ address: settler, events: EVENTS, fromBlock: from, toBlock: to })
        for (const log of logs) {
          if (log.eventName === 'Open')
            await this.#notePickup(log.args.orderId as Hex, log.args.resolvedOrder)
          await this.#record(chainId, log.eventName, log.args.orderId as Hex, log.transactionHash)
        }
        await this.#m.store.put('orders', CURSOR_PREFIX + chainId, to.toString())
        from = to + 1n
      }
    } catch (err) {
      this.#m.log.debug(
        { chainId: chainId.toString(), err: (err as Error).message },
        'settler events poll failed',
      )
    }
  }

  /** An `Open` of an order opened on chain: kept for the mempool (before the cursor passes its block). */
  async #notePickup(
    id: Hex,
    resolved: { readonly fillInstructions: readonly { readonly originData: Hex }[] } | undefined,
  ): Promise<void> {
    if (this.#m.onOpen === undefined) return
    const originData = resolved?.fillInstructions[0]?.originData
    if (originData === undefined) return
    let order: GaslessCrossChainOrder
    try {
      order = orderFromOriginData(originData)
    } catch (err) {
      this.#m.log.warn({ intent: id, err: (err as Error).message }, 'Open event with an undecodable order')
      return
    }
    // Signed orders (openFor) come with their signature through the mempool; only `open`'s travel unsigned.
    if (!isOnchainNonce(order.nonce)) return
    if (intentId(order) !== id.toLowerCase()) {
      this.#m.log.warn({ intent: id }, 'Open event whose order does not hash to its id')
      return
    }
    await this.#m.store.put('orders', PICKUP_PREFIX + id.toLowerCase(), originData.toLowerCase())
  }

  /** Hands the kept pickups to the mempool; drops those done or past their fill deadline. */
  async #pickUp(onOpen: (order: GaslessCrossChainOrder) => Promise<'done' | 'retry'>): Promise<void> {
    const rows = await this.#m.store.range<string>('orders', {
      gte: PICKUP_PREFIX,
      lt: prefixEnd(PICKUP_PREFIX),
      limit: MAX_PICKUPS_PER_POLL,
    })
    const nowSec = Math.floor((this.#m.now ?? Date.now)() / 1000)
    for (const [key, originData] of rows) {
      try {
        const order = orderFromOriginData(originData as Hex)
        if (order.fillDeadline <= nowSec || (await onOpen(order)) === 'done')
          await this.#m.store.del('orders', key)
      } catch (err) {
        this.#m.log.debug({ key, err: (err as Error).message }, 'pickup of an order opened on chain failed')
      }
    }
  }

  async #record(chainId: bigint, event: string, id: Hex, tx: Hex): Promise<void> {
    const key = ORDER_PREFIX + id.toLowerCase()
    const held = await this.#m.store.get<OrderSettlement>('orders', key)
    const base: OrderSettlement = held ?? {
      state: 'opened',
      chainId: chainId.toString(),
      openTx: null,
      claimTx: null,
      refundTx: null,
    }
    const next: OrderSettlement =
      event === 'Open'
        ? { ...base, openTx: tx }
        : event === 'Settled'
          ? { ...base, state: 'settled', claimTx: tx }
          : { ...base, state: 'refunded', refundTx: tx }
    const open = OPEN_PREFIX + id.toLowerCase()
    await this.#m.store.batch([
      { type: 'put', sublevel: 'orders', key, value: next },
      next.state === 'opened'
        ? {
            type: 'put',
            sublevel: 'orders',
            key: open,
            value: { chainId: next.chainId, seenAtMs: (this.#m.now ?? Date.now)() },
          }
        : { type: 'del', sublevel: 'orders', key: open },
    ])
    for (const l of this.#listeners) l(id.toLowerCase() as Hex, next)
  }
}
