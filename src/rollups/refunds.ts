/**
 * Validators relay refunds (INTERFACES.md, Settlement contracts; issue 10 item 6): for every REFUND leaf
 * a committed block holds, the settler's `refund([leaf], [proof], commitProof)` on the order's origin
 * rollup, through this node's executor (a `refund` job: persisted before it is sent, the chain checked
 * before any resend). Who sends: the proposer of the next block at once when that block commits; every
 * other validator after `2 × blockIntervalMs + its index in the consensus set × 1 s`, so that one of them
 * lands it when the proposer does not. Before sending, each reads `orderStatus` on the origin and skips an
 * order that is no longer opened: the first refund to land wins and the others send nothing (or, in a
 * race, revert with `OrderNotOpened`, which is logged and dropped).
 *
 * A light client that does not trust the block's validator set (`isTrusted(validatorsHash)` false: it is
 * behind by an epoch or more) is rotated first (rollups/rotation.ts). If that fails the refund is not sent
 * and a warning says so; the order stays refundable by this node's next attempt, by anyone through
 * `GET /v1/settlement/:height`, and by anyone without the network after `fillDeadline + refundGraceSec`
 * (`refundExpired`).
 *
 * That last path is also the validators' backstop ({@link RefundRelayer.onExpired}): an intent that
 * expired without a REFUND leaf (its block's proposer could not confirm the order opened in time, or
 * a crash lost the relay) leaves its escrow opened; at `fillDeadline + refundGraceSec`, plus its index
 * in the set × `stepMs`, each validator reads `orderStatus` and, if the order is still opened, sends
 * `refundExpired(orderId)` (anyone may; the user is paid). Nothing escrowed stays open. The schedule
 * lives in memory: a validator restarted meanwhile leaves its turn to the others.
 */
import type { Logger } from 'pino'
import { type Address, createPublicClient, encodeFunctionData, type Hex, type PublicClient } from 'viem'
import { murmurLightClientAbi, murmurSettlerAbi } from '../contracts/abi.ts'
import {
  type CertifiedSettlement,
  certifiedSettlement,
  LEAF_REFUND,
  type SettlementSource,
} from '../state/settlement.ts'
import { cmp } from '../state/types.ts'
import type { TxJob, TxResult } from './executor.ts'
import type { GenesisRollup } from './health-view.ts'
import { ensureTrusted } from './rotation.ts'
import { type RpcTransport, rpcTransport } from './rpc.ts'
import { ORDER_STATUS, type SettlementContracts } from './settlement.ts'

/**
 * `orderStatus(id)` of `settler` read at the newest block final for its rollup (`confirmations` blocks
 * under the head; the head itself for 0).
 */
export function orderStatusReader(
  client: PublicClient,
  settler: Address,
  confirmations: bigint,
): (id: Hex) => Promise<number> {
  return async (id) => {
    const at = confirmations === 0n ? undefined : (await client.getBlockNumber()) - confirmations
    const status = await client.readContract({
      address: settler,
      abi: murmurSettlerAbi,
      functionName: 'orderStatus',
      args: [id],
      ...(at === undefined || at < 0n ? {} : { blockNumber: at }),
    })
    return Number(status)
  }
}

/** `isTrusted(validatorsHash)` of a light client. */
export function isTrustedReader(client: PublicClient, lightClient: Address): (hash: Hex) => Promise<boolean> {
  return (hash) =>
    client.readContract({
      address: lightClient,
      abi: murmurLightClientAbi,
      functionName: 'isTrusted',
      args: [hash],
    })
}

/** One origin rollup as the relayer uses it. */
export interface RefundOrigin {
  readonly contracts: SettlementContracts
  /** `orderStatus` on its settler (see {@link orderStatusReader}). */
  orderStatus(id: Hex): Promise<number>
  /** `isTrusted` on its light client. */
  isTrusted(validatorsHash: Hex): Promise<boolean>
  /** An RPC client of the rollup (rotations read and send through it). */
  readonly client?: PublicClient
}

/**
 * The origins a node relays refunds to: every rollup of `rollups` with settlement contracts and an RPC URL
 * in `rpc`, read at the rollup's final block. `close` ends their transports.
 */
