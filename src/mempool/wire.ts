import { type Codec, cborCodec, shape } from '../codec/cbor.ts'
import {
  decodeSignedIntentBatch,
  encodeSignedIntentBatch,
  INTENT_WIRE_VERSION,
  MAX_INTENT_BATCH_COUNT,
  type SignedIntent,
} from '../codec/intent.ts'
import { P2PError } from '../errors.ts'
import type { ProtocolSpec } from '../p2p/reqresp.ts'

/** Largest intents gossip message: a batch of up to MAX_INTENT_BATCH_COUNT intents. */
export const INTENT_BATCH_MAX_BYTES = 1024 * 1024

/**
 * The `intents` topic carries batches of signed intents (one or many): at high rates many
 * intents share one message, as Ethereum aggregates attestations, because gossip costs per message.
 */
export const intentBatchCodec: Codec<SignedIntent[]> = {
  version: INTENT_WIRE_VERSION,
  maxBytes: INTENT_BATCH_MAX_BYTES,
  encode(intents) {
    const bytes = encodeSignedIntentBatch(intents)
    if (bytes.length > INTENT_BATCH_MAX_BYTES)
      throw new P2PError('TOO_LARGE', `intent batch of ${bytes.length} bytes`)
    return bytes
  },
  decode(bytes) {
    if (bytes.length > INTENT_BATCH_MAX_BYTES)
      throw new P2PError('TOO_LARGE', `intent batch of ${bytes.length} bytes`)
    try {
      return decodeSignedIntentBatch(bytes, MAX_INTENT_BATCH_COUNT)
    } catch (err) {
      throw new P2PError(
        (err as { code?: string }).code === 'TOO_LARGE' ? 'TOO_LARGE' : 'DECODE',
        (err as Error).message,
      )
    }
  },
}

const ID_BYTES = 32
/** Ids per `mempool-ids` page and per `mempool-get` request. */
export const MEMPOOL_IDS_PAGE = 4096
export const MEMPOOL_GET_MAX = 256

function idsField(v: unknown, what: string, max: number): Uint8Array {
  const b = shape.bytes(v, what, max * ID_BYTES)
  if (b.length % ID_BYTES !== 0) throw new P2PError('DECODE', `${what}: not a whole number of 32-byte ids`)
  return b
}

export function packIds(ids: readonly string[]): Uint8Array {
  const out = new Uint8Array(ids.length * ID_BYTES)
  for (const [i, id] of ids.entries()) out.set(Buffer.from(id.slice(2), 'hex'), i * ID_BYTES)
  return out
}

export function unpackIds(bytes: Uint8Array): `0x${string}`[] {
  const out: `0x${string}`[] = []
  for (let o = 0; o < bytes.length; o += ID_BYTES) {
    out.push(`0x${Buffer.from(bytes.subarray(o, o + ID_BYTES)).toString('hex')}`)
  }
  return out
}

export interface MempoolIdsRequest {
  /** Return ids strictly greater than this one (paging); empty = from the start. */
  after: Uint8Array
}
export interface MempoolIdsResponse {
  ids: Uint8Array
  /** More ids exist after the last one returned. */
  more: boolean
}

/** `mempool-ids`: the pending intent ids of the answerer, sorted, paged. */
export const MEMPOOL_IDS_PROTOCOL: ProtocolSpec<MempoolIdsRequest, MempoolIdsResponse> = {
  name: 'mempool-ids',
  request: cborCodec({
    version: 1,
    maxBytes: 64,
    check(v) {
      const o = shape.object(v, 'mempool-ids request')
      return { after: idsField(o['after'], 'after', 1) }
    },
  }),
  response: cborCodec({
    version: 1,
    maxBytes: MEMPOOL_IDS_PAGE * ID_BYTES + 64,
    check(v) {
      const o = shape.object(v, 'mempool-ids response')
      if (typeof o['more'] !== 'boolean') throw new P2PError('DECODE', 'more: expected a boolean')
      return { ids: idsField(o['ids'], 'ids', MEMPOOL_IDS_PAGE), more: o['more'] }
    },
  }),
  timeoutMs: 10_000,
  maxInboundStreams: 4,
}

/** `mempool-get`: the signed intents for the requested ids (unknown ids are skipped). */
export const MEMPOOL_GET_PROTOCOL: ProtocolSpec<{ ids: Uint8Array }, SignedIntent[]> = {
  name: 'mempool-get',
  request: cborCodec({
    version: 1,
    maxBytes: MEMPOOL_GET_MAX * ID_BYTES + 64,
    check(v) {
      const o = shape.object(v, 'mempool-get request')
      return { ids: idsField(o['ids'], 'ids', MEMPOOL_GET_MAX) }
    },
  }),
  response: intentBatchCodec,
  timeoutMs: 10_000,
  maxInboundStreams: 4,
}
