/**
 * Account messages (Transfer, Delegate, Undelegate, CreateValidator) and stake moves through consensus:
 * each refusal seen at every door (the POST route, the `stake` topic's validator after the wire codec,
 * the proposer, the block check), the block rules (order, rate), what applied messages do to balances,
 * pools, power and the consensus set, unbonding over epoch boundaries, and the stake book in the store.
 * Blocks are built with the pure state functions (test/helpers/stake-chain.ts), signed for real.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { pino } from 'pino'
import type { Address, Hex } from 'viem'
import type { PrivateKeyAccount } from 'viem/accounts'
import { beforeAll, describe, expect, it } from 'vitest'
import { stakingRoutes } from '../src/api/staking.ts'
import { fastAccount } from '../src/crypto/sign.ts'
import { messageTypedData, signTransfer, TRANSFER_KIND, type Transfer } from '../src/staking/accounts.ts'
import { type Delegation, signDelegate, signUndelegate } from '../src/staking/delegations.ts'
import { type SignedStakeMove, type StakeMove, signStakeMove } from '../src/staking/moves.ts'
import { StakingService, signedStakeMoveToJson } from '../src/staking/service.ts'
import {
  type AccountMessage,
  type CreateValidator,
  peerIdBytes,
  signCreateValidator,
} from '../src/staking/validators.ts'
import { type StakeMessage, stakeMoveCodec } from '../src/staking/wire.ts'
import { accountMessageToJson, sortAccountMessages } from '../src/staking/wire-accounts.ts'
import { genesisState } from '../src/state/genesis.ts'
import { appStateOps, loadAppState } from '../src/state/storage.ts'
import type { Store } from '../src/state/store.ts'
import type { AppState } from '../src/state/types.ts'
import { ed25519PeerId, stakeBlock, stakeStep, stakeTestGenesis, testKey } from './helpers/stake-chain.ts'
import { tempStore } from './helpers/store.ts'

const NETWORK = 'account-messages-test'
const NOW_MS = 1_900_000_000_000
const VALIDATORS: PrivateKeyAccount[] = [1, 2, 3, 4].map((i) => fastAccount(testKey(i)))
const [V0, V1] = VALIDATORS as [PrivateKeyAccount, PrivateKeyAccount]
/** Plain accounts: A and B spend, C is the signer of the valid message every refused one travels with,
 * D holds the genesis delegation behind V1, E creates a validator. */
const [A, B, C, D, E] = [11, 12, 13, 14, 15].map((i) => fastAccount(testKey(i))) as [
  PrivateKeyAccount,
  PrivateKeyAccount,
  PrivateKeyAccount,
  PrivateKeyAccount,
  PrivateKeyAccount,
]
const addr = (a: PrivateKeyAccount) => a.address.toLowerCase() as Address
const KEYS = new Map([...VALIDATORS, A, B, C, D, E].map((a) => [addr(a), a]))
const PEER_IDS = await Promise.all([1, 2, 3, 4, 5, 6].map(ed25519PeerId))

const EPOCH_BLOCKS = 4
const UNBONDING_EPOCHS = 2
const MAX_PER_BLOCK = 3
const GENESIS = stakeTestGenesis({
  networkId: NETWORK,
  nowMs: NOW_MS,
  validators: VALIDATORS,
  peerIds: PEER_IDS,
  delegations: [{ delegator: D.address, validator: V1.address, amount: '30', chainId: 901 }],
  accounts: [A, B, C, D, E].map((a) => ({ address: a.address, balance: '1000' })),
  params: {
    epochBlocks: EPOCH_BLOCKS,
    unbondingEpochs: UNBONDING_EPOCHS,
    maxMessagesPerBlock: MAX_PER_BLOCK,
  },
})
const state0 = genesisState(GENESIS)

const transfer = (from: PrivateKeyAccount, over: Partial<Transfer> = {}) =>
  signTransfer(from, NETWORK, { from: addr(from), to: addr(B), amount: 10n, nonce: 1n, ...over })
