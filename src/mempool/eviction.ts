/**
 * The eviction order of a full pool (issue 13, item 3): the pending intent that pays least goes first.
 *
 * What an intent pays its executor is its spread, inputAmount - outputAmount in the input token's units
 * (the pool has no fill-cost estimate: fees are the destination's and vary by the block). Ties go to the
 * nearest fillDeadline, then the lower id, so the order is total. One min-heap per origin chain: a newcomer
 * whose origin holds its quota of the pool may only displace intents of that same origin
 * (pool.ts, `originQuotaBps`), and picking among a few heaps' tops is cheap.
 *
 * Entries go stale when an intent leaves `pending`; the pool skips them when met and rebuilds the queue
 * when it is mostly stale.
 */
import type { Hex } from 'viem'
import { decodeOrderData, type GaslessCrossChainOrder } from '../codec/intent.ts'

/** One pending intent as the eviction order sees it. */
export interface EvictionEntry {
  /** inputAmount - outputAmount, input token units (negative when the output is worth more units). */
  readonly spread: bigint
  /** Unix seconds. */
  readonly fillDeadline: number
  readonly id: Hex
  /** Origin chain id, decimal. */
  readonly origin: string
}

/** True when `a` is evicted before `b`: lower spread, then nearer fillDeadline, then lower id. */
export function evictedBefore(a: EvictionEntry, b: EvictionEntry): boolean {
  if (a.spread !== b.spread) return a.spread < b.spread
  if (a.fillDeadline !== b.fillDeadline) return a.fillDeadline < b.fillDeadline
  return a.id < b.id
}

/** What an order pays its executor: inputAmount - outputAmount; 0 when its payload does not decode. */
export function spreadOf(order: GaslessCrossChainOrder): bigint {
  try {
    const d = decodeOrderData(order.orderData)
    return d.inputAmount - d.outputAmount
  } catch {
    // The pool holds validated intents only; a record that does not decode pays nothing, so goes first.
    return 0n
  }
}

class EntryHeap {
  readonly items: EvictionEntry[] = []

  push(e: EvictionEntry): void {
    const a = this.items
    a.push(e)
    let i = a.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!evictedBefore(a[i]!, a[p]!)) break
      ;[a[i], a[p]] = [a[p]!, a[i]!]
      i = p
    }
  }

  pop(): EvictionEntry | undefined {
    const a = this.items
    const top = a[0]
    if (top === undefined) return undefined
    const last = a.pop()!
    if (a.length > 0) {
      a[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < a.length && evictedBefore(a[l]!, a[m]!)) m = l
        if (r < a.length && evictedBefore(a[r]!, a[m]!)) m = r
        if (m === i) break
        ;[a[i], a[m]] = [a[m]!, a[i]!]
        i = m
      }
    }
    return top
  }
}

/** Pending intents in eviction order, one heap per origin; an id is held at most once. */
export class EvictionQueue {
  readonly #heaps = new Map<string, EntryHeap>()
  readonly #in = new Set<Hex>()

  /** Entries held, stale ones included. */
  get size(): number {
    return this.#in.size
  }

  clear(): void {
    this.#heaps.clear()
    this.#in.clear()
  }

  push(e: EvictionEntry): void {
    if (this.#in.has(e.id)) return
    this.#in.add(e.id)
    let h = this.#heaps.get(e.origin)
    if (h === undefined) {
      h = new EntryHeap()
      this.#heaps.set(e.origin, h)
    }
    h.push(e)
  }

  /** Removes and returns the first entry in eviction order: of every origin, or of `origin` only. */
  pop(origin?: string): EvictionEntry | undefined {
    let from: [string, EntryHeap] | undefined
    if (origin !== undefined) {
      const h = this.#heaps.get(origin)
      if (h !== undefined) from = [origin, h]
    } else {
      for (const [o, h] of this.#heaps) {
        const top = h.items[0]
        if (top !== undefined && (from === undefined || evictedBefore(top, from[1].items[0]!))) from = [o, h]
      }
    }
    if (from === undefined) return undefined
    const e = from[1].pop()!
    if (from[1].items.length === 0) this.#heaps.delete(from[0])
    this.#in.delete(e.id)
    return e
  }
}
