import fc from 'fast-check'
import type { Address, Hex } from 'viem'
import { describe, expect, it } from 'vitest'
import type { StakeMoveRecord } from '../src/staking/moves.ts'
import {
  DEFAULT_REWARD_PARAMS,
  type DelegationPeriod,
  distributeEpoch,
  EMPTY_ACCUMULATOR,
  type EpochInput,
  endDelegation,
  type PoolStake,
  pendingReward,
  REWARD_PRECISION,
  type RewardParams,
  RewardsError,
  splitEpoch,
  stakeEntries,
  startDelegation,
  type ValidatorAccumulator,
  withdrawReward,
} from '../src/staking/rewards.ts'

const addr = (i: number) => `0x${i.toString(16).padStart(40, '0')}` as Address
const A = addr(0xa)
const B = addr(0xb)
const C = addr(0xc)
const CHAINS = [901n, 902n, 903n]

function codeOf(f: () => unknown): string | undefined {
  try {
    f()
  } catch (e) {
    return e instanceof RewardsError ? e.code : `not a RewardsError: ${e}`
  }
  return undefined
}

describe('the worked example of docs/rewards.md', () => {
  it('splits, boosts, pays commission, credits the accumulators and sends every remainder to the community pool', () => {
    const input: EpochInput = {
      contributions: [
        {
          chainId: 901n,
          intentsFilled: 30n,
          intentsSettled: 20n,
          valueMoved: 50n * 10n ** 18n,
          securityBps: 10_000,
        },
        { chainId: 902n, intentsFilled: 10n, intentsSettled: 0n, valueMoved: 0n, securityBps: 5_000 },
      ],
      stakes: [
        {
          chainId: 901n,
          entries: [
            { validator: A, amount: 600n, doubled: false },
            { validator: B, amount: 200n, doubled: true },
          ],
        },
        {
          chainId: 902n,
          entries: [
            { validator: C, amount: 400n, doubled: false },
            { validator: B, amount: 400n, doubled: false },
          ],
        },
      ],
      commissionBps: new Map([
        [A, 1_000],
        [B, 500],
      ]),
    }
    let accA = startDelegation(EMPTY_ACCUMULATOR, 600n)
    const bSelf = startDelegation(EMPTY_ACCUMULATOR, 400n)
    const bD = startDelegation(bSelf.acc, 200n)
    const accs = new Map<Address, ValidatorAccumulator>([
      [B, bD.acc],
      [A, accA.acc],
    ])
    const { rewards, accumulators } = distributeEpoch(
      { ...DEFAULT_REWARD_PARAMS, emissionPerEpoch: 10_000n },
      input,
      accs,
    )
    expect(rewards.pools.map((p) => [p.chainId, p.weight, p.boostBps, p.reward])).toEqual([
      [901n, 110_200_000_000n, 0, 8290n],
      [902n, 22_725_000_000n, 5_000, 1709n],
    ])
    expect(rewards.pools[0]!.validators.map((v) => v.reward)).toEqual([4974n, 3316n])
    expect(rewards.pools[1]!.validators.map((v) => v.reward)).toEqual([854n, 854n])
    expect(
      rewards.validators.map((v) => [v.validator, v.reward, v.commission, v.credited, v.uncredited]),
    ).toEqual([
      [A, 4974n, 497n, 4477n, 0n],
      [B, 4170n, 208n, 3962n, 0n],
      [C, 854n, 0n, 0n, 854n],
    ])
    expect([rewards.commission, rewards.credited, rewards.communityPool]).toEqual([705n, 8439n, 856n])
    const b = accumulators.get(B)!
    expect(pendingReward(b, bD.period)).toBe(1320n)
    expect(pendingReward(b, bSelf.period)).toBe(2641n)
    // The last delegation to end sweeps the accumulator's dust (1 unit each here) to the community pool.
    const d = endDelegation(b, bD.period)
    const s = endDelegation(d.acc, bSelf.period)
    expect([d.paid, d.toCommunity, s.paid, s.toCommunity, s.acc.outstanding]).toEqual([
      1320n,
      0n,
      2641n,
      1n,
      0n,
    ])
    accA = { acc: accumulators.get(A)!, period: accA.period }
    const a = endDelegation(accA.acc, accA.period)
    expect([a.paid, a.toCommunity]).toEqual([4476n, 1n])
  })
})

// ---- random epochs with delegators joining, leaving and withdrawing ----

