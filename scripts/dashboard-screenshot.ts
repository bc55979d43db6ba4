// docs/dashboard.png: the devnet dashboard of a running devnet (4 nodes, 2 rollups, 2 intents a second)
// after a minute of traffic, a short partition and a rollup outage, so every panel has something to show (the side panel closed:
// it would cover the rollups and the stake).
//
//   node scripts/dashboard-screenshot.ts [docs/dashboard.png]
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Devnet } from '../devnet/devnet.ts'
import { ensureChromium, launchChromium } from '../test/helpers/browser.ts'

const out = process.argv[2] ?? 'docs/dashboard.png'
const chromium = await ensureChromium()
if ('missing' in chromium) {
  console.error(`dashboard-screenshot: ${chromium.missing}`)
  process.exit(2)
}
const dir = await mkdtemp(join(tmpdir(), 'murmur-screenshot-'))
const net = new Devnet({ dir, nodes: 4, rollups: 2, rate: 2, statusEveryMs: 0, out: (l) => console.error(l) })
const browser = await launchChromium(chromium.path)
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms))
try {
  await net.up()
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } })
  await page.goto(net.state().dashboard)
  // Wall-clock pacing is the point here (a picture of a minute of history), not synchronisation.
  await pause(25_000)
  await net.control('partition', ['0,1', '2,3'])
  await pause(8_000)
  await net.control('heal', [])
  await pause(10_000)
  await net.control('rollup-down', ['902'])
  await pause(8_000)
  await net.control('rollup-up', ['902'])
  await pause(12_000)
  await page.screenshot({ path: out, fullPage: true })
  console.error(`dashboard-screenshot: wrote ${out}`)
} finally {
  await browser.close()
  await net.stop()
  await rm(dir, { recursive: true, force: true })
}
// The devnet leaves no process behind (stop() above), but some of its handles keep the event loop alive.
process.exit(0)
