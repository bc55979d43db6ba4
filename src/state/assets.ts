/**
 * The network's asset table (genesis `assets`, issue 10 "Economics that close"): which token addresses on
 * which rollups are one asset, and the least spread an intent that moves one asset must leave its executor.
 *
 * An order names one `outputToken` address, and the destination settler moves exactly that address on
 * whichever listed chain fills it. So an ERC-20 output with several destinations is well defined only when
 * the address is the same asset on each of them: either the table maps the address to one asset on every
 * listed chain, or the table does not know the address at all (a token deployed at the same address
 * everywhere). Anything in between is ambiguous and refused. The native token (address 0) is the chain's
 * own coin; the table may declare it as an asset too (for a minimum spread).
 *
 * Pure and deterministic: the mempool refuses with these checks, and block validation (`acceptIntent`)
 * applies the same ones, so a proposer cannot route what the table forbids.
 */
import type { Address } from 'viem'

/** An asset as the genesis declares it. */
export interface GenesisAsset {
  readonly symbol: string
  /** Least (inputAmount - outputAmount) / inputAmount, basis points, for intents moving this asset. */
  readonly minSpreadBps: number
  /** Token address by chain id (lowercase; 0x0…0 for the native coin). */
  readonly tokens: Readonly<Record<string, string>>
}

/** One asset, indexed. */
export interface Asset {
  readonly symbol: string
  readonly minSpreadBps: bigint
  readonly tokens: ReadonlyMap<bigint, Address>
}

/** Why an intent's economics are refused; also API reject codes. */
export type EconomicsRejectCode = 'UNPROFITABLE' | 'AMBIGUOUS_OUTPUT'

export type EconomicsVerdict =
  | { readonly ok: true }
  | { readonly ok: false; readonly code: EconomicsRejectCode; readonly message: string }

/** What the economics checks read of an order. */
export interface EconomicsOrder {
  readonly originChainId: bigint
  readonly inputToken: Address
  readonly inputAmount: bigint
  readonly outputToken: Address
  readonly outputAmount: bigint
  /** Empty: any rollup of the network. */
  readonly destinationChainIds: readonly bigint[]
}

const NATIVE: Address = '0x0000000000000000000000000000000000000000'
const BPS = 10_000n

/** The asset table of one network. */
export class AssetTable {
  readonly assets: readonly Asset[]
  readonly #byToken = new Map<string, Asset>()
  readonly #chains: readonly bigint[]

  /** `chainIds`: the network's rollups (what an empty destination list means). */
  constructor(assets: readonly GenesisAsset[], chainIds: Iterable<bigint>) {
    this.assets = assets.map((a) => ({
      symbol: a.symbol,
      minSpreadBps: BigInt(a.minSpreadBps),
      tokens: new Map(
        Object.entries(a.tokens)
          .map(([c, t]) => [BigInt(c), t.toLowerCase() as Address] as const)
          .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)),
      ),
    }))
    for (const a of this.assets) for (const [c, t] of a.tokens) this.#byToken.set(key(c, t), a)
    this.#chains = [...new Set(chainIds)].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))
  }

  /** The asset `token` is on `chainId`, if the table knows it. */
  assetOf(chainId: bigint, token: Address): Asset | undefined {
    return this.#byToken.get(key(chainId, token))
  }

  /** Tokens an executor reports balances of on `chainId`: the native coin, then the table's, ascending. */
  inventoryTokens(chainId: bigint): Address[] {
    const out = new Set<Address>([NATIVE])
    for (const a of this.assets) {
      const t = a.tokens.get(chainId)
      if (t !== undefined) out.add(t)
    }
    return [...out].sort()
  }

  /**
   * The economics of an order: its output names one asset on every chain that may fill it
   * (AMBIGUOUS_OUTPUT otherwise), and an order whose input and output are one asset with a minimum
   * spread leaves at least that spread (UNPROFITABLE otherwise). With no minimum, any spread passes.
   */
  check(o: EconomicsOrder): EconomicsVerdict {
    const token = o.outputToken.toLowerCase() as Address
    const chains = o.destinationChainIds.length === 0 ? this.#chains : o.destinationChainIds
    const named = chains.map((c) => this.assetOf(c, token))
    const known = named.filter((a): a is Asset => a !== undefined)
    const distinct = new Set(known)
    if (
      token !== NATIVE &&
      chains.length > 1 &&
      (distinct.size > 1 || (known.length > 0 && known.length < named.length))
    ) {
      const where = chains.map((c, i) => `${c}: ${named[i]?.symbol ?? 'not in the asset table'}`).join(', ')
      return {
        ok: false,
        code: 'AMBIGUOUS_OUTPUT',
        message:
          `orderData.outputToken ${token} is not one asset on every destination (${where}); ` +
          'list only destinations where it is the same asset',
      }
    }
    const output = distinct.size === 1 ? [...distinct][0]! : undefined
    const input = this.assetOf(o.originChainId, o.inputToken.toLowerCase() as Address)
    if (input === undefined || input !== output || input.minSpreadBps === 0n) return { ok: true }
    // spread / input >= min  <=>  (input - output) * 10000 >= min * input (exact, no division)
    if ((o.inputAmount - o.outputAmount) * BPS < input.minSpreadBps * o.inputAmount) {
      return {
        ok: false,
        code: 'UNPROFITABLE',
        message:
          `orderData: ${input.symbol} in, ${input.symbol} out, spread below the network's minimum of ` +
          `${input.minSpreadBps} bps (inputAmount ${o.inputAmount}, outputAmount ${o.outputAmount})`,
      }
    }
    return { ok: true }
  }
}

function key(chainId: bigint, token: Address): string {
  return `${chainId}/${token.toLowerCase()}`
}
