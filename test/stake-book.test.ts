import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import fc from 'fast-check'
import type { Address, Hex } from 'viem'
import type { PrivateKeyAccount } from 'viem/accounts'
import { beforeAll, describe, expect, it } from 'vitest'
import { fastAccount } from '../src/crypto/sign.ts'
import type { Delegation } from '../src/staking/delegations.ts'
import { signDelegate, signUndelegate } from '../src/staking/delegations.ts'
import {
  type AccountMessage,
  type CreateValidator,
  defaultStakeParams,
  genesisStakeState,
  peerIdBytes,
  type SignedCreateValidator,
  StakeBook,
  type StakeGenesis,
  type StakeParams,
  type StakeState,
  selectValidatorSet,
  signCreateValidator,
  validateAccountMessage,
} from '../src/staking/validators.ts'

const NETWORK = 'stake-book-test'
const key = (i: number): Hex => `0x${(BigInt(i) * 7919n + 13n).toString(16).padStart(64, '0')}`
const ACC: PrivateKeyAccount[] = Array.from({ length: 8 }, (_, i) => fastAccount(key(i + 1)))
const ADDR = ACC.map((a) => a.address.toLowerCase() as Address)
// Genesis validators V0..V2; A3..A7 are plain accounts.
const [V0, V1, V2, A3, A4, A5] = ADDR as [Address, Address, Address, Address, Address, Address]
const SIG = `0x${'11'.repeat(65)}` as Hex
let PEERS: Hex[] = []

beforeAll(async () => {
  PEERS = await Promise.all(
    Array.from({ length: 8 }, async (_, i) =>
      peerIdBytes(
        peerIdFromPrivateKey(
          await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(i + 1)),
        ).toString(),
      ),
    ),
  )
})

const GENESIS: StakeGenesis = {
  networkId: NETWORK,
  rollups: [{ chainId: 901 }, { chainId: 902 }, { chainId: 903 }],
  validators: [V0, V1, V2].map((address, i) => ({
    address,
    peerId: `genesis-${i}`,
    stake: 100n,
    pools: [901, 902],
  })),
  delegations: [{ delegator: A5, validator: V0, amount: 10n, chainId: 901 }],
  accounts: ADDR.map((address) => ({ address, balance: 1_000n })),
}
const PARAMS: StakeParams = {
  ...defaultStakeParams(GENESIS),
  maxMessagesPerBlock: 4,
  maxValidators: 3,
  unbondingEpochs: 3,
  maxEntriesPerPair: 3,
}
const TOTAL = 8n * 1_000n + 3n * 100n + 10n

const book = (state: StakeState = genesisStakeState(GENESIS, PARAMS), height = 1n) =>
  new StakeBook(state, PARAMS, height)
const create = (over: Partial<CreateValidator> = {}): SignedCreateValidator => ({
  createValidator: {
    validator: A3,
    peerId: PEERS[3]!,
    chainIds: [901n, 903n],
    selfStake: 150n,
    commissionBps: 500,
    nonce: 1n,
    ...over,
  },
  signature: SIG,
})
const d = (over: Partial<Delegation> = {}): Delegation => ({
  delegator: A4,
  validator: V1,
  chainId: 902n,
  amount: 40n,
  nonce: 1n,
  ...over,
})
const delegate = (over: Partial<Delegation> = {}): AccountMessage => ({ delegate: d(over), signature: SIG })
const undelegate = (over: Partial<Delegation> = {}): AccountMessage => ({
  undelegate: d(over),
  signature: SIG,
})

describe('genesis', () => {
  it('spreads each validator stake over its pools, adds delegations, takes defaults from the smallest stake', () => {
    const b = book()
    expect(PARAMS.minSelfStake).toBe(100n)
    expect(b.delegations.pools().get(V0)).toEqual(
      new Map([
        [901n, 60n],
        [902n, 50n],
      ]),
    )
    expect(b.active.map((m) => m.address)).toEqual([V0, ...[V1, V2].sort()])
    expect(b.totalTokens()).toBe(TOTAL)
  })
})

