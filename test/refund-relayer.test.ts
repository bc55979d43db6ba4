/**
 * The refund relayer (rollups/refunds.ts) against a real settler on anvil: a committed block with the
 * REFUND leaf of an opened order, certified by the light client's validator set, is relayed as
 * `refund([leaf], [proof], commitProof)`: the user has her input back, the escrow is empty,
 * `orderStatus == 3`; a second relay sends nothing; a block signed by a set the light client does not
 * trust is not relayed.
 */
import pino from 'pino'
import type { Address, Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeOrderData } from '../src/codec/intent.ts'
import { type Block, blockHash, certificateFromVotes, encodeBlock } from '../src/consensus/block.ts'
import { signVote } from '../src/consensus/votes.ts'
import type { TxJob, TxResult } from '../src/rollups/executor.ts'
import { RefundRelayer, refundOrigins } from '../src/rollups/refunds.ts'
import {
  LEAF_REFUND,
  type SettlementLeaf,
  type SettlementSource,
  settlementRoot,
} from '../src/state/settlement.ts'
import { makeValidatorSet, TEST_NETWORK_ID } from './helpers/settlement.ts'
import {
  balanceOf,
  type SettlementChain,
  type SettlementEnv,
  startSettlementEnv,
  ZERO,
} from './helpers/settlement-env.ts'
import { approve, makeOrder, mint, openFor } from './helpers/settlement-orders.ts'
import { waitFor } from './helpers/wait.ts'

const SET = makeValidatorSet(4, 'refund-relayer')
const OTHER = makeValidatorSet(4, 'refund-relayer-other')
let env: SettlementEnv
let A: SettlementChain

beforeAll(async () => {
  env = await startSettlementEnv(SET, { count: 1 })
  A = env.chains[0]!
  await mint(A, A.addresses.user, 10n ** 24n)
  await approve(A, 'user', 2n ** 255n)
}, 120_000)

afterAll(async () => {
  await env?.stop()
})

/** A committed block at `height` holding `leaves`, certified by every member of `set`. */
async function committed(height: bigint, leaves: SettlementLeaf[], set = SET) {
  const block: Block = {
    height,
    round: 0,
    proposer: set.validators[0]!,
    time: 1_900_000_000_000,
    parentHash: `0x${'01'.repeat(32)}`,
    assignments: [],
    intents: [],
    reassignments: [],
    fills: [],
    stakeMoves: [],
    evidence: [],
    lastCommit: null,
    unjails: [],
    refunds: leaves.map((l) => l.orderId),
    validatorsHash: set.hash,
    nextValidatorsHash: set.hash,
    settlementRoot: settlementRoot(leaves),
  }
  const hash = blockHash(block)
  const votes = await Promise.all(
    set.accounts.map((s) =>
      signVote(s, TEST_NETWORK_ID, {
        kind: 'precommit',
        height,
        round: 0,
        blockHash: hash,
        timestampMs: 1_900_000_000_500,
        extension: new Uint8Array(),
      }),
    ),
  )
  const source: SettlementSource = {
    block: async (h) =>
      h === height
        ? { bytes: encodeBlock(block), hash, certificate: certificateFromVotes(votes) }
        : undefined,
    leaves: async (h) => (h === height ? leaves : []),
    validatorSet: async (vh) =>
      vh === set.hash ? { validators: set.validators, powers: set.powers } : undefined,
  }
  return { block, source }
}

/** Sends each job from the relayer wallet and waits for its receipt (what Executor.transact guarantees). */
function sender(sent: TxJob[]) {
  return async (job: TxJob): Promise<TxResult> => {
    sent.push(job)
    const hash = await A.wallets.relayer.sendTransaction({ to: job.call.to, data: job.call.data, value: 0n })
    const r = await A.pub.waitForTransactionReceipt({ hash, pollingInterval: 50 })
    if (r.status !== 'success') throw new Error(`refund ${hash} reverted`)
    return { ...job, txHash: hash, blockNumber: r.blockNumber, blockHash: r.blockHash }
  }
}

const log = pino({ level: 'silent' })

/** An order opened on A by its user, and its REFUND leaf. */
async function openedLeaf(): Promise<{
  id: Hex
  data: ReturnType<typeof decodeOrderData>
  leaf: SettlementLeaf
}> {
  const order = await makeOrder(A)
  const { id } = await openFor(A, order, privateKeyToAccount(env.rollups.accounts[1]!.privateKey))
  const data = decodeOrderData(order.orderData)
  const leaf: SettlementLeaf = {
    kind: LEAF_REFUND,
    orderId: id,
    originChainId: A.chainId,
    destinationChainId: 0n,
    executor: ZERO as Address,
    token: data.inputToken,
    amount: data.inputAmount,
    recipient: order.user,
  }
  return { id, data, leaf }
}

