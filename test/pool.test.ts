import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import type { Address, Hex } from 'viem'
import { type PrivateKeyAccount, privateKeyToAccount } from 'viem/accounts'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  buildOrder,
  intentId,
  NO_SIGNATURE,
  ONCHAIN_NONCE_BIT,
  signedIntentWireSize,
  signOrder,
} from '../src/codec/intent.ts'
import { StorageError } from '../src/errors.ts'
import {
  type AddResult,
  type IntentChange,
  IntentPool,
  type IntentPoolOptions,
  MempoolError,
  type TransitionRequest,
} from '../src/mempool/pool.ts'
import {
  type Assignment,
  applyTransition,
  decodeRecord,
  encodeRecord,
  type Fill,
  INTENT_STATES,
  type IntentRecord,
  type IntentState,
  intentNonceKey,
  isTerminal,
  MAX_HISTORY,
  newRecord,
  nonceKey,
  recordIndexKeys,
  TRANSITIONS,
  toJson,
} from '../src/mempool/record.ts'
import { type ValidIntent, validateIntent } from '../src/mempool/validate.ts'
import { type BatchOp, MAX_RANGE_LIMIT, prefixEnd, Store } from '../src/state/store.ts'
import { waitFor } from './helpers/wait.ts'

const NOW = 1_900_000_000
const SETTLER: Address = '0x5555555555555555555555555555555555555555'
const CHAINS = [901n, 902n, 903n, 904n]
const accounts: PrivateKeyAccount[] = [1, 2, 3, 4].map((i) =>
  privateKeyToAccount(`0x${(BigInt(i) * 7919n + 17n).toString(16).padStart(64, '0')}`),
)
const EXECUTOR: Address = '0x00000000000000000000000000000000000000e1'

const ASSIGNMENT: Assignment = { chainId: 901n, executor: EXECUTOR, height: 7n, deadline: NOW + 50 }
const FILL: Fill = { chainId: 901n, txHash: `0x${'ab'.repeat(32)}`, blockNumber: 123n }

interface IntentSpec {
  account?: number
  nonce: bigint
  fillDeadline?: number
  chains?: number
  /** inputAmount; the output is 10^18 - 1000, so the spread is amount - 10^18 + 1000. Default 10^18. */
  amount?: bigint
  /** Default 900. */
  origin?: bigint
}

async function makeIntent(s: IntentSpec): Promise<ValidIntent> {
  const account = accounts[s.account ?? 0]!
  const order = buildOrder({
    user: account.address,
    originSettler: SETTLER,
    nonce: s.nonce,
    originChainId: s.origin ?? 900n,
    openDeadline: NOW + 60,
    fillDeadline: s.fillDeadline ?? NOW + 600,
    inputAmount: s.amount ?? 10n ** 18n,
    outputAmount: 10n ** 18n - 1000n,
    destinationChainIds: CHAINS.slice(0, s.chains ?? 1),
  })
  const signature = await signOrder(account, order)
  const v = await validateIntent(
    { order, signature },
    { nowSec: NOW, maxClockSkewSec: 30, knownChainIds: new Set(CHAINS) },
  )
  if (!v.ok) throw new Error(`test intent invalid: ${v.message}`)
  return v
}

function details(to: IntentState): Omit<TransitionRequest, 'id' | 'to'> {
  if (to === 'assigned') return { assignment: ASSIGNMENT, height: 7n }
  if (to === 'filled') return { fill: FILL, height: 9n }
  return { reason: 'test' }
}

function codeOf(err: unknown): string {
  return err instanceof MempoolError || err instanceof StorageError ? err.code : `plain: ${String(err)}`
}

/** A temp dir, a real LevelDB store and a pool over it, with a clock the test moves. */
class Harness {
  dir = ''
  store!: Store
  pool!: IntentPool
  registry = new Registry()
  clock = { ms: NOW * 1000 }
  options: IntentPoolOptions = {}
  storeFactory: (path: string) => Store = (path) => new Store(path)

  async open(options: IntentPoolOptions = {}): Promise<this> {
    this.options = options
    this.dir = await mkdtemp(join(tmpdir(), 'murmur-pool-'))
    await this.#openPool()
    return this
  }

  async #openPool(): Promise<void> {
    this.store = this.storeFactory(join(this.dir, 'db'))
    await this.store.open()
    this.registry = new Registry()
    this.pool = await IntentPool.open(this.store, this.options, {
      log: pino({ level: 'silent' }),
      registry: this.registry,
      now: () => this.clock.ms,
    })
  }

  /** Closes pool and store, then opens both again from disk. */
  async reopen(): Promise<void> {
    await this.pool.close()
    await this.store.close()
    await this.#openPool()
  }

  async close(): Promise<void> {
    if (this.dir === '') return
    await this.pool.close()
    await this.store.close()
    await rm(this.dir, { recursive: true, force: true })
    this.dir = ''
  }
}

/** Checks every index entry against the records: nothing missing, nothing extra. */
async function checkIndexes(h: Harness): Promise<void> {
  const rows = await h.store.range<Uint8Array>('intents', {
    gte: '0x',
    lt: prefixEnd('0x'),
    limit: MAX_RANGE_LIMIT,
  })
  const records = rows.map(([k, v]) => decodeRecord(k, v))
  const index = await h.store.range<string>('intentIndex', { gte: '', lt: '\uffff', limit: MAX_RANGE_LIMIT })
  const expected = new Set(records.flatMap((r) => recordIndexKeys(r)))
  const actual = new Set(index.map(([k]) => k).filter((k) => !k.startsWith('u/')))
  expect([...actual].sort()).toEqual([...expected].sort())
  const nonceIdx = new Map(index.filter(([k]) => k.startsWith('u/')).map(([k, v]) => [k.slice(2), v]))
  for (const r of records) expect(nonceIdx.get(intentNonceKey(r.intent))).toBe(r.id)
  for (const nk of nonceIdx.keys()) {
    const [user, nonceHex, origin] = nk.split('/')
    // Signed intents' keys answer isNonceUsed; those of orders opened on chain also name their origin.
    if (origin === undefined) expect(h.pool.isNonceUsed(user!, BigInt(`0x${nonceHex}`))).toBe(true)
  }
  expect(h.pool.stats().nonces).toBe(nonceIdx.size)
  // Memory agrees with disk.
  for (const r of records) expect(h.pool.stateOf(r.id)).toBe(r.state)
  const live = records.filter((r) => !isTerminal(r.state))
  expect(h.pool.stats().count).toBe(live.length)
  expect(h.pool.stats().bytes).toBe(live.reduce((n, r) => n + signedIntentWireSize(r.intent), 0))
}

