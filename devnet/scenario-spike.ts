/**
 * The figures of `devnet scenario load-spike`: every intent one node's event stream (`GET /v1/events`,
 * its `intent` events `{id, state, atMs}`) shows, when it was accepted and when filled, and from that
 * the peak accepted rate and the fill latency percentiles before, during and after the spike. The spike's
 * intents come from the devnet's own wallets (`devnet spike`), so the scenario cannot know their ids in
 * advance: the stream is what sees them all.
 */
import { readFile } from 'node:fs/promises'
import { setTimeout as delay } from 'node:timers/promises'
import type { DevnetState } from './devnet.ts'
import type { Invariant } from './scenario-checks.ts'
import { checkEscrowsClosed, escrowCounts, escrowWaitDeadline, readEscrows } from './scenario-escrows.ts'
import type { ExecutedStep } from './scenario-model.ts'
import { followEvents } from './sse.ts'

/** After the last refund time of an open escrow, how long its refund may take to land. */
export const REFUND_MARGIN_MS = 30_000
const STATUS_EVERY_MS = 5_000
/** The short (CI) timeline's longest wait for the last fills and claims after the traffic. */
export const SHORT_ESCROW_WAIT_MS = 60_000

/** One intent as the followed node saw it. */
export interface SeenIntent {
  acceptedAtMs: number
  filledAtMs?: number
}

/** Records intent events of one node's stream. */
export class IntentWatch {
  readonly seen = new Map<string, SeenIntent>()
  #ac = new AbortController()
  /** Set when the stream ended before `stop()` (the followed node went away). */
  endedEarly = false
  #stopped = false

  /** Takes one `intent` event's data (pool transitions; settlement changes are ignored). */
  onEvent(data: unknown): void {
    if (typeof data !== 'object' || data === null) return
    const e = data as { id?: unknown; state?: unknown; atMs?: unknown }
    if (typeof e.id !== 'string' || typeof e.state !== 'string' || typeof e.atMs !== 'number') return
    const cur = this.seen.get(e.id)
    if (cur === undefined) {
      if (e.state === 'pending') this.seen.set(e.id, { acceptedAtMs: e.atMs })
      return
    }
    if (e.state === 'filled' && cur.filledAtMs === undefined) cur.filledAtMs = e.atMs
  }

