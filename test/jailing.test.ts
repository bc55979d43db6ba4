/**
 * Jailing that heals (issue 9, item 5), as pure state transitions over blocks the validators really sign
 * (test/helpers/chain.ts): the downtime jail after a full missed-blocks window, Unjail refused before the
 * jail time and accepted after it, double signing slashed and tombstoned exactly once, the consensus set
 * changing only at epoch boundaries, and the validator-set hashes every block commits.
 */
import { type Address, encodeAbiParameters, type Hex, keccak256 } from 'viem'
import { type PrivateKeyAccount, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { type Block, decodeBlock, encodeBlock } from '../src/consensus/block.ts'
import { parseGenesis } from '../src/node/genesis.ts'
import { StakingService } from '../src/staking/service.ts'
import { checkUnjail, type SignedUnjail, signedUnjailToJson, signUnjail } from '../src/staking/unjail.ts'
import { stakeMoveCodec } from '../src/staking/wire.ts'
import { validatorSetHash } from '../src/state/epoch.ts'
import { genesisState } from '../src/state/genesis.ts'
import { planBlock, skippedValidators, votingPowers } from '../src/state/plan.ts'
import { appStateOps, loadAppState, validatorsToJson } from '../src/state/storage.ts'
import type { AppState } from '../src/state/types.ts'
import { checkBlockHeader } from '../src/state/validate.ts'
import { type ChainStep, equivocation, TestChain } from './helpers/chain.ts'
import { testLog } from './helpers/consensus-net.ts'
import { tempStore } from './helpers/store.ts'

const NETWORK = 'jailing-test'
const KEYS = [1, 2, 3, 4].map((i) => `0x${(BigInt(i) * 7919n + 13n).toString(16).padStart(64, '0')}` as Hex)
const V = KEYS.map((k) => privateKeyToAccount(k))
const [V0, V1, V2, V3] = V as [PrivateKeyAccount, PrivateKeyAccount, PrivateKeyAccount, PrivateKeyAccount]
const addr = (a: PrivateKeyAccount) => a.address.toLowerCase() as Address
const START_MS = 1_900_000_000_000
const WINDOW = 10

function genesisWith(params: Record<string, number> = {}) {
  return parseGenesis({
    networkId: NETWORK,
    genesisTime: START_MS / 1000 - 10,
    validators: V.map((v, i) => ({
      address: v.address,
      peerId: `peer-${i}`,
      stake: '100',
      pools: [901, 902],
    })),
    rollups: [
      { chainId: 901, name: 'alpha', type: 'optimistic', securityBps: 8000 },
      { chainId: 902, name: 'beta', type: 'zk', securityBps: 9500 },
    ],
    params: {
      signedBlocksWindow: WINDOW,
      minSignedPerWindowBps: 5000,
      downtimeJailSec: 60,
      epochBlocks: 1000,
      ...params,
    },
  })
}

const chainOf = (params?: Record<string, number>) =>
  new TestChain(genesisState(genesisWith(params)), NETWORK, START_MS)
const LIVE = [V0, V1, V2]
const ALL = [V0, V1, V2, V3]
const validatorOf = (s: AppState, v: PrivateKeyAccount) => s.validators.find((x) => x.address === addr(v))!
const inPools = (s: AppState, v: PrivateKeyAccount) => {
  const plan = planBlock(s, s.lastBlockTime + 1, null, new Set())
  return [...plan.pools.values()].some((members) => members.some((m) => m.validator === addr(v)))
}
/** V's Unjail; with `signer`, one that `signer` signed for itself, then relabelled as V's (a forgery). */
const unjail = (v: PrivateKeyAccount, nonce = 1n, signer = v): Promise<SignedUnjail> =>
  signUnjail(signer, NETWORK, { validator: addr(signer), nonce }).then((s) => ({
    ...s,
    unjail: { ...s.unjail, validator: addr(v) },
  }))

/** A chain whose V3 never signs, up to the block that jails it (WINDOW + 1: a full window recorded). */
async function jailedChain(params?: Record<string, number>): Promise<TestChain> {
  const c = chainOf(params)
  await c.steps(WINDOW, { signers: LIVE, proposer: V0 })
  return c
}

describe('downtime jail (missed-blocks window)', () => {
  it('jails a validator once a full window is below minSignedPerWindowBps, for downtimeJailSec', async () => {
    const c = await jailedChain()
    // Blocks 2..10 recorded heights 1..9: 9 missed, not yet a full window.
    const before = validatorOf(c.state, V3)
    expect(before.jailed).toBe(false)
    expect(c.state.liveness.get(addr(V3))!.missed).toBe(WINDOW - 1)
    expect(validatorsToJson(c.state).find((v) => v.address === addr(V3))).toMatchObject({
      jailed: false,
      online: false,
      missedBlocks: WINDOW - 1,
      jailedUntil: null,
      tombstoned: false,
    })
    const { block, state } = await c.step({ signers: LIVE, proposer: V0 })
    const v = validatorOf(state, V3)
    expect(v.jailed).toBe(true)
    expect(v.tombstoned).toBe(false)
    expect(v.jailedUntil).toBe(BigInt(Math.floor(block.time / 1000)) + 60n)
    expect(v.power).toBe(100n) // slashDowntimeBps 0
    expect(state.liveness.has(addr(V3))).toBe(false) // its window starts again
    // Still in the voting set until the epoch ends, but skipped as proposer and given no work.
    expect(votingPowers(state).get(addr(V3))).toBe(100n)
    expect(skippedValidators(state)).toContain(addr(V3))
    expect(inPools(state, V3)).toBe(false)
    expect(inPools(state, V0)).toBe(true)
    expect(validatorsToJson(state).find((x) => x.address === addr(V3))).toMatchObject({
      jailed: true,
      jailedUntil: Number(v.jailedUntil),
      missedBlocks: 0,
    })
    // The live validators signed every block: never jailed.
    for (const x of LIVE) expect(validatorOf(state, x).jailed).toBe(false)
  })

  it('does not jail a validator that signs exactly the minimum share of the window', async () => {
    const c = chainOf()
    for (let h = 1; h <= 4 * WINDOW; h++) {
      const r = await c.step({ signers: h % 2 === 0 ? ALL : LIVE, proposer: V0 })
      expect(r.verdict).toEqual({ ok: true })
    }
    expect(validatorOf(c.state, V3).jailed).toBe(false)
    expect(c.state.liveness.get(addr(V3))!.missed).toBe(WINDOW / 2)
  })

  it('slashes slashDowntimeBps of every pool when it jails', async () => {
    const c = await jailedChain({ slashDowntimeBps: 1000 })
    const { state } = await c.step({ signers: LIVE, proposer: V0 })
    const v = validatorOf(state, V3)
    expect(v.jailed).toBe(true)
    expect(Object.fromEntries(v.pools)).toEqual({ '901': 45n, '902': 45n })
  })
})

describe('unjail', () => {
  it('is refused before the jail time, accepted after it; the validator proposes and executes again', async () => {
    const c = await jailedChain()
    await c.step({ signers: LIVE, proposer: V0 })
    const until = validatorOf(c.state, V3).jailedUntil!
    const u = await unjail(V3)
    // Blocks are 10 s apart: the next ones are still inside the 60 s.
    expect(checkUnjail(c.state, u, until - 1n)).toMatchObject({ ok: false, code: 'TOO_EARLY' })
    const early = await c.propose({ signers: ALL, proposer: V0, unjails: [u] })
    expect(early.block.unjails).toEqual([])
    const forced = await c.propose({ signers: ALL, proposer: V0, tamper: (b) => ({ ...b, unjails: [u] }) })
    expect(forced.verdict).toMatchObject({ ok: false, code: 'BAD_UNJAIL' })
    expect(forced.verdict.ok || forced.verdict.message).toContain('TOO_EARLY')
    // Meanwhile V3 is back online (it signs), but stays jailed: no Unjail, no work.
    await c.steps(3, { signers: ALL, proposer: V0 })
    expect(validatorOf(c.state, V3).jailed).toBe(true)
    expect(skippedValidators(c.state)).toContain(addr(V3))
    // Until the block time reaches jailedUntil.
    while (BigInt(Math.floor(c.state.lastBlockTime / 1000)) + 10n < until)
      await c.step({ signers: ALL, proposer: V0, unjails: [u] })
    expect(validatorOf(c.state, V3).jailed).toBe(true)
    // A forged Unjail (signed by another key) is refused even when the time has come.
    const forged = await unjail(V3, 1n, V1)
    const bad = await c.propose({ signers: ALL, proposer: V0, tamper: (b) => ({ ...b, unjails: [forged] }) })
    expect(bad.verdict).toMatchObject({ ok: false, code: 'BAD_UNJAIL' })
    const r = await c.step({ signers: ALL, proposer: V0, unjails: [u] })
    expect(r.verdict).toEqual({ ok: true })
    expect(r.block.unjails).toEqual([u])
    const v = validatorOf(r.state, V3)
    expect(v).toMatchObject({ jailed: false, jailedUntil: null, tombstoned: false })
    expect(r.state.unjailNonces.get(addr(V3))).toBe(1n)
    expect(skippedValidators(r.state)).not.toContain(addr(V3))
    expect(inPools(r.state, V3)).toBe(true)
    // The same Unjail again: not jailed any more; a block carrying it is invalid.
    expect(checkUnjail(r.state, u, until + 100n)).toMatchObject({ ok: false, code: 'NOT_JAILED' })
    const again = await c.propose({ signers: ALL, proposer: V0, tamper: (b) => ({ ...b, unjails: [u] }) })
    expect(again.verdict).toMatchObject({ ok: false, code: 'BAD_UNJAIL' })
  })

  it('needs a nonce above the last one used', async () => {
    const c = await jailedChain()
    await c.step({ signers: LIVE, proposer: V0 })
    const s: AppState = { ...c.state, unjailNonces: new Map([[addr(V3), 5n]]) }
    const until = validatorOf(s, V3).jailedUntil!
    expect(checkUnjail(s, await unjail(V3, 5n), until)).toMatchObject({ ok: false, code: 'NONCE_USED' })
    expect(checkUnjail(s, await unjail(V3, 6n), until)).toMatchObject({ ok: true })
  })

  it('POST /v1/unjail answers with the codes of INTERFACES.md', async () => {
    const c = await jailedChain()
    await c.step({ signers: LIVE, proposer: V0 })
    const until = Number(validatorOf(c.state, V3).jailedUntil!)
    let nowMs = (until - 1) * 1000
    let state = c.state
    const published: unknown[] = []
    const svc = new StakingService(
      {},
      {
        networkId: NETWORK,
        state: () => state,
        publish: async (m) => {
          published.push(m)
        },
        log: testLog,
        now: () => nowMs,
      },
    )
    const code = async (body: unknown) => {
      const a = await svc.submitUnjailJson(body)
      return 'error' in a.body ? a.body.error.code : a.status
    }
    const u = await unjail(V3)
    expect(await code({ unjail: { validator: addr(V3) }, signature: u.signature })).toBe('MALFORMED')
    expect(await code(signedUnjailToJson(await unjail(V3, 1n, V1)))).toBe('TOO_EARLY')
    expect(await code(signedUnjailToJson(u))).toBe('TOO_EARLY')
    expect(await code(signedUnjailToJson(await unjail(V0)))).toBe('NOT_JAILED')
    nowMs = until * 1000
    expect(await code(signedUnjailToJson(await unjail(V3, 1n, V1)))).toBe('BAD_SIGNATURE')
    const ok = await svc.submitUnjailJson(signedUnjailToJson(u))
    expect(ok.status).toBe(202)
    expect(published).toEqual([u])
    expect(svc.pendingUnjails()).toEqual([u])
    expect((await svc.submitUnjailJson(signedUnjailToJson(u))).status).toBe(200)
    state = { ...state, unjailNonces: new Map([[addr(V3), 1n]]) }
    expect(await code(signedUnjailToJson(await unjail(V3, 1n)))).toBe(200) // the pending one: known
    expect(await code(signedUnjailToJson(await unjail(V2, 1n)))).toBe('NOT_JAILED')
    state = {
      ...state,
      validators: state.validators.map((v) =>
        v.address === addr(V2) ? { ...v, jailed: true, tombstoned: true } : v,
      ),
    }
    expect(await code(signedUnjailToJson(await unjail(V2, 1n)))).toBe('TOMBSTONED')
    // A node that never held it refuses it once the nonce is used.
    const fresh = new StakingService(
      {},
      { networkId: NETWORK, state: () => state, publish: async () => {}, log: testLog, now: () => nowMs },
    )
    expect(await fresh.submitUnjailJson(signedUnjailToJson(u))).toMatchObject({
      status: 400,
      body: { error: { code: 'NONCE_USED' } },
    })
  })

  it('travels on the stake topic and in blocks, and the block JSON names it', async () => {
    const u = await unjail(V3, 7n)
    const bytes = stakeMoveCodec.encode(u)
    expect(stakeMoveCodec.decode(bytes)).toEqual(u)
    expect(() => stakeMoveCodec.decode(bytes.subarray(0, bytes.length - 1))).toThrow()
    const c = chainOf()
    const { block } = await c.propose({ signers: ALL, proposer: V0, tamper: (b) => ({ ...b, unjails: [u] }) })
    expect(decodeBlock(encodeBlock(block)).unjails).toEqual([u])
  })
})

describe('double signing', () => {
  it('slashes slashDoubleSignBps and tombstones, once: the same evidence twice or in two blocks', async () => {
    const c = chainOf()
    await c.steps(3, { signers: ALL, proposer: V0 })
    const ev = await equivocation(V3, NETWORK, 2n)
    const twice = await c.propose({
      signers: ALL,
      proposer: V0,
      tamper: (b) => ({ ...b, evidence: [ev, ev] }),
    })
    expect(twice.verdict).toMatchObject({ ok: false, code: 'BAD_EVIDENCE' })
    const other = await equivocation(V3, NETWORK, 2n, 1)
    const two = await c.propose({
      signers: ALL,
      proposer: V0,
      tamper: (b) => ({ ...b, evidence: [ev, other] }),
    })
    expect(two.verdict).toMatchObject({ ok: false, code: 'BAD_EVIDENCE' })

    const r = await c.step({ signers: LIVE, proposer: V0, evidence: [ev, ev, other] })
    expect(r.verdict).toEqual({ ok: true })
    expect(r.block.evidence).toEqual([ev])
    const v = validatorOf(r.state, V3)
    // 5 % of each pool of 50: keeps floor(50 × 9500 / 10000) = 47.
    expect(Object.fromEntries(v.pools)).toEqual({ '901': 47n, '902': 47n })
    expect(v).toMatchObject({ jailed: true, tombstoned: true, jailedUntil: null, power: 94n })
    expect(inPools(r.state, V3)).toBe(false)
    expect(skippedValidators(r.state)).toContain(addr(V3))

    // In a second block: the proposer drops it, a block carrying it is invalid, nothing is slashed again.
    const next = await c.propose({ signers: LIVE, proposer: V0, evidence: [ev, other] })
    expect(next.block.evidence).toEqual([])
    const forced = await c.propose({
      signers: LIVE,
      proposer: V0,
      tamper: (b) => ({ ...b, evidence: [other] }),
    })
    expect(forced.verdict).toMatchObject({ ok: false, code: 'BAD_EVIDENCE' })
    const after = await c.steps(2, { signers: LIVE, proposer: V0, evidence: [ev, other] })
    expect(validatorOf(after, V3).power).toBe(94n)

    // A tombstoned validator is never unjailed.
    const u = await unjail(V3)
    expect(checkUnjail(after, u, 10n ** 12n)).toMatchObject({ ok: false, code: 'TOMBSTONED' })
    const refused = await c.propose({ signers: LIVE, proposer: V0, tamper: (b) => ({ ...b, unjails: [u] }) })
    expect(refused.verdict).toMatchObject({ ok: false, code: 'BAD_UNJAIL' })
  })

  it('slashes a validator jailed for downtime that equivocated before its jail, once', async () => {
    const c = await jailedChain()
    await c.step({ signers: LIVE, proposer: V0 })
    expect(validatorOf(c.state, V3).jailed).toBe(true)
    const ev = await equivocation(V3, NETWORK, 5n)
    const r = await c.step({ signers: LIVE, proposer: V0, evidence: [ev] })
    expect(r.block.evidence).toEqual([ev])
    expect(validatorOf(r.state, V3)).toMatchObject({
      jailed: true,
      tombstoned: true,
      jailedUntil: null,
      power: 94n,
    })
    await c.step({ signers: LIVE, proposer: V0, evidence: [ev] })
    expect(validatorOf(c.state, V3).power).toBe(94n)
  })
})

/** keccak256(abi.encode(address[], uint256[])) spelled out word by word: the layout a contract hashes. */
function handEncodedSetHash(set: ReadonlyArray<readonly [Address, bigint]>): Hex {
  const word = (x: bigint) => x.toString(16).padStart(64, '0')
  const n = BigInt(set.length)
  const sorted = [...set].sort(([a], [b]) => (a < b ? -1 : 1))
  const hex =
    word(64n) +
    word(64n + 32n * (n + 1n)) +
    word(n) +
    sorted.map(([a]) => word(BigInt(a))).join('') +
    word(n) +
    sorted.map(([, p]) => word(p)).join('')
  return keccak256(`0x${hex}`)
}

describe('epochs and validator-set hashes', () => {
  it('hashes the set as keccak256(abi.encode(address[] ascending, uint256[] powers))', () => {
    const set = new Map<Address, bigint>([
      [addr(V2), 7n],
      [addr(V0), 100n],
      [addr(V1), 2n ** 200n],
    ])
    expect(validatorSetHash(set)).toBe(handEncodedSetHash([...set]))
    const sorted = [...set].sort(([a], [b]) => (a < b ? -1 : 1))
    expect(validatorSetHash(set)).toBe(
      keccak256(
        encodeAbiParameters(
          [{ type: 'address[]' }, { type: 'uint256[]' }],
          [sorted.map(([a]) => a), sorted.map(([, p]) => p)],
        ),
      ),
    )
  })

  it('changes the set only at epoch boundaries; each block commits the set signing it and the next', async () => {
    const c = chainOf({ epochBlocks: 8 })
    const genesisSet = c.state.consensusSet
    const genesisHash = validatorSetHash(genesisSet)
    const blocks: ChainStep[] = []
    // V3 is jailed by block 11 (WINDOW + 1), mid-epoch; block 16 is the next boundary.
    for (let h = 1; h <= 17; h++) {
      const r = await c.step({ signers: LIVE, proposer: V0 })
      expect(r.verdict).toEqual({ ok: true })
      blocks.push(r)
    }
    const at = (h: number) => blocks[h - 1]!
    expect(validatorOf(at(10).state, V3).jailed).toBe(false)
    expect(validatorOf(at(11).state, V3).jailed).toBe(true)
    for (let h = 1; h <= 15; h++) {
      expect(at(h).block.validatorsHash).toBe(genesisHash)
      expect(at(h).block.nextValidatorsHash).toBe(genesisHash)
      // Jailed in 11: still in the set, with its power, until the boundary.
      expect(at(h).state.consensusSet).toEqual(genesisSet)
      expect(at(h).state.commitPowers).toEqual(genesisSet)
    }
    const without = new Map([...genesisSet].filter(([a]) => a !== addr(V3)))
    expect(skippedValidators(at(15).state)).toContain(addr(V3))
    expect(at(16).block.validatorsHash).toBe(genesisHash)
    expect(at(16).block.nextValidatorsHash).toBe(validatorSetHash(without))
    expect(at(16).state.consensusSet).toEqual(without)
    // commitPowers stays the set that decided the previous block.
    expect(at(16).state.commitPowers).toEqual(genesisSet)
    expect(at(17).state.commitPowers).toEqual(without)
    expect(at(17).block.validatorsHash).toBe(validatorSetHash(without))
    expect(at(17).block.nextValidatorsHash).toBe(validatorSetHash(without))
    // Out of the set, the jailed validator is no longer skipped (it is not there to be skipped).
    expect(skippedValidators(at(17).state)).not.toContain(addr(V3))
  })

  it('refuses a block whose validatorsHash or nextValidatorsHash is not the state’s (BAD_VALIDATORS_HASH)', async () => {
    const c = chainOf({ epochBlocks: 4 })
    await c.steps(3, { signers: ALL, proposer: V0 })
    const other = validatorSetHash(new Map([[addr(V0), 1n]]))
    for (const tamper of [
      (b: Block) => ({ ...b, validatorsHash: other }),
      (b: Block) => ({ ...b, nextValidatorsHash: other }),
    ]) {
      const r = await c.propose({ signers: ALL, proposer: V0, tamper })
      expect(r.verdict).toMatchObject({ ok: false, code: 'BAD_VALIDATORS_HASH' })
      expect(checkBlockHeader(c.state, r.block)).toMatchObject({ ok: false, code: 'BAD_VALIDATORS_HASH' })
    }
    // At the boundary (block 4) with V3 tombstoned before it, the old set's hash as next is refused.
    const ev = await equivocation(V3, NETWORK, 2n)
    const s = { ...c.state }
    const ok = await c.propose({ signers: ALL, proposer: V0 })
    expect(ok.verdict).toEqual({ ok: true })
    await c.step({ signers: LIVE, proposer: V0, evidence: [ev] }) // block 4: boundary, V3 tombstoned in it
    expect(c.state.consensusSet).toEqual(s.consensusSet) // the boundary took the set from before block 4
    await c.steps(3, { signers: LIVE, proposer: V0 }) // 5..7
    const stale = await c.propose({
      signers: LIVE,
      proposer: V0,
      tamper: (b) => ({ ...b, nextValidatorsHash: b.validatorsHash }),
    })
    expect(stale.block.height).toBe(8n)
    expect(stale.verdict).toMatchObject({ ok: false, code: 'BAD_VALIDATORS_HASH' })
    const r = await c.step({ signers: LIVE, proposer: V0 })
    expect(r.state.consensusSet.has(addr(V3))).toBe(false)
  })
})

describe('storage', () => {
  const t = tempStore('murmur-jailing-')

  it('stores and loads the jail status, windows, nonces and the consensus set', async () => {
    const c = chainOf({ epochBlocks: 4 })
    await c.steps(WINDOW + 3, { signers: LIVE, proposer: V0 })
    const ev = await equivocation(V2, NETWORK, c.state.height - 1n)
    await c.step({ signers: [V0, V1, V2], proposer: V0, evidence: [ev] })
    const g = genesisWith({ epochBlocks: 4 })
    await t.store.batch(appStateOps(undefined, c.state))
    const loaded = await loadAppState(t.store, g)
    expect(loaded.validators).toEqual(c.state.validators)
    expect(loaded.consensusSet).toEqual(c.state.consensusSet)
    expect(loaded.commitPowers).toEqual(c.state.commitPowers)
    expect(loaded.liveness).toEqual(c.state.liveness)
    expect(loaded.unjailNonces).toEqual(c.state.unjailNonces)
    expect(validatorSetHash(loaded.consensusSet)).toBe(validatorSetHash(c.state.consensusSet))
  })
})
