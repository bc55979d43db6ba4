import { createHash } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import {
  type GossipSub,
  gossipsub,
  type Message,
  StrictNoSign,
  TopicValidatorResult,
} from '@libp2p/gossipsub'
import type { TopicScoreParams } from '@libp2p/gossipsub/score'
import { identify } from '@libp2p/identify'
import type { Libp2p, PeerId, PrivateKey } from '@libp2p/interface'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { P2PError } from '../errors.ts'
import type { Store } from '../state/store.ts'
import { VERSION } from '../version.ts'
import { BanBook, type BanOptions, type BanRecord, DEFAULT_BAN_OPTIONS } from './bans.ts'
import { DenyListGater } from './gater.ts'
import { DEFAULT_GOSSIP_WATCH_OPTIONS, GossipWatch, type GossipWatchOptions } from './gossip-watch.ts'
import { DEFAULT_PEER_LIMITS, type PeerLimits, SCORE_THRESHOLDS } from './limits.ts'
import { createP2PMetrics, type P2PMetrics } from './metrics.ts'
import { DEFAULT_PEER_MANAGER_OPTIONS, PeerManager, type PeerManagerOptions } from './peer-manager.ts'
import { MAX_PEERS_IN_STATUS, STATUS_PROTOCOL, type StatusResponse } from './protocols.ts'
import { DEFAULT_REPLAY_OPTIONS, REPLAY_CODES, ReplayMeter, type ReplayOptions } from './replays.ts'
import { type ProtocolSpec, ReqResp, type RequestHandler } from './reqresp.ts'
import { type TopicSpec, type TopicTable, topicString } from './topics.ts'
import type { ValidationResult } from './validation.ts'

/** What a node supplies for one topic: its validator and what to do with accepted messages. */
export interface TopicHandler<T> {
  validate(msg: T, from: PeerId): ValidationResult | Promise<ValidationResult>
  onMessage?(msg: T, from: PeerId): void
}

/** A handler for every topic of the payload map P: a new topic does not compile until it has one. */
export type TopicHandlers<P> = { [K in keyof P & string]: TopicHandler<P[K]> }

export interface P2POptions {
  networkId: string
  listen: string[]
  /**
   * Multiaddrs told to peers instead of the listen ones (libp2p `addresses.announce`): the address a
   * NAT, a container's port mapping or a relay makes this node reachable at. Empty: the listen ones.
   */
  announce: string[]
  /** Gossipsub mesh degree D (D_lo, D_hi follow gossipsub's ratios). */
  meshDegree: number
  peerManager: Partial<PeerManagerOptions>
  /** Penalty added to a peer's application score per undecodable request. */
  badRequestPenalty: number
  /** The watch that reconnects a peer gossipsub lost its outbound stream to (gossip-watch.ts). */
  gossipWatch: GossipWatchOptions
  /** Bans of peers that stay graylisted (bans.ts). */
  bans: Partial<BanOptions>
  /** Replays of known payloads beyond an allowance cost score (replays.ts). */
  replays: ReplayOptions
  /** Connection and stream limits (README, "Peers, bans and limits"). */
  limits: PeerLimits
}

export const DEFAULT_P2P_OPTIONS: Omit<P2POptions, 'networkId'> = {
  listen: ['/ip4/127.0.0.1/tcp/0'],
  announce: [],
  meshDegree: 6,
  peerManager: DEFAULT_PEER_MANAGER_OPTIONS,
  badRequestPenalty: 10,
  gossipWatch: DEFAULT_GOSSIP_WATCH_OPTIONS,
  bans: DEFAULT_BAN_OPTIONS,
  replays: DEFAULT_REPLAY_OPTIONS,
  limits: DEFAULT_PEER_LIMITS,
}