const entryArb = fc.record({
  validator: fc.integer({ min: 1, max: 5 }).map(addr),
  amount: fc.bigInt({ min: 0n, max: 10n ** 12n }),
  doubled: fc.boolean(),
})
const epochArb = fc.record({
  emission: fc.bigInt({ min: 0n, max: 10n ** 15n }),
  contributions: fc.uniqueArray(
    fc.record({
      chainId: fc.constantFrom(...CHAINS),
      intentsFilled: fc.bigInt({ min: 0n, max: 1000n }),
      intentsSettled: fc.bigInt({ min: 0n, max: 1000n }),
      valueMoved: fc.bigInt({ min: 0n, max: 10n ** 22n }),
      securityBps: fc.integer({ min: 0, max: 10_000 }),
    }),
    { selector: (c) => c.chainId },
  ),
  stakes: fc.array(
    fc.record({ chainId: fc.constantFrom(...CHAINS), entries: fc.array(entryArb, { maxLength: 6 }) }),
    { maxLength: 4 },
  ),
  ops: fc.array(
    fc.oneof(
      fc.record({
        kind: fc.constant('join' as const),
        validator: fc.integer({ min: 1, max: 5 }).map(addr),
        stake: fc.bigInt({ min: 1n, max: 10n ** 12n }),
      }),
      fc.record({ kind: fc.constantFrom('leave' as const, 'withdraw' as const), pick: fc.nat() }),
    ),
    { maxLength: 6 },
  ),
})

interface Deleg {
  validator: Address
  period: DelegationPeriod
  paid: bigint
  segments: number
  /** Naive reference: Σ credited · stake · PRECISION / S over the epochs it was in (floored per epoch). */
  refScaled: bigint
}

