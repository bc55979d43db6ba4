/**
 * The light client on anvil: which certificates prove a header (through the settler's claim, and through
 * verify), rotation of validator sets, and the settler's order id against the node's intent id.
 */
import fc from 'fast-check'
import { type Address, getAddress, type Hex, type LocalAccount } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { networkSalt } from '../src/codec/eip712.ts'
import { type GaslessCrossChainOrder, intentId } from '../src/codec/intent.ts'
import { murmurLightClientAbi, murmurLightClientBytecode, murmurSettlerAbi } from '../src/contracts/abi.ts'
import {
  type CommitProof,
  commitProof,
  makeHeader,
  makeValidatorSet,
  type Precommit,
  settlementTree,
  settlerWithClientErrorsAbi,
  TEST_NETWORK_ID,
  type ValidatorSet,
} from './helpers/settlement.ts'
import {
  revertOf,
  type SettlementChain,
  type SettlementEnv,
  send,
  startSettlementEnv,
} from './helpers/settlement-env.ts'
import { approve, makeOrder, mint, openFor } from './helpers/settlement-orders.ts'
import { addressArb, bytesArb } from './helpers/typed-data.ts'

// Powers 1, 1, 2, 2 (total 6): {v2, v3} hold exactly 2/3; {v0, v2, v3} hold 5/6.
const SET = makeValidatorSet(4, 'contracts-cert/set', (i) => (i < 2 ? 1n : 2n))
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
let env: SettlementEnv
let A: SettlementChain
let height = 1000n

beforeAll(async () => {
  env = await startSettlementEnv(SET, { count: 1 })
  A = env.chains[0]!
  await mint(A, A.addresses.user, 10n ** 24n)
  await approve(A, 'user', 2n ** 255n)
}, 120_000)

afterAll(async () => {
  await env?.stop()
})

const v = (i: number) => SET.accounts[i]!

/** An opened order's FILL leaf, its proof, and a header of `set` committing it. */
async function claimable(set: ValidatorSet = SET) {
  const order = await makeOrder(A)
  const { id } = await openFor(A, order, privateKeyToAccount(env.rollups.accounts[1]!.privateKey))
  const leaf = {
    kind: 1,
    orderId: id,
    originChainId: A.chainId,
    destinationChainId: 902n,
    executor: A.addresses.executor,
    token: A.contracts.token,
    amount: 990_000n,
    recipient: A.addresses.recipient,
  }
  const tree = settlementTree([leaf])
  return { id, leaf, proofs: tree.proofs, header: makeHeader(set, height++, tree.root) }
}

/** The custom error a claim with `proof` reverts with (undefined: it would succeed). */
async function claimRefusal(proof: CommitProof, c: Awaited<ReturnType<typeof claimable>>) {
  return revertOf(A, A.wallets.relayer, {
    address: A.contracts.settler,
    abi: settlerWithClientErrorsAbi,
    functionName: 'claim',
    args: [[c.leaf], c.proofs, proof],
  })
}

const withPrecommits = (proof: CommitProof, precommits: Precommit[]): CommitProof => ({
  ...proof,
  certificate: { ...proof.certificate, precommits },
})

