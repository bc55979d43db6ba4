import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { prepareNetwork } from '../devnet/network.ts'
import { signedIntentToJson } from '../src/codec/intent.ts'
import { MurmurNode } from '../src/node/node.ts'
import { makeIntent, wallet } from './helpers/intents.ts'
import { postJson, waitFor } from './helpers/wait.ts'

async function startNode(extra: Partial<ConstructorParameters<typeof MurmurNode>[0]> = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'murmur-api-'))
  const net = await prepareNetwork({ dir, nodes: 1 })
  const node = new MurmurNode(
    {
      dataDir: net.nodes[0]!.dataDir,
      genesisPath: net.genesisPath,
      api: { host: '127.0.0.1', port: 0 },
      // These tests post faster than a wallet; the rate limit has its own tests (api-limits.test.ts).
      apiLimits: { rateLimit: undefined },
      ...extra,
    },
    pino({ level: 'silent' }),
  )
  await node.start()
  const a = node.apiAddress!
  return { node, api: `http://127.0.0.1:${a.port}`, dir }
}

describe('intents API', () => {
  let n: Awaited<ReturnType<typeof startNode>>
  beforeAll(async () => {
    n = await startNode()
  })
  afterAll(async () => {
    await n?.node.stop()
    await rm(n.dir, { recursive: true, force: true })
  })

  const post = (body: unknown) =>
    postJson<{ id?: string; error?: { code: string; message: string } }>(`${n.api}/v1/intents`, body)

  it('202, then 200 for the same intent, then GET shows it pending', async () => {
    const { id, body } = await makeIntent(wallet())
    expect(await post(body)).toEqual({ status: 202, body: { id } })
    expect(await post(body)).toEqual({ status: 200, body: { id } })
    const res = await fetch(`${n.api}/v1/intents/${id}`)
    const view = (await res.json()) as {
      id: string
      state: string
      assignment: unknown
      fill: unknown
      history: unknown[]
    }
    expect(view).toMatchObject({ id, state: 'pending', assignment: null, fill: null })
    expect(view.history).toHaveLength(1)
  })

  it('404 for an unknown id and 400 for a malformed one', async () => {
    const unknown = await fetch(`${n.api}/v1/intents/0x${'ab'.repeat(32)}`)
    expect(unknown.status).toBe(404)
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('NOT_FOUND')
    const bad = await fetch(`${n.api}/v1/intents/nope`)
    expect(bad.status).toBe(400)
  })

  it.each([
    ['MALFORMED', async () => ({ order: {}, signature: '0x' })],
    [
      'BAD_SIGNATURE',
      async () => {
        const a = await makeIntent(wallet())
        const b = await makeIntent(wallet())
        return { ...(a.body as object), signature: (b.body as { signature: string }).signature }
      },
    ],
    [
      'EXPIRED',
      async () => {
        const now = Math.floor(Date.now() / 1000)
        return (await makeIntent(wallet(), { openDeadline: now - 3600, fillDeadline: now - 60 })).body
      },
    ],
    ['UNKNOWN_CHAIN', async () => (await makeIntent(wallet(), { destinationChainIds: [901n, 4242n] })).body],
    [
      'TOO_LARGE',
      async () =>
        (await makeIntent(wallet(), { destinationChainIds: Array.from({ length: 111 }, () => 901n) })).body,
    ],
  ])('400 %s', async (code, body) => {
    const r = await post(await body())
    expect(r.status).toBe(400)
    expect(r.body.error?.code).toBe(code)
    expect(typeof r.body.error?.message).toBe('string')
  })

  it('400 NONCE_USED for a different intent with a used (user, nonce)', async () => {
    const w = wallet()
    const a = await makeIntent(w, { nonce: 5n })
    expect((await post(a.body)).status).toBe(202)
    const b = await makeIntent(w, { nonce: 5n, outputAmount: 7n })
    const r = await post(b.body)
    expect(r.status).toBe(400)
    expect(r.body.error?.code).toBe('NONCE_USED')
  })

  it('not JSON, or an oversized body, is a coded 4xx', async () => {
    const res = await fetch(`${n.api}/v1/intents`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"order":',
    })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('MALFORMED')
    const big = await fetch(`${n.api}/v1/intents`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ order: 'x'.repeat(200_000) }),
    })
    expect(big.status).toBe(413)
    expect(((await big.json()) as { error: { code: string } }).error.code).toBe('TOO_LARGE')
  })

  it('under fuzzing the POST body never gives a 500 and never crashes the node', async () => {
    const { body } = await makeIntent(wallet())
    const valid = body as Record<string, unknown>
    const mutated = fc
      .tuple(fc.constantFrom(...Object.keys((valid as { order: object }).order)), fc.jsonValue())
      .map(([k, v]) => ({ ...valid, order: { ...(valid['order'] as object), [k]: v } }))
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.jsonValue(), mutated, fc.record({ order: fc.jsonValue(), signature: fc.jsonValue() })),
        async (b) => {
          const r = await post(b)
          expect(r.status).toBeLessThan(500)
          if (r.status === 400)
            expect(r.body.error?.code).toMatch(
              /^(MALFORMED|BAD_SIGNATURE|EXPIRED|NONCE_USED|UNKNOWN_CHAIN|TOO_LARGE)$/,
            )
        },
      ),
      { numRuns: 150 },
    )
    expect((await fetch(`${n.api}/v1/status`)).status).toBe(200)
  })

  it('GET /v1/events streams intent state changes', async () => {
    const ac = new AbortController()
    const res = await fetch(`${n.api}/v1/events`, { signal: ac.signal })
    expect(res.headers.get('content-type')).toContain('text/event-stream')
    const reader = res.body!.getReader()
    const { id, body } = await makeIntent(wallet())
    expect((await post(body)).status).toBe(202)
    let text = ''
    await waitFor('the intent event', async () => {
      const { value } = await reader.read()
      text += new TextDecoder().decode(value)
      return text.includes(id)
    })
    const line = text.split('\n').find((l) => l.startsWith('data:') && l.includes(id))!
    expect(JSON.parse(line.slice(5))).toMatchObject({ id, state: 'pending', previous: null })
    expect(text).toContain('event: intent')
    ac.abort()
  })
})

