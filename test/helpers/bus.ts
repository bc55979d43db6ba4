/**
 * An in-memory bus between consensus drivers in one process: every consensus and `stake` message goes
 * through its wire codec and the receiver's topic validator, as gossip would carry it; blocks-by-range
 * and consensus-messages go through their protocol codecs to the other running nodes.
 */
import { BLOCKS_BY_RANGE_PROTOCOL } from '../../src/consensus/block.ts'
import type { ConsensusDriver } from '../../src/consensus/driver.ts'
import {
  CONSENSUS_MESSAGES_PROTOCOL,
  type ConsensusMessage,
  consensusMessageCodec,
} from '../../src/consensus/messages.ts'
import type { ValidationResult } from '../../src/p2p/validation.ts'
import type { StakingService } from '../../src/staking/service.ts'
import { type StakeMessage, stakeMoveCodec } from '../../src/staking/wire.ts'

/** What the bus needs of a node. */
export interface BusNode {
  readonly index: number
  readonly driver: ConsensusDriver
  readonly staking?: StakingService
}

export class TestBus<N extends BusNode> {
  readonly nodes = new Map<number, N>()
  /** Every result other than ACCEPT, by topic. */
  readonly results: Array<{ topic: string; r: ValidationResult }> = []

  /** Delivers to every other running node, each decoding its own copy (as a peer would). */
  #deliver<T>(from: number, bytes: Uint8Array, decode: (b: Uint8Array) => T, to: (node: N, msg: T) => void) {
    for (const [i, node] of this.nodes) {
      if (i === from) continue
      setImmediate(() => {
        if (this.nodes.get(i) === node) to(node, decode(bytes))
      })
    }
  }

  consensus(from: number, msg: ConsensusMessage): void {
    this.#deliver(from, consensusMessageCodec.encode(msg), consensusMessageCodec.decode, (node, decoded) => {
      void node.driver.validateMessage(decoded, `node-${from}`).then((r) => {
        if (r.result === 'ACCEPT') node.driver.onMessage(decoded, `node-${from}`)
        else this.results.push({ topic: 'consensus', r })
      })
    })
  }

  stake(from: number, msg: StakeMessage): void {
    this.#deliver(from, stakeMoveCodec.encode(msg), stakeMoveCodec.decode, (node, decoded) => {
      const staking = node.staking
      if (staking === undefined) return
      const peer = {} as never
      void Promise.resolve(staking.topicHandler.validate(decoded, peer)).then((r) => {
        this.results.push({ topic: 'stake', r })
        if (r.result === 'ACCEPT') staking.topicHandler.onMessage?.(decoded, peer)
      })
    })
  }

  /** blocks-by-range from the first other running node. */
  async fetch(to: number, from: bigint, count: number) {
    const peer = [...this.nodes.values()].find((n) => n.index !== to)
    return peer === undefined ? [] : this.fetchFrom(`node-${peer.index}`, from, count)
  }

  /** blocks-by-range from the named running node (`node-<i>`), as the driver's block sync asks. */
  async fetchFrom(peerName: string, from: bigint, count: number) {
    const peer = this.nodes.get(Number(peerName.slice('node-'.length)))
    if (peer === undefined) throw new Error(`${peerName} is not running`)
    const spec = BLOCKS_BY_RANGE_PROTOCOL
    const req = spec.request.decode(spec.request.encode({ from, count }))
    const res = await peer.driver.getBlocksRange(req.from, req.count)
    return spec.response.decode(spec.response.encode(res))
  }

  /** A `status` round: node `to` hears every other running node's committed height (as the poller). */
  status(to: number): void {
    const node = this.nodes.get(to)
    for (const peer of this.nodes.values())
      if (peer.index !== to) node?.driver.notePeerHeight(`node-${peer.index}`, peer.driver.height)
  }

  /** consensus-messages from every other running node (a stuck round's fetch). */
  async messages(to: number, height: bigint): Promise<ConsensusMessage[]> {
    const spec = CONSENSUS_MESSAGES_PROTOCOL
    const out: ConsensusMessage[] = []
    for (const peer of this.nodes.values()) {
      if (peer.index === to) continue
      const req = spec.request.decode(spec.request.encode({ height }))
      out.push(...spec.response.decode(spec.response.encode(peer.driver.getConsensusMessages(req.height))))
    }
    return out
  }
}
