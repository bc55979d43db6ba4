/**
 * Planning and decoding once per block (issue 9's latency goal): the plan memo (`planMemo`) gives exactly
 * planBlock's plan and never another block's, vote extensions decoded from a content-keyed cache
 * (`extensionOf`) are what decodeExtension gives, and the application's finalizeBlock takes the block
 * processProposal decoded only when it is the same bytes.
 */
import { Registry } from 'prom-client'
import type { Hex } from 'viem'
import { beforeAll, describe, expect, it } from 'vitest'
import { MurmurApplication } from '../src/app/application.ts'
import { type Block, blockHashOfBytes, type CommitCertificate, decodeBlock } from '../src/consensus/block.ts'
import { IntentPool } from '../src/mempool/pool.ts'
import { decodeExtension, encodeExtension, encodeObservations } from '../src/rollups/observation.ts'
import { apply } from '../src/state/apply.ts'
import { genesisState } from '../src/state/genesis.ts'
import { type BlockPlan, extensionOf, type Planner, planBlock, planMemo } from '../src/state/plan.ts'
import { proposeBlock } from '../src/state/propose.ts'
import type { AppState } from '../src/state/types.ts'
import { validateBlock } from '../src/state/validate.ts'
import { commitFor, firstBlock, observation, signerAddress } from './helpers/commit.ts'
import { testLog, testNetwork } from './helpers/consensus-net.ts'
import { makeIntent, wallet } from './helpers/intents.ts'
import { tempStore } from './helpers/store.ts'

const NET = testNetwork('plan-memo-test', 7_919n)
const VALIDATORS = NET.validators
const START_MS = Date.now()

/** State 2 holds open assignments; `lc` is its commit, as block 3 carries it. */
let state2: AppState
let lc: CommitCertificate
let assigned: Hex[]

beforeAll(async () => {
  const state1 = firstBlock(genesisState(NET.genesis), VALIDATORS[0]!, START_MS).state
  const user = wallet()
  const pending = await Promise.all(
    [0, 1, 2, 3, 4, 5].map(async () => {
      const { intent, id } = await makeIntent(user, { originChainId: 901n, destinationChainIds: [902n] })
      return { id, intent }
    }),
  )
  const block2 = proposeBlock(state1, pending, await commitFor(state1, VALIDATORS), [], START_MS, {
    proposer: signerAddress(VALIDATORS[0]!),
    round: 0,
  })
  state2 = apply(state1, block2).state
  assigned = [...state2.assignments.keys()]
  lc = await commitFor(state2, VALIDATORS)
})

describe('planMemo', () => {
  it("gives planBlock's plan, and the same object for the same state, time, commit and filled set", () => {
    expect(assigned.length).toBeGreaterThan(1)
    const memo = planMemo()
    const t = state2.lastBlockTime + 1000
    const first = memo(state2, t, lc, new Set())
    expect(first).toEqual(planBlock(state2, t, lc, new Set()))
    expect(memo(state2, t, lc, new Set())).toBe(first)
    // The filled set matches by contents, in any order.
    const both = memo(state2, t, lc, new Set([assigned[0]!, assigned[1]!]))
    expect(memo(state2, t, lc, new Set([assigned[1]!, assigned[0]!]))).toBe(both)
  })

  it('plans anew for another filled set, time, commit or state', async () => {
    const memo = planMemo()
    const t = state2.lastBlockTime + 1000
    const base = memo(state2, t, lc, new Set())
    const fresh = (plan: BlockPlan, want: BlockPlan) => {
      expect(plan).not.toBe(base)
      expect(plan).toEqual(want)
    }
    // Filled: the assignment no longer counts as outstanding in the pool view.
    const filled = new Set([assigned[0]!])
    const withFill = memo(state2, t, lc, filled)
    fresh(withFill, planBlock(state2, t, lc, filled))
    expect(withFill).not.toEqual(base)
    // Later than every fill deadline: everything expires.
    const late = t + 7 * 24 * 3600 * 1000
    const expired = memo(state2, late, lc, new Set())
    fresh(expired, planBlock(state2, late, lc, new Set()))
    expect(expired.expired).toEqual([...assigned].sort())
    // Another commit (901 seen down by all): another health view, so everything moves.
    const down = await commitFor(state2, VALIDATORS, { down: [0, 1, 2, 3].map((i) => [i, 901n] as const) })
    const other = memo(state2, t, down, new Set())
    fresh(other, planBlock(state2, t, down, new Set()))
    expect(other.view.get(901n)!.status).toBe('down')
    // An equal commit that is another object is planned again (identity, not contents, is the key).
    const copy = { ...lc, precommits: lc.precommits.map((p) => ({ ...p })) }
    fresh(memo(state2, t, copy, new Set()), base)
    // Another state object forgets the previous state's plans.
    const moved = { ...state2 }
    fresh(memo(moved, t, lc, new Set()), base)
    expect(memo(state2, t, lc, new Set())).not.toBe(base)
  })

  it("lets apply reuse validateBlock's plan and commit the same state as apply alone", async () => {
    const memo = planMemo()
    const plans: BlockPlan[] = []
    const recording: Planner = (...args) => {
      const p = memo(...args)
      plans.push(p)
      return p
    }
    const block3 = proposeBlock(state2, [], lc, [], START_MS, {
      proposer: signerAddress(VALIDATORS[1]!),
      round: 0,
    })
    const v = await validateBlock(state2, block3, {
      nowMs: Date.now(),
      verifyFill: async () => 'valid',
      plan: recording,
    })
    expect(v).toEqual({ ok: true })
    const withMemo = apply(state2, block3, undefined, recording)
    expect(plans).toHaveLength(2)
    expect(plans[1]).toBe(plans[0])
    expect(withMemo).toEqual(apply(state2, block3))
  })
})

