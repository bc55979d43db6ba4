/**
 * Fills that landed on chain but were never announced (issues 12 and 13: the crash soak and the netns
 * rollup-outage scenario). Executor A fills order O on rollup R, the settler records A as its filler,
 * and A's announcement never reaches the network (A crashed between send and announce, its gossip was
 * lost, it was offline long enough for its assignment to move). The intent is re-assigned on R
 * (state/plan.ts `rerouteOf`), the new assignee's fill reverts `AlreadyFilled`, and nobody would ever
 * announce a fill: the escrow stays open, the intent re-assigned forever.
 *
 * Here the assignee announces A's fill for it: it reads the settler's `filledBy(orderId)` and the
 * `OutputFilled` event of the order (transaction, block number and hash, filler), waits until that block
 * is final for the rollup, and announces that fill through the normal path, with the real filler as its
 * `executor` (so the FILL leaf repays the one who paid the recipient), signed by itself as relayer
 * (`signRelayedFill`). Validators check it on chain exactly as any fill (rollups/fill.ts `judgeFill`:
 * sent by the filler, the settler's `fill` call, the `OutputFilled` event); the signature only proves who
 * relayed it (docs/decisions.md, "Fills relayed by the assignee").
 */
import type { Logger } from 'pino'
import type { Address, Hex, LocalAccount, PublicClient } from 'viem'
import { murmurSettlerAbi } from '../contracts/abi.ts'
import { abortableDelay } from './delay.ts'
import { type Fill, type SignedFill, signRelayedFill } from './fill.ts'

/** A fill as the destination settler recorded it. */
export interface SettlerFill {
  readonly txHash: Hex
  readonly blockNumber: bigint
  readonly blockHash: Hex
  /** Lowercase: who called the settler's `fill`, the one its FILL leaf repays. */
  readonly filler: Address
}

/** What the relay reads of a rollup. */
export type RelayChain = Pick<PublicClient, 'readContract' | 'getContractEvents' | 'getBlockNumber'>

const ZERO = /^0x0{40}$/i

/** `filledBy(orderId)` on `settler`, lowercase; undefined when nobody filled the order there. */
export async function settlerFiller(
  client: RelayChain,
  settler: Address,
  orderId: Hex,
): Promise<Address | undefined> {
  const who = (await client.readContract({
    address: settler,
    abi: murmurSettlerAbi,
    functionName: 'filledBy',
    args: [orderId],
  })) as Address
  return ZERO.test(who) ? undefined : (who.toLowerCase() as Address)
}

/** Options of {@link findSettlerFill}. */
export interface FindFillOptions {
  /** Blocks one `eth_getLogs` covers. Default 2,000 (what public RPCs allow). */
  readonly windowBlocks?: bigint
  /** Blocks below the head looked at in all. Default 200,000. */
  readonly maxBlocks?: bigint
}

/**
 * The settler's `OutputFilled` event of `orderId`, looked for from the head backwards a window at a
 * time: a fill that needs relaying is recent (it landed before its intent's fill deadline).
 */
export async function findSettlerFill(
  client: RelayChain,
  settler: Address,
  orderId: Hex,
  opts: FindFillOptions = {},
): Promise<SettlerFill | undefined> {
  const window = opts.windowBlocks ?? 2_000n
  const floorDistance = opts.maxBlocks ?? 200_000n
  const head = await client.getBlockNumber({ cacheTime: 0 })
  const floor = head > floorDistance ? head - floorDistance : 0n
  for (let to = head; to >= floor; to -= window) {
    const from = to - window + 1n > floor ? to - window + 1n : floor
    const logs = await client.getContractEvents({
      address: settler,
      abi: murmurSettlerAbi,
      eventName: 'OutputFilled',
      args: { orderId },
      fromBlock: from,
      toBlock: to,
    })
    const log = logs.at(-1)
    if (log !== undefined && log.blockHash !== null && log.transactionHash !== null) {
      return {
        txHash: log.transactionHash.toLowerCase() as Hex,
        blockNumber: log.blockNumber,
        blockHash: log.blockHash.toLowerCase() as Hex,
        filler: (log.args as { filler: Address }).filler.toLowerCase() as Address,
      }
    }
    if (from === floor) break
  }
  return undefined
}

