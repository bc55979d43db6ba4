import fc from 'fast-check'
import type { Address, Hex } from 'viem'
import { describe, expect, it } from 'vitest'
import {
  DEFAULT_ROUTE_PARAMS,
  type HealthView,
  type OpenAssignment,
  type PoolMember,
  type PoolView,
  type RollupHealth,
  type RouteIntent,
  type RouteParams,
  type RouteProfile,
  type RouteResult,
  rerouteCandidates,
  routeIntents,
} from '../src/rollups/router.ts'

const NATIVE: Address = '0x0000000000000000000000000000000000000000'
const USDC: Address = '0x00000000000000000000000000000000000000c0'
const V1: Address = '0x1000000000000000000000000000000000000001'
const V2: Address = '0x2000000000000000000000000000000000000002'
const V3: Address = '0x3000000000000000000000000000000000000003'
const ALICE: Address = '0xa11ce00000000000000000000000000000000000'
const BOB: Address = '0xb0b0000000000000000000000000000000000000'

function id(n: number): Hex {
  return `0x${n.toString(16).padStart(64, '0')}`
}

function health(over: Partial<RollupHealth> = {}): RollupHealth {
  return {
    status: 'up',
    gasUsedRatioBps: 5_000,
    baseFeeWei: 1_000_000_000n,
    blockTimeMs: 1_000,
    latencyMs: 20,
    gasLimit: 30_000_000n,
    gasUsed: 15_000_000n,
    type: 'optimistic',
    securityBps: 8_000,
    ...over,
  }
}

function intent(n: number, over: Partial<RouteIntent> = {}): RouteIntent {
  return {
    id: id(n),
    user: ALICE,
    destinationChainIds: [],
    outputAmount: 10n ** 18n,
    outputToken: NATIVE,
    ...over,
  }
}

function profile(over: Partial<RouteProfile> = {}): RouteProfile {
  return { preferredChainIds: [], avoidChainIds: [], preferredType: '', maxFeeBps: 0, ...over }
}

const pool1: PoolMember[] = [{ validator: V1, stake: 100n, outstanding: 0 }]
function pools(...chains: bigint[]): PoolView {
  return new Map(chains.map((c) => [c, pool1]))
}

function chainOf(r: RouteResult, n: number): bigint | undefined {
  return r.assignments.find((a) => a.intentId === id(n))?.chainId
}
function reasonOf(r: RouteResult, n: number): string | undefined {
  return r.unroutable.find((u) => u.intentId === id(n))?.reason
}

