import { describe, expect, it } from 'vitest'
import {
  type Arrival,
  BURST_FACTOR,
  steadyDestinations,
  type TrafficMode,
  TrafficSchedule,
} from '../devnet/traffic.ts'

const CHAINS = [901, 902, 903, 904, 905]
const schedule = (mode: TrafficMode, seed = 1, rate = 2, wallets = 16) =>
  new TrafficSchedule({ mode, rate, wallets, chainIds: CHAINS, seed })

/** Arrivals per one-second bucket over `ms`. */
function perSecond(as: readonly Arrival[], ms: number): number[] {
  const buckets = new Array<number>(Math.ceil(ms / 1000)).fill(0)
  for (const a of as) buckets[Math.floor(a.atMs / 1000)]!++
  return buckets
}

describe('traffic schedule', () => {
  it('steady is the devnet traffic of before: one every 1/rate s, wallets and destinations in turn, one token', () => {
    const as = schedule('steady', 1, 4, 8).takeUntil(3_000)
    expect(as.map((a) => a.atMs)).toEqual(Array.from({ length: 12 }, (_, i) => i * 250))
    expect(as.map((a) => a.wallet)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3])
    expect(as.map((a) => a.destinations)).toEqual(as.map((a) => steadyDestinations(a.n, CHAINS)))
    expect(as.slice(0, 3).map((a) => a.destinations)).toEqual([[], [902], [903, 904]])
    expect(as.every((a) => a.amountMilli === 1000 && !a.burst)).toBe(true)
  })

  it('the same seed gives the same arrivals; another seed others', () => {
    for (const mode of ['bursty', 'mixed'] as const) {
      const a = schedule(mode, 7).takeUntil(120_000)
      expect(schedule(mode, 7).takeUntil(120_000)).toEqual(a)
      expect(schedule(mode, 8).takeUntil(120_000)).not.toEqual(a)
    }
  })

  it('bursty keeps the mean rate over a long run, in bursts: busy seconds far above it, quiet ones below', () => {
    const ms = 1_800_000
    const as = schedule('bursty', 3, 2).takeUntil(ms)
    // Mean 2/s over 30 min (3600 expected; on/off cycles of 16 s on average leave some spread).
    expect(as.length).toBeGreaterThan(3600 * 0.85)
    expect(as.length).toBeLessThan(3600 * 1.15)
    for (let i = 1; i < as.length; i++) expect(as[i]!.atMs).toBeGreaterThanOrEqual(as[i - 1]!.atMs)
    const inBurst = as.filter((a) => a.burst)
    // Bursts (1/5 of the time at 3x the rate) carry 3/5 of the traffic.
    expect(inBurst.length / as.length).toBeGreaterThan(0.45)
    expect(inBurst.length / as.length).toBeLessThan(0.75)
    const sec = perSecond(as, ms).sort((x, y) => x - y)
    const p99 = sec[Math.floor(sec.length * 0.99)]!
    expect(p99).toBeGreaterThanOrEqual(2 * BURST_FACTOR)
    expect(sec[Math.floor(sec.length * 0.5)]!).toBeLessThan(2)
    // A steady schedule never has such a second.
    expect(Math.max(...perSecond(schedule('steady', 3, 2).takeUntil(ms), ms))).toBe(2)
  })

  it('a burst is dominated by one heavy wallet', () => {
    const s = schedule('bursty', 5, 2, 16)
    const as = s.takeUntil(600_000)
    expect(s.heavyWallets).toBe(2)
    const inBurst = as.filter((a) => a.burst)
    const heavy = inBurst.filter((a) => a.wallet < s.heavyWallets).length
    expect(heavy / inBurst.length).toBeGreaterThan(0.6)
    const quiet = as.filter((a) => !a.burst)
    expect(quiet.filter((a) => a.wallet < s.heavyWallets).length / quiet.length).toBeLessThan(0.25)
  })

  it('mixed varies amounts (0.1 to 100 tokens) and destination sets (0 to 3 chains, first chains favoured)', () => {
    const s = schedule('mixed', 11, 2, 16)
    const as = s.takeUntil(1_200_000)
    const amounts = as.map((a) => a.amountMilli)
    expect(Math.min(...amounts)).toBeGreaterThanOrEqual(100)
    expect(Math.max(...amounts)).toBeLessThanOrEqual(100_000)
    expect(amounts.filter((x) => x < 1000).length / as.length).toBeGreaterThan(0.2)
    expect(amounts.filter((x) => x > 10_000).length / as.length).toBeGreaterThan(0.2)
    const sizes = [0, 1, 2, 3].map((k) => as.filter((a) => a.destinations.length === k).length / as.length)
    expect(sizes[0]).toBeCloseTo(0.3, 1)
    expect(sizes[1]).toBeCloseTo(0.45, 1)
    expect(sizes[2]).toBeCloseTo(0.15, 1)
    expect(sizes[3]).toBeCloseTo(0.1, 1)
    for (const a of as) {
      expect(new Set(a.destinations).size).toBe(a.destinations.length)
      for (const c of a.destinations) expect(CHAINS).toContain(c)
    }
    const single = as.filter((a) => a.destinations.length === 1).map((a) => a.destinations[0])
    const first = single.filter((c) => c === 901).length
    const last = single.filter((c) => c === 905).length
    expect(first).toBeGreaterThan(3 * last)
    // Heavy wallets send a large share in mixed mode even outside bursts.
    const quiet = as.filter((a) => !a.burst)
    expect(quiet.filter((a) => a.wallet < s.heavyWallets).length / quiet.length).toBeGreaterThan(0.4)
  })

  it('refuses a bad mode, rate or wallet count', () => {
    expect(() => schedule('storm' as TrafficMode)).toThrow(/--traffic must be one of steady, bursty, mixed/)
    expect(() => schedule('steady', 1, 0)).toThrow(/rate/)
    expect(() => schedule('steady', 1, 2, 0)).toThrow(/wallet/)
  })
})
