import {
  AbiCoder,
  getAddress as ethersGetAddress,
  id as ethersTypeHash,
  TypedDataEncoder,
  Wallet,
} from 'ethers'
import fc from 'fast-check'
import { decodeAbiParameters, encodeAbiParameters, type Hex, hashTypedData } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
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
import {
  buildOrder,
  CodecError,
  decodeOrderData,
  decodeSignedIntent,
  decodeSignedIntentBatch,
  encodedOrderSize,
  encodeOrderData,
  encodeSignedIntent,
  encodeSignedIntentBatch,
  GASLESS_ORDER_TYPEHASH,
  type GaslessCrossChainOrder,
  intentId,
  MAX_INTENT_BATCH_COUNT,
  MURMUR_ORDER_TYPE,
  MURMUR_ORDER_TYPEHASH,
  type MurmurOrderData,
  NO_SIGNATURE,
  ONCHAIN_NONCE_BIT,
  orderFromJson,
  orderFromOriginData,
  orderToJson,
  orderTypedData,
  originDataOf,
  type SignedIntent,
  signedIntentFromJson,
  signedIntentToJson,
  signOrder,
} from '../src/codec/intent.ts'
import { UINT256_MAX } from '../src/codec/json.ts'

const toHex = (b: Uint8Array): Hex => `0x${Buffer.from(b).toString('hex')}`
const bytesArb = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max }).map(toHex)
const addressArb = bytesArb(20, 20)
const uint256Arb = fc.oneof(fc.bigInt({ min: 0n, max: UINT256_MAX }), fc.constantFrom(0n, 1n, UINT256_MAX))
const uint32Arb = fc.oneof(fc.integer({ min: 0, max: 0xffff_ffff }), fc.constantFrom(0, 0xffff_ffff))

/** Any well-formed order, payload not necessarily a MurmurOrder. */
const orderArb: fc.Arbitrary<GaslessCrossChainOrder> = fc.record({
  originSettler: addressArb,
  user: addressArb,
  nonce: uint256Arb,
  originChainId: uint256Arb,
  openDeadline: uint32Arb,
  fillDeadline: uint32Arb,
  orderDataType: bytesArb(32, 32),
  orderData: bytesArb(0, 400),
})
/** Any well-formed signed intent; an unsigned one (empty signature) has an on-chain nonce (bit 255). */
const signedArb: fc.Arbitrary<SignedIntent> = fc
  .record({ order: orderArb, signature: bytesArb(0, 140) })
  .map((i) =>
    i.signature === '0x' ? { ...i, order: { ...i.order, nonce: i.order.nonce | ONCHAIN_NONCE_BIT } } : i,
  )

const murmurDataArb: fc.Arbitrary<MurmurOrderData> = fc.record({
  inputToken: addressArb,
  inputAmount: uint256Arb,
  outputToken: addressArb,
  outputAmount: uint256Arb,
  recipient: addressArb,
  destinationChainIds: fc.array(uint256Arb, { maxLength: 8 }),
})

const codeOf = (f: () => unknown): string | undefined => {
  try {
    f()
  } catch (err) {
    if (err instanceof CodecError) return err.code
    throw err
  }
  return undefined
}

const sample: GaslessCrossChainOrder = buildOrder({
  user: '0x1111111111111111111111111111111111111111',
  nonce: 7n,
  originChainId: 900n,
  openDeadline: 2_000_000_000,
  fillDeadline: 2_000_000_600,
  inputAmount: 10n ** 18n,
  outputAmount: 10n ** 18n - 1000n,
  destinationChainIds: [901n, 902n],
})
const sampleSignature: Hex = `0x${'ab'.repeat(64)}1b`