describe('certificates', () => {
  it('a certificate of more than 2/3 proves the header; the claim pays', async () => {
    const c = await claimable()
    const proof = await commitProof(SET, c.header, [v(0), v(2), v(3)])
    const blockHash = await A.pub.readContract({
      address: A.contracts.lightClient,
      abi: murmurLightClientAbi,
      functionName: 'verify',
      args: [proof],
    })
    expect(blockHash).toMatch(/^0x[0-9a-f]{64}$/)
    await send(A, A.wallets.relayer, {
      address: A.contracts.settler,
      abi: settlerWithClientErrorsAbi,
      functionName: 'claim',
      args: [[c.leaf], c.proofs, proof],
    })
  })

  it('refuses exactly 2/3 of the power', async () => {
    const c = await claimable()
    const refusal = await claimRefusal(await commitProof(SET, c.header, [v(2), v(3)]), c)
    expect(refusal).toEqual({ name: 'NoQuorum', args: [4n, 6n] })
  })

  it('refuses a set the light client does not trust, and a set that is not the header’s', async () => {
    const other = makeValidatorSet(4, 'contracts-cert/other')
    const c = await claimable(other)
    const untrusted = await claimRefusal(await commitProof(other, c.header), c)
    expect(untrusted).toEqual({ name: 'UntrustedValidatorSet', args: [other.hash] })
    // The trusted set's header, with powers inflated in the set the proof carries.
    const d = await claimable()
    const proof = await commitProof(SET, d.header)
    const mismatch = await claimRefusal({ ...proof, powers: [1n, 1n, 2n, 3n] }, d)
    expect(mismatch?.name).toBe('ValidatorSetMismatch')
  })

  it('refuses a duplicated signer and signers out of order', async () => {
    const c = await claimable()
    const proof = await commitProof(SET, c.header)
    const [p0, p1, p2, p3] = proof.certificate.precommits as [Precommit, Precommit, Precommit, Precommit]
    expect((await claimRefusal(withPrecommits(proof, [p0, p2, p2, p3]), c))?.name).toBe('SignersNotAscending')
    expect((await claimRefusal(withPrecommits(proof, [p3, p2, p1, p0]), c))?.name).toBe('SignersNotAscending')
  })

  it('refuses a forged signature, a high-s twin, a signature over another round, an unknown signer', async () => {
    const c = await claimable()
    const proof = await commitProof(SET, c.header)
    const pcs = proof.certificate.precommits
    const outsider = privateKeyToAccount(`0x${'42'.repeat(32)}`)
    const byOutsider = await commitProof(SET, c.header, [outsider as LocalAccount])
    const forged = { ...byOutsider.certificate.precommits[0]!, validator: pcs[0]!.validator }
    expect(await claimRefusal(withPrecommits(proof, [forged, ...pcs.slice(1)]), c)).toEqual({
      name: 'BadSignature',
      args: [getAddress(pcs[0]!.validator)],
    })
    // The same signature with s -> n - s (and v flipped) recovers the same key; OpenZeppelin refuses it.
    const sig = pcs[1]!.signature
    const s = SECP256K1_N - BigInt(`0x${sig.slice(66, 130)}`)
    const flipped = sig.slice(130) === '1b' ? '1c' : '1b'
    const twin = {
      ...pcs[1]!,
      signature: `${sig.slice(0, 66)}${s.toString(16).padStart(64, '0')}${flipped}` as Hex,
    }
    expect((await claimRefusal(withPrecommits(proof, [pcs[0]!, twin, pcs[2]!, pcs[3]!]), c))?.name).toBe(
      'BadSignature',
    )
    const otherRound = { ...proof, certificate: { ...proof.certificate, round: 1 } }
    expect((await claimRefusal(otherRound, c))?.name).toBe('BadSignature')
    const stamped = { ...pcs[2]!, timestampMs: pcs[2]!.timestampMs + 1n }
    expect((await claimRefusal(withPrecommits(proof, [pcs[0]!, pcs[1]!, stamped, pcs[3]!]), c))?.name).toBe(
      'BadSignature',
    )
    const unknown = { ...byOutsider.certificate.precommits[0]! }
    const withUnknown = [...pcs, unknown].sort((a, b) => (BigInt(a.validator) < BigInt(b.validator) ? -1 : 1))
    expect(await claimRefusal(withPrecommits(proof, withUnknown), c)).toEqual({
      name: 'UnknownSigner',
      args: [outsider.address],
    })
  })
})

