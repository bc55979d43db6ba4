/**
 * Real ConsensusDrivers in one process over a test bus that carries everything between them as bytes,
 * through the wire codecs: gossip (`consensus` topic: encode, decode, the receiver's topic validator, then
 * onMessage with the sender's name), `blocks-by-range`, `consensus-messages` and `status` requests (the
 * protocol specs' request and response codecs). A node learns about the others only through those: no
 * test reads one driver's state to feed another. Each node has a LevelDB store in a temp dir and a real
 * IntentPool.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import type { PrivateKeyAccount } from 'viem/accounts'
import type { MurmurApplication } from '../../src/app/application.ts'
import { BLOCKS_BY_RANGE_PROTOCOL, type SyncedBlock } from '../../src/consensus/block.ts'
import type { ConsensusDriver, ConsensusDriverOptions } from '../../src/consensus/driver.ts'
import {
  CONSENSUS_MESSAGES_PROTOCOL,
  type ConsensusMessage,
  consensusMessageCodec,
} from '../../src/consensus/messages.ts'
import { StatusPoller } from '../../src/consensus/sync-peers.ts'
import { IntentPool } from '../../src/mempool/pool.ts'
import { STATUS_PROTOCOL } from '../../src/p2p/protocols.ts'
import type { ValidationResult } from '../../src/p2p/validation.ts'
import { Store } from '../../src/state/store.ts'
import { type TestNetwork, testLog } from '../helpers/consensus-net.ts'
import { createTestDriver, type TestDriverModules } from '../helpers/driver.ts'

/** One driver on the bus with what it owns. */
export interface BusNode {
  readonly index: number
  readonly name: string
  readonly dir: string
  readonly store: Store
  readonly pool: IntentPool
  readonly driver: ConsensusDriver
  /** The node's real application (behind `wrapApp`'s proxy when there is one). */
  readonly app: MurmurApplication
  /** The node's metrics (the driver's counters by code, for instance). */
  readonly registry: Registry
  readonly status: StatusPoller | undefined
}

/** Options of {@link DriverBus.start}. */
export interface StartOptions {
  /** Data directory to reuse (a restart); default a fresh temp dir. */
  readonly dir?: string
  readonly driver?: Partial<ConsensusDriverOptions>
  /** Poll the others' `status` this often (ms); default no status polling. */
  readonly statusPollMs?: number
  /** This node's own receipt check of fills; default every fill 'valid'. */
  readonly verifyFill?: TestDriverModules['verifyFill']
  /** A proxy the driver talks to instead of the application (test/helpers/driver.ts). */
  readonly wrapApp?: TestDriverModules['wrapApp']
  /** The node's wall clock (a validator with a skewed clock); default Date.now. */
  readonly clock?: { now(): number }
}

const roundTrip = <T>(codec: { encode(v: T): Uint8Array; decode(b: Uint8Array): T }, v: T): T =>
  codec.decode(codec.encode(v))

/** The bus and the nodes on it. */
export class DriverBus {
  readonly net: TestNetwork
  readonly nodes = new Map<number, BusNode>()
  /** Non-ACCEPT validation results of delivered gossip. */
  readonly results: ValidationResult[] = []
  /** Range requests served, and blocks in them. */
  readonly served = { requests: 0, blocks: 0 }
  readonly #dirs: string[] = []
  /** Drop gossip to these node indexes (they still serve and send requests). */
  readonly deaf = new Set<number>()

  constructor(net: TestNetwork) {
    this.net = net
  }

  /** Nodes running now. */
  running(): BusNode[] {
    return [...this.nodes.values()]
  }

  broadcast(from: number, msg: ConsensusMessage): void {
    const bytes = consensusMessageCodec.encode(msg)
    for (const [i, node] of this.nodes) {
      if (i === from || this.deaf.has(i)) continue
      setImmediate(() => {
        if (this.nodes.get(i) !== node) return
        const decoded = consensusMessageCodec.decode(bytes)
        void node.driver.validateMessage(decoded, `node-${from}`).then((r) => {
          if (r.result === 'ACCEPT') node.driver.onMessage(decoded, `node-${from}`)
          else this.results.push(r)
        })
      })
    }
  }