const delegation = (who: PrivateKeyAccount, over: Partial<Delegation> = {}): Delegation => ({
  delegator: addr(who),
  validator: addr(V1),
  chainId: 901n,
  amount: 10n,
  nonce: 1n,
  ...over,
})
const createValidator = (over: Partial<CreateValidator> = {}) =>
  signCreateValidator(E, NETWORK, {
    validator: addr(E),
    peerId: peerIdBytes(PEER_IDS[4]!),
    chainIds: [901n, 903n],
    selfStake: 150n,
    commissionBps: 500,
    nonce: 1n,
    ...over,
  })
const stakeMove = (who: PrivateKeyAccount, over: Partial<StakeMove> = {}) =>
  signStakeMove(who, NETWORK, {
    staker: addr(who),
    fromChainId: 901n,
    toChainId: 902n,
    amount: 10n,
    durationBlocks: 5n,
    nonce: 1n,
    ...over,
  })

const validatorOf = (s: AppState, a: PrivateKeyAccount | Address) => {
  const address = typeof a === 'string' ? a : addr(a)
  return s.validators.find((v) => v.address === address)
}
const poolsOf = (s: AppState, a: PrivateKeyAccount | Address) =>
  Object.fromEntries([...(validatorOf(s, a)?.pools ?? [])].map(([c, x]) => [String(c), x]))
const balanceOf = (s: AppState, a: PrivateKeyAccount) => s.stake.balances.get(addr(a)) ?? 0n

/** A staking service and its routes on a fastify instance, over a state the test sets. */
class Door {
  state: AppState
  readonly service: StakingService
  readonly app: FastifyInstance
  constructor(state: AppState) {
    this.state = state
    this.service = new StakingService(
      {},
      {
        networkId: NETWORK,
        state: () => this.state,
        publish: async () => {},
        log: pino({ level: 'silent' }),
      },
    )
    this.app = Fastify()
    stakingRoutes(this.service, () => this.state)(this.app)
  }
  async post(url: string, payload: unknown) {
    const r = await this.app.inject({ method: 'POST', url, payload: payload as object })
    return { status: r.statusCode, body: r.json() as { id?: Hex; error?: { code: string; message: string } } }
  }
  async get<T>(url: string): Promise<T> {
    return (await this.app.inject({ method: 'GET', url })).json() as T
  }
  /** The `stake` topic's verdict on `m` as a peer would send it (through the wire codec). */
  gossip(m: StakeMessage) {
    const decoded = stakeMoveCodec.decode(stakeMoveCodec.encode(m))
    return this.service.topicHandler.validate(decoded, {} as never)
  }
}

const ROUTE: Record<string, string> = {
  transfer: '/v1/transfers',
  delegate: '/v1/delegations',
  undelegate: '/v1/undelegations',
  createValidator: '/v1/validators',
}
const routeOf = (m: AccountMessage) => ROUTE[Object.keys(m).find((k) => k !== 'signature')!]!

let state1: AppState
/** After block 2, which carries A's transfer of nonce 5 (so nonce 5 is used). */
let state2: AppState
let committed: AccountMessage

beforeAll(async () => {
  state1 = await stakeBlock(state0, KEYS)
  committed = await transfer(A, { amount: 1n, nonce: 5n })
  const r = await stakeStep(state1, KEYS, { accountMessages: [committed] })
  expect(r.verdict).toEqual({ ok: true })
  expect(r.block.accountMessages).toEqual([committed])
  state2 = r.state
})

