import fc from 'fast-check'
import { pino } from 'pino'
import { type Address, type Hex, hashTypedData } from 'viem'
import type { PrivateKeyAccount } from 'viem/accounts'
import { beforeAll, describe, expect, it } from 'vitest'
import { networkDomain, STAKE_MOVE_TYPES } from '../src/codec/eip712.ts'
import { type Block, blockToJson, decodeBlock, encodeBlock } from '../src/consensus/block.ts'
import { signVote } from '../src/consensus/votes.ts'
import { recoverAddress } from '../src/crypto/recover.ts'
import { fastAccount } from '../src/crypto/sign.ts'
import { parseGenesis } from '../src/node/genesis.ts'
import { TOPICS } from '../src/node/topics.ts'
import { parseTopic, topicString } from '../src/p2p/topics.ts'
import { StakeLedger, stakingToJson, totalStake, validateStakeMove } from '../src/staking/ledger.ts'
import {
  MAX_STAKE_MOVES_IN_FORCE,
  type SignedStakeMove,
  STAKE_MOVE_MAX_DURATION_BLOCKS,
  type StakeMove,
  signStakeMove,
  stakeMoveId,
  stakeMoveTypedData,
} from '../src/staking/moves.ts'
import { StakingService, signedStakeMoveToJson } from '../src/staking/service.ts'
import { type StakeMessage, stakeMoveCodec } from '../src/staking/wire.ts'
import { apply } from '../src/state/apply.ts'
import { genesisState } from '../src/state/genesis.ts'
import { planBlock, votingPowers } from '../src/state/plan.ts'
import { proposeBlock } from '../src/state/propose.ts'
import { appStateOps, loadAppState } from '../src/state/storage.ts'
import type { BatchOp, Store } from '../src/state/store.ts'
import type { AppState } from '../src/state/types.ts'
import { type ValidateBlockContext, validateBlock } from '../src/state/validate.ts'
import { commitFor } from './helpers/commit.ts'
import { tempStore } from './helpers/store.ts'

const NETWORK = 'staking-test'
const NOW_MS = 1_900_000_000_000
const key = (i: number): Hex => `0x${(BigInt(i) * 7919n + 13n).toString(16).padStart(64, '0')}`
// fastAccount (native secp256k1): every block after the first carries four signed precommits.
const VALIDATORS: PrivateKeyAccount[] = [1, 2, 3, 4].map((i) => fastAccount(key(i)))
const OUTSIDER = fastAccount(key(77))
const addr = (a: PrivateKeyAccount) => a.address.toLowerCase() as Address
const V0 = VALIDATORS[0]!
const V1 = VALIDATORS[1]!

const GENESIS = parseGenesis({
  networkId: NETWORK,
  genesisTime: NOW_MS / 1000 - 100,
  validators: VALIDATORS.map((v, i) => ({
    address: v.address,
    peerId: `peer-${i}`,
    stake: '100',
    pools: [901, 902],
  })),
  rollups: [
    { chainId: 901, name: 'alpha', type: 'optimistic', securityBps: 8000 },
    { chainId: 902, name: 'beta', type: 'zk', securityBps: 9500 },
    { chainId: 903, name: 'gamma', type: 'zk', securityBps: 9500 },
  ],
  // Pair cap above MAX_STAKE_MOVES_IN_FORCE, so that the per-staker bound is the one tested here.
  params: {
    maxClockSkewSec: 30,
    blockIntervalMs: 500,
    healthFreshnessMs: 5000,
    fillTimeoutSec: 30,
    maxEntriesPerPair: 100,
  },
})
const state0 = genesisState(GENESIS)

let nonce = 1n
function move(v: PrivateKeyAccount, over: Partial<StakeMove> = {}): StakeMove {
  return {
    staker: addr(v),
    fromChainId: 901n,
    toChainId: 902n,
    amount: 10n,
    durationBlocks: 5n,
    nonce: nonce++,
    ...over,
  }
}
const sign = (v: PrivateKeyAccount, m: StakeMove) => signStakeMove(v, NETWORK, m)
/** Signed by `by`, whoever the staker is. */
async function forge(by: PrivateKeyAccount, m: StakeMove): Promise<SignedStakeMove> {
  return { move: m, signature: (await by.signTypedData(stakeMoveTypedData(NETWORK, m))) as Hex }
}

const poolsOf = (s: AppState, v: PrivateKeyAccount) =>
  Object.fromEntries(
    [...s.validators.find((x) => x.address === addr(v))!.pools].map(([c, x]) => [String(c), x]),
  )

