import fc from 'fast-check'
import { domainSeparator, hashTypedData, type TypedData } from 'viem'
import { describe, expect, it } from 'vitest'
import {
  CREDENTIAL_TYPES,
  GASLESS_ORDER_TYPES,
  hashNetworkTyped,
  networkDomain,
  orderDomain,
  PROFILE_TYPES,
  REVOCATION_TYPES,
  STAKE_MOVE_TYPES,
} from '../src/codec/eip712.ts'
import { domainSeparatorFast, hashTypedDataFast } from '../src/codec/eip712-hash.ts'
import { PROPOSAL_TYPES, VOTE_TYPES } from '../src/consensus/votes.ts'
import { FILL_TYPES } from '../src/rollups/fill.ts'
import { HEALTH_REPORT_TYPES } from '../src/rollups/health-report.ts'
import { addressArb, bytesArb, toHex, valueArb } from './helpers/typed-data.ts'

const networkDomainArb = fc.string({ maxLength: 20 }).map(networkDomain)
const orderDomainArb = fc
  .tuple(fc.bigInt({ min: 0n, max: (1n << 256n) - 1n }), bytesArb(20))
  .map(([originChainId, originSettler]) => orderDomain({ originChainId, originSettler }))
/** Any subset of the five domain fields. */
const anyDomainArb = fc.record(
  {
    name: fc.string({ maxLength: 12 }),
    version: fc.string({ maxLength: 4 }),
    chainId: fc.oneof(fc.bigInt({ min: 0n, max: (1n << 256n) - 1n }), fc.nat()),
    verifyingContract: addressArb,
    salt: bytesArb(32),
  },
  { requiredKeys: [] },
)

function sameAsViem(domainArb: fc.Arbitrary<object>, types: TypedData, primaryType: string, numRuns = 150) {
  fc.assert(
    fc.property(domainArb, valueArb(primaryType, types), (domain, message) => {
      const params = { domain, types, primaryType, message } as any
      expect(hashTypedDataFast(params)).toBe(hashTypedData(params))
    }),
    { numRuns },
  )
}

/** Every field type the fast path supports, nested structs and arrays of them. */
const ALL_TYPES = {
  Everything: [
    { name: 'flag', type: 'bool' },
    { name: 'b1', type: 'bytes1' },
    { name: 'b7', type: 'bytes7' },
    { name: 'b20', type: 'bytes20' },
    { name: 'b32', type: 'bytes32' },
    { name: 'blob', type: 'bytes' },
    { name: 'text', type: 'string' },
    { name: 'u8', type: 'uint8' },
    { name: 'u24', type: 'uint24' },
    { name: 'u56', type: 'uint56' },
    { name: 'u64', type: 'uint64' },
    { name: 'u128', type: 'uint128' },
    { name: 'u256', type: 'uint256' },
    { name: 'i8', type: 'int8' },
    { name: 'i32', type: 'int32' },
    { name: 'i64', type: 'int64' },
    { name: 'i200', type: 'int200' },
    { name: 'i256', type: 'int256' },
    { name: 'who', type: 'address' },
    { name: 'whos', type: 'address[]' },
    { name: 'hashes', type: 'bytes32[]' },
    { name: 'texts', type: 'string[]' },
    { name: 'blobs', type: 'bytes[]' },
    { name: 'flags', type: 'bool[]' },
    { name: 'ints', type: 'int16[]' },
    { name: 'triple', type: 'uint256[3]' },
    { name: 'grid', type: 'uint8[][]' },
    { name: 'inner', type: 'Inner' },
    { name: 'inners', type: 'Inner[]' },
  ],
  Inner: [
    { name: 'id', type: 'uint32' },
    { name: 'leaf', type: 'Leaf' },
    { name: 'leaves', type: 'Leaf[]' },
  ],
  Leaf: [
    { name: 'note', type: 'string' },
    { name: 'owner', type: 'address' },
  ],
} as const satisfies TypedData

