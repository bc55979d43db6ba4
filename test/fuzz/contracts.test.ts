/**
 * Fuzzing of the settlement contracts' entry points on one anvil (issue 13, item 6): random calls to
 * every external function of MurmurSettler (`openFor`, `open`, `fill`, `claim`, `refund`,
 * `refundExpired`, and the views) and MurmurLightClient (`verify`, `rotate`) from random senders, with
 * arguments mutated from valid ones: orders with a field changed, signatures by the wrong key or random
 * bytes, leaves of opened orders with a field changed, random Merkle proofs, commit proofs signed by
 * less than 2/3 of the power or by all of it over another settlement root. Each call is simulated; one
 * that does not revert is sent. Invariants, from balances read after every call: the settler never pays
 * out (no certificate the fuzzer holds entitles anyone to an escrow, and no deadline passes), no account
 * but the sender and the signer of an accepted order loses tokens, an accepted `openFor` is signed by
 * its user and moves exactly its input into escrow, and `claim`, `refund`, `rotate`, `refundExpired`
 * always revert.
 */
import fc from 'fast-check'
import { encodeFunctionData, type Hex, keccak256, numberToHex } from 'viem'
import type { LocalAccount } from 'viem/accounts'
import { privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  decodeOrderData,
  encodeOrderData,
  type GaslessCrossChainOrder,
  intentId,
  signOrder,
} from '../../src/codec/intent.ts'
import { murmurLightClientAbi, murmurSettlerAbi } from '../../src/contracts/abi.ts'
import {
  type CommitProof,
  commitProof,
  KIND_FILL,
  KIND_REFUND,
  type Leaf,
  makeHeader,
  makeValidatorSet,
  settlementTree,
} from '../helpers/settlement.ts'
import {
  balanceOf,
  ROLES,
  type Role,
  type SettlementChain,
  type SettlementEnv,
  startSettlementEnv,
  ZERO,
} from '../helpers/settlement-env.ts'
import { approve, encodeOrder, makeOrder, mint, openFor } from '../helpers/settlement-orders.ts'
import { record, runs } from './harness.ts'

const SET = makeValidatorSet(4, 'fuzz-contracts/set')
let env: SettlementEnv
let A: SettlementChain
let keys: Record<Role, LocalAccount>
/** Orders opened before the fuzzing: their escrows are what must not leak. */
const opened: GaslessCrossChainOrder[] = []
let proofs: CommitProof[] = []
let certifiedLeaves: Leaf[] = []
/** Each certified leaf's Merkle proof in its own tree (so an unchanged leaf passes the Merkle check). */
const proofOf = new Map<Leaf, Hex[]>()

beforeAll(async () => {
  env = await startSettlementEnv(SET, { count: 1 })
  A = env.chains[0]!
  keys = Object.fromEntries(
    ROLES.map((r, i) => [r, privateKeyToAccount(env.rollups.accounts[i]!.privateKey)]),
  ) as Record<Role, LocalAccount>
  for (const role of ['user', 'executor', 'relayer'] as const) {
    await mint(A, A.addresses[role], 10n ** 24n)
    await approve(A, role, 2n ** 255n)
  }
  for (let i = 0; i < 3; i++) {
    const order = await makeOrder(A, { destinationChainIds: [A.chainId], inputAmount: 1_000n + BigInt(i) })
    await openFor(A, order, keys.user)
    opened.push(order)
  }
  // Certified trees whose leaves pay nothing that is escrowed (orders never opened); and the
  // certificates the fuzzer may present: a full quorum over those, 1 or 2 of 4 signers over the leaves
  // of the opened orders (1/4, 1/2 < 2/3).
  certifiedLeaves = opened.map((o, i) => ({
    kind: i % 2 === 0 ? KIND_FILL : KIND_REFUND,
    orderId: keccak256(numberToHex(1000 + i)),
    originChainId: A.chainId,
    destinationChainId: i % 2 === 0 ? A.chainId : 0n,
    executor: i % 2 === 0 ? A.addresses.executor : ZERO,
    token: A.contracts.token,
    amount: decodeOrderData(o.orderData).inputAmount,
    recipient: i % 2 === 0 ? A.addresses.recipient : A.addresses.user,
  }))
  const escrowLeaves = opened.map((o) => ({
    ...certifiedLeaves[0]!,
    orderId: intentId(o),
    amount: decodeOrderData(o.orderData).inputAmount,
  }))
  const full = settlementTree(certifiedLeaves)
  const escrow = settlementTree(escrowLeaves)
  proofs = [
    await commitProof(SET, makeHeader(SET, 10n, full.root)),
    await commitProof(SET, makeHeader(SET, 11n, escrow.root), SET.accounts.slice(0, 1)),
    await commitProof(SET, makeHeader(SET, 12n, escrow.root), SET.accounts.slice(1, 3)),
  ]
  certifiedLeaves.push(...escrowLeaves)
  for (const [i, l] of certifiedLeaves.entries())
    proofOf.set(l, i < 3 ? full.proofs[i]! : escrow.proofs[i - 3]!)
}, 120_000)