/**
 * The next block on `s` with these moves (no intents), one second after its parent, carrying the commit
 * of `s`'s head by every validator (none at height 1), and the state after it.
 */
async function step(s: AppState, moves: Iterable<SignedStakeMove> = [], over: Partial<Block> = {}) {
  const time = s.lastBlockTime + 1000
  const lastCommit = s.height === 0n ? null : await commitFor(s, VALIDATORS, { timestampMs: time })
  const proposed = proposeBlock(s, [], lastCommit, [], time, {
    proposer: addr(V0),
    round: 0,
    stakeMoves: moves,
  })
  const block = { ...proposed, ...over }
  return { block, state: apply(s, block).state }
}

function ctx(block: Block, over: Partial<ValidateBlockContext> = {}): ValidateBlockContext {
  return { nowMs: block.time, verifyFill: async () => 'valid', ...over }
}

async function verdict(s: AppState, block: Block, over: Partial<ValidateBlockContext> = {}) {
  const v = await validateBlock(s, block, ctx(block, over))
  return v.ok ? 'ok' : v.code
}

/** A random move, as indexes: staker (of 4 validators), from and to (of 3 chains), amount, duration. */
const moveOp = (maxDuration: bigint) => ({
  staker: fc.integer({ min: 0, max: 3 }),
  from: fc.integer({ min: 0, max: 2 }),
  to: fc.integer({ min: 0, max: 2 }),
  amount: fc.bigInt({ min: 1n, max: 60n }),
  duration: fc.bigInt({ min: 1n, max: maxDuration }),
})

describe('stake move id and signature', () => {
  it('is the EIP-712 digest under the network domain, and what the staker signs', async () => {
    const m = move(V0)
    const id = stakeMoveId(NETWORK, m)
    expect(id).toBe(
      hashTypedData({
        domain: networkDomain(NETWORK),
        types: STAKE_MOVE_TYPES,
        primaryType: 'StakeMove',
        message: m,
      }),
    )
    expect(stakeMoveId('other-network', m)).not.toBe(id)
    const s = await sign(V0, m)
    expect(await recoverAddress(id, s.signature)).toBe(addr(V0))
    await expect(sign(V0, { ...m, staker: addr(V1) })).rejects.toThrow(/not the signing account/)
  })

  it('round-trips through the stake topic codec, canonical bytes only', async () => {
    const s = await sign(V0, move(V0, { amount: 123456789n, nonce: 0n }))
    const bytes = stakeMoveCodec.encode(s)
    expect(stakeMoveCodec.decode(bytes)).toEqual(s)
    expect(bytes.length).toBeLessThanOrEqual(stakeMoveCodec.maxBytes)
    expect(() => stakeMoveCodec.encode({ ...s, signature: '0x12' })).toThrow()
    expect(() => stakeMoveCodec.decode(bytes.subarray(0, bytes.length - 1))).toThrow()
    expect(TOPICS.stake.codec).toBe(stakeMoveCodec)
    expect(parseTopic(topicString(NETWORK, 'stake'), TOPICS)).toEqual({ networkId: NETWORK, name: 'stake' })
    expect(topicString(NETWORK, 'stake')).toBe(`/murmur/${NETWORK}/stake/1`)
  })
})

