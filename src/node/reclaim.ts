/**
 * Memory given back after an attack (issue 13: "memory back within 10 % of its baseline a minute after").
 *
 * V8 sizes the old space from the allocation rate it measured at the last mark-compact: during a flood
 * that rate is high, so the limit is set up to four times the live heap. When the flood stops the limit
 * stays until the next mark-compact, and with honest traffic going on V8's memory reducer (which starts
 * only when allocation is low) does not run, so the garbage of normal work fills that room: the attack
 * bench saw the heap grow from 68-83 MB at the attack's end to 108-125 MB a minute after, and RSS stay at
 * 111 to 139 % of its baseline. So after a burst of bans the node asks for one memory-reducing major GC
 * (V8's `last-resort` flavour: it compacts and gives freed pages back) once `quietMs` have passed without
 * a new ban; the limit is then set again from the quiet allocation rate.
 *
 * It needs V8's `gc` function (`--expose-gc`, which bin/murmur and the devnet pass); without it the
 * reclaim does nothing and says so once. Nothing else calls `gc`.
 */
import { getHeapStatistics } from 'node:v8'
import type { Logger } from 'pino'

/** V8's `gc` (its gc extension, `--expose-gc`), with the options it takes. */
export type GcFunction = (options?: {
  type?: 'major' | 'minor'
  execution?: 'sync' | 'async'
  flavor?: 'regular' | 'last-resort'
}) => unknown

export interface ReclaimOptions {
  /** How long after the last ban the GC runs, ms. */
  readonly quietMs: number
}

/** 15 s: a flood that goes on (fresh identities banned every few seconds) never triggers it. */
export const DEFAULT_RECLAIM_OPTIONS: ReclaimOptions = { quietMs: 15_000 }

export interface ReclaimModules {
  readonly log: Logger
  /** V8's GC; by default `globalThis.gc` (present with `--expose-gc`). */
  readonly gc?: GcFunction | undefined
  /** Counts the GCs run. */
  readonly onReclaim?: () => void
}

export class MemoryReclaim {
  readonly #opts: ReclaimOptions
  readonly #m: ReclaimModules
  readonly #gc: GcFunction | undefined
  #timer: NodeJS.Timeout | undefined
  #warned = false
  #stopped = false

  constructor(opts: Partial<ReclaimOptions>, modules: ReclaimModules) {
    this.#opts = { ...DEFAULT_RECLAIM_OPTIONS, ...opts }
    this.#m = modules
    this.#gc = 'gc' in modules ? modules.gc : (globalThis as { gc?: () => unknown }).gc
  }

  /** A peer was banned: the GC waits until `quietMs` pass without another. */
  banned(): void {
    if (this.#stopped) return
    if (this.#gc === undefined) {
      if (!this.#warned)
        this.#m.log.info(
          'node runs without --expose-gc: memory is not compacted after bans (bin/murmur passes it)',
        )
      this.#warned = true
      return
    }
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => this.#reclaim(), this.#opts.quietMs)
    this.#timer.unref()
  }

  stop(): void {
    this.#stopped = true
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #reclaim(): void {
    this.#timer = undefined
    const before = getHeapStatistics()
    const t0 = performance.now()
    // `last-resort`: the memory-reducing full GC (compacts, and releases the pages it freed).
    this.#gc!({ type: 'major', execution: 'sync', flavor: 'last-resort' })
    const ms = performance.now() - t0
    const after = getHeapStatistics()
    this.#m.onReclaim?.()
    this.#m.log.info(
      {
        ms: Math.round(ms),
        heapUsedMb: [mb(before.used_heap_size), mb(after.used_heap_size)],
        heapTotalMb: [mb(before.total_heap_size), mb(after.total_heap_size)],
      },
      'heap compacted after bans',
    )
  }
}

const mb = (bytes: number) => Math.round(bytes / 2 ** 20)