describe('distributeEpoch over random sequences', () => {
  it('conserves the emission every epoch and overall, never overdraws, and pays each delegation its pro rata share', () => {
    fc.assert(
      fc.property(
        fc.array(epochArb, { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 0, max: 10_000 }), { minLength: 5, maxLength: 5 }),
        (epochs, commissions) => {
          const commissionBps = new Map(commissions.map((c, i) => [addr(i + 1), c]))
          let accs = new Map<Address, ValidatorAccumulator>()
          const live: Deleg[] = []
          let emitted = 0n
          let commission = 0n
          let withdrawn = 0n
          let community = 0n
          const settle = (d: Deleg, paid: bigint) => {
            expect(paid).toBeGreaterThanOrEqual(0n)
            d.paid += paid
            d.segments++
            withdrawn += paid
          }
          const checkFinished = (d: Deleg) => {
            const ref = d.refScaled / REWARD_PRECISION
            expect(d.paid).toBeLessThanOrEqual(ref + 1n)
            expect(d.paid).toBeGreaterThanOrEqual(ref - BigInt(d.segments) - 1n)
          }
          const end = (d: Deleg) => {
            const r = endDelegation(accs.get(d.validator)!, d.period)
            accs.set(d.validator, r.acc)
            settle(d, r.paid)
            community += r.toCommunity
            checkFinished(d)
          }
          for (const e of epochs) {
            for (const op of e.ops) {
              if (op.kind === 'join') {
                const r = startDelegation(accs.get(op.validator) ?? EMPTY_ACCUMULATOR, op.stake)
                accs.set(op.validator, r.acc)
                live.push({ validator: op.validator, period: r.period, paid: 0n, segments: 0, refScaled: 0n })
              } else if (live.length > 0) {
                const i = op.pick % live.length
                const d = live[i]!
                if (op.kind === 'leave') {
                  end(d)
                  live.splice(i, 1)
                } else {
                  const r = withdrawReward(accs.get(d.validator)!, d.period)
                  accs.set(d.validator, r.acc)
                  d.period = r.period
                  settle(d, r.paid)
                }
              }
            }
            const params: RewardParams = { ...DEFAULT_REWARD_PARAMS, emissionPerEpoch: e.emission }
            const input: EpochInput = {
              contributions: e.contributions,
              stakes: e.stakes as PoolStake[],
              commissionBps,
            }
            const before = accs
            const out = distributeEpoch(params, input, accs)
            accs = out.accumulators
            const r = out.rewards
            // Exactly the emission, every epoch.
            expect(r.commission + r.credited + r.communityPool).toBe(e.emission)
            const sumV = r.validators.reduce((t, v) => t + v.commission + v.credited + v.uncredited, 0n)
            const sumP = r.pools.reduce((t, p) => t + p.reward, 0n)
            expect(sumV).toBeLessThanOrEqual(sumP)
            expect(sumP).toBeLessThanOrEqual(e.emission)
            for (const v of r.validators) {
              for (const x of [v.reward, v.commission, v.credited, v.uncredited])
                expect(x).toBeGreaterThanOrEqual(0n)
              expect(v.commission).toBe((v.reward * BigInt(commissionBps.get(v.validator)!)) / 10_000n)
            }
            emitted += e.emission
            commission += r.commission
            community += r.communityPool
            for (const d of live) {
              const v = r.validators.find((x) => x.validator === d.validator)
              const S = before.get(d.validator)!.stake
              if (v !== undefined && v.credited > 0n)
                d.refScaled += (v.credited * d.period.stake * REWARD_PRECISION) / S
            }
            // Solvency: every live delegation's claim is covered by its validator's outstanding.
            for (const [v, acc] of accs) {
              const claims = live
                .filter((d) => d.validator === v)
                .reduce((t, d) => t + pendingReward(acc, d.period), 0n)
              expect(claims).toBeLessThanOrEqual(acc.outstanding)
              expect(live.filter((d) => d.validator === v).reduce((t, d) => t + d.period.stake, 0n)).toBe(
                acc.stake,
              )
            }
            const outstanding = [...accs.values()].reduce((t, a) => t + a.outstanding, 0n)
            expect(commission + withdrawn + community + outstanding).toBe(emitted)
          }
          for (const d of live.splice(0)) end(d)
          for (const acc of accs.values()) expect(acc).toMatchObject({ stake: 0n, outstanding: 0n })
          expect(commission + withdrawn + community).toBe(emitted)
        },
      ),
      { numRuns: 200 },
    )
  })

  it('pays doubled stake twice per unit what the same stake undoubled earns in the same pool (up to one unit)', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 1n, max: 10n ** 12n }),
        fc.array(entryArb, { maxLength: 6 }),
        fc.bigInt({ min: 0n, max: 10n ** 15n }),
        fc.integer({ min: 0, max: 10_000 }),
        (amount, others, emission, securityBps) => {
          const X = addr(0x100)
          const Y = addr(0x101)
          const input: EpochInput = {
            contributions: [
              { chainId: 901n, intentsFilled: 3n, intentsSettled: 1n, valueMoved: 0n, securityBps },
            ],
            stakes: [
              {
                chainId: 901n,
                entries: [
                  ...others,
                  { validator: X, amount, doubled: true },
                  { validator: Y, amount, doubled: false },
                ],
              },
            ],
            commissionBps: new Map(),
          }
          const r = splitEpoch({ ...DEFAULT_REWARD_PARAMS, emissionPerEpoch: emission }, input, () => 1n)
          const pool = r.pools[0]!.validators
          const x = pool.find((v) => v.validator === X)!.reward
          const y = pool.find((v) => v.validator === Y)!.reward
          expect(x - 2n * y).toBeGreaterThanOrEqual(0n)
          expect(x - 2n * y).toBeLessThanOrEqual(1n)
        },
      ),
      { numRuns: 300 },
    )
  })

  it('pays a delegation the same however the other stake of its validator is split into delegations (F1)', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 1n, max: 10n ** 12n }),
        fc.array(fc.bigInt({ min: 1n, max: 10n ** 12n }), { minLength: 1, maxLength: 20 }),
        fc.array(fc.bigInt({ min: 0n, max: 10n ** 15n }), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 0, max: 10_000 }),
        (mine, others, emissions, commission) => {
          const total = others.reduce((t, s) => t + s, 0n)
          const run = (otherStakes: bigint[]) => {
            let acc = EMPTY_ACCUMULATOR
            const me = startDelegation(acc, mine)
            acc = me.acc
            for (const s of otherStakes) acc = startDelegation(acc, s).acc
            let accs = new Map([[A, acc]])
            for (const emission of emissions) {
              const input: EpochInput = {
                contributions: [],
                stakes: [
                  { chainId: 901n, entries: [{ validator: A, amount: mine + total, doubled: false }] },
                ],
                commissionBps: new Map([[A, commission]]),
              }
              accs = distributeEpoch(
                { ...DEFAULT_REWARD_PARAMS, emissionPerEpoch: emission },
                input,
                accs,
              ).accumulators
            }
            return withdrawReward(accs.get(A)!, me.period).paid
          }
          const split = run(others)
          expect(split).toBe(run([total]))
          // And against a naive pro rata reference: all of A's shared reward, times mine / (mine + total).
          const shared = emissions.reduce((t, e) => t + e - (e * BigInt(commission)) / 10_000n, 0n)
          const ref = (shared * mine) / (mine + total)
          expect(split).toBeLessThanOrEqual(ref)
          expect(split).toBeGreaterThanOrEqual(ref - 1n)
        },
      ),
      { numRuns: 200 },
    )
  })
})

