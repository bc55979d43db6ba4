/**
 * Validity of an intent (INTERFACES.md, "Intents"). Cheap checks first; signature recovery, the only
 * expensive step, runs last. An order its user opened on chain travels unsigned: its proof is the origin
 * settler's `orderStatus`, asked through the context (docs/decisions.md, "Orders opened on chain"). Pure
 * apart from the injected context; never throws on bad input.
 */
import type { Address, Hex } from 'viem'
import {
  decodeOrderData,
  encodedOrderSize,
  findBadOrderField,
  type GaslessCrossChainOrder,
  intentId,
  isOnchainIntent,
  isOnchainNonce,
  MAX_ORDER_BYTES,
  MURMUR_ORDER_TYPEHASH,
  type MurmurOrderData,
  type SignedIntent,
  signedIntentFromJson,
} from '../codec/intent.ts'
import { CodecError } from '../codec/json.ts'
import { recoverAddress, SignatureError } from '../crypto/recover.ts'
import type { AssetTable, EconomicsRejectCode } from '../state/assets.ts'

/** Why an intent is refused; the `code` of the API's 400 answer. */
export type IntentRejectCode =
  | 'MALFORMED'
  | 'BAD_SIGNATURE'
  | 'EXPIRED'
  | 'NONCE_USED'
  | 'UNKNOWN_CHAIN'
  | 'TOO_LARGE'
  | EconomicsRejectCode
  | 'UNSETTLEABLE'
  | 'POOL_ALARMED'
  | 'NOT_OPENED'
  | 'UNVERIFIED'

/**
 * What this node's origin RPC says of an unsigned intent's order (`orderStatus` on the origin settler, at a
 * block final for that rollup): 'valid' opened; 'invalid' settled, refunded, or never opened by a final
 * block past its `openDeadline` (the block time of its `open`); 'pending' not opened yet as far as that
 * block goes; 'unknown' the RPC cannot tell.
 */
export type OpenedVerdict = 'valid' | 'invalid' | 'pending' | 'unknown'

/** What validation needs to know about the world. */
export interface ValidateIntentContext {
  /** Current unix time, seconds. */
  nowSec: number
  /** Tolerated difference between our clock and the user's, seconds. */
  maxClockSkewSec: number
  /** Chain ids of the network's rollups. */
  knownChainIds: ReadonlySet<bigint>
  /**
   * Pools whose concentration alarm is raised in the committed state (they get no new assignments): an
   * intent every destination of which is alarmed is refused POOL_ALARMED. Absent: no check.
   */
  alarmedChainIds?: ReadonlySet<bigint>
  /** The network's asset table: ambiguous outputs and too thin spreads are refused. Absent: no checks. */
  assets?: AssetTable
  /**
   * The settler of a rollup with settlement contracts (lowercase), undefined for one without. An intent
   * from such an origin must name that settler and an ERC-20 input (`openFor` pulls an allowance; a
   * native input can only be opened by its user, on chain).
   */
  settlerOf?(chainId: bigint): Address | undefined
  /**
   * Whether an unsigned intent's order is opened on its origin settler (rollups/opened-orders.ts). Absent:
   * every unsigned intent is UNVERIFIED.
   */
  verifyOpened?(id: Hex, order: GaslessCrossChainOrder): Promise<OpenedVerdict>
  /** True when (user, nonce) was used before. Absent: no nonce is used. */
  isNonceUsed?(user: Address, nonce: bigint): boolean
  /** Signature recovery to use instead of {@link recoverAddress}, e.g. a worker pool. */
  recover?(digest: Hex, signature: Hex): Promise<Address>
}

/** An accepted intent, with its id and decoded payload. */
export interface ValidIntent {
  ok: true
  id: Hex
  order: GaslessCrossChainOrder
  signature: Hex
  data: MurmurOrderData
}

/** A refused intent. */
export interface InvalidIntent {
  ok: false
  code: IntentRejectCode
  message: string
}

export type IntentValidation = ValidIntent | InvalidIntent

const SIGNATURE_BYTES = 65
const SIGNATURE_RE = /^0x[0-9a-f]{130}$/

function reject(code: IntentRejectCode, message: string): InvalidIntent {
  return { ok: false, code, message }
}

/**
 * Validates a typed signed intent against the rules of INTERFACES.md. Errors thrown by the context's
 * callbacks propagate (they are not the intent's fault); nothing else throws.
 */
