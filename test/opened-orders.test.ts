/**
 * Orders users open on chain (issue 10 item 4), against a real settler on anvil: the settlement watch
 * picks a native-input `open` up from its `Open` event (the gasless order decoded from the fill
 * instruction's originData, its id the event's), keeps it while the mempool cannot verify it yet, and
 * leaves orders opened with a signature (`openFor`) to gossip; `OpenedOrders` says 'valid' for the opened
 * order, 'invalid' for one never opened by a block past its openDeadline, 'pending' before that.
 */
import pino from 'pino'
import { decodeEventLog, type Hex, parseEther } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  decodeOrderData,
  type GaslessCrossChainOrder,
  intentId,
  ONCHAIN_NONCE_BIT,
} from '../src/codec/intent.ts'
import { murmurSettlerAbi } from '../src/contracts/abi.ts'
import { OpenedOrders } from '../src/rollups/opened-orders.ts'
import { SettlementWatch } from '../src/rollups/settlement-watch.ts'
import { makeValidatorSet } from './helpers/settlement.ts'
import { advanceTime, type SettlementChain, send, ZERO } from './helpers/settlement-env.ts'
import { fundedOrigin, makeOrder, openFor } from './helpers/settlement-orders.ts'
import { tempStore } from './helpers/store.ts'

const silent = pino({ level: 'silent' })
const origin = fundedOrigin(makeValidatorSet(4, 'opened-orders'))
let A: SettlementChain
beforeAll(() => {
  A = origin.chain
})

/** The user opens a native-input order herself; returns the event's order id. */
async function openNative(amount: bigint): Promise<Hex> {
  const order = await makeOrder(A, { inputToken: ZERO, inputAmount: amount, destinationChainIds: [902n] })
  const receipt = await send(A, A.wallets.user, {
    address: A.contracts.settler,
    abi: murmurSettlerAbi,
    functionName: 'open',
    args: [
      { fillDeadline: order.fillDeadline, orderDataType: order.orderDataType, orderData: order.orderData },
    ],
    value: amount,
  })
  const log = decodeEventLog({ abi: murmurSettlerAbi, ...receipt.logs[0]! })
  if (log.eventName !== 'Open') throw new Error(`expected Open, got ${log.eventName}`)
  return log.args.orderId.toLowerCase() as Hex
}

describe('orders opened on chain, picked up from the Open event', () => {
  const db = tempStore('murmur-opened-orders-')
  const contracts = () =>
    new Map([[A.chainId, { settler: A.contracts.settler, lightClient: A.contracts.lightClient }]])
  const rpc = () => new Map([[Number(A.chainId), A.rpcUrl]])

  it('hands the mempool the gasless order of a native-input open, again until it is done; not a signed one', async () => {
    const id = await openNative(parseEther('0.25'))
    // A signed order opened for the user: its Open is not an unsigned intent to pick up.
    const signed = await openFor(
      A,
      await makeOrder(A),
      privateKeyToAccount(origin.env.rollups.accounts[1]!.privateKey),
    )
    const handed: GaslessCrossChainOrder[] = []
    let answer: 'retry' | 'done' = 'retry'
    const watch = new SettlementWatch(
      { intervalMs: 60_000 },
      {
        contracts: contracts(),
        rpc: rpc(),
        store: db.store,
        log: silent,
        onOpen: async (order) => {
          handed.push(order)
          return answer
        },
      },
    )
    try {
      await watch.poll()
      expect(handed.map(intentId)).toEqual([id])
      const order = handed[0]!
      expect(order.user).toBe(A.addresses.user)
      expect(order.originSettler).toBe(A.contracts.settler)
      expect(order.nonce & ONCHAIN_NONCE_BIT).toBe(ONCHAIN_NONCE_BIT)
      expect(decodeOrderData(order.orderData)).toMatchObject({
        inputToken: ZERO,
        inputAmount: parseEther('0.25'),
      })
      expect(await watch.get(signed.id)).toMatchObject({ state: 'opened' })
      // Not verified yet: tried again at the next poll; once done, never again.
      answer = 'done'
      await watch.poll()
      await watch.poll()
      expect(handed.map(intentId)).toEqual([id, id])
    } finally {
      await watch.stop()
    }
  })

  it("OpenedOrders: 'valid' for an opened order, 'invalid' never opened by a later final block, else 'pending'", async () => {
    const opened = OpenedOrders.connect(
      [{ chainId: A.chainId, settlement: { settler: A.contracts.settler } }],
      rpc(),
    )
    try {
      const id = await openNative(parseEther('0.1'))
      const head = await A.pub.getBlock({ blockTag: 'latest' })
      expect(
        await opened.verify(id, { originChainId: A.chainId, openDeadline: Number(head.timestamp) }),
      ).toBe('valid')
      // Another order id with an openDeadline at the head's time: no later block yet, so it may still be
      // opened in a block of that second; once the chain has moved past it, never.
      const other = `0x${'ab'.repeat(32)}` as Hex
      const at = { originChainId: A.chainId, openDeadline: Number(head.timestamp) + 5 }
      expect(await opened.verify(other, at)).toBe('pending')
      await advanceTime(A, 10)
      expect(await opened.verify(other, at)).toBe('invalid')
      // No RPC for a chain: 'unknown'.
      expect(await opened.verify(`0x${'cd'.repeat(32)}`, { originChainId: 999n, openDeadline: 0 })).toBe(
        'unknown',
      )
    } finally {
      await opened.close()
    }
  })
})
