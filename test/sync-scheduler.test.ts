/**
 * The decisions of block sync (SyncScheduler, no I/O) and the bounded future-height buffer, with made-up
 * blocks (a block is its height) and explicit times.
 */
import { describe, expect, it } from 'vitest'
import { FutureBuffer } from '../src/consensus/future-buffer.ts'
import { type SyncOptions, SyncScheduler } from '../src/consensus/sync.ts'

const OPTS: Partial<SyncOptions> = {
  batchBlocks: 10,
  maxInflight: 4,
  maxInflightPerPeer: 2,
  maxReadyBlocks: 100,
  requestTimeoutMs: 1_000,
  banMs: 10_000,
  restMs: 500,
  syncDelayMs: 300,
}
const sched = (o: Partial<SyncOptions> = {}) => new SyncScheduler<bigint>({ ...OPTS, ...o }, (b) => b)
const range = (from: bigint, count: number) => Array.from({ length: count }, (_, i) => from + BigInt(i))

describe('SyncScheduler', () => {
  it('pipelines contiguous ranges over the peers that are ahead, and hands blocks out in height order', () => {
    const s = sched()
    for (const p of ['a', 'b', 'c']) s.notePeerHeight(p, 1_000n)
    s.notePeerHeight('behind', 5n)
    const reqs = s.poll(0n, 0)
    expect(reqs.map((r) => [r.from, r.count])).toEqual([
      [1n, 10],
      [11n, 10],
      [21n, 10],
      [31n, 10],
    ])
    const perPeer = new Map<string, number>()
    for (const r of reqs) perPeer.set(r.peer, (perPeer.get(r.peer) ?? 0) + 1)
    expect([...perPeer.keys()].sort()).toEqual(['a', 'b', 'c'])
    expect(Math.max(...perPeer.values())).toBeLessThanOrEqual(2)
    expect(perPeer.has('behind')).toBe(false)
    // Answers out of order: nothing to apply until the head's range is in.
    expect(s.received(reqs[1]!.id, range(11n, 10), 1)).toBe('ok')
    expect(s.next(0n)).toBeUndefined()
    expect(s.received(reqs[0]!.id, range(1n, 10), 2)).toBe('ok')
    const applied: bigint[] = []
    for (let local = 0n; ; local++) {
      const r = s.next(local)
      if (r === undefined) break
      applied.push(r.block)
    }
    expect(applied).toEqual(range(1n, 20))
    // The window moves on: new requests start after what is in flight.
    expect(s.poll(20n, 3).map((r) => r.from)).toEqual([41n, 51n])
  })

  it('does not ask again for the block being applied', () => {
    const s = sched({ maxInflight: 1 })
    s.notePeerHeight('p', 30n)
    const [r] = s.poll(0n, 0)
    s.received(r!.id, range(1n, 10), 1)
    expect(s.next(0n)!.block).toBe(1n) // being applied: the head is still 0
    // Blocks 2..10 are ready and 1 is taken: the next request starts after them.
    expect(s.poll(0n, 2).map((x) => x.from)).toEqual([11n])
    s.done()
  })

  it('a peer that lies about its height costs one request', () => {
    const s = sched()
    s.notePeerHeight('liar', 1_000_000n)
    s.notePeerHeight('honest', 30n)
    expect(s.networkHeight(0)).toBe(1_000_000n)
    const reqs = s.poll(0n, 0)
    const toLiar = reqs.filter((r) => r.peer === 'liar')
    expect(toLiar.length).toBeGreaterThan(0)
    for (const r of toLiar) s.received(r.id, [], 1)
    expect(s.networkHeight(1)).toBeLessThan(1_000_000n)
    for (const r of reqs.filter((r) => r.peer === 'honest')) s.received(r.id, range(r.from, r.count), 1)
    // What the liar did not send is asked of the honest peer, up to its height.
    const again = s.poll(0n, 2)
    expect(again.every((r) => r.peer === 'honest' && r.from + BigInt(r.count) - 1n <= 30n)).toBe(true)
  })

  it('a peer whose blocks fail verification rests banMs; its other blocks are asked of others', () => {
    const s = sched({ maxInflight: 2, maxInflightPerPeer: 1 })
    s.notePeerHeight('bad', 100n)
    s.notePeerHeight('good', 100n)
    const reqs = s.poll(0n, 0)
    expect(new Set(reqs.map((r) => r.peer))).toEqual(new Set(['bad', 'good']))
    const fromBad = reqs.find((r) => r.peer === 'bad')!
    const fromGood = reqs.find((r) => r.peer === 'good')!
    s.received(fromBad.id, range(fromBad.from, fromBad.count), 1)
    s.received(fromGood.id, range(fromGood.from, fromGood.count), 1)
    // Ties go by name: 'bad' got the head's range.
    expect(fromBad.from).toBe(1n)
    expect(s.next(0n)!.peer).toBe('bad')
    s.ban('bad', 2)
    expect(s.next(0n)).toBeUndefined() // its other blocks are dropped with the ban, never applied
    const again = s.poll(1n, 3)
    expect(again.length).toBeGreaterThan(0)
    expect(again.every((r) => r.peer === 'good')).toBe(true)
    expect(again[0]!.from).toBe(2n)
    // After banMs it may be asked again.
    s.received(again[0]!.id, range(2n, again[0]!.count), 4)
    expect(s.poll(10n, 20_000).some((r) => r.peer === 'bad')).toBe(true)
  })

  it('an answer with the wrong heights is bad: the peer is banned', () => {
    const s = sched()
    s.notePeerHeight('x', 50n)
    const [r] = s.poll(0n, 0)
    expect(s.received(r!.id, [5n, 6n], 1)).toBe('bad')
    expect(s.poll(0n, 2)).toEqual([])
    expect(s.networkHeight(2)).toBe(0n) // a banned peer's claim does not count
  })

  it('waits syncDelayMs when exactly one height behind, syncs at once when two', () => {
    const s = sched()
    s.notePeerHeight('p', 11n)
    expect(s.poll(10n, 0)).toEqual([])
    expect(s.syncing(10n, 0)).toBe(false)
    expect(s.poll(10n, 299)).toEqual([])
    expect(s.poll(10n, 300).map((r) => [r.from, r.count])).toEqual([[11n, 1]])
    const t = sched()
    t.notePeerHeight('p', 12n)
    expect(t.syncing(10n, 0)).toBe(true)
    expect(t.poll(10n, 0).map((r) => [r.from, r.count])).toEqual([[11n, 2]])
  })

  it('a request unanswered for requestTimeoutMs is asked again of another peer', () => {
    const s = sched({ maxInflight: 1 })
    s.notePeerHeight('slow', 20n)
    s.notePeerHeight('fast', 20n)
    const [r] = s.poll(0n, 0)
    const again = s.poll(0n, 1_000)
    expect(again).toHaveLength(1)
    expect(again[0]!.peer).not.toBe(r!.peer)
    expect(again[0]!.from).toBe(1n)
    expect(s.received(r!.id, range(1n, 10), 1_001)).toBe('unknown') // given up: ignored
  })
})

