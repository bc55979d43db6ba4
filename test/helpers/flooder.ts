/**
 * A hostile libp2p peer that floods real nodes on the real wire format (issue 13's attack: garbage
 * bytes, wrong-signature intent batches, replays of accepted intents, messages near 1 MiB, bursts of
 * stream opens). One `Flooder` is one identity (its own key, its own connection to each target), built
 * on startQuietPeer so it validates nothing it receives. The attack benchmark (bench/attack.ts) runs
 * several at once; what the nodes did to them is read through the nodes' HTTP APIs, never from here.
 */
import { randomBytes } from 'node:crypto'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { SignedIntent } from '../../src/codec/intent.ts'
import { INTENT_BATCH_MAX_BYTES, intentBatchCodec } from '../../src/mempool/wire.ts'
import type { TopicPayloads } from '../../src/node/topics.ts'
import type { P2PHost } from '../../src/p2p/host.ts'
import { protocolString, topicString } from '../../src/p2p/topics.ts'
import { startQuietPeer } from './quiet-peer.ts'
import { waitFor } from './wait.ts'

/** What one flood message is. */
export type FloodKind = 'garbage' | 'badSig' | 'replay' | 'big'

/**
 * The kinds a flood is limited to (`MURMUR_FLOOD_KINDS`, a comma list; for diagnosis, e.g. which kind
 * leaves memory behind in `bench attack`); all of them when unset.
 */
const FLOOD_KINDS = process.env['MURMUR_FLOOD_KINDS']?.split(',').map((k) => k.trim()) as
  | FloodKind[]
  | undefined

/** Message `i` of a flood: garbage, wrong signatures and replays in turn, one near-1 MiB in 16. */
export function floodKind(i: number, only: readonly FloodKind[] | undefined = FLOOD_KINDS): FloodKind {
  if (i % 16 === 15 && (only === undefined || only.includes('big'))) return 'big'
  const small = (['garbage', 'badSig', 'replay'] as const).filter(
    (k) => only === undefined || only.includes(k),
  )
  return small.length === 0 ? 'big' : small[i % small.length]!
}

/** Near 1 MiB, under the intents topic's limit: decoded (and refused) rather than cut off by size. */
const BIG_BYTES = INTENT_BATCH_MAX_BYTES - 1024
/** Publishes of one flooder not yet written out; past it a message is skipped, as a real sender would. */
const MAX_IN_FLIGHT = 256

/** What a flooder did, counted on its side (what it offered, not what the nodes took). */
export interface FloodCounts {
  garbage: number
  badSig: number
  replay: number
  big: number
  streams: number
  /** Messages gossipsub found no recipient for (every target hung up, or not subscribed yet). */
  unsent: number
  /** Messages not made because `MAX_IN_FLIGHT` publishes were still being written. */
  skipped: number
}

/** Counts of nothing yet. */
export function emptyCounts(): FloodCounts {
  return { garbage: 0, badSig: 0, replay: 0, big: 0, streams: 0, unsent: 0, skipped: 0 }
}

/** Adds `c` into `into`. */
export function addCounts(into: FloodCounts, c: FloodCounts): FloodCounts {
  for (const k of Object.keys(into) as (keyof FloodCounts)[]) into[k] += c[k]
  return into
}

export interface FloodSources {
  /** Accepted intents to replay (new batches of them: new bytes, so gossipsub's seen cache lets them by). */
  known: () => readonly SignedIntent[]
  /** Validly signed intents never sent anywhere; with their nonce moved, each signature is wrong. */
  signed: readonly SignedIntent[]
}

export class Flooder {
  /** Wall-clock ms of its first message that reached a node (the disconnect time is measured from it). */
  firstMessageAtMs: number | undefined
  readonly counts: FloodCounts = emptyCounts()
  /** The last publish error (diagnosis). */
  lastError: string | undefined
  readonly #host: P2PHost<TopicPayloads>
  readonly #stopHost: () => Promise<void>
  readonly #networkId: string
  readonly #targets: PeerId[]
  readonly #sources: FloodSources
  readonly #big = new Uint8Array(BIG_BYTES)
  #n = 0
  /** Mixed into every message, so that no two identities send the same bytes (a node's seen cache would
   * drop the copies for nothing, and the flood would be smaller than it looks). */
  readonly #salt = randomBytes(4).readUInt32BE(0)
  #inFlight = 0
  #stopped = false

  private constructor(
    peer: { host: P2PHost<TopicPayloads>; stop(): Promise<void> },
    networkId: string,
    targets: PeerId[],
    sources: FloodSources,
  ) {
    this.#host = peer.host
    this.#stopHost = peer.stop
    this.#networkId = networkId
    this.#targets = targets
    this.#sources = sources
    this.#big.set(randomBytes(4096))
  }