describe('routeIntents: table', () => {
  const none = new Map<string, RouteProfile>()

  const cases: Array<{
    name: string
    view: HealthView
    intents: RouteIntent[]
    profiles?: Map<string, RouteProfile>
    pools?: PoolView
    params?: Partial<RouteParams>
    chain?: bigint
    reason?: string
  }> = [
    {
      name: 'cheaper base fee wins',
      view: new Map([
        [901n, health({ baseFeeWei: 3_000_000_000n })],
        [902n, health({ baseFeeWei: 1_000_000_000n })],
      ]),
      intents: [intent(1)],
      chain: 902n,
    },
    {
      name: 'equal rollups: lower chain id wins the tie',
      view: new Map([
        [902n, health()],
        [901n, health()],
      ]),
      intents: [intent(1)],
      chain: 901n,
    },
    {
      name: 'zk with higher security wins over optimistic',
      view: new Map([
        [901n, health({ type: 'optimistic', securityBps: 7_000 })],
        [902n, health({ type: 'zk', securityBps: 9_500 })],
      ]),
      intents: [intent(1)],
      chain: 902n,
    },
    {
      name: 'a loaded rollup loses to an idle one',
      view: new Map([
        [901n, health({ gasUsedRatioBps: 9_500, gasUsed: 28_500_000n })],
        [902n, health({ gasUsedRatioBps: 1_000, gasUsed: 3_000_000n })],
      ]),
      intents: [intent(1)],
      chain: 902n,
    },
    {
      name: 'slower blocks lose',
      view: new Map([
        [901n, health({ blockTimeMs: 12_000 })],
        [902n, health({ blockTimeMs: 2_000 })],
      ]),
      intents: [intent(1)],
      chain: 902n,
    },
    {
      name: 'degraded is penalised',
      view: new Map([
        [901n, health({ status: 'degraded' })],
        [902n, health()],
      ]),
      intents: [intent(1)],
      chain: 902n,
    },
    {
      name: 'degraded is still used when it is the only one up',
      view: new Map([
        [901n, health({ status: 'degraded' })],
        [902n, health({ status: 'down' })],
      ]),
      intents: [intent(1)],
      chain: 901n,
    },
    {
      name: 'allowed destinations restrict',
      view: new Map([
        [901n, health()],
        [902n, health({ baseFeeWei: 9n * 10n ** 9n })],
      ]),
      intents: [intent(1, { destinationChainIds: [902n] })],
      chain: 902n,
    },
    {
      name: 'preferred chain gets the bonus over an equal one',
      view: new Map([
        [901n, health()],
        [902n, health()],
      ]),
      profiles: new Map([[ALICE, profile({ preferredChainIds: [902n] })]]),
      intents: [intent(1)],
      chain: 902n,
    },
    {
      name: 'preferred type gets the bonus over an equal one',
      view: new Map([
        [901n, health({ type: 'zk', securityBps: 9_000 })],
        [902n, health({ type: 'optimistic', securityBps: 9_000 })],
      ]),
      profiles: new Map([[ALICE, profile({ preferredType: 'optimistic' })]]),
      params: { optimisticPenaltyBps: 0 },
      intents: [intent(1)],
      chain: 902n,
    },
    {
      name: 'preference is not a filter: a down preferred chain is skipped',
      view: new Map([
        [901n, health()],
        [902n, health({ status: 'down' })],
      ]),
      profiles: new Map([[ALICE, profile({ preferredChainIds: [902n] })]]),
      intents: [intent(1)],
      chain: 901n,
    },
    {
      name: 'avoided chain is never used, even when cheapest',
      view: new Map([
        [901n, health({ baseFeeWei: 1n })],
        [902n, health({ baseFeeWei: 10n ** 10n })],
      ]),
      profiles: new Map([[ALICE, profile({ avoidChainIds: [901n] })]]),
      intents: [intent(1)],
      chain: 902n,
    },
    {
      name: 'profile found for a lowercase key and a checksummed user',
      view: new Map([
        [901n, health()],
        [902n, health()],
      ]),
      profiles: new Map([[BOB, profile({ avoidChainIds: [901n] })]]),
      intents: [intent(1, { user: '0xB0B0000000000000000000000000000000000000' })],
      chain: 902n,
    },
    {
      name: 'unknown destination',
      view: new Map([[901n, health()]]),
      intents: [intent(1, { destinationChainIds: [999n] })],
      reason: 'NO_KNOWN_DESTINATION',
    },
    {
      name: 'everything avoided',
      view: new Map([[901n, health()]]),
      profiles: new Map([[ALICE, profile({ avoidChainIds: [901n] })]]),
      intents: [intent(1)],
      reason: 'ALL_AVOIDED',
    },
    {
      name: 'everything down',
      view: new Map([
        [901n, health({ status: 'down' })],
        [902n, health({ status: 'down' })],
      ]),
      intents: [intent(1)],
      reason: 'ALL_DOWN',
    },
    {
      name: 'no staked pool member',
      view: new Map([
        [901n, health()],
        [902n, health()],
      ]),
      pools: new Map([[901n, [{ validator: V1, stake: 0n, outstanding: 0 }]]]),
      intents: [intent(1)],
      reason: 'NO_EXECUTOR',
    },
    {
      name: 'fee above the profile limit (native output)',
      view: new Map([[901n, health({ baseFeeWei: 10n ** 9n })]]),
      // fee = 1e9 * 21000 = 2.1e13; 1 bps of 1e17 = 1e13 < fee
      profiles: new Map([[ALICE, profile({ maxFeeBps: 1 })]]),
      intents: [intent(1, { outputAmount: 10n ** 17n })],
      reason: 'FEE_LIMIT',
    },
    {
      name: 'fee limit is not applied to erc20 outputs',
      view: new Map([[901n, health({ baseFeeWei: 10n ** 9n })]]),
      profiles: new Map([[ALICE, profile({ maxFeeBps: 1 })]]),
      intents: [intent(1, { outputAmount: 1n, outputToken: USDC })],
      chain: 901n,
    },
    {
      name: 'fee limit picks the chain that fits',
      view: new Map([
        [901n, health({ baseFeeWei: 10n ** 9n, blockTimeMs: 100 })],
        [902n, health({ baseFeeWei: 10n ** 8n, blockTimeMs: 10_000 })],
      ]),
      // 2 bps of 1e17 = 2e13: 901 costs 2.1e13 (too much), 902 costs 2.1e12
      profiles: new Map([[ALICE, profile({ maxFeeBps: 2 })]]),
      params: { weights: { fee: 0, latency: 100, security: 0, load: 0 } },
      intents: [intent(1, { outputAmount: 10n ** 17n })],
      chain: 902n,
    },
    {
      name: 'full rollup',
      view: new Map([[901n, health({ gasUsed: 30_000_000n, gasUsedRatioBps: 10_000 })]]),
      intents: [intent(1)],
      reason: 'NO_CAPACITY',
    },
    {
      name: 'gas estimate larger than the spare gas',
      view: new Map([[901n, health({ gasUsed: 29_000_000n })]]),
      intents: [intent(1, { gasEstimate: 1_000_001n })],
      reason: 'NO_CAPACITY',
    },
  ]

  for (const c of cases) {
    it(c.name, () => {
      const r = routeIntents(
        c.intents,
        c.view,
        c.profiles ?? none,
        c.pools ?? pools(...c.view.keys()),
        c.params ?? {},
      )
      if (c.chain !== undefined) {
        expect(chainOf(r, 1)).toBe(c.chain)
        expect(r.unroutable).toEqual([])
      } else {
        expect(r.assignments).toEqual([])
        expect(reasonOf(r, 1)).toBe(c.reason)
      }
    })
  }

  it('spreads a burst: the cheaper rollup takes more but not all', () => {
    const view = new Map([
      [901n, health({ baseFeeWei: 1_000_000_000n, gasUsed: 0n, gasUsedRatioBps: 0, gasLimit: 2_100_000n })],
      [902n, health({ baseFeeWei: 1_200_000_000n, gasUsed: 0n, gasUsedRatioBps: 0, gasLimit: 2_100_000n })],
    ])
    const r = routeIntents(
      Array.from({ length: 100 }, (_, i) => intent(i)),
      view,
      none,
      pools(901n, 902n),
    )
    const n901 = r.assignments.filter((a) => a.chainId === 901n).length
    const n902 = r.assignments.filter((a) => a.chainId === 902n).length
    expect(n901 + n902).toBe(100)
    expect(n901).toBeGreaterThan(n902)
    expect(n902).toBeGreaterThan(10)
  })

  it('capacity: each rollup takes exactly what fits, the rest is unroutable', () => {
    const view = new Map([
      [901n, health({ gasLimit: 1_000_000n, gasUsed: 958_000n })], // 42 000 spare: two fills
      [902n, health({ gasLimit: 1_000_000n, gasUsed: 937_000n })], // 63 000 spare: three fills
    ])
    const r = routeIntents(
      Array.from({ length: 7 }, (_, i) => intent(i)),
      view,
      none,
      pools(901n, 902n),
    )
    expect(r.assignments.filter((a) => a.chainId === 901n)).toHaveLength(2)
    expect(r.assignments.filter((a) => a.chainId === 902n)).toHaveLength(3)
    expect(r.unroutable).toEqual([
      { intentId: id(5), reason: 'NO_CAPACITY' },
      { intentId: id(6), reason: 'NO_CAPACITY' },
    ])
    // A wider window lets the same rollups take more.
    const wide = routeIntents(
      Array.from({ length: 7 }, (_, i) => intent(i)),
      view,
      none,
      pools(901n, 902n),
      { capacityWindowBlocks: 2 },
    )
    expect(wide.assignments).toHaveLength(7)
  })

  it('erc20 fills use their own default gas', () => {
    const view = new Map([[901n, health({ gasLimit: 1_000_000n, gasUsed: 870_000n })]]) // 130 000 spare
    const r = routeIntents(
      [intent(1, { outputToken: USDC }), intent(2, { outputToken: USDC }), intent(3, { outputToken: USDC })],
      view,
      none,
      pools(901n),
    )
    expect(r.assignments.map((a) => a.intentId)).toEqual([id(1), id(2)])
    expect(r.unroutable).toEqual([{ intentId: id(3), reason: 'NO_CAPACITY' }])
  })

  it('executor: stake-weighted and work-aware, ties to the lower address', () => {
    const view = new Map([[901n, health()]])
    const members: PoolMember[] = [
      { validator: V2, stake: 300n, outstanding: 0 },
      { validator: V1, stake: 100n, outstanding: 0 },
    ]
    const r = routeIntents(
      Array.from({ length: 8 }, (_, i) => intent(i)),
      view,
      none,
      new Map([[901n, members]]),
    )
    // work/stake: V2 1/300 < V1 1/100, V2 2/300; then V2 3/300 = V1 1/100, a tie -> V1 (lower address);
    // V2 3/300 < V1 2/100 three times; then V2 6/300 = V1 2/100 -> V1: stake 3:1 gives work 3:1.
    expect(r.assignments.map((a) => a.executor)).toEqual([V2, V2, V1, V2, V2, V2, V1, V2])

    const busy: PoolMember[] = [
      { validator: V1, stake: 100n, outstanding: 5 },
      { validator: V2, stake: 100n, outstanding: 0 },
      { validator: V3, stake: 100n, outstanding: 1 },
    ]
    const r2 = routeIntents(
      Array.from({ length: 3 }, (_, i) => intent(i)),
      view,
      none,
      new Map([[901n, busy]]),
    )
    expect(r2.assignments.map((a) => a.executor)).toEqual([V2, V2, V3])
  })

  it('duplicate ids are routed once', () => {
    const view = new Map([[901n, health()]])
    const r = routeIntents([intent(1), intent(2), intent(1)], view, none, pools(901n))
    expect(r.assignments.map((a) => a.intentId)).toEqual([id(1), id(2)])
    expect(r.unroutable).toEqual([{ intentId: id(1), reason: 'DUPLICATE_ID' }])
  })

  it('output is in intent id order whatever the input order', () => {
    const view = new Map([
      [901n, health()],
      [902n, health()],
    ])
    const r = routeIntents([intent(3), intent(1), intent(2)], view, none, pools(901n, 902n))
    expect(r.assignments.map((a) => a.intentId)).toEqual([id(1), id(2), id(3)])
  })

  it('rejects bad params as programmer errors', () => {
    const view = new Map([[901n, health()]])
    expect(() => routeIntents([], view, none, pools(901n), { capacityWindowBlocks: 0 })).toThrow(RangeError)
    expect(() =>
      routeIntents([], view, none, pools(901n), { weights: { fee: -1, latency: 1, security: 1, load: 1 } }),
    ).toThrow(RangeError)
    expect(() =>
      routeIntents([], view, none, pools(901n), { weights: { fee: 1.5, latency: 1, security: 1, load: 1 } }),
    ).toThrow(RangeError)
  })
})