describe('validateStakeMove', () => {
  const code = async (s: SignedStakeMove, state: AppState = state0) => {
    const v = await validateStakeMove(state, s)
    return v.ok ? 'ok' : v.code
  }

  it('accepts a covered move signed by its validator', async () => {
    const s = await sign(V0, move(V0, { amount: 50n }))
    const v = await validateStakeMove(state0, s)
    expect(v).toEqual({ ok: true, id: stakeMoveId(NETWORK, s.move) })
  })

  it('MALFORMED: same chain, zero amount, zero or too long duration, unknown chain, bad fields', async () => {
    expect(await code(await sign(V0, move(V0, { toChainId: 901n })))).toBe('MALFORMED')
    expect(await code(await sign(V0, move(V0, { amount: 0n })))).toBe('MALFORMED')
    expect(await code(await sign(V0, move(V0, { durationBlocks: 0n })))).toBe('MALFORMED')
    expect(
      await code(await sign(V0, move(V0, { durationBlocks: STAKE_MOVE_MAX_DURATION_BLOCKS + 1n }))),
    ).toBe('MALFORMED')
    expect(await code(await sign(V0, move(V0, { durationBlocks: STAKE_MOVE_MAX_DURATION_BLOCKS })))).toBe(
      'ok',
    )
    expect(await code(await sign(V0, move(V0, { toChainId: 999n })))).toBe('MALFORMED')
    expect(await code(await sign(V0, move(V0, { fromChainId: 999n })))).toBe('MALFORMED')
    const s = await sign(V0, move(V0))
    expect(await code({ ...s, signature: '0x1234' })).toBe('MALFORMED')
    const upper = `0x${s.move.staker.slice(2).toUpperCase()}` as Address
    expect(await code({ ...s, move: { ...s.move, staker: upper } })).toBe('MALFORMED')
  })

  it('BAD_SIGNATURE: not signed by the staker', async () => {
    expect(await code(await forge(OUTSIDER, move(V0)))).toBe('BAD_SIGNATURE')
    expect(await code(await forge(V1, move(V0)))).toBe('BAD_SIGNATURE')
    const s = await sign(V0, move(V0))
    // A signature that recovers nothing.
    expect(await code({ ...s, signature: `0x${'00'.repeat(65)}` })).toBe('BAD_SIGNATURE')
  })

  it('UNKNOWN_STAKER: not a validator, or jailed', async () => {
    expect(await code(await sign(OUTSIDER, move(OUTSIDER)))).toBe('UNKNOWN_STAKER')
    const jailed: AppState = {
      ...state0,
      validators: state0.validators.map((v) => (v.address === addr(V0) ? { ...v, jailed: true } : v)),
    }
    expect(await code(await sign(V0, move(V0)), jailed)).toBe('UNKNOWN_STAKER')
  })

  it('NONCE_USED: a nonce must be above the highest one the staker used', async () => {
    const used: AppState = { ...state0, stakeNonces: new Map([[addr(V0), 5n]]) }
    expect(await code(await sign(V0, move(V0, { nonce: 5n })), used)).toBe('NONCE_USED')
    expect(await code(await sign(V0, move(V0, { nonce: 4n })), used)).toBe('NONCE_USED')
    expect(await code(await sign(V0, move(V0, { nonce: 6n })), used)).toBe('ok')
    expect(await code(await sign(V0, move(V0, { nonce: 0n })))).toBe('ok') // nothing used yet
    // Another staker's nonces are its own.
    expect(await code(await sign(V1, move(V1, { nonce: 5n })), used)).toBe('ok')
  })

  it('INSUFFICIENT_STAKE: above the pool, or lending stake that is itself on loan', async () => {
    expect(await code(await sign(V0, move(V0, { amount: 51n })))).toBe('INSUFFICIENT_STAKE')
    expect(await code(await sign(V0, move(V0, { amount: 1n, fromChainId: 903n, toChainId: 901n })))).toBe(
      'INSUFFICIENT_STAKE',
    )
    // 30 moved into 902: 902 holds 80, of which 50 can be lent on.
    const { state } = await step(state0, [await sign(V0, move(V0, { amount: 30n }))])
    expect(poolsOf(state, V0)).toEqual({ '901': 20n, '902': 80n })
    expect(
      await code(await sign(V0, move(V0, { fromChainId: 902n, toChainId: 903n, amount: 51n })), state),
    ).toBe('INSUFFICIENT_STAKE')
    expect(
      await code(await sign(V0, move(V0, { fromChainId: 902n, toChainId: 903n, amount: 50n })), state),
    ).toBe('ok')
  })

  it('TOO_MANY_MOVES: a staker has at most MAX_STAKE_MOVES_IN_FORCE moves in force', async () => {
    const dummy = `0x${'11'.repeat(65)}` as Hex
    const moves: SignedStakeMove[] = []
    for (let i = 0; i < MAX_STAKE_MOVES_IN_FORCE; i++) {
      const fromChainId = i % 2 === 0 ? 901n : 902n
      const m = move(V0, { amount: 1n, durationBlocks: 100n, fromChainId, toChainId: 903n })
      moves.push({ move: m, signature: dummy })
    }
    const { block, state } = await step(state0, moves)
    expect(block.stakeMoves).toHaveLength(MAX_STAKE_MOVES_IN_FORCE)
    expect(state.stakeMoves.size).toBe(MAX_STAKE_MOVES_IN_FORCE)
    expect(await code(await sign(V0, move(V0, { amount: 1n })), state)).toBe('TOO_MANY_MOVES')
    expect(await code(await sign(V1, move(V1, { amount: 1n })), state)).toBe('ok')
  })
})

