/**
 * The settlement contracts on two real anvil rollups (901 origin, 902 destination): open, fill, claim and
 * refund with exact balances, and every refusal by its custom error. Certificates are signed with the
 * node's own vote code (test/helpers/settlement.ts), orders with its intent codec.
 */
import {
  type Address,
  decodeEventLog,
  encodeFunctionData,
  getAddress,
  type Hex,
  parseEther,
  type TransactionReceipt,
} from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GASLESS_ORDER_TYPES } from '../src/codec/eip712.ts'
import { intentId, MURMUR_ORDER_TYPEHASH, orderTypedData } from '../src/codec/intent.ts'
import { murmurSettlerAbi } from '../src/contracts/abi.ts'
import {
  commitProof,
  type Leaf,
  makeHeader,
  makeValidatorSet,
  settlementTree,
  settlerWithClientErrorsAbi,
} from './helpers/settlement.ts'
import {
  advanceTime,
  balanceOf,
  type Call,
  revertOf,
  type SettlementChain,
  type SettlementEnv,
  send,
  startSettlementEnv,
  ZERO,
} from './helpers/settlement-env.ts'
import {
  approve,
  encodeOrder,
  makeOrder,
  mint,
  openAndFill,
  openFor,
  refundLeaf,
} from './helpers/settlement-orders.ts'
import {
  erc1271WalletAbi,
  erc1271WalletBytecode,
  reentrantTokenAbi,
  reentrantTokenBytecode,
} from './helpers/test-contracts.ts'

// Powers 1, 1, 2, 2 (total 6): the two heaviest hold exactly 2/3, which is not enough.
const SET = makeValidatorSet(4, 'contracts-test/set', (i) => (i < 2 ? 1n : 2n))
const GRACE = 600n
let env: SettlementEnv
let A: SettlementChain // origin
let B: SettlementChain // destination
let height = 100n

beforeAll(async () => {
  env = await startSettlementEnv(SET, { refundGraceSec: GRACE })
  ;[A, B] = env.chains as [SettlementChain, SettlementChain]
  await mint(A, A.addresses.user, 10n ** 24n)
  await approve(A, 'user', 2n ** 255n)
  await mint(B, B.addresses.executor, 10n ** 24n)
}, 120_000)

afterAll(async () => {
  await env?.stop()
})

const userKey = () => privateKeyToAccount(env.rollups.accounts[1]!.privateKey)

/** A certified header committing `leaves`, signed by `signers` (default all), at a fresh height. */
async function certify(leaves: readonly Leaf[], signers = SET.accounts) {
  const tree = settlementTree(leaves)
  const header = makeHeader(SET, height++, tree.root)
  return { proofs: tree.proofs, proof: await commitProof(SET, header, signers) }
}

const settlerCall = (
  chain: SettlementChain,
  functionName: string,
  args: readonly unknown[],
  value?: bigint,
): Call => ({
  address: chain.contracts.settler,
  abi: settlerWithClientErrorsAbi,
  functionName,
  args,
  ...(value === undefined ? {} : { value }),
})

const status = (chain: SettlementChain, id: Hex) =>
  chain.pub.readContract({
    address: chain.contracts.settler,
    abi: murmurSettlerAbi,
    functionName: 'orderStatus',
    args: [id],
  })

/** An ERC-20 order 901 -> 902, opened by the executor for the user and filled on 902. */
async function openedAndFilled(inputAmount = 1_000_000n, outputAmount = 990_000n) {
  return openAndFill(A, B, userKey(), { inputAmount, outputAmount })
}

/** The first settler event called `name` in the receipt. */
function settlerEvent(receipt: TransactionReceipt, name: string) {
  for (const log of receipt.logs) {
    try {
      const e = decodeEventLog({ abi: murmurSettlerAbi, ...log })
      if (e.eventName === name) return e
    } catch {
      // another contract's log
    }
  }
  return undefined
}

/** Two unrelated leaves, so that proofs are not trivial. */
function otherLeaves(): Leaf[] {
  return [1, 2].map((i) => ({
    kind: 1 + (i % 2),
    orderId: `0x${String(i).padStart(64, '0')}` as Hex,
    originChainId: A.chainId,
    destinationChainId: B.chainId,
    executor: A.addresses.relayer,
    token: A.contracts.token,
    amount: BigInt(i),
    recipient: A.addresses.relayer,
  }))
}

