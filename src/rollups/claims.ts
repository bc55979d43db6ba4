/**
 * The executor's repayment (issue 10, step 4 of rollups/settlement.ts): once a block that commits this
 * validator's fills is decided, it claims the escrowed inputs on each origin settler with the block's
 * FILL leaves, their proofs, the header and the commit certificate: one `claim` per (block, origin chain),
 * batching the block's leaves. When the origin's light client does not trust the set that signed the
 * block, it first relays `rotate` with the certified boundary blocks of the epochs in between.
 *
 * Idempotent and crash-safe: every transaction is an executor job (persisted before it is sent, resumed by
 * `recover`), its id derived from what it claims; a leaf whose order is no longer `opened` on its origin
 * (claimed already, refunded) is left out before anything is sent. At start the last
 * {@link RESCAN_HEIGHTS} blocks are looked at again, for claims a crash cut off before they were recorded.
 */
import type { Logger } from 'pino'
import {
  type Address,
  createPublicClient,
  encodeAbiParameters,
  encodeFunctionData,
  keccak256,
  type PublicClient,
} from 'viem'
import { murmurSettlerAbi } from '../contracts/abi.ts'
import {
  type CertifiedSettlement,
  certifiedSettlement,
  LEAF_FILL,
  type SettlementLeaf,
  type SettlementSource,
} from '../state/settlement.ts'
import type { Executor } from './executor.ts'
import { ensureTrusted } from './rotation.ts'
import { type RpcTransport, rpcTransport } from './rpc.ts'
import { ORDER_STATUS, type SettlementContracts } from './settlement.ts'

/** Blocks looked at again at start for claims never recorded. */
export const RESCAN_HEIGHTS = 256n
/**
 * A claim that failed (an origin RPC timing out, a rotation that did not land) is tried again after
 * these delays, ms; after the last it waits for the next start's rescan. Without retries, one RPC
 * timeout left the escrow unclaimed for good (the crash soak: 3 of 80 escrows open, their intents filled).
 */
export const CLAIM_RETRY_MS: readonly number[] = [2_000, 5_000, 15_000, 30_000, 60_000]

export interface ClaimRelayerModules {
  readonly contracts: ReadonlyMap<bigint, SettlementContracts>
  readonly rpc: ReadonlyMap<number, string>
  readonly executor: Executor
  readonly source: SettlementSource
  /** The consensus set changes only after blocks whose height is a multiple of this (genesis). */
  readonly epochBlocks: number
  /** The highest committed height (the relayer's start scan ends there). */
  readonly head: () => bigint
  readonly log: Logger
}

/** Claims this executor's repayments as blocks commit its fills. */
export class ClaimRelayer {
  readonly #m: ClaimRelayerModules
  readonly #me: Address
  readonly #clients = new Map<bigint, PublicClient>()
  readonly #transports: RpcTransport[] = []
  /** Claims of one origin run one after another: rotations must not race each other. */
  readonly #queues = new Map<bigint, Promise<void>>()
  readonly #retries = new Set<NodeJS.Timeout>()
  #stopped = false

  constructor(modules: ClaimRelayerModules) {
    this.#m = modules
    this.#me = modules.executor.address
    for (const [chainId, url] of modules.rpc) {
      if (!modules.contracts.has(BigInt(chainId))) continue
      const rpc = rpcTransport(url, { timeout: 5_000, retryCount: 1, batch: { wait: 0 } }, 2)
      this.#transports.push(rpc)
      this.#clients.set(BigInt(chainId), createPublicClient({ transport: rpc.transport }) as PublicClient)
    }
  }

  /** Looks at the last {@link RESCAN_HEIGHTS} blocks for claims a crash cut off. */
  start(): void {
    const head = this.#m.head()
    const from = head > RESCAN_HEIGHTS ? head - RESCAN_HEIGHTS + 1n : 1n
    for (let h = from; h <= head; h++) this.committed(h)
  }