describe('extensionOf', () => {
  const observations = [observation(901n), observation(902n, { gasUsed: 20_000_000n })]
  const samples = [
    new Uint8Array(0),
    encodeObservations(observations),
    encodeExtension({
      observations,
      balances: [{ chainId: 902n, token: `0x${'ab'.repeat(20)}`, amount: 5n }],
    }),
    encodeObservations([observation(901n, { status: 2 })]),
  ]

  it('is what decodeExtension gives, decoded once per content', () => {
    for (const bytes of samples) {
      const e = extensionOf(bytes)
      expect(e).toEqual(decodeExtension(bytes))
      expect(extensionOf(Uint8Array.from(bytes))).toBe(e)
    }
    // Two extensions differing in one byte never give each other's observations.
    expect(extensionOf(samples[3]!)).not.toEqual(extensionOf(encodeObservations([observation(901n)])))
  })

  it('is undefined for bytes decodeExtension refuses, and stays right past the cache size', () => {
    const bad = Uint8Array.from([0x83, 0x01, 0x80])
    expect(() => decodeExtension(bad)).toThrow()
    expect(extensionOf(bad)).toBeUndefined()
    expect(extensionOf(Uint8Array.from(bad))).toBeUndefined()
    const many = Array.from({ length: 600 }, (_, i) =>
      encodeObservations([observation(901n, { blockNumber: BigInt(i + 1) })]),
    )
    for (const bytes of many) extensionOf(bytes)
    for (const [i, bytes] of many.entries())
      expect(extensionOf(bytes)?.observations[0]?.blockNumber).toBe(BigInt(i + 1))
  })
})

describe('MurmurApplication: a block decoded once', () => {
  const temp = tempStore('murmur-plan-memo-')
  let app: MurmurApplication
  let pool: IntentPool

  beforeAll(async () => {
    pool = await IntentPool.open(temp.store, {}, { log: testLog, registry: new Registry() })
    app = new MurmurApplication(
      {},
      {
        store: temp.store,
        pool,
        genesis: NET.genesis,
        verifyFill: async () => 'valid',
        pendingFills: () => [],
        log: testLog,
      },
    )
    await app.info()
  })

  const prepare = async (nowMs: number): Promise<{ bytes: Uint8Array; block: Block; hash: Hex }> => {
    const { bytes } = await app.prepareProposal({
      height: 1n,
      round: 0,
      proposer: signerAddress(NET.validators[0]!),
      nowMs,
      misbehavior: [],
    })
    return { bytes, block: decodeBlock(bytes), hash: blockHashOfBytes(bytes) }
  }
  const finalize = (bytes: Uint8Array, hash: Hex) =>
    app.finalizeBlock({
      height: 1n,
      bytes,
      hash,
      certificate: { height: 1n, round: 0, blockHash: hash, precommits: [] },
      source: 'consensus',
    })

  it('finalizeBlock reuses the proposal processProposal judged only for the same bytes', async () => {
    const now = Date.now()
    const a = await prepare(now)
    const b = await prepare(now + 5000)
    expect(a.block.time).not.toBe(b.block.time)
    const judged = await app.processProposal({
      height: 1n,
      round: 0,
      bytes: a.bytes,
      hash: a.hash,
      proposer: a.block.proposer,
      nowMs: now,
    })
    expect(judged).toEqual({ accept: true, time: a.block.time })
    // Other bytes under the judged hash (a caller that did not hash them): the bytes given are decoded.
    const other = await finalize(b.bytes, a.hash)
    expect(other.ok && other.time).toBe(b.block.time)
    // The judged bytes, in another buffer: the judged block.
    const same = await finalize(Uint8Array.from(a.bytes), a.hash)
    expect(same.ok && same.time).toBe(a.block.time)
  })
})