describe('applying moves', () => {
  it('moves stake between pools, keeps power and total, records the move, returns it exactly when due', async () => {
    const s = await sign(V0, move(V0, { amount: 30n, durationBlocks: 3n, nonce: 1000n }))
    const id = stakeMoveId(NETWORK, s.move)
    const { block, state: s1 } = await step(state0, [s])
    expect(block.stakeMoves).toEqual([s])
    expect(poolsOf(s1, V0)).toEqual({ '901': 20n, '902': 80n })
    expect(votingPowers(s1)).toEqual(votingPowers(state0))
    expect(totalStake(s1)).toBe(totalStake(state0))
    expect(s1.stakeNonces.get(addr(V0))).toBe(1000n)
    expect(s1.stakeMoves.get(id)).toEqual({
      id,
      staker: addr(V0),
      validator: addr(V0),
      fromChainId: 901n,
      toChainId: 902n,
      amount: 30n,
      height: 1n,
      untilHeight: 4n,
      targetCongested: false,
    })
    // Others untouched (same objects).
    expect(s1.validators.filter((v) => v.address !== addr(V0))).toEqual(
      state0.validators.filter((v) => v.address !== addr(V0)),
    )
    const s2 = (await step(s1)).state
    const s3 = (await step(s2)).state
    expect(s3.stakeMoves.has(id)).toBe(true)
    expect(poolsOf(s3, V0)).toEqual({ '901': 20n, '902': 80n })
    const s4 = (await step(s3)).state
    expect(s4.height).toBe(4n)
    expect(s4.stakeMoves.size).toBe(0)
    expect(s4.validators).toEqual(state0.validators)
    expect(s4.stakeNonces.get(addr(V0))).toBe(1000n) // the nonce stays used
    expect(await validateStakeMove(s4, s)).toMatchObject({ ok: false, code: 'NONCE_USED' })
  })

  it('makes the validator a pool member of the target for the router, and drops an emptied pool', async () => {
    const s = await sign(
      V1,
      move(V1, { fromChainId: 901n, toChainId: 903n, amount: 50n, durationBlocks: 2n }),
    )
    const { state: s1 } = await step(state0, [s])
    expect(poolsOf(s1, V1)).toEqual({ '902': 50n, '903': 50n })
    const plan = planBlock(s1, s1.lastBlockTime + 1000, await commitFor(s1, VALIDATORS), new Set())
    expect(plan.pools.get(903n)).toEqual([{ validator: addr(V1), stake: 50n, outstanding: 0 }])
    expect(plan.pools.get(901n)!.map((m) => m.validator)).not.toContain(addr(V1))
    const back = (await step((await step(s1)).state)).state
    expect(poolsOf(back, V1)).toEqual({ '901': 50n, '902': 50n })
    const backCommit = await commitFor(back, VALIDATORS)
    expect(planBlock(back, back.lastBlockTime + 1000, backCommit, new Set()).pools.get(903n)).toEqual([])
  })

  it('records whether the target was congested in the health view of the last commit', async () => {
    // Block 1 has no commit (every rollup down, nothing congested): the moves go into block 2.
    const s1 = (await step(state0)).state
    const time = s1.lastBlockTime + 1000
    const gas: Record<string, bigint> = { '902': 27_000_000n, '903': 3_000_000n }
    const lastCommit = await commitFor(s1, VALIDATORS, {
      timestampMs: time,
      observe: (_, c) => ({ gasUsed: gas[String(c)] ?? 10_000_000n }),
    })
    const a = await sign(V0, move(V0, { toChainId: 902n }))
    const b = await sign(V0, move(V0, { toChainId: 903n }))
    const block = proposeBlock(s1, [], lastCommit, [], time, {
      proposer: addr(V0),
      round: 0,
      stakeMoves: [b, a],
    })
    expect(block.stakeMoves).toEqual([a, b]) // nonce order
    expect(await verdict(s1, block)).toBe('ok')
    const s2 = apply(s1, block).state
    expect(s2.stakeMoves.get(stakeMoveId(NETWORK, a.move))!.targetCongested).toBe(true)
    expect(s2.stakeMoves.get(stakeMoveId(NETWORK, b.move))!.targetCongested).toBe(false)
    // In block 1 nothing is congested: its view has every rollup down.
    const c = await sign(V0, move(V0, { toChainId: 902n }))
    const first = (await step(state0, [c])).state
    expect(first.stakeMoves.get(stakeMoveId(NETWORK, c.move))!.targetCongested).toBe(false)
  })

  it('double signing slashes 5 % of the pools and of the loans in force; the slashed loan returns', async () => {
    const culprit = VALIDATORS[3]!
    const s = await sign(culprit, move(culprit, { amount: 31n, durationBlocks: 3n }))
    const s1 = (await step(state0, [s])).state
    expect(poolsOf(s1, culprit)).toEqual({ '901': 19n, '902': 81n })
    const body = { kind: 'precommit' as const, height: 1n, round: 0 }
    const ev = {
      first: await signVote(culprit, NETWORK, { ...body, blockHash: `0x${'01'.repeat(32)}` }),
      second: await signVote(culprit, NETWORK, { ...body, blockHash: `0x${'02'.repeat(32)}` }),
    }
    const time = s1.lastBlockTime + 1000
    // A move of the accused in the same block is refused: its stake is frozen from that block on.
    const late = await sign(culprit, move(culprit, { amount: 1n }))
    const b2 = proposeBlock(s1, [], await commitFor(s1, VALIDATORS, { timestampMs: time }), [], time, {
      proposer: addr(V0),
      round: 0,
      evidence: [ev],
      stakeMoves: [late],
    })
    expect(b2.evidence).toHaveLength(1)
    expect(b2.stakeMoves).toHaveLength(0)
    expect(await verdict(s1, b2)).toBe('ok')
    expect(await verdict(s1, { ...b2, stakeMoves: [late] })).toBe('BAD_STAKE_MOVE')
    const s2 = apply(s1, b2).state
    const v = s2.validators.find((x) => x.address === addr(culprit))!
    expect(v.jailed).toBe(true)
    // floor(x * 9500 / 10000): 19 -> 18, 81 -> 76, the loan 31 -> 29.
    expect(poolsOf(s2, culprit)).toEqual({ '901': 18n, '902': 76n })
    expect(s2.stakeMoves.get(stakeMoveId(NETWORK, s.move))!.amount).toBe(29n)
    const s4 = (await step((await step(s2)).state)).state
    expect(s4.stakeMoves.size).toBe(0)
    expect(poolsOf(s4, culprit)).toEqual({ '901': 47n, '902': 47n })
    expect(totalStake(s4)).toBe(totalStake(s2))
  })

  it('property: random valid moves and heights keep pools >= 0, power and total stake constant', async () => {
    const dummy = `0x${'22'.repeat(65)}` as Hex
    const chains = [901n, 902n, 903n]
    const op = fc.record({ ...moveOp(6n), skip: fc.integer({ min: 0, max: 2 }) })
    const genesisPowers = votingPowers(state0)
    const total = totalStake(state0)
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(op, { maxLength: 5 }), { minLength: 1, maxLength: 25 }),
        async (blocks) => {
          let s = state0
          let n = 0n
          const until: bigint[] = []
          for (const ops of blocks) {
            const moves = ops.map((o) => ({
              move: {
                staker: addr(VALIDATORS[o.staker]!),
                fromChainId: chains[o.from]!,
                toChainId: chains[o.to]!,
                amount: o.amount,
                durationBlocks: o.duration,
                nonce: n++,
              },
              signature: dummy,
            }))
            s = (await step(s, moves)).state
            for (const m of s.stakeMoves.values()) until.push(m.untilHeight)
            for (let k = 0; k < (ops[0]?.skip ?? 0); k++) s = (await step(s)).state
            for (const v of s.validators) {
              for (const x of v.pools.values()) expect(x).toBeGreaterThanOrEqual(0n)
              // Stake on loan into a pool never exceeds the pool.
              const lent = new StakeLedger(s)
              for (const c of chains)
                expect(lent.book.delegations.movable(v.address, v.address, c)).toBeGreaterThanOrEqual(0n)
            }
            expect(votingPowers(s)).toEqual(genesisPowers)
            expect(totalStake(s)).toBe(total)
          }
          let end = 0n
          for (const u of until) if (u > end) end = u
          while (s.height < end) s = (await step(s)).state
          expect(s.stakeMoves.size).toBe(0)
          expect(s.validators).toEqual(state0.validators)
        },
      ),
      { numRuns: 60 },
    )
  })

  it('property: every block the proposer builds from random moves is valid for the others', async () => {
    const dummy = `0x${'33'.repeat(65)}` as Hex
    const chains = [901n, 902n, 903n]
    const op = fc.record(moveOp(4n))
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(op, { maxLength: 6 }), { minLength: 1, maxLength: 12 }),
        async (blocks) => {
          let s = state0
          let n = 0n
          const stakerOf = new Map<string, Address>()
          // Moves carry a dummy signature (their signer is looked up); precommits are really signed.
          const recover = async (digest: Hex, signature: Hex) =>
            stakerOf.get(digest) ??
            (signature === dummy ? OUTSIDER.address : recoverAddress(digest, signature))
          for (const ops of blocks) {
            const moves = ops.map((o) => {
              const m: StakeMove = {
                staker: addr(VALIDATORS[o.staker]!),
                fromChainId: chains[o.from]!,
                toChainId: chains[o.to]!,
                amount: o.amount,
                durationBlocks: o.duration,
                nonce: n++,
              }
              stakerOf.set(stakeMoveId(NETWORK, m), m.staker)
              return { move: m, signature: dummy }
            })
            const { block, state } = await step(s, moves)
            expect(await verdict(s, block, { recover })).toBe('ok')
            // Through the wire and back: the same block.
            expect(decodeBlock(encodeBlock(block))).toEqual(block)
            s = state
          }
        },
      ),
      { numRuns: 40 },
    )
  })
})

