import type { IdentifyResult, Libp2p, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import type { Store } from '../state/store.ts'
import type { DenyListGater } from './gater.ts'
import type { PeerAddrs } from './protocols.ts'

/** One entry of the persisted peer book. */
export interface PeerRecord {
  peerId: string
  addrs: string[]
  /** Last time a connection was established, ms since epoch (0 = never). */
  lastConnectedMs: number
  /** Consecutive failed dials since the last success. */
  failures: number
  /** Earliest time of the next dial attempt, ms since epoch. */
  nextDialAtMs: number
}

export interface PeerManagerOptions {
  /** Connections the manager tries to keep. */
  targetPeers: number
  heartbeatMs: number
  backoffBaseMs: number
  backoffMaxMs: number
  maxParallelDials: number
  /** Known entry points, multiaddrs ending in /p2p/<peerId>. */
  bootstrap: string[]
  /** Peer book entries beyond this are pruned (longest unseen first). */
  maxBookSize: number
  /** While below target with nobody to dial, ask a random peer for its peers this often. */
  exchangeIntervalMs: number
}

export const DEFAULT_PEER_MANAGER_OPTIONS: PeerManagerOptions = {
  targetPeers: 8,
  heartbeatMs: 1_000,
  backoffBaseMs: 500,
  backoffMaxMs: 30_000,
  maxParallelDials: 4,
  bootstrap: [],
  maxBookSize: 1_000,
  exchangeIntervalMs: 3_000,
}

export interface PeerManagerModules {
  libp2p: Libp2p
  store: Store
  gater: DenyListGater
  log: Logger
  /** Asks a peer for the peers it knows (peer exchange over the `status` protocol). */
  exchange: (peer: PeerId) => Promise<PeerAddrs[]>
  now?: () => number
  random?: () => number
}

/** Delay before dial attempt number `failures + 1`: exponential, capped, with ±50 % jitter. */
export function backoffMs(failures: number, base: number, max: number, random: () => number): number {
  const exp = Math.min(max, base * 2 ** Math.min(failures, 30))
  return Math.round(exp * (0.5 + random()))
}

function peerIdOfAddr(addr: string): string | undefined {
  return /\/p2p\/([^/]+)$/.exec(addr)?.[1]
}

/**
 * Keeps the node connected: a heartbeat dials known peers (peer book in LevelDB, plus
 * bootstrap addresses) while connections are below target, with exponential backoff and
 * jitter per peer; identified peers and peers learned by exchange are written to the book,
 * so a restarted node finds the network even when all its bootstrap peers are gone.
 */
export class PeerManager {
  readonly #opts: PeerManagerOptions
  readonly #m: PeerManagerModules
  readonly #book = new Map<string, PeerRecord>()
  readonly #dialing = new Set<string>()
  readonly #now: () => number
  readonly #random: () => number
  #timer: NodeJS.Timeout | undefined
  #running = false
  #lastExchangeMs = 0
  #inFlight = new Set<Promise<unknown>>()
  readonly #onIdentify = (evt: CustomEvent<IdentifyResult>) => this.#identified(evt.detail)
  readonly #onConnect = (evt: CustomEvent<PeerId>) => this.#connected(evt.detail)

  constructor(options: Partial<PeerManagerOptions>, modules: PeerManagerModules) {
    this.#opts = { ...DEFAULT_PEER_MANAGER_OPTIONS, ...options }
    this.#m = modules
    this.#now = modules.now ?? Date.now
    this.#random = modules.random ?? Math.random
  }

  async start(): Promise<void> {
    for (const [, rec] of await this.#m.store.range<PeerRecord>('peers', {
      gte: '',
      lt: '\uffff',
      limit: this.#opts.maxBookSize,
    })) {
      // A fresh start retries everyone promptly: our own downtime is not the peer's fault.
      this.#book.set(rec.peerId, { ...rec, failures: 0, nextDialAtMs: 0 })
    }
    for (const addr of this.#opts.bootstrap) {
      const id = peerIdOfAddr(addr)
      if (id === undefined || id === this.#self()) continue
      const rec = this.#book.get(id)
      if (rec === undefined) {
        this.#book.set(id, { peerId: id, addrs: [addr], lastConnectedMs: 0, failures: 0, nextDialAtMs: 0 })
      } else if (!rec.addrs.includes(addr)) rec.addrs.push(addr)
    }
    this.#m.libp2p.addEventListener('peer:identify', this.#onIdentify)
    this.#m.libp2p.addEventListener('peer:connect', this.#onConnect)
    this.#running = true
    this.#log().info(
      { known: this.#book.size, bootstrap: this.#opts.bootstrap.length },
      'peer manager started',
    )
    this.#schedule(0)
  }

  async stop(): Promise<void> {
    this.#running = false
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#m.libp2p.removeEventListener('peer:identify', this.#onIdentify)
    this.#m.libp2p.removeEventListener('peer:connect', this.#onConnect)
    await Promise.allSettled([...this.#inFlight])
  }

  /** Known peers (for the API and peer exchange). */
  known(): PeerRecord[] {
    return [...this.#book.values()]
  }

  /** Listen addresses the peer book holds for a peer (empty when unknown). */
  addrsOf(peerId: string): string[] {
    return this.#book.get(peerId)?.addrs ?? []
  }

  /** Forgets backoff for these peers so they are dialled at the next heartbeat (after a heal). */
  resetBackoff(peerIds: Iterable<string>): void {
    for (const id of peerIds) {
      const rec = this.#book.get(id)
      if (rec !== undefined) {
        rec.failures = 0
        rec.nextDialAtMs = 0
      }
    }
    if (this.#running) this.#schedule(0)
  }

  #self(): string {
    return this.#m.libp2p.peerId.toString()
  }

  #log(): Logger {
    return this.#m.log
  }

  #schedule(delay: number): void {
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => this.#heartbeat(), delay)
  }

  #track<T>(p: Promise<T>): void {
    this.#inFlight.add(p)
    p.finally(() => this.#inFlight.delete(p)).catch(() => {})
  }

  #heartbeat(): void {
    if (!this.#running) return
    try {
      const connected = new Set(this.#m.libp2p.getPeers().map((p) => p.toString()))
      const missing = this.#opts.targetPeers - connected.size
      if (missing > 0) {
        const now = this.#now()
        const candidates = [...this.#book.values()]
          .filter(
            (r) =>
              !connected.has(r.peerId) &&
              !this.#dialing.has(r.peerId) &&
              r.nextDialAtMs <= now &&
              r.peerId !== this.#self() &&
              !this.#m.gater.isDenied(r.peerId),
          )
          // Most recently connected first: they are the likeliest to be up.
          .sort((a, b) => b.lastConnectedMs - a.lastConnectedMs || a.failures - b.failures)
        const slots = Math.min(missing, this.#opts.maxParallelDials - this.#dialing.size)
        for (const rec of candidates.slice(0, Math.max(0, slots))) this.#track(this.#dial(rec))
        // Nobody left to dial: ask a connected peer whom it knows (peers that joined after our
        // first exchange are learned this way).
        if (
          candidates.length === 0 &&
          connected.size > 0 &&
          now - this.#lastExchangeMs >= this.#opts.exchangeIntervalMs
        ) {
          this.#lastExchangeMs = now
          const peers = this.#m.libp2p.getPeers()
          const peer = peers[Math.floor(this.#random() * peers.length)]
          if (peer !== undefined) this.#track(this.#exchangeWith(peer))
        }
      }
    } finally {
      this.#schedule(this.#opts.heartbeatMs)
    }
  }

  async #dial(rec: PeerRecord): Promise<void> {
    this.#dialing.add(rec.peerId)
    try {
      const addrs = rec.addrs.map((a) =>
        multiaddr(peerIdOfAddr(a) === undefined ? `${a}/p2p/${rec.peerId}` : a),
      )
      await this.#m.libp2p.dial(addrs.length > 0 ? addrs : peerIdFromString(rec.peerId), {
        signal: AbortSignal.timeout(5_000),
      })
      // Success is recorded by the peer:connect handler.
    } catch (err) {
      rec.failures += 1
      rec.nextDialAtMs =
        this.#now() + backoffMs(rec.failures, this.#opts.backoffBaseMs, this.#opts.backoffMaxMs, this.#random)
      this.#log().debug(
        {
          peer: rec.peerId,
          failures: rec.failures,
          retryInMs: rec.nextDialAtMs - this.#now(),
          err: (err as Error).message,
        },
        'dial failed',
      )
      await this.#save(rec)
    } finally {
      this.#dialing.delete(rec.peerId)
    }
  }

  #connected(peer: PeerId): void {
    const id = peer.toString()
    const rec = this.#book.get(id) ?? {
      peerId: id,
      addrs: [],
      lastConnectedMs: 0,
      failures: 0,
      nextDialAtMs: 0,
    }
    rec.failures = 0
    rec.nextDialAtMs = 0
    rec.lastConnectedMs = this.#now()
    this.#book.set(id, rec)
    this.#track(this.#save(rec))
    this.#track(this.#exchangeWith(peer))
  }

  #identified(result: IdentifyResult): void {
    const id = result.peerId.toString()
    const addrs = result.listenAddrs.map((a) => a.toString()).filter((a) => a.includes('/tcp/'))
    if (addrs.length === 0) return
    const rec = this.#book.get(id) ?? {
      peerId: id,
      addrs: [],
      lastConnectedMs: this.#now(),
      failures: 0,
      nextDialAtMs: 0,
    }
    rec.addrs = addrs.slice(0, 8)
    this.#book.set(id, rec)
    this.#track(this.#save(rec))
  }

  async #exchangeWith(peer: PeerId): Promise<void> {
    let learned: PeerAddrs[]
    try {
      learned = await this.#m.exchange(peer)
    } catch (err) {
      this.#log().debug({ peer: peer.toString(), err: (err as Error).message }, 'peer exchange failed')
      return
    }
    let added = 0
    for (const p of learned) {
      if (p.peerId === this.#self() || this.#book.has(p.peerId) || p.addrs.length === 0) continue
      const rec: PeerRecord = {
        peerId: p.peerId,
        addrs: p.addrs.slice(0, 8),
        lastConnectedMs: 0,
        failures: 0,
        nextDialAtMs: 0,
      }
      this.#book.set(p.peerId, rec)
      await this.#save(rec)
      added++
    }
    if (added > 0) {
      this.#log().debug({ from: peer.toString(), added }, 'learned peers')
      if (this.#running) this.#schedule(0)
    }
  }

  async #save(rec: PeerRecord): Promise<void> {
    if (!this.#running) return
    if (this.#book.size > this.#opts.maxBookSize) this.#prune()
    try {
      await this.#m.store.put('peers', rec.peerId, rec)
    } catch (err) {
      // The peer book is a cache: losing one update costs a slower restart, not correctness.
      this.#log().warn({ err: (err as Error).message }, 'peer book write failed')
    }
  }

  #prune(): void {
    const stale = [...this.#book.values()].sort((a, b) => a.lastConnectedMs - b.lastConnectedMs)
    for (const rec of stale.slice(0, this.#book.size - this.#opts.maxBookSize)) {
      this.#book.delete(rec.peerId)
      this.#track(this.#m.store.del('peers', rec.peerId).catch(() => {}))
    }
  }
}
