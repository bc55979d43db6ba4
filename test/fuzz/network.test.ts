/**
 * Fuzzing of a real node's network inputs (issue 13, item 6): every gossip topic's validator as
 * gossipsub calls it (decode, then the node's own validator with its state), and every request/response
 * handler over a real libp2p stream from a second host. Seeds are signed by the node's own validator
 * key on its network id, so mutations reach past the signer checks. The properties: a validator answers
 * ACCEPT, IGNORE or REJECT and never throws (the node counts a throw in
 * `murmur_p2p_gossip_validator_errors_total`); a request gets an answer within its deadline, either OK
 * with a body the asker's codec decodes or INVALID_REQUEST, never SERVER_ERROR (a handler that threw);
 * and the node still answers afterwards.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Codec } from '../../src/codec/cbor.ts'
import { BLOCKS_BY_RANGE_PROTOCOL } from '../../src/consensus/block.ts'
import { CONSENSUS_MESSAGES_PROTOCOL } from '../../src/consensus/messages.ts'
import { P2PError } from '../../src/errors.ts'
import { MEMPOOL_GET_PROTOCOL, MEMPOOL_IDS_PROTOCOL } from '../../src/mempool/wire.ts'
import { TOPICS, type TopicPayloads } from '../../src/node/topics.ts'
import type { P2PHost } from '../../src/p2p/host.ts'
import { STATUS_PROTOCOL } from '../../src/p2p/protocols.ts'
import type { ProtocolSpec } from '../../src/p2p/reqresp.ts'
import { topicString } from '../../src/p2p/topics.ts'
import { startQuietPeer } from '../helpers/quiet-peer.ts'
import { getJson } from '../helpers/wait.ts'
import { type FuzzNode, metricValue, startFuzzNode } from './fuzz-node.ts'
import { hostileBytes, record, runs } from './harness.ts'
import { buildSeeds, type Seeds } from './seeds.ts'

let f: FuzzNode
let seeds: Seeds
let peer: P2PHost<TopicPayloads>
let stopPeer: () => Promise<void>
let metrics: () => Promise<string>

beforeAll(async () => {
  f = await startFuzzNode()
  seeds = await buildSeeds(f.networkId, [f.validator])
  metrics = async () => (await fetch(`${f.api}/metrics`)).text()
  ;({ host: peer, stop: stopPeer } = await startQuietPeer(f.networkId))
  const status = await getJson<{ listen: string[] }>(`${f.api}/v1/status`)
  await peer.libp2p.dial(multiaddr(status.listen[0]!))
}, 60_000)

afterAll(async () => {
  await stopPeer?.()
  await f?.stop()
})

describe('gossip validators of a real node', () => {
  for (const name of Object.keys(TOPICS) as (keyof typeof TOPICS)[]) {
    it(`topic ${name}: ACCEPT, IGNORE or REJECT, never a throw`, async () => {
      const topic = topicString(f.networkId, name)
      const validate = f.node.p2p.libp2p.services.pubsub.topicValidators.get(topic)
      expect(validate, `a validator for ${topic}`).toBeDefined()
      const from = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
      const before = metricValue(await metrics(), 'murmur_p2p_gossip_validator_errors_total')
      const seen = new Map<string, number>()
      const n = runs(name === 'consensus' ? 1 : 0.5)
      const t0 = performance.now()
      await fc.assert(
        fc.asyncProperty(hostileBytes(seeds.codec[name]!), async (data) => {
          const r = await validate!(from, { type: 'unsigned', topic, data } as never)
          expect(Object.values(TopicValidatorResult)).toContain(r)
          seen.set(r, (seen.get(r) ?? 0) + 1)
        }),
        { numRuns: n, timeout: 5_000 },
      )
      record(`gossip:${name}`, n, performance.now() - t0)
      const text = await metrics()
      expect(metricValue(text, 'murmur_p2p_gossip_validator_errors_total')).toBe(before)
      // Mutations must reach the validator behind the decoder, not only the decoder's REJECT.
      if (n >= 100) {
        const codes = text
          .split('\n')
          .filter((l) => l.startsWith(`murmur_p2p_gossip_validation_total{topic="${name}"`))
        if (process.env['FUZZ_VERBOSE'] === '1') console.log(name, Object.fromEntries(seen), codes)
        expect(seen.get(TopicValidatorResult.Reject) ?? 0, `${name}: every case REJECTed`).toBeLessThan(n)
      }
    })
  }
})

/** Raw bytes both ways: the real request codec must not refuse the fuzzer's bytes before they leave. */
const raw: Codec<Uint8Array> = { version: 1, maxBytes: 64 << 20, encode: (b) => b, decode: (b) => b }

describe('request/response handlers of a real node', () => {
  const protocols: ProtocolSpec<unknown, unknown>[] = [
    STATUS_PROTOCOL,
    MEMPOOL_IDS_PROTOCOL,
    MEMPOOL_GET_PROTOCOL,
    BLOCKS_BY_RANGE_PROTOCOL,
    CONSENSUS_MESSAGES_PROTOCOL,
  ] as never
  for (const spec of protocols) {
    it(`${spec.name}: an answer within the deadline, never a server error`, async () => {
      const to = peerIdFromString(f.node.p2p.peerId)
      const rawSpec: ProtocolSpec<Uint8Array, Uint8Array> = { ...spec, request: raw, response: raw }
      const outcomes = new Map<string, number>()
      const n = runs(0.5)
      const t0 = performance.now()
      await fc.assert(
        fc.asyncProperty(hostileBytes(seeds.codec[`${spec.name}.request`]!), async (bytes) => {
          let outcome: string
          try {
            const body = await peer.reqresp.request(to, rawSpec, bytes)
            spec.response.decode(body) // an OK answer is a valid response
            outcome = 'OK'
          } catch (err) {
            if (!(err instanceof P2PError)) throw err
            // "peer answered 1: DECODE" (invalid request) or 3 (rate limited) are answers; 2 is a
            // handler that threw, and a TIMEOUT a hang.
            const m = /peer answered (\d)/.exec(err.message)
            if (err.code !== 'REMOTE_ERROR' || m === null || m[1] === '2') {
              throw new Error(
                `${spec.name} on ${Buffer.from(bytes).toString('hex').slice(0, 200)}: ${err.code} ${err.message}`,
              )
            }
            outcome = `status ${m[1]}`
          }
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
        }),
        { numRuns: n, timeout: spec.timeoutMs + 2_000 },
      )
      record(`reqresp:${spec.name}`, n, performance.now() - t0)
      if (process.env['FUZZ_VERBOSE'] === '1') console.log(spec.name, Object.fromEntries(outcomes))
      expect(metricValue(await metrics(), 'murmur_p2p_reqresp_total', { outcome: 'SERVER_ERROR' })).toBe(0)
      // The node still serves a valid request.
      const ok = await peer.reqresp.request(to, STATUS_PROTOCOL, { height: 0 })
      expect(ok.networkId).toBe(f.networkId)
      if (n >= 100)
        expect(outcomes.get('OK') ?? 0, `${spec.name}: no valid request reached the handler`).toBeGreaterThan(
          0,
        )
    })
  }
})