export function refundOrigins(
  rollups: readonly (Pick<GenesisRollup, 'chainId' | 'settlement'> & {
    readonly confirmations?: number | bigint
  })[],
  rpc: ReadonlyMap<number, string>,
): { origins: Map<bigint, RefundOrigin>; close: () => Promise<void> } {
  const origins = new Map<bigint, RefundOrigin>()
  const transports: RpcTransport[] = []
  for (const r of rollups) {
    const url = rpc.get(Number(r.chainId))
    if (r.settlement === undefined || url === undefined) continue
    const t = rpcTransport(url, { timeout: 5_000, retryCount: 1, batch: { wait: 0 } })
    transports.push(t)
    const client = createPublicClient({ transport: t.transport }) as PublicClient
    const contracts = {
      settler: r.settlement.settler as Address,
      lightClient: r.settlement.lightClient as Address,
    }
    origins.set(BigInt(r.chainId), {
      contracts,
      orderStatus: orderStatusReader(client, contracts.settler, BigInt(r.confirmations ?? 0)),
      isTrusted: isTrustedReader(client, contracts.lightClient),
      client,
    })
  }
  return { origins, close: async () => void (await Promise.all(transports.map((t) => t.close()))) }
}

/** Options of a {@link RefundRelayer}. */
export interface RefundRelayerOptions {
  /** The network's block interval (genesis `params.blockIntervalMs`). */
  readonly blockIntervalMs: number
  /** A validator that is not the next proposer waits `2 × blockIntervalMs + index × this`. Default 1 000. */
  readonly stepMs?: number
  /** Genesis `params.refundGraceSec`: after `fillDeadline +` it, the settler's `refundExpired` is open. */
  readonly refundGraceSec?: number
  /** Wall clock, ms (tests). */
  readonly now?: () => number
}

/** An intent the network let expire, as {@link RefundRelayer.onExpired} takes it. */
export interface ExpiredOrder {
  readonly id: Hex
  readonly originChainId: bigint
  /** The order's fill deadline, unix seconds. */
  readonly fillDeadlineSec: bigint
  /** The consensus set now: a validator's index in it orders the turns. */
  readonly consensusSet: ReadonlyMap<Address, bigint>
}

/** Seconds past `fillDeadline + refundGraceSec` before the first turn (block times run a little behind). */
const EXPIRED_MARGIN_SEC = 2

/** Collaborators of a {@link RefundRelayer}. */
export interface RefundRelayerModules {
  /** This node's validator address. */
  readonly self: Address
  /** Committed blocks, their leaves, certificates and signing sets. */
  readonly source: SettlementSource
  /** Origins with settlement contracts and an RPC on this node, by chain id. */
  readonly origins: ReadonlyMap<bigint, RefundOrigin>
  /** The executor's settlement jobs (`Executor.transact`); undefined when this node has no executor. */
  readonly transact: (job: TxJob) => Promise<TxResult> | undefined
  /** Genesis `params.epochBlocks`: with it, a light client that is behind is rotated first (rotation.ts). */
  readonly epochBlocks?: number
  readonly log: Logger
}

/** A committed block, as the relayer needs it (the application's CommitEvent fits). */
export interface RelayedCommit {
  readonly height: bigint
  /** Its proposer (lowercase) and the intents it refunds (consensus/block.ts `Block`). */
  readonly block: { readonly proposer: Address; readonly refunds?: readonly Hex[] }
  /** The consensus set after the block: a validator's index in it orders the fallbacks. */
  readonly state: { readonly consensusSet: ReadonlyMap<Address, bigint> }
}

/** What one relay did, for logs and tests. */
export interface RelayOutcome {
  readonly sent: Hex[]
  /** Already refunded (or settled) on origin: nothing sent. */
  readonly skipped: Hex[]
  /** Not sent or not landed (untrusted set, no RPC, revert, RPC failure). */
  readonly failed: Hex[]
}