describe('openFor, fill, claim', () => {
  it('charges the user inputAmount, pays the recipient outputAmount, repays the executor, empties the escrow', async () => {
    const inputAmount = 1_234_567n
    const outputAmount = 1_200_000n
    const before = {
      user: await balanceOf(A, A.contracts.token, A.addresses.user),
      executorA: await balanceOf(A, A.contracts.token, A.addresses.executor),
      executorB: await balanceOf(B, B.contracts.token, B.addresses.executor),
      recipient: await balanceOf(B, B.contracts.token, B.addresses.recipient),
      escrow: await balanceOf(A, A.contracts.token, A.contracts.settler),
    }
    const { order, id, leaf } = await openedAndFilled(inputAmount, outputAmount)
    expect(await status(A, id)).toBe(1)
    expect(await balanceOf(A, A.contracts.token, A.contracts.settler)).toBe(before.escrow + inputAmount)
    const filler = await B.pub.readContract({
      address: B.contracts.settler,
      abi: murmurSettlerAbi,
      functionName: 'filledBy',
      args: [id],
    })
    expect(filler.toLowerCase()).toBe(B.addresses.executor)

    const { proofs, proof } = await certify([...otherLeaves(), leaf])
    const receipt = await send(A, A.wallets.relayer, settlerCall(A, 'claim', [[leaf], [proofs[2]], proof]))
    const settled = settlerEvent(receipt, 'Settled')
    expect(settled?.args).toMatchObject({
      orderId: id,
      token: getAddress(A.contracts.token),
      amount: inputAmount,
    })
    expect(await status(A, id)).toBe(2)
    expect(await balanceOf(A, A.contracts.token, A.addresses.user)).toBe(before.user - inputAmount)
    expect(await balanceOf(A, A.contracts.token, A.addresses.executor)).toBe(before.executorA + inputAmount)
    expect(await balanceOf(B, B.contracts.token, B.addresses.executor)).toBe(before.executorB - outputAmount)
    expect(await balanceOf(B, B.contracts.token, B.addresses.recipient)).toBe(before.recipient + outputAmount)
    expect(await balanceOf(A, A.contracts.token, A.contracts.settler)).toBe(before.escrow)
    expect(order.orderDataType).toBe(MURMUR_ORDER_TYPEHASH)
  })

  it('claims a batch of orders with one certificate', async () => {
    const a = await openedAndFilled()
    const b = await openedAndFilled()
    const { proofs, proof } = await certify([a.leaf, b.leaf])
    await send(A, A.wallets.relayer, settlerCall(A, 'claim', [[a.leaf, b.leaf], proofs, proof]))
    expect([await status(A, a.id), await status(A, b.id)]).toEqual([2, 2])
  })
})

