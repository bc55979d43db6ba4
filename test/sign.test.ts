import { execFileSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import { type Hex, recoverTypedDataAddress, type TypedData } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { afterEach, describe, expect, it } from 'vitest'
import { GASLESS_ORDER_TYPES, networkDomain, orderDomain, PROFILE_TYPES } from '../src/codec/eip712.ts'
import { PROPOSAL_TYPES, signVote, VOTE_TYPES } from '../src/consensus/votes.ts'
import { fastAccount, nativeSignAvailable, setSignBackend, signBackend } from '../src/crypto/sign.ts'
import { loadKeys } from '../src/identity/keys.ts'
import { FILL_TYPES } from '../src/rollups/fill.ts'
import { HEALTH_REPORT_TYPES } from '../src/rollups/health-report.ts'
import { bytesArb, toHex, valueArb } from './helpers/typed-data.ts'

const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
/** A valid private key from 32 random bytes. */
const keyArb = bytesArb(32).map(
  (b) => `0x${((BigInt(b) % (N - 1n)) + 1n).toString(16).padStart(64, '0')}` as Hex,
)

const networkTyped = (types: TypedData, primaryType: string) =>
  fc.record({
    domain: fc.string({ maxLength: 12 }).map(networkDomain),
    types: fc.constant(types),
    primaryType: fc.constant(primaryType),
    message: valueArb(primaryType, types),
  })

const typedDataArb = fc.oneof(
  networkTyped(VOTE_TYPES, 'Vote'),
  networkTyped(PROPOSAL_TYPES, 'Proposal'),
  networkTyped(HEALTH_REPORT_TYPES, 'HealthReport'),
  networkTyped(FILL_TYPES, 'Fill'),
  networkTyped(PROFILE_TYPES, 'Profile'),
  fc.record({
    domain: fc
      .tuple(fc.bigInt({ min: 1n, max: 1n << 64n }), bytesArb(20))
      .map(([originChainId, originSettler]) => orderDomain({ originChainId, originSettler })),
    types: fc.constant(GASLESS_ORDER_TYPES),
    primaryType: fc.constant('GaslessCrossChainOrder'),
    message: valueArb('GaslessCrossChainOrder', GASLESS_ORDER_TYPES),
  }),
)

const initialBackend = signBackend()
afterEach(() => setSignBackend(initialBackend))

const backends = (['native', 'js'] as const).filter((b) => b === 'js' || nativeSignAvailable())

describe('fastAccount', () => {
  it('the native binding loads here and is the default backend', () => {
    expect(nativeSignAvailable()).toBe(true)
    expect(signBackend()).toBe(process.env['MURMUR_PURE_JS_CRYPTO'] === '1' ? 'js' : 'native')
  })

  it.each(backends)('signTypedData is byte-identical to viem (%s backend)', async (backend) => {
    setSignBackend(backend)
    await fc.assert(
      fc.asyncProperty(keyArb, typedDataArb, async (pk, td) => {
        const expected = await privateKeyToAccount(pk).signTypedData(td as any)
        const got = await fastAccount(pk).signTypedData(td as any)
        expect(got).toBe(expected)
        expect(got).toMatch(/^0x[0-9a-f]{128}(1b|1c)$/)
      }),
      { numRuns: backend === 'native' ? 300 : 100 },
    )
  })

  it.each(backends)('sign({ hash }) is byte-identical to viem (%s backend)', async (backend) => {
    setSignBackend(backend)
    await fc.assert(
      fc.asyncProperty(keyArb, bytesArb(32), fc.boolean(), async (pk, hash, upper) => {
        const h = (upper ? `0x${hash.slice(2).toUpperCase()}` : hash) as Hex
        expect(await fastAccount(pk).sign({ hash: h })).toBe(await privateKeyToAccount(pk).sign({ hash: h }))
      }),
      { numRuns: backend === 'native' ? 300 : 100 },
    )
  })

  it.each(backends)('viem recovers the signer of signTypedData (%s backend)', async (backend) => {
    setSignBackend(backend)
    await fc.assert(
      fc.asyncProperty(keyArb, typedDataArb, async (pk, td) => {
        const account = fastAccount(pk)
        const signature = await account.signTypedData(td as any)
        expect(await recoverTypedDataAddress({ ...(td as any), signature })).toBe(account.address)
      }),
      { numRuns: 50 },
    )
  })

  it.each(backends)('signs transactions byte-identically to viem (%s backend)', async (b) => {
    setSignBackend(b)
    const txArb = fc.record({
      chainId: fc.integer({ min: 1, max: 1_000_000 }),
      type: fc.constantFrom('eip1559', 'legacy', 'eip2930'),
      to: bytesArb(20),
      value: fc.bigInt({ min: 0n, max: 1n << 100n }),
      nonce: fc.integer({ min: 0, max: 1_000_000 }),
      gas: fc.bigInt({ min: 21_000n, max: 30_000_000n }),
      fee: fc.bigInt({ min: 1n, max: 1n << 60n }),
      data: fc.uint8Array({ maxLength: 68 }).map(toHex),
    })
    await fc.assert(
      fc.asyncProperty(keyArb, txArb, async (pk, t) => {
        const { fee, ...rest } = t
        const tx =
          t.type === 'eip1559'
            ? { ...rest, type: 'eip1559' as const, maxFeePerGas: fee * 2n, maxPriorityFeePerGas: fee }
            : t.type === 'eip2930'
              ? { ...rest, type: 'eip2930' as const, gasPrice: fee, accessList: [] }
              : { ...rest, type: 'legacy' as const, gasPrice: fee }
        expect(await fastAccount(pk).signTransaction(tx)).toBe(
          await privateKeyToAccount(pk).signTransaction(tx),
        )
      }),
      { numRuns: 60 },
    )
  })

  it('keeps viem for everything else', async () => {
    const pk = `0x${'42'.repeat(32)}` as Hex
    const fast = fastAccount(pk)
    const viem = privateKeyToAccount(pk)
    expect(fast.address).toBe(viem.address)
    expect(fast.publicKey).toBe(viem.publicKey)
    expect(fast.source).toBe('privateKey')
    expect(fast.type).toBe('local')
    expect(await fast.signMessage({ message: 'hello' })).toBe(await viem.signMessage({ message: 'hello' }))
    const tx = {
      chainId: 10,
      type: 'eip1559',
      to: `0x${'11'.repeat(20)}`,
      value: 5n,
      nonce: 3,
      gas: 21_000n,
      maxFeePerGas: 2n,
      maxPriorityFeePerGas: 1n,
    } as const
    expect(await fast.signTransaction(tx)).toBe(await viem.signTransaction(tx))
  })

  it('rejects typed data with a value that does not fit its type', async () => {
    const account = fastAccount(`0x${'42'.repeat(32)}`)
    const td = {
      domain: networkDomain('n'),
      types: VOTE_TYPES,
      primaryType: 'Vote',
      message: {
        kind: 1,
        height: -1n,
        round: 0,
        blockHash: `0x${'00'.repeat(32)}`,
        timestampMs: 0n,
        extensionHash: `0x${'00'.repeat(32)}`,
      },
    } as const
    await expect(account.signTypedData(td)).rejects.toThrow(/Vote\.height/)
    await expect(privateKeyToAccount(`0x${'42'.repeat(32)}`).signTypedData(td)).rejects.toThrow()
  })

  it('setSignBackend switches every account, which stays byte-identical', async () => {
    const account = fastAccount(`0x${'07'.repeat(32)}`)
    const hash = `0x${'ee'.repeat(32)}` as Hex
    setSignBackend('js')
    const js = await account.sign({ hash })
    setSignBackend('native')
    expect(await account.sign({ hash })).toBe(js)
  })

  it('MURMUR_PURE_JS_CRYPTO=1 selects the pure-JS backend at startup', async () => {
    const pk = `0x${'5a'.repeat(32)}` as Hex
    const hash = `0x${'c3'.repeat(32)}` as Hex
    const expected = await privateKeyToAccount(pk).sign({ hash })
    const mod = fileURLToPath(new URL('../src/crypto/sign.ts', import.meta.url))
    const script = `const m = await import(${JSON.stringify(mod)}); console.log(m.signBackend(), await m.fastAccount(${JSON.stringify(pk)}).sign({ hash: ${JSON.stringify(hash)} }))`
    const run = (env: NodeJS.ProcessEnv) =>
      execFileSync(process.execPath, ['--input-type=module', '-e', script], { env, encoding: 'utf8' }).trim()
    expect(run({ ...process.env, MURMUR_PURE_JS_CRYPTO: '1' })).toBe(`js ${expected}`)
    expect(run({ ...process.env, MURMUR_PURE_JS_CRYPTO: '' })).toBe(`native ${expected}`)
  })

  it("the node's validator account (loadKeys) is a fastAccount that signs votes like viem", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'murmur-sign-'))
    try {
      const keys = await loadKeys(dir, { create: true })
      const viem = privateKeyToAccount(keys.validatorPrivateKey)
      expect(keys.validator.address).toBe(viem.address)
      // A precommit with its signed timestamp and vote extension, as the driver signs it.
      const vote = {
        kind: 'precommit',
        height: 12n,
        round: 1,
        blockHash: `0x${'9f'.repeat(32)}`,
        timestampMs: 1_900_000_000_123,
        extension: new Uint8Array([1, 2, 3]),
      } as const
      const fast = await signVote(keys.validator, 'net', vote)
      expect(fast).toEqual(await signVote(viem, 'net', vote))
      expect(keys.validator.signTypedData).not.toBe(viem.signTypedData)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
