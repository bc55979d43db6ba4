/** Orders for the contract tests: built and signed with the node's own codec (src/codec/intent.ts). */
import { type Address, encodeAbiParameters, type Hex, type LocalAccount } from 'viem'
import { afterAll, beforeAll } from 'vitest'
import { GASLESS_ORDER_TYPES } from '../../src/codec/eip712.ts'
import { buildOrder, type GaslessCrossChainOrder, intentId, signOrder } from '../../src/codec/intent.ts'
import { murmurSettlerAbi, testTokenAbi } from '../../src/contracts/abi.ts'
import { KIND_FILL, KIND_REFUND, type Leaf, type ValidatorSet } from './settlement.ts'
import {
  chainTime,
  type Role,
  type SettlementChain,
  type SettlementEnv,
  send,
  startSettlementEnv,
} from './settlement-env.ts'

/** `abi.encode(GaslessCrossChainOrder)`: a fill's `originData`. */
export function encodeOrder(order: GaslessCrossChainOrder): Hex {
  return encodeAbiParameters(
    [{ type: 'tuple', components: GASLESS_ORDER_TYPES.GaslessCrossChainOrder }],
    [order],
  )
}

let nonce = 1n

/** What an order of the tests varies. */
export interface OrderSpec {
  inputToken?: Address
  inputAmount?: bigint
  outputToken?: Address
  outputAmount?: bigint
  destinationChainIds?: readonly bigint[]
  user?: Address
  /** Seconds from the origin's time to the fill deadline (default 1200). */
  fillInSec?: number
}

/** An order from `origin`'s user (or `spec.user`) to `origin`'s recipient, ERC-20 test token by default. */
export async function makeOrder(
  origin: SettlementChain,
  spec: OrderSpec = {},
): Promise<GaslessCrossChainOrder> {
  const now = await chainTime(origin)
  return buildOrder({
    originSettler: origin.contracts.settler,
    user: spec.user ?? origin.addresses.user,
    nonce: nonce++,
    originChainId: origin.chainId,
    openDeadline: now + 600,
    fillDeadline: now + (spec.fillInSec ?? 1200),
    inputToken: spec.inputToken ?? origin.contracts.token,
    inputAmount: spec.inputAmount ?? 1_000_000n,
    outputToken: spec.outputToken ?? origin.contracts.token,
    outputAmount: spec.outputAmount ?? 990_000n,
    recipient: origin.addresses.recipient,
    destinationChainIds: spec.destinationChainIds ?? [],
  })
}

/** Mints `amount` of the chain's test token to `to`. */
export async function mint(
  chain: SettlementChain,
  to: Address,
  amount: bigint,
  token = chain.contracts.token,
) {
  await send(chain, chain.wallets.deployer, {
    address: token,
    abi: testTokenAbi,
    functionName: 'mint',
    args: [to, amount],
  })
}

/** `role` approves the chain's settler for `amount` of `token`. */
export async function approve(
  chain: SettlementChain,
  role: Role,
  amount: bigint,
  token = chain.contracts.token,
) {
  await send(chain, chain.wallets[role], {
    address: token,
    abi: testTokenAbi,
    functionName: 'approve',
    args: [chain.contracts.settler, amount],
  })
}

/** Signs `order` as `signer` (the user's key) and has the executor open it on the origin. */
export async function openFor(origin: SettlementChain, order: GaslessCrossChainOrder, signer: LocalAccount) {
  const signature = await signOrder(signer, order)
  const receipt = await send(origin, origin.wallets.executor, {
    address: origin.contracts.settler,
    abi: murmurSettlerAbi,
    functionName: 'openFor',
    args: [order, signature, '0x'],
  })
  return { id: intentId(order), signature, receipt }
}

/** The executor fills `order` on `dest` (ERC-20 output: approves first; native: sends the value). */
export async function fill(
  dest: SettlementChain,
  order: GaslessCrossChainOrder,
  outputToken: Address,
  amount: bigint,
) {
  const native = BigInt(outputToken) === 0n
  if (!native) await approve(dest, 'executor', amount, outputToken)
  return send(dest, dest.wallets.executor, {
    address: dest.contracts.settler,
    abi: murmurSettlerAbi,
    functionName: 'fill',
    args: [intentId(order), encodeOrder(order), '0x'],
    value: native ? amount : 0n,
  })
}

/** The FILL leaf of an order filled on `dest` by `executor`. */
export function fillLeaf(
  order: GaslessCrossChainOrder,
  dest: bigint,
  executor: Address,
  outputToken: Address,
  outputAmount: bigint,
  recipient: Address,
): Leaf {
  return {
    kind: KIND_FILL,
    orderId: intentId(order),
    originChainId: order.originChainId,
    destinationChainId: dest,
    executor,
    token: outputToken,
    amount: outputAmount,
    recipient,
  }
}

/** The REFUND leaf of an order: pay `inputAmount` of `inputToken` back to the user. */
export function refundLeaf(order: GaslessCrossChainOrder, inputToken: Address, inputAmount: bigint): Leaf {
  return {
    kind: KIND_REFUND,
    orderId: intentId(order),
    originChainId: order.originChainId,
    destinationChainId: 0n,
    executor: '0x0000000000000000000000000000000000000000',
    token: inputToken,
    amount: inputAmount,
    recipient: order.user,
  }
}

/**
 * An ERC-20 order `origin` -> `dest` (its only destination): signed by `signer`, opened for the user by the
 * executor, filled on `dest` by the executor. Returns the order, its FILL leaf and both receipts.
 */
export async function openAndFill(
  origin: SettlementChain,
  dest: SettlementChain,
  signer: LocalAccount,
  spec: OrderSpec = {},
) {
  const outputToken = spec.outputToken ?? dest.contracts.token
  const outputAmount = spec.outputAmount ?? 990_000n
  const order = await makeOrder(origin, {
    destinationChainIds: [dest.chainId],
    ...spec,
    outputToken,
    outputAmount,
  })
  const opened = await openFor(origin, order, signer)
  const filled = await fill(dest, order, outputToken, outputAmount)
  const leaf = fillLeaf(
    order,
    dest.chainId,
    dest.addresses.executor,
    outputToken,
    outputAmount,
    origin.addresses.recipient,
  )
  return { order, id: opened.id, leaf, opened: opened.receipt, filled }
}

/**
 * One rollup with the contracts whose user holds test tokens and lets the settler pull them, for the tests
 * of the calling file (started before them, stopped after them). Read `.env` and `.chain` inside hooks
 * and tests.
 */
export function fundedOrigin(set: ValidatorSet): {
  readonly env: SettlementEnv
  readonly chain: SettlementChain
} {
  let env: SettlementEnv | undefined
  beforeAll(async () => {
    env = await startSettlementEnv(set, { count: 1 })
    const A = env.chains[0]!
    await mint(A, A.addresses.user, 10n ** 24n)
    await approve(A, 'user', 2n ** 255n)
  }, 120_000)
  afterAll(async () => {
    await env?.stop()
  })
  const started = () => {
    if (env === undefined) throw new Error('fundedOrigin: read it inside a hook or test')
    return env
  }
  return {
    get env() {
      return started()
    },
    get chain() {
      return started().chains[0]!
    },
  }
}