describe('rotate', () => {
  const sets = [SET, ...[1, 2, 3, 4].map((i) => makeValidatorSet(3 + i, `contracts-cert/rot${i}`))]

  async function deployClient(): Promise<Address> {
    const hash = await A.wallets.deployer.deployContract({
      abi: murmurLightClientAbi,
      bytecode: murmurLightClientBytecode,
      args: [networkSalt(TEST_NETWORK_ID), SET.validators, SET.powers],
    })
    return (await A.pub.waitForTransactionReceipt({ hash })).contractAddress!
  }
  const read = (address: Address, functionName: string, args: readonly unknown[] = []) =>
    A.pub.readContract({
      address,
      abi: murmurLightClientAbi,
      functionName: functionName as any,
      args: args as any,
    })
  const rotateCall = (address: Address, proof: CommitProof) => ({
    address,
    abi: murmurLightClientAbi,
    functionName: 'rotate',
    args: [proof],
  })

  it('trusts the next set, keeps RETAINED sets, evicts the oldest, refuses stale and non-current headers', async () => {
    const lc = await deployClient()
    expect(await read(lc, 'RETAINED')).toBe(4n)
    expect(await read(lc, 'currentValidatorsHash')).toBe(SET.hash)
    for (let i = 1; i <= 4; i++) {
      const from = sets[i - 1]!
      const header = makeHeader(from, BigInt(10 * i), `0x${'00'.repeat(32)}`, sets[i]!.hash)
      const receipt = await send(A, A.wallets.relayer, rotateCall(lc, await commitProof(from, header)))
      expect(receipt.logs).toHaveLength(1)
      expect(await read(lc, 'currentValidatorsHash')).toBe(sets[i]!.hash)
      expect(await read(lc, 'latestHeight')).toBe(BigInt(10 * i))
      expect(await read(lc, 'isTrusted', [sets[i]!.hash])).toBe(true)
      // Four sets are kept: the genesis set is evicted by the fourth rotation only.
      expect(await read(lc, 'isTrusted', [SET.hash])).toBe(i < 4)
    }
    // A header of the evicted set no longer verifies.
    const old = await commitProof(SET, makeHeader(SET, 99n, `0x${'00'.repeat(32)}`))
    expect(
      (await revertOf(A, A.wallets.relayer, { ...rotateCall(lc, old), functionName: 'verify' }))?.name,
    ).toBe('UntrustedValidatorSet')
    // A retained, but not current, set cannot name the next one.
    const byRetained = await commitProof(
      sets[3]!,
      makeHeader(sets[3]!, 50n, `0x${'00'.repeat(32)}`, sets[1]!.hash),
    )
    expect((await revertOf(A, A.wallets.relayer, rotateCall(lc, byRetained)))?.name).toBe(
      'UntrustedValidatorSet',
    )
    const cur = sets[4]!
    const stale = await commitProof(cur, makeHeader(cur, 40n, `0x${'00'.repeat(32)}`, sets[1]!.hash))
    expect(await revertOf(A, A.wallets.relayer, rotateCall(lc, stale))).toEqual({
      name: 'StaleHeader',
      args: [40n, 40n],
    })
    const same = await commitProof(cur, makeHeader(cur, 41n, `0x${'00'.repeat(32)}`))
    expect((await revertOf(A, A.wallets.relayer, rotateCall(lc, same)))?.name).toBe('NothingToRotate')
    // A set that comes back after others is trusted again.
    const back = await commitProof(cur, makeHeader(cur, 42n, `0x${'00'.repeat(32)}`, SET.hash))
    await send(A, A.wallets.relayer, rotateCall(lc, back))
    expect(await read(lc, 'isTrusted', [SET.hash])).toBe(true)
  })
})

describe('order id', () => {
  const orderArb: fc.Arbitrary<GaslessCrossChainOrder> = fc.record({
    originSettler: addressArb.map((a) => a.toLowerCase() as Address),
    user: addressArb.map((a) => a.toLowerCase() as Address),
    nonce: fc.bigInt({ min: 0n, max: 2n ** 256n - 1n }),
    originChainId: fc.bigInt({ min: 0n, max: 2n ** 256n - 1n }),
    openDeadline: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
    fillDeadline: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
    orderDataType: bytesArb(32),
    orderData: fc.integer({ min: 0, max: 300 }).chain((n) => bytesArb(n)),
  })

  it('the settler’s orderId equals the node’s intentId over random orders', async () => {
    await fc.assert(
      fc.asyncProperty(orderArb, async (order) => {
        const onChain = await A.pub.readContract({
          address: A.contracts.settler,
          abi: murmurSettlerAbi,
          functionName: 'orderId',
          args: [order],
        })
        expect(onChain).toBe(intentId(order))
      }),
      { numRuns: 50 },
    )
  })
})
