import { StandardMerkleTree } from '@openzeppelin/merkle-tree'
import type { Address, Hex } from 'viem'
import { type PrivateKeyAccount, privateKeyToAccount } from 'viem/accounts'
import { beforeAll, describe, expect, it } from 'vitest'
import { networkDomain } from '../src/codec/eip712.ts'
import { buildOrder, decodeOrderData, intentId, type SignedIntent, signOrder } from '../src/codec/intent.ts'
import {
  type Block,
  type BlockFill,
  blockHash,
  type CommitCertificate,
  certificateFromVotes,
  decodeBlock,
  decodeCertificate,
  encodeBlock,
  encodeCertificate,
  MAX_BLOCK_BYTES,
  verifyCertificate,
} from '../src/consensus/block.ts'
import {
  CONSENSUS_MESSAGE_MAX_BYTES,
  type ConsensusMessage,
  type ConsensusValidationContext,
  consensusMessageCodec,
  validateConsensusMessage,
} from '../src/consensus/messages.ts'
import {
  type SignedVote,
  signProposal,
  signVote,
  verifyVoteSignature,
  voteDigest,
} from '../src/consensus/votes.ts'
import { recoverAddress } from '../src/crypto/recover.ts'
import { P2PError } from '../src/errors.ts'
import { parseGenesis } from '../src/node/genesis.ts'
import {
  FILL_TYPES,
  type Fill,
  FillBlocks,
  type FillChain,
  type FillVerdict,
  fillCall,
  type SignedFill,
  signFill,
} from '../src/rollups/fill.ts'
import { encodeObservations } from '../src/rollups/observation.ts'
import { DEFAULT_ROUTE_PARAMS, type PoolMember, routeIntents } from '../src/rollups/router.ts'
import { apply } from '../src/state/apply.ts'
import { genesisState } from '../src/state/genesis.ts'
import { activeValidators, commitView, votingPowers } from '../src/state/plan.ts'
import { type PendingIntent, proposeBlock } from '../src/state/propose.ts'
import { LEAF_ENCODING, settlementLeaves } from '../src/state/settlement.ts'
import { appStateOps, loadAppState, validatorsToJson } from '../src/state/storage.ts'
import type { Store } from '../src/state/store.ts'
import { type AppState, expectedOutputOf } from '../src/state/types.ts'
import { type ValidateBlockContext, validateBlock } from '../src/state/validate.ts'
import { type CommitSpec, commitFor, firstBlock, observation } from './helpers/commit.ts'
import { tempStore } from './helpers/store.ts'

const NETWORK = 'apply-test'
const NOW_MS = 1_900_000_000_000
const NOW_SEC = NOW_MS / 1000
const key = (i: number): Hex => `0x${(BigInt(i) * 104729n + 7n).toString(16).padStart(64, '0')}`
const VALIDATORS: PrivateKeyAccount[] = [1, 2, 3, 4].map((i) => privateKeyToAccount(key(i)))
const USER = privateKeyToAccount(key(99))
const OUTSIDER = privateKeyToAccount(key(77))
const addr = (a: PrivateKeyAccount) => a.address.toLowerCase() as Address

const GENESIS = parseGenesis({
  networkId: NETWORK,
  genesisTime: NOW_SEC - 100,
  validators: VALIDATORS.map((v, i) => ({
    address: v.address,
    peerId: `peer-${i}`,
    stake: '100',
    pools: [901, 902],
  })),
  rollups: [
    { chainId: 901, name: 'alpha', type: 'optimistic', securityBps: 8000 },
    { chainId: 902, name: 'beta', type: 'zk', securityBps: 9500 },
  ],
  params: { maxClockSkewSec: 30, blockIntervalMs: 500, healthFreshnessMs: 5000, fillTimeoutSec: 30 },
})

const FEES = (chainId: bigint) => ({ baseFeeWei: chainId === 901n ? 1_000_000_000n : 2_000_000_000n })

/**
 * The commit of `state`'s head: every validator precommits at `atMs` (so the next block's time is
 * `atMs`) observing both rollups; `down` lists (validator index, chain) observing that chain down.
 */
function commit(
  state: AppState,
  atMs: number,
  down: Array<[number, bigint]> = [],
  spec: CommitSpec = {},
): Promise<CommitCertificate> {
  return commitFor(state, VALIDATORS, { timestampMs: atMs, down, observe: (_, c) => FEES(c), ...spec })
}

let nonce = 1n
async function makeIntent(over: Partial<Parameters<typeof buildOrder>[0]> = {}): Promise<PendingIntent> {
  const order = buildOrder({
    user: USER.address,
    nonce: nonce++,
    originChainId: 1n,
    openDeadline: NOW_SEC + 120,
    fillDeadline: NOW_SEC + 600,
    inputAmount: 1000n,
    outputAmount: 990n,
    destinationChainIds: [901n, 902n],
    ...over,
  })
  const signature = await signOrder(USER, order)
  return { id: intentId(order), intent: { order, signature } }
}

const validFill = async (): Promise<FillVerdict> => 'valid'
function ctx(over: Partial<ValidateBlockContext> = {}): ValidateBlockContext {
  return { nowMs: NOW_MS, verifyFill: validFill, ...over }
}

async function expectInvalid(state: AppState, block: Block, code: string, c: ValidateBlockContext = ctx()) {
  const v = await validateBlock(state, block, { ...c, nowMs: block.time })
  expect(v.ok ? 'ok' : v.code).toBe(code)
}

let state0: AppState
let block1: Block
let state1: AppState
let pending: PendingIntent[]
let commit1: CommitCertificate
let block2: Block
let state2: AppState

beforeAll(async () => {
  state0 = genesisState(GENESIS)
  // Block 1 carries no commit, so every rollup is down in its view: nothing is routed before block 2.
  ;({ block: block1, state: state1 } = firstBlock(state0, VALIDATORS[0]!, NOW_MS - 1000))
  pending = []
  for (let i = 0; i < 6; i++) pending.push(await makeIntent())
  commit1 = await commit(state1, NOW_MS)
  block2 = proposeBlock(state1, pending, commit1, [], NOW_MS, { proposer: addr(VALIDATORS[0]!), round: 0 })
  state2 = apply(state1, block2).state
})

