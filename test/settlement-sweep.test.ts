/**
 * The settlement sweep (rollups/settlement-sweep.ts): escrows still opened after the fast paths are looked
 * at again from the store. Against a real settler on anvil: an expired order nobody refunded is refunded by
 * `refundExpired` once past `fillDeadline + refundGraceSec`, not before, and leaves the open index. With
 * fakes: what each intent state leads to, turns, paging, and nothing while the node is busy.
 */
import pino from 'pino'
import type { Address, Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { murmurSettlerAbi } from '../src/contracts/abi.ts'
import type { IntentRecord, IntentState } from '../src/mempool/record.ts'
import type { TxJob, TxResult } from '../src/rollups/executor.ts'
import { RefundRelayer, refundOrigins } from '../src/rollups/refunds.ts'
import { ORDER_STATUS } from '../src/rollups/settlement.ts'
import { SettlementSweep, SWEEP_TURN_MS, sweepTurnMs } from '../src/rollups/settlement-sweep.ts'
import { type OpenEscrow, SettlementWatch } from '../src/rollups/settlement-watch.ts'
import type { SettlementSource } from '../src/state/settlement.ts'
import { makeValidatorSet } from './helpers/settlement.ts'
import { advanceTime, chainTime } from './helpers/settlement-env.ts'
import { fundedOrigin, makeOrder, openFor } from './helpers/settlement-orders.ts'
import { tempStore } from './helpers/store.ts'

const silent = pino({ level: 'silent' })
/** startSettlementEnv's default `refundGraceSec`. */
const GRACE_SEC = 600

function record(id: Hex, state: IntentState, fillDeadline: number, height?: bigint): IntentRecord {
  return {
    id,
    state,
    fillDeadline,
    history: [
      { state: 'pending', atMs: 0 },
      { state, atMs: 1, ...(height === undefined ? {} : { height }) },
    ],
  } as unknown as IntentRecord
}

describe('settlement sweep against a real settler', () => {
  const origin = fundedOrigin(makeValidatorSet(4, 'settlement-sweep'))
  const db = tempStore('murmur-sweep-')
  const legacy = tempStore('murmur-sweep-index-')

  it('refundExpired closes an expired escrow nobody refunded, only after fillDeadline + grace', async () => {
    const A = origin.chain
    const order = await makeOrder(A, { fillInSec: 700 })
    const { id } = await openFor(A, order, privateKeyToAccount(origin.env.rollups.accounts[1]!.privateKey))
    const settlement = { settler: A.contracts.settler, lightClient: A.contracts.lightClient }
    const rpc = new Map([[Number(A.chainId), A.rpcUrl]])
    const watch = new SettlementWatch(
      { intervalMs: 60_000 },
      { contracts: new Map([[A.chainId, settlement]]), rpc, store: db.store, log: silent },
    )
    const { origins, close } = refundOrigins([{ chainId: A.chainId, settlement }], rpc)
    const sent: TxJob[] = []
    const transact = async (job: TxJob): Promise<TxResult> => {
      sent.push(job)
      const hash = await A.wallets.relayer.sendTransaction({ to: job.call.to, data: job.call.data })
      const r = await A.pub.waitForTransactionReceipt({ hash, pollingInterval: 50 })
      if (r.status !== 'success') throw new Error(`${job.kind} reverted`)
      return { ...job, txHash: hash, blockNumber: r.blockNumber, blockHash: r.blockHash }
    }
    const refunds = new RefundRelayer(
      { blockIntervalMs: 500, refundGraceSec: GRACE_SEC },
      {
        self: A.addresses.relayer,
        source: {} as SettlementSource,
        origins,
        transact,
        log: silent,
      },
    )
    let nowMs = Date.now()
    const sweep = new SettlementSweep(
      { refundGraceSec: GRACE_SEC, settleAfterMs: 30_000 },
      {
        openEscrows: (after, limit) => watch.openEscrows(after, limit),
        intent: async (x) => (x === id ? record(id, 'expired', order.fillDeadline) : undefined),
        claim: async () => {},
        relayRefunds: async () => {},
        refundExpired: (x, chainId) => refunds.refundExpired(x, chainId),
        turnMs: () => 0,
        busy: () => false,
        log: silent,
        now: () => nowMs,
      },
    )
    const status = async () =>
      Number(
        await A.pub.readContract({
          address: A.contracts.settler,
          abi: murmurSettlerAbi,
          functionName: 'orderStatus',
          args: [id],
        }),
      )
    try {
      await watch.poll()
      const [open] = (await watch.openEscrows('', 10)).filter((e) => e.id === id)
      expect(open).toMatchObject({ id, chainId: A.chainId.toString() })
      // Opened moments ago: left to the fast paths.
      expect((await sweep.pass()).looked).toBe(0)
      // Past the fill deadline, within the grace: nothing sent.
      nowMs = (order.fillDeadline + 60) * 1000
      expect(await sweep.pass()).toMatchObject({ looked: 1, expired: [] })
      expect(sent).toEqual([])
      // Past fillDeadline + grace, on the chain's clock too: refunded, and the index forgets it.
      await advanceTime(A, order.fillDeadline + GRACE_SEC + 5 - (await chainTime(A)))
      nowMs = (order.fillDeadline + GRACE_SEC + 5) * 1000
      expect((await sweep.pass()).expired).toEqual([id])
      expect(sent.map((j) => j.kind)).toEqual(['refund-expired'])
      expect(await status()).toBe(ORDER_STATUS.refunded)
      await watch.poll()
      expect((await watch.openEscrows('', 10)).map((e) => e.id)).not.toContain(id)
      expect(await watch.get(id)).toMatchObject({ state: 'refunded' })
      // A second pass sends nothing.
      expect((await sweep.pass()).looked).toBe(0)
      expect(sent).toHaveLength(1)
    } finally {
      await watch.stop()
      await refunds.stop()
      await close()
    }
  })

  it("the open index is built once for a store written before it (every order still 'opened')", async () => {
    const store = legacy
    const id = (n: number) => `0x${n.toString(16).padStart(64, '0')}` as Hex
    const old = (state: string) => ({ state, chainId: '901', openTx: null, claimTx: null, refundTx: null })
    await store.store.put('orders', `o/${id(1)}`, old('opened'))
    await store.store.put('orders', `o/${id(2)}`, old('settled'))
    await store.store.put('orders', `o/${id(3)}`, old('opened'))
    const watch = new SettlementWatch(
      {},
      { contracts: new Map(), rpc: new Map(), store: store.store, log: silent, now: () => 42 },
    )
    await watch.poll()
    expect(await watch.openEscrows('', 10)).toEqual([
      { id: id(1), chainId: '901', seenAtMs: 42 },
      { id: id(3), chainId: '901', seenAtMs: 42 },
    ])
    expect(await watch.openEscrows(id(1), 10)).toEqual([{ id: id(3), chainId: '901', seenAtMs: 42 }])
  })
})

describe('settlement sweep decisions', () => {
  const id = (n: number) => `0x${n.toString(16).padStart(64, '0')}` as Hex
  const NOW = 2_000_000_000_000
  const NOW_SEC = NOW / 1000

  function harness(
    escrows: OpenEscrow[],
    records: Map<Hex, IntentRecord>,
    opts: { batch?: number; turnMs?: number; busy?: boolean } = {},
  ) {
    const calls: string[] = []
    const pages: string[] = []
    const sweep = new SettlementSweep(
      {
        refundGraceSec: 120,
        settleAfterMs: 30_000,
        ...(opts.batch === undefined ? {} : { batch: opts.batch }),
      },
      {
        openEscrows: async (after, limit) => {
          pages.push(after)
          return escrows.filter((e) => e.id > after).slice(0, limit)
        },
        intent: async (x) => records.get(x),
        claim: async (h) => void calls.push(`claim ${h}`),
        relayRefunds: async (h) => void calls.push(`relay ${h}`),
        refundExpired: async (x, c) => void calls.push(`refundExpired ${x.slice(-2)} on ${c}`),
        turnMs: () => opts.turnMs ?? 0,
        busy: () => opts.busy ?? false,
        log: silent,
        now: () => NOW,
      },
    )
    return { sweep, calls, pages }
  }
  const escrow = (n: number, ageMs = 60_000): OpenEscrow => ({
    id: id(n),
    chainId: '901',
    seenAtMs: NOW - ageMs,
  })

  it('filled: the executor claims the block once; refunded: the block is relayed; expired past grace: refundExpired', async () => {
    const records = new Map<Hex, IntentRecord>([
      [id(1), record(id(1), 'filled', NOW_SEC, 7n)],
      [id(2), record(id(2), 'filled', NOW_SEC, 7n)],
      [id(3), record(id(3), 'refunded', NOW_SEC - 10, 9n)],
      [id(4), record(id(4), 'expired', NOW_SEC - 200)],
      // Within the grace: the user's escrow is not refundable yet.
      [id(5), record(id(5), 'expired', NOW_SEC - 60)],
      // Failed (refused by a block) long ago, escrow still opened: refunded the same way.
      [id(6), record(id(6), 'failed', NOW_SEC - 500)],
    ])
    const { sweep, calls } = harness(
      [1, 2, 3, 4, 5, 6, 7].map((n) => escrow(n)),
      records,
    )
    const pass = await sweep.pass()
    // id 7: this node does not know the intent; left to the nodes that do.
    expect(pass.looked).toBe(6)
    expect(calls).toEqual([
      'claim 7',
      'relay 9',
      `refundExpired ${id(4).slice(-2)} on 901`,
      `refundExpired ${id(6).slice(-2)} on 901`,
    ])
  })

  it('waits settleAfterMs plus its turn after the Open; nothing while busy', async () => {
    const records = new Map([[id(1), record(id(1), 'filled', NOW_SEC, 3n)]])
    expect((await harness([escrow(1, 29_000)], records).sweep.pass()).looked).toBe(0)
    expect((await harness([escrow(1, 31_000)], records).sweep.pass()).claimed).toEqual([3n])
    expect((await harness([escrow(1, 31_000)], records, { turnMs: 5_000 }).sweep.pass()).looked).toBe(0)
    expect((await harness([escrow(1, 36_000)], records, { turnMs: 5_000 }).sweep.pass()).claimed).toEqual([
      3n,
    ])
    const busy = harness([escrow(1)], records, { busy: true })
    expect((await busy.sweep.pass()).looked).toBe(0)
    expect(busy.calls).toEqual([])
  })

  it('pages through the index, batch by batch, and starts over after the last', async () => {
    const { sweep, pages } = harness(
      [1, 2, 3, 4, 5].map((n) => escrow(n)),
      new Map(),
      { batch: 2 },
    )
    for (let i = 0; i < 4; i++) await sweep.pass()
    expect(pages).toEqual(['', id(2), id(4), ''])
  })

  it('turns follow the sorted consensus set; a node outside it goes last', () => {
    const set = ['0xbb', '0xAA', '0xcc']
    expect(sweepTurnMs(set, '0xaa')).toBe(0)
    expect(sweepTurnMs(set, '0xCC')).toBe(2 * SWEEP_TURN_MS)
    expect(sweepTurnMs(set, '0xdd' as Address)).toBe(3 * SWEEP_TURN_MS)
  })
})