describe('validators join and leave', () => {
  it('a created validator takes its self-stake from the account and joins at the next epoch boundary', () => {
    const b = book()
    expect(b.submit(create())).toMatchObject({ ok: true })
    expect(b.accounts.balance(A3)).toBe(850n)
    expect(b.delegations.pools().get(A3)).toEqual(
      new Map([
        [901n, 75n],
        [903n, 75n],
      ]),
    )
    expect(b.validators.get(A3)).toMatchObject({ commissionBps: 500, createdEpoch: 0n })
    // Not in the set before the boundary; in it after (150 beats 100, so the lowest is left out).
    expect(b.active.map((m) => m.address)).not.toContain(A3)
    const { epoch, active } = b.epochBoundary()
    expect(epoch).toBe(1n)
    expect(active.map((m) => m.address)).toEqual([A3, V0, ...[V1, V2].sort().slice(0, 1)])
    expect(active[0]!.power).toBe(150n)
    expect(b.totalTokens()).toBe(TOTAL)
  })

  it('the max set size leaves the lowest stake out, ties by address', () => {
    const rec = (address: Address) => ({
      address,
      peerId: address,
      chainIds: [1n],
      commissionBps: 0,
      createdEpoch: 0n,
      jailed: false,
    })
    const addrs = [
      '0x' + '0a'.repeat(20),
      '0x' + '0b'.repeat(20),
      '0x' + '0c'.repeat(20),
      '0x' + '0d'.repeat(20),
    ] as Address[]
    const power = [50n, 70n, 50n, 90n]
    const pools = new Map(addrs.map((a, i) => [a, new Map([[1n, power[i]!]])]))
    const set = selectValidatorSet(addrs.map(rec), pools, () => 100n, {
      minSelfStake: 100n,
      maxValidators: 3,
    })
    // 0x0c..: same stake as 0x0a.. but a higher address: it is the one left out.
    expect(set).toEqual([
      { address: addrs[3], power: 90n },
      { address: addrs[1], power: 70n },
      { address: addrs[0], power: 50n },
    ])
    // A jailed validator and one below the least self-stake are not eligible.
    const jailed = selectValidatorSet(
      [{ ...rec(addrs[3]!), jailed: true }, rec(addrs[1]!)],
      pools,
      () => 100n,
      {
        minSelfStake: 100n,
        maxValidators: 3,
      },
    )
    expect(jailed.map((m) => m.address)).toEqual([addrs[1]])
    expect(
      selectValidatorSet(addrs.map(rec), pools, () => 99n, { minSelfStake: 100n, maxValidators: 3 }),
    ).toEqual([])
  })

  it('refuses bad validator records with their codes', () => {
    const b = book()
    const cases: [Partial<CreateValidator>, string][] = [
      [{ selfStake: 99n }, 'BELOW_MIN_SELF_STAKE'],
      [{ selfStake: 1_001n }, 'INSUFFICIENT_BALANCE'],
      [{ chainIds: [] }, 'MALFORMED'],
      [{ chainIds: [903n, 901n] }, 'MALFORMED'],
      [{ chainIds: [901n, 901n] }, 'MALFORMED'],
      [{ chainIds: [904n] }, 'MALFORMED'],
      [{ commissionBps: 10_001 }, 'MALFORMED'],
      [{ peerId: `0x${'ab'.repeat(38)}` }, 'BAD_PEER_ID'],
      [{ validator: V0, peerId: PEERS[4]! }, 'ALREADY_VALIDATOR'],
    ]
    for (const [over, code] of cases) expect(b.check(create(over))).toMatchObject({ ok: false, code })
    expect(b.submit(create())).toMatchObject({ ok: true })
    expect(b.check(create({ validator: A4, nonce: 1n }))).toMatchObject({ ok: false, code: 'PEER_ID_TAKEN' })
    expect(b.check(create({ validator: A4, peerId: PEERS[4]! })).ok).toBe(true)
  })

  it('a validator that undelegates its own stake leaves at the next boundary; the stake unbonds, slashable', () => {
    const b = book()
    const self = (chainId: bigint, amount: bigint, nonce: bigint) =>
      undelegate({ delegator: V1, validator: V1, chainId, amount, nonce })
    expect(b.submit(self(901n, 50n, 1n))).toMatchObject({ ok: true })
    expect(b.submit(self(902n, 50n, 2n))).toMatchObject({ ok: true })
    // The set changes only at the boundary.
    expect(b.active.map((m) => m.address)).toContain(V1)
    b.epochBoundary()
    expect(b.active.map((m) => m.address)).not.toContain(V1)
    // Slashing for an infraction at height 1 reaches the unbonding stake made at height 1.
    expect(b.delegations.slash(V1, 1_000, 1n)).toBe(10n)
    expect(b.totalTokens()).toBe(TOTAL - 10n)
    b.epochBoundary()
    expect(b.accounts.balance(V1)).toBe(1_000n)
    b.epochBoundary()
    expect(b.accounts.balance(V1)).toBe(1_090n)
  })
})

