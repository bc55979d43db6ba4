/**
 * Replays cost score. Gossipsub drops a byte-identical message by its id (seen cache) before it reaches
 * a validator, and none of its score terms penalises a duplicate: P3 counts near-first duplicates as
 * mesh deliveries (a credit), P7 covers broken IWANT promises and early GRAFTs only. A peer that wraps
 * already-known payloads in new bytes (a known intent in a new batch, an old health report) gets a new
 * message id every time and costs a decode and a lookup each, for free. So we count per peer, in the
 * topic validators, the IGNOREs that say "already known" (codes in {@link REPLAY_CODES}); past an
 * allowance per window every further one lowers the peer's application score.
 */

/** Validation codes that mean "this payload is already known here". */
export const REPLAY_CODES: ReadonlySet<string> = new Set(['DUPLICATE', 'KNOWN'])

export interface ReplayOptions {
  /** Replays allowed per peer per window without penalty (honest races produce a few). */
  allowance: number
  /** Window length, ms. */
  windowMs: number
  /** Application score subtracted per replay beyond the allowance. */
  penalty: number
}

/**
 * 50 per 10 s: a wallet that submits one intent to several nodes makes each of them publish it and the
 * others IGNORE it as a duplicate, a few per second at most; a flood is hundreds per second. At 5 per
 * excess replay a flood reaches the graylist (-400) 80 replays after its allowance.
 */
export const DEFAULT_REPLAY_OPTIONS: ReplayOptions = { allowance: 50, windowMs: 10_000, penalty: 5 }

/** Fixed-window replay counter per peer. */
export class ReplayMeter {
  readonly #opts: ReplayOptions
  readonly #windows = new Map<string, { startMs: number; count: number }>()

  constructor(opts: ReplayOptions) {
    this.#opts = opts
  }

  /** Records one replay from `peer`; returns the penalty to apply now (0 within the allowance). */
  record(peer: string, nowMs: number): number {
    let w = this.#windows.get(peer)
    if (w === undefined || nowMs - w.startMs >= this.#opts.windowMs) {
      w = { startMs: nowMs, count: 0 }
      this.#windows.set(peer, w)
    }
    w.count++
    return w.count > this.#opts.allowance ? this.#opts.penalty : 0
  }

  /** Drops windows that ended (called by the host's decay timer so the map stays small). */
  prune(nowMs: number): void {
    for (const [p, w] of this.#windows) if (nowMs - w.startMs >= this.#opts.windowMs) this.#windows.delete(p)
  }
}