  /** Follows `api`'s event stream until `stop()`. */
  async follow(api: string): Promise<void> {
    await followEvents(
      api,
      this.#ac.signal,
      (type, data) => {
        if (type === 'intent') this.onEvent(data)
      },
      () => {
        if (!this.#stopped) this.endedEarly = true
      },
    )
  }

  stop(): void {
    this.#stopped = true
    this.#ac.abort()
  }
}

/** p-th percentile (nearest rank) of a list; null when empty. */
export function percentile(xs: readonly number[], p: number): number | null {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!
}

/** Accepted intents and their fill latency over one window. */
export interface WindowFigures {
  accepted: number
  filled: number
  acceptedPerSec: number
  fillP50Ms: number | null
  fillP90Ms: number | null
}

function windowFigures(xs: readonly SeenIntent[], fromMs: number, toMs: number): WindowFigures {
  const inside = xs.filter((x) => x.acceptedAtMs >= fromMs && x.acceptedAtMs < toMs)
  const lat = inside.flatMap((x) => (x.filledAtMs === undefined ? [] : [x.filledAtMs - x.acceptedAtMs]))
  const sec = Math.max(1, toMs - fromMs) / 1000
  return {
    accepted: inside.length,
    filled: lat.length,
    acceptedPerSec: Math.round((inside.length / sec) * 10) / 10,
    fillP50Ms: percentile(lat, 50),
    fillP90Ms: percentile(lat, 90),
  }
}

/** The spike figures: peak accepted rate (per whole second) and the three windows. */
export interface SpikeFigures {
  peakAcceptedPerSec: number
  before: WindowFigures
  during: WindowFigures
  after: WindowFigures
  /** Intents the stream showed accepted and never filled. */
  unfilled: number
}

/**
 * Figures of a run from `startMs` to `endMs` with a spike from `spikeFromMs` to `spikeToMs`; intents
 * count in the window they were accepted in.
 */
export function spikeFigures(
  seen: Iterable<SeenIntent>,
  w: { startMs: number; spikeFromMs: number; spikeToMs: number; endMs: number },
): SpikeFigures {
  const xs = [...seen].filter((x) => x.acceptedAtMs >= w.startMs)
  const perSec = new Map<number, number>()
  for (const x of xs) {
    const s = Math.floor((x.acceptedAtMs - w.startMs) / 1000)
    perSec.set(s, (perSec.get(s) ?? 0) + 1)
  }
  return {
    peakAcceptedPerSec: Math.max(0, ...perSec.values()),
    before: windowFigures(xs, w.startMs, w.spikeFromMs),
    during: windowFigures(xs, w.spikeFromMs, w.spikeToMs),
    after: windowFigures(xs, w.spikeToMs, w.endMs),
    unfilled: xs.filter((x) => x.filledAtMs === undefined).length,
  }
}

/** `peak 12/s accepted; fill p50/p90 before 5.1/6.0 s, during 7.2/9.9 s, after 5.5/6.3 s`. */
export function spikeLine(f: SpikeFigures): string {
  const s = (ms: number | null) => (ms === null ? '-' : (ms / 1000).toFixed(1))
  const w = (x: WindowFigures) => `${s(x.fillP50Ms)}/${s(x.fillP90Ms)} s`
  return (
    `peak ${f.peakAcceptedPerSec}/s accepted; fill p50/p90 before ${w(f.before)}, during ${w(f.during)}, ` +
    `after ${w(f.after)}`
  )
}

/** What the load-spike judgement needs of the run. */
export interface LoadSpikeRun {
  state: DevnetState
  watch: IntentWatch
  steps: readonly ExecutedStep[]
  startMs: number
  trafficEndMs: number
  fillBoundMs: number
  /**
   * At most this long in all (the short timeline: claims must land, refunds are not waited for, as
   * their grace would keep CI for minutes); no cap when absent.
   */
  maxWaitMs?: number
  pollMs: number
  /** Progress lines, and timeline events. */
  out: (line: string) => void
  event: (e: string) => void
}

/**
 * Waits (bounded) until every intent the watched stream saw is filled and every escrow on the settlers
 * is settled or refunded, then judges `escrows-closed` and computes the spike figures. The bound: the
 * fill bound for intents, and for an open escrow its refund time (its fill deadline plus the genesis
 * refund grace) plus REFUND_MARGIN_MS.
 */
export async function judgeLoadSpike(
  r: LoadSpikeRun,
): Promise<{ invariants: Invariant[]; figures: Record<string, unknown> }> {
  const g = JSON.parse(await readFile(r.state.genesis, 'utf8')) as { params?: { refundGraceSec?: number } }
  const grace = g.params?.refundGraceSec ?? 3_600
  const rollups = r.state.rollups.flatMap((x) => {
    const c = r.state.settlement?.contracts[String(x.chainId)]
    return c === undefined ? [] : [{ chainId: x.chainId, rpcUrl: x.rpcUrl, settler: c.settler }]
  })
  // This run's escrows: the orders of the intents node 0's stream saw accepted since the run began (an
  // order id is its intent id). Escrows of earlier runs on the same devnet (a churn that killed their
  // executors, waiting for a refund hours away) are not this scenario's to judge.
  const ours = async () => (await readEscrows(rollups)).filter((o) => r.watch.seen.has(o.id.toLowerCase()))
  const from = Date.now()
  let said = from
  let orders = await ours()
  for (;;) {
    const unfilled = [...r.watch.seen.values()].filter((x) => x.filledAtMs === undefined).length
    const open = escrowCounts(orders).open
    const deadline = Math.min(
      from + (r.maxWaitMs ?? Number.POSITIVE_INFINITY),
      Math.max(from + r.fillBoundMs, escrowWaitDeadline(orders, grace, Date.now(), REFUND_MARGIN_MS, 0)),
    )
    if ((unfilled === 0 && open === 0) || Date.now() > deadline) break
    if (Date.now() - said >= STATUS_EVERY_MS) {
      said = Date.now()
      r.out(
        `waiting: ${unfilled} intents to fill, ${open} escrows open ` +
          `(up to ${((deadline - Date.now()) / 1000).toFixed(0)} s more)`,
      )
    }
    await delay(r.pollMs)
    orders = await ours()
  }
  const waitedMs = Date.now() - from
  const escrows = checkEscrowsClosed(orders, waitedMs)
  r.event(`escrows: ${escrows.detail}`)
  const spike = r.steps.find((s) => s.cmd === 'spike' && s.error === undefined)
  const spikeFromMs = spike?.doneMs ?? r.trafficEndMs
  const spikeToMs = spike === undefined ? r.trafficEndMs : spikeFromMs + Number(spike.args[1]) * 1000
  const figures = spikeFigures(r.watch.seen.values(), {
    startMs: r.startMs,
    spikeFromMs,
    spikeToMs,
    endMs: r.trafficEndMs,
  })
  return {
    invariants: [escrows],
    figures: {
      spike: {
        rate: Number(spike?.args[0] ?? 0),
        seconds: Number(spike?.args[1] ?? 0),
        ...figures,
        streamEndedEarly: r.watch.endedEarly,
      },
      escrows: { ...escrowCounts(orders), waitedMs },
    },
  }
}