/** Collaborators of a {@link FillRelay}. */
export interface FillRelayModules {
  /** An RPC client of a rollup this node fills on, undefined for others. */
  readonly client: (chainId: bigint) => RelayChain | undefined
  /** The settler of a rollup with settlement contracts. */
  readonly settler: (chainId: bigint) => Address | undefined
  /** Genesis `rollups[].confirmations`: a block is final once `head - n` reaches it. */
  readonly confirmations: (chainId: bigint) => bigint
  /** This node's validator: signs the relays. */
  readonly account: Pick<LocalAccount, 'address' | 'signTypedData'>
  readonly networkId: string
  /** The executor's publish path: pending here, then gossiped on `fills`. */
  readonly publish: (fill: SignedFill) => Promise<void>
  readonly log: Logger
}

/** Options of a {@link FillRelay}. */
export interface FillRelayOptions {
  /** Head polls while waiting for the fill's block to be final, ms. Default 250. */
  readonly pollMs: number
  /** The longest wait for finality (or for the event to show in the logs), ms. Default 60,000. */
  readonly waitMs: number
}

/** Announces, for this node's assignments, fills their settler recorded that nobody announced. */
export class FillRelay {
  readonly #o: FillRelayOptions
  readonly #m: FillRelayModules
  readonly #inflight = new Map<string, Promise<SignedFill | undefined>>()
  readonly #abort = new AbortController()

  constructor(options: Partial<FillRelayOptions>, modules: FillRelayModules) {
    this.#o = { pollMs: 250, waitMs: 60_000, ...options }
    this.#m = modules
  }

  /**
   * When the settler of `chainId` records a fill of `intentId`, announces it (relayed, the filler as its
   * executor) and resolves with it; undefined when the order is not filled there (or the rollup has no
   * settler or RPC here). Rejects when the RPC fails or the fill's block is not final within `waitMs`.
   * At most one relay of an intent on a chain at a time.
   */
  relayIfFilled(intentId: Hex, chainId: bigint): Promise<SignedFill | undefined> {
    const key = `${chainId}/${intentId.toLowerCase()}`
    let p = this.#inflight.get(key)
    if (p === undefined) {
      p = this.#relay(intentId.toLowerCase() as Hex, chainId).finally(() => this.#inflight.delete(key))
      this.#inflight.set(key, p)
    }
    return p
  }

  async #relay(intentId: Hex, chainId: bigint): Promise<SignedFill | undefined> {
    const client = this.#m.client(chainId)
    const settler = this.#m.settler(chainId)
    if (client === undefined || settler === undefined) return undefined
    const filler = await settlerFiller(client, settler, intentId)
    if (filler === undefined) return undefined
    const until = Date.now() + this.#o.waitMs
    let found = await findSettlerFill(client, settler, intentId)
    // filledBy and the logs may come from different backends behind one RPC: give the index a moment.
    while (found === undefined && Date.now() < until && !this.#abort.signal.aborted) {
      await this.#delay()
      found = await findSettlerFill(client, settler, intentId)
    }
    if (found === undefined) throw new Error(`order ${intentId} is filled on ${chainId} but no OutputFilled`)
    // Announced before its block is final, the fill would only be checked as 'pending' by validators.
    const final = this.#m.confirmations(chainId)
    while ((await client.getBlockNumber({ cacheTime: 0 })) - found.blockNumber < final) {
      if (Date.now() >= until || this.#abort.signal.aborted)
        throw new Error(`the fill of ${intentId} on ${chainId} is not final in time`)
      await this.#delay()
    }
    const fill: Fill = {
      intentId,
      chainId,
      txHash: found.txHash,
      blockNumber: found.blockNumber,
      blockHash: found.blockHash,
      executor: found.filler,
    }
    const signed = await signRelayedFill(this.#m.account, this.#m.networkId, fill)
    await this.#m.publish(signed)
    this.#m.log.warn(
      { intent: intentId, chainId: chainId.toString(), filler: found.filler, txHash: found.txHash },
      'order filled on chain but never announced: relayed its fill',
    )
    return signed
  }

  #delay(): Promise<void> {
    return abortableDelay(this.#o.pollMs, this.#abort.signal)
  }

  /** Stops waiting: relays in flight reject. */
  stop(): void {
    this.#abort.abort()
  }
}