describe('each refused message is refused at every door, with its code', () => {
  interface AccountCase {
    readonly name: string
    readonly message: () => Promise<AccountMessage>
    readonly code: string
    readonly gossip: 'IGNORE' | 'REJECT'
    /** The state it is refused on (default after block 1). */
    readonly on?: () => AppState
  }
  const cases: AccountCase[] = [
    {
      name: 'an over-balance Transfer',
      message: () => transfer(A, { amount: 1001n }),
      code: 'INSUFFICIENT_BALANCE',
      gossip: 'IGNORE',
    },
    {
      name: 'an over-balance Delegate',
      message: () => signDelegate(A, NETWORK, delegation(A, { amount: 1001n })),
      code: 'INSUFFICIENT_BALANCE',
      gossip: 'IGNORE',
    },
    {
      name: 'an Undelegate above the delegation',
      message: () => signUndelegate(D, NETWORK, delegation(D, { amount: 31n })),
      code: 'INSUFFICIENT_STAKE',
      gossip: 'IGNORE',
    },
    {
      name: 'a replayed Transfer (the committed one again)',
      message: async () => committed,
      code: 'NONCE_USED',
      gossip: 'IGNORE',
      on: () => state2,
    },
    {
      name: 'a new Transfer with a used nonce',
      message: () => transfer(A, { amount: 2n, nonce: 5n }),
      code: 'NONCE_USED',
      gossip: 'IGNORE',
      on: () => state2,
    },
    {
      name: 'a Transfer signed by another key',
      message: async () => {
        const t: Transfer = { from: addr(A), to: addr(B), amount: 10n, nonce: 1n }
        const signature = await B.signTypedData(
          messageTypedData(TRANSFER_KIND, NETWORK, t) as unknown as Parameters<typeof B.signTypedData>[0],
        )
        return { transfer: t, signature: signature.toLowerCase() as Hex }
      },
      code: 'BAD_SIGNATURE',
      gossip: 'REJECT',
    },
    {
      name: 'a CreateValidator below minSelfStake',
      message: () => createValidator({ selfStake: 99n }),
      code: 'BELOW_MIN_SELF_STAKE',
      gossip: 'IGNORE',
    },
    {
      name: "a CreateValidator with a genesis validator's peer id",
      message: () => createValidator({ peerId: peerIdBytes(PEER_IDS[2]!) }),
      code: 'PEER_ID_TAKEN',
      gossip: 'IGNORE',
    },
    {
      name: 'a CreateValidator whose peer id is not an Ed25519 one',
      message: () => createValidator({ peerId: `0x${'ab'.repeat(38)}` }),
      code: 'BAD_PEER_ID',
      gossip: 'REJECT',
    },
  ]

  for (const c of cases) {
    it(c.name, async () => {
      const on = c.on?.() ?? state1
      const bad = await c.message()
      const good = await transfer(C, { amount: 7n, nonce: 1n })
      const door = new Door(on)

      const posted = await door.post(routeOf(bad), accountMessageToJson(bad))
      expect(posted.status).toBe(400)
      expect(posted.body.error?.code).toBe(c.code)
      expect(await door.gossip(bad)).toEqual({ result: c.gossip, code: c.code })
      expect(door.service.pendingAccountMessages()).toEqual([])
      // The valid one goes through the same doors: the refusal is about the message, not the door.
      expect((await door.post(routeOf(good), accountMessageToJson(good))).status).toBe(202)
      expect(door.service.pendingAccountMessages()).toEqual([good])

      const step = await stakeStep(on, KEYS, {
        accountMessages: [bad, good],
        tamper: (b) => ({ ...b, accountMessages: sortAccountMessages(NETWORK, [bad, good]) }),
      })
      // The proposer checks the state, not signatures (the pool it takes from verified them): a forged
      // message reaches a block only from a proposer that skips its pool, and that block is refused.
      expect(step.proposed.accountMessages).toEqual(
        c.code === 'BAD_SIGNATURE' ? sortAccountMessages(NETWORK, [bad, good]) : [good],
      )
      expect(step.verdict).toMatchObject({ ok: false, code: 'BAD_ACCOUNT_MESSAGE' })
      const message = step.verdict.ok ? '' : step.verdict.message
      if (c.code === 'BAD_SIGNATURE') expect(message).toMatch(/is not signed by/)
      else expect(message).toContain(`: ${c.code}: `)
      // Without the bad one, the same block is valid.
      expect((await stakeStep(on, KEYS, { accountMessages: [good] })).verdict).toEqual({ ok: true })
    })
  }

  interface MoveCase {
    readonly name: string
    readonly move: () => Promise<SignedStakeMove>
    readonly code: string
  }
  const moves: MoveCase[] = [
    {
      name: 'an over-stake StakeMove of a validator (its own stake in the pool)',
      move: () => stakeMove(V0, { amount: 51n }),
      code: 'INSUFFICIENT_STAKE',
    },
    {
      name: 'an over-stake StakeMove of a delegator (its delegation in the pool)',
      move: () => stakeMove(D, { amount: 31n }),
      code: 'INSUFFICIENT_STAKE',
    },
  ]
  for (const c of moves) {
    it(c.name, async () => {
      const bad = await c.move()
      const within = await stakeMove(bad.move.staker === addr(V0) ? V0 : D, {
        amount: bad.move.amount - 1n,
      })
      const door = new Door(state1)
      const posted = await door.post('/v1/stake-moves', signedStakeMoveToJson(bad))
      expect(posted.status).toBe(400)
      expect(posted.body.error?.code).toBe(c.code)
      expect(await door.gossip(bad)).toEqual({ result: 'IGNORE', code: c.code })
      expect(door.service.pending()).toEqual([])
      expect((await door.post('/v1/stake-moves', signedStakeMoveToJson(within))).status).toBe(202)

      const step = await stakeStep(state1, KEYS, {
        stakeMoves: [bad],
        tamper: (b) => ({ ...b, stakeMoves: [bad] }),
      })
      expect(step.proposed.stakeMoves).toEqual([])
      expect(step.verdict).toMatchObject({ ok: false, code: 'BAD_STAKE_MOVE' })
      expect(step.verdict.ok ? '' : step.verdict.message).toContain(`: ${c.code}: `)
      const ok = await stakeStep(state1, KEYS, { stakeMoves: [within] })
      expect(ok.verdict).toEqual({ ok: true })
      expect(ok.block.stakeMoves).toEqual([within])
      // The stake moved within its validator: the delegator's move too changes V1's pools, not its power.
      const v = bad.move.staker === addr(V0) ? V0 : V1
      const pool = (s: AppState, c: bigint) => validatorOf(s, v)!.pools.get(c) ?? 0n
      expect(validatorOf(ok.state, v)!.power).toBe(validatorOf(state1, v)!.power)
      expect(pool(ok.state, 901n)).toBe(pool(state1, 901n) - within.move.amount)
      expect(pool(ok.state, 902n)).toBe(pool(state1, 902n) + within.move.amount)
    })
  }
})

