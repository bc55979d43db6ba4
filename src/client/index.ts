/**
 * Wallet side of Murmur: build an ERC-7683 order, sign it with any viem account (EIP-712),
 * hand it to a node over HTTP, and follow it until a final state.
 *
 * ```ts
 * import { MurmurClient } from 'murmur/client'
 * const client = new MurmurClient('http://127.0.0.1:7070')
 * const { id } = await client.send(account, { to, amount: 10n ** 15n, chains: [901n] })
 * const final = await client.waitFor(id)
 * ```
 */
import type { Address, Hex, LocalAccount } from 'viem'
import { buildOrder, type GaslessCrossChainOrder, signedIntentToJson, signOrder } from '../codec/intent.ts'
import { MurmurError } from '../errors.ts'

export { buildOrder, intentId, signOrder } from '../codec/intent.ts'

export type IntentState = 'pending' | 'assigned' | 'filled' | 'expired' | 'failed' | 'refunded'
export const FINAL_STATES: ReadonlySet<IntentState> = new Set(['filled', 'expired', 'failed', 'refunded'])

/** Settlement of an intent whose origin has settlement contracts (INTERFACES.md, Intent lifecycle). */
export interface IntentSettlement {
  state: 'none' | 'opened' | 'filled' | 'settled' | 'refunded'
  openTx: Hex | null
  fillTx: Hex | null
  claimTx: Hex | null
  refundTx: Hex | null
  /** The block whose settlement root holds the intent's leaf. */
  height: string | null
}

/** The body of `GET /v1/intents/:id`. */
export interface IntentView {
  id: Hex
  state: IntentState
  order: Record<string, unknown>
  assignment: { chainId: string; executor: Address; height: string; deadline: number } | null
  fill: { chainId: string; txHash: Hex; blockNumber: string } | null
  signature: Hex
  history: Array<{ state: IntentState; atMs: number; height?: string; reason?: string }>
  /** Null when the origin has no settlement contracts (served without escrow). */
  settlement: IntentSettlement | null
}

export type ClientErrorCode =
  | 'MALFORMED'
  | 'BAD_SIGNATURE'
  | 'EXPIRED'
  | 'NONCE_USED'
  | 'UNKNOWN_CHAIN'
  | 'TOO_LARGE'
  | 'OVERLOADED'
  | 'POOL_FULL'
  | 'USER_LIMIT'
  | 'RATE_LIMITED'
  | 'BATCH_TOO_LARGE'
  | 'NOT_FOUND'
  | 'UNREACHABLE'
  | 'TIMEOUT'
  | 'HTTP_ERROR'
  | 'NO_SETTLEMENT'

/** A refusal from the node (its `error.code`) or a transport failure. */
export class ClientError extends MurmurError<ClientErrorCode> {
  readonly retryAfterSec: number | undefined
  constructor(code: ClientErrorCode, message: string, retryAfterSec?: number) {
    super(code, message)
    this.retryAfterSec = retryAfterSec
  }
}

export interface SendParams {
  /** Recipient on the destination rollup. */
  to: Address
  /** Amount delivered on the destination (outputAmount), wei or token units. */
  amount: bigint
  /** Allowed destination chain ids; empty = any rollup of the network. */
  chains?: readonly bigint[]
  /** Input offered on the origin; default = amount. */
  inputAmount?: bigint
  /** ERC-20 escrowed on the origin (the user approves the origin settler first); default native (0x0). */
  inputToken?: Address
  /** ERC-20 paid on the destination; default native (0x0). */
  outputToken?: Address
  /** Default: the first listed destination, else 901. */
  originChainId?: bigint
  /**
   * The origin rollup's settler (the order's `originSettler`, which pulls the input). When absent and the
   * input is an ERC-20, {@link MurmurClient.send} looks it up in `GET /v1/rollups`; native: 0x0.
   */
  originSettler?: Address
  /** Default: a random 64-bit nonce (unique per (user, nonce)). */
  nonce?: bigint
  /** Seconds from now until the order can no longer be opened; default 60. */
  openInSec?: number
  /** Seconds from now until it must be filled; default 600. */
  fillInSec?: number
}

