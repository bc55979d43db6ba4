/**
 * The fill relay (rollups/fill-relay.ts) against a real settler on anvil: an order filled through the
 * settler by one executor is found (`filledBy`, `OutputFilled`) and announced by another account, the
 * filler named as the fill's executor, once the fill's block is final; the relayed fill is 'valid' for
 * the receipt check every validator runs, ACCEPTed on gossip when the relayer is the assignee, REJECTed
 * when it is not. An order nobody filled is not announced. And the gossip rules of a validator
 * announcing its own fill of an intent that has moved away from it.
 */
import pino from 'pino'
import type { Address, Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeOrderData, type GaslessCrossChainOrder, intentId } from '../src/codec/intent.ts'
import {
  type ExpectedOutput,
  type SignedFill,
  signFill,
  validateFill,
  verifyFillReceipt,
} from '../src/rollups/fill.ts'
import { FillRelay, findSettlerFill } from '../src/rollups/fill-relay.ts'
import { makeValidatorSet, TEST_NETWORK_ID } from './helpers/settlement.ts'
import {
  rpc,
  type SettlementChain,
  type SettlementEnv,
  startSettlementEnv,
} from './helpers/settlement-env.ts'
import { encodeOrder, fill, makeOrder, mint } from './helpers/settlement-orders.ts'

const SET = makeValidatorSet(4, 'fill-relay')
let env: SettlementEnv
let A: SettlementChain

beforeAll(async () => {
  env = await startSettlementEnv(SET, { count: 1 })
  A = env.chains[0]!
  await mint(A, A.addresses.executor, 10n ** 24n)
}, 120_000)
afterAll(async () => {
  await env?.stop()
})

const relayerKey = () => env.rollups.accounts[4]!.privateKey

function relayOn(chain: SettlementChain, confirmations: bigint, published: SignedFill[]) {
  return new FillRelay(
    { pollMs: 20, waitMs: 20_000 },
    {
      client: (c) => (c === chain.chainId ? chain.pub : undefined),
      settler: (c) => (c === chain.chainId ? chain.contracts.settler : undefined),
      confirmations: () => confirmations,
      account: privateKeyToAccount(relayerKey()),
      networkId: TEST_NETWORK_ID,
      publish: async (f) => {
        // What the announcement sees: the head when it goes out (the fill's block must be final by then).
        published.push(f)
        heads.push(await chain.pub.getBlockNumber({ cacheTime: 0 }))
      },
      log: pino({ level: 'silent' }),
    },
  )
}
const heads: bigint[] = []

function expectedOf(chain: SettlementChain, order: GaslessCrossChainOrder): ExpectedOutput {
  const d = decodeOrderData(order.orderData)
  return {
    recipient: d.recipient,
    outputToken: d.outputToken,
    outputAmount: d.outputAmount,
    settler: chain.contracts.settler,
    originData: encodeOrder(order),
  }
}

describe('fill relay', () => {
  it('announces the fill the settler recorded, its filler as executor, once its block is final', async () => {
    const order = await makeOrder(A, { destinationChainIds: [A.chainId] })
    const id = intentId(order)
    const published: SignedFill[] = []
    const relay = relayOn(A, 2n, published)
    // Nobody filled it yet: nothing to relay.
    expect(await relay.relayIfFilled(id, A.chainId)).toBeUndefined()
    expect(published).toHaveLength(0)

    const receipt = await fill(A, order, A.contracts.token, 990_000n)
    // Automine: nothing is mined on top until told; the relay waits for two blocks on top of the fill.
    const pending = relay.relayIfFilled(id, A.chainId)
    await rpc(A.rpcUrl, 'evm_mine', [])
    await rpc(A.rpcUrl, 'evm_mine', [])
    const signed = (await pending)!
    expect(published).toEqual([signed])
    expect(heads.at(-1)! - receipt.blockNumber).toBeGreaterThanOrEqual(2n)
    expect(signed.fill).toEqual({
      intentId: id,
      chainId: A.chainId,
      txHash: receipt.transactionHash.toLowerCase(),
      blockNumber: receipt.blockNumber,
      blockHash: receipt.blockHash.toLowerCase(),
      executor: A.addresses.executor,
    })
    expect(await findSettlerFill(A.pub, A.contracts.settler, id, { windowBlocks: 1n })).toEqual({
      txHash: signed.fill.txHash,
      blockNumber: signed.fill.blockNumber,
      blockHash: signed.fill.blockHash,
      filler: A.addresses.executor,
    })

    // Validators check it on chain as any fill: valid, and invalid when it names another filler.
    expect(await verifyFillReceipt(A.pub, signed.fill, expectedOf(A, order))).toBe('valid')
    const other = { ...signed.fill, executor: A.addresses.relayer }
    expect(await verifyFillReceipt(A.pub, other, expectedOf(A, order))).toBe('invalid')

    // On gossip: ACCEPTed when the relayer is the assignee, REJECTed when it is someone else.
    const ctx = (executor: Address) => ({
      networkId: TEST_NETWORK_ID,
      assignment: (x: Hex) => (x === id ? { chainId: A.chainId, executor } : undefined),
    })
    expect(await validateFill(signed, ctx(A.addresses.relayer))).toEqual({ result: 'ACCEPT' })
    expect(await validateFill(signed, ctx(A.addresses.user))).toEqual({
      result: 'REJECT',
      code: 'BAD_SIGNATURE',
    })
  })

  it('a validator may announce its own fill of an intent that moved to another executor', async () => {
    const filler = privateKeyToAccount(generatePrivateKey())
    const me = filler.address.toLowerCase() as Address
    const f = {
      intentId: `0x${'ab'.repeat(32)}` as Hex,
      chainId: 901n,
      txHash: `0x${'cd'.repeat(32)}` as Hex,
      blockNumber: 7n,
      blockHash: `0x${'ef'.repeat(32)}` as Hex,
      executor: me,
    }
    const signed = await signFill(filler, TEST_NETWORK_ID, f)
    const ctx = {
      networkId: TEST_NETWORK_ID,
      assignment: () => ({ chainId: 901n, executor: A.addresses.user }),
    }
    expect(await validateFill(signed, { ...ctx, isValidator: (a: Address) => a === me })).toEqual({
      result: 'ACCEPT',
    })
    expect(await validateFill(signed, { ...ctx, isValidator: () => false })).toEqual({
      result: 'REJECT',
      code: 'NOT_ASSIGNED',
    })
    expect(await validateFill(signed, ctx)).toEqual({ result: 'REJECT', code: 'NOT_ASSIGNED' })
  })
})