describe('delegations', () => {
  it('delegate, undelegate, and the stake is back after exactly unbondingEpochs', () => {
    const b = book()
    expect(b.submit(delegate())).toMatchObject({ ok: true })
    expect(b.accounts.balance(A4)).toBe(960n)
    expect(b.delegations.pools().get(V1)?.get(902n)).toBe(90n)
    expect(b.submit(undelegate({ amount: 30n, nonce: 2n }))).toMatchObject({ ok: true })
    const [entry] = [...b.delegations.unbonding.values()]
    expect(entry).toMatchObject({
      delegator: A4,
      validator: V1,
      amount: 30n,
      height: 1n,
      epoch: 0n,
      completeEpoch: 3n,
    })
    for (let e = 1; e < PARAMS.unbondingEpochs; e++) {
      b.epochBoundary()
      expect(b.accounts.balance(A4)).toBe(960n)
    }
    expect(b.epochBoundary().paid).toBe(30n)
    expect(b.accounts.balance(A4)).toBe(990n)
    expect(b.delegations.unbonding.size).toBe(0)
    expect(b.totalTokens()).toBe(TOTAL)
  })

  it('refuses an over-balance delegation, an undelegation over the stake, too many entries, unknown validators', () => {
    const b = book()
    expect(b.check(delegate({ amount: 1_001n }))).toMatchObject({ ok: false, code: 'INSUFFICIENT_BALANCE' })
    expect(b.check(delegate({ validator: A3 }))).toMatchObject({ ok: false, code: 'UNKNOWN_VALIDATOR' })
    expect(b.check(delegate({ chainId: 903n }))).toMatchObject({ ok: false, code: 'UNKNOWN_VALIDATOR' })
    expect(b.check(delegate({ amount: 0n }))).toMatchObject({ ok: false, code: 'MALFORMED' })
    expect(b.check(undelegate())).toMatchObject({ ok: false, code: 'INSUFFICIENT_STAKE' })
    expect(b.submit(delegate())).toMatchObject({ ok: true })
    expect(b.check(undelegate({ amount: 41n, nonce: 2n }))).toMatchObject({
      ok: false,
      code: 'INSUFFICIENT_STAKE',
    })
    expect(b.check(undelegate({ nonce: 1n }))).toMatchObject({ ok: false, code: 'NONCE_USED' })
    for (const nonce of [2n, 3n, 4n])
      expect(b.submit(undelegate({ amount: 1n, nonce }))).toMatchObject({ ok: true })
    // Four messages of A4 in this block: the fifth is over the rate; in the next block, over the entry cap.
    expect(b.check(undelegate({ amount: 1n, nonce: 5n }))).toMatchObject({ ok: false, code: 'RATE_LIMITED' })
    b.beginBlock(2n)
    expect(b.check(undelegate({ amount: 1n, nonce: 5n }))).toMatchObject({
      ok: false,
      code: 'TOO_MANY_ENTRIES',
    })
  })

  it('a delegator moves its own delegation; stake in flight neither hops nor unbonds', () => {
    const b = book()
    const dl = b.delegations
    expect(dl.mayMove(A5, V0, 901n, 10n)).toEqual({ ok: true })
    expect(dl.mayMove(A5, V0, 901n, 11n)).toMatchObject({ ok: false, code: 'INSUFFICIENT_STAKE' })
    expect(dl.mayMove(A4, V0, 901n, 1n)).toMatchObject({ ok: false, code: 'UNKNOWN_STAKER' })
    const loan = {
      id: `0x${'01'.repeat(32)}` as Hex,
      delegator: A5,
      validator: V0,
      fromChainId: 901n,
      toChainId: 903n,
      amount: 10n,
      untilHeight: 5n,
    }
    dl.lend(loan)
    expect(dl.pools().get(V0)).toEqual(
      new Map([
        [901n, 50n],
        [902n, 50n],
        [903n, 10n],
      ]),
    )
    // On loan into 903: it cannot move on from there, nor be undelegated there.
    expect(dl.mayMove(A5, V0, 903n, 1n)).toMatchObject({ ok: false, code: 'INSUFFICIENT_STAKE' })
    expect(b.check(undelegate({ delegator: A5, validator: V0, chainId: 903n, amount: 1n }))).toMatchObject({
      code: 'INSUFFICIENT_STAKE',
    })
    expect(dl.expireLoans(4n)).toEqual([])
    expect(dl.expireLoans(5n)).toEqual([loan])
    expect(dl.amount(A5, V0, 901n)).toBe(10n)
    expect(dl.mayMove(A5, V0, 901n, 10n)).toEqual({ ok: true })
    // A validator moves its own stake the same way.
    expect(dl.mayMove(V0, V0, 901n, 50n)).toEqual({ ok: true })
    expect(b.totalTokens()).toBe(TOTAL)
  })
})

