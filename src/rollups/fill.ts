/**
 * Fills: the executor's signed statement that it delivered an intent's output on a rollup, its wire
 * codec for the `fills` topic, its gossip validator, and the receipt check every validator runs on its
 * own RPC before a fill goes into a block.
 *
 * A fill transaction carries the intent id as a marker (ARCHITECTURE.md: the executor finds its own
 * transactions after a crash): a native fill is a value transfer whose calldata is the 32-byte intent id;
 * an ERC-20 fill is `transfer(recipient, amount)` with the intent id appended (the ABI decoder of a
 * standard token ignores trailing calldata). The marker also binds one transfer to one intent: the same
 * transfer cannot be claimed as the fill of two intents.
 */
import {
  type Address,
  concatHex,
  decodeEventLog,
  encodeFunctionData,
  type Hex,
  type LocalAccount,
  type PublicClient,
  parseAbi,
  type TypedData,
} from 'viem'
import { bytesToAddress, bytesToHex, bytesToUint, hexToRaw, uintToBytes } from '../codec/bytes.ts'
import { type Codec, cborCodec, shape } from '../codec/cbor.ts'
import { hashNetworkTyped, networkDomain } from '../codec/eip712.ts'
import { recoverAddress } from '../crypto/recover.ts'
import { P2PError } from '../errors.ts'
import { ACCEPT, ignore, reject, type ValidationResult } from '../p2p/validation.ts'

/**
 * `Fill(bytes32 intentId,uint256 chainId,bytes32 txHash,uint64 blockNumber,bytes32 blockHash,address executor)`
 */
export const FILL_TYPES = {
  Fill: [
    { name: 'intentId', type: 'bytes32' },
    { name: 'chainId', type: 'uint256' },
    { name: 'txHash', type: 'bytes32' },
    { name: 'blockNumber', type: 'uint64' },
    { name: 'blockHash', type: 'bytes32' },
    { name: 'executor', type: 'address' },
  ],
} as const satisfies TypedData

/** Primary type name of a fill. */
export const FILL_PRIMARY_TYPE = 'Fill'

/** A fill as signed. Hex lowercase. */
export interface Fill {
  intentId: Hex
  chainId: bigint
  txHash: Hex
  /** Block that includes the fill transaction. */
  blockNumber: bigint
  /**
   * Hash of that block: the number alone does not say which block, so a fill names the one it means and
   * a reorg that drops it makes the fill provably wrong instead of a guess.
   */
  blockHash: Hex
  executor: Address
}

/** A fill with the executor's 65-byte ECDSA signature. */
export interface SignedFill {
  fill: Fill
  signature: Hex
}

/** The zero address: the chain's native token. */
export const NATIVE_TOKEN: Address = '0x0000000000000000000000000000000000000000'

const UINT64_MAX = (1n << 64n) - 1n
const UINT256_MAX = (1n << 256n) - 1n
const BYTES32_RE = /^0x[0-9a-f]{64}$/
const ADDRESS_RE = /^0x[0-9a-f]{40}$/

/** Name of the first field out of its type's range or not lowercase hex, or undefined. */
export function findBadFillField(f: Fill): keyof Fill | undefined {
  if (typeof f.intentId !== 'string' || !BYTES32_RE.test(f.intentId)) return 'intentId'
  if (typeof f.chainId !== 'bigint' || f.chainId < 0n || f.chainId > UINT256_MAX) return 'chainId'
  if (typeof f.txHash !== 'string' || !BYTES32_RE.test(f.txHash)) return 'txHash'
  if (typeof f.blockNumber !== 'bigint' || f.blockNumber < 0n || f.blockNumber > UINT64_MAX)
    return 'blockNumber'
  if (typeof f.blockHash !== 'string' || !BYTES32_RE.test(f.blockHash)) return 'blockHash'
  if (typeof f.executor !== 'string' || !ADDRESS_RE.test(f.executor)) return 'executor'
  return undefined
}

/** EIP-712 digest of a fill under `networkDomain(networkId)`. */
export function fillDigest(networkId: string, fill: Fill): Hex {
  return hashNetworkTyped(networkId, FILL_PRIMARY_TYPE, FILL_TYPES, fill)
}

