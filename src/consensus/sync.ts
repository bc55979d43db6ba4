/**
 * Block sync: catch-up from any distance (CometBFT's blocksync reactor is the model; this is our own
 * shape). A node learns how far the network is from its peers' `status` answers and from validly signed
 * consensus messages of later heights, then fetches blocks with their certificates by range, several
 * requests in flight spread over the peers that are ahead, and applies them strictly in height order
 * (the driver's `applySynced` verifies the certificate and the header). Peers can lie about their height:
 * a liar costs one request (an empty answer lowers what we believe of it), and a peer whose blocks fail
 * verification is left out of the sync peer set for `banMs`.
 *
 * Two layers: {@link SyncScheduler} decides (which ranges to ask of whom, what to apply next) with no I/O
 * and no clock of its own, so the simulated network (test/sim) drives the very same logic on virtual time;
 * {@link BlockSync} runs it with real requests and timers for the driver.
 */
import type { Logger } from 'pino'

/** Tuning of block sync. */
export interface SyncOptions {
  /** Blocks asked for in one range request. */
  readonly batchBlocks: number
  /** Range requests in flight at once, over all peers. */
  readonly maxInflight: number
  /** Range requests in flight at once to one peer. */
  readonly maxInflightPerPeer: number
  /** Blocks held received but not yet applied (bounds memory: the window ahead of the head). */
  readonly maxReadyBlocks: number
  /** A request unanswered this long is given up (its range is asked again, of another peer if any). */
  readonly requestTimeoutMs: number
  /** A peer whose blocks failed verification is not asked again for this long. */
  readonly banMs: number
  /**
   * A peer whose request failed (error, timeout) rests this long, doubled for each failure in a row
   * (up to banMs); an answer resets it.
   */
  readonly restMs: number
  /**
   * Exactly one height behind may be our own decision about to happen: wait this long before syncing.
   * Two or more behind: sync at once.
   */
  readonly syncDelayMs: number
}

export const DEFAULT_SYNC_OPTIONS: SyncOptions = {
  batchBlocks: 64,
  maxInflight: 8,
  // blocks-by-range serves 2 streams per connection (its maxInboundStreams): a third is refused.
  maxInflightPerPeer: 2,
  maxReadyBlocks: 1024,
  requestTimeoutMs: 10_000,
  banMs: 60_000,
  restMs: 1_000,
  syncDelayMs: 2_000,
}

/** A range request the scheduler wants sent. */
export interface SyncRequest {
  readonly id: number
  readonly peer: string
  readonly from: bigint
  readonly count: number
}

/** What applying a synced block gave (the driver's `ApplySyncedResult` has this shape). */
export type SyncApplyResult =
  | { readonly status: 'applied' }
  | { readonly status: 'known' }
  | { readonly status: 'rejected'; readonly code: string; readonly message: string }

interface PeerState {
  /** Highest committed height the peer claimed (status) or showed (a signed message of height + 1). */
  height: bigint
  /** Not asked before this time (failed verification, failed request). */
  restUntil: number
  inflight: number
  /** Requests failed in a row: the peer rests longer and is asked after the others. */
  failures: number
}

interface Pending {
  readonly peer: string
  readonly from: bigint
  readonly count: number
  readonly sentAt: number
}

/**
 * The decisions of block sync, with no I/O: feed it peer heights, answers and failures with the time,
 * ask it for the requests to send (`poll`) and for the next block to apply (`next`).
 */
export class SyncScheduler<B> {
  readonly options: SyncOptions
  readonly #heightOf: (b: B) => bigint
  readonly #peers = new Map<string, PeerState>()
  readonly #pending = new Map<number, Pending>()
  readonly #ready = new Map<bigint, { block: B; peer: string }>()
  #nextId = 1
  /** The height handed out by next() and being applied: not asked again meanwhile. */
  #taken: bigint | undefined
  /** Since when we have been exactly one height behind (at which local height). */
  #behind: { local: bigint; since: number } | undefined

  constructor(options: Partial<SyncOptions>, heightOf: (b: B) => bigint) {
    this.options = { ...DEFAULT_SYNC_OPTIONS, ...options }
    this.#heightOf = heightOf
  }

  /** A peer has committed at least `height`. */
  notePeerHeight(peer: string, height: bigint): void {
    const p = this.#peers.get(peer)
    if (p === undefined) this.#peers.set(peer, { height, restUntil: 0, inflight: 0, failures: 0 })
    else if (height > p.height) p.height = height
  }

  /** The highest height `peer` is known to have committed, or undefined when it never said. */
  peerHeight(peer: string): bigint | undefined {
    return this.#peers.get(peer)?.height
  }