afterAll(async () => {
  await env?.stop()
})

const bytes32 = fc
  .uint8Array({ minLength: 32, maxLength: 32 })
  .map((b) => `0x${Buffer.from(b).toString('hex')}` as Hex)
const anyBytes = fc.uint8Array({ maxLength: 200 }).map((b) => `0x${Buffer.from(b).toString('hex')}` as Hex)
const role = fc.constantFrom(...ROLES)
const uint = (max: bigint) => fc.oneof(fc.bigInt({ min: 0n, max }), fc.constantFrom(0n, 1n, max))
const U256 = (1n << 256n) - 1n

/** A call: the function, its arguments, its value, its sender, and for openFor the key that signed. */
interface Case {
  target: 'settler' | 'client'
  fn: string
  args: readonly unknown[]
  value: bigint
  from: Role
  signer?: Role
}

function arbCase(): fc.Arbitrary<Promise<Case>> {
  const order = fc
    .tuple(
      fc.constantFrom(...opened),
      fc.nat(8),
      uint(U256),
      role,
      fc.integer({ min: -3_000, max: 3_000 }),
      bytes32,
      anyBytes,
    )
    .map(([base, which, n, who, dt, b32, raw]): GaslessCrossChainOrder => {
      const d = decodeOrderData(base.orderData)
      const o = { ...base, nonce: base.nonce + 1_000_000n + (n % 1_000_000n) }
      switch (which) {
        case 0:
          return { ...o, nonce: base.nonce } // a replay of an opened order
        case 1:
          return { ...o, user: A.addresses[who] }
        case 2:
          return { ...o, fillDeadline: Math.max(0, o.fillDeadline + dt) }
        case 3:
          return { ...o, openDeadline: Math.max(0, o.openDeadline + dt) }
        case 4:
          return { ...o, orderDataType: b32 }
        case 5:
          return { ...o, orderData: raw }
        case 6:
          return {
            ...o,
            orderData: encodeOrderData({ ...d, inputAmount: n % 10n ** 20n, destinationChainIds: [] }),
          }
        case 7:
          return { ...o, originChainId: o.originChainId + 1n }
        default:
          return o
      }
    })
  const leaf = fc
    .tuple(fc.constantFrom(...certifiedLeaves), fc.nat(11), uint(10n ** 21n), bytes32, role)
    .map(([l, which, n, b32, who]): Leaf => {
      switch (which) {
        case 0:
          return { ...l, amount: n }
        case 1:
          return { ...l, orderId: intentId(opened[Number(n % 3n)]!) }
        case 2:
          return { ...l, orderId: b32 }
        case 3:
          return { ...l, recipient: A.addresses[who] }
        case 4:
          return { ...l, executor: A.addresses[who] }
        case 5:
          return { ...l, kind: Number(n % 4n) }
        default:
          return l
      }
    })
  const proof = fc
    .tuple(fc.constantFrom(...proofs), fc.nat(7), uint(1n << 63n), bytes32)
    .map(([p, which, n, b32]): CommitProof => {
      switch (which) {
        case 0:
          return { ...p, header: { ...p.header, settlementRoot: b32 } }
        case 1:
          return { ...p, header: { ...p.header, height: n } }
        case 2:
          return { ...p, powers: p.powers.map((x, i) => (i === 0 ? x + n : x)) }
        case 3:
          return {
            ...p,
            certificate: { ...p.certificate, precommits: [...p.certificate.precommits].reverse() },
          }
        default:
          return p
      }
    })
  const merkle = fc.array(fc.array(bytes32, { maxLength: 3 }), { maxLength: 3 })
  // Leaves, proofs and certificates are left unchanged about half the time, so that some claims carry a
  // leaf, its Merkle proof and a certificate that all check out but the certificate's power.
  return fc.oneof(
    fc.tuple(order, role, role, fc.boolean(), anyBytes).map(async ([o, from, signer, randomSig, raw]) => ({
      target: 'settler' as const,
      fn: 'openFor',
      args: [o, randomSig ? raw : await signOrder(keys[signer], o), '0x'],
      value: 0n,
      from,
      signer,
    })),
    fc.tuple(order, role, uint(10n ** 18n)).map(async ([o, from, value]) => ({
      target: 'settler' as const,
      fn: 'open',
      args: [{ fillDeadline: o.fillDeadline, orderDataType: o.orderDataType, orderData: o.orderData }],
      value: value % 3n === 0n ? value : 0n,
      from,
    })),
    fc.tuple(order, role, fc.boolean(), bytes32).map(async ([o, from, ownId, b32]) => ({
      target: 'settler' as const,
      fn: 'fill',
      args: [ownId ? intentId(o) : b32, encodeOrder(o), '0x'],
      value: 0n,
      from,
    })),
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          fc.constantFrom('claim', 'refund'),
          fc.array(leaf, { minLength: 1, maxLength: 2 }),
          merkle,
          proof,
          role,
          fc.boolean(),
        )
        .map(async ([fn, leaves, random, p, from, realProofs]) => {
          const own = leaves.map((l) => proofOf.get(l) ?? [])
          return {
            target: 'settler' as const,
            fn,
            args: [leaves, realProofs ? own : random.slice(0, leaves.length), p],
            value: 0n,
            from,
          }
        }),
    },
    {
      // A certified leaf with its own Merkle proof, under one of the certificates unchanged: everything
      // checks out but the certificate's power (or its root, for the escrows' leaves under the full one).
      weight: 2,
      arbitrary: fc
        .tuple(
          fc.constantFrom('claim', 'refund'),
          fc.constantFrom(...certifiedLeaves),
          fc.constantFrom(...proofs),
          role,
        )
        .map(async ([fn, l, p, from]) => ({
          target: 'settler' as const,
          fn,
          args: [[l], [proofOf.get(l)!], p],
          value: 0n,
          from,
        })),
    },
    fc.tuple(fc.oneof(bytes32, fc.constantFrom(...opened.map(intentId))), role).map(async ([id, from]) => ({
      target: 'settler' as const,
      fn: 'refundExpired',
      args: [id],
      value: 0n,
      from,
    })),
    fc
      .tuple(fc.constantFrom('verify', 'rotate'), proof, role)
      .map(async ([fn, p, from]) => ({ target: 'client' as const, fn, args: [p], value: 0n, from })),
    fc
      .tuple(
        fc.constantFrom('orderStatus', 'filledBy'),
        fc.oneof(bytes32, fc.constantFrom(...opened.map(intentId))),
        role,
      )
      .map(async ([fn, id, from]) => ({
        target: 'settler' as const,
        fn,
        args: [id],
        value: 0n,
        from,
      })),
  )
}

