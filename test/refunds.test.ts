/**
 * Refunds in the state machine (issue 10, items 4 and 6): an intent whose fill deadline passes while its
 * order is opened on a settlement origin gets a REFUND leaf in the block that expires it, only when every
 * validator's own RPC says the order is opened (`verifyRefund`); released assignments (sent back to
 * pending) are refunded the same way; nothing changes for origins without settlement.
 */
import { StandardMerkleTree } from '@openzeppelin/merkle-tree'
import type { Address, Hex } from 'viem'
import { type PrivateKeyAccount, privateKeyToAccount } from 'viem/accounts'
import { beforeAll, describe, expect, it } from 'vitest'
import { reconcileTransitions } from '../src/app/application.ts'
import { buildOrder, decodeOrderData, intentId, signOrder } from '../src/codec/intent.ts'
import { type Block, decodeBlock, encodeBlock } from '../src/consensus/block.ts'
import { parseGenesis } from '../src/node/genesis.ts'
import { apply } from '../src/state/apply.ts'
import { genesisState } from '../src/state/genesis.ts'
import { type PendingIntent, proposeBlock } from '../src/state/propose.ts'
import {
  LEAF_ENCODING,
  LEAF_REFUND,
  leafValues,
  refundsOf,
  settlementLeaves,
} from '../src/state/settlement.ts'
import { appStateOps, loadAppState } from '../src/state/storage.ts'
import type { AppState } from '../src/state/types.ts'
import { type RefundVerdict, type ValidateBlockContext, validateBlock } from '../src/state/validate.ts'
import { commitFor, firstBlock } from './helpers/commit.ts'
import { tempStore } from './helpers/store.ts'

const NETWORK = 'refunds-test'
const NOW_MS = 1_900_000_000_000
const NOW_SEC = NOW_MS / 1000
const key = (i: number): Hex => `0x${(BigInt(i) * 104729n + 11n).toString(16).padStart(64, '0')}`
const VALIDATORS: PrivateKeyAccount[] = [1, 2, 3, 4].map((i) => privateKeyToAccount(key(i)))
const USER = privateKeyToAccount(key(99))
const addr = (a: PrivateKeyAccount) => a.address.toLowerCase() as Address
const settlement = (n: number) => ({
  settler: `0x${n.toString(16).padStart(40, '0')}`,
  lightClient: `0x${(n + 1).toString(16).padStart(40, '0')}`,
})
const INPUT_TOKEN = '0x00000000000000000000000000000000000000aa' as Address

const GENESIS = parseGenesis({
  networkId: NETWORK,
  genesisTime: NOW_SEC - 100,
  validators: VALIDATORS.map((v, i) => ({
    address: v.address,
    peerId: `peer-${i}`,
    stake: '90',
    pools: [901, 902, 903],
  })),
  rollups: [
    { chainId: 901, name: 'alpha', type: 'optimistic', securityBps: 8000, settlement: settlement(0x901) },
    { chainId: 902, name: 'beta', type: 'zk', securityBps: 9500, settlement: settlement(0x902) },
    // No settlement contracts: served without escrow, never refunded by the network.
    { chainId: 903, name: 'gamma', type: 'zk', securityBps: 9500 },
  ],
  params: { maxClockSkewSec: 30, blockIntervalMs: 500, healthFreshnessMs: 5000, fillTimeoutSec: 300 },
})

const FILL_DEADLINE = NOW_SEC + 60
let nonce = 1n
async function makeIntent(originChainId: bigint): Promise<PendingIntent> {
  const order = buildOrder({
    user: USER.address,
    nonce: nonce++,
    originChainId,
    openDeadline: NOW_SEC + 30,
    fillDeadline: FILL_DEADLINE,
    inputToken: INPUT_TOKEN,
    inputAmount: 1000n,
    outputAmount: 990n,
    destinationChainIds: [902n],
  })
  return { id: intentId(order), intent: { order, signature: await signOrder(USER, order) } }
}

/** Validation as a validator whose RPC answers `verdict` for every refund. */
function ctx(block: Block, verdict: RefundVerdict | 'absent' = 'valid'): ValidateBlockContext {
  return {
    nowMs: block.time,
    verifyFill: async () => 'valid',
    ...(verdict === 'absent' ? {} : { verifyRefund: async () => verdict }),
  }
}

/** The next block on `state` at `atMs` (every validator's precommit at that time), by validator 0. */
async function blockAt(
  state: AppState,
  atMs: number,
  opts: { pending?: PendingIntent[]; opened?: ReadonlySet<Hex>; down?: bigint[] } = {},
): Promise<Block> {
  const lc = await commitFor(state, VALIDATORS, {
    timestampMs: atMs,
    down: (opts.down ?? []).flatMap((c) => VALIDATORS.map((_, i) => [i, c] as const)),
  })
  return proposeBlock(state, opts.pending ?? [], lc, [], atMs, {
    proposer: addr(VALIDATORS[0]!),
    round: 0,
    ...(opts.opened === undefined ? {} : { opened: opts.opened }),
  })
}

let escrowed: PendingIntent // origin 901: settlement
let unescrowed: PendingIntent // origin 903: no settlement
let assigned: AppState
const LATE_MS = (FILL_DEADLINE + 1) * 1000

beforeAll(async () => {
  const { state: s1 } = firstBlock(genesisState(GENESIS), VALIDATORS[0]!, NOW_MS - 1000)
  escrowed = await makeIntent(901n)
  unescrowed = await makeIntent(903n)
  const b2 = await blockAt(s1, NOW_MS, { pending: [escrowed, unescrowed] })
  expect(b2.assignments).toHaveLength(2)
  assigned = apply(s1, b2).state
})

