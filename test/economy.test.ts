/**
 * The stake economy through blocks (issue 11, items 4 to 6): epoch rewards paid at boundaries (the split
 * conserves the emission, commission to the validator's balance, delegators' F1 rewards withdrawn into
 * their balance when their stake changes), the whistleblower share and the correlation penalty of double
 * signing, pool alarms (raised for a pool short of validators, cleared with hysteresis, the lowered
 * self-stake to join it, the router and the intent door refusing POOL_ALARMED). Blocks are built with the
 * pure state functions (test/helpers/stake-chain.ts), signed for real.
 */
import type { Address } from 'viem'
import type { PrivateKeyAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { fastAccount } from '../src/crypto/sign.ts'
import { validateIntent } from '../src/mempool/validate.ts'
import { routeIntents } from '../src/rollups/router.ts'
import { signDelegate, signUndelegate } from '../src/staking/delegations.ts'
import { signStakeMove } from '../src/staking/moves.ts'
import { peerIdBytes, signCreateValidator } from '../src/staking/validators.ts'
import { genesisState } from '../src/state/genesis.ts'
import { doubleSignSlashBps } from '../src/state/plan.ts'
import { pendingRewardsOf } from '../src/state/rewards-state.ts'
import type { AppState } from '../src/state/types.ts'
import { equivocation } from './helpers/chain.ts'
import { makeIntent, wallet } from './helpers/intents.ts'
import { ed25519PeerId, stakeBlock, stakeStep, stakeTestGenesis, testKey } from './helpers/stake-chain.ts'

const NETWORK = 'economy-test'
const NOW_MS = 1_900_000_000_000
const VALIDATORS: PrivateKeyAccount[] = [1, 2, 3, 4].map((i) => fastAccount(testKey(i)))
const [V0, V1, V2, V3] = VALIDATORS as [
  PrivateKeyAccount,
  PrivateKeyAccount,
  PrivateKeyAccount,
  PrivateKeyAccount,
]
const [D, E] = [21, 22].map((i) => fastAccount(testKey(i))) as [PrivateKeyAccount, PrivateKeyAccount]
const addr = (a: PrivateKeyAccount) => a.address.toLowerCase() as Address
const KEYS = new Map([...VALIDATORS, D, E].map((a) => [addr(a), a]))
const PEER_IDS = await Promise.all([1, 2, 3, 4, 5].map(ed25519PeerId))
const EPOCH = 4

function genesis(params: Record<string, unknown> = {}, pools?: number[][]) {
  return genesisState(
    stakeTestGenesis({
      networkId: NETWORK,
      nowMs: NOW_MS,
      validators: VALIDATORS,
      peerIds: PEER_IDS,
      ...(pools === undefined ? {} : { pools }),
      delegations: [{ delegator: D.address, validator: V1.address, amount: '100', chainId: 901 }],
      accounts: [D, E].map((a) => ({ address: a.address, balance: '1000' })),
      params: { epochBlocks: EPOCH, unbondingEpochs: 1, emissionPerEpoch: '10000', ...params },
    }),
  )
}

async function blocks(s: AppState, n: number): Promise<AppState> {
  for (let i = 0; i < n; i++) s = await stakeBlock(s, KEYS)
  return s
}

const balance = (s: AppState, a: PrivateKeyAccount) => s.stake.balances.get(addr(a)) ?? 0n

describe('epoch rewards', () => {
  it('split the emission exactly at each boundary and not between them', async () => {
    let s = await blocks(genesis(), EPOCH - 1)
    expect(s.rewards.history).toEqual([])
    expect(s.rewards.emitted).toBe(0n)
    s = await blocks(s, 1)
    expect(s.rewards.history).toHaveLength(1)
    const r = s.rewards.history[0]!
    expect(r.epoch).toBe(0n)
    expect(r.height).toBe(BigInt(EPOCH))
    expect(r.paid + r.communityPool).toBe(10_000n)
    expect(s.rewards.emitted).toBe(10_000n)
    // Every validator of the set earned; V1 (100 own + 100 delegated in 901) more than the others,
    // who earned alike (same pools, same stake).
    expect([...r.byValidator.keys()].sort()).toEqual(VALIDATORS.map(addr).sort())
    const v0 = r.byValidator.get(addr(V0))!
    expect(v0).toBeGreaterThan(0n)
    expect(r.byValidator.get(addr(V1))! * 2n).toBeGreaterThan(3n * v0)
    expect(r.byValidator.get(addr(V2))).toBe(v0)
    s = await blocks(s, EPOCH)
    expect(s.rewards.history.map((h) => h.epoch)).toEqual([0n, 1n])
    expect(s.rewards.emitted).toBe(20_000n)
  })

  it('pay a delegator its F1 share, withdrawn into its balance when its stake changes', async () => {
    let s = await blocks(genesis(), EPOCH)
    const pending = pendingRewardsOf(s.rewards, addr(D))
    // D holds half of V1's stake, commission 0: half of V1's reward, floors aside.
    const v1 = s.rewards.history[0]!.byValidator.get(addr(V1))!
    expect(pending).toBeGreaterThan(0n)
    expect(pending <= v1 / 2n && pending >= v1 / 2n - 1n).toBe(true)
    const before = balance(s, D)
    const d = { delegator: addr(D), validator: addr(V1), chainId: 901n, amount: 50n, nonce: 1n }
    s = await stakeBlock(s, KEYS, { accountMessages: [await signUndelegate(D, NETWORK, d)] })
    // The Undelegate ended the period: the reward is in the balance, the 50 unbond.
    expect(balance(s, D)).toBe(before + pending)
    expect(pendingRewardsOf(s.rewards, addr(D))).toBe(0n)
    expect(s.rewards.periods.get(`${addr(D)}/${addr(V1)}`)?.stake).toBe(50n)
  })

  it('pay commission to the validator balance', async () => {
    let s = genesis({ minSelfStake: '100' })
    const create = await signCreateValidator(E, NETWORK, {
      validator: addr(E),
      peerId: peerIdBytes(PEER_IDS[4]!),
      chainIds: [901n],
      selfStake: 100n,
      commissionBps: 2_000,
      nonce: 1n,
    })
    s = await stakeBlock(s, KEYS, { accountMessages: [create] })
    // Joins the set at the boundary of epoch 0, earns in epoch 1.
    s = await blocks(s, 2 * EPOCH - 1)
    const r = s.rewards.history[1]!
    const earned = r.byValidator.get(addr(E))!
    expect(earned).toBeGreaterThan(0n)
    expect(balance(s, E)).toBe(1000n - 100n + (earned * 2_000n) / 10_000n)
  })
})

describe('double signing', () => {
  it('pays the proposer a whistleblower share of the burn', async () => {
    let s = await blocks(genesis({ whistleblowerRewardBps: 5_000 }), 2)
    const ev = await equivocation(V3, NETWORK, 1n)
    const r = await stakeStep(s, KEYS, { evidence: [ev] })
    expect(r.verdict).toEqual({ ok: true })
    const proposer = r.block.proposer
    const burned = 100n - (r.state.validators.find((v) => v.address === addr(V3))?.power ?? 0n)
    // A lone equivocation pays the base rate, 5 %, of each part: each pool of 50 keeps floor(47.5) = 47.
    expect(burned).toBe(6n)
    const before = s.stake.balances.get(proposer) ?? 0n
    expect(proposer).not.toBe(addr(V3))
    expect(r.state.stake.balances.get(proposer) ?? 0n).toBe(before + 3n) // half of 6
    s = r.state
    expect(s.slashes).toEqual([{ height: 3n, validator: addr(V3), power: 100n }])
  })

  it('raises the slash with the power of the others punished in the window (correlation)', async () => {
    let s = await blocks(genesis(), 2)
    // Alone: the base rate.
    expect(doubleSignSlashBps(s, 3n, [addr(V2)], addr(V2))).toBe(500)
    // With V3 (100 of the set's 500: V1 has 200) too: 500 × (1 + 3 × 100/500) = 800.
    expect(doubleSignSlashBps(s, 3n, [addr(V2), addr(V3)], addr(V2))).toBe(800)
    s = await stakeBlock(s, KEYS, {
      evidence: [await equivocation(V2, NETWORK, 1n), await equivocation(V3, NETWORK, 1n)],
    })
    const power = (a: PrivateKeyAccount) => s.validators.find((v) => v.address === addr(a))!.power
    // floor(50 × 9200 / 10000) = 46 kept in each of two pools.
    expect(power(V2)).toBe(92n)
    expect(power(V3)).toBe(92n)
    // A later equivocation in the window counts both: 500 × (1 + 3 × 200/500) = 1100.
    expect(doubleSignSlashBps(s, 10n, [addr(V0)], addr(V0))).toBe(1_100)
    // Past the window, alone again.
    expect(
      doubleSignSlashBps(
        { ...s, params: { ...s.params, correlationWindowBlocks: 2 } },
        10n,
        [addr(V0)],
        addr(V0),
      ),
    ).toBe(500)
  })
})

describe('pool alarms', () => {
  // 903 is served by V0 alone; safe is 2 validators, cleared at 2.
  const ALARMS = {
    minPoolValidators: 2,
    clearPoolValidators: 2,
    minSelfStake: '100',
    alarmMinSelfStakeBps: 5_000,
  }
  const POOLS = [
    [901, 902, 903],
    [901, 902],
    [901, 902],
    [901, 902],
  ]

  it('raise for a pool short of validators, lower its join price, and clear once it recovers', async () => {
    let s = genesis(ALARMS, POOLS)
    expect(s.alarms).toEqual([903n])
    const join = (chainIds: bigint[], selfStake: bigint, nonce: bigint) =>
      signCreateValidator(E, NETWORK, {
        validator: addr(E),
        peerId: peerIdBytes(PEER_IDS[4]!),
        chainIds,
        selfStake,
        commissionBps: 0,
        nonce,
      })
    // 50 joins the alarmed pool alone, not a healthy one.
    const healthy = await stakeStep(s, KEYS, { accountMessages: [await join([901n], 50n, 1n)] })
    expect(healthy.block.accountMessages ?? []).toEqual([])
    s = await stakeBlock(s, KEYS, { accountMessages: [await join([903n], 50n, 2n)] })
    expect(s.stake.validators.get(addr(E))?.minSelfStake).toBe(50n)
    // Not in the set yet: the alarm stays until the boundary puts E in.
    expect(s.alarms).toEqual([903n])
    s = await blocks(s, EPOCH - 1)
    expect(s.consensusSet.has(addr(E))).toBe(true)
    expect(s.alarms).toEqual([])
  })

  it('follow stake moves out of and back into a pool', async () => {
    let s = genesis({ minPoolValidators: 2, clearPoolValidators: 3 }, [
      [901, 902, 903],
      [901, 902, 903],
      [901, 902],
      [901, 902],
    ])
    expect(s.alarms).toEqual([])
    // V1 moves its whole 903 stake away for 3 blocks: 903 drops to one validator.
    const mine = s.validators.find((v) => v.address === addr(V1))!.pools.get(903n)!
    const move = await signStakeMove(V1, NETWORK, {
      staker: addr(V1),
      fromChainId: 903n,
      toChainId: 901n,
      amount: mine,
      durationBlocks: 3n,
      nonce: 1n,
    })
    s = await stakeBlock(s, KEYS, { stakeMoves: [move] })
    expect(s.alarms).toEqual([903n])
    // Back at untilHeight: 2 validators, under the clear level of 3, so the alarm holds (hysteresis).
    s = await blocks(s, 3)
    expect(s.validators.find((v) => v.address === addr(V1))!.pools.get(903n)).toBe(mine)
    expect(s.alarms).toEqual([903n])
    // A third validator in 903 clears it.
    const d = { delegator: addr(D), validator: addr(V2), chainId: 901n, amount: 10n, nonce: 1n }
    void (await signDelegate(D, NETWORK, d))
    const v2move = await signStakeMove(V2, NETWORK, {
      staker: addr(V2),
      fromChainId: 901n,
      toChainId: 903n,
      amount: 10n,
      durationBlocks: 100n,
      nonce: 1n,
    })
    s = await stakeBlock(s, KEYS, { stakeMoves: [v2move] })
    expect(s.alarms).toEqual([])
  })
})

describe('an intent only alarmed pools could serve', () => {
  const ctx = (alarmed: bigint[]) => ({
    nowSec: Math.floor(Date.now() / 1000),
    maxClockSkewSec: 30,
    knownChainIds: new Set([901n, 902n, 903n]),
    alarmedChainIds: new Set(alarmed),
  })

  it('is refused POOL_ALARMED at the door; one with a healthy destination is not', async () => {
    const only903 = await makeIntent(wallet(), { destinationChainIds: [903n] })
    const v = await validateIntent(only903.intent, ctx([903n]))
    expect(v.ok ? 'ok' : v.code).toBe('POOL_ALARMED')
    const either = await makeIntent(wallet(), { destinationChainIds: [902n, 903n] })
    expect((await validateIntent(either.intent, ctx([903n]))).ok).toBe(true)
    // Any rollup (no destinations): refused only when every rollup is alarmed.
    const any = await makeIntent(wallet(), { destinationChainIds: [] })
    expect((await validateIntent(any.intent, ctx([903n]))).ok).toBe(true)
    const all = await validateIntent(any.intent, ctx([901n, 902n, 903n]))
    expect(all.ok ? 'ok' : all.code).toBe('POOL_ALARMED')
  })

  it('is not assigned there by the block: the router leaves alarmed pools out (POOL_ALARMED)', () => {
    const view = new Map(
      [901n, 903n].map((chainId) => [
        chainId,
        {
          chainId,
          status: 'up' as const,
          type: 'zk' as const,
          securityBps: 9_000,
          gasUsedRatioBps: 1_000,
          baseFeeWei: 1n,
          blockTimeMs: 1_000,
          latencyMs: 10,
          gasLimit: 30_000_000n,
          gasUsed: 1_000_000n,
        },
      ]),
    )
    const pool = [{ validator: addr(V0), stake: 100n, outstanding: 0 }]
    const pools = new Map([
      [901n, pool],
      [903n, pool],
    ])
    const intent = (id: string, destinationChainIds: bigint[]) => ({
      id: `0x${id.repeat(64)}` as `0x${string}`,
      user: addr(D),
      destinationChainIds,
      outputToken: '0x0000000000000000000000000000000000000000' as Address,
      outputAmount: 1_000n,
    })
    const r = routeIntents(
      [intent('1', [903n]), intent('2', [901n, 903n])],
      view as never,
      new Map(),
      pools,
      {
        alarmed: new Set([903n]),
      },
    )
    expect(r.unroutable).toEqual([{ intentId: `0x${'1'.repeat(64)}`, reason: 'POOL_ALARMED' }])
    expect(r.assignments.map((a) => a.chainId)).toEqual([901n])
  })
})