const ALWAYS_REVERTS = new Set(['claim', 'refund', 'rotate', 'refundExpired'])

async function balances(): Promise<Record<string, bigint>> {
  const out: Record<string, bigint> = {}
  for (const who of [...ROLES, 'settler'] as const) {
    const a = who === 'settler' ? A.contracts.settler : A.addresses[who]
    out[who] = await balanceOf(A, A.contracts.token, a)
  }
  out['settler-native'] = await balanceOf(A, ZERO, A.contracts.settler)
  return out
}

describe('settlement contracts on anvil', () => {
  it('random calls from random senders: no escrow leaves, only the sender or the order’s signer pays', async () => {
    const n = runs(1)
    const t0 = performance.now()
    const outcomes = new Map<string, number>()
    await fc.assert(
      fc.asyncProperty(arbCase(), async (pending) => {
        const c = await pending
        const wallet = A.wallets[c.from]
        const call = {
          address: c.target === 'settler' ? A.contracts.settler : A.contracts.lightClient,
          abi: c.target === 'settler' ? murmurSettlerAbi : murmurLightClientAbi,
          functionName: c.fn,
          args: c.args,
          value: c.value,
          account: wallet.account,
        }
        let reverted = false
        try {
          await A.pub.simulateContract(call as never)
        } catch {
          reverted = true
        }
        outcomes.set(
          `${c.fn}:${reverted ? 'revert' : 'ok'}`,
          (outcomes.get(`${c.fn}:${reverted ? 'revert' : 'ok'}`) ?? 0) + 1,
        )
        if (ALWAYS_REVERTS.has(c.fn))
          expect(
            reverted,
            `${c.fn} did not revert: ${JSON.stringify(c.args, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}`,
          ).toBe(true)
        if (reverted || c.fn === 'orderStatus' || c.fn === 'filledBy' || c.fn === 'verify') return
        const before = await balances()
        const hash = await wallet.sendTransaction({
          to: call.address,
          data: encodeFunctionData(call as never),
          value: c.value,
          account: wallet.account,
          chain: wallet.chain,
        })
        const receipt = await A.pub.waitForTransactionReceipt({ hash, pollingInterval: 20 })
        const after = await balances()
        if (receipt.status !== 'success') return
        // The settler never pays out; the native coin it holds (open with a value) only grows.
        expect(after['settler']!, c.fn).toBeGreaterThanOrEqual(before['settler']!)
        expect(after['settler-native']!, c.fn).toBeGreaterThanOrEqual(before['settler-native']!)
        const o = c.args[0] as GaslessCrossChainOrder
        for (const who of ROLES) {
          if (after[who]! >= before[who]!) continue
          // Who lost tokens: the sender (open, fill), or the user of an openFor, who must have signed it.
          const userOfOpenFor = c.fn === 'openFor' && A.addresses[who] === o.user.toLowerCase()
          expect(
            (who === c.from && c.fn !== 'openFor') || userOfOpenFor,
            `${who} lost ${before[who]! - after[who]!} in ${c.fn} sent by ${c.from}`,
          ).toBe(true)
        }
        if (c.fn === 'openFor') {
          expect(keys[c.signer!].address.toLowerCase(), 'openFor accepted a signature of someone else').toBe(
            o.user.toLowerCase(),
          )
          const input = decodeOrderData(o.orderData).inputAmount
          expect(after['settler']! - before['settler']!).toBe(input)
        }
      }),
      { numRuns: n, timeout: 30_000 },
    )
    record('contracts', n, performance.now() - t0)
    if (process.env['FUZZ_VERBOSE'] === '1') console.log(Object.fromEntries(outcomes))
    // The escrows of the opened orders are all still there.
    for (const o of opened) {
      expect(
        await A.pub.readContract({
          address: A.contracts.settler,
          abi: murmurSettlerAbi,
          functionName: 'orderStatus',
          args: [intentId(o)],
        }),
      ).toBe(1)
    }
  }, 600_000)
})
