/**
 * What a block derives from the last commit it carries, so that its proposer alone decides none of it
 * (issue 9, items 2 and 3): the block time is the stake-weighted median of the precommit timestamps (BFT
 * time) and the health view is the stake-weighted median of the validators' observations in the vote
 * extensions. Validators of unequal power (10, 20, 30, 40), so medians and thresholds are by stake.
 */
import fc from 'fast-check'
import type { Address, Hex } from 'viem'
import type { PrivateKeyAccount } from 'viem/accounts'
import { beforeAll, describe, expect, it } from 'vitest'
import type { Block, CommitCertificate } from '../src/consensus/block.ts'
import { fastAccount } from '../src/crypto/sign.ts'
import { parseGenesis } from '../src/node/genesis.ts'
import { encodeObservations } from '../src/rollups/observation.ts'
import { apply } from '../src/state/apply.ts'
import { genesisState } from '../src/state/genesis.ts'
import { commitTime, commitView } from '../src/state/plan.ts'
import { proposeBlock } from '../src/state/propose.ts'
import type { AppState } from '../src/state/types.ts'
import { validateBlock } from '../src/state/validate.ts'
import { type CommitSpec, commitFor, firstBlock, observation, signerAddress } from './helpers/commit.ts'
import { makeIntent, wallet } from './helpers/intents.ts'

const NETWORK = 'last-commit-test'
const key = (i: number): Hex => `0x${(BigInt(i) * 15_485_863n + 3n).toString(16).padStart(64, '0')}`
const VALIDATORS: PrivateKeyAccount[] = [1, 2, 3, 4].map((i) => fastAccount(key(i)))
const POWERS = [10n, 20n, 30n, 40n]
const START_MS = Date.now()

const genesisOf = (powers: readonly bigint[], accounts: readonly PrivateKeyAccount[] = VALIDATORS) =>
  parseGenesis({
    networkId: NETWORK,
    genesisTime: Math.floor(START_MS / 1000) - 100,
    validators: accounts.slice(0, powers.length).map((v, i) => ({
      address: v.address,
      peerId: `peer-${i}`,
      stake: String(powers[i]!),
      pools: [901, 902],
    })),
    rollups: [
      { chainId: 901, name: 'alpha', type: 'optimistic', securityBps: 8000 },
      { chainId: 902, name: 'beta', type: 'zk', securityBps: 9500 },
    ],
  })

/** Power of signer `i` (its stake, split over two pools). */
const powerOf = (i: number) => POWERS[i]!
const TOTAL = 100n

let state1: AppState

beforeAll(() => {
  state1 = firstBlock(genesisState(genesisOf(POWERS)), VALIDATORS[0]!, START_MS).state
})

/** Block 2 proposed by validator 0 over `lastCommit`. */
function block2(lastCommit: CommitCertificate, pending: Parameters<typeof proposeBlock>[1] = []): Block {
  return proposeBlock(state1, pending, lastCommit, [], START_MS + 10_000, {
    proposer: signerAddress(VALIDATORS[0]!),
    round: 0,
  })
}

async function verdict(state: AppState, block: Block): Promise<string> {
  const v = await validateBlock(state, block, { nowMs: Date.now(), verifyFill: async () => 'valid' })
  return v.ok ? 'ok' : v.code
}

const commit = (spec: CommitSpec = {}) => commitFor(state1, VALIDATORS, spec)

