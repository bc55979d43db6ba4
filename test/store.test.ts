import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { heightKey, Store } from '../src/state/store.ts'

describe('store', () => {
  let dir: string
  let store: Store
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'murmur-store-'))
    store = new Store(join(dir, 'db'))
    await store.open()
  })
  afterEach(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('absence is undefined, not a throw', async () => {
    expect(await store.get('peers', 'nobody')).toBeUndefined()
  })

  it('a batch over several sublevels lands whole', async () => {
    await store.batch([
      { type: 'put', sublevel: 'peers', key: 'a', value: { x: 1 } },
      { type: 'put', sublevel: 'meta', key: 'b', value: 2 },
    ])
    expect(await store.get('peers', 'a')).toEqual({ x: 1 })
    expect(await store.get('meta', 'b')).toBe(2)
  })

  it('a batch that fails writes nothing', async () => {
    await expect(
      store.batch([
        { type: 'put', sublevel: 'peers', key: 'ok', value: 1 },
        // LevelDB refuses an undefined value: the whole batch must fail.
        { type: 'put', sublevel: 'meta', key: 'bad', value: undefined },
      ]),
    ).rejects.toThrow()
    expect(await store.get('peers', 'ok')).toBeUndefined()
  })

  it('sublevels do not see each other', async () => {
    await store.put('peers', 'k', 1)
    expect(await store.get('app', 'k')).toBeUndefined()
  })

  it('range reads are bounded and ordered', async () => {
    for (let i = 0; i < 50; i++) await store.put('app', `h/${heightKey(i)}`, i)
    const r = await store.range<number>('app', {
      gte: `h/${heightKey(10)}`,
      lt: `h/${heightKey(40)}`,
      limit: 5,
    })
    expect(r.map(([, v]) => v)).toEqual([10, 11, 12, 13, 14])
    const all = await store.range<number>('app', { gte: 'h/', lt: 'h/\uffff' })
    expect(all.map(([, v]) => v)).toEqual([...Array(50).keys()])
  })

  it('survives close and reopen', async () => {
    await store.put('meta', 'x', { y: 'z' })
    await store.close()
    store = new Store(join(dir, 'db'))
    await store.open()
    expect(await store.get('meta', 'x')).toEqual({ y: 'z' })
  })
})

describe('heightKey', () => {
  it('sorts like the numbers it encodes', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        (a, b) => {
          const ka = heightKey(a)
          const kb = heightKey(b)
          expect(ka.length).toBe(16)
          expect(Math.sign(ka.localeCompare(kb, 'en', { numeric: false }) && (ka < kb ? -1 : 1))).toBe(
            a === b ? 0 : a < b ? -1 : 1,
          )
        },
      ),
    )
  })
})