export async function validateIntent(
  intent: SignedIntent,
  ctx: ValidateIntentContext,
  /** The intent's id when the caller computed it already (gossip dedupe does). */
  knownId?: Hex,
): Promise<IntentValidation> {
  const { order, signature } = intent
  if (typeof order !== 'object' || order === null) return reject('MALFORMED', 'order: expected an object')
  const badField = findBadOrderField(order)
  if (badField !== undefined) return reject('MALFORMED', `order.${badField}: invalid value`)
  const size = encodedOrderSize(order)
  if (size > MAX_ORDER_BYTES)
    return reject('TOO_LARGE', `order: ${size} bytes encoded, at most ${MAX_ORDER_BYTES}`)
  const onchain = isOnchainIntent(intent)
  if (onchain && !isOnchainNonce(order.nonce))
    return reject('BAD_SIGNATURE', 'signature: empty, but the nonce is not one of an order opened on chain')
  if (!onchain && (typeof signature !== 'string' || !SIGNATURE_RE.test(signature))) {
    return reject('BAD_SIGNATURE', `signature: expected ${SIGNATURE_BYTES} bytes of lowercase hex`)
  }
  if (order.fillDeadline <= order.openDeadline) {
    return reject('MALFORMED', 'order.fillDeadline: must be after openDeadline')
  }
  if (onchain) {
    // Opened already: its openDeadline is the block time of its `open`; only the fill deadline matters.
    if (BigInt(order.fillDeadline) <= BigInt(ctx.nowSec))
      return reject('EXPIRED', 'order.fillDeadline: passed')
  } else if (BigInt(order.openDeadline) + BigInt(ctx.maxClockSkewSec) <= BigInt(ctx.nowSec)) {
    // Expired unless openDeadline is still ahead of our clock, allowing for skew.
    return reject('EXPIRED', 'order.openDeadline: passed')
  }
  if (order.orderDataType !== MURMUR_ORDER_TYPEHASH) {
    return reject('MALFORMED', 'order.orderDataType: not the MurmurOrder typehash')
  }
  let data: MurmurOrderData
  try {
    data = decodeOrderData(order.orderData)
  } catch (err) {
    if (err instanceof CodecError) return reject('MALFORMED', err.message)
    throw err
  }
  for (const chainId of data.destinationChainIds) {
    if (!ctx.knownChainIds.has(chainId)) {
      return reject(
        'UNKNOWN_CHAIN',
        `orderData.destinationChainIds: ${chainId} is not a rollup of this network`,
      )
    }
  }
  const alarmed = ctx.alarmedChainIds
  if (alarmed !== undefined && alarmed.size > 0) {
    const destinations =
      data.destinationChainIds.length > 0 ? data.destinationChainIds : [...ctx.knownChainIds]
    if (destinations.every((c) => alarmed.has(c)))
      return reject(
        'POOL_ALARMED',
        `every destination (${destinations.join(', ')}) is a pool below its safe level (GET /v1/staking alarms); try later or another rollup`,
      )
  }
  const economics = ctx.assets?.check({ originChainId: order.originChainId, ...data })
  if (economics !== undefined && !economics.ok) return reject(economics.code, economics.message)
  const settler = ctx.settlerOf?.(order.originChainId)
  if (onchain && settler === undefined)
    return reject(
      'BAD_SIGNATURE',
      `signature: empty, and chain ${order.originChainId} has no settlement contracts to prove the order`,
    )
  if (settler !== undefined) {
    if (order.originSettler.toLowerCase() !== settler)
      return reject(
        'UNSETTLEABLE',
        `order.originSettler: the settler of chain ${order.originChainId} is ${settler}`,
      )
    // The user's own `open` escrows a native input (msg.value); `openFor` cannot.
    if (!onchain && /^0x0{40}$/.test(data.inputToken))
      return reject(
        'UNSETTLEABLE',
        'orderData.inputToken: a native input cannot be escrowed for a user; open the order on chain (open)',
      )
  }
  // An order opened on chain cannot be replayed (its settler opens an id once) and its (user, nonce) is the
  // settler's own counter, unique per origin only: the pool keys it by origin too (record.ts).
  if (!onchain && ctx.isNonceUsed?.(order.user, order.nonce) === true) {
    return reject('NONCE_USED', `order.nonce: ${order.nonce} already used by ${order.user}`)
  }
  const id = knownId ?? intentId(order)
  if (onchain) {
    const v = ctx.verifyOpened === undefined ? 'unknown' : await ctx.verifyOpened(id, order)
    if (v === 'valid') return { ok: true, id, order, signature, data }
    return v === 'invalid'
      ? reject('NOT_OPENED', `order ${id} is not opened on its origin settler (chain ${order.originChainId})`)
      : reject('UNVERIFIED', `order ${id}: not seen opened on chain ${order.originChainId} yet (${v})`)
  }
  let signer: Address
  try {
    signer = ctx.recover ? await ctx.recover(id, signature) : await recoverAddress(id, signature)
  } catch (err) {
    // A recovery failure is the signature's fault; anything else (a pool shutting down) is not.
    if (err instanceof SignatureError) return reject('BAD_SIGNATURE', err.message)
    throw err
  }
  if (signer !== order.user) return reject('BAD_SIGNATURE', 'signature: not made by order.user')
  return { ok: true, id, order, signature, data }
}

/**
 * Validates the JSON body of `POST /v1/intents` (`{order, signature}`). Never throws because of the
 * body: anything that does not parse is MALFORMED (or TOO_LARGE for oversized bytes).
 */
export async function validateIntentJson(
  body: unknown,
  ctx: ValidateIntentContext,
): Promise<IntentValidation> {
  let intent: SignedIntent
  try {
    intent = signedIntentFromJson(body)
  } catch (err) {
    if (err instanceof CodecError)
      return reject(
        err.code === 'TOO_LARGE' ? 'TOO_LARGE' : err.code === 'UNSIGNED' ? 'BAD_SIGNATURE' : 'MALFORMED',
        err.message,
      )
    return reject('MALFORMED', 'body: does not parse')
  }
  return validateIntent(intent, ctx)
}