describe('EIP-712 types', () => {
  const encodeType = (types: Record<string, readonly { name: string; type: string }[]>, primary: string) =>
    TypedDataEncoder.from(JSON.parse(JSON.stringify(types))).encodeType(primary)

  it('type strings are exactly those of INTERFACES.md', () => {
    expect(encodeType(GASLESS_ORDER_TYPES, 'GaslessCrossChainOrder')).toBe(
      'GaslessCrossChainOrder(address originSettler,address user,uint256 nonce,uint256 originChainId,uint32 openDeadline,uint32 fillDeadline,bytes32 orderDataType,bytes orderData)',
    )
    expect(encodeType(STAKE_MOVE_TYPES, 'StakeMove')).toBe(
      'StakeMove(address staker,uint256 fromChainId,uint256 toChainId,uint256 amount,uint64 durationBlocks,uint256 nonce)',
    )
    expect(encodeType(PROFILE_TYPES, 'Profile')).toBe(
      'Profile(address user,uint256[] preferredChainIds,uint256[] avoidChainIds,string preferredType,uint256 maxFeeBps,address gasToken,RebalanceRule[] rebalanceRules,uint256 nonce)' +
        'RebalanceRule(address token,uint256 threshold,uint256[] spreadOverChainIds)',
    )
    expect(encodeType(CREDENTIAL_TYPES, 'Credential')).toBe(
      'Credential(string issuer,string subject,string credentialType,bytes32 claimsHash,uint64 validFrom,uint64 validUntil,uint256[] chainIds,uint256 nonce)',
    )
    expect(encodeType(REVOCATION_TYPES, 'Revocation')).toBe(
      'Revocation(bytes32 credentialId,string issuer,uint256 nonce)',
    )
  })

  it('typehashes match ethers', () => {
    expect(MURMUR_ORDER_TYPEHASH).toBe(ethersTypeHash(MURMUR_ORDER_TYPE))
    expect(GASLESS_ORDER_TYPEHASH).toBe(
      ethersTypeHash(encodeType(GASLESS_ORDER_TYPES, 'GaslessCrossChainOrder')),
    )
  })

  it('orderDomain and networkDomain have the documented shape', () => {
    expect(orderDomain(sample)).toEqual({
      name: 'Murmur',
      version: '1',
      chainId: 900n,
      verifyingContract: sample.originSettler,
    })
    expect(networkDomain('devnet-1')).toEqual({
      name: 'Murmur',
      version: '1',
      salt: ethersTypeHash('devnet-1'),
    })
    expect(networkDomain('a').salt).not.toBe(networkDomain('b').salt)
  })

  it('hashNetworkTyped equals ethers TypedDataEncoder.hash for every user type', () => {
    const net = 'murmur-test'
    const domain = { name: 'Murmur', version: '1', salt: ethersTypeHash(net) }
    const user = '0x2222222222222222222222222222222222222222' as const
    const move = {
      staker: user,
      fromChainId: 901n,
      toChainId: 902n,
      amount: 5n,
      durationBlocks: 100n,
      nonce: 1n,
    }
    expect(hashNetworkTyped(net, 'StakeMove', STAKE_MOVE_TYPES, move)).toBe(
      TypedDataEncoder.hash(domain, { StakeMove: [...STAKE_MOVE_TYPES.StakeMove] }, move),
    )
    const profile = {
      user,
      preferredChainIds: [901n],
      avoidChainIds: [903n],
      preferredType: 'zk',
      maxFeeBps: 30n,
      gasToken: '0x0000000000000000000000000000000000000000' as const,
      rebalanceRules: [{ token: user, threshold: 10n, spreadOverChainIds: [901n, 902n] }],
      nonce: 3n,
    }
    expect(hashNetworkTyped(net, 'Profile', PROFILE_TYPES, profile)).toBe(
      TypedDataEncoder.hash(domain, JSON.parse(JSON.stringify(PROFILE_TYPES)), profile),
    )
    const credential = {
      issuer: 'did:pkh:eip155:1:0x2222222222222222222222222222222222222222',
      subject: 'did:pkh:eip155:1:0x3333333333333333333333333333333333333333',
      credentialType: 'kyc',
      claimsHash: ethersTypeHash('claims') as Hex,
      validFrom: 1n,
      validUntil: 2n,
      chainIds: [],
      nonce: 0n,
    }
    expect(hashNetworkTyped(net, 'Credential', CREDENTIAL_TYPES, credential)).toBe(
      TypedDataEncoder.hash(domain, JSON.parse(JSON.stringify(CREDENTIAL_TYPES)), credential),
    )
    const revocation = { credentialId: ethersTypeHash('cred') as Hex, issuer: credential.issuer, nonce: 9n }
    expect(hashNetworkTyped(net, 'Revocation', REVOCATION_TYPES, revocation)).toBe(
      TypedDataEncoder.hash(domain, JSON.parse(JSON.stringify(REVOCATION_TYPES)), revocation),
    )
    // Bound to the network: another id, another digest.
    expect(hashNetworkTyped('other', 'Revocation', REVOCATION_TYPES, revocation)).not.toBe(
      hashNetworkTyped(net, 'Revocation', REVOCATION_TYPES, revocation),
    )
  })
})

