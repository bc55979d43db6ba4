import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { MemoryReclaim } from '../src/node/reclaim.ts'

// The heap compaction after bans (src/node/reclaim.ts): one major GC once the bans stopped for quietMs.
describe('memory reclaim after bans', () => {
  const log = pino({ level: 'silent' })
  beforeEach(() => {
    vi.useFakeTimers()
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('runs one GC quietMs after the last ban, none while bans keep coming', () => {
    const gc = vi.fn()
    const r = new MemoryReclaim({ quietMs: 15_000 }, { log, gc })
    // A flood: a fresh identity banned every 2 s for 20 s.
    for (let t = 0; t < 20_000; t += 2_000) {
      r.banned()
      vi.advanceTimersByTime(2_000)
    }
    expect(gc).not.toHaveBeenCalled()
    vi.advanceTimersByTime(12_999)
    expect(gc).not.toHaveBeenCalled()
    vi.advanceTimersByTime(1)
    expect(gc).toHaveBeenCalledTimes(1)
    vi.advanceTimersByTime(60_000)
    expect(gc).toHaveBeenCalledTimes(1)
    // A later attack gets its own GC.
    r.banned()
    vi.advanceTimersByTime(15_000)
    expect(gc).toHaveBeenCalledTimes(2)
  })

  it('does nothing after stop, and nothing without a gc function', () => {
    const gc = vi.fn()
    const r = new MemoryReclaim({ quietMs: 1_000 }, { log, gc })
    r.banned()
    r.stop()
    r.banned()
    vi.advanceTimersByTime(10_000)
    expect(gc).not.toHaveBeenCalled()
    const none = new MemoryReclaim({ quietMs: 1_000 }, { log, gc: undefined })
    none.banned()
    expect(vi.getTimerCount()).toBe(0)
  })
})