/** The complete typed-data definition of a fill, for any EIP-712 signer. */
export function fillTypedData(networkId: string, fill: Fill) {
  return {
    domain: networkDomain(networkId),
    types: FILL_TYPES,
    primaryType: FILL_PRIMARY_TYPE,
    message: fill,
  } as const
}

/** Signs a fill with the executor's account; `fill.executor` must be that account. */
export async function signFill(
  account: Pick<LocalAccount, 'address' | 'signTypedData'>,
  networkId: string,
  fill: Fill,
): Promise<SignedFill> {
  if (fill.executor !== account.address.toLowerCase()) {
    throw new Error(`fill.executor ${fill.executor} is not the signing account ${account.address}`)
  }
  return signRelayedFill(account, networkId, fill)
}

/**
 * Signs a fill made by someone else (`fill.executor`, the filler the destination settler recorded): the
 * relay of a fill its executor never announced (rollups/fill-relay.ts). The signature only says who
 * relayed it; the fill's transaction and its `OutputFilled` event are the proof, checked on chain by
 * every validator as for any fill (docs/decisions.md, "Fills relayed by the assignee").
 */
export async function signRelayedFill(
  account: Pick<LocalAccount, 'address' | 'signTypedData'>,
  networkId: string,
  fill: Fill,
): Promise<SignedFill> {
  const bad = findBadFillField(fill)
  if (bad !== undefined) throw new Error(`fill field ${bad} is out of range`)
  const signature = (await account.signTypedData(fillTypedData(networkId, fill))).toLowerCase() as Hex
  return { fill, signature }
}

/** The signer of a fill (lowercase); rejects with SignatureError when nothing recovers. */
export function recoverFillSigner(networkId: string, signed: SignedFill): Promise<Address> {
  return recoverAddress(fillDigest(networkId, signed.fill), signed.signature)
}

// ---------------------------------------------------------------------------------------------------
// Wire codec.

/** Largest encoded `{fill, signature}`, version byte included. A real one is about 225 bytes. */
export const FILL_MAX_BYTES = 384
/** Wire version of {@link fillCodec}: 2 since a fill names its block hash (`b`). */
export const FILL_WIRE_VERSION = 2

const FILL_KEYS = ['i', 'c', 'h', 'n', 'b', 'e', 'sig'] as const

const innerFillCodec = cborCodec<unknown>({
  version: FILL_WIRE_VERSION,
  maxBytes: FILL_MAX_BYTES,
  check(v): SignedFill {
    const o = shape.object(v, 'fill')
    const keys = Object.keys(o)
    if (keys.length !== FILL_KEYS.length || !FILL_KEYS.every((k) => Object.hasOwn(o, k))) {
      throw new P2PError('DECODE', 'fill: unexpected key set')
    }
    return {
      fill: {
        intentId: bytesToHex(o['i'], 'fill.intentId', 32),
        chainId: bytesToUint(o['c'], 'fill.chainId', 32),
        txHash: bytesToHex(o['h'], 'fill.txHash', 32),
        blockNumber: bytesToUint(o['n'], 'fill.blockNumber', 8),
        blockHash: bytesToHex(o['b'], 'fill.blockHash', 32),
        executor: bytesToAddress(o['e'], 'fill.executor'),
      },
      signature: bytesToHex(o['sig'], 'fill.signature', 65),
    }
  },
})

/** Wire codec of `{fill, signature}` for the `fills` topic (CBOR, version 2, at most 384 bytes). */
export const fillCodec: Codec<SignedFill> = {
  version: innerFillCodec.version,
  maxBytes: innerFillCodec.maxBytes,
  encode({ fill, signature }) {
    const bad = findBadFillField(fill)
    if (bad !== undefined) throw new Error(`fill field ${bad} is out of range`)
    if (!/^0x[0-9a-f]{130}$/.test(signature)) throw new Error('fill signature: expected 65 bytes hex')
    return innerFillCodec.encode({
      i: hexToRaw(fill.intentId),
      c: uintToBytes(fill.chainId),
      h: hexToRaw(fill.txHash),
      n: uintToBytes(fill.blockNumber),
      b: hexToRaw(fill.blockHash),
      e: hexToRaw(fill.executor),
      sig: hexToRaw(signature),
    })
  },
  decode: (bytes) => innerFillCodec.decode(bytes) as SignedFill,
}