describe('intentId', () => {
  it('equals viem hashTypedData and ethers TypedDataEncoder.hash on any order', () => {
    fc.assert(
      fc.property(orderArb, (order) => {
        const id = intentId(order)
        expect(id).toBe(hashTypedData(orderTypedData(order)))
        expect(id).toBe(
          TypedDataEncoder.hash(
            orderDomain(order),
            { GaslessCrossChainOrder: [...GASLESS_ORDER_TYPES.GaslessCrossChainOrder] },
            order,
          ),
        )
      }),
      { numRuns: 60 },
    )
  })

  it('changes when any field changes', () => {
    const id = intentId(sample)
    const variants: Partial<GaslessCrossChainOrder>[] = [
      { originSettler: '0x0000000000000000000000000000000000000001' },
      { user: '0x1111111111111111111111111111111111111112' },
      { nonce: 8n },
      { originChainId: 901n },
      { openDeadline: sample.openDeadline + 1 },
      { fillDeadline: sample.fillDeadline + 1 },
      { orderDataType: `0x${'00'.repeat(32)}` },
      { orderData: `${sample.orderData}00` },
    ]
    for (const v of variants) expect(intentId({ ...sample, ...v })).not.toBe(id)
  })

  it('refuses an ill-formed order with BAD_FIELD', () => {
    expect(codeOf(() => intentId({ ...sample, user: '0x11' }))).toBe('BAD_FIELD')
    expect(codeOf(() => intentId({ ...sample, nonce: -1n }))).toBe('BAD_FIELD')
    expect(codeOf(() => intentId({ ...sample, openDeadline: 2 ** 32 }))).toBe('BAD_FIELD')
  })
})