/** One row of `GET /v1/rollups` (the fields a wallet reads). */
export interface RollupView {
  chainId: number
  name: string
  status: string
  /** Null: the rollup has no settlement contracts (the executor pays, nothing is escrowed). */
  settlement: { settler: Address; lightClient: Address } | null
}

const NATIVE: Address = '0x0000000000000000000000000000000000000000'

/** The node's refusal of a request as a ClientError; 429 and 503 say when to retry. */
function refusal(res: Response, body: { error?: { code: ClientErrorCode; message: string } }): ClientError {
  const retry = Number(res.headers.get('retry-after') ?? '1')
  if (res.status === 429) return new ClientError('RATE_LIMITED', body.error?.message ?? 'rate limited', retry)
  if (res.status === 503) {
    const code = body.error?.code ?? 'OVERLOADED'
    return new ClientError(code, body.error?.message ?? 'node overloaded', retry)
  }
  return new ClientError(body.error?.code ?? 'HTTP_ERROR', body.error?.message ?? `HTTP ${res.status}`)
}

export class MurmurClient {
  readonly api: string
  readonly #timeoutMs: number
  /** Settlement contracts are fixed by the genesis: one lookup per client is enough. */
  #rollups: Promise<RollupView[]> | undefined

  constructor(api: string, opts: { timeoutMs?: number } = {}) {
    this.api = api.replace(/\/$/, '')
    this.#timeoutMs = opts.timeoutMs ?? 10_000
  }

  /** Builds an order from simple parameters. */
  static order(user: Address, p: SendParams, nowSec = Math.floor(Date.now() / 1000)): GaslessCrossChainOrder {
    const nonce =
      p.nonce ??
      BigInt.asUintN(
        64,
        BigInt(`0x${Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString('hex')}`),
      )
    return buildOrder({
      user,
      nonce,
      originChainId: p.originChainId ?? p.chains?.[0] ?? 901n,
      openDeadline: nowSec + (p.openInSec ?? 60),
      fillDeadline: nowSec + (p.fillInSec ?? 600),
      inputAmount: p.inputAmount ?? p.amount,
      outputAmount: p.amount,
      recipient: p.to,
      destinationChainIds: p.chains ?? [],
      ...(p.originSettler === undefined ? {} : { originSettler: p.originSettler }),
      ...(p.inputToken === undefined ? {} : { inputToken: p.inputToken }),
      ...(p.outputToken === undefined ? {} : { outputToken: p.outputToken }),
    })
  }

  /** Signs and submits; resolves with the intent id (202 accepted or 200 already known). */
  async send(
    account: Pick<LocalAccount, 'address' | 'signTypedData'>,
    p: SendParams,
  ): Promise<{ id: Hex; known: boolean }> {
    let params = p
    if (p.originSettler === undefined && p.inputToken !== undefined && p.inputToken.toLowerCase() !== NATIVE)
      params = {
        ...p,
        originSettler: await this.originSettler(MurmurClient.order(account.address, p).originChainId),
      }
    const order = MurmurClient.order(account.address, params)
    const signature = await signOrder(account, order)
    return this.submit(order, signature)
  }

