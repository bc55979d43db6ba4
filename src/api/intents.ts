import type { FastifyInstance } from 'fastify'
import type { IntentChange, IntentPool } from '../mempool/pool.ts'
import { type IntentRecord, toJson } from '../mempool/record.ts'
import type { MempoolService, SubmitAnswer } from '../mempool/service.ts'
import { ApiError } from './errors.ts'
import { DEFAULT_API_LIMITS, MAX_BATCH_INTENTS } from './limits.ts'

const ID_RE = /^0x[0-9a-f]{64}$/
/** Most concurrent `GET /v1/events` clients; a slow one is dropped rather than buffered forever. */
const MAX_SSE_CLIENTS = 256
const MAX_SSE_BUFFER_BYTES = 1 << 20

/** A source of `block` events for the stream: subscribe, get an unsubscribe function back. */
export type BlockEvents = (
  listener: (block: {
    height: string
    hash: string
    round: number
    assignments: number
    fills: number
  }) => void,
) => () => void

/** An intent's settlement (INTERFACES.md, Intent lifecycle), each transaction null until it exists. */
export interface IntentSettlementJson {
  readonly state: 'none' | 'opened' | 'filled' | 'settled' | 'refunded'
  readonly openTx: string | null
  readonly fillTx: string | null
  readonly claimTx: string | null
  readonly refundTx: string | null
  /** The block whose settlement root holds the intent's leaf. */
  readonly height: string | null
}

/** Settlement of intents on rollups with settlement contracts (the node's settlement watch). */
export interface SettlementView {
  /** Null when the intent's origin has no settlement contracts (served without escrow). */
  of(rec: IntentRecord): Promise<IntentSettlementJson | null>
  /** Settlement changes, for `intent` events: subscribe, get an unsubscribe function back. */
  onChange(listener: (id: string, settlement: IntentSettlementJson) => void): () => void
}

/** One answer of a batch `POST /v1/intents`: the single route's status and body, in one object. */
export type BatchAnswer =
  | { status: 200 | 202; id: string }
  | { status: 400 | 503; error: { code: string; message: string } }

function batchAnswer(a: SubmitAnswer): BatchAnswer {
  if ('id' in a.body) return { status: a.status as 200 | 202, id: a.body.id }
  return { status: a.status as 400 | 503, error: a.body.error }
}

/** Body sizes of the intent route: the batch's, and the single intent's as before batches. */
export interface IntentRouteLimits {
  batchBodyLimit: number
  bodyLimit: number
}

/**
 * `POST /v1/intents` (one `{order, signature}`, or an array of up to {@link MAX_BATCH_INTENTS} of them),
 * `GET /v1/intents/:id`, `GET /v1/events` (`intent` and `block` events).
 */
export function intentRoutes(
  mempool: MempoolService,
  pool: IntentPool,
  blocks?: BlockEvents,
  settlement?: SettlementView,
  limits: IntentRouteLimits = DEFAULT_API_LIMITS,
) {
  return (app: FastifyInstance): void => {
    app.post('/v1/intents', { bodyLimit: limits.batchBodyLimit }, async (req, reply) => {
      const body = req.body
      if (!Array.isArray(body)) {
        // A single intent keeps the route's size limit of before batches (413 TOO_LARGE).
        if (Number(req.headers['content-length'] ?? 0) > limits.bodyLimit) {
          throw new ApiError(413, 'TOO_LARGE', `a single intent body is at most ${limits.bodyLimit} bytes`)
        }
        const ans = await mempool.submitJson(body)
        if (ans.status === 503) reply.header('retry-after', String(ans.retryAfterSec))
        reply.code(ans.status)
        return ans.body
      }
      if (body.length === 0) throw new ApiError(400, 'MALFORMED', 'body: an empty batch')
      if (body.length > MAX_BATCH_INTENTS) {
        throw new ApiError(
          400,
          'BATCH_TOO_LARGE',
          `body: ${body.length} intents, at most ${MAX_BATCH_INTENTS} in one request`,
        )
      }
      // All at once: validated in parallel, made durable by the pool's group commit in one write or few.
      const answers = await Promise.all(body.map((item) => mempool.submitJson(item)))
      const retry = Math.max(0, ...answers.map((a) => (a.status === 503 ? a.retryAfterSec : 0)))
      if (retry > 0) reply.header('retry-after', String(retry))
      return answers.map(batchAnswer)
    })

    app.get<{ Params: { id: string } }>('/v1/intents/:id', async (req) => {
      const id = req.params.id.toLowerCase()
      if (!ID_RE.test(id)) throw new ApiError(400, 'MALFORMED', 'id must be a 0x-prefixed 32-byte hex string')
      const rec = await pool.get(id as `0x${string}`)
      if (rec === undefined) throw new ApiError(404, 'NOT_FOUND', `no intent ${id}`)
      return { ...toJson(rec), settlement: (await settlement?.of(rec)) ?? null }
    })

    const clients = new Set<{ write(s: string): void; close(): void }>()
    const unsubscribe = pool.onChange((c: IntentChange) => {
      if (clients.size === 0) return
      // Big integers as decimal strings, as everywhere in the API.
      const line = `event: intent\ndata: ${JSON.stringify(c, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n\n`
      for (const cl of clients) cl.write(line)
    })
    // A settlement change is an `intent` event too: `{id, settlement}`.
    const unsubscribeSettlement = settlement?.onChange((id, s) => {
      if (clients.size === 0) return
      const line = `event: intent\ndata: ${JSON.stringify({ id, settlement: s })}\n\n`
      for (const cl of clients) cl.write(line)
    })
    const unsubscribeBlocks = blocks?.((b) => {
      if (clients.size === 0) return
      const line = `event: block\ndata: ${JSON.stringify(b)}\n\n`
      for (const cl of clients) cl.write(line)
    })
    app.addHook('onClose', async () => {
      unsubscribe()
      unsubscribeBlocks?.()
      unsubscribeSettlement?.()
      for (const c of clients) c.close()
    })

    app.get('/v1/events', (req, reply) => {
      if (clients.size >= MAX_SSE_CLIENTS) throw new ApiError(503, 'OVERLOADED', 'too many event subscribers')
      // A stream is idle between events by design: the server's idle-socket timeout is not for it.
      req.raw.socket.setTimeout(0)
      reply.hijack()
      const res = reply.raw
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
      })
      res.write(': murmur events\n\n')
      const client = {
        write(s: string) {
          if (res.writableLength > MAX_SSE_BUFFER_BYTES) {
            client.close()
            return
          }
          res.write(s)
        },
        close() {
          clients.delete(client)
          res.end()
        },
      }
      clients.add(client)
      req.raw.on('close', () => clients.delete(client))
    })
  }
}