describe('genesis state', () => {
  it('spreads each stake over the pools, sorts validators, and is deterministic', () => {
    expect(state0.height).toBe(0n)
    expect(state0.lastBlockHash).toBe(state0.genesisHash)
    expect(state0.lastBlockTime).toBe((NOW_SEC - 100) * 1000)
    const addrs = state0.validators.map((v) => v.address)
    expect(addrs).toEqual([...addrs].sort())
    for (const v of state0.validators) {
      expect(v.power).toBe(100n)
      expect([...v.pools]).toEqual([
        [901n, 50n],
        [902n, 50n],
      ])
    }
    expect(genesisState(GENESIS).genesisHash).toBe(state0.genesisHash)
    expect(genesisState({ ...GENESIS, networkId: 'other' }).genesisHash).not.toBe(state0.genesisHash)
    expect(activeValidators(state0).map((v) => v.power)).toEqual([100n, 100n, 100n, 100n])
    // The genesis set decides block 1; nobody has signed a carried commit yet.
    expect(state0.commitPowers).toEqual(votingPowers(state0))
    expect(state0.signedAt.size).toBe(0)
    expect(state0.params.offlineAfterBlocks).toBe(3)
    expect(
      genesisState({ ...GENESIS, params: { ...GENESIS.params, offlineAfterBlocks: 4 } }).genesisHash,
    ).not.toBe(state0.genesisHash)
  })

  it('gives an odd stake remainder to the lowest chain and adds delegations', () => {
    const g = { ...GENESIS, validators: [{ ...GENESIS.validators[0]!, stake: 101n, pools: [902, 901] }] }
    const s = genesisState({
      ...g,
      delegations: [{ delegator: addr(USER), validator: g.validators[0]!.address, amount: 7n, chainId: 902 }],
    })
    expect([...s.validators[0]!.pools]).toEqual([
      [901n, 51n],
      [902n, 57n],
    ])
    expect(s.validators[0]!.power).toBe(108n)
    expect(validatorsToJson(s)[0]).toEqual({
      address: g.validators[0]!.address,
      peerId: 'peer-0',
      power: '108',
      pools: { '901': '51', '902': '57' },
      jailed: false,
      jailedUntil: null,
      tombstoned: false,
      online: true,
      missedBlocks: 0,
    })
  })
})

