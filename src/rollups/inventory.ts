/**
 * The executor's inventory: what this node's account holds of the network's inventory tokens (the native
 * coin and the asset table's tokens, state/assets.ts) on each rollup it has an RPC for. Polled on a timer;
 * the latest figures ride on this validator's precommits (vote extension, rollups/observation.ts), and
 * every node's router gives no executor a fill it could not pay.
 *
 * A rollup whose poll fails reports nothing until a poll succeeds again: an executor that cannot reach a
 * rollup cannot fill there either, and a balance it reports as absent counts as zero.
 */
import type { Logger } from 'pino'
import { type Address, createPublicClient, erc20Abi, type PublicClient } from 'viem'
import type { Balance } from './observation.ts'
import { type RpcTransport, rpcTransport } from './rpc.ts'

export interface InventoryOptions {
  /** RPC URL by chain id. */
  readonly rollups: ReadonlyMap<number, string>
  /** Poll period, milliseconds. */
  readonly intervalMs: number
  readonly rpcTimeoutMs: number
}

export const DEFAULT_INVENTORY_OPTIONS: Omit<InventoryOptions, 'rollups'> = {
  intervalMs: 1_000,
  rpcTimeoutMs: 2_000,
}

export interface InventoryModules {
  /** The account whose balances are read (lowercase or checksummed). */
  readonly address: Address
  /** Tokens to read on a chain (0x0…0: the native coin). */
  readonly tokens: (chainId: bigint) => readonly Address[]
  readonly log: Logger
}

const NATIVE: Address = '0x0000000000000000000000000000000000000000'

/** Polls the account's balances on every rollup; `balances()` is the latest complete poll of each. */
export class InventoryMonitor {
  readonly #o: InventoryOptions
  readonly #m: InventoryModules
  readonly #clients = new Map<bigint, PublicClient>()
  readonly #transports: RpcTransport[] = []
  readonly #latest = new Map<bigint, readonly Balance[]>()
  #timer: NodeJS.Timeout | undefined
  #polling = false

  constructor(
    options: Partial<InventoryOptions> & Pick<InventoryOptions, 'rollups'>,
    modules: InventoryModules,
  ) {
    this.#o = { ...DEFAULT_INVENTORY_OPTIONS, ...options }
    this.#m = modules
    for (const [chainId, url] of this.#o.rollups) {
      const rpc = rpcTransport(url, { timeout: this.#o.rpcTimeoutMs, retryCount: 0, batch: { wait: 0 } }, 2)
      this.#transports.push(rpc)
      this.#clients.set(BigInt(chainId), createPublicClient({ transport: rpc.transport }))
    }
  }

  start(): void {
    if (this.#timer !== undefined) return
    void this.poll()
    this.#timer = setInterval(() => void this.poll(), this.#o.intervalMs)
    this.#timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    await Promise.all(this.#transports.map((t) => t.close()))
  }

  /** The latest balances, by chain then token. */
  balances(): Balance[] {
    return [...this.#latest.keys()]
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      .flatMap((c) => this.#latest.get(c)!)
  }

  /** One poll of every rollup (skipped while the previous one is still running). */
  async poll(): Promise<void> {
    if (this.#polling) return
    this.#polling = true
    try {
      await Promise.all([...this.#clients].map(([chainId, client]) => this.#pollChain(chainId, client)))
    } finally {
      this.#polling = false
    }
  }

  async #pollChain(chainId: bigint, client: PublicClient): Promise<void> {
    const owner = this.#m.address
    const tokens = [
      ...new Set([NATIVE, ...this.#m.tokens(chainId).map((t) => t.toLowerCase() as Address)]),
    ].sort()
    const reads = await Promise.allSettled(
      tokens.map((token) =>
        token === NATIVE
          ? client.getBalance({ address: owner })
          : client.readContract({ address: token, abi: erc20Abi, functionName: 'balanceOf', args: [owner] }),
      ),
    )
    const native = reads[tokens.indexOf(NATIVE)]
    if (native === undefined || native.status === 'rejected') {
      // The rollup does not answer: report nothing there until it does.
      if (this.#latest.delete(chainId))
        this.#m.log.warn(
          {
            chainId: chainId.toString(),
            err: (native as PromiseRejectedResult | undefined)?.reason?.message,
          },
          'inventory poll failed',
        )
      return
    }
    // A token read that fails while the chain answers (no contract at that address) holds nothing.
    this.#latest.set(
      chainId,
      tokens.map((token, i) => {
        const r = reads[i]!
        return { chainId, token, amount: r.status === 'fulfilled' ? r.value : 0n }
      }),
    )
  }
}