/** The relayer's origin A (settler, light client, RPC). */
function originsOfA() {
  return refundOrigins(
    [
      {
        chainId: A.chainId,
        settlement: { settler: A.contracts.settler, lightClient: A.contracts.lightClient },
      },
    ],
    new Map([[Number(A.chainId), A.rpcUrl]]),
  )
}

describe('refund relayer', () => {
  it('relays a certified REFUND leaf once: the user is paid back, the escrow is empty, status 3', async () => {
    const { id, data, leaf } = await openedLeaf()
    const { source } = await committed(5n, [leaf])
    const { origins, close } = originsOfA()
    try {
      const sent: TxJob[] = []
      const relayer = new RefundRelayer(
        { blockIntervalMs: 100 },
        { self: SET.validators[0]!, source, origins, transact: sender(sent), log },
      )
      const before = await balanceOf(A, data.inputToken, A.addresses.user)
      const escrow = await balanceOf(A, data.inputToken, A.contracts.settler)
      expect(await origins.get(A.chainId)!.orderStatus(id)).toBe(1)

      expect(await relayer.relay(5n)).toEqual({ sent: [id], skipped: [], failed: [] })
      expect(sent.map((j) => [j.kind, j.id, j.chainId])).toEqual([['refund', id, A.chainId]])
      expect(await balanceOf(A, data.inputToken, A.addresses.user)).toBe(before + data.inputAmount)
      expect(await balanceOf(A, data.inputToken, A.contracts.settler)).toBe(escrow - data.inputAmount)
      expect(await origins.get(A.chainId)!.orderStatus(id)).toBe(3)

      // Another validator (or this one again): the order is refunded, nothing is sent.
      expect(await relayer.relay(5n)).toEqual({ sent: [], skipped: [id], failed: [] })
      expect(sent).toHaveLength(1)
      await relayer.stop()
    } finally {
      await close()
    }
  }, 60_000)

  it('does not relay a block signed by a set the light client does not trust', async () => {
    const { id, leaf } = await openedLeaf()
    const { source } = await committed(6n, [leaf], OTHER)
    const { origins, close } = originsOfA()
    try {
      const sent: TxJob[] = []
      const relayer = new RefundRelayer(
        { blockIntervalMs: 100 },
        { self: OTHER.validators[0]!, source, origins, transact: sender(sent), log },
      )
      expect(await relayer.relay(6n)).toEqual({ sent: [], skipped: [], failed: [id] })
      expect(sent).toHaveLength(0)
      expect(await origins.get(A.chainId)!.orderStatus(id)).toBe(1)
      await relayer.stop()
    } finally {
      await close()
    }
  }, 60_000)

  it('refunds an expired order its block left without a leaf with refundExpired after the grace, once', async () => {
    const order = await makeOrder(A)
    const { id } = await openFor(A, order, privateKeyToAccount(env.rollups.accounts[1]!.privateKey))
    const data = decodeOrderData(order.orderData)
    const { source } = await committed(7n, [])
    const { origins, close } = originsOfA()
    const grace = 600 // startSettlementEnv's settler
    const rpc = async (method: string, params: unknown[]) =>
      fetch(A.rpcUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
      })
    try {
      const sent: TxJob[] = []
      // The relayer's clock says the grace is over; the chain's is moved past it too.
      const relayer = new RefundRelayer(
        {
          blockIntervalMs: 100,
          stepMs: 0,
          refundGraceSec: grace,
          now: () => (order.fillDeadline + grace + 5) * 1000,
        },
        { self: SET.validators[0]!, source, origins, transact: sender(sent), log },
      )
      await rpc('evm_increaseTime', [
        order.fillDeadline - Number((await A.pub.getBlock()).timestamp) + grace + 10,
      ])
      await rpc('evm_mine', [])
      const before = await balanceOf(A, data.inputToken, A.addresses.user)
      relayer.onExpired({
        id,
        originChainId: A.chainId,
        fillDeadlineSec: BigInt(order.fillDeadline),
        consensusSet: new Map(SET.validators.map((v) => [v, 1n])),
      })
      await waitFor(
        'the order refunded on A',
        async () => (await origins.get(A.chainId)!.orderStatus(id)) === 3,
      )
      expect(sent.map((j) => [j.kind, j.id])).toEqual([['refund-expired', id]])
      expect(await balanceOf(A, data.inputToken, A.addresses.user)).toBe(before + data.inputAmount)
      // Another validator's turn: refunded already, nothing sent.
      expect(await relayer.refundExpired(id, A.chainId)).toBe('skipped')
      expect(sent).toHaveLength(1)
      await relayer.stop()
    } finally {
      await close()
    }
  }, 60_000)
})