describe('open', () => {
  it('escrows a native input sent as value and emits Open with the ERC-7683 resolved order', async () => {
    const order = await makeOrder(A, {
      inputToken: ZERO,
      inputAmount: parseEther('0.5'),
      destinationChainIds: [B.chainId, 903n],
    })
    const onchain = {
      fillDeadline: order.fillDeadline,
      orderDataType: order.orderDataType,
      orderData: order.orderData,
    }
    const receipt = await send(A, A.wallets.user, settlerCall(A, 'open', [onchain], parseEther('0.5')))
    const log = decodeEventLog({ abi: murmurSettlerAbi, ...receipt.logs[0]! })
    expect(log.eventName).toBe('Open')
    const r = (log.args as { resolvedOrder: any }).resolvedOrder
    const block = await A.pub.getBlock({ blockNumber: receipt.blockNumber })
    const gasless = {
      ...order,
      nonce: (1n << 255n) | 0n,
      openDeadline: Number(block.timestamp),
    }
    const id = intentId(gasless)
    expect((log.args as { orderId: Hex }).orderId).toBe(id)
    expect(r.orderId).toBe(id)
    expect(r.user.toLowerCase()).toBe(A.addresses.user)
    expect(r.originChainId).toBe(A.chainId)
    expect(r.openDeadline).toBe(Number(block.timestamp))
    expect(r.fillDeadline).toBe(order.fillDeadline)
    const pad = (a: Address) => `0x${a.slice(2).padStart(64, '0')}`
    expect(r.maxSpent).toEqual(
      [B.chainId, 903n].map((chainId) => ({
        token: pad(A.contracts.token),
        amount: 990_000n,
        recipient: pad(A.addresses.recipient),
        chainId,
      })),
    )
    expect(r.minReceived).toEqual([
      { token: pad(ZERO), amount: parseEther('0.5'), recipient: pad(ZERO), chainId: A.chainId },
    ])
    expect(r.fillInstructions).toEqual(
      [B.chainId, 903n].map((destinationChainId) => ({
        destinationChainId,
        destinationSettler: pad(A.contracts.settler),
        originData: encodeOrder(gasless),
      })),
    )
    expect(await status(A, id)).toBe(1)
    expect(await A.pub.getBalance({ address: A.contracts.settler })).toBe(parseEther('0.5'))
    // The escrowed native input goes back through refundExpired like any other.
    await advanceTime(A, 1200 + Number(GRACE) + 1)
    await send(A, A.wallets.relayer, settlerCall(A, 'refundExpired', [id]))
    expect(await A.pub.getBalance({ address: A.contracts.settler })).toBe(0n)
  })

  it('escrows an ERC-20 input from the caller; a single fill instruction for chain 0 when any rollup may fill', async () => {
    const order = await makeOrder(A, { inputAmount: 777n })
    const onchain = {
      fillDeadline: order.fillDeadline,
      orderDataType: order.orderDataType,
      orderData: order.orderData,
    }
    const escrow = await balanceOf(A, A.contracts.token, A.contracts.settler)
    expect((await revertOf(A, A.wallets.user, settlerCall(A, 'open', [onchain], 1n)))?.name).toBe(
      'WrongValue',
    )
    const receipt = await send(A, A.wallets.user, settlerCall(A, 'open', [onchain]))
    const open = settlerEvent(receipt, 'Open')
    const r = (open!.args as { resolvedOrder: any }).resolvedOrder
    expect(r.fillInstructions).toHaveLength(1)
    expect(r.fillInstructions[0].destinationChainId).toBe(0n)
    expect(r.maxSpent[0].chainId).toBe(0n)
    expect(await balanceOf(A, A.contracts.token, A.contracts.settler)).toBe(escrow + 777n)
  })

  it('refuses a native input through openFor', async () => {
    const order = await makeOrder(A, { inputToken: ZERO })
    const signature = await userKey().signTypedData({
      domain: { name: 'Murmur', version: '1', chainId: A.chainId, verifyingContract: A.contracts.settler },
      types: GASLESS_ORDER_TYPES,
      primaryType: 'GaslessCrossChainOrder',
      message: order,
    })
    expect(
      (await revertOf(A, A.wallets.executor, settlerCall(A, 'openFor', [order, signature, '0x'])))?.name,
    ).toBe('NativeInputNeedsOpen')
  })
})

describe('refunds', () => {
  it('pays the user back for a certified REFUND leaf; a refund leaf that does not match the escrow is refused', async () => {
    const order = await makeOrder(A, { inputAmount: 5000n })
    const { id } = await openFor(A, order, userKey())
    const user = await balanceOf(A, A.contracts.token, A.addresses.user)
    const wrong = { ...refundLeaf(order, A.contracts.token, 5000n), amount: 5001n }
    const bad = await certify([wrong])
    expect(
      (await revertOf(A, A.wallets.relayer, settlerCall(A, 'refund', [[wrong], bad.proofs, bad.proof])))
        ?.name,
    ).toBe('LeafMismatch')
    const leaf = refundLeaf(order, A.contracts.token, 5000n)
    const { proofs, proof } = await certify([leaf, ...otherLeaves()])
    await send(A, A.wallets.relayer, settlerCall(A, 'refund', [[leaf], [proofs[0]], proof]))
    expect(await status(A, id)).toBe(3)
    expect(await balanceOf(A, A.contracts.token, A.addresses.user)).toBe(user + 5000n)
  })

  it('refundExpired pays the user back after fillDeadline + grace, and not before', async () => {
    const order = await makeOrder(A, { inputAmount: 4242n, fillInSec: 700 })
    const { id } = await openFor(A, order, userKey())
    const user = await balanceOf(A, A.contracts.token, A.addresses.user)
    await advanceTime(A, 700 + Number(GRACE) - 30)
    expect((await revertOf(A, A.wallets.relayer, settlerCall(A, 'refundExpired', [id])))?.name).toBe(
      'TooEarly',
    )
    await advanceTime(A, 60)
    await send(A, A.wallets.relayer, settlerCall(A, 'refundExpired', [id]))
    expect(await status(A, id)).toBe(3)
    expect(await balanceOf(A, A.contracts.token, A.addresses.user)).toBe(user + 4242n)
    expect((await revertOf(A, A.wallets.relayer, settlerCall(A, 'refundExpired', [id])))?.name).toBe(
      'OrderNotOpened',
    )
  })
})