describe('stakeEntries', () => {
  const move = (over: Partial<StakeMoveRecord>): StakeMoveRecord => ({
    id: `0x${'1'.repeat(64)}` as Hex,
    staker: A,
    fromChainId: 901n,
    toChainId: 902n,
    amount: 300n,
    height: 1_000n,
    untilHeight: 5_000n,
    targetCongested: true,
    ...over,
  })
  const validators = [
    { address: B, pools: new Map([[902n, 50n]]), jailed: true },
    {
      address: A,
      pools: new Map([
        [901n, 700n],
        [902n, 300n],
      ]),
      jailed: false,
    },
  ]
  const doubledAt = (height: bigint, m: StakeMoveRecord) =>
    stakeEntries(validators, [m], height, 100n)
      .flatMap((p) => p.entries.map((e) => ({ chainId: p.chainId, ...e })))
      .filter((e) => e.doubled)
      .map((e) => [e.chainId, e.amount])

  it('doubles a congested move only from its activation delay on and while it is in force', () => {
    expect(doubledAt(1_099n, move({}))).toEqual([])
    expect(doubledAt(1_100n, move({}))).toEqual([[902n, 300n]])
    expect(doubledAt(4_999n, move({}))).toEqual([[902n, 300n]])
    expect(doubledAt(5_000n, move({}))).toEqual([])
    expect(doubledAt(2_000n, move({ targetCongested: false }))).toEqual([])
    // Slashed below its loans, a pool doubles at most what it holds.
    expect(doubledAt(2_000n, move({ amount: 400n }))).toEqual([[902n, 300n]])
  })

  it('leaves jailed validators out and lists pools and validators in order', () => {
    const out = stakeEntries(validators, [move({})], 2_000n, 100n)
    expect(out).toEqual([
      { chainId: 901n, entries: [{ validator: A, amount: 700n, doubled: false }] },
      { chainId: 902n, entries: [{ validator: A, amount: 300n, doubled: true }] },
    ])
  })
})

describe('refusals', () => {
  const input = (over: Partial<EpochInput>): EpochInput => ({
    contributions: [],
    stakes: [],
    commissionBps: new Map(),
    ...over,
  })
  it('refuses bad inputs and parameters with their codes', () => {
    const p = DEFAULT_REWARD_PARAMS
    expect(codeOf(() => splitEpoch({ ...p, valueUnit: 0n }, input({}), () => 0n))).toBe('BAD_PARAMS')
    expect(codeOf(() => splitEpoch({ ...p, fillWeight: -1n }, input({}), () => 0n))).toBe('BAD_PARAMS')
    const neg = [{ chainId: 901n, entries: [{ validator: A, amount: -1n, doubled: false }] }]
    expect(codeOf(() => splitEpoch(p, input({ stakes: neg }), () => 0n))).toBe('BAD_INPUT')
    const pos = [{ chainId: 901n, entries: [{ validator: A, amount: 1n, doubled: false }] }]
    expect(
      codeOf(() => splitEpoch(p, input({ stakes: pos, commissionBps: new Map([[A, 10_001]]) }), () => 0n)),
    ).toBe('BAD_INPUT')
    const c = { chainId: 901n, intentsFilled: 0n, intentsSettled: 0n, valueMoved: 0n, securityBps: 0 }
    expect(codeOf(() => splitEpoch(p, input({ stakes: pos, contributions: [c, c] }), () => 0n))).toBe(
      'BAD_INPUT',
    )
    expect(codeOf(() => startDelegation(EMPTY_ACCUMULATOR, 0n))).toBe('BAD_INPUT')
    const s = startDelegation(EMPTY_ACCUMULATOR, 5n)
    expect(codeOf(() => endDelegation(s.acc, { stake: 6n, start: 0n }))).toBe('STAKE_MISMATCH')
  })

  it('sends everything to the community pool when nothing has stake', () => {
    const r = splitEpoch(DEFAULT_REWARD_PARAMS, input({}), () => 0n)
    expect(r.communityPool).toBe(DEFAULT_REWARD_PARAMS.emissionPerEpoch)
  })
})