describe('hashTypedDataFast equals viem hashTypedData', () => {
  it('GaslessCrossChainOrder under orderDomain', () => {
    sameAsViem(orderDomainArb, GASLESS_ORDER_TYPES, 'GaslessCrossChainOrder')
  })

  it.each([
    ['StakeMove', STAKE_MOVE_TYPES],
    ['Profile', PROFILE_TYPES],
    ['Credential', CREDENTIAL_TYPES],
    ['Revocation', REVOCATION_TYPES],
    ['Vote', VOTE_TYPES],
    ['Proposal', PROPOSAL_TYPES],
    ['HealthReport', HEALTH_REPORT_TYPES],
    ['Fill', FILL_TYPES],
  ] as const)('%s under networkDomain', (primaryType, types) => {
    sameAsViem(networkDomainArb, types, primaryType)
  })

  it.each([
    ['Vote', VOTE_TYPES],
    ['Proposal', PROPOSAL_TYPES],
    ['HealthReport', HEALTH_REPORT_TYPES],
    ['Fill', FILL_TYPES],
    ['Profile', PROFILE_TYPES],
  ] as const)('hashNetworkTyped of %s', (primaryType, types) => {
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), valueArb(primaryType, types), (networkId, message) => {
        const viem = hashTypedData({ domain: networkDomain(networkId), types, primaryType, message } as any)
        expect(hashNetworkTyped(networkId, primaryType, types as TypedData, message as any)).toBe(viem)
      }),
      { numRuns: 150 },
    )
  })

  it('every field type, nested structs and arrays, under any domain', () => {
    sameAsViem(anyDomainArb, ALL_TYPES, 'Everything', 300)
    sameAsViem(anyDomainArb, ALL_TYPES, 'Inner')
  })

  it('a recursive type', () => {
    const types = {
      Person: [
        { name: 'name', type: 'string' },
        { name: 'wallet', type: 'address' },
        { name: 'children', type: 'Person[]' },
      ],
    } as const satisfies TypedData
    const personArb = (depth: number): fc.Arbitrary<unknown> =>
      fc.record({
        name: fc.string({ maxLength: 8 }),
        wallet: addressArb,
        children: depth === 0 ? fc.constant([]) : fc.array(personArb(depth - 1), { maxLength: 3 }),
      })
    const person = personArb(3)
    fc.assert(
      fc.property(anyDomainArb, person, (domain, message) => {
        const params = { domain, types, primaryType: 'Person', message } as any
        expect(hashTypedDataFast(params)).toBe(hashTypedData(params))
      }),
      { numRuns: 100 },
    )
  })

  it('a types object with its own EIP712Domain, and primaryType EIP712Domain', () => {
    const types = {
      EIP712Domain: [
        { name: 'name', type: 'string' },
        { name: 'chainId', type: 'uint256' },
      ],
      Ping: [{ name: 'n', type: 'uint64' }],
    } as const satisfies TypedData
    const domain = { name: 'Custom', chainId: 7n }
    for (const primaryType of ['Ping', 'EIP712Domain'] as const) {
      const params = { domain, types, primaryType, message: { n: 9n } } as any
      expect(hashTypedDataFast(params)).toBe(hashTypedData(params))
    }
    fc.assert(
      fc.property(anyDomainArb, (domain) => {
        const params = { domain, types: VOTE_TYPES, primaryType: 'EIP712Domain' } as any
        expect(hashTypedDataFast(params)).toBe(hashTypedData(params))
      }),
    )
  })

  it('numbers, bigints and numeric strings hash alike; the domain separator is cached by value', () => {
    const domain = networkDomain('cache')
    const message = {
      kind: 1,
      height: 7n,
      round: 2,
      blockHash: `0x${'ab'.repeat(32)}`,
      timestampMs: 1_900_000_000_000n,
      extensionHash: `0x${'cd'.repeat(32)}`,
    }
    const expected = hashTypedData({ domain, types: VOTE_TYPES, primaryType: 'Vote', message } as any)
    for (const m of [
      message,
      { ...message, kind: 1n, height: 7, round: 2n, timestampMs: 1_900_000_000_000 },
      { ...message, height: '7', timestampMs: '1900000000000' },
    ]) {
      expect(
        hashTypedDataFast({
          domain: { ...domain },
          types: VOTE_TYPES,
          primaryType: 'Vote',
          message: m,
        } as any),
      ).toBe(expected)
    }
    expect(toHex(domainSeparatorFast(domain))).toBe(domainSeparator({ domain }))
    expect(toHex(domainSeparatorFast({ ...domain, salt: undefined }))).toBe(
      domainSeparator({ domain: { ...domain, salt: undefined } }),
    )
    // A different domain gives a different digest (no stale cache entry).
    const other = hashTypedDataFast({
      domain: networkDomain('cache2'),
      types: VOTE_TYPES,
      primaryType: 'Vote',
      message,
    } as any)
    expect(other).not.toBe(expected)
    expect(other).toBe(
      hashTypedData({
        domain: networkDomain('cache2'),
        types: VOTE_TYPES,
        primaryType: 'Vote',
        message,
      } as any),
    )
  })
})