describe('validateBlock and proposeBlock with stake moves', () => {
  let a: SignedStakeMove
  let b: SignedStakeMove
  let c: SignedStakeMove
  beforeAll(async () => {
    a = await sign(V0, move(V0, { amount: 30n }))
    b = await sign(V0, move(V0, { amount: 20n, toChainId: 903n }))
    c = await sign(V1, move(V1, { amount: 5n, fromChainId: 902n, toChainId: 901n }))
  })

  it('round trip: the proposer orders valid moves by (staker, nonce), validators accept, apply moves them', async () => {
    const { block, state } = await step(state0, [c, b, a])
    const order = [a, b, c].sort((x, y) =>
      x.move.staker < y.move.staker ? -1 : x.move.staker > y.move.staker ? 1 : 0,
    )
    expect(block.stakeMoves).toEqual(order)
    expect(await verdict(state0, block)).toBe('ok')
    expect(poolsOf(state, V0)).toEqual({ '902': 80n, '903': 20n })
    expect(poolsOf(state, V1)).toEqual({ '901': 55n, '902': 45n })
    expect(totalStake(state)).toBe(totalStake(state0))
    // GET /v1/blocks/:height shows each move with its id.
    const json = blockToJson(block, '0x00' as Hex, null, NETWORK)
    expect(json.stakeMoves[0]).toEqual({
      id: stakeMoveId(NETWORK, block.stakeMoves[0]!.move),
      ...signedStakeMoveToJson(block.stakeMoves[0]!),
    })
  })

  it('refuses a forged move', async () => {
    const forged = await forge(OUTSIDER, move(V0, { amount: 5n }))
    const { block } = await step(state0, [forged]) // the proposer trusts its caller for signatures
    expect(block.stakeMoves).toHaveLength(1)
    expect(await verdict(state0, block)).toBe('BAD_STAKE_MOVE')
  })

  it('refuses an uncovered move, also when two moves of one staker are only covered one at a time', async () => {
    const big = await sign(V0, move(V0, { amount: 51n }))
    const base = (await step(state0)).block
    expect((await step(state0, [big])).block.stakeMoves).toHaveLength(0)
    expect(await verdict(state0, { ...base, stakeMoves: [big] })).toBe('BAD_STAKE_MOVE')
    const x = await sign(V0, move(V0, { amount: 30n }))
    const y = await sign(V0, move(V0, { amount: 30n, toChainId: 903n }))
    expect(await verdict(state0, { ...base, stakeMoves: [x] })).toBe('ok')
    expect(await verdict(state0, { ...base, stakeMoves: [y] })).toBe('ok')
    expect(await verdict(state0, { ...base, stakeMoves: [x, y] })).toBe('BAD_STAKE_MOVE')
    // The proposer keeps the first and leaves the second.
    expect((await step(state0, [y, x])).block.stakeMoves).toEqual([x])
  })

  it('refuses moves out of (staker, nonce) order, duplicates and used nonces', async () => {
    const base = (await step(state0)).block
    expect(await verdict(state0, { ...base, stakeMoves: [b, a] })).toBe('BAD_STAKE_MOVE')
    expect(await verdict(state0, { ...base, stakeMoves: [a, a] })).toBe('BAD_STAKE_MOVE')
    const { state } = await step(state0, [a])
    const next = (await step(state)).block
    expect(await verdict(state, { ...next, stakeMoves: [a] })).toBe('BAD_STAKE_MOVE')
    expect((await step(state, [a])).block.stakeMoves).toHaveLength(0)
  })

  it('lets stake that returns in a block be lent again in that block', async () => {
    const x = await sign(V0, move(V0, { amount: 50n, durationBlocks: 1n }))
    const s1 = (await step(state0, [x])).state
    expect(poolsOf(s1, V0)).toEqual({ '902': 100n })
    const y = await sign(V0, move(V0, { amount: 50n, toChainId: 903n }))
    const { block, state } = await step(s1, [y])
    expect(block.stakeMoves).toEqual([y])
    expect(await verdict(s1, block)).toBe('ok')
    expect(poolsOf(state, V0)).toEqual({ '902': 50n, '903': 50n })
  })
})