describe('proposeBlock, validateBlock, apply', () => {
  it('routes nothing in block 1: it carries no commit, so every rollup is down in its view', async () => {
    expect(block1.height).toBe(1n)
    expect(block1.parentHash).toBe(state0.genesisHash)
    expect(block1.lastCommit).toBeNull()
    expect([...commitView(state0, null).values()].map((h) => h.status)).toEqual(['down', 'down'])
    const withIntents = proposeBlock(state0, pending, null, [], NOW_MS - 1000, {
      proposer: addr(VALIDATORS[0]!),
      round: 0,
    })
    expect(withIntents.assignments).toHaveLength(0)
    expect(await validateBlock(state0, withIntents, ctx({ nowMs: NOW_MS - 1000 }))).toEqual({ ok: true })
    expect(state1.height).toBe(1n)
    expect(state1.assignments.size).toBe(0)
  })

  it('assigns exactly what routeIntents gives over the health view of the last commit', () => {
    expect(block2.height).toBe(2n)
    expect(block2.parentHash).toBe(state1.lastBlockHash)
    expect(block2.lastCommit).toBe(commit1)
    expect(commit1.precommits).toHaveLength(4)
    // The median over the four validators' observations (the same for all here).
    const view = commitView(state1, block2.lastCommit)
    expect([...view].map(([c, h]) => [c, h.status, h.baseFeeWei, h.gasUsedRatioBps])).toEqual([
      [901n, 'up', 1_000_000_000n, 3333],
      [902n, 'up', 2_000_000_000n, 3333],
    ])
    const member = (v: PrivateKeyAccount): PoolMember => ({ validator: addr(v), stake: 50n, outstanding: 0 })
    const pools = new Map([901n, 902n].map((c) => [c, VALIDATORS.map(member)]))
    const routed = routeIntents(
      pending.map((p) => ({
        id: p.id,
        user: addr(USER),
        destinationChainIds: [901n, 902n],
        outputAmount: 990n,
        outputToken: '0x0000000000000000000000000000000000000000' as Address,
      })),
      view,
      new Map(),
      pools,
      DEFAULT_ROUTE_PARAMS,
    )
    expect(routed.assignments).toHaveLength(6)
    expect(block2.assignments.map((a) => [a.intentId, a.chainId, a.executor])).toEqual(
      routed.assignments.map((a) => [a.intentId, a.chainId, a.executor.toLowerCase()]),
    )
    // deadline = block time (s) + fillTimeoutSec, below the intents' fill deadline
    expect(block2.time).toBe(NOW_MS) // the precommits' time
    for (const a of block2.assignments) expect(a.deadline).toBe(BigInt(Math.floor(block2.time / 1000) + 30))
    expect(block2.intents.map((i, k) => intentId(i.order) === block2.assignments[k]!.intentId)).toEqual(
      block2.assignments.map(() => true),
    )
    // spread over executors by work per stake
    expect(new Set(block2.assignments.map((a) => a.executor)).size).toBeGreaterThan(1)
  })

  it('validates its own block, with or without the intents in the local pool', async () => {
    expect(await validateBlock(state0, block1, ctx({ nowMs: block1.time }))).toEqual({ ok: true })
    expect(await validateBlock(state1, block2, ctx())).toEqual({ ok: true })
    expect(await validateBlock(state1, block2, ctx({ isKnownIntent: () => true }))).toEqual({ ok: true })
  })

  it('applies: pending -> assigned for each assignment, new head, who signed', () => {
    const { state, intentTransitions } = apply(state1, block2)
    expect(state.height).toBe(2n)
    expect(state.lastBlockHash).toBe(blockHash(block2))
    expect(state.lastBlockTime).toBe(block2.time)
    expect(intentTransitions).toEqual(
      block2.assignments.map((a) => ({
        id: a.intentId,
        to: 'assigned',
        assignment: { chainId: a.chainId, executor: a.executor, height: 2n, deadline: Number(a.deadline) },
        height: 2n,
      })),
    )
    expect(state.assignments.size).toBe(6)
    const a0 = state.assignments.get(block2.assignments[0]!.intentId)!
    expect(a0.fillDeadline).toBe(BigInt(NOW_SEC + 600))
    expect(a0.recipient).toBe(addr(USER))
    expect(a0.avoid).toEqual([])
    expect(state1.assignments.size).toBe(0) // input untouched
    // Every validator signed the commit of height 1 that block 2 carries.
    expect([...state.signedAt.values()]).toEqual([1n, 1n, 1n, 1n])
    expect(state.commitPowers).toEqual(votingPowers(state1))
  })

  it('is deterministic: the same inputs give the same block hash', async () => {
    // The same precommits collected in another order make the same certificate.
    const sameCommit = await commitFor(state1, [...VALIDATORS].reverse(), {
      timestampMs: NOW_MS,
      observe: (_, c) => FEES(c),
    })
    const again = proposeBlock(state1, [...pending].reverse(), sameCommit, [], NOW_MS + 5000, {
      proposer: addr(VALIDATORS[0]!),
      round: 0,
    })
    // Pending order picks which intents go in (all six here), never how they are routed; the proposer's
    // clock (nowMs) plays no part after block 1.
    expect(blockHash(again)).toBe(blockHash(block2))
  })

  it('accepts a subset of the pending intents (routing a subset gives the same answers)', async () => {
    const sub = proposeBlock(state1, pending.slice(0, 2), commit1, [], NOW_MS, {
      proposer: addr(VALIDATORS[1]!),
      round: 0,
    })
    expect(sub.assignments).toHaveLength(2)
    expect(await validateBlock(state1, sub, ctx())).toEqual({ ok: true })
  })

  it('rejects assignments that differ from the router output', async () => {
    const a0 = block2.assignments[0]!
    const other = VALIDATORS.map(addr).find((v) => v !== a0.executor)!
    const tamper = (over: object) => ({
      ...block2,
      assignments: [{ ...a0, ...over }, ...block2.assignments.slice(1)],
    })
    await expectInvalid(state1, tamper({ executor: other }), 'ROUTE_MISMATCH')
    await expectInvalid(state1, tamper({ chainId: a0.chainId === 901n ? 902n : 901n }), 'ROUTE_MISMATCH')
    await expectInvalid(state1, tamper({ deadline: a0.deadline + 1n }), 'ROUTE_MISMATCH')
    // Reordered assignments are not the router's order.
    const swapped = {
      ...block2,
      assignments: [block2.assignments[1]!, block2.assignments[0]!, ...block2.assignments.slice(2)],
      intents: [block2.intents[1]!, block2.intents[0]!, ...block2.intents.slice(2)],
    }
    await expectInvalid(state1, swapped, 'ROUTE_MISMATCH')
  })

  it('rejects bad intents: forged signature, already assigned, expired, misaligned', async () => {
    const forged: SignedIntent = {
      ...block2.intents[0]!,
      signature: await signOrder(OUTSIDER, block2.intents[0]!.order),
    }
    await expectInvalid(state1, { ...block2, intents: [forged, ...block2.intents.slice(1)] }, 'BAD_INTENT')
    // Known to the local pool: the signature is not checked again.
    const known = await validateBlock(
      state1,
      { ...block2, intents: [forged, ...block2.intents.slice(1)] },
      ctx({ isKnownIntent: () => true }),
    )
    expect(known.ok).toBe(true)
    // Same intents again on top of block 2 (with a valid last commit for it).
    const t3 = block2.time + 1000
    const again = {
      ...block2,
      height: 3n,
      parentHash: state2.lastBlockHash,
      time: t3,
      lastCommit: await commit(state2, t3),
    }
    await expectInvalid(state2, again, 'BAD_INTENT')
    const late = await makeIntent({ openDeadline: NOW_SEC - 10, fillDeadline: NOW_SEC - 1 })
    const lateBlock = proposeBlock(state1, [late], commit1, [], NOW_MS, {
      proposer: addr(VALIDATORS[0]!),
      round: 0,
    })
    expect(lateBlock.assignments).toHaveLength(0)
    await expectInvalid(state1, { ...block2, intents: block2.intents.slice(1) }, 'BAD_INTENT')
  })

  it('checks the header, and the clock at height 1 only', async () => {
    await expectInvalid(state1, { ...block2, height: 3n }, 'BAD_HEIGHT')
    await expectInvalid(state1, { ...block2, parentHash: `0x${'11'.repeat(32)}` }, 'BAD_PARENT')
    await expectInvalid(state1, { ...block2, time: state1.lastBlockTime }, 'BAD_TIME')
    await expectInvalid(state0, { ...block1, time: state0.lastBlockTime }, 'BAD_TIME')
    await expectInvalid(state1, { ...block2, proposer: addr(OUTSIDER) }, 'BAD_PROPOSER')
    // Block 1 has no commit to take a time from: its time must be within the skew of the local clock.
    const skewed = await validateBlock(state0, block1, ctx({ nowMs: block1.time + 30_001 }))
    expect(skewed.ok ? 'ok' : skewed.code).toBe('CLOCK_SKEW')
    expect((await validateBlock(state0, block1, ctx({ nowMs: block1.time + 30_000 }))).ok).toBe(true)
    // Later blocks take the last commit's time, whatever the local clock says.
    expect(await validateBlock(state1, block2, ctx({ nowMs: block2.time + 3_600_000 }))).toEqual({ ok: true })
  })

  it('checks the last commit: none at height 1; at 2, the parent, > 2/3, signed, extensions that decode', async () => {
    const bad = 'BAD_LAST_COMMIT'
    await expectInvalid(state0, { ...block1, lastCommit: commit1 }, bad)
    await expectInvalid(state1, { ...block2, lastCommit: null }, bad)
    // A commit of another block, or of another height.
    const other = { ...commit1, blockHash: `0x${'11'.repeat(32)}` as Hex }
    await expectInvalid(state1, { ...block2, lastCommit: other }, bad)
    await expectInvalid(state1, { ...block2, lastCommit: { ...commit1, height: 2n } }, bad)
    // A precommit twice, a precommit of an outsider, one signed by another validator.
    const [p0, p1, p2] = commit1.precommits
    const twice = { ...commit1, precommits: [p0!, p0!, p1!, p2!] }
    await expectInvalid(state1, { ...block2, lastCommit: twice }, bad)
    const outsider = await commitFor(state1, [...VALIDATORS.slice(0, 3), OUTSIDER], {
      timestampMs: NOW_MS,
      observe: (_, c) => FEES(c),
    })
    await expectInvalid(state1, { ...block2, lastCommit: outsider }, bad)
    const swappedSig = { ...commit1, precommits: [{ ...p0!, signature: p1!.signature }, p1!, p2!] }
    await expectInvalid(state1, { ...block2, lastCommit: swappedSig }, bad)
    // An extension that is not a canonical list of observations (signed as such by its validator).
    const garbage = await signVote(VALIDATORS[0]!, NETWORK, {
      kind: 'precommit',
      height: 1n,
      round: 0,
      blockHash: state1.lastBlockHash,
      timestampMs: NOW_MS,
      extension: new Uint8Array([0xff, 0x00]),
    })
    const rest = commit1.precommits.filter((p) => p.validator !== addr(VALIDATORS[0]!))
    const { validator, signature, timestampMs, extension } = garbage
    const undecodable = {
      ...commit1,
      precommits: [...rest, { validator, signature, timestampMs, extension }].sort((x, y) =>
        x.validator < y.validator ? -1 : 1,
      ),
    }
    await expectInvalid(state1, { ...block2, lastCommit: undecodable }, bad)
  })

  it('refuses a stake move not signed by its staker', async () => {
    const move = {
      move: {
        staker: addr(VALIDATORS[0]!),
        fromChainId: 901n,
        toChainId: 902n,
        amount: 1n,
        durationBlocks: 10n,
        nonce: 1n,
      },
      signature: commit1.precommits[0]!.signature,
    }
    await expectInvalid(state1, { ...block2, stakeMoves: [move] }, 'BAD_STAKE_MOVE')
  })
})

