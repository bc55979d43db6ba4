/** The devnet status line's intent figures (src/api/intent-tally.ts), fed `/v1/events` data as a node sends it. */
import { describe, expect, it } from 'vitest'
import { IntentTally, MAX_TRACKED } from '../src/api/intent-tally.ts'

const ev = (id: string, state: string, atMs: number, previous: string | null = null) => ({
  id,
  state,
  previous,
  atMs,
})

describe('IntentTally', () => {
  it('counts intents by their latest state, settled apart from filled, and ignores what is not an intent event', () => {
    const t = new IntentTally()
    t.onEvent(ev('a', 'pending', 1_000))
    t.onEvent(ev('b', 'pending', 1_000))
    t.onEvent(ev('c', 'pending', 1_000))
    t.onEvent(ev('d', 'pending', 1_000))
    t.onEvent(ev('b', 'assigned', 1_200, 'pending'))
    t.onEvent(ev('c', 'assigned', 1_200, 'pending'))
    t.onEvent(ev('c', 'filled', 3_000, 'assigned'))
    t.onEvent(ev('d', 'expired', 9_000, 'pending'))
    t.onEvent({ id: 'c', settlement: { state: 'settled' } })
    t.onEvent({ height: '7' }) // a block event's shape
    t.onEvent(null)
    expect(t.counts()).toEqual({ pending: 1, assigned: 1, filled: 0, settled: 1, refunded: 0, expired: 1 })
    // A settlement seen before the fill counts once the fill lands.
    t.onEvent({ id: 'b', settlement: { state: 'settled' } })
    expect(t.counts().settled).toBe(1)
    t.onEvent(ev('b', 'filled', 5_000, 'assigned'))
    expect(t.counts()).toEqual({ pending: 1, assigned: 0, filled: 0, settled: 2, refunded: 0, expired: 1 })
  })

  it('measures accepted -> filled, once per intent, as the median of the recent fills', () => {
    const t = new IntentTally()
    expect(t.fillP50Ms()).toBeUndefined()
    expect(t.summary()).toMatch(/fill p50 -$/)
    for (const [id, ms] of [
      ['a', 1_000],
      ['b', 3_000],
      ['c', 2_000],
    ] as const) {
      t.onEvent(ev(id, 'pending', 10_000))
      t.onEvent(ev(id, 'filled', 10_000 + ms, 'assigned'))
    }
    // A repeated event (a reconnect replays nothing, but a stream may) does not count twice.
    t.onEvent(ev('a', 'filled', 99_000, 'filled'))
    expect(t.fillP50Ms()).toBe(2_000)
    expect(t.summary()).toBe(
      'pending 0, assigned 0, filled 3, settled 0, refunded 0, expired 0, fill p50 2.0 s',
    )
  })

  it('gives p50 and p90 of accepted -> filled and of accepted -> settled (dated on receipt), once per intent', () => {
    const t = new IntentTally()
    expect(t.latencyMs('settle', 0.5)).toBeUndefined()
    for (let k = 1; k <= 10; k++) {
      const id = `i${k}`
      t.onEvent(ev(id, 'pending', 0))
      t.onEvent(ev(id, 'filled', k * 100, 'assigned'))
      t.onEvent({ id, settlement: { state: 'settled' } }, k * 1_000)
    }
    // A second settled event for the same intent is not a second latency.
    t.onEvent({ id: 'i1', settlement: { state: 'settled' } }, 50_000)
    expect(t.latencyMs('fill', 0.5)).toBe(500)
    expect(t.latencyMs('fill', 0.9)).toBe(900)
    expect(t.latencyMs('settle', 0.5)).toBe(5_000)
    expect(t.latencyMs('settle', 0.9)).toBe(9_000)
  })

  it('forgets the oldest intents beyond its bound', () => {
    const t = new IntentTally()
    for (let i = 0; i <= MAX_TRACKED; i++) t.onEvent(ev(`i${i}`, 'pending', i))
    expect(t.counts().pending).toBe(MAX_TRACKED)
  })
})
