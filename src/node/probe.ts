import type { PeerId } from '@libp2p/interface'
import { Histogram, type Registry } from 'prom-client'
import type { TopicHandler } from '../p2p/host.ts'
import type { Probe } from '../p2p/topics.ts'
import { ACCEPT, ignore, reject, type ValidationResult } from '../p2p/validation.ts'

/** Probes older than this are stale (IGNORE); newer than now + skew are REJECTed. */
export const PROBE_MAX_AGE_MS = 60_000
export const PROBE_MAX_SKEW_MS = 5_000
const RECENT_LIMIT = 10_000

export interface ReceivedProbe {
  origin: string
  seq: number
  latencyMs: number
}

/** Wall clock with sub-millisecond precision, comparable across processes on one machine. */
export function preciseNowMs(): number {
  return performance.timeOrigin + performance.now()
}

/**
 * The `probe` topic: operators and benchmarks publish probes to measure the mesh;
 * every node keeps the last RECENT_LIMIT it received with their delivery latency.
 */
export class ProbeService implements TopicHandler<Probe> {
  readonly #recent: ReceivedProbe[] = []
  #seq = 0
  readonly #latency: Histogram

  constructor(registry: Registry) {
    this.#latency = new Histogram({
      name: 'murmur_p2p_probe_latency_seconds',
      help: 'Publish-to-delivery latency of probes received',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    })
  }

  validate(msg: Probe, _from: PeerId): ValidationResult {
    const age = preciseNowMs() - msg.sentAtMs
    if (age < -PROBE_MAX_SKEW_MS) return reject('FUTURE')
    if (age > PROBE_MAX_AGE_MS) return ignore('STALE')
    return ACCEPT
  }

  onMessage(msg: Probe): void {
    const latencyMs = preciseNowMs() - msg.sentAtMs
    this.#latency.observe(latencyMs / 1000)
    this.#recent.push({ origin: msg.origin, seq: msg.seq, latencyMs })
    if (this.#recent.length > RECENT_LIMIT) this.#recent.splice(0, this.#recent.length - RECENT_LIMIT)
  }

  /** A new probe from `origin` with `size` bytes of padding. */
  next(origin: string, size: number): Probe {
    return { seq: ++this.#seq, origin, sentAtMs: preciseNowMs(), padding: new Uint8Array(size) }
  }

  recent(origin?: string): ReceivedProbe[] {
    return origin === undefined ? [...this.#recent] : this.#recent.filter((p) => p.origin === origin)
  }
}
