import { TypedDataEncoder, Wallet } from 'ethers'
import fc from 'fast-check'
import type { Address, Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { GASLESS_ORDER_TYPES, orderDomain } from '../src/codec/eip712.ts'
import {
  type BuildOrderParams,
  buildOrder,
  encodeOrderData,
  type GaslessCrossChainOrder,
  intentId,
  NO_SIGNATURE,
  ONCHAIN_NONCE_BIT,
  orderToJson,
  type SignedIntent,
  signedIntentToJson,
  signOrder,
} from '../src/codec/intent.ts'
import { RecoverPoolError, recoverAddress } from '../src/crypto/recover.ts'
import {
  type IntentRejectCode,
  type IntentValidation,
  type OpenedVerdict,
  type ValidateIntentContext,
  validateIntent,
  validateIntentJson,
} from '../src/mempool/validate.ts'

const NOW = 1_900_000_000
const SKEW = 30
const ROLLUPS = [901n, 902n, 903n]
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n

const ctx = (over: Partial<ValidateIntentContext> = {}): ValidateIntentContext => ({
  nowSec: NOW,
  maxClockSkewSec: SKEW,
  knownChainIds: new Set(ROLLUPS),
  ...over,
})

const pk = generatePrivateKey()
const account = privateKeyToAccount(pk)
const otherAccount = privateKeyToAccount(generatePrivateKey())

const params = (over: Partial<BuildOrderParams> = {}): BuildOrderParams => ({
  user: account.address,
  originSettler: '0x5555555555555555555555555555555555555555',
  nonce: 1n,
  originChainId: 900n,
  openDeadline: NOW + 60,
  fillDeadline: NOW + 600,
  inputAmount: 10n ** 18n,
  outputAmount: 10n ** 18n - 1000n,
  destinationChainIds: [901n, 902n],
  ...over,
})

async function signed(over: Partial<BuildOrderParams> = {}, signer = account): Promise<SignedIntent> {
  const order = buildOrder(params(over))
  return { order, signature: await signOrder(signer, order) }
}

/** Re-signs a hand-modified order so that only the modification is wrong. */
async function resign(order: GaslessCrossChainOrder): Promise<SignedIntent> {
  return { order, signature: await signOrder(account, order) }
}

function expectCode(r: IntentValidation, code: IntentRejectCode): void {
  expect(r.ok ? 'ok' : r.code).toBe(code)
}

describe('validateIntent accepts', () => {
  it('an order signed with ethers v6, with intentId equal to TypedDataEncoder.hash', async () => {
    const order = buildOrder(params())
    const types = { GaslessCrossChainOrder: [...GASLESS_ORDER_TYPES.GaslessCrossChainOrder] }
    const signature = (await new Wallet(pk).signTypedData(orderDomain(order), types, order)) as Hex
    const r = await validateIntent({ order, signature }, ctx())
    expect(r.ok).toBe(true)
    if (!r.ok) return
    expect(r.id).toBe(TypedDataEncoder.hash(orderDomain(order), types, order))
    expect(r.id).toBe(intentId(order))
    expect(r.data.destinationChainIds).toEqual([901n, 902n])
    expect(r.data.recipient).toBe(account.address.toLowerCase())
  })

  it('an order signed with viem, and its JSON body', async () => {
    const intent = await signed()
    const r = await validateIntent(intent, ctx())
    expect(r).toMatchObject({ ok: true, id: intentId(intent.order), order: intent.order })
    const body = JSON.parse(JSON.stringify(signedIntentToJson(intent)))
    expect(await validateIntentJson(body, ctx())).toEqual(r)
  })

  it('an order with v = 0/1 instead of 27/28', async () => {
    const intent = await signed()
    const v = Number.parseInt(intent.signature.slice(130), 16) - 27
    const signature = `${intent.signature.slice(0, 130)}0${v}` as Hex
    expect((await validateIntent({ ...intent, signature }, ctx())).ok).toBe(true)
  })

  it('an empty destination list (any rollup)', async () => {
    expect((await validateIntent(await signed({ destinationChainIds: [] }), ctx())).ok).toBe(true)
  })

  it('an openDeadline just inside the skew window', async () => {
    // openDeadline + skew must be after now: NOW - SKEW + 1 is the oldest accepted.
    const r = await validateIntent(await signed({ openDeadline: NOW - SKEW + 1 }), ctx())
    expect(r.ok).toBe(true)
  })

  it('an order of exactly 4 KiB encoded', async () => {
    // abi.encode(order) = 320 + orderData; orderData = 256 + 32 per chain id -> 110 ids make 4096.
    const ids = Array.from({ length: 110 }, (_, i) => 1000n + BigInt(i))
    const r = await validateIntent(
      await signed({ destinationChainIds: ids }),
      ctx({ knownChainIds: new Set(ids) }),
    )
    expect(r.ok).toBe(true)
  })
})

describe('validateIntent refuses', () => {
  it('MALFORMED: fillDeadline not after openDeadline', async () => {
    expectCode(await validateIntent(await signed({ fillDeadline: NOW + 60 }), ctx()), 'MALFORMED')
    expectCode(await validateIntent(await signed({ fillDeadline: NOW + 59 }), ctx()), 'MALFORMED')
  })

  it('MALFORMED: orderDataType is not the MurmurOrder typehash', async () => {
    const { order } = await signed()
    const bad = await resign({ ...order, orderDataType: `0x${'00'.repeat(32)}` })
    expectCode(await validateIntent(bad, ctx()), 'MALFORMED')
  })

  it('MALFORMED: orderData does not decode', async () => {
    const { order } = await signed()
    expectCode(await validateIntent(await resign({ ...order, orderData: '0x1234' }), ctx()), 'MALFORMED')
    expectCode(
      await validateIntent(
        await resign({ ...order, orderData: `${order.orderData}${'00'.repeat(32)}` }),
        ctx(),
      ),
      'MALFORMED',
    )
  })

  it('MALFORMED: an ill-formed typed field', async () => {
    const { order, signature } = await signed()
    const bads: Partial<GaslessCrossChainOrder>[] = [
      { user: account.address }, // checksummed, not canonical lowercase
      { nonce: -1n },
      { openDeadline: 1.5 },
      { orderData: '0xABCD' },
    ]
    for (const b of bads)
      expectCode(await validateIntent({ order: { ...order, ...b }, signature }, ctx()), 'MALFORMED')
  })

  it('BAD_SIGNATURE: signed by someone else', async () => {
    expectCode(await validateIntent(await signed({}, otherAccount), ctx()), 'BAD_SIGNATURE')
  })

  it('BAD_SIGNATURE: signature over a different order', async () => {
    const a = await signed()
    const b = await signed({ nonce: 2n })
    expectCode(await validateIntent({ order: a.order, signature: b.signature }, ctx()), 'BAD_SIGNATURE')
  })

  it('BAD_SIGNATURE: wrong length, bad v, high s, garbage', async () => {
    const { order, signature } = await signed()
    const s = BigInt(`0x${signature.slice(66, 130)}`)
    const v = Number.parseInt(signature.slice(130), 16)
    const highS =
      `${signature.slice(0, 66)}${(N - s).toString(16).padStart(64, '0')}${v === 27 ? '1c' : '1b'}` as Hex
    const sigs: Hex[] = [
      '0x',
      signature.slice(0, 130) as Hex,
      `${signature}00` as Hex,
      `${signature.slice(0, 130)}1d` as Hex,
      highS,
      `0x${'00'.repeat(65)}`,
      signature.toUpperCase().replace('0X', '0x') as Hex,
    ]
    for (const sig of sigs)
      expectCode(await validateIntent({ order, signature: sig }, ctx()), 'BAD_SIGNATURE')
  })

  it('EXPIRED: openDeadline at or beyond the skew window', async () => {
    expectCode(await validateIntent(await signed({ openDeadline: NOW - SKEW }), ctx()), 'EXPIRED')
    expectCode(await validateIntent(await signed({ openDeadline: 0, fillDeadline: 1 }), ctx()), 'EXPIRED')
    // The same order is valid for a clock that is not yet there.
    expect(
      (await validateIntent(await signed({ openDeadline: NOW - SKEW }), ctx({ nowSec: NOW - 1 }))).ok,
    ).toBe(true)
  })

  it('NONCE_USED: (user, nonce) seen before, asked with lowercase user', async () => {
    const seen: [Address, bigint][] = []
    const isNonceUsed = (user: Address, nonce: bigint) => {
      seen.push([user, nonce])
      return user === account.address.toLowerCase() && nonce === 1n
    }
    expectCode(await validateIntent(await signed(), ctx({ isNonceUsed })), 'NONCE_USED')
    expect(seen).toEqual([[account.address.toLowerCase(), 1n]])
    expect((await validateIntent(await signed({ nonce: 2n }), ctx({ isNonceUsed }))).ok).toBe(true)
  })

  it('UNKNOWN_CHAIN: a destination that is not a rollup of the network', async () => {
    expectCode(
      await validateIntent(await signed({ destinationChainIds: [901n, 1n] }), ctx()),
      'UNKNOWN_CHAIN',
    )
  })

  it('TOO_LARGE: one chain id beyond 4 KiB', async () => {
    const ids = Array.from({ length: 111 }, (_, i) => 1000n + BigInt(i))
    const r = await validateIntent(
      await signed({ destinationChainIds: ids }),
      ctx({ knownChainIds: new Set(ids) }),
    )
    expectCode(r, 'TOO_LARGE')
  })
})

describe('check order', () => {
  /** A context whose recovery counts calls and answers like the real one. */
  function counting() {
    let calls = 0
    return {
      calls: () => calls,
      recover: (d: Hex, s: Hex) => {
        calls++
        return recoverAddress(d, s)
      },
    }
  }

  it('cheap refusals never reach signature recovery', async () => {
    const spy = counting()
    const c = ctx({ recover: spy.recover, isNonceUsed: () => true })
    const bogus = `0x${'00'.repeat(65)}` as Hex
    const { order } = await signed()
    // Each is also badly signed; the cheap code wins.
    expectCode(
      await validateIntent({ order: { ...order, openDeadline: 0, fillDeadline: 1 }, signature: bogus }, c),
      'EXPIRED',
    )
    expectCode(
      await validateIntent({ order: { ...order, fillDeadline: order.openDeadline }, signature: bogus }, c),
      'MALFORMED',
    )
    expectCode(
      await validateIntent(
        { order: { ...order, orderDataType: `0x${'00'.repeat(32)}` }, signature: bogus },
        c,
      ),
      'MALFORMED',
    )
    expectCode(await validateIntent({ order, signature: bogus }, c), 'NONCE_USED')
    const unknown = buildOrder(params({ destinationChainIds: [7n] }))
    expectCode(await validateIntent({ order: unknown, signature: bogus }, c), 'UNKNOWN_CHAIN')
    const big = buildOrder(params({ destinationChainIds: Array.from({ length: 200 }, () => 901n) }))
    expectCode(await validateIntent({ order: big, signature: bogus }, c), 'TOO_LARGE')
    expect(spy.calls()).toBe(0)
  })

  it('uses the context recovery (e.g. a worker pool) and lets its failures propagate', async () => {
    const spy = counting()
    expect((await validateIntent(await signed(), ctx({ recover: spy.recover }))).ok).toBe(true)
    expect(spy.calls()).toBe(1)
    const closed = ctx({ recover: () => Promise.reject(new RecoverPoolError('CLOSED', 'closed')) })
    await expect(validateIntent(await signed(), closed)).rejects.toMatchObject({ code: 'CLOSED' })
  })
})

describe('validateIntentJson', () => {
  const allowed = new Set([
    'MALFORMED',
    'BAD_SIGNATURE',
    'EXPIRED',
    'NONCE_USED',
    'UNKNOWN_CHAIN',
    'TOO_LARGE',
  ])

  it('maps parse failures to MALFORMED and oversized bytes to TOO_LARGE', async () => {
    const intent = await signed()
    const body = signedIntentToJson(intent)
    const cases: [unknown, IntentRejectCode][] = [
      [undefined, 'MALFORMED'],
      [null, 'MALFORMED'],
      ['{}', 'MALFORMED'],
      [[], 'MALFORMED'],
      [{}, 'MALFORMED'],
      [{ order: body.order }, 'MALFORMED'],
      [{ ...body, extra: true }, 'MALFORMED'],
      [{ ...body, signature: 42 }, 'MALFORMED'],
      [{ ...body, order: { ...body.order, nonce: 1 } }, 'MALFORMED'],
      [{ ...body, order: { ...body.order, orderData: `0x${'00'.repeat(10_000)}` } }, 'TOO_LARGE'],
      [{ ...body, signature: `0x${'00'.repeat(10_000)}` }, 'TOO_LARGE'],
      [{ ...body, signature: '0x1234' }, 'BAD_SIGNATURE'],
    ]
    for (const [b, code] of cases) expectCode(await validateIntentJson(b, ctx()), code)
  })

  it('never throws on arbitrary or mutated bodies', async () => {
    const intent = await signed()
    const body = signedIntentToJson(intent)
    const fieldValue = fc.oneof(
      fc.jsonValue(),
      fc.string(),
      fc.bigInt().map(String),
      fc.constantFrom(
        '0x',
        '0x00',
        `0x${'ff'.repeat(32)}`,
        '-0',
        '1e3',
        'NaN',
        '__proto__',
        2 ** 53,
        -1,
        1.5,
      ),
    )
    const mutatedOrder = fc
      .tuple(fc.constantFrom(...(Object.keys(body.order) as (keyof typeof body.order)[])), fieldValue)
      .map(([k, v]) => ({ ...body, order: { ...body.order, [k]: v } }))
    const arb = fc.oneof(
      fc.anything(),
      fc.jsonValue(),
      mutatedOrder,
      fc.record({ order: fc.anything(), signature: fc.anything() }),
      fieldValue.map((v) => ({ ...body, signature: v })),
    )
    await fc.assert(
      fc.asyncProperty(arb, async (b) => {
        const r = await validateIntentJson(b, ctx())
        expect(r.ok || allowed.has(r.code)).toBe(true)
        if (r.ok) expect(r.id).toBe(intentId(r.order))
      }),
      { numRuns: 500 },
    )
  })

  it('a JSON body with a checksummed user is the same intent', async () => {
    const intent = await signed()
    const json = { ...orderToJson(intent.order), user: account.address }
    const r = await validateIntentJson({ order: json, signature: intent.signature }, ctx())
    expect(r).toMatchObject({ ok: true, id: intentId(intent.order) })
  })

  it('typed orders from mutated encodings validate without throwing', async () => {
    const { order, signature } = await signed()
    const arb = fc.record({
      nonce: fc.bigInt({ min: 0n, max: (1n << 256n) - 1n }),
      openDeadline: fc.integer({ min: 0, max: 0xffff_ffff }),
      fillDeadline: fc.integer({ min: 0, max: 0xffff_ffff }),
      destinationChainIds: fc.array(fc.bigInt({ min: 0n, max: 2000n }), { maxLength: 5 }),
    })
    await fc.assert(
      fc.asyncProperty(arb, async ({ destinationChainIds, ...fields }) => {
        const orderData = encodeOrderData({
          inputToken: '0x0000000000000000000000000000000000000000',
          inputAmount: 1n,
          outputToken: '0x0000000000000000000000000000000000000000',
          outputAmount: 1n,
          recipient: order.user,
          destinationChainIds,
        })
        const r = await validateIntent({ order: { ...order, ...fields, orderData }, signature }, ctx())
        // The signature covers another order, so nothing here is valid.
        expect(r.ok).toBe(false)
        if (!r.ok) expect(allowed.has(r.code)).toBe(true)
      }),
      { numRuns: 100 },
    )
  })
})

describe('validateIntent of an unsigned intent (an order its user opened on chain)', () => {
  const SETTLER = '0x5555555555555555555555555555555555555555' as Address
  const ZERO_TOKEN = '0x0000000000000000000000000000000000000000' as Address
  /** What `open` builds: nonce 2^255 | counter, openDeadline the block time of the open (in the past). */
  const opened = (over: Partial<BuildOrderParams> = {}): SignedIntent => ({
    order: buildOrder(
      params({
        nonce: ONCHAIN_NONCE_BIT | 4n,
        openDeadline: NOW - 3600,
        inputToken: ZERO_TOKEN,
        ...over,
      }),
    ),
    signature: NO_SIGNATURE,
  })
  /** A context whose origin 900 has a settler, and whose chain check answers `verdict` (asks recorded). */
  function withSettlement(verdict: OpenedVerdict, over: Partial<ValidateIntentContext> = {}) {
    const asked: Hex[] = []
    const c = ctx({
      settlerOf: (chainId) => (chainId === 900n ? SETTLER : undefined),
      verifyOpened: async (id) => {
        asked.push(id)
        return verdict
      },
      // A signed intent with this (user, nonce) would collide; an opened one is keyed by its origin too.
      isNonceUsed: () => true,
      ...over,
    })
    return { c, asked }
  }

  it('is accepted, native input included, when the origin settler says opened (the id is what was asked)', async () => {
    const { c, asked } = withSettlement('valid')
    const intent = opened()
    const r = await validateIntent(intent, c)
    expect(r).toMatchObject({ ok: true, id: intentId(intent.order), signature: '0x' })
    expect(asked).toEqual([intentId(intent.order)])
  })

  it('NOT_OPENED when the settler says settled, refunded or never; UNVERIFIED while it cannot tell', async () => {
    expectCode(await validateIntent(opened(), withSettlement('invalid').c), 'NOT_OPENED')
    expectCode(await validateIntent(opened(), withSettlement('pending').c), 'UNVERIFIED')
    expectCode(await validateIntent(opened(), withSettlement('unknown').c), 'UNVERIFIED')
    expectCode(
      await validateIntent(opened(), withSettlement('valid', { verifyOpened: undefined }).c),
      'UNVERIFIED',
    )
  })

  it('BAD_SIGNATURE from an origin without settlement contracts, without asking any chain', async () => {
    const { c, asked } = withSettlement('valid')
    expectCode(await validateIntent(opened({ originChainId: 901n }), c), 'BAD_SIGNATURE')
    expectCode(await validateIntent(opened(), ctx({ verifyOpened: async () => 'valid' })), 'BAD_SIGNATURE')
    expect(asked).toEqual([])
  })

  it('BAD_SIGNATURE with a nonce without bit 255 (not an order `open` built), without asking any chain', async () => {
    const { c, asked } = withSettlement('valid')
    expectCode(await validateIntent(opened({ nonce: ONCHAIN_NONCE_BIT - 1n }), c), 'BAD_SIGNATURE')
    expectCode(await validateIntent(opened({ nonce: 7n }), c), 'BAD_SIGNATURE')
    expect(asked).toEqual([])
  })

  it('UNSETTLEABLE when it names another settler; EXPIRED only once its fill deadline passed', async () => {
    const { c } = withSettlement('valid')
    expectCode(
      await validateIntent(opened({ originSettler: '0x6666666666666666666666666666666666666666' }), c),
      'UNSETTLEABLE',
    )
    expectCode(await validateIntent(opened({ fillDeadline: NOW }), c), 'EXPIRED')
    expect((await validateIntent(opened({ fillDeadline: NOW + 1 }), c)).ok).toBe(true)
  })

  it('its JSON body is the same intent; an empty signature on a plain nonce is BAD_SIGNATURE', async () => {
    const { c } = withSettlement('valid')
    const intent = opened()
    const body = signedIntentToJson(intent)
    expect(await validateIntentJson(body, c)).toMatchObject({ ok: true, id: intentId(intent.order) })
    const plain = { ...body, order: { ...body.order, nonce: '4' } }
    expectCode(await validateIntentJson(plain, c), 'BAD_SIGNATURE')
  })
})
