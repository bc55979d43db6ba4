/**
 * The scenario's black-box probes: what it asks the nodes' HTTP APIs (the addresses come from the
 * devnet's `devnet.json`). Every call has a short timeout; a node that does not answer is recorded as
 * such, never waited for.
 */
import type { DevnetState } from './devnet.ts'
import type {
  BlockLookup,
  IntentLookup,
  IntentProgress,
  NodeSample,
  SampleRound,
  SentIntent,
} from './scenario-model.ts'

const PROBE_TIMEOUT_MS = 1_500
/** Requests in flight at once when looking many things up (the machine is shared). */
const BATCH = 8

async function getJson(url: string): Promise<{ status: number; body: unknown } | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) })
    return { status: res.status, body: await res.json() }
  } catch {
    return undefined
  }
}

/** Runs `fn` over `items`, BATCH at a time. */
async function inBatches<T, R>(items: readonly T[], fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = []
  for (let i = 0; i < items.length; i += BATCH)
    out.push(...(await Promise.all(items.slice(i, i + BATCH).map(fn))))
  return out
}

/** One node's status (and rollups / validators when asked). */
async function sampleNode(
  api: string | null,
  node: number,
  want: { rollups: boolean; validators: boolean },
): Promise<NodeSample> {
  if (api === null) return { node, up: false }
  const [status, peers, rollups, validators] = await Promise.all([
    getJson(`${api}/v1/status`),
    getJson(`${api}/v1/peers`),
    want.rollups ? getJson(`${api}/v1/rollups`) : undefined,
    want.validators ? getJson(`${api}/v1/validators`) : undefined,
  ])
  if (status?.status !== 200) return { node, up: false }
  const s = status.body as { height: number; blockHash: string; peers: number }
  const sample: NodeSample = {
    node,
    up: true,
    height: Number(s.height),
    blockHash: s.blockHash,
    peers: s.peers,
  }
  if (peers?.status === 200) sample.peerIds = (peers.body as Array<{ peerId: string }>).map((p) => p.peerId)
  if (rollups?.status === 200)
    sample.rollups = Object.fromEntries(
      (rollups.body as Array<{ chainId: number; status: string }>).map((r) => [String(r.chainId), r.status]),
    )
  if (validators?.status === 200)
    sample.offline = (validators.body as Array<{ address: string; online?: boolean }>)
      .filter((v) => v.online === false)
      .map((v) => v.address)
  return sample
}

/** Every node of the devnet, sampled in parallel. */
export async function sampleRound(
  state: DevnetState,
  want: { rollups: boolean; validators: boolean },
): Promise<SampleRound> {
  const atMs = Date.now()
  const nodes = await Promise.all(state.nodes.map((n) => sampleNode(n.api, n.index, want)))
  return { atMs, nodes }
}

/** Asks one running node (a different one each time) about each open intent; records fills. */
export async function pollFills(
  state: DevnetState,
  open: readonly SentIntent[],
  progress: Map<string, IntentProgress>,
): Promise<void> {
  const apis = state.nodes.map((n) => n.api).filter((a): a is string => a !== null)
  if (apis.length === 0) return
  await inBatches([...open.entries()], async ([k, i]) => {
    const r = await getJson(`${apis[k % apis.length]}/v1/intents/${i.id}`)
    if (r?.status !== 200) return
    const v = r.body as { state: string; history: Array<{ state: string; atMs: number }> }
    const filled = v.history.findLast((h) => h.state === 'filled')
    progress.set(i.id, { state: v.state, ...(filled === undefined ? {} : { filledAtMs: filled.atMs }) })
  })
}

/** `GET /v1/intents/:id` for every intent on every node. */
export async function lookupIntents(
  state: DevnetState,
  intents: readonly SentIntent[],
): Promise<Map<string, IntentLookup[]>> {
  const pairs = intents.flatMap((i) => state.nodes.map((n) => ({ i, n })))
  const found = await inBatches(pairs, async ({ i, n }): Promise<[string, IntentLookup]> => {
    const r = n.api === null ? undefined : await getJson(`${n.api}/v1/intents/${i.id}`)
    const result = r === undefined ? 'unreachable' : r.status === 200 ? 'known' : 'missing'
    const st = (r?.body as { state?: string } | undefined)?.state
    return [i.id, { node: n.index, result, ...(result === 'known' && st !== undefined ? { state: st } : {}) }]
  })
  const out = new Map<string, IntentLookup[]>()
  for (const [id, l] of found) out.set(id, [...(out.get(id) ?? []), l])
  return out
}

/**
 * The heights to compare: all of 1..top when there are at most `max`, otherwise the first and last
 * ones, a few around each fault (`marks`: the network height when each fault command returned), and
 * evenly spaced ones in between.
 */
export function heightsToCheck(
  top: number,
  max: number,
  marks: readonly number[],
): { heights: number[]; sampled: boolean } {
  if (top <= max) return { heights: Array.from({ length: top }, (_, i) => i + 1), sampled: false }
  const set = new Set<number>()
  const add = (h: number) => h >= 1 && h <= top && set.add(h)
  for (let h = 1; h <= 5; h++) add(h)
  for (let h = top - 19; h <= top; h++) add(h)
  for (const m of marks) for (let d = -2; d <= 2; d++) add(m + d)
  const spread = Math.max(1, max - set.size)
  for (let k = 0; k < spread; k++) add(1 + Math.round((k * (top - 1)) / spread))
  return { heights: [...set].sort((a, b) => a - b), sampled: true }
}

/** `GET /v1/blocks/:height` on every node for the heights chosen by `heightsToCheck`. */
export async function collectBlocks(
  state: DevnetState,
  top: number,
  max: number,
  marks: readonly number[],
): Promise<{ blocks: BlockLookup[]; range: { from: number; to: number; sampled: boolean } }> {
  const { heights, sampled } = heightsToCheck(top, max, marks)
  const blocks = await inBatches(heights, async (height) => ({
    height,
    hashes: await Promise.all(
      state.nodes.map(async (n) => {
        const r = n.api === null ? undefined : await getJson(`${n.api}/v1/blocks/${height}`)
        return r?.status === 200 ? ((r.body as { hash: string }).hash ?? null) : null
      }),
    ),
  }))
  return { blocks, range: { from: 1, to: top, sampled } }
}

/**
 * Nodes that take part in the rounds: node i's own latest block carries node i's precommit in its
 * certificate. A node that just synced holds the others' certificates only, so it is not counted
 * until it signs again.
 */
export async function signingNodes(state: DevnetState, addresses: readonly string[]): Promise<Set<number>> {
  const out = new Set<number>()
  await Promise.all(
    state.nodes.map(async (n) => {
      if (n.api === null) return
      const st = await getJson(`${n.api}/v1/status`)
      const h = (st?.body as { height?: number } | undefined)?.height
      if (st?.status !== 200 || h === undefined || h < 1) return
      const b = await getJson(`${n.api}/v1/blocks/${h}`)
      const cert = (b?.body as { certificate?: { precommits: Array<{ validator: string }> } | null })
        ?.certificate
      if (cert?.precommits.some((p) => p.validator === addresses[n.index])) out.add(n.index)
    }),
  )
  return out
}