/** Most fills in one `fills` gossip message. */
export const MAX_FILL_BATCH = 256
/** Wire version of {@link fillBatchCodec}. */
export const FILL_BATCH_WIRE_VERSION = 1

/**
 * Wire codec of the `fills` topic: one or many signed fills, each encoded by {@link fillCodec} (as in
 * blocks). An executor confirms the fills of one rollup block together and publishes them in one message:
 * gossip costs per message (framing, encryption, message ids, scoring), as for intents.
 */
export const fillBatchCodec: Codec<SignedFill[]> = (() => {
  const inner = cborCodec<SignedFill[]>({
    version: FILL_BATCH_WIRE_VERSION,
    maxBytes: 8 + MAX_FILL_BATCH * (FILL_MAX_BYTES + 3),
    check(v) {
      const items = shape.array(v, 'fills', MAX_FILL_BATCH)
      if (items.length === 0) throw new P2PError('DECODE', 'fills: empty batch')
      return items.map((x, i) => fillCodec.decode(shape.bytes(x, `fills[${i}]`, FILL_MAX_BYTES)))
    },
  })
  return {
    version: inner.version,
    maxBytes: inner.maxBytes,
    encode(fills) {
      if (fills.length === 0 || fills.length > MAX_FILL_BATCH) {
        throw new Error(`a fill batch holds 1 to ${MAX_FILL_BATCH} fills, not ${fills.length}`)
      }
      return inner.encode(fills.map((f) => fillCodec.encode(f)) as never)
    },
    decode: inner.decode,
  }
})()

// ---------------------------------------------------------------------------------------------------
// Gossip validation.

/** The committed assignment of an intent, as far as fill validation needs it. */
export interface FillAssignment {
  chainId: bigint
  executor: Address
}

/** What {@link validateFill} needs to know about the node's state. */
export interface FillValidationContext {
  networkId: string
  /** The open assignment of an intent, or undefined when the node knows none. */
  assignment: (intentId: Hex) => FillAssignment | undefined
  /** True when this fill (or another fill of the intent) is already known: IGNORE as DUPLICATE. */
  isKnown?: (fill: Fill) => boolean
  /**
   * True for a validator of the set: one may announce its own fill of an intent that has moved to
   * another executor since (a restart after its assignment moved). Absent: nobody may.
   */
  isValidator?: (address: Address) => boolean
}

/**
 * Gossip validation of a decoded fill:
 * - IGNORE `UNKNOWN_INTENT` (no assignment known: maybe not committed here yet), `DUPLICATE`, and what
 *   depends on this node's view of the assignment, which may be a block behind or ahead of the sender's:
 *   `WRONG_CHAIN` (not the rollup this node has it assigned on: re-routed since, or not yet) and
 *   `NOT_ASSIGNED` signed by a validator (a relay by an assignee this node does not know yet). A REJECT
 *   there cost honest validators score under load (bench/attack.ts saw one at -95);
 * - REJECT `BAD_SIGNATURE` (recovers to nobody allowed below) and `NOT_ASSIGNED` (signed by its
 *   executor, who is neither the assignee nor a validator): provably wrong;
 * - ACCEPT a fill signed by its executor when that is the assignee, or a validator (the intent moved
 *   away from it after it filled: whether the fill settles the assignment is `fillSettles`' to say, in
 *   the proposer and every validator); and a fill of another executor relayed (signed) by the assignee
 *   (its fill reverted `AlreadyFilled`: rollups/fill-relay.ts). The signer only vouches for the relay.
 * Whether the transaction really delivered is {@link verifyFillReceipt}'s job.
 */
export async function validateFill(msg: SignedFill, ctx: FillValidationContext): Promise<ValidationResult> {
  const f = msg.fill
  if (findBadFillField(f) !== undefined) return reject('MALFORMED')
  const assignment = ctx.assignment(f.intentId)
  if (assignment === undefined) return ignore('UNKNOWN_INTENT')
  if (ctx.isKnown?.(f)) return ignore('DUPLICATE')
  if (assignment.chainId !== f.chainId) return ignore('WRONG_CHAIN')
  const assignee = assignment.executor.toLowerCase() as Address
  let signer: Address
  try {
    signer = await recoverFillSigner(ctx.networkId, msg)
  } catch {
    return reject('BAD_SIGNATURE')
  }
  if (signer === assignee) return ACCEPT
  const byValidator = ctx.isValidator?.(signer) === true
  if (signer !== f.executor) return byValidator ? ignore('NOT_ASSIGNED') : reject('BAD_SIGNATURE')
  if (byValidator) return ACCEPT
  return reject('NOT_ASSIGNED')
}