describe('ERC-1271', () => {
  it('opens an order of a contract wallet whose owner signed the order id; refuses another signer', async () => {
    const owner = privateKeyToAccount(env.rollups.accounts[5]!.privateKey)
    const deployHash = await A.wallets.owner.deployContract({
      abi: erc1271WalletAbi,
      bytecode: erc1271WalletBytecode,
      args: [owner.address],
    })
    const wallet = (
      await A.pub.waitForTransactionReceipt({ hash: deployHash })
    ).contractAddress!.toLowerCase() as Address
    await mint(A, wallet, 10_000n)
    await send(A, A.wallets.owner, {
      address: wallet,
      abi: erc1271WalletAbi,
      functionName: 'approve',
      args: [A.contracts.token, A.contracts.settler, 10_000n],
    })
    const order = await makeOrder(A, { user: wallet, inputAmount: 10_000n })
    const id = intentId(order)
    const forged = await userKey().sign({ hash: id })
    expect(
      (await revertOf(A, A.wallets.executor, settlerCall(A, 'openFor', [order, forged, '0x'])))?.name,
    ).toBe('BadSignature')
    const signature = await owner.sign({ hash: id })
    await send(A, A.wallets.executor, settlerCall(A, 'openFor', [order, signature, '0x']))
    expect(await status(A, id)).toBe(1)
    expect(await balanceOf(A, A.contracts.token, wallet)).toBe(0n)
  })
})

