/**
 * Score-based bans. Gossipsub's graylist only stops processing a peer's RPCs: the peer stays connected,
 * keeps its streams and can keep costing us reads, decodes and request/response answers. The ban book
 * watches the score of every connected peer; one that stays below the graylist threshold for `graceMs`
 * is banned until an expiry (the first offence `baseMs`, each repeat doubling, capped at `maxMs`),
 * hung up on, and refused by the gater (dials and inbound connections) until the ban expires. Bans are
 * persisted in the `bans` sublevel next to the peer book, so a restart does not let a peer back in.
 *
 * Bans are kept apart from the partition deny list (gater.ts): healing a partition never lifts a ban.
 */
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'
import type { Store } from '../state/store.ts'

/** One persisted ban (also kept after expiry, so a repeat offence doubles). */
export interface BanRecord {
  peerId: string
  /** Banned until this time, ms since epoch; past it the peer may connect again. */
  untilMs: number
  /** Bans so far, this one included. */
  offences: number
  /** When this ban started, ms since epoch. */
  sinceMs: number
  reason: string
}

export interface BanOptions {
  /** How often connected peers' scores are looked at, ms. */
  checkMs: number
  /** How long a score must stay below the graylist threshold before a ban, ms. */
  graceMs: number
  /** First ban's length, ms; each repeat offence doubles it. */
  baseMs: number
  /** Longest ban, ms. */
  maxMs: number
  /** Ban records kept (an expired one is forgotten after this many newer ones). */
  maxRecords: number
}

/**
 * 1 s under the graylist, checked every 250 ms (a flood is graylisted within 0.3 to 1.3 s, so it is
 * disconnected within about 2.5 s of its start; with 2 s checked every second, the attack bench measured
 * 4.1 to 7.5 s on a loaded machine, over the 5 s); 10 min, doubling, at most a day. Validators of
 * the set are never banned (isProtected), so the short grace cannot cost the chain a voter.
 */
export const DEFAULT_BAN_OPTIONS: BanOptions = {
  checkMs: 250,
  graceMs: 1_000,
  baseMs: 10 * 60_000,
  maxMs: 24 * 60 * 60_000,
  maxRecords: 10_000,
}

/** Length of ban number `offences` (1 = first): doubling from `base`, capped at `max`. */
export function banMs(offences: number, base: number, max: number): number {
  return Math.min(max, base * 2 ** Math.min(Math.max(0, offences - 1), 30))
}

export interface BanModules {
  libp2p: Libp2p
  store: Store
  log: Logger
  /** The peer's score as gossipsub sees it (application penalties included). */
  score: (peerId: string) => number
  /** Scores below this are graylisted. */
  graylistThreshold: number
  /**
   * Peers that are never banned (the node passes the validators of its current set): their score still
   * graylists them while it is low, and it decays, but no ban shuts them out for minutes. A validator's
   * misbehaviour is the stake's to answer for (evidence, slashing), and a ban of an honest one, from a
   * score that went wrong (the crash soak saw a restarted node ban two honest validators and so stall
   * the chain), costs the network its liveness. A ban kept from before it was protected is lifted.
   */
  isProtected?: (peerId: string) => boolean
  /** Called when the set of banned peers changes (the gater and metrics follow it). */
  onChange: (banned: string[], added?: BanRecord) => void
  now?: () => number
}

export class BanBook {
  readonly #opts: BanOptions
  readonly #m: BanModules
  readonly #now: () => number
  readonly #records = new Map<string, BanRecord>()
  /** Since when each connected peer's score has been below the graylist threshold. */
  readonly #belowSince = new Map<string, number>()
  #timer: NodeJS.Timeout | undefined
  readonly #writes = new Set<Promise<unknown>>()
  /** Size of the banned set last reported through onChange. */
  #reported = 0

  constructor(opts: Partial<BanOptions>, modules: BanModules) {
    this.#opts = { ...DEFAULT_BAN_OPTIONS, ...opts }
    this.#m = modules
    this.#now = modules.now ?? Date.now
  }

