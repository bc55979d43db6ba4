import { describe, expect, it } from 'vitest'
import { PROFILE_NAMES, planRollups, ROLLUP_PROFILES } from '../devnet/profiles.ts'
import { parseGenesis } from '../src/node/genesis.ts'

describe('rollup profiles', () => {
  it('has at least ten named kinds covering every family, each a valid genesis entry', () => {
    expect(ROLLUP_PROFILES.length).toBeGreaterThanOrEqual(10)
    const kinds = ROLLUP_PROFILES.map((p) => p.kind)
    expect(new Set(kinds).size).toBe(kinds.length)
    for (const k of kinds) expect(k).toMatch(/^[a-z0-9-]+-like$/)
    expect(new Set(ROLLUP_PROFILES.map((p) => p.family))).toEqual(
      new Set(['fast', 'op-stack', 'zk', 'congested']),
    )
    expect(PROFILE_NAMES).toEqual(['uniform', 'mixed', ...kinds])
  })

  it('each family has the anvil settings and genesis fields it stands for', () => {
    for (const p of ROLLUP_PROFILES) {
      if (p.family === 'fast') expect(p.blockTimeSec).toBe(0.25)
      if (p.family === 'op-stack') expect(p.blockTimeSec).toBe(2)
      if (p.family === 'zk') {
        expect(p.type).toBe('zk')
        expect(p.confirmations).toBeGreaterThan(0)
      } else expect(p.type).toBe('optimistic')
      if (p.family === 'congested') {
        expect(p.gasLimit).toBeLessThanOrEqual(5_000_000n)
        expect(p.load!.targetGasRatioBps).toBeGreaterThan(9_000)
        expect(p.load!.baseFeeCeilingWei).toBeGreaterThan(p.baseFeeWei ?? 0n)
      } else expect(p.load).toBeUndefined()
    }
  })

  it('uniform is the devnet of before: 1 s anvils, optimistic and zk alternating, no confirmations', () => {
    const plan = planRollups('uniform', 3)
    expect(plan.map((r) => r.anvil)).toEqual([{ blockTimeSec: 1 }, { blockTimeSec: 1 }, { blockTimeSec: 1 }])
    expect(plan.map((r) => r.genesis)).toEqual([
      { chainId: 901, name: 'rollup-901', type: 'optimistic', securityBps: 8000 },
      { chainId: 902, name: 'rollup-902', type: 'zk', securityBps: 9500 },
      { chainId: 903, name: 'rollup-903', type: 'optimistic', securityBps: 8000 },
    ])
    expect(plan.every((r) => r.load === undefined)).toBe(true)
  })

  it('mixed cycles through the kinds with chain ids 901 + i; five rollups already show every family', () => {
    const plan = planRollups('mixed', 16)
    expect(plan.map((r) => r.chainId)).toEqual(Array.from({ length: 16 }, (_, i) => 901 + i))
    expect(plan.map((r) => r.kind)).toEqual(
      Array.from({ length: 16 }, (_, i) => ROLLUP_PROFILES[i % ROLLUP_PROFILES.length]!.kind),
    )
    const five = planRollups('mixed', 5)
    const families = five.map((r) => ROLLUP_PROFILES.find((p) => p.kind === r.kind)!.family)
    expect(new Set(families).size).toBe(4)
    expect(five[0]).toEqual({
      chainId: 901,
      kind: 'arbitrum-like',
      anvil: { blockTimeSec: 0.25, gasLimit: 32_000_000n },
      genesis: {
        chainId: 901,
        name: 'arbitrum-like-901',
        type: 'optimistic',
        securityBps: 8000,
        confirmations: 0,
      },
    })
    const congested = five.find((r) => r.load !== undefined)!
    expect(congested.anvil).toEqual({ blockTimeSec: 1, gasLimit: 4_000_000n, baseFeeWei: 5_000_000_000n })
    // The genesis the devnet writes from the plan parses, and keeps the finality delays.
    const g = parseGenesis({
      networkId: 'profiles',
      genesisTime: 1,
      validators: [{ address: `0x${'11'.repeat(20)}`, peerId: 'p', stake: '1', pools: [901] }],
      delegations: [],
      accounts: [],
      rollups: plan.map((r) => r.genesis),
    })
    expect(g.rollups.map((r) => r.confirmations)).toEqual(plan.map((r) => r.genesis.confirmations))
    expect(g.rollups.filter((r) => r.type === 'zk').every((r) => r.confirmations > 0)).toBe(true)
  })

  it('one kind for every rollup, and an unknown profile is refused', () => {
    expect(
      planRollups('scroll-like', 2).map((r) => [r.kind, r.anvil.blockTimeSec, r.genesis.confirmations]),
    ).toEqual([
      ['scroll-like', 3, 2],
      ['scroll-like', 3, 2],
    ])
    expect(() => planRollups('solana-like', 2)).toThrow(
      /--profile must be one of uniform, mixed, arbitrum-like/,
    )
  })
})

describe('devnet pool levels', () => {
  it('are the fixed levels at 4 nodes and 3 rollups, and scale with the pools share', async () => {
    const { DEVNET_POOL_LEVELS, devnetPoolLevels } = await import('../devnet/devnet.ts')
    expect(devnetPoolLevels(4, 3)).toEqual(DEVNET_POOL_LEVELS)
    // 16 rollups: 250 000 per pool; fixed levels (500 000) alarmed every pool at genesis.
    expect(devnetPoolLevels(4, 16)).toEqual({
      ...DEVNET_POOL_LEVELS,
      minPoolStake: '93750',
      clearPoolStake: '168750',
    })
  })
})