describe('storage of stake moves', () => {
  const temp = tempStore('murmur-staking-')
  let store: Store
  beforeAll(() => {
    store = temp.store
  })

  it('persists moves in force and used nonces, and refuses a state of an older layout', async () => {
    const x = await sign(V0, move(V0, { amount: 7n, durationBlocks: 2n }))
    const y = await sign(V1, move(V1, { amount: 9n, durationBlocks: 1n }))
    const s1 = (await step(state0, [x, y])).state
    await store.batch(appStateOps(state0, s1))
    expect(await loadAppState(store, GENESIS)).toEqual(s1)
    const s2 = (await step(s1)).state
    expect(s2.stakeMoves.size).toBe(1)
    const ops = appStateOps(s1, s2)
    expect(ops.filter((o) => o.key.startsWith('m/')).map((o) => o.type)).toEqual(['del'])
    await store.batch(ops)
    expect(await loadAppState(store, GENESIS)).toEqual(s2)
    const s3 = (await step(s2)).state
    await store.batch(appStateOps(s2, s3))
    const loaded = await loadAppState(store, GENESIS)
    expect(loaded).toEqual(s3)
    expect(loaded.stakeMoves.size).toBe(0)
    expect(loaded.stakeNonces.get(addr(V0))).toBe(x.move.nonce)

    // Older layouts (version 2: no commitPowers/signedAt; version 1: no stake moves either) do not load:
    // their blocks have another wire format, the node starts from an empty data dir.
    const meta = appStateOps(undefined, state0)[0] as Extract<BatchOp, { type: 'put' }>
    const { commitPowers: _c, signedAt: _s, ...v2 } = meta.value as Record<string, unknown>
    for (const old of [
      { ...v2, version: 2 },
      { ...v2, version: 1 },
    ]) {
      await store.batch([{ ...meta, value: old }])
      await expect(loadAppState(store, GENESIS)).rejects.toMatchObject({
        code: 'CORRUPT',
        message: expect.stringMatching(/empty data dir/),
      })
    }
  })
})