describe('fills', () => {
  async function fillOf(intent: Hex, by: PrivateKeyAccount, executor = addr(by)): Promise<SignedFill> {
    const a = state2.assignments.get(intent)!
    const fill = {
      intentId: intent,
      chainId: a.chainId,
      txHash: `0x${'ab'.repeat(32)}` as Hex,
      blockNumber: 1234n,
      blockHash: `0x${'bc'.repeat(32)}` as Hex,
      executor,
    }
    if (executor === addr(by)) return signFill(by, NETWORK, fill)
    // Signed by `by` while claiming another executor: signFill refuses, so sign the digest directly.
    const signature = (await by.signTypedData({
      domain: networkDomain(NETWORK),
      types: FILL_TYPES,
      primaryType: 'Fill',
      message: fill,
    })) as Hex
    return { fill, signature: signature.toLowerCase() as Hex }
  }
  const account = (a: Address) => VALIDATORS.find((v) => addr(v) === a)!
  const t2 = () => block2.time + 1000

  it('settles an assignment filled by its executor: assigned -> filled', async () => {
    const a = block2.assignments[0]!
    const fill = await fillOf(a.intentId, account(a.executor))
    const r2 = await commit(state2, t2())
    const block3 = proposeBlock(state2, [], r2, [fill], t2(), { proposer: addr(VALIDATORS[1]!), round: 0 })
    expect(block3.fills).toEqual([{ ...fill.fill, signature: fill.signature }])
    expect(await validateBlock(state2, block3, ctx({ nowMs: t2() }))).toEqual({ ok: true })
    // Only a fill this validator verified itself counts: not final yet, RPC down or throwing are not
    // 'valid', so the block is not either; a contradicted fill is FILL_INVALID.
    const verdict = (v: FillVerdict) => async (): Promise<FillVerdict> => v
    await expectInvalid(state2, block3, 'FILL_UNVERIFIED', ctx({ verifyFill: verdict('unknown') }))
    await expectInvalid(state2, block3, 'FILL_UNVERIFIED', ctx({ verifyFill: verdict('pending') }))
    await expectInvalid(state2, block3, 'FILL_INVALID', ctx({ verifyFill: verdict('invalid') }))
    const throwing = async (): Promise<FillVerdict> => {
      throw new Error('rpc down')
    }
    await expectInvalid(state2, block3, 'FILL_UNVERIFIED', ctx({ verifyFill: throwing }))
    // The fill waits: once this validator's RPC confirms it, a later block with the same fill is valid.
    let rpcUp = false
    const flaky = async (): Promise<FillVerdict> => (rpcUp ? 'valid' : 'unknown')
    await expectInvalid(state2, block3, 'FILL_UNVERIFIED', ctx({ verifyFill: flaky }))
    rpcUp = true
    const retried = proposeBlock(state2, [], await commit(state2, t2() + 500), [fill], t2() + 500, {
      proposer: addr(VALIDATORS[1]!),
      round: 1,
    })
    expect(retried.fills).toEqual(block3.fills)
    expect(await validateBlock(state2, retried, ctx({ nowMs: t2() + 500, verifyFill: flaky }))).toEqual({
      ok: true,
    })

    const { state: s3, intentTransitions } = apply(state2, block3)
    expect(intentTransitions).toEqual([
      {
        id: a.intentId,
        to: 'filled',
        fill: { chainId: a.chainId, txHash: fill.fill.txHash, blockNumber: 1234n },
        assignment: { chainId: a.chainId, executor: a.executor, height: 2n, deadline: Number(a.deadline) },
        height: 3n,
      },
    ])
    expect(s3.assignments.has(a.intentId)).toBe(false)
    expect(s3.done.get(a.intentId)).toBe(BigInt(NOW_SEC + 600))
    // A filled intent is never assigned again.
    const again = proposeBlock(
      s3,
      [pending.find((p) => p.id === a.intentId)!],
      await commit(s3, t2() + 1),
      [],
      t2() + 1,
      {
        proposer: addr(VALIDATORS[0]!),
        round: 0,
      },
    )
    expect(again.assignments).toHaveLength(0)
  })

  it('commits the settlement root of its fills; refuses a block whose root differs (BAD_SETTLEMENT_ROOT)', async () => {
    const a = block2.assignments[0]!
    const fill = await fillOf(a.intentId, account(a.executor))
    const r2 = await commit(state2, t2())
    const block3 = proposeBlock(state2, [], r2, [fill], t2(), { proposer: addr(VALIDATORS[1]!), round: 0 })
    // The FILL leaf, from the signed intent itself (not from the state's copy of it).
    const intent = pending.find((p) => p.id === a.intentId)!.intent
    const data = decodeOrderData(intent.order.orderData)
    const leaf = [
      1,
      a.intentId,
      intent.order.originChainId,
      a.chainId,
      a.executor,
      data.outputToken,
      data.outputAmount,
      data.recipient,
    ]
    expect(block3.settlementRoot).toBe(StandardMerkleTree.of([leaf], [...LEAF_ENCODING]).root)
    expect(await validateBlock(state2, block3, ctx({ nowMs: t2() }))).toEqual({ ok: true })
    const zero = `0x${'00'.repeat(32)}` as Hex
    await expectInvalid(
      state2,
      { ...block3, settlementRoot: zero },
      'BAD_SETTLEMENT_ROOT',
      ctx({ nowMs: t2() }),
    )
    // Without fills the root is bytes32(0), and nothing else.
    const empty = proposeBlock(state2, [], r2, [], t2(), { proposer: addr(VALIDATORS[1]!), round: 0 })
    expect(empty.settlementRoot).toBe(zero)
    await expectInvalid(
      state2,
      { ...empty, settlementRoot: block3.settlementRoot },
      'BAD_SETTLEMENT_ROOT',
      ctx({ nowMs: t2() }),
    )
  })

  it('rejects a fill by the wrong executor', async () => {
    const a = block2.assignments[0]!
    const wrong = VALIDATORS.find((v) => addr(v) !== a.executor)!
    const byWrong = await fillOf(a.intentId, wrong)
    const r2 = await commit(state2, t2())
    // The proposer leaves it out...
    const clean = proposeBlock(state2, [], r2, [byWrong], t2(), { proposer: addr(VALIDATORS[1]!), round: 0 })
    expect(clean.fills).toHaveLength(0)
    // ...and a block that carries it is invalid: claimed by the wrong executor, or claiming the right one
    // with the wrong key.
    const asBlockFill = (f: SignedFill): BlockFill => ({ ...f.fill, signature: f.signature })
    await expectInvalid(state2, { ...clean, fills: [asBlockFill(byWrong)] }, 'BAD_FILL')
    const impersonated = await fillOf(a.intentId, wrong, a.executor)
    await expectInvalid(state2, { ...clean, fills: [asBlockFill(impersonated)] }, 'BAD_FILL')
    // Wrong chain.
    const good = await fillOf(a.intentId, account(a.executor))
    await expectInvalid(
      state2,
      { ...clean, fills: [{ ...asBlockFill(good), chainId: a.chainId === 901n ? 902n : 901n }] },
      'BAD_FILL',
    )
    // No open assignment.
    const stray = { ...asBlockFill(good), intentId: `0x${'77'.repeat(32)}` as Hex }
    await expectInvalid(state2, { ...clean, fills: [stray] }, 'BAD_FILL')
  })

  it('takes the fill of an executor the intent was taken from, relayed (signed) by the assignee', async () => {
    const a = block2.assignments[0]!
    const [from, third] = VALIDATORS.filter((v) => addr(v) !== a.executor)
    // The intent was taken from `from` (late, offline or gone); its fill through the destination's
    // settler (which takes one fill of an order) landed and was never announced.
    const settlement = { settler: `0x${'51'.repeat(20)}`, lightClient: `0x${'1c'.repeat(20)}` }
    const moved: AppState = {
      ...state2,
      rollups: state2.rollups.map((r) => ({ ...r, settlement })) as AppState['rollups'],
      assignments: new Map(state2.assignments).set(a.intentId, {
        ...state2.assignments.get(a.intentId)!,
        avoid: [addr(from!)],
      }),
    }
    const relayed = await fillOf(a.intentId, account(a.executor), addr(from!))
    const r2 = await commit(moved, t2())
    const block3 = proposeBlock(moved, [], r2, [relayed], t2(), { proposer: addr(VALIDATORS[1]!), round: 0 })
    expect(block3.fills).toEqual([{ ...relayed.fill, signature: relayed.signature }])
    expect(await validateBlock(moved, block3, ctx({ nowMs: t2() }))).toEqual({ ok: true })
    expect(settlementLeaves(moved, block3.fills)[0]!.executor).toBe(addr(from!))
    // Relayed by anyone else (neither its executor nor the assignee): refused.
    const byThird = await fillOf(a.intentId, third!, addr(from!))
    await expectInvalid(
      moved,
      { ...block3, fills: [{ ...byThird.fill, signature: byThird.signature }] },
      'BAD_FILL',
    )
  })
})