describe('block rules for account messages', () => {
  it('refuses messages out of (signer, nonce) order', async () => {
    const byA = [await transfer(A, { nonce: 1n }), await transfer(A, { nonce: 2n })]
    const byC = await transfer(C, { nonce: 1n })
    const sorted = sortAccountMessages(NETWORK, [...byA, byC])
    const proposed = (await stakeStep(state1, KEYS, { accountMessages: [byC, byA[1]!, byA[0]!] })).proposed
    expect(proposed.accountMessages).toEqual(sorted)
    // Signers reversed; and the right signer order with A's two nonces swapped.
    const swapped = sorted.map((m) => (m === byA[0] ? byA[1]! : m === byA[1] ? byA[0]! : m))
    for (const wrong of [[...sorted].reverse(), swapped]) {
      const r = await stakeStep(state1, KEYS, { tamper: (b) => ({ ...b, accountMessages: wrong }) })
      expect(r.verdict).toMatchObject({ ok: false, code: 'BAD_ACCOUNT_MESSAGE' })
      expect(r.verdict.ok ? '' : r.verdict.message).toMatch(/not in \(signer, nonce\) order/)
    }
    expect(
      (await stakeStep(state1, KEYS, { tamper: (b) => ({ ...b, accountMessages: sorted }) })).verdict,
    ).toEqual({
      ok: true,
    })
  })

  it('takes at most maxMessagesPerBlock of one signer in a block (RATE_LIMITED), the rest in the next', async () => {
    const four = await Promise.all([1n, 2n, 3n, 4n].map((n) => transfer(A, { nonce: n, amount: n })))
    // A fresh ledger never says RATE_LIMITED: all four wait in the pool.
    const door = new Door(state1)
    for (const m of four) expect((await door.post('/v1/transfers', accountMessageToJson(m))).status).toBe(202)
    const r = await stakeStep(state1, KEYS, { accountMessages: door.service.pendingAccountMessages() })
    expect(r.block.accountMessages).toEqual(four.slice(0, MAX_PER_BLOCK))
    expect(balanceOf(r.state, A)).toBe(1000n - 6n)
    const tampered = await stakeStep(state1, KEYS, { tamper: (b) => ({ ...b, accountMessages: four }) })
    expect(tampered.verdict).toMatchObject({ ok: false, code: 'BAD_ACCOUNT_MESSAGE' })
    expect(tampered.verdict.ok ? '' : tampered.verdict.message).toMatch(
      /account message 3 of .*: RATE_LIMITED: /,
    )
    door.state = r.state
    door.service.onCommit(r.block, r.state)
    expect(door.service.pendingAccountMessages()).toEqual([four[3]])
    const next = await stakeStep(r.state, KEYS, { accountMessages: door.service.pendingAccountMessages() })
    expect(next.block.accountMessages).toEqual([four[3]])
    expect(balanceOf(next.state, A)).toBe(1000n - 10n)
  })
})

