import { describe, expect, it } from 'vitest'
import { checkEscrowsClosed, type EscrowOrder, escrowWaitDeadline } from '../devnet/scenario-escrows.ts'
import { IntentWatch, percentile, spikeFigures } from '../devnet/scenario-spike.ts'
import { buildTimeline, scaleTimeline } from '../devnet/scenario-timelines.ts'

const order = (k: number, status: number, fillDeadline = 1_000): EscrowOrder => ({
  chainId: 901 + (k % 3),
  id: `0x${k.toString(16).padStart(64, '0')}`,
  fillDeadline,
  status,
})

describe('load-spike: escrows-closed', () => {
  it('passes when every opened escrow is settled or refunded', () => {
    const v = checkEscrowsClosed([order(1, 2), order(2, 2), order(3, 3)], 1_500)
    expect(v).toEqual({
      name: 'escrows-closed',
      passed: true,
      detail:
        'all 3 escrows opened on the settlers are closed: 2 settled to their executor, 1 refunded (waited 1.5 s)',
    })
  })

  it('fails on an escrow left open, naming it, and when nothing was opened at all', () => {
    const v = checkEscrowsClosed([order(1, 2), order(0xabc, 1)], 60_000)
    expect(v.passed).toBe(false)
    expect(v.detail).toMatch(
      /^1 of 2 escrows still open after waiting 60.0 s \(no claim, no refund\): 0x00000000 on 901/,
    )
    expect(checkEscrowsClosed([], 0).passed).toBe(false)
  })

  it('waits for an open escrow until its refund time (fill deadline + grace) and a margin', () => {
    const open = [order(1, 1, 1_000), order(2, 1, 1_100), order(3, 2, 9_999)]
    // The last open one: (1 100 + 120) s, plus 30 s.
    expect(escrowWaitDeadline(open, 120, 0, 30_000, 0)).toBe(1_220_000 + 30_000)
    // Nothing open: just the minimum from now.
    expect(escrowWaitDeadline([order(1, 2)], 120, 5_000, 30_000, 1_000)).toBe(6_000)
  })
})

describe('load-spike: figures', () => {
  it('follows pool transitions: accepted at the first pending, filled once', () => {
    const w = new IntentWatch()
    w.onEvent({ id: 'a', state: 'pending', atMs: 100 })
    w.onEvent({ id: 'a', state: 'assigned', atMs: 150 })
    w.onEvent({ id: 'a', state: 'pending', atMs: 400 })
    w.onEvent({ id: 'a', state: 'filled', atMs: 900 })
    w.onEvent({ id: 'a', state: 'filled', atMs: 999 })
    w.onEvent({ id: 'b', settlement: { state: 'settled' } })
    w.onEvent({ id: 'c', state: 'filled', atMs: 50 })
    expect([...w.seen]).toEqual([['a', { acceptedAtMs: 100, filledAtMs: 900 }]])
  })

  it('peak rate and latency percentiles before, during and after the spike', () => {
    const seen = [
      // before (0..10 s): one a second, filled in 2 s
      ...Array.from({ length: 10 }, (_, i) => ({ acceptedAtMs: i * 1000, filledAtMs: i * 1000 + 2000 })),
      // during (10..12 s): 8 in the first second, 4 in the next, filled in 5 to 9 s
      ...Array.from({ length: 12 }, (_, i) => {
        const acceptedAtMs = 10_000 + (i < 8 ? i * 100 : 1000 + (i - 8) * 200)
        return { acceptedAtMs, filledAtMs: acceptedAtMs + 5000 + (i % 5) * 1000 }
      }),
      // after: one never filled
      { acceptedAtMs: 13_000 },
    ]
    const f = spikeFigures(seen, { startMs: 0, spikeFromMs: 10_000, spikeToMs: 12_000, endMs: 20_000 })
    expect(f.peakAcceptedPerSec).toBe(8)
    expect(f.before).toEqual({
      accepted: 10,
      filled: 10,
      acceptedPerSec: 1,
      fillP50Ms: 2000,
      fillP90Ms: 2000,
    })
    expect(f.during.accepted).toBe(12)
    expect(f.during.acceptedPerSec).toBe(6)
    expect(f.during.fillP50Ms).toBe(6000)
    expect(f.during.fillP90Ms).toBe(9000)
    expect(f.after).toEqual({ accepted: 1, filled: 0, acceptedPerSec: 0.1, fillP50Ms: null, fillP90Ms: null })
    expect(f.unfilled).toBe(1)
    expect(percentile([], 50)).toBeNull()
    expect(percentile([5, 1, 3], 90)).toBe(5)
  })

  it('the timeline: a baseline, one spike, calm again; --duration-ms scales the spike too', () => {
    const p = { nodes: 4, chainIds: [901, 902, 903], seed: 1 }
    const short = buildTimeline('load-spike', { ...p, short: true })
    expect(short).toEqual({ steps: [{ atMs: 6_000, cmd: 'spike', args: ['10', '4'] }], endMs: 14_000 })
    const full = buildTimeline('load-spike', { ...p, short: false })
    expect(full.steps).toEqual([{ atMs: 20_000, cmd: 'spike', args: ['40', '30'] }])
    expect(full.endMs).toBe(80_000)
    expect(scaleTimeline(full, 40_000).steps).toEqual([{ atMs: 10_000, cmd: 'spike', args: ['40', '15'] }])
  })
})
