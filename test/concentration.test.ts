import fc from 'fast-check'
import type { Address } from 'viem'
import { describe, expect, it } from 'vitest'
import {
  ConcentrationError,
  checkAlarmParams,
  concentration,
  DEFAULT_ALARM_PARAMS,
  HHI_MAX,
  herfindahl,
  minSelfStakeToJoin,
  nakamotoCoefficient,
  nextPoolAlarm,
  type PoolAlarmParams,
  poolAlarms,
  rewardBoosts,
  type StakeHolding,
} from '../src/staking/concentration.ts'

const addr = (i: number) => `0x${i.toString(16).padStart(40, '0')}` as Address
const holdings = (amounts: bigint[]): StakeHolding[] =>
  amounts.map((amount, i) => ({ validator: addr(i + 1), amount }))

/** Naive reference: the smallest subset (any, not only a prefix) whose stake is over 1/3 of the total. */
function nakamotoBrute(amounts: bigint[]): number {
  const total = amounts.reduce((t, a) => t + a, 0n)
  let best = 0
  for (let mask = 1; mask < 1 << amounts.length; mask++) {
    let sum = 0n
    let n = 0
    for (let i = 0; i < amounts.length; i++)
      if (mask & (1 << i)) {
        sum += amounts[i]!
        n++
      }
    if (3n * sum > total && (best === 0 || n < best)) best = n
  }
  return best
}

describe('Nakamoto coefficient', () => {
  it('matches hand examples', () => {
    expect(nakamotoCoefficient(holdings([]))).toBe(0)
    expect(nakamotoCoefficient(holdings([100n]))).toBe(1)
    // Four equal validators: two are needed (1/4 is not over 1/3, 2/4 is).
    expect(nakamotoCoefficient(holdings([25n, 25n, 25n, 25n]))).toBe(2)
    // Exactly 1/3 is not over 1/3.
    expect(nakamotoCoefficient(holdings([1n, 1n, 1n]))).toBe(2)
    expect(nakamotoCoefficient(holdings([34n, 33n, 33n]))).toBe(1)
    // A validator listed in two pools counts once, with its stake summed.
    const split = [
      { validator: addr(1), amount: 20n },
      { validator: addr(1), amount: 20n },
      { validator: addr(2), amount: 30n },
      { validator: addr(3), amount: 30n },
    ]
    expect(nakamotoCoefficient(split)).toBe(1)
  })

  it('is the smallest set over 1/3 (against a brute force over subsets)', () => {
    fc.assert(
      fc.property(
        // Small values too, so that sums of exactly 1/3 (the boundary) come up.
        fc.array(fc.oneof(fc.bigInt({ min: 0n, max: 3n }), fc.bigInt({ min: 0n, max: 1000n })), {
          maxLength: 9,
        }),
        (amounts) => {
          expect(nakamotoCoefficient(holdings(amounts))).toBe(nakamotoBrute(amounts))
        },
      ),
      { numRuns: 1000 },
    )
  })

  it('is 1 when one validator holds over 1/3, whatever the order of the list', () => {
    fc.assert(
      fc.property(
        fc.array(fc.bigInt({ min: 0n, max: 10n ** 12n }), { maxLength: 20 }),
        fc.nat(),
        (others, at) => {
          const rest = others.reduce((t, a) => t + a, 0n)
          const big = rest / 2n + 1n // 3·big > big + rest  <=>  2·big > rest
          const list = holdings(others)
          list.splice(at % (list.length + 1), 0, { validator: addr(999), amount: big })
          expect(nakamotoCoefficient(list)).toBe(1)
          expect(nakamotoCoefficient([...list].reverse())).toBe(1)
        },
      ),
    )
  })
})

describe('HHI', () => {
  it('matches hand examples (basis points squared)', () => {
    expect(herfindahl(holdings([]))).toBe(0n)
    expect(herfindahl(holdings([7n]))).toBe(HHI_MAX)
    expect(herfindahl(holdings([50n, 30n, 20n]))).toBe(38_000_000n) // 0.25 + 0.09 + 0.04
    expect(herfindahl(holdings([1n, 1n, 1n]))).toBe(33_333_333n)
  })

  it('is 10000² / n for n equal shares, and does not change when every stake is scaled', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.bigInt({ min: 1n, max: 10n ** 18n }),
        fc.array(fc.bigInt({ min: 0n, max: 10n ** 9n }), { minLength: 1, maxLength: 20 }),
        fc.bigInt({ min: 2n, max: 10n ** 6n }),
        (n, each, amounts, k) => {
          expect(herfindahl(holdings(Array.from({ length: n }, () => each)))).toBe(HHI_MAX / BigInt(n))
          expect(herfindahl(holdings(amounts.map((a) => a * k)))).toBe(herfindahl(holdings(amounts)))
          const h = herfindahl(holdings(amounts))
          const live = amounts.filter((a) => a > 0n).length
          if (live > 0) {
            expect(h).toBeGreaterThanOrEqual(HHI_MAX / BigInt(live)) // the equal split is the least concentrated
            expect(h).toBeLessThanOrEqual(HHI_MAX)
          }
        },
      ),
    )
  })

  it('computes figures overall and per pool, pools in chain id order', () => {
    const c = concentration([
      { chainId: 902n, entries: holdings([10n, 10n]) },
      { chainId: 901n, entries: [{ validator: addr(1), amount: 80n }] },
    ])
    expect(c.pools.map((p) => [p.chainId, p.validators, p.stake, p.nakamoto, p.hhi])).toEqual([
      [901n, 1, 80n, 1, HHI_MAX],
      [902n, 2, 20n, 1, 50_000_000n],
    ])
    // Overall: addr(1) 90, addr(2) 10 -> 0.81 + 0.01.
    expect(c.overall).toEqual({ validators: 2, stake: 100n, nakamoto: 1, hhi: 82_000_000n })
  })

  it('refuses negative stake with its code', () => {
    expect(() => herfindahl(holdings([-1n]))).toThrow(ConcentrationError)
    try {
      nakamotoCoefficient(holdings([-1n]))
    } catch (e) {
      expect((e as ConcentrationError).code).toBe('BAD_INPUT')
    }
  })
})