export interface P2PModules<P> {
  /** The table of gossip topics, assembled by the composition root (the network knows no domain). */
  topics: TopicTable<P>
  privateKey: PrivateKey
  store: Store
  log: Logger
  registry: Registry
  /** Current chain head for `status` answers (consensus fills this in later). */
  head: () => { height: number; blockHash: string }
  /** Peers never banned, only graylisted while their score is low (bans.ts: the validators). */
  isProtected?: (peerId: string) => boolean
  /** Called for each new ban (the node compacts its heap once bans stop: node/reclaim.ts). */
  onBan?: (rec: BanRecord) => void
}

/** Content-addressed message id (as Ethereum's consensus layer): SHA-256 of topic and data, 20 bytes. */
export function messageId(msg: Message): Uint8Array {
  return createHash('sha256').update(msg.topic).update(msg.data).digest().subarray(0, 20)
}

class Semaphore {
  #free: number
  readonly #waiters: Array<() => void> = []
  constructor(n: number) {
    this.#free = n
  }
  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--
      return
    }
    await new Promise<void>((resolve) => this.#waiters.push(resolve))
  }
  release(): void {
    const next = this.#waiters.shift()
    if (next !== undefined) next()
    else this.#free++
  }
}

const GOSSIP_RESULT = {
  ACCEPT: TopicValidatorResult.Accept,
  IGNORE: TopicValidatorResult.Ignore,
  REJECT: TopicValidatorResult.Reject,
} as const

/**
 * The node's libp2p host: TCP + Noise + Yamux, identify, ping, gossipsub v1.1 (no-sign mode,
 * content-addressed ids, peer scoring), the topic table it is given (`P` maps topic names to payload
 * types), request/response protocols, a deny-list gater and the peer manager.
 */
export class P2PHost<P> {
  readonly opts: P2POptions
  readonly metrics: P2PMetrics
  readonly gater = new DenyListGater()
  readonly #m: P2PModules<P>
  #libp2p: Libp2p<{ pubsub: GossipSub }> | undefined
  #reqresp: ReqResp | undefined
  #peerManager: PeerManager | undefined
  readonly #penalties = new Map<string, number>()
  #decayTimer: NodeJS.Timeout | undefined
  #gossipWatch: GossipWatch | undefined
  #peerGaugeTimer: NodeJS.Timeout | undefined
  #bans: BanBook | undefined
  #replays: ReplayMeter | undefined

  constructor(
    options: Partial<Omit<P2POptions, 'limits'>> & { networkId: string; limits?: Partial<PeerLimits> },
    modules: P2PModules<P>,
  ) {
    this.opts = { ...DEFAULT_P2P_OPTIONS, ...options, limits: { ...DEFAULT_PEER_LIMITS, ...options.limits } }
    this.#m = modules
    this.metrics = createP2PMetrics(modules.registry)
  }