const harnesses: Harness[] = []
async function harness(options: IntentPoolOptions = {}): Promise<Harness> {
  const h = await new Harness().open(options)
  harnesses.push(h)
  return h
}
afterEach(async () => {
  for (const h of harnesses.splice(0)) await h.close()
})

describe('state machine table (pure)', () => {
  let base: IntentRecord
  beforeAll(async () => {
    const v = await makeIntent({ nonce: 1n })
    base = newRecord(v.id, { order: v.order, signature: v.signature }, NOW * 1000)
  })

  function inState(s: IntentState): IntentRecord {
    if (s === 'pending') return base
    const assigned = applyTransition(base, 'assigned', details('assigned'), 1)
    if (s === 'assigned') return assigned
    if (s === 'filled') return applyTransition(assigned, 'filled', details('filled'), 2)
    return applyTransition(base, s, {}, 2)
  }

  const pairs = INTENT_STATES.flatMap((from) => INTENT_STATES.map((to) => [from, to] as const))
  it.each(pairs)('%s -> %s follows the table', (from, to) => {
    const allowed = TRANSITIONS[from].includes(to)
    const r = inState(from)
    if (allowed) {
      const next = applyTransition(r, to, details(to), 99)
      expect(next.state).toBe(to)
      expect(next.history.at(-1)).toMatchObject({ state: to, atMs: 99 })
    } else {
      let err: unknown
      try {
        applyTransition(r, to, details(to), 99)
      } catch (e) {
        err = e
      }
      expect(codeOf(err)).toBe('BAD_TRANSITION')
    }
  })

  it('the table is exactly the documented one; terminal states lead nowhere', () => {
    const allowed = INTENT_STATES.flatMap((f) => TRANSITIONS[f].map((t) => `${f}->${t}`)).sort()
    expect(allowed).toEqual(
      [
        'pending->assigned',
        'pending->expired',
        'pending->failed',
        'assigned->pending',
        'assigned->assigned',
        'assigned->filled',
        'assigned->expired',
        'assigned->failed',
        'pending->refunded',
        'assigned->refunded',
        'expired->refunded',
      ].sort(),
    )
    for (const s of ['filled', 'expired', 'refunded', 'failed'] as const) expect(isTerminal(s)).toBe(true)
  })

  it('assigned needs an assignment, filled needs a fill; pending clears the assignment', () => {
    expect(() => applyTransition(base, 'assigned', {}, 1)).toThrow(MempoolError)
    const a = applyTransition(base, 'assigned', details('assigned'), 1)
    expect(() => applyTransition(a, 'filled', {}, 2)).toThrow(MempoolError)
    const back = applyTransition(a, 'pending', { reason: 'rollup-down' }, 3)
    expect(back.assignment).toBeNull()
    const expired = applyTransition(a, 'expired', {}, 3)
    expect(expired.assignment).toEqual(ASSIGNMENT)
  })

  it('history is bounded and keeps its first entry', () => {
    let r = applyTransition(base, 'assigned', details('assigned'), 1)
    for (let i = 0; i < 3 * MAX_HISTORY; i++) r = applyTransition(r, 'assigned', details('assigned'), 2 + i)
    expect(r.history).toHaveLength(MAX_HISTORY)
    expect(r.history[0]).toEqual({ state: 'pending', atMs: NOW * 1000 })
    expect(r.history.at(-1)!.atMs).toBe(1 + 3 * MAX_HISTORY)
  })

  it('a record survives encode/decode, and corrupt bytes are StorageError CORRUPT', () => {
    const r = applyTransition(inState('assigned'), 'filled', details('filled'), 5)
    expect(decodeRecord(r.id, encodeRecord(r))).toEqual(r)
    const bytes = encodeRecord(r)
    expect(bytes.length).toBeLessThan(1024)
    let err: unknown
    try {
      decodeRecord(r.id, bytes.subarray(0, 40))
    } catch (e) {
      err = e
    }
    expect(codeOf(err)).toBe('CORRUPT')
  })
})