describe('the Vote type', () => {
  it('is pinned: a precommit signs its timestamp and the hash of its vote extension', () => {
    const encoded = `Vote(${VOTE_TYPES.Vote.map((f) => `${f.type} ${f.name}`).join(',')})`
    expect(encoded).toBe(
      'Vote(uint8 kind,uint64 height,uint32 round,bytes32 blockHash,uint64 timestampMs,bytes32 extensionHash)',
    )
  })
})

describe('hashTypedDataFast rejects values that do not fit their type', () => {
  const domain = networkDomain('bad')
  const report = {
    validator: `0x${'12'.repeat(20)}`,
    chainId: 10n,
    blockNumber: 5n,
    gasUsed: 1n,
    gasLimit: 2n,
    gasUsedRatioBps: 5000,
    baseFeeWei: 7n,
    blockTimeMs: 2000,
    latencyMs: 30,
    status: 0,
    timestampMs: 1_700_000_000_000n,
  }
  const vote = {
    kind: 1,
    height: 1n,
    round: 0,
    blockHash: `0x${'00'.repeat(32)}`,
    timestampMs: 0n,
    extensionHash: `0x${'00'.repeat(32)}`,
  }
  const profile = {
    user: `0x${'12'.repeat(20)}`,
    preferredChainIds: [1n],
    avoidChainIds: [],
    preferredType: 'x',
    maxFeeBps: 1n,
    gasToken: `0x${'00'.repeat(20)}`,
    rebalanceRules: [{ token: `0x${'34'.repeat(20)}`, threshold: 1n, spreadOverChainIds: [2n] }],
    nonce: 0n,
  }
  const cases: [string, TypedData, string, Record<string, unknown>, RegExp][] = [
    [
      'address of 19 bytes',
      HEALTH_REPORT_TYPES,
      'HealthReport',
      { ...report, validator: `0x${'12'.repeat(19)}` },
      /HealthReport\.validator/,
    ],
    [
      'address not hex',
      HEALTH_REPORT_TYPES,
      'HealthReport',
      { ...report, validator: `0x${'zz'.repeat(20)}` },
      /address/,
    ],
    [
      'address with a bad checksum',
      HEALTH_REPORT_TYPES,
      'HealthReport',
      { ...report, validator: `0x${'aA'.repeat(20)}` },
      /checksum/,
    ],
    [
      'negative uint',
      HEALTH_REPORT_TYPES,
      'HealthReport',
      { ...report, chainId: -1n },
      /HealthReport\.chainId.*range/,
    ],
    [
      'uint64 overflow',
      HEALTH_REPORT_TYPES,
      'HealthReport',
      { ...report, blockNumber: 1n << 64n },
      /blockNumber.*range/,
    ],
    [
      'uint256 overflow',
      HEALTH_REPORT_TYPES,
      'HealthReport',
      { ...report, baseFeeWei: 1n << 256n },
      /baseFeeWei/,
    ],
    [
      'uint8 overflow as a number',
      HEALTH_REPORT_TYPES,
      'HealthReport',
      { ...report, status: 256 },
      /status.*range/,
    ],
    ['non-integral number', HEALTH_REPORT_TYPES, 'HealthReport', { ...report, latencyMs: 1.5 }, /latencyMs/],
    [
      'missing field',
      HEALTH_REPORT_TYPES,
      'HealthReport',
      { ...report, timestampMs: undefined },
      /timestampMs: missing/,
    ],
    [
      'bytes32 of 31 bytes',
      VOTE_TYPES,
      'Vote',
      { ...vote, blockHash: `0x${'00'.repeat(31)}` },
      /Vote\.blockHash.*32 bytes/,
    ],
    ['bytes32 of 33 bytes', VOTE_TYPES, 'Vote', { ...vote, blockHash: `0x${'00'.repeat(33)}` }, /blockHash/],
    [
      'uint64 timestamp overflow',
      VOTE_TYPES,
      'Vote',
      { ...vote, timestampMs: 1n << 64n },
      /Vote\.timestampMs/,
    ],
    [
      'extension hash missing',
      VOTE_TYPES,
      'Vote',
      { ...vote, extensionHash: undefined },
      /Vote\.extensionHash: missing/,
    ],
    [
      'int32 underflow',
      PROPOSAL_TYPES,
      'Proposal',
      { height: 1n, round: 0, blockHash: vote.blockHash, validRound: -(2 ** 31) - 1 },
      /validRound/,
    ],
    [
      'bad address in a nested struct array',
      PROFILE_TYPES,
      'Profile',
      { ...profile, rebalanceRules: [{ ...profile.rebalanceRules[0], token: '0x12' }] },
      /rebalanceRules.*\[0\].*RebalanceRule\.token/,
    ],
    [
      'bad element of a uint256[]',
      PROFILE_TYPES,
      'Profile',
      { ...profile, preferredChainIds: [1n, -2n] },
      /preferredChainIds.*\[1\]/,
    ],
    [
      'array field not an array',
      PROFILE_TYPES,
      'Profile',
      { ...profile, avoidChainIds: 5n },
      /avoidChainIds/,
    ],
  ]

  it.each(cases)('%s', (_, types, primaryType, message, pattern) => {
    const params = { domain, types, primaryType, message } as any
    expect(() => hashTypedData(params)).toThrow()
    expect(() => hashTypedDataFast(params)).toThrow(pattern)
  })

  it('bytesN that is not hex (viem hashes the text of its encoding instead of throwing)', () => {
    for (const blockHash of [`0x${'0g'.repeat(32)}`, `0x${'zz'.repeat(32)}`, '00'.repeat(33)]) {
      const params = {
        domain,
        types: VOTE_TYPES,
        primaryType: 'Vote',
        message: { ...vote, blockHash },
      } as any
      expect(() => hashTypedDataFast(params)).toThrow(/Vote\.blockHash.*hex/)
    }
  })

  it('hashes correctly after a throw half-way through a nested struct', () => {
    const bad = { ...profile, rebalanceRules: [{ ...profile.rebalanceRules[0], threshold: -1n }] }
    expect(() =>
      hashTypedDataFast({ domain, types: PROFILE_TYPES, primaryType: 'Profile', message: bad } as any),
    ).toThrow(/threshold/)
    const params = { domain, types: PROFILE_TYPES, primaryType: 'Profile', message: profile } as any
    expect(hashTypedDataFast(params)).toBe(hashTypedData(params))
  })

  it('a bad domain value and an unknown primary type', () => {
    const params = {
      domain: { ...domain, salt: '0x1234' },
      types: VOTE_TYPES,
      primaryType: 'Vote',
      message: vote,
    }
    expect(() => hashTypedData(params as any)).toThrow()
    expect(() => hashTypedDataFast(params as any)).toThrow(/EIP712Domain\.salt/)
    expect(() =>
      hashTypedDataFast({ domain, types: VOTE_TYPES, primaryType: 'Nope', message: vote } as any),
    ).toThrow(/primary type/)
  })

  it('an invalid type in the types object', () => {
    for (const type of ['uint', 'uint7', 'bytes33', 'Missing']) {
      const types = { T: [{ name: 'x', type }] }
      const params = { domain, types, primaryType: 'T', message: { x: 1n } } as any
      expect(() => hashTypedData(params)).toThrow()
      expect(() => hashTypedDataFast(params)).toThrow(/type/)
    }
  })
})