describe('GET /v1/staking body', () => {
  it('lists pools per rollup with their validators and total, and the moves in force', async () => {
    const x = await sign(V0, move(V0, { amount: 10n, toChainId: 903n, durationBlocks: 4n }))
    const { state } = await step(state0, [x])
    const j = stakingToJson(state)
    expect(j.pools.map((p) => [p.chainId, p.total])).toEqual([
      ['901', '190'],
      ['902', '200'],
      ['903', '10'],
    ])
    expect(j.pools[2]!.validators).toEqual([{ address: addr(V0), stake: '10', jailed: false }])
    expect(j.moves).toEqual([
      {
        id: stakeMoveId(NETWORK, x.move),
        staker: addr(V0),
        validator: addr(V0),
        fromChainId: '901',
        toChainId: '903',
        amount: '10',
        height: '1',
        untilHeight: '5',
        targetCongested: false,
      },
    ])
  })
})

describe('StakingService', () => {
  const log = pino({ level: 'silent' })
  function service() {
    let state: AppState = state0
    const published: StakeMessage[] = []
    const svc = new StakingService(
      { maxPendingPerStaker: 3 },
      {
        networkId: NETWORK,
        state: () => state,
        publish: async (m) => {
          published.push(m)
        },
        log,
      },
    )
    return { svc, published, setState: (s: AppState) => (state = s), getState: () => state }
  }
  const peer = {} as never

  it('POST body: 202 then 200, 400 with the code, 503 when the staker has too many waiting', async () => {
    const { svc, published } = service()
    const s = await sign(V0, move(V0))
    const id = stakeMoveId(NETWORK, s.move)
    expect(await svc.submitJson(signedStakeMoveToJson(s))).toEqual({ status: 202, body: { id } })
    expect(published).toEqual([s])
    expect(await svc.submitJson(signedStakeMoveToJson(s))).toEqual({ status: 200, body: { id } })
    expect(svc.pending()).toEqual([s])
    const codeOf = async (body: unknown) => {
      const r = await svc.submitJson(body)
      return r.status === 400 ? r.body.error.code : r.status
    }
    expect(await codeOf({ move: {}, signature: '0x' })).toBe('MALFORMED')
    expect(await codeOf({ ...signedStakeMoveToJson(s), extra: 1 })).toBe('MALFORMED')
    const j = signedStakeMoveToJson(s)
    expect(await codeOf({ ...j, move: { ...j.move, amount: 10 } })).toBe('MALFORMED') // not a decimal string
    expect(await codeOf(signedStakeMoveToJson(await sign(V0, move(V0, { toChainId: 901n }))))).toBe(
      'MALFORMED',
    )
    expect(await codeOf(signedStakeMoveToJson(await forge(OUTSIDER, move(V0))))).toBe('BAD_SIGNATURE')
    expect(await codeOf(signedStakeMoveToJson(await sign(OUTSIDER, move(OUTSIDER))))).toBe('UNKNOWN_STAKER')
    expect(await codeOf(signedStakeMoveToJson(await sign(V0, move(V0, { amount: 51n }))))).toBe(
      'INSUFFICIENT_STAKE',
    )
    expect(await codeOf(signedStakeMoveToJson(await sign(V1, move(V1, { nonce: 0n }))))).toBe(202)
    expect(await codeOf(signedStakeMoveToJson(await sign(V0, move(V0))))).toBe(202)
    expect(await codeOf(signedStakeMoveToJson(await sign(V0, move(V0))))).toBe(202)
    expect(await codeOf(signedStakeMoveToJson(await sign(V0, move(V0))))).toBe(503)
  })

  it('gossip: REJECT malformed and forged, IGNORE duplicates and state-dependent refusals, ACCEPT the rest', async () => {
    const { svc, setState, getState } = service()
    const result = async (m: SignedStakeMove) => {
      const r = await svc.topicHandler.validate(m, peer)
      return r.result === 'ACCEPT' ? 'ACCEPT' : `${r.result} ${r.code}`
    }
    const s = await sign(V0, move(V0))
    expect(await result(s)).toBe('ACCEPT')
    svc.topicHandler.onMessage?.(s, peer)
    expect(svc.pending()).toEqual([s])
    expect(await result(s)).toBe('IGNORE DUPLICATE')
    expect(await result(await sign(V0, move(V0, { amount: 0n })))).toBe('REJECT MALFORMED')
    expect(await result({ ...s, signature: '0x12' })).toBe('REJECT MALFORMED')
    expect(await result(await forge(V1, move(V0)))).toBe('REJECT BAD_SIGNATURE')
    expect(await result(await sign(OUTSIDER, move(OUTSIDER)))).toBe('IGNORE UNKNOWN_STAKER')
    expect(await result(await sign(V0, move(V0, { amount: 500n })))).toBe('IGNORE INSUFFICIENT_STAKE')
    setState({ ...getState(), stakeNonces: new Map([[addr(V1), 1000n]]) })
    expect(await result(await sign(V1, move(V1, { nonce: 1000n })))).toBe('IGNORE NONCE_USED')
  })

  it('drops committed moves (then answers 200 for them) and pending moves the new state refuses', async () => {
    const { svc, setState } = service()
    const a = await sign(V0, move(V0, { amount: 40n }))
    const b = await sign(V0, move(V0, { amount: 40n, toChainId: 903n })) // covered alone, not after a
    const c = await sign(V1, move(V1))
    for (const m of [a, b, c]) expect((await svc.submitJson(signedStakeMoveToJson(m))).status).toBe(202)
    const { block, state } = await step(state0, [a, c])
    expect(block.stakeMoves).toHaveLength(2)
    setState(state)
    svc.onCommit(block, state)
    expect(svc.pending()).toEqual([])
    expect(await svc.submitJson(signedStakeMoveToJson(a))).toEqual({
      status: 200,
      body: { id: stakeMoveId(NETWORK, a.move) },
    })
    expect((await svc.topicHandler.validate(c, peer)).result).toBe('IGNORE')
  })
})
