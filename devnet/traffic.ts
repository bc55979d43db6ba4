/**
 * The devnet's simulated wallets (issue 12, item 4): a pure, seeded schedule of intent arrivals. Given
 * the same options it gives the same arrivals, so a run can be replayed; the devnet's loop (devnet.ts)
 * only sends what it yields when its time comes.
 *
 * - `steady`: one intent every 1/rate s, wallets in turn, destinations any / one / two in turn, one
 *   token each: what the devnet's `--rate` always did.
 * - `bursty`: Poisson arrivals switched on and off (exponential on periods at BURST_FACTOR × rate,
 *   off periods at the rate that keeps the mean at `rate`); during a burst, one heavy wallet sends most
 *   intents (a bot, an airdrop claim rush).
 * - `mixed`: `bursty`'s arrivals, plus a few heavy wallets outside bursts too, amounts spread from 0.1
 *   to 100 tokens (log-uniform), and destination sets of zero to three chains with a bias to the first
 *   chains (popular rollups get more traffic).
 */
import { MurmurError } from '../src/errors.ts'
import { seededRandom } from './scenario-timelines.ts'

export const TRAFFIC_MODES = ['steady', 'bursty', 'mixed'] as const
export type TrafficMode = (typeof TRAFFIC_MODES)[number]

/** A burst sends this many times the mean rate. */
export const BURST_FACTOR = 3
/** Mean length of a burst and of the quiet time between two, ms. */
export const BURST_ON_MS = 3_000
export const BURST_OFF_MS = 12_000
/** Share of a burst's intents sent by the burst's heavy wallet. */
export const BURST_HEAVY_SHARE = 0.6
/** Outside bursts (mixed mode), share of intents sent by the heavy wallets. */
export const HEAVY_SHARE = 0.5

export interface TrafficOptions {
  mode: TrafficMode
  /** Mean intents per second. */
  rate: number
  /** Number of wallets; wallet indexes are 0..wallets-1. */
  wallets: number
  /** Destination chain ids to choose from. */
  chainIds: readonly number[]
  seed: number
}

/** One intent to send: when (ms after the schedule's start), from which wallet, where, how much. */
export interface Arrival {
  atMs: number
  /** Sequence number, from 0. */
  n: number
  wallet: number
  /** Allowed destination chains; empty = any rollup. */
  destinations: number[]
  /** Output amount in thousandths of a token (1000 = one token). */
  amountMilli: number
  /** Sent during a burst (bursty and mixed modes). */
  burst: boolean
}

export class TrafficError extends MurmurError<'BAD_TRAFFIC'> {}

/** Arrivals of one schedule, in time order; `next()` never ends. */
export class TrafficSchedule {
  readonly o: TrafficOptions
  readonly #rand: () => number
  #n = 0
  #t = 0
  /** Bursty modes: whether a burst is on, when the current period ends, the burst's heavy wallet. */
  #on = false
  #periodEnd = 0
  #burstWallet = 0
  readonly #heavy: number

  constructor(o: TrafficOptions) {
    if (!TRAFFIC_MODES.includes(o.mode))
      throw new TrafficError('BAD_TRAFFIC', `--traffic must be one of ${TRAFFIC_MODES.join(', ')}`)
    if (!(o.rate > 0) || !Number.isFinite(o.rate))
      throw new TrafficError('BAD_TRAFFIC', 'the rate must be a positive number')
    if (!Number.isInteger(o.wallets) || o.wallets < 1)
      throw new TrafficError('BAD_TRAFFIC', 'there must be at least one wallet')
    this.o = o
    this.#rand = seededRandom(o.seed)
    // A few heavy wallets: one in eight (at least one).
    this.#heavy = Math.max(1, Math.round(o.wallets / 8))
    if (o.mode !== 'steady') this.#periodEnd = this.#exp(BURST_OFF_MS)
  }

  /** Number of heavy wallets (indexes 0..heavy-1). */
  get heavyWallets(): number {
    return this.#heavy
  }

