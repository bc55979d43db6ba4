/**
 * Gossip stream watchdog. Gossipsub keeps one outbound stream per peer and opens it only when the
 * registrar reports a connection or the peer opens an inbound stream. When that stream closes while the
 * peer stays connected (a duplicate connection from a simultaneous dial is pruned and takes the stream
 * with it, or the stream is reset), gossipsub drops it and never opens another: the peer looks connected
 * and subscribed, but nothing this node publishes or relays reaches it, until the connection ends. At a
 * network's start, when peers learned through peer exchange dial each other at the same moment, a
 * validator can be left like this for minutes and a round cannot gather its votes.
 *
 * The watch notices a gossipsub peer without an outbound stream that stays so for `graceMs` and hangs
 * up on it (the peer manager dials again; the new connection gets new streams). It reads gossipsub's
 * `streamsOutbound` and `peers`, which are not public API: `gossipInternals` returns undefined when they
 * are missing (a gossipsub upgrade), and test/gossip-watch.test.ts fails then, so the watch never
 * silently stops.
 */
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'

/** What the watch reads of gossipsub. */
export interface GossipInternals {
  /** Peers gossipsub knows (they speak the protocol), by peer id string. */
  readonly peers: ReadonlyMap<string, PeerId>
  /** Peers gossipsub can send to. */
  readonly streamsOutbound: ReadonlyMap<string, unknown>
}

/** Gossipsub's peer and outbound stream maps, or undefined when this gossipsub does not have them. */
export function gossipInternals(pubsub: unknown): GossipInternals | undefined {
  const g = pubsub as { peers?: unknown; streamsOutbound?: unknown }
  return g.peers instanceof Map && g.streamsOutbound instanceof Map
    ? (g as unknown as GossipInternals)
    : undefined
}

export interface GossipWatchOptions {
  /** How often the watch looks, ms. */
  intervalMs: number
  /** How long a peer may stay without an outbound stream before the watch hangs up, ms. */
  graceMs: number
}

export const DEFAULT_GOSSIP_WATCH_OPTIONS: GossipWatchOptions = { intervalMs: 2_000, graceMs: 6_000 }

export class GossipWatch {
  readonly #opts: GossipWatchOptions
  readonly #libp2p: Libp2p
  readonly #log: Logger
  readonly #onRepair: () => void
  /** Since when each peer has had no outbound stream. */
  readonly #missingSince = new Map<string, number>()
  #timer: NodeJS.Timeout | undefined

  constructor(opts: GossipWatchOptions, m: { libp2p: Libp2p; log: Logger; onRepair?: () => void }) {
    this.#opts = opts
    this.#libp2p = m.libp2p
    this.#log = m.log
    this.#onRepair = m.onRepair ?? (() => {})
  }

  start(): void {
    const g = gossipInternals(this.#libp2p.services['pubsub'])
    if (g === undefined) {
      this.#log.error('gossipsub has no peers/streamsOutbound maps: the gossip stream watch is off')
      return
    }
    this.#timer = setInterval(() => this.check(g, Date.now()), this.#opts.intervalMs)
    this.#timer.unref()
  }

  stop(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }

  /** One look: hangs up on peers past their grace; returns their ids. */
  check(g: GossipInternals, nowMs: number): string[] {
    const connected = new Set(this.#libp2p.getPeers().map((p) => p.toString()))
    const hungUp: string[] = []
    for (const id of [...this.#missingSince.keys()]) {
      if (!connected.has(id) || g.streamsOutbound.has(id)) this.#missingSince.delete(id)
    }
    for (const [id, peer] of g.peers) {
      if (!connected.has(id) || g.streamsOutbound.has(id)) continue
      const since = this.#missingSince.get(id)
      if (since === undefined) {
        this.#missingSince.set(id, nowMs)
        continue
      }
      if (nowMs - since < this.#opts.graceMs) continue
      this.#missingSince.delete(id)
      hungUp.push(id)
      this.#onRepair()
      this.#log.warn(
        { peer: id, ms: nowMs - since },
        'connected gossip peer without an outbound stream: reconnecting',
      )
      this.#libp2p.hangUp(peer).catch((err) => this.#log.warn({ err, peer: id }, 'hang up failed'))
    }
    return hungUp
  }
}