  /** Loads the persisted bans (so a restart keeps them) and starts the score watch. */
  async start(): Promise<void> {
    const stored = await this.#m.store.range<BanRecord>('bans', {
      gte: '',
      lt: '\uffff',
      limit: this.#opts.maxRecords,
    })
    // Oldest first: the map's order is the records' age (pruning drops the oldest expired ones).
    for (const [, rec] of stored.sort(([, a], [, b]) => a.sinceMs - b.sinceMs))
      this.#records.set(rec.peerId, rec)
    this.#report()
    // libp2p listens before the book is read: a banned peer that got in meanwhile is hung up on.
    for (const peer of this.#m.libp2p.getPeers()) if (this.isBanned(peer)) this.#hangUp(peer)
    const active = this.#reported
    if (active > 0) this.#m.log.info({ banned: active }, 'bans restored')
    this.#timer = setInterval(() => this.check(), this.#opts.checkMs)
    this.#timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    await Promise.allSettled([...this.#writes])
  }

  /** Peers banned now. */
  banned(): string[] {
    const now = this.#now()
    return [...this.#records.values()].filter((r) => r.untilMs > now).map((r) => r.peerId)
  }

  isBanned(peerId: PeerId | string): boolean {
    const r = this.#records.get(peerId.toString())
    return r !== undefined && r.untilMs > this.#now()
  }

  /** Active bans, soonest expiry first (for the API). */
  list(): BanRecord[] {
    const now = this.#now()
    return [...this.#records.values()].filter((r) => r.untilMs > now).sort((a, b) => a.untilMs - b.untilMs)
  }

  /**
   * One look at the connected peers: bans those below the graylist threshold for the grace, and lifts
   * expired bans (so the gater lets the peer in again). Returns the peers banned by this look.
   */
  check(): string[] {
    const now = this.#now()
    const connected = new Set(this.#m.libp2p.getPeers().map(String))
    for (const id of [...this.#belowSince.keys()]) if (!connected.has(id)) this.#belowSince.delete(id)
    const bannedNow: string[] = []
    const protect = this.#m.isProtected
    let lifted = false
    if (protect !== undefined)
      for (const r of this.list())
        if (protect(r.peerId)) {
          this.#m.log.warn(
            { peer: r.peerId },
            'ban of a validator lifted: validators are graylisted, not banned',
          )
          const rec = { ...r, untilMs: now }
          this.#records.set(r.peerId, rec)
          this.#track(this.#m.store.put('bans', r.peerId, rec).catch(() => {}))
          lifted = true
        }
    if (lifted) this.#report()
    for (const id of connected) {
      if (protect?.(id) === true || this.#m.score(id) >= this.#m.graylistThreshold) {
        this.#belowSince.delete(id)
        continue
      }
      const since = this.#belowSince.get(id)
      if (since === undefined) {
        this.#belowSince.set(id, now)
        continue
      }
      if (now - since < this.#opts.graceMs) continue
      this.#belowSince.delete(id)
      this.ban(id, `score below ${this.#m.graylistThreshold} for ${now - since} ms`)
      bannedNow.push(id)
    }
    // Expiries: tell the gater once the active set shrank.
    if (bannedNow.length === 0 && this.banned().length !== this.#reported) this.#report()
    return bannedNow
  }

  /** Bans a peer now (repeat offences double the length), persists it and hangs up on the peer. */
  ban(peerId: string, reason: string): BanRecord {
    const now = this.#now()
    const prev = this.#records.get(peerId)
    const offences = (prev?.offences ?? 0) + 1
    const rec: BanRecord = {
      peerId,
      untilMs: now + banMs(offences, this.#opts.baseMs, this.#opts.maxMs),
      offences,
      sinceMs: now,
      reason,
    }
    this.#records.delete(peerId) // re-insert: the map's order is the records' age
    this.#records.set(peerId, rec)
    this.#prune()
    this.#track(
      this.#m.store.put('bans', peerId, rec).catch((err: Error) =>
        // A lost write costs a ban that does not survive a restart, not correctness: warn.
        this.#m.log.warn({ err: err.message, peer: peerId }, 'ban write failed'),
      ),
    )
    this.#report(rec)
    this.#m.log.warn(
      {
        peer: peerId,
        offences,
        untilMs: rec.untilMs,
        minutes: Math.round((rec.untilMs - now) / 60_000),
        reason,
      },
      'peer banned',
    )
    const peer = this.#m.libp2p.getPeers().find((p) => p.toString() === peerId)
    if (peer !== undefined) this.#hangUp(peer)
    return rec
  }

  #hangUp(peer: PeerId): void {
    this.#track(
      this.#m.libp2p
        .hangUp(peer)
        .catch((err: Error) =>
          this.#m.log.debug({ err: err.message, peer: peer.toString() }, 'hang up failed'),
        ),
    )
  }

  #report(added?: BanRecord): void {
    const banned = this.banned()
    this.#reported = banned.length
    this.#m.onChange(banned, added)
  }

  #prune(): void {
    const now = this.#now()
    for (const [id, r] of this.#records) {
      if (this.#records.size <= this.#opts.maxRecords) break
      if (r.untilMs > now) continue
      this.#records.delete(id)
      this.#track(this.#m.store.del('bans', id).catch(() => {}))
    }
  }

  #track(p: Promise<unknown>): void {
    this.#writes.add(p)
    p.finally(() => this.#writes.delete(p)).catch(() => {})
  }
}