  next(): Arrival {
    const n = this.#n++
    if (this.o.mode === 'steady') return this.#steady(n)
    this.#t = this.#nextArrivalMs()
    const burst = this.#on
    const wallet = this.#pickWallet(burst)
    const mixed = this.o.mode === 'mixed'
    return {
      atMs: Math.round(this.#t),
      n,
      wallet,
      destinations: mixed ? this.#mixedDestinations() : steadyDestinations(n, this.o.chainIds),
      amountMilli: mixed ? Math.round(100 * 10 ** (3 * this.#rand())) : 1000,
      burst,
    }
  }

  /** Every arrival before `untilMs`, from where the schedule is (for tests and reports). */
  takeUntil(untilMs: number): Arrival[] {
    const out: Arrival[] = []
    for (;;) {
      const a = this.peek()
      if (a.atMs >= untilMs) return out
      out.push(this.take())
    }
  }

  #peeked: Arrival | undefined
  /** The next arrival, without consuming it. */
  peek(): Arrival {
    this.#peeked ??= this.next()
    return this.#peeked
  }

  /** The next arrival, consumed. */
  take(): Arrival {
    const a = this.peek()
    this.#peeked = undefined
    return a
  }

  #steady(n: number): Arrival {
    return {
      atMs: Math.round((n * 1000) / this.o.rate),
      n,
      wallet: n % this.o.wallets,
      destinations: steadyDestinations(n, this.o.chainIds),
      amountMilli: 1000,
      burst: false,
    }
  }

  /** Exponential with mean `meanMs`. */
  #exp(meanMs: number): number {
    return -Math.log(1 - this.#rand()) * meanMs
  }

  /** The next Poisson arrival of a two-state (burst / quiet) process; memoryless across a switch. */
  #nextArrivalMs(): number {
    const onRate = this.o.rate * BURST_FACTOR
    // Mean over a cycle = rate: onRate × on + offRate × off = rate × (on + off).
    const offRate = Math.max(
      0,
      (this.o.rate * (BURST_ON_MS + BURST_OFF_MS) - onRate * BURST_ON_MS) / BURST_OFF_MS,
    )
    let t = this.#t
    for (;;) {
      const perMs = (this.#on ? onRate : offRate) / 1000
      const gap = perMs > 0 ? this.#exp(1 / perMs) : Number.POSITIVE_INFINITY
      if (t + gap < this.#periodEnd) return t + gap
      t = this.#periodEnd
      this.#on = !this.#on
      this.#periodEnd = t + this.#exp(this.#on ? BURST_ON_MS : BURST_OFF_MS)
      if (this.#on) this.#burstWallet = Math.floor(this.#rand() * this.#heavy)
    }
  }

  #pickWallet(burst: boolean): number {
    const w = this.o.wallets
    if (burst && this.#rand() < BURST_HEAVY_SHARE) return this.#burstWallet
    if (this.o.mode === 'mixed' && w > this.#heavy && this.#rand() < HEAVY_SHARE)
      return Math.floor(this.#rand() * this.#heavy)
    return Math.floor(this.#rand() * w)
  }

  /** Zero to three chains: any 30 %, one 45 %, two 15 %, three 10 %; chain i weighs 1 / (i + 1). */
  #mixedDestinations(): number[] {
    const chains = this.o.chainIds
    const u = this.#rand()
    const want = u < 0.3 ? 0 : u < 0.75 ? 1 : u < 0.9 ? 2 : 3
    const k = Math.min(want, chains.length)
    const weights = chains.map((_, i) => 1 / (i + 1))
    const picked: number[] = []
    while (picked.length < k) {
      let total = 0
      for (const [i, wt] of weights.entries()) if (!picked.includes(chains[i]!)) total += wt
      let x = this.#rand() * total
      for (const [i, wt] of weights.entries()) {
        if (picked.includes(chains[i]!)) continue
        x -= wt
        if (x <= 0) {
          picked.push(chains[i]!)
          break
        }
      }
      // Rounding left x just above 0: take the last free chain.
      if (picked.length < k && x > 0) picked.push(chains.filter((c) => !picked.includes(c)).at(-1)!)
    }
    return picked
  }
}

/** Any rollup, one, or two, in turn (the devnet's traffic before `--traffic` existed). */
export function steadyDestinations(n: number, chains: readonly number[]): number[] {
  if (chains.length === 0 || n % 3 === 0) return []
  if (n % 3 === 2 && chains.length > 1) return [chains[n % chains.length]!, chains[(n + 1) % chains.length]!]
  return [chains[n % chains.length]!]
}