  /** Block `height` is committed: claim this executor's leaves of it. */
  committed(height: bigint, attempt = 0): void {
    if (this.#stopped) return
    void this.#leavesOf(height).then(
      (byOrigin) => {
        for (const [origin, leaves] of byOrigin)
          this.#enqueue(
            origin,
            () => this.#claim(height, origin, leaves),
            () => this.#retry(height, attempt),
          )
      },
      (err: unknown) => {
        this.#m.log.warn({ height, err: (err as Error).message }, 'reading settlement leaves failed')
        this.#retry(height, attempt)
      },
    )
  }

  /**
   * Claims this executor's leaves of block `height` still opened on their origin, once, without retries
   * (the settlement sweep's call: it comes back on its own). Resolves when the claims are done or failed.
   */
  async claimAgain(height: bigint): Promise<void> {
    if (this.#stopped) return
    const byOrigin = await this.#leavesOf(height)
    await Promise.all(
      [...byOrigin].map(([origin, leaves]) =>
        this.#enqueue(
          origin,
          () => this.#claim(height, origin, leaves),
          () => {},
        ),
      ),
    )
  }

  /** Looks at block `height` again later (its leaves still opened on their origin are claimed then). */
  #retry(height: bigint, attempt: number): void {
    const delay = CLAIM_RETRY_MS[attempt]
    if (this.#stopped || delay === undefined) return
    const t = setTimeout(() => {
      this.#retries.delete(t)
      this.committed(height, attempt + 1)
    }, delay)
    t.unref()
    this.#retries.add(t)
  }

  async stop(): Promise<void> {
    this.#stopped = true
    for (const t of this.#retries) clearTimeout(t)
    this.#retries.clear()
    await Promise.allSettled([...this.#queues.values()])
    await Promise.all(this.#transports.splice(0).map((t) => t.close()))
  }

  async #leavesOf(height: bigint): Promise<Map<bigint, SettlementLeaf[]>> {
    const out = new Map<bigint, SettlementLeaf[]>()
    for (const l of await this.#m.source.leaves(height)) {
      if (l.kind !== LEAF_FILL || l.executor.toLowerCase() !== this.#me) continue
      if (!this.#m.contracts.has(l.originChainId)) continue
      const list = out.get(l.originChainId) ?? []
      list.push(l)
      out.set(l.originChainId, list)
    }
    return out
  }

  #enqueue(origin: bigint, task: () => Promise<void>, onFailure: () => void): Promise<void> {
    const prev = this.#queues.get(origin) ?? Promise.resolve()
    const next = prev.then(task).catch((err: unknown) => {
      this.#m.log.warn(
        { chainId: origin.toString(), err: (err as Error).message },
        'claim failed; will retry',
      )
      onFailure()
    })
    this.#queues.set(origin, next)
    return next
  }

  async #claim(height: bigint, origin: bigint, leaves: readonly SettlementLeaf[]): Promise<void> {
    if (this.#stopped) return
    const contracts = this.#m.contracts.get(origin)!
    const client = this.#clients.get(origin)
    if (client === undefined) throw new Error(`no RPC for origin ${origin}`)
    const open: SettlementLeaf[] = []
    for (const l of leaves) {
      const status = Number(
        await client.readContract({
          address: contracts.settler,
          abi: murmurSettlerAbi,
          functionName: 'orderStatus',
          args: [l.orderId],
        }),
      )
      if (status === ORDER_STATUS.opened) open.push(l)
    }
    if (open.length === 0) return
    const e = await this.#evidence(height)
    await ensureTrusted(
      {
        client,
        lightClient: contracts.lightClient,
        chainId: origin,
        epochBlocks: this.#m.epochBlocks,
        source: this.#m.source,
        transact: (job) => this.#m.executor.transact(job),
        log: this.#m.log,
      },
      e.block.validatorsHash,
      height,
    )
    const index = new Map(e.tree.leaves.map((l, i) => [l.orderId, i]))
    const proofs = open.map((l) => e.tree.proof(index.get(l.orderId)!))
    const data = encodeFunctionData({
      abi: murmurSettlerAbi,
      functionName: 'claim',
      args: [open.map(leafArg), proofs, e.proof as never],
    })
    const id = keccak256(
      encodeAbiParameters(
        [{ type: 'uint256' }, { type: 'uint64' }, { type: 'bytes32[]' }],
        [origin, height, open.map((l) => l.orderId)],
      ),
    )
    const r = await this.#m.executor.transact({
      kind: 'claim',
      id,
      chainId: origin,
      call: { to: contracts.settler, value: 0n, data },
    })
    this.#m.log.info(
      { height, chainId: origin.toString(), orders: open.length, txHash: r.txHash },
      'claimed repayment',
    )
  }

  async #evidence(height: bigint): Promise<CertifiedSettlement> {
    const r = await certifiedSettlement(this.#m.source, height)
    if (!r.ok) throw new Error(`no settlement evidence for block ${height}: ${r.code}: ${r.message}`)
    return r.value
  }
}

/** A leaf as the settler's `Leaf` struct. */
function leafArg(l: SettlementLeaf) {
  return {
    kind: l.kind,
    orderId: l.orderId,
    originChainId: l.originChainId,
    destinationChainId: l.destinationChainId,
    executor: l.executor,
    token: l.token,
    amount: l.amount,
    recipient: l.recipient,
  }
}
