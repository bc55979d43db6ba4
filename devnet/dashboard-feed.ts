/**
 * What the dashboard shows, gathered over the nodes' HTTP APIs: every node's status and peers and the
 * network's rollups, staking and validators (from the first node that answers) about once a second, and
 * every node's `/v1/events` stream (its `block` events as they come, the `intent` events of one node into
 * an IntentTally). Pure HTTP against the node URLs it is handed, so it knows nothing of how the nodes run.
 * Bounded: the history is a ring of HISTORY_POINTS ticks, the fault list a ring of MAX_FAULTS.
 */
import { IntentTally } from '../src/api/intent-tally.ts'
import { followEvents } from './sse.ts'

/** Ticks of history kept by default (about 10 minutes at one a second). */
export const HISTORY_POINTS = 600
/** Fault commands kept for the timeline. */
export const MAX_FAULTS = 200
/** Stake moves a tick carries (the most recent; `movesInForce` counts them all). */
const MAX_MOVES = 20
/** A node this many blocks behind the highest is shown degraded. */
const BEHIND_BLOCKS = 3

/** A node as the feed is told of it (index in the network, API URL or null while it is not running). */
export interface FeedNode {
  index: number
  api: string | null
  peerId: string
}

/** A rollup as the feed is told of it; `running` false: the devnet has stopped it. */
export interface FeedRollup {
  chainId: number
  running: boolean
}

export interface FeedSource {
  nodes(): FeedNode[]
  rollups(): FeedRollup[]
  /** Extra figures the tick carries as they are (the devnet's wallet counters). */
  extra?(): Record<string, unknown>
}

/** `up`, `down`, `degraded` (no peers, or behind), `syncing`, `jailed` (its validator is). */
export type NodeStatus = 'up' | 'down' | 'degraded' | 'syncing' | 'jailed'

export interface NodeTick {
  i: number
  status: NodeStatus
  height: number | null
  /** Indexes of the connected peers that are nodes of this network. */
  peers: number[]
  peerId: string
  validator: string | null
  api: string | null
}

export interface Tick {
  t: number
  nodes: NodeTick[]
  rollups: Array<Record<string, unknown> & { chainId: number; status: string }>
  intents: Record<string, number | null>
  staking: unknown
  validators: Array<{ address: string; jailed: boolean; online: boolean; power: string }>
  extra: Record<string, unknown>
}

export interface Fault {
  t: number
  cmd: string
  args: string[]
}

/** One message pushed to the page: `tick`, `block` or `fault`, with its data. */
export type FeedMessage =
  | { type: 'tick'; data: Tick }
  | { type: 'block'; data: { i: number; height: number; recvMs: number } }
  | { type: 'fault'; data: Fault }

async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2_000) })
  if (!res.ok) throw new Error(`${url}: ${res.status}`)
  return res.json()
}

/** Columnar history of the ticks (what the charts draw). */
export interface History {
  t: number[]
  heights: Array<Array<number | null>>
  gas: Record<string, Array<number | null>>
  baseFee: Record<string, Array<number | null>>
  /** Each rollup's status in the network's view as a level: 2 up, 1 degraded, 0 down (HEALTH_LEVEL). */
  health: Record<string, Array<number | null>>
}

/** A rollup status as the health chart's level. */
export const HEALTH_LEVEL: Readonly<Record<string, number>> = { up: 2, degraded: 1, down: 0 }

export class DashboardFeed {
  readonly #src: FeedSource
  readonly #pollMs: number
  readonly #points: number
  readonly tally = new IntentTally()
  readonly history: History = { t: [], heights: [], gas: {}, baseFee: {}, health: {} }
  readonly faults: Fault[] = []
  last: Tick | undefined
  readonly #listeners = new Set<(m: FeedMessage) => void>()
  /** Event streams followed, by node index, with the API URL they follow. */
  readonly #streams = new Map<number, { api: string; ac: AbortController }>()
  #tallyNode: number | undefined
  #timer: NodeJS.Timeout | undefined
  #busy = false

