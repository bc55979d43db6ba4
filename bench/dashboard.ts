// Dashboard benchmark (issue 12, Measure). One in-process devnet (4 nodes, 2 rollups); per run, three
// windows of --window-s seconds each:
//   off:   the dashboard feed stopped (no polling, no event streams), no page;
//   feed:  the feed running, no page;
//   page:  the feed running and the page open in headless chromium (its one SSE stream).
// CPU: process.cpuUsage() of the devnet process over each window (user + system; the nodes and anvils
// are other processes, so this is the dashboard's work plus the devnet's constant background: proxies,
// traffic), reported as the difference from `off`, per node, in ms of CPU per second. Update latency:
// for every `block` message of the `page` window, the time the devnet server received the node's block
// event (recvMs) to the animation frame after the page drew it (renderMs), from window.__murmurStats.
//
//   npm run bench -- dashboard [--runs 3] [--window-s 20] [--rate 1]
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Devnet } from '../devnet/devnet.ts'
import { ensureChromium, launchChromium } from '../test/helpers/browser.ts'
import { median, percentile } from './lib.ts'

const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'dashboard'),
  options: {
    runs: { type: 'string', default: '3' },
    'window-s': { type: 'string', default: '20' },
    rate: { type: 'string', default: '1' },
  },
})
const RUNS = Number(values.runs)
const WINDOW_MS = Number(values['window-s']) * 1000
const NODES = 4

const chromium = await ensureChromium()
if ('missing' in chromium) {
  console.error(`bench dashboard: ${chromium.missing}`)
  process.exit(2)
}
const dir = await mkdtemp(join(tmpdir(), 'murmur-bench-dashboard-'))
const net = new Devnet({
  dir,
  nodes: NODES,
  rollups: 2,
  rate: Number(values.rate),
  statusEveryMs: 0,
  out: () => {},
})
const browser = await launchChromium(chromium.path)

/** CPU ms per wall second of this process over `ms` of wall time. */
async function cpuOver(ms: number): Promise<number> {
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await new Promise((r) => setTimeout(r, ms))
  const c = process.cpuUsage(c0)
  return (c.user + c.system) / 1000 / ((performance.now() - t0) / 1000)
}

const rows: Array<{ off: number; feed: number; page: number; latencies: number[] }> = []
try {
  await net.up()
  const feed = net.dashboard!.feed
  for (let run = 0; run < RUNS; run++) {
    feed.stop()
    const off = await cpuOver(WINDOW_MS)
    feed.start()
    const feedCpu = await cpuOver(WINDOW_MS)
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } })
    await page.goto(net.state().dashboard)
    await page.waitForFunction(
      () => (globalThis as unknown as { __murmurStats: { ticks: number } }).__murmurStats.ticks > 0,
    )
    const from = Date.now()
    const pageCpu = await cpuOver(WINDOW_MS)
    const blocks = (await page.evaluate(
      () => (globalThis as unknown as { __murmurStats: { blocks: unknown[] } }).__murmurStats.blocks,
    )) as Array<{ recvMs: number; renderMs: number }>
    await page.close()
    const latencies = blocks.filter((b) => b.recvMs >= from).map((b) => b.renderMs - b.recvMs)
    rows.push({ off, feed: feedCpu, page: pageCpu, latencies })
    const s = [...latencies].sort((a, b) => a - b)
    process.stderr.write(
      `run ${run + 1}: cpu ms/s off ${off.toFixed(1)}, feed ${feedCpu.toFixed(1)}, page ${pageCpu.toFixed(1)}; ` +
        `${s.length} block updates, latency p50 ${percentile(s, 50).toFixed(1)} ms p90 ${percentile(s, 90).toFixed(1)} ms\n`,
    )
  }
} finally {
  await browser.close()
  await net.stop()
  await rm(dir, { recursive: true, force: true })
}

const perNode = (k: 'feed' | 'page') => median(rows.map((r) => (r[k] - r.off) / NODES))
const lat = median(
  rows.map((r) =>
    percentile(
      [...r.latencies].sort((a, b) => a - b),
      50,
    ),
  ),
)
const lat90 = median(
  rows.map((r) =>
    percentile(
      [...r.latencies].sort((a, b) => a - b),
      90,
    ),
  ),
)
console.log(
  `dashboard (${RUNS} runs of ${WINDOW_MS / 1000} s windows, ${NODES} nodes, medians): update latency ` +
    `server receipt -> page drawn p50 ${lat.toFixed(1)} ms, p90 ${lat90.toFixed(1)} ms; dashboard server CPU ` +
    `per node ${perNode('feed').toFixed(2)} ms/s without a page, ${perNode('page').toFixed(2)} ms/s with one ` +
    `(devnet process baseline ${median(rows.map((r) => r.off)).toFixed(1)} ms/s)`,
)
// The devnet leaves no process behind (stop() above), but some of its handles keep the event loop alive.
process.exit(0)