describe('a Byzantine proposer and fills', () => {
  // A rollup as an honest validator's RPC shows it: head 1240, block 1234 holds the real fill of
  // intent `a` by its executor, block 1233 another transaction of that executor.
  const hashOf = (n: bigint) => `0x${n.toString(16).padStart(64, '0')}` as Hex
  const account = (x: Address) => VALIDATORS.find((v) => addr(v) === x)!
  const t2 = () => block2.time + 1000
  let down = false
  let a: (typeof block2.assignments)[number]
  let chain: FillChain
  let realTx: Hex

  beforeAll(() => {
    a = block2.assignments[0]!
    const expected = expectedOutputOf(state2.assignments.get(a.intentId)!)
    const txOf = (hash: Hex, call: { to: Address; value: bigint; data: Hex }) => ({
      tx: {
        hash,
        from: a.executor,
        to: call.to,
        value: call.value,
        input: call.data,
        chainId: Number(a.chainId),
      },
      status: 'success',
    })
    realTx = `0x${'a1'.repeat(32)}`
    const blocks = new Map([
      [1233n, [txOf(`0x${'a0'.repeat(32)}`, { to: expected.recipient, value: 1n, data: '0x' })]],
      [1234n, [txOf(realTx, fillCall(a.intentId, expected))]],
    ])
    const answer = <T>(v: T) => (down ? Promise.reject(new Error('rpc down')) : Promise.resolve(v))
    chain = {
      getBlockNumber: () => answer(1240n),
      getBlock: ({ blockNumber }: { blockNumber: bigint }) =>
        answer({ hash: hashOf(blockNumber), transactions: (blocks.get(blockNumber) ?? []).map((t) => t.tx) }),
      getBlockReceipts: ({ blockNumber }: { blockNumber: bigint }) =>
        answer(
          (blocks.get(blockNumber) ?? []).map((t) => ({
            transactionHash: t.tx.hash,
            blockHash: hashOf(blockNumber),
            status: t.status,
            logs: [],
          })),
        ),
    } as unknown as FillChain
  })

  /** The honest validator's check: its own RPC (the chain above), as node/consensus.ts wires it. */
  function honest(): ValidateBlockContext {
    const blocks = new FillBlocks(chain)
    return ctx({ nowMs: t2(), verifyFill: (f, expected) => blocks.verify(f.fill, expected) })
  }

  /** The block a proposer that is `a`'s executor builds around a fill it signed for itself. */
  async function blockWith(over: Partial<Fill>): Promise<Block> {
    const fill = await signFill(account(a.executor), NETWORK, {
      intentId: a.intentId,
      chainId: a.chainId,
      txHash: realTx,
      blockNumber: 1234n,
      blockHash: hashOf(1234n),
      executor: a.executor,
      ...over,
    })
    const block = proposeBlock(state2, [], await commit(state2, t2()), [fill], t2(), {
      proposer: a.executor,
      round: 0,
    })
    expect(block.fills).toHaveLength(1)
    return block
  }

  it('the real fill passes; an invented one, or a real transaction in another block, does not', async () => {
    expect(await validateBlock(state2, await blockWith({}), honest())).toEqual({ ok: true })
    const invented = await blockWith({ txHash: `0x${'ee'.repeat(32)}` })
    await expectInvalid(state2, invented, 'FILL_INVALID', honest())
    const elsewhere = await blockWith({ blockNumber: 1233n, blockHash: hashOf(1233n) })
    await expectInvalid(state2, elsewhere, 'FILL_INVALID', honest())
    const madeUpBlock = await blockWith({ blockHash: `0x${'ee'.repeat(32)}` })
    await expectInvalid(state2, madeUpBlock, 'FILL_INVALID', honest())
    // A block the honest validator's RPC has not reached (or not finalised): not accepted either.
    const future = await blockWith({ blockNumber: 1250n, blockHash: hashOf(1250n) })
    await expectInvalid(state2, future, 'FILL_UNVERIFIED', honest())
  })

  it('an invented fill is not accepted while the validator cannot reach the rollup', async () => {
    down = true
    try {
      await expectInvalid(
        state2,
        await blockWith({ txHash: `0x${'ee'.repeat(32)}` }),
        'FILL_UNVERIFIED',
        honest(),
      )
      await expectInvalid(state2, await blockWith({}), 'FILL_UNVERIFIED', honest())
    } finally {
      down = false
    }
  })
})