  constructor(src: FeedSource, pollMs = 1_000, historyPoints = HISTORY_POINTS) {
    this.#src = src
    this.#pollMs = pollMs
    this.#points = historyPoints
  }

  /** Starts polling (and following the streams); `stop()` ends both. */
  start(): void {
    if (this.#timer !== undefined) return
    this.#timer = setInterval(() => void this.poll(), this.#pollMs)
    void this.poll()
  }

  stop(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
    for (const s of this.#streams.values()) s.ac.abort()
    this.#streams.clear()
  }

  get running(): boolean {
    return this.#timer !== undefined
  }

  /** Calls `fn` with every message from now on; returns the unsubscribe. */
  subscribe(fn: (m: FeedMessage) => void): () => void {
    this.#listeners.add(fn)
    return () => this.#listeners.delete(fn)
  }

  get subscribers(): number {
    return this.#listeners.size
  }

  #emit(m: FeedMessage): void {
    for (const fn of this.#listeners) fn(m)
  }

  /** Records a fault command (the devnet's `control()` calls it) and pushes it to the pages. */
  fault(cmd: string, args: string[]): void {
    const f = { t: Date.now(), cmd, args }
    this.faults.push(f)
    if (this.faults.length > MAX_FAULTS) this.faults.shift()
    this.#emit({ type: 'fault', data: f })
  }

  /** Keeps one event stream per running node, reopened when the node's API changes (a restart). */
  #follow(nodes: FeedNode[]): void {
    for (const n of nodes) {
      const held = this.#streams.get(n.index)
      if (held !== undefined && held.api === n.api) continue
      held?.ac.abort()
      this.#streams.delete(n.index)
      if (n.api === null) continue
      const ac = new AbortController()
      const mine = { api: n.api, ac }
      this.#streams.set(n.index, mine)
      const end = () => {
        if (this.#streams.get(n.index) === mine) this.#streams.delete(n.index)
        if (this.#tallyNode === n.index) this.#tallyNode = undefined
      }
      followEvents(n.api, ac.signal, (type, data) => this.#onEvent(n.index, type, data), end).catch(end)
    }
  }

  #onEvent(i: number, type: string, data: unknown): void {
    if (type === 'block') {
      const height = Number((data as { height?: unknown }).height)
      if (!Number.isFinite(height)) return
      const n = this.last?.nodes[i]
      if (n !== undefined && (n.height ?? -1) < height) n.height = height
      this.#emit({ type: 'block', data: { i, height, recvMs: Date.now() } })
      return
    }
    // One node's intent events make the counts (another's would repeat them, a little late).
    this.#tallyNode ??= i
    if (type === 'intent' && i === this.#tallyNode) this.tally.onEvent(data)
  }

  /** One round of polling: builds a tick, records it in the history, pushes it. */
  async poll(): Promise<Tick | undefined> {
    if (this.#busy) return undefined
    this.#busy = true
    try {
      const tick = await this.#collect()
      this.#record(tick)
      this.last = tick
      this.#emit({ type: 'tick', data: tick })
      return tick
    } finally {
      this.#busy = false
    }
  }

  async #collect(): Promise<Tick> {
    const nodes = this.#src.nodes()
    if (this.#timer !== undefined) this.#follow(nodes)
    const byPeerId = new Map(nodes.map((n) => [n.peerId, n.index]))
    const raw = await Promise.all(
      nodes.map(async (n) => {
        if (n.api === null) return undefined
        try {
          const [status, peers] = await Promise.all([
            getJson(`${n.api}/v1/status`),
            getJson(`${n.api}/v1/peers`),
          ])
          return { status: status as Record<string, unknown>, peers: peers as Array<{ peerId: string }> }
        } catch {
          return undefined
        }
      }),
    )
    // The network's view (rollups, staking, validators) from the first node that answers.
    let rollups: Tick['rollups'] = []
    let staking: unknown = null
    let validators: Tick['validators'] = []
    for (const [k, n] of nodes.entries()) {
      if (n.api === null || raw[k] === undefined) continue
      try {
        ;[rollups, staking, validators] = (await Promise.all([
          getJson(`${n.api}/v1/rollups`),
          getJson(`${n.api}/v1/staking`),
          getJson(`${n.api}/v1/validators`).catch(() => []),
        ])) as [Tick['rollups'], unknown, Tick['validators']]
        break
      } catch {}
    }
    // Every epoch's rewards, every move in force: lists that grow with the chain; a page needs the last.
    const st = staking as { rewards?: unknown[]; moves?: unknown[] } | null
    if (st !== null && typeof st === 'object')
      staking = {
        ...st,
        rewards: (st.rewards ?? []).slice(-1),
        moves: (st.moves ?? []).slice(-MAX_MOVES),
        movesInForce: st.moves?.length ?? 0,
      }
    const running = new Map(this.#src.rollups().map((r) => [r.chainId, r.running]))
    // A rollup the devnet stopped is down now, before the nodes' health view notices.
    rollups = rollups.map((r) => (running.get(r.chainId) === false ? { ...r, status: 'down' } : r))
    const jailed = new Set(validators.filter((v) => v.jailed).map((v) => v.address.toLowerCase()))
    const top = Math.max(0, ...raw.map((r) => Number(r?.status['height'] ?? 0)))
    const nodeTicks = nodes.map((n, k): NodeTick => {
      const r = raw[k]
      if (r === undefined)
        return {
          i: n.index,
          status: 'down',
          height: null,
          peers: [],
          peerId: n.peerId,
          validator: null,
          api: n.api,
        }
      const height = Number(r.status['height'] ?? 0)
      const validator = typeof r.status['validator'] === 'string' ? r.status['validator'].toLowerCase() : null
      const peers = r.peers.map((p) => byPeerId.get(p.peerId)).filter((x): x is number => x !== undefined)
      const status: NodeStatus =
        validator !== null && jailed.has(validator)
          ? 'jailed'
          : r.status['syncing'] === true
            ? 'syncing'
            : (nodes.length > 1 && peers.length === 0) || top - height > BEHIND_BLOCKS
              ? 'degraded'
              : 'up'
      return { i: n.index, status, height, peers, peerId: n.peerId, validator, api: n.api }
    })
    const t = this.tally
    return {
      t: Date.now(),
      nodes: nodeTicks,
      rollups,
      intents: t.figures(),
      staking,
      validators,
      extra: this.#src.extra?.() ?? {},
    }
  }

  #record(tick: Tick): void {
    const h = this.history
    const trim = <T>(xs: T[]) => {
      if (xs.length > this.#points) xs.splice(0, xs.length - this.#points)
    }
    const at = h.t.length
    // A column first seen now starts with nulls for the ticks before it.
    const column = (m: Record<string | number, Array<number | null>>, key: string | number) => {
      m[key] ??= Array<number | null>(at).fill(null)
      return m[key]
    }
    h.t.push(tick.t)
    trim(h.t)
    for (const n of tick.nodes) {
      const col = column(h.heights as unknown as Record<number, Array<number | null>>, n.i)
      col.push(n.height)
      trim(col)
    }
    // Every known rollup gets a point each tick (null when no node answered), so the columns stay aligned.
    const rows = new Map(tick.rollups.map((r) => [String(r.chainId), r]))
    for (const key of new Set([...Object.keys(h.gas), ...rows.keys()])) {
      const r = rows.get(key)
      const gas = column(h.gas, key)
      gas.push(typeof r?.['gasUsedRatioBps'] === 'number' ? r['gasUsedRatioBps'] / 100 : null)
      trim(gas)
      const fee = column(h.baseFee, key)
      const wei = Number(r?.['baseFeeWei'])
      fee.push(r !== undefined && Number.isFinite(wei) ? wei / 1e9 : null)
      trim(fee)
      const health = column(h.health, key)
      health.push(r === undefined ? null : (HEALTH_LEVEL[r.status] ?? null))
      trim(health)
    }
  }
}
