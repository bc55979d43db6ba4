/**
 * Offline validators (issue 9, item 4), derived from the commits blocks carry: a validator whose
 * precommit none of the last `offlineAfterBlocks` (3) carried commits holds is offline. The router gives
 * it no new work, its open assignments move in the block that carries the third missed commit (reason
 * EXECUTOR_OFFLINE, pool transition 'executor-offline') and never come back to it; once a carried commit
 * holds its precommit again it is back.
 */
import fc from 'fast-check'
import type { Address, Hex } from 'viem'
import type { PrivateKeyAccount } from 'viem/accounts'
import { beforeAll, describe, expect, it } from 'vitest'
import { buildOrder, intentId, signOrder } from '../src/codec/intent.ts'
import type { Block } from '../src/consensus/block.ts'
import { fastAccount } from '../src/crypto/sign.ts'
import { parseGenesis } from '../src/node/genesis.ts'
import { apply } from '../src/state/apply.ts'
import { genesisState } from '../src/state/genesis.ts'
import { missesAValidator, offlineValidators, planBlock, poolView } from '../src/state/plan.ts'
import type { PendingIntent } from '../src/state/propose.ts'
import { appStateOps, loadAppState } from '../src/state/storage.ts'
import type { AppState } from '../src/state/types.ts'
import { validateBlock } from '../src/state/validate.ts'
import { type CommitSpec, commitFor, firstBlock, nextBlock, signerAddress } from './helpers/commit.ts'
import { tempStore } from './helpers/store.ts'

const NETWORK = 'offline-test'
const key = (i: number): Hex => `0x${(BigInt(i) * 32_452_843n + 5n).toString(16).padStart(64, '0')}`
const ACCOUNTS: PrivateKeyAccount[] = [1, 2, 3, 4, 5, 6].map((i) => fastAccount(key(i)))
const VALIDATORS = ACCOUNTS.slice(0, 4)
const V3 = signerAddress(VALIDATORS[3]!)
// A fixed clock and fixed intents: the scenario routes the same way on every run.
const START_MS = 1_900_000_000_000
const START_SEC = START_MS / 1000
const USER = fastAccount(key(99))
const ROLLUPS = [
  { chainId: 901, name: 'alpha', type: 'optimistic' as const, securityBps: 8000 },
  { chainId: 902, name: 'beta', type: 'zk' as const, securityBps: 9500 },
]

const GENESIS = parseGenesis({
  networkId: NETWORK,
  genesisTime: Math.floor(START_MS / 1000) - 100,
  validators: VALIDATORS.map((v, i) => ({
    address: v.address,
    peerId: `p${i}`,
    stake: '100',
    pools: [901, 902],
  })),
  rollups: ROLLUPS,
})

async function intentNo(n: number): Promise<PendingIntent> {
  const order = buildOrder({
    user: USER.address,
    nonce: BigInt(n),
    originChainId: 1n,
    openDeadline: START_SEC + 120,
    fillDeadline: START_SEC + 600,
    inputAmount: 1000n,
    outputAmount: 990n,
    destinationChainIds: [901n, 902n],
  })
  return { id: intentId(order), intent: { order, signature: await signOrder(USER, order) } }
}

/** Intents signed once; each test (and property run) starts from a fresh state, so they can be reused. */
let INTENTS: PendingIntent[] = []
beforeAll(async () => {
  INTENTS = await Promise.all(Array.from({ length: 16 }, (_, n) => intentNo(n)))
})

async function valid(state: AppState, block: Block): Promise<string> {
  const v = await validateBlock(state, block, { nowMs: block.time, verifyFill: async () => 'valid' })
  return v.ok ? 'ok' : v.code
}

/** The blocks of the scenario (from block 1) and the states after them (index = height). */
interface Chain {
  readonly blocks: Block[]
  readonly states: AppState[]
}
const blockAt = (c: Chain, height: number) => c.blocks[height - 1]!