describe('failover', () => {
  it('re-routes the assignments of a rollup that went down: assigned -> assigned', async () => {
    const t = block2.time + 2000
    // Two of four validators (1/2 of the stake > 1/3) say 901 is down.
    const r = await commit(state2, t, [
      [0, 901n],
      [1, 901n],
    ])
    const block3 = proposeBlock(state2, [], r, [], t, { proposer: addr(VALIDATORS[2]!), round: 0 })
    const on901 = block2.assignments.filter((a) => a.chainId === 901n)
    expect(on901.length).toBeGreaterThan(0)
    expect(block3.reassignments.map((a) => a.intentId)).toEqual(on901.map((a) => a.intentId))
    expect(block3.reassignments.every((a) => a.chainId === 902n)).toBe(true)
    expect(await validateBlock(state2, block3, ctx({ nowMs: t }))).toEqual({ ok: true })
    // Leaving one out is a mismatch: the re-routing set is not the proposer's choice.
    await expectInvalid(state2, { ...block3, reassignments: block3.reassignments.slice(1) }, 'ROUTE_MISMATCH')
    const { state: s3, intentTransitions } = apply(state2, block3)
    expect(intentTransitions.map((x) => [x.id, x.to, x.reason])).toEqual(
      on901.map((a) => [a.intentId, 'assigned', 'rollup-down']),
    )
    for (const a of on901) expect(s3.assignments.get(a.intentId)!.chainId).toBe(902n)
  })

  it('sends assignments back to pending when no rollup is up', async () => {
    const t = block2.time + 2000
    const r = await commit(state2, t, [
      [0, 901n],
      [1, 901n],
      [0, 902n],
      [1, 902n],
    ])
    const block3 = proposeBlock(state2, [await makeIntent()], r, [], t, {
      proposer: addr(VALIDATORS[2]!),
      round: 0,
    })
    expect(block3.assignments).toHaveLength(0)
    expect(block3.reassignments).toHaveLength(0)
    expect(await validateBlock(state2, block3, ctx({ nowMs: t }))).toEqual({ ok: true })
    const { state: s3, intentTransitions } = apply(state2, block3)
    expect(intentTransitions.every((x) => x.to === 'pending' && x.reason === 'rollup-down')).toBe(true)
    expect(intentTransitions).toHaveLength(6)
    expect(s3.assignments.size).toBe(0)
  })

  it('re-routes an assignment whose deadline passed, and expires intents past their fill deadline', async () => {
    const t = block2.time + 31_000 + 1000
    const r = await commit(state2, t)
    const block3 = proposeBlock(state2, [], r, [], t, { proposer: addr(VALIDATORS[3]!), round: 0 })
    expect(block3.reassignments).toHaveLength(6)
    expect(await validateBlock(state2, block3, ctx({ nowMs: t }))).toEqual({ ok: true })
    const { intentTransitions } = apply(state2, block3)
    expect(new Set(intentTransitions.map((x) => `${x.to}/${x.reason}`))).toEqual(
      new Set(['assigned/fill-timeout']),
    )

    const tLate = (NOW_SEC + 601) * 1000
    const rLate = await commit(state2, tLate)
    const block4 = proposeBlock(state2, [], rLate, [], tLate, { proposer: addr(VALIDATORS[3]!), round: 0 })
    expect(block4.reassignments).toHaveLength(0)
    const { state: s4, intentTransitions: expired } = apply(state2, block4)
    expect(expired.map((x) => x.to)).toEqual(Array(6).fill('expired'))
    expect(s4.assignments.size).toBe(0)
    // Finished intents are forgotten once their fill deadline passed (they can never be assigned again).
    expect(s4.done.size).toBe(0)
  })
})

describe('evidence', () => {
  async function equivocation(
    v: PrivateKeyAccount,
    height = 1n,
  ): Promise<{ first: SignedVote; second: SignedVote }> {
    const body = { kind: 'precommit' as const, height, round: 0 }
    return {
      first: await signVote(v, NETWORK, { ...body, blockHash: `0x${'01'.repeat(32)}` }),
      second: await signVote(v, NETWORK, { ...body, blockHash: `0x${'02'.repeat(32)}` }),
    }
  }

  it('tombstones the equivocator and slashes slashDoubleSignBps of its stake', async () => {
    const culprit = VALIDATORS[3]!
    const ev = await equivocation(culprit)
    const t = block2.time + 1000
    const r = await commit(state2, t)
    const block3 = proposeBlock(state2, [], r, [], t, {
      proposer: addr(VALIDATORS[0]!),
      round: 0,
      evidence: [ev, ev],
    })
    expect(block3.evidence).toEqual([ev])
    expect(await validateBlock(state2, block3, ctx({ nowMs: t }))).toEqual({ ok: true })
    const s3 = apply(state2, block3).state
    const v = s3.validators.find((x) => x.address === addr(culprit))!
    expect(v.jailed).toBe(true)
    expect(v.tombstoned).toBe(true)
    // 5 % (genesis default slashDoubleSignBps 500) off each pool, rounded down: 50 -> 47.
    expect(v.power).toBe(94n)
    expect([...v.pools.values()]).toEqual([47n, 47n])
    // The voting set changes only at epoch boundaries: until then it votes, but is skipped as proposer.
    expect(activeValidators(s3).map((x) => x.id)).toContain(addr(culprit))
    expect(votingPowers(s3).size).toBe(4)
    // Jailed once: the same evidence again is not valid, and the proposer drops it.
    const t3 = t + 1000
    const block4 = proposeBlock(s3, [], await commit(s3, t3), [], t3, {
      proposer: addr(VALIDATORS[0]!),
      round: 0,
      evidence: [ev],
    })
    expect(block4.evidence).toHaveLength(0)
    await expectInvalid(s3, { ...block4, evidence: [ev] }, 'BAD_EVIDENCE')
    // Until the epoch boundary (genesis epochBlocks, default 100) the set that decides blocks still holds
    // it, so the commits blocks carry may hold its precommit, and may leave it out.
    expect(s3.commitPowers.has(addr(culprit))).toBe(true)
    const s4 = apply(s3, block4).state
    expect(s4.commitPowers.has(addr(culprit))).toBe(true)
    const t4 = t3 + 1000
    const withCulprit = proposeBlock(s4, [], await commit(s4, t4), [], t4, {
      proposer: addr(VALIDATORS[0]!),
      round: 0,
    })
    await expectInvalid(s4, withCulprit, 'ok')
    const without = await commit(s4, t4, [], { omit: [3] })
    await expectInvalid(s4, { ...withCulprit, lastCommit: without }, 'ok')
  })

  it('rejects evidence that is forged or not an equivocation', async () => {
    const t = block2.time + 1000
    const base = proposeBlock(state2, [], await commit(state2, t), [], t, {
      proposer: addr(VALIDATORS[0]!),
      round: 0,
    })
    const ev = await equivocation(VALIDATORS[3]!)
    const byOther = await signVote(VALIDATORS[2]!, NETWORK, { ...ev.second })
    await expectInvalid(
      state2,
      { ...base, evidence: [{ ...ev, second: { ...byOther, validator: addr(VALIDATORS[3]!) } }] },
      'BAD_EVIDENCE',
    )
    await expectInvalid(
      state2,
      { ...base, evidence: [{ first: ev.first, second: ev.first }] },
      'BAD_EVIDENCE',
    )
    await expectInvalid(
      state2,
      { ...base, evidence: [await equivocation(VALIDATORS[3]!, 3n)] },
      'BAD_EVIDENCE',
    )
    expect(await verifyVoteSignature(NETWORK, ev.first)).toBe(true)
    expect(await verifyVoteSignature('other-net', ev.first)).toBe(false)
  })
})