describe('IntentPool transitions', () => {
  let intents: ValidIntent[]
  beforeAll(async () => {
    intents = await Promise.all(Array.from({ length: 12 }, (_, i) => makeIntent({ nonce: BigInt(i) })))
  })

  it('every allowed transition is written and announced; forbidden ones throw and write nothing', async () => {
    const h = await harness()
    const { pool } = h
    const changes: IntentChange[] = []
    pool.onChange((c) => changes.push(c))
    expect(await pool.addMany(intents)).toEqual(intents.map(() => 'added'))
    const id = (i: number) => intents[i]!.id
    // Reach each state through allowed paths.
    const steps: Array<[number, IntentState]> = [
      [0, 'assigned'],
      [0, 'assigned'],
      [0, 'pending'],
      [0, 'assigned'],
      [0, 'filled'],
      [1, 'expired'],
      [2, 'failed'],
      [3, 'assigned'],
      [3, 'expired'],
      [4, 'assigned'],
      [4, 'failed'],
    ]
    for (const [i, to] of steps) {
      const r = await pool.transition(id(i), to, details(to))
      expect(r.state).toBe(to)
      expect((await pool.get(id(i)))!.state).toBe(to)
    }
    expect((await pool.get(id(0)))!.history.map((x) => x.state)).toEqual([
      'pending',
      'assigned',
      'assigned',
      'pending',
      'assigned',
      'filled',
    ])
    expect(changes.filter((c) => c.id === id(0)).map((c) => [c.previous, c.state])).toEqual([
      [null, 'pending'],
      ['pending', 'assigned'],
      ['assigned', 'assigned'],
      ['assigned', 'pending'],
      ['pending', 'assigned'],
      ['assigned', 'filled'],
    ])
    // Forbidden: from every terminal state, and pending -> filled / pending -> pending.
    const forbidden: Array<[number, IntentState]> = [
      [0, 'pending'],
      [0, 'assigned'],
      [1, 'pending'],
      [1, 'filled'],
      [2, 'assigned'],
      [5, 'filled'],
      [5, 'pending'],
    ]
    for (const [i, to] of forbidden) {
      const before = await pool.get(id(i))
      let err: unknown
      try {
        await pool.transition(id(i), to, details(to))
      } catch (e) {
        err = e
      }
      expect(codeOf(err)).toBe('BAD_TRANSITION')
      expect(await pool.get(id(i))).toEqual(before)
    }
    let err: unknown
    try {
      await pool.transition(`0x${'00'.repeat(32)}`, 'assigned', details('assigned'))
    } catch (e) {
      err = e
    }
    expect(codeOf(err)).toBe('UNKNOWN_INTENT')
    await checkIndexes(h)
  })

  it('transitionMany is all or nothing and writes extra ops in the same batch', async () => {
    const h = await harness()
    const { pool } = h
    await pool.addMany(intents.slice(0, 4))
    const ids = intents.slice(0, 4).map((v) => v.id)
    const before = await pool.getMany(ids)
    const events: IntentChange[] = []
    pool.onChange((c) => events.push(c))
    const extra: BatchOp[] = [{ type: 'put', sublevel: 'app', key: 'height', value: 8 }]
    let err: unknown
    try {
      await pool.transitionMany(
        [
          { id: ids[0]!, to: 'assigned', ...details('assigned') },
          { id: ids[1]!, to: 'assigned', ...details('assigned') },
          { id: ids[2]!, to: 'filled', ...details('filled') }, // pending -> filled: forbidden
        ],
        { extraOps: extra },
      )
    } catch (e) {
      err = e
    }
    expect(codeOf(err)).toBe('BAD_TRANSITION')
    expect(await pool.getMany(ids)).toEqual(before)
    expect(await h.store.get('app', 'height')).toBeUndefined()
    expect(pool.stats().byState.pending).toBe(4)
    expect(events).toEqual([])
    await pool.transitionMany(
      [
        { id: ids[0]!, to: 'assigned', ...details('assigned') },
        { id: ids[0]!, to: 'filled', ...details('filled') },
        { id: ids[1]!, to: 'assigned', ...details('assigned') },
      ],
      { extraOps: extra },
    )
    expect(await h.store.get('app', 'height')).toBe(8)
    expect(pool.stateOf(ids[0]!)).toBe('filled')
    expect(events.map((e) => e.state)).toEqual(['assigned', 'filled', 'assigned'])
    await checkIndexes(h)
  })

  it('emits only after the batch is on disk', async () => {
    const h = await harness()
    const { pool } = h
    const seen: Array<Promise<[IntentState, IntentState | undefined]>> = []
    pool.onChange((c) => {
      // A read issued from the listener must already see the change.
      seen.push(pool.get(c.id).then((r) => [c.state, r?.state]))
    })
    await pool.add(intents[0]!)
    await pool.transition(intents[0]!.id, 'assigned', details('assigned'))
    await pool.transition(intents[0]!.id, 'filled', details('filled'))
    const pairs = await Promise.all(seen)
    expect(pairs).toEqual([
      ['pending', 'pending'],
      ['assigned', 'assigned'],
      ['filled', 'filled'],
    ])
  })

  it('toJson is the GET /v1/intents/:id body', async () => {
    const h = await harness()
    const { pool } = h
    h.clock.ms = NOW * 1000 + 5
    await pool.add(intents[0]!)
    await pool.transition(intents[0]!.id, 'assigned', details('assigned'))
    await pool.transition(intents[0]!.id, 'filled', details('filled'))
    const json = toJson((await pool.get(intents[0]!.id))!)
    const o = intents[0]!.order
    expect(json).toEqual({
      id: intents[0]!.id,
      state: 'filled',
      order: {
        originSettler: SETTLER,
        user: o.user,
        nonce: '0',
        originChainId: '900',
        openDeadline: NOW + 60,
        fillDeadline: NOW + 600,
        orderDataType: o.orderDataType,
        orderData: o.orderData,
      },
      signature: intents[0]!.signature,
      assignment: { chainId: '901', executor: EXECUTOR, height: '7', deadline: NOW + 50 },
      fill: { chainId: '901', txHash: FILL.txHash, blockNumber: '123' },
      history: [
        { state: 'pending', atMs: NOW * 1000 + 5 },
        { state: 'assigned', atMs: NOW * 1000 + 5, height: '7' },
        { state: 'filled', atMs: NOW * 1000 + 5, height: '9' },
      ],
    })
    // Lowercase hex everywhere, and it survives JSON.
    expect(JSON.stringify(json)).not.toMatch(/0x[0-9a-f]*[A-F]/)
    expect(JSON.parse(JSON.stringify(json))).toEqual(json)
  })
})