describe('REFUND leaves for expired, opened orders', () => {
  const db = tempStore('murmur-refunds-')
  it('keeps the input token and amount in the assignment, and across a restart', async () => {
    const a = assigned.assignments.get(escrowed.id)!
    expect([a.inputToken, a.inputAmount, a.originChainId]).toEqual([INPUT_TOKEN, 1000n, 901n])
    await db.store.batch(appStateOps(undefined, assigned))
    const back = await loadAppState(db.store, GENESIS)
    expect(back.assignments.get(escrowed.id)).toEqual(a)
  })

  it('a block past the fill deadline refunds the opened order: REFUND leaf in its root, intent refunded', async () => {
    const block = await blockAt(assigned, LATE_MS, { opened: new Set([escrowed.id, unescrowed.id]) })
    // Only the order of the settlement origin: the other just expires (nothing was escrowed).
    expect(block.refunds).toEqual([escrowed.id])
    expect(decodeBlock(encodeBlock(block)).refunds).toEqual([escrowed.id])
    expect(await validateBlock(assigned, block, ctx(block))).toEqual({ ok: true })

    const order = escrowed.intent.order
    const leaf = [
      LEAF_REFUND,
      escrowed.id,
      901n,
      0n,
      '0x0000000000000000000000000000000000000000',
      INPUT_TOKEN,
      decodeOrderData(order.orderData).inputAmount,
      order.user,
    ] as const
    expect(block.settlementRoot).toBe(StandardMerkleTree.of([[...leaf]], [...LEAF_ENCODING]).root)
    expect(
      settlementLeaves(assigned, block.fills, refundsOf(assigned, block.refunds)).map(leafValues),
    ).toEqual([[...leaf]])

    const { state, intentTransitions } = apply(assigned, block)
    expect(intentTransitions.map((t) => [t.id, t.to]).sort()).toEqual(
      [
        [escrowed.id, 'refunded'],
        [unescrowed.id, 'expired'],
      ].sort(),
    )
    expect(state.assignments.size).toBe(0)
    // A pool whose own sweep expired the intent first still follows the block to refunded.
    const reqs = reconcileTransitions(intentTransitions, () => 'expired')
    expect(reqs.map((r) => [r.id, r.to])).toEqual([[escrowed.id, 'refunded']])
  })

  it('without an opened order the proposer claims nothing, and the intent just expires', async () => {
    const block = await blockAt(assigned, LATE_MS, { opened: new Set() })
    expect(block.refunds).toBeUndefined()
    expect(await validateBlock(assigned, block, ctx(block))).toEqual({ ok: true })
    expect(apply(assigned, block).intentTransitions.every((t) => t.to === 'expired')).toBe(true)
  })

  it("refuses a refund this validator's RPC does not see opened, or sees settled", async () => {
    const block = await blockAt(assigned, LATE_MS, { opened: new Set([escrowed.id]) })
    for (const [verdict, code] of [
      ['pending', 'REFUND_UNVERIFIED'],
      ['unknown', 'REFUND_UNVERIFIED'],
      ['absent', 'REFUND_UNVERIFIED'],
      ['invalid', 'REFUND_INVALID'],
    ] as const) {
      const v = await validateBlock(assigned, block, ctx(block, verdict))
      expect([verdict, block.refunds, v.ok ? 'ok' : v.code]).toEqual([verdict, [escrowed.id], code])
    }
  })

  it('refuses a refund of an intent not expired, of an origin without settlement, and a wrong root', async () => {
    const early = await blockAt(assigned, NOW_MS + 2000)
    const notExpired = { ...early, refunds: [escrowed.id] }
    let v = await validateBlock(assigned, notExpired, ctx(notExpired))
    expect(v.ok ? 'ok' : v.code).toBe('BAD_REFUND')

    const late = await blockAt(assigned, LATE_MS, { opened: new Set([escrowed.id]) })
    const noSettlement = { ...late, refunds: [escrowed.id, unescrowed.id].sort() }
    v = await validateBlock(assigned, noSettlement, ctx(noSettlement))
    expect(v.ok ? 'ok' : v.code).toBe('BAD_REFUND')

    // The refund dropped but the root kept: the root no longer matches the block's leaves.
    const { refunds: _, ...dropped } = late
    v = await validateBlock(assigned, dropped, ctx(dropped))
    expect(v.ok ? 'ok' : v.code).toBe('BAD_SETTLEMENT_ROOT')
  })

  it('an assignment sent back to pending (its rollup down) is released, then refunded at its deadline', async () => {
    const down = await blockAt(assigned, NOW_MS + 2000, { down: [902n] })
    const { state: released, intentTransitions } = apply(assigned, down)
    expect(intentTransitions.map((t) => t.to)).toEqual(['pending', 'pending'])
    expect(released.assignments.has(escrowed.id)).toBe(false)
    expect(released.released.get(escrowed.id)?.inputAmount).toBe(1000n)
    await db.store.batch(appStateOps(assigned, released))
    expect((await loadAppState(db.store, GENESIS)).released).toEqual(released.released)

    const block = await blockAt(released, LATE_MS, { opened: new Set([escrowed.id]), down: [902n] })
    expect(block.refunds).toEqual([escrowed.id])
    expect(await validateBlock(released, block, ctx(block))).toEqual({ ok: true })
    const after = apply(released, block)
    expect(after.intentTransitions.map((t) => [t.id, t.to]).sort()).toEqual(
      [
        [escrowed.id, 'refunded'],
        [unescrowed.id, 'expired'],
      ].sort(),
    )
    expect(after.state.released.size).toBe(0)
  })
})