describe('orderData (MurmurOrder)', () => {
  it('encodes like ethers abi.encode of the tuple and round-trips', () => {
    fc.assert(
      fc.property(murmurDataArb, (data) => {
        const encoded = encodeOrderData(data)
        const ethersEncoded = AbiCoder.defaultAbiCoder().encode(
          ['tuple(address,uint256,address,uint256,address,uint256[])'],
          [
            [
              data.inputToken,
              data.inputAmount,
              data.outputToken,
              data.outputAmount,
              data.recipient,
              data.destinationChainIds,
            ],
          ],
        )
        expect(encoded).toBe(ethersEncoded)
        expect(decodeOrderData(encoded)).toEqual(data)
      }),
      { numRuns: 100 },
    )
  })

  it('refuses non-canonical and short encodings with BAD_ORDER_DATA', () => {
    const enc = sample.orderData
    const word = (i: number) => 2 + i * 64
    const dirtyAddress = `${enc.slice(0, word(1))}ff${enc.slice(word(1) + 2)}` as Hex
    const badOffset = `${enc.slice(0, word(0) + 62)}40${enc.slice(word(1))}` as Hex
    const cases: Hex[] = [
      '0x',
      `${enc}${'00'.repeat(32)}` as Hex, // trailing word
      enc.slice(0, -64) as Hex, // last chain id missing
      dirtyAddress,
      badOffset,
      `${enc}00` as Hex,
      enc.toUpperCase().replace('0X', '0x') as Hex,
    ]
    for (const c of cases) expect(codeOf(() => decodeOrderData(c))).toBe('BAD_ORDER_DATA')
  })

  it('decoding random bytes throws only CodecError', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          bytesArb(0, 600),
          fc
            .array(fc.constantFrom(0, 0x20, 0xff, 1), { minLength: 256, maxLength: 512 })
            .map((a) => toHex(Uint8Array.from(a))),
        ),
        (hex) => {
          const code = codeOf(() => decodeOrderData(hex))
          expect(code === undefined || code === 'BAD_ORDER_DATA').toBe(true)
        },
      ),
      { numRuns: 300 },
    )
  })

  it('the hand-written decoder accepts exactly the canonical encodings (single-byte mutations)', () => {
    fc.assert(
      fc.property(murmurDataArb, fc.nat(), fc.integer({ min: 0, max: 255 }), (data, at, byte) => {
        const bytes = Buffer.from(encodeOrderData(data).slice(2), 'hex')
        bytes[at % bytes.length] = byte
        const hex = toHex(bytes)
        const code = codeOf(() => decodeOrderData(hex))
        if (code === undefined) {
          // Accepted: then it must be what viem decodes and re-encode to the very same bytes.
          const decoded = decodeOrderData(hex)
          expect(encodeOrderData(decoded)).toBe(hex)
          const [viem] = decodeAbiParameters(
            [
              {
                type: 'tuple',
                components: [
                  { name: 'inputToken', type: 'address' },
                  { name: 'inputAmount', type: 'uint256' },
                  { name: 'outputToken', type: 'address' },
                  { name: 'outputAmount', type: 'uint256' },
                  { name: 'recipient', type: 'address' },
                  { name: 'destinationChainIds', type: 'uint256[]' },
                ],
              },
            ],
            hex,
          )
          expect(decoded.outputAmount).toBe(viem.outputAmount)
          expect(decoded.destinationChainIds).toEqual([...viem.destinationChainIds])
        } else expect(code).toBe('BAD_ORDER_DATA')
      }),
      { numRuns: 500 },
    )
  })

  it('encodedOrderSize is the ABI encoding length of the order tuple', () => {
    fc.assert(
      fc.property(orderArb, (order) => {
        const abi = encodeAbiParameters(
          [{ type: 'tuple', components: [...GASLESS_ORDER_TYPES.GaslessCrossChainOrder] }],
          [order],
        )
        expect(encodedOrderSize(order)).toBe((abi.length - 2) / 2)
      }),
      { numRuns: 50 },
    )
  })
})