describe('rerouteCandidates', () => {
  const view: HealthView = new Map([
    [901n, health()],
    [902n, health({ status: 'down' })],
    [903n, health({ status: 'degraded' })],
  ])
  const open = (n: number, chainId: bigint, deadline: number, executor: Address = V1): OpenAssignment => ({
    intentId: id(n),
    chainId,
    executor,
    deadline,
  })

  it.each([
    { name: 'healthy and in time', a: open(1, 901n, 1_000), reason: undefined },
    { name: 'deadline is the last valid second', a: open(1, 901n, 500), reason: undefined },
    { name: 'deadline passed', a: open(1, 901n, 499), reason: 'DEADLINE_PASSED' },
    { name: 'rollup down', a: open(1, 902n, 1_000), reason: 'ROLLUP_DOWN' },
    { name: 'down wins over deadline', a: open(1, 902n, 1), reason: 'ROLLUP_DOWN' },
    { name: 'no report is down', a: open(1, 904n, 1_000), reason: 'ROLLUP_DOWN' },
    { name: 'degraded stays', a: open(1, 903n, 1_000), reason: undefined },
  ])('$name', ({ a, reason }) => {
    const out = rerouteCandidates([a], view, 500)
    expect(out).toEqual(reason ? [{ intentId: a.intentId, reason }] : [])
  })

  it('executor no longer in the pool, when pools are given; sorted by intent id', () => {
    const p: PoolView = new Map([[901n, [{ validator: V2, stake: 1n, outstanding: 0 }]]])
    const out = rerouteCandidates(
      [open(3, 901n, 1_000, V1), open(2, 902n, 1_000), open(1, 901n, 1_000, V2)],
      view,
      500n,
      p,
    )
    expect(out).toEqual([
      { intentId: id(2), reason: 'ROLLUP_DOWN' },
      { intentId: id(3), reason: 'EXECUTOR_GONE' },
    ])
  })

  it.each([
    { name: 'executor offline', a: open(1, 901n, 1_000, V1), reason: 'EXECUTOR_OFFLINE' },
    { name: 'another executor offline', a: open(1, 901n, 1_000, V2), reason: undefined },
    { name: 'down wins over offline', a: open(1, 902n, 1_000, V1), reason: 'ROLLUP_DOWN' },
    { name: 'deadline wins over offline', a: open(1, 901n, 499, V1), reason: 'DEADLINE_PASSED' },
    { name: 'offline wins over gone', a: open(1, 903n, 1_000, V1), reason: 'EXECUTOR_OFFLINE' },
  ])('$name', ({ a, reason }) => {
    // V1 and V2 serve 901; 903 has nobody: V1 is gone from 903's pool as well as offline.
    const p: PoolView = new Map([
      [
        901n,
        [
          { validator: V1, stake: 1n, outstanding: 0 },
          { validator: V2, stake: 1n, outstanding: 0 },
        ],
      ],
      [903n, []],
    ])
    const offline = new Set<string>([V1])
    expect(rerouteCandidates([a], view, 500, p, offline)).toEqual(
      reason ? [{ intentId: a.intentId, reason }] : [],
    )
    // Without the offline set, nothing is EXECUTOR_OFFLINE.
    expect(rerouteCandidates([a], view, 500, p).map((c) => c.reason)).not.toContain('EXECUTOR_OFFLINE')
  })
})