describe('IntentPool add, indexes, durability', () => {
  let intents: ValidIntent[]
  beforeAll(async () => {
    intents = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        makeIntent({
          account: i % 4,
          nonce: BigInt(i),
          fillDeadline: NOW + 100 + (i % 5),
          chains: 1 + (i % 3),
        }),
      ),
    )
  })

  it('add is idempotent by id and refuses a reused (user, nonce)', async () => {
    const h = await harness()
    const { pool } = h
    const first = intents[0]!
    expect(pool.isNonceUsed(first.order.user, first.order.nonce)).toBe(false)
    expect(await pool.add(first)).toBe('added')
    expect(pool.has(first.id)).toBe(true)
    expect(pool.isNonceUsed(first.order.user, first.order.nonce)).toBe(true)
    expect(pool.isNonceUsed(first.order.user.toUpperCase().replace('0X', '0x'), first.order.nonce)).toBe(true)
    expect(await pool.add(first)).toBe('known')
    const sameNonce = await makeIntent({ account: 0, nonce: 0n, amount: 5n })
    expect(sameNonce.id).not.toBe(first.id)
    expect(await pool.add(sameNonce)).toMatchObject({ code: 'NONCE_USED' })
    // Within one batch too: the first wins, the duplicate is known, the replay refused.
    const h2 = await harness()
    expect(await h2.pool.addMany([first, first, sameNonce])).toEqual([
      'added',
      'known',
      expect.objectContaining({ code: 'NONCE_USED' }),
    ])
  })

  it('orders opened on chain (unsigned) are keyed by origin too: one nonce on two origins is two intents', async () => {
    const h = await harness()
    const user = accounts[1]!.address
    // Two settlers' first `open` give one user the same nonce; a signed intent may use that number too.
    const opened = (originChainId: bigint, amount: bigint) => {
      const order = buildOrder({
        user,
        originSettler: SETTLER,
        nonce: ONCHAIN_NONCE_BIT,
        originChainId,
        openDeadline: NOW - 10,
        fillDeadline: NOW + 600,
        inputAmount: amount,
        outputAmount: 1n,
        destinationChainIds: [901n],
      })
      return { id: intentId(order), order, signature: NO_SIGNATURE }
    }
    const a = opened(900n, 5n)
    const b = opened(901n, 6n)
    const signed = await makeIntent({ account: 1, nonce: ONCHAIN_NONCE_BIT })
    expect(await h.pool.addMany([a, b, signed])).toEqual(['added', 'added', 'added'])
    // The same origin and nonce again is a replay.
    expect(await h.pool.add(opened(900n, 7n))).toMatchObject({ code: 'NONCE_USED' })
    await h.reopen()
    expect(await h.pool.add(opened(901n, 8n))).toMatchObject({ code: 'NONCE_USED' })
    expect((await h.pool.get(a.id))?.intent).toEqual({ order: a.order, signature: '0x' })
    await checkIndexes(h)
  })

  it('indexes answer by state, by (user, nonce) and by deadline after add, transition and expire', async () => {
    const h = await harness()
    const { pool } = h
    const ids = intents.map((v) => v.id)
    for (let i = 0; i < 10; i++) {
      h.clock.ms = NOW * 1000 + i
      await pool.add(intents[i]!)
    }
    h.clock.ms = NOW * 1000 + 100
    await pool.addMany(intents.slice(10))
    // pending(limit): by receivedAt, then id for the batch that shares one receivedAt.
    const expectedOrder = [...ids.slice(0, 10), ...ids.slice(10).sort()]
    expect((await pool.pending(100)).map((r) => r.id)).toEqual(expectedOrder)
    expect((await pool.pending(3)).map((r) => r.id)).toEqual(expectedOrder.slice(0, 3))
    // Few pending ones are ordered in memory, many (more than 4x the limit) read from the index: same order.
    expect(ids.length).toBeGreaterThan(4 * 2)
    expect((await pool.pending(2)).map((r) => r.id)).toEqual(expectedOrder.slice(0, 2))
    expect((await pool.pending(ids.length)).map((r) => r.id)).toEqual(expectedOrder)
    expect(await pool.idsByState('pending', 100)).toEqual(expectedOrder)
    for (const v of intents) expect(await pool.idByNonce(v.order.user, v.order.nonce)).toBe(v.id)
    expect(await pool.idByNonce(accounts[0]!.address, 999n)).toBeUndefined()

    await pool.transition(ids[0]!, 'assigned', details('assigned'))
    await pool.transition(ids[1]!, 'assigned', details('assigned'))
    await pool.transition(ids[1]!, 'filled', details('filled'))
    await pool.transition(ids[2]!, 'failed', { reason: 'invalid' })
    expect(await pool.idsByState('assigned', 100)).toEqual([ids[0]])
    expect(await pool.idsByState('filled', 100)).toEqual([ids[1]])
    expect(await pool.idsByState('failed', 100)).toEqual([ids[2]])
    expect(await pool.idsByState('pending', 100)).toEqual(
      expectedOrder.filter((id) => !ids.slice(0, 3).includes(id)),
    )
    await checkIndexes(h)

    // By deadline: non-terminal ones only, earliest first.
    const live = intents.filter((_, i) => i !== 1 && i !== 2)
    const byDeadline = (before: number) =>
      live
        .filter((v) => v.order.fillDeadline < before)
        .sort((a, b) => a.order.fillDeadline - b.order.fillDeadline || (a.id < b.id ? -1 : 1))
        .map((v) => v.id)
    expect(await pool.idsByDeadline(NOW + 102, 100)).toEqual(byDeadline(NOW + 102))
    expect(await pool.idsByDeadline(NOW + 1000, 100)).toEqual(byDeadline(NOW + 1000))

    const expired = await pool.expireDue(NOW + 102)
    expect(expired).toEqual(byDeadline(NOW + 102))
    for (const id of expired) expect(pool.stateOf(id)).toBe('expired')
    expect(await pool.idsByDeadline(NOW + 102, 100)).toEqual([])
    expect(await pool.expireDue(NOW + 102)).toEqual([])
    await checkIndexes(h)
  })

  it('everything survives close and reopen: records, indexes, nonce map, counts', async () => {
    const h = await harness({ maxPerUser: 100 })
    const { pool } = h
    await pool.addMany(intents)
    // intents[2] has fillDeadline +102: still assigned after expireDue(+101).
    await pool.transition(intents[2]!.id, 'assigned', details('assigned'))
    await pool.transition(intents[1]!.id, 'assigned', details('assigned'))
    await pool.transition(intents[1]!.id, 'filled', details('filled'))
    await pool.expireDue(NOW + 101)
    const ids = intents.map((v) => v.id)
    const before = {
      records: await pool.getMany(ids),
      stats: pool.stats(),
      pending: (await pool.pending(100)).map((r) => r.id),
      pendingIds: pool.pendingIds().sort(),
    }
    await h.reopen()
    const p2 = h.pool
    expect(p2).not.toBe(pool)
    expect(await p2.getMany(ids)).toEqual(before.records)
    expect(p2.stats()).toEqual(before.stats)
    expect((await p2.pending(100)).map((r) => r.id)).toEqual(before.pending)
    expect(p2.pendingIds().sort()).toEqual(before.pendingIds)
    for (const v of intents) {
      expect(p2.has(v.id)).toBe(true)
      expect(p2.isNonceUsed(v.order.user, v.order.nonce)).toBe(true)
      expect(await p2.add(v)).toBe('known')
    }
    await checkIndexes(h)
    // And the reopened pool keeps working.
    expect(p2.stateOf(intents[0]!.id)).toBe('expired')
    await p2.transition(intents[2]!.id, 'filled', details('filled'))
    expect(p2.stateOf(intents[2]!.id)).toBe('filled')
  })

  it('loads with bounded page reads (page smaller than the data)', async () => {
    const h = await harness({ loadPageSize: 3, maxPerUser: 100 })
    await h.pool.addMany(intents)
    await h.reopen()
    expect(h.pool.stats().count).toBe(intents.length)
    expect(h.pool.stats().nonces).toBe(intents.length)
  })

  it('a failed transition leaves the next one working from the durable record', async () => {
    const h = new Harness()
    let failNext = false
    h.storeFactory = (path) => {
      const s = new Store(path)
      const batch = s.batch.bind(s)
      s.batch = async (ops: BatchOp[]) => {
        if (failNext) {
          failNext = false
          throw new StorageError('WRITE_FAILED', 'injected')
        }
        return batch(ops)
      }
      return s
    }
    await h.open()
    harnesses.push(h)
    const { pool } = h
    const [v] = intents
    await pool.addMany([v!])
    failNext = true
    await expect(pool.transition(v!.id, 'assigned', details('assigned'))).rejects.toMatchObject({
      code: 'WRITE_FAILED',
    })
    expect(pool.stateOf(v!.id)).toBe('pending')
    // pending -> failed is allowed, assigned -> failed too: the history tells which record it started from.
    await pool.transition(v!.id, 'failed', { reason: 'test' })
    const rec = (await pool.get(v!.id))!
    expect(rec.history.map((e) => e.state)).toEqual(['pending', 'failed'])
    expect(rec.assignment).toBeNull()
    await h.reopen()
    expect(await h.pool.get(v!.id)).toEqual(rec)
  })

  it('addMany is one batch, and a failed batch leaves neither disk nor memory changed', async () => {
    const h = new Harness()
    let failNext = false
    let batches = 0
    h.storeFactory = (path) => {
      const s = new Store(path)
      const batch = s.batch.bind(s)
      s.batch = async (ops: BatchOp[]) => {
        batches++
        if (failNext) {
          failNext = false
          throw new StorageError('WRITE_FAILED', 'injected')
        }
        return batch(ops)
      }
      return s
    }
    await h.open({ maxCount: 12, maxPerUser: 100 })
    harnesses.push(h)
    const { pool } = h
    batches = 0
    await pool.addMany(intents.slice(0, 10))
    expect(batches).toBe(1)
    const statsBefore = pool.stats()
    const events: IntentChange[] = []
    pool.onChange((c) => events.push(c))
    // 10 more into a pool of 12 evicts some: the failed batch must undo adds and evictions alike.
    failNext = true
    let err: unknown
    try {
      await pool.addMany(intents.slice(10))
    } catch (e) {
      err = e
    }
    expect(codeOf(err)).toBe('WRITE_FAILED')
    expect(events).toEqual([])
    expect(pool.stats()).toEqual(statsBefore)
    for (const v of intents.slice(10)) {
      expect(pool.has(v.id)).toBe(false)
      expect(pool.isNonceUsed(v.order.user, v.order.nonce)).toBe(false)
      expect(await pool.get(v.id)).toBeUndefined()
    }
    for (const v of intents.slice(0, 10)) expect(pool.stateOf(v.id)).toBe('pending')
    await checkIndexes(h)
    // The same batch goes through afterwards, with the same outcome as if the failure never happened.
    const results = await pool.addMany(intents.slice(10))
    expect(results.filter((r) => r === 'added').length + statsBefore.count).toBeGreaterThanOrEqual(12)
    expect(pool.stats().count).toBeLessThanOrEqual(12)
    await checkIndexes(h)
  })
})