  #peer(name: string): BusNode {
    const peer = this.nodes.get(Number(name.slice('node-'.length)))
    if (peer === undefined) throw new Error(`${name} is not running`)
    return peer
  }

  /** `blocks-by-range` of the named node, request and answer through the protocol's codecs. */
  async fetch(peerName: string, from: bigint, count: number): Promise<SyncedBlock[]> {
    const spec = BLOCKS_BY_RANGE_PROTOCOL
    const req = roundTrip(spec.request, { from, count })
    const res = await this.#peer(peerName).driver.getBlocksRange(req.from, req.count)
    this.served.requests++
    this.served.blocks += res.length
    return roundTrip(spec.response, res)
  }

  /** `consensus-messages` of every other running node, through the protocol's codecs. */
  async messages(to: number, height: bigint): Promise<ConsensusMessage[]> {
    const spec = CONSENSUS_MESSAGES_PROTOCOL
    const out: ConsensusMessage[] = []
    for (const peer of this.nodes.values()) {
      if (peer.index === to) continue
      const req = roundTrip(spec.request, { height })
      out.push(...roundTrip(spec.response, peer.driver.getConsensusMessages(req.height)))
    }
    return out
  }

  /** `status` of the named node (its committed height), through the protocol's codecs. */
  status(peerName: string, askerHeight: bigint): bigint {
    roundTrip(STATUS_PROTOCOL.request, { height: Number(askerHeight) })
    const h = this.#peer(peerName).driver.head()
    const res = roundTrip(STATUS_PROTOCOL.response, {
      peerId: peerName,
      networkId: this.net.network,
      version: 'test',
      height: Number(h.height),
      blockHash: h.hash,
      peers: [],
    })
    return BigInt(res.height)
  }

  /** Starts validator `index` (its key from the network) on the bus. */
  async start(index: number, opts: StartOptions = {}): Promise<BusNode> {
    const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), `murmur-bus-${index}-`)))
    if (opts.dir === undefined) this.#dirs.push(dir)
    const store = new Store(join(dir, 'db'))
    await store.open()
    const registry = new Registry()
    const log = testLog.child({ node: index })
    const pool = await IntentPool.open(store, {}, { log, registry })
    const account: PrivateKeyAccount = this.net.validators[index]!
    const name = `node-${index}`
    const { driver, app } = createTestDriver(
      { minBlockIntervalMs: 100, syncDelayMs: 400, stuckFetchMs: 1000, ...opts.driver },
      {
        store,
        pool,
        account,
        genesis: this.net.genesis,
        broadcast: (msg) => this.broadcast(index, msg),
        verifyFill: opts.verifyFill ?? (async () => 'valid'),
        healthReports: this.net.healthReports,
        ...(opts.wrapApp === undefined ? {} : { wrapApp: opts.wrapApp }),
        ...(opts.clock === undefined ? {} : { clock: opts.clock }),
        pendingFills: () => [],
        fetchBlocks: (from, count, peer) => this.fetch(peer, from, count),
        fetchMessages: (height) => this.messages(index, height),
        log,
        registry,
      },
    )
    const status =
      opts.statusPollMs === undefined
        ? undefined
        : new StatusPoller(opts.statusPollMs, {
            peers: () => this.running().flatMap((n) => (n.index === index ? [] : [n.name])),
            ask: async (peer) => this.status(peer, driver.height),
            onHeight: (peer, height) => driver.notePeerHeight(peer, height),
            log,
          })
    const node: BusNode = { index, name, dir, store, pool, driver, app, registry, status }
    this.nodes.set(index, node)
    await driver.start()
    status?.start()
    return node
  }

  /** Stops a node (its data directory stays for a restart). */
  async stop(node: BusNode): Promise<void> {
    this.nodes.delete(node.index)
    await node.status?.stop()
    await node.driver.stop()
    await node.pool.close()
    await node.store.close()
  }

  /** Stops every node and removes the temp dirs. */
  async close(): Promise<void> {
    for (const n of this.running()) await this.stop(n)
    for (const d of this.#dirs) await rm(d, { recursive: true, force: true })
  }
}
