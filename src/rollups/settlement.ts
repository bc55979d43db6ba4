/**
 * The executor's side of settlement (issue 10; INTERFACES.md, Settlement contracts): around the fill of
 * each intent assigned to this validator,
 *   1. open: the user's input escrowed on the origin settler (`openFor` with the user's signature and
 *      allowance), unless the order is opened there already (`orderStatus`, read before anything is sent);
 *   2. approve: a destination settler pulls an ERC-20 output from the executor, so it gets an allowance
 *      once per token;
 *   3. fill: the destination settler's `fill` (rollups/fill.ts `fillCall` with the settler), sent only once
 *      the open is mined: the executor never pays an output for an order whose input is not escrowed
 *      (docs/decisions.md, "Settlement: fill after open");
 *   4. claim: once the fill is committed, the escrowed input paid to the executor against the block's
 *      settlement root and commit certificate (settlement-claims.ts).
 * Every transaction goes through the executor's jobs: persisted before it is sent, one nonce each, the
 * chain checked before any resend.
 */
import type { Logger } from 'pino'
import {
  type Address,
  createPublicClient,
  encodeAbiParameters,
  encodeFunctionData,
  erc20Abi,
  type Hex,
  keccak256,
  maxUint256,
  type PublicClient,
} from 'viem'
import { decodeOrderData, isOnchainIntent, type SignedIntent } from '../codec/intent.ts'
import { murmurSettlerAbi } from '../contracts/abi.ts'
import { MurmurError } from '../errors.ts'
import type { Executor } from './executor.ts'
import { type RpcTransport, rpcTransport } from './rpc.ts'

export type SettlementErrorCode = 'NOT_OPENABLE' | 'ORDER_CLOSED' | 'NO_RPC'
/** An order that cannot be settled as asked. */
export class SettlementError extends MurmurError<SettlementErrorCode> {}

/** A rollup's settlement contracts (genesis `rollups[].settlement`). */
export interface SettlementContracts {
  readonly settler: Address
  readonly lightClient: Address
}

/** The settlement contracts of the rollups that have them (genesis `rollups[].settlement`), by chain id. */
export function settlementContracts(
  rollups: readonly {
    readonly chainId: number | bigint
    readonly settlement?: { readonly settler: string; readonly lightClient: string }
  }[],
): Map<bigint, SettlementContracts> {
  const out = new Map<bigint, SettlementContracts>()
  for (const r of rollups)
    if (r.settlement !== undefined)
      out.set(BigInt(r.chainId), {
        settler: r.settlement.settler.toLowerCase() as Address,
        lightClient: r.settlement.lightClient.toLowerCase() as Address,
      })
  return out
}

/** `orderStatus` values (INTERFACES.md). */
export const ORDER_STATUS = { none: 0, opened: 1, settled: 2, refunded: 3 } as const

const NATIVE: Address = '0x0000000000000000000000000000000000000000'

export interface SettlementFlowModules {
  /** Settlement contracts by chain id (rollups without them are served without escrow). */
  readonly contracts: ReadonlyMap<bigint, SettlementContracts>
  /** RPC URL by chain id. */
  readonly rpc: ReadonlyMap<number, string>
  readonly executor: Executor
  readonly log: Logger
}

/** Open and approve steps of this node's fills; the settler of each destination. */
export class SettlementFlow {
  readonly #m: SettlementFlowModules
  readonly #clients = new Map<bigint, PublicClient>()
  readonly #transports: RpcTransport[] = []
  /** Tokens approved to a settler, by `chainId/token`. */
  readonly #approved = new Map<string, Promise<void>>()

  constructor(modules: SettlementFlowModules) {
    this.#m = modules
    for (const [chainId, url] of modules.rpc) {
      if (!modules.contracts.has(BigInt(chainId))) continue
      const rpc = rpcTransport(url, { timeout: 5_000, retryCount: 1, batch: { wait: 0 } }, 2)
      this.#transports.push(rpc)
      this.#clients.set(BigInt(chainId), createPublicClient({ transport: rpc.transport }) as PublicClient)
    }
  }

  /** The settler of `chainId`, when the rollup has settlement contracts. */
  settlerOf(chainId: bigint): Address | undefined {
    return this.#m.contracts.get(chainId)?.settler
  }