/** Appends the next block (commit of the head per `spec`), after checking honest validators accept it. */
async function grow(c: Chain, spec: CommitSpec = {}, pending: readonly PendingIntent[] = []): Promise<Block> {
  const head = c.states.at(-1)!
  const { block, state } = await nextBlock(head, VALIDATORS, spec, { pending })
  expect(await valid(head, block)).toBe('ok')
  c.blocks.push(block)
  c.states.push(state)
  return block
}

/**
 * Block 1; block 2 (commit 1 by all) assigns 8 intents, two per validator; block 3 carries commit 2 by
 * all; v3 then stops signing: blocks 4, 5, 6 carry commits 3, 4, 5 without it.
 */
async function scenario(): Promise<Chain> {
  const s0 = genesisState(GENESIS)
  const first = firstBlock(s0, VALIDATORS[0]!, START_MS)
  const c: Chain = { blocks: [first.block], states: [s0, first.state] }
  await grow(c, {}, INTENTS.slice(0, 8))
  await grow(c)
  for (let h = 4; h <= 6; h++) await grow(c, { omit: [3] })
  return c
}

const openOf = (s: AppState, executor: Address) =>
  [...s.assignments.values()].filter((a) => a.executor === executor)

describe('offline validators', () => {
  const temp = tempStore('murmur-offline-')
  let c: Chain
  beforeAll(async () => {
    c = await scenario()
  })

  it('is offline once 3 consecutive carried commits miss its precommit, not before', () => {
    expect(openOf(c.states[3]!, V3)).toHaveLength(2)
    expect(c.states[3]!.signedAt.get(V3)).toBe(2n)
    // Missing from commits 3 and 4 (carried by blocks 4 and 5): still online.
    expect(offlineValidators(c.states[4]!, 4n)).toEqual(new Set())
    expect(offlineValidators(c.states[5]!, 5n)).toEqual(new Set())
    // Missing from commits 3, 4 and 5: offline after block 6 (what the driver skips as proposer of 7).
    expect(c.states[6]!.signedAt.get(V3)).toBe(2n)
    expect(offlineValidators(c.states[6]!, 6n)).toEqual(new Set([V3]))
    // The others signed every commit.
    for (const v of VALIDATORS.slice(0, 3)) expect(c.states[6]!.signedAt.get(signerAddress(v))).toBe(5n)
  })

  it('makes a block missing it from its last commit worth proposing at once, until it is offline', async () => {
    // The proposer does not wait for the empty-block interval while a validator is on its way to
    // offline (app/application.ts); once it is offline, the network keeps its normal pace.
    expect(missesAValidator(c.states[3]!, await commitFor(c.states[3]!, VALIDATORS))).toBe(false)
    for (const h of [3, 4, 5]) {
      const lc = blockAt(c, h + 1).lastCommit
      expect(lc?.precommits.map((p) => p.validator)).not.toContain(V3)
      expect(missesAValidator(c.states[h]!, lc ?? null)).toBe(true)
    }
    // Offline after block 6: missing it again is no news, an idle network idles (no race through its
    // missed-blocks window to a downtime jail).
    const s6 = c.states[6]!
    expect(offlineValidators(s6, 6n)).toEqual(new Set([V3]))
    expect(missesAValidator(s6, await commitFor(s6, VALIDATORS.slice(0, 3)))).toBe(false)
    // Jailed: no news either.
    const jailed = {
      ...s6,
      validators: s6.validators.map((v) => (v.address === V3 ? { ...v, jailed: true } : v)),
    }
    expect(missesAValidator(jailed, await commitFor(s6, VALIDATORS.slice(0, 3)))).toBe(false)
  })

  it('leaves it out of the pool view: no new assignments', async () => {
    const s6 = c.states[6]!
    const offline = offlineValidators(s6, 6n)
    for (const members of poolView(s6, [], offline).values())
      expect(members.map((m) => m.validator)).not.toContain(V3)
    for (const members of poolView(s6, []).values()) expect(members.map((m) => m.validator)).toContain(V3)
    const lc = await commitFor(s6, VALIDATORS, { omit: [3] })
    const plan = planBlock(s6, s6.lastBlockTime + 1000, lc, new Set())
    expect(plan.offline).toEqual(new Set([V3]))
    for (const members of plan.pools.values()) expect(members.map((m) => m.validator)).not.toContain(V3)
    // Although it has the least work, none of 4 new intents goes to it.
    const { block } = await nextBlock(s6, VALIDATORS, { omit: [3] }, { pending: INTENTS.slice(8, 12) })
    expect(block.assignments).toHaveLength(4)
    expect(block.assignments.map((a) => a.executor)).not.toContain(V3)
    // A block that gives it one is not the router's.
    const a0 = block.assignments[0]!
    const tampered = { ...block, assignments: [{ ...a0, executor: V3 }, ...block.assignments.slice(1)] }
    expect(await valid(s6, tampered)).toBe('ROUTE_MISMATCH')
  })

  it('moves its open assignments in the block carrying the third missed commit, reason EXECUTOR_OFFLINE', async () => {
    const mine = openOf(c.states[3]!, V3).map((a) => a.intentId)
    // Blocks 4 and 5 leave them where they are.
    expect(blockAt(c, 4).reassignments).toHaveLength(0)
    expect(blockAt(c, 5).reassignments).toHaveLength(0)
    const b6 = blockAt(c, 6)
    expect(b6.reassignments.map((a) => a.intentId)).toEqual(mine)
    expect(b6.reassignments.map((a) => a.executor)).not.toContain(V3)
    const { intentTransitions } = apply(c.states[5]!, b6)
    expect(intentTransitions.map((t) => [t.id, t.to, t.reason])).toEqual(
      mine.map((id) => [id, 'assigned', 'executor-offline']),
    )
    const s6 = c.states[6]!
    expect(openOf(s6, V3)).toHaveLength(0)
    for (const id of mine) expect(s6.assignments.get(id)!.avoid).toEqual([V3])
    // Leaving them in place is not valid.
    expect(await valid(c.states[5]!, { ...b6, reassignments: [] })).toBe('ROUTE_MISMATCH')
  })

  it('keeps the executors to avoid in the stored state', async () => {
    const { store } = temp
    await store.batch(appStateOps(undefined, c.states[6]!))
    const loaded = await loadAppState(store, GENESIS)
    expect(loaded).toEqual(c.states[6]!)
    const mine = openOf(c.states[3]!, V3).map((a) => a.intentId)
    expect(loaded.assignments.get(mine[0]!)!.avoid).toEqual([V3])
  })
  it('is back once a carried commit holds its precommit again; what it lost never returns to it', async () => {
    const chain: Chain = { blocks: [...c.blocks], states: [...c.states] }
    const mine = openOf(c.states[3]!, V3).map((a) => a.intentId)
    // Block 7 carries commit 6, signed by v3 again: back in the pool views, with no work at all.
    await grow(chain)
    const s7 = chain.states[7]!
    expect(s7.signedAt.get(V3)).toBe(6n)
    expect(offlineValidators(s7, 7n)).toEqual(new Set())
    expect(openOf(s7, V3)).toHaveLength(0)
    // New work may go to it: with the least work, it takes the first new intent.
    const { block: withNew } = await nextBlock(s7, VALIDATORS, {}, { pending: INTENTS.slice(8, 9) })
    expect(withNew.assignments.map((a) => a.executor)).toEqual([V3])
    // The chain the moved assignments sit on goes down (every validator sees it): they move again, never
    // back to v3 although it has the least work.
    const chainId = s7.assignments.get(mine[0]!)!.chainId
    const b8 = await grow(chain, { down: [0, 1, 2, 3].map((i) => [i, chainId] as const) })
    const again = b8.reassignments.filter((a) => mine.includes(a.intentId))
    expect(again.length).toBeGreaterThan(0)
    for (const a of again) expect(a.executor).not.toBe(V3)
    // v3 serves the other chain again (the avoid list is per assignment, not a ban).
    const other = chainId === 901n ? 902n : 901n
    const plan8 = planBlock(chain.states[7]!, b8.time, b8.lastCommit, new Set())
    expect(plan8.pools.get(other)!.map((m) => m.validator)).toContain(V3)
    for (const a of chain.states[8]!.assignments.values()) expect(a.avoid).not.toContain(a.executor)
  })

  it('property: over random pools and offline sets, offline executors lose their work and never get it back', async () => {
    const arb = fc
      .record({
        n: fc.integer({ min: 4, max: 6 }),
        stakes: fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 6, maxLength: 6 }),
        // 0: pools on 901, 1: on 902, 2: on both.
        pools: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 6, maxLength: 6 }),
        offline: fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }),
        intents: fc.integer({ min: 1, max: 12 }),
        downChain: fc.constantFrom(901n, 902n),
      })
      .filter(({ n, stakes, offline }) => {
        const total = stakes.slice(0, n).reduce((a, x) => a + x, 0)
        const off = stakes.slice(0, n).reduce((a, x, i) => a + (offline[i] ? x : 0), 0)
        return off > 0 && off * 3 < total
      })
    await fc.assert(
      fc.asyncProperty(arb, async ({ n, stakes, pools, offline, intents, downChain }) => {
        const accounts = ACCOUNTS.slice(0, n)
        const genesis = parseGenesis({
          networkId: NETWORK,
          genesisTime: Math.floor(START_MS / 1000) - 100,
          validators: accounts.map((v, i) => ({
            address: v.address,
            peerId: `p${i}`,
            stake: String(stakes[i]!),
            pools: [[901], [902], [901, 902]][pools[i]!]!,
          })),
          rollups: ROLLUPS,
        })
        const off = accounts.map((_, i) => i).filter((i) => offline[i])
        const offAddrs = new Set(off.map((i) => signerAddress(accounts[i]!)))
        let s = firstBlock(genesisState(genesis), accounts[0]!, START_MS).state
        const step = async (spec: CommitSpec, pending: readonly PendingIntent[] = []) => {
          const r = await nextBlock(s, accounts, spec, { pending })
          const before = s
          s = r.state
          return { block: r.block, before }
        }
        await step({}, INTENTS.slice(0, intents)) // block 2, commit 1 by all
        const held = [...s.assignments.values()]
          .filter((a) => offAddrs.has(a.executor))
          .map((a) => a.intentId)
        await step({ omit: off }) // 3
        await step({ omit: off }) // 4
        for (const id of held) expect(offAddrs.has(s.assignments.get(id)!.executor)).toBe(true)
        const { block: b5, before } = await step({ omit: off }) // 5: the third missed commit
        expect(await valid(before, b5)).toBe('ok')
        for (const a of [...b5.assignments, ...b5.reassignments]) expect(offAddrs.has(a.executor)).toBe(false)
        for (const id of held) {
          const a = s.assignments.get(id)
          // Moved to someone else, or back to pending when nobody else serves its rollups.
          if (a !== undefined) {
            expect(offAddrs.has(a.executor)).toBe(false)
            expect(offAddrs.has(a.avoid[0]!)).toBe(true)
          }
        }
        // They sign again (back online, no work: the least loaded), then a rollup goes down for everyone.
        await step({})
        expect(offlineValidators(s, s.height)).toEqual(new Set())
        await step({ down: accounts.map((_, i) => [i, downChain] as const) })
        for (const a of s.assignments.values()) expect(a.avoid).not.toContain(a.executor)
      }),
      { numRuns: 25 },
    )
  })
})
