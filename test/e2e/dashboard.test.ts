/**
 * The devnet's dashboard in a real browser (Debian's chromium driven by playwright-core): what a person
 * sees on the page follows the network: nodes and rollups with their status, a partition on the peer
 * graph, intent counts, a kill, and the fault buttons. Everything is read from the page's `data-testid`
 * and `data-status` attributes, as anyone's browser test would.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Devnet } from '../../devnet/devnet.ts'
import { ensureChromium, launchChromium } from '../helpers/browser.ts'
import { waitFor } from '../helpers/wait.ts'

const chromium = await ensureChromium()
const skipped = 'missing' in chromium ? ` (skipped: ${chromium.missing})` : ''

describe.skipIf('missing' in chromium)(`the devnet dashboard in chromium${skipped}`, () => {
  let dir: string
  let net: Devnet
  let browser: Browser
  let page: Page
  const pageErrors: string[] = []

  const status = (testid: string) =>
    page.locator(`[data-testid="${testid}"]`).getAttribute('data-status', { timeout: 1_000 })
  const count = (testid: string) => page.locator(`[data-testid="${testid}"]`).count()
  const counter = async (state: string) =>
    Number(await page.locator(`[data-testid="intents-${state}"]`).textContent({ timeout: 1_000 }))

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'murmur-dashboard-'))
    net = new Devnet({ dir, nodes: 4, rollups: 2, rate: 1, statusEveryMs: 0, out: () => {} })
    await net.up()
    browser = await launchChromium((chromium as { path: string }).path)
    page = await browser.newPage({ viewport: { width: 1440, height: 900 } })
    page.on('pageerror', (err) => pageErrors.push(err.message))
    await page.goto(net.state().dashboard)
  }, 180_000)
  afterAll(async () => {
    await browser?.close()
    await net?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('renders the nodes (up, linked) and the rollups of the running devnet, with its charts', async () => {
    for (const i of [0, 1, 2, 3])
      await waitFor(`node ${i} up on the page`, async () => (await status(`node-${i}`)) === 'up')
    for (const c of [901, 902])
      await waitFor(`rollup ${c} up`, async () => (await status(`rollup-${c}`)) === 'up')
    expect(await count('rollup-903')).toBe(0)
    // Every node dialled node 0 (the bootstrap): its links are on the graph.
    for (const j of [1, 2, 3]) await waitFor(`link 0-${j}`, async () => (await count(`link-0-${j}`)) === 1)
    expect(await page.locator('#chart-heights .uplot').count()).toBe(1)
    expect(await page.locator('#pools tr[data-testid^="pool-"]').count()).toBe(2)
    expect(pageErrors).toEqual([])
  })

  it('moves the intent counts as the wallets send (filled or settled within a minute)', async () => {
    await waitFor(
      'an intent counted',
      async () =>
        (await counter('pending')) +
          (await counter('assigned')) +
          (await counter('filled')) +
          (await counter('settled')) >
        0,
      { timeoutMs: 30_000 },
    )
    await waitFor(
      'an intent filled or settled',
      async () => (await counter('filled')) + (await counter('settled')) > 0,
      { timeoutMs: 60_000 },
    )
  }, 100_000)

  it('partitions by dragging nodes into two groups, shows it on the peer graph, and heals', async () => {
    for (const i of [0, 1]) await page.dragAndDrop(`[data-testid="chip-${i}"]`, '[data-testid="zone-a"]')
    for (const i of [2, 3]) await page.dragAndDrop(`[data-testid="chip-${i}"]`, '[data-testid="zone-b"]')
    expect(await page.locator('[data-testid="zone-a"] .chip').count()).toBe(2)
    await page.click('[data-testid="partition-apply"]')
    // Links drawn between the two groups (there are some before: every node dialled node 0).
    const across = async () => {
      let n = 0
      for (const l of ['link-0-2', 'link-0-3', 'link-1-2', 'link-1-3']) n += await count(l)
      return n
    }
    await waitFor('no link across the partition on the graph', async () => (await across()) === 0, {
      timeoutMs: 20_000,
    })
    // The fault is on the timeline.
    await waitFor('partition on the fault list', async () =>
      (await page.locator('[data-testid="faults"]').textContent())?.includes('partition 0,1 2,3'),
    )
    await page.click('#btn-heal')
    await waitFor('a link across again after heal', async () => (await across()) > 0, { timeoutMs: 45_000 })
  }, 90_000)

  it('turns a killed node down within seconds, and the restart button brings it back up', async () => {
    await waitFor('node 3 up', async () => (await status('node-3')) === 'up', { timeoutMs: 30_000 })
    await net.control('kill', ['3'])
    const killedAt = Date.now()
    await waitFor('node 3 down on the page', async () => (await status('node-3')) === 'down', {
      timeoutMs: 5_000,
    })
    expect(Date.now() - killedAt).toBeLessThan(5_000)
    await page.click('[data-testid="node-3"]')
    await page.click('[data-testid="btn-restart"]')
    await waitFor('node 3 up after the restart button', async () => (await status('node-3')) === 'up', {
      timeoutMs: 45_000,
    })
  }, 90_000)

  it('the rollup-down and rollup-up buttons take a rollup down and back up on the page', async () => {
    // The side panel (open after the test above) covers the rollup cards.
    if (await page.locator('#details-close').isVisible()) await page.click('#details-close')
    await page.click('[data-testid="rollup-902"]')
    await page.click('[data-testid="btn-rollup-down"]')
    await waitFor('rollup 902 down', async () => (await status('rollup-902')) === 'down', {
      timeoutMs: 10_000,
    })
    expect(await status('rollup-901')).not.toBe('down')
    await page.click('[data-testid="btn-rollup-up"]')
    await waitFor('rollup 902 up again', async () => (await status('rollup-902')) === 'up', {
      timeoutMs: 60_000,
    })
    expect(pageErrors).toEqual([])
  }, 90_000)

  it('the spike button runs a load spike: the fault list shows it and more intents arrive', async () => {
    const sent = async () =>
      (await Promise.all(['pending', 'assigned', 'filled', 'settled'].map((s) => counter(s)))).reduce(
        (a, b) => a + b,
        0,
      )
    const total = await sent()
    await page.click('[data-testid="btn-spike"]')
    await waitFor(
      'the spike on the fault list',
      async () => /spike 20 15/.test((await page.locator('[data-testid="faults"]').textContent()) ?? ''),
      { timeoutMs: 10_000 },
    )
    // 1 intent/s normally: 20 more within the spike's 15 s means it ran.
    await waitFor('20 more intents seen on the page', async () => (await sent()) >= total + 20, {
      timeoutMs: 30_000,
    })
    expect(pageErrors).toEqual([])
  }, 60_000)
})