describe('IntentPool bounds', () => {
  it('per-user limit refuses with USER_LIMIT and frees up when an intent ends', async () => {
    const h = await harness({ maxPerUser: 2 })
    const { pool } = h
    const vs = await Promise.all([0n, 1n, 2n].map((n) => makeIntent({ nonce: n })))
    const other = await makeIntent({ account: 1, nonce: 0n })
    expect(await pool.addMany([vs[0]!, vs[1]!, vs[2]!, other])).toEqual([
      'added',
      'added',
      expect.objectContaining({ code: 'USER_LIMIT' }),
      'added',
    ])
    expect(pool.userCount(accounts[0]!.address)).toBe(2)
    // Assigned still counts; a terminal one does not.
    await pool.transition(vs[0]!.id, 'assigned', details('assigned'))
    expect(await pool.add(vs[2]!)).toMatchObject({ code: 'USER_LIMIT' })
    await pool.transition(vs[0]!.id, 'filled', details('filled'))
    expect(await pool.add(vs[2]!)).toBe('added')
    expect(h.registry.getSingleMetric('murmur_mempool_rejected_total')).toBeDefined()
    const text = await h.registry.metrics()
    expect(text).toMatch(/murmur_mempool_rejected_total\{reason="USER_LIMIT"\} 2/)
  })

  /** inputAmount for a spread of `spread` (the test intents' output is 10^18 - 1000). */
  const paying = (spread: bigint) => 10n ** 18n - 1000n + spread

  it('count limit: evicts the pending intent paying the least, only for one that pays more', async () => {
    const h = await harness({ maxCount: 3, maxPerUser: 100, evictorMaxPerUser: 100 })
    const { pool } = h
    const [a, b, c, same, more, most] = await Promise.all([
      makeIntent({ nonce: 1n, amount: paying(200n), fillDeadline: NOW + 100 }),
      makeIntent({ nonce: 2n, amount: paying(100n), fillDeadline: NOW + 900 }),
      makeIntent({ nonce: 3n, amount: paying(300n), fillDeadline: NOW + 100 }),
      makeIntent({ nonce: 4n, amount: paying(100n), fillDeadline: NOW + 999 }),
      makeIntent({ nonce: 5n, amount: paying(101n), fillDeadline: NOW + 100 }),
      makeIntent({ nonce: 6n, amount: paying(10_000n) }),
    ])
    await pool.addMany([a!, b!, c!])
    const changes: IntentChange[] = []
    pool.onChange((x) => changes.push(x))
    // Paying no more than the least (b, 100), whatever its deadline: refused.
    expect(await pool.add(same!)).toMatchObject({ code: 'POOL_FULL' })
    // One unit more displaces b, though b's deadline is far later (the old order would have kept it).
    expect(await pool.add(more!)).toBe('added')
    expect(pool.stateOf(b!.id)).toBe('failed')
    expect((await pool.get(b!.id))!.history.at(-1)).toMatchObject({ state: 'failed', reason: 'evicted' })
    expect(changes.map((x) => [x.id, x.state, x.reason])).toEqual([
      [b!.id, 'failed', 'evicted'],
      [more!.id, 'pending', undefined],
    ])
    // Assigned intents are never evicted: with `more` (101) assigned, the next victim is a (200).
    await pool.transition(more!.id, 'assigned', details('assigned'))
    expect(await pool.add(most!)).toBe('added')
    expect(pool.stateOf(a!.id)).toBe('failed')
    expect(pool.stateOf(more!.id)).toBe('assigned')
    expect(pool.stats().count).toBe(3)
    expect(await h.registry.metrics()).toMatch(/murmur_mempool_evicted_total 2/)
    await checkIndexes(h)
  })

  it('a user at its evictor quota adds while there is room, but never evicts', async () => {
    const h = await harness({ maxCount: 4, maxPerUser: 100, evictorMaxPerUser: 2 })
    const { pool } = h
    const honest = await makeIntent({ account: 1, nonce: 1n, amount: paying(100n) })
    const spam = await Promise.all(
      [1n, 2n, 3n, 4n].map((n) => makeIntent({ nonce: n, amount: paying(1_000_000n) })),
    )
    expect(await pool.addMany([honest, spam[0]!, spam[1]!, spam[2]!])).toEqual([
      'added',
      'added',
      'added',
      'added',
    ])
    // Full; the spammer holds 3 >= 2: its fourth, paying 10 000 times more, is still refused.
    expect(await pool.add(spam[3]!)).toMatchObject({ code: 'POOL_FULL' })
    expect(pool.stateOf(honest.id)).toBe('pending')
    // Another user paying more may evict the cheapest (the honest one, here): the quota is per evictor.
    const other = await makeIntent({ account: 2, nonce: 1n, amount: paying(200n) })
    expect(await pool.add(other)).toBe('added')
    expect(pool.stateOf(honest.id)).toBe('failed')
    await checkIndexes(h)
  })

  it('an origin at its quota of the pool evicts only its own intents', async () => {
    const h = await harness({ maxCount: 4, maxPerUser: 100, evictorMaxPerUser: 100, originQuotaBps: 5_000 })
    const { pool } = h
    const cheap901 = await makeIntent({ account: 1, nonce: 1n, amount: paying(10n), origin: 901n })
    const flood = await Promise.all(
      [1n, 2n, 3n, 4n].map((n) => makeIntent({ nonce: n, amount: paying(100n + n), origin: 900n })),
    )
    expect(await pool.addMany([cheap901, flood[0]!, flood[1]!, flood[2]!])).toEqual([
      'added',
      'added',
      'added',
      'added',
    ])
    // 900 holds 3 of 4 >= half: its newcomer evicts its own cheapest (101), not 901's cheaper one.
    expect(await pool.add(flood[3]!)).toBe('added')
    expect(pool.stateOf(flood[0]!.id)).toBe('failed')
    expect(pool.stateOf(cheap901.id)).toBe('pending')
    // An origin under its quota evicts the cheapest of any origin.
    const rich901 = await makeIntent({ account: 2, nonce: 1n, amount: paying(1000n), origin: 901n })
    expect(await pool.add(rich901)).toBe('added')
    expect(pool.stateOf(cheap901.id)).toBe('failed')
    await checkIndexes(h)
  })

  it('byte limit: evicts as many as needed, or none when that cannot make room', async () => {
    const small = await Promise.all(
      [1n, 2n, 3n].map((n) => makeIntent({ nonce: n, amount: paying(100n + n), chains: 1 })),
    )
    const big = await makeIntent({ nonce: 9n, amount: paying(500n), chains: 4 })
    const bigCheap = await makeIntent({ nonce: 10n, amount: paying(102n), chains: 4 })
    const s = signedIntentWireSize(small[0]!)
    const b = signedIntentWireSize(big)
    expect(b).toBe(s + 3 * 32)
    // Room for the three small ones and not one byte more.
    const h = await harness({ maxBytes: 3 * s, maxPerUser: 100, evictorMaxPerUser: 100 })
    const { pool } = h
    expect(await pool.addMany(small)).toEqual(['added', 'added', 'added'])
    // bigCheap (102) would need two victims; only the 101 one pays less, so nothing is evicted.
    expect(await pool.add(bigCheap)).toMatchObject({ code: 'POOL_FULL' })
    expect(pool.stats().byState.pending).toBe(3)
    // big (500) needs two victims: the 101 and 102 ones.
    expect(await pool.add(big)).toBe('added')
    expect(small.map((v) => pool.stateOf(v.id))).toEqual(['failed', 'failed', 'pending'])
    expect(pool.stats().bytes).toBe(s + b)
    expect(pool.stats().bytes).toBeLessThanOrEqual(3 * s)
    await checkIndexes(h)
  })

  it('an intent larger than the whole byte bound is POOL_FULL and evicts nothing', async () => {
    const v = await makeIntent({ nonce: 1n, fillDeadline: NOW + 100 })
    const big = await makeIntent({ nonce: 2n, amount: 2n * 10n ** 18n, chains: 4 })
    const h = await harness({ maxBytes: signedIntentWireSize(big) - 1 })
    expect(await h.pool.add(v)).toBe('added')
    expect(await h.pool.add(big)).toMatchObject({ code: 'POOL_FULL' })
    expect(h.pool.stateOf(v.id)).toBe('pending')
  })
})