/**
 * Gossip validation of a batch: each fill by {@link validateFill}. A provably wrong fill REJECTs the whole
 * message (its code); otherwise the batch is ACCEPTed when at least one fill is new and valid, IGNOREd
 * (the first fill's code) when none is. `accepted` receives the fills to act on.
 */
export async function validateFillBatch(
  batch: readonly SignedFill[],
  ctx: FillValidationContext,
  accepted: (fills: SignedFill[]) => void,
): Promise<ValidationResult> {
  const results = await Promise.all(batch.map((f) => validateFill(f, ctx)))
  const rejected = results.find((r) => r.result === 'REJECT')
  if (rejected !== undefined) return rejected
  const ok = batch.filter((_, i) => results[i]!.result === 'ACCEPT')
  if (ok.length === 0) return results[0]!
  accepted(ok)
  return ACCEPT
}

// ---------------------------------------------------------------------------------------------------
// Fill transactions and receipt verification.

/** What the intent asked for on the destination rollup. */
export interface ExpectedOutput {
  recipient: Address
  /** 0x0 for the native token. */
  outputToken: Address
  outputAmount: bigint
  /**
   * The destination's MurmurSettler, when the rollup has settlement contracts: the fill is then the
   * settler's `fill(orderId, originData, 0x)` and is proven by its `OutputFilled` event, not by a transfer.
   */
  settler?: Address
  /** `abi.encode(order)` of the intent (what the settler recomputes the order id from). */
  originData?: Hex
}

/** The fixed ABI of the settler's destination side (INTERFACES.md, Settlement contracts). */
export const SETTLER_FILL_ABI = parseAbi([
  'function fill(bytes32 orderId, bytes originData, bytes fillerData) payable',
  'event OutputFilled(bytes32 indexed orderId, address indexed filler, address token, uint256 amount, address recipient)',
])

const ERC20_ABI = parseAbi([
  'function transfer(address to, uint256 amount) returns (bool)',
  'event Transfer(address indexed from, address indexed to, uint256 value)',
])

/** The transaction that fills `intentId`: `{to, value, data}` with the intent id as marker. */
export function fillCall(intentId: Hex, out: ExpectedOutput): { to: Address; value: bigint; data: Hex } {
  const token = out.outputToken.toLowerCase() as Address
  const recipient = out.recipient.toLowerCase() as Address
  if (out.settler !== undefined) {
    // The order id is the call's first argument: the marker a nonce scan finds.
    const data = encodeFunctionData({
      abi: SETTLER_FILL_ABI,
      functionName: 'fill',
      args: [intentId, out.originData ?? '0x', '0x'],
    })
    return {
      to: out.settler.toLowerCase() as Address,
      value: token === NATIVE_TOKEN ? out.outputAmount : 0n,
      data,
    }
  }
  if (token === NATIVE_TOKEN) return { to: recipient, value: out.outputAmount, data: intentId }
  const transfer = encodeFunctionData({
    abi: ERC20_ABI,
    functionName: 'transfer',
    args: [recipient, out.outputAmount],
  })
  return { to: token, value: 0n, data: concatHex([transfer, intentId]) }
}

type FillTx = Awaited<ReturnType<PublicClient['getTransaction']>>
type FillReceipt = Awaited<ReturnType<PublicClient['getTransactionReceipt']>>

/** What a fill check reads of a rollup: its head, and a block with its transactions and receipts. */
export type FillChain = Pick<PublicClient, 'getBlockNumber' | 'getBlock' | 'getBlockReceipts'>

/**
 * Result of a fill check.
 * - 'valid': the named block is final on this node's RPC, has the named hash, holds the transaction, and
 *   its receipt delivers the expected output;
 * - 'invalid': positive evidence against the fill: the final block at that number has another hash
 *   (reorg, or a made-up block), does not hold the transaction, or the transaction does not deliver;
 * - 'pending': the block is not final yet on this node's RPC (fewer than `confirmations` blocks on top
 *   of it, or the RPC has not reached it): ask again later;
 * - 'unknown': the RPC did not answer, or answered inconsistently.
 * Only 'valid' lets a fill into a block (state/app.ts `validateBlock`).
 */