  get libp2p(): Libp2p<{ pubsub: GossipSub }> {
    if (this.#libp2p === undefined) throw new Error('p2p host not started')
    return this.#libp2p
  }

  get peerId(): string {
    return this.libp2p.peerId.toString()
  }

  get reqresp(): ReqResp {
    if (this.#reqresp === undefined) throw new Error('p2p host not started')
    return this.#reqresp
  }

  get peerManager(): PeerManager {
    if (this.#peerManager === undefined) throw new Error('p2p host not started')
    return this.#peerManager
  }

  /** The rows of the topic table (typed loosely: `P` stays out of private members, so a host of many
   * topics is usable where a service only names the topics it publishes on). */
  get #specs(): TopicSpec<unknown>[] {
    return Object.values(this.#m.topics)
  }

  async start(handlers: TopicHandlers<P>): Promise<void> {
    const topicScores: Record<string, Partial<TopicScoreParams>> = {}
    for (const spec of this.#specs) topicScores[topicString(this.opts.networkId, spec.name)] = spec.score
    const d = this.opts.meshDegree
    const lim = this.opts.limits
    this.#replays = new ReplayMeter(this.opts.replays)
    this.#libp2p = await createLibp2p({
      privateKey: this.#m.privateKey,
      addresses: {
        listen: this.opts.listen,
        ...(this.opts.announce.length > 0 ? { announce: this.opts.announce } : {}),
      },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux({ maxInboundStreams: lim.maxInboundStreamsPerConnection })],
      connectionGater: this.gater.gater(),
      connectionManager: {
        maxConnections: lim.maxConnections,
        maxIncomingPendingConnections: lim.maxIncomingPendingConnections,
        inboundConnectionThreshold: lim.inboundConnectionThreshold,
      },
      services: {
        identify: identify(),
        ping: ping(),
        pubsub: gossipsub({
          // Every payload carries its own EIP-712 signature, so gossipsub's envelope
          // signature would only add cost: no-sign mode with content-addressed ids.
          globalSignaturePolicy: StrictNoSign,
          msgIdFn: messageId,
          allowPublishToZeroTopicPeers: true,
          maxInboundStreams: lim.maxGossipStreams,
          ignoreDuplicatePublishError: true,
          emitSelf: false,
          D: d,
          Dlo: Math.max(1, Math.floor((d * 2) / 3)),
          Dhi: d * 2,
          allowedTopics: this.#specs.map((spec) => topicString(this.opts.networkId, spec.name)),
          scoreParams: {
            topics: topicScores as never,
            appSpecificScore: (p: string) => this.#penalties.get(p) ?? 0,
            appSpecificWeight: 1,
            // Devnets put every peer on 127.0.0.1: colocation is expected there.
            IPColocationFactorWhitelist: new Set(['127.0.0.1', '::1']),
          },
          scoreThresholds: SCORE_THRESHOLDS,
        }),
      },
    })
    const libp2p = this.#libp2p
    const pubsub = libp2p.services.pubsub
    this.gater.setLimits(lim, () => libp2p.getConnections())
    this.#bans = new BanBook(this.opts.bans, {
      libp2p,
      store: this.#m.store,
      log: this.#m.log.child({ module: 'bans' }),
      score: (p) => this.score(p),
      graylistThreshold: SCORE_THRESHOLDS.graylistThreshold,
      ...(this.#m.isProtected === undefined ? {} : { isProtected: this.#m.isProtected }),
      onChange: (banned, added) => {
        this.gater.setBanned(banned)
        this.metrics.banned.set(banned.length)
        if (added !== undefined) {
          this.metrics.bans.inc()
          this.#m.onBan?.(added)
        }
      },
    })
    await this.#bans.start()

    const byName = handlers as Record<string, TopicHandler<unknown>>
    for (const spec of this.#specs) this.#registerTopic(spec, byName[spec.name]!)

    this.#reqresp = new ReqResp(libp2p, this.opts.networkId, {
      log: this.#m.log.child({ module: 'reqresp' }),
      metrics: this.metrics,
      onBadPeer: (peer, reason) => this.penalize(peer.toString(), reason),
      // A shut-out peer gets no answers: banned ones are disconnected anyway, graylisted ones until then.
      refuse: (peer) =>
        this.gater.isBanned(peer) || this.score(peer.toString()) < SCORE_THRESHOLDS.graylistThreshold,
      maxInflightPerPeer: lim.maxInflightRequestsPerPeer,
    })
    await this.#reqresp.handle(STATUS_PROTOCOL, () => this.status())