describe('signatures of account messages', () => {
  it('validateAccountMessage accepts the signer and refuses forgeries', async () => {
    const b = book()
    const real = await signDelegate(ACC[4]!, NETWORK, d())
    expect(await validateAccountMessage(b, real)).toMatchObject({ ok: true })
    const forged = { delegate: d({ delegator: A3 }), signature: real.signature }
    expect(await validateAccountMessage(b, forged)).toMatchObject({ ok: false, code: 'BAD_SIGNATURE' })
    // An Undelegate signature does not pass for a Delegate of the same fields.
    const un = await signUndelegate(ACC[4]!, NETWORK, d())
    expect(await validateAccountMessage(b, { delegate: d(), signature: un.signature })).toMatchObject({
      code: 'BAD_SIGNATURE',
    })
    const cv = await signCreateValidator(ACC[3]!, NETWORK, create().createValidator)
    expect(await validateAccountMessage(b, cv)).toMatchObject({ ok: true })
    const other = await signCreateValidator(ACC[3]!, NETWORK, {
      ...create().createValidator,
      commissionBps: 0,
    })
    expect(await validateAccountMessage(b, { ...cv, signature: other.signature })).toMatchObject({
      code: 'BAD_SIGNATURE',
    })
  })
})

/** A naive reference of the set: every eligible validator, most stake first, the lower address on a tie. */
function referenceSet(b: StakeBook): Address[] {
  const rows = [...b.validators.values()].flatMap((v) => {
    let self = 0n
    let power = 0n
    for (const e of b.delegations.delegations.values()) {
      if (e.validator !== v.address) continue
      power += e.amount
      if (e.delegator === v.address) self += e.amount
    }
    return v.jailed || self < PARAMS.minSelfStake || power === 0n ? [] : [{ a: v.address, power }]
  })
  rows.sort((x, y) => (x.power !== y.power ? (x.power > y.power ? -1 : 1) : x.a < y.a ? -1 : 1))
  return rows.slice(0, PARAMS.maxValidators).map((r) => r.a)
}