describe('JSON form', () => {
  it('round-trips', () => {
    fc.assert(
      fc.property(orderArb, (order) => {
        const json = orderToJson(order)
        expect(orderFromJson(JSON.parse(JSON.stringify(json)))).toEqual(order)
        expect(typeof json.nonce).toBe('string')
        expect(typeof json.openDeadline).toBe('number')
      }),
    )
    const body = signedIntentToJson({ order: sample, signature: sampleSignature })
    expect(signedIntentFromJson(JSON.parse(JSON.stringify(body)))).toEqual({
      order: sample,
      signature: sampleSignature,
    })
  })

  it('accepts an EIP-55 checksummed address and returns it lowercase', () => {
    const json = { ...orderToJson(sample), user: ethersGetAddress(sample.user.replace(/1/g, 'a')) }
    expect(json.user).not.toBe(json.user.toLowerCase())
    expect(orderFromJson(json).user).toBe(json.user.toLowerCase())
  })

  const good = orderToJson(sample)
  const table: [string, unknown, string][] = [
    ['not an object', 'x', 'order'],
    ['array', [good], 'order'],
    ['null', null, 'order'],
    ['missing field', { ...good, nonce: undefined }, 'order.nonce'],
    ['unknown field', { ...good, extra: 1 }, 'order.extra'],
    ['short address', { ...good, user: '0x1234' }, 'order.user'],
    ['address without 0x', { ...good, originSettler: '11'.repeat(21) }, 'order.originSettler'],
    ['bad checksum', { ...good, user: '0xAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' }, 'order.user'],
    ['nonce as number', { ...good, nonce: 7 }, 'order.nonce'],
    ['nonce leading zero', { ...good, nonce: '07' }, 'order.nonce'],
    ['nonce negative', { ...good, nonce: '-1' }, 'order.nonce'],
    ['nonce hex', { ...good, nonce: '0x7' }, 'order.nonce'],
    ['nonce too big', { ...good, nonce: (UINT256_MAX + 1n).toString() }, 'order.nonce'],
    ['chain id empty', { ...good, originChainId: '' }, 'order.originChainId'],
    ['deadline as string', { ...good, openDeadline: '2000000000' }, 'order.openDeadline'],
    ['deadline fractional', { ...good, fillDeadline: 1.5 }, 'order.fillDeadline'],
    ['deadline too big', { ...good, fillDeadline: 2 ** 32 }, 'order.fillDeadline'],
    ['deadline negative', { ...good, openDeadline: -1 }, 'order.openDeadline'],
    ['type hash short', { ...good, orderDataType: '0x1234' }, 'order.orderDataType'],
    [
      'type hash uppercase',
      { ...good, orderDataType: good.orderDataType.toUpperCase().replace('0X', '0x') },
      'order.orderDataType',
    ],
    ['orderData odd length', { ...good, orderData: '0x123' }, 'order.orderData'],
    ['orderData not hex', { ...good, orderData: '0xzz' }, 'order.orderData'],
  ]
  it.each(table)('rejects %s naming the field', (_name, json, field) => {
    const clean = json !== null && typeof json === 'object' ? JSON.parse(JSON.stringify(json)) : json
    try {
      orderFromJson(clean)
      expect.unreachable()
    } catch (err) {
      expect(err).toBeInstanceOf(CodecError)
      expect((err as CodecError).code).toBe('BAD_FIELD')
      expect((err as CodecError).field).toBe(field)
    }
  })

  it('rejects oversized orderData with TOO_LARGE before parsing it', () => {
    expect(codeOf(() => orderFromJson({ ...good, orderData: `0x${'00'.repeat(5000)}` }))).toBe('TOO_LARGE')
  })
})

