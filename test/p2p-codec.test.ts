import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { P2PError } from '../src/errors.ts'
import { TOPICS, type TopicName } from '../src/node/topics.ts'
import { STATUS_PROTOCOL } from '../src/p2p/protocols.ts'
import { parseTopic, probeCodec, topicString } from '../src/p2p/topics.ts'

const networkId = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,62}$/)
const topicName = fc.constantFrom(...(Object.keys(TOPICS) as TopicName[]))

describe('topic strings', () => {
  it('round-trip for every network id and topic', () => {
    fc.assert(
      fc.property(networkId, topicName, (net, name) => {
        const s = topicString(net, name)
        expect(s).toBe(`/murmur/${net}/${name}/1`)
        expect(parseTopic(s, TOPICS)).toEqual({ networkId: net, name })
      }),
    )
  })

  it('parse nothing that is not one of ours', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const parsed = parseTopic(s, TOPICS)
        if (parsed !== undefined) expect(topicString(parsed.networkId, parsed.name)).toBe(s)
      }),
    )
    expect(parseTopic('/murmur/net/probe/2', TOPICS)).toBeUndefined()
    expect(parseTopic('/murmur/net/nosuch/1', TOPICS)).toBeUndefined()
    expect(parseTopic('/murmur/Net/probe/1', TOPICS)).toBeUndefined()
  })
})

const probe = fc.record({
  seq: fc.nat(),
  origin: fc.string({ maxLength: 128 }),
  sentAtMs: fc.double({ min: 0, max: 1e13, noNaN: true }),
  padding: fc.uint8Array({ maxLength: 2048 }),
})

describe('probe codec', () => {
  it('round-trips', () => {
    fc.assert(
      fc.property(probe, (p) => {
        expect(probeCodec.decode(probeCodec.encode(p))).toEqual(p)
      }),
    )
  })

  it('throws only P2PError on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        try {
          probeCodec.decode(bytes)
        } catch (err) {
          expect(err).toBeInstanceOf(P2PError)
        }
      }),
    )
  })

  it('rejects mutated encodings with a coded error, never a crash', () => {
    fc.assert(
      fc.property(probe, fc.nat(), fc.integer({ min: 0, max: 255 }), (p, at, byte) => {
        const bytes = probeCodec.encode(p)
        bytes[at % bytes.length] = byte
        try {
          probeCodec.decode(bytes)
        } catch (err) {
          expect(['DECODE', 'TOO_LARGE']).toContain((err as P2PError).code)
        }
      }),
    )
  })

  it('refuses oversized messages before decoding', () => {
    const big = new Uint8Array(probeCodec.maxBytes + 1)
    big[0] = 1
    expect(() => probeCodec.decode(big)).toThrow(expect.objectContaining({ code: 'TOO_LARGE' }))
    expect(() =>
      probeCodec.encode({ seq: 1, origin: 'x', sentAtMs: 1, padding: new Uint8Array(70_000) }),
    ).toThrow(expect.objectContaining({ code: 'TOO_LARGE' }))
  })

  it('refuses an unknown version', () => {
    const bytes = probeCodec.encode({ seq: 1, origin: 'x', sentAtMs: 1, padding: new Uint8Array(1) })
    bytes[0] = 9
    expect(() => probeCodec.decode(bytes)).toThrow(expect.objectContaining({ code: 'DECODE' }))
  })
})

describe('status codec', () => {
  const status = fc.record({
    peerId: fc.string({ maxLength: 64 }),
    networkId: fc.string({ maxLength: 64 }),
    version: fc.string({ maxLength: 32 }),
    height: fc.nat(),
    blockHash: fc.string({ maxLength: 66 }),
    peers: fc.array(
      fc.record({
        peerId: fc.string({ maxLength: 60 }),
        addrs: fc.array(fc.string({ maxLength: 80 }), { maxLength: 8 }),
      }),
      { maxLength: 32 },
    ),
  })
  it('round-trips responses and requests', () => {
    fc.assert(
      fc.property(status, fc.nat(), (s, h) => {
        expect(STATUS_PROTOCOL.response.decode(STATUS_PROTOCOL.response.encode(s))).toEqual(s)
        expect(STATUS_PROTOCOL.request.decode(STATUS_PROTOCOL.request.encode({ height: h }))).toEqual({
          height: h,
        })
      }),
    )
  })
  it('throws only P2PError on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => {
        for (const c of [STATUS_PROTOCOL.request, STATUS_PROTOCOL.response]) {
          try {
            c.decode(bytes)
          } catch (err) {
            expect(err).toBeInstanceOf(P2PError)
          }
        }
      }),
    )
  })
})
