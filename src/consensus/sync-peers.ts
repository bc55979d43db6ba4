/**
 * Where block sync's peer heights come from, besides gossip: the `status` poll of connected peers, and
 * the rate limit of signature checks of far-future consensus messages (see sync.ts).
 */
import type { Logger } from 'pino'

/**
 * Per-peer rate limit of the signature checks of far-future messages (those beyond `maxHeightsAhead`):
 * one check per peer per `intervalMs`, so spam of made-up heights costs the node little.
 */
export class AheadCheckLimiter {
  readonly #last = new Map<string, number>()
  readonly #intervalMs: number
  readonly #maxPeers: number

  constructor(intervalMs = 1_000, maxPeers = 4_096) {
    this.#intervalMs = intervalMs
    this.#maxPeers = maxPeers
  }

  /** True (and counted) when `peer` may have one more check at `now`. */
  allow(peer: string, now: number): boolean {
    const last = this.#last.get(peer)
    if (last !== undefined && now - last < this.#intervalMs) return false
    if (this.#last.size >= this.#maxPeers) this.#last.clear()
    this.#last.set(peer, now)
    return true
  }
}

/** Collaborators of a {@link StatusPoller}. */
export interface StatusPollerModules {
  /** Connected peers. */
  readonly peers: () => readonly string[]
  /** The peer's `status` answer: its committed height. */
  readonly ask: (peer: string) => Promise<bigint>
  readonly onHeight: (peer: string, height: bigint) => void
  readonly log: Logger
}

/**
 * Asks every connected peer for its `status` every `intervalMs`, and a peer at once when it connects
 * (`connected`): the heights block sync works from.
 */
export class StatusPoller {
  readonly #m: StatusPollerModules
  readonly #intervalMs: number
  readonly #asking = new Set<string>()
  readonly #inflight = new Set<Promise<void>>()
  #timer: NodeJS.Timeout | undefined
  #stopped = false

  constructor(intervalMs: number, modules: StatusPollerModules) {
    this.#intervalMs = intervalMs
    this.#m = modules
  }

  start(): void {
    this.#tick()
  }

  /** A peer connected: ask it now. */
  connected(peer: string): void {
    this.#ask(peer)
  }

  async stop(): Promise<void> {
    this.#stopped = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    await Promise.allSettled([...this.#inflight])
  }

  #tick(): void {
    if (this.#stopped) return
    for (const p of this.#m.peers()) this.#ask(p)
    this.#timer = setTimeout(() => this.#tick(), this.#intervalMs)
  }

  #ask(peer: string): void {
    if (this.#stopped || this.#asking.has(peer)) return
    this.#asking.add(peer)
    const p = this.#m
      .ask(peer)
      .then(
        (h) => {
          if (!this.#stopped) this.#m.onHeight(peer, h)
        },
        (err) => this.#m.log.debug({ err, peer }, 'status request failed'),
      )
      .finally(() => {
        this.#asking.delete(peer)
        this.#inflight.delete(p)
      })
    this.#inflight.add(p)
  }
}