    this.#peerManager = new PeerManager(this.opts.peerManager, {
      libp2p,
      store: this.#m.store,
      gater: this.gater,
      log: this.#m.log.child({ module: 'peers' }),
      exchange: async (peer) =>
        (await this.reqresp.request(peer, STATUS_PROTOCOL, { height: this.#m.head().height })).peers,
    })
    await this.#peerManager.start()
    this.#gossipWatch = new GossipWatch(this.opts.gossipWatch, {
      libp2p,
      log: this.#m.log.child({ module: 'gossip-watch' }),
      onRepair: () => this.metrics.gossipRepairs.inc(),
    })
    this.#gossipWatch.start()

    // Application penalties decay so a peer that misbehaved once is forgiven over time.
    this.#decayTimer = setInterval(() => {
      this.#replays?.prune(Date.now())
      for (const [p, v] of this.#penalties) {
        const next = v * 0.9
        if (next > -0.5) this.#penalties.delete(p)
        else this.#penalties.set(p, next)
      }
    }, 10_000)
    this.#peerGaugeTimer = setInterval(() => this.metrics.peers.set(libp2p.getPeers().length), 1_000)
    this.#m.log.info(
      { peerId: this.peerId, addrs: libp2p.getMultiaddrs().map(String), topics: pubsub.getTopics().length },
      'p2p started',
    )
  }

  async stop(): Promise<void> {
    clearInterval(this.#decayTimer)
    clearInterval(this.#peerGaugeTimer)
    this.#gossipWatch?.stop()
    await this.#bans?.stop()
    await this.#peerManager?.stop()
    await this.#reqresp?.stop()
    await this.#libp2p?.stop()
    this.#peerManager = undefined
    this.#bans = undefined
    this.#reqresp = undefined
    this.#libp2p = undefined
  }

  #registerTopic(spec: TopicSpec<unknown>, handler: TopicHandler<unknown>): void {
    const name = spec.name
    const topic = topicString(this.opts.networkId, name)
    const pubsub = this.libp2p.services.pubsub
    const sem = new Semaphore(spec.queue.concurrency)
    let waiting = 0
    // The topic's queue is shared: without a per-peer share one peer could fill it for everyone.
    const perPeer = new Map<string, number>()
    const maxPerPeer = Math.max(1, Math.ceil(spec.queue.maxLength * this.opts.limits.maxQueuedShare))
    const count = (r: ValidationResult) =>
      this.metrics.validation.inc({
        topic: name,
        result: r.result.toLowerCase(),
        code: r.result === 'ACCEPT' ? '' : r.code,
      })

    pubsub.topicValidators.set(topic, async (from, msg) => {
      if (waiting >= spec.queue.maxLength) {
        count({ result: 'IGNORE', code: 'QUEUE_FULL' })
        return TopicValidatorResult.Ignore
      }
      const peer = from.toString()
      const mine = perPeer.get(peer) ?? 0
      if (mine >= maxPerPeer) {
        count({ result: 'IGNORE', code: 'PEER_QUEUE_FULL' })
        return TopicValidatorResult.Ignore
      }
      perPeer.set(peer, mine + 1)
      waiting++
      this.metrics.queueLength.set({ topic: name }, waiting)
      const end = this.metrics.validationSeconds.startTimer({ topic: name })
      try {
        let decoded: unknown
        try {
          decoded = spec.codec.decode(msg.data)
        } catch (err) {
          const r: ValidationResult = {
            result: 'REJECT',
            code: err instanceof P2PError ? err.code : 'DECODE',
          }
          count(r)
          return GOSSIP_RESULT[r.result]
        }
        await sem.acquire()
        let r: ValidationResult
        try {
          r = await handler.validate(decoded, from)
        } finally {
          sem.release()
        }
        count(r)
        if (r.result === 'IGNORE' && REPLAY_CODES.has(r.code)) this.#replayed(name, peer)
        if (r.result === 'ACCEPT' && handler.onMessage !== undefined) {
          const onMessage = handler.onMessage.bind(handler)
          queueMicrotask(() => {
            try {
              onMessage(decoded, from)
            } catch (err) {
              this.#m.log.error({ topic: name, err }, 'topic handler threw')
            }
          })
        }
        return GOSSIP_RESULT[r.result]
      } catch (err) {
        // An exception here is our bug, not the peer's fault: never penalise, shout.
        this.metrics.validationErrors.inc({ topic: name })
        this.#m.log.error({ topic: name, err }, 'topic validator threw')
        return TopicValidatorResult.Ignore
      } finally {
        waiting--
        const left = (perPeer.get(peer) ?? 1) - 1
        if (left <= 0) perPeer.delete(peer)
        else perPeer.set(peer, left)
        this.metrics.queueLength.set({ topic: name }, waiting)
        end()
      }
    })
    pubsub.subscribe(topic)
  }

  /** Encodes and publishes; returns how many peers it was sent to. */
  async publish<K extends keyof P & string>(name: K, payload: P[K]): Promise<number> {
    const bytes = this.#m.topics[name].codec.encode(payload)
    return this.publishRaw(name, bytes)
  }

  /** Publishes already-encoded bytes (tests use it to send garbage). */
  async publishRaw(name: keyof P & string, bytes: Uint8Array): Promise<number> {
    const res = await this.libp2p.services.pubsub.publish(topicString(this.opts.networkId, name), bytes)
    this.metrics.published.inc({ topic: name })
    return res.recipients.length
  }

  async handle<Req, Res>(spec: ProtocolSpec<Req, Res>, handler: RequestHandler<Req, Res>): Promise<void> {
    await this.reqresp.handle(spec, handler)
  }

  /** Lowers a peer's application score (undecodable requests, provably wrong answers). */
  penalize(peerId: string, reason: string, amount = this.opts.badRequestPenalty): void {
    this.#penalties.set(peerId, (this.#penalties.get(peerId) ?? 0) - amount)
    this.#m.log.info({ peer: peerId, reason }, 'peer penalised')
  }

  /** One already-known payload from `peer`: past the allowance it costs score (replays.ts). */
  #replayed(topic: string, peer: string): void {
    const penalty = this.#replays?.record(peer, Date.now()) ?? 0
    this.metrics.replays.inc({ topic, penalised: penalty > 0 ? 'yes' : 'no' })
    if (penalty > 0) this.#penalties.set(peer, (this.#penalties.get(peer) ?? 0) - penalty)
  }

  /** Active bans, soonest expiry first (for `GET /v1/peers/bans`). */
  bans(): BanRecord[] {
    return this.#bans?.list() ?? []
  }

  /** The ban book (tests and the admin API ban through it). */
  get banBook(): BanBook {
    if (this.#bans === undefined) throw new Error('p2p host not started')
    return this.#bans
  }

  /** Our answer to `status`, including a sample of connected peers for peer exchange. */
  status(): StatusResponse {
    const libp2p = this.libp2p
    const peers = libp2p
      .getPeers()
      .slice(0, MAX_PEERS_IN_STATUS)
      .map((p) => ({ peerId: p.toString(), addrs: this.peerManager.addrsOf(p.toString()).slice(0, 8) }))
      .filter((p) => p.addrs.length > 0)
    return { peerId: this.peerId, networkId: this.opts.networkId, version: VERSION, ...this.#m.head(), peers }
  }

  /** Connected peers with their gossipsub score, for `GET /v1/peers`. */
  peers(): Array<{ peerId: string; addrs: string[]; direction: string; score: number }> {
    const pubsub = this.libp2p.services.pubsub as unknown as { getScore(p: string): number }
    const byPeer = new Map<string, { addrs: string[]; direction: string }>()
    for (const c of this.libp2p.getConnections()) {
      const id = c.remotePeer.toString()
      const e = byPeer.get(id) ?? { addrs: [], direction: c.direction }
      e.addrs.push(c.remoteAddr.toString())
      byPeer.set(id, e)
    }
    return [...byPeer].map(([peerId, e]) => ({ peerId, ...e, score: pubsub.getScore(peerId) }))
  }

  /** Score of one peer as gossipsub sees it (includes our application penalties). */
  score(peerId: string): number {
    return (this.libp2p.services.pubsub as unknown as { getScore(p: string): number }).getScore(peerId)
  }

  /** Denies the given peers and closes their connections; `[]` heals. Returns the deny list. */
  async partition(deny: string[]): Promise<string[]> {
    const before = this.gater.denied()
    this.gater.setDenied(deny)
    await Promise.allSettled(
      this.libp2p
        .getPeers()
        .filter((p) => this.gater.isDenied(p))
        .map((p) => this.libp2p.hangUp(p)),
    )
    const healed = before.filter((p) => !this.gater.isDenied(p))
    if (healed.length > 0) this.peerManager.resetBackoff(healed)
    this.#m.log.info({ denied: deny.length, healed: healed.length }, 'partition set')
    return this.gater.denied()
  }
}
