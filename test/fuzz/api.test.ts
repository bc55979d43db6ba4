/**
 * Fuzzing of a real node's HTTP API (issue 13, item 6) over 127.0.0.1: every POST route with random
 * JSON, mutations of valid signed bodies, non-JSON bytes and odd content types; every GET route with
 * random path parameters and query strings; random methods on random paths. The property: an answer
 * within the deadline that is not a 500 (a 503 only with Retry-After), JSON `{error:{code}}` on every
 * 4xx; and the node still answers `GET /v1/status` afterwards.
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeIntent, wallet } from '../helpers/intents.ts'
import { type FuzzNode, startFuzzNode } from './fuzz-node.ts'
import { hostileJson, jsonValue, record, runs } from './harness.ts'
import { buildSeeds, type Seeds } from './seeds.ts'

let f: FuzzNode
let seeds: Seeds
let intentBodies: unknown[]

beforeAll(async () => {
  f = await startFuzzNode()
  seeds = await buildSeeds(f.networkId, [f.validator])
  // Intents this node would accept (its seeds are of another network's chain ids: same codec though).
  intentBodies = await Promise.all([0, 1].map(async () => (await makeIntent(wallet())).body))
}, 60_000)

afterAll(async () => {
  await f?.stop()
})

/** One request; the answer's status, headers and text. */
async function call(method: string, path: string, body?: string | Uint8Array, type?: string) {
  const headers: Record<string, string> = {}
  if (type !== undefined) headers['content-type'] = type
  const r = await fetch(`${f.api}${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body }),
    signal: AbortSignal.timeout(10_000),
  })
  return { status: r.status, headers: r.headers, text: await r.text() }
}

function checkAnswer(what: string, a: Awaited<ReturnType<typeof call>>): void {
  expect(a.status, `${what}: ${a.text.slice(0, 300)}`).not.toBe(500)
  expect(a.status, what).toBeLessThan(600)
  if (a.status >= 500) {
    expect(a.status, `${what}: ${a.text.slice(0, 300)}`).toBe(503)
    expect(a.headers.get('retry-after'), what).not.toBeNull()
  }
  if (a.status >= 400 && a.status !== 404) {
    const body = JSON.parse(a.text) as { error?: { code?: unknown } }
    expect(typeof body.error?.code, `${what}: ${a.text.slice(0, 300)}`).toBe('string')
  }
}

const POST_ROUTES: ReadonlyArray<[string, () => unknown[]]> = [
  ['/v1/intents', () => [...intentBodies, intentBodies, ...seeds.intentJson]],
  ['/v1/stake-moves', () => seeds.stakeJson],
  ['/v1/unjail', () => seeds.unjailJson],
  ['/v1/transfers', () => seeds.transferJson],
  ['/v1/delegations', () => seeds.delegateJson],
  [
    '/v1/undelegations',
    () =>
      seeds.delegateJson.map((d) => ({
        undelegate: (d as { delegate: unknown }).delegate,
        signature: (d as { signature: unknown }).signature,
      })),
  ],
  ['/v1/validators', () => seeds.transferJson],
  ['/admin/v1/partition', () => [{ deny: ['12D3KooWnotapeer'] }, { deny: [] }]],
  ['/admin/v1/probe', () => [{ size: 10 }, {}]],
]

/** A body as the wire carries it: JSON of a value, or bytes that are not JSON at all. */
const rawBody: fc.Arbitrary<{ body: string | Uint8Array; type: string | undefined }> = fc.oneof(
  fc.record({
    body: fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.constantFrom(
        '{',
        '[',
        '{"a":',
        'null',
        '1e999',
        '"\\ud800"',
        '[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]',
      ),
    ),
    type: fc.constantFrom('application/json', 'application/json; charset=latin1', 'text/plain', undefined),
  }),
  fc.record({
    body: fc.uint8Array({ maxLength: 300 }),
    type: fc.constantFrom('application/json', 'application/octet-stream', 'multipart/form-data; boundary=x'),
  }),
  // Deep nesting of valid JSON (a parser's or a walker's recursion).
  fc
    .integer({ min: 100, max: 5_000 })
    .map((n) => ({ body: `${'['.repeat(n)}${']'.repeat(n)}`, type: 'application/json' })),
)

describe('HTTP API of a real node', () => {
  for (const [path, bodies] of POST_ROUTES) {
    it(`POST ${path}: never a 500`, async () => {
      const n = runs(0.5)
      const t0 = performance.now()
      const arb = fc.oneof(
        {
          weight: 4,
          arbitrary: hostileJson(bodies()).map((v) => ({
            body: JSON.stringify(v) ?? 'null',
            type: 'application/json' as string | undefined,
          })),
        },
        { weight: 1, arbitrary: rawBody },
      )
      await fc.assert(
        fc.asyncProperty(arb, async ({ body, type }) => {
          checkAnswer(`POST ${path} ${String(body).slice(0, 200)}`, await call('POST', path, body, type))
        }),
        { numRuns: n, timeout: 15_000 },
      )
      record(`api:POST ${path}`, n, performance.now() - t0)
    })
  }

  it('a URL with a bad percent escape is 400 MALFORMED in the API error shape (found by this fuzzer)', async () => {
    for (const path of ['/v1/intents/%zz', '/v1/accounts/%', '/%e0%a4%a']) {
      const a = await call('GET', path)
      expect(a.status, path).toBe(400)
      expect(JSON.parse(a.text), path).toMatchObject({ error: { code: 'MALFORMED' } })
    }
  })

  it('GET routes with random parameters and queries: never a 500', async () => {
    const n = runs(1)
    const t0 = performance.now()
    const param = fc.oneof(
      fc.string({ maxLength: 80 }).map(encodeURIComponent),
      fc.constantFrom(
        '0',
        '1',
        '-1',
        '18446744073709551616',
        '9'.repeat(400),
        '0x',
        `0x${'a'.repeat(64)}`,
        `0x${'A'.repeat(40)}`,
        '%00',
        '..',
        '%2e%2e%2f',
        '%',
        '%zz',
      ),
      fc.bigInt({ min: 0n, max: 1n << 70n }).map(String),
    )
    const route = fc.constantFrom(
      '/v1/intents/:p',
      '/v1/blocks/:p',
      '/v1/settlement/:p',
      '/v1/accounts/:p',
      '/admin/v1/probes?origin=:p',
      '/v1/status?:p',
      '/v1/staking?x=:p',
      '/v1/validators',
      '/v1/rollups',
      '/v1/peers',
      '/v1/peers/bans',
      '/metrics',
      '/:p',
      '/v1/:p/:p',
    )
    await fc.assert(
      fc.asyncProperty(route, param, async (r, p) => {
        const path = r.replaceAll(':p', p)
        checkAnswer(`GET ${path}`, await call('GET', path))
      }),
      { numRuns: n, timeout: 15_000 },
    )
    record('api:GET', n, performance.now() - t0)
  })

  it('random methods on random paths: never a 500', async () => {
    const n = runs(0.5)
    const t0 = performance.now()
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'),
        fc.constantFrom(
          '/v1/intents',
          '/v1/status',
          '/admin/v1/partition',
          '/v1/transfers',
          '/metrics',
          '/v1/unjail',
          '/nope',
        ),
        jsonValue,
        async (method, path, v) => {
          const body = method === 'GET' || method === 'HEAD' ? undefined : (JSON.stringify(v) ?? 'null')
          const a = await call(method, path, body, body === undefined ? undefined : 'application/json')
          expect(a.status, `${method} ${path}`).not.toBe(500)
          expect(a.status, `${method} ${path}`).toBeLessThan(600)
        },
      ),
      { numRuns: n, timeout: 15_000 },
    )
    record('api:methods', n, performance.now() - t0)
    expect((await call('GET', '/v1/status')).status).toBe(200)
  })
})
