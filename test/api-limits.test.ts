import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { formatRateLimit, MAX_BATCH_INTENTS, parseRateLimit } from '../src/api/limits.ts'
import { ClientError, MurmurClient } from '../src/client/index.ts'
import type { MurmurNode } from '../src/node/node.ts'
import { startApiNode } from './helpers/api-node.ts'
import { makeIntent, wallet } from './helpers/intents.ts'

/**
 * A client at its own loopback address: the whole of 127/8 is this machine, and the rate limit counts
 * per client address, so each test is a fresh client of the same node.
 */
function client(api: string, localAddress: string) {
  const url = new URL(api)
  const call = (method: 'GET' | 'POST', path: string, body?: unknown) =>
    new Promise<{ status: number; headers: IncomingHttpHeaders; body: Record<string, unknown> & unknown[] }>(
      (resolve, reject) => {
        const data = body === undefined ? undefined : JSON.stringify(body)
        const req = httpRequest(
          {
            host: url.hostname,
            port: url.port,
            path,
            method,
            localAddress,
            agent: false,
            timeout: 10_000,
            headers: data === undefined ? {} : { 'content-type': 'application/json' },
          },
          (res) => {
            let text = ''
            res.setEncoding('utf8')
            res.on('data', (c: string) => {
              text += c
              // An event stream never ends: its first bytes are enough.
              if (res.headers['content-type'] === 'text/event-stream') res.destroy()
            })
            res.on('error', () => {})
            res.on('close', () => {
              let json: unknown
              try {
                json = JSON.parse(text)
              } catch {
                json = text
              }
              resolve({ status: res.statusCode ?? 0, headers: res.headers, body: json as never })
            })
          },
        )
        req.on('error', reject)
        req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)))
        req.end(data)
      },
    )
  return {
    get: (path: string) => call('GET', path),
    post: (path: string, body: unknown) => call('POST', path, body),
  }
}

const RATE = { max: 5, windowMs: 60_000 }