describe('BFT time', () => {
  it('is the stake-weighted median of the precommit timestamps, whatever the proposer clock', async () => {
    expect(state1.commitPowers.get(signerAddress(VALIDATORS[3]!))).toBe(40n)
    const t = state1.lastBlockTime
    // v0 (10) at +100, v1 (20) at +200, v2 (30) at +300, v3 (40) at +400: half of 100 is reached at v2,
    // +300 (the median by count would be +200).
    const stamps = [t + 100, t + 200, t + 300, t + 400]
    const lc = await commit({ timestampMs: stamps })
    expect(commitTime(state1, lc)).toBe(t + 300)
    const block = block2(lc)
    expect(block.time).toBe(t + 300)
    expect(await verdict(state1, block)).toBe('ok')
    // The same commit gives the same time to a proposer with any clock.
    const late = proposeBlock(state1, [], lc, [], START_MS + 3_600_000, {
      proposer: signerAddress(VALIDATORS[2]!),
      round: 0,
    })
    expect(late.time).toBe(t + 300)
    // Without v2 (70 left: 10, 20, then 40 reaches half) the median is v3's stamp, +400.
    const without2 = await commit({ omit: [2], timestampMs: stamps })
    expect(commitTime(state1, without2)).toBe(t + 400)
    expect(await verdict(state1, block2(without2))).toBe('ok')
  })

  it('refuses a proposer that sets its own time (BAD_TIME), later or earlier', async () => {
    const t = state1.lastBlockTime
    const block = block2(await commit({ timestampMs: [t + 100, t + 200, t + 300, t + 400] }))
    for (const time of [block.time + 1, block.time - 1, block.time + 30_000, t + 100, t + 200, t + 400])
      expect(await verdict(state1, { ...block, time })).toBe('BAD_TIME')
  })

  it('is at least 1 ms after the parent when the precommits are stamped earlier', async () => {
    const t = state1.lastBlockTime
    const block = block2(await commit({ timestampMs: t - 5000 }))
    expect(block.time).toBe(t + 1)
    expect(await verdict(state1, block)).toBe('ok')
  })

  it('refuses precommits re-stamped by the proposer: the timestamp is signed', async () => {
    const t = state1.lastBlockTime
    const lc = await commit({ timestampMs: t + 200 })
    // Move the median by re-stamping two heavy precommits, and give the block the time that follows.
    const restamped: CommitCertificate = {
      ...lc,
      precommits: lc.precommits.map((p) =>
        p.validator === signerAddress(VALIDATORS[3]!) || p.validator === signerAddress(VALIDATORS[2]!)
          ? { ...p, timestampMs: t + 60_000 }
          : p,
      ),
    }
    expect(commitTime(state1, restamped)).toBe(t + 60_000)
    const block = { ...block2(lc), lastCommit: restamped, time: t + 60_000 }
    expect(await verdict(state1, block)).toBe('BAD_LAST_COMMIT')
  })

  it('needs more than 2/3 of the powers that decided the parent', async () => {
    // Powers 10, 20, 30, 40 of 100.
    const cases: Array<[number[], string]> = [
      [[], 'ok'],
      [[1], 'ok'], // 80
      [[2], 'ok'], // 70
      [[0, 1], 'ok'], // 70
      [[3], 'BAD_LAST_COMMIT'], // 60
      [[0, 2], 'BAD_LAST_COMMIT'], // 60
    ]
    for (const [omit, code] of cases)
      expect([omit, await verdict(state1, block2(await commit({ omit })))]).toEqual([omit, code])
    const none = { ...(await commit()), precommits: [] }
    expect(await verdict(state1, block2(none))).toBe('BAD_LAST_COMMIT')
    // Exactly 2/3 is not more than 2/3: two of three equal validators.
    const three = firstBlock(genesisState(genesisOf([10n, 10n, 10n])), VALIDATORS[0]!, START_MS).state
    const propose = (lc: CommitCertificate) =>
      proposeBlock(three, [], lc, [], 0, { proposer: signerAddress(VALIDATORS[0]!), round: 0 })
    const two = await commitFor(three, VALIDATORS.slice(0, 3), { omit: [2] })
    expect(await verdict(three, propose(two))).toBe('BAD_LAST_COMMIT')
    expect(await verdict(three, propose(await commitFor(three, VALIDATORS.slice(0, 3))))).toBe('ok')
  })

  it('property: for random sets, stamps and subsets over 2/3, it lies between the min and max stamp and after the parent', () => {
    const arb = fc
      .array(
        fc.record({ power: fc.bigInt({ min: 1n, max: 1000n }), stamp: fc.integer({ min: 0, max: 10_000 }) }),
        {
          minLength: 1,
          maxLength: 12,
        },
      )
      .chain((vals) =>
        fc.record({
          vals: fc.constant(vals),
          include: fc.array(fc.boolean(), { minLength: vals.length, maxLength: vals.length }),
          parent: fc.integer({ min: -100, max: 10_100 }),
        }),
      )
    fc.assert(
      fc.property(arb, ({ vals, include, parent }) => {
        const addrOf = (i: number) => `0x${(i + 1).toString(16).padStart(40, '0')}` as Address
        const powers = new Map(vals.map((v, i) => [addrOf(i), v.power]))
        const total = vals.reduce((a, v) => a + v.power, 0n)
        const signers = vals.map((v, i) => ({ ...v, i })).filter((v) => include[v.i])
        const power = signers.reduce((a, v) => a + v.power, 0n)
        fc.pre(power * 3n > total * 2n)
        const base = 1_900_000_000_000
        const state = { ...state1, commitPowers: powers, lastBlockTime: base + parent }
        const lc: CommitCertificate = {
          height: state1.height,
          round: 0,
          blockHash: state1.lastBlockHash,
          precommits: signers.map((v) => ({
            validator: addrOf(v.i),
            signature: `0x${'11'.repeat(65)}`,
            timestampMs: base + v.stamp,
            extension: new Uint8Array(0),
          })),
        }
        const time = commitTime(state, lc)!
        const stamps = signers.map((v) => base + v.stamp)
        const min = Math.min(...stamps)
        const max = Math.max(...stamps)
        expect(time).toBeGreaterThan(state.lastBlockTime)
        expect(time).toBeGreaterThanOrEqual(min)
        if (max > state.lastBlockTime) expect(time).toBeLessThanOrEqual(max)
        else expect(time).toBe(state.lastBlockTime + 1)
        // It is one of the stamps, or the parent's time + 1.
        expect([...stamps, state.lastBlockTime + 1]).toContain(time)
      }),
      { numRuns: 500 },
    )
  })
})