describe('IntentPool sweeper', () => {
  it('start() expires due intents on its timer; stop() leaves no timer behind', async () => {
    const h = await harness({ sweepIntervalMs: 5 })
    const { pool } = h
    const soon = await makeIntent({ nonce: 1n, fillDeadline: NOW + 100 })
    const assigned = await makeIntent({ nonce: 2n, fillDeadline: NOW + 100 })
    const later = await makeIntent({ nonce: 3n, fillDeadline: NOW + 1000 })
    await pool.addMany([soon, assigned, later])
    await pool.transition(assigned.id, 'assigned', details('assigned'))
    const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
    pool.start()
    pool.start() // idempotent
    expect(pool.running).toBe(true)
    // At the deadline itself nothing has passed yet.
    h.clock.ms = (NOW + 100) * 1000 + 999
    const sweeps: IntentChange[] = []
    pool.onChange((c) => sweeps.push(c))
    h.clock.ms = (NOW + 101) * 1000
    // Wait for the change events, which come after the batch is durable: the in-memory state
    // already reads `expired` while the batch is being written.
    await waitFor('expiry', () => sweeps.length >= 2, { timeoutMs: 5000, intervalMs: 5 })
    expect(pool.stateOf(soon.id)).toBe('expired')
    expect(pool.stateOf(assigned.id)).toBe('expired')
    expect(pool.stateOf(later.id)).toBe('pending')
    expect(sweeps.map((c) => [c.previous, c.state, c.reason]).sort()).toEqual(
      [
        ['assigned', 'expired', 'deadline'],
        ['pending', 'expired', 'deadline'],
      ].sort(),
    )
    await pool.stop()
    expect(pool.running).toBe(false)
    expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length).toBeLessThanOrEqual(
      timersBefore,
    )
    await checkIndexes(h)
  })

  it('expireDue honours the deadline boundary and maxSweepPerRun', async () => {
    const h = await harness({ maxSweepPerRun: 2 })
    const vs = await Promise.all([1n, 2n, 3n].map((n) => makeIntent({ nonce: n, fillDeadline: NOW + 100 })))
    await h.pool.addMany(vs)
    expect(await h.pool.expireDue(NOW + 100)).toEqual([])
    const first = await h.pool.expireDue(NOW + 101)
    expect(first).toEqual(
      vs
        .map((v) => v.id)
        .sort()
        .slice(0, 2),
    )
    expect(await h.pool.expireDue(NOW + 101)).toHaveLength(1)
    expect(h.pool.stats().byState.expired).toBe(3)
  })

  it('prunes terminal records after retainTerminalMs and beyond maxTerminal; their nonces stay used', async () => {
    const h = await harness({ retainTerminalMs: 10_000, maxTerminal: 3, maxSweepPerRun: 100 })
    const { pool } = h
    const vs = await Promise.all([1n, 2n, 3n, 4n, 5n, 6n].map((n) => makeIntent({ nonce: n })))
    await pool.addMany(vs)
    const t0 = h.clock.ms
    // Terminal at t0, t0+1, t0+2; one stays assigned.
    for (let i = 0; i < 3; i++) {
      h.clock.ms = t0 + i
      await pool.transition(vs[i]!.id, 'failed', { reason: 'x' })
    }
    await pool.transition(vs[3]!.id, 'assigned', details('assigned'))
    expect(await pool.pruneTerminal(t0 + 10_000)).toEqual([])
    expect(await pool.pruneTerminal(t0 + 10_001)).toEqual([vs[0]!.id])
    expect(pool.has(vs[0]!.id)).toBe(false)
    expect(await pool.get(vs[0]!.id)).toBeUndefined()
    expect(pool.isNonceUsed(vs[0]!.order.user, vs[0]!.order.nonce)).toBe(true)
    expect(await pool.idByNonce(vs[0]!.order.user, vs[0]!.order.nonce)).toBe(vs[0]!.id)
    expect(await pool.add(vs[0]!)).toMatchObject({ code: 'NONCE_USED' })
    // Over maxTerminal (3): two more terminal make 4; the oldest goes though still young.
    h.clock.ms = t0 + 20
    await pool.transition(vs[4]!.id, 'expired')
    await pool.transition(vs[5]!.id, 'expired')
    expect(await pool.pruneTerminal(t0 + 21)).toEqual([vs[1]!.id])
    expect(pool.stats().byState.failed + pool.stats().byState.expired).toBe(3)
    await checkIndexes(h)
    await h.reopen()
    expect(h.pool.has(vs[1]!.id)).toBe(false)
    expect(h.pool.isNonceUsed(vs[1]!.order.user, vs[1]!.order.nonce)).toBe(true)
    await checkIndexes(h)
  })

  it('pruning is bounded per run', async () => {
    const h = await harness({ retainTerminalMs: 1, maxSweepPerRun: 2 })
    const vs = await Promise.all([1n, 2n, 3n].map((n) => makeIntent({ nonce: n })))
    await h.pool.addMany(vs)
    await h.pool.transitionMany(vs.map((v) => ({ id: v.id, to: 'failed' as const })))
    expect(await h.pool.pruneTerminal(h.clock.ms + 100)).toHaveLength(2)
    expect(await h.pool.pruneTerminal(h.clock.ms + 100)).toHaveLength(1)
    expect(await h.pool.pruneTerminal(h.clock.ms + 100)).toHaveLength(0)
  })

  it('close() refuses later writes with CLOSED', async () => {
    const h = await harness()
    await h.pool.close()
    let err: unknown
    try {
      await h.pool.add(await makeIntent({ nonce: 1n }))
    } catch (e) {
      err = e
    }
    expect(codeOf(err)).toBe('CLOSED')
    // Re-open so the harness can close it again.
    await h.reopen()
  })
})