  /**
   * A fresh identity connected to every target (multiaddrs ending in /p2p/<id>), once each target's
   * subscription to the intents topic has arrived (a message published before that reaches no one).
   */
  static async start(networkId: string, targets: string[], sources: FloodSources): Promise<Flooder> {
    const peer = await startQuietPeer(networkId)
    const ids = targets.map((t) => peerIdFromString(multiaddr(t).getComponents().at(-1)!.value!))
    const f = new Flooder(peer, networkId, ids, sources)
    try {
      for (const t of targets) await peer.host.libp2p.dial(multiaddr(t))
      const topic = topicString(networkId, 'intents')
      await waitFor('the targets subscribed, as the flooder sees it', () => {
        const subs = new Set(peer.host.libp2p.services.pubsub.getSubscribers(topic).map(String))
        return ids.every((id) => subs.has(id.toString()))
      })
    } catch (err) {
      await peer.stop()
      throw err
    }
    return f
  }

  /** Its view of each target: connections, subscribed to intents, score it gives the target (diagnosis). */
  view(): string {
    const pubsub = this.#host.libp2p.services.pubsub as unknown as {
      getSubscribers(t: string): PeerId[]
      getScore(p: string): number
    }
    const subs = new Set(pubsub.getSubscribers(topicString(this.#networkId, 'intents')).map(String))
    return this.#targets
      .map(
        (t) =>
          `${this.#host.libp2p.getConnections(t).length}c/${subs.has(t.toString()) ? 's' : '-'}/${pubsub.getScore(t.toString()).toFixed(0)}`,
      )
      .join(' ')
  }

  /** Publishes not yet written out. */
  get inFlight(): number {
    return this.#inFlight
  }

  get peerId(): string {
    return this.#host.peerId
  }

  /** Whether it still has a connection to any target (its own view: it decides when to give up). */
  connected(): boolean {
    return this.#targets.some((t) => this.#host.libp2p.getConnections(t).length > 0)
  }

  /** Publishes the next `n` messages of the flood without waiting for them to be written. */
  send(n: number): void {
    for (let k = 0; k < n && !this.#stopped; k++) {
      if (this.#inFlight >= MAX_IN_FLIGHT) {
        this.counts.skipped += n - k
        return
      }
      const kind = floodKind(this.#n++)
      const bytes = this.#message(kind)
      this.#inFlight++
      this.#host
        .publishRaw('intents', bytes)
        .then((recipients) => {
          if (recipients === 0) {
            this.counts.unsent++
            return
          }
          this.counts[kind]++
          this.firstMessageAtMs ??= Date.now()
        })
        .catch((err: Error) => {
          this.counts.unsent++
          this.lastError = err.message
        })
        .finally(() => this.#inFlight--)
    }
  }

  /** Opens `n` `status` streams to each target and resets them at once (a stream-open burst). */
  openStreams(n: number): void {
    const proto = protocolString(this.#networkId, 'status')
    for (const t of this.#targets) {
      if (this.#host.libp2p.getConnections(t).length === 0) continue
      for (let k = 0; k < n && !this.#stopped; k++) {
        this.#host.libp2p
          .dialProtocol(t, proto, { signal: AbortSignal.timeout(2_000) })
          .then((s) => {
            this.counts.streams++
            s.abort(new Error('burst'))
          })
          .catch(() => {})
      }
    }
  }

  #message(kind: FloodKind): Uint8Array {
    const i = this.#n
    switch (kind) {
      case 'garbage': {
        const b = randomBytes(64 + (i % 448))
        b[0] = 1 // the wire version: garbage after it, not a version error
        return b
      }
      case 'big': {
        // The same buffer with a new counter: a new message id for each, at no allocation here.
        const v = new DataView(this.#big.buffer)
        v.setUint32(1, this.#salt)
        v.setUint32(5, i)
        return this.#big
      }
      case 'badSig': {
        const s = this.#sources.signed
        const batch = Array.from({ length: 4 }, (_, k) => {
          const x = s[(i + k) % s.length]!
          const bump = (BigInt(this.#salt) << 32n) + BigInt(i) * 7919n + BigInt(k) + 1n
          return { ...x, order: { ...x.order, nonce: x.order.nonce + bump } }
        })
        return intentBatchCodec.encode(batch)
      }
      case 'replay': {
        const known = this.#sources.known()
        if (known.length === 0) return randomBytes(32)
        // Known intents listed by the digits of (salt, i) in base `known.length`: new bytes every time,
        // and at least three of them, so that no replay is byte for byte a batch the nodes gossiped.
        const base = Math.max(2, known.length)
        const batch: SignedIntent[] = []
        for (let x = this.#salt * 2 ** 20 + i; batch.length < 3 || x > 0; x = Math.floor(x / base))
          batch.push(known[(x % base) % known.length]!)
        return intentBatchCodec.encode(batch)
      }
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true
    await this.#stopHost()
  }
}