describe('block events', () => {
  it('GET /v1/events streams a block event for every commit', async () => {
    const n = await startNode()
    try {
      const ac = new AbortController()
      const res = await fetch(`${n.api}/v1/events`, { signal: ac.signal })
      const reader = res.body!.getReader()
      let text = ''
      // A one-validator network commits by itself.
      await waitFor(
        'two block events',
        async () => {
          const { value } = await reader.read()
          text += new TextDecoder().decode(value)
          return (text.match(/event: block/g) ?? []).length >= 2
        },
        { timeoutMs: 30_000 },
      )
      const blocks = text
        .split('\n\n')
        .filter((e) => e.startsWith('event: block'))
        .map((e) => JSON.parse(e.split('\ndata: ')[1]!) as { height: string; hash: string })
      expect(BigInt(blocks[1]!.height)).toBe(BigInt(blocks[0]!.height) + 1n)
      const stored = (await (await fetch(`${n.api}/v1/blocks/${blocks[0]!.height}`)).json()) as {
        hash: string
      }
      expect(stored.hash).toBe(blocks[0]!.hash)
      ac.abort()
    } finally {
      await n.node.stop()
      await rm(n.dir, { recursive: true, force: true })
    }
  })
})

describe('intents API under overload', () => {
  it('answers 503 with Retry-After when the queue is full, and loses nothing it acknowledged', async () => {
    const n = await startNode({ mempool: { pool: {}, service: { maxInFlight: 2 } } })
    try {
      const w = wallet()
      const intents = await Promise.all(Array.from({ length: 40 }, () => makeIntent(w)))
      const answers = await Promise.all(
        intents.map(async (i) => {
          const res = await fetch(`${n.api}/v1/intents`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(signedIntentToJson(i.intent)),
          })
          return { id: i.id, status: res.status, retryAfter: res.headers.get('retry-after') }
        }),
      )
      const refused = answers.filter((a) => a.status === 503)
      expect(refused.length).toBeGreaterThan(0)
      for (const a of refused) expect(a.retryAfter).toBe('1')
      for (const a of answers.filter((x) => x.status === 202)) expect(n.node.pool.has(a.id)).toBe(true)
      for (const a of refused) expect(n.node.pool.has(a.id)).toBe(false)
    } finally {
      await n.node.stop()
      await rm(n.dir, { recursive: true, force: true })
    }
  })
})