describe('block and certificate codecs', () => {
  it('round-trips a block; one encoding, one hash', () => {
    expect(decodeBlock(encodeBlock(block1))).toEqual(block1) // no last commit
    const bytes = encodeBlock(block2)
    const back = decodeBlock(bytes)
    expect(back).toEqual(block2)
    expect(blockHash(back)).toBe(blockHash(block2))
    expect(bytes.length).toBeLessThan(MAX_BLOCK_BYTES)
    expect(CONSENSUS_MESSAGE_MAX_BYTES).toBe(MAX_BLOCK_BYTES + 1024)
    // Each block object is encoded once: again, the same bytes; a decoded block keeps its own.
    expect(encodeBlock(block2)).toBe(bytes)
    expect(encodeBlock(back)).toEqual(bytes)
    expect(encodeBlock(back)).toBe(encodeBlock(back))
    // Another block (a copy with one field changed) is encoded on its own.
    const other = { ...block2, time: block2.time + 1 }
    expect(encodeBlock(other)).not.toEqual(bytes)
    expect(decodeBlock(encodeBlock(other))).toEqual(other)
  })

  it('refuses non-canonical, truncated and oversized encodings', () => {
    const bytes = encodeBlock(block2)
    const code = (f: () => unknown) => {
      try {
        f()
        return 'ok'
      } catch (err) {
        return err instanceof P2PError ? err.code : String(err)
      }
    }
    // version 5, array(9), height as bytes(1) 0x02, then round 0 as 0x00: write it as 0x18 0x00 instead.
    expect([...bytes.subarray(0, 5)]).toEqual([6, 0x89, 0x41, 0x02, 0x00])
    const nonMinimal = Buffer.concat([bytes.subarray(0, 4), Buffer.from([0x18, 0x00]), bytes.subarray(5)])
    expect(code(() => decodeBlock(nonMinimal))).toBe('DECODE')
    expect(code(() => decodeBlock(bytes.subarray(0, bytes.length - 3)))).toBe('DECODE')
    expect(code(() => decodeBlock(Buffer.concat([bytes, Buffer.from([0x00])])))).toBe('DECODE')
    // A version 1 block (health reports, no last commit) is not read as a version 2 one.
    expect(code(() => decodeBlock(Buffer.concat([Buffer.from([1]), bytes.subarray(1)])))).toBe('DECODE')
    const big = new Uint8Array(MAX_BLOCK_BYTES + 1)
    big[0] = 1
    expect(code(() => decodeBlock(big))).toBe('TOO_LARGE')
  })

  it('verifies certificates: > 2/3 of the power of distinct validators, signed for this target', async () => {
    const hash = blockHash(block1)
    const votes = await Promise.all(
      VALIDATORS.map((v) =>
        signVote(v, NETWORK, { kind: 'precommit', height: 1n, round: 0, blockHash: hash }),
      ),
    )
    const powers = votingPowers(state0)
    const three = certificateFromVotes(votes.slice(0, 3))
    expect(three.precommits.map((p) => p.validator)).toEqual(
      [...three.precommits.map((p) => p.validator)].sort(),
    )
    expect(await verifyCertificate(three, powers, 1n, 0, hash, NETWORK)).toEqual({
      ok: true,
      power: 300n,
      total: 400n,
    })
    const code = async (c: typeof three, h = hash, net = NETWORK) => {
      const v = await verifyCertificate(c, powers, 1n, 0, h, net)
      return v.ok ? 'ok' : v.code
    }
    expect(await code(certificateFromVotes(votes.slice(0, 2)))).toBe('NO_QUORUM')
    expect(await code(three, `0x${'33'.repeat(32)}`)).toBe('WRONG_TARGET')
    expect(await code(three, hash, 'other-net')).toBe('BAD_SIGNATURE')
    expect(
      await code({ ...three, precommits: [...three.precommits.slice(0, 2), three.precommits[0]!] }),
    ).toBe('DUPLICATE_SIGNER')
    const outsider = await signVote(OUTSIDER, NETWORK, {
      kind: 'precommit',
      height: 1n,
      round: 0,
      blockHash: hash,
    })
    expect(await code(certificateFromVotes([...votes.slice(0, 2), outsider]))).toBe('NOT_VALIDATOR')
    // Unequal power: two validators holding 3/4 of the stake are a quorum.
    const weighted = new Map([...powers].map(([a, p], i) => [a, i < 2 ? p * 3n : p]))
    const two = certificateFromVotes(
      votes.filter((v) => [...weighted.keys()].slice(0, 2).includes(v.validator)),
    )
    expect((await verifyCertificate(two, weighted, 1n, 0, hash, NETWORK)).ok).toBe(true)
    // An EIP-712 verifier recomputes the same digest.
    expect(await recoverAddress(voteDigest(NETWORK, votes[0]!), votes[0]!.signature)).toBe(
      addr(VALIDATORS[0]!),
    )
    // Codec, with the precommits' timestamps and extensions.
    expect(decodeCertificate(encodeCertificate(three))).toEqual(three)
    expect(decodeCertificate(encodeCertificate(commit1))).toEqual(commit1)
    expect(commit1.precommits.every((p) => p.timestampMs === NOW_MS && p.extension.length > 0)).toBe(true)
    // The timestamp and the extension are signed: changing either breaks the precommit's signature.
    const c1 = (p: (typeof commit1.precommits)[number]) => ({
      ...commit1,
      precommits: [p, ...commit1.precommits.slice(1)],
    })
    const target = [commit1.height, commit1.round, commit1.blockHash, NETWORK] as const
    const check = (c: typeof commit1) => verifyCertificate(c, votingPowers(state1), ...target)
    expect((await check(commit1)).ok).toBe(true)
    const p0 = commit1.precommits[0]!
    expect(await check(c1({ ...p0, timestampMs: p0.timestampMs + 1 }))).toMatchObject({
      code: 'BAD_SIGNATURE',
    })
    const otherExt = encodeObservations([observation(901n, { status: 2 })])
    expect(await check(c1({ ...p0, extension: otherExt }))).toMatchObject({ code: 'BAD_SIGNATURE' })
  })
})