  /** The peer left: its requests are given up (answers arriving later are ignored). */
  removePeer(peer: string): void {
    this.#peers.delete(peer)
    for (const [id, p] of this.#pending) if (p.peer === peer) this.#pending.delete(id)
  }

  /** Highest height claimed by a peer we would ask. */
  networkHeight(now: number): bigint {
    let h = 0n
    for (const p of this.#peers.values()) if (p.restUntil <= now && p.height > h) h = p.height
    return h
  }

  /** Fetching or holding blocks, or the network known to be two or more heights past `local`. */
  syncing(local: bigint, now: number): boolean {
    return this.#pending.size > 0 || this.#ready.size > 0 || this.networkHeight(now) >= local + 2n
  }

  /** Requests in flight. */
  get inflight(): number {
    return this.#pending.size
  }

  /** Blocks received and not yet applied. */
  get readyCount(): number {
    return this.#ready.size
  }

  /** True when the block at `local + 1` is ready. */
  hasNext(local: bigint): boolean {
    return this.#ready.has(local + 1n)
  }

  /** Gives up timed-out requests and returns the range requests to send now, given the head `local`. */
  poll(local: bigint, now: number): SyncRequest[] {
    const o = this.options
    for (const [id, p] of this.#pending) {
      if (now - p.sentAt >= o.requestTimeoutMs) this.failed(id, now)
    }
    for (const h of this.#ready.keys()) if (h <= local) this.#ready.delete(h)
    const target = this.networkHeight(now)
    if (target <= local) {
      this.#behind = undefined
      return []
    }
    if (target === local + 1n) {
      if (this.#behind?.local !== local) this.#behind = { local, since: now }
      if (now - this.#behind.since < o.syncDelayMs) return []
    }
    const end = target < local + BigInt(o.maxReadyBlocks) ? target : local + BigInt(o.maxReadyBlocks)
    const covered = (h: bigint) => {
      if (this.#ready.has(h)) return true
      for (const p of this.#pending.values()) if (h >= p.from && h < p.from + BigInt(p.count)) return true
      return false
    }
    const out: SyncRequest[] = []
    if (this.#taken !== undefined && this.#taken <= local) this.#taken = undefined
    const head = (this.#taken ?? local) + 1n
    let h = head
    while (h <= end && this.#pending.size < o.maxInflight) {
      if (covered(h)) {
        h++
        continue
      }
      let len = 1
      while (len < o.batchBlocks && h + BigInt(len) <= end && !covered(h + BigInt(len))) len++
      // Near the tip the network adds a height at a time: a short run waits for the requests in flight
      // (one request per new height otherwise), unless the head needs it now.
      if (len < o.batchBlocks && h !== head && this.#pending.size > 0) break
      const peer = this.#pick(h, now)
      if (peer === undefined) break
      const state = this.#peers.get(peer)!
      const have = state.height - h + 1n
      const count = BigInt(len) < have ? len : Number(have)
      const id = this.#nextId++
      this.#pending.set(id, { peer, from: h, count, sentAt: now })
      state.inflight++
      out.push({ id, peer, from: h, count })
      h += BigInt(count)
    }
    return out
  }

  /**
   * The answer to request `id`: blocks from its `from`, in order. 'bad' when it is not (the peer rests
   * `banMs`); an empty answer means the peer lacks `from`, whatever it claimed. 'unknown' for an answer to
   * a request already given up.
   */
  received(id: number, blocks: readonly B[], now: number): 'ok' | 'bad' | 'unknown' {
    const p = this.#pending.get(id)
    if (p === undefined) return 'unknown'
    this.#pending.delete(id)
    const state = this.#peers.get(p.peer)
    if (state !== undefined) {
      state.inflight--
      state.failures = 0
    }
    if (blocks.length > p.count || blocks.some((b, i) => this.#heightOf(b) !== p.from + BigInt(i))) {
      this.ban(p.peer, now)
      return 'bad'
    }
    if (blocks.length === 0) {
      if (state !== undefined && state.height >= p.from) state.height = p.from - 1n
      return 'ok'
    }
    blocks.forEach((block, i) => {
      const h = p.from + BigInt(i)
      if (!this.#ready.has(h)) this.#ready.set(h, { block, peer: p.peer })
    })
    return 'ok'
  }

  /** Request `id` failed (error or timeout): its range is free to ask again; the peer rests `restMs`. */
  failed(id: number, now: number): void {
    const p = this.#pending.get(id)
    if (p === undefined) return
    this.#pending.delete(id)
    const state = this.#peers.get(p.peer)
    if (state === undefined) return
    state.inflight--
    const rest = Math.min(this.options.banMs, this.options.restMs * 2 ** Math.min(state.failures, 20))
    state.failures++
    state.restUntil = Math.max(state.restUntil, now + rest)
  }

  /** Takes the block at `local + 1` and the peer it came from, if it is ready. */
  next(local: bigint): { block: B; peer: string } | undefined {
    const h = local + 1n
    const r = this.#ready.get(h)
    if (r !== undefined) {
      this.#ready.delete(h)
      this.#taken = h
    }
    return r
  }

  /** The block next() handed out was applied or refused: its height may be asked for again if needed. */
  done(): void {
    this.#taken = undefined
  }

  /**
   * A block from `peer` failed verification: the peer is not asked for `banMs`, and every other block it
   * sent is dropped (asked again of others).
   */
  ban(peer: string, now: number): void {
    const state = this.#peers.get(peer)
    if (state !== undefined) state.restUntil = now + this.options.banMs
    for (const [h, r] of this.#ready) if (r.peer === peer) this.#ready.delete(h)
  }

  /** The peer that may serve `from`: not resting, below its in-flight cap, claiming `from`; fewest recent
   * failures first, then least busy, then the highest, then by name (deterministic for the simulation). */
  #pick(from: bigint, now: number): string | undefined {
    let best: [string, PeerState] | undefined
    for (const e of this.#peers) {
      const s = e[1]
      if (s.restUntil > now || s.inflight >= this.options.maxInflightPerPeer || s.height < from) continue
      if (best === undefined) {
        best = e
        continue
      }
      const b = best[1]
      const order =
        s.failures - b.failures ||
        s.inflight - b.inflight ||
        (s.height > b.height ? -1 : s.height < b.height ? 1 : 0) ||
        (e[0] < best[0] ? -1 : 1)
      if (order < 0) best = e
    }
    return best?.[0]
  }
}

/** Collaborators of a {@link BlockSync}. */
export interface BlockSyncModules<B> {
  /** `blocks-by-range` of one peer. */
  readonly fetch: (peer: string, from: bigint, count: number) => Promise<readonly B[]>
  /** Verifies and applies the block after the head; `more` says another one is ready behind it. */
  readonly apply: (block: B, more: boolean) => Promise<SyncApplyResult>
  readonly heightOf: (b: B) => bigint
  /** Last committed height. */
  readonly localHeight: () => bigint
  readonly log: Logger
  /** Wall clock, unix ms. Default Date.now. */
  readonly now?: () => number
  /** Extra figures for the 'caught up' log line (the driver's split of the apply time). */
  readonly report?: () => Record<string, number>
}

/** One catch-up, from the first request to back at the network's height: the 'caught up' log line. */
export interface SyncRun {
  readonly fromHeight: bigint
  toHeight: bigint
  readonly startedAt: number
  /** ms from the first request to the first block applied, and to the end. */
  firstBlockMs: number
  ms: number
  requests: number
  applied: number
  /** Time spent applying (verify, commit, next height), ms. */
  applyMs: number
}

/** How often a sync with something to wait for (a delay, a resting peer) looks again. */
const TICK_MS = 200

/** {@link SyncScheduler} with real requests and timers: the driver's block sync. */
export class BlockSync<B> {
  readonly #s: SyncScheduler<B>
  readonly #m: BlockSyncModules<B>
  readonly #now: () => number
  readonly #inflight = new Set<Promise<unknown>>()
  #applying: Promise<void> | undefined
  #timer: NodeJS.Timeout | undefined
  #stopped = false
  /** Blocks applied, answers that failed verification, requests sent. */
  readonly stats = { applied: 0, rejected: 0, requests: 0 }
  /** The catch-up under way, or the last one. */
  #run: SyncRun | undefined
  #running = false

  constructor(options: Partial<SyncOptions>, modules: BlockSyncModules<B>) {
    this.#s = new SyncScheduler(options, modules.heightOf)
    this.#m = modules
    this.#now = modules.now ?? Date.now
  }

  /** The scheduler's options. */
  get options(): SyncOptions {
    return this.#s.options
  }

  /** `syncing` of GET /v1/status: fetching, applying, or known to be two or more heights behind. */
  get syncing(): boolean {
    return this.#applying !== undefined || this.#s.syncing(this.#m.localHeight(), this.#now())
  }

  /** Highest height a peer we would ask claims to have committed. */
  get networkHeight(): bigint {
    return this.#s.networkHeight(this.#now())
  }

  /** The catch-up under way, or the last one (undefined before the first). */
  get lastRun(): Readonly<SyncRun> | undefined {
    return this.#run
  }

  /** A peer has committed at least `height` (its status, or a signed message of `height + 1`). */
  notePeerHeight(peer: string, height: bigint): void {
    if (this.#stopped) return
    this.#s.notePeerHeight(peer, height)
    this.#pump()
  }

  /** The highest height `peer` is known to have committed (its status or its messages). */
  peerHeight(peer: string): bigint | undefined {
    return this.#s.peerHeight(peer)
  }

  /** The peer disconnected. */
  removePeer(peer: string): void {
    this.#s.removePeer(peer)
  }

  /**
   * Stops: no new request, no new block applied; waits for the block being applied. Requests in flight
   * are not waited for (a slow peer must not hold up a shutdown): their answers are dropped.
   */
  async stop(): Promise<void> {
    this.#stopped = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    while (this.#applying !== undefined) await this.#applying
  }

  /** Range requests not answered yet. */
  get pendingRequests(): number {
    return this.#inflight.size
  }

  #pump(): void {
    if (this.#stopped) return
    const now = this.#now()
    for (const r of this.#s.poll(this.#m.localHeight(), now)) this.#send(r)
    this.#apply()
    this.#account(now)
    // Something to wait for (the one-behind delay, a resting peer, a timeout): look again soon.
    const waiting = this.#s.inflight > 0 || this.#s.networkHeight(now) > this.#m.localHeight()
    if (waiting && this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined
        this.#pump()
      }, TICK_MS)
    }
  }

  /** Opens a SyncRun at the first request, closes (and logs) it once nothing is left to do. */
  #account(now: number): void {
    const busy = this.#s.inflight > 0 || this.#applying !== undefined || this.#s.readyCount > 0
    if (busy && !this.#running) {
      this.#running = true
      const h = this.#m.localHeight()
      this.#run = {
        fromHeight: h,
        toHeight: h,
        startedAt: now,
        firstBlockMs: 0,
        ms: 0,
        requests: 0,
        applied: 0,
        applyMs: 0,
      }
    } else if (!busy && this.#running && !this.syncing) {
      this.#running = false
      const r = this.#run!
      r.toHeight = this.#m.localHeight()
      r.ms = now - r.startedAt
      // A height or two behind is routine (our decision came late): only a real catch-up is news.
      this.#m.log[r.applied > 2 ? 'info' : 'debug'](
        {
          from: r.fromHeight,
          to: r.toHeight,
          ms: r.ms,
          firstBlockMs: r.firstBlockMs,
          requests: r.requests,
          applied: r.applied,
          applyMs: Math.round(r.applyMs),
          ...this.#m.report?.(),
        },
        'caught up',
      )
    }
  }

  #send(r: SyncRequest): void {
    this.stats.requests++
    if (this.#run !== undefined && this.#running) this.#run.requests++
    const p = this.#m.fetch(r.peer, r.from, r.count).then(
      (blocks) => {
        if (this.#s.received(r.id, blocks, this.#now()) === 'bad') {
          this.stats.rejected++
          this.#m.log.warn({ peer: r.peer, from: r.from, count: r.count }, 'peer answered the wrong range')
        }
      },
      (err) => {
        this.#s.failed(r.id, this.#now())
        this.#m.log.debug({ err, peer: r.peer, from: r.from }, 'range request failed')
      },
    )
    const tracked = p.finally(() => {
      this.#inflight.delete(tracked)
      this.#pump()
    })
    this.#inflight.add(tracked)
  }

  /** Applies ready blocks in height order, one at a time. */
  #apply(): void {
    if (this.#applying !== undefined || this.#stopped || !this.#s.hasNext(this.#m.localHeight())) return
    const run = async () => {
      for (;;) {
        if (this.#stopped) return
        const local = this.#m.localHeight()
        const r = this.#s.next(local)
        if (r === undefined) return
        const t = performance.now()
        let result: SyncApplyResult
        try {
          result = await this.#m.apply(r.block, this.#s.hasNext(local + 1n))
        } finally {
          this.#s.done()
        }
        const run = this.#run
        if (run !== undefined) {
          run.applyMs += performance.now() - t
          if (result.status === 'applied') {
            run.applied++
            run.firstBlockMs ||= this.#now() - run.startedAt
          }
        }
        if (result.status === 'applied') this.stats.applied++
        else if (result.status === 'rejected') {
          this.stats.rejected++
          this.#s.ban(r.peer, this.#now())
          this.#m.log.warn(
            { height: this.#m.heightOf(r.block), peer: r.peer, code: result.code, reason: result.message },
            'synced block rejected; peer left out of sync',
          )
        }
      }
    }
    this.#applying = run()
      .catch((err) => this.#m.log.error({ err }, 'applying synced blocks failed'))
      .finally(() => {
        this.#applying = undefined
        this.#pump()
      })
  }
}
