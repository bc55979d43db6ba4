import { describe, expect, it, vi } from 'vitest'
import { PublishBatcher } from '../src/p2p/batcher.ts'

describe('PublishBatcher', () => {
  it('publishes what arrives within the window as one batch, and resolves each add after it', async () => {
    vi.useFakeTimers()
    try {
      const sent: number[][] = []
      const b = new PublishBatcher<number>({ windowMs: 20, max: 3 }, async (items) => {
        sent.push(items)
      })
      const done: number[] = []
      const adds = [1, 2].map((n) => b.add(n).then(() => done.push(n)))
      await vi.advanceTimersByTimeAsync(19)
      expect(sent).toEqual([])
      expect(b.waiting).toBe(2)
      await vi.advanceTimersByTimeAsync(1)
      await Promise.all(adds)
      expect(sent).toEqual([[1, 2]])
      expect(done).toEqual([1, 2])
      // A full batch leaves at once, without waiting for the window; the rest waits for its own.
      const more = [3, 4, 5, 6].map((n) => b.add(n))
      await Promise.all(more.slice(0, 3))
      expect(sent).toEqual([
        [1, 2],
        [3, 4, 5],
      ])
      await vi.advanceTimersByTimeAsync(20)
      await more[3]
      expect(sent).toEqual([[1, 2], [3, 4, 5], [6]])
    } finally {
      vi.useRealTimers()
    }
  })

  it('a failed publish rejects the adds of its batch; cancel() rejects what waits and publishes nothing', async () => {
    const sent: string[][] = []
    const b = new PublishBatcher<string>({ windowMs: 5, max: 10 }, async (items) => {
      if (items.includes('bad')) throw new Error('no peers')
      sent.push(items)
    })
    await expect(Promise.all([b.add('a'), b.add('bad')])).rejects.toThrow('no peers')
    const waiting = b.add('late')
    b.cancel(new Error('stopping'))
    await expect(waiting).rejects.toThrow('stopping')
    expect(b.waiting).toBe(0)
    expect(sent).toEqual([])
    expect(() => new PublishBatcher({ windowMs: -1, max: 1 }, async () => {})).toThrow(RangeError)
  })
})
