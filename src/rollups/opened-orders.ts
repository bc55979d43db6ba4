/**
 * Proof of the orders users open on chain themselves (`open`, issue 10 item 4): such an intent travels
 * unsigned, and what proves it is its origin settler's `orderStatus(id) == 1`, read by every node on its
 * own RPC at a block final for that rollup. One reader serves the mempool (gossip, API, the settlement
 * watch's pickup) and block validation (a validator that does not hold the intent), with verdicts kept
 * like fills' (node/consensus.ts): definite ones are kept, 'pending' and 'unknown' are asked again.
 */
import { type Address, createPublicClient, type Hex, type PublicClient } from 'viem'
import type { GaslessCrossChainOrder } from '../codec/intent.ts'
import { murmurSettlerAbi } from '../contracts/abi.ts'
import type { OpenedVerdict } from '../mempool/validate.ts'
import { type RpcTransport, rpcTransport } from './rpc.ts'
import { ORDER_STATUS } from './settlement.ts'

/** What the reader needs of one rollup (the genesis entry and this node's RPC for it). */
export interface OpenedOrdersRollup {
  readonly chainId: number | bigint
  readonly settlement?: { readonly settler: string }
  readonly confirmations?: number | bigint
}

/** An origin's settler read at its newest final block: the order's status and that block's time. */
export type FinalStatusReader = (id: Hex) => Promise<{ status: number; blockTimeSec: bigint }>

/** Verdicts kept at most (the oldest are dropped first). */
const MAX_VERDICTS = 20_000

/** `orderStatus(id)` of `settler` at the newest block `confirmations` under the head, with its time. */
export function finalStatusReader(
  client: PublicClient,
  settler: Address,
  confirmations: bigint,
): FinalStatusReader {
  return async (id) => {
    const head = await client.getBlockNumber({ cacheTime: 0 })
    const at = head > confirmations ? head - confirmations : 0n
    const [block, status] = await Promise.all([
      client.getBlock({ blockNumber: at }),
      client.readContract({
        address: settler,
        abi: murmurSettlerAbi,
        functionName: 'orderStatus',
        args: [id],
        blockNumber: at,
      }),
    ])
    return { status: Number(status), blockTimeSec: block.timestamp }
  }
}

/**
 * The verdict of one status read. `open` sets `openDeadline` to its block's time and block times never
 * go back, so a final block later than that which still says 0 proves the order is never opened.
 */
export function openedVerdict(
  order: Pick<GaslessCrossChainOrder, 'openDeadline'>,
  read: { status: number; blockTimeSec: bigint },
): OpenedVerdict {
  if (read.status === ORDER_STATUS.opened) return 'valid'
  if (read.status !== ORDER_STATUS.none) return 'invalid'
  return read.blockTimeSec > BigInt(order.openDeadline) ? 'invalid' : 'pending'
}

/** `verify(id, order)`: is the order of an unsigned intent opened on its origin settler, on this node's RPC. */
export class OpenedOrders {
  readonly #readers: ReadonlyMap<bigint, FinalStatusReader>
  readonly #transports: readonly RpcTransport[]
  readonly #verdicts = new Map<Hex, Promise<OpenedVerdict>>()

  constructor(readers: ReadonlyMap<bigint, FinalStatusReader>, transports: readonly RpcTransport[] = []) {
    this.#readers = readers
    this.#transports = transports
  }

  /** Readers for every rollup with settlement contracts and an RPC URL here. */
  static connect(rollups: readonly OpenedOrdersRollup[], rpc: ReadonlyMap<number, string>): OpenedOrders {
    const readers = new Map<bigint, FinalStatusReader>()
    const transports: RpcTransport[] = []
    for (const r of rollups) {
      const url = rpc.get(Number(r.chainId))
      if (r.settlement === undefined || url === undefined) continue
      const t = rpcTransport(url, { timeout: 5_000, retryCount: 1, batch: { wait: 0 } }, 2)
      transports.push(t)
      const client = createPublicClient({ transport: t.transport }) as PublicClient
      readers.set(
        BigInt(r.chainId),
        finalStatusReader(
          client,
          r.settlement.settler.toLowerCase() as Address,
          BigInt(r.confirmations ?? 0),
        ),
      )
    }
    return new OpenedOrders(readers, transports)
  }

  /**
   * 'valid' when the order is opened on its origin settler, 'invalid' when it is settled, refunded or never
   * opened (see {@link openedVerdict}), 'pending' when not opened yet, 'unknown' when this node has no RPC
   * for the origin or the read fails. At most one read per order at a time; definite verdicts are kept.
   */
  verify(
    id: Hex,
    order: Pick<GaslessCrossChainOrder, 'originChainId' | 'openDeadline'>,
  ): Promise<OpenedVerdict> {
    const key = id.toLowerCase() as Hex
    const held = this.#verdicts.get(key)
    if (held !== undefined) return held
    const read = this.#readers.get(order.originChainId)
    if (read === undefined) return Promise.resolve('unknown')
    const p = read(key)
      .then((r) => openedVerdict(order, r))
      .catch((): OpenedVerdict => 'unknown')
    this.#verdicts.set(key, p)
    if (this.#verdicts.size > MAX_VERDICTS) {
      const oldest = this.#verdicts.keys().next().value
      if (oldest !== undefined) this.#verdicts.delete(oldest)
    }
    void p.then((v) => {
      if (v === 'pending' || v === 'unknown') this.#verdicts.delete(key)
    })
    return p
  }

  async close(): Promise<void> {
    await Promise.all(this.#transports.map((t) => t.close()))
  }
}