describe('API limits', () => {
  let node: MurmurNode
  let api: string
  let stop: () => Promise<void>
  const clients: Array<ReturnType<typeof client>> = []
  let nextAddress = 2
  const fresh = () => {
    const c = client(api, `127.0.0.${nextAddress++}`)
    clients.push(c)
    return c
  }

  beforeAll(async () => {
    // A minute's window: no request of a test can fall into a fresh window by being slow.
    ;({ node, api, stop } = await startApiNode({
      admin: true,
      apiLimits: { rateLimit: RATE, headersTimeoutMs: 500 },
    }))
  })
  afterAll(async () => {
    await stop?.()
  })

  it('the request past the rate is 429 RATE_LIMITED with Retry-After, per client, on every public route', async () => {
    const a = fresh()
    const paths = ['/v1/status', '/v1/peers', '/metrics', '/v1/rollups', '/v1/no-such-route']
    const statuses = []
    for (const p of paths) statuses.push((await a.get(p)).status)
    expect(statuses).toEqual([200, 200, 200, 200, 404])
    for (const p of [...paths, '/v1/events']) {
      const r = await a.get(p)
      expect(r.status, p).toBe(429)
      expect(r.body, p).toMatchObject({ error: { code: 'RATE_LIMITED' } })
      const retry = Number(r.headers['retry-after'])
      expect(retry, p).toBeGreaterThan(0)
      expect(retry, p).toBeLessThanOrEqual(60)
    }
    const post = await a.post('/v1/intents', (await makeIntent(wallet())).body)
    expect(post.status).toBe(429)
    // Another client is not held back by this one.
    expect((await fresh().get('/v1/status')).status).toBe(200)
  })

  it('admin routes (loopback, --admin) are not rate limited', async () => {
    const a = fresh()
    for (let i = 0; i < RATE.max + 3; i++) expect((await a.get('/admin/v1/probes')).status).toBe(200)
    expect((await a.get('/v1/status')).status).toBe(200)
  })

  it('a batch is one request: one answer per intent, in order, with the single route’s codes', async () => {
    const a = fresh()
    const w = wallet()
    const first = await makeIntent(w)
    const second = await makeIntent(w)
    const other = await makeIntent(wallet())
    const badSig = { ...(second.body as object), signature: (other.body as { signature: string }).signature }
    const r = await a.post('/v1/intents', [first.body, first.body, badSig, other.body, { order: {} }])
    expect(r.status).toBe(200)
    expect(r.body).toEqual([
      { status: 202, id: first.id },
      // Both copies are the same intent: whichever is written first is 202; the answers say 202 or 200.
      { status: expect.any(Number), id: first.id },
      { status: 400, error: { code: 'BAD_SIGNATURE', message: expect.any(String) } },
      { status: 202, id: other.id },
      { status: 400, error: { code: 'MALFORMED', message: expect.any(String) } },
    ])
    expect([200, 202]).toContain((r.body[1] as { status: number }).status)
    expect(r.headers['x-ratelimit-remaining']).toBe(String(RATE.max - 1))
    expect(node.pool.has(first.id) && node.pool.has(other.id)).toBe(true)
    // The single route answers as before.
    expect((await a.post('/v1/intents', first.body)).body).toEqual({ id: first.id })
  })

  it(`${MAX_BATCH_INTENTS} intents in one request are all accepted; one more is 400 BATCH_TOO_LARGE`, async () => {
    const a = fresh()
    const wallets = Array.from({ length: 8 }, () => wallet())
    const intents = await Promise.all(
      Array.from({ length: MAX_BATCH_INTENTS + 1 }, (_, i) => makeIntent(wallets[i % wallets.length]!)),
    )
    const tooMany = await a.post(
      '/v1/intents',
      intents.map((i) => i.body),
    )
    expect(tooMany.status).toBe(400)
    expect(tooMany.body).toMatchObject({ error: { code: 'BATCH_TOO_LARGE' } })
    expect(intents.some((i) => node.pool.has(i.id))).toBe(false)
    const full = await a.post(
      '/v1/intents',
      intents.slice(0, MAX_BATCH_INTENTS).map((i) => i.body),
    )
    expect(full.status).toBe(200)
    expect((full.body as Array<{ status: number; id: string }>).map((x) => x.status)).toEqual(
      Array(MAX_BATCH_INTENTS).fill(202),
    )
    for (const i of intents.slice(0, MAX_BATCH_INTENTS)) expect(node.pool.has(i.id)).toBe(true)
    expect((await a.post('/v1/intents', [])).body).toMatchObject({ error: { code: 'MALFORMED' } })
  })

  it('an intent the pool refuses is a 503 with its code, never a 200 for an intent it does not hold', async () => {
    const a = fresh()
    const w = wallet()
    const max = node.pool.options.maxPerUser
    const intents = await Promise.all(Array.from({ length: max + 1 }, () => makeIntent(w)))
    const r = await a.post(
      '/v1/intents',
      intents.map((i) => i.body),
    )
    const answers = r.body as Array<{ status: number; error?: { code: string } }>
    expect(answers.filter((x) => x.status === 202)).toHaveLength(max)
    const refused = answers.flatMap((x, i) => (x.status === 202 ? [] : [{ ...x, id: intents[i]!.id }]))
    expect(refused).toHaveLength(1)
    expect(refused[0]).toMatchObject({ status: 503, error: { code: 'USER_LIMIT' } })
    expect(r.headers['retry-after']).toBeDefined()
    expect(node.pool.has(refused[0]!.id)).toBe(false)
  })

  it('a single intent body over 64 KiB is 413 TOO_LARGE, a request head over 16 KiB is 431', async () => {
    const a = fresh()
    const big = await a.post('/v1/intents', { order: 'x'.repeat(100_000) })
    expect(big.status).toBe(413)
    expect(big.body).toMatchObject({ error: { code: 'TOO_LARGE' } })
    const res = await fetch(`${api}/v1/status`, { headers: { 'x-pad': 'y'.repeat(20_000) } })
    expect(res.status).toBe(431)
  })

  it('MurmurClient.submitMany: one outcome per order; a rate-limited request is RATE_LIMITED', async () => {
    // The client fetches from 127.0.0.1, a client of its own that no other test spends.
    const c = new MurmurClient(api)
    const good = await makeIntent(wallet())
    const other = await makeIntent(wallet())
    const out = await c.submitMany([good.intent, { ...other.intent, signature: good.intent.signature }])
    expect(out[0]).toEqual({ id: good.id, known: false })
    expect(out[1]).toMatchObject({ error: { code: 'BAD_SIGNATURE' } })
    let refused: unknown
    for (let i = 0; i < RATE.max + 1 && refused === undefined; i++) {
      await c.submit(other.intent.order, other.intent.signature).catch((err: unknown) => {
        refused = err
      })
    }
    expect(refused).toBeInstanceOf(ClientError)
    expect(refused).toMatchObject({ code: 'RATE_LIMITED' })
    expect((refused as ClientError).retryAfterSec).toBeGreaterThan(0)
  })

  it('a client that never finishes its request head is cut off (slow loris)', async () => {
    const sock = connect({ host: '127.0.0.1', port: node.apiAddress!.port, localAddress: '127.0.0.200' })
    const started = Date.now()
    const closed = new Promise<number>((resolve) => sock.once('close', () => resolve(Date.now() - started)))
    sock.on('error', () => {})
    sock.write('GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ')
    // Dribbles a byte now and then, as a slow-loris client does, and never ends the head.
    const drip = setInterval(() => sock.writable && sock.write('a'), 100)
    const deadline = new Promise<number>((resolve) => setTimeout(() => resolve(-1), 15_000))
    const ms = await Promise.race([closed, deadline])
    clearInterval(drip)
    sock.destroy()
    expect(ms).toBeGreaterThan(0)
    expect(ms).toBeLessThan(5_000)
  })
})

describe('--rate-limit values', () => {
  it('parses N/s, N/m, N/h, 0 and off, and refuses anything else', () => {
    expect(parseRateLimit('60/s')).toEqual({ max: 60, windowMs: 1000 })
    expect(parseRateLimit('600/m')).toEqual({ max: 600, windowMs: 60_000 })
    expect(parseRateLimit('600/min')).toEqual({ max: 600, windowMs: 60_000 })
    expect(parseRateLimit('10000/h')).toEqual({ max: 10_000, windowMs: 3_600_000 })
    expect(parseRateLimit('off')).toBeUndefined()
    expect(parseRateLimit('0')).toBeUndefined()
    expect(parseRateLimit('0/s')).toBeUndefined()
    for (const bad of ['', '10', 'ten/s', '10/d', '-1/s', '1.5/s', '10/ s']) {
      expect(() => parseRateLimit(bad), bad).toThrow(expect.objectContaining({ code: 'BAD_OPTION' }))
    }
    expect(formatRateLimit(parseRateLimit('60/s'))).toBe('60/s')
    expect(formatRateLimit(undefined)).toBe('off')
  })
})