describe('wire codec', () => {
  const canon = (x: unknown) => JSON.stringify(x, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))

  it('round-trips exactly', () => {
    fc.assert(
      fc.property(signedArb, (intent) => {
        const bytes = encodeSignedIntent(intent)
        const back = decodeSignedIntent(bytes)
        expect(back).toEqual(intent)
        expect(canon(back)).toBe(canon(intent))
        expect(encodeSignedIntent(back)).toEqual(bytes)
      }),
      { numRuns: 200 },
    )
  })

  it('starts with the version byte and rejects other versions', () => {
    const bytes = encodeSignedIntent({ order: sample, signature: sampleSignature })
    expect(bytes[0]).toBe(1)
    const v2 = Uint8Array.from(bytes)
    v2[0] = 2
    expect(codeOf(() => decodeSignedIntent(v2))).toBe('BAD_VERSION')
  })

  it('rejects every truncation and any trailing byte', () => {
    const bytes = encodeSignedIntent({ order: sample, signature: sampleSignature })
    for (let n = 0; n < bytes.length; n++) {
      expect(codeOf(() => decodeSignedIntent(bytes.subarray(0, n)))).toBe('TRUNCATED')
    }
    const longer = new Uint8Array(bytes.length + 1)
    longer.set(bytes)
    expect(codeOf(() => decodeSignedIntent(longer))).toBe('TRAILING_BYTES')
  })

  it('decodes from a view into a larger buffer', () => {
    const bytes = encodeSignedIntent({ order: sample, signature: sampleSignature })
    const big = new Uint8Array(bytes.length + 10)
    big.set(bytes, 7)
    expect(decodeSignedIntent(big.subarray(7, 7 + bytes.length))).toEqual({
      order: sample,
      signature: sampleSignature,
    })
  })

  it('refuses to encode an ill-formed intent', () => {
    expect(
      codeOf(() => encodeSignedIntent({ order: { ...sample, nonce: UINT256_MAX + 1n }, signature: '0x' })),
    ).toBe('BAD_FIELD')
    expect(codeOf(() => encodeSignedIntent({ order: sample, signature: '0xABCD' }))).toBe('BAD_FIELD')
  })

  it('batches round-trip, empty included', () => {
    fc.assert(
      fc.property(fc.array(signedArb, { maxLength: 6 }), (intents) => {
        const bytes = encodeSignedIntentBatch(intents)
        expect(decodeSignedIntentBatch(bytes)).toEqual(intents)
      }),
      { numRuns: 60 },
    )
  })

  it('batch rejects truncation, trailing bytes, bad version and too many items', () => {
    const intents = [
      { order: sample, signature: sampleSignature },
      { order: { ...sample, nonce: 8n }, signature: sampleSignature },
    ]
    const bytes = encodeSignedIntentBatch(intents)
    for (let n = 0; n < bytes.length; n++) {
      expect(codeOf(() => decodeSignedIntentBatch(bytes.subarray(0, n)))).toBe('TRUNCATED')
    }
    const longer = new Uint8Array(bytes.length + 1)
    longer.set(bytes)
    expect(codeOf(() => decodeSignedIntentBatch(longer))).toBe('TRAILING_BYTES')
    const v0 = Uint8Array.from(bytes)
    v0[0] = 0
    expect(codeOf(() => decodeSignedIntentBatch(v0))).toBe('BAD_VERSION')
    expect(codeOf(() => decodeSignedIntentBatch(bytes, 1))).toBe('TOO_LARGE')
    // An item whose length prefix covers one byte more than the item.
    const item = encodeSignedIntent(intents[0]!)
    const padded = new Uint8Array(3 + 4 + item.length + 1)
    padded.set([1, 0, 1], 0)
    new DataView(padded.buffer).setUint32(3, item.length + 1)
    padded.set(item, 7)
    expect(codeOf(() => decodeSignedIntentBatch(padded))).toBe('TRAILING_BYTES')
    const tooMany = new Array<SignedIntent>(MAX_INTENT_BATCH_COUNT + 1).fill(intents[0]!)
    expect(codeOf(() => encodeSignedIntentBatch(tooMany))).toBe('TOO_LARGE')
  })

  it('decoders throw only CodecError on random and mutated input', () => {
    const valid = encodeSignedIntentBatch([
      { order: sample, signature: sampleSignature },
      { order: { ...sample, nonce: 9n }, signature: sampleSignature },
    ])
    const mutated = fc
      .array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 4,
      })
      .map((muts) => {
        const b = Uint8Array.from(valid)
        for (const [i, v] of muts) b[i] = v
        return b
      })
    const allowed = new Set([
      undefined,
      'BAD_VERSION',
      'TRUNCATED',
      'TRAILING_BYTES',
      'TOO_LARGE',
      'UNSIGNED',
    ])
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 600 }),
          mutated,
          mutated.map((b) => b.subarray(7)),
        ),
        (bytes) => {
          expect(allowed.has(codeOf(() => decodeSignedIntent(bytes)))).toBe(true)
          expect(allowed.has(codeOf(() => decodeSignedIntentBatch(bytes)))).toBe(true)
        },
      ),
      { numRuns: 1000 },
    )
  })
})

