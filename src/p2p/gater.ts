import type { ConnectionGater, PeerId } from '@libp2p/interface'

/**
 * Connection gater with a deny list. A denied peer can neither dial us nor be dialled;
 * the admin partition endpoint and score-based bans both go through it.
 */
export class DenyListGater {
  readonly #denied = new Set<string>()

  /** Replaces the deny list; returns the peers newly denied. */
  setDenied(peerIds: Iterable<string>): string[] {
    const next = new Set(peerIds)
    const added = [...next].filter((p) => !this.#denied.has(p))
    this.#denied.clear()
    for (const p of next) this.#denied.add(p)
    return added
  }

  isDenied(peerId: PeerId | string): boolean {
    return this.#denied.has(peerId.toString())
  }

  denied(): string[] {
    return [...this.#denied]
  }

  /** The libp2p ConnectionGater view of this list. */
  gater(): ConnectionGater {
    const deny = (peerId: PeerId): boolean => this.isDenied(peerId)
    return {
      denyDialPeer: deny,
      denyInboundEncryptedConnection: deny,
      denyOutboundEncryptedConnection: deny,
      denyInboundUpgradedConnection: deny,
      denyOutboundUpgradedConnection: deny,
    }
  }
}
