/**
 * Fuzzing of every decoder a peer or a client can reach (issue 13, item 6): each gossip topic's codec,
 * each request/response protocol's request and response codec, the fixed-layout intent codec, blocks,
 * certificates, vote extensions, and the JSON parsers of the API bodies. Inputs: random bytes, random
 * CBOR, deep nesting, and mutations of valid messages (see harness.ts). The property: the decoder
 * returns, or throws its module's typed error (P2PError DECODE/TOO_LARGE for wire codecs, CodecError for
 * the intent codec and JSON bodies), within the case time limit; what it returns re-encodes without an
 * untyped error and decodes back to the same value (one message, one encoding).
 */
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import type { Codec } from '../../src/codec/cbor.ts'
import {
  CodecError,
  decodeOrderData,
  decodeSignedIntent,
  decodeSignedIntentBatch,
  encodeSignedIntent,
  orderFromJson,
  orderFromOriginData,
  originDataOf,
  signedIntentFromJson,
} from '../../src/codec/intent.ts'
import {
  BLOCKS_BY_RANGE_PROTOCOL,
  decodeBlock,
  decodeCertificate,
  decodeStoredBlockParts,
  encodeBlock,
  encodeCertificate,
} from '../../src/consensus/block.ts'
import { CONSENSUS_MESSAGES_PROTOCOL } from '../../src/consensus/messages.ts'
import { MurmurError, P2PError } from '../../src/errors.ts'
import { MEMPOOL_GET_PROTOCOL, MEMPOOL_IDS_PROTOCOL } from '../../src/mempool/wire.ts'
import { TOPICS } from '../../src/node/topics.ts'
import { STATUS_PROTOCOL } from '../../src/p2p/protocols.ts'
import { fillCodec } from '../../src/rollups/fill.ts'
import {
  decodeExtension,
  decodeObservations,
  encodeExtension,
  encodeObservations,
} from '../../src/rollups/observation.ts'
import { TRANSFER_KIND } from '../../src/staking/accounts.ts'
import { DELEGATE_KIND } from '../../src/staking/delegations.ts'
import { signedStakeMoveFromJson } from '../../src/staking/service.ts'
import { signedUnjailFromJson } from '../../src/staking/unjail.ts'
import { accountMessageFromJson } from '../../src/staking/wire-accounts.ts'
import { bounded, hostileBytes, hostileJson, record, runs, unexpected } from './harness.ts'
import { buildSeeds, type Seeds } from './seeds.ts'

let seeds: Seeds
beforeAll(async () => {
  seeds = await buildSeeds()
})

/**
 * Fuzzes `decode` over `arb`; `reencode` (when given) turns a decoded value back into bytes, which must
 * decode to an equal value. Returns the case count for the record.
 */
function fuzzDecoder<T>(
  target: string,
  arb: fc.Arbitrary<Uint8Array>,
  decode: (b: Uint8Array) => T,
  allowed: ReadonlyArray<abstract new (...a: never[]) => MurmurError>,
  reencode?: (v: T) => Uint8Array,
  weight = 1,
): void {
  const n = runs(weight)
  const t0 = performance.now()
  let decoded = 0
  fc.assert(
    fc.property(arb, (bytes) => {
      let v: T
      try {
        v = bounded(target, () => decode(bytes))
      } catch (err) {
        const why = unexpected(err, allowed)
        if (why !== undefined)
          throw new Error(`${target} threw on ${Buffer.from(bytes).toString('hex').slice(0, 400)}: ${why}`)
        return
      }
      decoded++
      if (reencode === undefined) return
      let again: Uint8Array
      try {
        again = reencode(v)
      } catch (err) {
        // A value the decoder accepted but the encoder refuses must at least refuse with a typed error.
        const why = unexpected(err, [MurmurError])
        if (why !== undefined) throw new Error(`${target}: re-encoding a decoded value threw: ${why}`)
        return
      }
      expect(decode(again)).toEqual(v)
    }),
    { numRuns: n },
  )
  record(target, n, performance.now() - t0)
  // Each target must reach past its first check on some cases, or it fuzzes only the version byte.
  if (n >= 200) expect(decoded, `${target}: no case decoded`).toBeGreaterThan(0)
}

describe('wire codecs of the gossip topics', () => {
  for (const name of Object.keys(TOPICS) as (keyof typeof TOPICS)[]) {
    it(`topic ${name}`, () => {
      const codec = TOPICS[name].codec as Codec<unknown>
      const s = seeds.codec[name]!
      expect(s.length).toBeGreaterThan(0)
      for (const b of s) codec.decode(b) // the seeds are valid
      fuzzDecoder(
        `topic:${name}`,
        hostileBytes(s),
        (b) => codec.decode(b),
        [P2PError],
        (v) => codec.encode(v),
        2,
      )
    })
  }
  it('a single fill', () => {
    fuzzDecoder(
      'fill',
      hostileBytes(seeds.codec['fill']!),
      (b) => fillCodec.decode(b),
      [P2PError],
      (v) => fillCodec.encode(v),
    )
  })
})