describe('health from the vote extensions', () => {
  const statusOf = (lc: CommitCertificate, chainId = 901n) => commitView(state1, lc).get(chainId)!.status

  it('a rollup is down when observations carrying more than 1/3 of the power say so', async () => {
    // Powers 10, 20, 30, 40 of 100: down needs more than 33.
    const cases: Array<[number[], string]> = [
      [[], 'up'],
      [[0], 'up'],
      [[0, 1], 'up'], // 30
      [[2], 'up'], // 30
      [[3], 'down'], // 40
      [[0, 2], 'down'], // 40
      [[1, 2], 'down'], // 50
    ]
    for (const [who, status] of cases) {
      const lc = await commit({ down: who.map((i) => [i, 901n] as const) })
      expect([who, statusOf(lc), statusOf(lc, 902n)]).toEqual([who, status, 'up'])
    }
    // A rollup nobody observed is down.
    expect(statusOf(await commit({ silent: [0, 1, 2, 3] }))).toBe('down')
    expect(statusOf(await commit({ silent: [0, 1, 2] }))).toBe('up')
  })

  it('figures are stake-weighted medians over the observations of the validators that reach the rollup', async () => {
    const gas = [3_000_000n, 6_000_000n, 9_000_000n, 27_000_000n]
    const lc = await commit({ observe: (i) => ({ gasUsed: gas[i]!, baseFeeWei: BigInt(i + 1) * 10n }) })
    const h = commitView(state1, lc).get(901n)!
    // Cumulative 10, 30, 60 >= 50 at v2.
    expect([h.gasUsed, h.gasUsedRatioBps, h.baseFeeWei]).toEqual([9_000_000n, 3000, 30n])
    // v2 says down: its figures no longer count, the median over v0, v1, v3 (10, 20, 40 of 70) is v3's.
    const down2 = await commit({
      down: [[2, 901n]],
      observe: (i) => ({ gasUsed: gas[i]!, baseFeeWei: BigInt(i + 1) * 10n }),
    })
    expect(commitView(state1, down2).get(901n)!.baseFeeWei).toBe(40n)
  })

  it('a proposer cannot hide a rollup that validators with 2/3 of the power see down', async () => {
    // v2 and v3 (70 of 100) see 901 down. Of the 16 subsets of precommits the proposer could carry,
    // every one honest validators accept (more than 2/3 of the power) shows 901 down.
    const lc = await commit({
      down: [
        [2, 901n],
        [3, 901n],
      ],
    })
    let accepted = 0
    for (let mask = 0; mask < 16; mask++) {
      const kept = lc.precommits.filter((_, i) => mask & (1 << i))
      const block = block2({ ...lc, precommits: kept })
      const v = await verdict(state1, block)
      const weight = VALIDATORS.map((_, i) => i)
        .filter((i) => kept.some((p) => p.validator === signerAddress(VALIDATORS[i]!)))
        .reduce((a, i) => a + powerOf(i), 0n)
      expect(v).toBe(weight * 3n > TOTAL * 2n ? 'ok' : 'BAD_LAST_COMMIT')
      if (v === 'ok') {
        accepted++
        expect(commitView(state1, block.lastCommit).get(901n)!.status).toBe('down')
      }
    }
    expect(accepted).toBe(5) // all four; all but v0, v1 or v2; v2 and v3
  })

  it('(known limit) between 1/3 and 2/3 of the power, the precommits the proposer carries decide', async () => {
    // v1 and v2 (50 of 100) see 901 down. Carrying all four precommits: down. Leaving out v1's
    // (still 80 > 2/3): v2's 30 alone is not more than 1/3, so 901 is up, and the block is valid.
    const lc = await commit({
      down: [
        [1, 901n],
        [2, 901n],
      ],
    })
    expect(statusOf(lc)).toBe('down')
    const dropped = {
      ...lc,
      precommits: lc.precommits.filter((p) => p.validator !== signerAddress(VALIDATORS[1]!)),
    }
    expect(statusOf(dropped)).toBe('up')
    expect(await verdict(state1, block2(dropped))).toBe('ok')
  })

  it('refuses a precommit whose extension the proposer forged (BAD_LAST_COMMIT)', async () => {
    const lc = await commit({ down: [[3, 901n]] })
    expect(statusOf(lc)).toBe('down')
    // v3's observation rewritten to "up": the routing follows, the signature does not.
    const v3 = signerAddress(VALIDATORS[3]!)
    const up = encodeObservations([observation(901n), observation(902n)])
    const forged = {
      ...lc,
      precommits: lc.precommits.map((p) => (p.validator === v3 ? { ...p, extension: up } : p)),
    }
    expect(statusOf(forged)).toBe('up')
    expect(await verdict(state1, block2(forged))).toBe('BAD_LAST_COMMIT')
    // An extension of this validator's own that does not decode is refused too.
    const bytes = {
      ...lc,
      precommits: lc.precommits.map((p) =>
        p.validator === v3 ? { ...p, extension: new Uint8Array([1]) } : p,
      ),
    }
    expect(await verdict(state1, block2(bytes))).toBe('BAD_LAST_COMMIT')
  })

  it("re-routes a down rollup's work by the stake of those who see it down", async () => {
    const user = wallet()
    const pending = await Promise.all([1, 2, 3, 4, 5, 6].map(() => makeIntent(user)))
    // 901 is the cheaper rollup: some of the work goes there.
    const fees = (_: number, c: bigint) => ({ baseFeeWei: c === 901n ? 1_000_000_000n : 2_000_000_000n })
    const b2 = block2(await commit({ observe: fees }), pending)
    expect(b2.assignments).toHaveLength(6)
    const s2 = apply(state1, b2).state
    const on901 = b2.assignments.filter((a) => a.chainId === 901n).map((a) => a.intentId)
    expect(on901.length).toBeGreaterThan(0)
    const next = async (down: number[]) => {
      const lc = await commitFor(s2, VALIDATORS, { down: down.map((i) => [i, 901n] as const), observe: fees })
      const block = proposeBlock(s2, [], lc, [], 0, { proposer: signerAddress(VALIDATORS[1]!), round: 0 })
      expect(await verdict(s2, block)).toBe('ok')
      return block
    }
    // v2 alone (30 of 100): nothing moves. v3 alone (40): everything on 901 moves to 902.
    expect((await next([2])).reassignments).toHaveLength(0)
    const moved = await next([3])
    expect(moved.reassignments.map((a) => a.intentId)).toEqual(on901)
    expect(moved.reassignments.every((a) => a.chainId === 902n)).toBe(true)
    const { intentTransitions } = apply(s2, moved)
    expect(new Set(intentTransitions.map((x) => x.reason))).toEqual(new Set(['rollup-down']))
  })
})