export type FillVerdict = 'valid' | 'invalid' | 'pending' | 'unknown'

interface HeldBlock {
  hash: Hex
  txs: Map<string, FillTx>
  receipts: Map<string, FillReceipt>
}

/** Options of {@link FillBlocks}. */
export interface FillBlocksOptions {
  /** Genesis `rollups[].confirmations`: block `n` is final once `head - n >= confirmations`. Default 0. */
  confirmations?: bigint
  /** Final blocks kept. Default 64. */
  maxBlocks?: number
}

/**
 * Checks fills of one rollup against this node's RPC, a block at a time: the transactions and receipts
 * of a block are fetched once (two calls) for all the fills it carries, because an executor confirms
 * the fills of a rollup block together and every validator checks every fill. Only final blocks are
 * read and kept, so what is kept never changes; the head is asked once for all the fills being checked
 * at that moment, and not at all for a block already known to be final.
 */
export class FillBlocks {
  readonly #client: FillChain
  readonly #confirmations: bigint
  readonly #max: number
  readonly #blocks = new Map<bigint, Promise<HeldBlock | undefined>>()
  /** Highest head this RPC reported; -1 before the first answer. */
  #head = -1n
  #asking: Promise<boolean> | undefined

  constructor(client: FillChain, options: FillBlocksOptions = {}) {
    this.#client = client
    this.#confirmations = options.confirmations ?? 0n
    this.#max = options.maxBlocks ?? 64
    if (this.#confirmations < 0n) throw new RangeError('confirmations must not be negative')
  }

  /** Checks `fill` (its `chainId` must be this client's chain). See {@link FillVerdict}. */
  async verify(fill: Fill, expected: ExpectedOutput): Promise<FillVerdict> {
    const final = await this.#isFinal(fill.blockNumber)
    if (final === undefined) return 'unknown'
    if (!final) return 'pending'
    const cached = this.#blocks.has(fill.blockNumber)
    let block = await this.#block(fill.blockNumber)
    if (block === undefined) return 'unknown'
    if (block.hash !== fill.blockHash && cached) {
      // A kept block can still be replaced on a rollup whose confirmations are too few for its reorgs (a
      // devnet's anvil restarted from a state dumped a block earlier re-mines that block): before
      // calling the fill invalid, read the block again.
      this.#blocks.delete(fill.blockNumber)
      block = await this.#block(fill.blockNumber)
      if (block === undefined) return 'unknown'
    }
    if (block.hash !== fill.blockHash) return 'invalid'
    const tx = block.txs.get(fill.txHash)
    // The final block the fill names does not hold its transaction: whatever happened, not there.
    if (tx === undefined) return 'invalid'
    const receipt = block.receipts.get(fill.txHash)
    if (receipt === undefined || receipt.blockHash.toLowerCase() !== block.hash) {
      // Transactions and receipts of different blocks: the RPC answered inconsistently. Read it again.
      this.#blocks.delete(fill.blockNumber)
      return 'unknown'
    }
    return judgeFill(tx, receipt, fill, expected)
  }

  /** True when block `n` is final on this RPC, undefined when the RPC did not answer. */
  async #isFinal(n: bigint): Promise<boolean | undefined> {
    if (this.#head - n >= this.#confirmations) return true
    // One head request serves every check waiting for one.
    this.#asking ??= this.#client.getBlockNumber({ cacheTime: 0 }).then(
      (h) => {
        this.#asking = undefined
        if (h > this.#head) this.#head = h
        return true
      },
      () => {
        this.#asking = undefined
        return false
      },
    )
    if (!(await this.#asking)) return undefined
    return this.#head - n >= this.#confirmations
  }

  #block(n: bigint): Promise<HeldBlock | undefined> {
    let held = this.#blocks.get(n)
    if (held === undefined) {
      held = Promise.all([
        this.#client.getBlock({ blockNumber: n, includeTransactions: true }),
        this.#client.getBlockReceipts({ blockNumber: n }),
      ]).then(
        ([block, receipts]) => ({
          hash: (block.hash ?? '0x').toLowerCase() as Hex,
          txs: new Map(block.transactions.map((t) => [t.hash.toLowerCase(), t as FillTx])),
          receipts: new Map(receipts.map((r) => [r.transactionHash.toLowerCase(), r as FillReceipt])),
        }),
        () => {
          // The RPC failed: ask again next time.
          this.#blocks.delete(n)
          return undefined
        },
      )
      this.#blocks.set(n, held)
      if (this.#blocks.size > this.#max) this.#blocks.delete(this.#blocks.keys().next().value!)
    }
    return held
  }
}

/**
 * Checks one fill through `client` (an RPC of `fill.chainId`, the validator's own), as {@link FillBlocks}
 * does, with nothing kept between calls. `confirmations`: the rollup's genesis `confirmations`.
 */
export function verifyFillReceipt(
  client: FillChain,
  fill: Fill,
  expected: ExpectedOutput,
  confirmations = 0n,
): Promise<FillVerdict> {
  return new FillBlocks(client, { confirmations, maxBlocks: 1 }).verify(fill, expected)
}

/**
 * The transaction of a fill, in the block the fill names: it succeeded, was sent by `fill.executor` on
 * `fill.chainId`, carries the intent id marker, and delivered exactly `outputAmount` to `recipient`: as
 * the transaction's value to the recipient for the native token, or as a
 * `Transfer(executor, recipient, outputAmount)` log of the token contract for an ERC-20.
 */
function judgeFill(tx: FillTx, receipt: FillReceipt, fill: Fill, expected: ExpectedOutput): FillVerdict {
  if (receipt.status !== 'success') return 'invalid'
  if (tx.from.toLowerCase() !== fill.executor) return 'invalid'
  if (tx.chainId !== undefined && BigInt(tx.chainId) !== fill.chainId) return 'invalid'
  const call = fillCall(fill.intentId, expected)
  if ((tx.to ?? '').toLowerCase() !== call.to || tx.input.toLowerCase() !== call.data) return 'invalid'
  if (expected.settler !== undefined) return judgeSettlerFill(tx, receipt, fill, expected, call.to)
  if (expected.outputToken.toLowerCase() === NATIVE_TOKEN) {
    return tx.value === expected.outputAmount ? 'valid' : 'invalid'
  }
  if (tx.value !== 0n) return 'invalid'
  const recipient = expected.recipient.toLowerCase()
  for (const log of receipt.logs) {
    if (log.address.toLowerCase() !== call.to) continue
    try {
      const ev = decodeEventLog({ abi: ERC20_ABI, eventName: 'Transfer', data: log.data, topics: log.topics })
      if (
        ev.args.from.toLowerCase() === fill.executor &&
        ev.args.to.toLowerCase() === recipient &&
        ev.args.value === expected.outputAmount
      ) {
        return 'valid'
      }
    } catch {
      // another event of the token
    }
  }
  return 'invalid'
}

/**
 * A fill through the destination settler: the transaction called the settler's `fill` for this order
 * (checked by the caller) with the native output as its value, and the settler emitted
 * `OutputFilled(orderId, executor, outputToken, outputAmount, recipient)`. Any other transfer proves nothing.
 */
function judgeSettlerFill(
  tx: FillTx,
  receipt: FillReceipt,
  fill: Fill,
  expected: ExpectedOutput,
  settler: Address,
): FillVerdict {
  const token = expected.outputToken.toLowerCase()
  if (tx.value !== (token === NATIVE_TOKEN ? expected.outputAmount : 0n)) return 'invalid'
  for (const log of receipt.logs) {
    if (log.address.toLowerCase() !== settler) continue
    try {
      const ev = decodeEventLog({
        abi: SETTLER_FILL_ABI,
        eventName: 'OutputFilled',
        data: log.data,
        topics: log.topics,
      })
      if (
        ev.args.orderId.toLowerCase() === fill.intentId &&
        ev.args.filler.toLowerCase() === fill.executor &&
        ev.args.token.toLowerCase() === token &&
        ev.args.amount === expected.outputAmount &&
        ev.args.recipient.toLowerCase() === expected.recipient.toLowerCase()
      ) {
        return 'valid'
      }
    } catch {
      // another event of the settler
    }
  }
  return 'invalid'
}