describe('random sequences of messages and epoch boundaries', () => {
  const step = fc.oneof(
    fc.record({
      t: fc.constant('transfer' as const),
      from: fc.nat(7),
      to: fc.nat(7),
      amount: fc.bigInt({ min: 0n, max: 1_200n }),
    }),
    fc.record({
      t: fc.constant('delegate' as const),
      from: fc.nat(7),
      v: fc.nat(7),
      chain: fc.nat(2),
      amount: fc.bigInt({ min: 0n, max: 600n }),
    }),
    fc.record({
      t: fc.constant('undelegate' as const),
      from: fc.nat(7),
      v: fc.nat(40),
      chain: fc.nat(2),
      amount: fc.bigInt({ min: 0n, max: 300n }),
    }),
    fc.record({
      t: fc.constant('create' as const),
      from: fc.nat(7),
      peer: fc.nat(7),
      stake: fc.bigInt({ min: 50n, max: 1_100n }),
    }),
    fc.record({ t: fc.constant('replay' as const), from: fc.nat(7) }),
    fc.record({ t: fc.constant('block' as const) }),
    fc.record({ t: fc.constant('boundary' as const) }),
    fc.record({ t: fc.constant('slash' as const), v: fc.nat(7), bps: fc.integer({ min: 0, max: 2_000 }) }),
  )

  it('conserve tokens, keep every balance positive, pay unbonding after exactly unbondingEpochs, pick the set', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 20, maxLength: 120 }), (steps) => {
        const b = book()
        let height = 1n
        let burned = 0n
        const made = new Map<Hex, bigint>()
        const next = (a: Address) => (b.accounts.nonces.get(a) ?? 0n) + 1n
        for (const s of steps) {
          let m: AccountMessage | undefined
          if (s.t === 'block') b.beginBlock(++height)
          else if (s.t === 'boundary') {
            const epoch = b.delegations.epoch + 1n
            const due = [...b.delegations.unbonding.values()].filter((u) => u.completeEpoch <= epoch)
            const before = new Map(due.map((u) => [u.delegator, b.accounts.balance(u.delegator)]))
            const { active, paid } = b.epochBoundary()
            expect(paid).toBe(due.reduce((t, u) => t + u.amount, 0n))
            for (const u of due) expect(epoch - made.get(u.id)!).toBe(BigInt(PARAMS.unbondingEpochs))
            for (const [a, bal] of before) expect(b.accounts.balance(a) >= bal).toBe(true)
            for (const u of b.delegations.unbonding.values()) expect(u.completeEpoch > epoch).toBe(true)
            expect(active.map((x) => x.address)).toEqual(referenceSet(b))
          } else if (s.t === 'slash') burned += b.delegations.slash(ADDR[s.v]!, s.bps, height)
          else if (s.t === 'transfer')
            m = {
              transfer: {
                from: ADDR[s.from]!,
                to: ADDR[s.to]!,
                amount: s.amount,
                nonce: next(ADDR[s.from]!),
              },
              signature: SIG,
            }
          else if (s.t === 'delegate') {
            // Mostly behind a validator that exists, sometimes behind anyone (UNKNOWN_VALIDATOR).
            const vs = [...b.validators.keys()]
            const validator = s.v < vs.length ? vs[s.v]! : ADDR[s.v]!
            const delegator = ADDR[s.from]!
            const body = {
              delegator,
              validator,
              chainId: 901n + BigInt(s.chain),
              amount: s.amount,
              nonce: next(delegator),
            }
            m = { delegate: body, signature: SIG }
          } else if (s.t === 'undelegate') {
            // Mostly from a delegation that exists (self-stake included), an amount around its size.
            const es = [...b.delegations.delegations.values()]
            const e = es[s.v % Math.max(es.length, 1)]
            if (e === undefined) continue
            const amount =
              s.chain === 0 ? e.amount : s.chain === 1 ? (e.amount * s.amount) / 300n : e.amount + 1n
            const body = {
              delegator: e.delegator,
              validator: e.validator,
              chainId: e.chainId,
              amount,
              nonce: next(e.delegator),
            }
            m = { undelegate: body, signature: SIG }
          } else if (s.t === 'create')
            m = create({
              validator: ADDR[s.from]!,
              peerId: PEERS[s.peer]!,
              selfStake: s.stake,
              nonce: next(ADDR[s.from]!),
            })
          else {
            const a = ADDR[s.from]!
            const used = b.accounts.nonces.get(a)
            if (used === undefined) continue
            const replay: AccountMessage = {
              transfer: { from: a, to: a === V0 ? V1 : V0, amount: 1n, nonce: used },
              signature: SIG,
            }
            expect(b.check(replay)).toMatchObject({ ok: false, code: 'NONCE_USED' })
          }
          if (m !== undefined) {
            const balance = (a: Address) => b.accounts.balance(a)
            const v = b.check(m)
            if (v.ok) {
              b.apply(m)
              if ('undelegate' in m) made.set(v.id, b.delegations.epoch)
            } else if (
              'transfer' in m &&
              m.transfer.amount > balance(m.transfer.from) &&
              m.transfer.amount > 0n &&
              m.transfer.from !== m.transfer.to
            )
              expect(['INSUFFICIENT_BALANCE', 'RATE_LIMITED']).toContain(v.code)
          }
          expect(b.totalTokens()).toBe(TOTAL - burned)
          for (const x of b.accounts.balances.values()) expect(x > 0n).toBe(true)
          for (const e of b.delegations.delegations.values()) expect(e.amount > 0n).toBe(true)
          for (const u of b.delegations.unbonding.values()) expect(u.amount >= 0n).toBe(true)
        }
      }),
      { numRuns: 150 },
    )
  })
})
