/** The p2p layer's connection, stream and queue limits, and the score thresholds they act on. */
import { type ConnectionLimits, DEFAULT_CONNECTION_LIMITS } from './gater.ts'
import { DEFAULT_MAX_INFLIGHT_PER_PEER } from './reqresp.ts'

/**
 * Connection and stream limits. libp2p's connection manager gives the totals and a per-host rate; the
 * gater (gater.ts) adds live caps per peer and per IP; yamux and the protocol handlers bound streams.
 */
export interface PeerLimits extends ConnectionLimits {
  /** All connections at once (libp2p `maxConnections`). */
  maxConnections: number
  /** Inbound connections still in their handshake (libp2p `maxIncomingPendingConnections`). */
  maxIncomingPendingConnections: number
  /**
   * New inbound connections per second from one host (libp2p `inboundConnectionThreshold`, default 5):
   * sized so that 15 devnet peers on 127.0.0.1 starting at once, and their redials, get in.
   */
  inboundConnectionThreshold: number
  /** Streams one connection may have open towards us (yamux `maxInboundStreams`, default 1000). */
  maxInboundStreamsPerConnection: number
  /** Gossipsub streams per connection (gossipsub `maxInboundStreams`). */
  maxGossipStreams: number
  /**
   * Share of a topic's validation queue (`queue.maxLength`) one peer's messages may hold. The queue is
   * shared by all peers; without a share one flooding peer fills it and everyone's messages are IGNOREd.
   * Half, not less: an honest mesh neighbour is often the first to deliver most of a burst (votes).
   */
  maxQueuedShare: number
  /** Inbound request/response exchanges served at once per peer. */
  maxInflightRequestsPerPeer: number
}

export const DEFAULT_PEER_LIMITS: PeerLimits = {
  ...DEFAULT_CONNECTION_LIMITS,
  maxConnections: 64,
  maxIncomingPendingConnections: 16,
  inboundConnectionThreshold: 32,
  maxInboundStreamsPerConnection: 64,
  maxGossipStreams: 4,
  maxQueuedShare: 0.5,
  maxInflightRequestsPerPeer: DEFAULT_MAX_INFLIGHT_PER_PEER,
}

/** Gossipsub's thresholds: below graylist a peer's RPCs are dropped and, after a grace, it is banned. */
export const SCORE_THRESHOLDS = { gossipThreshold: -100, publishThreshold: -200, graylistThreshold: -400 }