describe('pool alarm', () => {
  const p: PoolAlarmParams = {
    ...DEFAULT_ALARM_PARAMS,
    minPoolValidators: 2,
    clearPoolValidators: 3,
    minPoolStake: 100n,
    clearPoolStake: 200n,
  }

  it('raises below the raise levels and clears only at or above both clear levels', () => {
    const seq: [number, bigint, boolean][] = [
      [3, 300n, false],
      [1, 300n, true], // too few validators
      [2, 150n, true], // between the levels: stays raised
      [3, 150n, true], // validators clear, stake does not
      [4, 199n, true],
      [3, 200n, false], // both at the clear levels
      [2, 150n, false], // between the levels: stays clear
      [2, 99n, true], // too little stake
      [5, 10_000n, false],
    ]
    let raised = false
    for (const [validators, stake, want] of seq) {
      raised = nextPoolAlarm(raised, { validators, stake }, p)
      expect([validators, stake, raised]).toEqual([validators, stake, want])
    }
  })

  it('over random sequences: raised below a raise level, clear above both clear levels, unchanged between', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ validators: fc.integer({ min: 0, max: 5 }), stake: fc.bigInt({ min: 0n, max: 300n }) }),
        ),
        (obs) => {
          let raised = false
          for (const o of obs) {
            const next = nextPoolAlarm(raised, o, p)
            if (o.validators < p.minPoolValidators || o.stake < p.minPoolStake) expect(next).toBe(true)
            else if (o.validators >= p.clearPoolValidators && o.stake >= p.clearPoolStake)
              expect(next).toBe(false)
            else expect(next).toBe(raised)
            raised = next
          }
        },
      ),
    )
  })

  it('lists the alarmed pools of a concentration, an empty pool included', () => {
    const c = concentration([
      { chainId: 903n, entries: holdings([100n, 100n, 100n]) },
      { chainId: 901n, entries: [] },
      { chainId: 902n, entries: holdings([100n, 60n]) },
    ])
    expect(poolAlarms(new Set(), c, p)).toEqual([901n])
    expect(poolAlarms(new Set([902n, 903n]), c, p)).toEqual([901n, 902n])
  })

  it('lowers the self-stake to join an alarmed pool by the rule, never to zero, never above the normal', () => {
    expect(minSelfStakeToJoin(1_000_000n, false, DEFAULT_ALARM_PARAMS)).toBe(1_000_000n)
    expect(minSelfStakeToJoin(1_000_000n, true, DEFAULT_ALARM_PARAMS)).toBe(500_000n)
    const q = { ...DEFAULT_ALARM_PARAMS, alarmMinSelfStakeBps: 0, alarmMinSelfStakeFloor: 1_000n }
    expect(minSelfStakeToJoin(1_000_000n, true, q)).toBe(1_000n)
    expect(minSelfStakeToJoin(500n, true, q)).toBe(500n)
  })

  it('refuses clear levels below the raise levels', () => {
    expect(() => checkAlarmParams(p)).not.toThrow()
    for (const bad of [
      { clearPoolValidators: 1 },
      { clearPoolStake: 99n },
      { alarmMinSelfStakeBps: 10_001 },
    ]) {
      try {
        checkAlarmParams({ ...p, ...bad })
        expect.unreachable(JSON.stringify(bad, (_, v) => (typeof v === 'bigint' ? String(v) : v)))
      } catch (e) {
        expect((e as ConcentrationError).code).toBe('BAD_PARAMS')
      }
    }
  })
})

describe('reward boosts', () => {
  const b = { concentrationHhiLevel: 25_000_000n, concentrationBoostBps: 5_000 }
  it('boosts the least concentrated pools only when the overall HHI is above the level', () => {
    const pools = [
      { chainId: 901n, entries: [{ validator: addr(1), amount: 100n }] }, // HHI 10^8
      { chainId: 902n, entries: holdings([50n, 50n]) }, // 5·10^7
      { chainId: 903n, entries: holdings([40n, 30n, 30n]) }, // 3.4·10^7
    ]
    const c = concentration(pools)
    expect(c.overall.hhi).toBeGreaterThan(b.concentrationHhiLevel)
    expect([...rewardBoosts(c, b)]).toEqual([
      [902n, 5_000],
      [903n, 5_000],
    ])
    expect(rewardBoosts(c, { ...b, concentrationHhiLevel: c.overall.hhi }).size).toBe(0)
    // Equally concentrated pools: none boosted.
    const even = concentration([
      { chainId: 901n, entries: [{ validator: addr(1), amount: 100n }] },
      { chainId: 902n, entries: [{ validator: addr(2), amount: 5n }] },
    ])
    expect(rewardBoosts(even, b).size).toBe(0)
  })
})