describe('what applied messages do', () => {
  it('a Transfer moves balance, and GET /v1/accounts/:address shows it', async () => {
    const t = await transfer(A, { amount: 250n, nonce: 9n })
    const s = await stakeBlock(state1, KEYS, { accountMessages: [t] })
    expect(balanceOf(s, A)).toBe(750n)
    expect(balanceOf(s, B)).toBe(1250n)
    expect(s.stake.accountNonces.get(addr(A))).toBe(9n)
    expect(s.validators).toEqual(state1.validators)
    const door = new Door(s)
    expect(await door.get(`/v1/accounts/${A.address}`)).toEqual({
      address: addr(A),
      balance: '750',
      delegations: [],
      unbonding: [],
      rewards: '0',
      nonces: { account: '9', stakeMove: '0', unjail: '0' },
    })
  })

  it("a Delegate raises the validator's pool and power in that pool only; the set follows at the boundary", async () => {
    const dg = await signDelegate(A, NETWORK, delegation(A, { chainId: 902n, amount: 40n }))
    const s = await stakeBlock(state1, KEYS, { accountMessages: [dg] })
    expect(poolsOf(s, V1)).toEqual({ '901': 80n, '902': 90n })
    expect(validatorOf(s, V1)!.power).toBe(170n)
    expect(balanceOf(s, A)).toBe(960n)
    for (const v of VALIDATORS.slice(2)) expect(validatorOf(s, v)).toEqual(validatorOf(state1, v))
    expect(validatorOf(s, V0)).toEqual(validatorOf(state1, V0))
    // A pool V1 does not serve takes no new stake.
    const elsewhere = await signDelegate(A, NETWORK, delegation(A, { chainId: 903n, nonce: 2n }))
    expect(
      (await new Door(s).post('/v1/delegations', accountMessageToJson(elsewhere))).body.error?.code,
    ).toBe('UNKNOWN_VALIDATOR')
    // Power in the consensus set changes only at the epoch boundary (block 4).
    let t = s
    for (let h = 3n; h < BigInt(EPOCH_BLOCKS); h++) {
      t = await stakeBlock(t, KEYS)
      expect(t.consensusSet.get(addr(V1))).toBe(130n)
    }
    t = await stakeBlock(t, KEYS)
    expect(t.height).toBe(BigInt(EPOCH_BLOCKS))
    expect(t.consensusSet.get(addr(V1))).toBe(170n)
  })

  it('a CreateValidator makes a validator that joins the consensus set at the next epoch boundary, not before', async () => {
    const cv = await createValidator()
    const s2 = await stakeBlock(state1, KEYS, { accountMessages: [cv] })
    const v = validatorOf(s2, E)!
    expect(v).toMatchObject({ peerId: PEER_IDS[4], power: 150n, jailed: false })
    expect(poolsOf(s2, E)).toEqual({ '901': 75n, '903': 75n })
    expect(balanceOf(s2, E)).toBe(850n)
    expect(s2.consensusSet.has(addr(E))).toBe(false)
    const s3 = await stakeBlock(s2, KEYS)
    expect(s3.consensusSet.has(addr(E))).toBe(false)
    const boundary = await stakeStep(s3, KEYS)
    expect(boundary.verdict).toEqual({ ok: true })
    expect(boundary.block.height).toBe(BigInt(EPOCH_BLOCKS))
    expect(boundary.block.nextValidatorsHash).not.toBe(boundary.block.validatorsHash)
    expect(boundary.state.consensusSet.get(addr(E))).toBe(150n)
    expect(boundary.state.consensusSet.size).toBe(5)
    // From then on it signs commits and proposes like the others (stakeStep takes it from the set).
    let s = boundary.state
    for (let i = 0; i < 2; i++) s = await stakeBlock(s, KEYS)
    expect(s.signedAt.get(addr(E))).toBe(s.height - 1n)
  })

  it('a CreateValidator in the boundary block itself waits for the boundary after (the set is taken before the block)', async () => {
    let s = state1
    while (s.height < BigInt(EPOCH_BLOCKS) - 1n) s = await stakeBlock(s, KEYS)
    const boundary = await stakeStep(s, KEYS, { accountMessages: [await createValidator()] })
    expect(boundary.block.accountMessages?.length).toBe(1)
    expect(boundary.block.height).toBe(BigInt(EPOCH_BLOCKS))
    s = boundary.state
    expect(validatorOf(s, E)!.power).toBe(150n)
    while (s.height < 2n * BigInt(EPOCH_BLOCKS)) {
      expect(s.consensusSet.has(addr(E))).toBe(false)
      s = await stakeBlock(s, KEYS)
    }
    expect(s.consensusSet.get(addr(E))).toBe(150n)
  })

  it("an Undelegate's stake is back in the balance exactly unbondingEpochs boundaries later", async () => {
    const u = await signUndelegate(D, NETWORK, delegation(D, { amount: 10n }))
    let s = await stakeBlock(state1, KEYS, { accountMessages: [u] })
    expect(poolsOf(s, V1)).toEqual({ '901': 70n, '902': 50n })
    expect(s.stake.unbonding.size).toBe(1)
    const before = balanceOf(s, D)
    const lastHeight = BigInt(EPOCH_BLOCKS * UNBONDING_EPOCHS)
    const paidAt: bigint[] = []
    while (s.height < lastHeight + BigInt(EPOCH_BLOCKS)) {
      s = await stakeBlock(s, KEYS)
      if (balanceOf(s, D) !== before) paidAt.push(s.height)
      if (s.height < lastHeight) {
        expect(balanceOf(s, D)).toBe(before)
        expect(s.stake.unbonding.size).toBe(1)
      }
    }
    // Undelegated in epoch 0 (block 2): boundaries after blocks 4 and 8; the second pays.
    expect(paidAt[0]).toBe(lastHeight)
    expect(balanceOf(s, D)).toBe(before + 10n)
    expect(s.stake.unbonding.size).toBe(0)
    expect(s.stake.epoch).toBe(BigInt(UNBONDING_EPOCHS + 1))
  })
})

describe('the stake book in the store', () => {
  const temp = tempStore('murmur-account-messages-')
  let store: Store
  beforeAll(() => {
    store = temp.store
  })

  it('survives a store round trip block after block', async () => {
    const msgs: AccountMessage[][] = [
      [await transfer(A, { amount: 100n, nonce: 1n }), await createValidator()],
      [
        await signDelegate(B, NETWORK, delegation(B, { validator: addr(E), chainId: 903n, amount: 20n })),
        await signUndelegate(D, NETWORK, delegation(D, { amount: 5n })),
      ],
      [],
    ]
    let prev = state0
    await store.batch(appStateOps(undefined, prev))
    for (const m of [[], ...msgs]) {
      const next = await stakeBlock(prev, KEYS, { accountMessages: m })
      await store.batch(appStateOps(prev, next))
      const loaded = await loadAppState(store, GENESIS)
      expect(loaded).toEqual(next)
      expect(loaded.stake).toEqual(next.stake)
      prev = next
    }
    expect(prev.stake.unbonding.size).toBe(1)
    expect(prev.stake.validators.has(addr(E))).toBe(true)
    expect(prev.stake.balances.get(addr(B))).toBe(1080n)
  })
})
