import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import type { Address, Hex } from 'viem'
import { describe, expect, it } from 'vitest'
import { buildOrder, intentId } from '../src/codec/intent.ts'
import { type AddableIntent, IntentPool, type IntentPoolOptions } from '../src/mempool/pool.ts'
import { Store } from '../src/state/store.ts'

const NOW = 1_900_000_000
const OUT = 10n ** 18n
/** What an honest wallet pays: 10 bps of a 1-unit transfer. */
const HONEST_SPREAD = 10n ** 15n
/** What junk pays: next to nothing. */
const JUNK_MAX_SPREAD = 1000n
const OPTIONS: IntentPoolOptions = { maxCount: 40, maxPerUser: 64, evictorMaxPerUser: 8 }

let seq = 0
function address(n: number): Address {
  return `0x${n.toString(16).padStart(40, '0')}` as Address
}

/** An intent as the pool stores it (the pool reads id, order and signature; validation is upstream). */
function intent(user: Address, spread: bigint, fillInSec: number, origin = 901n): AddableIntent {
  const order = buildOrder({
    user,
    nonce: BigInt(++seq),
    originChainId: origin,
    openDeadline: NOW + 60,
    fillDeadline: NOW + fillInSec,
    inputAmount: OUT + spread,
    outputAmount: OUT,
    destinationChainIds: [902n],
  })
  return { id: intentId(order), order, signature: `0x${'11'.repeat(65)}` as Hex }
}

/** Runs `fn` over a pool of its own, in a LevelDB store of its own, removed afterwards. */
async function withPool<T>(options: IntentPoolOptions, fn: (pool: IntentPool) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'murmur-spam-'))
  const store = new Store(join(dir, 'db'))
  const modules = { log: pino({ level: 'silent' }), registry: new Registry(), now: () => NOW * 1000 }
  let pool: IntentPool | undefined
  try {
    await store.open()
    pool = await IntentPool.open(store, options, modules)
    return await fn(pool)
  } finally {
    await pool?.close()
    await store.close()
    await rm(dir, { recursive: true, force: true })
  }
}

type Step =
  | { kind: 'honest'; user: number; fillInSec: number }
  | { kind: 'junk'; spread: bigint; fillInSec: number; origin: bigint }
  | { kind: 'rich'; spread: bigint }

describe('mempool under spam (fast-check)', () => {
  it('never exceeds its bound, never evicts an honest sender for junk or for a spammer at quota, and records every eviction', async () => {
    const honestUsers = 4
    const perHonest = 4
    const step: fc.Arbitrary<Step> = fc.oneof(
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('honest' as const),
          user: fc.nat(honestUsers - 1),
          fillInSec: fc.integer({ min: 120, max: 900 }),
        }),
      },
      {
        weight: 10,
        arbitrary: fc.record({
          kind: fc.constant('junk' as const),
          spread: fc.bigInt({ min: 0n, max: JUNK_MAX_SPREAD }),
          // Far deadlines: what used to win under nearest-deadline eviction.
          fillInSec: fc.integer({ min: 3600, max: 86_400 }),
          origin: fc.constantFrom(901n, 902n),
        }),
      },
      {
        weight: 2,
        arbitrary: fc.record({
          kind: fc.constant('rich' as const),
          // A spammer at its quota may pay anything: it still cannot displace anyone.
          spread: fc.bigInt({ min: HONEST_SPREAD, max: 10n ** 20n }),
        }),
      },
    )
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 20, maxLength: 150 }), async (steps) =>
        withPool(OPTIONS, async (pool) => {
          const rich = address(0xbad)
          // The spammer that pays fills its quota while there is room (nobody to evict yet).
          const quota = Array.from({ length: OPTIONS.evictorMaxPerUser! }, () =>
            intent(rich, 10n ** 20n, 86_400),
          )
          expect(new Set(await pool.addMany(quota))).toEqual(new Set(['added']))
          const honest: Hex[] = []
          const held = new Map<number, number>()
          const acknowledged: Hex[] = quota.map((q) => q.id)
          let junk = 0
          for (const s of steps) {
            let item: AddableIntent
            if (s.kind === 'honest') {
              // Low volume: a wallet with a handful open.
              if ((held.get(s.user) ?? 0) >= perHonest) continue
              item = intent(address(1 + s.user), HONEST_SPREAD, s.fillInSec)
            } else if (s.kind === 'junk') {
              item = intent(address(0x10000 + junk++), s.spread, s.fillInSec, s.origin)
            } else {
              item = intent(rich, s.spread, 86_400)
            }
            const wasFull = pool.stats().count >= OPTIONS.maxCount!
            const r = await pool.add(item)
            if (r === 'added') acknowledged.push(item.id)
            if (s.kind === 'honest') {
              // Accepted: junk is what a full pool gives up.
              expect(r).toBe('added')
              honest.push(item.id)
              held.set(s.user, (held.get(s.user) ?? 0) + 1)
            }
            // At quota in a full pool, paying any spread: refused, nobody evicted for it.
            if (s.kind === 'rich' && wasFull) expect(r).toMatchObject({ code: 'POOL_FULL' })
            const st = pool.stats()
            expect(st.count).toBeLessThanOrEqual(OPTIONS.maxCount!)
            for (const id of honest) expect(pool.stateOf(id)).toBe('pending')
            for (const q of quota) expect(pool.stateOf(q.id)).toBe('pending')
          }
          // Nothing acknowledged vanished: each is pending, or failed with reason `evicted`.
          for (const id of acknowledged) {
            const rec = await pool.get(id)
            expect(rec, id).toBeDefined()
            if (rec!.state !== 'pending') {
              expect(rec!.state).toBe('failed')
              expect(rec!.history.at(-1)?.reason).toBe('evicted')
            }
          }
        }),
      ),
      { numRuns: 50 },
    )
  })

  it('10x junk with fresh keys and far deadlines: every honest intent is accepted and none evicted', async () => {
    await withPool({ ...OPTIONS, maxCount: 200 }, async (pool) => {
      const honest: Hex[] = []
      let refusedHonest = 0
      for (let round = 0; round < 100; round++) {
        const h = intent(address(1 + (round % 25)), HONEST_SPREAD, 600)
        const junk = Array.from({ length: 10 }, (_, i) =>
          intent(address(0x100000 + round * 10 + i), BigInt(i), 86_400),
        )
        const rs = await pool.addMany([...junk.slice(0, 5), h, ...junk.slice(5)])
        if (rs[5] === 'added') honest.push(h.id)
        else refusedHonest++
      }
      expect(refusedHonest).toBe(0)
      expect(honest).toHaveLength(100)
      for (const id of honest) expect(pool.stateOf(id)).toBe('pending')
      expect(pool.stats().count).toBe(200)
    })
  })
})