  /** Submits an already signed order. */
  async submit(order: GaslessCrossChainOrder, signature: Hex): Promise<{ id: Hex; known: boolean }> {
    const res = await this.#fetch('/v1/intents', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(signedIntentToJson({ order, signature })),
    })
    const body = (await res.json()) as { id?: Hex; error?: { code: ClientErrorCode; message: string } }
    if (res.status === 202 || res.status === 200) return { id: body.id!, known: res.status === 200 }
    throw refusal(res, body)
  }

  /**
   * Submits up to 256 signed orders in one request (one request of the node's rate limit). Resolves with
   * one outcome per order, in order: its id, or the node's refusal of that one order. The request itself
   * failing (rate limited, more than 256) throws.
   */
  async submitMany(
    intents: ReadonlyArray<{ order: GaslessCrossChainOrder; signature: Hex }>,
  ): Promise<Array<{ id: Hex; known: boolean } | { error: ClientError }>> {
    const res = await this.#fetch('/v1/intents', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(intents.map((i) => signedIntentToJson(i))),
    })
    const body = (await res.json()) as
      | Array<{ status: number; id?: Hex; error?: { code: ClientErrorCode; message: string } }>
      | { error?: { code: ClientErrorCode; message: string } }
    if (res.status !== 200 || !Array.isArray(body)) throw refusal(res, body as { error?: never })
    const retry = Number(res.headers.get('retry-after') ?? '1')
    return body.map((a) =>
      a.status === 200 || a.status === 202
        ? { id: a.id!, known: a.status === 200 }
        : {
            error: new ClientError(
              a.error?.code ?? 'HTTP_ERROR',
              a.error?.message ?? `HTTP ${a.status}`,
              a.status === 503 ? retry : undefined,
            ),
          },
    )
  }

  /** `GET /v1/rollups`, fetched once per client (a failed fetch is retried next time). */
  async rollups(): Promise<RollupView[]> {
    this.#rollups ??= this.#fetch('/v1/rollups').then(async (res) => {
      if (!res.ok) throw new ClientError('HTTP_ERROR', `GET /v1/rollups: HTTP ${res.status}`)
      return (await res.json()) as RollupView[]
    })
    return this.#rollups.catch((err: unknown) => {
      this.#rollups = undefined
      throw err
    })
  }

  /** The settler of `chainId` as the node serves it; NO_SETTLEMENT when the rollup has none. */
  async originSettler(chainId: bigint): Promise<Address> {
    const row = (await this.rollups()).find((r) => BigInt(r.chainId) === chainId)
    if (row === undefined) throw new ClientError('UNKNOWN_CHAIN', `rollup ${chainId} is not in the network`)
    if (row.settlement === null)
      throw new ClientError(
        'NO_SETTLEMENT',
        `rollup ${chainId} has no settlement contracts: send a native input`,
      )
    return row.settlement.settler
  }

  async get(id: Hex): Promise<IntentView> {
    const res = await this.#fetch(`/v1/intents/${id}`)
    const body = (await res.json()) as IntentView & { error?: { code: ClientErrorCode; message: string } }
    if (!res.ok)
      throw new ClientError(body.error?.code ?? 'HTTP_ERROR', body.error?.message ?? `HTTP ${res.status}`)
    return body
  }

  /**
   * Follows an intent until a final state (filled, expired, failed) or `timeoutMs`; calls
   * `onChange` on every state change seen. Polls with a short interval.
   */
  async waitFor(
    id: Hex,
    opts: {
      timeoutMs?: number
      intervalMs?: number
      until?: ReadonlySet<IntentState>
      /**
       * With settlement contracts on its origin, a filled intent is final only once it is settled (its
       * executor repaid) or refunded: wait for that too. Default false.
       */
      settled?: boolean
      onChange?: (v: IntentView) => void
    } = {},
  ): Promise<IntentView> {
    const deadline = Date.now() + (opts.timeoutMs ?? 120_000)
    const until = opts.until ?? FINAL_STATES
    let last: IntentState | undefined
    for (;;) {
      let v: IntentView | undefined
      try {
        v = await this.get(id)
      } catch (err) {
        if (!(err instanceof ClientError) || (err.code !== 'NOT_FOUND' && err.code !== 'UNREACHABLE'))
          throw err
      }
      if (v !== undefined) {
        if (v.state !== last) {
          last = v.state
          opts.onChange?.(v)
        }
        const waiting =
          opts.settled === true &&
          v.state === 'filled' &&
          v.settlement !== null &&
          v.settlement.state !== 'settled' &&
          v.settlement.state !== 'refunded'
        if (until.has(v.state) && !waiting) return v
      }
      if (Date.now() > deadline) throw new ClientError('TIMEOUT', `intent ${id} still ${last ?? 'unknown'}`)
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 250))
    }
  }

  async #fetch(path: string, init: RequestInit = {}): Promise<Response> {
    try {
      return await fetch(this.api + path, { ...init, signal: AbortSignal.timeout(this.#timeoutMs) })
    } catch (err) {
      throw new ClientError('UNREACHABLE', `cannot reach ${this.api}: ${(err as Error).message}`)
    }
  }
}
export { LightPeer } from './light-peer.ts'
export {
  MAX_ALLOWANCE,
  sendTokenCalls,
  type TokenCall,
  TokenError,
  tokenAllowance,
  tokenBalance,
  tokenClients,
} from './tokens.ts'