describe('routeIntents: executors to avoid', () => {
  const view: HealthView = new Map([
    [901n, health()],
    [902n, health({ baseFeeWei: 2_000_000_000n })],
  ])
  const member = (validator: Address, outstanding = 0, stake = 100n): PoolMember => ({
    validator,
    stake,
    outstanding,
  })

  it('never picks an avoided executor, even the one with the least work; NO_EXECUTOR when only they serve', () => {
    const p: PoolView = new Map([
      [901n, [member(V1), member(V2, 5)]],
      [902n, [member(V1)]],
    ])
    const r = routeIntents(
      [intent(1, { avoidExecutors: [V1] }), intent(2), intent(3, { avoidExecutors: [V1, V2] })],
      view,
      new Map(),
      p,
      DEFAULT_ROUTE_PARAMS,
    )
    expect(r.assignments.map((a) => [a.intentId, a.chainId, a.executor])).toEqual([
      [id(1), 901n, V2],
      [id(2), 901n, V1],
    ])
    expect(reasonOf(r, 3)).toBe('NO_EXECUTOR')
    // Only V1 serves 902: an intent for 902 alone that avoids V1 has no executor.
    const only902 = routeIntents(
      [intent(4, { destinationChainIds: [902n], avoidExecutors: [V1] })],
      view,
      new Map(),
      p,
      DEFAULT_ROUTE_PARAMS,
    )
    expect(reasonOf(only902, 4)).toBe('NO_EXECUTOR')
  })

  it('property: the executor is never avoided and is the best of the others by work per stake', () => {
    const validators = [V1, V2, V3]
    const arb = fc.record({
      stakes: fc.array(fc.bigInt({ min: 0n, max: 50n }), { minLength: 6, maxLength: 6 }),
      outstanding: fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 6, maxLength: 6 }),
      avoid: fc.array(fc.subarray(validators), { minLength: 1, maxLength: 12 }),
    })
    fc.assert(
      fc.property(arb, ({ stakes, outstanding, avoid }) => {
        const p: PoolView = new Map(
          [901n, 902n].map((c, k) => [
            c,
            validators
              .map((v, i) => member(v, outstanding[k * 3 + i]!, stakes[k * 3 + i]!))
              .filter((m) => m.stake > 0n),
          ]),
        )
        const intents = avoid.map((a, n) => intent(n + 1, { avoidExecutors: a }))
        const r = routeIntents(intents, view, new Map(), p, DEFAULT_ROUTE_PARAMS)
        const batch = new Map<string, bigint>()
        for (const a of r.assignments) {
          const avoided = intents.find((i) => i.id === a.intentId)!.avoidExecutors!
          expect(avoided).not.toContain(a.executor)
          const others = staked(p, a.chainId).filter((m) => !avoided.includes(m.validator))
          const work = (m: PoolMember) =>
            BigInt(m.outstanding) + (batch.get(`${a.chainId}/${m.validator}`) ?? 0n) + 1n
          expect(a.executor).toBe(leastWork(others, work).validator)
          batch.set(`${a.chainId}/${a.executor}`, (batch.get(`${a.chainId}/${a.executor}`) ?? 0n) + 1n)
        }
        // Unroutable only when no lane has a member it may go to.
        for (const u of r.unroutable) {
          const avoided = intents.find((i) => i.id === u.intentId)!.avoidExecutors!
          if (u.reason === 'NO_EXECUTOR')
            for (const c of [901n, 902n])
              expect(staked(p, c).every((m) => avoided.includes(m.validator))).toBe(true)
        }
      }),
      { numRuns: 300 },
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Property tests

const CHAINS = [901n, 902n, 903n, 904n, 905n]
const VALIDATORS: Address[] = [V1, V2, V3, '0x4000000000000000000000000000000000000004']
const USERS: Address[] = [ALICE, BOB, '0xc0c0000000000000000000000000000000000000']

const healthArb: fc.Arbitrary<RollupHealth> = fc
  .record({
    status: fc.constantFrom<RollupHealth['status']>('up', 'up', 'degraded', 'down'),
    gasUsedRatioBps: fc.integer({ min: 0, max: 10_000 }),
    baseFeeWei: fc.bigInt({ min: 0n, max: 10n ** 11n }),
    blockTimeMs: fc.integer({ min: 0, max: 12_000 }),
    latencyMs: fc.integer({ min: 0, max: 2_000 }),
    gasLimit: fc.bigInt({ min: 0n, max: 1_000_000n }),
    usedPart: fc.integer({ min: 0, max: 12_000 }),
    type: fc.constantFrom<RollupHealth['type']>('optimistic', 'zk'),
    securityBps: fc.integer({ min: 0, max: 10_000 }),
  })
  .map(({ usedPart, ...h }) => ({ ...h, gasUsed: (h.gasLimit * BigInt(usedPart)) / 10_000n }))

const viewArb: fc.Arbitrary<Map<bigint, RollupHealth>> = fc
  .subarray(CHAINS, { minLength: 0 })
  .chain((ids) => fc.tuple(...ids.map(() => healthArb)).map((hs) => new Map(ids.map((c, i) => [c, hs[i]!]))))

const memberArb: fc.Arbitrary<PoolMember> = fc.record({
  validator: fc.constantFrom(...VALIDATORS),
  stake: fc.bigInt({ min: 0n, max: 1_000n }),
  outstanding: fc.integer({ min: 0, max: 5 }),
})

const poolsArb: fc.Arbitrary<Map<bigint, PoolMember[]>> = fc
  .subarray(CHAINS)
  .chain((ids) =>
    fc
      .tuple(...ids.map(() => fc.array(memberArb, { maxLength: 4 })))
      .map((ms) => new Map(ids.map((c, i) => [c, ms[i]!]))),
  )

const profileArb: fc.Arbitrary<RouteProfile> = fc.record({
  preferredChainIds: fc.subarray([...CHAINS, 999n]),
  avoidChainIds: fc.subarray(CHAINS, { maxLength: 3 }),
  preferredType: fc.constantFrom<RouteProfile['preferredType']>('', 'zk', 'optimistic'),
  maxFeeBps: fc.constantFrom(0, 0, 1, 10, 1_000),
})

const profilesArb: fc.Arbitrary<Map<string, RouteProfile>> = fc
  .subarray(USERS)
  .chain((us) => fc.tuple(...us.map(() => profileArb)).map((ps) => new Map(us.map((u, i) => [u, ps[i]!]))))

const intentArb: fc.Arbitrary<RouteIntent> = fc.record(
  {
    // A small id space, so duplicates happen.
    id: fc.integer({ min: 0, max: 200 }).map(id),
    user: fc.constantFrom(...USERS),
    destinationChainIds: fc.subarray([...CHAINS, 999n]),
    outputAmount: fc.bigInt({ min: 0n, max: 10n ** 18n }),
    outputToken: fc.constantFrom(NATIVE, USDC),
    gasEstimate: fc.bigInt({ min: -1n, max: 200_000n }),
  },
  { requiredKeys: ['id', 'user', 'destinationChainIds', 'outputAmount', 'outputToken'] },
)

const paramsArb: fc.Arbitrary<Partial<RouteParams>> = fc.record({
  weights: fc.record({
    fee: fc.integer({ min: 0, max: 10 }),
    latency: fc.integer({ min: 0, max: 10 }),
    security: fc.integer({ min: 0, max: 10 }),
    load: fc.integer({ min: 0, max: 10 }),
  }),
  capacityWindowBlocks: fc.integer({ min: 1, max: 3 }),
  degradedPenaltyBps: fc.integer({ min: 0, max: 20_000 }),
  preferredChainBonusBps: fc.integer({ min: 0, max: 10_000 }),
  preferredTypeBonusBps: fc.integer({ min: 0, max: 10_000 }),
})

const worldArb = fc.record({
  intents: fc.array(intentArb, { maxLength: 60 }),
  view: viewArb,
  profiles: profilesArb,
  pools: poolsArb,
  params: paramsArb,
})

function fillGas(i: RouteIntent, params: Partial<RouteParams>): bigint {
  if (i.gasEstimate !== undefined && i.gasEstimate > 0n) return i.gasEstimate
  return i.outputToken === NATIVE
    ? (params.fillGasNative ?? DEFAULT_ROUTE_PARAMS.fillGasNative)
    : (params.fillGasErc20 ?? DEFAULT_ROUTE_PARAMS.fillGasErc20)
}

function spare(h: RollupHealth, params: Partial<RouteParams>): bigint {
  const free = h.gasLimit > h.gasUsed ? h.gasLimit - h.gasUsed : 0n
  return free * BigInt(params.capacityWindowBlocks ?? DEFAULT_ROUTE_PARAMS.capacityWindowBlocks)
}

/** Naive reference: the member with the least work per stake by exact rational comparison, then the lowest address. */
function leastWork(members: readonly PoolMember[], work: (m: PoolMember) => bigint): PoolMember {
  let best = members[0]!
  for (const m of members) {
    const lhs = work(m) * best.stake
    const rhs = work(best) * m.stake
    if (lhs < rhs || (lhs === rhs && m.validator < best.validator)) best = m
  }
  return best
}

function staked(p: PoolView, chainId: bigint): PoolMember[] {
  return (p.get(chainId) ?? []).filter((m) => m.stake > 0n)
}

/** Same entries, another insertion order. */
function reorder<K, V>(m: ReadonlyMap<K, V>, perm: number[]): Map<K, V> {
  const entries = [...m.entries()]
  const order = perm.filter((i) => i < entries.length)
  const rest = entries.filter((_, i) => !order.includes(i))
  return new Map([...order.map((i) => entries[i]!), ...rest])
}

describe('routeIntents: properties', () => {
  it('never routes to a down, unknown, disallowed or avoided rollup, nor over the fee limit', () => {
    fc.assert(
      fc.property(worldArb, ({ intents, view, profiles, pools, params }) => {
        const r = routeIntents(intents, view, profiles, pools, params)
        for (const a of r.assignments) {
          const h = view.get(a.chainId)
          expect(h).toBeDefined()
          expect(h!.status).not.toBe('down')
          // Several intents may share an id; the routed one must satisfy every rule.
          const ok = (i: RouteIntent): boolean => {
            if (i.destinationChainIds.length > 0 && !i.destinationChainIds.includes(a.chainId)) return false
            const prof = profiles.get(i.user)
            if (!prof) return true
            if (prof.avoidChainIds.includes(a.chainId)) return false
            if (prof.maxFeeBps > 0 && i.outputToken === NATIVE) {
              return h!.baseFeeWei * fillGas(i, params) * 10_000n <= i.outputAmount * BigInt(prof.maxFeeBps)
            }
            return true
          }
          expect(intents.filter((i) => i.id === a.intentId).some(ok)).toBe(true)
        }
      }),
    )
  })

  it('accounts for every intent once; static reasons are justified', () => {
    fc.assert(
      fc.property(worldArb, ({ intents, view, profiles, pools, params }) => {
        const r = routeIntents(intents, view, profiles, pools, params)
        expect(r.assignments.length + r.unroutable.length).toBe(intents.length)
        const assignedIds = r.assignments.map((a) => a.intentId)
        expect(new Set(assignedIds).size).toBe(assignedIds.length)
        const distinct = new Set(intents.map((i) => i.id))
        const routedOrNot = new Set([
          ...assignedIds,
          ...r.unroutable.filter((u) => u.reason !== 'DUPLICATE_ID').map((u) => u.intentId),
        ])
        expect(routedOrNot.size).toBe(distinct.size)
        expect(r.unroutable.filter((u) => u.reason === 'DUPLICATE_ID')).toHaveLength(
          intents.length - distinct.size,
        )
        for (const u of r.unroutable) {
          if (u.reason === 'DUPLICATE_ID') continue
          // Any intent with that id (duplicates may differ, but only the routed one counts when all agree).
          const variants = intents.filter((i) => i.id === u.intentId)
          if (variants.length !== 1) continue
          const i = variants[0]!
          const known = [...view.keys()].filter(
            (c) => i.destinationChainIds.length === 0 || i.destinationChainIds.includes(c),
          )
          const avoid = profiles.get(i.user)?.avoidChainIds ?? []
          const allowed = known.filter((c) => !avoid.includes(c))
          const up = allowed.filter((c) => view.get(c)!.status !== 'down')
          const served = up.filter((c) => staked(pools, c).length > 0)
          const expected =
            known.length === 0
              ? 'NO_KNOWN_DESTINATION'
              : allowed.length === 0
                ? 'ALL_AVOIDED'
                : up.length === 0
                  ? 'ALL_DOWN'
                  : served.length === 0
                    ? 'NO_EXECUTOR'
                    : undefined
          if (expected) expect(u.reason).toBe(expected)
          else expect(['FEE_LIMIT', 'NO_CAPACITY']).toContain(u.reason)
        }
      }),
    )
  })

  it('never exceeds any rollup spare capacity; NO_CAPACITY means nothing fitted', () => {
    fc.assert(
      fc.property(worldArb, ({ intents, view, profiles, pools, params }) => {
        const r = routeIntents(intents, view, profiles, pools, params)
        // Only one intent per id is routed; take the one that was (the smallest by content).
        const used = new Map<bigint, bigint>()
        for (const a of r.assignments) {
          const variants = intents.filter((i) => i.id === a.intentId)
          // Gas of the routed variant: check the bound with the smallest gas, which is a lower bound.
          const gas = variants.map((v) => fillGas(v, params)).sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))[0]!
          used.set(a.chainId, (used.get(a.chainId) ?? 0n) + gas)
        }
        for (const [c, g] of used) expect(g).toBeLessThanOrEqual(spare(view.get(c)!, params))
        const exact = intents.every((i) => intents.filter((j) => j.id === i.id).length === 1)
        if (!exact) return
        for (const u of r.unroutable) {
          if (u.reason !== 'NO_CAPACITY') continue
          const i = intents.find((x) => x.id === u.intentId)!
          for (const c of i.destinationChainIds.length ? i.destinationChainIds : [...view.keys()]) {
            const h = view.get(c)
            if (!h || h.status === 'down' || staked(pools, c).length === 0) continue
            const prof = profiles.get(i.user)
            if (prof?.avoidChainIds.includes(c)) continue
            const feeLimited =
              prof !== undefined &&
              prof.maxFeeBps > 0 &&
              i.outputToken === NATIVE &&
              h.baseFeeWei * fillGas(i, params) * 10_000n > i.outputAmount * BigInt(prof.maxFeeBps)
            if (feeLimited) continue
            // Usage only grows, so what did not fit then does not fit at the end either.
            expect((used.get(c) ?? 0n) + fillGas(i, params)).toBeGreaterThan(spare(h, params))
          }
        }
      }),
    )
  })

  it('executor is in the pool and minimises (outstanding + batch + 1) / stake, lowest address on ties', () => {
    fc.assert(
      fc.property(worldArb, ({ intents, view, profiles, pools, params }) => {
        const r = routeIntents(intents, view, profiles, pools, params)
        const batch = new Map<string, bigint>()
        for (const a of r.assignments) {
          const members = staked(pools, a.chainId)
          expect(members.map((m) => m.validator)).toContain(a.executor)
          const work = (m: PoolMember): bigint =>
            BigInt(m.outstanding) + (batch.get(`${a.chainId}/${m.validator}`) ?? 0n) + 1n
          expect(a.executor).toBe(leastWork(members, work).validator)
          const key = `${a.chainId}/${a.executor}`
          batch.set(key, (batch.get(key) ?? 0n) + 1n)
        }
      }),
    )
  })

  it('same output for any permutation of intents, Map insertion order and pool order', () => {
    fc.assert(
      fc.property(
        worldArb,
        fc.array(fc.nat(), { maxLength: 80 }),
        fc.array(fc.nat({ max: 10 }), { maxLength: 10 }),
        ({ intents, view, profiles, pools, params }, shuffleKeys, mapPerm) => {
          const base = routeIntents(intents, view, profiles, pools, params)
          const shuffled = intents
            .map((i, n) => ({ i, k: shuffleKeys[n] ?? n }))
            .sort((a, b) => a.k - b.k)
            .map((x) => x.i)
          const reversedPools = new Map([...reorder(pools, mapPerm)].map(([c, ms]) => [c, [...ms].reverse()]))
          const again = routeIntents(
            shuffled,
            reorder(view, mapPerm),
            reorder(profiles, [...mapPerm].reverse()),
            reversedPools,
            params,
          )
          expect(again).toEqual(base)
        },
      ),
    )
  })

  it('spreading improves as rollups are added', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }), // capacity of one rollup, in fills
        fc.integer({ min: 1, max: 40 }), // extra intents above one rollup's capacity
        (cap, extra) => {
          const n = cap + extra
          const intents = Array.from({ length: n }, (_, i) => intent(i))
          let prevAssigned = 0
          let prevShare: [number, number] = [1, 1] // max count / assigned, as a fraction
          for (let k = 1; k <= CHAINS.length; k++) {
            const chains = CHAINS.slice(0, k)
            const view = new Map(
              chains.map((c) => [
                c,
                health({ gasLimit: BigInt(cap) * 21_000n, gasUsed: 0n, gasUsedRatioBps: 0 }),
              ]),
            )
            const r = routeIntents(intents, view, new Map(), pools(...chains))
            const counts = chains.map((c) => r.assignments.filter((a) => a.chainId === c).length)
            const assigned = r.assignments.length
            expect(assigned).toBe(Math.min(n, k * cap))
            if (k > 1) {
              expect(assigned).toBeGreaterThan(prevAssigned)
              const max = Math.max(...counts)
              // max / assigned < prevMax / prevAssigned
              expect(max * prevShare[1]).toBeLessThan(prevShare[0] * assigned)
            }
            // Equal rollups share evenly.
            expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1)
            prevAssigned = assigned
            prevShare = [Math.max(...counts), assigned]
            if (assigned === n) break
          }
        },
      ),
    )
  })
})