describe('consensus messages', () => {
  const header = (over: Partial<ConsensusValidationContext> = {}): ConsensusValidationContext => ({
    networkId: NETWORK,
    height: 1n,
    round: 0,
    validators: votingPowers(state0),
    maxHeightsAhead: 4,
    maxRoundsAhead: 8,
    ...over,
  })
  const result = (r: { result: string; code?: string }) =>
    r.result === 'ACCEPT' ? 'ACCEPT' : `${r.result}:${r.code}`

  it('round-trips proposals and votes; a proposal must sign its block hash', async () => {
    const hash = blockHash(block1)
    const proposal = await signProposal(VALIDATORS[0]!, NETWORK, {
      height: 1n,
      round: 0,
      blockHash: hash,
      validRound: -1,
    })
    const pmsg: ConsensusMessage = { type: 'proposal', proposal, block: encodeBlock(block1) }
    expect(consensusMessageCodec.decode(consensusMessageCodec.encode(pmsg))).toEqual(pmsg)
    const vote = await signVote(VALIDATORS[1]!, NETWORK, {
      kind: 'prevote',
      height: 1n,
      round: 0,
      blockHash: null,
    })
    const vmsg: ConsensusMessage = { type: 'vote', vote }
    expect(consensusMessageCodec.decode(consensusMessageCodec.encode(vmsg))).toEqual(vmsg)
    const lying = await signProposal(VALIDATORS[0]!, NETWORK, {
      height: 1n,
      round: 0,
      blockHash: `0x${'44'.repeat(32)}`,
      validRound: -1,
    })
    expect(() =>
      consensusMessageCodec.decode(
        consensusMessageCodec.encode({ type: 'proposal', proposal: lying, block: encodeBlock(block1) }),
      ),
    ).toThrow(P2PError)
  })

  it('validates: ACCEPT, REJECT bad signature / non-validator / wrong proposer, IGNORE old and far-future', async () => {
    const vote = (v: PrivateKeyAccount, height: bigint, round = 0) =>
      signVote(v, NETWORK, { kind: 'prevote', height, round, blockHash: null })
    const msg = async (v: PrivateKeyAccount, height: bigint, round = 0): Promise<ConsensusMessage> => ({
      type: 'vote',
      vote: await vote(v, height, round),
    })
    const ok = await msg(VALIDATORS[0]!, 1n)
    expect(result(await validateConsensusMessage(ok, header()))).toBe('ACCEPT')
    const forged: ConsensusMessage = {
      type: 'vote',
      vote: { ...(await vote(VALIDATORS[1]!, 1n)), validator: addr(VALIDATORS[0]!) },
    }
    expect(result(await validateConsensusMessage(forged, header()))).toBe('REJECT:BAD_SIGNATURE')
    expect(result(await validateConsensusMessage(ok, header({ networkId: 'other' })))).toBe(
      'REJECT:BAD_SIGNATURE',
    )
    expect(result(await validateConsensusMessage(await msg(OUTSIDER, 1n), header()))).toBe(
      'REJECT:NOT_VALIDATOR',
    )
    expect(
      result(await validateConsensusMessage(await msg(VALIDATORS[0]!, 3n), header({ height: 5n }))),
    ).toBe('IGNORE:STALE')
    expect(
      result(await validateConsensusMessage(await msg(VALIDATORS[0]!, 4n), header({ height: 5n }))),
    ).toBe('ACCEPT')
    expect(result(await validateConsensusMessage(await msg(VALIDATORS[0]!, 6n), header()))).toBe(
      'IGNORE:FUTURE_HEIGHT',
    )
    expect(result(await validateConsensusMessage(await msg(VALIDATORS[0]!, 5n), header()))).toBe('ACCEPT')
    expect(result(await validateConsensusMessage(await msg(VALIDATORS[0]!, 1n, 9), header()))).toBe(
      'IGNORE:FUTURE_ROUND',
    )
    const hash = blockHash(block1)
    const proposal = await signProposal(VALIDATORS[1]!, NETWORK, {
      height: 1n,
      round: 0,
      blockHash: hash,
      validRound: -1,
    })
    const pmsg: ConsensusMessage = { type: 'proposal', proposal, block: encodeBlock(block1) }
    expect(
      result(await validateConsensusMessage(pmsg, header({ proposer: () => addr(VALIDATORS[0]!) }))),
    ).toBe('REJECT:WRONG_PROPOSER')
    expect(
      result(await validateConsensusMessage(pmsg, header({ proposer: () => addr(VALIDATORS[1]!) }))),
    ).toBe('ACCEPT')
    expect(result(await validateConsensusMessage(pmsg, header({ height: 2n })))).toBe('IGNORE:STALE')
  })
})

describe('storage', () => {
  const temp = tempStore('murmur-app-')
  let store: Store
  beforeAll(() => {
    store = temp.store
  })

  it('loads genesis when empty, then exactly what the batch ops saved', async () => {
    expect(await loadAppState(store, GENESIS)).toEqual(state0)
    await store.batch(appStateOps(state0, state1))
    expect(await loadAppState(store, GENESIS)).toEqual(state1)
    // Block 2: assignments, and who signed the commit it carries (signedAt, commitPowers).
    await store.batch(appStateOps(state1, state2))
    const loaded2 = await loadAppState(store, GENESIS)
    expect(loaded2).toEqual(state2)
    expect(loaded2.signedAt.size).toBe(4)
    // Next block: one fill, evidence; only what changed is written.
    const a = block2.assignments[0]!
    const execAccount = VALIDATORS.find((v) => addr(v) === a.executor)!
    const fill = await signFill(execAccount, NETWORK, {
      intentId: a.intentId,
      chainId: a.chainId,
      txHash: `0x${'cd'.repeat(32)}`,
      blockNumber: 9n,
      blockHash: `0x${'de'.repeat(32)}`,
      executor: a.executor,
    })
    const t = block2.time + 1000
    const ev = {
      first: await signVote(VALIDATORS[2]!, NETWORK, {
        kind: 'prevote',
        height: 1n,
        round: 0,
        blockHash: null,
      }),
      second: await signVote(VALIDATORS[2]!, NETWORK, {
        kind: 'prevote',
        height: 1n,
        round: 0,
        blockHash: `0x${'05'.repeat(32)}`,
      }),
    }
    const block3 = proposeBlock(state2, [], await commit(state2, t), [fill], t, {
      proposer: addr(VALIDATORS[0]!),
      round: 0,
      evidence: [ev],
    })
    const state3 = apply(state2, block3).state
    const ops = appStateOps(state2, state3)
    expect(ops.map((o) => `${o.type}:${o.key.slice(0, 2)}`).sort()).toEqual([
      'del:a/',
      'put:d/',
      'put:me',
      'put:re',
      'put:st',
    ])
    await store.batch(ops)
    expect(await loadAppState(store, GENESIS)).toEqual(state3)
    await expect(loadAppState(store, { ...GENESIS, networkId: 'another' })).rejects.toMatchObject({
      code: 'CORRUPT',
    })
  })
})
