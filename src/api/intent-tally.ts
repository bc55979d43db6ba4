/**
 * What the devnet's status line and the dashboards (devnet and `node --dashboard`) say of intents: counts by state and the fill latency, from one node's
 * `/v1/events` stream (its `intent` events: pool transitions `{id, state, atMs}` and settlement changes
 * `{id, settlement: {state}}`). Pure: fed events, asked for figures. Bounded: the oldest intents are
 * forgotten past MAX_TRACKED.
 */

/** Intents followed at once (the oldest are forgotten beyond). */
export const MAX_TRACKED = 100_000
/** Fill latencies kept for the percentile (the most recent). */
export const MAX_LATENCIES = 1_000

export interface TallyCounts {
  /** Accepted, not yet assigned (pending, or back to pending after a re-route). */
  pending: number
  assigned: number
  filled: number
  /** Filled and repaid on its origin (settlement state `settled`). */
  settled: number
  refunded: number
  expired: number
}

/** The q-quantile (0..1, nearest rank below) of xs; undefined when empty. */
function quantile(xs: readonly number[], q: number): number | undefined {
  if (xs.length === 0) return undefined
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor((s.length - 1) * q)]
}

function pushBounded(xs: number[], x: number): void {
  xs.push(x)
  if (xs.length > MAX_LATENCIES) xs.shift()
}

export class IntentTally {
  /** Pool state by id, insertion order = first seen. */
  readonly #state = new Map<string, string>()
  readonly #settled = new Set<string>()
  readonly #acceptedAt = new Map<string, number>()
  readonly #latencies: number[] = []
  readonly #settleLatencies: number[] = []

  /**
   * Takes one `intent` event's data; anything else is ignored. `nowMs` dates a settlement change (its
   * event carries no time of its own; the node runs on this machine, so its clock is ours).
   */
  onEvent(data: unknown, nowMs: number = Date.now()): void {
    if (typeof data !== 'object' || data === null) return
    const e = data as { id?: unknown; state?: unknown; atMs?: unknown; settlement?: { state?: unknown } }
    if (typeof e.id !== 'string') return
    if (e.settlement !== undefined) {
      if (e.settlement?.state === 'settled' && !this.#settled.has(e.id)) {
        this.#settled.add(e.id)
        const from = this.#acceptedAt.get(e.id)
        if (from !== undefined) pushBounded(this.#settleLatencies, nowMs - from)
      }
      return
    }
    if (typeof e.state !== 'string') return
    const before = this.#state.get(e.id)
    this.#state.set(e.id, e.state)
    const at = typeof e.atMs === 'number' ? e.atMs : undefined
    if (e.state === 'pending' && before === undefined && at !== undefined) this.#acceptedAt.set(e.id, at)
    if (e.state === 'filled' && before !== 'filled' && at !== undefined) {
      const from = this.#acceptedAt.get(e.id)
      if (from !== undefined) pushBounded(this.#latencies, at - from)
    }
    while (this.#state.size > MAX_TRACKED) {
      const oldest = this.#state.keys().next().value as string
      this.#state.delete(oldest)
      this.#settled.delete(oldest)
      this.#acceptedAt.delete(oldest)
    }
  }

  counts(): TallyCounts {
    const c: TallyCounts = { pending: 0, assigned: 0, filled: 0, settled: 0, refunded: 0, expired: 0 }
    for (const [id, s] of this.#state) {
      if (s === 'filled' && this.#settled.has(id)) c.settled++
      else if (s in c) c[s as keyof TallyCounts]++
    }
    return c
  }

  /** Median accepted -> filled of the most recent fills, milliseconds (undefined before any). */
  fillP50Ms(): number | undefined {
    return quantile(this.#latencies, 0.5)
  }

  /** The q-quantile (0..1) of accepted -> filled (`fill`) or accepted -> settled (`settle`), ms. */
  latencyMs(kind: 'fill' | 'settle', q: number): number | undefined {
    return quantile(kind === 'fill' ? this.#latencies : this.#settleLatencies, q)
  }

  /** The counts and latency percentiles as the dashboard's `tick.intents` carries them (null: none yet). */
  figures(): Record<
    keyof TallyCounts | 'fillP50Ms' | 'fillP90Ms' | 'settleP50Ms' | 'settleP90Ms',
    number | null
  > {
    return {
      ...this.counts(),
      fillP50Ms: this.latencyMs('fill', 0.5) ?? null,
      fillP90Ms: this.latencyMs('fill', 0.9) ?? null,
      settleP50Ms: this.latencyMs('settle', 0.5) ?? null,
      settleP90Ms: this.latencyMs('settle', 0.9) ?? null,
    }
  }

  /** `pending 3, assigned 2, filled 10, settled 8, refunded 0, expired 0, fill p50 1.2 s`. */
  summary(): string {
    const c = this.counts()
    const p50 = this.fillP50Ms()
    return (
      `pending ${c.pending}, assigned ${c.assigned}, filled ${c.filled}, settled ${c.settled}, ` +
      `refunded ${c.refunded}, expired ${c.expired}, fill p50 ${p50 === undefined ? '-' : `${(p50 / 1000).toFixed(1)} s`}`
    )
  }
}