// --- model-based property test --------------------------------------------------------------------

interface ModelRecord {
  id: Hex
  user: string
  nk: string
  origin: bigint
  spread: bigint
  fillDeadline: number
  receivedAtMs: number
  bytes: number
  state: IntentState
  terminalAtMs: number | null
  history: IntentState[]
}

const MODEL_OPTIONS = {
  maxCount: 6,
  maxPerUser: 3,
  evictorMaxPerUser: 2,
  originQuotaBps: 5_000,
  retainTerminalMs: 3000,
  maxTerminal: 5,
  maxSweepPerRun: 4,
} as const

/** The naive reference: arrays and sorts, no indexes. */
class Model {
  readonly records = new Map<Hex, ModelRecord>()
  readonly nonces = new Set<string>()
  readonly maxBytes: number
  constructor(maxBytes: number) {
    this.maxBytes = maxBytes
  }

  live(): ModelRecord[] {
    return [...this.records.values()].filter((r) => !isTerminal(r.state))
  }

  add(items: ValidIntent[], atMs: number): AddResult[] {
    return items.map((v) => {
      if (this.records.has(v.id)) return 'known'
      const user = v.order.user
      const nk = nonceKey(user, v.order.nonce)
      if (this.nonces.has(nk)) return { code: 'NONCE_USED', message: '' }
      if (this.live().filter((r) => r.user === user).length >= MODEL_OPTIONS.maxPerUser) {
        return { code: 'USER_LIMIT', message: '' }
      }
      const bytes = signedIntentWireSize(v)
      const live = this.live()
      let count = live.length
      let total = live.reduce((n, r) => n + r.bytes, 0)
      const spread = v.data.inputAmount - v.data.outputAmount
      const origin = v.order.originChainId
      const full = count + 1 > MODEL_OPTIONS.maxCount || total + bytes > this.maxBytes
      if (full && live.filter((r) => r.user === user).length >= MODEL_OPTIONS.evictorMaxPerUser) {
        return { code: 'POOL_FULL', message: '' }
      }
      const originFull =
        live.filter((r) => r.origin === origin).length * 10_000 >=
        MODEL_OPTIONS.maxCount * MODEL_OPTIONS.originQuotaBps
      const candidates = live
        .filter((r) => r.state === 'pending' && (!originFull || r.origin === origin))
        .sort(
          (a, b) =>
            (a.spread < b.spread ? -1 : a.spread > b.spread ? 1 : 0) ||
            a.fillDeadline - b.fillDeadline ||
            (a.id < b.id ? -1 : 1),
        )
      const victims: ModelRecord[] = []
      while (count + 1 > MODEL_OPTIONS.maxCount || total + bytes > this.maxBytes) {
        const c = candidates.shift()
        if (c === undefined || c.spread >= spread) return { code: 'POOL_FULL', message: '' }
        victims.push(c)
        count--
        total -= c.bytes
      }
      for (const c of victims) this.#set(c, 'failed', atMs)
      this.records.set(v.id, {
        id: v.id,
        user,
        nk,
        origin,
        spread,
        fillDeadline: v.order.fillDeadline,
        receivedAtMs: atMs,
        bytes,
        state: 'pending',
        terminalAtMs: null,
        history: ['pending'],
      })
      this.nonces.add(nk)
      return 'added'
    })
  }