describe('FutureBuffer', () => {
  const validators = new Set(['v1', 'v2'])
  const isValidator = (a: string) => validators.has(a)

  it('admits validators only, bounded per sender and in total, and frees what it hands back', () => {
    const b = new FutureBuffer<string>({ maxBytes: 1_000, maxBytesPerSender: 400, maxMessages: 100 })
    expect(b.add(5n, 'x', 'peer-a', 'intruder', 10, isValidator)).toBe('not-validator')
    expect(b.size).toBe(0)
    expect(b.add(5n, 'm1', 'peer-a', 'v1', 300, isValidator)).toBe('added')
    expect(b.add(5n, 'm2', 'peer-a', 'v2', 200, isValidator)).toBe('sender-full')
    expect(b.add(6n, 'm3', 'peer-b', 'v2', 400, isValidator)).toBe('added')
    expect(b.add(6n, 'm4', 'peer-c', 'v1', 301, isValidator)).toBe('full')
    expect(b.add(7n, 'm5', 'peer-c', 'v1', 300, isValidator)).toBe('added')
    expect(b.bytes).toBe(1_000)
    expect(b.take(6n).map((x) => x.msg)).toEqual(['m3']) // height 5 is stale by then: dropped
    expect(b.size).toBe(1)
    expect(b.bytes).toBe(300)
    expect(b.bytesOf('peer-a')).toBe(0)
    expect(b.add(8n, 'm6', 'peer-a', 'v1', 400, isValidator)).toBe('added')
  })

  it('bounds the message count as well', () => {
    const b = new FutureBuffer<number>({ maxMessages: 2 })
    expect(b.add(1n, 1, undefined, 'v1', 1, isValidator)).toBe('added')
    expect(b.add(1n, 2, undefined, 'v1', 1, isValidator)).toBe('added')
    expect(b.add(1n, 3, undefined, 'v1', 1, isValidator)).toBe('full')
  })
})