describe('request/response codecs', () => {
  const protocols = [
    STATUS_PROTOCOL,
    MEMPOOL_IDS_PROTOCOL,
    MEMPOOL_GET_PROTOCOL,
    BLOCKS_BY_RANGE_PROTOCOL,
    CONSENSUS_MESSAGES_PROTOCOL,
  ]
  for (const spec of protocols) {
    for (const side of ['request', 'response'] as const) {
      it(`${spec.name} ${side}`, () => {
        const codec = spec[side] as Codec<unknown>
        const s = seeds.codec[`${spec.name}.${side}`]!
        for (const b of s) codec.decode(b)
        fuzzDecoder(
          `${spec.name}.${side}`,
          hostileBytes(s),
          (b) => codec.decode(b),
          [P2PError],
          (v) => codec.encode(v),
        )
      })
    }
  }
})

describe('fixed-layout and block decoders', () => {
  it('signed intent', () => {
    fuzzDecoder(
      'intent',
      hostileBytes(seeds.intentBytes),
      decodeSignedIntent,
      [CodecError],
      encodeSignedIntent,
      2,
    )
  })
  it('signed intent batch (raw, any count bound)', () => {
    fuzzDecoder('intent-batch', hostileBytes(seeds.codec['intents']!), (b) => decodeSignedIntentBatch(b, 8), [
      CodecError,
    ])
  })
  it('block', () => {
    fuzzDecoder('block', hostileBytes(seeds.blockBytes), decodeBlock, [P2PError], encodeBlock, 2)
  })
  it('commit certificate', () => {
    fuzzDecoder(
      'certificate',
      hostileBytes(seeds.certBytes),
      decodeCertificate,
      [P2PError],
      encodeCertificate,
    )
  })
  it('stored block', () => {
    fuzzDecoder('stored-block', hostileBytes(seeds.storedBlocks), decodeStoredBlockParts, [MurmurError])
  })
  it('observations and vote extensions', () => {
    fuzzDecoder(
      'observations',
      hostileBytes(seeds.observations),
      decodeObservations,
      [P2PError],
      encodeObservations,
    )
    fuzzDecoder(
      'extension',
      hostileBytes([...seeds.extensions, ...seeds.observations]),
      decodeExtension,
      [P2PError],
      encodeExtension,
    )
  })
  it('order data and originData (hex)', () => {
    const orderData = seeds.intents.map((i) => Buffer.from(i.order.orderData.slice(2), 'hex'))
    const hex = (b: Uint8Array) => `0x${Buffer.from(b).toString('hex')}` as const
    fuzzDecoder(
      'orderData',
      hostileBytes(orderData.map((b) => new Uint8Array(b))),
      (b) => decodeOrderData(hex(b)),
      [CodecError],
    )
    const origin = seeds.intents.map(
      (i) => new Uint8Array(Buffer.from(originDataOf(i.order).slice(2), 'hex')),
    )
    fuzzDecoder('originData', hostileBytes(origin), (b) => orderFromOriginData(hex(b)), [CodecError])
  })
})

describe('JSON bodies of the API', () => {
  function fuzzJson(target: string, arb: fc.Arbitrary<unknown>, parse: (v: unknown) => unknown) {
    const n = runs()
    const t0 = performance.now()
    fc.assert(
      fc.property(arb, (body) => {
        try {
          bounded(target, () => parse(body))
        } catch (err) {
          const why = unexpected(err, [CodecError])
          if (why !== undefined)
            throw new Error(`${target} threw on ${JSON.stringify(body)?.slice(0, 400)}: ${why}`)
        }
      }),
      { numRuns: n },
    )
    record(target, n, performance.now() - t0)
  }
  it('signed intent and order', () => {
    fuzzJson('json:intent', hostileJson(seeds.intentJson), signedIntentFromJson)
    fuzzJson('json:order', hostileJson(seeds.intentJson.map((j) => (j as { order: unknown }).order)), (v) =>
      orderFromJson(v),
    )
  })
  it('stake move, unjail, transfer, delegation', () => {
    fuzzJson('json:stake-move', hostileJson(seeds.stakeJson), signedStakeMoveFromJson)
    fuzzJson('json:unjail', hostileJson(seeds.unjailJson), signedUnjailFromJson)
    fuzzJson('json:transfer', hostileJson(seeds.transferJson), (v) =>
      accountMessageFromJson(TRANSFER_KIND as never, v),
    )
    fuzzJson('json:delegate', hostileJson(seeds.delegateJson), (v) =>
      accountMessageFromJson(DELEGATE_KIND as never, v),
    )
  })
})
