import type { Connection, ConnectionGater, MultiaddrConnection, PeerId } from '@libp2p/interface'

/** Live connection caps the gater enforces (libp2p has a per-host rate, not a per-host count). */
export interface ConnectionLimits {
  /** Connections at once to one peer (2 leaves room for a simultaneous dial). */
  maxConnectionsPerPeer: number
  /** Inbound connections at once from one IP address. */
  maxInboundPerIp: number
  /** Addresses the per-IP cap does not apply to: a devnet puts every node on loopback. */
  ipCapExempt: string[]
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConnectionsPerPeer: 2,
  maxInboundPerIp: 8,
  ipCapExempt: ['127.0.0.1', '::1'],
}

/** The IP address of a `/ip4/…` or `/ip6/…` multiaddr, undefined for anything else. */
export function ipOf(addr: { toString(): string }): string | undefined {
  return /^\/ip[46]\/([^/]+)/.exec(addr.toString())?.[1]
}

/**
 * Connection gater with two separate lists and the connection caps. A peer on either list can neither
 * dial us nor be dialled. The deny list belongs to the admin partition endpoint (replaced whole, `[]`
 * heals); the ban list belongs to the ban book (bans.ts). They are kept apart so that a heal never
 * lifts a ban.
 */
export class DenyListGater {
  readonly #denied = new Set<string>()
  #banned = new Set<string>()
  #limits: ConnectionLimits = DEFAULT_CONNECTION_LIMITS
  #connections: () => Connection[] = () => []

  /** Replaces the deny list; returns the peers newly denied. Bans are untouched. */
  setDenied(peerIds: Iterable<string>): string[] {
    const next = new Set(peerIds)
    const added = [...next].filter((p) => !this.#denied.has(p))
    this.#denied.clear()
    for (const p of next) this.#denied.add(p)
    return added
  }

  /** Replaces the ban list (the ban book owns it). */
  setBanned(peerIds: Iterable<string>): void {
    this.#banned = new Set(peerIds)
  }

  /** Sets the caps and how to read the live connections (the host, once libp2p exists). */
  setLimits(limits: ConnectionLimits, connections: () => Connection[]): void {
    this.#limits = limits
    this.#connections = connections
  }

  /** Denied by a partition or banned. */
  isDenied(peerId: PeerId | string): boolean {
    const id = peerId.toString()
    return this.#denied.has(id) || this.#banned.has(id)
  }

  isBanned(peerId: PeerId | string): boolean {
    return this.#banned.has(peerId.toString())
  }

  /** The partition deny list (bans not included). */
  denied(): string[] {
    return [...this.#denied]
  }

  /** True when one more inbound connection from this address would exceed the per-IP cap. */
  #ipCapExceeded(remote: { toString(): string }): boolean {
    const ip = ipOf(remote)
    if (ip === undefined || this.#limits.ipCapExempt.includes(ip)) return false
    let n = 0
    for (const c of this.#connections()) if (c.direction === 'inbound' && ipOf(c.remoteAddr) === ip) n++
    return n >= this.#limits.maxInboundPerIp
  }

  #peerCapExceeded(peerId: PeerId): boolean {
    const id = peerId.toString()
    let n = 0
    for (const c of this.#connections()) if (c.remotePeer.toString() === id) n++
    return n >= this.#limits.maxConnectionsPerPeer
  }

  /** The libp2p ConnectionGater view of the lists and caps. */
  gater(): ConnectionGater {
    const deny = (peerId: PeerId): boolean => this.isDenied(peerId)
    return {
      denyDialPeer: deny,
      // Before any handshake byte: the cheapest place to shut out one address's flood of connections.
      denyInboundConnection: (maConn: MultiaddrConnection) => this.#ipCapExceeded(maConn.remoteAddr),
      denyInboundEncryptedConnection: (peerId: PeerId) => deny(peerId) || this.#peerCapExceeded(peerId),
      denyOutboundEncryptedConnection: deny,
      denyInboundUpgradedConnection: deny,
      denyOutboundUpgradedConnection: deny,
    }
  }
}
