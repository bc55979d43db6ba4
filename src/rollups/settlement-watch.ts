/**
 * What the origin settlers say of each order (issue 10; INTERFACES.md, Intent lifecycle): every node reads
 * the `Open`, `Settled` and `Refunded` events of the settler of each rollup with settlement contracts, a
 * block range at a time, and keeps per order its settlement state (`opened` -> `settled` | `refunded`) with
 * the transactions, for `GET /v1/intents/:id` (`settlement`) and the `intent` events of `GET /v1/events`.
 * A fact of the chains, not of consensus: each node reads it from its own RPC.
 */
import type { Logger } from 'pino'
import { createPublicClient, type Hex, type PublicClient } from 'viem'
import { murmurSettlerAbi } from '../contracts/abi.ts'
import type { Store } from '../state/store.ts'
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
}

const ORDER_PREFIX = 'o/'
const CURSOR_PREFIX = 'c/'
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

  /** One pass over every settler (skipped while the previous one runs). */
  async poll(): Promise<void> {
    if (this.#polling) return
    this.#polling = true
    try {
      await Promise.all([...this.#clients].map(([c, client]) => this.#pollChain(c, client)))
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
        for (const log of logs)
          await this.#record(chainId, log.eventName, log.args.orderId as Hex, log.transactionHash)
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
    await this.#m.store.put('orders', key, next)
    for (const l of this.#listeners) l(id.toLowerCase() as Hex, next)
  }
}