  /** `orderStatus(id)` on the origin settler of `chainId`. */
  async orderStatus(chainId: bigint, id: Hex): Promise<number> {
    const c = this.#client(chainId)
    return Number(
      await c.readContract({
        address: this.#m.contracts.get(chainId)!.settler,
        abi: murmurSettlerAbi,
        functionName: 'orderStatus',
        args: [id],
      }),
    )
  }

  /**
   * The order escrowed on its origin before its fill: nothing when the origin has no settler (served
   * without escrow); `openFor` unless it is opened already (an order its user opened on chain, unsigned,
   * always is). Rejects SettlementError ORDER_CLOSED when it was settled or refunded, NOT_OPENABLE for a
   * native input (only its user can `open` it, paying) or an unsigned intent not seen opened.
   */
  async ensureOpened(id: Hex, intent: SignedIntent): Promise<void> {
    const order = intent.order
    const origin = this.#m.contracts.get(order.originChainId)
    if (origin === undefined) return
    const status = await this.orderStatus(order.originChainId, id)
    if (status === ORDER_STATUS.opened) return
    if (status !== ORDER_STATUS.none)
      throw new SettlementError('ORDER_CLOSED', `order ${id} is ${status === 2 ? 'settled' : 'refunded'}`)
    // An unsigned intent was proven opened by its user's own `open`; there is no signature to `openFor` it.
    if (isOnchainIntent(intent))
      throw new SettlementError(
        'NOT_OPENABLE',
        `order ${id} was opened on chain by its user, not seen opened here`,
      )
    if (decodeOrderData(order.orderData).inputToken.toLowerCase() === NATIVE)
      throw new SettlementError('NOT_OPENABLE', `order ${id} has a native input: only its user can open it`)
    const data = encodeFunctionData({
      abi: murmurSettlerAbi,
      functionName: 'openFor',
      // The order id as originFillerData (reserved, ignored by the settler): the marker a nonce scan finds.
      args: [order, intent.signature, id],
    })
    try {
      await this.#m.executor.transact({
        kind: 'open',
        id,
        chainId: order.originChainId,
        call: { to: origin.settler, value: 0n, data },
      })
    } catch (err) {
      // Another executor (before a re-assignment) may have opened it first: then ours reverted, and the
      // order is opened all the same.
      if ((await this.orderStatus(order.originChainId, id)) !== ORDER_STATUS.opened) throw err
    }
    this.#m.log.info({ intent: id, chainId: order.originChainId.toString() }, 'order opened on origin')
  }

  /** An ERC-20 output on a settler's chain: the settler may pull it from the executor (once per token). */
  async ensureAllowance(chainId: bigint, token: Address, amount: bigint): Promise<void> {
    const settler = this.settlerOf(chainId)
    const t = token.toLowerCase() as Address
    if (settler === undefined || t === NATIVE) return
    const key = `${chainId}/${t}`
    let p = this.#approved.get(key)
    if (p === undefined) {
      p = this.#approve(chainId, settler, t, amount)
      this.#approved.set(key, p)
      p.catch(() => this.#approved.delete(key))
    }
    await p
  }

  async #approve(chainId: bigint, settler: Address, token: Address, amount: bigint): Promise<void> {
    const owner = this.#m.executor.address
    const allowance = await this.#client(chainId).readContract({
      address: token,
      abi: erc20Abi,
      functionName: 'allowance',
      args: [owner, settler],
    })
    if (allowance >= amount) return
    // One id per (chain, settler, token): an allowance of max uint256 is asked once, ever. The chain is in
    // it: the devnet deploys the same settler and token addresses on every rollup.
    const id = keccak256(
      encodeAbiParameters(
        [{ type: 'uint256' }, { type: 'address' }, { type: 'address' }],
        [chainId, settler, token],
      ),
    )
    await this.#m.executor.transact({
      kind: 'approve',
      id,
      chainId,
      call: {
        to: token,
        value: 0n,
        data: encodeFunctionData({ abi: erc20Abi, functionName: 'approve', args: [settler, maxUint256] }),
      },
    })
  }

  /** The RPC client of a rollup with settlement contracts, undefined for others. */
  reader(chainId: bigint): PublicClient | undefined {
    return this.#clients.get(chainId)
  }

  #client(chainId: bigint): PublicClient {
    const c = this.#clients.get(chainId)
    if (c === undefined) throw new SettlementError('NO_RPC', `no RPC for settlement chain ${chainId}`)
    return c
  }

  async stop(): Promise<void> {
    await Promise.all(this.#transports.splice(0).map((t) => t.close()))
  }
}