describe('unsigned intents (orders opened on chain)', () => {
  const opened: GaslessCrossChainOrder = { ...sample, nonce: ONCHAIN_NONCE_BIT | 3n }
  const unsigned: SignedIntent = { order: opened, signature: NO_SIGNATURE }

  it('round-trip through the wire codec, alone and in a batch, and through JSON', () => {
    expect(decodeSignedIntent(encodeSignedIntent(unsigned))).toEqual(unsigned)
    const batch = [unsigned, { order: sample, signature: sampleSignature }]
    expect(decodeSignedIntentBatch(encodeSignedIntentBatch(batch))).toEqual(batch)
    const json = signedIntentToJson(unsigned)
    expect(json.signature).toBe('0x')
    expect(signedIntentFromJson(JSON.parse(JSON.stringify(json)))).toEqual(unsigned)
  })

  it('an empty signature is refused (UNSIGNED) on an order whose nonce lacks bit 255, in every codec', () => {
    const bare: SignedIntent = {
      order: { ...sample, nonce: ONCHAIN_NONCE_BIT - 1n },
      signature: NO_SIGNATURE,
    }
    expect(codeOf(() => encodeSignedIntent(bare))).toBe('UNSIGNED')
    expect(codeOf(() => encodeSignedIntentBatch([bare]))).toBe('UNSIGNED')
    expect(codeOf(() => signedIntentToJson(bare))).toBe('UNSIGNED')
    expect(codeOf(() => signedIntentFromJson({ order: orderToJson(bare.order), signature: '0x' }))).toBe(
      'UNSIGNED',
    )
    // The same bytes as a valid unsigned intent, with bit 255 of the nonce cleared (first byte of the
    // nonce, after version, settler and user).
    const bytes = Uint8Array.from(encodeSignedIntent(unsigned))
    bytes[1 + 20 + 20] = 0x00
    expect(codeOf(() => decodeSignedIntent(bytes))).toBe('UNSIGNED')
  })

  it('orderFromOriginData inverts originDataOf, and refuses what is not a canonical encoding', () => {
    fc.assert(
      fc.property(orderArb, (order) => {
        expect(orderFromOriginData(originDataOf(order))).toEqual(order)
      }),
      { numRuns: 200 },
    )
    const data = originDataOf(opened)
    expect(orderFromOriginData(data.toUpperCase().replace('0X', '0x') as Hex)).toEqual(opened)
    expect(codeOf(() => orderFromOriginData(`${data}00` as Hex))).toBe('BAD_FIELD')
    expect(codeOf(() => orderFromOriginData(data.slice(0, -64) as Hex))).toBe('BAD_FIELD')
    expect(codeOf(() => orderFromOriginData('0x1234'))).toBe('BAD_FIELD')
  })
})

describe('buildOrder and signOrder', () => {
  it('builds a Murmur order with defaults and lowercases addresses', () => {
    const account = privateKeyToAccount(generatePrivateKey())
    const order = buildOrder({
      user: account.address,
      nonce: 1n,
      originChainId: 900n,
      openDeadline: 100,
      fillDeadline: 200,
      inputAmount: 5n,
      outputAmount: 4n,
    })
    expect(order.user).toBe(account.address.toLowerCase())
    expect(order.originSettler).toBe('0x0000000000000000000000000000000000000000')
    expect(order.orderDataType).toBe(MURMUR_ORDER_TYPEHASH)
    expect(decodeOrderData(order.orderData)).toEqual({
      inputToken: '0x0000000000000000000000000000000000000000',
      inputAmount: 5n,
      outputToken: '0x0000000000000000000000000000000000000000',
      outputAmount: 4n,
      recipient: account.address.toLowerCase(),
      destinationChainIds: [],
    })
  })

  it('viem signOrder and ethers signTypedData produce the same signature', async () => {
    const pk = generatePrivateKey()
    const account = privateKeyToAccount(pk)
    const order = buildOrder({ ...orderParams(), user: account.address })
    const viemSig = await signOrder(account, order)
    const ethersSig = await new Wallet(pk).signTypedData(
      orderDomain(order),
      { GaslessCrossChainOrder: [...GASLESS_ORDER_TYPES.GaslessCrossChainOrder] },
      order,
    )
    expect(viemSig).toMatch(/^0x[0-9a-f]{130}$/)
    expect(viemSig).toBe(ethersSig.toLowerCase())
  })
})

function orderParams() {
  return {
    nonce: 42n,
    originChainId: 900n,
    openDeadline: 2_000_000_000,
    fillDeadline: 2_000_000_900,
    inputAmount: 1000n,
    outputAmount: 990n,
    destinationChainIds: [901n],
  }
}