describe('refused', () => {
  it('a second claim, a refund after a claim, a claim after a refund', async () => {
    const { order, leaf } = await openedAndFilled()
    const { proofs, proof } = await certify([leaf])
    await send(A, A.wallets.relayer, settlerCall(A, 'claim', [[leaf], proofs, proof]))
    expect(
      (await revertOf(A, A.wallets.relayer, settlerCall(A, 'claim', [[leaf], proofs, proof])))?.name,
    ).toBe('OrderNotOpened')
    const rleaf = refundLeaf(order, A.contracts.token, 1_000_000n)
    const r = await certify([rleaf])
    expect(
      (await revertOf(A, A.wallets.relayer, settlerCall(A, 'refund', [[rleaf], r.proofs, r.proof])))?.name,
    ).toBe('OrderNotOpened')

    const second = await openedAndFilled()
    const rleaf2 = refundLeaf(second.order, A.contracts.token, 1_000_000n)
    const r2 = await certify([rleaf2, second.leaf])
    await send(A, A.wallets.relayer, settlerCall(A, 'refund', [[rleaf2], [r2.proofs[0]], r2.proof]))
    expect(
      (
        await revertOf(
          A,
          A.wallets.relayer,
          settlerCall(A, 'claim', [[second.leaf], [r2.proofs[1]], r2.proof]),
        )
      )?.name,
    ).toBe('OrderNotOpened')
  })

  it('a leaf of the wrong kind, a proof of another leaf, a batch of mismatched lengths', async () => {
    const a = await openedAndFilled()
    const b = await openedAndFilled()
    const { proofs, proof } = await certify([a.leaf, b.leaf])
    const reason = async (leaves: Leaf[], p: Hex[][], fn = 'claim') =>
      (await revertOf(A, A.wallets.relayer, settlerCall(A, fn, [leaves, p, proof])))?.name
    expect(await reason([a.leaf], [proofs[1]!])).toBe('BadProof')
    expect(await reason([{ ...a.leaf, amount: a.leaf.amount + 1n }], [proofs[0]!])).toBe('BadProof')
    expect(await reason([a.leaf], [proofs[0]!], 'refund')).toBe('WrongLeafKind')
    expect(await reason([a.leaf, b.leaf], [proofs[0]!])).toBe('LengthMismatch')
    expect(await reason([{ ...a.leaf, originChainId: B.chainId }], [proofs[0]!])).toBe('WrongChain')
  })

  it('a fill after the deadline, a second fill, a fill on a chain not listed, a fill of another order id', async () => {
    const order = await makeOrder(A, { destinationChainIds: [B.chainId], fillInSec: 900 })
    const id = intentId(order)
    const originData = encodeOrder(order)
    await approve(B, 'executor', 10n ** 24n)
    expect(
      (await revertOf(A, A.wallets.executor, settlerCall(A, 'fill', [id, originData, '0x'])))?.name,
    ).toBe('NotADestination')
    expect(
      (
        await revertOf(
          B,
          B.wallets.executor,
          settlerCall(B, 'fill', [`0x${'11'.repeat(32)}`, originData, '0x']),
        )
      )?.name,
    ).toBe('OrderIdMismatch')
    await send(B, B.wallets.executor, settlerCall(B, 'fill', [id, originData, '0x']))
    expect((await revertOf(B, B.wallets.relayer, settlerCall(B, 'fill', [id, originData, '0x'])))?.name).toBe(
      'AlreadyFilled',
    )

    const late = await makeOrder(B, { destinationChainIds: [B.chainId], fillInSec: 900 })
    await advanceTime(B, 901)
    expect(
      (
        await revertOf(
          B,
          B.wallets.executor,
          settlerCall(B, 'fill', [intentId(late), encodeOrder(late), '0x']),
        )
      )?.name,
    ).toBe('FillDeadlinePassed')
    // Orders take their deadlines from the origin's clock: keep 901 at least as late as 902.
    await advanceTime(A, 901)
  })

  it('openFor: another settler, a passed open deadline, a used nonce, a forged signature', async () => {
    const order = await makeOrder(A)
    const call = async (o: typeof order, sig?: Hex) =>
      (
        await revertOf(
          A,
          A.wallets.executor,
          settlerCall(A, 'openFor', [o, sig ?? (await userKey().signTypedData(orderTypedData(o))), '0x']),
        )
      )?.name
    expect(await call({ ...order, originSettler: A.addresses.relayer })).toBe('WrongSettler')
    expect(await call({ ...order, originChainId: B.chainId })).toBe('WrongChain')
    expect(await call({ ...order, fillDeadline: order.openDeadline })).toBe('BadDeadlines')
    expect(await call({ ...order, orderDataType: `0x${'22'.repeat(32)}` })).toBe('WrongOrderDataType')
    expect(
      await call(
        order,
        await privateKeyToAccount(env.rollups.accounts[4]!.privateKey).signTypedData(orderTypedData(order)),
      ),
    ).toBe('BadSignature')
    await openFor(A, order, userKey())
    expect(await call(order)).toBe('NonceUsed')
    const late = await makeOrder(A)
    await advanceTime(A, 601)
    expect(await call(late)).toBe('OpenDeadlinePassed')
  })

  it('re-entry through a malicious input token', async () => {
    const hash = await A.wallets.deployer.deployContract({
      abi: reentrantTokenAbi,
      bytecode: reentrantTokenBytecode,
      args: [],
    })
    const evil = (await A.pub.waitForTransactionReceipt({ hash })).contractAddress!.toLowerCase() as Address
    await send(A, A.wallets.deployer, {
      address: evil,
      abi: reentrantTokenAbi,
      functionName: 'mint',
      args: [A.addresses.user, 10n ** 20n],
    })
    await approve(A, 'user', 10n ** 20n, evil)
    const { id, leaf } = await openAndFill(A, B, userKey(), { inputToken: evil, inputAmount: 1000n })
    const { proofs, proof } = await certify([leaf])
    // While the settler pays the executor in `evil`, the token calls claim again with the same leaf.
    const again = encodeFunctionData({
      abi: murmurSettlerAbi,
      functionName: 'claim',
      args: [[leaf], proofs as any, proof as any],
    })
    await send(A, A.wallets.deployer, {
      address: evil,
      abi: reentrantTokenAbi,
      functionName: 'arm',
      args: [A.contracts.settler, again],
    })
    const refused = await revertOf(A, A.wallets.relayer, {
      ...settlerCall(A, 'claim', [[leaf], proofs, proof]),
      abi: [...settlerWithClientErrorsAbi, ...reentrantTokenAbi.filter((x) => x.type === 'error')],
    })
    expect(refused?.name).toBe('ReentrancyGuardReentrantCall')
    expect(await status(A, id)).toBe(1)
    expect(await balanceOf(A, evil, A.contracts.settler)).toBe(1000n)
  })
})