/** Relays the refunds of committed blocks (see the module comment). */
export class RefundRelayer {
  readonly #o: Required<RefundRelayerOptions>
  readonly #m: RefundRelayerModules
  /** Heights with refunds not relayed yet by this node, with the fallback timer. */
  readonly #due = new Map<bigint, NodeJS.Timeout>()
  readonly #running = new Set<Promise<unknown>>()
  /** Expired orders waiting for their refundExpired turn, by id. */
  readonly #expired = new Map<Hex, NodeJS.Timeout>()
  #stopped = false

  constructor(options: RefundRelayerOptions, modules: RefundRelayerModules) {
    this.#o = { stepMs: 1_000, refundGraceSec: 3_600, now: Date.now, ...options }
    this.#m = modules
  }

  /**
   * Call when an intent expires on an origin with settlement: schedules this validator's turn to
   * `refundExpired` it if it is still opened then (see the module comment).
   */
  onExpired(e: ExpiredOrder): void {
    if (this.#stopped || this.#expired.has(e.id) || !this.#m.origins.has(e.originChainId)) return
    const self = this.#m.self.toLowerCase() as Address
    const order = [...e.consensusSet.keys()].sort(cmp)
    const index = order.indexOf(self)
    const openAtMs = Number(e.fillDeadlineSec + BigInt(this.#o.refundGraceSec + EXPIRED_MARGIN_SEC)) * 1000
    const turn = (index < 0 ? order.length : index) * this.#o.stepMs
    const delay = Math.max(0, openAtMs - this.#o.now()) + turn
    const timer = setTimeout(() => {
      this.#expired.delete(e.id)
      const p = this.refundExpired(e.id, e.originChainId).catch((err) =>
        this.#m.log.warn({ err, intent: e.id }, 'refundExpired failed'),
      )
      this.#running.add(p)
      void p.finally(() => this.#running.delete(p))
    }, delay)
    timer.unref()
    this.#expired.set(e.id, timer)
  }

  /** Sends `refundExpired(id)` on its origin if the order is still opened there; what it did. */
  async refundExpired(id: Hex, originChainId: bigint): Promise<keyof RelayOutcome> {
    const origin = this.#m.origins.get(originChainId)
    if (origin === undefined) return 'failed'
    if ((await origin.orderStatus(id)) !== ORDER_STATUS.opened) return 'skipped'
    const log = this.#m.log.child({ intent: id, chainId: originChainId.toString() })
    const job = this.#m.transact({
      kind: 'refund-expired',
      id,
      chainId: originChainId,
      call: {
        to: origin.contracts.settler,
        value: 0n,
        data: encodeFunctionData({ abi: murmurSettlerAbi, functionName: 'refundExpired', args: [id] }),
      },
    })
    if (job === undefined) return 'failed'
    try {
      const tx = await job
      log.info({ txHash: tx.txHash }, 'expired order refunded without the network (refundExpired)')
      return 'sent'
    } catch (err) {
      if ((await origin.orderStatus(id).catch(() => undefined)) === ORDER_STATUS.refunded) return 'skipped'
      throw err
    }
  }

  /** Call after every commit: schedules the block's refunds, relays the parent's when we propose this one. */
  onCommit(e: RelayedCommit): void {
    if (this.#stopped) return
    const self = this.#m.self.toLowerCase() as Address
    const parent = e.height - 1n
    if (this.#due.has(parent) && e.block.proposer === self) this.#fire(parent)
    if ((e.block.refunds?.length ?? 0) === 0) return
    const order = [...e.state.consensusSet.keys()].sort(cmp)
    const index = order.indexOf(self)
    const delay = 2 * this.#o.blockIntervalMs + (index < 0 ? order.length : index) * this.#o.stepMs
    this.#due.set(
      e.height,
      setTimeout(() => this.#fire(e.height), delay),
    )
  }

  #fire(height: bigint): void {
    const timer = this.#due.get(height)
    if (timer === undefined) return
    clearTimeout(timer)
    this.#due.delete(height)
    const p = this.relay(height).catch((err) =>
      this.#m.log.warn({ err, height: height.toString() }, 'refund relay failed'),
    )
    this.#running.add(p)
    void p.finally(() => this.#running.delete(p))
  }

  /** Relays the REFUND leaves of the committed block at `height` whose orders are still opened. */
  async relay(height: bigint): Promise<RelayOutcome> {
    const out: RelayOutcome = { sent: [], skipped: [], failed: [] }
    const r = await certifiedSettlement(this.#m.source, height)
    if (!r.ok) {
      this.#m.log.warn({ height: height.toString(), code: r.code }, `refunds not relayed: ${r.message}`)
      return out
    }
    const s = r.value
    const trusted = new Map<bigint, Promise<boolean>>()
    await Promise.all(
      s.tree.leaves.map(async (leaf, i) => {
        if (leaf.kind !== LEAF_REFUND) return
        const outcome = await this.#relayLeaf(s, i, trusted).catch((err) => {
          this.#m.log.warn({ err, intent: leaf.orderId }, 'refund not relayed')
          return 'failed' as const
        })
        out[outcome].push(leaf.orderId)
      }),
    )
    return out
  }

  async #relayLeaf(
    s: CertifiedSettlement,
    i: number,
    trusted: Map<bigint, Promise<boolean>>,
  ): Promise<keyof RelayOutcome> {
    const leaf = s.tree.leaves[i]!
    const log = this.#m.log.child({ intent: leaf.orderId, chainId: leaf.originChainId.toString() })
    const origin = this.#m.origins.get(leaf.originChainId)
    if (origin === undefined) {
      log.warn('refund not relayed: no RPC or no settlement contracts for its origin here')
      return 'failed'
    }
    if ((await origin.orderStatus(leaf.orderId)) !== ORDER_STATUS.opened) return 'skipped'
    let t = trusted.get(leaf.originChainId)
    if (t === undefined) {
      t = origin.isTrusted(s.block.validatorsHash)
      trusted.set(leaf.originChainId, t)
    }
    if (!(await t) && origin.client !== undefined && this.#m.epochBlocks !== undefined) {
      // Behind by an epoch or more: relay the rotations first, then refund.
      const transact = this.#m.transact
      const ok = await ensureTrusted(
        {
          client: origin.client,
          lightClient: origin.contracts.lightClient,
          chainId: leaf.originChainId,
          epochBlocks: this.#m.epochBlocks,
          source: this.#m.source,
          transact: (job) => transact(job) ?? Promise.reject(new Error('this node has no executor')),
          log: this.#m.log,
        },
        s.block.validatorsHash,
        s.block.height,
      ).then(
        () => true,
        (err: unknown) => {
          log.warn({ err: (err as Error).message }, 'rotating the light client failed')
          return false
        },
      )
      t = Promise.resolve(ok)
      trusted.set(leaf.originChainId, t)
    }
    if (!(await t)) {
      log.warn(
        { validatorsHash: s.block.validatorsHash, height: s.block.height.toString() },
        "refund not relayed: the origin's light client does not trust this block's validator set " +
          '(and it could not be rotated)',
      )
      return 'failed'
    }
    const data = encodeFunctionData({
      abi: murmurSettlerAbi,
      functionName: 'refund',
      args: [[leaf], [s.tree.proof(i)], s.proof],
    })
    const job = this.#m.transact({
      kind: 'refund',
      id: leaf.orderId,
      chainId: leaf.originChainId,
      call: { to: origin.contracts.settler, value: 0n, data },
    })
    if (job === undefined) {
      log.warn('refund not relayed: this node has no executor')
      return 'failed'
    }
    try {
      const tx = await job
      log.info({ txHash: tx.txHash }, 'refund relayed')
      return 'sent'
    } catch (err) {
      // Another validator's refund landed first: the order is refunded, which is all that matters.
      if ((await origin.orderStatus(leaf.orderId).catch(() => undefined)) === ORDER_STATUS.refunded) {
        log.debug({ err: (err as Error).message }, 'refund landed by another relayer first')
        return 'skipped'
      }
      throw err
    }
  }

  /** Cancels the timers and waits for the relays in flight. */
  async stop(): Promise<void> {
    this.#stopped = true
    for (const t of this.#due.values()) clearTimeout(t)
    this.#due.clear()
    for (const t of this.#expired.values()) clearTimeout(t)
    this.#expired.clear()
    await Promise.allSettled([...this.#running])
  }
}