  #set(r: ModelRecord, to: IntentState, atMs: number): void {
    r.state = to
    r.history.push(to)
    if (isTerminal(to)) r.terminalAtMs = atMs
  }

  /** All or nothing; returns the error code or undefined. */
  transitionMany(reqs: Array<{ id: Hex; to: IntentState }>, atMs: number): string | undefined {
    const draft = new Map([...this.records].map(([k, r]) => [k, { ...r, history: [...r.history] }]))
    for (const { id, to } of reqs) {
      const r = draft.get(id)
      if (r === undefined) return 'UNKNOWN_INTENT'
      if (!TRANSITIONS[r.state].includes(to)) return 'BAD_TRANSITION'
      this.#set(r, to, atMs)
    }
    this.records.clear()
    for (const [k, r] of draft) this.records.set(k, r)
    return undefined
  }

  expireDue(nowSec: number, atMs: number): Hex[] {
    const due = this.live()
      .filter((r) => r.fillDeadline < nowSec)
      .sort((a, b) => a.fillDeadline - b.fillDeadline || (a.id < b.id ? -1 : 1))
      .slice(0, MODEL_OPTIONS.maxSweepPerRun)
    for (const r of due) this.#set(r, 'expired', atMs)
    return due.map((r) => r.id)
  }

  prune(nowMs: number): Hex[] {
    const max = MODEL_OPTIONS.maxSweepPerRun
    const terminal = [...this.records.values()]
      .filter((r) => r.terminalAtMs !== null)
      .sort((a, b) => a.terminalAtMs! - b.terminalAtMs! || (a.id < b.id ? -1 : 1))
    const cutoff = nowMs - MODEL_OPTIONS.retainTerminalMs
    let n = terminal.filter((r) => r.terminalAtMs! < cutoff).length
    n = Math.min(n, max)
    const excess = terminal.length - n - MODEL_OPTIONS.maxTerminal
    if (excess > 0) n = Math.min(n + excess, max)
    const out = terminal.slice(0, n)
    for (const r of out) this.records.delete(r.id)
    return out.map((r) => r.id)
  }
}

type Op =
  | { kind: 'add'; picks: number[]; stepMs: number }
  | { kind: 'transition'; items: Array<{ pick: number; to: IntentState }>; stepMs: number }
  | { kind: 'expire'; secAfter: number; stepMs: number }
  | { kind: 'prune'; stepMs: number }
  | { kind: 'reopen'; stepMs: number }

describe('IntentPool against a naive model (fast-check)', () => {
  let universe: ValidIntent[]
  beforeAll(async () => {
    const specs: IntentSpec[] = []
    for (let u = 0; u < 3; u++) {
      for (let n = 0; n < 7; n++) {
        specs.push({
          account: u,
          nonce: BigInt(n),
          fillDeadline: NOW + 100 + ((u * 7 + n) % 6),
          chains: 1 + (n % 3),
          // Spreads 1000 to 1300 (ties included), and one origin of two for some.
          amount: 10n ** 18n + BigInt(((u * 5 + n) % 4) * 100),
          ...(n % 3 === 2 ? { origin: 901n } : {}),
        })
      }
      // A replay of nonce 0 with other contents.
      specs.push({ account: u, nonce: 0n, fillDeadline: NOW + 103, amount: 42n })
    }
    universe = await Promise.all(specs.map(makeIntent))
  })

  it('answers like the model after any sequence of add / transition / expire / prune / reopen', async () => {
    const U = universe.length
    const step = fc.integer({ min: 0, max: 1500 })
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 5,
        arbitrary: fc.record({
          kind: fc.constant('add' as const),
          picks: fc.array(fc.nat(U - 1), { minLength: 1, maxLength: 5 }),
          stepMs: step,
        }),
      },
      {
        weight: 4,
        arbitrary: fc.record({
          kind: fc.constant('transition' as const),
          items: fc.array(fc.record({ pick: fc.nat(U - 1), to: fc.constantFrom(...INTENT_STATES) }), {
            minLength: 1,
            maxLength: 3,
          }),
          stepMs: step,
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('expire' as const),
          secAfter: fc.integer({ min: 98, max: 108 }),
          stepMs: step,
        }),
      },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('prune' as const), stepMs: step }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('reopen' as const), stepMs: step }) },
    )
    const sizes = universe.map((v) => signedIntentWireSize(v))
    const avg = sizes.reduce((a, b) => a + b, 0) / sizes.length
    // Tight enough that the byte bound, not only the count, decides some adds.
    const maxBytes = Math.floor(avg * 4.5)

    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), async (ops) => {
        const h = new Harness()
        await h.open({ ...MODEL_OPTIONS, maxBytes })
        const model = new Model(maxBytes)
        try {
          for (const o of ops) {
            h.clock.ms += o.stepMs
            const at = h.clock.ms
            switch (o.kind) {
              case 'add': {
                const items = o.picks.map((i) => universe[i]!)
                const want = model.add(items, at)
                const got = await h.pool.addMany(items)
                expect(got.map(simplify)).toEqual(want.map(simplify))
                break
              }
              case 'transition': {
                const reqs = o.items.map((x) => ({ id: universe[x.pick]!.id, to: x.to }))
                const want = model.transitionMany(reqs, at)
                let got: string | undefined
                try {
                  await h.pool.transitionMany(reqs.map((r) => ({ ...r, ...details(r.to) })))
                } catch (e) {
                  got = codeOf(e)
                }
                expect(got).toBe(want)
                break
              }
              case 'expire': {
                const nowSec = NOW + o.secAfter
                expect(await h.pool.expireDue(nowSec)).toEqual(model.expireDue(nowSec, at))
                break
              }
              case 'prune':
                expect(await h.pool.pruneTerminal(at)).toEqual(model.prune(at))
                break
              case 'reopen':
                await h.reopen()
                break
            }
            await compare(h, model)
          }
          await checkIndexes(h)
        } finally {
          await h.close()
        }
      }),
      { numRuns: 100 },
    )
  })

  function simplify(r: AddResult): string {
    return typeof r === 'string' ? r : r.code
  }

  async function compare(h: Harness, model: Model): Promise<void> {
    const { pool } = h
    for (const v of universe) {
      const m = model.records.get(v.id)
      expect(pool.has(v.id)).toBe(m !== undefined)
      expect(pool.stateOf(v.id)).toBe(m?.state)
      expect(pool.isNonceUsed(v.order.user, v.order.nonce)).toBe(
        model.nonces.has(nonceKey(v.order.user, v.order.nonce)),
      )
    }
    const live = model.live()
    const stats = pool.stats()
    expect(stats.count).toBe(live.length)
    expect(stats.bytes).toBe(live.reduce((n, r) => n + r.bytes, 0))
    expect(stats.bytes).toBeLessThanOrEqual(model.maxBytes)
    expect(stats.count).toBeLessThanOrEqual(MODEL_OPTIONS.maxCount)
    for (const s of INTENT_STATES) {
      expect(stats.byState[s]).toBe([...model.records.values()].filter((r) => r.state === s).length)
    }
    const pending = [...model.records.values()]
      .filter((r) => r.state === 'pending')
      .sort((a, b) => a.receivedAtMs - b.receivedAtMs || (a.id < b.id ? -1 : 1))
      .map((r) => r.id)
    expect(pool.pendingIds().sort()).toEqual([...pending].sort())
    expect((await pool.pending(100)).map((r) => r.id)).toEqual(pending)
    const records = await pool.getMany([...model.records.keys()])
    for (const r of records) {
      const m = model.records.get(r!.id)!
      expect(r!.history.map((x) => x.state)).toEqual(m.history)
      expect(r!.receivedAtMs).toBe(m.receivedAtMs)
    }
  }
})
