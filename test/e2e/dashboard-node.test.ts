import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { followEvents } from '../../devnet/sse.ts'
import { ensureChromium, launchChromium } from '../helpers/browser.ts'
import { Cluster } from '../helpers/cluster.ts'
import { makeIntent, wallet } from '../helpers/intents.ts'
import { postJson, waitFor } from '../helpers/wait.ts'

const chromium = await ensureChromium()

interface Tick {
  nodes: Array<{ i: number; status: string; height: number | null }>
  intents: Record<string, number | null>
}

/** The first `tick` of the node's dashboard stream (the SSE framing of `/v1/events`) that `ok` takes. */
async function tickWhere(api: string, what: string, ok: (t: Tick) => boolean = () => true): Promise<Tick> {
  const ac = new AbortController()
  let tick: Tick | undefined
  try {
    await followEvents(
      api,
      ac.signal,
      (type, data) => {
        if (type === 'tick' && tick === undefined && ok(data as Tick)) tick = data as Tick
      },
      undefined,
      '/dashboard/api/stream',
    )
    return await waitFor(what, () => tick, { timeoutMs: 30_000 })
  } finally {
    ac.abort()
  }
}

const STATES = ['pending', 'assigned', 'filled', 'settled', 'refunded', 'expired']

// Two node processes: node 0 with --dashboard, node 1 without.
describe('murmur node start --dashboard', () => {
  let c: Cluster
  beforeAll(async () => {
    c = await Cluster.create(2)
    await c.start(0, { extraArgs: ['--dashboard'] })
    await c.start(1, { bootstrap: c.node(0).listen })
  }, 60_000)
  afterAll(async () => {
    await c?.close()
  })

  it('serves the page, the vendored uPlot and a stream of its own view; 404 without the flag', async () => {
    const api = c.node(0).api
    const page = await fetch(`${api}/dashboard/`)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toContain('text/html')
    expect(await page.text()).toContain('vendor/uplot.iife.min.js')
    const vendor = await fetch(`${api}/dashboard/vendor/uplot.iife.min.js`)
    expect(vendor.status).toBe(200)
    expect(await vendor.text()).toContain('uPlot')
    expect((await fetch(`${api}/dashboard/vendor/uPlot.min.css`)).status).toBe(200)
    expect(await (await fetch(`${api}/dashboard/api/state`)).json()).toMatchObject({ mode: 'node' })
    const tick = await tickWhere(api, 'a tick')
    expect(tick.nodes[0]).toMatchObject({ i: 0 })
    expect(typeof tick.nodes[0]!.height).toBe('number')

    const other = c.node(1).api
    expect((await fetch(`${other}/dashboard/`)).status).toBe(404)
    expect((await fetch(`${other}/dashboard/vendor/uplot.iife.min.js`)).status).toBe(404)
  })

  it('counts the intents this node takes in, and shows its peer with a height', async () => {
    const api = c.node(0).api
    for (let k = 0; k < 2; k++) {
      const { body } = await makeIntent(wallet())
      expect((await postJson(`${api}/v1/intents`, body)).status).toBe(202)
    }
    // Both intents, in whatever state they reached by now (pending, or further).
    const tick = await tickWhere(
      api,
      'a tick counting both intents, with the peer height known',
      (t) =>
        STATES.reduce((n, s) => n + (t.intents[s] ?? 0), 0) >= 2 && typeof t.nodes[1]?.height === 'number',
    )
    expect(tick.nodes[1]!.height).toBeGreaterThanOrEqual(0)
    expect(Object.keys(tick.intents)).toEqual(expect.arrayContaining([...STATES, 'fillP50Ms', 'settleP90Ms']))
  })

  it.skipIf('missing' in chromium)(
    `shows the node and its peer in chromium, without fault buttons${'missing' in chromium ? ` (skipped: ${chromium.missing})` : ''}`,
    async () => {
      const browser = await launchChromium((chromium as { path: string }).path)
      try {
        const page = await browser.newPage()
        await page.goto(`${c.node(0).api}/dashboard/`)
        await waitFor('node 0 drawn up with its peer', async () => {
          const s = await page
            .locator('[data-testid="node-0"]')
            .getAttribute('data-status', { timeout: 1_000 })
          return s === 'up' && (await page.locator('[data-testid="node-1"]').count()) === 1
        })
        expect(await page.locator('[data-testid="link-0-1"]').count()).toBe(1)
        expect(await page.locator('#btn-heal').isVisible()).toBe(false)
      } finally {
        await browser.close()
      }
    },
  )
})
