// `npm run bench -- api-limits`: the HTTP API under a flood at the default rate limit, and the batch route.
// One node in this process (one validator, no rollups). Phase 1: 300 bad `POST /v1/intents` from one
// client in 2 s (the issue 13 measurement: before the limit, all 300 were served). Phase 2, limit off:
// `--runs` batches of 256 pre-signed intents, the median answer time.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { prepareNetwork } from '../devnet/network.ts'
import { MAX_BATCH_INTENTS } from '../src/api/limits.ts'
import { signedIntentToJson } from '../src/codec/intent.ts'
import { MurmurNode } from '../src/node/node.ts'
import type { NodeOptions } from '../src/node/options.ts'
import { median, presignIntents } from './lib.ts'

const { values } = parseArgs({
  args: process.argv.slice(3),
  options: { requests: { type: 'string', default: '300' }, runs: { type: 'string', default: '3' } },
})
const REQUESTS = Number(values.requests)
const RUNS = Number(values.runs)

async function withNode(opts: Partial<NodeOptions>, fn: (api: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'murmur-bench-api-'))
  const net = await prepareNetwork({ dir, nodes: 1 })
  const node = new MurmurNode(
    {
      dataDir: net.nodes[0]!.dataDir,
      genesisPath: net.genesisPath,
      api: { host: '127.0.0.1', port: 0 },
      ...opts,
    },
    pino({ level: 'silent' }),
  )
  try {
    await node.start()
    await fn(`http://127.0.0.1:${node.apiAddress!.port}`)
  } finally {
    await node.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

const post = (api: string, body: string) =>
  fetch(`${api}/v1/intents`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })

await withNode({}, async (api) => {
  const counts: Record<number, number> = {}
  const t0 = Date.now()
  const inFlight: Promise<void>[] = []
  for (let i = 0; i < REQUESTS; i++) {
    // Paced, not a burst: one request every 2000/REQUESTS ms.
    await new Promise((r) => setTimeout(r, Math.max(0, t0 + (i * 2000) / REQUESTS - Date.now())))
    inFlight.push(
      post(api, '{"order":{}}').then(async (r) => {
        counts[r.status] = (counts[r.status] ?? 0) + 1
        await r.text()
      }),
    )
  }
  await Promise.all(inFlight)
  console.log(
    `flood: ${REQUESTS} bad POSTs in ${Date.now() - t0} ms at the default limit: ${JSON.stringify(counts)}`,
  )
})

await withNode({ apiLimits: { rateLimit: undefined } }, async (api) => {
  const ms: number[] = []
  for (let k = 0; k < RUNS; k++) {
    const body = JSON.stringify(
      presignIntents(MAX_BATCH_INTENTS, { chains: [901n] }).map((p) => signedIntentToJson(p.intent)),
    )
    const start = performance.now()
    const r = await post(api, body)
    const answers = (await r.json()) as Array<{ status: number }>
    ms.push(performance.now() - start)
    const accepted = answers.filter((a) => a.status === 202).length
    console.log(
      `batch ${k}: HTTP ${r.status}, ${accepted} of ${MAX_BATCH_INTENTS} accepted, ${body.length} bytes, ${ms.at(-1)!.toFixed(0)} ms`,
    )
  }
  console.log(`batch of ${MAX_BATCH_INTENTS}: median ${median(ms).toFixed(0)} ms over ${RUNS} runs`)
})
process.exit(0)
