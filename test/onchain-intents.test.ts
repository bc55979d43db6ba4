/**
 * Orders users open on chain (issue 10 item 4) in blocks: an unsigned intent is assigned like any other;
 * a validator whose pool does not hold it checks its order is opened on the origin settler through
 * `verifyOpened` (its own RPC), and every validator refuses, on the state alone, an unsigned intent whose
 * origin has no settlement contracts or that names another settler.
 */
import type { Address, Hex } from 'viem'
import { type PrivateKeyAccount, privateKeyToAccount } from 'viem/accounts'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  buildOrder,
  type GaslessCrossChainOrder,
  intentId,
  NO_SIGNATURE,
  ONCHAIN_NONCE_BIT,
} from '../src/codec/intent.ts'
import { type Block, decodeBlock, encodeBlock } from '../src/consensus/block.ts'
import { parseGenesis } from '../src/node/genesis.ts'
import type { FillVerdict } from '../src/rollups/fill.ts'
import { apply } from '../src/state/apply.ts'
import { genesisState } from '../src/state/genesis.ts'
import { type PendingIntent, proposeBlock } from '../src/state/propose.ts'
import type { AppState } from '../src/state/types.ts'
import { type ValidateBlockContext, validateBlock } from '../src/state/validate.ts'
import { commitFor, firstBlock } from './helpers/commit.ts'

const NETWORK = 'onchain-intents-test'
const NOW_MS = 1_900_000_000_000
const NOW_SEC = NOW_MS / 1000
const key = (i: number): Hex => `0x${(BigInt(i) * 104729n + 13n).toString(16).padStart(64, '0')}`
const VALIDATORS: PrivateKeyAccount[] = [1, 2, 3, 4].map((i) => privateKeyToAccount(key(i)))
const USER = privateKeyToAccount(key(99)).address.toLowerCase() as Address
const addr = (a: PrivateKeyAccount) => a.address.toLowerCase() as Address
const settler = (n: number) => `0x${n.toString(16).padStart(40, '0')}` as Address
const NATIVE = '0x0000000000000000000000000000000000000000' as Address

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
    {
      chainId: 901,
      name: 'alpha',
      type: 'optimistic',
      securityBps: 8000,
      settlement: { settler: settler(0x901), lightClient: settler(0x1901) },
    },
    {
      chainId: 902,
      name: 'beta',
      type: 'zk',
      securityBps: 9500,
      settlement: { settler: settler(0x902), lightClient: settler(0x1902) },
    },
    // No settlement contracts: nothing on chain can prove an unsigned order from here.
    { chainId: 903, name: 'gamma', type: 'zk', securityBps: 9500 },
  ],
  params: { maxClockSkewSec: 30, blockIntervalMs: 500, healthFreshnessMs: 5000, fillTimeoutSec: 300 },
})

let counter = 0n
/** What a settler's `open` builds: nonce 2^255 | counter, openDeadline the (past) block time of the open. */
function opened(originChainId: bigint, over: Partial<GaslessCrossChainOrder> = {}): PendingIntent {
  const order = {
    ...buildOrder({
      user: USER,
      originSettler: settler(Number.parseInt(originChainId.toString(), 16)), // 901n -> 0x…0901
      nonce: ONCHAIN_NONCE_BIT | counter++,
      originChainId,
      openDeadline: NOW_SEC - 20,
      fillDeadline: NOW_SEC + 600,
      inputToken: NATIVE,
      inputAmount: 10n ** 17n,
      outputAmount: 99n * 10n ** 15n,
      destinationChainIds: [902n],
    }),
    ...over,
  }
  return { id: intentId(order), intent: { order, signature: NO_SIGNATURE } }
}

/** A validator whose pool lacks the block's intents and whose RPC answers `verdict` (asks recorded). */
function ctx(block: Block, verdict: FillVerdict | 'absent', asked: Hex[] = []): ValidateBlockContext {
  return {
    nowMs: block.time,
    verifyFill: async () => 'valid',
    ...(verdict === 'absent'
      ? {}
      : {
          verifyOpened: async (id: Hex) => {
            asked.push(id)
            return verdict
          },
        }),
  }
}

let s1: AppState
async function blockWith(pending: PendingIntent[]): Promise<Block> {
  const lc = await commitFor(s1, VALIDATORS, { timestampMs: NOW_MS })
  return proposeBlock(s1, pending, lc, [], NOW_MS, { proposer: addr(VALIDATORS[0]!), round: 0 })
}

beforeAll(() => {
  s1 = firstBlock(genesisState(GENESIS), VALIDATORS[0]!, NOW_MS - 1000).state
})

describe('unsigned intents (orders opened on chain) in blocks', () => {
  it('are assigned, travel unsigned in the block, and apply like signed ones (native input kept)', async () => {
    const p = opened(901n)
    const block = await blockWith([p])
    expect(block.assignments.map((a) => a.intentId)).toEqual([p.id])
    expect(decodeBlock(encodeBlock(block)).intents).toEqual([p.intent])
    const a = apply(s1, block).state.assignments.get(p.id)!
    expect([a.originChainId, a.inputToken, a.inputAmount]).toEqual([901n, NATIVE, 10n ** 17n])
  })

  it("are accepted when the validator's RPC says opened; asked only when its pool lacks the intent", async () => {
    const p = opened(901n)
    const block = await blockWith([p])
    const asked: Hex[] = []
    expect(await validateBlock(s1, block, ctx(block, 'valid', asked))).toEqual({ ok: true })
    expect(asked).toEqual([p.id])
    const known = { ...ctx(block, 'invalid', asked), isKnownIntent: () => true }
    expect(await validateBlock(s1, block, known)).toEqual({ ok: true })
    expect(asked).toEqual([p.id])
  })

  it('refuse the block when the RPC says not opened (BAD_INTENT) or cannot tell (INTENT_UNVERIFIED)', async () => {
    const block = await blockWith([opened(901n)])
    const code = async (c: ValidateBlockContext) => {
      const v = await validateBlock(s1, block, c)
      return v.ok ? 'ok' : v.code
    }
    expect(await code(ctx(block, 'invalid'))).toBe('BAD_INTENT')
    expect(await code(ctx(block, 'pending'))).toBe('INTENT_UNVERIFIED')
    expect(await code(ctx(block, 'unknown'))).toBe('INTENT_UNVERIFIED')
    expect(await code(ctx(block, 'absent'))).toBe('INTENT_UNVERIFIED')
    const throwing = { ...ctx(block, 'absent'), verifyOpened: () => Promise.reject(new Error('rpc down')) }
    expect(await code(throwing)).toBe('INTENT_UNVERIFIED')
  })

  it('refuse, whatever the pool and the RPC say, one from an origin without settlement or of another settler', async () => {
    for (const p of [opened(903n), opened(901n, { originSettler: settler(0x902) })]) {
      const block = await blockWith([p])
      expect(block.assignments.map((a) => a.intentId)).toEqual([p.id])
      const c = { ...ctx(block, 'valid'), isKnownIntent: () => true }
      const v = await validateBlock(s1, block, c)
      expect(v.ok ? 'ok' : v.code).toBe('BAD_INTENT')
    }
  })
})
